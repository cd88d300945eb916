//! The scheduler: runs a workflow until it is idle.
//!
//! One lock owns every commit, so the order of state changes is simple to reason about;
//! invocations themselves run in parallel as worker tasks on the run's own runtime —
//! guest CPU work on as many threads as `[workflow.limits] threads`, invocations in flight
//! (waiting on a model, say) up to `concurrency` (see `pool.rs`). Each worker: claim the
//! most urgent queued invocation from the store → run it
//! in its sandbox outside the lock → check its outputs → under the lock, publish them,
//! their work items, the invocations they trigger and the invocation's completion in one
//! commit → repeat. When nothing is queued or running, the run ends: `complete` (and
//! publishes WorkflowComplete) if no work is open, `stalled` if some is,
//! `budget_exhausted` if a budget stopped it. A run must be driven from tokio's
//! multi-threaded runtime (the loop leaves it with `block_in_place`).

mod approval;
mod cascade;
mod execute;
mod external;
mod inputs;
mod metrics;
mod plan;
mod pool;
pub mod remote;

use crate::artifact::{ArtifactId, Visibility, now_ms};
use crate::blackboard::tally::{PhaseCounts, Tally};
use crate::blackboard::{PluginVersion, RunRecord, Store, StoreError};
use crate::hotload::Reload;
use crate::invocation::FaultKind;
use crate::invocation::{InvocationRecord, InvocationStatus};
use crate::name::Name;
use crate::observe::Event;
use crate::plugin::bindings::types::PluginError;
use crate::plugin::{Fault, InvokeError};
use crate::schema::{WORK_DISCOVERY, WORKFLOW_COMPLETE, WORKFLOW_METRICS};
use crate::summary::{RunStatus, RunSummary};
use crate::validation::Refusal;
use crate::work::{WorkItem, WorkStatus};
use crate::workflow::Workflow;
use cascade::{Cascade, CascadeState, Checked, Draft};
pub(crate) use execute::check_outputs;
use execute::{CheckedOutput, Executed, Failure};
use inputs::InputFeed;
use serde_json::json;
use std::sync::Arc;
use std::time::Instant;
use thiserror::Error;
use tokio::sync::mpsc;

pub use approval::{Decide, DecideError, record_decision};
pub use external::{
    IdempotencyKey, PRODUCER as API_PRODUCER, Problem, Publish, PublishError, Published,
};

/// Where requests into a running workflow are sent ([`Scheduler::requests`]): the
/// run's loop takes them in the order sent, woken by each.
#[derive(Clone)]
pub struct Requests {
    tx: mpsc::UnboundedSender<Request>,
    wake: Waker,
}

/// What wakes a running loop: set while the run goes, cleared when it stops.
type Waker = Arc<std::sync::Mutex<Option<Box<dyn Fn() + Send + Sync>>>>;

impl Requests {
    /// Send `request`; it is given back if the run has stopped taking requests.
    pub fn send(&self, request: Request) -> Result<(), Request> {
        self.tx.send(request).map_err(|e| e.0)?;
        // Called under the lock, so a run that stops (and clears it) waits for a wake
        // in progress.
        if let Some(wake) = self.wake.lock().unwrap_or_else(|p| p.into_inner()).as_ref() {
            wake();
        }
        Ok(())
    }
}

/// A request from outside a running workflow, taken by its loop in the order sent.
#[derive(Debug)]
pub enum Request {
    /// Publish an artifact into the run.
    Publish(Box<Publish>),
    /// Decide on work awaiting approval.
    Decide(Decide),
}

/// Why a run could not go on.
#[derive(Debug, Error)]
pub enum RunError {
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The manifest's inputs cannot be published (their discovery keys or blockers).
    #[error("the workflow's inputs: {0}")]
    Inputs(String),
    /// A worker died (a bug in the host, not a plugin fault).
    #[error("worker failed: {0}")]
    Worker(String),
    /// A work item was asked to move where its lifecycle does not allow (a host bug).
    #[error(transparent)]
    Lifecycle(#[from] crate::work::IllegalTransition),
}

/// Runs one workflow against one store.
#[derive(Clone)]
pub struct Scheduler {
    /// The workflow in force; hot loading swaps it, and every invocation keeps the version
    /// it was claimed under. (A clone of a scheduler is the same scheduler: the run's
    /// worker tasks each hold one.)
    current: Arc<std::sync::RwLock<Arc<Workflow>>>,
    reloads: Arc<std::sync::Mutex<Option<mpsc::UnboundedReceiver<Reload>>>>,
    requests: Arc<std::sync::Mutex<Option<mpsc::UnboundedReceiver<Request>>>>,
    wake: Waker,
    store: Arc<dyn Store>,
    events: Option<mpsc::UnboundedSender<Event>>,
    dispatch_samples: Option<Arc<std::sync::Mutex<Vec<u32>>>>,
    stop: StopHandle,
    /// How long an idle run that takes requests waits for one before it ends.
    linger: Option<std::time::Duration>,
    /// Where invocations run when worker processes run them (`None`: here).
    dispatch: Option<Arc<dyn remote::Dispatch>>,
}

/// Asks a running scheduler to stop: it claims nothing more, drops the model calls not
/// yet made (their invocations go back to the queue, attempts not counted), lets the
/// invocations that are running finish and commit, and ends the run `running` —
/// interrupted, for `resume` to continue. Cloned freely; `stop` may be called from any
/// thread (a signal handler's task).
#[derive(Clone, Default)]
pub struct StopHandle(Arc<StopState>);

#[derive(Default)]
struct StopState {
    stopping: std::sync::atomic::AtomicBool,
    /// What else a stop must reach (the model host's calls in flight).
    hooks: std::sync::Mutex<Vec<Box<dyn Fn() + Send + Sync>>>,
}

impl std::fmt::Debug for StopHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("StopHandle").field(&self.stopping()).finish()
    }
}

