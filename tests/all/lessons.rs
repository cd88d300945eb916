//! Lessons: a run's findings distilled by a real retrospective component, kept in a real
//! store, read by the next run's agents; reviewed and forgotten through the command
//! line; proved by replay; and contained when the retrospective misbehaves.

use crate::helpers::*;
use murmur::RunStatus;
use murmur::blackboard::Store as _;
use murmur::lessons::Lesson;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::sync::Arc;

fn demo() -> PathBuf {
    repo().join("examples/auth-system/workflow.toml")
}

/// `murmur ARGS`: its exit status and stdout, stderr shown on failure.
fn murmur_ok(args: &[&str]) -> String {
    let out = murmur().args(args).output().expect("murmur");
    assert!(
        out.status.success(),
        "murmur {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// One `murmur run --json` of the auth demo on `db`: its summary.
fn run_demo(db: &Path) -> Value {
    let store = format!("sqlite:{}", db.display());
    let text = murmur_ok(&[
        "run",
        demo().to_str().expect("utf-8"),
        "--store",
        &store,
        "--json",
        "-q",
    ]);
    serde_json::from_str(&text).expect("summary JSON")
}

fn work(summary: &Value, counter: &str) -> u64 {
    summary["work"][counter].as_u64().expect(counter)
}

fn lessons_of(db: &Path) -> Vec<Value> {
    let store = format!("sqlite:{}", db.display());
    let text = murmur_ok(&["lessons", "list", "--store", &store, "--json"]);
    serde_json::from_str(&text).expect("lessons JSON")
}

#[test]
fn the_auth_demo_run_twice_is_refused_less_the_second_time_and_not_once_its_lessons_are_forgotten()
{
    let dir = tempfile::tempdir().expect("tempdir");
    let db = dir.path().join("auth.db");
    let first = run_demo(&db);
    assert_eq!(first["status"], "complete");
    assert!(work(&first, "rejected_outputs") >= 1, "{first}");
    assert!(work(&first, "retries") >= 1, "{first}");
    let distilled = &first["lessons"]["distilled"];
    assert_eq!(distilled["retrospective"], "retrospective");
    assert!(
        !distilled["added"].as_array().expect("added").is_empty(),
        "{distilled}"
    );
    assert!(
        first["lessons"]["used"]
            .as_object()
            .expect("used")
            .is_empty()
    );

    let second = run_demo(&db);
    assert_eq!(second["status"], "complete");
    assert!(
        work(&second, "rejected_outputs") < work(&first, "rejected_outputs"),
        "{second}"
    );
    assert!(
        work(&second, "retries") < work(&first, "retries"),
        "{second}"
    );
    let used = second["lessons"]["used"]["implementation"]
        .as_array()
        .expect("implementation used lessons");
    assert!(!used.is_empty());
    // The lesson about the refused draft helped: its problem did not come back.
    let kept = lessons_of(&db);
    let tests = kept
        .iter()
        .find(|l| l["text"].as_str().is_some_and(|t| t.contains("test_files")))
        .expect("a lesson about the missing tests");
    assert_eq!(
        (tests["uses"].as_u64(), tests["helped"].as_u64()),
        (Some(1), Some(1))
    );
    assert_eq!(tests["phase"], "implementation");
    assert_eq!(tests["by"], "retrospective");
    assert_eq!(tests["source_run"], first["workflow_id"]);
    // `status` names the lessons each phase used.
    let store = format!("sqlite:{}", db.display());
    let status = murmur_ok(&["status", "--store", &store]);
    assert!(
        status.contains("lessons used in implementation: "),
        "{status}"
    );

    let forgot = murmur()
        .args(["lessons", "forget", "--store", &store, "--all"])
        .output()
        .expect("forget");
    assert!(forgot.status.success());
    assert!(lessons_of(&db).is_empty());
    let third = run_demo(&db);
    assert_eq!(
        (work(&third, "rejected_outputs"), work(&third, "retries")),
        (work(&first, "rejected_outputs"), work(&first, "retries")),
        "{third}"
    );
    assert!(
        third["lessons"]["used"]
            .as_object()
            .expect("used")
            .is_empty()
    );
}

#[test]
fn lessons_are_shown_by_id_prefix_forgotten_one_by_one_and_unknown_ids_are_named() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = dir.path().join("auth.db");
    run_demo(&db);
    let store = format!("sqlite:{}", db.display());
    let kept = lessons_of(&db);
    assert!(kept.len() >= 2, "{kept:?}");
    for l in &kept {
        let evidence = l["evidence"].as_array().expect("evidence");
        assert!(!evidence.is_empty() && evidence.len() <= 32, "{l}");
        assert_eq!(l["workflow"], "auth-system");
    }
    let id = kept[0]["id"].as_str().expect("id");
    let shown = murmur_ok(&["lessons", "show", "--store", &store, id]);
    assert!(
        shown.contains(kept[0]["text"].as_str().expect("text")),
        "{shown}"
    );
    assert!(shown.contains("evidence"), "{shown}");

    // A prefix every lesson shares names more than one.
    let ambiguous = murmur()
        .args(["lessons", "show", "--store", &store, &id[..8]])
        .output()
        .expect("show");
    assert!(!ambiguous.status.success());
    assert!(
        String::from_utf8_lossy(&ambiguous.stderr).contains("names"),
        "{}",
        String::from_utf8_lossy(&ambiguous.stderr)
    );
    let unknown = murmur()
        .args(["lessons", "forget", "--store", &store, "ffffffff-nothing"])
        .output()
        .expect("forget");
    assert!(!unknown.status.success());
    assert!(String::from_utf8_lossy(&unknown.stderr).contains("no lesson ffffffff-nothing"));
    assert_eq!(lessons_of(&db).len(), kept.len(), "nothing forgotten");

    murmur_ok(&["lessons", "forget", "--store", &store, id]);
    let left = lessons_of(&db);
    assert_eq!(left.len(), kept.len() - 1);
    assert!(left.iter().all(|l| l["id"] != kept[0]["id"]));
}

#[test]
fn eval_replays_the_recorded_run_with_and_without_lessons_and_writes_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = dir.path().join("auth.db");
    let first = run_demo(&db);
    let tape = dir.path().join("empty.tape");
    std::fs::write(&tape, "").expect("tape");
    let before = lessons_of(&db);
    let store = format!("sqlite:{}", db.display());
    let text = murmur_ok(&[
        "lessons",
        "eval",
        "--store",
        &store,
        "--tape",
        tape.to_str().expect("utf-8"),
        "--json",
    ]);
    let c: Value = serde_json::from_str(&text).expect("comparison JSON");
    assert_eq!(c["run"], first["workflow_id"]);
    assert_eq!(c["fallback"], "refuse");
    let (without, with) = (&c["without"], &c["with"]);
    assert_eq!(without["lessons_used"], 0);
    assert!(with["lessons_used"].as_u64().expect("used") > 0);
    assert_eq!(
        without["rejected_outputs"],
        first["work"]["rejected_outputs"]
    );
    assert!(
        with["rejected_outputs"].as_u64() < without["rejected_outputs"].as_u64(),
        "{c}"
    );
    assert!(
        with["retries"].as_u64() < without["retries"].as_u64(),
        "{c}"
    );
    // The store is as it was: the same lessons, one run.
    assert_eq!(lessons_of(&db), before);
    let runs = murmur::blackboard::DurableStore::sqlite(&db)
        .expect("open")
        .runs()
        .expect("runs");
    assert_eq!(runs.len(), 1);

    let missing = murmur()
        .args([
            "lessons",
            "eval",
            "--store",
            &store,
            "--tape",
            "/nonexistent/tape",
        ])
        .output()
        .expect("eval");
    assert!(!missing.status.success());
    assert!(String::from_utf8_lossy(&missing.stderr).contains("/nonexistent/tape"));
}

