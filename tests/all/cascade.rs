//! The scenario's cascade, cross-phase discovery, fan-out, CEL routing, loop safety and
//! completion detection.

use crate::helpers::*;
use murmur::RunStatus;
use murmur::invocation::InvocationStatus;
use murmur::work::WorkStatus;

/// A probe that re-publishes every `Ping` it sees, under the given workflow limits.
fn pinger(limits: &str, allow_self: bool) -> String {
    format!(
        r#"
[workflow]
name = "pings"
limits = {{ {limits} }}
[[type]]
name = "Ping"
schema = {{ type = "object" }}
[[plugin]]
name = "pinger"
path = "{{plugin:probe}}"
world = "agent"
config = {{ mode = "echo" }}
[[plugin.subscribe]]
type = "Ping"
allow_self = {allow_self}
[[input]]
type = "Ping"
payload = {{}}
"#
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_plans_scenario_replays_its_cascade_with_exact_counts() {
    let run = run(&format!(
        "[workflow]\nname = \"auth\"\n[monitoring]\ninterval_ms = 600000\n{AUTH_AGENTS}"
    ))
    .await;
    let s = &run.summary;
    assert_eq!(s.status, RunStatus::Complete);
    // 21 of the scenario, and WorkflowMetrics at the first change and at the end.
    assert_eq!(s.artifacts, 23);
    assert_eq!(s.invocations, 10);
    let by_type: Vec<(&str, u64)> = s.by_type.iter().map(|(k, v)| (k.as_str(), *v)).collect();
    assert_eq!(
        by_type,
        [
            ("AnalysisResult", 2),
            ("Implementation", 4),
            ("ValidationResult", 4),
            ("WorkDiscovery", 10),
            ("WorkflowComplete", 1),
            ("WorkflowMetrics", 2)
        ]
    );
    assert_eq!(
        (
            s.phases["analysis"].done,
            s.phases["implementation"].done,
            s.phases["validation"].done
        ),
        (2, 4, 4)
    );
    assert_eq!(s.agents["analyzer"].invocations, 2);
    assert_eq!(s.agents["implementer"].invocations, 4);
    assert_eq!(s.agents["validator"].invocations, 4);
    assert!(s.faults.values().all(|n| *n == 0));
    let complete = run.artifacts("WorkflowComplete");
    assert_eq!(complete[0].payload["total_work_items"], 10);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_auth_system_example_shows_every_mechanism_of_the_loop() {
    let wf = murmur::Workflow::load(
        &repo().join("examples/auth-system/workflow.toml"),
        options(),
    )
    .expect("the example loads");
    let run = run_workflow(wf).await;
    let s = &run.summary;
    assert_eq!(s.status, RunStatus::Complete);
    let w = &s.work;
    assert_eq!(
        (
            w.duplicates,
            w.auto_routed,
            w.unblocked,
            w.rejected_outputs,
            w.retries,
            w.recovery_spawned
        ),
        (2, 2, 1, 1, 1, 1)
    );
    // Blocking: the session store started only after JWT was done.
    let jwt = run.work("JWT issuing and verification");
    let sessions = run.work("User session store");
    assert!(sessions.was_blocked());
    assert_eq!(sessions.status(), WorkStatus::Done);
    let order: Vec<String> = run
        .artifacts("Implementation")
        .iter()
        .map(|i| i.payload["summary"].as_str().unwrap_or("").to_string())
        .collect();
    let pos = |s: &str| order.iter().position(|x| x == s).expect(s);
    assert!(
        pos("Implemented JWT issuing and verification") < pos("Implemented User session store")
    );
    assert_eq!(jwt.status(), WorkStatus::Done);
    // Rejection then retry: the published session store implementation has its tests.
    assert!(order.iter().all(|s| !s.starts_with("Draft")), "{order:?}");
    // Recovery: LDAP failed for good; its recovery work was analysed and carried out.
    let ldap = run.work("LDAP directory bridge");
    assert_eq!(ldap.status(), WorkStatus::Failed);
    let recovery = run
        .work_items()
        .into_iter()
        .find(|w| w.recovery_of() == Some(ldap.id))
        .expect("recovery work");
    assert_eq!(
        (recovery.phase.as_str(), recovery.status()),
        ("analysis", WorkStatus::Done)
    );
    assert!(
        run.work("Document that directory sign-in is not supported")
            .in_recovery
    );
    // Routing and dedup: the OAuth bug went to implementation via triage; finding it
    // again while validating the fix was recorded as a duplicate.
    let bug = run
        .work_items()
        .into_iter()
        .find(|w| {
            w.description.starts_with("Bug fix needed") && w.status() != WorkStatus::Duplicate
        })
        .expect("bug work");
    assert_eq!(bug.phase, "implementation");
    assert_eq!(bug.routed().map(|r| r.by.as_str()), Some("triage"));
    assert_eq!(bug.duplicates(), 1);
    let caching = run.work("Caching pattern could optimize all API routes");
    assert_eq!(caching.duplicates(), 1);
    assert_eq!(s.faults.values().sum::<u64>(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_validator_discovery_spawns_analysis_work_that_is_analysed_implemented_and_validated() {
    let run = run(&format!("[workflow]\nname = \"t\"\n{AUTH_AGENTS}")).await;
    let discoveries = run.artifacts("WorkDiscovery");
    let from_validator: Vec<_> = discoveries
        .iter()
        .filter(|a| a.producer == "validator")
        .collect();
    assert_eq!(
        from_validator.len(),
        1,
        "exactly one validation discovers the optimisation"
    );
    let caching = from_validator[0];
    assert_eq!(caching.payload["phase"], "analysis");
    assert_eq!(caching.payload["priority"], "high");
    // It was analysed: an AnalysisResult has it as parent ...
    let analyses = run.artifacts("AnalysisResult");
    let analysis = analyses
        .iter()
        .find(|a| a.parent_ids.contains(&caching.id))
        .expect("the discovery was analysed");
    assert!(
        analysis.payload["plan"]
            .as_str()
            .unwrap_or_default()
            .contains("caching")
    );
    // ... which spawned implementation work, which was implemented and then validated.
    let impl_work = discoveries
        .iter()
        .find(|d| d.parent_ids.contains(&caching.id) && d.payload["phase"] == "implementation")
        .expect("implementation work spawned from the caching analysis");
    let validation_work = discoveries
        .iter()
        .find(|d| d.parent_ids.contains(&impl_work.id) && d.payload["phase"] == "validation")
        .expect("validation work spawned by the implementer");
    assert!(
        run.artifacts("ValidationResult")
            .iter()
            .any(|v| v.parent_ids.contains(&validation_work.id))
    );
    // Depth grows along the branch: input 0 → ... → the second validation's result at 6.
    assert_eq!(
        run.artifacts("ValidationResult")
            .iter()
            .map(|v| v.depth)
            .max(),
        Some(6)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_invocation_fans_out_to_many_outputs() {
    let run = run(r#"
[workflow]
name = "fanout"
[[type]]
name = "Note"
schema = { type = "object" }
[[plugin]]
name = "splitter"
path = "{plugin:probe}"
world = "agent"
config = { mode = "echo", count = 50, emit_type = "Copy" }
[[plugin.subscribe]]
type = "Note"
[[type]]
name = "Copy"
schema = { type = "object", required = ["copy"] }
[[input]]
type = "Note"
payload = { text = "hello" }
"#)
    .await;
    assert_eq!(run.summary.status, RunStatus::Complete);
    assert_eq!(run.summary.invocations, 1);
    let copies = run.artifacts("Copy");
    assert_eq!(copies.len(), 50);
    assert!(
        copies
            .iter()
            .all(|c| c.producer == "splitter" && c.depth == 1)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cel_filter_routes_work_discoveries_by_phase() {
    let agent = |name: &str, phase: &str| {
        format!(
            r#"
[[plugin]]
name = "{name}"
path = "{{plugin:probe}}"
world = "agent"
config = {{ mode = "echo", emit_type = "Note" }}
[[plugin.subscribe]]
type = "WorkDiscovery"
filter = "payload.phase == '{phase}' && payload.priority != 'low'"
"#
        )
    };
    let input = |phase: &str, priority: &str| {
        format!(
            "[[input]]\ntype = \"WorkDiscovery\"\npayload = {{ description = \"{phase} work at {priority} priority\", phase = \"{phase}\", priority = \"{priority}\", done_definition = \"x\", discovered_by = \"user\" }}\n"
        )
    };
    let text = format!(
        "[workflow]\nname = \"routing\"\n[[phase]]\nname = \"analysis\"\n[[phase]]\nname = \"validation\"\n[[type]]\nname = \"Note\"\nschema = {{ type = \"object\" }}\n{}{}{}{}{}",
        agent("analysis-agent", "analysis"),
        agent("validation-agent", "validation"),
        input("analysis", "high"),
        input("validation", "medium"),
        input("validation", "low"),
    );
    let run = run(&text).await;
    let notes = run.artifacts("Note");
    let by = |p: &str| {
        notes
            .iter()
            .filter(|n| n.producer == p)
            .map(|n| n.payload["phase"].clone())
            .collect::<Vec<_>>()
    };
    assert_eq!(by("analysis-agent"), vec![serde_json::json!("analysis")]);
    assert_eq!(
        by("validation-agent"),
        vec![serde_json::json!("validation")]
    );
    // The low-priority validation work matched no filter: nobody will do it.
    assert_eq!(run.summary.status, RunStatus::Stalled);
    assert_eq!(run.summary.open_work.len(), 1);
    assert!(
        run.summary.open_work[0]
            .reason
            .contains("no agent subscribes")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_depth_limit_stops_a_runaway_self_triggering_loop() {
    let run = run(&pinger("max_depth = 5", true)).await;
    let s = &run.summary;
    assert_eq!(s.status, RunStatus::Complete);
    assert_eq!(
        s.invocations, 5,
        "depths 0..4 trigger; the artifact at depth 5 does not"
    );
    assert_eq!(s.depth_limited, 1);
    assert_eq!(run.artifacts("Ping").len(), 6);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_is_not_triggered_by_its_own_outputs_unless_it_asks() {
    let run = run(&pinger("", false)).await;
    assert_eq!(run.summary.invocations, 1);
    assert_eq!(run.artifacts("Ping").len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_invocation_budget_ends_the_run_budget_exhausted() {
    let run = run(&pinger(
        "max_depth = 100, max_invocations = 7, concurrency = 1",
        true,
    ))
    .await;
    assert_eq!(run.summary.status, RunStatus::BudgetExhausted);
    assert_eq!(run.summary.invocations, 7);
    assert!(run.artifacts("WorkflowComplete").is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn higher_priority_work_runs_first() {
    let input = |d: &str, p: &str| {
        format!(
            "[[input]]\ntype = \"WorkDiscovery\"\npayload = {{ description = \"{d}\", phase = \"analysis\", priority = \"{p}\", done_definition = \"x\", discovered_by = \"user\" }}\n"
        )
    };
    let text = format!(
        "[workflow]\nname = \"prio\"\nlimits = {{ concurrency = 1 }}\n[[phase]]\nname = \"analysis\"\n[[type]]\nname = \"Note\"\nschema = {{ type = \"object\" }}\n[[plugin]]\nname = \"worker\"\npath = \"{{plugin:probe}}\"\nworld = \"agent\"\nconfig = {{ mode = \"echo\", emit_type = \"Note\" }}\n[[plugin.subscribe]]\ntype = \"WorkDiscovery\"\n{}{}{}{}",
        input("low", "low"),
        input("medium", "medium"),
        input("critical", "critical"),
        input("high", "high"),
    );
    let run = run(&text).await;
    let order: Vec<String> = run
        .artifacts("Note")
        .iter()
        .map(|n| {
            n.payload["description"]
                .as_str()
                .unwrap_or_default()
                .to_string()
        })
        .collect();
    assert_eq!(order, ["critical", "high", "medium", "low"]);
    let invocations = run
        .store
        .invocations(&run.summary.workflow_id)
        .expect("invocations");
    assert!(
        invocations
            .iter()
            .all(|i| i.status == InvocationStatus::Done)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_per_agent_invocation_cap_cancels_further_work_for_that_agent() {
    let run = run(&pinger(
        "max_depth = 100, max_invocations_per_agent = 3",
        true,
    ))
    .await;
    assert_eq!(run.summary.status, RunStatus::Complete);
    assert_eq!(run.summary.invocations, 3);
    let records = run
        .store
        .invocations(&run.summary.workflow_id)
        .expect("invocations");
    let capped: Vec<_> = records
        .iter()
        .filter(|i| i.status == InvocationStatus::Cancelled)
        .collect();
    assert_eq!(capped.len(), 1);
    assert_eq!(
        capped[0].error(),
        Some(murmur::invocation::AGENT_CAP_REASON)
    );
}