impl StopHandle {
    /// Stop claiming; the run ends once what is running has finished.
    pub fn stop(&self) {
        if !self
            .0
            .stopping
            .swap(true, std::sync::atomic::Ordering::SeqCst)
        {
            let hooks = self.0.hooks.lock().unwrap_or_else(|p| p.into_inner());
            for hook in hooks.iter() {
                hook();
            }
        }
    }

    /// Whether a stop was asked for.
    pub fn stopping(&self) -> bool {
        self.0.stopping.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// Run `hook` when the stop comes (at once if it came already).
    fn on_stop(&self, hook: Box<dyn Fn() + Send + Sync>) {
        let mut hooks = self.0.hooks.lock().unwrap_or_else(|p| p.into_inner());
        if self.stopping() {
            hook();
        }
        hooks.push(hook);
    }
}

impl Scheduler {
    /// A scheduler for `wf` on `store`.
    pub fn new(wf: Arc<Workflow>, store: Arc<dyn Store>) -> Self {
        Self {
            current: Arc::new(std::sync::RwLock::new(wf)),
            reloads: Arc::new(std::sync::Mutex::new(None)),
            requests: Arc::new(std::sync::Mutex::new(None)),
            wake: Arc::new(std::sync::Mutex::new(None)),
            store,
            events: None,
            dispatch_samples: None,
            stop: StopHandle::default(),
            linger: None,
            dispatch: None,
        }
    }

    /// Hand every invocation to worker processes through `dispatch` instead of running
    /// it here; this process keeps every decision of the run (see `remote`).
    pub fn with_dispatch(mut self, dispatch: Arc<dyn remote::Dispatch>) -> Self {
        self.dispatch = Some(dispatch);
        self
    }

    /// With [`Scheduler::requests`]: once the run is idle, wait up to `linger` for a
    /// request before ending, so a stream of publishes keeps one run going instead of
    /// ending it and opening it again between two of them. Each request taken starts the
    /// wait afresh.
    pub fn with_linger(mut self, linger: std::time::Duration) -> Self {
        self.linger = Some(linger);
        self
    }

    /// The handle that stops this scheduler's run (see [`StopHandle`]).
    pub fn stop_handle(&self) -> StopHandle {
        self.stop.clone()
    }

    /// The workflow in force.
    pub fn wf(&self) -> Arc<Workflow> {
        self.current
            .read()
            .map(|w| w.clone())
            .unwrap_or_else(|p| p.into_inner().clone())
    }

    /// Take new versions of the workflow from `rx` while running (hot loading). A run
    /// that watches does not end `stalled`: it waits for a plugin that can take its work.
    pub fn with_reloads(self, rx: mpsc::UnboundedReceiver<Reload>) -> Self {
        if let Ok(mut r) = self.reloads.lock() {
            *r = Some(rx);
        }
        self
    }

    /// Where to send requests from outside the run while it runs (publishes,
    /// decisions). A request sent after the run has stopped is given back by
    /// [`Requests::send`], or, if it came as the run stopped, dropped unanswered: its
    /// reply channel closes, and nothing of it was done.
    pub fn requests(&self) -> Requests {
        let (tx, rx) = mpsc::unbounded_channel();
        if let Ok(mut p) = self.requests.lock() {
            *p = Some(rx);
        }
        Requests {
            tx,
            wake: self.wake.clone(),
        }
    }

    /// Report events on `tx` as the run goes.
    pub fn with_events(mut self, tx: mpsc::UnboundedSender<Event>) -> Self {
        self.events = Some(tx);
        self
    }

    /// Record each invocation's dispatch time (claim → plugin call), in microseconds.
    pub fn with_dispatch_samples(mut self, samples: Arc<std::sync::Mutex<Vec<u32>>>) -> Self {
        self.dispatch_samples = Some(samples);
        self
    }

    /// Whether something listens to the loop's events as they happen (the progress
    /// display). A store keeps only notable events, so the others — an invocation's start
    /// and completion, two per invocation — need not be made when nothing listens.
    fn watched(&self) -> bool {
        self.events.is_some()
    }

    fn emit(&self, workflow_id: &str, events: Vec<Event>) {
        if events.is_empty() {
            return;
        }
        if let Err(e) = self.store.record_events(workflow_id, &events) {
            tracing::warn!("cannot record events: {e}");
        }
        if let Some(tx) = &self.events {
            for e in events {
                let _ = tx.send(e);
            }
        }
    }

    /// A new run's record.
    fn new_record(&self, workflow_id: &str) -> RunRecord {
        let wf = self.wf();
        let path = &wf.manifest.path;
        RunRecord {
            workflow_id: workflow_id.to_string(),
            name: wf.name().to_string(),
            manifest_path: std::fs::canonicalize(path)
                .unwrap_or_else(|_| path.clone())
                .display()
                .to_string(),
            manifest_text: wf.manifest.source.clone(),
            plugins: wf
                .plugins
                .iter()
                .map(|p| PluginVersion {
                    name: p.name.to_string(),
                    path: p.path.display().to_string(),
                    sha256: p.sha256.clone(),
                })
                .collect(),
            status: RunStatus::Running,
            started_at_ms: now_ms(),
            finished_at_ms: None,
            summary: None,
            llm_usage: None,
            agent_times: Default::default(),
            lessons: Default::default(),
            distilled: None,
        }
    }

    /// Publish the manifest's inputs as a new workflow run and run it until idle.
    pub async fn run(&self) -> Result<RunSummary, RunError> {
        self.run_as(Self::new_run_id()).await
    }

    /// A new run's id (a UUIDv7: runs sort by when they started).
    pub fn new_run_id() -> String {
        uuid::Uuid::now_v7().to_string()
    }

