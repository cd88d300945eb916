//! `murmur worker`: run invocations of any run in a PostgreSQL store, on any machine.

use super::store::StoreSpec;
use anyhow::{Context, Result, bail};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

/// Claim and run invocations that `run --workers` (or `resume --workers`) handed out, of
/// any run in the database, until SIGINT or SIGTERM (tasks running then finish first).
#[derive(Debug, clap::Args)]
pub(crate) struct WorkerCommand {
    /// The database (`postgres://…`).
    #[arg(long)]
    store: StoreSpec,
    /// Only these agents' invocations (comma-separated names).
    #[arg(long, value_delimiter = ',')]
    agents: Option<Vec<String>>,
    /// Most invocations running at once.
    #[arg(long, default_value_t = 64)]
    concurrency: usize,
    /// How long a claim holds without a heartbeat (renewed every third of it); a worker
    /// silent for longer loses its invocations to other workers.
    #[arg(long, default_value_t = 10_000)]
    lease_ms: u64,
    /// How often to look for work when no notification comes.
    #[arg(long, default_value_t = 500)]
    poll_ms: u64,
    /// Where components fetched from the database are kept (default: `fetched/` in the
    /// compiled-component cache's directory).
    #[arg(long)]
    cache_dir: Option<PathBuf>,
    /// Print what the worker did as one JSON line when it stops.
    #[arg(long)]
    json: bool,
    /// How long a run with no task for this worker stays in its memory, milliseconds.
    #[arg(long, value_name = "MS", default_value_t = 60_000, hide = true)]
    unload_after_ms: u64,
    /// An environment variable plugins' `http` headers may read as `${env:NAME}`
    /// (repeatable). A worker hands plugins no other: the runs it serves may have been
    /// started by anyone allowed to start one.
    #[arg(long = "secret-env", value_name = "NAME")]
    secret_env: Vec<String>,
}

impl WorkerCommand {
    pub(crate) fn execute(self) -> Result<i32> {
        let StoreSpec::Postgres(url) = &self.store else {
            bail!(
                "murmur worker takes its work from a PostgreSQL store: pass --store postgres://…"
            );
        };
        if self.concurrency == 0 {
            bail!("--concurrency: at least 1");
        }
        if self.lease_ms < 300 {
            bail!("--lease-ms: at least 300 (the heartbeat renews it every third)");
        }
        let cache_dir = match self.cache_dir {
            Some(d) => d,
            None => match super::settings::cache().dir() {
                Some(d) => d.join("fetched"),
                None => std::env::temp_dir().join(format!("murmur-worker-{}", std::process::id())),
            },
        };
        let options = murmur::workers::WorkerOptions {
            url: url.clone(),
            agents: self.agents,
            concurrency: self.concurrency,
            lease: Duration::from_millis(self.lease_ms),
            poll: Duration::from_millis(self.poll_ms),
            cache_dir,
            load: |m| super::settings::load_options(Some(m)),
            secrets: super::settings::secrets_named(&self.secret_env)?,
            unload_after: Duration::from_millis(self.unload_after_ms),
        };
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .context("starting tokio")?;
        let stop = Arc::new(AtomicBool::new(false));
        let report = runtime.block_on(async {
            let flag = stop.clone();
            tokio::spawn(async move {
                use tokio::signal::unix::{SignalKind, signal};
                let (Ok(mut int), Ok(mut term)) = (
                    signal(SignalKind::interrupt()),
                    signal(SignalKind::terminate()),
                ) else {
                    return;
                };
                tokio::select! {
                    _ = int.recv() => {}
                    _ = term.recv() => {}
                }
                eprintln!("murmur worker: stopping once the running invocations are answered");
                flag.store(true, Ordering::SeqCst);
            });
            eprintln!("murmur worker: taking work from {}", redacted(url));
            murmur::workers::work(options, stop).await
        })?;
        if self.json {
            println!("{}", serde_json::to_string(&report)?);
        } else {
            eprintln!(
                "murmur worker: {} claimed, {} answered, {} refused (lease lost)",
                report.claimed, report.completed, report.refused
            );
        }
        Ok(0)
    }
}

/// The URL without its password.
fn redacted(url: &str) -> String {
    murmur::blackboard::postgres::PgUrl::parse(url)
        .map(|u| u.to_string())
        .unwrap_or_else(|_| "the database".into())
}