/// The auth demo's manifest with its plugins found where the tests build them, and its
/// retrospective replaced by `[[plugin]]` text `retro` named `retro`.
fn demo_with(retro: &str) -> String {
    let text = std::fs::read_to_string(demo()).expect("demo");
    let mut text = text.replace(
        "../../target/plugins/",
        &format!("{}/", plugin("analyzer").parent().expect("dir").display()),
    );
    let start = text.find("# Lessons:").expect("lessons section");
    text.truncate(start);
    format!("{text}\n{retro}\n[lessons]\nretrospective = \"retro\"\n")
}

fn hostile(mode: &str, limits: &str) -> String {
    format!(
        "[[plugin]]\nname = \"retro\"\npath = \"{{plugin:hostile-retrospective}}\"\nworld = \"retrospective\"\nconfig = {{ mode = \"{mode}\", text = \"Do it right\" }}\n{limits}"
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_misbehaving_retrospective_teaches_nothing_and_the_run_ends_as_it_would() {
    let tight = "[plugin.limits]\ntimeout_ms = 300\nmemory_mb = 16\n";
    for (mode, expected) in [
        ("trap", "trap"),
        ("loop", "timeout"),
        ("memory", "memory"),
        (
            "foreign-evidence",
            "is not among the artifacts of the run's findings",
        ),
        (
            "unknown-phase",
            "'nowhere' is not a phase of workflow 'auth-system'",
        ),
        ("flood", "answered 100 lessons; at most 16"),
        ("empty-text", "its text is empty"),
    ] {
        let run = run(&demo_with(&hostile(mode, tight))).await;
        assert_eq!(run.summary.status, RunStatus::Complete, "{mode}");
        let report = run.summary.lessons.as_ref().expect("a lessons report");
        let distilled = report.distilled.as_ref().expect("distilled");
        let error = distilled.error.as_deref().unwrap_or_default();
        assert!(error.contains("retrospective 'retro'"), "{mode}: {error}");
        assert!(error.contains(expected), "{mode}: {error}");
        assert!(distilled.added.is_empty(), "{mode}");
        assert!(
            run.store.lessons(None).expect("lessons").is_empty(),
            "{mode}"
        );
    }
}

/// Work for tenant acme that its agent cannot do: the failure's evidence is acme's, and
/// the hostile retrospective (mode `each`) makes one lesson of it.
fn tenants_manifest() -> String {
    format!(
        r#"[workflow]
name = "tenants"
[recovery]
enabled = false
{PHASES_AND_NOTE}
{}
{}
[[input]]
type = "WorkDiscovery"
visibility = {{ tenant = "acme" }}
payload = {{ description = "Migrate the acme ledger", phase = "analysis", done_definition = "done", discovered_by = "user" }}
{}
[lessons]
retrospective = "retro"
"#,
        probe("acme-agent", "mode = \"fail\"", "WorkDiscovery", None).replacen(
            "world = \"agent\"\n",
            "world = \"agent\"\ntenant = \"acme\"\n",
            1
        ),
        probe(
            "other-agent",
            "mode = \"echo\", emit_type = \"Note\"",
            "Note",
            None
        ),
        hostile("each", ""),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lesson_carries_its_evidence_visibility_and_reaches_only_agents_that_may_see_it() {
    let text = tenants_manifest();
    let wf = load(&text).expect("load");
    let store: Arc<dyn murmur::Store> = Arc::new(murmur::MemoryStore::new());
    let summary = murmur::scheduler::Scheduler::new(Arc::new(wf), store.clone())
        .run()
        .await
        .expect("run");
    assert_eq!(summary.status, RunStatus::Failed);
    let kept: Vec<Lesson> = store.lessons(Some("tenants")).expect("lessons");
    assert_eq!(kept.len(), 1, "{kept:?}");
    assert_eq!(kept[0].tenant(), Some("acme"));
    assert_eq!(kept[0].text, "Do it right (acme-agent)");

    // The next run: acme's agent reads the lesson; an agent of no tenant does not.
    let wf = load(&text).expect("load");
    wf.use_lessons(murmur::lessons::inject::choose(
        &kept,
        &["analysis".to_string()],
        2000,
    ));
    let instructions = |agent: &str| {
        let plugin = &wf.agent(agent).expect("agent").plugin;
        wf.phase_for("analysis", &plugin.viewer())
            .expect("phase")
            .info
            .instructions
            .clone()
    };
    assert!(instructions("acme-agent").contains("Do it right (acme-agent)"));
    assert!(!instructions("other-agent").contains("Do it right"));
    assert!(!instructions("other-agent").contains(murmur::lessons::inject::HEADING));
}

#[test]
fn a_lessons_table_naming_the_wrong_plugin_or_a_bad_budget_is_refused_with_its_line() {
    for (lessons, expected) in [
        (
            "retrospective = \"review\"",
            "lessons.retrospective names plugin 'review', which implements world 'validator', not 'retrospective'",
        ),
        (
            "retrospective = \"nobody\"",
            "lessons.retrospective names 'nobody', which is not a [[plugin]] of this manifest",
        ),
        (
            "budget = 0",
            "lessons.budget is 0; expected 1 to 100 lessons per phase",
        ),
        ("merge_at = 1.5", "lessons.merge_at is 1.5"),
        ("colour = \"blue\"", "unknown field `colour`"),
    ] {
        let text = demo_with("").replace(
            "[lessons]\nretrospective = \"retro\"\n",
            &format!("[lessons]\n{lessons}\n"),
        );
        let line = text
            .lines()
            .position(|l| l.starts_with("[lessons]"))
            .expect("lessons line")
            + 1;
        let err = load(&text).err().expect("refused").to_string();
        assert!(err.contains(expected), "{lessons}: {err}");
        assert!(
            err.contains(&format!("workflow.toml:{line}:"))
                || err.contains(&format!("workflow.toml:{}:", line + 1)),
            "{lessons}: {err}"
        );
    }
}

#[test]
fn a_server_keeps_lists_forgets_and_distils_lessons_over_its_api() {
    use crate::serve::{Server, start};
    use serde_json::json;
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::start(&dir.path().join("serve.db"));
    let manifest = json!({ "manifest_path": demo().display().to_string() });
    let first = start(&server, manifest.clone());
    let summary = server.wait_ended(&first);
    assert_eq!(summary["status"], "complete");
    assert!(work(&summary, "rejected_outputs") >= 1);
    let added = summary["lessons"]["distilled"]["added"]
        .as_array()
        .expect("added")
        .len();
    assert!(added >= 2, "{summary}");

    let (status, list) = server.get("/v1/lessons?workflow=auth-system");
    assert_eq!(status, 200, "{list}");
    let lessons = list["lessons"].as_array().expect("lessons");
    assert_eq!(lessons.len(), added);
    let (_, implementation) = server.get("/v1/lessons?workflow=auth-system&phase=implementation");
    assert!(
        implementation["lessons"]
            .as_array()
            .expect("lessons")
            .iter()
            .all(|l| l["phase"] == "implementation")
    );
    let (_, none) = server.get("/v1/lessons?workflow=another");
    assert_eq!(none["lessons"], json!([]));
    let id = lessons[0]["id"].as_str().expect("id").to_string();
    let (status, one) = server.get(&format!("/v1/lessons/{id}"));
    assert_eq!((status, &one["id"]), (200, &lessons[0]["id"]));
    assert_eq!(one["source_run"], first.as_str());

    // The next run through the server reads them: no refused draft.
    let second = start(&server, manifest);
    let again = server.wait_ended(&second);
    assert!(
        work(&again, "rejected_outputs") < work(&summary, "rejected_outputs"),
        "{again}"
    );
    assert!(again["lessons"]["used"]["implementation"].is_array());

    let (status, _) = server.request("DELETE", &format!("/v1/lessons/{id}"), &[], None);
    assert_eq!(status, 204);
    let (status, gone) = server.get(&format!("/v1/lessons/{id}"));
    assert_eq!(status, 404, "{gone}");
    assert!(
        gone.to_string().contains(&format!("no lesson {id}")),
        "{gone}"
    );
    let (status, _) = server.request("DELETE", &format!("/v1/lessons/{id}"), &[], None);
    assert_eq!(status, 404);

    // Distilling the first run again finds what was forgotten and keeps it anew.
    let (status, d) = server.post(&format!("/v1/workflows/{first}/lessons/distill"), json!({}));
    assert_eq!(status, 200, "{d}");
    assert!(d["proposed"].as_u64().expect("proposed") >= 2, "{d}");
    assert!(d["error"].is_null(), "{d}");
    let (_, after) = server.get("/v1/lessons?workflow=auth-system");
    assert_eq!(after["lessons"].as_array().expect("lessons").len(), added);
    let (status, _) = server.post("/v1/workflows/no-such-run/lessons/distill", json!({}));
    assert_eq!(status, 404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_llm_retrospective_keeps_the_models_lessons_on_the_evidence_it_cites() {
    use serde_json::json;
    // An OpenAI-compatible server on loopback: it reads the findings the retrospective
    // sent and answers one lesson on the first finding's evidence.
    let fake = crate::llm::serve(|_, body| {
        let user = body["messages"]
            .as_array()
            .and_then(|m| m.last())
            .and_then(|m| m["content"].as_str())
            .unwrap_or_default();
        let review: Value = serde_json::from_str(user).unwrap_or_default();
        let f = &review["findings"][0];
        let answer = json!({ "lessons": [{
            "phase": f["phase"],
            "text": "Write the tests together with the code.",
            "evidence": f["evidence"],
        }] });
        crate::llm::ok(&answer.to_string(), 40)
    });
    let retro = format!(
        "[[plugin]]\nname = \"retro\"\npath = \"{{plugin:llm-retrospective}}\"\nworld = \"retrospective\"\ngrants = [\"llm\"]\n\n[llm]\nbase_url = \"{}\"\nmodel = \"test-model\"\n",
        fake.url
    );
    let run = run(&demo_with(&retro)).await;
    assert_eq!(run.summary.status, RunStatus::Complete);
    let distilled = run
        .summary
        .lessons
        .as_ref()
        .and_then(|l| l.distilled.clone())
        .expect("distilled");
    assert_eq!(distilled.error, None);
    assert_eq!((distilled.proposed, distilled.added.len()), (1, 1));
    let kept = run.store.lessons(Some("auth-system")).expect("lessons");
    assert_eq!(kept.len(), 1);
    assert_eq!(kept[0].text, "Write the tests together with the code.");
    assert_eq!(kept[0].by, "retro");
    assert!(!kept[0].evidence.is_empty());
    let usage = run.summary.llm.as_ref().expect("usage");
    assert!(
        usage.prompt_tokens + usage.completion_tokens > 0,
        "{usage:?}"
    );
}

#[test]
fn a_tenants_token_reads_only_the_lessons_whose_evidence_it_may_see_and_forgets_none() {
    use crate::serve::Server;
    use serde_json::json;
    let dir = tempfile::tempdir().expect("tempdir");
    let tokens = dir.path().join("tokens.toml");
    std::fs::write(
        &tokens,
        "[[token]]\nenv = \"T_ACME\"\ntenant = \"acme\"\n[[token]]\nenv = \"T_GLOBEX\"\ntenant = \"globex\"\n",
    )
    .expect("write");
    let (admin, acme, globex) = (
        "admin-token-0123456789",
        "acme-token-0123456789",
        "globex-token-0123456789",
    );
    let server = Server::start_with(
        &dir.path().join("serve.db"),
        &[
            "--token-env",
            "T_ADMIN",
            "--tokens",
            tokens.to_str().expect("utf-8"),
        ],
        &[("T_ADMIN", admin), ("T_ACME", acme), ("T_GLOBEX", globex)],
    );
    let call = |token: &str, method: &str, path: &str, body: Option<Value>| {
        let bearer = format!("Bearer {token}");
        let body = body.map(|b| b.to_string());
        server.request(
            method,
            path,
            &[("Authorization", &bearer)],
            body.as_deref().map(str::as_bytes),
        )
    };
    let (status, body) = call(
        admin,
        "POST",
        "/v1/workflows",
        Some(json!({ "manifest": expand(&tenants_manifest()) })),
    );
    assert_eq!(status, 201, "{body}");
    let id = body["workflow_id"].as_str().expect("id").to_string();
    let started = std::time::Instant::now();
    loop {
        let (_, summary) = call(admin, "GET", &format!("/v1/workflows/{id}"), None);
        if summary["status"] != "running" {
            assert_eq!(summary["status"], "failed", "{summary}");
            break;
        }
        assert!(
            started.elapsed() < std::time::Duration::from_secs(60),
            "still running"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let count = |token: &str| {
        let (status, list) = call(token, "GET", "/v1/lessons?workflow=tenants", None);
        assert_eq!(status, 200, "{list}");
        list["lessons"].as_array().expect("lessons").clone()
    };
    let all = count(admin);
    assert_eq!(all.len(), 1, "{all:?}");
    assert_eq!(all[0]["tenant"], "acme");
    assert_eq!(count(acme).len(), 1);
    assert!(
        count(globex).is_empty(),
        "globex may not see acme's evidence"
    );
    let lesson = format!("/v1/lessons/{}", all[0]["id"].as_str().expect("id"));
    let (status, _) = call(globex, "GET", &lesson, None);
    assert_eq!(status, 404);
    let (status, body) = call(acme, "DELETE", &lesson, None);
    assert_eq!(status, 403, "{body}");
    let (status, body) = call(
        acme,
        "POST",
        &format!("/v1/workflows/{id}/lessons/distill"),
        Some(json!({})),
    );
    assert_eq!(status, 403, "{body}");
    let (status, _) = call(admin, "DELETE", &lesson, None);
    assert_eq!(status, 204);
    assert!(count(admin).is_empty());
}

#[test]
fn a_lesson_that_stops_helping_is_retired_and_its_problem_proposed_again_stays_retired() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = dir.path().join("auth.db");
    // Runs 2 to 4 use every lesson; the LDAP failure and the duplicates come back in
    // each (no agent of the demo heeds those lessons), so after three misses in a row
    // their lessons retire, and the fifth run reads only the one that helps.
    let mut last = Value::Null;
    for _ in 0..5 {
        last = run_demo(&db);
    }
    let kept = lessons_of(&db);
    let (retired, active): (Vec<&Value>, Vec<&Value>) =
        kept.iter().partition(|l| l["retired"] == true);
    assert_eq!(active.len(), 1, "{kept:?}");
    assert!(
        active[0]["text"]
            .as_str()
            .expect("text")
            .contains("test_files")
    );
    assert_eq!(
        (active[0]["uses"].as_u64(), active[0]["helped"].as_u64()),
        (Some(4), Some(4))
    );
    assert_eq!(retired.len(), 3, "{kept:?}");
    for l in &retired {
        assert_eq!(
            (l["uses"].as_u64(), l["helped"].as_u64()),
            (Some(3), Some(0)),
            "{l}"
        );
    }
    let used = last["lessons"]["used"].as_object().expect("used");
    let ids: Vec<&Value> = used
        .values()
        .flat_map(|v| v.as_array().expect("ids"))
        .collect();
    assert_eq!(ids, [&active[0]["id"]], "{used:?}");
    // The retrospective proposed the same problems again: they merged into the retired
    // lessons, and nothing new was kept.
    let distilled = &last["lessons"]["distilled"];
    assert_eq!(distilled["added"], serde_json::json!([]), "{distilled}");
    assert_eq!(distilled["merged"].as_array().expect("merged").len(), 3);
}
