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
//! **The mirror holds what open work needs, not the run's history.** Once the mirror
//! holds more than a bound, the writer — between two batches, with every change the
//! mirror shows in the database and no change being sent (it holds the sender's lock) —
//! drops what open work does not need ([`MemoryStore::settled`]): beyond the newest
//! [`KEEP`] artifacts, work items and invocations of each run, the ended invocations, the
//! final work items a summary does not name, and the artifacts no open work reads (with
//! the idempotency keys that published them). Tallies and counts keep counting them. A
//! read the mirror cannot answer goes to the database: by id or key, the walk over older
//! artifacts (context, queries), and whole-run reads (a listing, a graph, a
//! retrospective), which wait for the writer and read the database alone. A commit that
//! updates a dropped record takes its stored version back first, so the tally stays
//! exact, and one that takes a dropped key is refused. A server that drives a run for
//! weeks keeps its memory.
//!
//! What makes a crash cost nothing but time: each [`Commit`] — an invocation's outputs, the
//! work and invocations they create and the invocation's completion — lands inside one
//! transaction, and transactions land in order, so after a crash the database holds a
//! prefix of the run's commits. Invocations it shows `running` (or whose completion was in
//! the lost suffix) are queued again on resume; their outputs were never written, so they
//! never appear twice.

use super::memory::{Held, Recall, Recalled, RecentHeld};
use super::{
    ArtifactCounts, ArtifactQuery, ArtifactReader, Commit, KeyRecord, MemoryStore, RunRecord,
    Store, StoreError, StoredEvent,
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

/// How many of each run's newest artifacts, work items and invocations the mirror keeps
/// whatever their state: context reads the newest artifacts, deduplication the newest
/// work. The mirror is trimmed when it holds more than [`TRIM_AT`] times this (and twice
/// what the last trim left), so a trim's walk over the mirror is paid once per doubling.
pub const KEEP: usize = 16_384;

/// See [`KEEP`].
const TRIM_AT: usize = 4;

/// The environment variable that sets [`KEEP`] for a process (0 keeps every record).
pub const KEEP_VAR: &str = "MURMUR_MIRROR_KEEP";

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
    Claim(String, mpsc::Sender<Result<bool, StoreError>>),
    /// Trim the mirror now, whatever it holds ([`DurableStore::trim`]).
    Trim(Ack),
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
    /// Answer each of `selects` (its rows' JSON), all from one snapshot of the database.
    fn select(&self, selects: &[Select]) -> Result<Vec<Vec<String>>, StoreError>;
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

/// A table of a run's records.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Table {
    /// Artifacts.
    Artifacts,
    /// Work items.
    WorkItems,
    /// Invocations.
    Invocations,
}

impl Table {
    /// Its name in the database.
    pub fn name(self) -> &'static str {
        match self {
            Table::Artifacts => "artifacts",
            Table::WorkItems => "work_items",
            Table::Invocations => "invocations",
        }
    }
}

