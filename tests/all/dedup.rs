//! Deduplication: a discovery similar enough to open or done work of its phase is recorded
//! as a duplicate, not scheduled, and raises the original's priority.

use crate::helpers::*;
use murmur::RunStatus;
use murmur::work::{Priority, WorkStatus};

fn worker(filter: &str) -> String {
    probe(
        "worker",
        "mode = \"echo\", emit_type = \"Note\"",
        "WorkDiscovery",
        Some(filter),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_similar_discovery_is_recorded_as_a_duplicate_and_not_scheduled() {
    let text = format!(
        "[workflow]\nname = \"d\"\n{PHASES_AND_NOTE}{}{}{}{}",
        worker("true"),
        discovery(
            "Caching pattern could optimize all API routes",
            "analysis",
            ""
        ),
        discovery(
            "A caching pattern could optimise all the API routes",
            "analysis",
            ""
        ),
        discovery("Rotate the signing keys", "analysis", ""),
    );
    let run = run(&text).await;
    assert_eq!(run.summary.status, RunStatus::Complete);
    assert_eq!(run.summary.work.duplicates, 1);
    assert_eq!(run.summary.phases["analysis"].duplicate, 1);
    assert_eq!(
        run.summary.agents["worker"].invocations, 2,
        "the duplicate was not run"
    );
    let original = run.work("Caching pattern could optimize all API routes");
    let dup = run.work("A caching pattern could optimise all the API routes");
    assert_eq!(dup.status(), WorkStatus::Duplicate);
    assert_eq!(dup.duplicate_of(), Some(original.id));
    assert!(dup.reason().expect("reason").contains("similarity 1.00"));
    assert_eq!(original.duplicates(), 1);
    // Recorded, never dropped: the duplicate discovery is on the blackboard.
    assert_eq!(run.artifacts("WorkDiscovery").len(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_work_in_another_phase_is_not_a_duplicate() {
    let text = format!(
        "[workflow]\nname = \"d\"\n{PHASES_AND_NOTE}{}{}{}",
        worker("true"),
        discovery("Harden the session store", "analysis", ""),
        discovery("Harden the session store", "validation", ""),
    );
    let run = run(&text).await;
    assert_eq!(run.summary.work.duplicates, 0);
    assert_eq!(run.summary.agents["worker"].invocations, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_higher_priority_duplicate_raises_the_originals_priority() {
    // One worker at a time: the queue order shows the priorities.
    let text = format!(
        "[workflow]\nname = \"d\"\nlimits = {{ concurrency = 1 }}\n{PHASES_AND_NOTE}{}{}{}{}",
        worker("true"),
        discovery(
            "Patch the token parser",
            "analysis",
            ", priority = \"high\""
        ),
        discovery(
            "Upgrade the TLS library",
            "analysis",
            ", priority = \"low\""
        ),
        discovery(
            "Upgrade the TLS libraries",
            "analysis",
            ", priority = \"critical\""
        ),
    );
    let run = run(&text).await;
    let original = run.work("Upgrade the TLS library");
    assert_eq!(original.priority, Priority::Critical);
    assert_eq!(
        run.work("Upgrade the TLS libraries").status(),
        WorkStatus::Duplicate
    );
    let order: Vec<String> = run
        .artifacts("Note")
        .iter()
        .map(|n| n.payload["description"].as_str().unwrap_or("").to_string())
        .collect();
    assert_eq!(order, ["Upgrade the TLS library", "Patch the token parser"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_router_plugin_can_replace_the_similarity_measure() {
    // The built-in measure folds plurals and drops stop words: these two are equal (1.0).
    // triage's (the SDK default) does neither: 2 shared words of 5 (0.4).
    let body = |dedup: &str| {
        format!(
            "[workflow]\nname = \"d\"\n{PHASES_AND_NOTE}[dedup]\nthreshold = 0.5\n{dedup}\n[[plugin]]\nname = \"triage\"\npath = \"{{plugin:triage}}\"\nworld = \"router\"\n{}{}{}",
            worker("true"),
            discovery("fix the login bug", "analysis", ""),
            discovery("fix login bugs", "analysis", ""),
        )
    };
    let builtin = run(&body("")).await;
    assert_eq!(builtin.summary.work.duplicates, 1);
    let plugin = run(&body("plugin = \"triage\"")).await;
    assert_eq!(plugin.summary.work.duplicates, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dedup_can_be_turned_off() {
    let text = format!(
        "[workflow]\nname = \"d\"\n{PHASES_AND_NOTE}[dedup]\nenabled = false\n{}{}{}",
        worker("true"),
        discovery("same", "analysis", ""),
        discovery("same", "analysis", ""),
    );
    let run = run(&text).await;
    assert_eq!(run.summary.work.duplicates, 0);
    assert_eq!(run.summary.agents["worker"].invocations, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_similarity_plugin_does_not_hold_up_other_agents_commits() {
    // `ponder`'s similarity() spins, then calls the thinker's discovery a duplicate of the
    // input discovery. Meanwhile the ticker works through its inputs on the other worker.
    // Were the scoring done under the run's lock, no tick could commit until the
    // discovery did: at most the one in flight would.
    let thinker = r#"mode = "discover", discoveries = [{ description = "Plan the rollout", phase = "analysis", done_definition = "planned", discovered_by = "thinker", metadata = { spin = 1000000000 } }]"#;
    let text = format!(
        "[workflow]\nname = \"d\"\nlimits = {{ concurrency = 2 }}\n{PHASES_AND_NOTE}[dedup]\nplugin = \"ponder\"\n[[type]]\nname = \"Go\"\nschema = {{ type = \"object\" }}\n[[type]]\nname = \"Tick\"\nschema = {{ type = \"object\" }}\n[[plugin]]\nname = \"ponder\"\npath = \"{{plugin:ponder}}\"\nworld = \"router\"\nlimits = {{ timeout_ms = 120000 }}\n{}{}{}\n[[input]]\ntype = \"Go\"\npayload = {{}}\n{}\n[[input]]\ntype = \"Tick\"\ncount = 400\npayload = {{ n = \"{{index}}\" }}\n",
        probe("thinker", thinker, "Go", None),
        probe(
            "ticker",
            "mode = \"echo\", emit_type = \"Note\"",
            "Tick",
            None
        ),
        worker("true"),
        discovery("Write the release notes", "analysis", ""),
    );
    let wf = load(&text).expect("loads");
    let store: std::sync::Arc<dyn murmur::Store> = std::sync::Arc::new(murmur::MemoryStore::new());
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let summary = murmur::Scheduler::new(std::sync::Arc::new(wf), store)
        .with_events(tx)
        .run()
        .await
        .expect("run");
    assert_eq!(summary.status, RunStatus::Complete);
    assert_eq!(summary.work.duplicates, 1, "ponder decided: a duplicate");
    assert_eq!(summary.agents["ticker"].invocations, 400);
    let mut events = Vec::new();
    while let Ok(e) = rx.try_recv() {
        events.push(e);
    }
    use murmur::observe::Event;
    let position = |wanted: &dyn Fn(&Event) -> bool| {
        events
            .iter()
            .position(wanted)
            .expect("the thinker's events")
    };
    let started =
        position(&|e| matches!(e, Event::InvocationStarted { agent, .. } if agent == "thinker"));
    let done =
        position(&|e| matches!(e, Event::InvocationDone { agent, .. } if agent == "thinker"));
    let ticks_meanwhile = events[started..done]
        .iter()
        .filter(|e| matches!(e, Event::InvocationDone { agent, .. } if agent == "ticker"))
        .count();
    assert!(
        ticks_meanwhile >= 10,
        "only {ticks_meanwhile} ticks committed while the discovery was scored"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_of_discoveries_larger_than_the_window_still_finds_its_own_repeat() {
    // window = 4: the index trims while the thinker's eight discoveries are indexed, in
    // one commit; the first is open (in that commit), so it stays an original.
    let thinker = discovering(&[
        "Rotate the signing keys",
        "Map the billing flows",
        "Index the audit trail",
        "Profile the checkout page",
        "Draft the incident runbook",
        "Review the cache headers",
        "Trim the docker images",
        "Rotate the signing key",
    ]);
    let text = format!(
        "[workflow]\nname = \"d\"\nlimits = {{ concurrency = 1 }}\n{PHASES_AND_NOTE}[dedup]\nwindow = 4\n[[type]]\nname = \"Go\"\nschema = {{ type = \"object\" }}\n{}{}\n[[input]]\ntype = \"Go\"\npayload = {{}}\n",
        worker("true"),
        probe("thinker", &thinker, "Go", None),
    );
    let run = run(&text).await;
    assert_eq!(run.summary.status, RunStatus::Complete);
    let first = run.work("Rotate the signing keys");
    let again = run.work("Rotate the signing key");
    assert_eq!(again.status(), WorkStatus::Duplicate);
    assert_eq!(again.duplicate_of(), Some(first.id));
    assert_eq!(run.summary.work.duplicates, 1);
    assert_eq!(run.summary.agents["worker"].invocations, 7);
}

/// A thinker probe's configuration: one invocation discovers `descriptions` in the
/// analysis phase, in this order, in one commit.
fn discovering(descriptions: &[&str]) -> String {
    let discoveries: Vec<String> = descriptions
        .iter()
        .map(|d| {
            format!(
                "{{ description = \"{d}\", phase = \"analysis\", done_definition = \"done\", discovered_by = \"thinker\" }}"
            )
        })
        .collect();
    format!(
        "mode = \"discover\", discoveries = [{}]",
        discoveries.join(", ")
    )
}

/// The dedup window test's run: `orig` done first, `audit` left open until last, and a
/// thinker that discovers six new items, then both again.
async fn a_run_with_a_dedup_window(window: &str) -> Run {
    let thinker = discovering(&[
        "Map the billing flows",
        "Index the audit trail",
        "Profile the checkout page",
        "Draft the incident runbook",
        "Review the cache headers",
        "Trim the docker images",
        "Rotate the signing key",
        "Audit the session cookie",
    ]);
    let text = format!(
        "[workflow]\nname = \"d\"\nlimits = {{ concurrency = 1 }}\n{PHASES_AND_NOTE}[dedup]\n{window}\n[[type]]\nname = \"Go\"\nschema = {{ type = \"object\" }}\n{}{}{}\n[[input]]\ntype = \"Go\"\npayload = {{}}\n{}",
        worker("true"),
        probe("thinker", &thinker, "Go", None),
        discovery(
            "Rotate the signing keys",
            "analysis",
            ", priority = \"critical\""
        ),
        discovery(
            "Audit the session cookies",
            "analysis",
            ", priority = \"low\""
        ),
    );
    run(&text).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn done_work_older_than_the_window_is_no_original_and_open_work_always_is() {
    // window = 4: six discoveries push the done "Rotate the signing keys" out of it.
    let run = a_run_with_a_dedup_window("window = 4").await;
    assert_eq!(run.summary.status, RunStatus::Complete);
    assert_eq!(
        run.work("Rotate the signing key").status(),
        WorkStatus::Done,
        "done work outside the window is no original"
    );
    let audit = run.work("Audit the session cookies");
    let again = run.work("Audit the session cookie");
    assert_eq!(again.status(), WorkStatus::Duplicate, "open work always is");
    assert_eq!(again.duplicate_of(), Some(audit.id));
    assert_eq!(run.summary.work.duplicates, 1);
    assert_eq!(run.summary.agents["worker"].invocations, 9);

    // The same run, every done item compared: both are duplicates.
    let all = a_run_with_a_dedup_window("window = 0").await;
    assert_eq!(all.summary.work.duplicates, 2);
    assert_eq!(
        all.work("Rotate the signing key").status(),
        WorkStatus::Duplicate
    );
    assert_eq!(all.summary.agents["worker"].invocations, 8);
    // And by default (65,536 items) too.
    let default = a_run_with_a_dedup_window("").await;
    assert_eq!(default.summary.work.duplicates, 2);
}
