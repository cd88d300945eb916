//! The blackboard: where artifacts, work items and the invocation queue live.
//!
//! [`Store`] is the seam between the engine and persistence. Everything the scheduler
//! needs to resume or share a workflow is in the store — there is no scheduling state
//! that only one process's memory holds — and every state change is one atomic
//! [`Commit`]: an invocation's outputs, the work they create and the invocation's own
//! completion land together or not at all, which is what makes a re-run after a crash
//! publish nothing twice. [`memory::MemoryStore`] implements it in memory; the SQLite and
//! PostgreSQL stores implement the same trait.

pub mod memory;

use crate::artifact::{Artifact, ArtifactId, Viewer};
use crate::invocation::InvocationRecord;
use crate::work::WorkItem;
use std::collections::BTreeMap;
use std::sync::Arc;
use thiserror::Error;

pub use memory::MemoryStore;

/// A store failure.
#[derive(Debug, Error)]
pub enum StoreError {
    /// An artifact id was written twice.
    #[error("artifact {0} already exists: artifacts are immutable")]
    DuplicateArtifact(ArtifactId),
    /// A record referenced something the store does not have.
    #[error("{0}")]
    Missing(String),
    /// The backend failed.
    #[error("store backend: {0}")]
    Backend(String),
}

/// One atomic change: everything in it is applied, or nothing is.
#[derive(Debug, Default)]
pub struct Commit {
    /// New artifacts (immutable: writing an existing id is an error).
    pub artifacts: Vec<Arc<Artifact>>,
    /// Work items, inserted or replaced.
    pub work_items: Vec<WorkItem>,
    /// Invocations, inserted or replaced. A record with status `queued` enters the queue.
    pub invocations: Vec<InvocationRecord>,
}

impl Commit {
    /// Whether there is nothing to apply.
    pub fn is_empty(&self) -> bool {
        self.artifacts.is_empty() && self.work_items.is_empty() && self.invocations.is_empty()
    }
}

/// A blackboard query.
#[derive(Debug, Clone, Default)]
pub struct ArtifactQuery {
    /// The workflow to search.
    pub workflow_id: String,
    /// Only this type.
    pub type_name: Option<String>,
    /// Only artifacts carrying all of these tags.
    pub tags: Vec<String>,
    /// At most this many, newest last.
    pub limit: usize,
}

/// Per-workflow artifact counts.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ArtifactCounts {
    /// All artifacts.
    pub total: u64,
    /// By type name.
    pub by_type: BTreeMap<String, u64>,
}

/// Persistence for artifacts, work items and invocations. Implementations must make each
/// [`Commit`] atomic and each [`Store::claim_next`] exclusive.
pub trait Store: Send + Sync {
    /// Apply a commit atomically.
    fn commit(&self, commit: Commit) -> Result<(), StoreError>;
    /// One artifact by id.
    fn artifact(&self, id: &ArtifactId) -> Result<Option<Arc<Artifact>>, StoreError>;
    /// Artifacts matching `query` that `viewer` may see, oldest first.
    fn query(
        &self,
        query: &ArtifactQuery,
        viewer: &Viewer<'_>,
    ) -> Result<Vec<Arc<Artifact>>, StoreError>;
    /// Claim the most urgent claimable queued invocation of a workflow (highest priority,
    /// then oldest; not one whose `not_before_ms` is still ahead): it becomes `running`,
    /// its attempts grow by one, and its work item becomes `active`.
    fn claim_next(&self, workflow_id: &str) -> Result<Option<InvocationRecord>, StoreError>;
    /// When the earliest queued invocation that is waiting out a retry backoff becomes
    /// claimable (ms since the Unix epoch), if any is waiting.
    fn next_wakeup(&self, workflow_id: &str) -> Result<Option<u64>, StoreError>;
    /// One work item.
    fn work_item(&self, id: &ArtifactId) -> Result<Option<WorkItem>, StoreError>;
    /// A workflow's work items, in creation order.
    fn work_items(&self, workflow_id: &str) -> Result<Vec<WorkItem>, StoreError>;
    /// One invocation.
    fn invocation(&self, id: &str) -> Result<Option<InvocationRecord>, StoreError>;
    /// A workflow's invocations, in creation order.
    fn invocations(&self, workflow_id: &str) -> Result<Vec<InvocationRecord>, StoreError>;
    /// A workflow's artifact counts.
    fn counts(&self, workflow_id: &str) -> Result<ArtifactCounts, StoreError>;
}