    /// [`Scheduler::run`] under a run id chosen by the caller (who names the run to
    /// others before it starts): an id no run in the store has.
    pub async fn run_as(&self, workflow_id: String) -> Result<RunSummary, RunError> {
        let started = Instant::now();
        let mut record = self.new_record(&workflow_id);
        // The lessons earlier runs left, chosen once: the run keeps them to its end.
        let wf = self.wf();
        if let Some(settings) = wf.manifest.lessons.as_ref().filter(|s| s.use_kept) {
            let kept = self.store.lessons(Some(wf.name()))?;
            let phases: Vec<String> = wf.manifest.phases.iter().map(|p| p.name.clone()).collect();
            record.lessons = crate::lessons::inject::choose(&kept, &phases, settings.max_chars);
        }
        wf.use_lessons(record.lessons.clone());
        drop(wf);
        self.store.save_run(&record)?;
        let mut state = CascadeState::default();
        let mut feed = InputFeed::new(&self.wf().manifest.inputs, 0);
        self.publish_inputs(&workflow_id, &mut state, &mut feed)?;
        self.drive(&workflow_id, &mut state, started, &mut record, feed)
            .await
    }

    /// Go on with a run a store holds (after a crash or a kill): invocations that were
    /// running are queued again, the scheduler's indexes are rebuilt from the store, and
    /// the run continues to the same end state an uninterrupted run reaches.
    pub async fn resume(&self, mut record: RunRecord) -> Result<RunSummary, RunError> {
        let started = Instant::now();
        let workflow_id = record.workflow_id.clone();
        // The run's budgets go on from what it had spent.
        if let (Some(usage), Some(llm)) = (&record.llm_usage, &self.wf().llm) {
            llm.restore(usage.clone());
        }
        if !record.status.resumable() {
            // It ended; resuming changes nothing.
            return self.summary(&workflow_id, record.status, started);
        }
        self.wf().use_lessons(record.lessons.clone());
        let requeued = self.store.requeue_running(&workflow_id)?;
        if requeued > 0 {
            tracing::info!(
                "resuming {workflow_id}: {requeued} interrupted invocation(s) queued again"
            );
        }
        record.status = RunStatus::Running;
        record.finished_at_ms = None;
        self.store.save_run(&record)?;
        let mut state = CascadeState::rebuild(
            self.store.as_ref(),
            &workflow_id,
            self.wf().manifest.policies.dedup.window,
        )?;
        // Inputs are published in manifest order, a chunk at a time: those on the
        // blackboard are a prefix, and the rest follow as in a new run.
        let published = self.inputs_published(&workflow_id)?;
        let mut feed = InputFeed::new(&self.wf().manifest.inputs, published);
        if published == 0 {
            // Killed before its first inputs were durable: start it properly.
            self.publish_inputs(&workflow_id, &mut state, &mut feed)?;
        }
        self.drive(&workflow_id, &mut state, started, &mut record, feed)
            .await
    }

    /// How many of the manifest's inputs a run has published: its artifacts produced by
    /// `user`, a name no plugin may take.
    fn inputs_published(&self, workflow_id: &str) -> Result<u64, StoreError> {
        let all = crate::blackboard::ArtifactQuery {
            workflow_id: workflow_id.to_string(),
            type_name: None,
            tags: Vec::new(),
            limit: usize::MAX,
        };
        let mut n = 0;
        self.store.read(&mut |board| {
            board.visit_recent(&all, &crate::artifact::Viewer::operator(), &mut |a| {
                if a.producer == "user" {
                    n += 1;
                }
                true
            })
        })?;
        Ok(n)
    }

    /// Publish the first chunk of the manifest's inputs (all of them if they refer to
    /// each other) as the run's first commit; the coordinator publishes the rest while
    /// the workers run (see `inputs.rs`).
    fn publish_inputs(
        &self,
        workflow_id: &str,
        state: &mut CascadeState,
        feed: &mut InputFeed,
    ) -> Result<(), RunError> {
        let wf = self.wf();
        let mut chunk = feed.next_chunk(&wf, workflow_id);
        place(&wf, &mut chunk, |phases| {
            cascade::known_work(state, self.store.as_ref(), phases)
        })?;
        self.publish_chunk(workflow_id, state, chunk)
    }

    /// Publish `inputs` in one commit: planned (keys and blockers among them), then
    /// published in order, like one agent's outputs.
    fn publish_chunk(
        &self,
        workflow_id: &str,
        state: &mut CascadeState,
        inputs: Vec<CheckedOutput>,
    ) -> Result<(), RunError> {
        if inputs.is_empty() {
            return Ok(());
        }
        let wf = self.wf();
        let mut cascade = Cascade::new(&wf, self.store.as_ref(), workflow_id);
        let plan = plan::blocking(&mut cascade, &inputs)?.map_err(RunError::Inputs)?;
        let mut ids = Vec::with_capacity(inputs.len());
        for (input, planned) in inputs.into_iter().zip(plan) {
            let placement = input.placement.map(|p| Checked::resolve(*p, &ids));
            ids.push(cascade.publish(
                Draft {
                    id: planned.id,
                    type_name: input.type_name,
                    payload: input.payload,
                    producer: "user".into(),
                    tags: input.tags,
                    visibility: input.visibility,
                    routing: input.routing,
                    blocked_by: planned.blocked_by,
                    placement,
                    ..Default::default()
                },
                state,
            )?);
        }
        let events = cascade.commit()?;
        self.emit(workflow_id, events);
        Ok(())
    }

    /// Publish an artifact sent from outside the run, and answer the sender.
    fn publish_external(
        &self,
        workflow_id: &str,
        state: &mut CascadeState,
        mut publish: Publish,
    ) -> Result<(), RunError> {
        let outcome = self.try_publish_external(workflow_id, state, &mut publish);
        let failed = match &outcome {
            Err(PublishError::Failed(message)) => Some(message.clone()),
            _ => None,
        };
        let _ = publish.reply.send(outcome);
        match failed {
            Some(message) => Err(RunError::Inputs(message)),
            None => Ok(()),
        }
    }

