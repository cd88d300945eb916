//! A test context provider that drops every candidate it is handed. What an agent still
//! receives as context was therefore never shown to it: the host's tests use it to show
//! that a provider is handed only what its own visibility allows. Never use it in a real
//! workflow.

use murmur_guest::prelude::*;

struct Witness;

impl ContextProvider for Witness {
    fn describe() -> PluginInfo {
        PluginInfo::context_provider("witness-provider", env!("CARGO_PKG_VERSION"))
            .description("Drops every candidate it sees")
    }

    fn provide(_inv: Invocation, _candidates: Vec<Artifact>) -> Result<Vec<Artifact>, PluginError> {
        Ok(Vec::new())
    }
}

murmur_guest::export_context_provider!(Witness);
