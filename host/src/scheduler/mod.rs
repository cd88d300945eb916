//! The scheduler: runs a workflow until it is idle.
//!
//! One loop owns every commit, so the order of state changes is simple to reason about;
//! invocations themselves run in parallel on tokio's blocking pool (wasmtime calls are
//! synchronous and CPU-bound) under the workflow's concurrency limit. The loop:
//! claim the most urgent queued invocation from the store → run it in a fresh sandbox →
//! check its outputs → publish them, their work items, the invocations they trigger and the
//! invocation's completion in one commit → repeat; when nothing is queued or running, end
//! the run: `complete` (and publish WorkflowComplete) if no work is open, `stalled` if some
//! is, `budget_exhausted` if the invocation budget stopped it.

pub mod cascade;
pub mod execute;

use crate::artifact::{ArtifactId, Visibility};
use crate::blackboard::{Store, StoreError};
use crate::invocation::InvocationStatus;
use crate::observe::Event;
use crate::plugin::InvokeError;
use crate::plugin::bindings::types::PluginError;
use crate::schema::WORKFLOW_COMPLETE;
use crate::summary::{RunStatus, RunSummary};
use crate::work::WorkStatus;
use crate::workflow::Workflow;
use cascade::{Cascade, CascadeState, Draft};
use execute::Executed;
use serde_json::json;
use std::sync::Arc;
use std::time::Instant;
use thiserror::Error;
use tokio::sync::mpsc;

/// Why a run could not go on.
#[derive(Debug, Error)]
pub enum RunError {
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A worker thread died (a bug in the host, not a plugin fault).
    #[error("worker thread failed: {0}")]
    Worker(String),
}

/// Runs one workflow against one store.
pub struct Scheduler {
    wf: Arc<Workflow>,
    store: Arc<dyn Store>,
    events: Option<mpsc::UnboundedSender<Event>>,
    dispatch_samples: Option<Arc<std::sync::Mutex<Vec<u32>>>>,
}

