//! Fuzz target: see `murmur::fuzz::outputs`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| murmur::fuzz::outputs(data));
