//! The cascade: turning published artifacts into work items and queued invocations.
//!
//! A [`Cascade`] gathers one atomic [`Commit`]: the new artifacts, the work items they
//! create or touch, the invocations their subscriptions trigger and the completion of the
//! invocation that produced them. Work item records are read from the store once and
//! edited in place, so several changes to one work item in one commit compose.
//!
//! Publishing a WorkDiscovery is where the loop's bookkeeping happens: it starts a work
//! item (inheriting recovery lineage from the work that discovered it), is checked for
//! duplicates among the open and done work of its phase (in the index; a plugin's or a
//! model's scores were computed before the commit, see `crate::placement`, and are only
//! re-checked here, so nothing slow runs under the run's lock; a duplicate is recorded, raises
//! the original's priority if its own is higher, and is not scheduled), and is held
//! `blocked` while any of its blockers is unfinished. When a work item is done, the work it
//! blocked is released and scheduled.

use crate::artifact::{Artifact, ArtifactId, SharedArtifact, Visibility, now_ms};
use crate::blackboard::{Commit, Store, StoreError};
use crate::invocation::{AGENT_CAP_REASON, DEPTH_LIMIT_REASON, InvocationRecord, InvocationStatus};
use crate::name::Name;
use crate::observe::Event;
use crate::placement::{CANDIDATES, Candidate, Known, Placement, Target};
use crate::plugin::convert::artifact_to_wit;
use crate::schema::{WORK_DISCOVERY, WORKFLOW_COMPLETE, WORKFLOW_METRICS};
use crate::similarity::DedupIndex;
use crate::work::{Priority, Routing, WorkItem, WorkStatus};
use crate::workflow::Workflow;
use std::collections::HashMap;

/// Indexes and counters the scheduler keeps across commits. All of it is derived from
/// the store (see [`CascadeState::rebuild`]), so a resumed run rebuilds it exactly.
#[derive(Debug, Default)]
pub(super) struct CascadeState {
    /// Next enqueue sequence number.
    pub next_seq: u64,
    /// Invocations created per agent.
    pub per_agent: HashMap<Name, u64>,
    /// Descriptions of non-duplicate work, per phase, for deduplication.
    pub dedup: HashMap<Name, DedupIndex<ArtifactId>>,
    /// Blocked work items, by the blocker they wait for.
    pub waiting: HashMap<ArtifactId, Vec<ArtifactId>>,
    /// Recovery work items spawned.
    pub recovery_spawned: u32,
    /// Whether work counts changed since the last WorkflowMetrics.
    pub metrics_dirty: bool,
}

impl CascadeState {
    /// Rebuild the state of `workflow_id` from the store.
    pub(super) fn rebuild(
        store: &dyn Store,
        workflow_id: &str,
        dedup_window: usize,
    ) -> Result<Self, StoreError> {
        let mut state = CascadeState::default();
        let mut open = std::collections::HashSet::new();
        for inv in store.invocations(workflow_id)? {
            state.next_seq = state.next_seq.max(inv.seq + 1);
            if inv.status != InvocationStatus::Cancelled {
                *state.per_agent.entry(inv.agent.clone()).or_default() += 1;
            }
        }
        for w in store.work_items(workflow_id)? {
            if w.recovery_of().is_some() {
                state.recovery_spawned += 1;
            }
            if w.status() == WorkStatus::Blocked {
                for b in w.blocked_by() {
                    state.waiting.entry(*b).or_default().push(w.id);
                }
            }
            if !w.status().is_final() {
                open.insert(w.id);
            }
            if w.status() != WorkStatus::Duplicate {
                state.index_work(&w.phase, w.id, &w.description, dedup_window, || {
                    Ok(open.clone())
                })?;
            }
        }
        // A run that already recorded its end needs no further metrics.
        state.metrics_dirty = !store
            .counts(workflow_id)?
            .by_type
            .contains_key(WORKFLOW_COMPLETE);
        Ok(state)
    }

