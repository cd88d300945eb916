//! Example router (world `router`): keyword triage for discoveries whose phase is `auto`.
//!
//! `config.rules` maps keywords to phases, tried in order; the first keyword found in the
//! discovery's description decides. When none matches it declines (an `invalid-input`
//! error), and the host's built-in semantic router decides instead. Its `similarity` is
//! the SDK's default (Jaccard index of description words), used when the manifest's
//! `[dedup] plugin` names this router.

use murmur_guest::prelude::*;
use serde::Deserialize;

#[derive(Deserialize, Default)]
struct Config {
    #[serde(default)]
    rules: Vec<Rule>,
}

#[derive(Deserialize)]
struct Rule {
    when: String,
    phase: String,
}

struct Triage;

impl Router for Triage {
    fn describe() -> PluginInfo {
        PluginInfo::router("triage", env!("CARGO_PKG_VERSION")).description("Routes discoveries by keyword")
    }

    fn route(discovery: Artifact, phases: Vec<PhaseInfo>) -> Result<RouteDecision, PluginError> {
        let work: WorkDiscovery = discovery.parse()?;
        // A router has no invocation: its configuration travels in the discovery's
        // metadata (`metadata.triage`) or, here, is fixed at build time.
        let config: Config = serde_json::from_str(include_str!("rules.json"))
            .map_err(|e| PluginError::failed(format!("rules.json: {e}")))?;
        let text = work.description.to_lowercase();
        for rule in &config.rules {
            if text.contains(&rule.when.to_lowercase()) && phases.iter().any(|p| p.name == rule.phase) {
                return Ok(RouteDecision {
                    phase: rule.phase.clone(),
                    reason: format!("keyword '{}' means {} work", rule.when, rule.phase),
                });
            }
        }
        Err(PluginError::invalid_input("no triage keyword in the description"))
    }
}

murmur_guest::export_router!(Triage);
