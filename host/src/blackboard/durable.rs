//! A durable store's shape: an in-memory mirror in front of a database, and one writer.
//!
//! Both durable stores (SQLite, PostgreSQL) work this way; only how a batch is written and
//! how a run is read back differ, and those are a [`Backend`] and its [`Writer`]:
//!
//! - every read a run makes is served from an in-memory [`MemoryStore`] holding the runs
//!   this process works on (loaded from the database when a run is resumed or inspected);
//! - every write is applied to the mirror and handed, whole, to one writer thread, which
//!   writes everything waiting in **one transaction** (group commit: the batch grows with
//!   the load, so durability costs one transaction per batch, not per change).
//!
//! What makes a crash cost nothing but time: each [`Commit`] — an invocation's outputs, the
//! work and invocations they create and the invocation's completion — lands inside one
//! transaction, and transactions land in order, so after a crash the database holds a
//! prefix of the run's commits. Invocations it shows `running` (or whose completion was in
//! the lost suffix) are queued again on resume; their outputs were never written, so they
//! never appear twice.

use super::{
    ArtifactCounts, ArtifactQuery, Commit, KeyRecord, MemoryStore, RunRecord, Store, StoreError,
    StoredEvent,
};
use crate::artifact::{Artifact, ArtifactId, SharedArtifact, Viewer};
use crate::invocation::{InvocationId, InvocationRecord, InvocationStatus};
use crate::observe::Event;
use crate::work::WorkItem;
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

/// Most changes one writer transaction takes before it commits.
const MAX_BATCH: usize = 8192;

/// Most changes waiting for the writer. A run that produces faster than the file takes
/// its commits waits here instead of holding every waiting commit's records twice (in
/// the mirror and in the queue): the run ends when its last commit is durable either
/// way, so the wait costs no time, and the queue's memory stays bounded. Measured at
/// N = 10,000 (`murmur bench cascade --store sqlite:…`): unbounded 0.827 s and 96 MB
/// peak; 16,384 0.800 s, 77 MB; 1,024 0.768 s, 67 MB; 256 0.789 s, 65 MB.
pub(super) const MAX_BACKLOG: usize = 1024;

pub(super) enum Msg {
    Commit(Commit),
    Run(Box<RunRecord>),
    Events(String, Vec<Event>),
    Kv(String, String, String, Option<String>),
    Lessons(crate::lessons::LessonChange),
    Flush(Ack),
    /// Claim a run for this process ([`DurableStore::claim_run`]).
    Claim(String, mpsc::Sender<Result<(), String>>),
}

/// Where the writer says that what was queued before a flush is in the file.
pub(super) enum Ack {
    /// A thread waiting (`Store::flush`).
    Blocking(mpsc::Sender<Result<(), String>>),
    /// A task waiting (`DurableStore::durable`).
    Async(tokio::sync::oneshot::Sender<Result<(), String>>),
}

impl Ack {
    pub(super) fn send(self, result: Result<(), String>) {
        match self {
            Ack::Blocking(tx) => {
                let _ = tx.send(result);
            }
            Ack::Async(tx) => {
                let _ = tx.send(result);
            }
        }
    }
}

