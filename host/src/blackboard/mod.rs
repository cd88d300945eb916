//! The blackboard: where artifacts, work items and the invocation queue live.
//!
//! [`Store`] is the seam between the engine and persistence. Everything the scheduler
//! needs to resume or share a workflow is in the store — there is no scheduling state
//! that only one process's memory holds — and every state change is one atomic
//! [`Commit`]: an invocation's outputs, the work they create and the invocation's own
//! completion land together or not at all, which is what makes a re-run after a crash
//! publish nothing twice. [`memory::MemoryStore`] implements it in memory; the SQLite and
//! PostgreSQL stores implement the same trait.

mod by_id;
#[cfg(test)]
mod contract;
pub mod durable;
pub mod memory;
pub mod postgres;
pub mod ready;
pub mod sqlite;
pub mod tally;

use crate::artifact::{ArtifactId, SharedArtifact, Viewer};
use crate::invocation::{InvocationId, InvocationRecord};
use crate::lessons::{Lesson, LessonChange};
use crate::observe::Event;
use crate::work::WorkItem;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use thiserror::Error;

pub use durable::DurableStore;
pub use memory::MemoryStore;

/// One workflow run, as a store records it: what `resume`, `status` and `graph` need.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RunRecord {
    /// The run's correlation id.
    pub workflow_id: String,
    /// The workflow's name.
    pub name: String,
    /// The manifest it ran (absolute path, for resolving plugin paths on resume).
    pub manifest_path: String,
    /// The manifest's text when the run started (resume runs exactly this).
    pub manifest_text: String,
    /// Every plugin version the run used.
    pub plugins: Vec<PluginVersion>,
    /// `running` until the run ends, then its final status.
    pub status: crate::run::RunStatus,
    /// When it started (ms since the Unix epoch).
    pub started_at_ms: u64,
    /// When it last ended, if it has.
    pub finished_at_ms: Option<u64>,
    /// Its last summary, if it has ended.
    pub summary: Option<serde_json::Value>,
    /// Language-model usage so far, kept as the run goes so that `resume` continues the
    /// run's budgets and `status` reports it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub llm_usage: Option<crate::llm::Usage>,
    /// How long each agent's invocations took, kept as the run goes (a resumed run goes
    /// on counting).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub agent_times: BTreeMap<String, crate::durations::Durations>,
    /// The lessons from earlier runs the run put in its phases' instructions, by phase
    /// (chosen when it started: a resumed run uses the same).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub lessons: BTreeMap<String, Vec<crate::lessons::UsedLesson>>,
    /// What its end did to the workflow's lessons, once it has been distilled.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub distilled: Option<Box<crate::lessons::distill::Distilled>>,
}

/// A plugin file a run used.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PluginVersion {
    /// The manifest name.
    pub name: String,
    /// The component file.
    pub path: String,
    /// Its sha256.
    pub sha256: String,
}

/// Whether a summary names work item `w` ([`Store::notable_work`]).
pub fn is_notable(w: &WorkItem) -> bool {
    use crate::work::WorkStatus;
    !w.status().is_final()
        || w.status() == WorkStatus::Failed
        || (w.status() == WorkStatus::Done && w.recovery_of().is_some())
}

