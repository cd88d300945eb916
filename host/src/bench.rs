//! `murmur bench cascade`: the cascade workload, measured, with its counts checked
//! against the closed form so a fast-but-wrong engine cannot post a figure.
//!
//! The workload is `examples/cascade/workflow.toml` with its input `count` set to N.
//! Figures are printed, never asserted by tests.

use crate::blackboard::Store;
use crate::manifest::Manifest;
use crate::plugin::bindings::types as wit;
use crate::scheduler::Scheduler;
use crate::summary::RunStatus;
use crate::workflow::{LoadOptions, NativeHandler, Workflow};
use serde::Serialize;
use serde_json::{Value, json};
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;
use thiserror::Error;

/// The workload's artifact types (WorkflowComplete, the host's record, is not counted).
pub const WORKLOAD_TYPES: [&str; 4] = [
    "WorkDiscovery",
    "AnalysisResult",
    "Implementation",
    "ValidationResult",
];

/// Why a benchmark run is not a valid measurement.
#[derive(Debug, Error)]
pub enum BenchError {
    /// The workflow could not be loaded.
    #[error(transparent)]
    Load(#[from] crate::workflow::WorkflowError),
    /// The run failed.
    #[error(transparent)]
    Run(#[from] crate::scheduler::RunError),
    /// The manifest is not a cascade workload.
    #[error("{0}")]
    Workload(String),
    /// The counts differ from the closed form: the engine is wrong, the figure is void.
    #[error("self-check failed: {0}")]
    SelfCheck(String),
}

/// Work items of the cascade for `n` inputs: N + ⌈N/5⌉ + ⌈N/25⌉ + ⌈N/125⌉.
pub fn expected_work_items(n: u64) -> u64 {
    let mut total = 0;
    let mut generation = n;
    for _ in 0..4 {
        total += generation;
        generation = generation.div_ceil(5);
    }
    total
}

/// One benchmark result (the JSON line `murmur bench cascade` prints).
#[derive(Debug, Clone, Serialize)]
pub struct CascadeFigures {
    /// Inputs.
    pub n: u64,
    /// Workload artifacts published.
    pub artifacts: u64,
    /// Invocations run.
    pub invocations: u64,
    /// Wall-clock seconds from the first publish to idle.
    pub seconds: f64,
    /// `artifacts / seconds`.
    pub artifacts_per_s: f64,
    /// Peak resident set of the process, MiB.
    pub peak_rss_mb: f64,
    /// Of the resident set when the run ended, MiB: anonymous memory (the heap, the
    /// instance pool, stacks: `RssAnon`).
    pub rss_anon_mb: f64,
    /// The same for file-backed pages (the binary's code and data, shared libraries,
    /// compiled components: `RssFile`).
    pub rss_file_mb: f64,
    /// Median host time from claiming an invocation to calling the plugin, µs.
    pub p50_dispatch_us: u32,
    /// 99th percentile of the same, µs.
    pub p99_dispatch_us: u32,
    /// The store used.
    pub store: String,
    /// `wasm` (sandboxed components) or `native` (the same agents as Rust in the host).
    pub agents: String,
    /// For `wasm`: the most calls one instance serves (`limits.reuse`; 1 is a fresh
    /// instance for every call).
    pub calls_per_instance: u32,
    /// Worker processes that ran the invocations (0: this process ran them).
    #[serde(default)]
    pub workers: u32,
}

/// Worker processes run the benchmark's invocations: the run only coordinates.
pub struct Remote {
    /// The PostgreSQL database they take their work from.
    pub url: String,
    /// The run's store in it.
    pub store: Arc<crate::blackboard::DurableStore>,
    /// How many there are (for the figures).
    pub workers: u32,
}

/// How the benchmark's agents run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Agents {
    /// WebAssembly components, with the manifest's `limits.reuse`.
    Wasm,
    /// WebAssembly components, a fresh instance for every call.
    WasmFresh,
    /// The same agents as Rust code in the host.
    Native,
}

impl Agents {
    /// From the command line's `--native` and `--fresh`.
    pub fn from_flags(native: bool, fresh: bool) -> Self {
        match (native, fresh) {
            (true, _) => Agents::Native,
            (false, true) => Agents::WasmFresh,
            (false, false) => Agents::Wasm,
        }
    }
}

/// The cascade's agents in Rust, for `--native`: the same logic as `plugins/bench-agent`,
/// parsing and producing the same JSON text, so the difference is the sandbox.
struct NativeCascadeAgent {
    role: String,
}

impl NativeHandler for NativeCascadeAgent {
    fn handle(&self, inv: &wit::Invocation) -> Result<Vec<wit::Output>, wit::PluginError> {
        let invalid = wit::PluginError::InvalidInput;
        let input = inv
            .inputs
            .first()
            .ok_or_else(|| invalid("no inputs".into()))?;
        let payload: Value =
            serde_json::from_str(&input.payload).map_err(|e| invalid(e.to_string()))?;
        let number = |key: &str| -> Result<u64, wit::PluginError> {
            match payload.get("metadata").and_then(|m| m.get(key)) {
                Some(Value::Number(n)) => n.as_u64(),
                Some(Value::String(s)) => s.parse().ok(),
                None => Some(0),
                _ => None,
            }
            .ok_or_else(|| invalid(format!("metadata.{key} is not a non-negative integer")))
        };
        let (index, generation) = (number("index")?, number("generation")?);
        let metadata = json!({ "index": index, "generation": generation });
        let out = |type_name: &str, v: Value| wit::Output {
            type_name: type_name.into(),
            payload: v.to_string(),
            tags: Vec::new(),
            visibility: None,
        };
        Ok(match self.role.as_str() {
            "analyzer" => vec![out(
                "AnalysisResult",
                json!({
                    "plan": format!("plan {generation}.{index}"),
                    "approved": true,
                    "next_phase_work": [{ "description": format!("implement plan {generation}.{index}"), "phase": "implementation" }],
                    "metadata": metadata,
                }),
            )],
            "implementer" => vec![out(
                "Implementation",
                json!({ "code_files": [format!("src/item_{generation}_{index}.rs")], "summary": "done", "metadata": metadata }),
            )],
            "validator" => {
                let mut v = vec![out(
                    "ValidationResult",
                    json!({ "passed": true, "issues": [], "metadata": metadata }),
                )];
                if index % 5 == 0 && generation < 3 {
                    v.push(out(
                        "WorkDiscovery",
                        json!({
                            "description": format!("follow-up g{}-i{}", generation + 1, index / 5),
                            "phase": "analysis",
                            "done_definition": "analysed",
                            "discovered_by": inv.agent,
                            "metadata": { "index": index / 5, "generation": generation + 1 },
                        }),
                    ));
                }
                v
            }
            other => return Err(invalid(format!("unknown role '{other}'"))),
        })
    }
}

/// The `p`-th percentile (0..=100) of `samples`, which it sorts.
pub fn percentile(samples: &mut [u32], p: f64) -> u32 {
    if samples.is_empty() {
        return 0;
    }
    samples.sort_unstable();
    let rank = ((p / 100.0) * (samples.len() - 1) as f64).round() as usize;
    samples[rank.min(samples.len() - 1)]
}

/// Run the cascade workload of `manifest` with `n` inputs on `store`, its agents run as
/// `agents` says. The time
/// includes making every commit durable (the store's flush).
pub async fn cascade(
    manifest: &Path,
    n: u64,
    agents: Agents,
    options: LoadOptions,
    store: Arc<dyn Store>,
    remote: Option<Remote>,
) -> Result<CascadeFigures, BenchError> {
    let mut m = Manifest::load(manifest).map_err(crate::workflow::WorkflowError::from)?;
    let input = m.inputs.first_mut().ok_or_else(|| {
        BenchError::Workload(format!("{} has no [[input]] to repeat", manifest.display()))
    })?;
    input.count = n;
    if agents != Agents::Wasm {
        for p in &mut m.plugins {
            p.spec.limits.reuse = 0;
        }
    }
    let calls_per_instance = m
        .plugins
        .iter()
        .map(|p| p.spec.limits.reuse.max(1))
        .max()
        .unwrap_or(1);
    let native = agents == Agents::Native;
    let mut wf = Workflow::from_manifest(m, options)?;
    if native {
        for agent in &mut wf.agents {
            let role = serde_json::from_str::<Value>(&agent.plugin.config_json)
                .ok()
                .and_then(|c| c.get("role").and_then(Value::as_str).map(str::to_string))
                .ok_or_else(|| {
                    BenchError::Workload(format!("agent '{}' has no config.role", agent.name()))
                })?;
            agent.native = Some(Arc::new(NativeCascadeAgent { role }));
        }
    }
    let wf = Arc::new(wf);
    let store_name = store.describe();
    let samples = Arc::new(std::sync::Mutex::new(Vec::new()));
    // Freeing the run's records afterwards is not part of the run: the store outlives
    // the measurement.
    let keep = store.clone();
    let mut scheduler = Scheduler::new(wf.clone(), store).with_dispatch_samples(samples.clone());
    let workers = remote.as_ref().map_or(0, |r| r.workers);
    if let Some(remote) = remote {
        let dispatch = crate::workers::PgDispatch::start_for(&remote.url, remote.store, &wf)
            .await
            .map_err(|e| BenchError::Run(e.into()))?;
        scheduler = scheduler.with_dispatch(dispatch);
    }
    drop(wf);
    let started = Instant::now();
    let summary = scheduler.run().await?;
    let seconds = started.elapsed().as_secs_f64();
    // What is resident with every record still held.
    let (rss_anon_mb, rss_file_mb) = (status_mb("RssAnon:"), status_mb("RssFile:"));
    drop(keep);
    let mut samples = samples.lock().map(|v| v.clone()).unwrap_or_default();

    let work = expected_work_items(n);
    let per_type: Vec<(&str, u64)> = WORKLOAD_TYPES
        .iter()
        .map(|t| (*t, summary.by_type.get(*t).copied().unwrap_or(0)))
        .collect();
    let artifacts: u64 = per_type.iter().map(|(_, c)| c).sum();
    let mut problems = Vec::new();
    if summary.status != RunStatus::Complete {
        problems.push(format!("status {:?}, expected complete", summary.status));
    }
    for (t, c) in &per_type {
        if *c != work {
            problems.push(format!("{c} {t}, expected {work}"));
        }
    }
    if summary.invocations != 3 * work {
        problems.push(format!(
            "{} invocations, expected {}",
            summary.invocations,
            3 * work
        ));
    }
    if summary.faults.values().any(|f| *f > 0) {
        problems.push(format!("faults {:?}", summary.faults));
    }
    if !problems.is_empty() {
        return Err(BenchError::SelfCheck(problems.join("; ")));
    }
    Ok(CascadeFigures {
        n,
        artifacts,
        invocations: summary.invocations,
        seconds,
        artifacts_per_s: artifacts as f64 / seconds,
        peak_rss_mb: peak_rss_mb(),
        rss_anon_mb,
        workers,
        rss_file_mb,
        p50_dispatch_us: percentile(&mut samples, 50.0),
        p99_dispatch_us: percentile(&mut samples, 99.0),
        store: store_name,
        agents: if native { "native" } else { "wasm" }.into(),
        calls_per_instance: if native { 0 } else { calls_per_instance },
    })
}

/// The process's peak resident set (VmHWM), MiB; 0 where /proc is unavailable.
pub fn peak_rss_mb() -> f64 {
    status_mb("VmHWM:")
}

/// The figure `key` (e.g. `VmHWM:`) of `/proc/self/status`, MiB; 0 where it is unavailable.
fn status_mb(key: &str) -> f64 {
    status_kb(key) as f64 / 1024.0
}

/// The figure `key` (e.g. `VmRSS:`) of `/proc/self/status`, KiB; 0 where it is unavailable.
pub fn status_kb(key: &str) -> u64 {
    process_status_kb("self", key)
}

/// The figure `key` (e.g. `VmHWM:`) of `/proc/PROCESS/status` (`self` or a pid), KiB; 0
/// where it is unavailable.
pub fn process_status_kb(process: &str, key: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{process}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix(key))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        })
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::expected_work_items;

    #[test]
    fn the_closed_form_matches_the_documented_counts() {
        assert_eq!(expected_work_items(10_000), 12_480);
        assert_eq!(3 * expected_work_items(10_000), 37_440);
        assert_eq!(4 * expected_work_items(10_000), 49_920);
        assert_eq!(
            expected_work_items(1),
            4,
            "index 0 is every 5th item in each generation"
        );
    }
}