/// A database a [`DurableStore`] mirrors: how runs are read back from it. Reads come from
/// any thread, the async server's included; a backend whose client cannot be called there
/// runs its queries on a thread of its own.
pub trait Backend: Send + Sync + 'static {
    /// `sqlite:PATH` or `postgres://…` (without a password).
    fn describe(&self) -> String;
    /// Claim the database for writing runs, where the backend needs one writer process
    /// (SQLite); a backend whose runs are claimed one by one ([`Writer::claim_run`])
    /// accepts.
    fn claim_writer(&self) -> Result<(), StoreError>;
    /// Check the database can be read whole: damage is an error naming it, never a panic.
    fn check(&self) -> Result<(), StoreError>;
    /// Every run, newest first.
    fn runs(&self) -> Result<Vec<RunRecord>, StoreError>;
    /// One run's record.
    fn run(&self, workflow_id: &str) -> Result<Option<RunRecord>, StoreError>;
    /// One run's records, in the order written.
    fn load(&self, workflow_id: &str) -> Result<Loaded, StoreError>;
    /// The lessons of the workflow named `workflow` (all with `None`), oldest first.
    fn lessons(&self, workflow: Option<&str>) -> Result<Vec<crate::lessons::Lesson>, StoreError>;
    /// A run's recorded events, oldest first, as JSON.
    fn events(&self, workflow_id: &str) -> Result<Vec<serde_json::Value>, StoreError>;
    /// A run's recorded events numbered after `after`, oldest first, at most `limit`.
    fn events_after(
        &self,
        workflow_id: &str,
        after: u64,
        limit: usize,
    ) -> Result<Vec<StoredEvent>, StoreError>;
    /// The artifacts and work items of a run written after `since` (from the start,
    /// its plugins' values too), and where that leaves the reader: for a process that
    /// follows a run another process writes (a worker). A backend whose runs one
    /// process writes does not support it.
    fn load_since(&self, _workflow_id: &str, _since: Since) -> Result<(Loaded, Since), StoreError> {
        Err(StoreError::Backend(format!(
            "{}: cannot follow a run another process writes",
            self.describe()
        )))
    }
}

/// How far a follower has read a run (the database's row numbers).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Since {
    /// The last artifact row read.
    pub artifacts: i64,
    /// The last work item row read.
    pub work_items: i64,
}

/// The writer thread's side of a [`Backend`]: it owns its connection for the store's life.
pub(super) trait Writer: Send + 'static {
    /// Write a batch (already superseded: each record once) in one transaction. Flushes
    /// in it are answered by the caller.
    fn write(&mut self, batch: &[Msg]) -> Result<(), String>;
    /// Take run `workflow_id` for this process, so a second process writing it is
    /// refused; held until the store closes or the process ends.
    fn claim_run(&mut self, workflow_id: &str) -> Result<(), String>;
}

/// One run's records as a database holds them, for the mirror.
#[derive(Default)]
pub struct Loaded {
    /// Its artifacts, in publish order.
    pub artifacts: Vec<Artifact>,
    /// Its work items, in creation order.
    pub work_items: Vec<WorkItem>,
    /// Its invocations, in creation order.
    pub invocations: Vec<InvocationRecord>,
    /// Its plugins' private values: plugin, key, value.
    pub kv: Vec<(String, String, String)>,
    /// Its idempotency keys.
    pub keys: Vec<KeyRecord>,
}

/// A durable [`Store`]: an in-memory mirror, and a writer thread that makes it durable.
pub struct DurableStore {
    backend: Box<dyn Backend>,
    mem: MemoryStore,
    tx: Mutex<Option<mpsc::SyncSender<Msg>>>,
    writer: Mutex<Option<JoinHandle<()>>>,
    failed: Arc<Mutex<Option<String>>>,
    /// The runs this process follows (`catch_up`), and how far it has read each.
    followed: Mutex<std::collections::HashMap<String, Since>>,
}

impl DurableStore {
    /// A store over `backend`, its writes made by `writer` on a thread named `thread`.
    pub(super) fn start(
        backend: Box<dyn Backend>,
        writer: Box<dyn Writer>,
        thread: &str,
    ) -> Result<Self, StoreError> {
        let failed = Arc::new(Mutex::new(None));
        let (tx, rx) = mpsc::sync_channel(MAX_BACKLOG);
        let name = backend.describe();
        let handle = {
            let failed = failed.clone();
            let writer_name = name.clone();
            std::thread::Builder::new()
                .name(thread.into())
                .spawn(move || write_loop(writer, &writer_name, rx, failed))
                .map_err(|e| StoreError::Backend(format!("{name}: cannot start the writer: {e}")))?
        };
        Ok(Self {
            backend,
            mem: MemoryStore::new(),
            tx: Mutex::new(Some(tx)),
            writer: Mutex::new(Some(handle)),
            failed,
            followed: Mutex::new(std::collections::HashMap::new()),
        })
    }

