//! {name}-feeder: a fixture for {name}'s tests. Publishes each Draft's payload as a Response,
//! for the validator to accept or reject.

use murmur_guest::prelude::*;

struct Plugin;

impl Agent for Plugin {
    fn describe() -> PluginInfo {
        PluginInfo::agent("{name}-feeder", env!("CARGO_PKG_VERSION"))
            .description("publishes drafts as responses")
            .subscribe(Subscription::to("Draft"))
            .publishes(["Response"])
    }

    fn handle(inv: Invocation) -> Result<Vec<Output>, PluginError> {
        let draft: serde_json::Value = inv.input()?;
        Ok(vec![Output::json("Response", &draft)?])
    }
}

murmur_guest::export_agent!(Plugin);
