//! The `murmur` command line. Library errors are typed; here they become messages.

use crate::blackboard::{MemoryStore, RunRecord, SqliteStore, Store};
use crate::graph::Graph;
use crate::manifest::Manifest;
use crate::observe::Event;
use crate::scheduler::Scheduler;
use crate::summary::{RunStatus, RunSummary};
use crate::workflow::{LoadOptions, Workflow};
use anyhow::{Context, Result, bail};
use clap::{Parser, Subcommand, ValueEnum};
use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::mpsc;

/// Murmuration: self-improving multi-agent workflows on sandboxed WebAssembly agents.
#[derive(Debug, Parser)]
#[command(name = "murmur", version, about)]
pub struct Cli {
    /// More logging on stderr (-v: info, -vv: debug). `RUST_LOG` overrides.
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    pub verbose: u8,
    /// The command.
    #[command(subcommand)]
    pub command: Command,
}

/// Where the blackboard lives: `memory` or `sqlite:PATH`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreSpec {
    /// In memory; gone when the process ends.
    Memory,
    /// A SQLite database file (created if missing).
    Sqlite(PathBuf),
}

impl FromStr for StoreSpec {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "memory" => Ok(StoreSpec::Memory),
            _ => match s.strip_prefix("sqlite:") {
                Some(p) if !p.is_empty() => Ok(StoreSpec::Sqlite(PathBuf::from(p))),
                _ => Err(format!("'{s}': expected `memory` or `sqlite:PATH`")),
            },
        }
    }
}

impl StoreSpec {
    fn open(&self) -> Result<Arc<dyn Store>> {
        Ok(match self {
            StoreSpec::Memory => Arc::new(MemoryStore::new()),
            StoreSpec::Sqlite(p) => Arc::new(SqliteStore::open(p)?),
        })
    }
}

/// The default store of `murmur run`: a database beside the manifest
/// (`workflow.toml` → `workflow.murmur.db`).
pub fn default_store(manifest: &Path) -> StoreSpec {
    let stem = manifest
        .file_stem()
        .map(|s| s.to_string_lossy().to_string())
        .unwrap_or_else(|| "workflow".into());
    StoreSpec::Sqlite(manifest.with_file_name(format!("{stem}.murmur.db")))
}

/// `murmur graph` output formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum GraphFormat {
    /// A Mermaid flowchart.
    Mermaid,
    /// Graphviz DOT.
    Dot,
    /// JSON: nodes and edges.
    Json,
}

/// Commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run a workflow to completion. Exit status: 0 complete, 3 stalled or budget exhausted, 1 error.
    Run {
        /// The workflow manifest (TOML).
        manifest: PathBuf,
        /// Print the run summary as one JSON object on stdout.
        #[arg(long)]
        json: bool,
        /// Where the blackboard lives: `memory` or `sqlite:PATH` (default: a database
        /// beside the manifest, `NAME.murmur.db`).
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
        #[arg(long)]
        llm_record: Option<PathBuf>,
        /// Answer language-model requests from this file, with no network.
        #[arg(long)]
        llm_replay: Option<PathBuf>,
    },
    /// Bring an interrupted run to the end an uninterrupted run reaches.
    Resume {
        /// The database (`sqlite:PATH`).
        #[arg(long)]
        store: StoreSpec,
        /// The run (default: the newest in the database).
        #[arg(long)]
        workflow: Option<String>,
        /// Print the run summary as one JSON object on stdout (the same object as `run`).
        #[arg(long)]
        json: bool,
        /// No progress display.
        #[arg(long, short)]
        quiet: bool,
    },
    /// Where a run stands: per phase, per agent, open and blocked work.
    Status {
        /// The database (`sqlite:PATH`).
        #[arg(long)]
        store: StoreSpec,
        /// The run (default: the newest in the database).
        #[arg(long)]
        workflow: Option<String>,
        /// Print the summary object as JSON instead.
        #[arg(long)]
        json: bool,
    },
    /// Print a run's cascade: artifacts and their causality, grouped by phase.
    Graph {
        /// The database (`sqlite:PATH`).
        #[arg(long)]
        store: StoreSpec,
        /// The run (default: the newest in the database).
        #[arg(long)]
        workflow: Option<String>,
        /// Output format.
        #[arg(long, value_enum, default_value = "mermaid")]
        format: GraphFormat,
    },
    /// Create a plugin that builds (`cargo xtask build-plugins`) and a test workflow for it.
    New {
        /// agent, validator, router or context-provider.
        world: String,
        /// The plugin's name (lower-case, digits, '-').
        name: String,
        /// rust, js or python.
        #[arg(long, default_value = "rust")]
        lang: String,
        /// The plugins directory.
        #[arg(long, default_value = "plugins")]
        plugins: PathBuf,
        /// Where built components land.
        #[arg(long, default_value = "target/plugins")]
        components: PathBuf,
    },
    /// What a plugin component is: world, API version, imports (the grants it needs),
    /// and what its describe() says.
    Inspect {
        /// The component (`.wasm`).
        plugin: PathBuf,
        /// Print the report as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Measure the engine on a workload; prints one JSON line of figures.
    Bench {
        /// The workload.
        #[command(subcommand)]
        workload: BenchWorkload,
    },
}

