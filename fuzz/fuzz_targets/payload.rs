//! Fuzz target: see `murmur::fuzz::payload`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| murmur::fuzz::payload(data));
