//! {name}: an agent. Answers every Request with a Response.

use murmur_guest::prelude::*;
use serde_json::json;

struct Plugin;

impl Agent for Plugin {
    fn describe() -> PluginInfo {
        PluginInfo::agent("{name}", env!("CARGO_PKG_VERSION"))
            .description("answers requests")
            .subscribe(Subscription::to("Request"))
            .publishes(["Response"])
            // Handed no context; `inv.read_context()` asks the host for it when needed.
            .context_on_demand()
    }

    fn handle(inv: Invocation) -> Result<Vec<Output>, PluginError> {
        // A payload that is not JSON of the right shape is `invalid-input`: no retry.
        let request: serde_json::Value = inv.input()?;
        log(Level::Info, &format!("{name} handles {request}"));
        Ok(vec![Output::json("Response", &json!({ "answer": request, "by": inv.agent }))?])
    }
}

murmur_guest::export_agent!(Plugin);