/// Benchmark workloads.
#[derive(Debug, Subcommand)]
pub enum BenchWorkload {
    /// The cascade workload: N analysis items, three agents, every 5th validation branches
    /// back to analysis for three generations. Fails unless the counts match the closed form.
    Cascade {
        /// Number of initial WorkDiscoveries.
        #[arg(long, default_value_t = 10_000)]
        n: u64,
        /// The cascade manifest whose first input is repeated N times.
        #[arg(long, default_value = "examples/cascade/workflow.toml")]
        manifest: PathBuf,
        /// Where the blackboard lives: `memory` or `sqlite:PATH` (a file that exists is
        /// replaced, so every measurement starts from an empty database).
        #[arg(long, default_value = "memory")]
        store: StoreSpec,
        /// Print the figures as one JSON line (the default output is the same line).
        #[arg(long)]
        json: bool,
        /// Run the same agents as native Rust in the host (no sandbox), to price it.
        #[arg(long)]
        native: bool,
        /// Give every call a fresh instance, whatever the manifest's `limits.reuse` says
        /// (the sandbox's default), to price instance reuse.
        #[arg(long, conflicts_with = "native")]
        fresh: bool,
    },
}

/// Run the CLI; returns the process exit code.
pub fn main() -> Result<i32> {
    let cli = Cli::parse();
    let default = match cli.verbose {
        0 => "warn",
        1 => "info",
        _ => "debug",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();

    match cli.command {
        Command::Run {
            manifest,
            json,
            store,
            quiet,
            watch,
            llm_record,
            llm_replay,
        } => {
            let store = store.unwrap_or_else(|| default_store(&manifest));
            let options = LoadOptions {
                llm_record,
                llm_replay,
                ..Default::default()
            };
            run(&manifest, json, &store, quiet, watch.as_deref(), options)
        }
        Command::Resume {
            store,
            workflow,
            json,
            quiet,
        } => resume(&store, workflow.as_deref(), json, quiet),
        Command::Status {
            store,
            workflow,
            json,
        } => status(&store, workflow.as_deref(), json),
        Command::Graph {
            store,
            workflow,
            format,
        } => {
            let (store, record) = open_run(&store, workflow.as_deref())?;
            let graph = Graph::from_store(store.as_ref(), &record.workflow_id)?;
            match format {
                GraphFormat::Mermaid => print!("{}", graph.mermaid()),
                GraphFormat::Dot => print!("{}", graph.dot()),
                GraphFormat::Json => println!("{}", serde_json::to_string_pretty(&graph)?),
            }
            Ok(0)
        }
        Command::New {
            world,
            name,
            lang,
            plugins,
            components,
        } => {
            let components = std::path::absolute(&components).unwrap_or(components);
            let created = crate::scaffold::create(&plugins, &components, &world, &name, &lang)?;
            for f in &created.files {
                println!("  wrote {}", f.display());
            }
            println!(
                "next: cargo xtask build-plugins   (builds {})
      murmur run {} --store memory",
                created.component,
                created.test.display()
            );
            Ok(0)
        }
        Command::Inspect { plugin, json } => {
            let report = crate::inspect::inspect(
                &plugin,
                crate::plugin::ComponentCache::default_location(),
            )?;
            if json {
                println!("{}", serde_json::to_string_pretty(&report)?);
            } else {
                print!("{}", report.text());
            }
            Ok(0)
        }
        Command::Bench {
            workload:
                BenchWorkload::Cascade {
                    n,
                    manifest,
                    store,
                    json: _,
                    native,
                    fresh,
                },
        } => {
            if let StoreSpec::Sqlite(p) = &store {
                for suffix in ["", "-wal", "-shm"] {
                    let f = PathBuf::from(format!("{}{suffix}", p.display()));
                    if f.exists() {
                        std::fs::remove_file(&f)
                            .with_context(|| format!("removing {}", f.display()))?;
                    }
                }
            }
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()
                .context("starting tokio")?;
            let figures = runtime.block_on(crate::bench::cascade(
                &manifest,
                n,
                crate::bench::Agents::from_flags(native, fresh),
                LoadOptions::default(),
                store.open()?,
            ))?;
            println!("{}", serde_json::to_string(&figures)?);
            Ok(0)
        }
    }
}

fn exit_code(status: RunStatus) -> i32 {
    match status {
        RunStatus::Complete => 0,
        RunStatus::Stalled | RunStatus::BudgetExhausted | RunStatus::Running => 3,
        RunStatus::Failed => 1,
    }
}

/// Drive `scheduler` with the progress display, then report.
fn report(
    wf: Arc<Workflow>,
    store: Arc<dyn Store>,
    json: bool,
    quiet: bool,
    resume: Option<RunRecord>,
    watch: Option<&Path>,
) -> Result<i32> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting tokio")?;
    let (tx, rx) = mpsc::unbounded_channel();
    let keep = store.clone();
    let mut scheduler = Scheduler::new(wf.clone(), store).with_events(tx);
    let _watcher = match watch {
        Some(dir) => {
            let (reload_tx, reload_rx) = mpsc::unbounded_channel();
            let watcher = crate::hotload::watch(
                dir,
                wf.manifest.clone(),
                LoadOptions {
                    llm_host: wf.llm.clone(),
                    ..Default::default()
                },
                reload_tx,
            )
            .with_context(|| format!("watching {}", dir.display()))?;
            scheduler = scheduler.with_reloads(reload_rx);
            if !quiet {
                eprintln!("murmur: watching {} for bundles", dir.display());
            }
            Some(watcher)
        }
        None => None,
    };
    let summary = runtime.block_on(async move {
        let progress = (!quiet).then(|| tokio::spawn(progress(rx)));
        let summary = match resume {
            Some(record) => scheduler.resume(record).await,
            None => scheduler.run().await,
        };
        drop(scheduler);
        if let Some(p) = progress {
            let _ = p.await;
        }
        summary
    })?;
    // The process exits next. Close the store (durable, its database closed) and leave
    // its records to the exit, rather than free them one by one first: at N = 10,000 the
    // cascade's teardown was 3-5% of the process's time, spent after the run was over.
    keep.close()?;
    std::mem::forget(keep);
    if !quiet {
        print_summary(&summary);
    }
    if json {
        println!("{}", serde_json::to_string_pretty(&summary)?);
    }
    Ok(exit_code(summary.status))
}

