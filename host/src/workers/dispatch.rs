//! The coordinator's side: a run hands its invocations to worker processes through the
//! task queue and waits for their answers.
//!
//! One task per process does the talking, so queuing and collecting are batched however
//! many invocations are in flight: invocations claimed while it was busy are queued in
//! one statement, and every answer waiting is read in one. Before it queues, it waits for
//! the store's writer ([`DurableStore::durable`]): a worker must find an invocation's
//! inputs and work item in the database when it claims the task.

use super::queue::{self, NewTask};
use crate::blackboard::DurableStore;
use crate::blackboard::postgres::PgUrl;
use crate::invocation::InvocationRecord;
use crate::scheduler::remote::{Dispatch, Outcome};
use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};

type Reply = oneshot::Sender<Result<Outcome, String>>;

/// How long an answer can wait unseen should its notification be lost.
const POLL: Duration = Duration::from_millis(250);

/// How long the dispatcher tries to reach the database again before it gives up on the
/// invocations it waits for (the run then stops, `running`, for `resume`).
const OUT_OF_REACH: Duration = Duration::from_secs(60);

/// How long invocations wait unanswered before the run says no worker seems to be there.
const SILENCE: Duration = Duration::from_secs(30);

/// Hands invocations to workers through a PostgreSQL task queue.
pub struct PgDispatch {
    tx: mpsc::UnboundedSender<(InvocationRecord, Reply)>,
}

impl PgDispatch {
    /// Start dispatching on `url` (the store's database); `store` is the run's store,
    /// waited on before each batch is queued. On a tokio runtime.
    pub async fn start(
        url: &str,
        store: Arc<DurableStore>,
    ) -> Result<Arc<Self>, crate::blackboard::StoreError> {
        let url = PgUrl::parse(url)?;
        let conn = queue::connect(&url, &[queue::DONE_CHANNEL]).await?;
        let (tx, rx) = mpsc::unbounded_channel();
        tokio::spawn(dispatch_loop(url, conn, store, rx));
        Ok(Arc::new(Self { tx }))
    }
}

impl PgDispatch {
    /// [`PgDispatch::start`] for the runs of `wf`, its components stored first
    /// ([`publish_components`]).
    pub async fn start_for(
        url: &str,
        store: Arc<DurableStore>,
        wf: &crate::workflow::Workflow,
    ) -> Result<Arc<Self>, crate::blackboard::StoreError> {
        publish_components(url, wf).await?;
        Self::start(url, store).await
    }
}

impl Dispatch for PgDispatch {
    fn dispatch(
        &self,
        record: &InvocationRecord,
    ) -> Pin<Box<dyn Future<Output = Result<Outcome, String>> + Send + 'static>> {
        let (reply, answer) = oneshot::channel();
        let sent = self.tx.send((record.clone(), reply));
        Box::pin(async move {
            if sent.is_err() {
                return Err("the dispatcher has stopped".into());
            }
            answer
                .await
                .unwrap_or_else(|_| Err("the dispatcher has stopped".into()))
        })
    }
}

