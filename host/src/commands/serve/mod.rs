//! `murmur serve`: the engine as a long-running service that people and programs talk
//! to over HTTP (API v1, JSON; described at `/v1/openapi.json`).
//!
//! One server, one store, several runs at once. The store is the truth — a run's
//! status, its artifacts, its events — so a server that stops (a signal, a crash) loses
//! nothing: the next one on the same store resumes every run left `running`, and a
//! client's event stream goes on where it left off.

mod api;
mod auth;
mod dashboard;
mod detail;
mod events;
mod health;
mod lessons;
mod runs;

use super::store::StoreSpec;
use anyhow::{Context, Result, bail};
use axum::Router;
use axum::routing::{get, post};
use murmur::blackboard::{MemoryStore, Store};
use std::net::SocketAddr;
use std::sync::Arc;

/// Serve workflows over HTTP until SIGINT or SIGTERM.
#[derive(Debug, clap::Args)]
pub(crate) struct ServeCommand {
    /// Where the blackboard lives: `memory`, `sqlite:PATH` (created if missing) or
    /// `postgres://…` (its `murmur` schema created if missing).
    #[arg(long, default_value = "sqlite:murmur.db")]
    store: StoreSpec,
    /// The address to listen on (port 0: any free port; the address taken is printed).
    /// Without `--token-env` only a loopback address is accepted.
    #[arg(long, default_value = "127.0.0.1:7700")]
    listen: SocketAddr,
    /// The environment variable holding the operator's bearer token: every request
    /// must then carry a token (`Authorization: Bearer …`; `/healthz` and `/readyz`
    /// excepted).
    #[arg(long, value_name = "NAME")]
    token_env: Option<String>,
    /// A TOML file of limited tokens: `[[token]]` tables with `env` (the variable that
    /// holds the token), `tenant` (it reads and publishes only what that tenant may) and
    /// `read_only`.
    #[arg(long, value_name = "FILE")]
    tokens: Option<std::path::PathBuf>,
    /// Hot-load bundles (NAME.toml + components) from this directory into every run the
    /// server drives; a run's open work waits for a plugin that can take it instead of
    /// ending `stalled`.
    #[arg(long, value_name = "DIR")]
    watch: Option<std::path::PathBuf>,
    /// How long a run with nothing left to do stays open for publishes and decisions
    /// before it ends (`complete`, `stalled`, `waiting`); a request after that opens it
    /// again, which costs more. Milliseconds.
    #[arg(long, value_name = "MS", default_value_t = 250)]
    linger_ms: u64,
    /// How long a run that is not driven keeps its records in memory after it was last
    /// read (SQLite store), milliseconds; then only the file holds them.
    #[arg(long, value_name = "MS", default_value_t = 5_000, hide = true)]
    unload_after_ms: u64,
    /// Hand every invocation of the runs it drives to `murmur worker` processes through
    /// the PostgreSQL store (as `run --workers`).
    #[arg(long)]
    workers: bool,
    /// An environment variable plugins' `http` headers may read as `${env:NAME}`
    /// (repeatable). A server hands plugins no other: the manifests it runs come from its
    /// API, and must not reach the server's own credentials.
    #[arg(long = "secret-env", value_name = "NAME")]
    secret_env: Vec<String>,
}

