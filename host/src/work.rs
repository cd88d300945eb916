//! Work items: the host's lifecycle record of a WorkDiscovery.
//!
//! A WorkDiscovery is data; its work item is the state machine the scheduler drives.
//! Every artifact produced while serving a work item inherits it, so a work item is done
//! only when everything it set off — not just the first agent — has finished. The record
//! lives in the store, so any process that reads the store sees the same state.
//!
//! This module is the only code that changes a work item's status, through the named
//! moves of [`WorkItem`] (`start`, `block`, `finish`, …). The moves it allows:
//!
//! ```text
//!            ┌──────────── block ───────────▶ blocked ── unblock (last blocker done) ──┐
//!            │                                                                          │
//! pending ◀──┼──────────────────────────────────────────────────────────────────────────┘
//!    ▲       ├── start ──▶ active ── finish ──▶ done
//!    │       │               └───── fail ────▶ failed
//!    │       ├── mark_duplicate ─────────────▶ duplicate
//!    │       ├── cancel ─────────────────────▶ cancelled
//!    │       └── await_approval ──▶ awaiting_approval ── reject ──▶ failed
//!    │                                   │      └──────── expire ──▶ expired
//!    ├────────────── approve ────────────┘
//!    └──────────── reopen (a later invocation serves it) ──┘
//! ```
//!
//! Any other move is an [`IllegalTransition`]: a host bug or a damaged store, reported as
//! an error instead of a quietly wrong count. Work in a phase (or discovered by a plugin)
//! that requires approval waits `awaiting_approval` for a person's decision; approved, it
//! is pending again (and blocked if its blockers are not done yet).

use crate::artifact::ArtifactId;
use crate::name::Name;
use serde::{Deserialize, Serialize};
use std::fmt;
use thiserror::Error;

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
    /// Waiting for a person to approve or reject it.
    #[serde(rename = "awaiting_approval")]
    AwaitingApproval,
    /// Nobody decided on it before its approval timeout.
    Expired,
}

impl WorkStatus {
    /// Every status, in lifecycle order.
    pub const ALL: [WorkStatus; 9] = [
        WorkStatus::Pending,
        WorkStatus::Blocked,
        WorkStatus::Active,
        WorkStatus::Done,
        WorkStatus::Failed,
        WorkStatus::Duplicate,
        WorkStatus::Cancelled,
        WorkStatus::AwaitingApproval,
        WorkStatus::Expired,
    ];

    /// Done, failed, duplicate or cancelled: nothing more will happen to it (a cancelled
    /// item is reopened only if a later invocation serves it after all).
    pub fn is_final(self) -> bool {
        matches!(
            self,
            WorkStatus::Done
                | WorkStatus::Failed
                | WorkStatus::Duplicate
                | WorkStatus::Cancelled
                | WorkStatus::Expired
        )
    }

    /// Whether the lifecycle allows a move from this status to `to` (see the module docs).
    pub fn may_become(self, to: WorkStatus) -> bool {
        use WorkStatus::*;
        matches!(
            (self, to),
            (
                Pending,
                Blocked | Active | Duplicate | Cancelled | AwaitingApproval
            ) | (Blocked, Pending)
                | (Active, Done | Failed)
                | (Cancelled, Pending | Cancelled)
                | (AwaitingApproval, Pending | Failed | Expired)
        )
    }
}

/// A status change the work item's lifecycle does not allow.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("work item {id}: {from} → {to} is not a move its lifecycle allows")]
pub struct IllegalTransition {
    /// The work item.
    pub id: ArtifactId,
    /// Where it stood.
    pub from: WorkStatus,
    /// Where it was asked to go.
    pub to: WorkStatus,
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
            WorkStatus::AwaitingApproval => "awaiting_approval",
            WorkStatus::Expired => "expired",
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
    /// Where it stands; changed only through the moves below.
    status: WorkStatus,
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
    /// Its approval, when it needed one.
    pub approval: Option<Approval>,
}

