//! The `murmur` binary, run as a user would.

use crate::helpers::*;

#[test]
fn run_json_prints_the_summary_on_stdout_and_progress_on_stderr() {
    // On a store of its own: the demo's default database keeps lessons from earlier
    // runs, and a run that has learned them shows no refused draft.
    let out = murmur()
        .args(["run", "--json", "--store", "memory"])
        .arg(repo().join("examples/auth-system/workflow.toml"))
        .output()
        .expect("murmur runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let summary: serde_json::Value =
        serde_json::from_slice(&out.stdout).expect("stdout is one JSON object");
    assert_eq!(summary["status"], "complete");
    for key in [
        "workflow_id",
        "artifacts",
        "invocations",
        "by_type",
        "phases",
        "agents",
        "work",
        "faults",
        "elapsed_ms",
    ] {
        assert!(summary.get(key).is_some(), "summary lacks {key}");
    }
    assert!(summary["phases"]["analysis"]["done"].as_u64() >= Some(2));
    // The demo shows every mechanism of the loop at work.
    for counter in [
        "duplicates",
        "auto_routed",
        "unblocked",
        "rejected_outputs",
        "retries",
        "recovery_spawned",
    ] {
        assert!(
            summary["work"][counter].as_u64() > Some(0),
            "work.{counter} is zero: {}",
            summary["work"]
        );
    }
    // The branch: the validator published WorkDiscoveries (into analysis and `auto`).
    assert_eq!(
        summary["agents"]["validator"]["published"]["WorkDiscovery"],
        4
    );
    assert_eq!(
        summary["agents"]["validator"]["published"]["ValidationResult"],
        6
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    for line in [
        "validator → ValidationResult, WorkDiscovery",
        "↻ implementer: attempt 1 refused (outputs rejected by review",
        "⇢ discovery routed to implementation by triage",
        "released: its blockers are done",
        "duplicates",
        "failed for good; recovery work",
        "work: 2 duplicate(s), 2 auto-routed, 1 unblocked, 1 rejected output(s), 1 retry, 1 recovery spawned",
    ] {
        assert!(stderr.contains(line), "stderr lacks {line:?}: {stderr}");
    }
}

#[test]
fn a_bad_manifest_exits_1_with_file_line_and_column() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("bad.toml");
    std::fs::write(
        &path,
        "[workflow]\nname = \"w\"\n[[plugin]]\nname = \"p\"\npath = \"x.wasm\"\nworld = 3\n",
    )
    .expect("write");
    let out = murmur()
        .arg("run")
        .arg(&path)
        .output()
        .expect("murmur runs");
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("bad.toml:6:9"), "{stderr}");
    assert!(out.stdout.is_empty());
}

#[test]
fn a_run_whose_work_failed_for_good_exits_1_and_names_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("fail.toml");
    let text = format!(
        "[workflow]\nname = \"w\"\n[recovery]\nenabled = false\n{PHASES_AND_NOTE}{}{}",
        probe("breaker", "mode = \"fail\"", "WorkDiscovery", None),
        discovery("integrate the legacy billing API", "implementation", ""),
    );
    std::fs::write(&path, expand(&text)).expect("write");
    let out = murmur()
        .args(["run", "--json", "--store", "memory"])
        .arg(&path)
        .output()
        .expect("murmur runs");
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("murmur: failed — ")
            && stderr.contains("failed: [implementation] integrate the legacy billing API: breaker: failed: probe asked to fail"),
        "{stderr}"
    );
    let summary: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(summary["status"], "failed");
    assert_eq!(
        summary["failed_work"][0]["description"],
        "integrate the legacy billing API"
    );
}

#[test]
fn a_stalled_run_exits_3_and_names_the_open_work() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("stall.toml");
    let text = "[workflow]\nname = \"w\"\n[[input]]\ntype = \"WorkDiscovery\"\npayload = { description = \"deploy it\", phase = \"deployment\", done_definition = \"x\", discovered_by = \"user\" }\n";
    std::fs::write(&path, text).expect("write");
    let out = murmur()
        .args(["run", "--json"])
        .arg(&path)
        .output()
        .expect("murmur runs");
    assert_eq!(out.status.code(), Some(3));
    let summary: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(summary["status"], "stalled");
    assert_eq!(summary["open_work"][0]["description"], "deploy it");
}