    /// Index work `id`'s `description` for deduplication in `phase`. Once the phase's
    /// index holds a quarter more than `window` and than it kept at its last trim, it
    /// keeps only the `window` newest entries and the older ones whose work is still
    /// `open` (asked then), so a trim's cost is spread over as many inserts as a quarter
    /// of what it keeps, however much work is open; `window` 0 keeps everything.
    pub(super) fn index_work(
        &mut self,
        phase: &Name,
        id: ArtifactId,
        description: &str,
        window: usize,
        open: impl FnOnce() -> Result<std::collections::HashSet<ArtifactId>, StoreError>,
    ) -> Result<(), StoreError> {
        let index = self.dedup.entry(phase.clone()).or_default();
        index.insert(id, description);
        let slack = (window / 4).max(1);
        if window == 0
            || index.len() < window + slack
            || index.len() < index.kept() + slack.max(index.kept() / 4)
        {
            return Ok(());
        }
        let open = open()?;
        let window = window as u64;
        index.keep(|id, newer| newer < window || open.contains(id));
        Ok(())
    }
}

/// One commit being assembled.
pub(super) struct Cascade<'a> {
    wf: &'a Workflow,
    store: &'a dyn Store,
    workflow_id: &'a str,
    work: HashMap<ArtifactId, WorkItem>,
    work_order: Vec<ArtifactId>,
    artifacts: Vec<SharedArtifact>,
    invocations: Vec<InvocationRecord>,
    /// Idempotency keys the published artifacts take.
    pub keys: Vec<crate::blackboard::KeyRecord>,
    /// Events to report once the commit succeeds.
    pub events: Vec<Event>,
}

/// An artifact about to be published.
#[derive(Default)]
pub(super) struct Draft {
    /// A pre-assigned id (so sibling discoveries can name it as a blocker).
    pub id: Option<ArtifactId>,
    /// Type name.
    pub type_name: Name,
    /// Schema-valid payload.
    pub payload: serde_json::Value,
    /// Producer.
    pub producer: Name,
    /// Causality.
    pub parent_ids: Vec<ArtifactId>,
    /// Tags.
    pub tags: Vec<String>,
    /// Visibility.
    pub visibility: Visibility,
    /// Cascade depth.
    pub depth: u32,
    /// The work item it inherits; for a WorkDiscovery, the work that discovered it.
    pub inherited_work: Option<ArtifactId>,
    /// For a WorkDiscovery: the work items it waits for (resolved from `blocking_work_ids`).
    pub blocked_by: Vec<ArtifactId>,
    /// For a WorkDiscovery: how the router placed it.
    pub routing: Option<Routing>,
    /// For a recovery WorkDiscovery: the failed work item.
    pub recovery_of: Option<ArtifactId>,
    /// The payload's JSON text, when the producer's is at hand.
    pub payload_text: Option<Box<str>>,
    /// For a WorkDiscovery scored on the worker: its placement (see `crate::placement`).
    pub placement: Option<Checked>,
}

/// What a new work item takes from its discovery's draft besides the artifact.
struct Lineage {
    parent_work: Option<ArtifactId>,
    blocked_by: Vec<ArtifactId>,
    routing: Option<Routing>,
    recovery_of: Option<ArtifactId>,
    placement: Option<Checked>,
}

/// A placement with its batch's ids resolved, for the commit to re-check.
#[derive(Debug, Default)]
pub(super) struct Checked {
    /// Entries in the phase's index when the candidates were read.
    pub seen: u64,
    /// Candidates at or above the threshold, most similar first.
    pub ranked: Vec<(ArtifactId, f64)>,
    /// Ids of the batch's earlier outputs, all scored already.
    pub batch: Vec<ArtifactId>,
}

