//! The run loop: worker tasks on a runtime of a few threads, and one coordinator.
//!
//! Each worker task claims an invocation, runs it in its sandbox *outside* the run's lock,
//! then takes the lock to publish the result and claims the next one — so a busy run
//! costs no hand-off per invocation (an earlier design sent every invocation to a thread
//! pool and every result back through a channel, and the futex traffic of those two
//! wake-ups was a third of the profile). The lock is the single owner of every commit:
//! state changes happen one at a time, in one order.
//!
//! Two bounds, two mechanisms. Guest CPU work runs only on the run's runtime threads
//! (`[workflow.limits] threads`, default the CPU count): a guest is a fiber polled by a
//! task, and yields every epoch tick. Invocations *in flight* are worker tasks
//! (`[workflow.limits] concurrency`, default 1,024): an invocation waiting in a host call
//! (a model's answer) is a suspended task holding no thread, and a worker that starts
//! waiting lends a hand — it starts another worker task, unless one is idle or the bound is
//! reached. A run of CPU-bound agents so keeps as many tasks as threads; a run of agents
//! waiting on models grows to as many as it has work for, up to the bound.
//!
//! The coordinator (the thread that called [`super::Scheduler::run`]) first publishes the
//! manifest's remaining inputs, a chunk at a time, while the workers take what is queued
//! (`inputs.rs`). Then it sleeps until the workers find nothing to claim while nothing
//! runs. Then it decides what comes next:
//! wait out a retry's backoff, publish the run's last WorkflowMetrics, wait for a hot load
//! that can take open work, or end the run. While the workers are busy it only wakes to
//! apply hot loads.

use super::execute;
use super::inputs::InputFeed;
use super::{RunError, Scheduler, cascade::CascadeState};
use crate::artifact::now_ms;
use crate::blackboard::RunRecord;
use crate::blackboard::tally::Tally;
use crate::hotload::Reload;
use crate::invocation::InvocationRecord;
use crate::observe::Event;
use crate::policy::MonitoringPolicy;
use parking_lot::{Condvar, Mutex, MutexGuard};
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::Notify;
use tokio::sync::mpsc::{UnboundedReceiver, error::TryRecvError};
use tracing::Instrument;

/// How often a coordinator that watches for hot loads looks for one.
const RELOAD_POLL: Duration = Duration::from_millis(20);

/// The manifest's inputs are published while fewer than this many invocations wait in
/// the queue: far enough ahead that the workers never run dry (half a second of the
/// cascade's invocations) and that a run of up to this many inputs takes them all at
/// once, as it did before inputs waited for room; near enough that a run of 100,000
/// inputs does not hold all of their work open, and in memory, at once. At 4,096 the
/// cascade of 10,000 inputs interleaved its generations and measured slower.
const FEED_AHEAD: u64 = 16_384;

/// How often the coordinator looks whether the queue has room for more inputs.
const FEED_POLL: Duration = Duration::from_millis(2);

/// Everything the workers and the coordinator share, under one lock.
pub(super) struct Shared {
    /// The scheduler's indexes and counters.
    pub state: CascadeState,
    /// Invocations claimed and not yet completed.
    running: usize,
    /// Invocations started in this run, for `max_invocations`.
    started: u64,
    /// A budget (invocations or LLM tokens) stopped new invocations.
    pub budget_hit: bool,
    /// The model provider is out of reach: nothing more is claimed.
    halted: bool,
    /// Nothing runs and nothing could be claimed: the coordinator's turn.
    quiescent: bool,
    /// The run is over; workers return.
    done: bool,
    /// What stopped the run, if something failed.
    error: Option<RunError>,
    /// Workers waiting for something to claim.
    waiting: usize,
    /// Worker tasks alive.
    live: usize,
    /// Worker tasks alive at most: invocations in flight.
    max_live: usize,
    last_metrics: Instant,
    /// Dispatch times, µs (when the caller asked for them).
    pub samples: Vec<u32>,
    /// The run's record, saved again whenever its model usage changes, and its agents'
    /// times at most every [`RECORD_EVERY`].
    pub run: RunRecord,
    last_saved: Instant,
}

/// How often a busy run saves its agents' times in its record.
const RECORD_EVERY: Duration = Duration::from_secs(1);

