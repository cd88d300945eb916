//! The runs a server drives: starting, pausing, resuming and cancelling them, and
//! handing a run the artifacts published into it.
//!
//! The store is the truth: a run's status is its record's, and a run the server does not
//! drive now is only records. A live run is a task on the server's runtime running a
//! [`Scheduler`]; the server keeps of it what it needs to stop it and to publish into
//! it. A run ends as a batch run does (`complete` when idle with no open work), once it
//! has stayed idle for the linger (`--linger-ms`), so a stream of publishes keeps one run
//! going; a publish into a run that has ended opens it again: the run resumes with the
//! artifact, like `murmur resume`.

use anyhow::{Context, Result, anyhow};
use murmur::TypeRegistry;
use murmur::blackboard::{DurableStore, RunRecord, Store, StoreError};
use murmur::manifest::Manifest;
use murmur::observe::Event;
use murmur::scheduler::{Request, Requests, Scheduler, StopHandle};
use murmur::summary::RunStatus;
use murmur::workflow::Workflow;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::{Notify, mpsc};

/// What a stop of a live run is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Intent {
    /// None asked: the run ends by itself.
    None,
    /// Paused: the run ends `paused`, to be resumed.
    Pause,
    /// Cancelled: the run ends `cancelled`, for good.
    Cancel,
    /// The server is shutting down: the run stays `running`, and the next server
    /// resumes it.
    Shutdown,
}

/// A run the server drives now.
struct Live {
    stop: StopHandle,
    requests: Requests,
    intent: Intent,
    /// Told when the run's task has finished.
    done: Arc<Notify>,
}

/// The server's runs.
pub(crate) struct Runs {
    store: Arc<dyn Store>,
    /// The same store, when it is a database (SQLite, PostgreSQL): runs it holds are
    /// loaded into its memory when read or driven, and unloaded when neither has
    /// happened for a while.
    durable: Option<Arc<DurableStore>>,
    loaded: LoadedRuns,
    live: Mutex<HashMap<String, Live>>,
    /// Told on every event of any run, so event streams wake without polling.
    pub(crate) activity: Arc<Notify>,
    /// Set when the server begins to stop: event streams end (their clients reconnect
    /// to the next server with their last event's id), so a stop never waits on a
    /// browser that keeps a stream open.
    closing: std::sync::atomic::AtomicBool,
    /// Where manifests sent as text resolve their relative paths.
    base_dir: PathBuf,
    /// Held while a run is opened again, so two requests for an ended run open it once.
    opening: tokio::sync::Mutex<()>,
    /// The workflows of the runs driven last, newest last: a run opened again (a
    /// publish or a decision after it ended) goes on without loading its workflow and
    /// its components again.
    loaded_workflows: Mutex<Vec<(String, Arc<Workflow>)>>,
    options: Options,
}

/// How the server drives its runs.
pub(crate) struct Options {
    /// `--watch DIR`: bundles in DIR are hot-loaded into every run driven.
    pub(crate) watch: Option<PathBuf>,
    /// How long an idle run stays open for requests before it ends.
    pub(crate) linger: Duration,
    /// How long a run's records stay in memory after the last read, when it is not
    /// driven: a client paging through a finished run does not load it again for each
    /// page.
    pub(crate) unload_after: Duration,
    /// `--workers`: invocations go to worker processes.
    pub(crate) workers: Option<Workers>,
    /// What `${env:…}` in a run's `http` headers may read (`--secret-env`).
    pub(crate) secrets: murmur::workflow::Secrets,
}

/// Where a server's runs hand their invocations: worker processes on its PostgreSQL
/// store, through one dispatcher shared by every run.
pub(crate) struct Workers {
    /// The database.
    pub(crate) url: String,
    /// The dispatcher.
    pub(crate) dispatch: Arc<murmur::workers::PgDispatch>,
}

/// The runs whose records are in the durable store's mirror's memory, by id.
type LoadedRuns = Arc<Mutex<HashMap<String, Loaded>>>;

/// A run whose records are in the durable store's mirror's memory.
struct Loaded {
    /// Requests reading them now (each holds a [`Hold`]).
    readers: usize,
    /// When the last of them finished.
    last_read: Instant,
}

/// A hold on a run's records in memory: while one is held (a request reading the run, an
/// event stream following it, a run being opened) they are not unloaded.
pub(crate) struct Hold {
    loaded: Option<(LoadedRuns, String)>,
}

