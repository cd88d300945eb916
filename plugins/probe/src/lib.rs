//! A test agent whose behaviour the manifest chooses (`config.mode`). The host's test
//! suite uses it to pin containment and classification of misbehaving plugins, and
//! engine mechanics such as fan-out and the cascade-depth limit. Never use it in a real
//! workflow.
//!
//! Modes:
//! - `echo`: re-publish the input under `config.emit_type` (default: the input's type),
//!   `config.count` times (default 1) — fan-out and runaway loops;
//! - `trap`: panic (the instance traps);
//! - `loop`: spin forever (the host's deadline must stop it);
//! - `memory`: allocate without bound (the host's memory cap must stop it);
//! - `garbage`: return a payload that is not JSON;
//! - `schema`: return a WorkDiscovery that violates its schema;
//! - `fail`: return a `failed` plugin error (errors as data, not a fault).

use murmur_guest::prelude::*;
use serde::Deserialize;

#[derive(Deserialize)]
struct Config {
    mode: String,
    #[serde(default)]
    emit_type: Option<String>,
    #[serde(default = "one")]
    count: u32,
}

fn one() -> u32 {
    1
}

struct Probe;

impl Agent for Probe {
    fn describe() -> PluginInfo {
        // Subscriptions come from the manifest; a probe has no defaults.
        PluginInfo::agent("probe", env!("CARGO_PKG_VERSION")).description("test agent with configurable misbehaviour")
    }

    fn handle(inv: Invocation) -> Result<Vec<Output>, PluginError> {
        let config: Config = inv.config()?;
        let input = inv.first_input()?;
        match config.mode.as_str() {
            "echo" => {
                let ty = config.emit_type.clone().unwrap_or_else(|| input.type_name.clone());
                Ok((0..config.count)
                    .map(|i| {
                        let mut v: serde_json::Value =
                            serde_json::from_str(&input.payload).unwrap_or(serde_json::Value::Null);
                        if let Some(obj) = v.as_object_mut() {
                            obj.insert("copy".into(), i.into());
                        }
                        Output { type_name: ty.clone(), payload: v.to_string(), tags: vec![], visibility: None }
                    })
                    .collect())
            }
            "trap" => panic!("probe asked to trap on {}", input.id),
            "loop" => {
                let mut x: u64 = 0;
                loop {
                    x = core::hint::black_box(x.wrapping_add(1));
                }
            }
            "memory" => {
                let mut hoard: Vec<Vec<u8>> = Vec::new();
                loop {
                    let mut block = vec![0u8; 1 << 20];
                    block[0] = hoard.len() as u8;
                    hoard.push(core::hint::black_box(block));
                }
            }
            "garbage" => Ok(vec![Output {
                type_name: types::WORK_DISCOVERY.into(),
                payload: "{not json at all".into(),
                tags: vec![],
                visibility: None,
            }]),
            "schema" => Ok(vec![Output {
                type_name: types::WORK_DISCOVERY.into(),
                payload: r#"{"description": 42, "phase": "analysis"}"#.into(),
                tags: vec![],
                visibility: None,
            }]),
            "fail" => Err(PluginError::failed("probe asked to fail")),
            other => Err(PluginError::invalid_input(format!("unknown probe mode '{other}'"))),
        }
    }
}

murmur_guest::export_agent!(Probe);
