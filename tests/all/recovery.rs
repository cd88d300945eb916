//! Failure and recovery: retryable errors retry with backoff; a final failure marks the
//! work failed and spawns one critical recovery discovery, and recovery never loops.

use crate::helpers::*;
use murmur::RunStatus;
use murmur::invocation::InvocationStatus;
use murmur::work::{Priority, WorkStatus};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retryable_error_is_retried_with_backoff_until_it_succeeds() {
    let text = format!(
        "[workflow]\nname = \"r\"\n[retry]\nmax_attempts = 3\nbackoff_ms = 30\n{PHASES_AND_NOTE}{}{}",
        probe(
            "flaky",
            "mode = \"retryable\", fail_attempts = 2, emit_type = \"Note\"",
            "WorkDiscovery",
            None
        ),
        discovery("call the payment gateway", "implementation", ""),
    );
    let started = std::time::Instant::now();
    let run = run(&text).await;
    assert_eq!(run.summary.status, RunStatus::Complete);
    let inv = &run.invocations()[0];
    assert_eq!(
        (inv.status, inv.attempts, inv.retries()),
        (InvocationStatus::Done, 3, 2)
    );
    assert_eq!(run.summary.work.retries, 2);
    // The third attempt knew it was the third.
    assert_eq!(run.artifacts("Note")[0].payload["attempt"], 3);
    // Backoff 30 ms then 60 ms: the run cannot have been faster than that.
    assert!(started.elapsed() >= std::time::Duration::from_millis(90));
    assert_eq!(
        run.work("call the payment gateway").status(),
        WorkStatus::Done
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retries_stop_at_max_attempts_and_the_work_fails() {
    let text = format!(
        "[workflow]\nname = \"r\"\n[recovery]\nenabled = false\n[retry]\nmax_attempts = 2\nbackoff_ms = 1\n{PHASES_AND_NOTE}{}{}",
        probe(
            "flaky",
            "mode = \"retryable\", fail_attempts = 5",
            "WorkDiscovery",
            None
        ),
        discovery("call the payment gateway", "implementation", ""),
    );
    let run = run(&text).await;
    let inv = &run.invocations()[0];
    assert_eq!(
        (inv.status, inv.attempts, inv.retries()),
        (InvocationStatus::Failed, 2, 1)
    );
    assert!(
        inv.error()
            .unwrap_or("")
            .contains("transient failure on attempt 2")
    );
    assert_eq!(
        run.work("call the payment gateway").status(),
        WorkStatus::Failed
    );
}

/// `breaker` fails every WorkDiscovery matching `fail_filter`; `analyst` echoes analysis work.
fn failing(fail_filter: &str, extra: &str) -> String {
    format!(
        "[workflow]\nname = \"r\"\n{extra}\n{PHASES_AND_NOTE}{}{}{}",
        probe(
            "breaker",
            "mode = \"fail\"",
            "WorkDiscovery",
            Some(fail_filter)
        ),
        probe(
            "analyst",
            "mode = \"echo\", emit_type = \"Note\"",
            "WorkDiscovery",
            Some("payload.phase == 'analysis'")
        ),
        discovery("integrate the legacy billing API", "implementation", ""),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_final_failure_spawns_one_critical_recovery_discovery_in_analysis() {
    let run = run(&failing("payload.phase == 'implementation'", "")).await;
    assert_eq!(run.summary.status, RunStatus::Complete);
    assert_eq!(run.summary.work.recovery_spawned, 1);
    let failed = run.work("integrate the legacy billing API");
    assert_eq!(failed.status(), WorkStatus::Failed);
    let recovery = run
        .work_items()
        .into_iter()
        .find(|w| w.recovery_of().is_some())
        .expect("recovery work");
    assert_eq!(recovery.recovery_of(), Some(failed.id));
    assert_eq!(recovery.phase, "analysis");
    assert_eq!(recovery.priority, Priority::Critical);
    assert_eq!(
        recovery.status(),
        WorkStatus::Done,
        "the analyst handled it"
    );
    let d = run
        .artifacts("WorkDiscovery")
        .into_iter()
        .find(|d| d.id == recovery.id)
        .expect("published");
    assert_eq!(d.producer, "host");
    assert_eq!(d.payload["parent_work_id"], failed.id.to_string());
    assert!(
        d.payload["description"]
            .as_str()
            .unwrap_or("")
            .contains("Recover from failed work 'integrate the legacy billing API': breaker: failed: probe asked to fail"),
        "{}",
        d.payload["description"]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recovery_work_that_fails_spawns_no_further_recovery() {
    // The breaker fails everything, recovery work included.
    let run = run(&failing("true", "")).await;
    assert_eq!(
        run.summary.status,
        RunStatus::Failed,
        "nothing recovered the failure"
    );
    assert_eq!(
        run.summary.failed_work.len(),
        2,
        "the work and its recovery: {:?}",
        run.summary.failed_work
    );
    assert_eq!(run.summary.work.recovery_spawned, 1);
    assert_eq!(run.summary.agents["breaker"].failed, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recovery_can_be_turned_off_and_is_capped() {
    let off = run(&failing(
        "payload.phase == 'implementation'",
        "[recovery]\nenabled = false",
    ))
    .await;
    assert_eq!(off.summary.work.recovery_spawned, 0);
    let capped = run(&failing(
        "payload.phase == 'implementation'",
        "[recovery]\nmax = 0",
    ))
    .await;
    assert_eq!(capped.summary.work.recovery_spawned, 0);
}
