//! The in-memory store: one mutex around plain maps and a ready queue per workflow.
//! Fast and simple; everything is lost when the process ends (use the SQLite store for
//! durability).
//!
//! It holds every record of a run, so its layout is its memory: records are boxed and
//! kept in the order stored, found through a table of their positions that compares the
//! id inside each record (`by_id::ById`: 8 bytes a record, where a map by id and a list of ids
//! per workflow took 40), names are shared [`Name`]s rather than copied strings, and the
//! tables hash with foldhash, not SipHash (the keys are host-made ids, not attacker
//! chosen; SipHash was 4% of the run loop's profile).

use super::by_id::{ById, Keyed};
use super::ready::ReadyQueue;
use super::tally::{Record, Tally};
use super::{
    ArtifactCounts, ArtifactQuery, Commit, KeyRecord, RunRecord, Store, StoreError, StoredEvent,
};
use crate::artifact::{Artifact, ArtifactId, SharedArtifact, Viewer, now_ms};
use crate::invocation::{InvocationId, InvocationRecord, InvocationStatus};
use crate::name::Name;
use crate::work::{WorkItem, WorkStatus};
use parking_lot::{Mutex, MutexGuard};
use std::cmp::Reverse;
use std::collections::BinaryHeap;

/// The value under `key` in `map`, a default one inserted if there is none; `key` is
/// cloned only to insert it.
///
/// `map.entry(key.clone())` clones the key on every call, and the keys here are
/// [`Name`]s: each clone and drop is an atomic update of a reference count that both
/// workers' records share (a workflow id is one `Arc` per thread), a cache line the two
/// cores pass back and forth several times per invocation. A second lookup of a key
/// just found costs less.
pub(crate) fn entry_mut<'m, K, V>(map: &'m mut Map<K, V>, key: &K) -> &'m mut V
where
    K: Eq + std::hash::Hash + Clone,
    V: Default,
{
    if !map.contains_key(key) {
        map.insert(key.clone(), V::default());
    }
    // Returning `get_mut`'s borrow from one branch while inserting in the other is what
    // the borrow checker cannot accept yet; hence the lookup after the insert.
    map.get_mut(key).expect("the key was inserted above")
}

/// Store `record` (a work item or an invocation) in `records`, its tally in `tally`: a
/// record already stored is overwritten in its box (no new box), a new one is boxed and
/// stored last. `counted` gives its tally entry.
fn upsert<R: Keyed>(
    records: &mut ById<Box<R>>,
    tally: &mut Tally,
    record: R,
    counted: fn(&R) -> Record<'_>,
) {
    tally.count(counted(&record), true);
    match records.get_mut(record.key()) {
        Some(old) => {
            tally.count(counted(old), false);
            **old = record;
        }
        None => {
            records.insert(Box::new(record));
        }
    }
}

/// A record of one workflow's.
trait InWorkflow {
    /// The workflow's id.
    fn workflow_id(&self) -> &str;
}

impl InWorkflow for WorkItem {
    fn workflow_id(&self) -> &str {
        &self.workflow_id
    }
}

impl InWorkflow for InvocationRecord {
    fn workflow_id(&self) -> &str {
        &self.workflow_id
    }
}

/// The records of `records` that belong to `workflow_id`, in the order stored.
///
/// A process's memory store nearly always holds one workflow, so every record is one of
/// its own; a list per workflow would cost 8–16 bytes per record to save a comparison.
fn of_workflow<'g, R>(
    records: &'g ById<Box<R>>,
    workflow_id: &'g str,
) -> impl DoubleEndedIterator<Item = &'g R>
where
    R: Keyed + InWorkflow + 'g,
{
    records
        .iter()
        .map(|r| &**r)
        .filter(move |r| r.workflow_id() == workflow_id)
}

impl Keyed for Artifact {
    type Key = ArtifactId;
    fn key(&self) -> &ArtifactId {
        &self.id
    }
}

impl Keyed for WorkItem {
    type Key = ArtifactId;
    fn key(&self) -> &ArtifactId {
        &self.id
    }
}

impl Keyed for InvocationRecord {
    type Key = InvocationId;
    fn key(&self) -> &InvocationId {
        &self.id
    }
}

/// An in-memory [`Store`].
#[derive(Default)]
pub struct MemoryStore {
    inner: Mutex<Inner>,
    /// Whether recorded events are kept (for a reader such as `murmur serve`'s event
    /// stream); a batch run's memory store has no reader and keeps none.
    keep_events: bool,
    /// Whether any record has been dropped ([`MemoryStore::drop_settled`]): read on every
    /// miss and every context read, without the lock.
    dropped_any: std::sync::atomic::AtomicBool,
}

/// A hash map with foldhash's fast hasher.
type Map<K, V> = std::collections::HashMap<K, V, foldhash::fast::RandomState>;

#[derive(Default)]
struct Inner {
    artifacts: ById<SharedArtifact>,
    counts: Map<Name, ArtifactCounts>,
    work: ById<Box<WorkItem>>,
    invocations: ById<Box<InvocationRecord>>,
    /// Queued invocation ids per workflow; entries whose record is no longer queued are
    /// skipped when popped.
    queues: Map<Name, ReadyQueue>,
    /// Queued invocations waiting out a retry backoff, per workflow, earliest first.
    delayed: Map<Name, BinaryHeap<Reverse<(u64, InvocationId)>>>,
    /// What each workflow's work items and invocations add up to, kept as they change.
    tallies: Map<Name, Tally>,
    /// Plugin-private values by (workflow, plugin, key).
    kv: std::collections::BTreeMap<(String, String, String), String>,
    /// Idempotency keys by (workflow, key).
    keys: std::collections::HashMap<(String, String), KeyRecord>,
    /// Work items by discovery key, per workflow (those held: a durable mirror drops a
    /// key with its work item).
    discovery: Map<Name, std::collections::HashMap<Box<str>, ArtifactId>>,
    /// Runs' records, in the order first saved.
    runs: Vec<RunRecord>,
    /// Notable events, numbered from 1 in the order recorded.
    events: Vec<(Name, StoredEvent)>,
    /// Lessons, in the order first kept.
    lessons: Vec<crate::lessons::Lesson>,
    /// Per workflow, what has left memory for the database ([`MemoryStore::drop_settled`]).
    evicted: Map<Name, Evicted>,
}

