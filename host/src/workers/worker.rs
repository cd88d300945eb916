//! A worker process: claims tasks of any run in the database, runs them, answers.
//!
//! It keeps a run's workflow (its manifest as the run recorded it, its components
//! fetched from the database by sha256 and compiled once) and a mirror of the run's
//! artifacts, brought up to date after each claim. Leases are renewed by a heartbeat
//! while tasks run; answers are sent in batches under the fence each task was claimed
//! with, and an answer refused (the lease ran out and another worker took the task) is
//! counted and dropped.

use super::queue::{self, Claimed};
use crate::blackboard::postgres::PgUrl;
use crate::blackboard::{DurableStore, RunRecord, Store, StoreError};
use crate::invocation::InvocationRecord;
use crate::manifest::Manifest;
use crate::scheduler::remote::{Outcome, Refused, run_here};
use crate::workflow::{LoadOptions, Workflow};
use anyhow::{Context, Result, bail};
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};
use tokio::task::JoinSet;

/// How a worker works.
#[derive(Debug, Clone)]
pub struct WorkerOptions {
    /// The database.
    pub url: String,
    /// Only these agents' tasks (`None`: any).
    pub agents: Option<Vec<String>>,
    /// Most tasks running at once.
    pub concurrency: usize,
    /// How long a claim holds without a heartbeat.
    pub lease: Duration,
    /// How often to look for tasks when no notification comes.
    pub poll: Duration,
    /// Where fetched components are kept.
    pub cache_dir: PathBuf,
    /// Loading options for a run's workflow (the process's settings for its manifest).
    pub load: fn(&Manifest) -> LoadOptions,
    /// What `${env:…}` in a run's `http` headers may read, whatever `load` gives.
    pub secrets: crate::workflow::Secrets,
    /// A run none of whose tasks came for this long leaves the worker's memory (its
    /// records and its workflow; read again if a task of it comes later): a worker that
    /// serves run after run holds the runs it works on, not every run it served.
    pub unload_after: Duration,
}

/// What a worker did, when it stops.
#[derive(Debug, Default, Clone, serde::Serialize)]
pub struct WorkerReport {
    /// Tasks it claimed.
    pub claimed: u64,
    /// Answers accepted.
    pub completed: u64,
    /// Answers refused: the task's lease had passed to another worker.
    pub refused: u64,
    /// Times it lost its connection to the database and connected again.
    pub reconnects: u64,
    /// Runs it let go of, idle (`unload_after`).
    pub unloaded: u64,
}

/// This process as a task owner: `HOST:PID:START`.
fn owner() -> String {
    format!(
        "{}:{}:{}",
        crate::blackboard::postgres::hostname(),
        std::process::id(),
        crate::artifact::now_ms()
    )
}

