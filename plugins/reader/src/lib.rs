//! A test agent that reads the blackboard (so it needs `grants = ["blackboard"]`).
//! `config.mode`:
//! - `peek`: publish one `config.emit_type` artifact (default `Note`) listing what the
//!   invocation could see: its context (`context`: type, id, producer of each), read on
//!   demand through the `context` import, how many context artifacts it was handed
//!   (`handed`: none, as it reads on demand) and a blackboard query (`board`: type and id
//!   of each);
//! - `other-workflow`: query another workflow's blackboard — a reach beyond its grant,
//!   which the host faults as `denied` whatever the plugin does with the refusal.

use murmur_guest::prelude::*;
use serde::Deserialize;
use serde_json::json;

#[derive(Deserialize)]
struct Config {
    mode: String,
    #[serde(default)]
    emit_type: Option<String>,
}

struct Reader;

impl Agent for Reader {
    fn describe() -> PluginInfo {
        PluginInfo::agent("reader", env!("CARGO_PKG_VERSION"))
            .description("test agent that reports what it can see")
            .capabilities(["blackboard"])
            .context_on_demand()
    }

    fn handle(inv: Invocation) -> Result<Vec<Output>, PluginError> {
        let config: Config = inv.config()?;
        let ty = config.emit_type.clone().unwrap_or_else(|| "Note".into());
        match config.mode.as_str() {
            "peek" => {
                let context: Vec<serde_json::Value> = inv
                    .read_context()
                    .iter()
                    .map(|a| json!({ "type": a.type_name, "id": a.id, "producer": a.producer }))
                    .collect();
                let board: Vec<serde_json::Value> = murmur_guest::board::query(None, &[], 1000)
                    .map_err(|e| PluginError::failed(format!("query failed: {e:?}")))?
                    .iter()
                    .map(|a| json!({ "type": a.type_name, "id": a.id }))
                    .collect();
                let handed = inv.context.len();
                Ok(vec![Output::json(&ty, &json!({ "context": context, "board": board, "handed": handed }))?])
            }
            "other-workflow" => {
                let q = murmur_guest::board::ArtifactQuery {
                    type_name: None,
                    tags: Vec::new(),
                    workflow_id: Some("someone-elses-workflow".into()),
                    limit: 100,
                };
                // A polite plugin would give up; this one pretends nothing happened.
                let seen = murmur_guest::bindings::murmur::plugin::blackboard::query(&q).map(|a| a.len()).unwrap_or(0);
                Ok(vec![Output::json(&ty, &json!({ "seen": seen }))?])
            }
            other => Err(PluginError::invalid_input(format!("unknown reader mode '{other}'"))),
        }
    }
}

murmur_guest::export_agent!(Reader);
