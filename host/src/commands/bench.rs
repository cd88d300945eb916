//! `murmur bench`: measure the engine on a workload.

use super::store::StoreSpec;
use anyhow::{Context, Result};
use murmur::bench::{Agents, CascadeFigures};
use std::path::PathBuf;
use std::sync::Arc;

/// Measure the engine on a workload.
#[derive(Debug, clap::Args)]
pub(crate) struct BenchCommand {
    /// The workload.
    #[command(subcommand)]
    workload: BenchWorkload,
}

/// Benchmark workloads.
#[derive(Debug, clap::Subcommand)]
enum BenchWorkload {
    /// The cascade: N analysis items, three agents, every 5th validation branches back to
    /// analysis for three generations. Fails unless the counts match the closed form.
    Cascade {
        /// Number of initial WorkDiscoveries.
        #[arg(long, default_value_t = 10_000)]
        n: u64,
        /// The cascade manifest whose first input is repeated N times.
        #[arg(long, default_value = "examples/cascade/workflow.toml")]
        manifest: PathBuf,
        /// Where the blackboard lives: `memory`, `sqlite:PATH` (a file that exists is
        /// replaced, so every measurement starts from an empty database) or
        /// `postgres://…` (the run gets a scratch database on that server, dropped after).
        #[arg(long, default_value = "memory")]
        store: StoreSpec,
        /// Print the figures as one JSON line instead of text.
        #[arg(long)]
        json: bool,
        /// Run the same agents as native Rust in the host (no sandbox), to price it.
        #[arg(long)]
        native: bool,
        /// Give every call a fresh instance, whatever the manifest's `limits.reuse` says
        /// (the sandbox's default), to price instance reuse.
        #[arg(long, conflicts_with = "native")]
        fresh: bool,
        /// Start K `murmur worker` processes on the (PostgreSQL) store and hand them every
        /// invocation: this process only coordinates.
        #[arg(long, default_value_t = 0, conflicts_with = "native")]
        workers: u32,
    },
    /// Agents waiting on a model: N work items, each one call of the generic LLM agent
    /// to a built-in OpenAI-compatible server on loopback that answers after L ms, K
    /// calls in flight. Prints one JSON line with `--json`; fails unless every item got
    /// its answer.
    Llm {
        /// Work items (one model call each).
        #[arg(long, default_value_t = 2_000)]
        n: u64,
        /// The server's delay before each answer, ms.
        #[arg(long, default_value_t = 1_000)]
        latency_ms: u64,
        /// Calls in flight at most (the workflow's concurrency and `[llm] max_concurrency`).
        #[arg(long, default_value_t = 256)]
        in_flight: u64,
        /// The LLM agent component.
        #[arg(long, default_value = "target/plugins/llm-agent.wasm")]
        plugin: PathBuf,
        /// Print the figures as one JSON line instead of text.
        #[arg(long)]
        json: bool,
        /// Run the calls in K `murmur worker` processes, each with `--in-flight` calls at
        /// once (K × in-flight in all); needs `--store postgres://…`.
        #[arg(long, default_value_t = 0, requires = "store")]
        workers: u32,
        /// With `--workers`: the PostgreSQL server (the run gets a scratch database).
        #[arg(long)]
        store: Option<StoreSpec>,
    },
    /// The model server of `bench llm`, run as its own process (so its sockets and memory
    /// are not the engine's): prints `port P`, answers every request after L ms, and
    /// takes commands on stdin (see `bench_llm.rs`).
    #[command(hide = true)]
    LlmServer {
        /// The delay before each answer, ms.
        #[arg(long)]
        latency_ms: u64,
    },
    /// The service: N artifacts published over HTTP into one SQLite-backed run of a
    /// `murmur serve` process, K clients at once; throughput and p50/p99 latency. Fails
    /// unless the run holds all N.
    Serve {
        /// Publishes in all.
        #[arg(long, default_value_t = 20_000)]
        n: u64,
        /// Clients at once, each on its own connection.
        #[arg(long, default_value_t = 64)]
        clients: u64,
        /// Where the database goes (default: a temporary directory, removed after).
        #[arg(long)]
        dir: Option<PathBuf>,
        /// Print the figures as one JSON line instead of text.
        #[arg(long)]
        json: bool,
    },
    /// A server that outlives its runs: R cascades of N items, one after another,
    /// through one `murmur serve` on SQLite; its resident memory after each has finished
    /// (and left memory) and at its peak. Fails unless every cascade completes alike.
    ServeHistory {
        /// Cascades, one after another.
        #[arg(long, default_value_t = 10)]
        runs: u64,
        /// Items of each.
        #[arg(long, default_value_t = 100_000)]
        n: u64,
        /// The cascade manifest (its `count` is set to N).
        #[arg(long, default_value = "examples/cascade/workflow.toml")]
        manifest: PathBuf,
        /// Where the database goes (default: a temporary directory, removed after).
        #[arg(long)]
        dir: Option<PathBuf>,
    },
    /// Durability under kill -9: run the cascade on SQLite, kill it at seeded points
    /// spread over the whole run (one in ten during start-up), resume each, and compare
    /// it with an uninterrupted run. Prints one JSON line (trials, mid_run, identical,
    /// lost, duplicated); exits 1 unless every trial matched.
    Soak {
        /// Kill-and-resume trials.
        #[arg(long, default_value_t = 100)]
        kills: u32,
        /// Initial WorkDiscoveries of the cascade.
        #[arg(long, default_value_t = 1_000)]
        n: u64,
        /// The kill points' seed.
        #[arg(long, default_value_t = 2026_12_05)]
        seed: u64,
        /// The cascade manifest (its `count` is set to N).
        #[arg(long, default_value = "examples/cascade/workflow.toml")]
        manifest: PathBuf,
        /// Where the databases go (default: a temporary directory, removed unless a
        /// trial differed).
        #[arg(long)]
        dir: Option<PathBuf>,
    },
}

