//! The `murmur` command line. Library errors are typed; here they become messages.

use crate::blackboard::{MemoryStore, Store};
use crate::observe::Event;
use crate::scheduler::Scheduler;
use crate::summary::{RunStatus, RunSummary};
use crate::workflow::{LoadOptions, Workflow};
use anyhow::{Context, Result};
use clap::{Parser, Subcommand, ValueEnum};
use std::io::{IsTerminal, Write};
use std::path::PathBuf;
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

/// Where the blackboard lives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum StoreKind {
    /// In memory; gone when the process ends.
    Memory,
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
        /// Where the blackboard lives.
        #[arg(long, value_enum, default_value = "memory")]
        store: StoreKind,
        /// No progress display.
        #[arg(long, short)]
        quiet: bool,
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
    /// DESIGN §7's cascade: N analysis items, three agents, every 5th validation branches
    /// back to analysis for three generations. Fails unless the counts match the closed form.
    Cascade {
        /// Number of initial WorkDiscoveries.
        #[arg(long, default_value_t = 10_000)]
        n: u64,
        /// The cascade manifest whose first input is repeated N times.
        #[arg(long, default_value = "examples/cascade/workflow.toml")]
        manifest: PathBuf,
        /// Where the blackboard lives.
        #[arg(long, value_enum, default_value = "memory")]
        store: StoreKind,
        /// Print the figures as one JSON line (the default output is the same line).
        #[arg(long)]
        json: bool,
        /// Run the same agents as native Rust in the host (no sandbox), to price it.
        #[arg(long)]
        native: bool,
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
        } => run(manifest, json, store, quiet),
        Command::Bench {
            workload:
                BenchWorkload::Cascade {
                    n,
                    manifest,
                    store: StoreKind::Memory,
                    json: _,
                    native,
                },
        } => {
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()
                .context("starting tokio")?;
            let figures = runtime.block_on(crate::bench::cascade(
                &manifest,
                n,
                native,
                LoadOptions::default(),
            ))?;
            println!("{}", serde_json::to_string(&figures)?);
            Ok(0)
        }
    }
}

fn run(manifest: PathBuf, json: bool, store: StoreKind, quiet: bool) -> Result<i32> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting tokio")?;
    let loaded = Instant::now();
    let wf = Workflow::load(&manifest, LoadOptions::default())?;
    let wf = Arc::new(wf);
    if !quiet {
        eprintln!(
            "murmur: loaded '{}' ({} plugins, {} phases) in {} ms",
            wf.name(),
            wf.plugins.len(),
            wf.phases.len(),
            loaded.elapsed().as_millis()
        );
    }
    let store: Arc<dyn Store> = match store {
        StoreKind::Memory => Arc::new(MemoryStore::new()),
    };
    let (tx, rx) = mpsc::unbounded_channel();
    let summary = runtime.block_on(async move {
        let progress = (!quiet).then(|| tokio::spawn(progress(rx)));
        let scheduler = Scheduler::new(wf, store).with_events(tx);
        let summary = scheduler.run().await;
        drop(scheduler);
        if let Some(p) = progress {
            let _ = p.await;
        }
        summary
    })?;
    if !quiet {
        print_summary(&summary);
    }
    if json {
        println!("{}", serde_json::to_string_pretty(&summary)?);
    }
    Ok(match summary.status {
        RunStatus::Complete => 0,
        RunStatus::Stalled | RunStatus::BudgetExhausted => 3,
        RunStatus::Failed => 1,
    })
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
    let status = serde_json::to_value(s.status)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_default();
    eprintln!(
        "murmur: {status} — {} artifacts, {} invocations in {} ms",
        s.artifacts, s.invocations, s.elapsed_ms
    );
    for (phase, c) in &s.phases {
        eprintln!(
            "  phase {phase:<16} done {:>4}  failed {:>3}  duplicate {:>3}  blocked {:>3}  pending {:>3}  cancelled {:>3}",
            c.done, c.failed, c.duplicate, c.blocked, c.pending, c.cancelled
        );
    }
    let w = &s.work;
    eprintln!(
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
        eprintln!("  faults: {}", faults.join(", "));
    }
    for w in &s.open_work {
        eprintln!(
            "  open: [{}] {} ({}): {}",
            w.phase, w.description, w.status, w.reason
        );
    }
}
