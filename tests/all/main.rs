//! Integration tests: the real host driving real components built from `plugins/`
//! (`cargo xtask test` builds them first). One test binary, as wasmtime does, to save link time.

mod helpers;

mod approval;
mod authoring;
mod blocking;
mod cascade;
mod cli;
mod context;
mod dashboard;
mod dedup;
mod durability;
mod faults;
mod fuzzed;
mod hostile;
mod hotload;
mod integrations;
mod lessons;
mod llm;
mod loading;
mod loopback;
mod manifest_errors;
mod monitoring;
mod polyglot;
mod recovery;
mod reuse;
mod routing;
mod serve;
mod telemetry;
mod validators;
mod workers;