#[test]
fn bench_cascade_checks_its_counts_against_the_closed_form_and_prints_one_json_line() {
    let out = murmur()
        .current_dir(repo())
        .args(["bench", "cascade", "--n", "60", "--json"])
        .output()
        .expect("murmur runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let line = String::from_utf8_lossy(&out.stdout);
    assert_eq!(line.lines().count(), 1, "{line}");
    let figures: serde_json::Value = serde_json::from_str(&line).expect("one JSON object");
    // 60 + 12 + 3 + 1 work items, three invocations and four artifacts each.
    assert_eq!(figures["invocations"], 228);
    assert_eq!(figures["artifacts"], 304);
    for key in ["n", "seconds", "artifacts_per_s", "peak_rss_mb", "store"] {
        assert!(figures.get(key).is_some(), "missing {key}");
    }
}

/// A durable run whose mirror keeps only a few records of each kind reads the rest from
/// the database — context beyond the newest artifacts, work found duplicate after it
/// left memory, the summary — and counts exactly what the closed form says, on SQLite
/// and on PostgreSQL with worker processes.
#[test]
fn a_cascade_through_a_mirror_that_keeps_a_few_records_counts_what_the_closed_form_says() {
    let dir = tempfile::tempdir().expect("tempdir");
    let sqlite = format!("sqlite:{}", dir.path().join("trim.db").display());
    let postgres = murmur::blackboard::postgres::scratch::test_server();
    for args in [
        vec!["--store", sqlite.as_str()],
        vec!["--store", postgres.as_str(), "--workers", "2"],
    ] {
        let out = murmur()
            .current_dir(repo())
            .env("MURMUR_MIRROR_KEEP", "16")
            .args(["bench", "cascade", "--n", "300", "--json"])
            .args(&args)
            .output()
            .expect("murmur runs");
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let figures: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
        // 300 + 60 + 12 + 3 work items, four artifacts each.
        assert_eq!(figures["artifacts"], 4 * 375, "{args:?}: {figures}");
    }
    // The run's status read back from the file: every count from what the store kept.
    let status = murmur()
        .env("MURMUR_MIRROR_KEEP", "16")
        .args(["status", "--json", "--store", &sqlite])
        .output()
        .expect("murmur status");
    assert!(
        status.status.success(),
        "{}",
        String::from_utf8_lossy(&status.stderr)
    );
    let status: serde_json::Value = serde_json::from_slice(&status.stdout).expect("JSON");
    assert_eq!(status["invocations"], 3 * 375, "{status}");
    assert_eq!(status["status"], "complete", "{status}");
}

#[test]
fn a_mirror_bound_that_is_not_a_number_is_refused_by_name() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = murmur()
        .current_dir(repo())
        .env("MURMUR_MIRROR_KEEP", "lots")
        .args(["run", "--quiet", "--store"])
        .arg(format!("sqlite:{}", dir.path().join("x.db").display()))
        .arg("examples/auth-system/workflow.toml")
        .output()
        .expect("murmur runs");
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("MURMUR_MIRROR_KEEP=\"lots\": expected a number of records"),
        "{stderr}"
    );
}