fn run(
    manifest: &Path,
    json: bool,
    store: &StoreSpec,
    quiet: bool,
    watch: Option<&Path>,
    options: LoadOptions,
) -> Result<i32> {
    let loaded = Instant::now();
    let wf = Arc::new(Workflow::load(manifest, options)?);
    let store = store.open()?;
    if !quiet {
        eprintln!(
            "murmur: loaded '{}' ({} plugins, {} phases) in {} ms; store {}",
            wf.name(),
            wf.plugins.len(),
            wf.phases.len(),
            loaded.elapsed().as_millis(),
            store.describe()
        );
    }
    report(wf, store, json, quiet, None, watch)
}

/// Open a database and load one run (the newest unless `workflow` names one).
fn open_run(spec: &StoreSpec, workflow: Option<&str>) -> Result<(Arc<dyn Store>, RunRecord)> {
    let StoreSpec::Sqlite(path) = spec else {
        bail!("this command reads a database: pass --store sqlite:PATH");
    };
    if !path.exists() {
        bail!("{}: no such database", path.display());
    }
    let store = SqliteStore::open(path)?;
    store.check()?;
    let runs = store.runs()?;
    let record = match workflow {
        Some(id) => runs
            .into_iter()
            .find(|r| r.workflow_id == id)
            .with_context(|| format!("{}: has no run {id}", path.display()))?,
        None => runs
            .into_iter()
            .next()
            .with_context(|| format!("{}: holds no runs", path.display()))?,
    };
    store.load(&record.workflow_id)?;
    Ok((Arc::new(store), record))
}