/// A read of records the mirror no longer holds ([`Backend::select`]); each answers the
/// rows' stored JSON.
#[derive(Debug, Clone)]
pub enum Select {
    /// The row of a table with this id (none or one).
    One(Table, String),
    /// Every row of a table of this run, in the order first written.
    All(Table, String),
    /// A run's artifacts written before artifact `before` (every one, without it), of
    /// type `type_name` if given, newest first, at most `limit`.
    Older {
        /// The run.
        workflow_id: String,
        /// The artifact they precede.
        before: Option<String>,
        /// Only this type.
        type_name: Option<String>,
        /// At most this many.
        limit: usize,
    },
    /// A run's idempotency key (none or one).
    Key(String, String),
    /// The work item of a run whose discovery took a key (none or one).
    Discovery(String, String),
    /// A run's artifacts from position `from` (0 = its first), in the order written, at
    /// most `limit`.
    From {
        /// The run.
        workflow_id: String,
        /// The first position.
        from: u64,
        /// At most this many.
        limit: usize,
    },
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
    /// refused; held until the store closes or the process ends. Whether this call took
    /// it (see [`DurableStore::claim_run`]).
    fn claim_run(&mut self, workflow_id: &str) -> Result<bool, StoreError>;
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

/// The sender to the writer; its lock is held from a change to the mirror until the
/// change is sent, so whoever holds it sees no change that is not on its way.
type Sender = Arc<Mutex<Option<mpsc::SyncSender<Msg>>>>;

/// How much of its runs' history the mirror keeps (see the module docs).
struct Bound {
    /// The newest records of each kind kept per run; 0 keeps everything.
    keep: std::sync::atomic::AtomicUsize,
    /// Records held at which the writer next trims.
    trim_at: std::sync::atomic::AtomicUsize,
}

impl Bound {
    fn keep(&self) -> usize {
        self.keep.load(std::sync::atomic::Ordering::Relaxed)
    }
}

/// A durable [`Store`]: an in-memory mirror, and a writer thread that makes it durable.
pub struct DurableStore {
    backend: Arc<dyn Backend>,
    mem: Arc<MemoryStore>,
    bound: Arc<Bound>,
    tx: Sender,
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
        let tx: Sender = Arc::new(Mutex::new(Some(tx)));
        let name = backend.describe();
        let mem = Arc::new(MemoryStore::new());
        let keep = match std::env::var(KEEP_VAR) {
            Ok(v) => v.trim().parse::<usize>().map_err(|_| {
                StoreError::Backend(format!(
                    "{KEEP_VAR}={v:?}: expected a number of records (0 keeps every record)"
                ))
            })?,
            Err(_) => KEEP,
        };
        let bound = Arc::new(Bound {
            keep: keep.into(),
            trim_at: (TRIM_AT * keep.max(1)).into(),
        });
        let handle = {
            let failed = failed.clone();
            let writer_name = name.clone();
            let trim = Trim {
                mem: mem.clone(),
                bound: bound.clone(),
                tx: tx.clone(),
            };
            std::thread::Builder::new()
                .name(thread.into())
                .spawn(move || write_loop(writer, &writer_name, rx, failed, trim))
                .map_err(|e| StoreError::Backend(format!("{name}: cannot start the writer: {e}")))?
        };
        Ok(Self {
            backend: Arc::from(backend),
            mem,
            bound,
            tx,
            writer: Mutex::new(Some(handle)),
            failed,
            followed: Mutex::new(std::collections::HashMap::new()),
        })
    }

    /// Keep the newest `keep` records of each kind per run in memory (and what open
    /// work needs); 0 keeps every record. [`KEEP`] unless set.
    pub fn bound_memory(&self, keep: usize) {
        use std::sync::atomic::Ordering::Relaxed;
        self.bound.keep.store(keep, Relaxed);
        self.bound.trim_at.store(TRIM_AT * keep.max(1), Relaxed);
    }

    /// Records the mirror holds (artifacts, work items and invocations together).
    pub fn held(&self) -> usize {
        self.mem.held()
    }

    /// Write what is waiting, then trim the mirror to its bound whatever it holds;
    /// returns once it is trimmed. The writer trims on its own as the mirror grows; this
    /// is for a caller that wants the memory now (a test, a server going idle).
    pub fn trim(&self) -> Result<(), StoreError> {
        let (ack, done) = mpsc::channel();
        self.send(Msg::Trim(Ack::Blocking(ack)))?;
        done.recv()
            .map_err(|_| self.stopped())?
            .map_err(StoreError::Backend)
    }

    /// Claim the database for writing runs (see [`Backend::claim_writer`]).
    pub fn claim_writer(&self) -> Result<(), StoreError> {
        self.backend.claim_writer()
    }

    /// Claim run `workflow_id` before going on writing it (`resume`, a server resuming
    /// it): a second process writing the same run is refused with a clear error
    /// ([`StoreError::RunHeld`]). A run's first record claims it too, so a new run needs
    /// no call. Whether this call took the claim (not when this process held it already,
    /// nor where the backend claims the whole database): then another process may have
    /// written the run since this one last read it.
    pub fn claim_run(&self, workflow_id: &str) -> Result<bool, StoreError> {
        let (ack, done) = mpsc::channel();
        self.send(Msg::Claim(workflow_id.to_string(), ack))?;
        done.recv().map_err(|_| self.stopped())?
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
        // A follower's mirror is what it read of another process's run, brought up to
        // date by rows it reads again: it is not trimmed.
        self.bound_memory(0);
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
        self.change(|| Ok(Some(msg)))
    }

    /// Make a change to the mirror (`apply`) and send what it answers to the writer,
    /// holding the sender's lock from one to the other: the writer, which trims the
    /// mirror only while it holds that lock, then never sees a change that is not on its
    /// way to the database.
    fn change(
        &self,
        apply: impl FnOnce() -> Result<Option<Msg>, StoreError>,
    ) -> Result<(), StoreError> {
        if let Some(e) = self
            .failed
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .as_ref()
        {
            return Err(StoreError::Backend(e.clone()));
        }
        let tx = self.tx.lock().unwrap_or_else(|p| p.into_inner());
        let Some(tx) = tx.as_ref() else {
            return Err(StoreError::Backend(format!(
                "{}: writer: the store is closed",
                self.backend.describe()
            )));
        };
        match apply()? {
            Some(msg) => tx.send(msg).map_err(|_| self.stopped()),
            None => Ok(()),
        }
    }