    /// Claim the database for writing runs (see [`Backend::claim_writer`]).
    pub fn claim_writer(&self) -> Result<(), StoreError> {
        self.backend.claim_writer()
    }

    /// Claim run `workflow_id` before going on writing it (`resume`, a server resuming
    /// it): a second process writing the same run is refused with a clear error. A run's
    /// first record claims it too, so a new run needs no call.
    pub fn claim_run(&self, workflow_id: &str) -> Result<(), StoreError> {
        let (ack, done) = mpsc::channel();
        self.send(Msg::Claim(workflow_id.to_string(), ack))?;
        done.recv()
            .map_err(|_| self.stopped())?
            .map_err(StoreError::Backend)
    }

    /// Check the database can be read whole.
    pub fn check(&self) -> Result<(), StoreError> {
        self.backend.check()
    }

    /// Load one run's records into the in-memory mirror (to resume or inspect it).
    pub fn load(&self, workflow_id: &str) -> Result<(), StoreError> {
        let loaded = self.backend.load(workflow_id)?;
        self.absorb(workflow_id, loaded)
    }

    /// Bring the mirror up to date with what another process has written of run
    /// `workflow_id` since this process last looked (all of it, the first time):
    /// artifacts are immutable and work items keep their phase, so what was read stays
    /// true. For a worker, which reads the run a coordinator writes.
    pub fn catch_up(&self, workflow_id: &str) -> Result<(), StoreError> {
        let mut followed = self.followed.lock().unwrap_or_else(|p| p.into_inner());
        let since = followed.get(workflow_id).copied().unwrap_or_default();
        let (loaded, next) = self.backend.load_since(workflow_id, since)?;
        self.absorb(workflow_id, loaded)?;
        followed.insert(workflow_id.to_string(), next);
        Ok(())
    }

    /// Put records read from the database into the mirror.
    fn absorb(&self, workflow_id: &str, loaded: Loaded) -> Result<(), StoreError> {
        for (plugin, key, value) in loaded.kv {
            self.mem.kv_set(workflow_id, &plugin, &key, Some(value))?;
        }
        self.mem.commit(Commit {
            artifacts: loaded
                .artifacts
                .into_iter()
                .map(SharedArtifact::new)
                .collect(),
            work_items: loaded.work_items,
            invocations: loaded.invocations,
            keys: loaded.keys,
        })
    }

    /// Stop following run `workflow_id` (see [`DurableStore::catch_up`]): its records
    /// leave memory once what this process wrote of it is in the database (a worker's
    /// plugin values), and a later `catch_up` reads it from the start.
    pub fn unfollow(&self, workflow_id: &str) -> Result<(), StoreError> {
        let mut followed = self.followed.lock().unwrap_or_else(|p| p.into_inner());
        self.flush()?;
        self.mem.forget(workflow_id);
        followed.remove(workflow_id);
        Ok(())
    }

    /// Drop run `workflow_id`'s records from memory once the database has them (the
    /// writer is flushed first): they are read again by [`DurableStore::load`]. Its run
    /// record stays. For a process that outlives its runs (`murmur serve`), whose memory
    /// would otherwise hold every run it ever drove.
    pub fn unload(&self, workflow_id: &str) -> Result<(), StoreError> {
        self.flush()?;
        self.mem.forget(workflow_id);
        Ok(())
    }

    /// [`Store::flush`] for a task: the future is ready once everything committed before
    /// the call is in the database. Flushes waiting at once share the writer's
    /// transaction, and none holds a thread while it waits.
    pub fn durable(
        &self,
    ) -> Result<impl std::future::Future<Output = Result<(), StoreError>> + use<>, StoreError> {
        let (ack, done) = tokio::sync::oneshot::channel();
        self.send(Msg::Flush(Ack::Async(ack)))?;
        let stopped = self.stopped();
        Ok(async move {
            done.await
                .map_err(|_| stopped)?
                .map_err(StoreError::Backend)
        })
    }

