//! Misbehaving plugins are contained and classified while the rest of the workflow completes.

use crate::helpers::*;
use murmur::RunStatus;

/// The auth-system agents plus one probe in `mode`, triggered by the same analysis work.
fn with_probe(mode: &str, limits: &str) -> String {
    format!(
        r#"
[workflow]
name = "faulty"
# Containment alone: recovery work would send the bad probe more work
# (recovery has its own tests in loop_recovery.rs).
[recovery]
enabled = false
{AUTH_AGENTS}
[[plugin]]
name = "bad"
path = "{{plugin:probe}}"
world = "agent"
config = {{ mode = "{mode}" }}
limits = {{ {limits} }}
[[plugin.subscribe]]
type = "WorkDiscovery"
filter = "payload.phase == 'analysis'"
"#
    )
}

async fn assert_contained(mode: &str, limits: &str, class: &str) -> Run {
    let run = run(&with_probe(mode, limits)).await;
    let s = &run.summary;
    // The good agents do all their work (below); the bad one's failures fail both
    // analysis work items for good, and with recovery off nothing recovers them: the
    // run ends failed, naming them.
    assert_eq!(s.status, RunStatus::Failed, "{mode}: work failed for good");
    assert_eq!(s.failed_work.len(), 2, "{mode}: {:?}", s.failed_work);
    assert!(
        s.failed_work
            .iter()
            .all(|w| w.phase == "analysis" && w.reason.starts_with("bad: ")),
        "{mode}: {:?}",
        s.failed_work
    );
    assert_eq!(
        s.faults[class], 2,
        "{mode}: both analysis work items triggered a {class} fault"
    );
    assert_eq!(
        s.faults.values().sum::<u64>(),
        2,
        "{mode}: nothing else faulted: {:?}",
        s.faults
    );
    assert_eq!(s.agents["bad"].failed, 2);
    // The well-behaved agents did all their work.
    assert_eq!(s.agents["analyzer"].invocations, 2);
    assert_eq!(s.agents["implementer"].invocations, 4);
    assert_eq!(s.agents["validator"].invocations, 4);
    assert_eq!(s.agents["validator"].failed, 0);
    assert_eq!(run.artifacts("ValidationResult").len(), 4);
    run
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plugin_that_traps_is_contained_and_classified_trap() {
    let run = assert_contained("trap", "", "trap").await;
    // The work item it served is marked failed, with the reason.
    assert_eq!(run.summary.phases["analysis"].failed, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plugin_that_loops_forever_is_stopped_at_its_deadline_and_classified_timeout() {
    let started = std::time::Instant::now();
    assert_contained("loop", "timeout_ms = 300", "timeout").await;
    // Not a timing assertion on the host's speed: a broken deadline would hang forever.
    assert!(started.elapsed() < std::time::Duration::from_secs(60));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plugin_that_allocates_without_bound_hits_its_cap_and_is_classified_memory() {
    assert_contained("memory", "memory_mb = 16", "memory").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plugin_that_allocates_small_blocks_without_bound_is_classified_memory() {
    // Small blocks come from the guest SDK's size classes, not the standard allocator:
    // running out there must end the same way.
    assert_contained("memory-small", "memory_mb = 16", "memory").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_output_that_violates_its_schema_is_refused_and_stored_nowhere() {
    let run = assert_contained("schema", "", "invalid_output").await;
    // No WorkDiscovery with a numeric description exists anywhere.
    assert!(
        run.artifacts("WorkDiscovery")
            .iter()
            .all(|d| d.payload["description"].is_string())
    );
    assert_eq!(
        run.artifacts("WorkDiscovery").len(),
        10,
        "only the good cascade's discoveries"
    );
    let failed = run
        .store
        .invocations(&run.summary.workflow_id)
        .expect("invocations")
        .into_iter()
        .filter(|i| i.agent == "bad")
        .collect::<Vec<_>>();
    assert!(failed.iter().all(|i| i.outputs.is_empty()));
    let error = failed[0].error().unwrap_or_default().to_string();
    assert!(
        error.contains("violates its schema") && error.contains("/description"),
        "{error}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_output_that_is_not_json_is_classified_invalid_output() {
    assert_contained("garbage", "", "invalid_output").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn more_outputs_than_the_limit_is_classified_invalid_output() {
    let run = run(r#"
[workflow]
name = "flood"
[[type]]
name = "Note"
schema = { type = "object" }
[[plugin]]
name = "flooder"
path = "{plugin:probe}"
world = "agent"
config = { mode = "echo", count = 20 }
limits = { max_outputs = 10 }
[[plugin.subscribe]]
type = "Note"
[[input]]
type = "Note"
payload = {}
"#)
    .await;
    assert_eq!(run.summary.faults["invalid_output"], 1);
    assert_eq!(
        run.artifacts("Note").len(),
        1,
        "nothing of the flood was published"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plugin_error_fails_the_work_without_counting_as_a_fault() {
    let run = run(&with_probe("fail", "")).await;
    assert_eq!(run.summary.agents["bad"].failed, 2);
    assert!(run.summary.faults.values().all(|n| *n == 0));
    assert_eq!(run.summary.status, RunStatus::Failed);
    assert_eq!(run.summary.failed_work.len(), 2);
}

/// The auth-system agents plus an agent that fails on every AnalysisResult, watching the
/// analysis work as an observer or taking part in it.
fn with_side_consumer(observer: bool) -> String {
    format!(
        r#"
[workflow]
name = "side"
[recovery]
enabled = false
{AUTH_AGENTS}
[[plugin]]
name = "auditor"
path = "{{plugin:probe}}"
world = "agent"
config = {{ mode = "fail" }}
observer = {observer}
[[plugin.subscribe]]
type = "AnalysisResult"
"#
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_observer_fails_only_itself_not_the_work_it_watches() {
    let run = run(&with_side_consumer(true)).await;
    let s = &run.summary;
    assert_eq!(s.status, RunStatus::Complete, "{:?}", s.failed_work);
    assert_eq!(s.agents["auditor"].invocations, 2);
    assert_eq!(s.agents["auditor"].failed, 2);
    assert_eq!(s.work.recovery_spawned, 0);
    assert_eq!(s.phases["analysis"].failed, 0);
    assert_eq!(
        s.agents["analyzer"].invocations, 2,
        "the analysis ran once each"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_agent_that_takes_part_in_the_work_fails_it() {
    // Without `observer`, every invocation serving a work item decides its outcome.
    let run = run(&with_side_consumer(false)).await;
    let s = &run.summary;
    assert_eq!(s.status, RunStatus::Failed);
    assert_eq!(s.phases["analysis"].failed, 2);
    assert!(
        s.failed_work
            .iter()
            .all(|w| w.phase == "analysis" && w.reason.starts_with("auditor: ")),
        "{:?}",
        s.failed_work
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_guest_in_an_endless_loop_does_not_hold_up_the_others_and_is_cut_at_its_deadline() {
    // The spinner is claimed first and loops until its 5 s deadline; the 50 Notes for
    // the echo agent must all be done long before it is cut. One thread runs guest code:
    // the spinner yields it every epoch tick, so the echoes run beside it.
    let mut text = format!(
        "[workflow]\nname = \"spin\"\nlimits = {{ concurrency = 2, threads = 1 }}\n[retry]\nmax_attempts = 1\n[recovery]\nenabled = false\n{PHASES_AND_NOTE}\n[[type]]\nname = \"Spin\"\nschema = {{ type = \"object\" }}\n{}{}",
        probe("spinner", "mode = \"loop\"", "Spin", None).replacen(
            "world = \"agent\"\n",
            "world = \"agent\"\nlimits = { timeout_ms = 5000 }\n",
            1
        ),
        probe(
            "echo",
            "mode = \"echo\", emit_type = \"Note\"",
            "Note",
            None
        ),
    );
    text.push_str("\n[[input]]\ntype = \"Spin\"\npayload = {}\n");
    for i in 0..50 {
        text.push_str(&format!(
            "\n[[input]]\ntype = \"Note\"\npayload = {{ text = \"note {i}\" }}\n"
        ));
    }
    let run = run(&text).await;
    let s = &run.summary;
    assert_eq!(s.faults["timeout"], 1, "{:?}", s.faults);
    assert_eq!(s.agents["spinner"].failed, 1);
    assert_eq!(s.agents["echo"].invocations, 50);
    assert_eq!(s.agents["echo"].failed, 0);
    // Shown by the blackboard's own clock: every echo was published before the
    // spinner's deadline, i.e. while it was still looping.
    let inputs = run.artifacts("Spin");
    let start = inputs[0].created_at_ms;
    let echoed: Vec<u64> = run
        .artifacts("Note")
        .iter()
        .filter(|a| a.producer.as_str() == "echo")
        .map(|a| a.created_at_ms)
        .collect();
    assert_eq!(echoed.len(), 50);
    let last = echoed.iter().max().copied().unwrap_or(u64::MAX);
    assert!(
        last < start + 5_000,
        "the last echo came {} ms after the spinner started, past its 5 s deadline",
        last - start
    );
}