impl Drop for Hold {
    fn drop(&mut self) {
        if let Some((loaded, id)) = self.loaded.take() {
            let mut loaded = loaded.lock().unwrap_or_else(|p| p.into_inner());
            if let Some(l) = loaded.get_mut(&id) {
                l.readers = l.readers.saturating_sub(1);
                l.last_read = Instant::now();
            }
        }
    }
}

/// A run's record, read with its records held in memory.
pub(crate) struct Reading {
    pub(crate) record: RunRecord,
    pub(crate) _hold: Hold,
}

impl std::ops::Deref for Reading {
    type Target = RunRecord;
    fn deref(&self) -> &RunRecord {
        &self.record
    }
}

/// Workflows kept for runs that may be opened again.
const KEPT_WORKFLOWS: usize = 16;

/// The longest pause between two tries to take over a run another process holds.
const TAKE_OVER_EVERY: Duration = Duration::from_secs(5);

/// How a workflow to start is given.
pub(crate) enum Source {
    /// A manifest file the server can read.
    Path(PathBuf),
    /// Manifest text; relative paths in it resolve against `base_dir`, else the
    /// server's directory.
    Text {
        text: String,
        base_dir: Option<PathBuf>,
    },
}

/// Why a run could not be changed as asked.
#[derive(Debug, thiserror::Error)]
pub(crate) enum RunsError {
    #[error("no run {0}")]
    NotFound(String),
    #[error("run {id} is {status}: {why}")]
    Conflict {
        id: String,
        status: RunStatus,
        why: &'static str,
    },
    /// Another process writes the run (a PostgreSQL store shared by several servers).
    #[error("{0}")]
    Held(String),
    #[error("{0:#}")]
    Invalid(anyhow::Error),
    #[error("{0:#}")]
    Internal(anyhow::Error),
}

impl Runs {
    pub(crate) fn new(
        store: Arc<dyn Store>,
        durable: Option<Arc<DurableStore>>,
        base_dir: PathBuf,
        options: Options,
    ) -> Arc<Self> {
        Arc::new(Self {
            store,
            durable,
            loaded: Arc::new(Mutex::new(HashMap::new())),
            live: Mutex::new(HashMap::new()),
            activity: Arc::new(Notify::new()),
            closing: std::sync::atomic::AtomicBool::new(false),
            base_dir,
            opening: tokio::sync::Mutex::new(()),
            loaded_workflows: Mutex::new(Vec::new()),
            options,
        })
    }

    /// End every event stream, now and from now on: the server is stopping.
    pub(crate) fn close_streams(&self) {
        self.closing
            .store(true, std::sync::atomic::Ordering::SeqCst);
        self.activity.notify_waiters();
    }

    /// Whether event streams are to end.
    pub(crate) fn is_closing(&self) -> bool {
        self.closing.load(std::sync::atomic::Ordering::SeqCst)
    }

    pub(crate) fn store(&self) -> &dyn Store {
        self.store.as_ref()
    }

    /// The store, shared (for work that outlives the request's borrow).
    pub(crate) fn shared_store(&self) -> Arc<dyn Store> {
        self.store.clone()
    }

    /// The run's record, its records held in memory for reading while the answer lives.
    pub(crate) fn record(&self, id: &str) -> Result<Reading, RunsError> {
        let record = self
            .store
            .run(id)
            .map_err(|e| RunsError::Internal(e.into()))?
            .ok_or_else(|| RunsError::NotFound(id.to_string()))?;
        let hold = self.hold(id)?;
        Ok(Reading {
            record,
            _hold: hold,
        })
    }

    /// Hold run `id`'s records in memory, loading them if they are not.
    fn hold(&self, id: &str) -> Result<Hold, RunsError> {
        let Some(durable) = &self.durable else {
            return Ok(Hold { loaded: None });
        };
        let mut loaded = self.loaded.lock().unwrap_or_else(|p| p.into_inner());
        if !loaded.contains_key(id) {
            durable
                .load(id)
                .map_err(|e| RunsError::Internal(anyhow!("loading run {id}: {e}")))?;
        }
        let l = loaded.entry(id.to_string()).or_insert(Loaded {
            readers: 0,
            last_read: Instant::now(),
        });
        l.readers += 1;
        Ok(Hold {
            loaded: Some((self.loaded.clone(), id.to_string())),
        })
    }

