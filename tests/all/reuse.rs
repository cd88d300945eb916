//! `limits.reuse`: warm agent instances. Fresh instances by default (nothing one call
//! leaves in the guest reaches the next); with reuse, one instance serves up to N calls of
//! its own plugin, and an instance that traps never serves again.

use crate::helpers::*;

/// A `count` probe (its static call counter shows which instance served a call) with
/// `limits`, one call at a time, on Notes labelled `labels` (`!` marks a trapping one).
fn manifest(limits: &str, labels: &[&str]) -> String {
    let mut m = format!(
        "[workflow]\nname = \"reuse\"\n[workflow.limits]\nconcurrency = 1\n{PHASES_AND_NOTE}{}",
        probe("counter", "mode = \"count\"", "Note", None)
    );
    if !limits.is_empty() {
        m.push_str(&format!("[plugin.limits]\n{limits}\n"));
    }
    for label in labels {
        let trap = if label.ends_with('!') {
            ", trap = true"
        } else {
            ""
        };
        m.push_str(&format!(
            "\n[[input]]\ntype = \"Note\"\npayload = {{ label = \"{label}\"{trap} }}\n"
        ));
    }
    m
}

/// The call number each labelled input was served with, in publish order.
fn calls(run: &Run) -> Vec<(String, u64)> {
    run.artifacts("Note")
        .iter()
        .filter(|a| a.producer == "counter")
        .map(|a| {
            (
                a.payload["label"].as_str().unwrap_or("").to_string(),
                a.payload["call"].as_u64().unwrap_or(0),
            )
        })
        .collect()
}

fn pairs(v: &[(&str, u64)]) -> Vec<(String, u64)> {
    v.iter().map(|(l, n)| (l.to_string(), *n)).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_call_gets_a_fresh_instance_by_default() {
    let run = run(&manifest("", &["a", "b", "c", "d"])).await;
    assert_eq!(
        calls(&run),
        pairs(&[("a", 1), ("b", 1), ("c", 1), ("d", 1)]),
        "nothing a call leaves in the guest's memory reaches the next"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reused_instance_serves_at_most_reuse_calls() {
    let run = run(&manifest("reuse = 3", &["a", "b", "c", "d", "e", "f", "g"])).await;
    assert_eq!(
        calls(&run),
        pairs(&[
            ("a", 1),
            ("b", 2),
            ("c", 3),
            ("d", 1),
            ("e", 2),
            ("f", 3),
            ("g", 1)
        ]),
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_instance_that_traps_is_dropped_and_the_next_call_starts_fresh() {
    let run = run(&manifest("reuse = 100", &["a", "b", "boom!", "c", "d"])).await;
    assert_eq!(
        calls(&run),
        pairs(&[("a", 1), ("b", 2), ("c", 1), ("d", 2)]),
        "the call after the trap runs on a new instance"
    );
    assert_eq!(run.summary.faults["trap"], 1, "{:?}", run.summary.faults);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_timed_out_instance_is_not_reused() {
    // A timeout leaves the instance mid-call: it must not serve again. The `count` mode
    // cannot time out, so pin this with the `loop` probe under reuse: every call times
    // out on its own, none is stuck behind a poisoned instance.
    let m = format!(
        "[workflow]\nname = \"reuse\"\n[workflow.limits]\nconcurrency = 1\n{PHASES_AND_NOTE}{}[plugin.limits]\nreuse = 100\ntimeout_ms = 200\n\n[[input]]\ntype = \"Note\"\npayload = {{ n = 1 }}\n\n[[input]]\ntype = \"Note\"\npayload = {{ n = 2 }}\n",
        probe("spinner", "mode = \"loop\"", "Note", None)
    );
    let run = run(&m).await;
    assert_eq!(run.summary.faults["timeout"], 2, "{:?}", run.summary.faults);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_warm_instance_has_a_pool_slot_beside_the_fresh_ones() {
    // Fourteen agents keep a warm instance each after their one call, more than two slots
    // per worker plus the spare few; every call must still get an instance.
    let mut m = format!(
        "[workflow]\nname = \"slots\"\n[workflow.limits]\nconcurrency = 1\n{PHASES_AND_NOTE}"
    );
    for i in 0..14 {
        m.push_str(&probe(
            &format!("counter{i}"),
            "mode = \"count\"",
            "Note",
            None,
        ));
        m.push_str("from = [\"user\"]\n[plugin.limits]\nreuse = 10\n");
    }
    m.push_str("\n[[input]]\ntype = \"Note\"\npayload = { label = \"x\" }\n");
    let run = run(&m).await;
    assert!(
        run.summary.faults.values().all(|n| *n == 0),
        "{:?}",
        run.summary.faults
    );
    assert_eq!(run.summary.invocations, 14);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_guest_allocator_keeps_every_block_intact_across_the_calls_of_a_warm_instance() {
    // The guest SDK's size-class allocator hands blocks freed in one call to the next;
    // the probe's `churn` makes, resizes and frees 20,000 blocks of 1..6,000 bytes per
    // call and checks each one's contents before it lets go of it.
    let mut m = format!(
        "[workflow]\nname = \"churn\"\n[workflow.limits]\nconcurrency = 1\n{PHASES_AND_NOTE}{}",
        probe(
            "churner",
            "mode = \"churn\"",
            "Note",
            Some("payload.label != ''")
        )
    );
    m.push_str("[plugin.limits]\nreuse = 10\n");
    let labels = ["a", "bb", "ccc", "dddd", "eeeee", "ffffff"];
    for label in labels {
        m.push_str(&format!(
            "\n[[input]]\ntype = \"Note\"\npayload = {{ label = \"{label}\" }}\n"
        ));
    }
    let run = run(&m).await;
    let notes: Vec<_> = run
        .artifacts("Note")
        .into_iter()
        .filter(|a| a.producer == "churner")
        .collect();
    assert_eq!(notes.len(), labels.len(), "{:?}", run.summary.faults);
    for n in notes {
        assert!(
            n.payload["checked"].as_u64().unwrap_or(0) > 5_000,
            "{}",
            n.payload
        );
        assert_eq!(n.payload["corrupt"], 0, "{}", n.payload);
    }
}
