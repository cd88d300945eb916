//! Human approval gates from the command line: a batch run ends `waiting`, `murmur
//! approve` and `reject` decide in the database, `murmur resume` goes on.

use crate::helpers::{murmur, repo};
use serde_json::Value;
use std::path::{Path, PathBuf};

/// The auth demo with its implementation phase gated (and a timeout, if given), written
/// beside the demo's own manifest so its relative plugin paths hold.
pub(crate) fn gated_auth_demo(dir: &Path, timeout_ms: Option<u64>) -> PathBuf {
    let demo = repo().join("examples/auth-system/workflow.toml");
    let text = std::fs::read_to_string(&demo).expect("the auth demo");
    let timeout = timeout_ms
        .map(|t| format!("approval_timeout_ms = {t}\n"))
        .unwrap_or_default();
    let gated = text.replacen(
        "name = \"implementation\"\n",
        &format!("name = \"implementation\"\napproval = \"required\"\n{timeout}"),
        1,
    );
    assert_ne!(gated, text, "the demo has an implementation phase");
    let plugins = repo().join("target/plugins");
    let gated = gated.replace("../../target/plugins", &plugins.display().to_string());
    let path = dir.join("gated.toml");
    std::fs::write(&path, gated).expect("write");
    path
}

/// Run `args`; the exit code and stdout as JSON.
fn json(args: &[&str]) -> (i32, Value) {
    let out = murmur().args(args).output().expect("murmur runs");
    let value = serde_json::from_slice(&out.stdout).unwrap_or_else(|_| {
        panic!(
            "{args:?}: stdout not JSON: {} / {}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    });
    (out.status.code().unwrap_or(-1), value)
}

fn awaiting(summary: &Value) -> Vec<String> {
    summary["open_work"]
        .as_array()
        .map(|w| {
            w.iter()
                .filter(|w| w["status"] == "awaiting_approval")
                .map(|w| w["id"].as_str().expect("id").to_string())
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn a_batch_run_waits_for_approval_and_resume_goes_on_after_the_decisions() {
    let dir = tempfile::tempdir().expect("tempdir");
    let manifest = gated_auth_demo(dir.path(), None);
    let manifest = manifest.to_str().expect("utf-8");
    let db = format!("sqlite:{}", dir.path().join("gated.db").display());
    let (code, summary) = json(&["run", "-q", "--json", "--store", &db, manifest]);
    assert_eq!(
        (code, &summary["status"]),
        (3, &Value::from("waiting")),
        "{summary}"
    );
    let first = awaiting(&summary);
    assert!(!first.is_empty(), "{summary}");
    assert_eq!(
        summary["phases"]["implementation"]["awaiting_approval"].as_u64(),
        Some(first.len() as u64)
    );
    assert_eq!(
        summary["by_type"]["Implementation"],
        Value::Null,
        "nothing implemented yet"
    );
    for w in summary["open_work"].as_array().expect("open") {
        assert!(
            w["reason"].as_str().is_some_and(|r| r.contains("approval")),
            "{w}"
        );
    }

    // Reject the first with a reason, approve the rest; a second decision is refused.
    let out = murmur()
        .args(["reject", "--store", &db, &first[0]])
        .output()
        .expect("reject");
    assert!(!out.status.success(), "a rejection needs --reason");
    let out = murmur()
        .args([
            "reject",
            "--store",
            &db,
            &first[0],
            "--reason",
            "not this quarter",
        ])
        .output()
        .expect("reject");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for w in &first[1..] {
        let out = murmur()
            .args(["approve", "--store", &db, w])
            .output()
            .expect("approve");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let out = murmur()
        .args(["approve", "--store", &db, &first[0]])
        .output()
        .expect("approve");
    assert!(!out.status.success(), "decided already");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("not awaiting approval"), "{err}");

    // Resume until nothing awaits approval, approving whatever new work asks.
    let mut summary;
    let mut rounds = 0;
    loop {
        rounds += 1;
        assert!(rounds < 20, "the run never finished");
        let (code, s) = json(&["resume", "-q", "--json", "--store", &db]);
        summary = s;
        if summary["status"] != "waiting" {
            assert_eq!(code, 0, "{summary}");
            break;
        }
        assert_eq!(code, 3);
        for w in awaiting(&summary) {
            let out = murmur()
                .args(["approve", "--store", &db, &w])
                .output()
                .expect("approve");
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
    }
    assert_eq!(summary["status"], "complete", "{summary}");
    assert!(
        summary["by_type"]["Implementation"].as_u64() > Some(0),
        "{summary}"
    );
    let status = murmur()
        .args(["status", "--json", "--store", &db])
        .output()
        .expect("status");
    let stored: Value = serde_json::from_slice(&status.stdout).expect("json");
    assert_eq!(stored["phases"]["implementation"]["awaiting_approval"], 0);
    // The rejected work failed with the reason, and recovery was spawned for it.
    assert!(
        summary["work"]["recovery_spawned"].as_u64() >= Some(1),
        "{summary}"
    );
    let graph = murmur()
        .args(["graph", "--format", "json", "--store", &db])
        .output()
        .expect("graph");
    assert!(graph.status.success());
}

#[test]
fn work_nobody_decides_on_expires_when_the_run_goes_on() {
    let dir = tempfile::tempdir().expect("tempdir");
    let manifest = gated_auth_demo(dir.path(), Some(200));
    let manifest = manifest.to_str().expect("utf-8");
    let db = format!("sqlite:{}", dir.path().join("gated.db").display());
    let (code, summary) = json(&["run", "-q", "--json", "--store", &db, manifest]);
    assert_eq!(code, 3, "{summary}");
    let gated = awaiting(&summary).len() as u64;
    assert!(gated > 0);
    std::thread::sleep(std::time::Duration::from_millis(400));
    let (code, summary) = json(&["resume", "-q", "--json", "--store", &db]);
    assert_eq!(code, 0, "{summary}");
    assert_eq!(
        summary["phases"]["implementation"]["expired"].as_u64(),
        Some(gated),
        "{summary}"
    );
    assert_eq!(summary["phases"]["implementation"]["awaiting_approval"], 0);
    assert_eq!(summary["by_type"]["Implementation"], Value::Null);
}

#[test]
fn an_unknown_approval_value_is_refused_with_its_file_and_line() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("bad.toml");
    std::fs::write(
        &path,
        "[workflow]\nname = \"x\"\n[[phase]]\nname = \"analysis\"\napproval = \"maybe\"\n",
    )
    .expect("write");
    let out = murmur()
        .args(["run", "--store", "memory"])
        .arg(&path)
        .output()
        .expect("run");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("bad.toml:5"), "{err}");
    assert!(err.contains("required"), "{err}");
}