impl Checked {
    /// `placement`, whose `Earlier(i)` targets are `earlier[i]`.
    pub(super) fn resolve(placement: Placement, earlier: &[ArtifactId]) -> Self {
        let ranked = placement
            .ranked
            .into_iter()
            .filter_map(|(target, score)| match target {
                Target::Known(id) => Some((id, score)),
                Target::Earlier(i) => earlier.get(i).map(|id| (*id, score)),
            })
            .collect();
        Self {
            seen: placement.seen,
            ranked,
            batch: earlier.to_vec(),
        }
    }
}

/// The open and done work of each of `phases` a discovery may duplicate, read under the
/// run's lock for placement outside it: per phase, the most recent
/// [`crate::placement::CANDIDATES`] entries of its index that are still open or done.
pub(super) fn known_work(
    state: &CascadeState,
    store: &dyn Store,
    phases: &[String],
) -> Result<HashMap<String, Known>, StoreError> {
    let mut known = HashMap::new();
    for phase in phases {
        if known.contains_key(phase) {
            continue;
        }
        let Some(index) = state.dedup.get(phase.as_str()) else {
            known.insert(phase.clone(), Known::default());
            continue;
        };
        let mut candidates = Vec::new();
        for id in index.keys().rev().take(CANDIDATES * 2) {
            let Some(work) = store.work_item(id)? else {
                continue;
            };
            if !counts_for_dedup(work.status()) {
                continue;
            }
            if let Some(artifact) = store.artifact(id)? {
                candidates.push(Candidate {
                    target: Target::Known(*id),
                    description: work.description.to_string(),
                    wire: artifact_to_wit(&artifact),
                });
            }
            if candidates.len() == CANDIDATES {
                break;
            }
        }
        known.insert(
            phase.clone(),
            Known {
                seen: index.added(),
                candidates,
            },
        );
    }
    Ok(known)
}

impl<'a> Cascade<'a> {
    /// Start an empty commit.
    pub(super) fn new(wf: &'a Workflow, store: &'a dyn Store, workflow_id: &'a str) -> Self {
        Self {
            wf,
            store,
            workflow_id,
            work: HashMap::new(),
            work_order: Vec::new(),
            artifacts: Vec::new(),
            invocations: Vec::new(),
            keys: Vec::new(),
            events: Vec::new(),
        }
    }

    /// The work item `id`, loaded once into this commit.
    /// The work item whose discovery took `key` in this run, in this commit or before.
    pub(super) fn keyed(&self, key: &str) -> Result<Option<ArtifactId>, StoreError> {
        if let Some(w) = self.work.values().find(|w| w.discovery_key() == Some(key)) {
            return Ok(Some(w.id));
        }
        self.store.discovery_key(self.workflow_id, key)
    }

    pub(super) fn work_item(
        &mut self,
        id: &ArtifactId,
    ) -> Result<Option<&mut WorkItem>, StoreError> {
        if !self.work.contains_key(id) {
            match self.store.work_item(id)? {
                Some(w) => {
                    self.work_order.push(*id);
                    self.work.insert(*id, w);
                }
                None => return Ok(None),
            }
        }
        Ok(self.work.get_mut(id))
    }

    /// Record an invocation's new state.
    pub(super) fn update_invocation(&mut self, record: InvocationRecord) {
        self.invocations.push(record);
    }

    /// Publish a draft: assign its id, start its work item if it is a WorkDiscovery, and
    /// enqueue the invocations its subscribers' subscriptions ask for.
    pub(super) fn publish(
        &mut self,
        draft: Draft,
        state: &mut CascadeState,
    ) -> Result<ArtifactId, StoreError> {
        let id = draft.id.unwrap_or_else(ArtifactId::generate);
        let is_work = draft.type_name == WORK_DISCOVERY;
        let work_item = if is_work {
            Some(id)
        } else {
            draft.inherited_work
        };
        let mut artifact = Artifact {
            id,
            type_name: draft.type_name,
            payload: crate::artifact::Payload::with_value(draft.payload_text, draft.payload),
            producer: draft.producer,
            workflow_id: Name::new(self.workflow_id),
            parent_ids: draft.parent_ids.into(),
            audience: crate::artifact::Audience::boxed(draft.tags, draft.visibility),
            created_at_ms: now_ms(),
            depth: draft.depth,
            work_item,
        };
        let schedule = if is_work {
            self.start_work(
                &artifact,
                Lineage {
                    parent_work: draft.inherited_work,
                    blocked_by: draft.blocked_by,
                    routing: draft.routing,
                    recovery_of: draft.recovery_of,
                    placement: draft.placement,
                },
                state,
            )?
        } else {
            true
        };
        if schedule {
            self.enqueue_subscribers(&artifact, state)?;
        }
        // The blackboard keeps the text; the parsed tree was for the checks above.
        artifact.payload.shed();
        self.artifacts.push(SharedArtifact::new(artifact));
        Ok(id)
    }

