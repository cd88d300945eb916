//! Fuzz target: see `murmur::fuzz::manifest`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| murmur::fuzz::manifest(data));
