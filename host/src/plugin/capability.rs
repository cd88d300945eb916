//! Capabilities: the host interfaces a manifest grants a plugin (`grants = [...]`).
//!
//! Capabilities are granted by omission: a component that imports one of these
//! interfaces without the grant is refused at load, and a call that reaches for one at run
//! time faults `denied`. `log` and `context` need no grant.

use std::fmt;

/// A host interface granted per plugin.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Capability {
    /// `blackboard`: query artifacts, filtered by the plugin's visibility.
    Blackboard,
    /// `kv`: plugin-private state.
    Kv,
    /// `llm`: language-model completions and embeddings, made by the host.
    Llm,
}

impl Capability {
    /// Every capability, in the order messages list them.
    pub const ALL: [Capability; 3] = [Capability::Blackboard, Capability::Kv, Capability::Llm];

    /// Its name in manifests, and its WIT interface's.
    pub fn as_str(self) -> &'static str {
        match self {
            Capability::Blackboard => "blackboard",
            Capability::Kv => "kv",
            Capability::Llm => "llm",
        }
    }

    /// The capability named `name` (a `grants` entry, or an imported interface).
    pub fn parse(name: &str) -> Option<Capability> {
        Capability::ALL.into_iter().find(|c| c.as_str() == name)
    }

    /// The capabilities' names, for messages: `blackboard, kv, llm`.
    pub fn choices() -> String {
        let names: Vec<&str> = Capability::ALL.iter().map(|c| c.as_str()).collect();
        names.join(", ")
    }
}

impl fmt::Display for Capability {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::Capability;

    #[test]
    fn every_capability_reads_back_from_its_name_and_log_is_none() {
        for c in Capability::ALL {
            assert_eq!(Capability::parse(c.as_str()), Some(c));
        }
        assert_eq!(Capability::parse("log"), None, "always granted");
        assert_eq!(Capability::parse("context"), None, "always granted");
        assert_eq!(Capability::choices(), "blackboard, kv, llm");
    }
}
