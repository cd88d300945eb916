//! Fuzz target: see `murmur::fuzz::llm_response`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| murmur::fuzz::llm_response(data));
