//! Work items: the host's lifecycle record of a WorkDiscovery.
//!
//! A WorkDiscovery is data; its work item is the state machine the scheduler drives
//! (pending → active → done / failed, or cancelled). Every artifact produced while serving
//! a work item inherits it, so a work item is done only when everything it set off —
//! not just the first agent — has finished. The record lives in the store, so any process
//! that reads the store sees the same state.

use crate::artifact::ArtifactId;
use crate::name::Name;
use serde::{Deserialize, Serialize};
use std::fmt;

/// How urgent a piece of work is. Higher runs first.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize, Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum Priority {
    /// Whenever nothing else is waiting.
    Low,
    /// The default.
    #[default]
    Medium,
    /// Before medium.
    High,
    /// First.
    Critical,
}

impl Priority {
    /// Parse the WorkDiscovery `priority` field (schema-validated, so unknown text is medium).
    pub fn parse(s: &str) -> Self {
        match s {
            "low" => Priority::Low,
            "high" => Priority::High,
            "critical" => Priority::Critical,
            _ => Priority::Medium,
        }
    }
}

/// Where a work item stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum WorkStatus {
    /// Published; nothing serving it has started yet.
    Pending,
    /// Waiting for blocking work to finish.
    Blocked,
    /// At least one invocation serving it has started and some are still open.
    Active,
    /// Everything it set off finished successfully.
    Done,
    /// An invocation serving it failed for good.
    Failed,
    /// Recorded as a duplicate of other work.
    Duplicate,
    /// Will not be worked on (e.g. beyond the cascade-depth limit).
    Cancelled,
}

impl WorkStatus {
    /// Done, failed, duplicate or cancelled: nothing more will happen to it.
    pub fn is_final(self) -> bool {
        matches!(
            self,
            WorkStatus::Done | WorkStatus::Failed | WorkStatus::Duplicate | WorkStatus::Cancelled
        )
    }
}

impl fmt::Display for WorkStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = match self {
            WorkStatus::Pending => "pending",
            WorkStatus::Blocked => "blocked",
            WorkStatus::Active => "active",
            WorkStatus::Done => "done",
            WorkStatus::Failed => "failed",
            WorkStatus::Duplicate => "duplicate",
            WorkStatus::Cancelled => "cancelled",
        };
        f.write_str(s)
    }
}

/// The lifecycle record of one WorkDiscovery.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct WorkItem {
    /// The WorkDiscovery artifact's id.
    pub id: ArtifactId,
    /// The workflow it belongs to.
    pub workflow_id: Name,
    /// The phase that handles it.
    pub phase: Name,
    /// Its scheduling priority.
    pub priority: Priority,
    /// Where it stands.
    pub status: WorkStatus,
    /// What needs doing (copied from the discovery, for status displays).
    pub description: Name,
    /// Invocations serving it that have not finished.
    pub open_invocations: u32,
    /// Invocations serving it, in all.
    pub invocations: u32,
    /// Why it ended the way it did, when that is not plain success.
    pub reason: Option<String>,
    /// The discovery's `key`, by which sibling discoveries may name it as a blocker.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    /// The work item whose invocation discovered this one (`None` for workflow inputs).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent_work: Option<ArtifactId>,
    /// Work items that must be done before this one may start (resolved from
    /// `blocking_work_ids`). Only those still unfinished while it is blocked.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub blocked_by: Vec<ArtifactId>,
    /// Whether it was ever blocked (and, if it is no longer, released).
    #[serde(default)]
    pub was_blocked: bool,
    /// The original, when this is recorded as a duplicate.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duplicate_of: Option<ArtifactId>,
    /// How many later discoveries were recorded as duplicates of this one.
    #[serde(default)]
    pub duplicates: u32,
    /// How the router chose its phase, when the discovery did not name a known one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub routed: Option<Box<Routing>>,
    /// The failed work item this recovery work was spawned for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recovery_of: Option<ArtifactId>,
    /// Whether it descends from recovery work: its failure spawns no further recovery,
    /// so recovery can never loop.
    #[serde(default)]
    pub in_recovery: bool,
}

impl WorkItem {
    /// A fresh pending work item.
    pub fn new(id: ArtifactId, workflow_id: &str, phase: &str, priority: Priority) -> Self {
        Self {
            id,
            workflow_id: Name::new(workflow_id),
            phase: Name::new(phase),
            priority,
            status: WorkStatus::Pending,
            description: Name::default(),
            open_invocations: 0,
            invocations: 0,
            reason: None,
            key: None,
            parent_work: None,
            blocked_by: Vec::new(),
            was_blocked: false,
            duplicate_of: None,
            duplicates: 0,
            routed: None,
            recovery_of: None,
            in_recovery: false,
        }
    }
}

/// A routing decision, recorded with the work item it placed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Routing {
    /// The phase the discovery asked for (`auto`, or a name no phase has).
    pub requested: String,
    /// Who decided: `builtin` or the router plugin's name.
    pub by: String,
    /// Why.
    pub reason: String,
}