    fn try_publish_external(
        &self,
        workflow_id: &str,
        state: &mut CascadeState,
        publish: &mut Publish,
    ) -> Result<Published, PublishError> {
        let wf = self.wf();
        wf.types
            .validate(&publish.type_name, &publish.payload)
            .map_err(PublishError::from_schema)?;
        if let Some(key) = &publish.key {
            let existing = self
                .store
                .idempotency_key(workflow_id, &key.key)
                .map_err(|e| PublishError::Failed(e.to_string()))?;
            if let Some(settled) = external::settled_by_key(existing, key) {
                return settled;
            }
        }
        let mut output = external::output(publish);
        if output.type_name == WORK_DISCOVERY
            && let Some(router) = &wf.router
        {
            output.routing = router.place(&mut output.payload, API_PRODUCER, workflow_id);
        }
        let mut outputs = [output];
        place(&wf, &mut outputs, |phases| {
            cascade::known_work(state, self.store.as_ref(), phases)
        })
        .map_err(|e| PublishError::Failed(e.to_string()))?;
        let [output] = outputs;
        let mut cascade = Cascade::new(&wf, self.store.as_ref(), workflow_id);
        let failed = |e: StoreError| PublishError::Failed(e.to_string());
        // A discovery naming blockers the run does not hold is the client's mistake.
        let plan = plan::blocking(&mut cascade, std::slice::from_ref(&output))
            .map_err(failed)?
            .map_err(|m| PublishError::Invalid {
                type_name: output.type_name.to_string(),
                problems: vec![Problem {
                    pointer: "/blocking_work_ids".into(),
                    message: m,
                }],
            })?;
        let planned = plan.into_iter().next();
        let placement = output.placement.map(|p| Checked::resolve(*p, &[]));
        let id = cascade
            .publish(
                Draft {
                    id: planned.as_ref().and_then(|p| p.id),
                    type_name: output.type_name,
                    payload: output.payload,
                    producer: API_PRODUCER.into(),
                    tags: output.tags,
                    visibility: output.visibility,
                    routing: output.routing,
                    blocked_by: planned.map(|p| p.blocked_by).unwrap_or_default(),
                    placement,
                    ..Default::default()
                },
                state,
            )
            .map_err(failed)?;
        if let Some(key) = publish.key.take() {
            cascade.keys.push(crate::blackboard::KeyRecord {
                workflow_id: workflow_id.to_string(),
                key: key.key,
                request_sha256: key.request_sha256,
                artifact: id,
            });
        }
        let events = cascade
            .commit()
            .map_err(|e| PublishError::Failed(e.to_string()))?;
        self.emit(workflow_id, events);
        Ok(Published::Created(id))
    }

    async fn drive(
        &self,
        workflow_id: &str,
        state: &mut CascadeState,
        started: Instant,
        run: &mut RunRecord,
        feed: InputFeed,
    ) -> Result<RunSummary, RunError> {
        // The coordinator blocks (it waits on the pool's condition variable while the
        // run's own runtime runs the workers), so this thread leaves the caller's
        // runtime's worker set meanwhile.
        tokio::task::block_in_place(|| self.drive_blocking(workflow_id, state, started, run, feed))
    }

    fn drive_blocking(
        &self,
        workflow_id: &str,
        state: &mut CascadeState,
        started: Instant,
        run: &mut RunRecord,
        feed: InputFeed,
    ) -> Result<RunSummary, RunError> {
        let wf = self.wf();
        if let Some(llm) = &wf.llm {
            // A stop drops the model calls still waiting to be made.
            let llm = llm.clone();
            self.stop.on_stop(Box::new(move || llm.cancel()));
        }
        let limits = wf.limits().clone();
        let monitoring = wf.manifest.policies.monitoring.clone();
        drop(wf);
        let mut started_invocations = 0;
        self.store.scan(workflow_id, &mut |_, invocations| {
            started_invocations = invocations.iter().filter(|i| i.attempts > 0).count() as u64;
        })?;
        let mut reloads = self.reloads.lock().ok().and_then(|mut r| r.take());
        let mut requests = self.requests.lock().ok().and_then(|mut p| p.take());
        let pool = pool::Pool::new(pool::Shared::new(
            std::mem::take(state),
            started_invocations,
            &monitoring,
            run.clone(),
            limits.concurrency,
        ));
        // The run's own runtime: its threads are the bound on guest CPU work.
        let threads = limits.threads.max(1);
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(threads)
            .thread_name("murmur-worker")
            .enable_all()
            .build()
            .map_err(|e| RunError::Worker(format!("cannot start the worker threads: {e}")))?;
        let shared_run = Arc::new(pool::Run {
            scheduler: self.clone(),
            workflow_id: workflow_id.to_string(),
            pool,
            max_invocations: limits.max_invocations,
            monitoring: monitoring.clone(),
            runtime: runtime.handle().clone(),
            span: tracing::info_span!(
                "invoke_workflow",
                otel.name = format!("invoke_workflow {}", self.wf().name()).as_str(),
                otel.kind = "internal",
                gen_ai.operation.name = "invoke_workflow",
                gen_ai.workflow.name = self.wf().name(),
                murmur.workflow.id = workflow_id,
            ),
        });
        shared_run.start(threads);
        if requests.is_some() {
            let run = Arc::downgrade(&shared_run);
            *self.wake.lock().unwrap_or_else(|p| p.into_inner()) = Some(Box::new(move || {
                if let Some(run) = run.upgrade() {
                    // Under the pool's lock: the coordinator is either before its look
                    // at the requests or waiting, never between.
                    let _g = run.pool.lock();
                    run.pool.wake_coordinator();
                }
            }));
        }
        let outcome = self.coordinate(
            workflow_id,
            &shared_run.pool,
            feed,
            &mut reloads,
            &mut requests,
            &monitoring,
        );
        // No request wakes the loop any more (a wake in progress is waited for).
        *self.wake.lock().unwrap_or_else(|p| p.into_inner()) = None;
        // What runs finishes and commits; then the runtime, and every task's hold on
        // the run, are gone.
        shared_run.join();
        drop(runtime);
        let shared = match Arc::try_unwrap(shared_run) {
            Ok(r) => r.pool.into_shared(),
            Err(_) => {
                return Err(RunError::Worker("a worker task outlived its run".into()));
            }
        };
        *state = shared.state;
        run.agent_times = shared.run.agent_times;
        if let Some(samples) = &self.dispatch_samples
            && let Ok(mut v) = samples.lock()
        {
            v.extend_from_slice(&shared.samples);
        }
        outcome?;
        if self.stop.stopping() {
            // Interrupted: what ran is committed; the run stays `running` for `resume`.
            let mut summary = self.summary(workflow_id, RunStatus::Running, started)?;
            summary.llm = self.wf().llm.as_ref().map(|l| l.usage());
            summary.add_times(&run.agent_times);
            run.llm_usage = summary.llm.clone();
            self.store.save_run(run)?;
            self.emit(
                workflow_id,
                vec![Event::RunEnded {
                    status: RunStatus::Running,
                }],
            );
            self.store.flush()?;
            return Ok(summary);
        }
        let budget_hit = shared.budget_hit;
        let outage = self.wf().llm.as_ref().and_then(|l| l.outage());
        let mut summary = match outage {
            // The provider is out of reach: the open work waits for it, and is not
            // stalled, so it keeps no stall reason.
            Some(outage) => {
                let mut s = self.summary(workflow_id, RunStatus::ProviderUnavailable, started)?;
                for w in s.open_work.iter_mut().filter(|w| w.reason.is_empty()) {
                    w.reason = format!(
                        "waits for the model provider ({}): `murmur resume` once it answers",
                        outage.url
                    );
                }
                s.provider = Some(outage);
                s
            }
            None => self.finish(workflow_id, budget_hit, started)?,
        };
        run.status = summary.status;
        // Before the usage is read: the retrospective's model calls count with the run.
        self.learn(run);
        summary.llm = self.wf().llm.as_ref().map(|l| l.usage());
        summary.add_times(&run.agent_times);
        run.llm_usage = summary.llm.clone();
        run.finished_at_ms = Some(now_ms());
        summary.add_lessons(run);
        run.summary = serde_json::to_value(&summary).ok();
        self.store.save_run(run)?;
        self.emit(
            workflow_id,
            vec![Event::RunEnded {
                status: summary.status,
            }],
        );
        self.store.flush()?;
        Ok(summary)
    }