    /// Start the work item of a WorkDiscovery; whether it may be scheduled now.
    fn start_work(
        &mut self,
        artifact: &Artifact,
        lineage: Lineage,
        state: &mut CascadeState,
    ) -> Result<bool, StoreError> {
        let Lineage {
            parent_work,
            blocked_by,
            routing,
            recovery_of,
            placement,
        } = lineage;
        let p = artifact.payload.parse();
        let text = |k: &str| p.get(k).and_then(|v| v.as_str()).unwrap_or_default();
        let id = artifact.id;
        let mut item = WorkItem::new(
            id,
            self.workflow_id,
            text("phase"),
            Priority::parse(text("priority")),
        );
        item.description = Name::unique(text("description").to_string());
        if let Some(key) = p.get("key").and_then(|v| v.as_str()) {
            item.detail_mut().key = Some(key.to_string());
        }
        if routing.is_some() {
            item.detail_mut().routed = routing;
        }
        item.in_recovery = recovery_of.is_some();
        if let Some(parent) = &parent_work
            && let Some(w) = self.work_item(parent)?
        {
            item.in_recovery |= w.in_recovery;
        }
        item.parent_work = parent_work;
        if recovery_of.is_some() {
            item.detail_mut().recovery_of = recovery_of;
        }
        if let Some(r) = item.routed() {
            self.events.push(Event::WorkRouted {
                work: id.to_string(),
                phase: item.phase.to_string(),
                by: r.by.clone(),
                reason: r.reason.clone(),
            });
        }

        let schedule =
            if let Some((original, score)) = self.find_duplicate(&item, placement, state)? {
                item.mark_duplicate(original, score)?;
                let priority = item.priority;
                let mut raised = false;
                if let Some(o) = self.work_item(&original)? {
                    o.detail_mut().duplicates += 1;
                    if priority > o.priority {
                        o.priority = priority;
                        raised = true;
                    }
                }
                if raised {
                    self.reprioritise(&original, priority)?;
                }
                self.events.push(Event::WorkDuplicate {
                    work: id.to_string(),
                    original: original.to_string(),
                    score,
                });
                false
            } else {
                let (store, workflow_id, work) = (self.store, self.workflow_id, &self.work);
                state.index_work(
                    &item.phase,
                    id,
                    &item.description,
                    self.wf.manifest.policies.dedup.window,
                    || open_work(store, workflow_id, work),
                )?;
                let mut open = Vec::new();
                for b in blocked_by {
                    let b = self.resolve_duplicate(b)?;
                    match self.work_item(&b)? {
                        Some(w) if w.status() == WorkStatus::Done => {}
                        _ => open.push(b),
                    }
                }
                open.dedup();
                if let Some(timeout) = self.wf.approval_gate(&item.phase, &artifact.producer) {
                    // A person decides first; its blockers are waited for once approved.
                    let now = now_ms();
                    let expires_at_ms = timeout.map(|t| now.saturating_add(t));
                    item.await_approval(now, expires_at_ms, open)?;
                    self.events.push(Event::ApprovalRequested {
                        work: id.to_string(),
                        phase: item.phase.to_string(),
                        expires_at_ms,
                    });
                    false
                } else if open.is_empty() {
                    true
                } else {
                    for b in &open {
                        state.waiting.entry(*b).or_default().push(id);
                    }
                    item.block(open)?;
                    false
                }
            };
        self.work_order.push(id);
        self.work.insert(id, item);
        Ok(schedule)
    }

