//! Validators: outputs are checked before they are published; a rejection carries reasons,
//! fails the attempt, and the retry is told why.

use crate::helpers::*;
use murmur::RunStatus;
use murmur::invocation::InvocationStatus;
use murmur::work::WorkStatus;

/// The implementer (first attempt of "session" work is a draft without tests) and the
/// `review` validator with `review_config`.
fn workflow(review_config: &str, retry: &str) -> String {
    format!(
        r#"[workflow]
name = "v"
[recovery]
enabled = false
[retry]
backoff_ms = 5
{retry}
{PHASES_AND_NOTE}
[[plugin]]
name = "checker"
path = "{{plugin:probe}}"
world = "agent"
config = {{ mode = "echo", emit_type = "Note" }}
[[plugin.subscribe]]
type = "WorkDiscovery"
filter = "payload.phase == 'validation'"
[[plugin]]
name = "implementer"
path = "{{plugin:implementer}}"
world = "agent"
config = {{ drafts = ["session"] }}
[[plugin]]
name = "review"
path = "{{plugin:review}}"
world = "validator"
config = {{ {review_config} }}
{}"#,
        discovery("User session store", "implementation", "")
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rejection_is_retried_with_its_reasons_and_the_revision_is_published() {
    let run = run(&workflow("", "")).await;
    assert_eq!(run.summary.status, RunStatus::Complete);
    assert_eq!(run.summary.work.rejected_outputs, 1);
    assert_eq!(run.summary.work.retries, 1);
    let implementations = run.artifacts("Implementation");
    assert_eq!(
        implementations.len(),
        1,
        "only the accepted revision is published"
    );
    assert_eq!(
        implementations[0].payload["test_files"],
        serde_json::json!(["tests/user_session_store_test.rs"])
    );
    let inv = &run.invocations()[0];
    assert_eq!(
        (inv.status, inv.attempts, inv.rejections()),
        (InvocationStatus::Done, 2, 1)
    );
    assert_eq!(
        inv.feedback(),
        ["output #0: Implementation lists no test_files; untested code is not accepted"]
    );
    assert_eq!(run.work("User session store").status(), WorkStatus::Done);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_validator_that_keeps_rejecting_fails_the_work_after_the_last_attempt() {
    // "Implemented" is in every summary the implementer writes.
    let run = run(&workflow(
        "forbidden = [\"Implemented\", \"Draft\"]",
        "max_attempts = 2",
    ))
    .await;
    let inv = &run.invocations()[0];
    assert_eq!(
        (inv.status, inv.attempts, inv.rejections(), inv.retries()),
        (InvocationStatus::Failed, 2, 2, 1)
    );
    assert!(
        inv.error()
            .unwrap_or("")
            .starts_with("outputs rejected by review:")
    );
    assert!(run.artifacts("Implementation").is_empty());
    assert_eq!(run.work("User session store").status(), WorkStatus::Failed);
    assert_eq!(run.summary.work.rejected_outputs, 2);
    assert!(
        run.summary.faults.values().all(|n| *n == 0),
        "a rejection is not a fault"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_builtin_check_rejects_an_implementation_without_code_files() {
    let text = format!(
        "[workflow]\nname = \"v\"\n[recovery]\nenabled = false\n[retry]\nbackoff_ms = 1\n{PHASES_AND_NOTE}{}\n[[input]]\ntype = \"Note\"\npayload = {{ code_files = [], summary = \"nothing\" }}\n",
        probe(
            "lazy",
            "mode = \"echo\", emit_type = \"Implementation\"",
            "Note",
            None
        ),
    );
    let run = run(&text).await;
    let inv = &run.invocations()[0];
    assert_eq!(
        (inv.status, inv.attempts, inv.rejections()),
        (InvocationStatus::Failed, 3, 3)
    );
    assert!(
        inv.error().unwrap_or("").contains(
            "outputs rejected by builtin: output #0 (Implementation) lists no code_files"
        ),
        "{:?}",
        inv.error()
    );
    // Switched off, the same output is published.
    let off = run_text_with(&text, "[validation]\nbuiltin = false\n").await;
    assert_eq!(off.artifacts("Implementation").len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_builtin_check_rejects_an_approved_analysis_that_spawns_nothing() {
    let text = format!(
        "[workflow]\nname = \"v\"\n[recovery]\nenabled = false\n[retry]\nmax_attempts = 1\n{PHASES_AND_NOTE}{}\n[[input]]\ntype = \"Note\"\npayload = {{ plan = \"do it\", approved = true }}\n",
        probe(
            "hasty",
            "mode = \"echo\", emit_type = \"AnalysisResult\"",
            "Note",
            None
        ),
    );
    let run = run(&text).await;
    let error = run.invocations()[0].error().unwrap_or_default().to_string();
    assert!(
        error.contains("approved but spawns no next-phase work"),
        "{error}"
    );
    assert!(run.artifacts("AnalysisResult").is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listed_next_phase_work_passes_the_check_and_spawns_nothing_by_itself() {
    // The README's word: the host spawns work only from published WorkDiscoveries; an
    // approved analysis that lists its next-phase work is accepted, and the listed items
    // are the agent's to publish.
    let text = format!(
        "[workflow]\nname = \"v\"\n[recovery]\nenabled = false\n[retry]\nmax_attempts = 1\n{PHASES_AND_NOTE}{}\n[[input]]\ntype = \"Note\"\npayload = {{ plan = \"do it\", approved = true, next_phase_work = [{{ description = \"build it\", phase = \"implementation\" }}] }}\n",
        probe(
            "planner",
            "mode = \"echo\", emit_type = \"AnalysisResult\"",
            "Note",
            None
        ),
    );
    let run = run(&text).await;
    assert_eq!(run.summary.status, murmur::RunStatus::Complete);
    assert_eq!(run.artifacts("AnalysisResult").len(), 1);
    assert!(
        run.work_items().is_empty(),
        "no work item from the listed item: {:?}",
        run.work_items()
    );
}

/// `text` with `section` inserted after its `[workflow]` table's name line.
async fn run_text_with(text: &str, section: &str) -> Run {
    let text = text.replacen("name = \"v\"\n", &format!("name = \"v\"\n{section}"), 1);
    run(&text).await
}
