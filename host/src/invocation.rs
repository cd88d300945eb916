//! Invocation records: one call of one plugin on one set of inputs.
//!
//! The queue of invocations lives in the store, not in the scheduler's memory: a store
//! shared by several processes (DESIGN §8) can hand the same queue to several workers, and
//! a durable store can resume it after a crash.

use crate::artifact::ArtifactId;
use crate::name::Name;
use crate::plugin::FaultKind;
use crate::work::Priority;
use serde::{Deserialize, Serialize};

crate::id::uuid_id! {
    /// An invocation's id: a UUIDv7 (see [`crate::id`]).
    InvocationId, "an invocation id"
}

/// Where an invocation stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum InvocationStatus {
    /// Waiting for a worker.
    Queued,
    /// Claimed by a worker.
    Running,
    /// Finished; its outputs were published with its completion.
    Done,
    /// Finished without publishing anything.
    Failed,
    /// Will not run (a budget or limit stopped it).
    Cancelled,
}

/// One call of a plugin.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct InvocationRecord {
    /// A UUIDv7.
    pub id: InvocationId,
    /// The workflow it belongs to.
    pub workflow_id: Name,
    /// The plugin (agent) to call.
    pub agent: Name,
    /// The artifacts that triggered it (fixed at creation: a boxed slice, no spare room).
    pub inputs: Box<[ArtifactId]>,
    /// The work item it serves, if its inputs belong to one.
    pub work_item: Option<ArtifactId>,
    /// Scheduling priority (from the work item).
    pub priority: Priority,
    /// Enqueue order, for FIFO within a priority.
    pub seq: u64,
    /// Cascade depth of its inputs.
    pub depth: u32,
    /// Where it stands.
    pub status: InvocationStatus,
    /// Times it was claimed.
    pub attempts: u32,
    /// What went wrong, if it failed.
    pub error: Option<String>,
    /// The fault class, if the plugin misbehaved (as opposed to returning an error).
    pub fault: Option<FaultKind>,
    /// Artifacts it published.
    pub outputs: Vec<ArtifactId>,
    /// Times it was put back in the queue after a retryable error or a rejection.
    #[serde(default)]
    pub retries: u32,
    /// Times a validator rejected its outputs.
    #[serde(default)]
    pub rejections: u32,
    /// Not to be claimed before this time (ms since the Unix epoch): retry backoff.
    #[serde(default)]
    pub not_before_ms: u64,
    /// Why the previous attempt did not publish (rejection reasons, or the error), handed
    /// to the next attempt in its context.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub feedback: Vec<String>,
}

impl InvocationRecord {
    /// A queued invocation of `agent` on `inputs`.
    pub fn queued(workflow_id: &str, agent: &str, inputs: Vec<ArtifactId>, seq: u64) -> Self {
        Self {
            id: InvocationId::generate(),
            workflow_id: Name::new(workflow_id),
            agent: Name::new(agent),
            inputs: inputs.into_boxed_slice(),
            work_item: None,
            priority: Priority::Medium,
            seq,
            depth: 0,
            status: InvocationStatus::Queued,
            attempts: 0,
            error: None,
            fault: None,
            outputs: Vec::new(),
            retries: 0,
            rejections: 0,
            not_before_ms: 0,
            feedback: Vec::new(),
        }
    }
}

/// The `error` of an invocation cancelled because its input reached the cascade-depth limit.
pub const DEPTH_LIMIT_REASON: &str = "cascade depth limit reached";
/// The `error` of an invocation cancelled because its agent reached its invocation cap.
pub const AGENT_CAP_REASON: &str = "agent invocation cap reached";