impl ServeCommand {
    pub(crate) fn execute(self) -> Result<i32> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .context("starting tokio")?;
        runtime.block_on(self.serve())
    }

    async fn serve(self) -> Result<i32> {
        let tokens = auth::Tokens::load(self.token_env.as_deref(), self.tokens.as_deref())?;
        if !tokens.required() && !self.listen.ip().is_loopback() {
            bail!(
                "--listen {}: without --token-env or --tokens the server listens on loopback only (127.0.0.1 or ::1)",
                self.listen
            );
        }
        let durable = self.store.open_durable()?;
        let store: Arc<dyn Store> = match &durable {
            Some(store) => {
                store.check()?;
                store.clone()
            }
            None => Arc::new(MemoryStore::keeping_events()),
        };
        let workers = match (&durable, self.workers) {
            (Some(store), true) => {
                let url = self.store.workers_url()?;
                Some(runs::Workers {
                    url: url.to_string(),
                    dispatch: murmur::workers::PgDispatch::start(url, store.clone()).await?,
                })
            }
            (None, true) => {
                self.store.workers_url()?;
                None
            }
            (_, false) => None,
        };
        let base = std::env::current_dir().context("finding the current directory")?;
        if let Some(dir) = &self.watch
            && !dir.is_dir()
        {
            bail!("--watch {}: not a directory", dir.display());
        }
        let runs = runs::Runs::new(
            store.clone(),
            durable,
            base,
            runs::Options {
                watch: self.watch.clone(),
                linger: std::time::Duration::from_millis(self.linger_ms),
                unload_after: std::time::Duration::from_millis(self.unload_after_ms),
                workers,
                secrets: super::settings::secrets_named(&self.secret_env)?,
            },
        );
        let resumed = runs.resume_interrupted().await?;
        runs.unload_idle_runs();
        let listener = tokio::net::TcpListener::bind(self.listen)
            .await
            .with_context(|| format!("listening on {}", self.listen))?;
        let addr = listener.local_addr()?;
        eprintln!(
            "murmur: serving {} on http://{addr} (API: http://{addr}/v1/openapi.json){}",
            store.describe(),
            if resumed.is_empty() {
                String::new()
            } else {
                format!("; resumed {} interrupted run(s)", resumed.len())
            }
        );
        println!("listening http://{addr}");
        let app = router(runs.clone(), Arc::new(tokens));
        let closing = runs.clone();
        let shutdown = async move {
            use tokio::signal::unix::{SignalKind, signal};
            let (Ok(mut int), Ok(mut term)) = (
                signal(SignalKind::interrupt()),
                signal(SignalKind::terminate()),
            ) else {
                return std::future::pending().await;
            };
            tokio::select! {
                _ = int.recv() => {}
                _ = term.recv() => {}
            }
            // Open event streams would hold the graceful shutdown forever.
            closing.close_streams();
        };
        axum::serve(listener, app)
            .with_graceful_shutdown(shutdown)
            .await
            .context("serving")?;
        eprintln!(
            "murmur: stopping: the running runs finish what runs and stay `running` for the next server"
        );
        runs.shutdown().await;
        store.close()?;
        Ok(0)
    }
}

/// The routes of API v1, the service endpoints and the dashboard; every route but the
/// health checks and the dashboard's files goes through `tokens` (which let everything
/// through as the operator when there are none).
fn router(runs: Arc<runs::Runs>, tokens: Arc<auth::Tokens>) -> Router {
    let health = Router::new()
        .route("/healthz", get(health::healthz))
        .route("/readyz", get(health::readyz))
        .route("/", get(dashboard::index))
        .route("/assets/app.js", get(dashboard::script))
        .route("/assets/app.css", get(dashboard::style))
        .with_state(runs.clone());
    let api = Router::new()
        .route("/v1/openapi.json", get(api::openapi))
        .route(
            "/v1/workflows",
            post(api::start_workflow).get(api::list_workflows),
        )
        .route("/v1/workflows/{id}", get(api::get_workflow))
        .route("/v1/workflows/{id}/pause", post(api::pause_workflow))
        .route("/v1/workflows/{id}/resume", post(api::resume_workflow))
        .route("/v1/workflows/{id}/cancel", post(api::cancel_workflow))
        .route(
            "/v1/workflows/{id}/artifacts",
            post(api::publish_artifact).get(api::list_artifacts),
        )
        .route(
            "/v1/workflows/{id}/artifacts/{artifact}",
            get(api::get_artifact),
        )
        .route("/v1/workflows/{id}/work", get(api::list_work))
        .route("/v1/workflows/{id}/work/{work_id}", get(detail::get_work))
        .route(
            "/v1/workflows/{id}/invocations",
            get(detail::list_invocations),
        )
        .route("/v1/workflows/{id}/types", get(detail::list_types))
        .route(
            "/v1/workflows/{id}/work/{work_id}/approve",
            post(api::approve_work),
        )
        .route(
            "/v1/workflows/{id}/work/{work_id}/reject",
            post(api::reject_work),
        )
        .route("/v1/workflows/{id}/graph", get(api::get_graph))
        .route("/v1/workflows/{id}/events", get(events::stream))
        .route(
            "/v1/workflows/{id}/lessons/distill",
            post(lessons::distill_run),
        )
        .route("/v1/lessons", get(lessons::list_lessons))
        .route(
            "/v1/lessons/{lesson}",
            get(lessons::get_lesson).delete(lessons::forget_lesson),
        )
        .route("/metrics", get(health::metrics))
        .fallback(api::not_found)
        .method_not_allowed_fallback(api::method_not_allowed)
        .with_state(runs);
    let api = api.layer(axum::middleware::from_fn(move |request, next| {
        auth::admit(tokens.clone(), request, next)
    }));
    health.merge(api)
}
