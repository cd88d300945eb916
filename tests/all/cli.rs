//! The `murmur` binary, run as a user would.

use crate::helpers::*;

#[test]
fn run_json_prints_the_summary_on_stdout_and_progress_on_stderr() {
    let out = murmur()
        .args(["run", "--json"])
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
fn murmur_new_refuses_an_unknown_world_or_language_naming_the_choices() {
    let dir = tempfile::tempdir().expect("tempdir");
    for (args, says) in [
        (
            ["new", "agnt", "x", "--lang", "rust"],
            "possible values: agent, validator, router, context-provider",
        ),
        (
            ["new", "agent", "x", "--lang", "ruby"],
            "possible values: rust, js, python",
        ),
    ] {
        let out = murmur()
            .args(args)
            .arg("--plugins")
            .arg(dir.path())
            .output()
            .expect("new");
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains(says), "{args:?}: {stderr}");
    }
    assert_eq!(
        std::fs::read_dir(dir.path()).expect("read").count(),
        0,
        "nothing was written"
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
fn murmur_new_scaffolds_build_and_pass_their_tests_for_every_world_in_every_language() {
    let xtask = repo().join("target/debug/xtask");
    assert!(
        xtask.exists(),
        "{} is missing: run the tests with `cargo xtask test`",
        xtask.display()
    );
    let dir = tempfile::tempdir().expect("tempdir");
    let plugins = dir.path().join("plugins");
    let components = dir.path().join("components");
    std::fs::create_dir_all(&plugins).expect("mkdir");
    // A plugins workspace like the repository's, with no plugin yet: `murmur new` adds
    // each Rust one to it. The repository's lockfile keeps the build offline.
    let sdk = repo().join("plugins/sdk");
    let workspace =
        std::fs::read_to_string(repo().join("plugins/Cargo.toml")).expect("plugins workspace");
    let members = workspace
        .lines()
        .find(|l| l.starts_with("members = ["))
        .expect("members");
    let workspace = workspace.replace(members, "members = []").replace(
        "murmur-guest = { path = \"sdk\" }",
        &format!(
            "murmur-guest = {{ path = {:?} }}",
            sdk.display().to_string()
        ),
    );
    std::fs::write(plugins.join("Cargo.toml"), workspace).expect("workspace");
    std::fs::copy(
        repo().join("plugins/Cargo.lock"),
        plugins.join("Cargo.lock"),
    )
    .expect("lockfile");
    let worlds = ["agent", "validator", "router", "context-provider"];
    let mut made = Vec::new();
    for lang in ["rust", "js", "python"] {
        for world in worlds {
            let name = format!("{}-{lang}", world.replace("context-provider", "provider"));
            let out = murmur()
                .args(["new", world, &name, "--lang", lang, "--plugins"])
                .arg(&plugins)
                .arg("--components")
                .arg(&components)
                .output()
                .expect("murmur new");
            assert!(
                out.status.success(),
                "{world} in {lang}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            let test = match lang {
                "rust" => plugins.join(&name).join("test.toml"),
                "js" => plugins.join("js").join(format!("{name}.test.toml")),
                _ => plugins.join("python").join(&name).join("test.toml"),
            };
            let component = match lang {
                "rust" => components.join(format!("{name}.wasm")),
                "js" => components.join(format!("js-{name}.wasm")),
                _ => components.join(format!("py-{name}.wasm")),
            };
            made.push((world, lang, name, test, component));
        }
    }
    // Built as the repository's own plugins are.
    let built = std::process::Command::new(&xtask)
        .arg("build-plugins")
        .arg("--plugins")
        .arg(&plugins)
        .arg("--out")
        .arg(&components)
        .output()
        .expect("xtask build-plugins");
    assert!(
        built.status.success(),
        "{}",
        String::from_utf8_lossy(&built.stderr)
    );
    for (world, lang, name, test, component) in &made {
        let report = murmur()
            .args(["inspect", "--json"])
            .arg(component)
            .output()
            .expect("inspect");
        assert!(
            report.status.success(),
            "{world} in {lang}: {}",
            String::from_utf8_lossy(&report.stderr)
        );
        let report: serde_json::Value = serde_json::from_slice(&report.stdout).expect("json");
        assert_eq!(report["world"], *world, "{lang}");
        let run = murmur()
            .args(["run", "--json", "--store", "memory"])
            .arg(test)
            .output()
            .expect("run its test");
        assert!(
            run.status.success(),
            "{world} in {lang}: {}",
            String::from_utf8_lossy(&run.stderr)
        );
        let summary: serde_json::Value = serde_json::from_slice(&run.stdout).expect("summary");
        assert_eq!(summary["status"], "complete", "{world} in {lang}");
        if *world == "agent" {
            assert_eq!(summary["by_type"]["Response"], 1, "{lang}: {summary}");
            assert_eq!(summary["agents"][name.as_str()]["invocations"], 1, "{lang}");
        }
    }
}

#[test]
fn murmur_new_scaffolds_every_rust_world_into_the_plugins_workspace_and_refuses_clashes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let plugins = dir.path().join("plugins");
    std::fs::create_dir_all(&plugins).expect("mkdir");
    std::fs::write(
        plugins.join("Cargo.toml"),
        "[workspace]\nmembers = [\"sdk\"]\n",
    )
    .expect("ws");
    for (world, name) in [
        ("agent", "a1"),
        ("validator", "v1"),
        ("router", "r1"),
        ("context-provider", "c1"),
    ] {
        let out = murmur()
            .args(["new", world, name, "--plugins"])
            .arg(&plugins)
            .output()
            .expect("new");
        assert!(
            out.status.success(),
            "{world}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let lib = std::fs::read_to_string(plugins.join(name).join("src/lib.rs")).expect("lib.rs");
        assert!(lib.contains("murmur_guest::export_"), "{lib}");
        let test = plugins.join(name).join("test.toml");
        murmur::Manifest::load(&test).expect("its test workflow parses");
    }
    let ws = std::fs::read_to_string(plugins.join("Cargo.toml")).expect("ws");
    assert!(
        ws.contains("members = [\"sdk\", \"a1\", \"v1\", \"r1\", \"c1\"]"),
        "{ws}"
    );
    let again = murmur()
        .args(["new", "agent", "a1", "--plugins"])
        .arg(&plugins)
        .output()
        .expect("new");
    assert_eq!(again.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&again.stderr).contains("already exists"));
}

#[test]
fn murmur_new_scaffolds_every_world_in_javascript_and_python_with_the_grants_their_toolchains_need()
{
    let dir = tempfile::tempdir().expect("tempdir");
    let plugins = dir.path().join("plugins");
    for (world, grants) in [
        ("agent", None),
        ("validator", Some("grants = [\"blackboard\", \"llm\"]")),
        ("router", Some("grants = [\"llm\"]")),
        ("context-provider", Some("grants = [\"blackboard\"]")),
    ] {
        for lang in ["js", "python"] {
            let name = format!("{lang}-{world}");
            let out = murmur()
                .args(["new", world, &name, "--lang", lang, "--plugins"])
                .arg(&plugins)
                .output()
                .expect("new");
            assert!(
                out.status.success(),
                "{world} {lang}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            let (source, test) = if lang == "js" {
                (
                    plugins.join(format!("js/{name}.js")),
                    plugins.join(format!("js/{name}.test.toml")),
                )
            } else {
                (
                    plugins.join(format!("python/{name}/app.py")),
                    plugins.join(format!("python/{name}/test.toml")),
                )
            };
            let source = std::fs::read_to_string(source).expect("source");
            // cargo xtask build-plugins builds it against the world it names.
            if world != "agent" {
                assert!(
                    source.contains(&format!("murmur-world: {world}")),
                    "{source}"
                );
            }
            let test = std::fs::read_to_string(test).expect("test.toml");
            match grants {
                Some(g) => assert!(test.contains(g), "{test}"),
                None => assert!(!test.contains("grants"), "{test}"),
            }
        }
    }
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
