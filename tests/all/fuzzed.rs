//! What the fuzzers found stays found: every input in `fuzz/regressions/TARGET/` (a crash
//! `cargo xtask fuzz` once reported, kept) and every seed in `fuzz/seeds/TARGET/` goes
//! through the same entry point its fuzz target calls, in an ordinary build, and must
//! return.

use crate::helpers::repo;

/// Every file under `fuzz/{seeds,regressions}/TARGET`.
fn inputs(target: &str) -> Vec<(std::path::PathBuf, Vec<u8>)> {
    let mut found = Vec::new();
    for kind in ["seeds", "regressions"] {
        let dir = repo().join("fuzz").join(kind).join(target);
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_file() {
                let bytes = std::fs::read(&path).expect("read input");
                found.push((path, bytes));
            }
        }
    }
    found.sort();
    found
}

fn replay(target: &str, entry: fn(&[u8])) {
    let inputs = inputs(target);
    assert!(
        !inputs.is_empty(),
        "fuzz/seeds/{target} holds no input: the target would start from nothing"
    );
    for (path, bytes) in inputs {
        let outcome = std::panic::catch_unwind(|| entry(&bytes));
        assert!(outcome.is_ok(), "{target}: {} panicked", path.display());
    }
}

#[test]
fn every_kept_manifest_input_is_answered() {
    replay("manifest", murmur::fuzz::manifest);
}

#[test]
fn every_kept_payload_input_is_answered() {
    replay("payload", murmur::fuzz::payload);
}

#[test]
fn every_kept_outputs_input_is_answered() {
    replay("outputs", murmur::fuzz::outputs);
}

#[test]
fn every_kept_store_input_is_answered() {
    replay("store", murmur::fuzz::store);
}

#[test]
fn every_kept_llm_response_input_is_answered() {
    replay("llm_response", murmur::fuzz::llm_response);
}