    /// The loop's recorded events of a run, oldest first, as JSON.
    pub fn events(&self, workflow_id: &str) -> Result<Vec<serde_json::Value>, StoreError> {
        self.backend.events(workflow_id)
    }

    fn stopped(&self) -> StoreError {
        StoreError::Backend(format!(
            "{}: writer: the writer thread has stopped",
            self.backend.describe()
        ))
    }

    fn send(&self, msg: Msg) -> Result<(), StoreError> {
        if let Some(e) = self
            .failed
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .as_ref()
        {
            return Err(StoreError::Backend(e.clone()));
        }
        let tx = self.tx.lock().unwrap_or_else(|p| p.into_inner());
        match tx.as_ref() {
            Some(tx) => tx.send(msg).map_err(|_| self.stopped()),
            None => Err(StoreError::Backend(format!(
                "{}: writer: the store is closed",
                self.backend.describe()
            ))),
        }
    }

    /// Let the writer finish what is queued and stop; returns once it has closed its
    /// connection. Idempotent.
    fn stop_writer(&self) {
        // Closing the channel lets the writer finish what is queued, then stop.
        self.tx.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(w) = self.writer.lock().unwrap_or_else(|p| p.into_inner()).take() {
            let _ = w.join();
        }
    }
}

impl Drop for DurableStore {
    fn drop(&mut self) {
        self.stop_writer();
    }
}

fn write_loop(
    mut writer: Box<dyn Writer>,
    name: &str,
    rx: mpsc::Receiver<Msg>,
    failed: Arc<Mutex<Option<String>>>,
) {
    while let Ok(first) = rx.recv() {
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(m) => batch.push(m),
                Err(_) => break,
            }
        }
        // Claims go first, answered on their own: a refused claim fails its caller, not
        // the store.
        batch.retain_mut(|m| match m {
            Msg::Claim(run, ack) => {
                let _ = ack.send(writer.claim_run(run).map_err(|e| format!("{name}: {e}")));
                false
            }
            _ => true,
        });
        if batch.is_empty() {
            continue;
        }
        supersede(&mut batch);
        let result = match writer.write(&batch) {
            Ok(()) => Ok(()),
            Err(e) => {
                let message = format!("{name}: write failed: {e}");
                tracing::error!("{message}");
                *failed.lock().unwrap_or_else(|p| p.into_inner()) = Some(message.clone());
                Err(message)
            }
        };
        for msg in batch {
            if let Msg::Flush(ack) = msg {
                ack.send(result.clone());
            }
        }
    }
}

/// A record's status as its table's `status` column holds it (the serialised name).
pub(super) fn status_text<T: serde::Serialize>(v: &T) -> String {
    serde_json::to_value(v)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_default()
}

/// Write each work item and invocation in `batch` once, in its last state, where it
/// first appears: one transaction writes the whole batch, so earlier versions would be
/// overwritten before anyone could read them (an invocation is typically queued, then
/// done, in one batch), and the file numbers rows in the order first written, which is
/// the order `load` gives them back (creation order, the listing's cursor positions).
pub(super) fn supersede(batch: &mut [Msg]) {
    let mut work: Vec<Vec<WorkItem>> = Vec::new();
    let mut invocations: Vec<Vec<InvocationRecord>> = Vec::new();
    for msg in batch.iter_mut() {
        if let Msg::Commit(c) = msg {
            work.push(std::mem::take(&mut c.work_items));
            invocations.push(std::mem::take(&mut c.invocations));
        }
    }
    last_state_first_place(&mut work, |w| w.id);
    last_state_first_place(&mut invocations, |i| i.id);
    let mut lists = work.into_iter().zip(invocations);
    for msg in batch.iter_mut() {
        if let Msg::Commit(c) = msg
            && let Some((w, i)) = lists.next()
        {
            c.work_items = w;
            c.invocations = i;
        }
    }
}

