//! Work items: the host's lifecycle record of a WorkDiscovery.
//!
//! A WorkDiscovery is data; its work item is the state machine the scheduler drives
//! (pending → active → done / failed, or cancelled). Every artifact produced while serving
//! a work item inherits it, so a work item is done only when everything it set off —
//! not just the first agent — has finished. The record lives in the store, so any process
//! that reads the store sees the same state.

use crate::artifact::ArtifactId;
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
    pub workflow_id: String,
    /// The phase that handles it.
    pub phase: String,
    /// Its scheduling priority.
    pub priority: Priority,
    /// Where it stands.
    pub status: WorkStatus,
    /// What needs doing (copied from the discovery, for status displays).
    pub description: String,
    /// Invocations serving it that have not finished.
    pub open_invocations: u32,
    /// Invocations serving it, in all.
    pub invocations: u32,
    /// Why it ended the way it did, when that is not plain success.
    pub reason: Option<String>,
}
