//! Blocking: `blocking_work_ids` hold work until its blockers are done; cycles and
//! references to nothing are refused at publish; work that can never be unblocked ends
//! the run `stalled`, naming its blockers.

use crate::helpers::*;
use murmur::RunStatus;
use murmur::work::WorkStatus;

/// A WorkDiscovery payload for the `discover` probe, as a TOML inline table.
fn wd(description: &str, extra: &str) -> String {
    format!(
        "{{ description = \"{description}\", phase = \"implementation\", done_definition = \"d\", discovered_by = \"planner\"{extra} }}"
    )
}

/// A planner that publishes `discoveries` for the analysis input, and implementation
/// workers: `fail_on` (if any) fails, everything else echoes a Note.
fn workflow(discoveries: &[String], fail_on: Option<&str>) -> String {
    let planner = probe(
        "planner",
        &format!(
            "mode = \"discover\", discoveries = [{}]",
            discoveries.join(", ")
        ),
        "WorkDiscovery",
        Some("payload.phase == 'analysis'"),
    );
    let (ok_filter, failing) = match fail_on {
        Some(d) => (
            format!("payload.phase == 'implementation' && payload.description != '{d}'"),
            probe(
                "breaker",
                "mode = \"fail\"",
                "WorkDiscovery",
                Some(&format!("payload.description == '{d}'")),
            ),
        ),
        None => (
            "payload.phase == 'implementation'".to_string(),
            String::new(),
        ),
    };
    let builder = probe(
        "builder",
        "mode = \"echo\", emit_type = \"Note\"",
        "WorkDiscovery",
        Some(&ok_filter),
    );
    format!(
        "[workflow]\nname = \"b\"\nlimits = {{ concurrency = 4 }}\n[recovery]\nenabled = false\n{PHASES_AND_NOTE}{planner}{builder}{failing}{}",
        discovery("plan the release", "analysis", "")
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blocked_work_waits_for_its_blockers_and_is_then_released() {
    let text = workflow(
        &[
            wd(
                "deploy",
                ", key = \"deploy\", blocking_work_ids = [\"build\", \"test\"]",
            ),
            wd("build", ", key = \"build\""),
            wd("test", ", key = \"test\", blocking_work_ids = [\"build\"]"),
        ],
        None,
    );
    let run = run(&text).await;
    assert_eq!(run.summary.status, RunStatus::Complete);
    assert_eq!(
        run.summary.work.unblocked, 2,
        "test and deploy were held, then released"
    );
    let order: Vec<String> = run
        .artifacts("Note")
        .iter()
        .map(|n| n.payload["description"].as_str().unwrap_or("").to_string())
        .collect();
    assert_eq!(order, ["build", "test", "deploy"]);
    let deploy = run.work("deploy");
    assert_eq!(deploy.status(), WorkStatus::Done);
    assert!(deploy.was_blocked() && deploy.blocked_by().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn workflow_inputs_can_block_each_other_by_key() {
    let text = format!(
        "[workflow]\nname = \"b\"\n{PHASES_AND_NOTE}{}{}{}",
        probe(
            "builder",
            "mode = \"echo\", emit_type = \"Note\"",
            "WorkDiscovery",
            Some("payload.phase == 'implementation'")
        ),
        discovery("first", "implementation", ", key = \"first\""),
        discovery(
            "second",
            "implementation",
            ", blocking_work_ids = [\"first\"]"
        ),
    );
    let run = run(&text).await;
    assert_eq!(run.summary.status, RunStatus::Complete);
    assert_eq!(run.summary.work.unblocked, 1);
    let first = run.work("first");
    assert!(run.work("second").was_blocked());
    assert_eq!(first.discovery_key(), Some("first"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dependency_cycle_is_refused_at_publish_with_the_cycle_named() {
    let text = workflow(
        &[
            wd("a", ", key = \"a\", blocking_work_ids = [\"b\"]"),
            wd("b", ", key = \"b\", blocking_work_ids = [\"c\"]"),
            wd("c", ", key = \"c\", blocking_work_ids = [\"a\"]"),
        ],
        None,
    );
    let run = run(&text).await;
    assert_eq!(run.summary.faults["invalid_output"], 1);
    let planner = run
        .invocations()
        .into_iter()
        .find(|i| i.agent == "planner")
        .expect("planner ran");
    let error = planner.error().expect("error").to_string();
    assert!(
        error.contains("dependency cycle: #0 (key 'a') waits for #1 (key 'b') waits for #2 (key 'c') waits for #0 (key 'a')"),
        "{error}"
    );
    // Nothing of the refused outputs was published.
    assert_eq!(run.artifacts("WorkDiscovery").len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_blocker_that_names_nothing_known_is_refused() {
    let text = workflow(&[wd("a", ", blocking_work_ids = [\"no-such-work\"]")], None);
    let run = run(&text).await;
    assert_eq!(run.summary.faults["invalid_output"], 1);
    let error = run.invocations()[0].error().expect("error").to_string();
    assert!(
        error.contains("blocking_work_ids[0] = 'no-such-work' names no work item or discovery key"),
        "{error}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn work_blocked_by_failed_work_ends_the_run_stalled_naming_the_blocker() {
    let text = workflow(
        &[
            wd("migrate", ", key = \"migrate\""),
            wd("cut over", ", blocking_work_ids = [\"migrate\"]"),
        ],
        Some("migrate"),
    );
    let run = run(&text).await;
    assert_eq!(run.summary.status, RunStatus::Stalled);
    assert_eq!(run.summary.phases["implementation"].blocked, 1);
    let open = &run.summary.open_work;
    assert_eq!(open.len(), 1);
    assert_eq!(open[0].description, "cut over");
    assert_eq!(open[0].status, "blocked");
    assert!(
        open[0]
            .reason
            .contains("blocked by work that can never finish")
            && open[0].reason.contains("'migrate' (failed)"),
        "{}",
        open[0].reason
    );
}
