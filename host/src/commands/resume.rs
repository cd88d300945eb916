//! `murmur resume`: bring an interrupted run to the end an uninterrupted run reaches.

use super::report::{Reporting, report};
use super::store::{Access, RunSelector};
use anyhow::{Result, bail};
use murmur::Store;
use murmur::blackboard::RunRecord;
use murmur::manifest::Manifest;
use murmur::workflow::Workflow;
use std::path::PathBuf;
use std::sync::Arc;

/// Bring an interrupted run to the end an uninterrupted run reaches.
#[derive(Debug, clap::Args)]
pub(crate) struct ResumeCommand {
    #[command(flatten)]
    run: RunSelector,
    /// Print the run summary as one JSON object on stdout (the same object as `run`).
    #[arg(long)]
    json: bool,
    /// No progress display.
    #[arg(long, short)]
    quiet: bool,
    /// Hand every invocation to `murmur worker` processes through the PostgreSQL store
    /// (as `run --workers`).
    #[arg(long)]
    workers: bool,
    #[command(flatten)]
    http: super::settings::HttpTapeArgs,
}

impl ResumeCommand {
    pub(crate) fn execute(self) -> Result<i32> {
        self.http.check_local(self.workers)?;
        let (store, record) = self.run.open(Access::Write)?;
        let workers = match self.workers {
            true => Some(self.run.workers(&store)?),
            false => None,
        };
        // The run goes on with the manifest it started with, and the same plugin files.
        let path = PathBuf::from(&record.manifest_path);
        let manifest = Manifest::parse(&path, &record.manifest_text)?;
        let options = self
            .http
            .clone()
            .apply(super::settings::load_options(Some(&manifest)));
        let wf = Workflow::from_manifest(manifest, options)?;
        same_plugins(&wf, &record)?;
        if !self.quiet {
            eprintln!(
                "murmur: resuming '{}' run {} ({}) from {}",
                record.name,
                record.workflow_id,
                record.status,
                store.describe()
            );
        }
        let reporting = Reporting {
            json: self.json,
            quiet: self.quiet,
            workers,
        };
        report(Arc::new(wf), store, reporting, Some(record), None)
    }
}

/// Refuse to go on with `record`'s run if a plugin it used changed or is gone: a run
/// never mixes plugin versions.
pub(super) fn same_plugins(wf: &Workflow, record: &RunRecord) -> Result<()> {
    for used in &record.plugins {
        match wf.plugins.iter().find(|p| *p.name == *used.name) {
            Some(p) if p.sha256 == used.sha256 => {}
            Some(p) => bail!(
                "plugin '{}' ({}) changed since run {} started (sha256 {} then, {} now); resume refuses to mix plugin versions",
                used.name,
                used.path,
                record.workflow_id,
                used.sha256,
                p.sha256
            ),
            None => bail!(
                "plugin '{}' of run {} is gone",
                used.name,
                record.workflow_id
            ),
        }
    }
    Ok(())
}