    /// Records of the database by `selects`, parsed.
    fn select<T: serde::de::DeserializeOwned>(&self, select: Select) -> Result<Vec<T>, StoreError> {
        let rows = self.backend.select(std::slice::from_ref(&select))?;
        parse_rows(&self.backend.describe(), rows.into_iter().flatten())
    }

    /// One record by id from the database, where the mirror may have dropped it.
    fn recall_one<T: serde::de::DeserializeOwned>(
        &self,
        table: Table,
        id: String,
    ) -> Result<Option<T>, StoreError> {
        Ok(self.select(Select::One(table, id))?.pop())
    }

    /// Every record of run `workflow_id` in `table`, from the database once the writer
    /// has written everything committed so far (for a run whose mirror has been
    /// trimmed).
    fn all<T: serde::de::DeserializeOwned>(
        &self,
        table: Table,
        workflow_id: &str,
    ) -> Result<Vec<T>, StoreError> {
        self.flush()?;
        self.select(Select::All(table, workflow_id.to_string()))
    }

    /// Whether run `workflow_id`'s mirror has been trimmed.
    fn trimmed(&self, workflow_id: &str) -> bool {
        self.mem.evicted(workflow_id).is_some()
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

impl DurableStore {
    /// The database's version of a record a commit names that the mirror dropped.
    fn recall(&self, recall: Recall) -> Result<Recalled, StoreError> {
        Ok(match recall {
            Recall::Artifact(id) => {
                match self.recall_one::<Artifact>(Table::Artifacts, id.to_string())? {
                    Some(_) => Recalled::Artifact,
                    None => Recalled::Absent,
                }
            }
            Recall::Work(id) => match self.recall_one(Table::WorkItems, id.to_string())? {
                Some(w) => Recalled::Work(Box::new(w)),
                None => Recalled::Absent,
            },
            Recall::Invocation(id) => match self.recall_one(Table::Invocations, id.to_string())? {
                Some(i) => Recalled::Invocation(Box::new(i)),
                None => Recalled::Absent,
            },
            Recall::Key(workflow_id, key) => {
                let taken: Option<KeyRecord> = self.select(Select::Key(workflow_id, key))?.pop();
                match taken {
                    Some(_) => Recalled::Key,
                    None => Recalled::Absent,
                }
            }
        })
    }
}

/// A trimmed mirror's reader: what the mirror holds, then the database.
struct Continued<'a, 'g> {
    held: &'a Held<'g>,
    store: &'a DurableStore,
}

/// How many older artifacts one read of the database brings for a walk.
const OLDER_PAGE: usize = 256;

impl ArtifactReader for Continued<'_, '_> {
    fn visit_artifact(
        &self,
        id: &ArtifactId,
        visit: &mut dyn FnMut(&SharedArtifact),
    ) -> Result<bool, StoreError> {
        if self.held.visit_artifact(id, visit) {
            return Ok(true);
        }
        match self
            .store
            .recall_one::<Artifact>(Table::Artifacts, id.to_string())?
        {
            Some(a) => {
                visit(&SharedArtifact::new(a));
                Ok(true)
            }
            None => Ok(false),
        }
    }

    fn visit_recent(
        &self,
        query: &ArtifactQuery,
        viewer: &Viewer<'_>,
        visit: &mut dyn FnMut(&SharedArtifact) -> bool,
    ) -> Result<(), StoreError> {
        match self.held.visit_recent(query, viewer, visit) {
            RecentHeld::Continue { before, remaining } => {
                self.store
                    .walk_older(query, viewer, Some(before), remaining, visit)
            }
            RecentHeld::Done => Ok(()),
        }
    }
}

impl DurableStore {
    /// Visit, newest first, run `query.workflow_id`'s artifacts in the database written
    /// before `before` (all, without it) that `query` asks for and `viewer` may see, at
    /// most `remaining`; stop early when `visit` returns `false`.
    fn walk_older(
        &self,
        query: &ArtifactQuery,
        viewer: &Viewer<'_>,
        mut before: Option<ArtifactId>,
        mut remaining: usize,
        visit: &mut dyn FnMut(&SharedArtifact) -> bool,
    ) -> Result<(), StoreError> {
        while remaining > 0 {
            let page: Vec<Artifact> = self.select(Select::Older {
                workflow_id: query.workflow_id.clone(),
                before: before.map(|b| b.to_string()),
                type_name: query.type_name.as_ref().map(|t| t.to_string()),
                limit: OLDER_PAGE,
            })?;
            let Some(last) = page.last() else {
                break;
            };
            before = Some(last.id);
            let last_page = page.len() < OLDER_PAGE;
            for a in page {
                if !super::memory::matches(&a, query, viewer) {
                    continue;
                }
                remaining -= 1;
                if !visit(&SharedArtifact::new(a)) || remaining == 0 {
                    return Ok(());
                }
            }
            if last_page {
                break;
            }
        }
        Ok(())
    }
}

/// What the writer needs to trim the mirror.
struct Trim {
    mem: Arc<MemoryStore>,
    bound: Arc<Bound>,
    tx: Sender,
}

impl Trim {
    /// Stop trimming (the database no longer follows the mirror).
    fn bound_off(&self) {
        self.bound
            .keep
            .store(0, std::sync::atomic::Ordering::Relaxed);
    }

    /// Trim the mirror if it has grown past its bound and nothing is being sent: what
    /// is waiting is written first (`write`), so the mirror and the database agree on
    /// every record when it is trimmed. Whether the writes succeeded.
    fn maybe(
        &self,
        forced: bool,
        write: &mut dyn FnMut(Vec<Msg>) -> bool,
        rx: &mpsc::Receiver<Msg>,
    ) -> bool {
        use std::sync::atomic::Ordering::Relaxed;
        let keep = self.bound.keep();
        if keep == 0 || (!forced && self.mem.held() < self.bound.trim_at.load(Relaxed)) {
            return true;
        }
        let _sending = loop {
            match self.tx.try_lock() {
                Ok(guard) => break guard,
                // A sender waiting for room holds the lock: trim after a later batch,
                // or, asked to trim now, make room and try again.
                Err(std::sync::TryLockError::WouldBlock) if forced => {
                    let waiting: Vec<Msg> = rx.try_iter().collect();
                    if !waiting.is_empty() && !write(waiting) {
                        return false;
                    }
                    std::thread::yield_now();
                }
                Err(std::sync::TryLockError::WouldBlock) => return true,
                Err(std::sync::TryLockError::Poisoned(p)) => break p.into_inner(),
            }
        };
        let waiting: Vec<Msg> = rx.try_iter().collect();
        if !waiting.is_empty() && !write(waiting) {
            return false;
        }
        let settled = self.mem.settled(keep);
        self.mem.drop_settled(&settled);
        let held = self.mem.held();
        self.bound
            .trim_at
            .store((TRIM_AT * keep).max(2 * held), Relaxed);
        true
    }
}

fn write_loop(
    mut writer: Box<dyn Writer>,
    name: &str,
    rx: mpsc::Receiver<Msg>,
    failed: Arc<Mutex<Option<String>>>,
    trim: Trim,
) {
    // Trims asked for, answered once done.
    let trims: std::cell::RefCell<Vec<Ack>> = Default::default();
    // Write one batch and answer its flushes; whether it was written.
    let mut write = |mut batch: Vec<Msg>| -> bool {
        batch.retain_mut(|m| match m {
            Msg::Trim(ack) => {
                let (stand_in, _) = mpsc::channel();
                trims
                    .borrow_mut()
                    .push(std::mem::replace(ack, Ack::Blocking(stand_in)));
                false
            }
            _ => true,
        });
        // Claims go first, answered on their own: a refused claim fails its caller, not
        // the store.
        batch.retain_mut(|m| match m {
            Msg::Claim(run, ack) => {
                let _ = ack.send(writer.claim_run(run).map_err(|e| match e {
                    StoreError::RunHeld(why) => StoreError::RunHeld(format!("{name}: {why}")),
                    StoreError::Backend(why) => StoreError::Backend(format!("{name}: {why}")),
                    other => other,
                }));
                false
            }
            _ => true,
        });
        if batch.is_empty() {
            return true;
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
        let ok = result.is_ok();
        for msg in batch {
            if let Msg::Flush(ack) = msg {
                ack.send(result.clone());
            }
        }
        ok
    };
    while let Ok(first) = rx.recv() {
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(m) => batch.push(m),
                Err(_) => break,
            }
        }
        // A failed write leaves the mirror ahead of the database: never trimmed after.
        let written = write(batch);
        let forced = !trims.borrow().is_empty();
        if !written || !trim.maybe(forced, &mut write, &rx) {
            trim.bound_off();
        }
        for ack in trims.take() {
            ack.send(if written {
                Ok(())
            } else {
                Err(format!("{name}: not trimmed: a write failed"))
            });
        }
    }
}

/// Rows' JSON as records.
fn parse_rows<T: serde::de::DeserializeOwned>(
    store: &str,
    rows: impl IntoIterator<Item = String>,
) -> Result<Vec<T>, StoreError> {
    rows.into_iter()
        .map(|t| {
            serde_json::from_str(&t)
                .map_err(|e| StoreError::Backend(format!("{store}: has an unreadable record: {e}")))
        })
        .collect()
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
        self.change(|| {
            self.mem
                .commit_recalling(commit, &mut |recall| self.recall(recall))?;
            Ok(Some(Msg::Commit(copy)))
        })
    }