/// Work until `stop` is set: claim, run, answer. Tasks running when it is set finish
/// and are answered first.
pub async fn work(options: WorkerOptions, stop: Arc<AtomicBool>) -> Result<WorkerReport> {
    let url = PgUrl::parse(&options.url)?;
    let me = owner();
    let mut conn = queue::connect(&url, &[queue::TASKS_CHANNEL]).await?;
    let store_url = options.url.clone();
    let store = Arc::new(
        tokio::task::spawn_blocking(move || DurableStore::postgres(&store_url))
            .await
            .context("opening the store")??,
    );
    let shared: Arc<dyn Store> = store.clone();
    std::fs::create_dir_all(&options.cache_dir)
        .with_context(|| format!("creating {}", options.cache_dir.display()))?;
    let mut workflows: HashMap<String, Arc<Workflow>> = HashMap::new();
    // When a task of each followed run last came.
    let mut last_task: HashMap<String, Instant> = HashMap::new();
    let mut running: JoinSet<(String, i64, Outcome)> = JoinSet::new();
    // The tasks held: id → (fence, run).
    let mut held: HashMap<String, (i64, String)> = HashMap::new();
    let mut answers: Vec<(String, i64, String)> = Vec::new();
    let mut report = WorkerReport::default();
    let mut last_beat = Instant::now();
    let beat_every = options.lease / 3;
    loop {
        let step: Result<bool> = async {
            let stopping = stop.load(Ordering::SeqCst);
            // Claim what there is room for.
            let room = options.concurrency.saturating_sub(running.len());
            let mut claimed_any = false;
            if !stopping && room > 0 {
                let claimed = queue::claim(
                    &conn.client,
                    &url,
                    &me,
                    options.agents.as_deref(),
                    room as i64,
                    options.lease,
                )
                .await?;
                claimed_any = !claimed.is_empty();
                report.claimed += claimed.len() as u64;
                for task in &claimed {
                    last_task.insert(task.workflow_id.clone(), Instant::now());
                }
                start(
                    claimed,
                    &options,
                    &conn,
                    &url,
                    &store,
                    &shared,
                    &mut workflows,
                    &mut running,
                    &mut held,
                )
                .await?;
            }
            if stopping && running.is_empty() && answers.is_empty() {
                return Ok(true);
            }
            // Wait for something to do: a task finished, a notification, the heartbeat,
            // the poll. Not at all when the last claim filled up: there may be more.
            if !(claimed_any && running.len() < options.concurrency) {
                let next_beat = beat_every.saturating_sub(last_beat.elapsed());
                tokio::select! {
                    Some(done) = running.join_next(), if !running.is_empty() => {
                        answer(done, &mut answers)?;
                        // Others that finished meanwhile go in the same answer.
                        while let Some(done) = running.try_join_next() {
                            answer(done, &mut answers)?;
                        }
                    }
                    note = conn.notes.recv() => {
                        if note.is_none() {
                            bail!("{url}: the worker's connection closed");
                        }
                        while conn.notes.try_recv().is_ok() {}
                    }
                    _ = tokio::time::sleep(next_beat.min(options.poll)) => {}
                }
            }
            if !answers.is_empty() {
                // Kept until the database has them: a lost connection sends them again.
                let accepted: std::collections::HashSet<String> =
                    queue::complete(&conn.client, &url, &me, &answers)
                        .await?
                        .into_iter()
                        .collect();
                report.completed += accepted.len() as u64;
                for (id, _, _) in answers.drain(..) {
                    held.remove(&id);
                    if !accepted.contains(&id) {
                        report.refused += 1;
                        tracing::warn!(
                            "task {id}: answer refused, the lease had passed to another worker"
                        );
                    }
                }
            }
            if last_beat.elapsed() >= beat_every && !held.is_empty() {
                last_beat = Instant::now();
                let list: Vec<(String, i64)> = held.iter().map(|(k, v)| (k.clone(), v.0)).collect();
                let kept = queue::heartbeat(&conn.client, &url, &me, &list, options.lease).await?;
                if kept.len() < list.len() {
                    tracing::warn!(
                        "{} lease(s) lost before the heartbeat (another worker may run them)",
                        list.len() - kept.len()
                    );
                }
            } else if held.is_empty() {
                last_beat = Instant::now();
            }
            // Idle: no task of it came for a while, and none is held (a task waiting on a
            // model for minutes still reads the run's records).
            let idle: Vec<String> = last_task
                .iter()
                .filter(|(run, at)| {
                    at.elapsed() >= options.unload_after && !held.values().any(|(_, r)| r == *run)
                })
                .map(|(run, _)| run.clone())
                .collect();
            for run in idle {
                let store = store.clone();
                let id = run.clone();
                tokio::task::spawn_blocking(move || store.unfollow(&id))
                    .await
                    .context("letting a run go")??;
                workflows.remove(&run);
                last_task.remove(&run);
                report.unloaded += 1;
                tracing::info!("run {run}: idle, its records left memory");
            }
            Ok(false)
        }
        .await;
        match step {
            Ok(true) => return Ok(report),
            Ok(false) => {}
            Err(e) => {
                // The database out of reach, or the connection lost: reconnect and go on.
                // Tasks running go on; their answers wait, and those whose leases ran out
                // meanwhile are refused as any late answer is.
                tracing::warn!("{e:#}; reconnecting");
                report.reconnects += 1;
                conn = reconnect(&url, &stop).await?;
            }
        }
    }
}