/// Each record of `lists` (in order) once: its last version, at the place of its first.
/// Records are swapped in place (no copies of the batch), and a batch where nothing was
/// updated twice is left as it is.
pub(super) fn last_state_first_place<T, K: std::hash::Hash + Eq>(
    lists: &mut [Vec<T>],
    key: impl Fn(&T) -> K,
) {
    let mut first: std::collections::HashMap<K, (usize, usize)> = std::collections::HashMap::new();
    // Later versions, in order: where each is, and where its record first appeared.
    let mut later: Vec<((usize, usize), (usize, usize))> = Vec::new();
    for (l, list) in lists.iter().enumerate() {
        for (i, item) in list.iter().enumerate() {
            match first.entry(key(item)) {
                std::collections::hash_map::Entry::Occupied(at) => later.push(((l, i), *at.get())),
                std::collections::hash_map::Entry::Vacant(v) => {
                    v.insert((l, i));
                }
            }
        }
    }
    if later.is_empty() {
        return;
    }
    let mut gone: Vec<Vec<usize>> = vec![Vec::new(); lists.len()];
    for &((l, i), (fl, fi)) in &later {
        // The later version goes to the first place; what was there (an older version)
        // takes the later place, which is dropped below.
        if l == fl {
            lists[l].swap(fi, i);
        } else {
            let (head, tail) = lists.split_at_mut(l);
            std::mem::swap(&mut head[fl][fi], &mut tail[0][i]);
        }
        gone[l].push(i);
    }
    for (list, gone) in lists.iter_mut().zip(gone) {
        if gone.is_empty() {
            continue;
        }
        let mut at = 0;
        let mut gone = gone.into_iter().peekable();
        list.retain(|_| {
            let drop = gone.peek() == Some(&at);
            if drop {
                gone.next();
            }
            at += 1;
            !drop
        });
    }
}

impl Store for DurableStore {
    fn commit(&self, commit: Commit) -> Result<(), StoreError> {
        let copy = Commit {
            artifacts: commit.artifacts.clone(),
            work_items: commit.work_items.clone(),
            invocations: commit.invocations.clone(),
            keys: commit.keys.clone(),
        };
        self.mem.commit(commit)?;
        self.send(Msg::Commit(copy))
    }

    fn artifact(&self, id: &ArtifactId) -> Result<Option<SharedArtifact>, StoreError> {
        self.mem.artifact(id)
    }

    fn artifacts_from(
        &self,
        workflow_id: &str,
        from: u64,
        limit: usize,
    ) -> Result<Vec<SharedArtifact>, StoreError> {
        // The mirror holds a run's artifacts in the order the file does.
        self.mem.artifacts_from(workflow_id, from, limit)
    }

    fn idempotency_key(
        &self,
        workflow_id: &str,
        key: &str,
    ) -> Result<Option<KeyRecord>, StoreError> {
        self.mem.idempotency_key(workflow_id, key)
    }

    fn runs(&self) -> Result<Vec<RunRecord>, StoreError> {
        // The file's runs, as this process last saved them where it did: the writer may
        // not have written the newest records yet.
        let mut runs = self.backend.runs()?;
        let mine = self.mem.runs()?;
        runs.retain(|r| !mine.iter().any(|m| m.workflow_id == r.workflow_id));
        runs.extend(mine);
        runs.sort_by(|a, b| {
            (b.started_at_ms, &b.workflow_id).cmp(&(a.started_at_ms, &a.workflow_id))
        });
        Ok(runs)
    }

    fn run(&self, workflow_id: &str) -> Result<Option<RunRecord>, StoreError> {
        if let Some(r) = self.mem.run(workflow_id)? {
            return Ok(Some(r));
        }
        self.backend.run(workflow_id)
    }

    fn events_after(
        &self,
        workflow_id: &str,
        after: u64,
        limit: usize,
    ) -> Result<Vec<StoredEvent>, StoreError> {
        self.backend.events_after(workflow_id, after, limit)
    }

    fn query(
        &self,
        query: &ArtifactQuery,
        viewer: &Viewer<'_>,
    ) -> Result<Vec<SharedArtifact>, StoreError> {
        self.mem.query(query, viewer)
    }

