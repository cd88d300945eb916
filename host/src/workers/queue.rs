//! The task queue in PostgreSQL: one row per invocation handed to workers
//! (`murmur.tasks`), and the components they run (`murmur.components`).
//!
//! A task goes `queued` → `claimed` (a worker's lease, its `fence` raised by one) →
//! `done` (the worker's answer in `result`), and the run that dispatched it deletes it as
//! it reads the answer. A lease that runs out makes the task claimable again, with a new
//! fence; an answer is accepted only under the fence it was claimed with, so a worker
//! that lost its lease (paused, cut off, too slow) cannot complete a task another worker
//! now holds.

use crate::blackboard::StoreError;
use crate::blackboard::postgres::PgUrl;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio_postgres::{AsyncMessage, Client, NoTls};

/// The channel a dispatcher notifies when it queues tasks.
pub const TASKS_CHANNEL: &str = "murmur_tasks";
/// The channel a worker notifies when it completes tasks.
pub const DONE_CHANNEL: &str = "murmur_done";

/// A connection and the notifications on the channels it listens to. The connection is
/// driven by a task of its own; `notes` closes when the connection does.
pub struct Connection {
    /// The client.
    pub client: Client,
    /// One item per notification received (its channel).
    pub notes: mpsc::UnboundedReceiver<String>,
}

fn failed(url: &PgUrl, what: &str, e: tokio_postgres::Error) -> StoreError {
    let message = match e.as_db_error() {
        Some(db) => db.message().to_string(),
        None => e.to_string(),
    };
    StoreError::Backend(format!("{url}: {what}: {message}"))
}

/// Connect (async) and listen on `channels`.
pub async fn connect(url: &PgUrl, channels: &[&str]) -> Result<Connection, StoreError> {
    // From the text the user gave: its options (timeouts, keepalives) apply here too.
    let mut config: tokio_postgres::Config = url
        .source()
        .parse()
        .map_err(|e| failed(url, "not a connection string", e))?;
    // Told apart from the store's connections (`murmur (pid …)`) in pg_stat_activity.
    config.application_name(format!("murmur queue (pid {})", std::process::id()));
    if config.get_connect_timeout().is_none() {
        config.connect_timeout(Duration::from_secs(10));
    }
    let (client, mut connection) = config
        .connect(NoTls)
        .await
        .map_err(|e| failed(url, "cannot connect", e))?;
    let (tx, notes) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        // Drive the connection; pass notifications on.
        loop {
            match std::future::poll_fn(|cx| connection.poll_message(cx)).await {
                Some(Ok(AsyncMessage::Notification(n))) => {
                    let _ = tx.send(n.channel().to_string());
                }
                Some(Ok(_)) => {}
                Some(Err(_)) | None => break,
            }
        }
    });
    for channel in channels {
        client
            .batch_execute(&format!("LISTEN {channel}"))
            .await
            .map_err(|e| failed(url, "cannot listen", e))?;
    }
    Ok(Connection { client, notes })
}

/// A task to queue.
pub struct NewTask {
    /// The invocation's id.
    pub id: String,
    /// Its run.
    pub workflow_id: String,
    /// Its agent.
    pub agent: String,
    /// Its priority (higher first).
    pub priority: i32,
    /// The invocation record, JSON.
    pub invocation: String,
}

