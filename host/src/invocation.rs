//! Invocation records: one call of one plugin on one set of inputs.
//!
//! The queue of invocations lives in the store, not in the scheduler's memory: a store
//! shared by several processes can hand the same queue to several workers, and
//! a durable store can resume it after a crash.

use crate::artifact::ArtifactId;
use crate::name::Name;
use crate::work::Priority;
use serde::{Deserialize, Serialize};
use std::fmt;

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
///
/// A run keeps one record per call for its whole length (37,440 at the cascade's
/// N = 10,000), so its size is the run's memory: what only a call that went wrong needs —
/// its error, fault class, retry and rejection counts, backoff and feedback — is kept in a
/// [`Setback`] box that nearly every record leaves empty, and the outputs are a boxed
/// slice. The record is then 128 bytes, a smaller allocator size class than the
/// 192 it was. It reads and writes as the same JSON as before (every field at top level).
#[derive(Debug, Clone, PartialEq)]
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
    /// Artifacts it published (set once, when it completes).
    pub outputs: Box<[ArtifactId]>,
    /// Enqueue order, for FIFO within a priority.
    pub seq: u64,
    setback: Option<Box<Setback>>,
    /// Cascade depth of its inputs.
    pub depth: u32,
    /// Times it was claimed.
    pub attempts: u32,
    /// Scheduling priority (from the work item).
    pub priority: Priority,
    /// Where it stands.
    pub status: InvocationStatus,
    /// An observer's invocation (`observer = true` on its plugin): it watches the work
    /// item it serves without holding it open or deciding its outcome; its failure fails
    /// only itself.
    pub observer: bool,
}

/// What went wrong with an invocation's attempts, if anything did.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Setback {
    /// What went wrong, if it failed (or, while it waits for a retry, why).
    pub error: Option<String>,
    /// The fault class, if the plugin misbehaved (as opposed to returning an error).
    pub fault: Option<FaultKind>,
    /// Times it was put back in the queue after a retryable error or a rejection.
    pub retries: u32,
    /// Times a validator rejected its outputs.
    pub rejections: u32,
    /// Not to be claimed before this time (ms since the Unix epoch): retry backoff.
    pub not_before_ms: u64,
    /// Why the previous attempt did not publish (rejection reasons, or the error), handed
    /// to the next attempt in its context.
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
            outputs: Box::default(),
            seq,
            setback: None,
            depth: 0,
            attempts: 0,
            priority: Priority::Medium,
            status: InvocationStatus::Queued,
            observer: false,
        }
    }

    /// What went wrong, if it failed (or, while it waits for a retry, why).
    pub fn error(&self) -> Option<&str> {
        self.setback.as_ref()?.error.as_deref()
    }

    /// The fault class, if the plugin misbehaved.
    pub fn fault(&self) -> Option<FaultKind> {
        self.setback.as_ref()?.fault
    }

    /// Times it was put back in the queue after a retryable error or a rejection.
    pub fn retries(&self) -> u32 {
        self.setback.as_ref().map_or(0, |s| s.retries)
    }

    /// Times a validator rejected its outputs.
    pub fn rejections(&self) -> u32 {
        self.setback.as_ref().map_or(0, |s| s.rejections)
    }

    /// Not to be claimed before this time (ms since the Unix epoch); 0 for no backoff.
    pub fn not_before_ms(&self) -> u64 {
        self.setback.as_ref().map_or(0, |s| s.not_before_ms)
    }

    /// Why the previous attempt did not publish; empty for a first attempt.
    pub fn feedback(&self) -> &[String] {
        self.setback.as_ref().map_or(&[], |s| &s.feedback)
    }

    /// Its setback, made (empty) if it had none.
    pub fn setback_mut(&mut self) -> &mut Setback {
        self.setback.get_or_insert_with(Box::default)
    }

    /// Forget the error of an earlier attempt (it succeeded after all); the counts stay.
    pub fn clear_error(&mut self) {
        if let Some(s) = &mut self.setback {
            s.error = None;
            if **s == Setback::default() {
                self.setback = None;
            }
        }
    }
}

/// The record as JSON: every field at top level, in the order the record had before the
/// setback was boxed, so stores written by earlier builds read back unchanged.
#[derive(Serialize)]
struct WireOut<'a> {
    id: &'a InvocationId,
    workflow_id: &'a Name,
    agent: &'a Name,
    inputs: &'a [ArtifactId],
    work_item: &'a Option<ArtifactId>,
    priority: Priority,
    seq: u64,
    depth: u32,
    status: InvocationStatus,
    attempts: u32,
    error: Option<&'a str>,
    fault: Option<FaultKind>,
    outputs: &'a [ArtifactId],
    retries: u32,
    rejections: u32,
    not_before_ms: u64,
    #[serde(skip_serializing_if = "<[String]>::is_empty")]
    feedback: &'a [String],
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    observer: bool,
}

#[derive(Deserialize)]
struct WireIn {
    id: InvocationId,
    workflow_id: Name,
    agent: Name,
    inputs: Box<[ArtifactId]>,
    work_item: Option<ArtifactId>,
    priority: Priority,
    seq: u64,
    depth: u32,
    status: InvocationStatus,
    attempts: u32,
    error: Option<String>,
    fault: Option<FaultKind>,
    outputs: Box<[ArtifactId]>,
    #[serde(default)]
    retries: u32,
    #[serde(default)]
    rejections: u32,
    #[serde(default)]
    not_before_ms: u64,
    #[serde(default)]
    feedback: Vec<String>,
    #[serde(default)]
    observer: bool,
}