    fn claim_next(&self, workflow_id: &str) -> Result<Option<InvocationRecord>, StoreError> {
        // Written: the invocation (now running, one more attempt) and its work item only
        // if this claim activated it; later claims of the same work leave it as it is.
        let Some((claimed, activated)) = self.mem.claim(workflow_id) else {
            return Ok(None);
        };
        self.send(Msg::Commit(Commit {
            work_items: activated.into_iter().collect(),
            invocations: vec![claimed.clone()],
            ..Default::default()
        }))?;
        Ok(Some(claimed))
    }

    fn next_wakeup(&self, workflow_id: &str) -> Result<Option<u64>, StoreError> {
        self.mem.next_wakeup(workflow_id)
    }

    fn work_item(&self, id: &ArtifactId) -> Result<Option<WorkItem>, StoreError> {
        self.mem.work_item(id)
    }

    fn read(&self, read: super::Reading<'_>) -> Result<(), StoreError> {
        self.mem.read(read)
    }

    fn tally(&self, workflow_id: &str) -> Result<Option<super::tally::Tally>, StoreError> {
        self.mem.tally(workflow_id)
    }

    fn work_phase(&self, id: &ArtifactId) -> Result<Option<crate::name::Name>, StoreError> {
        self.mem.work_phase(id)
    }

    fn work_items(&self, workflow_id: &str) -> Result<Vec<WorkItem>, StoreError> {
        self.mem.work_items(workflow_id)
    }

    fn invocation(&self, id: &InvocationId) -> Result<Option<InvocationRecord>, StoreError> {
        self.mem.invocation(id)
    }

    fn invocations(&self, workflow_id: &str) -> Result<Vec<InvocationRecord>, StoreError> {
        self.mem.invocations(workflow_id)
    }

    fn scan(
        &self,
        workflow_id: &str,
        visit: &mut dyn FnMut(&[&WorkItem], &[&InvocationRecord]),
    ) -> Result<(), StoreError> {
        self.mem.scan(workflow_id, visit)
    }

    fn counts(&self, workflow_id: &str) -> Result<ArtifactCounts, StoreError> {
        self.mem.counts(workflow_id)
    }

    fn requeue_running(&self, workflow_id: &str) -> Result<u64, StoreError> {
        let before: Vec<InvocationId> = self
            .mem
            .invocations(workflow_id)?
            .into_iter()
            .filter(|i| i.status == InvocationStatus::Running)
            .map(|i| i.id)
            .collect();
        let n = self.mem.requeue_running(workflow_id)?;
        let mut invocations = Vec::new();
        for id in before {
            if let Some(i) = self.mem.invocation(&id)? {
                invocations.push(i);
            }
        }
        self.send(Msg::Commit(Commit {
            invocations,
            ..Default::default()
        }))?;
        Ok(n)
    }

    fn kv_get(
        &self,
        workflow_id: &str,
        plugin: &str,
        key: &str,
    ) -> Result<Option<String>, StoreError> {
        self.mem.kv_get(workflow_id, plugin, key)
    }

    fn kv_set(
        &self,
        workflow_id: &str,
        plugin: &str,
        key: &str,
        value: Option<String>,
    ) -> Result<(), StoreError> {
        self.mem.kv_set(workflow_id, plugin, key, value.clone())?;
        self.send(Msg::Kv(
            workflow_id.to_string(),
            plugin.to_string(),
            key.to_string(),
            value,
        ))
    }

    fn kv_keys(
        &self,
        workflow_id: &str,
        plugin: &str,
        prefix: &str,
    ) -> Result<Vec<String>, StoreError> {
        self.mem.kv_keys(workflow_id, plugin, prefix)
    }

    fn lessons(&self, workflow: Option<&str>) -> Result<Vec<crate::lessons::Lesson>, StoreError> {
        // Every change is durable when `change_lessons` returns: the database has them.
        self.backend.lessons(workflow)
    }

    fn change_lessons(&self, change: &crate::lessons::LessonChange) -> Result<(), StoreError> {
        if change.is_empty() {
            return Ok(());
        }
        self.send(Msg::Lessons(change.clone()))?;
        self.flush()
    }

