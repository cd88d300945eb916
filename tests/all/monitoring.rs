//! Monitoring: per-phase counts and the loop's counters, published as WorkflowMetrics when
//! they change — coalesced, not one per artifact.

use crate::helpers::*;
use murmur::RunStatus;

fn chain(interval_ms: u64) -> String {
    format!(
        "[workflow]\nname = \"m\"\nlimits = {{ concurrency = 1 }}\n[monitoring]\ninterval_ms = {interval_ms}\n{PHASES_AND_NOTE}{}\n[[input]]\ntype = \"WorkDiscovery\"\ncount = 20\npayload = {{ description = \"task {{index}}\", phase = \"analysis\", done_definition = \"d\", discovered_by = \"user\" }}\n",
        probe(
            "worker",
            "mode = \"echo\", emit_type = \"Note\"",
            "WorkDiscovery",
            None
        ),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_final_metrics_count_every_phase_and_the_loops_work() {
    let run = run(&chain(60_000)).await;
    assert_eq!(run.summary.status, RunStatus::Complete);
    let metrics = run.artifacts("WorkflowMetrics");
    assert_eq!(
        metrics.len(),
        2,
        "at the first change, then when the run went idle"
    );
    let m = &metrics[1].payload;
    assert_eq!(m["phases"]["analysis"]["done"], 20);
    assert_eq!(m["phases"]["implementation"]["done"], 0);
    assert_eq!(m["invocations"], 20);
    assert_eq!(m["work"]["duplicates"], 0);
    assert_eq!(metrics[1].producer, "host");
    assert_eq!(
        metrics[0].payload["invocations"], 1,
        "the first after one invocation"
    );
    // Published before the end: WorkflowComplete comes after it.
    let all: Vec<String> = run
        .all_artifacts()
        .iter()
        .map(|a| a.type_name.to_string())
        .collect();
    assert_eq!(
        all[all.len() - 2..],
        ["WorkflowMetrics", "WorkflowComplete"]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_are_coalesced_never_one_per_artifact() {
    let run = run(&chain(1)).await;
    let metrics = run.artifacts("WorkflowMetrics").len();
    let notes = run.artifacts("Note").len();
    assert_eq!(notes, 20);
    assert!(metrics >= 2, "published while the run went on ({metrics})");
    assert!(
        metrics <= notes + 1,
        "at most one per completion ({metrics})"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_can_be_turned_off() {
    let run = run(&chain(1).replace("interval_ms = 1", "metrics = false")).await;
    assert!(run.artifacts("WorkflowMetrics").is_empty());
}
