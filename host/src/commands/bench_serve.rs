//! `murmur bench serve`: artifacts published over HTTP into one SQLite-backed run of a
//! `murmur serve` process, by K clients at once, each on its own kept-alive connection,
//! each sending its next publish when the last is answered.
//!
//! The server is this binary in its own process (its threads, sockets and memory are its
//! own, as in production); the clients run here, on one thread. On a two-core machine
//! the clients take a share of the CPU the server would otherwise have: the figures are
//! a floor.

use anyhow::{Context, Result, bail};
use serde::Serialize;
use serde_json::{Value, json};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use super::scratch::{Workdir, remove_db, workload};

/// A figure (`VmRSS:`, `VmHWM:`) of process `pid`'s status, MB.
fn status_mb(pid: u32, key: &str) -> f64 {
    murmur::bench::process_status_kb(&pid.to_string(), key) as f64 / 1024.0
}

/// The benchmark's settings.
pub(crate) struct ServeBench {
    /// Publishes in all.
    pub n: u64,
    /// Clients at once.
    pub clients: u64,
    /// Where the database goes (a temporary directory when not given).
    pub dir: Option<PathBuf>,
}

/// What was measured.
#[derive(Debug, Serialize)]
pub(crate) struct ServeFigures {
    /// Publishes in all.
    pub n: u64,
    /// Clients at once.
    pub clients: u64,
    /// From the first publish sent to the last answered.
    pub seconds: f64,
    /// Publishes answered 201 per second.
    pub publishes_per_s: f64,
    /// Latency of one publish (request written to answer read), ms.
    pub p50_ms: f64,
    /// The 99th percentile.
    pub p99_ms: f64,
    /// The slowest.
    pub max_ms: f64,
    /// The server's peak resident set, MB.
    pub server_peak_rss_mb: f64,
    /// The artifacts of the type the run holds at the end (must be N).
    pub stored: u64,
}

/// The workflow published into: one type, no agents (the publish path alone).
const MANIFEST: &str = r#"[workflow]
name = "bench-serve"

[[type]]
name = "Reading"
schema = { type = "object", required = ["sensor", "value"], properties = { sensor = { type = "string" }, value = { type = "number" } } }
"#;

/// A `murmur serve` child, stopped with SIGTERM when dropped.
struct ServerProcess {
    child: Child,
    url: String,
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        // SAFETY: kill(2) on our own child, not yet waited for.
        unsafe { libc::kill(self.child.id() as libc::pid_t, libc::SIGTERM) };
        let _ = self.child.wait();
    }
}

impl ServerProcess {
    fn start(db: &Path) -> Result<Self> {
        Self::start_with(db, &[])
    }

    fn start_with(db: &Path, args: &[&str]) -> Result<Self> {
        let murmur = std::env::current_exe().context("finding this murmur binary")?;
        let mut child = Command::new(murmur)
            .args(["serve", "--listen", "127.0.0.1:0", "--store"])
            .arg(format!("sqlite:{}", db.display()))
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .context("starting murmur serve")?;
        let stdout = child.stdout.take().context("the server's stdout")?;
        let mut line = String::new();
        BufReader::new(stdout)
            .read_line(&mut line)
            .context("reading where the server listens")?;
        let Some(addr) = line.trim().strip_prefix("listening ") else {
            let _ = child.kill();
            bail!("murmur serve did not start: it said {line:?}");
        };
        let url = addr.to_string();
        Ok(Self { child, url })
    }

    /// Its peak resident set (VmHWM), MB; 0 where /proc is unavailable.
    fn peak_rss_mb(&self) -> f64 {
        status_mb(self.child.id(), "VmHWM:")
    }
}

impl ServeBench {
    pub(crate) fn run(self) -> Result<ServeFigures> {
        if self.clients == 0 || self.n == 0 {
            bail!("--n and --clients must be at least 1");
        }
        let workdir = Workdir::new(self.dir.as_deref(), "bench-serve")?;
        let db = workdir.path.join("bench-serve.db");
        remove_db(&db)?;
        let server = ServerProcess::start(&db)?;
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .context("starting tokio")?;
        let figures = runtime.block_on(self.measure(&server))?;
        drop(server);
        workdir.finish();
        Ok(figures)
    }

