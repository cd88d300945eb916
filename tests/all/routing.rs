//! Routing: discoveries whose phase is `auto` or unknown are placed by a router, and the
//! decision and its reason are recorded.

use crate::helpers::*;
use murmur::RunStatus;

/// One worker per phase, each echoing the WorkDiscoveries of its phase as Notes.
fn workers() -> String {
    ["analysis", "implementation", "validation"]
        .iter()
        .map(|p| {
            probe(
                &format!("{p}-worker"),
                "mode = \"echo\", emit_type = \"Note\"",
                "WorkDiscovery",
                Some(&format!("payload.phase == '{p}'")),
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_auto_discovery_is_routed_by_the_plans_rules_and_the_reason_is_recorded() {
    let text = format!(
        "[workflow]\nname = \"r\"\n{PHASES_AND_NOTE}{}{}",
        workers(),
        discovery(
            "Bug fix needed: login crashes on empty passwords",
            "auto",
            ""
        )
    );
    let run = run(&text).await;
    assert_eq!(run.summary.status, RunStatus::Complete);
    assert_eq!(run.summary.work.auto_routed, 1);
    let w = run.work("Bug fix needed: login crashes on empty passwords");
    assert_eq!(w.phase, "implementation");
    let routed = w
        .routed()
        .cloned()
        .expect("routing recorded on the work item");
    assert_eq!(routed.requested, "auto");
    assert_eq!(routed.by, "builtin");
    assert_eq!(routed.reason, "rule 'bug fix needed' matched");
    // The published discovery carries the chosen phase, so filters see it, and the request.
    let d = &run.artifacts("WorkDiscovery")[0];
    assert_eq!(d.payload["phase"], "implementation");
    assert_eq!(d.payload["metadata"]["routing"]["requested"], "auto");
    assert_eq!(run.summary.agents["implementation-worker"].invocations, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_phase_goes_to_the_phase_whose_description_is_closest() {
    let text = format!(
        "[workflow]\nname = \"r\"\n{PHASES_AND_NOTE}{}{}",
        workers(),
        discovery("Verify and test the token refresh solutions", "qa", "")
    );
    let run = run(&text).await;
    let w = run.work("Verify and test the token refresh solutions");
    assert_eq!(w.phase, "validation");
    let routed = w.routed().cloned().expect("routed");
    assert_eq!(routed.requested, "qa");
    assert!(
        routed.reason.starts_with("closest phase description"),
        "{}",
        routed.reason
    );
    assert_eq!(run.summary.agents["validation-worker"].invocations, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn manifest_rules_and_default_phase_replace_the_plans_rules() {
    let text = format!(
        "[workflow]\nname = \"r\"\n{PHASES_AND_NOTE}[routing]\ndefault_phase = \"validation\"\n[[routing.rule]]\nmatch = \"flaky\"\nphase = \"analysis\"\n{}{}{}",
        workers(),
        discovery("flaky checkout page", "auto", ""),
        discovery("Bug fix needed: zebra", "auto", ""),
    );
    let run = run(&text).await;
    assert_eq!(run.work("flaky checkout page").phase, "analysis");
    // The built-in rules are replaced, and nothing else matches: the default phase.
    let w = run.work("Bug fix needed: zebra");
    assert_eq!(w.phase, "validation");
    assert!(
        w.routed()
            .cloned()
            .expect("routed")
            .reason
            .contains("default phase")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_router_plugin_decides_first_and_the_builtin_router_backs_it_up() {
    let text = format!(
        "[workflow]\nname = \"r\"\n{PHASES_AND_NOTE}[routing]\nplugin = \"triage\"\n[[plugin]]\nname = \"triage\"\npath = \"{{plugin:triage}}\"\nworld = \"router\"\n{}{}{}",
        workers(),
        discovery("Performance regression in search", "auto", ""),
        discovery("Bug fix needed: nothing triage knows", "auto", ""),
    );
    let run = run(&text).await;
    let w = run.work("Performance regression in search");
    assert_eq!(w.phase, "validation");
    let routed = w.routed().cloned().expect("routed");
    assert_eq!(routed.by, "triage");
    assert_eq!(routed.reason, "keyword 'regression' means validation work");
    // "Bug fix needed: nothing triage knows" contains "bug": triage routes it too.
    assert_eq!(
        run.work("Bug fix needed: nothing triage knows").phase,
        "implementation"
    );
    assert_eq!(run.summary.work.auto_routed, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn when_the_router_plugin_declines_the_builtin_router_decides_and_says_so() {
    let text = format!(
        "[workflow]\nname = \"r\"\n{PHASES_AND_NOTE}[routing]\nplugin = \"triage\"\n[[plugin]]\nname = \"triage\"\npath = \"{{plugin:triage}}\"\nworld = \"router\"\n{}{}",
        workers(),
        discovery("An optimization opportunity in the cache", "auto", ""),
    );
    let run = run(&text).await;
    let w = run.work("An optimization opportunity in the cache");
    assert_eq!(w.phase, "analysis");
    let routed = w.routed().cloned().expect("routed");
    assert_eq!(routed.by, "builtin");
    assert!(
        routed.reason.starts_with("router 'triage' failed"),
        "{}",
        routed.reason
    );
    assert!(
        routed
            .reason
            .ends_with("rule 'optimization opportunity' matched"),
        "{}",
        routed.reason
    );
}
