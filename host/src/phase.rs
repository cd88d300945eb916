//! Phases: categories of work (not steps), each with what "done" means there.
//! Declared in the manifest; the host hands the served work item's phase to every
//! invocation, so an agent's instructions follow the work, not the agent's name.

use serde::{Deserialize, Serialize};

/// A phase of work.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Phase {
    /// Unique name, e.g. `analysis`.
    pub name: String,
    /// What kind of work happens here.
    #[serde(default)]
    pub description: String,
    /// What success looks like.
    #[serde(default)]
    pub done_definitions: Vec<String>,
    /// What the phase produces.
    #[serde(default)]
    pub expected_outputs: Vec<String>,
    /// Instructions injected into every invocation serving this phase.
    #[serde(default)]
    pub instructions: String,
}