    /// Read run `id`'s records afresh if they are in memory (a server that has just
    /// taken the run over from another process read them while that one wrote).
    fn reload(&self, id: &str) -> Result<(), RunsError> {
        let Some(durable) = &self.durable else {
            return Ok(());
        };
        let loaded = self.loaded.lock().unwrap_or_else(|p| p.into_inner());
        if loaded.contains_key(id) {
            let fail = |e: StoreError| RunsError::Internal(anyhow!("loading run {id}: {e}"));
            durable.unload(id).map_err(fail)?;
            durable.load(id).map_err(fail)?;
        }
        Ok(())
    }

    /// How many runs have their records in the durable store's mirror's memory now.
    /// (A memory store holds every run in memory.)
    pub(crate) fn loaded_count(&self) -> usize {
        if self.durable.is_none() {
            return self.store.runs().map_or(0, |r| r.len());
        }
        self.loaded.lock().unwrap_or_else(|p| p.into_inner()).len()
    }

    /// Whether the run's records are in memory (always, for a memory store).
    pub(crate) fn is_loaded(&self, id: &str) -> bool {
        self.durable.is_none()
            || self
                .loaded
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .contains_key(id)
    }

    /// Unload the records of every run that is not driven and has not been read for
    /// `unload_after`: the server's memory holds the runs it works on, not every run
    /// it ever drove. Blocking (the store's writer is flushed first); the ids unloaded.
    pub(crate) fn unload_idle(&self) -> Result<Vec<String>> {
        let Some(durable) = &self.durable else {
            return Ok(Vec::new());
        };
        let mut loaded = self.loaded.lock().unwrap_or_else(|p| p.into_inner());
        let idle: Vec<String> = loaded
            .iter()
            .filter(|(id, l)| {
                l.readers == 0
                    && l.last_read.elapsed() >= self.options.unload_after
                    && !self.is_live(id)
            })
            .map(|(id, _)| id.clone())
            .collect();
        for id in &idle {
            // Under the lock: a request for the run waits, then loads it again.
            durable.unload(id)?;
            loaded.remove(id);
        }
        if !idle.is_empty() {
            // Their workflows too: each holds its own WebAssembly engine, whose instance
            // pool reserves address space and memory mappings for every invocation the
            // run may have in flight; a server that kept them would run out of both
            // after a few large runs.
            self.loaded_workflows
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .retain(|(id, _)| !idle.contains(id));
        }
        Ok(idle)
    }