    fn artifact(&self, id: &ArtifactId) -> Result<Option<SharedArtifact>, StoreError> {
        if let Some(a) = self.mem.artifact(id)? {
            return Ok(Some(a));
        }
        if !self.mem.any_evicted() {
            return Ok(None);
        }
        Ok(self
            .recall_one::<Artifact>(Table::Artifacts, id.to_string())?
            .map(SharedArtifact::new))
    }

    fn artifacts_from(
        &self,
        workflow_id: &str,
        from: u64,
        limit: usize,
    ) -> Result<Vec<SharedArtifact>, StoreError> {
        if self.trimmed(workflow_id) {
            if let Some(recent) = self.mem.recent_artifacts_from(workflow_id, from, limit) {
                return Ok(recent);
            }
            self.flush()?;
            let rows: Vec<Artifact> = self.select(Select::From {
                workflow_id: workflow_id.to_string(),
                from,
                limit,
            })?;
            return Ok(rows.into_iter().map(SharedArtifact::new).collect());
        }
        // The mirror holds a run's artifacts in the order the file does.
        self.mem.artifacts_from(workflow_id, from, limit)
    }

    fn idempotency_key(
        &self,
        workflow_id: &str,
        key: &str,
    ) -> Result<Option<KeyRecord>, StoreError> {
        if let Some(k) = self.mem.idempotency_key(workflow_id, key)? {
            return Ok(Some(k));
        }
        // A key leaves memory with its artifact, once the database holds both.
        if self.mem.evicted(workflow_id).is_some_and(|e| e.keys) {
            return Ok(self
                .select(Select::Key(workflow_id.to_string(), key.to_string()))?
                .pop());
        }
        Ok(None)
    }

