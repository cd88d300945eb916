//! `--store`: where a command's blackboard lives, and opening one run in it.

use anyhow::{Context, Result, bail};
use murmur::blackboard::{DurableStore, MemoryStore, RunRecord, Store};
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::Arc;

/// Where the blackboard lives: `memory`, `sqlite:PATH` or `postgres://…`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum StoreSpec {
    /// In memory; gone when the process ends.
    Memory,
    /// A SQLite database file (created if missing).
    Sqlite(PathBuf),
    /// A PostgreSQL database (its `murmur` schema created if missing).
    Postgres(String),
}

impl FromStr for StoreSpec {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "memory" => Ok(StoreSpec::Memory),
            _ if s.starts_with("postgres://") || s.starts_with("postgresql://") => {
                Ok(StoreSpec::Postgres(s.to_string()))
            }
            _ => match s.strip_prefix("sqlite:") {
                Some(p) if !p.is_empty() => Ok(StoreSpec::Sqlite(PathBuf::from(p))),
                _ => Err(format!(
                    "'{s}': expected `memory`, `sqlite:PATH` or `postgres://USER@HOST:PORT/DATABASE`"
                )),
            },
        }
    }
}

impl StoreSpec {
    /// Open (or create) the store to write a run into: a database is claimed, so a
    /// second process writing it is refused.
    pub(crate) fn open(&self) -> Result<Arc<dyn Store>> {
        Ok(match self.open_durable()? {
            Some(store) => store,
            None => Arc::new(MemoryStore::new()),
        })
    }

    /// Open (or create) a durable store to write runs into, claimed where the database
    /// takes one writer (SQLite); `None` for `memory`.
    pub(crate) fn open_durable(&self) -> Result<Option<Arc<DurableStore>>> {
        let store = match self {
            StoreSpec::Memory => return Ok(None),
            StoreSpec::Sqlite(p) => DurableStore::sqlite(p)?,
            StoreSpec::Postgres(url) => DurableStore::postgres(url)?,
        };
        store.claim_writer()?;
        Ok(Some(Arc::new(store)))
    }

    /// Open a database that must exist already, to read it (or change what a command
    /// owns in it): `memory` and a missing SQLite file are refused.
    pub(crate) fn open_existing(&self) -> Result<DurableStore> {
        Ok(match self {
            StoreSpec::Memory => {
                bail!("this command reads a database: pass --store sqlite:PATH or postgres://…")
            }
            StoreSpec::Sqlite(path) => {
                if !path.exists() {
                    bail!("{}: no such database", path.display());
                }
                DurableStore::sqlite(path)?
            }
            StoreSpec::Postgres(url) => DurableStore::postgres(url)?,
        })
    }

    /// The database `--workers` hands invocations out through: only a PostgreSQL store's.
    pub(crate) fn workers_url(&self) -> Result<&str> {
        match self {
            StoreSpec::Postgres(url) => Ok(url),
            _ => bail!(
                "--workers: worker processes share a PostgreSQL store; pass --store postgres://…"
            ),
        }
    }

    /// The default store of `murmur run`: a database beside the manifest
    /// (`workflow.toml` → `workflow.murmur.db`).
    pub(crate) fn beside(manifest: &Path) -> Self {
        let stem = manifest
            .file_stem()
            .map(|s| s.to_string_lossy().to_string())
            .unwrap_or_else(|| "workflow".into());
        StoreSpec::Sqlite(manifest.with_file_name(format!("{stem}.murmur.db")))
    }
}

/// `--store` and `--workflow`: which run of which database a command opens.
#[derive(Debug, clap::Args)]
pub(crate) struct RunSelector {
    /// The database (`sqlite:PATH` or `postgres://…`).
    #[arg(long)]
    store: StoreSpec,
    /// The run (default: the newest in the database).
    #[arg(long)]
    workflow: Option<String>,
}

impl RunSelector {
    /// Open the database and load the run.
    pub(crate) fn open(&self, access: Access) -> Result<(Arc<DurableStore>, RunRecord)> {
        open_run(&self.store, self.workflow.as_deref(), access)
    }

    /// `--workers` on this store: only PostgreSQL's.
    pub(crate) fn workers(&self, store: &Arc<DurableStore>) -> Result<super::report::Workers> {
        Ok(super::report::Workers {
            url: self.store.workers_url()?.to_string(),
            store: store.clone(),
        })
    }
}

/// `--store` or `--server`, and `--workflow`: a run in a database, or on a server.
#[derive(Debug, clap::Args)]
pub(crate) struct RunTarget {
    /// The database (`sqlite:PATH` or `postgres://…`).
    #[arg(long, required_unless_present = "server", conflicts_with = "server")]
    store: Option<StoreSpec>,
    /// A `murmur serve` to ask instead (`http://HOST:PORT`).
    #[arg(long)]
    server: Option<String>,
    /// With `--server`: the environment variable holding its bearer token.
    #[arg(long, value_name = "NAME", requires = "server")]
    token_env: Option<String>,
    /// The run (default: the newest).
    #[arg(long)]
    workflow: Option<String>,
}

/// Where a command finds its run.
pub(crate) enum Target {
    /// In a database, opened.
    Store(Arc<dyn Store>, Box<RunRecord>),
    /// On a server: a client for it, and the run's id.
    Server(super::client::Client, String),
}

impl RunTarget {
    /// Open the database or reach the server, and find the run.
    pub(crate) fn open(&self, access: Access) -> Result<Target> {
        match (&self.store, &self.server) {
            (Some(spec), _) => {
                let (store, record) = open_run(spec, self.workflow.as_deref(), access)?;
                Ok(Target::Store(store, Box::new(record)))
            }
            (None, Some(url)) => {
                let client = super::client::Client::new(url, self.token_env.as_deref())?;
                let id = match &self.workflow {
                    Some(id) => id.clone(),
                    None => client.newest_run()?,
                };
                Ok(Target::Server(client, id))
            }
            (None, None) => bail!("pass --store sqlite:PATH, --store postgres://… or --server URL"),
        }
    }
}

/// Whether a command opens a run to go on writing it (`resume`) or only to read it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Access {
    /// `status`, `graph`: no claim, so a live run can be watched.
    Read,
    /// `resume`: the database is claimed first.
    Write,
}

/// Open a database and load one run (the newest unless `workflow` names one).
fn open_run(
    spec: &StoreSpec,
    workflow: Option<&str>,
    access: Access,
) -> Result<(Arc<DurableStore>, RunRecord)> {
    let store = spec.open_existing()?;
    if access == Access::Write {
        store.claim_writer()?;
    }
    store.check()?;
    let runs = store.runs()?;
    let record = match workflow {
        Some(id) => runs
            .into_iter()
            .find(|r| r.workflow_id == id)
            .with_context(|| format!("{}: has no run {id}", store.describe()))?,
        None => runs
            .into_iter()
            .next()
            .with_context(|| format!("{}: holds no runs", store.describe()))?,
    };
    if access == Access::Write {
        store.claim_run(&record.workflow_id)?;
    }
    store.load(&record.workflow_id)?;
    Ok((Arc::new(store), record))
}