/// A finished task's answer, queued to be sent.
fn answer(
    done: Result<(String, i64, Outcome), tokio::task::JoinError>,
    answers: &mut Vec<(String, i64, String)>,
) -> Result<()> {
    match done {
        Ok((id, fence, outcome)) => answers.push((id, fence, serde_json::to_string(&outcome)?)),
        // Unanswered: its lease runs out and another worker runs it.
        Err(e) => tracing::error!("a task panicked: {e}"),
    }
    Ok(())
}

/// Connect again, waiting longer between tries (up to 5 s), until the database answers
/// or the worker is stopped.
async fn reconnect(url: &PgUrl, stop: &AtomicBool) -> Result<queue::Connection> {
    let mut wait = Duration::from_millis(100);
    loop {
        if stop.load(Ordering::SeqCst) {
            bail!("{url}: stopped while the database was out of reach");
        }
        tokio::time::sleep(wait).await;
        match queue::connect(url, &[queue::TASKS_CHANNEL]).await {
            Ok(c) => return Ok(c),
            Err(e) => {
                tracing::warn!("{e}; trying again");
                wait = (wait * 2).min(Duration::from_secs(5));
            }
        }
    }
}

/// Start running `claimed`: each run's workflow loaded and its mirror brought up to date
/// first.
#[allow(clippy::too_many_arguments)]
async fn start(
    claimed: Vec<Claimed>,
    options: &WorkerOptions,
    conn: &queue::Connection,
    url: &PgUrl,
    store: &Arc<DurableStore>,
    shared: &Arc<dyn Store>,
    workflows: &mut HashMap<String, Arc<Workflow>>,
    running: &mut JoinSet<(String, i64, Outcome)>,
    held: &mut HashMap<String, (i64, String)>,
) -> Result<()> {
    let mut runs: Vec<String> = claimed.iter().map(|c| c.workflow_id.clone()).collect();
    runs.sort();
    runs.dedup();
    // A run this worker cannot load (a component missing from the database, a
    // manifest this build refuses) fails its tasks with the reason: the run learns why,
    // and the worker goes on serving the others.
    let mut unloadable: HashMap<String, String> = HashMap::new();
    for run in &runs {
        if !workflows.contains_key(run) {
            match load_run(options, conn, url, store, run).await {
                Ok(wf) => {
                    workflows.insert(run.clone(), wf);
                }
                Err(e) => {
                    let why = format!(
                        "worker {}: cannot load run {run}: {e:#}",
                        crate::blackboard::postgres::hostname()
                    );
                    tracing::error!("{why}");
                    unloadable.insert(run.clone(), why);
                }
            }
        }
    }
    runs.retain(|r| !unloadable.contains_key(r));
    let follow = store.clone();
    let following = runs.clone();
    tokio::task::spawn_blocking(move || -> Result<(), StoreError> {
        for run in &following {
            follow.catch_up(run)?;
        }
        Ok(())
    })
    .await
    .context("reading the runs")??;
    for task in claimed {
        let record: InvocationRecord = match serde_json::from_str(&task.invocation) {
            Ok(r) => r,
            Err(e) => {
                // Not this worker's to run, nor to fail: its lease runs out and the
                // coordinator's answer-wait covers it.
                tracing::error!("task {}: an unreadable invocation: {e}", task.id);
                continue;
            }
        };
        held.insert(task.id.clone(), (task.fence, task.workflow_id.clone()));
        let Some(wf) = workflows.get(&task.workflow_id).cloned() else {
            let why = unloadable
                .get(&task.workflow_id)
                .cloned()
                .unwrap_or_else(|| format!("run {} is not loaded", task.workflow_id));
            running.spawn(async move {
                let outcome = Outcome {
                    result: Err(Refused::Failed { message: why }),
                    ran_us: 0,
                    given_back: false,
                };
                (task.id, task.fence, outcome)
            });
            continue;
        };
        let store = shared.clone();
        running.spawn(async move {
            let outcome = run_here(&wf, &store, record).await;
            (task.id, task.fence, outcome)
        });
    }
    Ok(())
}