    fn discovery_key(
        &self,
        workflow_id: &str,
        key: &str,
    ) -> Result<Option<ArtifactId>, StoreError> {
        if let Some(id) = self.mem.discovery_key(workflow_id, key)? {
            return Ok(Some(id));
        }
        // A key leaves memory with its (final) work item, once the database holds it.
        if self
            .mem
            .evicted(workflow_id)
            .is_some_and(|e| e.work.is_some())
        {
            let work: Option<WorkItem> = self
                .select(Select::Discovery(workflow_id.to_string(), key.to_string()))?
                .pop();
            return Ok(work.map(|w| w.id));
        }
        Ok(None)
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
        if !self.trimmed(&query.workflow_id) {
            return self.mem.query(query, viewer);
        }
        // From the database alone, once it holds every change so far: a walk over a
        // long run's history holds no lock the run needs.
        self.flush()?;
        let mut out = Vec::new();
        self.walk_older(query, viewer, None, query.limit, &mut |a| {
            out.push(a.clone());
            true
        })?;
        out.reverse();
        Ok(out)
    }

    fn claim_next(&self, workflow_id: &str) -> Result<Option<InvocationRecord>, StoreError> {
        // Written: the invocation (now running, one more attempt) and its work item only
        // if this claim activated it; later claims of the same work leave it as it is.
        let mut out = None;
        self.change(|| {
            let Some((claimed, activated)) = self.mem.claim(workflow_id) else {
                return Ok(None);
            };
            out = Some(claimed.clone());
            Ok(Some(Msg::Commit(Commit {
                work_items: activated.into_iter().collect(),
                invocations: vec![claimed],
                ..Default::default()
            })))
        })?;
        Ok(out)
    }

    fn next_wakeup(&self, workflow_id: &str) -> Result<Option<u64>, StoreError> {
        self.mem.next_wakeup(workflow_id)
    }

    fn work_item(&self, id: &ArtifactId) -> Result<Option<WorkItem>, StoreError> {
        if let Some(w) = self.mem.work_item(id)? {
            return Ok(Some(w));
        }
        if !self.mem.any_evicted() {
            return Ok(None);
        }
        self.recall_one(Table::WorkItems, id.to_string())
    }

    fn read(&self, read: super::Reading<'_>) -> Result<(), StoreError> {
        if !self.mem.any_evicted() {
            return self.mem.read(read);
        }
        self.mem
            .read_held(|held| read(&Continued { held, store: self }))
    }