    /// At the end of a run that ended for good, with `[lessons]` in its manifest: judge
    /// the lessons it used and distil its findings (see `lessons::distill`). What goes
    /// wrong there is reported with the run and never changes how it ended.
    fn learn(&self, run: &mut RunRecord) {
        let wf = self.wf();
        if wf.manifest.lessons.is_none() || run.distilled.is_some() {
            return;
        }
        if !matches!(
            run.status,
            RunStatus::Complete
                | RunStatus::Failed
                | RunStatus::Stalled
                | RunStatus::BudgetExhausted
        ) {
            return;
        }
        let distilled = tokio::runtime::Handle::current().block_on(
            crate::lessons::distill::distill(&wf, &self.store, run, true),
        );
        run.distilled = Some(Box::new(distilled.unwrap_or_else(|e| {
            crate::lessons::distill::Distilled {
                error: Some(format!("the lessons could not be kept: {e}")),
                ..Default::default()
            }
        })));
    }

    /// Publish an invocation's outputs with its completion, or retry it, or record its
    /// failure (and spawn recovery work).
    fn complete(
        &self,
        workflow_id: &str,
        executed: Executed,
        state: &mut CascadeState,
    ) -> Result<(), RunError> {
        let wf = self.wf();
        let Executed {
            mut record,
            result,
            given_back,
            ..
        } = executed;
        let mut cascade = Cascade::new(&wf, self.store.as_ref(), workflow_id);
        if given_back && result.is_err() {
            // The provider's outage or the run's stop failed it, not the work: queued
            // again as it was, its attempt not counted, for `resume` (the run claims
            // nothing more).
            record.attempts = record.attempts.saturating_sub(1);
            record.status = InvocationStatus::Queued;
            tracing::info!(agent = %record.agent, invocation = %record.id, "its model call could not be made (provider unavailable or run stopping): left queued");
            cascade.update_invocation(record);
            let events = cascade.commit()?;
            self.emit(workflow_id, events);
            return Ok(());
        }
        let result = match result {
            Ok(outputs) => match plan::blocking(&mut cascade, &outputs)? {
                Ok(plan) => Ok((outputs, plan)),
                Err(message) => Err(Failure::Invoke(InvokeError::Fault(Fault {
                    kind: FaultKind::InvalidOutput,
                    message,
                }))),
            },
            Err(e) => Err(e),
        };
        let event = match result {
            Ok((outputs, plan)) => {
                self.publish_outputs(&mut cascade, state, record, outputs, plan)?
            }
            Err(failure) => Some(self.fail_or_retry(&mut cascade, state, record, failure)?),
        };
        let mut events = cascade.commit()?;
        events.extend(event);
        self.emit(workflow_id, events);
        Ok(())
    }

