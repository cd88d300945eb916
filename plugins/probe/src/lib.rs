//! A test agent whose behaviour the manifest chooses (`config.mode`). The host's test
//! suite uses it to pin containment and classification of misbehaving plugins, and
//! engine mechanics such as fan-out and the cascade-depth limit. Never use it in a real
//! workflow.
//!
//! Modes:
//! - `echo`: re-publish the input under `config.emit_type` (default: the input's type),
//!   `config.count` times (default 1), private to `config.emit_private_to` if given —
//!   fan-out, runaway loops and visibility;
//! - `trap`: panic (the instance traps);
//! - `loop`: spin forever (the host's deadline must stop it);
//! - `memory`: allocate without bound (the host's memory cap must stop it);
//! - `memory-small`: the same in 48-byte blocks (the SDK's size classes, not the
//!   standard allocator, run out);
//! - `churn`: allocate, grow, shrink and free blocks of every size class and beyond in a
//!   seeded order, checking each block's contents before it is freed; publishes a `Note`
//!   with the blocks checked and the corrupt ones (the SDK allocator's integrity check);
//! - `garbage`: return a payload that is not JSON;
//! - `schema`: return a WorkDiscovery that violates its schema;
//! - `fail`: return a `failed` plugin error (errors as data, not a fault);
//! - `retryable`: return a `retryable` error on the first `config.fail_attempts` attempts
//!   (default 1), then echo;
//! - `discover`: publish `config.discoveries` (WorkDiscovery payloads) verbatim — keys,
//!   blockers, `auto` phases and near-duplicates for the loop's tests;
//! - `recurse`: recurse without bound (the stack limit must stop it: a trap);
//! - `huge`: return one output of `config.bytes` bytes (default 2 MiB);
//! - `count`: publish a `Note` with this instance's call number (a static counter: 1 on
//!   a fresh instance, more on a reused one) and the input's `label`; trap instead when
//!   the input says `trap = true`;
//! - `context`: publish a `config.emit_type` artifact (default `Note`) with the ids of the
//!   context it was handed (`handed`; a probe does not read context on demand) and of
//!   the list the `context` import answers (`imported`: the same list).
//!
//! It imports nothing but `log` and `context`, which need no grant: reading the
//! blackboard is `plugins/reader`'s job, so a probe needs no grants.

use murmur_guest::prelude::*;
use serde::Deserialize;

#[derive(Deserialize)]
struct Config {
    mode: String,
    #[serde(default)]
    emit_type: Option<String>,
    #[serde(default = "one")]
    count: u32,
    #[serde(default = "one")]
    fail_attempts: u32,
    #[serde(default)]
    discoveries: Vec<serde_json::Value>,
    #[serde(default)]
    bytes: Option<usize>,
    /// `echo`: make the outputs private to these agents (default: public).
    #[serde(default)]
    emit_private_to: Option<Vec<String>>,
}