async fn dispatch_loop(
    url: PgUrl,
    mut conn: queue::Connection,
    store: Arc<DurableStore>,
    mut rx: mpsc::UnboundedReceiver<(InvocationRecord, Reply)>,
) {
    // What waits for an answer, and its task as queued (queued again after a reconnect).
    let mut waiting: HashMap<String, (Reply, NewTask)> = HashMap::new();
    // The runs with tasks waiting, and how many: their answers are collected. A run
    // leaves when its last answer came (a server outlives its runs).
    let mut ours: HashMap<String, usize> = HashMap::new();
    let mut requeue = false;
    // Runs this process has just begun to drive, whose earlier drivers' tasks are still
    // to be cleared from the queue (before any task of theirs is queued).
    let mut unforgotten: std::collections::HashSet<String> = Default::default();
    // When an answer last came (or the wait began), to say so when none comes.
    let mut heard = std::time::Instant::now();
    loop {
        if waiting.is_empty() {
            heard = std::time::Instant::now();
        } else if heard.elapsed() >= SILENCE {
            tracing::warn!(
                "{} invocation(s) handed out and no worker has answered for {} s: is `murmur worker --store {url}` running?",
                waiting.len(),
                SILENCE.as_secs()
            );
            heard = std::time::Instant::now();
        }
        let mut fresh = Vec::new();
        let mut lost = false;
        tokio::select! {
            m = rx.recv() => match m {
                Some(m) => {
                    fresh.push(m);
                    while let Ok(m) = rx.try_recv() {
                        fresh.push(m);
                    }
                }
                None => return,
            },
            note = conn.notes.recv() => {
                lost = note.is_none();
                while conn.notes.try_recv().is_ok() {}
            }
            _ = tokio::time::sleep(POLL), if !waiting.is_empty() => {}
        }
        // What came is waiting from here on, whatever the database says next: a failed
        // step reconnects and queues every waiting task again, so none is dropped.
        let mut tasks = Vec::with_capacity(fresh.len());
        for (record, reply) in fresh {
            let invocation = match serde_json::to_string(&record) {
                Ok(invocation) => invocation,
                Err(e) => {
                    let _ = reply.send(Err(format!("invocation {}: {e}", record.id)));
                    continue;
                }
            };
            let run = record.workflow_id.to_string();
            if !ours.contains_key(&run) {
                // This process drives the run and none of its tasks waits: any task of
                // it in the queue is an earlier driver's, gone with its answer.
                unforgotten.insert(run.clone());
            }
            *ours.entry(run.clone()).or_default() += 1;
            let task = NewTask {
                id: record.id.to_string(),
                workflow_id: run,
                agent: record.agent.to_string(),
                priority: record.priority as i32,
                invocation,
            };
            tasks.push(task.id.clone());
            waiting.insert(task.id.clone(), (reply, task));
        }
        let step = async {
            if lost {
                return Err(crate::blackboard::StoreError::Backend(format!(
                    "{url}: the dispatcher's connection closed"
                )));
            }
            let runs: Vec<String> = unforgotten.iter().cloned().collect();
            for run in runs {
                queue::forget_run(&conn.client, &url, &run).await?;
                unforgotten.remove(&run);
            }
            if !tasks.is_empty() {
                // A task is queued once its inputs are in the database.
                store.durable()?.await?;
            }
            if requeue {
                // After a reconnect: the tasks may be gone (a server restart empties the
                // queue). Queued again under new fences, they run again; an answer to the
                // old ones is refused. (Those that just came are among them.)
                let tasks: Vec<&NewTask> = waiting.values().map(|(_, t)| t).collect();
                queue::enqueue(&conn.client, &url, &tasks).await?;
                requeue = false;
            } else if !tasks.is_empty() {
                let queued: Vec<&NewTask> = tasks
                    .iter()
                    .filter_map(|id| waiting.get(id).map(|(_, t)| t))
                    .collect();
                queue::enqueue(&conn.client, &url, &queued).await?;
            }
            if !waiting.is_empty() {
                let runs: Vec<String> = ours.keys().cloned().collect();
                for (id, answer) in queue::take_done(&conn.client, &url, &runs).await? {
                    heard = std::time::Instant::now();
                    let Some((reply, task)) = waiting.remove(&id) else {
                        continue; // Not one of ours (an answer to a task forgotten).
                    };
                    if let Some(n) = ours.get_mut(&task.workflow_id) {
                        *n -= 1;
                        if *n == 0 {
                            ours.remove(&task.workflow_id);
                        }
                    }
                    let outcome = serde_json::from_str::<Outcome>(&answer)
                        .map_err(|e| format!("{url}: task {id}: an unreadable answer: {e}"));
                    let _ = reply.send(outcome);
                }
            }
            Ok::<(), crate::blackboard::StoreError>(())
        };
        if let Err(e) = step.await {
            // A lost connection, or a transaction PostgreSQL aborted (a deadlock with a
            // worker's claim): either way a new connection queues everything again.
            tracing::warn!("{e}; reconnecting");
            match reconnect(&url).await {
                Ok(c) => {
                    conn = c;
                    requeue = true;
                }
                Err(e) => {
                    fail_all(&mut waiting, &e.to_string());
                    return;
                }
            }
        }
    }
}

/// Connect again, waiting longer between tries, for up to [`OUT_OF_REACH`].
async fn reconnect(url: &PgUrl) -> Result<queue::Connection, crate::blackboard::StoreError> {
    let gave_up = std::time::Instant::now() + OUT_OF_REACH;
    let mut wait = Duration::from_millis(100);
    loop {
        tokio::time::sleep(wait).await;
        match queue::connect(url, &[queue::DONE_CHANNEL]).await {
            Ok(c) => return Ok(c),
            Err(e) if std::time::Instant::now() >= gave_up => return Err(e),
            Err(e) => {
                tracing::warn!("{e}; trying again");
                wait = (wait * 2).min(Duration::from_secs(5));
            }
        }
    }
}

fn fail_all(waiting: &mut HashMap<String, (Reply, NewTask)>, why: &str) {
    for (_, (reply, _)) in waiting.drain() {
        let _ = reply.send(Err(why.to_string()));
    }
}

/// Store the components of `wf` in the database by sha256, so a worker on another
/// machine needs only the binary and the database URL.
pub async fn publish_components(
    url: &str,
    wf: &crate::workflow::Workflow,
) -> Result<(), crate::blackboard::StoreError> {
    let url = PgUrl::parse(url)?;
    let conn = queue::connect(&url, &[]).await?;
    for p in &wf.plugins {
        let bytes = std::fs::read(&p.path).map_err(|e| {
            crate::blackboard::StoreError::Backend(format!("{}: {e}", p.path.display()))
        })?;
        queue::put_component(&conn.client, &url, &p.sha256, &bytes).await?;
    }
    Ok(())
}