/// What of one workflow's records a mirror has dropped: the greatest id of each kind
/// (every dropped record's id is at most that, so a record with a greater id was never
/// dropped: ids are generated in increasing order, and the test holds for any id), and
/// the oldest artifact kept because it is recent (older ones are read from the database).
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct Evicted {
    pub(crate) artifacts: Option<ArtifactId>,
    pub(crate) work: Option<ArtifactId>,
    pub(crate) invocations: Option<InvocationId>,
    pub(crate) recent_from: Option<ArtifactId>,
    /// Whether idempotency keys have left memory (with their artifact).
    pub(crate) keys: bool,
}

/// Records a mirror may drop once the database holds them ([`MemoryStore::settled`]).
#[derive(Debug, Default)]
pub(crate) struct Settled {
    pub(crate) artifacts: Vec<ArtifactId>,
    pub(crate) work: Vec<ArtifactId>,
    pub(crate) invocations: Vec<InvocationId>,
    /// Per workflow, the oldest artifact kept because it is recent.
    pub(crate) recent_from: Vec<(Name, ArtifactId)>,
}

/// A record a commit names that the mirror may have dropped: the database's version is
/// asked for ([`MemoryStore::commit_recalling`]).
pub(crate) enum Recall {
    /// An artifact (a commit may not write one that exists).
    Artifact(ArtifactId),
    /// A work item (a commit that updates one needs its old version for the tally).
    Work(ArtifactId),
    /// An invocation (likewise).
    Invocation(InvocationId),
    /// An idempotency key of a run (a commit may not take one that is taken).
    Key(String, String),
}

/// What the database holds of a [`Recall`].
pub(crate) enum Recalled {
    /// Nothing.
    Absent,
    /// The artifact exists.
    Artifact,
    /// The work item's stored version.
    Work(Box<WorkItem>),
    /// The invocation's stored version.
    Invocation(Box<InvocationRecord>),
    /// The idempotency key is taken.
    Key,
}

/// How [`MemoryStore::commit_recalling`] asks the database.
pub(crate) type Recaller<'r> = &'r mut dyn FnMut(Recall) -> Result<Recalled, StoreError>;

impl MemoryStore {
    /// [`Store::claim_next`], also returning the claimed invocation's work item if the
    /// claim activated it (the first claim of its work): what a durable mirror must write.
    pub fn claim(&self, workflow_id: &str) -> Option<(InvocationRecord, Option<WorkItem>)> {
        let mut g = self.lock();
        let g = &mut *g;
        // Retries whose backoff has passed join the queue.
        if let Some(delayed) = g.delayed.get_mut(workflow_id) {
            let now = now_ms();
            while delayed.peek().is_some_and(|Reverse((at, _))| *at <= now) {
                if let Some(Reverse((_, id))) = delayed.pop()
                    && let Some(inv) = g.invocations.get(&id)
                {
                    entry_mut(&mut g.queues, &inv.workflow_id).push(inv.priority, inv.seq, id);
                }
            }
        }
        let queue = g.queues.get_mut(workflow_id)?;
        while let Some(id) = queue.pop() {
            let Some(inv) = g.invocations.get_mut(&id) else {
                continue;
            };
            if inv.status != InvocationStatus::Queued {
                continue;
            }
            let tally = entry_mut(&mut g.tallies, &inv.workflow_id);
            tally.count(Record::Invocation(inv), false);
            inv.status = InvocationStatus::Running;
            inv.attempts += 1;
            tally.count(Record::Invocation(inv), true);
            let mut activated = None;
            if let Some(w) = inv.work_item.as_ref().and_then(|w| g.work.get_mut(w))
                && w.status() == WorkStatus::Pending
            {
                tally.count(Record::Work(w), false);
                let started = w.start().is_ok();
                tally.count(Record::Work(w), true);
                activated = started.then(|| WorkItem::clone(w));
            }
            return Some((InvocationRecord::clone(inv), activated));
        }
        None
    }

    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    /// An empty store that keeps the events recorded in it, for
    /// [`Store::events_after`].
    pub fn keeping_events() -> Self {
        Self {
            keep_events: true,
            ..Self::default()
        }
    }

    /// Drop a run's records — artifacts, work items, invocations, their queues and
    /// tallies, plugin values, idempotency keys — from memory, keeping its run record and
    /// events. For a store that mirrors a durable one (`DurableStore::unload`), where the
    /// records stay on disk; in a memory store alone they would be gone.
    pub(crate) fn forget(&self, workflow_id: &str) {
        let mut g = self.lock();
        let g = &mut *g;
        g.artifacts.retain(|a| &*a.workflow_id != workflow_id);
        g.work.retain(|w| &*w.workflow_id != workflow_id);
        g.invocations.retain(|i| &*i.workflow_id != workflow_id);
        g.counts.remove(workflow_id);
        g.queues.remove(workflow_id);
        g.delayed.remove(workflow_id);
        g.tallies.remove(workflow_id);
        g.kv.retain(|(w, _, _), _| w != workflow_id);
        g.keys.retain(|(w, _), _| w != workflow_id);
        g.discovery.remove(workflow_id);
        g.evicted.remove(workflow_id);
    }

