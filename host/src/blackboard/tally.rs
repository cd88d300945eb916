//! [`Tally`]: the counts WorkflowMetrics reports, kept up to date as records change.
//!
//! WorkflowMetrics is published about once a second while a run is busy. Counting it from
//! the records meant reading every work item and invocation of the run under the run's
//! lock each time — work that grows with the run, so a run's total cost grew faster than
//! its size (5-8% of a 100,000-input run). A store that keeps a tally instead adjusts it
//! by the difference each changed record makes: take the old version's counts out, put the
//! new version's in. [`Tally::count`] defines what a record contributes, once, for both
//! directions and for a full recount.
//!
//! The tally is also what a run's summary counts from (with the artifact counts and the
//! open and failed work): a store that keeps only a run's open work in memory answers a
//! summary without reading the run's history back.

use crate::invocation::{DEPTH_LIMIT_REASON, FaultKind, InvocationRecord, InvocationStatus};
use crate::name::Name;
use crate::work::{WorkItem, WorkStatus};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// What one workflow's records add up to.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Tally {
    /// Work items by phase and status.
    pub phases: BTreeMap<Name, PhaseCounts>,
    /// The self-improving loop's counters.
    pub work: WorkCounters,
    /// Invocations that ran to an end (done or failed).
    pub ran: u64,
    /// Invocations waiting in the queue.
    pub queued: u64,
    /// Invocations running.
    pub running: u64,
    /// Invocations cancelled because their work was too deep in the cascade.
    pub depth_limited: u64,
    /// Invocations that ran to an end, by agent (an agent is listed once one has).
    pub agents: BTreeMap<Name, AgentTally>,
}

/// What one agent's invocations that ran to an end add up to.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AgentTally {
    /// Done or failed.
    pub ran: u64,
    /// Failed.
    pub failed: u64,
    /// Faults by class, in [`FaultKind::ALL`]'s order.
    pub faults: [u64; FaultKind::ALL.len()],
}

