//! Entry points for the fuzz targets in `fuzz/`, and for the tests that replay what they
//! found (`tests/all/fuzzed.rs`, from `fuzz/regressions/TARGET/`).
//!
//! Each takes arbitrary bytes and must return whatever they are: an error is an answer, a
//! panic, an abort or a hang is a bug. They reach the host where untrusted bytes come in:
//! manifest text, payloads against schemas (the built-in ones and a manifest's own), a
//! plugin's outputs, a database file, and a language-model server's answers. Not part of
//! the library's API.

use crate::manifest::Manifest;
use crate::plugin::bindings::types as wit;
use crate::schema::TypeRegistry;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::sync::LazyLock;

/// The built-in types, compiled once: compiling their schemas per input would be most
/// of a target's time.
static BUILTIN: LazyLock<TypeRegistry> = LazyLock::new(TypeRegistry::builtin);

/// Manifest text: parsed and checked as `murmur run` does, then merged into itself as a
/// hot-load bundle; on success every input's payload is expanded; on failure the error
/// is rendered (its `file:line:col` comes from byte offsets into the text).
pub fn manifest(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match Manifest::parse(Path::new("/fuzz/workflow.toml"), text) {
        Ok(m) => {
            for input in &m.inputs {
                for i in 0..input.count.min(3) {
                    let _ = input.payload_for(i);
                }
            }
            let _ = m.phase_map();
            if let Err(e) = m.with_bundle(Path::new("/fuzz/bundle.toml"), text) {
                let _ = e.to_string();
            }
        }
        Err(e) => {
            let _ = e.to_string();
        }
    }
}

/// A payload against a schema. The first byte chooses: a built-in type (its schema is
/// the host's), or, with its top bit set, a schema of the input's own — the rest is then
/// `SCHEMA \0 PAYLOAD` — registered as a manifest's `[[type]]` is.
pub fn payload(data: &[u8]) {
    let Some((&selector, rest)) = data.split_first() else {
        return;
    };
    if selector & 0x80 == 0 {
        let names: Vec<&str> = BUILTIN.types().map(|t| t.name.as_str()).collect();
        return validate(&BUILTIN, names[usize::from(selector) % names.len()], rest);
    }
    let mut parts = rest.splitn(2, |b| *b == 0);
    let (Some(schema), Some(payload)) = (parts.next(), parts.next()) else {
        return;
    };
    let Ok(schema) = serde_json::from_slice::<Value>(schema) else {
        return;
    };
    let mut types = BUILTIN.clone();
    if types.register("Fuzzed", schema).is_ok() {
        validate(&types, "Fuzzed", payload);
    }
}

fn validate(types: &TypeRegistry, name: &str, payload: &[u8]) {
    if let Ok(value) = serde_json::from_slice::<Value>(payload)
        && let Err(e) = types.validate(name, &value)
    {
        let _ = e.to_string();
    }
}

/// A plugin's outputs, as the host checks them before anything is published: records
/// separated by 0xFF, each `TYPE VISIBILITY PAYLOAD…` (a byte choosing a built-in type
/// or one no schema knows, a byte choosing a visibility, then the payload text).
pub fn outputs(data: &[u8]) {
    let types = BUILTIN.clone();
    let mut names: Vec<String> = types.types().map(|t| t.name.to_string()).collect();
    names.push("Undeclared".into());
    let outputs: Vec<wit::Output> = data
        .split(|b| *b == 0xFF)
        .filter_map(|record| {
            let (&t, rest) = record.split_first()?;
            let (&v, payload) = rest.split_first()?;
            let text = String::from_utf8_lossy(payload).into_owned();
            let visibility = match v % 5 {
                0 => None,
                1 => Some(wit::Visibility::Public),
                2 => Some(wit::Visibility::Private(vec![
                    text.chars().take(8).collect(),
                ])),
                3 => Some(wit::Visibility::Labels(vec![])),
                _ => Some(wit::Visibility::Tenant(String::new())),
            };
            Some(wit::Output {
                type_name: names[usize::from(t) % names.len()].clone(),
                payload: text,
                tags: vec![],
                visibility,
            })
        })
        .collect();
    let limits = crate::plugin::PluginLimits::default();
    let publishes = if data.first().is_some_and(|b| b & 1 == 1) {
        vec!["Note".to_string(), "WorkDiscovery".to_string()]
    } else {
        Vec::new()
    };
    if let Err(e) = crate::scheduler::check_outputs(&types, &limits, &publishes, &outputs) {
        let _ = e.to_string();
    }
}

/// A database file: opened as `murmur resume` and `murmur status` open one, and every run
/// in it read back.
pub fn store(data: &[u8]) {
    let path = scratch_file("store.db");
    for f in companions(&path) {
        let _ = std::fs::remove_file(f);
    }
    if std::fs::write(&path, data).is_err() {
        return;
    }
    read_store(&path);
    for f in companions(&path) {
        let _ = std::fs::remove_file(f);
    }
}

fn read_store(path: &Path) {
    use crate::blackboard::Store;
    let Ok(store) = crate::blackboard::DurableStore::sqlite(path) else {
        return;
    };
    if let Ok(runs) = store.runs() {
        for run in runs {
            let id = run.workflow_id.clone();
            if store.load(&id).is_err() {
                continue;
            }
            let _ = store.invocations(&id);
            let _ = store.work_items(&id);
            let _ = store.counts(&id);
            let all = crate::blackboard::ArtifactQuery {
                workflow_id: id.clone(),
                type_name: None,
                tags: Vec::new(),
                limit: usize::MAX,
            };
            let _ = store.read(&mut |board| {
                board.visit_recent(&all, &crate::artifact::Viewer::operator(), &mut |a| {
                    let _ = a.payload_text();
                    true
                })
            });
        }
    }
    let _ = store.close();
}

/// A language-model server's answer body, as the host reads a completion and an
/// embedding from it, and a `Retry-After` header's value.
pub fn llm_response(data: &[u8]) {
    if let Ok(answer) = serde_json::from_slice::<Value>(data) {
        let _ = crate::llm::openai::completion_from(&answer);
        let _ = crate::llm::openai::embeddings_from(&answer);
    }
    if let Ok(text) = std::str::from_utf8(data) {
        let now = std::time::UNIX_EPOCH + std::time::Duration::from_secs(1_764_892_800);
        let _ = crate::llm::openai::retry_after(text, now);
    }
}

/// A file of this process's own in the temporary directory.
fn scratch_file(name: &str) -> PathBuf {
    std::env::temp_dir().join(format!("murmur-fuzz-{}-{name}", std::process::id()))
}

/// A database file and the files SQLite and the store keep beside it.
fn companions(db: &Path) -> Vec<PathBuf> {
    ["", "-wal", "-shm", "-journal", ".lock"]
        .iter()
        .map(|s| PathBuf::from(format!("{}{s}", db.display())))
        .collect()
}