    /// Records held: artifacts, work items, invocations and idempotency keys together.
    pub(crate) fn held(&self) -> usize {
        let g = self.lock();
        g.artifacts.len() + g.work.len() + g.invocations.len() + g.keys.len()
    }

    /// What has left memory of `workflow_id`'s records, if anything has.
    pub(crate) fn evicted(&self, workflow_id: &str) -> Option<Evicted> {
        if !self.any_evicted() {
            return None;
        }
        self.lock().evicted.get(workflow_id).copied()
    }

    /// [`Store::artifacts_from`] of a trimmed run, answered from memory when position
    /// `from` is among the artifacts held because they are recent (every artifact from
    /// the oldest of those on is held, in order); `None` sends the caller to the
    /// database. A reader following a run live reads there.
    pub(crate) fn recent_artifacts_from(
        &self,
        workflow_id: &str,
        from: u64,
        limit: usize,
    ) -> Option<Vec<SharedArtifact>> {
        let g = self.lock();
        let oldest = g.evicted.get(workflow_id)?.recent_from?;
        let total = g.counts.get(workflow_id)?.total;
        let mut held = g
            .artifacts
            .iter()
            .filter(|a| &*a.workflow_id == workflow_id)
            .skip_while(|a| a.id != oldest)
            .peekable();
        held.peek()?;
        let recent: Vec<&SharedArtifact> = held.collect();
        let first = total.checked_sub(recent.len() as u64)?;
        let skip = usize::try_from(from.checked_sub(first)?).ok()?;
        Some(recent.into_iter().skip(skip).take(limit).cloned().collect())
    }

    /// Whether any record has ever left memory.
    pub(crate) fn any_evicted(&self) -> bool {
        self.dropped_any.load(std::sync::atomic::Ordering::Acquire)
    }

    /// The records open work does not need: of each workflow, beyond its newest `keep`
    /// artifacts, work items and invocations, the invocations that ended, the work
    /// items that are final and not [`super::is_notable`], and the artifacts that no
    /// open invocation takes as input and no open work item is (with the idempotency
    /// keys that published them: a repeat finds its key in the database). The caller drops them
    /// ([`MemoryStore::drop_settled`]) once the database holds every version seen here.
    pub(crate) fn settled(&self, keep: usize) -> Settled {
        let g = self.lock();
        let mut out = Settled::default();
        // The artifacts open work needs, wherever they are in the run.
        let mut pinned: std::collections::HashSet<ArtifactId, foldhash::fast::RandomState> =
            Default::default();
        for i in g.invocations.iter() {
            if matches!(
                i.status,
                InvocationStatus::Queued | InvocationStatus::Running
            ) {
                pinned.extend(i.inputs.iter().copied());
                pinned.extend(i.work_item);
            }
        }
        for w in g.work.iter() {
            if !w.status().is_final() {
                pinned.insert(w.id);
            }
        }
        let mut seen: Map<Name, usize> = Map::default();
        for a in g.artifacts.iter().rev() {
            let n = entry_mut(&mut seen, &a.workflow_id);
            *n += 1;
            if *n == keep {
                out.recent_from.push((a.workflow_id.clone(), a.id));
            }
            if *n > keep && !pinned.contains(&a.id) {
                out.artifacts.push(a.id);
            }
        }
        seen.clear();
        for w in g.work.iter().rev() {
            let n = entry_mut(&mut seen, &w.workflow_id);
            *n += 1;
            if *n > keep && w.status().is_final() && !super::is_notable(w) {
                out.work.push(w.id);
            }
        }
        seen.clear();
        for i in g.invocations.iter().rev() {
            let n = entry_mut(&mut seen, &i.workflow_id);
            *n += 1;
            if *n > keep
                && matches!(
                    i.status,
                    InvocationStatus::Done | InvocationStatus::Failed | InvocationStatus::Cancelled
                )
            {
                out.invocations.push(i.id);
            }
        }
        out
    }

    /// Drop `settled` records (see [`MemoryStore::settled`]), once the database holds
    /// them. A record that is no longer settled (changed since) stays. The tallies and
    /// counts keep counting what was dropped.
    pub(crate) fn drop_settled(&self, settled: &Settled) {
        let mut g = self.lock();
        if !(settled.artifacts.is_empty()
            && settled.work.is_empty()
            && settled.invocations.is_empty())
        {
            // Set before anything is dropped (under the lock): a reader that misses a
            // record looks in the database.
            self.dropped_any
                .store(true, std::sync::atomic::Ordering::Release);
        }
        let g = &mut *g;
        let artifacts: std::collections::HashSet<&ArtifactId, foldhash::fast::RandomState> =
            settled.artifacts.iter().collect();
        let work: std::collections::HashSet<&ArtifactId, foldhash::fast::RandomState> =
            settled.work.iter().collect();
        let invocations: std::collections::HashSet<&InvocationId, foldhash::fast::RandomState> =
            settled.invocations.iter().collect();
        let evicted = &mut g.evicted;
        let mut note = |workflow: &Name, f: &mut dyn FnMut(&mut Evicted)| {
            f(entry_mut(evicted, workflow));
        };
        if !artifacts.is_empty() {
            g.artifacts.retain(|a| {
                let gone = artifacts.contains(&a.id);
                if gone {
                    note(&a.workflow_id, &mut |e| {
                        e.artifacts = e.artifacts.max(Some(a.id));
                    });
                }
                !gone
            });
            g.keys.retain(|(workflow, _), k| {
                let gone = artifacts.contains(&k.artifact);
                if gone {
                    note(&Name::from(workflow.as_str()), &mut |e| e.keys = true);
                }
                !gone
            });
        }
        if !work.is_empty() {
            let discovery = &mut g.discovery;
            g.work.retain(|w| {
                let gone = work.contains(&w.id) && w.status().is_final() && !super::is_notable(w);
                if gone {
                    note(&w.workflow_id, &mut |e| e.work = e.work.max(Some(w.id)));
                    if let Some(key) = w.discovery_key()
                        && let Some(keys) = discovery.get_mut(&w.workflow_id)
                    {
                        keys.remove(key);
                    }
                }
                !gone
            });
        }
        if !invocations.is_empty() {
            g.invocations.retain(|i| {
                let gone = invocations.contains(&i.id)
                    && matches!(
                        i.status,
                        InvocationStatus::Done
                            | InvocationStatus::Failed
                            | InvocationStatus::Cancelled
                    );
                if gone {
                    note(&i.workflow_id, &mut |e| {
                        e.invocations = e.invocations.max(Some(i.id));
                    });
                }
                !gone
            });
        }
        for (workflow, from) in &settled.recent_from {
            if let Some(e) = g.evicted.get_mut(workflow)
                && e.artifacts.is_some()
            {
                e.recent_from = Some(*from);
            }
        }
    }