impl Shared {
    /// The loop's shared state for a run that has started `started` invocations before.
    pub(super) fn new(
        state: CascadeState,
        started: u64,
        monitoring: &MonitoringPolicy,
        run: RunRecord,
        max_live: usize,
    ) -> Self {
        Self {
            run,
            last_saved: Instant::now(),
            live: 0,
            max_live: max_live.max(1),
            state,
            running: 0,
            started,
            budget_hit: false,
            halted: false,
            quiescent: false,
            done: false,
            error: None,
            waiting: 0,
            // The first change publishes at once; then at most one per interval.
            last_metrics: Instant::now()
                .checked_sub(Duration::from_millis(monitoring.interval_ms))
                .unwrap_or_else(Instant::now),
            samples: Vec::new(),
        }
    }
}

/// The lock and the two wake-up signals.
pub(super) struct Pool {
    shared: Mutex<Shared>,
    /// Idle worker tasks wait here for work: a completion wakes one, which wakes the next
    /// if it found work (no herd of wake-ups per commit).
    work: Notify,
    /// The coordinator (a thread) waits here for quiescence, an error, or the last worker.
    idle: Condvar,
}

impl Pool {
    pub(super) fn new(shared: Shared) -> Self {
        Self {
            shared: Mutex::new(shared),
            work: Notify::new(),
            idle: Condvar::new(),
        }
    }

    /// Wake the coordinator (a request from outside the run has come).
    pub(super) fn wake_coordinator(&self) {
        self.idle.notify_all();
    }

    pub(super) fn lock(&self) -> MutexGuard<'_, Shared> {
        // parking_lot's mutex spins briefly before it parks: the loop's holds are a few
        // microseconds, and on two cores the holder is almost always running. A panic
        // under the lock is turned into a run error (see `worker`).
        self.shared.lock()
    }

    /// The shared state, once every worker has stopped.
    pub(super) fn into_shared(self) -> Shared {
        self.shared.into_inner()
    }
}

/// Stop the run with `error`: wake everyone so they see it.
fn fail(pool: &Pool, g: &mut Shared, error: RunError) {
    if g.error.is_none() {
        g.error = Some(error);
    }
    g.done = true;
    pool.work.notify_waiters();
    pool.idle.notify_all();
}

/// What one run's worker tasks share: they are spawned on the run's runtime, so they own
/// what they use (the scheduler is cloned: a clone is the same scheduler).
pub(super) struct Run {
    pub scheduler: Scheduler,
    pub workflow_id: String,
    pub pool: Pool,
    pub max_invocations: u64,
    pub monitoring: MonitoringPolicy,
    pub runtime: tokio::runtime::Handle,
    /// The run's trace span (`invoke_workflow`): every invocation's span is its child.
    /// Disabled, as are the others, unless a subscriber exports spans.
    pub span: tracing::Span,
}

impl Run {
    /// Start one more worker task if none is idle and the bound allows (`g` is the
    /// pool's state, locked).
    fn more_hands(self: &Arc<Self>, g: &mut Shared) {
        if g.waiting == 0 && g.live < g.max_live && !g.done {
            g.live += 1;
            self.runtime.spawn(worker(self.clone()));
        }
    }

    /// Start the first `n` worker tasks.
    pub(super) fn start(self: &Arc<Self>, n: usize) {
        let mut g = self.pool.lock();
        for _ in 0..n.min(g.max_live) {
            g.live += 1;
            self.runtime.spawn(worker(self.clone()));
        }
    }

    /// Wait (on the coordinator's thread) until every worker task has returned.
    pub(super) fn join(&self) {
        let mut g = self.pool.lock();
        while g.live > 0 {
            self.pool.idle.wait(&mut g);
        }
    }
}

/// A worker task's presence: when it ends — returned, or unwound by a panic (a bug in the
/// host, not a plugin fault) — the run learns it.
struct Alive<'a>(&'a Run);

impl Drop for Alive<'_> {
    fn drop(&mut self) {
        let pool = &self.0.pool;
        let mut g = pool.lock();
        g.live -= 1;
        if std::thread::panicking() {
            g.running = g.running.saturating_sub(1);
            fail(
                pool,
                &mut g,
                RunError::Worker("a worker panicked (its message is in the log above)".into()),
            );
        }
        pool.idle.notify_all();
    }
}

