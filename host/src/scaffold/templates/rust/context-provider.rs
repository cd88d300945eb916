//! {name}: a context provider. Puts the candidates tagged `pinned` first; the rest keep
//! the host's order.

use murmur_guest::prelude::*;

struct Plugin;

impl ContextProvider for Plugin {
    fn describe() -> PluginInfo {
        PluginInfo::context_provider("{name}", env!("CARGO_PKG_VERSION")).description("pinned context first")
    }

    fn provide(_inv: Invocation, mut candidates: Vec<Artifact>) -> Result<Vec<Artifact>, PluginError> {
        // A stable sort: pinned (false < true, so negate) first, order kept otherwise.
        candidates.sort_by_key(|a| !a.tags.iter().any(|t| t == "pinned"));
        Ok(candidates)
    }
}

murmur_guest::export_context_provider!(Plugin);