    fn publish_outputs(
        &self,
        cascade: &mut Cascade<'_>,
        state: &mut CascadeState,
        mut record: InvocationRecord,
        outputs: Vec<CheckedOutput>,
        plan: Vec<plan::Planned>,
    ) -> Result<Option<Event>, RunError> {
        let watched = self.watched();
        let mut types = Vec::with_capacity(if watched { outputs.len() } else { 0 });
        // The record keeps its output ids for the rest of the run: room for exactly these
        // (a first push would reserve four, 64 bytes, for the usual one or two).
        let mut ids = Vec::with_capacity(outputs.len());
        for (out, planned) in outputs.into_iter().zip(plan) {
            if watched {
                types.push(out.type_name.clone());
            }
            let placement = out.placement.map(|p| Checked::resolve(*p, &ids));
            let id = cascade.publish(
                Draft {
                    id: planned.id,
                    type_name: out.type_name,
                    payload: out.payload,
                    producer: record.agent.clone(),
                    parent_ids: record.inputs.to_vec(),
                    tags: out.tags,
                    visibility: out.visibility,
                    depth: record.depth + 1,
                    inherited_work: record.work_item,
                    blocked_by: planned.blocked_by,
                    routing: out.routing,
                    recovery_of: None,
                    payload_text: out.text,
                    placement,
                },
                state,
            )?;
            ids.push(id);
        }
        record.outputs = ids.into_boxed_slice();
        record.status = InvocationStatus::Done;
        record.clear_error();
        // An observer's completion decides nothing about the work it watched.
        if let Some(w) = record.work_item.filter(|_| !record.observer) {
            let mut done = false;
            if let Some(item) = cascade.work_item(&w)? {
                item.open_invocations = item.open_invocations.saturating_sub(1);
                if item.open_invocations == 0 && item.status() == WorkStatus::Active {
                    item.finish()?;
                    done = true;
                }
            }
            if done {
                cascade.release(&w, state)?;
            }
        }
        let event = watched.then(|| Event::InvocationDone {
            agent: record.agent.clone(),
            invocation: record.id,
            outputs: types,
        });
        cascade.update_invocation(record);
        Ok(event)
    }

    fn fail_or_retry(
        &self,
        cascade: &mut Cascade<'_>,
        state: &mut CascadeState,
        mut record: InvocationRecord,
        failure: Failure,
    ) -> Result<Event, RunError> {
        let wf = self.wf();
        let (fault, message, retryable, reasons) = match failure {
            Failure::Invoke(InvokeError::Fault(f)) => {
                (Some(f.kind), f.message.clone(), false, vec![f.message])
            }
            Failure::Invoke(e @ InvokeError::Plugin(_)) => {
                let retryable = matches!(e, InvokeError::Plugin(PluginError::Retryable(_)));
                let message = e.to_string();
                (None, message.clone(), retryable, vec![message])
            }
            Failure::Refused(Refusal::Rejected { by, reasons }) => {
                record.setback_mut().rejections += 1;
                let message = format!("outputs rejected by {by}: {}", reasons.join("; "));
                (None, message, true, reasons)
            }
            Failure::Refused(Refusal::ValidatorFailed { by, error }) => {
                let fault = match &error {
                    InvokeError::Fault(f) => Some(f.kind),
                    InvokeError::Plugin(_) => None,
                };
                let message = format!("validator '{by}' could not judge the outputs: {error}");
                (fault, message.clone(), false, vec![message])
            }
        };
        let policy = &wf.manifest.policies.retry;
        if retryable && record.attempts < policy.max_attempts {
            let setback = record.setback_mut();
            setback.retries += 1;
            let backoff = policy.backoff(setback.retries);
            setback.not_before_ms = now_ms() + backoff.as_millis() as u64;
            setback.feedback = reasons;
            setback.error = Some(message.clone());
            record.status = InvocationStatus::Queued;
            tracing::info!(agent = %record.agent, invocation = %record.id, "attempt {} refused: {message}; retrying", record.attempts);
            let event = Event::InvocationRetrying {
                agent: record.agent.clone(),
                invocation: record.id,
                attempt: record.attempts,
                reason: message,
                backoff_ms: backoff.as_millis() as u64,
            };
            cascade.update_invocation(record);
            return Ok(event);
        }
        match fault {
            Some(kind) => {
                tracing::warn!(agent = %record.agent, invocation = %record.id, "fault ({kind}): {message}")
            }
            None => tracing::info!(agent = %record.agent, invocation = %record.id, "{message}"),
        }
        record.status = InvocationStatus::Failed;
        let setback = record.setback_mut();
        setback.fault = fault;
        setback.error = Some(message.clone());
        // An observer's failure fails only itself: not the work it watched, and no
        // recovery is spawned for it.
        if let Some(w) = record.work_item.filter(|_| !record.observer) {
            let mut newly_failed = None;
            if let Some(item) = cascade.work_item(&w)? {
                item.open_invocations = item.open_invocations.saturating_sub(1);
                if item.status() != WorkStatus::Failed {
                    item.fail(format!("{}: {message}", record.agent))?;
                    newly_failed = Some(item.clone());
                }
            }
            if let Some(item) = newly_failed {
                self.recover(
                    cascade,
                    state,
                    &item,
                    (&record.agent, record.depth),
                    &message,
                )?;
            }
        }
        let event = Event::InvocationFailed {
            agent: record.agent.clone(),
            invocation: record.id,
            fault,
            message,
        };
        cascade.update_invocation(record);
        Ok(event)
    }

    /// Spawn one recovery WorkDiscovery for `failed`, unless recovery is off, the work
    /// already descends from recovery (so recovery never loops), or the cap is reached.
    fn recover(
        &self,
        cascade: &mut Cascade<'_>,
        state: &mut CascadeState,
        failed: &WorkItem,
        (by, depth): (&str, u32),
        message: &str,
    ) -> Result<(), RunError> {
        let wf = self.wf();
        let policy = &wf.manifest.policies.recovery;
        let Some(phase) = wf.recovery_phase() else {
            return Ok(());
        };
        if !policy.enabled || failed.in_recovery {
            return Ok(());
        }
        if state.recovery_spawned >= policy.max {
            tracing::warn!(work = %failed.id, "recovery cap of {} reached; no recovery work spawned", policy.max);
            return Ok(());
        }
        let error: String = message.chars().take(500).collect();
        let payload = json!({
            "description": format!("Recover from failed work '{}': {by}: {error}", failed.description),
            "phase": phase,
            "priority": "critical",
            "done_definition": "Failure analysed and a recovery plan created",
            "discovered_by": "host",
            "parent_work_id": failed.id.to_string(),
            "tags": ["recovery"],
            "metadata": {
                "recovery_of": failed.id.to_string(),
                "failed_phase": failed.phase,
                "agent": by,
                "error": error,
            },
        });
        let id = cascade.publish(
            Draft {
                type_name: WORK_DISCOVERY.into(),
                payload,
                producer: "host".into(),
                parent_ids: vec![failed.id],
                tags: vec!["recovery".into()],
                depth: depth + 1,
                inherited_work: Some(failed.id),
                recovery_of: Some(failed.id),
                ..Default::default()
            },
            state,
        )?;
        state.recovery_spawned += 1;
        cascade.events.push(Event::RecoverySpawned {
            failed: failed.id.to_string(),
            recovery: id.to_string(),
        });
        Ok(())
    }

