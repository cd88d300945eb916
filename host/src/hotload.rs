//! Hot loading: add phases and plugins to a running workflow, or replace a plugin's
//! component, without stopping it (`murmur run --watch DIR`).
//!
//! DIR holds **bundles**: `NAME.toml` files with `[[phase]]`, `[[type]]` and `[[plugin]]`
//! tables (plugin paths relative to the bundle) and the components they name; a component
//! no bundle names joins as an agent called after its file, subscribed as its
//! `describe()` says, with no grants. The watcher
//! polls DIR; when a bundle or any component file in DIR changes (and has stopped changing
//! for one poll, so a half-copied file is not read), it merges every bundle into the
//! manifest the run started with and loads the result exactly as `murmur run` loads a
//! manifest — compile (through the cache), version and capability checks, `describe()`,
//! subscriptions. Only a version that passes all of it is handed to the scheduler, which
//! swaps it in atomically: invocations already running finish on the version they started
//! with, and work no agent has taken yet is offered to the new agents. A broken bundle or
//! component is reported (an event naming the file and the error) and the last good
//! version stays in force.

use crate::manifest::Manifest;
use crate::workflow::{LoadOptions, Workflow};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, SystemTime};
use tokio::sync::mpsc;

/// How often DIR is scanned.
pub const POLL: Duration = Duration::from_millis(150);

/// What the watcher hands the scheduler.
pub enum Reload {
    /// A new version of the workflow, ready to run.
    Swapped {
        /// The workflow.
        workflow: Arc<Workflow>,
        /// The bundles merged into it.
        bundles: Vec<PathBuf>,
    },
    /// A change that could not be loaded; the running version stays.
    Rejected {
        /// The changed file.
        file: PathBuf,
        /// Why (located in the bundle where possible).
        message: String,
    },
}

/// A running watcher; stops when dropped.
pub struct Watcher {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Drop for Watcher {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

type Snapshot = BTreeMap<PathBuf, (SystemTime, u64)>;

fn snapshot(dir: &Path) -> Snapshot {
    let mut files = Snapshot::new();
    if let Ok(entries) = std::fs::read_dir(dir) {
        for e in entries.flatten() {
            let path = e.path();
            let relevant = matches!(
                path.extension().and_then(|x| x.to_str()),
                Some("toml" | "wasm")
            );
            if let (true, Ok(meta)) = (relevant, e.metadata()) {
                let modified = meta.modified().unwrap_or(SystemTime::UNIX_EPOCH);
                files.insert(path, (modified, meta.len()));
            }
        }
    }
    files
}

/// Build the workflow of `base` with every bundle in `files` merged in.
fn build(base: &Manifest, files: &Snapshot, options: &LoadOptions) -> Result<Reload, Reload> {
    let mut manifest = base.clone();
    let mut bundles = Vec::new();
    for path in files
        .keys()
        .filter(|p| p.extension().is_some_and(|x| x == "toml"))
    {
        let text = std::fs::read_to_string(path)
            .map_err(|e| rejected(path, format!("cannot read: {e}")))?;
        manifest = manifest
            .with_bundle(path, &text)
            .map_err(|e| rejected(path, e))?;
        bundles.push(path.clone());
    }
    // A component no bundle names joins as an agent called after its file, with the
    // subscriptions its describe() declares (and no grants).
    for path in files
        .keys()
        .filter(|p| p.extension().is_some_and(|x| x == "wasm"))
    {
        if manifest.plugins.iter().any(|p| p.spec.path == *path) {
            continue;
        }
        let name = path
            .file_stem()
            .and_then(|s| s.to_str())
            .unwrap_or("plugin");
        let file = path
            .file_name()
            .and_then(|s| s.to_str())
            .unwrap_or_default();
        let text = format!("[[plugin]]\nname = \"{name}\"\npath = \"{file}\"\nworld = \"agent\"\n");
        manifest = manifest
            .with_bundle(path, &text)
            .map_err(|e| rejected(path, e))?;
        bundles.push(path.clone());
    }
    let workflow = Workflow::from_manifest(manifest, options.clone())
        .map_err(|e| rejected(&bundles.last().cloned().unwrap_or_default(), e))?;
    Ok(Reload::Swapped {
        workflow: Arc::new(workflow),
        bundles,
    })
}

/// Watch `dir` for bundles to merge into `base`; every change that settles is loaded and
/// sent on `tx` (a new version, or why it was rejected).
pub fn watch(
    dir: &Path,
    base: Manifest,
    options: LoadOptions,
    tx: mpsc::UnboundedSender<Reload>,
) -> std::io::Result<Watcher> {
    if !dir.is_dir() {
        return Err(std::io::Error::new(
            std::io::ErrorKind::NotFound,
            format!("{}: not a directory to watch", dir.display()),
        ));
    }
    let stop = Arc::new(AtomicBool::new(false));
    let thread = {
        let stop = stop.clone();
        let dir = dir.to_path_buf();
        std::thread::Builder::new()
            .name("murmur-watch".into())
            .spawn(move || {
                // What is loaded now; at start, whatever DIR already holds is loaded too.
                let mut loaded = Snapshot::new();
                let mut previous = snapshot(&dir);
                let mut first = true;
                while !stop.load(Ordering::Relaxed) {
                    if !first {
                        std::thread::sleep(POLL);
                    }
                    let now = snapshot(&dir);
                    // Act on a change only once it has settled for one poll.
                    let settled = first || now == previous;
                    first = false;
                    previous = now.clone();
                    if !settled || now == loaded {
                        continue;
                    }
                    let changed = now
                        .iter()
                        .find(|(p, v)| loaded.get(*p) != Some(v))
                        .map(|(p, _)| p.clone())
                        .unwrap_or_else(|| dir.clone());
                    loaded = now.clone();
                    let reload = match build(&base, &now, &options) {
                        Ok(r) => r,
                        Err(Reload::Rejected { message, .. }) => Reload::Rejected {
                            file: changed,
                            message,
                        },
                        Err(r) => r,
                    };
                    if tx.send(reload).is_err() {
                        break;
                    }
                }
            })?
    };
    Ok(Watcher {
        stop,
        thread: Some(thread),
    })
}

/// A rejected hot load of `file`.
fn rejected(file: &std::path::Path, message: impl ToString) -> Reload {
    Reload::Rejected {
        file: file.to_path_buf(),
        message: message.to_string(),
    }
}
