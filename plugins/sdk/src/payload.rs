//! The built-in artifact payloads, as `serde` types. The host ships the matching JSON
//! Schemas and validates every payload against them on publish.

use alloc::string::String;
use alloc::vec::Vec;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// Type names of the built-in artifact types.
pub mod types {
    /// Work that needs doing.
    pub const WORK_DISCOVERY: &str = "WorkDiscovery";
    /// Result of the analysis phase.
    pub const ANALYSIS_RESULT: &str = "AnalysisResult";
    /// Result of the implementation phase.
    pub const IMPLEMENTATION: &str = "Implementation";
    /// Result of the validation phase.
    pub const VALIDATION_RESULT: &str = "ValidationResult";
}

/// How urgent a piece of work is; the scheduler runs higher priorities first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Priority {
    /// Whenever there is nothing more pressing.
    Low,
    /// The default.
    #[default]
    Medium,
    /// Before medium.
    High,
    /// First.
    Critical,
}

/// Work that needs doing, in a phase.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct WorkDiscovery {
    /// What needs doing.
    pub description: String,
    /// The phase that should handle it (`auto` lets the router decide).
    pub phase: String,
    /// Scheduling priority.
    #[serde(default)]
    pub priority: Priority,
    /// What constitutes completion.
    pub done_definition: String,
    /// The agent that discovered it.
    pub discovered_by: String,
    /// The work this came from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent_work_id: Option<String>,
    /// A name for this work, unique in the workflow run, by which other discoveries'
    /// `blocking_work_ids` may refer to it — even siblings published in the same outputs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    /// Work that must be done first: work item ids or keys.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub blocking_work_ids: Vec<String>,
    /// Free-form tags.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<String>,
    /// Free-form metadata.
    #[serde(default, skip_serializing_if = "Map::is_empty")]
    pub metadata: Map<String, Value>,
}

/// The result of analysing a piece of work.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct AnalysisResult {
    /// The plan.
    pub plan: String,
    /// Whether the plan is approved for implementation.
    pub approved: bool,
    /// Work spawned for the next phase.
    #[serde(default)]
    pub next_phase_work: Vec<WorkDiscovery>,
    /// Free-form metadata.
    #[serde(default, skip_serializing_if = "Map::is_empty")]
    pub metadata: Map<String, Value>,
}

/// The result of implementing a piece of work.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Implementation {
    /// Source files written.
    pub code_files: Vec<String>,
    /// Test files written.
    #[serde(default)]
    pub test_files: Vec<String>,
    /// What was done.
    pub summary: String,
    /// Issues found on the way.
    #[serde(default)]
    pub discovered_issues: Vec<WorkDiscovery>,
    /// Free-form metadata.
    #[serde(default, skip_serializing_if = "Map::is_empty")]
    pub metadata: Map<String, Value>,
}

/// The result of validating a piece of work.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ValidationResult {
    /// Whether validation passed.
    pub passed: bool,
    /// Issues found.
    #[serde(default)]
    pub issues: Vec<String>,
    /// Optimisations discovered (also published as WorkDiscovery artifacts).
    #[serde(default)]
    pub optimizations_discovered: Vec<WorkDiscovery>,
    /// Free-form metadata.
    #[serde(default, skip_serializing_if = "Map::is_empty")]
    pub metadata: Map<String, Value>,
}
