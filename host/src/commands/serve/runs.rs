//! The runs a server drives: starting, pausing, resuming and cancelling them, and
//! handing a run the artifacts published into it.
//!
//! The store is the truth: a run's status is its record's, and a run the server does not
//! drive now is only records. A live run is a task on the server's runtime running a
//! [`Scheduler`]; the server keeps of it what it needs to stop it and to publish into
//! it. A run ends as a batch run does (`complete` when idle with no open work); a publish
//! into a run that has ended opens it again: the run resumes with the artifact, like
//! `murmur resume`.

use anyhow::{Context, Result, anyhow};
use murmur::blackboard::{RunRecord, SqliteStore, Store};
use murmur::manifest::Manifest;
use murmur::observe::Event;
use murmur::scheduler::{Request, Requests, Scheduler, StopHandle};
use murmur::summary::RunStatus;
use murmur::workflow::Workflow;
use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
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
    /// The same store, when it is a SQLite file: runs it holds are loaded into its
    /// memory the first time they are read.
    sqlite: Option<Arc<SqliteStore>>,
    loaded: Mutex<HashSet<String>>,
    live: Mutex<HashMap<String, Live>>,
    /// Told on every event of any run, so event streams wake without polling.
    pub(crate) activity: Arc<Notify>,
    /// Where manifests sent as text resolve their relative paths.
    base_dir: PathBuf,
    /// Held while a run is opened again, so two requests for an ended run open it once.
    opening: tokio::sync::Mutex<()>,
    /// The workflows of the runs driven last, newest last: a run opened again (a
    /// publish or a decision after it ended) goes on without loading its workflow and
    /// its components again.
    loaded_workflows: Mutex<Vec<(String, Arc<Workflow>)>>,
}

/// Workflows kept for runs that may be opened again.
const KEPT_WORKFLOWS: usize = 16;

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
    #[error("{0:#}")]
    Invalid(anyhow::Error),
    #[error("{0:#}")]
    Internal(anyhow::Error),
}

impl Runs {
    pub(crate) fn new(
        store: Arc<dyn Store>,
        sqlite: Option<Arc<SqliteStore>>,
        base_dir: PathBuf,
    ) -> Arc<Self> {
        Arc::new(Self {
            store,
            sqlite,
            loaded: Mutex::new(HashSet::new()),
            live: Mutex::new(HashMap::new()),
            activity: Arc::new(Notify::new()),
            base_dir,
            opening: tokio::sync::Mutex::new(()),
            loaded_workflows: Mutex::new(Vec::new()),
        })
    }

    pub(crate) fn store(&self) -> &dyn Store {
        self.store.as_ref()
    }

    /// The run's record, its records loaded for reading.
    pub(crate) fn record(&self, id: &str) -> Result<RunRecord, RunsError> {
        let record = self
            .store
            .run(id)
            .map_err(|e| RunsError::Internal(e.into()))?
            .ok_or_else(|| RunsError::NotFound(id.to_string()))?;
        self.ensure_loaded(id)?;
        Ok(record)
    }

    fn ensure_loaded(&self, id: &str) -> Result<(), RunsError> {
        let Some(sqlite) = &self.sqlite else {
            return Ok(());
        };
        let mut loaded = self.loaded.lock().unwrap_or_else(|p| p.into_inner());
        if loaded.contains(id) {
            return Ok(());
        }
        sqlite
            .load(id)
            .map_err(|e| RunsError::Internal(anyhow!("loading run {id}: {e}")))?;
        loaded.insert(id.to_string());
        Ok(())
    }

    /// Whether the run's records are in memory (always, for a memory store).
    pub(crate) fn is_loaded(&self, id: &str) -> bool {
        self.sqlite.is_none()
            || self
                .loaded
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .contains(id)
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
        let wf = load(manifest).await.map_err(RunsError::Invalid)?;
        let id = Scheduler::new_run_id();
        self.loaded
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(id.clone());
        self.drive(id.clone(), wf, None);
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
        let scheduler = Scheduler::new(wf, self.store.clone()).with_events(events_tx);
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
            let outcome = match resume {
                Some(record) => scheduler.resume(record).await,
                None => scheduler.run_as(id.clone()).await,
            };
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
        self.go_on(record).await?;
        Ok(RunStatus::Running)
    }

    /// Drive `record`'s run again, from where the store has it.
    async fn go_on(self: &Arc<Self>, mut record: RunRecord) -> Result<(), RunsError> {
        let id = record.workflow_id.clone();
        let _opening = self.opening.lock().await;
        if self.is_live(&id) {
            return Ok(());
        }
        let wf = match self.kept_workflow(&id) {
            Some(wf) => wf,
            None => {
                let manifest =
                    Manifest::parse(Path::new(&record.manifest_path), &record.manifest_text)
                        .map_err(|e| RunsError::Invalid(e.into()))?;
                let wf = load(manifest).await.map_err(RunsError::Invalid)?;
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
                self.go_on(record).await?;
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
        let Ok(work) = self.store.work_items(id) else {
            return;
        };
        let earliest = work
            .iter()
            .filter(|w| w.status() == murmur::work::WorkStatus::AwaitingApproval)
            .filter_map(|w| w.approval().and_then(|a| a.expires_at_ms))
            .min();
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
                    if let Err(e) = runs.go_on(record).await {
                        tracing::error!("run {id}: cannot go on to expire approvals: {e}");
                    }
                }
                _ => {}
            }
        });
    }

    /// Wait until run `id` is not driven any more.
    async fn finished(&self, id: &str) {
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
                self.ensure_loaded(&record.workflow_id)
                    .map_err(|e| anyhow!("{e}"))?;
                self.wake_at_expiry(&record.workflow_id);
            }
            if record.status != RunStatus::Running || self.is_live(&record.workflow_id) {
                continue;
            }
            let id = record.workflow_id.clone();
            self.ensure_loaded(&id).map_err(|e| anyhow!("{e}"))?;
            match self.go_on(record).await {
                Ok(()) => resumed.push(id),
                Err(e) => tracing::error!("run {id} cannot be resumed: {e}"),
            }
        }
        Ok(resumed)
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
async fn load(manifest: Manifest) -> Result<Arc<Workflow>> {
    let options = super::super::settings::load_options(Some(&manifest));
    let wf = tokio::task::spawn_blocking(move || Workflow::from_manifest(manifest, options))
        .await
        .context("loading the workflow")??;
    Ok(Arc::new(wf))
}
