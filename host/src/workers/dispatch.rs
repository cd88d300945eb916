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
use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};

type Reply = oneshot::Sender<Result<Outcome, String>>;

/// Hands invocations to workers through a PostgreSQL task queue.
pub struct PgDispatch {
    tx: mpsc::UnboundedSender<(InvocationRecord, Reply)>,
}

impl PgDispatch {
    /// Start dispatching on `url` (the store's database); `store` is the run's store,
    /// waited on before each batch is queued. `poll` bounds how long an answer can wait
    /// unseen should a notification be lost. On a tokio runtime.
    pub async fn start(
        url: &str,
        store: Arc<DurableStore>,
        poll: Duration,
    ) -> Result<Arc<Self>, crate::blackboard::StoreError> {
        let url = PgUrl::parse(url)?;
        let conn = queue::connect(&url, &[queue::DONE_CHANNEL]).await?;
        let (tx, rx) = mpsc::unbounded_channel();
        tokio::spawn(dispatch_loop(url, conn, store, rx, poll));
        Ok(Arc::new(Self { tx }))
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
    poll: Duration,
) {
    let mut waiting: HashMap<String, Reply> = HashMap::new();
    let mut runs: Vec<String> = Vec::new();
    let mut taken_over: HashSet<String> = HashSet::new();
    loop {
        let mut fresh = Vec::new();
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
                if note.is_none() {
                    fail_all(&mut waiting, &format!("{url}: the dispatcher's connection closed"));
                    return;
                }
                while conn.notes.try_recv().is_ok() {}
            }
            _ = tokio::time::sleep(poll), if !waiting.is_empty() => {}
        }
        let step = async {
            if !fresh.is_empty() {
                let mut tasks = Vec::with_capacity(fresh.len());
                for (record, reply) in fresh {
                    let run = record.workflow_id.to_string();
                    if taken_over.insert(run.clone()) {
                        // This process now drives the run: tasks an earlier driver queued
                        // are gone, and their answers with them.
                        queue::forget_run(&conn.client, &url, &run).await?;
                        runs.push(run.clone());
                    }
                    let invocation = serde_json::to_string(&record)
                        .map_err(|e| crate::blackboard::StoreError::Backend(e.to_string()))?;
                    let id = record.id.to_string();
                    tasks.push(NewTask {
                        id: id.clone(),
                        workflow_id: run,
                        agent: record.agent.to_string(),
                        priority: record.priority as i32,
                        invocation,
                    });
                    waiting.insert(id, reply);
                }
                store.durable()?.await?;
                queue::enqueue(&conn.client, &url, &tasks).await?;
            }
            if !waiting.is_empty() {
                for (id, answer) in queue::take_done(&conn.client, &url, &runs).await? {
                    let Some(reply) = waiting.remove(&id) else {
                        continue; // Not one of ours (an answer to a task forgotten).
                    };
                    let outcome = serde_json::from_str::<Outcome>(&answer)
                        .map_err(|e| format!("{url}: task {id}: an unreadable answer: {e}"));
                    let _ = reply.send(outcome);
                }
            }
            Ok::<(), crate::blackboard::StoreError>(())
        };
        if let Err(e) = step.await {
            fail_all(&mut waiting, &e.to_string());
            return;
        }
    }
}

fn fail_all(waiting: &mut HashMap<String, Reply>, why: &str) {
    for (_, reply) in waiting.drain() {
        let _ = reply.send(Err(why.to_string()));
    }
}

/// Store the components of `plugins` (sha256, file) in the database, so a worker on
/// another machine needs only the binary and the database URL.
pub async fn publish_components(
    url: &str,
    plugins: &[(String, std::path::PathBuf)],
) -> Result<(), crate::blackboard::StoreError> {
    let url = PgUrl::parse(url)?;
    let conn = queue::connect(&url, &[]).await?;
    for (sha256, path) in plugins {
        let bytes = std::fs::read(path).map_err(|e| {
            crate::blackboard::StoreError::Backend(format!("{}: {e}", path.display()))
        })?;
        queue::put_component(&conn.client, &url, sha256, &bytes).await?;
    }
    Ok(())
}