    /// [`Store::commit`] for a mirror that may have dropped records: a record the commit
    /// names that is not held, and whose id is not above what was dropped of its kind,
    /// is asked of `recall` — an artifact that exists refuses the commit, a work item or
    /// invocation comes back (uncounted: the tally still counts it) before it is
    /// updated. New records have greater ids than any dropped one, so they are not
    /// asked.
    pub(crate) fn commit_recalling(
        &self,
        commit: Commit,
        recall: Recaller<'_>,
    ) -> Result<(), StoreError> {
        self.apply(commit, Some(recall))
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic while holding the lock cannot leave a half-applied commit (commits check
        // before they write), so the state behind it stays consistent; parking_lot's mutex
        // does not poison, and spins briefly before it parks.
        self.inner.lock()
    }
}

impl Inner {
    /// What `query` matches for `viewer`, newest first.
    fn newest<'g>(
        &'g self,
        query: &'g ArtifactQuery,
        viewer: &'g Viewer<'_>,
    ) -> impl Iterator<Item = &'g SharedArtifact> {
        self.artifacts
            .iter()
            .rev()
            .filter(|a| a.workflow_id == query.workflow_id)
            .filter(|a| matches(a, query, viewer))
            .take(query.limit)
    }
}

/// The mirror's records under its lock, as a durable store reads them: what is held,
/// and where a walk over recent artifacts must go on in the database.
pub(crate) struct Held<'g>(&'g Inner);

/// How far [`Held::visit_recent`] got.
pub(crate) enum RecentHeld {
    /// The visitor stopped, the limit was reached, or every artifact was held.
    Done,
    /// The held recent artifacts ran out: go on with those published before `before`,
    /// at most `remaining` more.
    Continue {
        /// The oldest artifact held because it is recent.
        before: ArtifactId,
        /// How many more the query may visit.
        remaining: usize,
    },
}

impl Held<'_> {
    /// Visit artifact `id` if it is held; whether it is.
    pub(crate) fn visit_artifact(
        &self,
        id: &ArtifactId,
        visit: &mut dyn FnMut(&SharedArtifact),
    ) -> bool {
        self.0.artifacts.get(id).map(visit).is_some()
    }

    /// [`super::ArtifactReader::visit_recent`] over the held artifacts down to the
    /// oldest kept because it is recent (older ones held because open work needs them are
    /// left to the database's walk, which finds them in their place).
    pub(crate) fn visit_recent(
        &self,
        query: &ArtifactQuery,
        viewer: &Viewer<'_>,
        visit: &mut dyn FnMut(&SharedArtifact) -> bool,
    ) -> RecentHeld {
        if query.limit == 0 {
            return RecentHeld::Done;
        }
        let from = self
            .0
            .evicted
            .get(query.workflow_id.as_str())
            .and_then(|e| e.recent_from);
        let mut visited = 0;
        for a in self
            .0
            .artifacts
            .iter()
            .rev()
            .filter(|a| a.workflow_id == query.workflow_id)
        {
            if matches(a, query, viewer) {
                visited += 1;
                if !visit(a) || visited >= query.limit {
                    return RecentHeld::Done;
                }
            }
            if Some(a.id) == from {
                return RecentHeld::Continue {
                    before: a.id,
                    remaining: query.limit - visited,
                };
            }
        }
        RecentHeld::Done
    }
}

/// Whether artifact `a` is one `query` asks for and `viewer` may see (its workflow
/// aside).
pub(crate) fn matches(a: &Artifact, query: &ArtifactQuery, viewer: &Viewer<'_>) -> bool {
    query.type_name.as_ref().is_none_or(|t| *t == a.type_name)
        && query.tags.iter().all(|t| a.tags().contains(t))
        && a.visible_to(viewer)
}

impl MemoryStore {
    /// Run `read` over the held records, under the lock.
    pub(crate) fn read_held<R>(&self, read: impl FnOnce(&Held<'_>) -> R) -> R {
        read(&Held(&self.lock()))
    }
}

impl super::ArtifactReader for Inner {
    fn visit_artifact(
        &self,
        id: &ArtifactId,
        visit: &mut dyn FnMut(&SharedArtifact),
    ) -> Result<bool, StoreError> {
        Ok(self.artifacts.get(id).map(visit).is_some())
    }