    async fn measure(&self, server: &ServerProcess) -> Result<ServeFigures> {
        let http = reqwest::Client::builder()
            .pool_max_idle_per_host(self.clients as usize)
            .timeout(Duration::from_secs(60))
            .build()?;
        let base = server.url.clone();
        let started = post_json(
            &http,
            &format!("{base}/v1/workflows"),
            &json!({ "manifest": MANIFEST }),
        )
        .await
        .context("starting the workflow")?;
        let id = started["workflow_id"]
            .as_str()
            .context("the server answered no workflow_id")?
            .to_string();
        let url = Arc::new(format!("{base}/v1/workflows/{id}/artifacts"));
        let next = Arc::new(AtomicU64::new(0));
        let n = self.n;
        let began = Instant::now();
        let mut tasks = Vec::new();
        for client in 0..self.clients {
            let (http, url, next) = (http.clone(), url.clone(), next.clone());
            tasks.push(tokio::spawn(async move {
                let mut latencies = Vec::new();
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= n {
                        return Ok::<_, anyhow::Error>(latencies);
                    }
                    let body = json!({
                        "type": "Reading",
                        "payload": { "sensor": format!("s{client}"), "value": i }
                    });
                    let sent = Instant::now();
                    let answer = http
                        .post(url.as_str())
                        .header("content-type", "application/json")
                        .body(body.to_string())
                        .send()
                        .await?;
                    let status = answer.status();
                    let text = answer.text().await?;
                    latencies.push(sent.elapsed());
                    if status.as_u16() != 201 {
                        bail!("publish {i} answered {status}: {text}");
                    }
                }
            }));
        }
        let mut latencies = Vec::with_capacity(n as usize);
        for t in tasks {
            latencies.extend(t.await.context("a client task")??);
        }
        let seconds = began.elapsed().as_secs_f64();
        let summary = get_json(&http, &format!("{base}/v1/workflows/{id}")).await?;
        let stored = summary["by_type"]["Reading"].as_u64().unwrap_or(0);
        latencies.sort_unstable();
        let ms = |q: f64| {
            let i = ((latencies.len() as f64 - 1.0) * q).round() as usize;
            latencies.get(i).map_or(0.0, |d| d.as_secs_f64() * 1000.0)
        };
        let figures = ServeFigures {
            n,
            clients: self.clients,
            seconds,
            publishes_per_s: n as f64 / seconds,
            p50_ms: ms(0.50),
            p99_ms: ms(0.99),
            max_ms: ms(1.0),
            server_peak_rss_mb: server.peak_rss_mb(),
            stored,
        };
        if stored != n {
            bail!(
                "the run holds {stored} Reading artifacts after {n} publishes answered 201: {figures:?}"
            );
        }
        Ok(figures)
    }
}

/// `murmur bench serve-history`: a server that outlives its runs. R cascades of N items,
/// one after another, through one `murmur serve` on SQLite; the server's resident memory
/// after each has finished and left memory, and at its peak.
pub(crate) struct HistoryBench {
    /// Cascades, one after another.
    pub runs: u64,
    /// Items of each.
    pub n: u64,
    /// The cascade manifest (its `count` is set to N).
    pub manifest: PathBuf,
    /// Where the database goes (a temporary directory when not given).
    pub dir: Option<PathBuf>,
}

/// What `serve-history` measured.
#[derive(Debug, Serialize)]
pub(crate) struct HistoryFigures {
    /// Cascades run.
    pub runs: u64,
    /// Items of each.
    pub n: u64,
    /// Artifacts of each but the timed `WorkflowMetrics` (all equal, or the benchmark
    /// fails).
    pub artifacts_per_run: u64,
    /// Seconds each took, start to `complete`.
    pub seconds: Vec<f64>,
    /// The server's resident memory after each run had finished and left memory, MB.
    pub rss_after_mb: Vec<f64>,
    /// The server's peak resident memory, MB.
    pub peak_rss_mb: f64,
    /// The database file at the end, MB.
    pub database_mb: f64,
}