    /// Unload idle runs as they become idle, for as long as the server runs.
    pub(crate) fn unload_idle_runs(self: &Arc<Self>) {
        if self.durable.is_none() {
            return;
        }
        let runs = Arc::downgrade(self);
        let every = (self.options.unload_after / 4)
            .clamp(Duration::from_millis(50), Duration::from_secs(1));
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            loop {
                tick.tick().await;
                let Some(runs) = runs.upgrade() else { return };
                match tokio::task::spawn_blocking(move || {
                    let unloaded = runs.unload_idle();
                    if unloaded.as_ref().is_ok_and(|ids| !ids.is_empty()) {
                        // SAFETY: mi_collect only returns freed memory to the system.
                        unsafe { libmimalloc_sys::mi_collect(true) };
                    }
                    unloaded
                })
                .await
                {
                    Ok(Ok(ids)) if !ids.is_empty() => {
                        tracing::info!("unloaded {} idle run(s) from memory", ids.len());
                    }
                    Ok(Err(e)) => tracing::error!("unloading idle runs: {e:#}"),
                    _ => {}
                }
            }
        });
    }

    /// Wait until everything committed so far is in the database (the store writer's
    /// group commit: requests waiting at once share one transaction): a publish or a decision
    /// is answered only once a crash cannot take it back.
    pub(crate) async fn durable(&self) -> Result<(), RunsError> {
        let Some(durable) = &self.durable else {
            return Ok(()); // A memory store has no file to wait for.
        };
        let flushed = durable
            .durable()
            .map_err(|e| RunsError::Internal(e.into()))?;
        flushed.await.map_err(|e| RunsError::Internal(e.into()))
    }

    /// Whether the run is driven now.
    pub(crate) fn is_live(&self, id: &str) -> bool {
        self.lock_live().contains_key(id)
    }

    /// How many runs are driven now.
    pub(crate) fn live_count(&self) -> usize {
        self.lock_live().len()
    }

    fn lock_live(&self) -> std::sync::MutexGuard<'_, HashMap<String, Live>> {
        self.live.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Load and start a workflow; its run id.
    pub(crate) async fn start(self: &Arc<Self>, source: Source) -> Result<String, RunsError> {
        let manifest = match source {
            Source::Path(path) => Manifest::load(&path)
                .with_context(|| format!("loading {}", path.display()))
                .map_err(RunsError::Invalid)?,
            Source::Text { text, base_dir } => {
                let dir = base_dir.unwrap_or_else(|| self.base_dir.clone());
                if !dir.is_dir() {
                    return Err(RunsError::Invalid(anyhow!(
                        "base_dir {}: not a directory this server can read",
                        dir.display()
                    )));
                }
                Manifest::parse(&dir.join("request.toml"), &text)
                    .map_err(|e| RunsError::Invalid(e.into()))?
            }
        };
        let wf = load(manifest, &self.options.secrets)
            .await
            .map_err(RunsError::Invalid)?;
        let id = Scheduler::new_run_id();
        // Its records are made in memory as it runs; held until it is driven.
        let hold = self.durable.as_ref().map(|_| {
            let mut loaded = self.loaded.lock().unwrap_or_else(|p| p.into_inner());
            loaded.insert(
                id.clone(),
                Loaded {
                    readers: 1,
                    last_read: Instant::now(),
                },
            );
            Hold {
                loaded: Some((self.loaded.clone(), id.clone())),
            }
        });
        self.drive(id.clone(), wf, None);
        drop(hold);
        // The run saves its record as it starts: answer once it is there, so the id
        // answered is one the API knows.
        while self.is_live(&id)
            && self
                .store
                .run(&id)
                .map_err(|e| RunsError::Internal(e.into()))?
                .is_none()
        {
            tokio::time::sleep(std::time::Duration::from_millis(2)).await;
        }
        Ok(id)
    }

    /// The workflow run `id` was last driven with, if it is still kept.
    fn kept_workflow(&self, id: &str) -> Option<Arc<Workflow>> {
        let kept = self
            .loaded_workflows
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        kept.iter().find(|(k, _)| k == id).map(|(_, wf)| wf.clone())
    }

    /// The artifact types run `record` knows: its workflow's when this server keeps it
    /// (hot-loaded types included), else the built-ins and its manifest's.
    pub(crate) fn types(&self, record: &RunRecord) -> Result<TypeRegistry, RunsError> {
        if let Some(wf) = self.kept_workflow(&record.workflow_id) {
            return Ok(wf.types.clone());
        }
        let manifest = Manifest::parse(Path::new(&record.manifest_path), &record.manifest_text)
            .map_err(|e| RunsError::Invalid(e.into()))?;
        let mut types = TypeRegistry::builtin();
        for t in &manifest.types {
            types
                .register(&t.name, t.schema.clone())
                .map_err(|e| RunsError::Invalid(e.into()))?;
        }
        Ok(types)
    }

    /// Keep `wf` as run `id`'s, dropping the least recently driven past the bound. A
    /// workflow with a language-model host is not kept: a stopped run closes its host
    /// for good (its calls in flight dropped), so the run goes on with a fresh one.
    fn keep_workflow(&self, id: &str, wf: Arc<Workflow>) {
        if wf.llm.is_some() {
            return;
        }
        let mut kept = self
            .loaded_workflows
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        kept.retain(|(k, _)| k != id);
        kept.push((id.to_string(), wf));
        if kept.len() > KEPT_WORKFLOWS {
            kept.remove(0);
        }
    }

    /// Drive run `id` of `wf` on a task: a new run, or `resume` an existing one.
    fn drive(self: &Arc<Self>, id: String, wf: Arc<Workflow>, resume: Option<RunRecord>) {
        self.keep_workflow(&id, wf.clone());
        let (events_tx, mut events_rx) = mpsc::unbounded_channel::<Event>();
        let mut scheduler = Scheduler::new(wf.clone(), self.store.clone())
            .with_events(events_tx)
            .with_linger(self.options.linger);
        // Each run watches the directory for itself: a bundle merges into the manifest
        // the run started with, and is checked against it.
        let watcher = match &self.options.watch {
            Some(dir) => {
                let (reload_tx, reload_rx) = mpsc::unbounded_channel();
                let options = murmur::workflow::LoadOptions {
                    llm_host: wf.llm.clone(),
                    http_tape: Some(wf.http_tape.clone()),
                    secrets: self.options.secrets.clone(),
                    ..super::super::settings::load_options(Some(&wf.manifest))
                };
                match murmur::hotload::watch(dir, wf.manifest.clone(), options, reload_tx) {
                    Ok(w) => {
                        scheduler = scheduler.with_reloads(reload_rx);
                        Some(w)
                    }
                    Err(e) => {
                        tracing::error!("run {id}: cannot watch {}: {e}", dir.display());
                        None
                    }
                }
            }
            None => None,
        };
        // Workers fetch the run's components from the database by sha256.
        let components = self.options.workers.as_ref().map(|w| {
            scheduler = scheduler.clone().with_dispatch(w.dispatch.clone());
            (w.url.clone(), wf.clone())
        });
        let requests = scheduler.requests();
        let done = Arc::new(Notify::new());
        self.lock_live().insert(
            id.clone(),
            Live {
                stop: scheduler.stop_handle(),
                requests,
                intent: Intent::None,
                done: done.clone(),
            },
        );
        let activity = self.activity.clone();
        tokio::spawn(async move {
            while events_rx.recv().await.is_some() {
                activity.notify_waiters();
            }
        });
        let runs = self.clone();
        tokio::spawn(async move {
            let published = match components {
                Some((url, wf)) => murmur::workers::publish_components(&url, &wf).await,
                None => Ok(()),
            };
            let outcome = match published {
                Err(e) => Err(e.into()),
                Ok(()) => match resume {
                    Some(record) => scheduler.resume(record).await,
                    None => scheduler.run_as(id.clone()).await,
                },
            };
            drop(watcher);
            drop(scheduler);
            let intent = runs
                .lock_live()
                .remove(&id)
                .map(|l| l.intent)
                .unwrap_or(Intent::None);
            match outcome {
                Ok(summary) => {
                    if summary.status == RunStatus::Waiting {
                        runs.wake_at_expiry(&id);
                    }
                    let status = match intent {
                        Intent::Pause if summary.status == RunStatus::Running => {
                            Some(RunStatus::Paused)
                        }
                        Intent::Cancel => Some(RunStatus::Cancelled),
                        _ => None,
                    };
                    if let Some(status) = status
                        && let Err(e) = runs.set_status(&id, status)
                    {
                        tracing::error!("run {id}: cannot record it {status}: {e:#}");
                    }
                }
                Err(e) => {
                    tracing::error!("run {id} failed: {e}");
                    if let Err(e) = runs.set_status(&id, RunStatus::Failed) {
                        tracing::error!("run {id}: cannot record its failure: {e:#}");
                    }
                }
            }
            runs.activity.notify_waiters();
            done.notify_waiters();
        });
    }

    /// Record run `id` as `status` (a run not driven now), with its event.
    fn set_status(&self, id: &str, status: RunStatus) -> Result<()> {
        let mut record = self
            .store
            .run(id)?
            .with_context(|| format!("no run {id}"))?;
        record.status = status;
        record.finished_at_ms = Some(murmur::artifact::now_ms());
        if let Some(summary) = record.summary.as_mut().and_then(|s| s.as_object_mut()) {
            summary.insert("status".into(), serde_json::json!(status));
        }
        self.store.save_run(&record)?;
        self.store
            .record_events(id, &[Event::RunEnded { status }])?;
        self.store.flush()?;
        Ok(())
    }

    /// Stop a live run for `intent` and wait until it has stopped.
    async fn stop(&self, id: &str, intent: Intent) -> bool {
        {
            let mut live = self.lock_live();
            let Some(l) = live.get_mut(id) else {
                return false;
            };
            l.intent = intent;
            l.stop.stop();
        };
        self.finished(id).await;
        true
    }

    /// Pause a live run: it stops claiming, what runs finishes, and it ends `paused`.
    pub(crate) async fn pause(&self, id: &str) -> Result<RunStatus, RunsError> {
        let record = self.record(id)?;
        if !self.stop(id, Intent::Pause).await {
            return Err(RunsError::Conflict {
                id: id.into(),
                status: record.status,
                why: "only a running run can be paused",
            });
        }
        Ok(self.record(id)?.status)
    }

    /// Go on with a paused or interrupted run.
    pub(crate) async fn resume(self: &Arc<Self>, id: &str) -> Result<RunStatus, RunsError> {
        let record = self.record(id)?;
        if self.is_live(id) {
            return Ok(RunStatus::Running);
        }
        if !record.status.resumable() {
            return Err(RunsError::Conflict {
                id: id.into(),
                status: record.status,
                why: "only a paused or interrupted run can be resumed",
            });
        }
        self.go_on(record.record).await?;
        Ok(RunStatus::Running)
    }

    /// Drive `record`'s run again, from where the store has it.
    async fn go_on(self: &Arc<Self>, mut record: RunRecord) -> Result<(), RunsError> {
        let id = record.workflow_id.clone();
        let _opening = self.opening.lock().await;
        if self.is_live(&id) {
            return Ok(());
        }
        if let Some(durable) = self.durable.clone() {
            // A database other processes write too (PostgreSQL): the run must be this
            // server's alone before it goes on.
            let claimed = id.clone();
            let taken = tokio::task::spawn_blocking(move || durable.claim_run(&claimed))
                .await
                .map_err(|e| RunsError::Internal(e.into()))?
                .map_err(|e| match e {
                    StoreError::RunHeld(why) => RunsError::Held(why),
                    e => RunsError::Internal(e.into()),
                })?;
            if taken {
                // Another process may have written it since a reader here loaded it.
                self.reload(&id)?;
            }
        }
        // Its records stay in memory from here until it is driven (then, while it is).
        let _hold = self.hold(&id)?;
        let wf = match self.kept_workflow(&id) {
            Some(wf) => wf,
            None => {
                let manifest =
                    Manifest::parse(Path::new(&record.manifest_path), &record.manifest_text)
                        .map_err(|e| RunsError::Invalid(e.into()))?;
                let wf = load(manifest, &self.options.secrets)
                    .await
                    .map_err(RunsError::Invalid)?;
                super::super::resume::same_plugins(&wf, &record).map_err(RunsError::Invalid)?;
                wf
            }
        };
        // Ended runs go on as interrupted ones do.
        record.status = RunStatus::Running;
        self.drive(id, wf, Some(record));
        Ok(())
    }

    /// Cancel a run: a live one stops; any that has not ended for good ends `cancelled`.
    pub(crate) async fn cancel(&self, id: &str) -> Result<RunStatus, RunsError> {
        let record = self.record(id)?;
        if self.stop(id, Intent::Cancel).await {
            return Ok(RunStatus::Cancelled);
        }
        if record.status == RunStatus::Cancelled {
            return Ok(RunStatus::Cancelled);
        }
        if !record.status.resumable() {
            return Err(RunsError::Conflict {
                id: id.into(),
                status: record.status,
                why: "it has ended; there is nothing to cancel",
            });
        }
        self.set_status(id, RunStatus::Cancelled)
            .map_err(RunsError::Internal)?;
        Ok(RunStatus::Cancelled)
    }

    /// Hand `request` to run `id`, opening the run again if it had ended (or was ending
    /// as the request came).
    pub(crate) async fn request(
        self: &Arc<Self>,
        id: &str,
        request: Request,
    ) -> Result<(), RunsError> {
        let mut request = request;
        for _ in 0..8 {
            let record = self.record(id)?;
            if !self.is_live(id) {
                if matches!(record.status, RunStatus::Cancelled | RunStatus::Paused) {
                    return Err(RunsError::Conflict {
                        id: id.into(),
                        status: record.status,
                        why: "it takes nothing until it is resumed",
                    });
                }
                self.go_on(record.record).await?;
            }
            let sender = self.lock_live().get(id).map(|l| l.requests.clone());
            if let Some(tx) = sender {
                match tx.send(request) {
                    Ok(()) => return Ok(()),
                    // The run's loop has ended; its task is finishing.
                    Err(back) => request = back,
                }
            }
            self.finished(id).await;
        }
        Err(RunsError::Internal(anyhow!(
            "run {id} ended each time it was opened for the request"
        )))
    }

    /// A run that ended `waiting` goes on when its earliest approval expires, to expire
    /// it (a decision before then opens it anyway).
    pub(crate) fn wake_at_expiry(self: &Arc<Self>, id: &str) {
        let mut earliest = None;
        let read = self.store.notable_work(id, &mut |work| {
            earliest = work
                .iter()
                .filter(|w| w.status() == murmur::work::WorkStatus::AwaitingApproval)
                .filter_map(|w| w.approval().and_then(|a| a.expires_at_ms))
                .min();
        });
        if read.is_err() {
            return;
        }
        let Some(at) = earliest else {
            return;
        };
        let runs = self.clone();
        let id = id.to_string();
        tokio::spawn(async move {
            let wait = at.saturating_sub(murmur::artifact::now_ms());
            tokio::time::sleep(std::time::Duration::from_millis(wait)).await;
            if runs.is_live(&id) {
                return;
            }
            match runs.record(&id) {
                Ok(record) if record.status == RunStatus::Waiting => {
                    if let Err(e) = runs.go_on(record.record).await {
                        tracing::error!("run {id}: cannot go on to expire approvals: {e}");
                    }
                }
                _ => {}
            }
        });
    }

    /// Wait until run `id` is not driven any more.
    pub(crate) async fn finished(&self, id: &str) {
        let Some(done) = self.lock_live().get(id).map(|l| l.done.clone()) else {
            return;
        };
        let notified = done.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        if self.is_live(id) {
            notified.await;
        }
    }

    /// Resume every run the store holds as `running`: interrupted when the last server
    /// (or a batch run) stopped.
    pub(crate) async fn resume_interrupted(self: &Arc<Self>) -> Result<Vec<String>> {
        let mut resumed = Vec::new();
        for record in self.store.runs()? {
            if record.status == RunStatus::Waiting {
                let _hold = self.hold(&record.workflow_id).map_err(|e| anyhow!("{e}"))?;
                self.wake_at_expiry(&record.workflow_id);
            }
            if record.status != RunStatus::Running || self.is_live(&record.workflow_id) {
                continue;
            }
            let id = record.workflow_id.clone();
            match self.go_on(record.clone()).await {
                Ok(()) => resumed.push(id),
                Err(RunsError::Held(why)) => {
                    tracing::warn!("{why}; this server takes run {id} over when it is let go");
                    self.take_over_when_free(record);
                }
                Err(e) => tracing::error!("run {id} cannot be resumed: {e}"),
            }
        }
        Ok(resumed)
    }

    /// Resume `record`'s run once the process that holds it lets go: one that was killed
    /// a moment ago (PostgreSQL ends its session, and with it the claim, once it sees the
    /// connection gone), or a server that stops or dies later. Tried again with a pause
    /// that doubles up to [`TAKE_OVER_EVERY`], for as long as the store has the run
    /// `running` and this server does not drive it.
    fn take_over_when_free(self: &Arc<Self>, record: RunRecord) {
        let runs = Arc::clone(self);
        tokio::spawn(async move {
            let id = record.workflow_id.clone();
            let mut pause = Duration::from_millis(100);
            loop {
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(TAKE_OVER_EVERY);
                match runs.record(&id) {
                    Ok(now) if now.record.status == RunStatus::Running && !runs.is_live(&id) => {}
                    _ => return,
                }
                match runs.go_on(record.clone()).await {
                    Ok(()) => {
                        tracing::info!("run {id}: its holder let go; resumed");
                        return;
                    }
                    Err(RunsError::Held(_)) => {}
                    Err(e) => {
                        tracing::error!("run {id} cannot be resumed: {e}");
                        return;
                    }
                }
            }
        });
    }

    /// Stop every live run (they stay `running`, for the next server) and wait.
    pub(crate) async fn shutdown(&self) {
        let ids: Vec<String> = self.lock_live().keys().cloned().collect();
        for id in ids {
            self.stop(&id, Intent::Shutdown).await;
        }
    }
}

/// Load a workflow (compiling its components) off the async threads.
async fn load(manifest: Manifest, secrets: &murmur::workflow::Secrets) -> Result<Arc<Workflow>> {
    let options = murmur::workflow::LoadOptions {
        secrets: secrets.clone(),
        ..super::super::settings::load_options(Some(&manifest))
    };
    let wf = tokio::task::spawn_blocking(move || Workflow::from_manifest(manifest, options))
        .await
        .context("loading the workflow")??;
    Ok(Arc::new(wf))
}