    fn tally(&self, workflow_id: &str) -> Result<Option<super::tally::Tally>, StoreError> {
        self.mem.tally(workflow_id)
    }

    fn work_phase(&self, id: &ArtifactId) -> Result<Option<crate::name::Name>, StoreError> {
        if let Some(p) = self.mem.work_phase(id)? {
            return Ok(Some(p));
        }
        Ok(self.work_item(id)?.map(|w| w.phase))
    }

    fn work_items(&self, workflow_id: &str) -> Result<Vec<WorkItem>, StoreError> {
        if self.trimmed(workflow_id) {
            return self.all(Table::WorkItems, workflow_id);
        }
        self.mem.work_items(workflow_id)
    }

    fn invocation(&self, id: &InvocationId) -> Result<Option<InvocationRecord>, StoreError> {
        if let Some(i) = self.mem.invocation(id)? {
            return Ok(Some(i));
        }
        if !self.mem.any_evicted() {
            return Ok(None);
        }
        self.recall_one(Table::Invocations, id.to_string())
    }

    fn open_invocations(&self, workflow_id: &str) -> Result<Vec<InvocationRecord>, StoreError> {
        // Open work: the mirror holds every one.
        self.mem.open_invocations(workflow_id)
    }

    fn invocations(&self, workflow_id: &str) -> Result<Vec<InvocationRecord>, StoreError> {
        if self.trimmed(workflow_id) {
            return self.all(Table::Invocations, workflow_id);
        }
        self.mem.invocations(workflow_id)
    }

    fn scan(
        &self,
        workflow_id: &str,
        visit: &mut dyn FnMut(&[&WorkItem], &[&InvocationRecord]),
    ) -> Result<(), StoreError> {
        if !self.trimmed(workflow_id) {
            return self.mem.scan(workflow_id, visit);
        }
        self.flush()?;
        let mut rows = self
            .backend
            .select(&[
                Select::All(Table::WorkItems, workflow_id.to_string()),
                Select::All(Table::Invocations, workflow_id.to_string()),
            ])?
            .into_iter();
        let store = self.backend.describe();
        let work: Vec<WorkItem> = parse_rows(&store, rows.next().unwrap_or_default())?;
        let invocations: Vec<InvocationRecord> =
            parse_rows(&store, rows.next().unwrap_or_default())?;
        visit(
            &work.iter().collect::<Vec<_>>(),
            &invocations.iter().collect::<Vec<_>>(),
        );
        Ok(())
    }

    fn notable_work(
        &self,
        workflow_id: &str,
        visit: &mut dyn FnMut(&[&WorkItem]),
    ) -> Result<(), StoreError> {
        self.mem.notable_work(workflow_id, visit)
    }

    fn counts(&self, workflow_id: &str) -> Result<ArtifactCounts, StoreError> {
        self.mem.counts(workflow_id)
    }

