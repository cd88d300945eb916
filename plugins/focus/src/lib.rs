//! Example context provider (world `context-provider`): keeps an agent's context on topic.
//!
//! The host offers candidates (the inputs' ancestry, then recent artifacts, already
//! filtered by visibility and budget). `focus` drops the host's WorkflowMetrics (numbers
//! no agent of this scenario acts on) and orders the rest by how many description or
//! summary words they share with the invocation's first input, most relevant first,
//! keeping the host's order among equals.

use murmur_guest::prelude::*;
use std::collections::BTreeSet;

struct Focus;

fn words(payload: &str) -> BTreeSet<String> {
    let v: serde_json::Value = serde_json::from_str(payload).unwrap_or_default();
    let mut text = String::new();
    for key in ["description", "summary", "plan"] {
        if let Some(s) = v.get(key).and_then(|s| s.as_str()) {
            text.push_str(s);
            text.push(' ');
        }
    }
    text.split(|c: char| !c.is_alphanumeric())
        .filter(|w| w.len() > 2)
        .map(|w| w.to_lowercase())
        .collect()
}

impl ContextProvider for Focus {
    fn describe() -> PluginInfo {
        PluginInfo::context_provider("focus", env!("CARGO_PKG_VERSION"))
            .description("Orders context by relevance to the input and drops metrics")
    }

    fn provide(inv: Invocation, candidates: Vec<Artifact>) -> Result<Vec<Artifact>, PluginError> {
        let topic = inv.inputs.first().map(|a| words(&a.payload)).unwrap_or_default();
        let mut scored: Vec<(usize, usize, Artifact)> = candidates
            .into_iter()
            .enumerate()
            .filter(|(_, a)| a.type_name != "WorkflowMetrics")
            .map(|(i, a)| (words(&a.payload).intersection(&topic).count(), i, a))
            .collect();
        scored.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
        Ok(scored.into_iter().map(|(_, _, a)| a).collect())
    }
}

murmur_guest::export_context_provider!(Focus);
