//! {name}-witness: a fixture for {name}'s tests. Reports the Notes of its context, in the order
//! it was handed them.

use murmur_guest::prelude::*;
use serde_json::json;

struct Plugin;

impl Agent for Plugin {
    fn describe() -> PluginInfo {
        PluginInfo::agent("{name}-witness", env!("CARGO_PKG_VERSION"))
            .description("reports its context")
            .subscribe(Subscription::to("Trigger"))
            .publishes(["Seen"])
    }

    fn handle(inv: Invocation) -> Result<Vec<Output>, PluginError> {
        let notes: Vec<serde_json::Value> = inv
            .context_of("Note")
            .iter()
            .map(|a| a.parse::<serde_json::Value>().map(|p| p["n"].clone()))
            .collect::<Result<_, _>>()?;
        Ok(vec![Output::json("Seen", &json!({ "context": notes }))?])
    }
}

murmur_guest::export_agent!(Plugin);