    /// Follow `duplicate_of` links to the work that is actually done.
    fn resolve_duplicate(&mut self, mut id: ArtifactId) -> Result<ArtifactId, StoreError> {
        for _ in 0..16 {
            match self.work_item(&id)?.and_then(|w| w.duplicate_of()) {
                Some(original) => id = original,
                None => break,
            }
        }
        Ok(id)
    }

    /// An open or done work item of the same phase similar enough to `item`, if any.
    ///
    /// With a placement (scored on the worker), this only re-checks: its most similar
    /// candidate still open or done, else work indexed since its candidates were read,
    /// compared lexically. Without one, the lexical index decides.
    fn find_duplicate(
        &mut self,
        item: &WorkItem,
        placement: Option<Checked>,
        state: &CascadeState,
    ) -> Result<Option<(ArtifactId, f64)>, StoreError> {
        let policy = &self.wf.manifest.policies.dedup;
        if !policy.enabled {
            return Ok(None);
        }
        let Some(index) = state.dedup.get(&item.phase) else {
            return Ok(None);
        };
        let lexical = index.similar(&item.description, policy.threshold);
        let candidates = match placement {
            None => lexical,
            Some(placed) => {
                let mut candidates = Vec::with_capacity(placed.ranked.len());
                for (id, score) in placed.ranked {
                    candidates.push((self.resolve_duplicate(id)?, score));
                }
                let newer: std::collections::HashSet<ArtifactId> = index
                    .keys_since(placed.seen)
                    .filter(|k| !placed.batch.contains(k))
                    .copied()
                    .collect();
                candidates.extend(lexical.into_iter().filter(|(id, _)| newer.contains(id)));
                candidates
            }
        };
        for (id, score) in candidates {
            if id != item.id
                && self
                    .work_item(&id)?
                    .is_some_and(|w| counts_for_dedup(w.status()))
            {
                return Ok(Some((id, score)));
            }
        }
        Ok(None)
    }

    /// Raise the priority of `work`'s queued invocations.
    fn reprioritise(&mut self, work: &ArtifactId, priority: Priority) -> Result<(), StoreError> {
        for mut inv in self.store.open_invocations(self.workflow_id)? {
            if inv.work_item.as_ref() == Some(work)
                && inv.status == InvocationStatus::Queued
                && inv.priority < priority
                && !self.invocations.iter().any(|i| i.id == inv.id)
            {
                inv.priority = priority;
                self.invocations.push(inv);
            }
        }
        for inv in self.invocations.iter_mut() {
            if inv.work_item.as_ref() == Some(work) && inv.status == InvocationStatus::Queued {
                inv.priority = inv.priority.max(priority);
            }
        }
        Ok(())
    }

    /// An artifact of this commit or the store.
    pub(super) fn artifact(&self, id: &ArtifactId) -> Result<Option<SharedArtifact>, StoreError> {
        if let Some(a) = self.artifacts.iter().find(|a| a.id == *id) {
            return Ok(Some(a.clone()));
        }
        self.store.artifact(id)
    }

    /// `work` is done: release the work it blocked, scheduling what has no blocker left.
    pub(super) fn release(
        &mut self,
        work: &ArtifactId,
        state: &mut CascadeState,
    ) -> Result<(), StoreError> {
        let Some(waiting) = state.waiting.remove(work) else {
            return Ok(());
        };
        for id in waiting {
            let free = match self.work_item(&id)? {
                Some(w) if w.status() == WorkStatus::Blocked => w.unblock(work)?,
                _ => false,
            };
            if free && let Some(artifact) = self.artifact(&id)? {
                self.events.push(Event::WorkUnblocked {
                    work: id.to_string(),
                });
                self.enqueue_subscribers(&artifact, state)?;
            }
        }
        Ok(())
    }