impl Scheduler {
    /// A scheduler for `wf` on `store`.
    pub fn new(wf: Arc<Workflow>, store: Arc<dyn Store>) -> Self {
        Self {
            wf,
            store,
            events: None,
            dispatch_samples: None,
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

    fn emit(&self, events: impl IntoIterator<Item = Event>) {
        if let Some(tx) = &self.events {
            for e in events {
                let _ = tx.send(e);
            }
        }
    }

    /// Publish the manifest's inputs as a new workflow run and run it until idle.
    pub async fn run(&self) -> Result<RunSummary, RunError> {
        let started = Instant::now();
        let workflow_id = uuid::Uuid::now_v7().to_string();
        let mut state = CascadeState::default();
        let mut cascade = Cascade::new(&self.wf, self.store.as_ref(), &workflow_id);
        for input in &self.wf.manifest.inputs {
            for index in 0..input.count {
                cascade.publish(
                    Draft {
                        type_name: input.type_name.clone(),
                        payload: input.payload_for(index),
                        producer: "user".into(),
                        parent_ids: Vec::new(),
                        tags: input.tags.clone(),
                        visibility: Visibility::Public,
                        depth: 0,
                        inherited_work: None,
                    },
                    &mut state,
                )?;
            }
        }
        let events = cascade.commit()?;
        self.emit(events);
        self.drive(&workflow_id, &mut state, started).await
    }

    async fn drive(
        &self,
        workflow_id: &str,
        state: &mut CascadeState,
        started: Instant,
    ) -> Result<RunSummary, RunError> {
        let limits = self.wf.limits().clone();
        let (tx, mut rx) = mpsc::unbounded_channel::<Result<Executed, String>>();
        let mut running = 0usize;
        let mut started_invocations: u64 = self
            .store
            .invocations(workflow_id)?
            .iter()
            .filter(|i| i.attempts > 0)
            .count() as u64;
        let mut budget_hit = false;
        loop {
            while running < limits.concurrency {
                if started_invocations >= limits.max_invocations {
                    budget_hit = self
                        .store
                        .invocations(workflow_id)?
                        .iter()
                        .any(|i| i.status == InvocationStatus::Queued);
                    break;
                }
                let Some(record) = self.store.claim_next(workflow_id)? else {
                    break;
                };
                started_invocations += 1;
                running += 1;
                self.emit([Event::InvocationStarted {
                    agent: record.agent.clone(),
                    invocation: record.id.clone(),
                }]);
                let claimed = Instant::now();
                let wf = self.wf.clone();
                let store = self.store.clone();
                let tx = tx.clone();
                tokio::task::spawn_blocking(move || {
                    let out = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                        execute::execute(&wf, &store, record, claimed)
                    }))
                    .map_err(|p| {
                        p.downcast_ref::<String>()
                            .cloned()
                            .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
                            .unwrap_or_else(|| "panic".into())
                    });
                    let _ = tx.send(out);
                });
            }
            if running == 0 {
                break;
            }
            let Some(done) = rx.recv().await else { break };
            running -= 1;
            let executed = done.map_err(RunError::Worker)?;
            if let Some(samples) = &self.dispatch_samples
                && let Ok(mut v) = samples.lock()
            {
                v.push(executed.dispatch.as_micros().min(u32::MAX as u128) as u32);
            }
            self.complete(workflow_id, executed, state)?;
        }
        self.finish(workflow_id, budget_hit, started)
    }

    /// Publish an invocation's outputs with its completion, or record its failure.
    fn complete(
        &self,
        workflow_id: &str,
        executed: Executed,
        state: &mut CascadeState,
    ) -> Result<(), RunError> {
        let Executed {
            mut record, result, ..
        } = executed;
        let mut cascade = Cascade::new(&self.wf, self.store.as_ref(), workflow_id);
        let event = match result {
            Ok(outputs) => {
                let mut types = Vec::with_capacity(outputs.len());
                for out in outputs {
                    types.push(out.type_name.clone());
                    let id = cascade.publish(
                        Draft {
                            type_name: out.type_name,
                            payload: out.payload,
                            producer: record.agent.clone(),
                            parent_ids: record.inputs.clone(),
                            tags: out.tags,
                            visibility: out.visibility,
                            depth: record.depth + 1,
                            inherited_work: record.work_item.clone(),
                        },
                        state,
                    )?;
                    record.outputs.push(id);
                }
                record.status = InvocationStatus::Done;
                if let Some(w) = record.work_item.as_ref()
                    && let Some(w) = cascade.work_item(w)?
                {
                    w.open_invocations = w.open_invocations.saturating_sub(1);
                    if w.open_invocations == 0 && w.status == WorkStatus::Active {
                        w.status = WorkStatus::Done;
                    }
                }
                Event::InvocationDone {
                    agent: record.agent.clone(),
                    invocation: record.id.clone(),
                    outputs: types,
                }
            }
            Err(err) => {
                let (fault, message) = match err {
                    InvokeError::Fault(f) => (Some(f.kind), f.message),
                    InvokeError::Plugin(PluginError::Failed(m)) => (None, format!("failed: {m}")),
                    InvokeError::Plugin(PluginError::InvalidInput(m)) => {
                        (None, format!("invalid input: {m}"))
                    }
                    InvokeError::Plugin(PluginError::Retryable(m)) => {
                        (None, format!("retryable error: {m}"))
                    }
                };
                match fault {
                    Some(kind) => {
                        tracing::warn!(agent = %record.agent, invocation = %record.id, "fault ({kind}): {message}")
                    }
                    None => {
                        tracing::info!(agent = %record.agent, invocation = %record.id, "{message}")
                    }
                }
                record.status = InvocationStatus::Failed;
                record.fault = fault;
                record.error = Some(message.clone());
                if let Some(w) = record.work_item.as_ref()
                    && let Some(w) = cascade.work_item(w)?
                {
                    w.open_invocations = w.open_invocations.saturating_sub(1);
                    w.status = WorkStatus::Failed;
                    w.reason = Some(format!("{}: {message}", record.agent));
                }
                Event::InvocationFailed {
                    agent: record.agent.clone(),
                    invocation: record.id.clone(),
                    fault,
                    message,
                }
            }
        };
        cascade.update_invocation(record);
        let mut events = cascade.commit()?;
        events.push(event);
        self.emit(events);
        Ok(())
    }

    fn finish(
        &self,
        workflow_id: &str,
        budget_hit: bool,
        started: Instant,
    ) -> Result<RunSummary, RunError> {
        let work = self.store.work_items(workflow_id)?;
        let open: Vec<_> = work.iter().filter(|w| !w.status.is_final()).collect();
        let status = if budget_hit {
            RunStatus::BudgetExhausted
        } else if !open.is_empty() {
            // Nothing is queued or running, so open work has no agent that will take it.
            let mut cascade = Cascade::new(&self.wf, self.store.as_ref(), workflow_id);
            for w in &open {
                if let Some(item) = cascade.work_item(&w.id)?
                    && item.reason.is_none()
                {
                    item.reason = Some(format!(
                        "no agent subscribes to this work (phase '{}')",
                        item.phase
                    ));
                }
            }
            cascade.commit()?;
            RunStatus::Stalled
        } else {
            RunStatus::Complete
        };
        if status == RunStatus::Complete {
            let counts = self.store.counts(workflow_id)?;
            let invocations = self.store.invocations(workflow_id)?;
            let ran = invocations
                .iter()
                .filter(|i| matches!(i.status, InvocationStatus::Done | InvocationStatus::Failed));
            let failed = invocations
                .iter()
                .filter(|i| i.status == InvocationStatus::Failed)
                .count();
            let mut phases_completed: Vec<String> = work
                .iter()
                .filter(|w| w.status == WorkStatus::Done)
                .map(|w| w.phase.clone())
                .collect();
            phases_completed.sort();
            phases_completed.dedup();
            let payload = json!({
                        "status": "complete",
                        "phases_completed": phases_completed,
                        "total_work_items": work.len(),
                        "artifacts": counts.total + 1,
                        "invocations": ran.count(),
                        "failed_invocations": failed,
                        "by_type": counts.by_type,
                        "elapsed_ms": started.elapsed().as_millis() as u64,
            });
            // The host's own payloads obey the same schemas as everyone's.
            if let Err(e) = self.wf.types.validate(WORKFLOW_COMPLETE, &payload) {
                return Err(RunError::Worker(format!(
                    "host produced an invalid WorkflowComplete: {e}"
                )));
            }
            let mut state = CascadeState::default();
            let mut cascade = Cascade::new(&self.wf, self.store.as_ref(), workflow_id);
            cascade.publish(
                Draft {
                    type_name: WORKFLOW_COMPLETE.into(),
                    payload,
                    producer: "host".into(),
                    parent_ids: Vec::<ArtifactId>::new(),
                    tags: Vec::new(),
                    visibility: Visibility::Public,
                    depth: 0,
                    inherited_work: None,
                },
                &mut state,
            )?;
            cascade.commit()?;
        }
        Ok(RunSummary::from_store(
            self.store.as_ref(),
            self.wf.name(),
            workflow_id,
            self.wf.manifest.phases.iter().map(|p| p.name.clone()),
            status,
            started.elapsed().as_millis() as u64,
        )?)
    }
}
