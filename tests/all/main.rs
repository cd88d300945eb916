//! Integration tests: the real host driving real components built from `plugins/`
//! (`cargo xtask test` builds them first). One test binary, as wasmtime does, to save link time.

mod helpers;

mod cascade;
mod cli;
mod faults;
mod loading;
mod manifest_errors;