    fn has_open_work(&self, workflow_id: &str) -> Result<bool, RunError> {
        Ok(self
            .tally(workflow_id)?
            .phases
            .values()
            .any(|c| c.open() > 0))
    }

    /// What the run's records add up to: the store's tally, counted afresh where the
    /// store keeps none.
    fn tally(&self, workflow_id: &str) -> Result<Tally, RunError> {
        Ok(Tally::of(self.store.as_ref(), workflow_id)?)
    }

    /// Swap in a hot-loaded version of the workflow (or report why one was rejected), and
    /// offer the work no agent has taken yet to the new version's agents.
    fn apply_reload(
        &self,
        workflow_id: &str,
        reload: Reload,
        state: &mut CascadeState,
    ) -> Result<(), RunError> {
        let (workflow, bundles) = match reload {
            Reload::Rejected { file, message } => {
                tracing::warn!("hot load of {} rejected: {message}", file.display());
                self.emit(
                    workflow_id,
                    vec![Event::ReloadRejected {
                        file: file.display().to_string(),
                        message,
                    }],
                );
                return Ok(());
            }
            Reload::Swapped { workflow, bundles } => (workflow, bundles),
        };
        let before: Vec<String> = self
            .wf()
            .plugins
            .iter()
            .map(|p| p.name.to_string())
            .collect();
        let plugins: Vec<String> = workflow
            .plugins
            .iter()
            .map(|p| format!("{}@{}", p.name, &p.sha256[..12.min(p.sha256.len())]))
            .collect();
        let added: Vec<String> = workflow
            .plugins
            .iter()
            .map(|p| p.name.to_string())
            .filter(|n| !before.contains(n))
            .collect();
        // The run goes on with the lessons it started with.
        workflow.use_lessons(self.wf().lessons_in_use());
        match self.current.write() {
            Ok(mut w) => *w = workflow.clone(),
            Err(p) => *p.into_inner() = workflow.clone(),
        }
        let mut cascade = Cascade::new(&workflow, self.store.as_ref(), workflow_id);
        let waiting: Vec<ArtifactId> = self
            .store
            .work_items(workflow_id)?
            .into_iter()
            .filter(|w| w.status() == WorkStatus::Pending && w.invocations == 0)
            .map(|w| w.id)
            .collect();
        for id in &waiting {
            if let Some(a) = self.store.artifact(id)? {
                cascade.offer(&a, state)?;
            }
        }
        let mut events = cascade.commit()?;
        events.push(Event::PluginsLoaded {
            bundles: bundles.iter().map(|b| b.display().to_string()).collect(),
            added,
            plugins,
        });
        self.emit(workflow_id, events);
        Ok(())
    }

    /// Why open work that nothing is running for was never taken: no agent subscribes
    /// to it, or only the agent that published it does (agents do not take their own
    /// outputs unless a subscription sets `allow_self`).
    fn why_untaken(&self, wf: &Workflow, id: &ArtifactId, phase: &str) -> Result<String, RunError> {
        let Some(artifact) = self.store.artifact(id)? else {
            return Ok(format!(
                "no agent subscribes to this work (phase '{phase}')"
            ));
        };
        let own = wf.agents.iter().find(|a| {
            a.name() == artifact.producer.as_str()
                && a.subscriptions.iter().any(|s| {
                    !s.allow_self && s.matches_whoever_published(&artifact).unwrap_or(false)
                })
        });
        Ok(match own {
            Some(agent) => format!(
                "only '{}' subscribes to this work (phase '{phase}'), and it published it: an agent does not take its own outputs unless its [[plugin.subscribe]] sets allow_self = true",
                agent.name()
            ),
            None => format!("no agent subscribes to this work (phase '{phase}')"),
        })
    }

    /// Publish a WorkflowMetrics artifact with the current counts.
    fn publish_metrics(&self, workflow_id: &str, state: &mut CascadeState) -> Result<(), RunError> {
        let wf = self.wf();
        state.metrics_dirty = false;
        let payload = metrics::snapshot(&wf, self.store.as_ref(), workflow_id)?;
        let mut cascade = Cascade::new(&wf, self.store.as_ref(), workflow_id);
        cascade.publish(
            Draft {
                type_name: WORKFLOW_METRICS.into(),
                payload,
                producer: "host".into(),
                ..Default::default()
            },
            state,
        )?;
        let events = cascade.commit()?;
        self.emit(workflow_id, events);
        Ok(())
    }

    /// The summary of a run that has ended with `status`, from the store.
    fn summary(
        &self,
        workflow_id: &str,
        status: RunStatus,
        started: Instant,
    ) -> Result<RunSummary, RunError> {
        let wf = self.wf();
        Ok(RunSummary::from_store(
            self.store.as_ref(),
            wf.name(),
            workflow_id,
            wf.manifest.phases.iter().map(|p| p.name.clone()),
            status,
            started.elapsed().as_millis() as u64,
        )?)
    }