/// Queue `tasks` (a task queued again replaces its old row, with a new fence) and wake
/// the workers.
pub async fn enqueue(c: &Client, url: &PgUrl, tasks: &[&NewTask]) -> Result<(), StoreError> {
    if tasks.is_empty() {
        return Ok(());
    }
    let col = |f: fn(&NewTask) -> String| tasks.iter().map(|t| f(t)).collect::<Vec<String>>();
    let (ids, runs, agents, invocations) = (
        col(|t| t.id.clone()),
        col(|t| t.workflow_id.clone()),
        col(|t| t.agent.clone()),
        col(|t| t.invocation.clone()),
    );
    let priorities: Vec<i32> = tasks.iter().map(|t| t.priority).collect();
    c.execute(
        "INSERT INTO murmur.tasks (id, workflow_id, agent, priority, state, invocation)
         SELECT id, wf, agent, pr, 'queued', inv
         FROM unnest($1::text[], $2::text[], $3::text[], $4::int[], $5::text[])
             WITH ORDINALITY AS u (id, wf, agent, pr, inv, n) ORDER BY n
         ON CONFLICT (id) DO UPDATE SET state = 'queued', fence = murmur.tasks.fence + 1,
             owner = NULL, lease_until = NULL, invocation = excluded.invocation, result = NULL",
        &[&ids, &runs, &agents, &priorities, &invocations],
    )
    .await
    .map_err(|e| failed(url, "cannot queue tasks", e))?;
    c.execute("SELECT pg_notify($1, '')", &[&TASKS_CHANNEL])
        .await
        .map_err(|e| failed(url, "cannot notify", e))?;
    Ok(())
}

/// A task a worker holds.
#[derive(Debug, Clone)]
pub struct Claimed {
    /// The invocation's id.
    pub id: String,
    /// The fence its answer must carry.
    pub fence: i64,
    /// Its run.
    pub workflow_id: String,
    /// The invocation record, JSON.
    pub invocation: String,
}

/// Claim up to `limit` tasks for `owner`, most urgent first (priority, then queue
/// order), skipping rows other workers are claiming at the same moment: queued ones,
/// and claimed ones whose lease ran out. `agents` limits the claim to those agents.
pub async fn claim(
    c: &Client,
    url: &PgUrl,
    owner: &str,
    agents: Option<&[String]>,
    limit: i64,
    lease: Duration,
) -> Result<Vec<Claimed>, StoreError> {
    let lease_ms = lease.as_millis() as f64;
    let agents: Option<Vec<String>> = agents.map(<[String]>::to_vec);
    let rows = c
        .query(
            "UPDATE murmur.tasks t SET state = 'claimed', owner = $1, fence = t.fence + 1,
                 lease_until = clock_timestamp() + $2 * interval '1 millisecond'
             FROM (SELECT id FROM murmur.tasks
                   WHERE (state = 'queued' OR (state = 'claimed' AND lease_until < clock_timestamp()))
                     AND ($3::text[] IS NULL OR agent = ANY($3))
                   ORDER BY priority DESC, seq LIMIT $4 FOR UPDATE SKIP LOCKED) c
             WHERE t.id = c.id
             RETURNING t.id, t.fence, t.workflow_id, t.invocation",
            &[&owner, &lease_ms, &agents, &limit],
        )
        .await
        .map_err(|e| failed(url, "cannot claim tasks", e))?;
    rows.iter()
        .map(|r| {
            Ok(Claimed {
                id: r.try_get(0)?,
                fence: r.try_get(1)?,
                workflow_id: r.try_get(2)?,
                invocation: r.try_get(3)?,
            })
        })
        .collect::<Result<_, tokio_postgres::Error>>()
        .map_err(|e| failed(url, "cannot read claimed tasks", e))
}

/// Extend `owner`'s leases on `held` (id, fence); the ids it still holds.
pub async fn heartbeat(
    c: &Client,
    url: &PgUrl,
    owner: &str,
    held: &[(String, i64)],
    lease: Duration,
) -> Result<Vec<String>, StoreError> {
    let ids: Vec<String> = held.iter().map(|(id, _)| id.clone()).collect();
    let fences: Vec<i64> = held.iter().map(|(_, f)| *f).collect();
    let lease_ms = lease.as_millis() as f64;
    let rows = c
        .query(
            "UPDATE murmur.tasks t SET lease_until = clock_timestamp() + $2 * interval '1 millisecond'
             FROM unnest($3::text[], $4::bigint[]) AS u (id, fence)
             WHERE t.id = u.id AND t.fence = u.fence AND t.owner = $1 AND t.state = 'claimed'
             RETURNING t.id",
            &[&owner, &lease_ms, &ids, &fences],
        )
        .await
        .map_err(|e| failed(url, "cannot renew leases", e))?;
    rows.iter()
        .map(|r| r.try_get(0))
        .collect::<Result<_, _>>()
        .map_err(|e| failed(url, "cannot renew leases", e))
}