/// An invocation's trace span, named and attributed as OpenTelemetry's conventions for
/// generative-AI agents name them (`invoke_agent {agent}`). The fields are computed only
/// when a subscriber wants the span.
fn invocation_span(
    run: &tracing::Span,
    wf: &crate::workflow::Workflow,
    record: &InvocationRecord,
) -> tracing::Span {
    tracing::info_span!(
        parent: run,
        "invoke_agent",
        otel.name = format!("invoke_agent {}", record.agent).as_str(),
        otel.kind = "internal",
        otel.status_code = tracing::field::Empty,
        gen_ai.operation.name = "invoke_agent",
        gen_ai.agent.name = &*record.agent,
        gen_ai.workflow.name = wf.name(),
        murmur.invocation.id = %record.id.text(),
        murmur.invocation.attempt = record.attempts,
        murmur.workflow.id = record.workflow_id.as_str(),
        error.type = tracing::field::Empty,
    )
}

/// What a worker does next.
enum Next {
    Run(InvocationRecord),
    Wait,
    Stop,
}

/// One worker task: claim, run outside the lock, complete under it, repeat until the run
/// is over.
async fn worker(run: Arc<Run>) {
    let _alive = Alive(&run);
    let mut was_waiting = false;
    loop {
        // A busy run still lets the other tasks of this thread in now and then.
        tokio::task::consume_budget().await;
        let woken = run.pool.work.notified();
        tokio::pin!(woken);
        let record = match run.next(&mut was_waiting, woken.as_mut()) {
            Next::Run(record) => record,
            Next::Wait => {
                woken.await;
                continue;
            }
            Next::Stop => return,
        };
        if !run.invoke(record).await {
            return;
        }
    }
}

impl Run {
    /// Under the lock: claim the next invocation, or decide to wait (registering `woken`
    /// before the lock is let go, so no wake-up is missed) or to stop.
    fn next(
        self: &Arc<Self>,
        was_waiting: &mut bool,
        woken: std::pin::Pin<&mut tokio::sync::futures::Notified<'_>>,
    ) -> Next {
        let pool = &self.pool;
        let mut g = pool.lock();
        if std::mem::take(was_waiting) {
            g.waiting -= 1;
        }
        if g.done {
            return Next::Stop;
        }
        match self
            .scheduler
            .claim(&self.workflow_id, &mut g, self.max_invocations)
        {
            Ok(Some(record)) => {
                if g.waiting > 0 {
                    // There may be more: pass the wake-up on.
                    pool.work.notify_one();
                }
                Next::Run(record)
            }
            Ok(None) => {
                if g.running == 0 && !g.quiescent {
                    g.quiescent = true;
                    pool.idle.notify_all();
                }
                g.waiting += 1;
                *was_waiting = true;
                woken.enable();
                Next::Wait
            }
            Err(e) => {
                fail(pool, &mut g, e);
                Next::Stop
            }
        }
    }