    fn visit_recent(
        &self,
        query: &ArtifactQuery,
        viewer: &Viewer<'_>,
        visit: &mut dyn FnMut(&SharedArtifact) -> bool,
    ) -> Result<(), StoreError> {
        for a in self.newest(query, viewer) {
            if !visit(a) {
                break;
            }
        }
        Ok(())
    }
}

impl MemoryStore {
    /// Apply `commit`, asking `recall` for what the mirror may have dropped.
    fn apply(&self, commit: Commit, recall: Option<Recaller<'_>>) -> Result<(), StoreError> {
        let mut g = self.lock();
        let mut recalled = Vec::new();
        if let Some(recall) = recall {
            recalled = g.recall(&commit, recall)?;
        }
        // Check everything first so the commit applies whole or not at all.
        for a in &commit.artifacts {
            if g.artifacts.contains_key(&a.id) {
                return Err(StoreError::DuplicateArtifact(a.id));
            }
        }
        for k in &commit.keys {
            if g.keys.contains_key(&(k.workflow_id.clone(), k.key.clone())) {
                return Err(StoreError::KeyTaken(k.key.clone()));
            }
        }
        let g = &mut *g;
        for r in recalled {
            match r {
                Recalled::Work(w) => {
                    g.work.insert(w);
                }
                Recalled::Invocation(i) => {
                    g.invocations.insert(i);
                }
                Recalled::Absent | Recalled::Artifact | Recalled::Key => {}
            }
        }
        for k in commit.keys {
            g.keys.insert((k.workflow_id.clone(), k.key.clone()), k);
        }
        for a in commit.artifacts {
            entry_mut(&mut g.counts, &a.workflow_id).add(&a.producer, &a.type_name);
            g.artifacts.insert(a);
        }
        for w in commit.work_items {
            if let Some(key) = w.discovery_key() {
                let keys = entry_mut(&mut g.discovery, &w.workflow_id);
                if !keys.contains_key(key) {
                    keys.insert(key.into(), w.id);
                }
            }
            let tally = entry_mut(&mut g.tallies, &w.workflow_id);
            upsert(&mut g.work, tally, w, |w| Record::Work(w));
        }
        let now = now_ms();
        for inv in commit.invocations {
            if inv.status == InvocationStatus::Queued {
                if inv.not_before_ms() > now {
                    entry_mut(&mut g.delayed, &inv.workflow_id)
                        .push(Reverse((inv.not_before_ms(), inv.id)));
                } else {
                    entry_mut(&mut g.queues, &inv.workflow_id).push(inv.priority, inv.seq, inv.id);
                }
            }
            let tally = entry_mut(&mut g.tallies, &inv.workflow_id);
            upsert(&mut g.invocations, tally, inv, |i| Record::Invocation(i));
        }
        Ok(())
    }
}

impl Inner {
    /// The database's versions of the records `commit` names that this mirror may have
    /// dropped (see [`MemoryStore::commit_recalling`]); an artifact it holds already is
    /// refused.
    fn recall(&self, commit: &Commit, recall: Recaller<'_>) -> Result<Vec<Recalled>, StoreError> {
        let mut out = Vec::new();
        let dropped = |workflow: &str| self.evicted.get(workflow);
        for a in &commit.artifacts {
            if let Some(e) = dropped(&a.workflow_id)
                && e.artifacts.is_some_and(|max| a.id <= max)
                && !self.artifacts.contains_key(&a.id)
                && matches!(recall(Recall::Artifact(a.id))?, Recalled::Artifact)
            {
                return Err(StoreError::DuplicateArtifact(a.id));
            }
        }
        for w in &commit.work_items {
            if let Some(e) = dropped(&w.workflow_id)
                && e.work.is_some_and(|max| w.id <= max)
                && !self.work.contains_key(&w.id)
            {
                out.push(recall(Recall::Work(w.id))?);
            }
        }
        for i in &commit.invocations {
            if let Some(e) = dropped(&i.workflow_id)
                && e.invocations.is_some_and(|max| i.id <= max)
                && !self.invocations.contains_key(&i.id)
            {
                out.push(recall(Recall::Invocation(i.id))?);
            }
        }
        for k in &commit.keys {
            if dropped(&k.workflow_id).is_some_and(|e| e.keys)
                && !self
                    .keys
                    .contains_key(&(k.workflow_id.clone(), k.key.clone()))
                && matches!(
                    recall(Recall::Key(k.workflow_id.clone(), k.key.clone()))?,
                    Recalled::Key
                )
            {
                return Err(StoreError::KeyTaken(k.key.clone()));
            }
        }
        Ok(out)
    }
}

impl Store for MemoryStore {
    fn commit(&self, commit: Commit) -> Result<(), StoreError> {
        self.apply(commit, None)
    }

    fn artifact(&self, id: &ArtifactId) -> Result<Option<SharedArtifact>, StoreError> {
        Ok(self.lock().artifacts.get(id).cloned())
    }

    fn artifacts_from(
        &self,
        workflow_id: &str,
        from: u64,
        limit: usize,
    ) -> Result<Vec<SharedArtifact>, StoreError> {
        // A walk over every artifact: a process's store nearly always holds one run, and
        // the callers (the service's listings and event streams) read a page at a time.
        let g = self.lock();
        Ok(g.artifacts
            .iter()
            .filter(|a| &*a.workflow_id == workflow_id)
            .skip(usize::try_from(from).unwrap_or(usize::MAX))
            .take(limit)
            .cloned()
            .collect())
    }

    fn idempotency_key(
        &self,
        workflow_id: &str,
        key: &str,
    ) -> Result<Option<KeyRecord>, StoreError> {
        Ok(self
            .lock()
            .keys
            .get(&(workflow_id.to_string(), key.to_string()))
            .cloned())
    }

    fn discovery_key(
        &self,
        workflow_id: &str,
        key: &str,
    ) -> Result<Option<ArtifactId>, StoreError> {
        Ok(self
            .lock()
            .discovery
            .get(workflow_id)
            .and_then(|keys| keys.get(key))
            .copied())
    }

