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
///
/// A run keeps one per discovery for its whole length (12,480 at the cascade's
/// N = 10,000). What only some work needs — a failure or cancellation reason, a key
/// siblings block on, blockers, duplicates, a routing decision, the failure it recovers
/// from — is kept in a [`WorkDetail`] box that plain work leaves empty: the record is then
/// 80 bytes (with one-pointer names) instead of 208 (the allocator's 224-byte class). It
/// reads and writes as the same JSON as before (every field at top level).
#[derive(Debug, Clone, PartialEq)]
pub struct WorkItem {
    /// The WorkDiscovery artifact's id.
    pub id: ArtifactId,
    /// The workflow it belongs to.
    pub workflow_id: Name,
    /// The phase that handles it.
    pub phase: Name,
    /// What needs doing (copied from the discovery, for status displays).
    pub description: Name,
    /// The work item whose invocation discovered this one (`None` for workflow inputs).
    pub parent_work: Option<ArtifactId>,
    /// Invocations serving it that have not finished.
    pub open_invocations: u32,
    /// Invocations serving it, in all.
    pub invocations: u32,
    /// Its scheduling priority.
    pub priority: Priority,
    /// Where it stands.
    pub status: WorkStatus,
    /// Whether it descends from recovery work: its failure spawns no further recovery,
    /// so recovery can never loop.
    pub in_recovery: bool,
    detail: Option<Box<WorkDetail>>,
}

/// What only some work items need (see [`WorkItem`]).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct WorkDetail {
    /// Why it ended the way it did, when that is not plain success.
    pub reason: Option<String>,
    /// The discovery's `key`, by which sibling discoveries may name it as a blocker.
    pub key: Option<String>,
    /// Work items that must be done before this one may start (resolved from
    /// `blocking_work_ids`). Only those still unfinished while it is blocked.
    pub blocked_by: Vec<ArtifactId>,
    /// Whether it was ever blocked (and, if it is no longer, released).
    pub was_blocked: bool,
    /// The original, when this is recorded as a duplicate.
    pub duplicate_of: Option<ArtifactId>,
    /// How many later discoveries were recorded as duplicates of this one.
    pub duplicates: u32,
    /// How the router chose its phase, when the discovery did not name a known one.
    pub routed: Option<Routing>,
    /// The failed work item this recovery work was spawned for.
    pub recovery_of: Option<ArtifactId>,
}

impl WorkItem {
    /// A fresh pending work item.
    pub fn new(id: ArtifactId, workflow_id: &str, phase: &str, priority: Priority) -> Self {
        Self {
            id,
            workflow_id: Name::new(workflow_id),
            phase: Name::new(phase),
            description: Name::default(),
            parent_work: None,
            open_invocations: 0,
            invocations: 0,
            priority,
            status: WorkStatus::Pending,
            in_recovery: false,
            detail: None,
        }
    }

    /// Why it ended the way it did, when that is not plain success.
    pub fn reason(&self) -> Option<&str> {
        self.detail.as_ref()?.reason.as_deref()
    }

    /// The discovery's `key`, by which sibling discoveries may name it as a blocker.
    pub fn discovery_key(&self) -> Option<&str> {
        self.detail.as_ref()?.key.as_deref()
    }

    /// Unfinished work items it waits for while blocked.
    pub fn blocked_by(&self) -> &[ArtifactId] {
        self.detail.as_ref().map_or(&[], |d| &d.blocked_by)
    }

    /// Whether it was ever blocked.
    pub fn was_blocked(&self) -> bool {
        self.detail.as_ref().is_some_and(|d| d.was_blocked)
    }

    /// The original, when this is recorded as a duplicate.
    pub fn duplicate_of(&self) -> Option<ArtifactId> {
        self.detail.as_ref()?.duplicate_of
    }

    /// How many later discoveries were recorded as duplicates of this one.
    pub fn duplicates(&self) -> u32 {
        self.detail.as_ref().map_or(0, |d| d.duplicates)
    }

    /// How the router chose its phase, if a router did.
    pub fn routed(&self) -> Option<&Routing> {
        self.detail.as_ref()?.routed.as_ref()
    }

    /// The failed work item this recovery work was spawned for.
    pub fn recovery_of(&self) -> Option<ArtifactId> {
        self.detail.as_ref()?.recovery_of
    }

    /// Its detail, made (empty) if it had none.
    pub fn detail_mut(&mut self) -> &mut WorkDetail {
        self.detail.get_or_insert_with(Box::default)
    }

    /// Set or clear why it ended; clearing a reason it never had makes no box.
    pub fn set_reason(&mut self, reason: Option<String>) {
        match (reason, &mut self.detail) {
            (None, None) => {}
            (reason, _) => self.detail_mut().reason = reason,
        }
    }
}

/// The record as JSON: every field at top level, in the order the record had before its
/// detail was boxed, so stores written by earlier builds read back unchanged.
#[derive(Serialize)]
struct WireOut<'a> {
    id: &'a ArtifactId,
    workflow_id: &'a Name,
    phase: &'a Name,
    priority: Priority,
    status: WorkStatus,
    description: &'a Name,
    open_invocations: u32,
    invocations: u32,
    reason: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    key: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    parent_work: &'a Option<ArtifactId>,
    #[serde(skip_serializing_if = "<[ArtifactId]>::is_empty")]
    blocked_by: &'a [ArtifactId],
    was_blocked: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    duplicate_of: Option<ArtifactId>,
    duplicates: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    routed: Option<&'a Routing>,
    #[serde(skip_serializing_if = "Option::is_none")]
    recovery_of: Option<ArtifactId>,
    in_recovery: bool,
}