impl BenchCommand {
    pub(crate) fn execute(self) -> Result<i32> {
        let (n, manifest, store, json, native, fresh, workers) = match self.workload {
            BenchWorkload::Cascade {
                n,
                manifest,
                store,
                json,
                native,
                fresh,
                workers,
            } => (n, manifest, store, json, native, fresh, workers),
            BenchWorkload::Llm {
                n,
                latency_ms,
                in_flight,
                plugin,
                json,
                workers,
                store,
            } => {
                let server = match workers {
                    0 => None,
                    _ => Some(
                        store
                            .unwrap_or(StoreSpec::Memory)
                            .workers_url()?
                            .to_string(),
                    ),
                };
                let f = super::bench_llm::LlmBench {
                    n,
                    latency_ms,
                    in_flight,
                    plugin,
                    workers,
                    server,
                }
                .run()?;
                if json {
                    println!("{}", serde_json::to_string(&f)?);
                } else {
                    println!(
                        "llm N = {}, {} in flight, {} ms a call: {:.3} s (ideal {:.3} s, efficiency {:.2})\n  peak RSS {:.1} MB, {:.0} KB per call in flight; the server alone: {:.0} requests/s; a bare client in this shape: efficiency {:.2}",
                        f.n,
                        f.in_flight,
                        f.latency_ms,
                        f.seconds,
                        f.ideal_seconds,
                        f.efficiency,
                        f.peak_rss_mb,
                        f.rss_per_in_flight_kb,
                        f.server_capacity_rps,
                        f.bare_client_efficiency
                    );
                    if let Some(m) = f.in_flight_kb {
                        println!(
                            "  per call in flight, with all waiting: linear memory {:.0} KB, fiber stack {:.0} KB, the rest {:.0} KB",
                            m.linear_memory, m.fiber_stack, m.other
                        );
                    }
                }
                return Ok(0);
            }
            BenchWorkload::Serve {
                n,
                clients,
                dir,
                json,
            } => {
                let f = super::bench_serve::ServeBench { n, clients, dir }.run()?;
                if json {
                    println!("{}", serde_json::to_string(&f)?);
                } else {
                    println!(
                        "serve N = {}, {} clients: {:.3} s ({:.0} publishes/s), latency p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms; server peak RSS {:.1} MB",
                        f.n,
                        f.clients,
                        f.seconds,
                        f.publishes_per_s,
                        f.p50_ms,
                        f.p99_ms,
                        f.max_ms,
                        f.server_peak_rss_mb
                    );
                }
                return Ok(0);
            }
            BenchWorkload::ServeHistory {
                runs,
                n,
                manifest,
                dir,
            } => {
                let f = super::bench_serve::HistoryBench {
                    runs,
                    n,
                    manifest,
                    dir,
                }
                .run()?;
                println!("{}", serde_json::to_string(&f)?);
                return Ok(0);
            }
            BenchWorkload::LlmServer { latency_ms } => {
                super::bench_llm::server_process(std::time::Duration::from_millis(latency_ms))?;
                return Ok(0);
            }
            BenchWorkload::Soak {
                kills,
                n,
                seed,
                manifest,
                dir,
            } => {
                let figures = super::soak::Soak {
                    kills,
                    n,
                    seed,
                    manifest,
                    dir,
                }
                .run()?;
                println!("{}", serde_json::to_string(&figures)?);
                return Ok(if figures.identical == figures.trials {
                    0
                } else {
                    1
                });
            }
        };
        // Every measurement starts from an empty database: a file is replaced, and a
        // PostgreSQL server gets a scratch database of its own, dropped after.
        let mut scratch = None;
        let store = match store {
            StoreSpec::Sqlite(p) => {
                super::scratch::remove_db(&p)?;
                StoreSpec::Sqlite(p)
            }
            StoreSpec::Postgres(server) => {
                let db = murmur::blackboard::postgres::scratch::ScratchDatabase::create(
                    &server,
                    "murmur_bench",
                )?;
                let url = db.url();
                scratch = Some(db);
                StoreSpec::Postgres(url)
            }
            StoreSpec::Memory => StoreSpec::Memory,
        };
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .context("starting tokio")?;
        let (opened, remote, crew) = match workers {
            0 => (store.open()?, None, None),
            k => {
                let url = store.workers_url()?;
                let durable = store.open_durable()?.context("opening the store")?;
                let crew = Crew::start(url, k, 64)?;
                let remote = murmur::bench::Remote {
                    url: url.to_string(),
                    store: durable.clone(),
                    workers: k,
                };
                (durable as Arc<dyn murmur::Store>, Some(remote), Some(crew))
            }
        };
        let figures = runtime.block_on(murmur::bench::cascade(
            &manifest,
            n,
            Agents::from_flags(native, fresh),
            super::settings::load_options(None),
            opened,
            remote,
        ))?;
        drop(crew);
        drop(scratch);
        if json {
            println!("{}", serde_json::to_string(&figures)?);
        } else {
            print!("{}", text(&figures));
        }
        Ok(0)
    }
}