/// A store failure.
#[derive(Debug, Error)]
pub enum StoreError {
    /// An artifact id was written twice.
    #[error("artifact {0} already exists: artifacts are immutable")]
    DuplicateArtifact(ArtifactId),
    /// An idempotency key was taken twice.
    #[error("idempotency key {0:?} is taken already")]
    KeyTaken(String),
    /// A record referenced something the store does not have.
    #[error("{0}")]
    Missing(String),
    /// The backend failed.
    #[error("store backend: {0}")]
    Backend(String),
    /// Another process is writing the run (it holds the run's claim); it may let go.
    #[error("{0}")]
    RunHeld(String),
    /// A change would move a work item where its lifecycle does not allow.
    #[error(transparent)]
    Lifecycle(#[from] crate::work::IllegalTransition),
}

/// One atomic change: everything in it is applied, or nothing is.
#[derive(Debug, Default)]
pub struct Commit {
    /// New artifacts (immutable: writing an existing id is an error).
    pub artifacts: Vec<SharedArtifact>,
    /// Work items, inserted or replaced.
    pub work_items: Vec<WorkItem>,
    /// Invocations, inserted or replaced. A record with status `queued` enters the queue.
    pub invocations: Vec<InvocationRecord>,
    /// Idempotency keys taken by this commit's publishes: each lands with what it
    /// published, and a key already taken makes the whole commit fail.
    pub keys: Vec<KeyRecord>,
}

impl Commit {
    /// Whether there is nothing to apply.
    pub fn is_empty(&self) -> bool {
        self.artifacts.is_empty()
            && self.work_items.is_empty()
            && self.invocations.is_empty()
            && self.keys.is_empty()
    }
}

/// An idempotency key a publish from outside the run took: the same key and body get
/// the first publish's answer again, the same key with another body is refused. Kept in
/// the store, in the commit that published, so it holds across processes and restarts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyRecord {
    /// The run published into.
    pub workflow_id: String,
    /// The client's key.
    pub key: String,
    /// The sha256 of the request's body, hex.
    pub request_sha256: String,
    /// The artifact the first request published.
    pub artifact: ArtifactId,
}

/// An event a store recorded, numbered in the order recorded (`seq` grows across the
/// store, not per run), so a reader can go on after the last one it saw.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StoredEvent {
    /// Its number.
    pub seq: u64,
    /// When it was recorded (ms since the Unix epoch).
    pub at_ms: u64,
    /// Its kind (`work_routed`, `run_ended`, …).
    pub kind: String,
    /// The event as JSON (its `kind` included).
    pub data: serde_json::Value,
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
    /// By producer (an agent, `user`, `host`), then type name.
    pub by_producer: BTreeMap<String, BTreeMap<String, u64>>,
}

impl ArtifactCounts {
    /// Count one more artifact of `type_name` published by `producer`.
    pub fn add(&mut self, producer: &str, type_name: &str) {
        fn one(map: &mut BTreeMap<String, u64>, key: &str) {
            match map.get_mut(key) {
                Some(n) => *n += 1,
                None => {
                    map.insert(key.to_string(), 1);
                }
            }
        }
        self.total += 1;
        one(&mut self.by_type, type_name);
        match self.by_producer.get_mut(producer) {
            Some(types) => one(types, type_name),
            None => {
                self.by_producer.insert(
                    producer.to_string(),
                    BTreeMap::from([(type_name.to_string(), 1)]),
                );
            }
        }
    }
}

/// Artifacts read in place, by id or newest first, within one [`Store::read`]: no copy,
/// and no reference count taken unless the visitor keeps one. The run loop reads context
/// this way: it walks many candidates and keeps a dozen.
pub trait ArtifactReader {
    /// Visit artifact `id`; whether it exists.
    fn visit_artifact(
        &self,
        id: &ArtifactId,
        visit: &mut dyn FnMut(&SharedArtifact),
    ) -> Result<bool, StoreError>;
    /// Visit what [`Store::query`] would return, newest first; stop early when `visit`
    /// returns `false`.
    fn visit_recent(
        &self,
        query: &ArtifactQuery,
        viewer: &Viewer<'_>,
        visit: &mut dyn FnMut(&SharedArtifact) -> bool,
    ) -> Result<(), StoreError>;
}

/// What [`Store::read`] runs.
pub type Reading<'r> = &'r mut dyn FnMut(&dyn ArtifactReader) -> Result<(), StoreError>;

