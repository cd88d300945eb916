//! `murmur run`: run a workflow until it is idle.

use super::report::{Reporting, Workers, report};
use super::settings;
use super::store::StoreSpec;
use anyhow::{Context, Result};
use murmur::manifest::Manifest;
use murmur::workflow::{LoadOptions, Workflow};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

/// Run a workflow to completion. Exit status: 0 complete, 3 stalled or budget exhausted, 4 provider unavailable, 1 failed or an error.
#[derive(Debug, clap::Args)]
pub(crate) struct RunCommand {
    /// The workflow manifest (TOML).
    manifest: PathBuf,
    /// Print the run summary as one JSON object on stdout.
    #[arg(long)]
    json: bool,
    /// Where the blackboard lives: `memory`, `sqlite:PATH` or `postgres://…` (default: a
    /// database beside the manifest, `NAME.murmur.db`).
    #[arg(long)]
    store: Option<StoreSpec>,
    /// No progress display.
    #[arg(long, short)]
    quiet: bool,
    /// Hot-load bundles (NAME.toml + components) from this directory while running;
    /// open work waits for a plugin that can take it instead of ending `stalled`.
    #[arg(long)]
    watch: Option<PathBuf>,
    /// Append every language-model request and answer to this file (JSON lines).
    #[arg(long, conflicts_with = "llm_replay")]
    llm_record: Option<PathBuf>,
    /// Answer language-model requests from this file, with no network.
    #[arg(long)]
    llm_replay: Option<PathBuf>,
    #[command(flatten)]
    http: settings::HttpTapeArgs,
    /// Hand every invocation to `murmur worker` processes (on any machine) through the
    /// PostgreSQL store; this process keeps the run's decisions.
    #[arg(long)]
    workers: bool,
}

impl RunCommand {
    pub(crate) fn execute(self) -> Result<i32> {
        let store = self
            .store
            .unwrap_or_else(|| StoreSpec::beside(&self.manifest));
        self.http.check_local(self.workers)?;
        let loaded = Instant::now();
        let manifest = Manifest::load(&self.manifest)?;
        let options = self.http.apply(LoadOptions {
            llm_record: self.llm_record,
            llm_replay: self.llm_replay,
            ..settings::load_options(Some(&manifest))
        });
        let wf = Arc::new(Workflow::from_manifest(manifest, options)?);
        let (store, workers) = if self.workers {
            let url = store.workers_url()?.to_string();
            let durable = store.open_durable()?.context("opening the store")?;
            let workers = Workers {
                url,
                store: durable.clone(),
            };
            (durable as Arc<dyn murmur::Store>, Some(workers))
        } else {
            (store.open()?, None)
        };
        if !self.quiet {
            eprintln!(
                "murmur: loaded '{}' ({} plugins, {} phases) in {} ms; store {}",
                wf.name(),
                wf.plugins.len(),
                wf.phases.len(),
                loaded.elapsed().as_millis(),
                store.describe()
            );
        }
        let reporting = Reporting {
            json: self.json,
            quiet: self.quiet,
            workers,
        };
        report(wf, store, reporting, None, self.watch.as_deref())
    }
}