/// The benchmark's `murmur worker` processes; stopped (SIGTERM, then waited for) when
/// dropped, however the benchmark ends.
pub(super) struct Crew {
    children: Vec<std::process::Child>,
    cache: Option<super::scratch::Workdir>,
}

impl Crew {
    pub(super) fn start(url: &str, k: u32, concurrency: u64) -> Result<Self> {
        let exe = std::env::current_exe().context("finding this binary")?;
        let cache = super::scratch::Workdir::new(None, "workers")?;
        let dir = cache.path.clone();
        let mut crew = Self {
            children: Vec::new(),
            cache: Some(cache),
        };
        for _ in 0..k {
            let child = std::process::Command::new(&exe)
                .args([
                    "worker",
                    "--store",
                    url,
                    "--concurrency",
                    &concurrency.to_string(),
                ])
                .arg("--cache-dir")
                .arg(&dir)
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .spawn()
                .context("starting a worker")?;
            crew.children.push(child);
        }
        Ok(crew)
    }
}

impl Drop for Crew {
    fn drop(&mut self) {
        for c in &self.children {
            // SAFETY: kill(2) on our own children's pids, not yet waited for.
            unsafe { libc::kill(c.id() as libc::pid_t, libc::SIGTERM) };
        }
        for c in &mut self.children {
            let _ = c.wait();
        }
        if let Some(cache) = self.cache.take() {
            cache.finish();
        }
    }
}

/// The figures for a person to read.
fn text(f: &CascadeFigures) -> String {
    format!(
        "cascade N = {}: {} artifacts, {} invocations in {:.3} s ({:.0} artifacts/s)
  agents {} ({} call(s) per instance), store {}{}
  peak RSS {:.1} MB (at the end: {:.1} MB anonymous, {:.1} MB file-backed)
  dispatch p50 {} µs, p99 {} µs
",
        f.n,
        f.artifacts,
        f.invocations,
        f.seconds,
        f.artifacts_per_s,
        f.agents,
        f.calls_per_instance,
        f.store,
        match f.workers {
            0 => String::new(),
            k => format!(", run by {k} worker process(es) (the figures below are this process's)"),
        },
        f.peak_rss_mb,
        f.rss_anon_mb,
        f.rss_file_mb,
        f.p50_dispatch_us,
        f.p99_dispatch_us
    )
}