/// Persistence for artifacts, work items and invocations. Implementations must make each
/// [`Commit`] atomic and each [`Store::claim_next`] exclusive.
pub trait Store: Send + Sync {
    /// Apply a commit atomically.
    fn commit(&self, commit: Commit) -> Result<(), StoreError>;
    /// One artifact by id.
    fn artifact(&self, id: &ArtifactId) -> Result<Option<SharedArtifact>, StoreError>;
    /// Artifacts matching `query` that `viewer` may see, oldest first.
    fn query(
        &self,
        query: &ArtifactQuery,
        viewer: &Viewer<'_>,
    ) -> Result<Vec<SharedArtifact>, StoreError>;
    /// Run `read` with an [`ArtifactReader`] over this store's artifacts. A store with a
    /// lock holds it once for all of `read`'s lookups: choosing an invocation's context
    /// makes half a dozen, while the other worker commits under the same lock, and each
    /// acquisition was a chance to wait for it. `read` must not call back into the store;
    /// its error is the call's.
    fn read(&self, read: Reading<'_>) -> Result<(), StoreError>;
    /// Claim the most urgent claimable queued invocation of a workflow (highest priority,
    /// then oldest; not one whose `not_before_ms` is still ahead): it becomes `running`,
    /// its attempts grow by one, and its work item becomes `active`.
    fn claim_next(&self, workflow_id: &str) -> Result<Option<InvocationRecord>, StoreError>;
    /// When the earliest queued invocation that is waiting out a retry backoff becomes
    /// claimable (ms since the Unix epoch), if any is waiting.
    fn next_wakeup(&self, workflow_id: &str) -> Result<Option<u64>, StoreError>;
    /// One work item.
    fn work_item(&self, id: &ArtifactId) -> Result<Option<WorkItem>, StoreError>;
    /// The phase of work item `id`: what an invocation needs of its work item, without
    /// copying the record.
    fn work_phase(&self, id: &ArtifactId) -> Result<Option<crate::name::Name>, StoreError> {
        Ok(self.work_item(id)?.map(|w| w.phase))
    }
    /// A workflow's work items, in creation order.
    fn work_items(&self, workflow_id: &str) -> Result<Vec<WorkItem>, StoreError>;
    /// Show `visit` the work items of a workflow a summary names one by one, in creation
    /// order: those not final, those failed, and the recoveries done (which decide
    /// whether a failure was recovered, [`crate::work::unrecovered_failures`]). Without
    /// copies, and without the rest of the run's history, which a store need not keep in
    /// memory.
    fn notable_work(
        &self,
        workflow_id: &str,
        visit: &mut dyn FnMut(&[&WorkItem]),
    ) -> Result<(), StoreError> {
        self.scan(workflow_id, &mut |work, _| {
            let notable: Vec<&WorkItem> = work.iter().copied().filter(|w| is_notable(w)).collect();
            visit(&notable);
        })
    }
    /// One invocation.
    fn invocation(&self, id: &InvocationId) -> Result<Option<InvocationRecord>, StoreError>;
    /// A workflow's invocations, in creation order.
    fn invocations(&self, workflow_id: &str) -> Result<Vec<InvocationRecord>, StoreError>;
    /// A workflow's invocations that have not ended (queued or running), in creation
    /// order: open work, which a store keeps in memory however long the run.
    fn open_invocations(&self, workflow_id: &str) -> Result<Vec<InvocationRecord>, StoreError> {
        let mut open = Vec::new();
        self.scan(workflow_id, &mut |_, invocations| {
            open = invocations
                .iter()
                .filter(|i| {
                    matches!(
                        i.status,
                        crate::invocation::InvocationStatus::Queued
                            | crate::invocation::InvocationStatus::Running
                    )
                })
                .map(|i| InvocationRecord::clone(i))
                .collect();
        })?;
        Ok(open)
    }
    /// Show `visit` a workflow's work items and invocations (in creation order) without
    /// copying them: the periodic WorkflowMetrics reads every record, and copies of a
    /// large run's records cost more than the counting.
    fn scan(
        &self,
        workflow_id: &str,
        visit: &mut dyn FnMut(&[&WorkItem], &[&InvocationRecord]),
    ) -> Result<(), StoreError> {
        let work = self.work_items(workflow_id)?;
        let invocations = self.invocations(workflow_id)?;
        visit(
            &work.iter().collect::<Vec<_>>(),
            &invocations.iter().collect::<Vec<_>>(),
        );
        Ok(())
    }
    /// What a workflow's work items and invocations add up to (WorkflowMetrics), if the
    /// store keeps that tally as records change; `None` makes callers count the records.
    fn tally(&self, _workflow_id: &str) -> Result<Option<tally::Tally>, StoreError> {
        Ok(None)
    }
    /// A workflow's artifact counts.
    fn counts(&self, workflow_id: &str) -> Result<ArtifactCounts, StoreError>;
    /// Put every `running` invocation of a workflow back in the queue (a resumed run:
    /// whatever was running when the process died runs again). Returns how many.
    fn requeue_running(&self, workflow_id: &str) -> Result<u64, StoreError>;
    /// A plugin's private value for `key` in a workflow run.
    fn kv_get(
        &self,
        workflow_id: &str,
        plugin: &str,
        key: &str,
    ) -> Result<Option<String>, StoreError>;
    /// Set (`Some`) or delete (`None`) a plugin's private value.
    fn kv_set(
        &self,
        workflow_id: &str,
        plugin: &str,
        key: &str,
        value: Option<String>,
    ) -> Result<(), StoreError>;
    /// A plugin's keys starting with `prefix`, sorted.
    fn kv_keys(
        &self,
        workflow_id: &str,
        plugin: &str,
        prefix: &str,
    ) -> Result<Vec<String>, StoreError>;
    /// Record a run's metadata (at its start and end).
    fn save_run(&self, _run: &RunRecord) -> Result<(), StoreError> {
        Ok(())
    }
    /// Every run the store holds, newest first.
    fn runs(&self) -> Result<Vec<RunRecord>, StoreError> {
        Ok(Vec::new())
    }
    /// One run's record.
    fn run(&self, workflow_id: &str) -> Result<Option<RunRecord>, StoreError> {
        Ok(self
            .runs()?
            .into_iter()
            .find(|r| r.workflow_id == workflow_id))
    }
    /// Record the loop's notable events.
    fn record_events(&self, _workflow_id: &str, _events: &[Event]) -> Result<(), StoreError> {
        Ok(())
    }
    /// A run's recorded events numbered after `after`, oldest first, at most `limit`.
    fn events_after(
        &self,
        _workflow_id: &str,
        _after: u64,
        _limit: usize,
    ) -> Result<Vec<StoredEvent>, StoreError> {
        Ok(Vec::new())
    }
    /// A run's artifacts from position `from` on (0 = its first), in the order
    /// published, at most `limit`. A position is stable: the same artifact is at the
    /// same position after a restart, so it serves as a cursor.
    fn artifacts_from(
        &self,
        workflow_id: &str,
        from: u64,
        limit: usize,
    ) -> Result<Vec<SharedArtifact>, StoreError>;
    /// The idempotency key `key` of run `workflow_id`, if a publish took it.
    fn idempotency_key(
        &self,
        workflow_id: &str,
        key: &str,
    ) -> Result<Option<KeyRecord>, StoreError>;
    /// The work item of run `workflow_id` whose discovery took `key`, if one did (a
    /// run's discovery keys are unique; later discoveries name it as a blocker by it).
    fn discovery_key(&self, workflow_id: &str, key: &str)
    -> Result<Option<ArtifactId>, StoreError>;
    /// The lessons kept for the workflow named `workflow` (every workflow's with
    /// `None`), oldest first.
    fn lessons(&self, workflow: Option<&str>) -> Result<Vec<Lesson>, StoreError>;
    /// Apply `change` to the lessons atomically; durable when it returns.
    fn change_lessons(&self, change: &LessonChange) -> Result<(), StoreError>;
    /// Wait until everything committed so far is durable.
    fn flush(&self) -> Result<(), StoreError> {
        Ok(())
    }
    /// Finish with the store: make everything durable and release what it holds
    /// outside the process's memory (the SQLite store stops its writer and closes the
    /// database). Later writes fail; reads may still answer. The records in memory stay
    /// until the store is dropped, so a process about to exit can skip freeing them
    /// one by one.
    fn close(&self) -> Result<(), StoreError> {
        self.flush()
    }
    /// `memory` or `sqlite:PATH`.
    fn describe(&self) -> String {
        "memory".into()
    }
}