/// Load run `run`'s workflow as it was recorded, its components fetched by sha256.
async fn load_run(
    options: &WorkerOptions,
    conn: &queue::Connection,
    url: &PgUrl,
    store: &Arc<DurableStore>,
    run: &str,
) -> Result<Arc<Workflow>> {
    let record: RunRecord = {
        let store = store.clone();
        let id = run.to_string();
        tokio::task::spawn_blocking(move || store.run(&id))
            .await
            .context("reading the run")??
            .with_context(|| format!("{url}: has no run {run}"))?
    };
    let mut files: HashMap<String, PathBuf> = HashMap::new();
    for p in &record.plugins {
        let file = options.cache_dir.join(format!("{}.wasm", p.sha256));
        let fresh = match std::fs::read(&file) {
            Ok(bytes) => crate::plugin::cache::sha256_hex(&bytes) != p.sha256,
            Err(_) => true,
        };
        if fresh {
            let bytes = queue::get_component(&conn.client, url, &p.sha256)
                .await?
                .with_context(|| {
                    format!(
                        "run {run}: plugin '{}' (sha256 {}) is not in the database",
                        p.name, p.sha256
                    )
                })?;
            if crate::plugin::cache::sha256_hex(&bytes) != p.sha256 {
                bail!(
                    "run {run}: the database's component for plugin '{}' does not have sha256 {}",
                    p.name,
                    p.sha256
                );
            }
            let partial = file.with_extension(format!("part{}", std::process::id()));
            std::fs::write(&partial, &bytes)
                .with_context(|| format!("writing {}", partial.display()))?;
            std::fs::rename(&partial, &file)
                .with_context(|| format!("writing {}", file.display()))?;
        }
        files.insert(p.name.clone(), file);
    }
    let load = options.load;
    let secrets = options.secrets.clone();
    let wf = tokio::task::spawn_blocking(move || -> Result<Workflow> {
        let mut manifest = Manifest::parse(
            std::path::Path::new(&record.manifest_path),
            &record.manifest_text,
        )
        .with_context(|| format!("run {}: its manifest", record.workflow_id))?;
        for decl in &mut manifest.plugins {
            match files.get(decl.spec.name.as_str()) {
                Some(file) => decl.spec.path = file.clone(),
                None => bail!(
                    "run {}: plugin '{}' has no recorded component",
                    record.workflow_id,
                    decl.spec.name
                ),
            }
        }
        let options = LoadOptions {
            secrets,
            ..load(&manifest)
        };
        let wf = Workflow::from_manifest(manifest, options)?;
        // Never a component whose hash differs from the run's.
        for used in &record.plugins {
            match wf.plugins.iter().find(|p| *p.name == *used.name) {
                Some(p) if p.sha256 == used.sha256 => {}
                _ => bail!(
                    "run {}: plugin '{}' would not run the recorded component",
                    record.workflow_id,
                    used.name
                ),
            }
        }
        // The lessons the run chose when it started, as its coordinator uses them.
        wf.use_lessons(record.lessons.clone());
        Ok(wf)
    })
    .await
    .context("loading the workflow")??;
    tracing::info!("loaded run {run}'s workflow '{}'", wf.name());
    Ok(Arc::new(wf))
}
