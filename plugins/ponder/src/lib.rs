//! A test router whose `similarity()` is slow on purpose: it spins for
//! `metadata.spin` rounds of the discovery it scores, then calls every candidate a
//! duplicate (1.0). The host's tests use it to show that scoring happens outside the
//! run's lock: other agents' work commits while it spins. It routes nothing (`route()`
//! refuses, so the built-in router decides). Never use it in a real workflow.

use murmur_guest::prelude::*;

struct Ponder;

impl Router for Ponder {
    fn describe() -> PluginInfo {
        PluginInfo::router("ponder", env!("CARGO_PKG_VERSION"))
            .description("A deliberately slow similarity measure, for tests")
    }

    fn route(_discovery: Artifact, _phases: Vec<PhaseInfo>) -> Result<RouteDecision, PluginError> {
        Err(PluginError::invalid_input("ponder routes nothing"))
    }

    fn similarity(discovery: Artifact, candidates: Vec<Artifact>) -> Result<Vec<f32>, PluginError> {
        let payload: serde_json::Value = serde_json::from_str(&discovery.payload)
            .map_err(|e| PluginError::invalid_input(format!("payload: {e}")))?;
        let rounds = payload["metadata"]["spin"].as_u64().unwrap_or(0);
        let mut x: u64 = 1;
        for i in 0..rounds {
            x = core::hint::black_box(x.wrapping_mul(6364136223846793005).wrapping_add(i));
        }
        core::hint::black_box(x);
        Ok(vec![1.0; candidates.len()])
    }
}

murmur_guest::export_router!(Ponder);
