//! The agents of the cascade benchmark workload (`examples/cascade`, `murmur bench cascade`),
//! one component whose role the manifest chooses (`config.role`):
//!
//! - `analyzer`: WorkDiscovery → AnalysisResult;
//! - `implementer`: AnalysisResult → Implementation;
//! - `validator`: Implementation → ValidationResult, and for every 5th item (index % 5 == 0)
//!   of a generation below 3 a new analysis WorkDiscovery for generation + 1.
//!
//! The agents read their context on demand (`PluginInfo::context_on_demand`): the host
//! hands them none and chooses it only if they ask. With `config.read_context = true`
//! they ask on every call, so the cost of reading context is measured by the same
//! workload (`examples/cascade/reading-context.toml`); with `config.report_context = true`
//! as well, each output's `metadata.context` says what they were handed and read
//! (`handed`, `read`, `first`: the first artifact's type), for the tests.
//!
//! Every payload carries `metadata.index` and `metadata.generation` so the counts follow
//! a closed form: N inputs give N + ⌈N/5⌉ + ⌈N/25⌉ + ⌈N/125⌉ work items, three invocations
//! and four artifacts each (N = 10,000: 37,440 invocations, 49,920 artifacts).

use murmur_guest::prelude::*;
use serde::Deserialize;
use serde_json::{json, Map, Value};

const GENERATIONS: u64 = 3;

#[derive(Deserialize)]
struct Config {
    role: String,
    #[serde(default)]
    read_context: bool,
    #[serde(default)]
    report_context: bool,
}

fn number(meta: &Map<String, Value>, key: &str) -> Result<u64, PluginError> {
    match meta.get(key) {
        Some(Value::Number(n)) => n.as_u64(),
        Some(Value::String(s)) => s.parse().ok(),
        None => Some(0),
        _ => None,
    }
    .ok_or_else(|| PluginError::invalid_input(format!("metadata.{key} is not a non-negative integer")))
}

fn position(payload: &Value) -> Result<(u64, u64), PluginError> {
    let empty = Map::new();
    let meta = payload.get("metadata").and_then(Value::as_object).unwrap_or(&empty);
    Ok((number(meta, "index")?, number(meta, "generation")?))
}

struct Bench;

impl Agent for Bench {
    fn describe() -> PluginInfo {
        // Subscriptions come from the manifest: the role decides them.
        PluginInfo::agent("bench-agent", env!("CARGO_PKG_VERSION"))
            .description("cascade workload agent")
            .publishes([types::ANALYSIS_RESULT, types::IMPLEMENTATION, types::VALIDATION_RESULT, types::WORK_DISCOVERY])
            .context_on_demand()
    }

    fn handle(inv: Invocation) -> Result<Vec<Output>, PluginError> {
        let config: Config = inv.config()?;
        let input = inv.first_input()?;
        let payload: Value = input.parse()?;
        let (index, generation) = position(&payload)?;
        let mut metadata = json!({ "index": index, "generation": generation });
        if config.read_context {
            let context = inv.read_context();
            if config.report_context {
                metadata["context"] = json!({
                    "handed": inv.context.len(),
                    "read": context.len(),
                    "first": context.first().map(|a| a.type_name.as_str()),
                });
            }
        }
        match config.role.as_str() {
            "analyzer" => Ok(vec![Output::json(
                types::ANALYSIS_RESULT,
                &json!({
                    "plan": format!("plan {generation}.{index}"),
                    "approved": true,
                    "next_phase_work": [{ "description": format!("implement plan {generation}.{index}"), "phase": "implementation" }],
                    "metadata": metadata,
                }),
            )?]),
            "implementer" => Ok(vec![Output::json(
                types::IMPLEMENTATION,
                &json!({ "code_files": [format!("src/item_{generation}_{index}.rs")], "summary": "done", "metadata": metadata }),
            )?]),
            "validator" => {
                let mut out = vec![Output::json(
                    types::VALIDATION_RESULT,
                    &json!({ "passed": true, "issues": [], "metadata": metadata }),
                )?];
                if index % 5 == 0 && generation < GENERATIONS {
                    out.push(Output::json(
                        types::WORK_DISCOVERY,
                        &json!({
                            "description": format!("follow-up g{}-i{}", generation + 1, index / 5),
                            "phase": "analysis",
                            "done_definition": "analysed",
                            "discovered_by": inv.agent,
                            "metadata": { "index": index / 5, "generation": generation + 1 },
                        }),
                    )?);
                }
                Ok(out)
            }
            other => Err(PluginError::invalid_input(format!("unknown role '{other}'"))),
        }
    }
}

murmur_guest::export_agent!(Bench);