    /// Work just approved goes on: blocked on those of `blockers` not done yet, else
    /// offered to its subscribers.
    pub(super) fn admit(
        &mut self,
        work: &ArtifactId,
        blockers: Vec<ArtifactId>,
        state: &mut CascadeState,
    ) -> Result<(), StoreError> {
        let mut open = Vec::new();
        for b in blockers {
            let b = self.resolve_duplicate(b)?;
            match self.work_item(&b)? {
                Some(w) if w.status() == WorkStatus::Done => {}
                _ => open.push(b),
            }
        }
        open.dedup();
        if open.is_empty() {
            if let Some(artifact) = self.artifact(work)? {
                self.enqueue_subscribers(&artifact, state)?;
            }
            return Ok(());
        }
        for b in &open {
            state.waiting.entry(*b).or_default().push(*work);
        }
        if let Some(item) = self.work_item(work)? {
            item.block(open)?;
        }
        Ok(())
    }

    /// Offer an already-published artifact to the agents now in force (after a hot load).
    pub(super) fn offer(
        &mut self,
        artifact: &SharedArtifact,
        state: &mut CascadeState,
    ) -> Result<(), StoreError> {
        self.enqueue_subscribers(artifact, state)
    }

    fn enqueue_subscribers(
        &mut self,
        artifact: &Artifact,
        state: &mut CascadeState,
    ) -> Result<(), StoreError> {
        // WorkflowComplete marks the end of a run: it is a record, not a trigger.
        if artifact.type_name == WORKFLOW_COMPLETE {
            return Ok(());
        }
        if artifact.type_name != WORKFLOW_METRICS {
            state.metrics_dirty = true;
        }
        let limits = self.wf.limits();
        let priority = match &artifact.work_item {
            Some(w) => self.work_item(w)?.map(|w| w.priority).unwrap_or_default(),
            None => Priority::Medium,
        };
        for agent in &self.wf.agents {
            if !artifact.visible_to(&agent.viewer()) {
                continue;
            }
            let mut matched = false;
            for sub in &agent.subscriptions {
                match sub.matches(artifact, agent.name()) {
                    Ok(true) => {
                        matched = true;
                        break;
                    }
                    Ok(false) => {}
                    Err(e) => self.events.push(Event::FilterFailed {
                        agent: agent.name().into(),
                        message: e.to_string(),
                    }),
                }
            }
            if !matched {
                continue;
            }
            if !state.per_agent.contains_key(agent.name()) {
                state.per_agent.insert(Name::new(agent.name()), 0);
            }
            let count = state
                .per_agent
                .get_mut(agent.name())
                .expect("inserted above");
            let cancelled = if artifact.depth >= limits.max_depth {
                Some(DEPTH_LIMIT_REASON)
            } else if limits.max_invocations_per_agent > 0
                && *count >= limits.max_invocations_per_agent
            {
                Some(AGENT_CAP_REASON)
            } else {
                None
            };
            if cancelled.is_none() {
                *count += 1;
            }
            let mut record = InvocationRecord::queued(
                self.workflow_id,
                agent.name(),
                vec![artifact.id],
                state.next_seq,
            );
            record.work_item = artifact.work_item;
            record.observer = agent.observer;
            record.priority = priority;
            record.depth = artifact.depth;
            if let Some(reason) = cancelled {
                record.status = InvocationStatus::Cancelled;
                record.setback_mut().error = Some(reason.to_string());
            }
            state.next_seq += 1;
            if let Some(reason) = cancelled {
                if reason == DEPTH_LIMIT_REASON {
                    self.events.push(Event::DepthLimited {
                        artifact: artifact.id.to_string(),
                        type_name: artifact.type_name.to_string(),
                        depth: artifact.depth,
                    });
                }
                if let Some(w) = artifact.work_item.as_ref()
                    && !agent.observer
                    && let Some(w) = self.work_item(w)?
                    && w.open_invocations == 0
                    && w.invocations == 0
                {
                    w.cancel(reason.to_string())?;
                }
            } else if let Some(w) = artifact.work_item.as_ref()
                && !agent.observer
                && let Some(w) = self.work_item(w)?
            {
                w.open_invocations += 1;
                w.invocations += 1;
                if w.status() == WorkStatus::Cancelled {
                    w.reopen()?;
                }
            }
            self.invocations.push(record);
        }
        Ok(())
    }

