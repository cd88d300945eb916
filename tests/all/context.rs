//! Context: phase instructions first (from the served work, never the agent's name), a
//! bounded selection of ancestry and recent artifacts, the context-provider chain, and
//! visibility on everything that reaches a plugin — whether the agent is handed it or,
//! like the `reader` plugin these tests use, reads it on demand through the `context`
//! import.

use crate::helpers::*;
use serde_json::Value;

/// The `peek` reader's report of what it saw: (context types, board ids).
fn seen(note: &Value) -> (Vec<String>, Vec<String>) {
    let strings = |key: &str, field: &str| {
        note[key]
            .as_array()
            .map(|a| {
                a.iter()
                    .map(|x| x[field].as_str().unwrap_or("").to_string())
                    .collect()
            })
            .unwrap_or_default()
    };
    (strings("context", "type"), strings("board", "id"))
}

/// A workflow where `worker` turns one implementation WorkDiscovery into a Note, and
/// `agent` (a manifest fragment, subscribed to Notes) publishes what it saw as `Seen`.
fn after_the_worker(agent: &str) -> String {
    format!(
        "[workflow]\nname = \"c\"\n{PHASES_AND_NOTE}{}{agent}{}\n[[type]]\nname = \"Seen\"\nschema = {{ type = \"object\" }}\n",
        probe(
            "worker",
            "mode = \"echo\", emit_type = \"Note\"",
            "WorkDiscovery",
            None
        ),
        discovery("build the login form", "implementation", ""),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn phase_instructions_come_first_and_follow_the_work_along_parent_links() {
    // `worker` turns implementation work into a Note; `reader` (subscribed to Notes, not to
    // work) serves the same work item, so it gets the implementation instructions too.
    let run = run(&after_the_worker(&reader(
        "reader",
        "mode = \"peek\", emit_type = \"Seen\"",
        "Note",
        None,
    )))
    .await;
    let seen_note = &run.artifacts("Seen")[0];
    let (context, _) = seen(&seen_note.payload);
    assert_eq!(context[0], "PhaseInstructions");
    let first = &seen_note.payload["context"][0];
    assert_eq!(first["id"], "phase-instructions/implementation");
    assert_eq!(first["producer"], "host");
    // Then the ancestry: the WorkDiscovery the Note came from.
    assert!(
        context[1..].contains(&"WorkDiscovery".to_string()),
        "{context:?}"
    );
    // The reader reads its context on demand: it was handed none.
    assert_eq!(seen_note.payload["handed"], 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_handed_its_context_reads_the_same_list_through_the_import() {
    let run = run(&after_the_worker(&probe(
        "looker",
        "mode = \"context\", emit_type = \"Seen\"",
        "Note",
        None,
    )))
    .await;
    let seen = &run.artifacts("Seen")[0].payload;
    let handed = seen["handed"].as_array().expect("handed ids");
    assert_eq!(handed[0], "phase-instructions/implementation");
    assert!(
        handed.len() >= 3,
        "instructions, the Note, its WorkDiscovery: {seen}"
    );
    assert_eq!(seen["imported"], seen["handed"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cascade_agents_that_read_on_demand_are_handed_nothing_and_read_the_full_context() {
    let cascade = |file: &str| {
        std::fs::read_to_string(repo().join("examples/cascade").join(file))
            .expect("cascade example")
            .replace("count = 10000", "count = 10")
            .replace(
                "../../target/plugins/bench-agent.wasm",
                "{plugin:bench-agent}",
            )
    };
    // The example reads; the tests also have the agents report what they read.
    let reporting = cascade("reading-context.toml").replace(
        "read_context = true }",
        "read_context = true, report_context = true }",
    );
    let reading = run(&reporting).await;
    let outputs = reading.artifacts("AnalysisResult");
    assert_eq!(outputs.len(), 14, "10 items, then 2, 1 and 1 follow-ups");
    for ty in ["AnalysisResult", "Implementation", "ValidationResult"] {
        for a in reading.artifacts(ty) {
            let seen = &a.payload["metadata"]["context"];
            assert_eq!(seen["handed"], 0, "{ty}: {seen}");
            assert_eq!(seen["first"], "PhaseInstructions", "{ty}: {seen}");
            // Instructions, the input's ancestry and recent artifacts: the full budget
            // once the board holds a dozen artifacts.
            let read = seen["read"].as_u64().expect("read");
            assert!((2..=13).contains(&read), "{ty}: {seen}");
        }
    }
    // The default example's agents never ask.
    let quiet = run(&cascade("workflow.toml")).await;
    for a in quiet.artifacts("AnalysisResult") {
        assert!(
            a.payload["metadata"].get("context").is_none(),
            "{}",
            a.payload
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_context_stays_within_its_artifact_budget() {
    let text = format!(
        "[workflow]\nname = \"c\"\n[context]\nmax_artifacts = 2\n{PHASES_AND_NOTE}{}\n[[input]]\ntype = \"Note\"\ncount = 10\npayload = {{ n = \"{{index}}\" }}\n[[input]]\ntype = \"Trigger\"\npayload = {{}}\n[[type]]\nname = \"Trigger\"\nschema = {{ type = \"object\" }}\n[[type]]\nname = \"Seen\"\nschema = {{ type = \"object\" }}\n",
        reader(
            "reader",
            "mode = \"peek\", emit_type = \"Seen\"",
            "Trigger",
            None
        ),
    );
    let run = run(&text).await;
    let (context, _) = seen(&run.artifacts("Seen")[0].payload);
    assert_eq!(
        context,
        ["Note", "Note"],
        "no phase here, and two of ten recent Notes"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_with_its_own_context_budget_gets_that_budget_and_the_others_the_workflows() {
    let peek = |name: &str, budget: Option<&str>| {
        let r = reader(
            name,
            "mode = \"peek\", emit_type = \"Seen\"",
            "Trigger",
            None,
        );
        match budget {
            Some(b) => r.replacen(
                "world = \"agent\"\n",
                &format!("world = \"agent\"\ncontext = {{ {b} }}\n"),
                1,
            ),
            None => r,
        }
    };
    let text = format!(
        "[workflow]\nname = \"c\"\n[context]\nmax_artifacts = 4\n{PHASES_AND_NOTE}{}{}{}\n[[input]]\ntype = \"Note\"\ncount = 10\npayload = {{ n = \"{{index}}\" }}\n[[input]]\ntype = \"Trigger\"\npayload = {{}}\n[[type]]\nname = \"Trigger\"\nschema = {{ type = \"object\" }}\n[[type]]\nname = \"Seen\"\nschema = {{ type = \"object\" }}\n",
        peek("usual", None),
        peek("wide", Some("max_artifacts = 8")),
        peek("none", Some("max_artifacts = 0")),
    );
    let run = run(&text).await;
    let seen_by = |agent: &str| -> Vec<String> {
        let a = run
            .artifacts("Seen")
            .into_iter()
            .find(|a| a.producer == agent)
            .unwrap_or_else(|| panic!("{agent} ran"));
        seen(&a.payload).0
    };
    // Lengths only: another reader's Seen may be among the most recent artifacts.
    assert_eq!(seen_by("usual").len(), 4, "the workflow's [context]");
    assert_eq!(seen_by("wide").len(), 8, "its own max_artifacts");
    assert!(seen_by("none").is_empty(), "max_artifacts = 0: no context");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plugin_cannot_see_what_it_may_not_in_context_or_on_the_board() {
    let reader = |name: &str, grants: &str| {
        reader(
            name,
            "mode = \"peek\", emit_type = \"Seen\"",
            "Trigger",
            None,
        )
        .replacen(
            "world = \"agent\"\n",
            &format!("world = \"agent\"\n{grants}\n"),
            1,
        )
    };
    let secret = |name: &str, vis: &str| {
        format!(
            "\n[[input]]\ntype = \"Secret\"\npayload = {{ name = \"{name}\" }}\nvisibility = {vis}\n"
        )
    };
    let text = format!(
        "[workflow]\nname = \"c\"\n{PHASES_AND_NOTE}\n[[type]]\nname = \"Secret\"\nschema = {{ type = \"object\" }}\n[[type]]\nname = \"Trigger\"\nschema = {{ type = \"object\" }}\n[[type]]\nname = \"Seen\"\nschema = {{ type = \"object\" }}\n{}{}{}{}{}{}\n[[input]]\ntype = \"Trigger\"\npayload = {{}}\n",
        reader("insider", "labels = [\"ops\"]\ntenant = \"acme\""),
        reader("outsider", ""),
        secret("private", "{ private = [\"insider\"] }"),
        secret("labelled", "{ labels = [\"ops\"] }"),
        secret("tenant", "{ tenant = \"acme\" }"),
        secret("public", "\"public\""),
    );
    let run = run(&text).await;
    let seen_by = |agent: &str| {
        let note = run
            .artifacts("Seen")
            .into_iter()
            .find(|a| a.producer == agent)
            .expect("reader ran");
        seen(&note.payload)
    };
    let (insider_ctx, insider_board) = seen_by("insider");
    let (outsider_ctx, outsider_board) = seen_by("outsider");
    let secrets = |ids: &[String]| {
        run.store
            .query(
                &murmur::blackboard::ArtifactQuery {
                    workflow_id: run.summary.workflow_id.clone(),
                    type_name: Some("Secret".into()),
                    tags: vec![],
                    limit: 100,
                },
                &murmur::artifact::Viewer {
                    name: "insider",
                    labels: &["ops".into()],
                    tenant: Some("acme"),
                    operator: false,
                },
            )
            .expect("query")
            .into_iter()
            .filter(|a| ids.contains(&a.id.to_string()))
            .map(|a| a.payload["name"].as_str().unwrap_or("").to_string())
            .collect::<Vec<_>>()
    };
    assert_eq!(
        secrets(&insider_board),
        ["private", "labelled", "tenant", "public"]
    );
    assert_eq!(secrets(&outsider_board), ["public"]);
    assert_eq!(insider_ctx.iter().filter(|t| *t == "Secret").count(), 4);
    assert_eq!(outsider_ctx.iter().filter(|t| *t == "Secret").count(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn context_providers_run_in_a_chain_and_their_choice_reaches_the_agent() {
    // Metrics after every completion, so recent artifacts include WorkflowMetrics;
    // `focus` drops them.
    let body = |providers: &str| {
        format!(
            "[workflow]\nname = \"c\"\nlimits = {{ concurrency = 1 }}\n[monitoring]\ninterval_ms = 1\n{PHASES_AND_NOTE}\n[[type]]\nname = \"Seen\"\nschema = {{ type = \"object\" }}\n{}{}{providers}{}",
            probe(
                "worker",
                "mode = \"echo\", emit_type = \"Note\"",
                "WorkDiscovery",
                None
            ),
            reader(
                "reader",
                "mode = \"peek\", emit_type = \"Seen\"",
                "Note",
                None
            ),
            discovery("build the login form", "implementation", ""),
        )
    };
    let plain = run(&body("")).await;
    let (context, _) = seen(&plain.artifacts("Seen")[0].payload);
    assert!(
        context.contains(&"WorkflowMetrics".to_string()),
        "{context:?}"
    );
    let focused = run(&body(
        "\n[[plugin]]\nname = \"focus\"\npath = \"{plugin:focus}\"\nworld = \"context-provider\"\n",
    ))
    .await;
    let (context, _) = seen(&focused.artifacts("Seen")[0].payload);
    assert_eq!(
        context[0], "PhaseInstructions",
        "pinned context stays first"
    );
    assert!(
        !context.contains(&"WorkflowMetrics".to_string()),
        "{context:?}"
    );
    assert!(
        context.contains(&"WorkDiscovery".to_string()),
        "{context:?}"
    );
}

/// A Task private to the agent, and three Notes: public, for label `ops`, for tenant
/// `acme`. The agent holds label `ops` and tenant `acme`; the plugins beside it hold none.
fn visibility_inputs() -> &'static str {
    r#"
[[input]]
type = "Task"
payload = { n = 1 }
visibility = { private = ["maker"] }
[[input]]
type = "Note"
payload = { k = "public" }
[[input]]
type = "Note"
payload = { k = "ops" }
visibility = { labels = ["ops"] }
[[input]]
type = "Note"
payload = { k = "acme" }
visibility = { tenant = "acme" }
"#
}

fn visibility_workflow(maker_config: &str, other: &str) -> String {
    format!(
        "[workflow]\nname = \"vis\"\n[retry]\nmax_attempts = 1\n{PHASES_AND_NOTE}[[type]]\nname = \"Task\"\nschema = {{ type = \"object\" }}\n{}{other}{}",
        probe("maker", maker_config, "Task", None).replace(
            "world = \"agent\"\n",
            "world = \"agent\"\nlabels = [\"ops\"]\ntenant = \"acme\"\n"
        ),
        visibility_inputs(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_validator_is_handed_only_what_its_own_visibility_allows() {
    let witness = "[[plugin]]\nname = \"witness\"\npath = \"{plugin:witness-validator}\"\nworld = \"validator\"\n";
    // Outputs the witness may see: it judges them, seeing of the inputs and context only
    // what is public (the private Task, the label-only and tenant-only Notes withheld).
    let judged = run(&visibility_workflow(
        "mode = \"echo\", emit_type = \"Note\", emit_private_to = [\"maker\", \"witness\"]",
        witness,
    ))
    .await;
    let inv = judged
        .invocations()
        .into_iter()
        .find(|i| i.agent == "maker")
        .expect("maker ran");
    assert_eq!(
        inv.error(),
        Some("outputs rejected by witness: inputs [] context [user:Note] outputs [Note]"),
        "what the witness was handed"
    );
    // Outputs private to the agent: the witness may see none, so it has nothing to judge.
    let unseen = run(&visibility_workflow(
        "mode = \"echo\", emit_type = \"Note\", emit_private_to = [\"maker\"]",
        witness,
    ))
    .await;
    assert_eq!(unseen.summary.agents["maker"].failed, 0);
    assert_eq!(unseen.summary.agents["maker"].published["Note"], 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_context_provider_is_handed_only_what_its_own_visibility_allows() {
    // The witness drops every candidate it is handed; the agent still receives the ones
    // the witness may not see (the label-only and tenant-only Notes), and only those.
    let run = run(&visibility_workflow(
        "mode = \"context\", emit_type = \"Seen\"",
        "[[type]]\nname = \"Seen\"\nschema = { type = \"object\" }\n[[plugin]]\nname = \"witness\"\npath = \"{plugin:witness-provider}\"\nworld = \"context-provider\"\n",
    ))
    .await;
    let seen = run.artifacts("Seen");
    assert_eq!(seen.len(), 1);
    let handed: Vec<String> = seen[0].payload["handed"]
        .as_array()
        .expect("ids")
        .iter()
        .filter_map(|v| v.as_str().map(str::to_string))
        .collect();
    // Read as the operator: the Notes for `ops` and `acme` are not public.
    let everything = murmur::blackboard::ArtifactQuery {
        workflow_id: run.summary.workflow_id.clone(),
        type_name: Some("Note".into()),
        tags: vec![],
        limit: usize::MAX,
    };
    let notes = run
        .store
        .query(&everything, &murmur::artifact::Viewer::operator())
        .expect("query");
    let note = |k: &str| {
        notes
            .iter()
            .find(|n| n.payload["k"] == k)
            .expect("note")
            .id
            .to_string()
    };
    let mut expected = vec![note("ops"), note("acme")];
    expected.sort();
    let mut handed = handed;
    handed.sort();
    assert_eq!(handed, expected);
}
