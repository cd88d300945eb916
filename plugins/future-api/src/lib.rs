//! A plugin built against a newer API version (`wit/` here is `murmur:plugin@0.2.0`), so
//! the host's test suite can pin that loading it fails with a sentence naming both
//! versions rather than a link error.

wit_bindgen::generate!({ world: "agent", path: "wit" });

use exports::murmur::plugin::agent_api::Guest;
use murmur::plugin::types::{Invocation, Output, PluginError, PluginInfo, PluginKind};

struct Future;

impl Guest for Future {
    fn describe() -> PluginInfo {
        PluginInfo {
            name: "future-api".into(),
            version: "0.1.0".into(),
            api_version: "0.2.0".into(),
            kind: PluginKind::Agent,
            description: "built against a future API".into(),
            subscriptions: vec![],
            publishes: vec![],
            phases: vec![],
            capabilities: vec![],
        }
    }
    fn handle(_inv: Invocation) -> Result<Vec<Output>, PluginError> {
        Ok(vec![])
    }
}

export!(Future);