    fn save_run(&self, run: &RunRecord) -> Result<(), StoreError> {
        self.mem.save_run(run)?;
        self.send(Msg::Run(Box::new(run.clone())))
    }

    fn record_events(&self, workflow_id: &str, events: &[Event]) -> Result<(), StoreError> {
        let notable: Vec<Event> = events.iter().filter(|e| e.is_notable()).cloned().collect();
        if notable.is_empty() {
            return Ok(());
        }
        self.send(Msg::Events(workflow_id.to_string(), notable))
    }

    fn flush(&self) -> Result<(), StoreError> {
        let (ack, done) = mpsc::channel();
        self.send(Msg::Flush(Ack::Blocking(ack)))?;
        done.recv()
            .map_err(|_| self.stopped())?
            .map_err(StoreError::Backend)
    }

    fn close(&self) -> Result<(), StoreError> {
        if self.tx.lock().unwrap_or_else(|p| p.into_inner()).is_none() {
            return Ok(()); // closed before
        }
        let flushed = self.flush();
        self.stop_writer();
        flushed
    }

    fn describe(&self) -> String {
        self.backend.describe()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::work::{Priority, WorkStatus};

    #[test]
    fn a_batch_writes_each_record_once_in_its_last_state_where_it_first_appeared() {
        let work = |status| {
            WorkItem::new(ArtifactId::named("w1"), "wf", "analysis", Priority::Medium)
                .with_status(status)
        };
        let inv = |id: &str, status| {
            let mut i = InvocationRecord::queued("wf", "a", vec![], 0);
            i.id = InvocationId::named(id);
            i.status = status;
            i
        };
        let mut batch = vec![
            Msg::Commit(Commit {
                artifacts: vec![],
                keys: vec![],
                work_items: vec![work(WorkStatus::Pending)],
                invocations: vec![
                    inv("i1", InvocationStatus::Queued),
                    inv("i2", InvocationStatus::Queued),
                ],
            }),
            Msg::Flush(Ack::Blocking(mpsc::channel().0)),
            Msg::Commit(Commit {
                artifacts: vec![],
                keys: vec![],
                work_items: vec![work(WorkStatus::Done)],
                invocations: vec![inv("i1", InvocationStatus::Done)],
            }),
        ];
        supersede(&mut batch);
        let Msg::Commit(first) = &batch[0] else {
            panic!("first message is a commit")
        };
        let Msg::Commit(last) = &batch[2] else {
            panic!("last message is a commit")
        };
        let states: Vec<(InvocationId, InvocationStatus)> =
            first.invocations.iter().map(|i| (i.id, i.status)).collect();
        assert_eq!(
            states,
            [
                (InvocationId::named("i1"), InvocationStatus::Done),
                (InvocationId::named("i2"), InvocationStatus::Queued)
            ],
            "i1 is written once, in its last state, before i2 as it was created"
        );
        assert_eq!(
            first
                .work_items
                .iter()
                .map(|w| w.status())
                .collect::<Vec<_>>(),
            [WorkStatus::Done]
        );
        assert!(last.work_items.is_empty() && last.invocations.is_empty());
    }

    #[test]
    fn each_record_keeps_its_first_place_and_takes_its_last_version() {
        let mut lists = vec![
            vec![("a", 1), ("b", 1)],
            vec![("c", 1), ("a", 2)],
            vec![("a", 3), ("b", 2), ("c", 2), ("d", 1)],
            vec![("d", 2), ("d", 3)],
        ];
        last_state_first_place(&mut lists, |(k, _)| *k);
        assert_eq!(
            lists,
            [
                vec![("a", 3), ("b", 2)],
                vec![("c", 2)],
                vec![("d", 3)],
                vec![]
            ]
        );
        let mut untouched = vec![vec![("a", 1)], vec![("b", 1)]];
        last_state_first_place(&mut untouched, |(k, _)| *k);
        assert_eq!(untouched, [vec![("a", 1)], vec![("b", 1)]]);
    }
}