fn resume(spec: &StoreSpec, workflow: Option<&str>, json: bool, quiet: bool) -> Result<i32> {
    let (store, record) = open_run(spec, workflow)?;
    // The run goes on with the manifest it started with, and the same plugin files.
    let path = PathBuf::from(&record.manifest_path);
    let manifest = Manifest::parse(&path, &record.manifest_text)?;
    let wf = Workflow::from_manifest(manifest, LoadOptions::default())?;
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
    if !quiet {
        eprintln!(
            "murmur: resuming '{}' run {} ({}) from {}",
            record.name,
            record.workflow_id,
            record.status,
            store.describe()
        );
    }
    report(Arc::new(wf), store, json, quiet, Some(record), None)
}

fn status(spec: &StoreSpec, workflow: Option<&str>, json: bool) -> Result<i32> {
    let (store, record) = open_run(spec, workflow)?;
    let status = RunStatus::parse(&record.status);
    let phases = Manifest::parse(Path::new(&record.manifest_path), &record.manifest_text)
        .map(|m| m.phases.iter().map(|p| p.name.clone()).collect::<Vec<_>>())
        .unwrap_or_default();
    let elapsed = record
        .finished_at_ms
        .unwrap_or_else(crate::artifact::now_ms)
        .saturating_sub(record.started_at_ms);
    let summary = RunSummary::from_store(
        store.as_ref(),
        &record.name,
        &record.workflow_id,
        phases,
        status,
        elapsed,
    )?;
    if json {
        println!("{}", serde_json::to_string_pretty(&summary)?);
        return Ok(0);
    }
    println!(
        "run {} of '{}' ({}), started {} ms ago",
        record.workflow_id,
        record.name,
        record.status,
        crate::artifact::now_ms().saturating_sub(record.started_at_ms)
    );
    print_summary_to(&summary, &mut std::io::stdout());
    for (agent, a) in &summary.agents {
        println!(
            "  agent {agent:<16} invocations {:>5}  failed {:>3}",
            a.invocations, a.failed
        );
    }
    let queued = store
        .invocations(&record.workflow_id)?
        .iter()
        .filter(|i| {
            matches!(
                i.status,
                crate::invocation::InvocationStatus::Queued
                    | crate::invocation::InvocationStatus::Running
            )
        })
        .count();
    println!("  invocations queued or running: {queued}");
    for w in store.work_items(&record.workflow_id)? {
        if !w.status().is_final() {
            println!(
                "  open: [{}] {} ({}){}",
                w.phase,
                w.description,
                w.status(),
                if w.blocked_by().is_empty() {
                    String::new()
                } else {
                    format!(
                        " waiting for {}",
                        w.blocked_by()
                            .iter()
                            .map(|b| b.to_string())
                            .collect::<Vec<_>>()
                            .join(", ")
                    )
                }
            );
        }
    }
    Ok(0)
}