    /// Run one claimed invocation and commit it; `false` when the run is over.
    async fn invoke(self: &Arc<Self>, record: InvocationRecord) -> bool {
        let s = &self.scheduler;
        let workflow_id = self.workflow_id.as_str();
        let pool = &self.pool;
        let sampling = s.dispatch_samples.is_some();
        if s.watched() {
            s.emit(
                workflow_id,
                vec![Event::InvocationStarted {
                    agent: record.agent.clone(),
                    invocation: record.id,
                }],
            );
        }
        let claimed = Instant::now();
        // The version in force now; a hot load does not change it under this call.
        let wf = s.wf();
        let span = invocation_span(&self.span, &wf, &record);
        let dispatch = s.dispatch.clone();
        let executed: Result<_, String> = {
            let call = async {
                match dispatch {
                    None => Ok(execute::execute(&wf, &s.store, record, claimed).await),
                    Some(d) => {
                        let answer = d.dispatch(&record).await?;
                        Ok(super::remote::executed(record, answer, Duration::ZERO))
                    }
                }
            }
            .instrument(span.clone());
            tokio::pin!(call);
            let mut waited = false;
            std::future::poll_fn(|cx| {
                let poll = call.as_mut().poll(cx);
                if poll.is_pending() && !waited {
                    // This invocation waits (a host call, or a busy guest's yield): another
                    // worker takes the queue meanwhile.
                    waited = true;
                    self.more_hands(&mut pool.lock());
                }
                poll
            })
            .await
        };
        let mut executed = match executed {
            Ok(executed) => executed,
            Err(e) => {
                // The dispatcher's database is out of reach: the run stops, `running`.
                let mut g = pool.lock();
                g.running -= 1;
                fail(
                    pool,
                    &mut g,
                    crate::blackboard::StoreError::Backend(e).into(),
                );
                return false;
            }
        };
        if let Err(failure) = &executed.result {
            span.record("otel.status_code", "ERROR");
            span.record("error.type", failure.class().as_str());
        }
        drop(span);
        // Deduplication scoring that may call a plugin or a model happens here, holding
        // no lock; the commit below only re-checks its answer.
        let placed = match &mut executed.result {
            Ok(outputs) => super::place(&wf, outputs, |phases| {
                let g = pool.lock();
                super::cascade::known_work(&g.state, s.store.as_ref(), phases)
            }),
            Err(_) => Ok(()),
        };
        // Kept past the call only for its usage (most workflows have no model).
        let llm = wf.llm.clone();
        drop(wf);
        let mut g = pool.lock();
        g.running -= 1;
        if let Err(e) = placed {
            fail(pool, &mut g, e.into());
            return false;
        }
        if sampling {
            let us = executed.dispatch.as_micros().min(u32::MAX as u128) as u32;
            g.samples.push(us);
        }
        let times = &mut g.run.agent_times;
        match times.get_mut(&*executed.record.agent) {
            Some(d) => d.record(executed.ran),
            None => {
                let mut d = crate::durations::Durations::default();
                d.record(executed.ran);
                times.insert(executed.record.agent.to_string(), d);
            }
        }
        let shared = &mut *g;
        if let Err(e) = s.complete(workflow_id, executed, &mut shared.state) {
            fail(pool, &mut g, e);
            return false;
        }
        if let Err(e) = s.save_usage(llm.as_deref(), &mut g.run) {
            fail(pool, &mut g, e);
            return false;
        }
        if g.last_saved.elapsed() >= RECORD_EVERY {
            // The agents' times reach the store about once a second, for `status`.
            g.last_saved = Instant::now();
            if let Err(e) = s.store.save_run(&g.run) {
                fail(pool, &mut g, e.into());
                return false;
            }
        }
        let monitoring = &self.monitoring;
        if monitoring.metrics
            && g.state.metrics_dirty
            && g.last_metrics.elapsed().as_millis() as u64 >= monitoring.interval_ms
        {
            g.last_metrics = Instant::now();
            if let Err(e) = s.publish_metrics(workflow_id, &mut g.state) {
                fail(pool, &mut g, e);
                return false;
            }
        }
        if g.waiting > 0 {
            // This completion may have queued work for a waiting worker.
            pool.work.notify_one();
        }
        true
    }
}

impl Scheduler {
    /// Claim the next invocation under the lock, unless a budget forbids it.
    fn claim(
        &self,
        workflow_id: &str,
        g: &mut Shared,
        max_invocations: u64,
    ) -> Result<Option<InvocationRecord>, RunError> {
        if g.budget_hit || g.halted || self.stop.stopping() {
            return Ok(None);
        }
        if let Some(llm) = self.wf().llm.as_ref() {
            if llm.exhausted() {
                // A token budget is spent: finish what runs, start nothing more.
                g.budget_hit = true;
                return Ok(None);
            }
            if llm.outage().is_some() {
                // The provider is out of reach: finish what runs, start nothing more;
                // the run ends `provider_unavailable` with its work pending.
                g.halted = true;
                return Ok(None);
            }
        }
        if g.started >= max_invocations {
            g.budget_hit =
                crate::blackboard::tally::Tally::of(self.store.as_ref(), workflow_id)?.queued > 0;
            return Ok(None);
        }
        let claimed = self.store.claim_next(workflow_id)?;
        if claimed.is_some() {
            g.started += 1;
            g.running += 1;
            g.quiescent = false;
        }
        Ok(claimed)
    }