    /// Apply everything gathered, atomically.
    pub(super) fn commit(self) -> Result<Vec<Event>, StoreError> {
        let Cascade {
            store,
            mut work,
            work_order,
            artifacts,
            invocations,
            keys,
            events,
            ..
        } = self;
        let work_items = work_order.iter().filter_map(|id| work.remove(id)).collect();
        store.commit(Commit {
            artifacts,
            work_items,
            invocations,
            keys,
        })?;
        Ok(events)
    }
}

/// The ids of `workflow_id`'s work that is not final yet: the store's open work (which it
/// keeps in memory), as the commit being assembled (`changed`) leaves it.
fn open_work(
    store: &dyn Store,
    workflow_id: &str,
    changed: &HashMap<ArtifactId, WorkItem>,
) -> Result<std::collections::HashSet<ArtifactId>, StoreError> {
    let mut open = std::collections::HashSet::new();
    store.notable_work(workflow_id, &mut |work| {
        open.extend(work.iter().filter(|w| !w.status().is_final()).map(|w| w.id));
    })?;
    for (id, w) in changed {
        if w.status().is_final() {
            open.remove(id);
        } else {
            open.insert(*id);
        }
    }
    Ok(open)
}

/// Whether a work item in this state can be the original of a duplicate: open (awaiting
/// approval included) or done work, not failed, cancelled, expired or itself a duplicate.
fn counts_for_dedup(status: WorkStatus) -> bool {
    matches!(
        status,
        WorkStatus::Pending
            | WorkStatus::Blocked
            | WorkStatus::Active
            | WorkStatus::Done
            | WorkStatus::AwaitingApproval
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn a_phases_index_keeps_its_open_work_and_a_window_of_the_newest() {
        let mut state = CascadeState::default();
        let phase = Name::new("analysis");
        let ids: Vec<ArtifactId> = (0..10_000).map(|_| ArtifactId::generate()).collect();
        let open: HashSet<ArtifactId> = ids[..3].iter().copied().collect();
        let mut asked = 0;
        let mut most = 0;
        for (i, id) in ids.iter().enumerate() {
            state
                .index_work(&phase, *id, &format!("item i{i}"), 100, || {
                    asked += 1;
                    Ok(open.clone())
                })
                .expect("indexes");
            most = most.max(state.dedup[&phase].len());
        }
        let index = &state.dedup[&phase];
        assert!(most <= 3 + 100 + 25, "the index held {most} entries");
        assert!(asked <= 10_000 / 25, "open work was read {asked} times");
        let found = |text: &str| {
            index
                .similar(text, 1.0)
                .into_iter()
                .map(|(id, _)| id)
                .collect::<Vec<_>>()
        };
        assert_eq!(found("item i1"), [ids[1]], "open work stays");
        assert_eq!(found("item i9999"), [ids[9999]], "so do the newest");
        assert_eq!(found("item i9900"), [ids[9900]]);
        assert!(
            found("item i5000").is_empty(),
            "done work outside the window went"
        );
        assert_eq!(index.added(), 10_000);

        // Window 0 keeps everything.
        let mut all = CascadeState::default();
        for (i, id) in ids.iter().enumerate() {
            all.index_work(&phase, *id, &format!("item i{i}"), 0, || Ok(HashSet::new()))
                .expect("indexes");
        }
        assert_eq!(all.dedup[&phase].len(), 10_000);
    }
}