    fn runs(&self) -> Result<Vec<RunRecord>, StoreError> {
        let mut runs = self.lock().runs.clone();
        runs.sort_by(|a, b| {
            (b.started_at_ms, &b.workflow_id).cmp(&(a.started_at_ms, &a.workflow_id))
        });
        Ok(runs)
    }

    fn run(&self, workflow_id: &str) -> Result<Option<RunRecord>, StoreError> {
        Ok(self
            .lock()
            .runs
            .iter()
            .find(|r| r.workflow_id == workflow_id)
            .cloned())
    }

    fn lessons(&self, workflow: Option<&str>) -> Result<Vec<crate::lessons::Lesson>, StoreError> {
        Ok(self
            .lock()
            .lessons
            .iter()
            .filter(|l| workflow.is_none_or(|w| l.workflow == w))
            .cloned()
            .collect())
    }

    fn change_lessons(&self, change: &crate::lessons::LessonChange) -> Result<(), StoreError> {
        let mut g = self.lock();
        g.lessons.retain(|l| !change.forget.contains(&l.id));
        for l in &change.put {
            match g.lessons.iter_mut().find(|k| k.id == l.id) {
                Some(k) => *k = l.clone(),
                None => g.lessons.push(l.clone()),
            }
        }
        Ok(())
    }

    fn save_run(&self, run: &RunRecord) -> Result<(), StoreError> {
        let mut g = self.lock();
        match g.runs.iter_mut().find(|r| r.workflow_id == run.workflow_id) {
            Some(r) => *r = run.clone(),
            None => g.runs.push(run.clone()),
        }
        Ok(())
    }

    fn record_events(
        &self,
        workflow_id: &str,
        events: &[crate::observe::Event],
    ) -> Result<(), StoreError> {
        if !self.keep_events {
            return Ok(());
        }
        let mut g = self.lock();
        let at_ms = now_ms();
        for e in events.iter().filter(|e| e.is_notable()) {
            let seq = g.events.len() as u64 + 1;
            let data = serde_json::to_value(e).map_err(|e| StoreError::Backend(e.to_string()))?;
            g.events.push((
                Name::new(workflow_id),
                StoredEvent {
                    seq,
                    at_ms,
                    kind: e.kind().to_string(),
                    data,
                },
            ));
        }
        Ok(())
    }

    fn events_after(
        &self,
        workflow_id: &str,
        after: u64,
        limit: usize,
    ) -> Result<Vec<StoredEvent>, StoreError> {
        let g = self.lock();
        let start = usize::try_from(after)
            .unwrap_or(usize::MAX)
            .min(g.events.len());
        Ok(g.events[start..]
            .iter()
            .filter(|(w, _)| &**w == workflow_id)
            .take(limit)
            .map(|(_, e)| e.clone())
            .collect())
    }

    fn query(
        &self,
        query: &ArtifactQuery,
        viewer: &Viewer<'_>,
    ) -> Result<Vec<SharedArtifact>, StoreError> {
        let g = self.lock();
        let mut out: Vec<SharedArtifact> = g.newest(query, viewer).cloned().collect();
        out.reverse();
        Ok(out)
    }

    fn read(&self, read: super::Reading<'_>) -> Result<(), StoreError> {
        read(&*self.lock())
    }

    fn claim_next(&self, workflow_id: &str) -> Result<Option<InvocationRecord>, StoreError> {
        Ok(self.claim(workflow_id).map(|(claimed, _)| claimed))
    }

    fn next_wakeup(&self, workflow_id: &str) -> Result<Option<u64>, StoreError> {
        let g = self.lock();
        Ok(g.delayed.get(workflow_id).and_then(|d| {
            d.iter()
                .filter(|Reverse((_, id))| {
                    g.invocations
                        .get(id)
                        .is_some_and(|i| i.status == InvocationStatus::Queued)
                })
                .map(|Reverse((at, _))| *at)
                .min()
        }))
    }

    fn kv_get(
        &self,
        workflow_id: &str,
        plugin: &str,
        key: &str,
    ) -> Result<Option<String>, StoreError> {
        Ok(self
            .lock()
            .kv
            .get(&(workflow_id.to_string(), plugin.to_string(), key.to_string()))
            .cloned())
    }

    fn kv_set(
        &self,
        workflow_id: &str,
        plugin: &str,
        key: &str,
        value: Option<String>,
    ) -> Result<(), StoreError> {
        let k = (workflow_id.to_string(), plugin.to_string(), key.to_string());
        let mut g = self.lock();
        match value {
            Some(v) => {
                g.kv.insert(k, v);
            }
            None => {
                g.kv.remove(&k);
            }
        }
        Ok(())
    }

    fn kv_keys(
        &self,
        workflow_id: &str,
        plugin: &str,
        prefix: &str,
    ) -> Result<Vec<String>, StoreError> {
        let g = self.lock();
        let start = (
            workflow_id.to_string(),
            plugin.to_string(),
            prefix.to_string(),
        );
        Ok(g.kv
            .range(start..)
            .take_while(|((w, p, k), _)| w == workflow_id && p == plugin && k.starts_with(prefix))
            .map(|((_, _, k), _)| k.clone())
            .collect())
    }

    fn requeue_running(&self, workflow_id: &str) -> Result<u64, StoreError> {
        let mut g = self.lock();
        let g = &mut *g;
        let mut n = 0;
        for inv in g.invocations.iter_mut() {
            if inv.workflow_id() == workflow_id && inv.status == InvocationStatus::Running {
                let tally = entry_mut(&mut g.tallies, &inv.workflow_id);
                tally.count(Record::Invocation(inv), false);
                inv.status = InvocationStatus::Queued;
                if inv.not_before_ms() != 0 {
                    inv.setback_mut().not_before_ms = 0;
                }
                tally.count(Record::Invocation(inv), true);
                entry_mut(&mut g.queues, &inv.workflow_id).push(inv.priority, inv.seq, inv.id);
                n += 1;
            }
        }
        Ok(n)
    }