    /// Keep the run's model usage in its record when it changed, so an interrupted run's
    /// budgets survive (the write is queued to the store's writer, not waited for).
    fn save_usage(
        &self,
        llm: Option<&crate::llm::LlmHost>,
        run: &mut RunRecord,
    ) -> Result<(), RunError> {
        let Some(llm) = llm else {
            return Ok(());
        };
        let usage = llm.usage();
        if run.llm_usage.as_ref() != Some(&usage) {
            run.llm_usage = Some(usage);
            self.store.save_run(run)?;
        }
        Ok(())
    }

    /// The coordinator: wait for quiescence, then decide what comes next. Returns when
    /// the run is over (every worker then returns too).
    pub(super) fn coordinate(
        &self,
        workflow_id: &str,
        pool: &Pool,
        feed: InputFeed,
        reloads: &mut Option<UnboundedReceiver<Reload>>,
        requests: &mut Option<UnboundedReceiver<super::Request>>,
        monitoring: &MonitoringPolicy,
    ) -> Result<(), RunError> {
        let mut feed = feed;
        let mut g = Some(pool.lock());
        let arrivals = Arrivals {
            feed: &mut feed,
            reloads,
            requests,
        };
        let outcome = self.coordinate_locked(workflow_id, pool, &mut g, arrivals, monitoring);
        if let Some(rx) = requests.as_mut() {
            // The loop takes no more requests: from now on a send is refused (and the
            // sender opens the run again once it has stopped) rather than queued for no
            // one. Those queued already are dropped unanswered: nothing of them was done.
            rx.close();
        }
        let mut g = match g {
            Some(g) => g,
            None => pool.lock(),
        };
        g.done = true;
        pool.work.notify_waiters();
        match (outcome, g.error.take()) {
            (_, Some(e)) => Err(e),
            (outcome, None) => outcome,
        }
    }

    /// Publish the next chunk of the inputs still to come while the workers run: it is
    /// prepared outside the run's lock and committed under it (the caller holds no
    /// lock). A failure fails the run.
    fn feed_chunk(&self, workflow_id: &str, pool: &Pool, feed: &mut InputFeed) {
        let wf = self.wf();
        let mut chunk = feed.next_chunk(&wf, workflow_id);
        let placed = super::place(&wf, &mut chunk, |phases| {
            let g = pool.lock();
            super::cascade::known_work(&g.state, self.store.as_ref(), phases)
        });
        drop(wf);
        let mut g = pool.lock();
        if let Err(e) = placed {
            return fail(pool, &mut g, e.into());
        }
        if g.done {
            return;
        }
        let shared = &mut *g;
        if let Err(e) = self.publish_chunk(workflow_id, &mut shared.state, chunk) {
            return fail(pool, &mut g, e);
        }
        wake_workers(pool, &mut g);
    }