impl Serialize for InvocationRecord {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        WireOut {
            id: &self.id,
            workflow_id: &self.workflow_id,
            agent: &self.agent,
            inputs: &self.inputs,
            work_item: &self.work_item,
            priority: self.priority,
            seq: self.seq,
            depth: self.depth,
            status: self.status,
            attempts: self.attempts,
            error: self.error(),
            fault: self.fault(),
            outputs: &self.outputs,
            retries: self.retries(),
            rejections: self.rejections(),
            not_before_ms: self.not_before_ms(),
            feedback: self.feedback(),
            observer: self.observer,
        }
        .serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for InvocationRecord {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let w = WireIn::deserialize(deserializer)?;
        let setback = Setback {
            error: w.error,
            fault: w.fault,
            retries: w.retries,
            rejections: w.rejections,
            not_before_ms: w.not_before_ms,
            feedback: w.feedback,
        };
        Ok(Self {
            id: w.id,
            workflow_id: w.workflow_id,
            agent: w.agent,
            inputs: w.inputs,
            work_item: w.work_item,
            outputs: w.outputs,
            seq: w.seq,
            setback: (setback != Setback::default()).then(|| Box::new(setback)),
            depth: w.depth,
            attempts: w.attempts,
            priority: w.priority,
            status: w.status,
            observer: w.observer,
        })
    }
}

/// The `error` of an invocation cancelled because its input reached the cascade-depth limit.
pub const DEPTH_LIMIT_REASON: &str = "cascade depth limit reached";
/// The `error` of an invocation cancelled because its agent reached its invocation cap.
pub const AGENT_CAP_REASON: &str = "agent invocation cap reached";

/// How a plugin misbehaved, as opposed to an error it returned: the fault classes an
/// invocation record keeps (classified in `plugin::fault`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FaultKind {
    /// The instance trapped (panic, `unreachable`, stack overflow, bad memory access).
    Trap,
    /// The wall-clock deadline (or fuel) ran out.
    Timeout,
    /// The instance tried to grow memory beyond its cap.
    Memory,
    /// It used a capability it was not granted.
    Denied,
    /// It returned outputs the host refuses: not JSON, unknown type, schema violation, too many or too large.
    InvalidOutput,
}

impl FaultKind {
    /// All classes, in summary order.
    pub const ALL: [FaultKind; 5] = [
        FaultKind::Trap,
        FaultKind::Timeout,
        FaultKind::Memory,
        FaultKind::Denied,
        FaultKind::InvalidOutput,
    ];

    /// The class's name in the summary.
    pub fn as_str(self) -> &'static str {
        match self {
            FaultKind::Trap => "trap",
            FaultKind::Timeout => "timeout",
            FaultKind::Memory => "memory",
            FaultKind::Denied => "denied",
            FaultKind::InvalidOutput => "invalid_output",
        }
    }
}

impl fmt::Display for FaultKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record() -> InvocationRecord {
        let mut inv = InvocationRecord::queued("w", "a", vec![ArtifactId::named("in")], 7);
        inv.id = InvocationId::named("inv");
        inv
    }

    #[test]
    fn a_record_reads_and_writes_the_json_it_had_before_its_setback_was_boxed() {
        let mut inv = record();
        inv.status = InvocationStatus::Failed;
        inv.outputs = vec![ArtifactId::named("out")].into_boxed_slice();
        let setback = inv.setback_mut();
        setback.error = Some("boom".into());
        setback.fault = Some(FaultKind::Trap);
        setback.retries = 2;
        setback.rejections = 1;
        setback.not_before_ms = 99;
        setback.feedback = vec!["why".into()];
        let json = serde_json::to_value(&inv).expect("json");
        assert_eq!(
            json,
            serde_json::json!({
                "id": InvocationId::named("inv").to_string(),
                "workflow_id": "w",
                "agent": "a",
                "inputs": [ArtifactId::named("in").to_string()],
                "work_item": null,
                "priority": "medium",
                "seq": 7,
                "depth": 0,
                "status": "failed",
                "attempts": 0,
                "error": "boom",
                "fault": "trap",
                "outputs": [ArtifactId::named("out").to_string()],
                "retries": 2,
                "rejections": 1,
                "not_before_ms": 99,
                "feedback": ["why"],
            }),
            "every field at top level"
        );
        let back: InvocationRecord = serde_json::from_value(json).expect("back");
        assert_eq!(back, inv);
    }

    #[test]
    fn a_record_that_never_went_wrong_carries_no_setback() {
        let inv = record();
        let json = serde_json::to_value(&inv).expect("json");
        assert_eq!(json["error"], serde_json::Value::Null);
        assert!(json.get("feedback").is_none(), "empty feedback is left out");
        // A record written by an earlier build, without the later fields.
        let mut old = json.clone();
        for key in ["retries", "rejections", "not_before_ms"] {
            old.as_object_mut().expect("object").remove(key);
        }
        let back: InvocationRecord = serde_json::from_value(old).expect("back");
        assert_eq!(back, inv);
        assert!(back.setback.is_none());
    }

    #[test]
    fn clearing_the_only_error_drops_the_setback_and_counts_keep_it() {
        let mut inv = record();
        inv.setback_mut().error = Some("first attempt".into());
        inv.clear_error();
        assert!(inv.setback.is_none());
        inv.setback_mut().retries = 1;
        inv.setback_mut().error = Some("again".into());
        inv.clear_error();
        assert_eq!((inv.error(), inv.retries()), (None, 1));
    }
}