    fn work_item(&self, id: &ArtifactId) -> Result<Option<WorkItem>, StoreError> {
        Ok(self.lock().work.get(id).map(|w| WorkItem::clone(w)))
    }

    fn work_phase(&self, id: &ArtifactId) -> Result<Option<Name>, StoreError> {
        Ok(self.lock().work.get(id).map(|w| w.phase.clone()))
    }

    fn work_items(&self, workflow_id: &str) -> Result<Vec<WorkItem>, StoreError> {
        let g = self.lock();
        Ok(of_workflow(&g.work, workflow_id).cloned().collect())
    }

    fn invocation(&self, id: &InvocationId) -> Result<Option<InvocationRecord>, StoreError> {
        Ok(self
            .lock()
            .invocations
            .get(id)
            .map(|i| InvocationRecord::clone(i)))
    }

    fn invocations(&self, workflow_id: &str) -> Result<Vec<InvocationRecord>, StoreError> {
        let g = self.lock();
        Ok(of_workflow(&g.invocations, workflow_id).cloned().collect())
    }

    fn scan(
        &self,
        workflow_id: &str,
        visit: &mut dyn FnMut(&[&WorkItem], &[&InvocationRecord]),
    ) -> Result<(), StoreError> {
        let g = self.lock();
        let work: Vec<&WorkItem> = of_workflow(&g.work, workflow_id).collect();
        let invocations: Vec<&InvocationRecord> =
            of_workflow(&g.invocations, workflow_id).collect();
        visit(&work, &invocations);
        Ok(())
    }

    fn tally(&self, workflow_id: &str) -> Result<Option<Tally>, StoreError> {
        Ok(Some(
            self.lock()
                .tallies
                .get(workflow_id)
                .cloned()
                .unwrap_or_default(),
        ))
    }