/// Which attempt this is (1 = the first), from the host's `PreviousAttempt` context.
fn attempt(inv: &Invocation) -> u32 {
    inv.context_of("PreviousAttempt")
        .iter()
        .filter_map(|a| serde_json::from_str::<serde_json::Value>(&a.payload).ok())
        .filter_map(|v| v.get("attempt").and_then(|n| n.as_u64()))
        .max()
        .map_or(1, |n| n as u32 + 1)
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
            "context" => {
                let ids = |list: &[Artifact]| list.iter().map(|a| a.id.clone()).collect::<Vec<_>>();
                let imported = murmur_guest::bindings::murmur::plugin::context::get();
                let ty = config.emit_type.clone().unwrap_or_else(|| "Note".into());
                Ok(vec![Output::json(
                    &ty,
                    &serde_json::json!({ "handed": ids(&inv.context), "imported": ids(&imported) }),
                )?])
            }
            "echo" => {
                let ty = config.emit_type.clone().unwrap_or_else(|| input.type_name.clone());
                Ok((0..config.count)
                    .map(|i| {
                        let mut v: serde_json::Value =
                            serde_json::from_str(&input.payload).unwrap_or(serde_json::Value::Null);
                        if let Some(obj) = v.as_object_mut() {
                            obj.insert("copy".into(), i.into());
                        }
                        Output {
                            type_name: ty.clone(),
                            payload: v.to_string(),
                            tags: vec![],
                            visibility: config.emit_private_to.clone().map(Visibility::Private),
                        }
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
            "memory-small" => {
                let mut hoard: Vec<Box<[u8; 48]>> = Vec::new();
                loop {
                    let mut block = Box::new([0u8; 48]);
                    block[0] = hoard.len() as u8;
                    hoard.push(core::hint::black_box(block));
                }
            }
            "churn" => {
                let (checked, corrupt) = churn(input.payload.len() as u64);
                Ok(vec![Output::json("Note", &serde_json::json!({ "checked": checked, "corrupt": corrupt }))?])
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
            "retryable" => {
                let n = attempt(&inv);
                if n <= config.fail_attempts {
                    return Err(PluginError::retryable(format!("transient failure on attempt {n}")));
                }
                let ty = config.emit_type.clone().unwrap_or_else(|| input.type_name.clone());
                Ok(vec![Output {
                    type_name: ty,
                    payload: serde_json::json!({ "attempt": n }).to_string(),
                    tags: vec![],
                    visibility: None,
                }])
            }
            "discover" => config
                .discoveries
                .iter()
                .map(|d| Output::json(types::WORK_DISCOVERY, d))
                .collect(),
            "recurse" => {
                fn dive(depth: u64, pad: [u8; 256]) -> u64 {
                    if depth == u64::MAX {
                        return 0;
                    }
                    let pad = core::hint::black_box(pad);
                    dive(depth + 1, pad) + u64::from(pad[(depth % 256) as usize])
                }
                Ok(vec![Output::json("Note", &serde_json::json!({ "depth": dive(0, [1; 256]) }))?])
            }
            "huge" => {
                let text = "x".repeat(config.bytes.unwrap_or(2 << 20));
                let ty = config.emit_type.clone().unwrap_or_else(|| "Note".into());
                Ok(vec![Output::json(&ty, &serde_json::json!({ "text": text }))?])
            }
            "count" => {
                static CALLS: core::sync::atomic::AtomicU32 = core::sync::atomic::AtomicU32::new(0);
                let n = CALLS.fetch_add(1, core::sync::atomic::Ordering::Relaxed) + 1;
                let v: serde_json::Value = serde_json::from_str(&input.payload).unwrap_or(serde_json::Value::Null);
                if v.get("trap") == Some(&serde_json::Value::Bool(true)) {
                    panic!("probe asked to trap on call {n}");
                }
                Ok(vec![Output::json("Note", &serde_json::json!({ "call": n, "label": v.get("label") }))?])
            }
            other => Err(PluginError::invalid_input(format!("unknown probe mode '{other}'"))),
        }
    }
}

/// Blocks of sizes 1..6,000 bytes made, resized and freed in a seeded order, each filled
/// with a pattern of its own and checked before it is resized or freed. Returns (blocks
/// checked, blocks found corrupt).
fn churn(seed: u64) -> (u64, u64) {
    let mut rng = seed | 1;
    let mut next = move || {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng
    };
    let fill = |v: &mut Vec<u8>, tag: u8| {
        for (i, b) in v.iter_mut().enumerate() {
            *b = tag ^ (i as u8);
        }
    };
    let intact = |v: &[u8], tag: u8| v.iter().enumerate().all(|(i, b)| *b == tag ^ (i as u8));
    let mut live: Vec<(Vec<u8>, u8)> = Vec::new();
    let (mut checked, mut corrupt) = (0u64, 0u64);
    for round in 0..20_000u32 {
        let r = next();
        let tag = (round % 251) as u8;
        match r % 4 {
            0 | 1 => {
                let mut v = vec![0u8; 1 + (next() % 6000) as usize];
                fill(&mut v, tag);
                live.push((v, tag));
            }
            2 if !live.is_empty() => {
                let i = (next() % live.len() as u64) as usize;
                let (v, t) = live.swap_remove(i);
                checked += 1;
                corrupt += u64::from(!intact(&v, t));
            }
            _ if !live.is_empty() => {
                // Grow or shrink in place or across classes; the kept prefix must survive.
                let i = (next() % live.len() as u64) as usize;
                let (v, t) = &mut live[i];
                checked += 1;
                corrupt += u64::from(!intact(v, *t));
                v.resize(1 + (next() % 6000) as usize, 0);
                v.shrink_to_fit();
                fill(v, *t);
            }
            _ => {}
        }
    }
    for (v, t) in &live {
        checked += 1;
        corrupt += u64::from(!intact(v, *t));
    }
    (checked, corrupt)
}

murmur_guest::export_agent!(Probe);
