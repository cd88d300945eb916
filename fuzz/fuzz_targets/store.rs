//! Fuzz target: see `murmur::fuzz::store`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| murmur::fuzz::store(data));
