//! Human approval gates: a person's decision on work that awaits approval.
//!
//! Work in a phase with `approval = "required"` (or discovered by an agent whose outputs
//! require it) is held `awaiting_approval` when published (see `cascade.rs`). A decision
//! reaches the run one of two ways:
//!
//! - into a live run, as a [`Decide`] request its coordinator takes under the run's lock
//!   (the service's API): the work goes on at once, or fails with the reason;
//! - into a store no process runs the run on ([`record_decision`], `murmur approve
//!   --store`): the decision is written on the work item, and the run acts on it when it
//!   goes on (`murmur resume`).
//!
//! Approved work is pending again, blocked on whichever of its blockers are not done;
//! rejected work fails with the reason, and recovery follows as for any failure; work
//! nobody decided on before its `approval_timeout_ms` expires.

use super::cascade::{Cascade, CascadeState};
use super::{RunError, Scheduler};
use crate::artifact::{ArtifactId, now_ms};
use crate::blackboard::{Commit, Store, StoreError};
use crate::observe::Event;
use crate::work::{Decision, WorkStatus};
use thiserror::Error;
use tokio::sync::oneshot;

/// A decision on work awaiting approval, sent into a live run, and where to answer.
#[derive(Debug)]
pub struct Decide {
    /// The work item (its WorkDiscovery's id).
    pub work: ArtifactId,
    /// Approve (or reject).
    pub approve: bool,
    /// Why; required to reject.
    pub reason: Option<String>,
    /// Receives the work item's status after the decision.
    pub reply: oneshot::Sender<Result<WorkStatus, DecideError>>,
}

/// Why a decision was refused.
#[derive(Debug, Clone, Error)]
pub enum DecideError {
    /// The run has no such work item.
    #[error("no work item {0} in this run")]
    NotFound(String),
    /// The work item is not awaiting approval (decided already, or never gated).
    #[error("work item {work} is {status}, not awaiting approval")]
    NotAwaiting {
        /// The work item.
        work: String,
        /// Where it stands.
        status: WorkStatus,
    },
    /// A rejection without a reason.
    #[error("a rejection needs a reason")]
    NoReason,
    /// The store failed.
    #[error("the decision could not be recorded: {0}")]
    Failed(String),
}

impl From<StoreError> for DecideError {
    fn from(e: StoreError) -> Self {
        DecideError::Failed(e.to_string())
    }
}

/// A rejection's reason, required and trimmed.
fn reason_to_reject(reason: Option<String>) -> Result<String, DecideError> {
    reason
        .map(|r| r.trim().to_string())
        .filter(|r| !r.is_empty())
        .ok_or(DecideError::NoReason)
}

/// Record a decision on work of run `workflow_id` in `store`, which no process runs the
/// run on: the run acts on it when it goes on.
pub fn record_decision(
    store: &dyn Store,
    workflow_id: &str,
    work: &ArtifactId,
    approve: bool,
    reason: Option<String>,
) -> Result<(), DecideError> {
    let reason = if approve {
        reason
    } else {
        Some(reason_to_reject(reason)?)
    };
    let mut item = store
        .work_item(work)?
        .filter(|w| *w.workflow_id == *workflow_id)
        .ok_or_else(|| DecideError::NotFound(work.to_string()))?;
    let pending = item
        .approval()
        .is_some_and(|a| a.decision.as_ref().is_some_and(|d| !d.applied));
    if item.status() != WorkStatus::AwaitingApproval || pending {
        return Err(DecideError::NotAwaiting {
            work: work.to_string(),
            status: item.status(),
        });
    }
    item.record_decision(Decision {
        approved: approve,
        reason,
        at_ms: now_ms(),
        applied: false,
    })
    .map_err(|_| DecideError::NotAwaiting {
        work: work.to_string(),
        status: item.status(),
    })?;
    store.commit(Commit {
        work_items: vec![item],
        ..Default::default()
    })?;
    store.flush()?;
    Ok(())
}