    /// The coordinator's loop; `slot` holds the lock between waits.
    fn coordinate_locked<'p>(
        &self,
        workflow_id: &str,
        pool: &'p Pool,
        slot: &mut Option<MutexGuard<'p, Shared>>,
        arrivals: Arrivals<'_>,
        monitoring: &MonitoringPolicy,
    ) -> Result<(), RunError> {
        let Arrivals {
            feed,
            reloads,
            requests,
        } = arrivals;
        let wait = |slot: &mut Option<MutexGuard<'p, Shared>>, timeout: Option<Duration>| {
            if let Some(g) = slot.as_mut() {
                match timeout {
                    Some(t) => {
                        pool.idle.wait_for(g, t);
                    }
                    None => pool.idle.wait(g),
                }
            }
        };
        // When the run last became idle with nothing to do (for the linger).
        let mut idle_since: Option<Instant> = None;
        loop {
            let Some(g) = slot.as_mut() else {
                return Ok(());
            };
            if g.error.is_some() {
                return Ok(());
            }
            if let Some(rx) = reloads.as_mut() {
                let mut changed = false;
                loop {
                    match rx.try_recv() {
                        Ok(reload) => {
                            self.apply_reload(workflow_id, reload, &mut g.state)?;
                            changed = true;
                        }
                        Err(TryRecvError::Empty) => break,
                        Err(TryRecvError::Disconnected) => {
                            // The watcher stopped; no more versions will come.
                            *reloads = None;
                            break;
                        }
                    }
                }
                if changed {
                    idle_since = None;
                    wake_workers(pool, g);
                    continue;
                }
            }
            if let Some(rx) = requests.as_mut() {
                let mut taken = false;
                loop {
                    match rx.try_recv() {
                        // A stopping run takes nothing more: the dropped reply tells the
                        // sender.
                        Ok(_) if self.stop.stopping() => {}
                        Ok(request) => {
                            let shared = &mut **g;
                            match request {
                                super::Request::Publish(p) => {
                                    self.publish_external(workflow_id, &mut shared.state, *p)?
                                }
                                super::Request::Decide(d) => {
                                    self.decide(workflow_id, &mut shared.state, d)?
                                }
                            }
                            taken = true;
                        }
                        Err(TryRecvError::Empty) => break,
                        Err(TryRecvError::Disconnected) => {
                            *requests = None;
                            break;
                        }
                    }
                }
                if taken {
                    idle_since = None;
                    wake_workers(pool, g);
                    continue;
                }
            }
            if feed.remaining() && !self.stop.stopping() {
                // The manifest's inputs go in as the queue makes room for them, between
                // the loop's other duties (a pause or a publish is still taken).
                let queued = Tally::of(self.store.as_ref(), workflow_id)?.queued;
                if queued < FEED_AHEAD {
                    *slot = None;
                    self.feed_chunk(workflow_id, pool, feed);
                    *slot = Some(pool.lock());
                    idle_since = None;
                    continue;
                }
                if !g.quiescent {
                    wait(slot, Some(FEED_POLL));
                    continue;
                }
            }
            if !g.quiescent {
                // Hot loads and publishes arrive without waking this thread: look again
                // every few milliseconds while they may come.
                let timeout = (reloads.is_some() || requests.is_some()).then_some(RELOAD_POLL);
                wait(slot, timeout);
                continue;
            }
            // Nothing runs and nothing can be claimed now.
            if self.stop.stopping() {
                return Ok(());
            }
            let wake = if g.budget_hit || g.halted {
                None
            } else {
                self.store.next_wakeup(workflow_id)?
            };
            if let Some(at) = wake {
                // A retry waits out its backoff.
                let now = now_ms();
                if at <= now {
                    wake_workers(pool, g);
                } else {
                    let left = Duration::from_millis(at - now);
                    wait(slot, Some(left.min(RELOAD_POLL)));
                }
                continue;
            }
            if !g.halted && !g.budget_hit {
                // Decisions recorded while no process ran the run, and approvals whose
                // time ran out.
                let shared = &mut **g;
                if self.settle_approvals(workflow_id, &mut shared.state)? {
                    wake_workers(pool, g);
                    continue;
                }
            }
            if let (Some(linger), Some(_)) = (self.linger, requests.as_ref()) {
                // Idle, and requests may come: wait a while for one (a request wakes
                // this thread) before ending.
                let since = *idle_since.get_or_insert_with(Instant::now);
                let left = linger.saturating_sub(since.elapsed());
                if !left.is_zero() {
                    wait(slot, Some(left));
                    continue;
                }
            }
            if monitoring.metrics && g.state.metrics_dirty {
                // The last metrics of the run (once it is really ending, not at each
                // pause of a stream of publishes); they may trigger a monitor agent.
                self.publish_metrics(workflow_id, &mut g.state)?;
                wake_workers(pool, g);
                continue;
            }
            if reloads.is_some() && !g.budget_hit && !g.halted && self.has_open_work(workflow_id)? {
                // Watching: open work waits for a plugin that can take it.
                wait(slot, Some(RELOAD_POLL));
                continue;
            }
            return Ok(());
        }
    }
}

/// What comes into a run while it runs, for the coordinator to take in: the manifest's
/// inputs still to publish, hot-loaded versions, requests over the API.
struct Arrivals<'a> {
    feed: &'a mut InputFeed,
    reloads: &'a mut Option<UnboundedReceiver<Reload>>,
    requests: &'a mut Option<UnboundedReceiver<super::Request>>,
}

/// Let the workers try to claim again.
fn wake_workers(pool: &Pool, g: &mut Shared) {
    g.quiescent = false;
    pool.work.notify_waiters();
}
