//! Driving a run from the command line: the progress display on stderr while it goes,
//! then the summary (text on stderr, `--json` on stdout) and the exit status.

use anyhow::{Context, Result};
use murmur::blackboard::{RunRecord, Store};
use murmur::observe::Event;
use murmur::scheduler::{Scheduler, StopHandle};
use murmur::summary::{RunStatus, RunSummary};
use murmur::workflow::{LoadOptions, Workflow};
use std::io::{IsTerminal, Write};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::mpsc;

/// The process exit status for a run that ended `status`.
pub(crate) fn exit_code(status: RunStatus) -> i32 {
    match status {
        RunStatus::Complete => 0,
        RunStatus::Stalled
        | RunStatus::BudgetExhausted
        | RunStatus::Running
        | RunStatus::Waiting
        | RunStatus::Paused => 3,
        RunStatus::Failed | RunStatus::Cancelled => 1,
        RunStatus::ProviderUnavailable => 4,
    }
}

/// How a run is reported.
pub(crate) struct Reporting {
    /// Print the summary object on stdout.
    pub json: bool,
    /// No progress display and no text summary.
    pub quiet: bool,
    /// Hand the run's invocations to worker processes (`--workers`).
    pub workers: Option<Workers>,
}

/// `--workers`: the run's invocations go to `murmur worker` processes through the
/// PostgreSQL store's task queue; this process keeps the run's decisions.
pub(crate) struct Workers {
    /// The database.
    pub url: String,
    /// The run's store in it.
    pub store: Arc<murmur::blackboard::DurableStore>,
}

/// Drive `scheduler` with the progress display, then report.
pub(crate) fn report(
    wf: Arc<Workflow>,
    store: Arc<dyn Store>,
    Reporting {
        json,
        quiet,
        workers,
    }: Reporting,
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
    if let Some(w) = workers {
        let dispatch = runtime.block_on(murmur::workers::PgDispatch::start_for(
            &w.url,
            w.store.clone(),
            &wf,
        ))?;
        scheduler = scheduler.with_dispatch(dispatch);
        if !quiet {
            eprintln!(
                "murmur: invocations go to `murmur worker` processes on {}",
                w.store.describe()
            );
        }
    }
    let _watcher = match watch {
        Some(dir) => {
            let (reload_tx, reload_rx) = mpsc::unbounded_channel();
            let watcher = murmur::hotload::watch(
                dir,
                wf.manifest.clone(),
                LoadOptions {
                    llm_host: wf.llm.clone(),
                    http_tape: Some(wf.http_tape.clone()),
                    ..super::settings::load_options(Some(&wf.manifest))
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
    let interrupted = Arc::new(std::sync::atomic::AtomicI32::new(0));
    let signalled = interrupted.clone();
    let stopper = scheduler.stop_handle();
    let signals = runtime.block_on(async { Signals::new() })?;
    let summary = runtime.block_on(async move {
        tokio::spawn(stop_on_signal(signals, stopper, interrupted.clone(), quiet));
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
    match signalled.load(std::sync::atomic::Ordering::SeqCst) {
        0 => Ok(exit_code(summary.status)),
        code => {
            if !quiet {
                eprintln!(
                    "murmur: stopped by a signal; `murmur resume` continues the run{}",
                    if json { "" } else { " (see `murmur status`)" }
                );
            }
            Ok(code)
        }
    }
}

/// How long the invocations running when a stop is asked for may take to finish before
/// the process exits anyway. What they had not committed runs again on `resume`.
const GRACE: Duration = Duration::from_secs(30);

/// SIGINT and SIGTERM, registered before the run starts.
struct Signals {
    interrupt: tokio::signal::unix::Signal,
    terminate: tokio::signal::unix::Signal,
}

impl Signals {
    fn new() -> Result<Self> {
        use tokio::signal::unix::{SignalKind, signal};
        Ok(Self {
            interrupt: signal(SignalKind::interrupt()).context("listening for SIGINT")?,
            terminate: signal(SignalKind::terminate()).context("listening for SIGTERM")?,
        })
    }

    /// The next signal's conventional exit status: 130 for SIGINT, 143 for SIGTERM.
    async fn next(&mut self) -> i32 {
        tokio::select! {
            _ = self.interrupt.recv() => 130,
            _ = self.terminate.recv() => 143,
        }
    }
}

/// On SIGINT or SIGTERM: stop claiming, drop the model calls not yet made, and let the
/// running invocations finish and commit (the run then ends `running`, and the process
/// exits 130 or 143). A second
/// signal, or the grace period running out, exits at once: everything committed stays,
/// and `resume` runs again what had not.
async fn stop_on_signal(
    mut signals: Signals,
    stopper: StopHandle,
    interrupted: Arc<std::sync::atomic::AtomicI32>,
    quiet: bool,
) {
    let code = signals.next().await;
    interrupted.store(code, std::sync::atomic::Ordering::SeqCst);
    stopper.stop();
    if !quiet {
        eprintln!(
            "murmur: stopping: no new invocations or model calls; the running ones may finish within {} s (a second signal stops at once)",
            GRACE.as_secs()
        );
    }
    tokio::select! {
        _ = signals.next() => {}
        _ = tokio::time::sleep(GRACE) => {}
    }
    eprintln!(
        "murmur: stopped before the running invocations finished; `murmur resume` runs them again"
    );
    std::process::exit(code);
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
            Event::RunEnded { .. } => None,
            Event::ApprovalRequested { work, phase, .. } => {
                Some(format!("  ⏸ work {work} in {phase} awaits approval"))
            }
            Event::WorkApproved { work } => Some(format!("  ✔ work {work} approved")),
            Event::WorkRejected { work, reason } => {
                Some(format!("  ✘ work {work} rejected: {reason}"))
            }
            Event::WorkExpired { work } => Some(format!(
                "  ⌛ work {work} expired: no decision before its approval timeout"
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

/// The summary as text on stderr.
pub(crate) fn print_summary(s: &RunSummary) {
    print_summary_to(s, &mut std::io::stderr());
}

pub(crate) fn print_summary_to(s: &RunSummary, out: &mut dyn Write) {
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
    if let Some(l) = &s.lessons {
        for (phase, ids) in &l.used {
            let _ = writeln!(out, "  lessons used in {phase}: {}", ids.join(", "));
        }
        if let Some(d) = &l.distilled {
            let _ = writeln!(
                out,
                "  lessons: {} finding(s); {} added, {} merged, {} dropped; {} helped, {} missed{}",
                d.findings,
                d.added.len(),
                d.merged.len(),
                d.dropped.len(),
                d.helped.len(),
                d.missed.len(),
                d.error
                    .as_ref()
                    .map(|e| format!("; nothing learned: {e}"))
                    .unwrap_or_default()
            );
        }
    }
    if let Some(o) = &s.provider {
        let _ = writeln!(
            out,
            "  provider unavailable: {} ({}); open work waits: `murmur resume` goes on once it answers",
            o.url, o.error
        );
    }
    for w in &s.failed_work {
        let _ = writeln!(
            out,
            "  failed: [{}] {}: {}",
            w.phase, w.description, w.reason
        );
    }
    for w in &s.open_work {
        let _ = writeln!(
            out,
            "  open: [{}] {} ({}): {}",
            w.phase, w.description, w.status, w.reason
        );
    }
}
