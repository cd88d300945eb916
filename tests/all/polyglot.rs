//! Agents in any language: JavaScript and Python components built from source in
//! `plugins/` cooperate with a Rust one; their exceptions reach the host.

use crate::helpers::*;
use murmur::RunStatus;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rust_javascript_and_python_agents_cooperate_on_one_cascade() {
    let wf = murmur::Workflow::load(&repo().join("examples/polyglot/workflow.toml"), options())
        .expect("the example loads");
    let run = run_workflow(wf).await;
    let s = &run.summary;
    assert_eq!(s.status, RunStatus::Complete, "{:?}", s.open_work);
    assert_eq!(s.agents["analyzer"].invocations, 2);
    assert_eq!(s.agents["js-implementer"].invocations, 3);
    assert_eq!(s.agents["py-validator"].invocations, 3);
    // The branch, from Python: validating JWT sends the caching optimisation to analysis.
    assert_eq!(
        s.agents["py-validator"].published.get("WorkDiscovery"),
        Some(&1)
    );
    let code: Vec<String> = run
        .artifacts("Implementation")
        .iter()
        .map(|i| {
            i.payload["code_files"][0]
                .as_str()
                .unwrap_or("")
                .to_string()
        })
        .collect();
    assert!(
        code.contains(&"src/jwt_issuing_and_verification.js".to_string()),
        "{code:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_javascript_exception_and_a_python_traceback_reach_the_fault_message() {
    let text = std::fs::read_to_string(repo().join("examples/polyglot/workflow.toml"))
        .expect("example")
        .replace(
            "../../target/plugins/",
            &format!("{}/", repo().join("target/plugins").display()),
        )
        .replace("Build authentication system with OAuth and JWT", "explode")
        + "\n[[input]]\ntype = \"WorkDiscovery\"\npayload = { description = \"Validate: explode\", phase = \"validation\", done_definition = \"d\", discovered_by = \"user\" }\n[recovery]\nenabled = false\n";
    // The analyzer plans "explode" as one component, which the JavaScript implementer throws on.
    let run = run(&text).await;
    let errors: Vec<(String, String)> = run
        .invocations()
        .into_iter()
        .filter_map(|i| Some((i.agent.to_string(), i.error()?.to_string())))
        .collect();
    let of = |agent: &str| {
        errors
            .iter()
            .find(|(a, _)| a == agent)
            .map(|(_, e)| e.clone())
            .unwrap_or_else(|| panic!("{agent} did not fail: {errors:?}"))
    };
    assert!(
        of("js-implementer").contains("implementer exploded on purpose"),
        "{}",
        of("js-implementer")
    );
    assert!(
        of("py-validator").contains("validator exploded on purpose"),
        "{}",
        of("py-validator")
    );
}