    fn requeue_running(&self, workflow_id: &str) -> Result<u64, StoreError> {
        let mut n = 0;
        self.change(|| {
            // Running invocations are open work: the mirror holds every one.
            let before: Vec<InvocationId> = self
                .mem
                .invocations(workflow_id)?
                .into_iter()
                .filter(|i| i.status == InvocationStatus::Running)
                .map(|i| i.id)
                .collect();
            n = self.mem.requeue_running(workflow_id)?;
            let mut invocations = Vec::new();
            for id in before {
                if let Some(i) = self.mem.invocation(&id)? {
                    invocations.push(i);
                }
            }
            Ok(Some(Msg::Commit(Commit {
                invocations,
                ..Default::default()
            })))
        })?;
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

    /// A copy of `c`, for a second store.
    fn copy(c: &Commit) -> Commit {
        Commit {
            artifacts: c.artifacts.clone(),
            work_items: c.work_items.clone(),
            invocations: c.invocations.clone(),
            keys: c.keys.clone(),
        }
    }

    fn json<T: serde::Serialize>(v: &T) -> serde_json::Value {
        serde_json::to_value(v).expect("serialises")
    }

    fn ids(artifacts: &[SharedArtifact]) -> Vec<ArtifactId> {
        artifacts.iter().map(|a| a.id).collect()
    }

    /// Drive `durable` (bound to 2 records of each kind) and a memory store through the
    /// same run — work done, failed, duplicated, left open on old artifacts, records
    /// updated after they left memory, idempotency and discovery keys taken, a second run
    /// beside it —
    /// trimming after every step, and check that every read answers the same.
    fn a_trimmed_mirror_answers_every_read_as_the_whole_run(durable: DurableStore) {
        use crate::artifact::{Audience, Visibility};
        durable.bound_memory(2);
        let oracle = MemoryStore::new();
        let both = |c: Commit| {
            oracle.commit(copy(&c)).expect("memory commit");
            durable.commit(c).expect("durable commit");
            durable.trim().expect("trim");
        };
        let artifact = |n: usize, wf: &str, parent: Option<ArtifactId>| {
            SharedArtifact::new(Artifact {
                id: ArtifactId::generate(),
                type_name: if n.is_multiple_of(2) { "Note" } else { "Draft" }.into(),
                payload: serde_json::json!({ "n": n }).into(),
                producer: if n.is_multiple_of(3) { "a" } else { "b" }.into(),
                workflow_id: wf.into(),
                parent_ids: parent.into_iter().collect::<Vec<_>>().into(),
                audience: Audience::boxed(
                    if n.is_multiple_of(4) {
                        vec!["t".to_string()]
                    } else {
                        vec![]
                    },
                    Visibility::Public,
                ),
                created_at_ms: n as u64,
                depth: 0,
                work_item: None,
            })
        };
        let mut all = Vec::new();
        let mut work_ids = Vec::new();
        let mut invocation_ids = Vec::new();
        let mut keys = Vec::new();
        let mut discovery_keys = Vec::new();
        let mut parent = None;
        for n in 0..40 {
            let wf = if n % 10 == 9 { "other" } else { "wf" };
            let a = artifact(n, wf, parent);
            parent = Some(a.id);
            all.push(a.id);
            let mut work = WorkItem::new(a.id, wf, "analysis", Priority::Medium);
            // Every third work item took a discovery key.
            if n % 3 == 1 {
                work.detail_mut().key = Some(format!("d{n}"));
                discovery_keys.push(format!("d{n}"));
            }
            let mut inv = InvocationRecord::queued(wf, "agent", vec![a.id], n as u64);
            inv.work_item = Some(a.id);
            work_ids.push(a.id);
            invocation_ids.push(inv.id);
            // Every fourth input is published with an idempotency key.
            let key = n.is_multiple_of(4).then(|| KeyRecord {
                workflow_id: wf.to_string(),
                key: format!("k{n}"),
                request_sha256: format!("{n:064}"),
                artifact: a.id,
            });
            keys.extend(key.iter().map(|k| k.key.clone()));
            both(Commit {
                artifacts: vec![a],
                work_items: vec![work.clone()],
                invocations: vec![inv.clone()],
                keys: key.into_iter().collect(),
            });
            // Two stay open on their (soon old) artifacts; the rest end.
            if n == 3 || n == 17 {
                continue;
            }
            let claimed = oracle.claim_next(wf).expect("claim").expect("queued");
            let same = durable.claim_next(wf).expect("claim").expect("queued");
            assert_eq!(claimed.id, same.id, "claims follow the same order");
            let mut done = claimed.clone();
            let mut item = work.clone().with_status(WorkStatus::Active);
            let output = artifact(100 + n, wf, Some(all[n]));
            all.push(output.id);
            if n.is_multiple_of(7) {
                done.status = InvocationStatus::Failed;
                done.setback_mut().fault = Some(crate::invocation::FaultKind::Trap);
                item.fail("trapped".into()).expect("fail");
            } else {
                done.status = InvocationStatus::Done;
                item.finish().expect("finish");
            }
            let mut outputs = vec![];
            if done.status == InvocationStatus::Done {
                outputs.push(output);
            }
            both(Commit {
                artifacts: outputs,
                work_items: vec![item],
                invocations: vec![done],
                keys: vec![],
            });
        }
        // An invocation of the open work is claimed while its input is old.
        let early = oracle.claim_next("wf").expect("claim").expect("open work");
        assert_eq!(
            durable.claim_next("wf").expect("claim").map(|i| i.id),
            Some(early.id)
        );
        // A record that left memory is updated: a duplicate found of finished work.
        let mut original = oracle.work_item(&work_ids[1]).expect("read").expect("kept");
        original.detail_mut().duplicates += 1;
        both(Commit {
            work_items: vec![original],
            ..Default::default()
        });
        assert!(
            durable.held() < all.len() + 2 * work_ids.len(),
            "the mirror was trimmed: {} held",
            durable.held()
        );
        // An artifact that left memory is never written twice.
        let again = SharedArtifact::new(Artifact::clone(
            &oracle.artifact(&all[0]).expect("read").expect("kept"),
        ));
        assert!(matches!(
            durable.commit(Commit {
                artifacts: vec![again],
                ..Default::default()
            }),
            Err(StoreError::DuplicateArtifact(_))
        ));

        // A key that left memory with its artifact is still taken; a discovery key that
        // left with its work item still names it.
        assert_eq!(durable.mem.idempotency_key("wf", "k0").expect("read"), None);
        assert_eq!(durable.mem.discovery_key("wf", "d4").expect("read"), None);
        for store in [&oracle as &dyn Store, &durable] {
            let taken = store.commit(Commit {
                artifacts: vec![artifact(200, "wf", None)],
                keys: vec![KeyRecord {
                    workflow_id: "wf".into(),
                    key: "k0".into(),
                    request_sha256: "ff".repeat(32),
                    artifact: ArtifactId::generate(),
                }],
                ..Default::default()
            });
            assert!(
                matches!(&taken, Err(StoreError::KeyTaken(k)) if k == "k0"),
                "{taken:?}"
            );
        }

        let stores: [&dyn Store; 2] = [&oracle, &durable];
        let answers = |store: &dyn Store, wf: &str| {
            let mut out = Vec::new();
            for id in all.iter().chain([&ArtifactId::generate()]) {
                out.push(json(&store.artifact(id).expect("artifact").map(|a| a.id)));
            }
            for id in &work_ids {
                out.push(json(&store.work_item(id).expect("work item")));
                out.push(json(&store.work_phase(id).expect("phase")));
            }
            for id in &invocation_ids {
                out.push(json(&store.invocation(id).expect("invocation")));
            }
            for key in keys.iter().map(String::as_str).chain(["k1", "none"]) {
                out.push(json(&store.idempotency_key(wf, key).expect("key")));
            }
            for key in discovery_keys
                .iter()
                .map(String::as_str)
                .chain(["d0", "none"])
            {
                out.push(json(&store.discovery_key(wf, key).expect("discovery key")));
            }
            out.push(json(&store.work_items(wf).expect("work items")));
            out.push(json(&store.invocations(wf).expect("invocations")));
            out.push(json(&store.open_invocations(wf).expect("open")));
            let total = store.counts(wf).expect("counts").total;
            // From the start, the middle, and among the newest (held) positions.
            for (from, limit) in [(0, 1000), (5, 3), (total - 3, 2), (total - 2, 10)] {
                out.push(json(&ids(&store
                    .artifacts_from(wf, from, limit)
                    .expect("from"))));
            }
            for (type_name, tags, limit) in [
                (None, vec![], 1000),
                (Some("Note"), vec![], 1000),
                (None, vec!["t".to_string()], 5),
                (Some("Draft"), vec![], 7),
            ] {
                let query = ArtifactQuery {
                    workflow_id: wf.to_string(),
                    type_name: type_name.map(Into::into),
                    tags,
                    limit,
                };
                out.push(json(&ids(&store
                    .query(&query, &Viewer::operator())
                    .expect("query"))));
                let mut walked = Vec::new();
                store
                    .read(&mut |board| {
                        for id in all.iter().take(3) {
                            board.visit_artifact(id, &mut |a| walked.push(a.id))?;
                        }
                        board.visit_recent(&query, &Viewer::operator(), &mut |a| {
                            walked.push(a.id);
                            walked.len() < 30
                        })
                    })
                    .expect("read");
                out.push(json(&walked));
            }
            let mut scanned = (0, 0);
            store
                .scan(wf, &mut |w, i| scanned = (w.len(), i.len()))
                .expect("scan");
            out.push(json(&scanned));
            let mut notable = Vec::new();
            store
                .notable_work(wf, &mut |w| notable = w.iter().map(|w| w.id).collect())
                .expect("notable");
            out.push(json(&notable));
            let counts = store.counts(wf).expect("counts");
            out.push(json(&(counts.total, &counts.by_type, &counts.by_producer)));
            out.push(serde_json::Value::String(format!(
                "{:?}",
                store.tally(wf).expect("tally")
            )));
            out
        };
        for wf in ["wf", "other"] {
            let [expected, got] = stores.map(|s| answers(s, wf));
            for (n, (e, g)) in expected.iter().zip(&got).enumerate() {
                assert_eq!(e, g, "{wf}: answer {n} of {}", durable.describe());
            }
            assert_eq!(expected.len(), got.len());
        }
    }

    #[test]
    fn a_trimmed_sqlite_mirror_answers_every_read_as_the_whole_run() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = DurableStore::sqlite(&dir.path().join("trim.db")).expect("open");
        a_trimmed_mirror_answers_every_read_as_the_whole_run(store);
    }

    #[test]
    fn a_trimmed_postgres_mirror_answers_every_read_as_the_whole_run() {
        let db = crate::blackboard::postgres::scratch::for_test("murmur_trim");
        let store = DurableStore::postgres(&db.url()).expect("open");
        a_trimmed_mirror_answers_every_read_as_the_whole_run(store);
    }
}