/// Lines for the first events, then a counter line at most every 250 ms.
async fn progress(mut rx: mpsc::UnboundedReceiver<Event>) {
    const DETAILED: u64 = 200;
    let tty = std::io::stderr().is_terminal();
    let start = Instant::now();
    let (mut started, mut done, mut failed, mut lines) = (0u64, 0u64, 0u64, 0u64);
    let mut last = Instant::now();
    let mut err = std::io::stderr();
    while let Some(e) = rx.recv().await {
        let line = match &e {
            Event::InvocationStarted { .. } => {
                started += 1;
                None
            }
            Event::InvocationDone { agent, outputs, .. } => {
                done += 1;
                Some(format!(
                    "  ✓ {agent} → {}",
                    if outputs.is_empty() {
                        "(nothing)".into()
                    } else {
                        outputs.join(", ")
                    }
                ))
            }
            Event::InvocationFailed {
                agent,
                fault,
                message,
                ..
            } => {
                failed += 1;
                Some(match fault {
                    Some(f) => format!("  ✗ {agent}: fault {f}: {message}"),
                    None => format!("  ✗ {agent}: {message}"),
                })
            }
            Event::DepthLimited {
                type_name, depth, ..
            } => Some(format!(
                "  ⊘ {type_name} at depth {depth} reached the cascade-depth limit"
            )),
            Event::FilterFailed { agent, message } => Some(format!("  ! {agent}: {message}")),
            Event::InvocationRetrying {
                agent,
                attempt,
                reason,
                backoff_ms,
                ..
            } => Some(format!(
                "  ↻ {agent}: attempt {attempt} refused ({reason}); retrying in {backoff_ms} ms"
            )),
            Event::WorkRouted {
                phase, by, reason, ..
            } => Some(format!("  ⇢ discovery routed to {phase} by {by}: {reason}")),
            Event::WorkDuplicate {
                work,
                original,
                score,
            } => Some(format!(
                "  ≡ discovery {work} duplicates {original} (similarity {score:.2}); not scheduled"
            )),
            Event::WorkUnblocked { work } => {
                Some(format!("  ⇥ work {work} released: its blockers are done"))
            }
            Event::PluginsLoaded { added, plugins, .. } => Some(format!(
                "  ⟳ hot load: {} plugin(s) in force{}",
                plugins.len(),
                if added.is_empty() {
                    String::new()
                } else {
                    format!("; new: {}", added.join(", "))
                }
            )),
            Event::ReloadRejected { file, message } => Some(format!(
                "  ⟳ hot load of {file} rejected (the running version stays): {message}"
            )),
            Event::RecoverySpawned { failed, recovery } => Some(format!(
                "  ✚ work {failed} failed for good; recovery work {recovery} spawned"
            )),
        };
        if let Some(line) = line {
            lines += 1;
            if lines <= DETAILED
                || matches!(e, Event::InvocationFailed { fault: Some(_), .. })
                    && lines <= 10 * DETAILED
            {
                let _ = writeln!(err, "{line}");
            }
        }
        if lines > DETAILED && last.elapsed() >= Duration::from_millis(250) {
            last = Instant::now();
            let msg = format!(
                "  [{:>6.1}s] invocations: {done} done, {failed} failed, {} running",
                start.elapsed().as_secs_f64(),
                started.saturating_sub(done + failed)
            );
            let _ = if tty {
                write!(err, "\r{msg}")
            } else {
                writeln!(err, "{msg}")
            };
        }
    }
    if tty && lines > DETAILED {
        let _ = writeln!(err);
    }
}

fn print_summary(s: &RunSummary) {
    print_summary_to(s, &mut std::io::stderr());
}

fn print_summary_to(s: &RunSummary, out: &mut dyn Write) {
    let status = s.status.as_str();
    let _ = writeln!(
        out,
        "murmur: {status} — {} artifacts, {} invocations in {} ms",
        s.artifacts, s.invocations, s.elapsed_ms
    );
    for (phase, c) in &s.phases {
        let _ = writeln!(
            out,
            "  phase {phase:<16} done {:>4}  failed {:>3}  duplicate {:>3}  blocked {:>3}  pending {:>3}  cancelled {:>3}",
            c.done, c.failed, c.duplicate, c.blocked, c.pending, c.cancelled
        );
    }
    let w = &s.work;
    let _ = writeln!(
        out,
        "  work: {} duplicate(s), {} auto-routed, {} unblocked, {} rejected output(s), {} retr{}, {} recovery spawned",
        w.duplicates,
        w.auto_routed,
        w.unblocked,
        w.rejected_outputs,
        w.retries,
        if w.retries == 1 { "y" } else { "ies" },
        w.recovery_spawned
    );
    let faults: Vec<String> = s
        .faults
        .iter()
        .filter(|(_, n)| **n > 0)
        .map(|(k, n)| format!("{k} {n}"))
        .collect();
    if !faults.is_empty() {
        let _ = writeln!(out, "  faults: {}", faults.join(", "));
    }
    for w in &s.open_work {
        let _ = writeln!(
            out,
            "  open: [{}] {} ({}): {}",
            w.phase, w.description, w.status, w.reason
        );
    }
}
