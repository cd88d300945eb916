//! `murmur bench`: measure the engine on a workload.

use super::store::StoreSpec;
use anyhow::{Context, Result};
use murmur::bench::{Agents, CascadeFigures};
use std::path::PathBuf;

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
        /// Where the blackboard lives: `memory` or `sqlite:PATH` (a file that exists is
        /// replaced, so every measurement starts from an empty database).
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
    },
}

impl BenchCommand {
    pub(crate) fn execute(self) -> Result<i32> {
        let BenchWorkload::Cascade {
            n,
            manifest,
            store,
            json,
            native,
            fresh,
        } = self.workload;
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
        let figures = runtime.block_on(murmur::bench::cascade(
            &manifest,
            n,
            Agents::from_flags(native, fresh),
            super::settings::load_options(None),
            store.open()?,
        ))?;
        if json {
            println!("{}", serde_json::to_string(&figures)?);
        } else {
            print!("{}", text(&figures));
        }
        Ok(0)
    }
}

/// The figures for a person to read.
fn text(f: &CascadeFigures) -> String {
    format!(
        "cascade N = {}: {} artifacts, {} invocations in {:.3} s ({:.0} artifacts/s)
  agents {} ({} call(s) per instance), store {}
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
        f.peak_rss_mb,
        f.rss_anon_mb,
        f.rss_file_mb,
        f.p50_dispatch_us,
        f.p99_dispatch_us
    )
}