    fn finish(
        &self,
        workflow_id: &str,
        budget_hit: bool,
        started: Instant,
    ) -> Result<RunSummary, RunError> {
        let wf = self.wf();
        // Counted from the store's tally and the notable work: never the run's history.
        let tally = self.tally(workflow_id)?;
        let total_work: u64 = tally.phases.values().map(PhaseCounts::total).sum();
        let any_open = tally.phases.values().any(|c| c.open() > 0);
        let phases_completed: std::collections::BTreeSet<&Name> = tally
            .phases
            .iter()
            .filter(|(_, c)| c.done > 0)
            .map(|(p, _)| p)
            .collect();
        let ran = tally.ran;
        let failed: u64 = tally.agents.values().map(|a| a.failed).sum();
        let mut open = Vec::new();
        let mut unrecovered = 0;
        self.store.notable_work(workflow_id, &mut |notable| {
            unrecovered = crate::work::unrecovered_failures(notable).len();
            open = notable
                .iter()
                .filter(|w| !w.status().is_final())
                .map(|w| WorkItem::clone(w))
                .collect();
        })?;
        let status = if budget_hit {
            RunStatus::BudgetExhausted
        } else if any_open {
            // Nothing is queued or running, so open work has no agent that will take it,
            // or waits for blockers that will never be done.
            let mut cascade = Cascade::new(&wf, self.store.as_ref(), workflow_id);
            for w in &open {
                let reason = if w.status() == WorkStatus::AwaitingApproval {
                    let until = match w.approval().and_then(|a| a.expires_at_ms) {
                        Some(at) => format!(", until {at} ms after the Unix epoch"),
                        None => String::new(),
                    };
                    format!(
                        "awaits a person's approval{until}: `murmur approve` or `reject`, then `murmur resume`"
                    )
                } else if w.status() == WorkStatus::Blocked {
                    let blockers: Vec<String> = w
                        .blocked_by()
                        .iter()
                        .map(|b| match self.store.work_item(b) {
                            Ok(Some(x)) => {
                                format!("{} '{}' ({})", x.id, x.description, x.status())
                            }
                            _ => b.to_string(),
                        })
                        .collect();
                    format!(
                        "blocked by work that can never finish: {}",
                        blockers.join(", ")
                    )
                } else {
                    self.why_untaken(&wf, &w.id, &w.phase)?
                };
                if let Some(item) = cascade.work_item(&w.id)?
                    && (item.reason().is_none()
                        || matches!(
                            item.status(),
                            WorkStatus::Blocked | WorkStatus::AwaitingApproval
                        ))
                {
                    item.set_reason(Some(reason));
                }
            }
            cascade.commit()?;
            if open
                .iter()
                .all(|w| w.status() == WorkStatus::AwaitingApproval)
            {
                RunStatus::Waiting
            } else {
                RunStatus::Stalled
            }
        } else if unrecovered > 0 {
            RunStatus::Failed
        } else {
            RunStatus::Complete
        };
        let counts = self.store.counts(workflow_id)?;
        let recorded = counts.by_type.contains_key(WORKFLOW_COMPLETE);
        if status == RunStatus::Complete && !recorded {
            let payload = json!({
                        "status": "complete",
                        "phases_completed": phases_completed,
                        "total_work_items": total_work,
                        "artifacts": counts.total + 1,
                        "invocations": ran,
                        "failed_invocations": failed,
                        "by_type": counts.by_type,
                        "elapsed_ms": started.elapsed().as_millis() as u64,
            });
            // The host's own payloads obey the same schemas as everyone's.
            if let Err(e) = wf.types.validate(WORKFLOW_COMPLETE, &payload) {
                return Err(RunError::Worker(format!(
                    "host produced an invalid WorkflowComplete: {e}"
                )));
            }
            let mut state = CascadeState::default();
            let mut cascade = Cascade::new(&wf, self.store.as_ref(), workflow_id);
            cascade.publish(
                Draft {
                    type_name: WORKFLOW_COMPLETE.into(),
                    payload,
                    producer: "host".into(),
                    parent_ids: Vec::<ArtifactId>::new(),
                    visibility: Visibility::Public,
                    ..Default::default()
                },
                &mut state,
            )?;
            cascade.commit()?;
        }
        self.summary(workflow_id, status, started)
    }
}

/// Score `outputs`' WorkDiscoveries for deduplication, when the workflow's placement
/// needs a plugin or a model: `known` reads the work they may duplicate (under the run's
/// lock, briefly, when the caller holds none); the scoring itself holds no lock.
fn place(
    wf: &Workflow,
    outputs: &mut [CheckedOutput],
    known: impl FnOnce(
        &[String],
    )
        -> Result<std::collections::HashMap<String, crate::placement::Known>, StoreError>,
) -> Result<(), StoreError> {
    let Some(scorer) = wf.placement.as_deref() else {
        return Ok(());
    };
    let policy = &wf.manifest.policies.dedup;
    if !policy.enabled {
        return Ok(());
    }
    let mut positions = Vec::new();
    let mut batch = Vec::new();
    for (i, out) in outputs.iter().enumerate() {
        if out.type_name != WORK_DISCOVERY {
            continue;
        }
        let text = |k: &str| {
            out.payload
                .get(k)
                .and_then(|v| v.as_str())
                .unwrap_or_default()
                .to_string()
        };
        positions.push(i);
        batch.push(crate::placement::Pending {
            phase: text("phase"),
            description: text("description"),
            wire: crate::plugin::bindings::types::Artifact {
                tags: out.tags.clone(),
                visibility: crate::plugin::convert::visibility_to_wit(&out.visibility),
                ..crate::plugin::convert::unpublished(WORK_DISCOVERY, &out.payload, "", "")
            },
            position: i,
        });
    }
    if batch.is_empty() {
        return Ok(());
    }
    let phases: Vec<String> = batch.iter().map(|d| d.phase.clone()).collect();
    let known = known(&phases)?;
    let fallback = crate::placement::Lexical {
        threshold: policy.threshold,
    };
    let placements = crate::placement::place(scorer, &fallback, &batch, &known);
    for (i, placement) in positions.into_iter().zip(placements) {
        outputs[i].placement = Some(Box::new(placement));
    }
    Ok(())
}
