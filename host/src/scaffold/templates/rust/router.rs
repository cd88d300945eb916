//! {name}: a router. Sends a discovery to the first phase its description names.

use murmur_guest::prelude::*;

struct Plugin;

impl Router for Plugin {
    fn describe() -> PluginInfo {
        PluginInfo::router("{name}", env!("CARGO_PKG_VERSION")).description("routes by phase name")
    }

    fn route(discovery: Artifact, phases: Vec<PhaseInfo>) -> Result<RouteDecision, PluginError> {
        let work: WorkDiscovery = discovery.parse()?;
        let text = work.description.to_lowercase();
        phases
            .iter()
            .find(|p| text.contains(&p.name))
            .map(|p| RouteDecision { phase: p.name.clone(), reason: format!("the description names '{}'", p.name) })
            // The host's built-in router decides what this one cannot.
            .ok_or_else(|| PluginError::invalid_input("no phase is named"))
    }
}

murmur_guest::export_router!(Plugin);