/// A work item's approval: when it was asked for, until when, and the decision.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Approval {
    /// When it began waiting (ms since the Unix epoch).
    pub requested_at_ms: u64,
    /// When it expires unless decided (ms since the Unix epoch); `None`: never.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at_ms: Option<u64>,
    /// The decision, once made.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decision: Option<Decision>,
}

/// A person's decision on work awaiting approval.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Decision {
    /// Approved (or rejected).
    pub approved: bool,
    /// Why (required to reject).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// When (ms since the Unix epoch).
    pub at_ms: u64,
    /// Whether the run has acted on it yet: a decision recorded in a store while no
    /// process ran the run waits for the run to go on.
    #[serde(default)]
    pub applied: bool,
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

    /// Where it stands.
    pub fn status(&self) -> WorkStatus {
        self.status
    }

    /// Test fixtures: the record as a store may hold it, whatever moves led there.
    #[cfg(test)]
    pub(crate) fn with_status(mut self, status: WorkStatus) -> Self {
        self.status = status;
        self
    }

    fn go(&mut self, to: WorkStatus) -> Result<(), IllegalTransition> {
        if !self.status.may_become(to) {
            return Err(IllegalTransition {
                id: self.id,
                from: self.status,
                to,
            });
        }
        self.status = to;
        Ok(())
    }

    /// pending → active: the first invocation serving it has started.
    pub fn start(&mut self) -> Result<(), IllegalTransition> {
        self.go(WorkStatus::Active)
    }

    /// pending → blocked: it waits for the unfinished work items `blockers`.
    pub fn block(&mut self, blockers: Vec<ArtifactId>) -> Result<(), IllegalTransition> {
        self.go(WorkStatus::Blocked)?;
        let detail = self.detail_mut();
        detail.was_blocked = true;
        detail.blocked_by = blockers;
        Ok(())
    }

    /// `done` has finished: it no longer waits for it. Blocked → pending once nothing is
    /// left to wait for; whether that happened.
    pub fn unblock(&mut self, done: &ArtifactId) -> Result<bool, IllegalTransition> {
        if self.status != WorkStatus::Blocked {
            return Err(IllegalTransition {
                id: self.id,
                from: self.status,
                to: WorkStatus::Pending,
            });
        }
        let detail = self.detail_mut();
        detail.blocked_by.retain(|b| b != done);
        if !detail.blocked_by.is_empty() {
            return Ok(false);
        }
        self.go(WorkStatus::Pending)?;
        self.set_reason(None);
        Ok(true)
    }

    /// active → done: everything it set off finished.
    pub fn finish(&mut self) -> Result<(), IllegalTransition> {
        self.go(WorkStatus::Done)
    }

    /// active → failed: an invocation serving it failed for good, saying `reason`.
    pub fn fail(&mut self, reason: String) -> Result<(), IllegalTransition> {
        self.go(WorkStatus::Failed)?;
        self.set_reason(Some(reason));
        Ok(())
    }

    /// pending → duplicate: recorded as a duplicate of `original`, with its similarity.
    pub fn mark_duplicate(
        &mut self,
        original: ArtifactId,
        score: f64,
    ) -> Result<(), IllegalTransition> {
        self.go(WorkStatus::Duplicate)?;
        let detail = self.detail_mut();
        detail.reason = Some(format!("duplicate of {original} (similarity {score:.2})"));
        detail.duplicate_of = Some(original);
        Ok(())
    }

    /// pending → cancelled: nothing will serve it, for `reason` (e.g. the depth limit).
    pub fn cancel(&mut self, reason: String) -> Result<(), IllegalTransition> {
        self.go(WorkStatus::Cancelled)?;
        self.set_reason(Some(reason));
        Ok(())
    }

    /// pending → awaiting_approval: it waits for a person's decision, and then for the
    /// unfinished work items `blockers`.
    pub fn await_approval(
        &mut self,
        requested_at_ms: u64,
        expires_at_ms: Option<u64>,
        blockers: Vec<ArtifactId>,
    ) -> Result<(), IllegalTransition> {
        self.go(WorkStatus::AwaitingApproval)?;
        let detail = self.detail_mut();
        detail.blocked_by = blockers;
        detail.approval = Some(Approval {
            requested_at_ms,
            expires_at_ms,
            decision: None,
        });
        Ok(())
    }

    /// Record a decision on work awaiting approval, not yet acted on (a store written
    /// while no process runs the run; the run acts on it when it goes on).
    pub fn record_decision(&mut self, decision: Decision) -> Result<(), IllegalTransition> {
        let refused = IllegalTransition {
            id: self.id,
            from: self.status,
            to: if decision.approved {
                WorkStatus::Pending
            } else {
                WorkStatus::Failed
            },
        };
        if self.status != WorkStatus::AwaitingApproval {
            return Err(refused);
        }
        match self.detail_mut().approval.as_mut() {
            Some(a) if a.decision.is_none() => {
                a.decision = Some(decision);
                Ok(())
            }
            _ => Err(refused),
        }
    }

    /// awaiting_approval → pending: approved. Returns the blockers it still names (the
    /// caller blocks it on those not done yet).
    pub fn approve(&mut self, at_ms: u64) -> Result<Vec<ArtifactId>, IllegalTransition> {
        self.go(WorkStatus::Pending)?;
        let detail = self.detail_mut();
        let decision = Decision {
            approved: true,
            reason: None,
            at_ms,
            applied: true,
        };
        match detail.approval.as_mut() {
            Some(a) => {
                let reason = a.decision.take().and_then(|d| d.reason);
                a.decision = Some(Decision { reason, ..decision });
            }
            None => {
                detail.approval = Some(Approval {
                    requested_at_ms: at_ms,
                    expires_at_ms: None,
                    decision: Some(decision),
                })
            }
        }
        Ok(std::mem::take(&mut detail.blocked_by))
    }

    /// awaiting_approval → failed: rejected, for `reason`.
    pub fn reject(&mut self, reason: String, at_ms: u64) -> Result<(), IllegalTransition> {
        self.go(WorkStatus::Failed)?;
        let detail = self.detail_mut();
        detail.blocked_by.clear();
        if let Some(a) = detail.approval.as_mut() {
            a.decision = Some(Decision {
                approved: false,
                reason: Some(reason.clone()),
                at_ms,
                applied: true,
            });
        }
        self.set_reason(Some(format!("rejected: {reason}")));
        Ok(())
    }

    /// awaiting_approval → expired: nobody decided in time.
    pub fn expire(&mut self) -> Result<(), IllegalTransition> {
        self.go(WorkStatus::Expired)?;
        self.detail_mut().blocked_by.clear();
        self.set_reason(Some("no decision before its approval timeout".into()));
        Ok(())
    }

    /// Its approval, when it needed one.
    pub fn approval(&self) -> Option<&Approval> {
        self.detail.as_ref()?.approval.as_ref()
    }

    /// cancelled → pending: an invocation serves it after all.
    pub fn reopen(&mut self) -> Result<(), IllegalTransition> {
        self.go(WorkStatus::Pending)?;
        self.set_reason(None);
        Ok(())
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
    #[serde(skip_serializing_if = "Option::is_none")]
    approval: Option<&'a Approval>,
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
    #[serde(default)]
    approval: Option<Approval>,
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
            approval: self.approval(),
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
            approval: w.approval,
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

/// Work that failed for good with no recovery that succeeded: failed work items for
/// which no done work item is recovery work (`recovery_of`). A run with any ends
/// `failed`, naming them; a failure whose recovery was done does not fail the run.
pub fn unrecovered_failures<'a>(items: &[&'a WorkItem]) -> Vec<&'a WorkItem> {
    let recovered: std::collections::HashSet<ArtifactId> = items
        .iter()
        .filter(|w| w.status() == WorkStatus::Done)
        .filter_map(|w| w.recovery_of())
        .collect();
    items
        .iter()
        .copied()
        .filter(|w| w.status() == WorkStatus::Failed && !recovered.contains(&w.id))
        .collect()
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

    const ALL: [WorkStatus; 9] = WorkStatus::ALL;

    #[test]
    fn the_lifecycle_allows_exactly_the_documented_moves() {
        use WorkStatus::*;
        let allowed = [
            (Pending, Blocked),
            (Pending, Active),
            (Pending, Duplicate),
            (Pending, Cancelled),
            (Blocked, Pending),
            (Active, Done),
            (Active, Failed),
            (Cancelled, Pending),
            (Cancelled, Cancelled),
            (Pending, AwaitingApproval),
            (AwaitingApproval, Pending),
            (AwaitingApproval, Failed),
            (AwaitingApproval, Expired),
        ];
        for from in ALL {
            for to in ALL {
                assert_eq!(
                    from.may_become(to),
                    allowed.contains(&(from, to)),
                    "{from} → {to}"
                );
            }
        }
    }

    #[test]
    fn done_failed_and_duplicate_work_never_moves_again() {
        for end in [WorkStatus::Done, WorkStatus::Failed, WorkStatus::Duplicate] {
            let mut w = item().with_status(end);
            assert!(w.start().is_err(), "{end} → active");
            assert!(w.finish().is_err(), "{end} → done");
            assert!(w.fail("late".into()).is_err(), "{end} → failed");
            assert!(w.cancel("late".into()).is_err(), "{end} → cancelled");
            assert!(w.reopen().is_err(), "{end} → pending");
            assert!(
                w.unblock(&ArtifactId::named("b")).is_err(),
                "{end} → pending"
            );
            assert_eq!(w.status(), end, "a refused move changes nothing");
        }
    }

    #[test]
    fn approval_holds_work_and_its_blockers_until_a_decision() {
        let blocker = ArtifactId::named("b");
        let mut w = item();
        w.await_approval(10, Some(20), vec![blocker])
            .expect("await");
        assert_eq!(w.status(), WorkStatus::AwaitingApproval);
        assert!(w.start().is_err(), "work awaiting approval does not start");
        let back: WorkItem =
            serde_json::from_str(&serde_json::to_string(&w).expect("json")).expect("read");
        assert_eq!(back, w, "the wait survives the store");
        let decision = Decision {
            approved: true,
            reason: None,
            at_ms: 15,
            applied: false,
        };
        w.record_decision(decision.clone()).expect("recorded");
        assert!(w.record_decision(decision).is_err(), "one decision");
        assert_eq!(w.approve(16).expect("approve"), vec![blocker]);
        assert_eq!(w.status(), WorkStatus::Pending);
        assert!(
            w.approval()
                .and_then(|a| a.decision.as_ref())
                .is_some_and(|d| d.applied)
        );

        let mut r = item();
        r.await_approval(10, None, vec![]).expect("await");
        r.reject("too risky".into(), 12).expect("reject");
        assert_eq!(r.status(), WorkStatus::Failed);
        assert_eq!(r.reason(), Some("rejected: too risky"));
        let mut e = item();
        e.await_approval(10, Some(11), vec![]).expect("await");
        e.expire().expect("expire");
        assert!(e.status().is_final());
        assert!(e.approve(12).is_err(), "expired work stays expired");
    }

    #[test]
    fn an_illegal_move_is_an_error_naming_the_item_and_both_statuses() {
        let mut w = item();
        let e = w
            .finish()
            .expect_err("pending work cannot be done before it starts");
        assert_eq!(
            e,
            IllegalTransition {
                id: ArtifactId::named("w"),
                from: WorkStatus::Pending,
                to: WorkStatus::Done,
            }
        );
        assert!(e.to_string().contains("pending → done"), "{e}");
        assert!(item().fail("x".into()).is_err(), "pending → failed");
        let mut active = item();
        active.start().expect("start");
        assert!(active.start().is_err(), "active → active");
        assert!(active.block(vec![]).is_err(), "active → blocked");
        assert!(active.mark_duplicate(ArtifactId::named("o"), 1.0).is_err());
        assert!(active.cancel("x".into()).is_err(), "active → cancelled");
        let mut blocked = item();
        blocked.block(vec![ArtifactId::named("b")]).expect("block");
        assert!(blocked.start().is_err(), "blocked work cannot start");
        assert!(blocked.finish().is_err(), "blocked → done");
    }

    #[test]
    fn blocked_work_becomes_pending_when_its_last_blocker_is_done() {
        let (a, b) = (ArtifactId::named("a"), ArtifactId::named("b"));
        let mut w = item();
        w.block(vec![a, b]).expect("block");
        assert!(w.was_blocked());
        assert_eq!(w.unblock(&a), Ok(false), "b is still open");
        assert_eq!(w.status(), WorkStatus::Blocked);
        assert_eq!(w.blocked_by(), &[b]);
        assert_eq!(w.unblock(&b), Ok(true));
        assert_eq!(w.status(), WorkStatus::Pending);
        assert!(w.was_blocked(), "it remembers it was blocked");
        assert_eq!(w.unblock(&b).map_err(|e| e.from), Err(WorkStatus::Pending));
    }

    #[test]
    fn each_move_records_what_it_means() {
        let mut failed = item();
        failed.start().expect("start");
        failed.fail("implementer: no LDAP".into()).expect("fail");
        assert_eq!(failed.status(), WorkStatus::Failed);
        assert_eq!(failed.reason(), Some("implementer: no LDAP"));

        let mut dup = item();
        dup.mark_duplicate(ArtifactId::named("o"), 0.925)
            .expect("duplicate");
        assert_eq!(dup.duplicate_of(), Some(ArtifactId::named("o")));
        assert!(dup.reason().is_some_and(|r| r.contains("similarity 0.93")));

        let mut cancelled = item();
        cancelled.cancel("depth".into()).expect("cancel");
        cancelled
            .cancel("depth again".into())
            .expect("cancelled twice");
        assert_eq!(cancelled.reason(), Some("depth again"));
        cancelled.reopen().expect("reopen");
        assert_eq!(cancelled.status(), WorkStatus::Pending);
        assert_eq!(cancelled.reason(), None, "reopening clears the reason");
        cancelled.start().expect("start");
        cancelled.finish().expect("finish");
        assert_eq!(cancelled.status(), WorkStatus::Done);
    }

    #[test]
    fn a_failure_counts_against_the_run_until_its_recovery_is_done() {
        let mut failed = item();
        failed.start().expect("start");
        failed.fail("no".into()).expect("fail");
        let mut recovery =
            WorkItem::new(ArtifactId::named("r"), "wf", "analysis", Priority::Critical);
        recovery.detail_mut().recovery_of = Some(failed.id);
        assert_eq!(
            unrecovered_failures(&[&failed, &recovery]).len(),
            1,
            "recovery not done yet"
        );
        recovery.start().expect("start");
        recovery.finish().expect("finish");
        assert!(unrecovered_failures(&[&failed, &recovery]).is_empty());
        let mut failed_recovery = recovery.clone().with_status(WorkStatus::Active);
        failed_recovery.fail("also no".into()).expect("fail");
        assert_eq!(
            unrecovered_failures(&[&failed, &failed_recovery])
                .iter()
                .map(|w| w.id)
                .collect::<Vec<_>>(),
            vec![failed.id, failed_recovery.id],
            "a recovery that failed recovers nothing, and fails too"
        );
    }
}