/// Complete `done` (id, fence, answer) for `owner` and wake the dispatchers; the ids
/// accepted. An answer whose fence is no longer the task's (its lease ran out and another
/// worker claimed it) is refused: it is not written.
pub async fn complete(
    c: &Client,
    url: &PgUrl,
    owner: &str,
    done: &[(String, i64, String)],
) -> Result<Vec<String>, StoreError> {
    let ids: Vec<String> = done.iter().map(|d| d.0.clone()).collect();
    let fences: Vec<i64> = done.iter().map(|d| d.1).collect();
    let results: Vec<String> = done.iter().map(|d| d.2.clone()).collect();
    let rows = c
        .query(
            "UPDATE murmur.tasks t SET state = 'done', result = u.result, lease_until = NULL
             FROM unnest($2::text[], $3::bigint[], $4::text[]) AS u (id, fence, result)
             WHERE t.id = u.id AND t.fence = u.fence AND t.owner = $1 AND t.state = 'claimed'
             RETURNING t.id",
            &[&owner, &ids, &fences, &results],
        )
        .await
        .map_err(|e| failed(url, "cannot complete tasks", e))?;
    let accepted: Vec<String> = rows
        .iter()
        .map(|r| r.try_get(0))
        .collect::<Result<_, _>>()
        .map_err(|e| failed(url, "cannot complete tasks", e))?;
    if !accepted.is_empty() {
        c.execute("SELECT pg_notify($1, '')", &[&DONE_CHANNEL])
            .await
            .map_err(|e| failed(url, "cannot notify", e))?;
    }
    Ok(accepted)
}

/// Take the answered tasks of `runs` (deleting them): (id, answer).
pub async fn take_done(
    c: &Client,
    url: &PgUrl,
    runs: &[String],
) -> Result<Vec<(String, String)>, StoreError> {
    let rows = c
        .query(
            "DELETE FROM murmur.tasks WHERE state = 'done' AND workflow_id = ANY($1)
             RETURNING id, result",
            &[&runs],
        )
        .await
        .map_err(|e| failed(url, "cannot read answers", e))?;
    rows.iter()
        .map(|r| Ok((r.try_get(0)?, r.try_get(1)?)))
        .collect::<Result<_, tokio_postgres::Error>>()
        .map_err(|e| failed(url, "cannot read answers", e))
}

/// Forget every task of run `workflow_id`: a coordinator taking a run over queues what
/// it needs again, and answers to the old tasks are refused (their rows are gone).
pub async fn forget_run(c: &Client, url: &PgUrl, workflow_id: &str) -> Result<u64, StoreError> {
    c.execute(
        "DELETE FROM murmur.tasks WHERE workflow_id = $1",
        &[&workflow_id],
    )
    .await
    .map_err(|e| failed(url, "cannot clear old tasks", e))
}

/// Store a component by its sha256 (once).
pub async fn put_component(
    c: &Client,
    url: &PgUrl,
    sha256: &str,
    bytes: &[u8],
) -> Result<(), StoreError> {
    c.execute(
        "INSERT INTO murmur.components (sha256, bytes) VALUES ($1, $2) ON CONFLICT (sha256) DO NOTHING",
        &[&sha256, &bytes],
    )
    .await
    .map_err(|e| failed(url, "cannot store a component", e))?;
    Ok(())
}

/// A component by its sha256, if stored.
pub async fn get_component(
    c: &Client,
    url: &PgUrl,
    sha256: &str,
) -> Result<Option<Vec<u8>>, StoreError> {
    let row = c
        .query_opt(
            "SELECT bytes FROM murmur.components WHERE sha256 = $1",
            &[&sha256],
        )
        .await
        .map_err(|e| failed(url, "cannot read a component", e))?;
    row.map(|r| r.try_get(0))
        .transpose()
        .map_err(|e| failed(url, "cannot read a component", e))
}