/// A record whose counts a [`Tally`] holds.
pub enum Record<'a> {
    /// A work item.
    Work(&'a WorkItem),
    /// An invocation.
    Invocation(&'a InvocationRecord),
}

/// `n` moved by one, up or down.
fn step(n: &mut u64, up: bool, by: u64) {
    *n = if up {
        n.wrapping_add(by)
    } else {
        n.wrapping_sub(by)
    };
}

impl Tally {
    /// Add (`up`) or remove a record's contribution.
    pub fn count(&mut self, record: Record<'_>, up: bool) {
        match record {
            Record::Work(w) => {
                // Cloned (an atomic count both workers share) only for a new phase.
                if !self.phases.contains_key(&w.phase) {
                    self.phases.insert(w.phase.clone(), PhaseCounts::default());
                }
                let c = self.phases.get_mut(&w.phase).expect("inserted above");
                let slot = match w.status() {
                    WorkStatus::Pending => &mut c.pending,
                    WorkStatus::Active => &mut c.active,
                    WorkStatus::Done => &mut c.done,
                    WorkStatus::Failed => &mut c.failed,
                    WorkStatus::Duplicate => &mut c.duplicate,
                    WorkStatus::Blocked => &mut c.blocked,
                    WorkStatus::Cancelled => &mut c.cancelled,
                    WorkStatus::AwaitingApproval => &mut c.awaiting_approval,
                    WorkStatus::Expired => &mut c.expired,
                };
                step(slot, up, 1);
                let k = &mut self.work;
                step(
                    &mut k.duplicates,
                    up,
                    u64::from(w.status() == WorkStatus::Duplicate),
                );
                step(&mut k.auto_routed, up, u64::from(w.routed().is_some()));
                step(
                    &mut k.unblocked,
                    up,
                    u64::from(w.was_blocked() && w.status() != WorkStatus::Blocked),
                );
                step(
                    &mut k.recovery_spawned,
                    up,
                    u64::from(w.recovery_of().is_some()),
                );
            }
            Record::Invocation(i) => {
                let ended = matches!(i.status, InvocationStatus::Done | InvocationStatus::Failed);
                step(&mut self.ran, up, u64::from(ended));
                step(
                    &mut self.queued,
                    up,
                    u64::from(i.status == InvocationStatus::Queued),
                );
                step(
                    &mut self.running,
                    up,
                    u64::from(i.status == InvocationStatus::Running),
                );
                if i.status == InvocationStatus::Cancelled && i.error() == Some(DEPTH_LIMIT_REASON)
                {
                    step(&mut self.depth_limited, up, 1);
                }
                if ended {
                    // Cloned (an atomic count both workers share) only for a new agent.
                    if !self.agents.contains_key(&i.agent) {
                        self.agents.insert(i.agent.clone(), AgentTally::default());
                    }
                    let a = self.agents.get_mut(&i.agent).expect("inserted above");
                    step(&mut a.ran, up, 1);
                    step(
                        &mut a.failed,
                        up,
                        u64::from(i.status == InvocationStatus::Failed),
                    );
                    if let Some(f) = i.fault()
                        && let Some(k) = FaultKind::ALL.iter().position(|k| *k == f)
                    {
                        step(&mut a.faults[k], up, 1);
                    }
                }
                step(
                    &mut self.work.rejected_outputs,
                    up,
                    u64::from(i.rejections()),
                );
                step(&mut self.work.retries, up, u64::from(i.retries()));
            }
        }
    }

    /// What `workflow_id`'s records in `store` add up to: the store's kept tally, or
    /// counted afresh from the records where the store keeps none.
    pub fn of(store: &dyn super::Store, workflow_id: &str) -> Result<Self, super::StoreError> {
        if let Some(tally) = store.tally(workflow_id)? {
            return Ok(tally);
        }
        let mut tally = Tally::default();
        store.scan(workflow_id, &mut |work, invocations| {
            tally = Tally::recount(work.iter().copied(), invocations.iter().copied());
        })?;
        Ok(tally)
    }

    /// The tally of these records, counted afresh.
    pub fn recount<'a>(
        work: impl IntoIterator<Item = &'a WorkItem>,
        invocations: impl IntoIterator<Item = &'a InvocationRecord>,
    ) -> Self {
        let mut t = Tally::default();
        for w in work {
            t.count(Record::Work(w), true);
        }
        for i in invocations {
            t.count(Record::Invocation(i), true);
        }
        t
    }

    /// Work item counts by phase: every declared phase (zero or not), then any other
    /// phase work was published into.
    pub fn phase_counts(
        &self,
        declared: impl IntoIterator<Item = String>,
    ) -> BTreeMap<String, PhaseCounts> {
        let mut phases: BTreeMap<String, PhaseCounts> = declared
            .into_iter()
            .map(|p| (p, PhaseCounts::default()))
            .collect();
        // A phase whose work all moved on keeps an all-zero entry: listed only if declared.
        for (name, c) in &self.phases {
            if *c != PhaseCounts::default() {
                phases.insert(name.to_string(), c.clone());
            }
        }
        phases
    }
}

/// Work item counts of one phase.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PhaseCounts {
    /// Not started.
    pub pending: u64,
    /// In progress.
    pub active: u64,
    /// Finished.
    pub done: u64,
    /// Failed.
    pub failed: u64,
    /// Recorded as duplicates.
    pub duplicate: u64,
    /// Waiting on blockers.
    pub blocked: u64,
    /// Will not be worked on.
    pub cancelled: u64,
    /// Waiting for a person's approval.
    #[serde(default)]
    pub awaiting_approval: u64,
    /// Not decided on before its approval timeout.
    #[serde(default)]
    pub expired: u64,
}

impl PhaseCounts {
    /// Work items in the phase, whatever their status.
    pub fn total(&self) -> u64 {
        self.pending
            + self.active
            + self.done
            + self.failed
            + self.duplicate
            + self.blocked
            + self.cancelled
            + self.awaiting_approval
            + self.expired
    }

    /// Work items not yet final: pending, active, blocked or awaiting approval.
    pub fn open(&self) -> u64 {
        self.pending + self.active + self.blocked + self.awaiting_approval
    }
}

/// What the self-improving loop did (the summary's `work`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorkCounters {
    /// Discoveries recorded as duplicates of earlier work.
    pub duplicates: u64,
    /// Discoveries placed by the router (phase `auto` or unknown).
    pub auto_routed: u64,
    /// Work items held blocked and later released.
    pub unblocked: u64,
    /// Times a validator rejected an invocation's outputs.
    pub rejected_outputs: u64,
    /// Times an invocation was put back in the queue.
    pub retries: u64,
    /// Recovery work items spawned for final failures.
    pub recovery_spawned: u64,
}
