//! Example of plugin-private state (`grants = ["kv"]`): counts the artifacts it has seen
//! per type, across invocations, in its kv store, and publishes a `Tally` with the running
//! count for the input's type.

use murmur_guest::prelude::*;
use serde_json::json;

struct Tally;

impl Agent for Tally {
    fn describe() -> PluginInfo {
        PluginInfo::agent("tally", env!("CARGO_PKG_VERSION"))
            .description("counts what it sees, in plugin-private state")
            .capabilities(["kv"])
            .publishes(["Tally"])
    }

    fn handle(inv: Invocation) -> Result<Vec<Output>, PluginError> {
        let input = inv.first_input()?;
        let key = format!("seen/{}", input.type_name);
        let err = |e: murmur_guest::kv::HostError| PluginError::failed(format!("kv: {e:?}"));
        let seen: u64 = murmur_guest::kv::get(&key).map_err(err)?.and_then(|v| v.parse().ok()).unwrap_or(0) + 1;
        murmur_guest::kv::set(&key, &seen.to_string()).map_err(err)?;
        let keys = murmur_guest::kv::keys("seen/").map_err(err)?;
        Ok(vec![Output::json("Tally", &json!({ "type": input.type_name, "seen": seen, "keys": keys }))?])
    }
}

murmur_guest::export_agent!(Tally);