impl Scheduler {
    /// Act on a decision sent into the run, and answer the sender.
    pub(super) fn decide(
        &self,
        workflow_id: &str,
        state: &mut CascadeState,
        decide: Decide,
    ) -> Result<(), RunError> {
        let outcome = self.try_decide(
            workflow_id,
            state,
            &decide.work,
            decide.approve,
            decide.reason,
        );
        let failed = match &outcome {
            Err(DecideError::Failed(m)) => Some(m.clone()),
            _ => None,
        };
        let _ = decide.reply.send(outcome);
        match failed {
            Some(m) => Err(RunError::Worker(m)),
            None => Ok(()),
        }
    }

    fn try_decide(
        &self,
        workflow_id: &str,
        state: &mut CascadeState,
        work: &ArtifactId,
        approve: bool,
        reason: Option<String>,
    ) -> Result<WorkStatus, DecideError> {
        let wf = self.wf();
        let mut cascade = Cascade::new(&wf, self.store.as_ref(), workflow_id);
        let Some(item) = cascade
            .work_item(work)?
            .filter(|w| *w.workflow_id == *workflow_id)
        else {
            return Err(DecideError::NotFound(work.to_string()));
        };
        if item.status() != WorkStatus::AwaitingApproval {
            return Err(DecideError::NotAwaiting {
                work: work.to_string(),
                status: item.status(),
            });
        }
        let now = now_ms();
        if approve {
            let blockers = item
                .approve(now)
                .map_err(|e| DecideError::Failed(e.to_string()))?;
            cascade.events.push(Event::WorkApproved {
                work: work.to_string(),
            });
            cascade.admit(work, blockers, state)?;
        } else {
            let reason = reason_to_reject(reason)?;
            item.reject(reason.clone(), now)
                .map_err(|e| DecideError::Failed(e.to_string()))?;
            let failed = item.clone();
            cascade.events.push(Event::WorkRejected {
                work: work.to_string(),
                reason: reason.clone(),
            });
            let depth = cascade.artifact(work)?.map_or(0, |a| a.depth);
            self.recover(
                &mut cascade,
                state,
                &failed,
                ("approval", depth),
                &format!("rejected: {reason}"),
            )
            .map_err(|e| DecideError::Failed(e.to_string()))?;
        }
        let status = match cascade.work_item(work)? {
            Some(w) => w.status(),
            None => WorkStatus::Pending,
        };
        let events = cascade.commit()?;
        self.emit(workflow_id, events);
        Ok(status)
    }

    /// Act on the decisions recorded in the store while no process ran the run, and
    /// expire the approvals whose time has run out; whether anything changed. Called
    /// when the run has nothing else to do.
    pub(super) fn settle_approvals(
        &self,
        workflow_id: &str,
        state: &mut CascadeState,
    ) -> Result<bool, RunError> {
        if !self.wf().has_approval_gates() {
            return Ok(false);
        }
        let now = now_ms();
        let mut decided = Vec::new();
        let mut overdue = Vec::new();
        self.store.notable_work(workflow_id, &mut |work| {
            for w in work
                .iter()
                .filter(|w| w.status() == WorkStatus::AwaitingApproval)
            {
                let Some(a) = w.approval() else { continue };
                match &a.decision {
                    Some(d) if !d.applied => decided.push((w.id, d.approved, d.reason.clone())),
                    _ if a.expires_at_ms.is_some_and(|at| at <= now) => overdue.push(w.id),
                    _ => {}
                }
            }
        })?;
        let changed = !decided.is_empty() || !overdue.is_empty();
        for (work, approve, reason) in decided {
            match self.try_decide(workflow_id, state, &work, approve, reason) {
                Ok(_) => {}
                Err(DecideError::Failed(m)) => return Err(RunError::Worker(m)),
                Err(e) => tracing::warn!("recorded decision on {work} not applied: {e}"),
            }
        }
        if !overdue.is_empty() {
            let wf = self.wf();
            let mut cascade = Cascade::new(&wf, self.store.as_ref(), workflow_id);
            for work in overdue {
                if let Some(item) = cascade.work_item(&work)? {
                    item.expire()?;
                    cascade.events.push(Event::WorkExpired {
                        work: work.to_string(),
                    });
                }
            }
            let events = cascade.commit()?;
            self.emit(workflow_id, events);
        }
        Ok(changed)
    }
}