    fn counts(&self, workflow_id: &str) -> Result<ArtifactCounts, StoreError> {
        Ok(self
            .lock()
            .counts
            .get(workflow_id)
            .cloned()
            .unwrap_or_default())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::work::Priority;

    fn artifact(id: &str) -> SharedArtifact {
        SharedArtifact::new(Artifact {
            id: ArtifactId::named(id),
            type_name: "T".into(),
            payload: serde_json::json!({}).into(),
            producer: "a".into(),
            workflow_id: "w".into(),
            parent_ids: vec![].into(),
            audience: None,
            created_at_ms: 0,
            depth: 0,
            work_item: None,
        })
    }

    fn invocation(id: &str, priority: Priority, seq: u64) -> InvocationRecord {
        let mut inv = InvocationRecord::queued("w", "a", vec![], seq);
        inv.id = InvocationId::named(id);
        inv.priority = priority;
        inv
    }

    #[test]
    fn entry_mut_clones_a_key_only_to_insert_it() {
        use std::cell::Cell;
        thread_local!(static CLONES: Cell<u32> = const { Cell::new(0) });
        #[derive(PartialEq, Eq, Hash)]
        struct Key(&'static str);
        impl Clone for Key {
            fn clone(&self) -> Self {
                CLONES.with(|c| c.set(c.get() + 1));
                Key(self.0)
            }
        }
        let key = Key("wf");
        let mut map: Map<Key, u32> = Map::default();
        *entry_mut(&mut map, &key) += 1;
        assert_eq!(CLONES.with(Cell::get), 1, "inserted: the map holds a clone");
        for _ in 0..3 {
            *entry_mut(&mut map, &key) += 1;
        }
        assert_eq!(CLONES.with(Cell::get), 1, "present: not cloned again");
        assert_eq!(map.get(&key), Some(&4));
    }

    #[test]
    fn a_retry_is_not_claimed_before_its_backoff_has_passed() {
        let s = MemoryStore::new();
        let mut later = invocation("later", Priority::Critical, 0);
        later.setback_mut().not_before_ms = now_ms() + 150;
        s.commit(Commit {
            invocations: vec![later, invocation("now", Priority::Low, 1)],
            ..Default::default()
        })
        .expect("commit");
        assert_eq!(
            s.claim_next("w").expect("claim").map(|i| i.id),
            Some(InvocationId::named("now"))
        );
        assert!(
            s.claim_next("w").expect("claim").is_none(),
            "still backing off"
        );
        let wake = s.next_wakeup("w").expect("wakeup").expect("one waiting");
        std::thread::sleep(std::time::Duration::from_millis(
            wake.saturating_sub(now_ms()) + 5,
        ));
        assert_eq!(
            s.claim_next("w").expect("claim").map(|i| i.id),
            Some(InvocationId::named("later"))
        );
        assert_eq!(s.next_wakeup("w").expect("wakeup"), None);
    }

    #[test]
    fn a_claim_reports_the_work_item_only_when_it_activates_it() {
        let s = MemoryStore::new();
        let mut work = WorkItem::new(ArtifactId::named("w1"), "w", "analysis", Priority::Medium);
        work.open_invocations = 2;
        let on_work = |id: &str, seq| {
            let mut inv = invocation(id, Priority::Medium, seq);
            inv.work_item = Some(ArtifactId::named("w1"));
            inv
        };
        s.commit(Commit {
            work_items: vec![work],
            invocations: vec![on_work("i1", 0), on_work("i2", 1)],
            ..Default::default()
        })
        .expect("commit");
        let (first, activated) = s.claim("w").expect("i1");
        assert_eq!(first.id, InvocationId::named("i1"));
        assert_eq!(activated.map(|w| w.status()), Some(WorkStatus::Active));
        let (second, activated) = s.claim("w").expect("i2");
        assert_eq!(second.id, InvocationId::named("i2"));
        assert!(activated.is_none(), "the work item was active already");
        assert!(s.claim("w").is_none());
    }

    #[test]
    fn claims_follow_priority_then_enqueue_order_and_are_exclusive() {
        let s = MemoryStore::new();
        let commit = Commit {
            invocations: vec![
                invocation("low", Priority::Low, 0),
                invocation("high-2", Priority::High, 2),
                invocation("high-1", Priority::High, 1),
                invocation("critical", Priority::Critical, 3),
            ],
            ..Default::default()
        };
        s.commit(commit).expect("commit");
        let order: Vec<InvocationId> = std::iter::from_fn(|| s.claim_next("w").expect("claim"))
            .map(|i| i.id)
            .collect();
        assert_eq!(
            order,
            ["critical", "high-1", "high-2", "low"].map(InvocationId::named)
        );
        assert_eq!(
            s.invocation(&InvocationId::named("low"))
                .expect("get")
                .map(|i| (i.status, i.attempts)),
            Some((InvocationStatus::Running, 1))
        );
    }

    #[test]
    fn the_kept_tally_always_equals_a_recount_of_the_records() {
        use crate::work::{Routing, WorkItem, WorkStatus};
        let s = MemoryStore::new();
        let check = |step: &str| {
            let mut recount = Tally::default();
            s.scan("w", &mut |work, invocations| {
                recount = Tally::recount(work.iter().copied(), invocations.iter().copied());
            })
            .expect("scan");
            assert_eq!(s.tally("w").expect("tally"), Some(recount), "after {step}");
        };
        let work = |id: &str, phase: &str, status| {
            WorkItem::new(ArtifactId::named(id), "w", phase, Priority::Medium).with_status(status)
        };
        let mut blocked = work("b", "analysis", WorkStatus::Blocked);
        blocked.detail_mut().was_blocked = true;
        let mut routed = work("d", "review", WorkStatus::Duplicate);
        routed.detail_mut().routed = Some(Routing {
            requested: "auto".into(),
            by: "builtin".into(),
            reason: "words".into(),
        });
        let mut first = invocation("i1", Priority::Medium, 0);
        first.work_item = Some(ArtifactId::named("p"));
        s.commit(Commit {
            work_items: vec![work("p", "analysis", WorkStatus::Pending), blocked, routed],
            invocations: vec![first, invocation("i2", Priority::Low, 1)],
            ..Default::default()
        })
        .expect("commit");
        check("the first commit");
        let mut claimed = s.claim_next("w").expect("claim").expect("one queued");
        check("a claim (its work item becomes active)");
        claimed.status = InvocationStatus::Done;
        claimed.setback_mut().retries = 1;
        claimed.setback_mut().rejections = 2;
        let mut released = work("b", "analysis", WorkStatus::Pending);
        released.detail_mut().was_blocked = true;
        let mut recovery = work("r", "analysis", WorkStatus::Pending);
        recovery.detail_mut().recovery_of = Some(ArtifactId::named("p"));
        s.commit(Commit {
            work_items: vec![work("p", "analysis", WorkStatus::Done), released, recovery],
            invocations: vec![claimed],
            ..Default::default()
        })
        .expect("commit");
        check("completions, a release and recovery work");
        s.claim_next("w").expect("claim").expect("i2");
        s.requeue_running("w").expect("requeue");
        check("a requeue after a crash");
        let mut faulted = invocation("i3", Priority::Low, 2);
        faulted.status = InvocationStatus::Failed;
        faulted.setback_mut().fault = Some(crate::invocation::FaultKind::Timeout);
        let mut too_deep = invocation("i4", Priority::Low, 3);
        too_deep.status = InvocationStatus::Cancelled;
        too_deep.setback_mut().error = Some(crate::invocation::DEPTH_LIMIT_REASON.into());
        s.commit(Commit {
            invocations: vec![faulted, too_deep],
            ..Default::default()
        })
        .expect("commit");
        check("a fault and a cancellation by the depth limit");
        let tally = s.tally("w").expect("tally").expect("kept");
        assert_eq!(tally.ran, 2);
        assert_eq!(
            (tally.queued, tally.depth_limited),
            (1, 1),
            "i2 waits again"
        );
        let agent = &tally.agents["a"];
        assert_eq!((agent.ran, agent.failed), (2, 1));
        assert_eq!(agent.faults, [0, 1, 0, 0, 0], "one timeout");
        assert_eq!((tally.work.retries, tally.work.rejected_outputs), (1, 2));
        assert_eq!((tally.work.unblocked, tally.work.recovery_spawned), (1, 1));
        assert_eq!((tally.work.duplicates, tally.work.auto_routed), (1, 1));
        let phases = tally.phase_counts(["analysis".to_string(), "idle".to_string()]);
        assert_eq!(
            (phases["analysis"].done, phases["analysis"].pending),
            (1, 2)
        );
        assert_eq!(
            phases["idle"],
            Default::default(),
            "declared phases are listed"
        );
        assert_eq!(
            phases["review"].duplicate, 1,
            "undeclared phases with work too"
        );
    }

    #[test]
    fn a_commit_with_a_duplicate_artifact_applies_nothing() {
        let s = MemoryStore::new();
        s.commit(Commit {
            artifacts: vec![artifact("x")],
            ..Default::default()
        })
        .expect("first");
        let err = s.commit(Commit {
            artifacts: vec![artifact("y"), artifact("x")],
            invocations: vec![invocation("i", Priority::Medium, 0)],
            ..Default::default()
        });
        assert!(matches!(err, Err(StoreError::DuplicateArtifact(_))));
        assert!(s.artifact(&ArtifactId::named("y")).expect("get").is_none());
        assert!(s.claim_next("w").expect("claim").is_none());
        assert_eq!(s.counts("w").expect("counts").total, 1);
    }
}