#[derive(Deserialize)]
struct WireIn {
    id: ArtifactId,
    workflow_id: Name,
    phase: Name,
    priority: Priority,
    status: WorkStatus,
    description: Name,
    open_invocations: u32,
    invocations: u32,
    reason: Option<String>,
    #[serde(default)]
    key: Option<String>,
    #[serde(default)]
    parent_work: Option<ArtifactId>,
    #[serde(default)]
    blocked_by: Vec<ArtifactId>,
    #[serde(default)]
    was_blocked: bool,
    #[serde(default)]
    duplicate_of: Option<ArtifactId>,
    #[serde(default)]
    duplicates: u32,
    #[serde(default)]
    routed: Option<Routing>,
    #[serde(default)]
    recovery_of: Option<ArtifactId>,
    #[serde(default)]
    in_recovery: bool,
}

impl Serialize for WorkItem {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        WireOut {
            id: &self.id,
            workflow_id: &self.workflow_id,
            phase: &self.phase,
            priority: self.priority,
            status: self.status,
            description: &self.description,
            open_invocations: self.open_invocations,
            invocations: self.invocations,
            reason: self.reason(),
            key: self.discovery_key(),
            parent_work: &self.parent_work,
            blocked_by: self.blocked_by(),
            was_blocked: self.was_blocked(),
            duplicate_of: self.duplicate_of(),
            duplicates: self.duplicates(),
            routed: self.routed(),
            recovery_of: self.recovery_of(),
            in_recovery: self.in_recovery,
        }
        .serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for WorkItem {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let w = WireIn::deserialize(deserializer)?;
        let detail = WorkDetail {
            reason: w.reason,
            key: w.key,
            blocked_by: w.blocked_by,
            was_blocked: w.was_blocked,
            duplicate_of: w.duplicate_of,
            duplicates: w.duplicates,
            routed: w.routed,
            recovery_of: w.recovery_of,
        };
        Ok(Self {
            id: w.id,
            workflow_id: w.workflow_id,
            phase: w.phase,
            description: w.description,
            parent_work: w.parent_work,
            open_invocations: w.open_invocations,
            invocations: w.invocations,
            priority: w.priority,
            status: w.status,
            in_recovery: w.in_recovery,
            detail: (detail != WorkDetail::default()).then(|| Box::new(detail)),
        })
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

#[cfg(test)]
mod tests {
    use super::*;

    fn item() -> WorkItem {
        WorkItem::new(ArtifactId::named("w"), "wf", "analysis", Priority::High)
    }

    #[test]
    fn a_work_item_reads_and_writes_the_json_it_had_before_its_detail_was_boxed() {
        let mut w = item();
        w.status = WorkStatus::Duplicate;
        w.description = Name::new("Fix it");
        w.parent_work = Some(ArtifactId::named("parent"));
        w.in_recovery = true;
        let d = w.detail_mut();
        d.reason = Some("duplicate".into());
        d.key = Some("k".into());
        d.blocked_by = vec![ArtifactId::named("b")];
        d.was_blocked = true;
        d.duplicate_of = Some(ArtifactId::named("o"));
        d.duplicates = 2;
        d.routed = Some(Routing {
            requested: "auto".into(),
            by: "builtin".into(),
            reason: "words".into(),
        });
        d.recovery_of = Some(ArtifactId::named("failed"));
        let json = serde_json::to_value(&w).expect("json");
        assert_eq!(
            json,
            serde_json::json!({
                "id": ArtifactId::named("w").to_string(),
                "workflow_id": "wf",
                "phase": "analysis",
                "priority": "high",
                "status": "duplicate",
                "description": "Fix it",
                "open_invocations": 0,
                "invocations": 0,
                "reason": "duplicate",
                "key": "k",
                "parent_work": ArtifactId::named("parent").to_string(),
                "blocked_by": [ArtifactId::named("b").to_string()],
                "was_blocked": true,
                "duplicate_of": ArtifactId::named("o").to_string(),
                "duplicates": 2,
                "routed": {"requested": "auto", "by": "builtin", "reason": "words"},
                "recovery_of": ArtifactId::named("failed").to_string(),
                "in_recovery": true,
            }),
            "every field at top level"
        );
        let back: WorkItem = serde_json::from_value(json).expect("back");
        assert_eq!(back, w);
    }

    #[test]
    fn plain_work_carries_no_detail_and_reads_without_the_later_fields() {
        let mut w = item();
        w.set_reason(None);
        assert!(
            w.detail.is_none(),
            "clearing a reason it never had makes no box"
        );
        let json = serde_json::to_value(&w).expect("json");
        assert_eq!(json["reason"], serde_json::Value::Null);
        for absent in ["key", "parent_work", "blocked_by", "duplicate_of", "routed"] {
            assert!(
                json.get(absent).is_none(),
                "{absent} is left out when empty"
            );
        }
        // A record written by an earlier build, before the later fields existed.
        let mut old = json.clone();
        for key in ["was_blocked", "duplicates", "in_recovery"] {
            old.as_object_mut().expect("object").remove(key);
        }
        let back: WorkItem = serde_json::from_value(old).expect("back");
        assert_eq!(back, w);
        assert!(back.detail.is_none());
        w.set_reason(Some("cancelled".into()));
        assert_eq!(w.reason(), Some("cancelled"));
    }
}