impl HistoryBench {
    pub(crate) fn run(self) -> Result<HistoryFigures> {
        let workdir = Workdir::new(self.dir.as_deref(), "bench-history")?;
        let db = workdir.path.join("history.db");
        remove_db(&db)?;
        let manifest = workload(&self.manifest, self.n, &workdir.path)?;
        let text = std::fs::read_to_string(&manifest)
            .with_context(|| format!("reading {}", manifest.display()))?;
        let base_dir = &workdir.path;
        let server = ServerProcess::start_with(&db, &["--unload-after-ms", "500"])?;
        let pid = server.child.id();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .context("starting tokio")?;
        let figures = runtime.block_on(async {
            let http = reqwest::Client::new();
            let base = server.url.clone();
            let mut seconds = Vec::new();
            let mut rss_after_mb = Vec::new();
            let mut artifacts_per_run = None;
            for _ in 0..self.runs {
                let began = Instant::now();
                let started = post_json(
                    &http,
                    &format!("{base}/v1/workflows"),
                    &json!({ "manifest": text, "base_dir": base_dir }),
                )
                .await
                .context("starting a cascade")?;
                let id = started["workflow_id"]
                    .as_str()
                    .context("the server answered no workflow_id")?
                    .to_string();
                let summary = loop {
                    let summary = get_json(&http, &format!("{base}/v1/workflows/{id}")).await?;
                    if summary["status"] != "running" {
                        break summary;
                    }
                    tokio::time::sleep(Duration::from_millis(100)).await;
                };
                seconds.push(began.elapsed().as_secs_f64());
                if summary["status"] != "complete" {
                    bail!("cascade {id} ended {}", summary["status"]);
                }
                // The workload's artifacts; how many timed metrics a run publishes varies.
                let artifacts: u64 = summary["by_type"]
                    .as_object()
                    .map(|m| {
                        m.iter()
                            .filter(|(t, _)| *t != "WorkflowMetrics")
                            .filter_map(|(_, n)| n.as_u64())
                            .sum()
                    })
                    .unwrap_or(0);
                if *artifacts_per_run.get_or_insert(artifacts) != artifacts {
                    bail!("cascade {id} has {artifacts} artifacts, the first had {artifacts_per_run:?}");
                }
                // Wait until the finished run has left memory.
                let waited = Instant::now();
                loop {
                    let metrics = http.get(format!("{base}/metrics")).send().await?.text().await?;
                    let loaded = metrics
                        .lines()
                        .find_map(|l| l.strip_prefix("murmur_runs_loaded "))
                        .and_then(|n| n.trim().parse::<u64>().ok());
                    if loaded == Some(0) {
                        break;
                    }
                    if waited.elapsed() > Duration::from_secs(60) {
                        bail!("cascade {id} was still in memory a minute after it finished");
                    }
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                // The allocator gives freed pages back after a short delay.
                tokio::time::sleep(Duration::from_millis(500)).await;
                rss_after_mb.push(status_mb(pid, "VmRSS:"));
            }
            Ok(HistoryFigures {
                runs: self.runs,
                n: self.n,
                artifacts_per_run: artifacts_per_run.unwrap_or(0),
                seconds,
                rss_after_mb,
                peak_rss_mb: status_mb(pid, "VmHWM:"),
                database_mb: std::fs::metadata(&db).map_or(0.0, |m| m.len() as f64 / 1e6),
            })
        })?;
        drop(server);
        workdir.finish();
        Ok(figures)
    }
}

/// POST `body` as JSON to `url`; the answer's JSON, unless its status is an error.
async fn post_json(http: &reqwest::Client, url: &str, body: &Value) -> Result<Value> {
    let answer = http
        .post(url)
        .header("content-type", "application/json")
        .body(body.to_string())
        .send()
        .await?;
    read_json(answer).await
}

/// GET `url`; the answer's JSON, unless its status is an error.
async fn get_json(http: &reqwest::Client, url: &str) -> Result<Value> {
    read_json(http.get(url).send().await?).await
}

async fn read_json(answer: reqwest::Response) -> Result<Value> {
    let status = answer.status();
    let text = answer.text().await?;
    if !status.is_success() {
        bail!("the server answered {status}: {text}");
    }
    serde_json::from_str(&text)
        .with_context(|| format!("the server answered {status} with {text:?}"))
}