#[test]
fn bench_cascade_without_json_prints_its_figures_as_text() {
    let out = murmur()
        .current_dir(repo())
        .args(["bench", "cascade", "--n", "5"])
        .output()
        .expect("murmur runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    // 5 + 1 + 1 + 1 work items: 24 invocations, 32 artifacts.
    assert!(
        text.starts_with("cascade N = 5: 32 artifacts, 24 invocations in "),
        "{text}"
    );
    assert!(
        serde_json::from_str::<serde_json::Value>(&text).is_err(),
        "not JSON"
    );
}

#[test]
fn bench_cascade_holds_its_closed_form_for_every_small_n() {
    // N = 1 once failed: a single input's `{index}` was left as text, so the agents
    // refused it and recovery work broke the closed form.
    for n in 1..=6 {
        let out = murmur()
            .current_dir(repo())
            .args(["bench", "cascade", "--n", &n.to_string(), "--json"])
            .output()
            .expect("murmur runs");
        assert!(
            out.status.success(),
            "N = {n}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

#[test]
fn bench_cascade_native_runs_the_same_workload_without_the_sandbox() {
    let out = murmur()
        .current_dir(repo())
        .args(["bench", "cascade", "--n", "25", "--native", "--json"])
        .output()
        .expect("murmur runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let figures: serde_json::Value = serde_json::from_slice(&out.stdout).expect("one JSON object");
    assert_eq!(figures["agents"], "native");
    // 25 + 5 + 1 + 1 work items.
    assert_eq!(figures["invocations"], 96);
}

#[test]
fn the_readme_demo_shows_the_counts_the_demo_prints() {
    let readme = std::fs::read_to_string(repo().join("README.md")).expect("README");
    let shown: Vec<&str> = readme
        .lines()
        .skip_while(|l| !l.starts_with("murmur: complete — "))
        .take_while(|l| !l.starts_with("```"))
        .collect();
    assert!(shown.len() >= 5, "the README shows the demo's summary");
    let out = murmur()
        .args(["run", "--store", "memory"])
        .arg(repo().join("examples/auth-system/workflow.toml"))
        .output()
        .expect("murmur runs");
    assert!(out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    // The README's lines, up to their elided ends (`…`) and the run's time.
    let head = |l: &str| {
        let l = l.split(" in ").next().unwrap_or(l);
        l.trim_end_matches('…').trim_end().to_string()
    };
    for line in &shown {
        assert!(
            stderr.lines().any(|s| s.starts_with(&head(line))),
            "the README shows `{line}`; the demo printed:\n{stderr}"
        );
    }
}

#[test]
fn inspect_reads_a_rust_a_javascript_and_a_python_component() {
    for (component, world, grants) in [
        ("analyzer", "agent", vec![]),
        ("js-implementer", "agent", vec![]),
        ("py-librarian", "agent", vec![]),
        ("reader", "agent", vec!["blackboard"]),
        ("review", "validator", vec![]),
        ("triage", "router", vec![]),
        ("focus", "context-provider", vec![]),
    ] {
        let out = murmur()
            .args(["inspect", "--json"])
            .arg(plugin(component))
            .output()
            .expect("inspect");
        assert!(
            out.status.success(),
            "{component}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let report: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
        assert_eq!(report["world"], world, "{component}");
        assert_eq!(report["api_version"], "0.1.0", "{component}");
        assert_eq!(
            report["needs_grants"],
            serde_json::json!(grants),
            "{component}"
        );
        assert_eq!(
            report["sha256"].as_str().map(str::len),
            Some(64),
            "{component}"
        );
    }
}

#[test]
fn bench_llm_answers_every_item_through_its_own_server_and_prints_one_json_line() {
    let out = murmur()
        .current_dir(repo())
        .args([
            "bench",
            "llm",
            "--n",
            "30",
            "--latency-ms",
            "20",
            "--in-flight",
            "4",
            "--json",
        ])
        .output()
        .expect("murmur runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let f: serde_json::Value = serde_json::from_slice(&out.stdout).expect("one JSON object");
    assert_eq!(f["n"], 30);
    assert_eq!(f["in_flight"], 4);
    // ⌈30 / 4⌉ rounds of 20 ms.
    assert_eq!(f["ideal_seconds"], 0.16);
    for field in [
        "seconds",
        "efficiency",
        "peak_rss_mb",
        "rss_per_in_flight_kb",
        "server_capacity_rps",
    ] {
        assert!(f[field].as_f64().is_some_and(|v| v > 0.0), "{field}: {f}");
    }
}

#[test]
fn bench_llm_without_the_agent_component_says_how_to_build_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = murmur()
        .current_dir(dir.path())
        .args(["bench", "llm", "--n", "1", "--plugin", "missing.wasm"])
        .output()
        .expect("murmur runs");
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("missing.wasm is missing: build the plugins first"),
        "{stderr}"
    );
}
