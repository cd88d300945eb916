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
    /// `required`: work entering this phase waits for a person's approval first.
    #[serde(default)]
    pub approval: Approval,
    /// How long work may wait for approval before it expires, in ms (default: forever).
    #[serde(default)]
    pub approval_timeout_ms: Option<u64>,
}

/// Whether work waits for a person's approval.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Approval {
    /// It does not.
    #[default]
    None,
    /// It waits `awaiting_approval` until approved or rejected.
    Required,
}
