//! The plugin worlds of the WIT contract, and their one spelling.

use serde::Deserialize;
use std::fmt;

/// The plugin worlds of the WIT contract.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum World {
    /// Consumes artifacts, returns outputs.
    Agent,
    /// Chooses an invocation's context.
    ContextProvider,
    /// Assigns phases to discoveries.
    Router,
    /// Accepts or rejects outputs before publication.
    Validator,
    /// Turns what a run went through into lessons for the next run.
    Retrospective,
}

impl World {
    /// Every world, in the order errors list them.
    pub const ALL: [World; 5] = [
        World::Agent,
        World::ContextProvider,
        World::Router,
        World::Validator,
        World::Retrospective,
    ];

    /// The world's name in the WIT package (and in manifests).
    pub fn as_str(self) -> &'static str {
        match self {
            World::Agent => "agent",
            World::ContextProvider => "context-provider",
            World::Router => "router",
            World::Validator => "validator",
            World::Retrospective => "retrospective",
        }
    }

    /// The world named `name`, if there is one.
    pub fn parse(name: &str) -> Option<World> {
        World::ALL.into_iter().find(|w| w.as_str() == name)
    }

    /// The interface the world exports.
    pub fn export_interface(self) -> &'static str {
        match self {
            World::Agent => "agent-api",
            World::ContextProvider => "context-provider-api",
            World::Router => "router-api",
            World::Validator => "validator-api",
            World::Retrospective => "retrospective-api",
        }
    }

    /// The worlds' names, for messages: `agent, context-provider, router, validator or retrospective`.
    pub fn choices() -> String {
        let names: Vec<&str> = World::ALL.iter().map(|w| w.as_str()).collect();
        format!(
            "{} or {}",
            names[..names.len() - 1].join(", "),
            names[names.len() - 1]
        )
    }
}

impl<'de> Deserialize<'de> for World {
    /// A manifest's `world = "..."`; anything else is refused naming the choices.
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let name = String::deserialize(deserializer)?;
        World::parse(&name).ok_or_else(|| {
            serde::de::Error::custom(format!(
                "unknown world '{name}' (expected {})",
                World::choices()
            ))
        })
    }
}

impl fmt::Display for World {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::World;

    #[test]
    fn every_world_reads_back_from_its_name() {
        for w in World::ALL {
            assert_eq!(World::parse(w.as_str()), Some(w));
        }
        assert_eq!(World::parse("agnt"), None);
        assert_eq!(
            World::choices(),
            "agent, context-provider, router, validator or retrospective"
        );
    }
}
