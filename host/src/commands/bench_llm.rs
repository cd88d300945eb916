//! `murmur bench llm`: the engine on its real workload, agents waiting on a model.
//!
//! N work items, each one call of the generic LLM agent (`plugins/llm-agent`) to an
//! OpenAI-compatible server on loopback that answers a schema-valid ValidationResult after
//! a fixed latency. With K calls in flight the ideal time is ⌈N / K⌉ × latency; what the
//! run takes beyond that, and the memory each call in flight holds, is the engine's cost.
//! The server is built in (tokio, one task per connection, keep-alive) and measured alone
//! first, so its figure shows it is not what limits the run.

use anyhow::{Context, Result, bail};
use murmur::summary::RunStatus;
use murmur::workflow::Workflow;
use serde::Serialize;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// The figures: `murmur bench llm --json` prints them as one line.
#[derive(Debug, Serialize)]
pub(crate) struct LlmFigures {
    /// Work items, one model call each.
    pub n: u64,
    /// Calls in flight at most (the workflow's concurrency and `[llm] max_concurrency`).
    pub in_flight: u64,
    /// The server's delay before each answer.
    pub latency_ms: u64,
    /// The run, from the first input to the end.
    pub seconds: f64,
    /// ⌈N / K⌉ × latency.
    pub ideal_seconds: f64,
    /// ideal / measured.
    pub efficiency: f64,
    /// The process's peak resident memory.
    pub peak_rss_mb: f64,
    /// Peak resident memory over what the process held before the run, per call in flight.
    pub rss_per_in_flight_kb: f64,
    /// Requests per second the server answered alone, K clients at this latency (its
    /// ideal: K / latency).
    pub server_capacity_rps: f64,
    /// What one call in flight holds, read from `/proc/self/smaps` when the server first
    /// had every call waiting at once (KB each; the three add up to the whole process's
    /// resident memory then, per call in flight).
    pub in_flight_kb: Option<InFlightMemory>,
}

/// Resident memory per call in flight, by kind.
#[derive(Debug, Serialize, Clone, Copy)]
pub(crate) struct InFlightMemory {
    /// The guests' linear memories (wasmtime's pool: read-write mappings of one size
    /// repeated at least once per call in flight).
    pub linear_memory: f64,
    /// Fiber stacks (read-write mappings of exactly the async stack's size).
    pub fiber_stack: f64,
    /// Everything else: instance and store state, tasks, the HTTP requests and
    /// connections, the heap, the binary.
    pub other: f64,
}

/// The async stack wasmtime gives each call (its default, which the engine keeps).
const FIBER_STACK_KB: u64 = 2048;

/// Read `/proc/self/smaps` and split the resident memory as [`InFlightMemory`] says, per
/// one of `calls` calls in flight.
fn in_flight_memory(calls: u64) -> Option<InFlightMemory> {
    let text = std::fs::read_to_string("/proc/self/smaps").ok()?;
    // Per writable anonymous mapping: (size, rss) in kB; and the process's total rss.
    let mut maps: Vec<(u64, u64)> = Vec::new();
    let mut total = 0u64;
    let mut current: Option<(bool, u64)> = None;
    for line in text.lines() {
        let mut words = line.split_whitespace();
        let first = words.next().unwrap_or("");
        if first.contains('-') && !first.ends_with(':') {
            // A mapping's header: range, perms, offset, dev, inode[, path].
            let perms = words.next().unwrap_or("");
            let path = words.nth(3);
            current = Some((perms.starts_with("rw") && path.is_none(), 0));
        } else if first == "Size:" {
            if let Some((_, size)) = current.as_mut() {
                *size = words.next()?.parse().ok()?;
            }
        } else if first == "Rss:" {
            let rss: u64 = words.next()?.parse().ok()?;
            total += rss;
            if let Some((true, size)) = current {
                maps.push((size, rss));
            }
        }
    }
    let mut by_size: std::collections::HashMap<u64, (u64, u64)> = Default::default();
    for (size, rss) in maps {
        let e = by_size.entry(size).or_default();
        e.0 += 1;
        e.1 += rss;
    }
    let stacks = by_size.get(&FIBER_STACK_KB).map_or(0, |e| e.1);
    let memories: u64 = by_size
        .iter()
        .filter(|(size, (count, _))| **size != FIBER_STACK_KB && *count >= calls)
        .map(|(_, (_, rss))| rss)
        .sum();
    let per = |kb: u64| kb as f64 / calls.max(1) as f64;
    Some(InFlightMemory {
        linear_memory: per(memories),
        fiber_stack: per(stacks),
        other: per(total.saturating_sub(memories + stacks)),
    })
}

/// The benchmark's settings.
pub(crate) struct LlmBench {
    pub n: u64,
    pub latency_ms: u64,
    pub in_flight: u64,
    pub plugin: std::path::PathBuf,
}

/// The answer every completion gets: valid against ValidationResult's schema.
const ANSWER: &str = r#"{"passed": true, "issues": []}"#;

impl LlmBench {
    pub(crate) fn run(self) -> Result<LlmFigures> {
        if self.n == 0 || self.in_flight == 0 {
            bail!("--n and --in-flight must be at least 1");
        }
        let latency = Duration::from_millis(self.latency_ms);
        // The server's own runtime: the engine's threads do not share its workers.
        let server_rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .context("starting the model server's runtime")?;
        let requests = Arc::new(AtomicU64::new(0));
        let waiting = Arc::new(Waiting::default());
        let listener = server_rt
            .block_on(TcpListener::bind("127.0.0.1:0"))
            .context("binding the model server")?;
        let addr = listener.local_addr()?;
        server_rt.spawn(serve(listener, latency, requests.clone(), waiting.clone()));
        let capacity = server_rt.block_on(capacity(addr, self.in_flight, latency))?;
        requests.store(0, Ordering::SeqCst);
        // From now on, the first moment every call is waiting at the server is sampled.
        if let Ok(mut w) = waiting.sample_at.lock() {
            *w = Some(self.in_flight.min(self.n));
        }

        let manifest = manifest(&self, &format!("http://{addr}/v1"))?;
        let options = super::settings::load_options(None);
        let wf = Workflow::from_manifest(
            murmur::manifest::Manifest::parse(Path::new("bench-llm.toml"), &manifest)
                .context("the benchmark's manifest")?,
            options,
        )?;
        let before_kb = murmur::bench::status_kb("VmRSS:");
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .context("starting tokio")?;
        let store: Arc<dyn murmur::Store> = Arc::new(murmur::blackboard::MemoryStore::new());
        let started = Instant::now();
        let summary = runtime.block_on(murmur::Scheduler::new(Arc::new(wf), store).run())?;
        let seconds = started.elapsed().as_secs_f64();
        let peak_kb = murmur::bench::status_kb("VmHWM:");
        let answered = summary
            .by_type
            .get("ValidationResult")
            .copied()
            .unwrap_or(0);
        let asked = requests.load(Ordering::SeqCst);
        if summary.status != RunStatus::Complete || answered != self.n || asked != self.n {
            bail!(
                "self-check failed: status {}, {answered} ValidationResults and {asked} requests for {} items",
                summary.status,
                self.n
            );
        }
        let rounds = self.n.div_ceil(self.in_flight);
        let ideal_seconds = rounds as f64 * latency.as_secs_f64();
        let in_flight = self.in_flight.min(self.n);
        Ok(LlmFigures {
            n: self.n,
            in_flight: self.in_flight,
            latency_ms: self.latency_ms,
            seconds,
            ideal_seconds,
            efficiency: ideal_seconds / seconds,
            peak_rss_mb: peak_kb as f64 / 1024.0,
            rss_per_in_flight_kb: peak_kb.saturating_sub(before_kb) as f64 / in_flight as f64,
            server_capacity_rps: capacity,
            in_flight_kb: waiting.sample.lock().ok().and_then(|s| *s),
        })
    }
}

/// N ValidationResult work items for one LLM agent, K at a time.
fn manifest(bench: &LlmBench, url: &str) -> Result<String> {
    let plugin = std::path::absolute(&bench.plugin)
        .with_context(|| format!("resolving {}", bench.plugin.display()))?;
    if !plugin.exists() {
        bail!(
            "{} is missing: build the plugins first (cargo xtask build-plugins)",
            plugin.display()
        );
    }
    let k = bench.in_flight;
    Ok(format!(
        r#"[workflow]
name = "bench-llm"
[workflow.limits]
concurrency = {k}
max_invocations = 10000000
[monitoring]
metrics = false
[retry]
max_attempts = 1
[llm]
base_url = "{url}"
model = "bench"
max_retries = 0
max_concurrency = {k}
timeout_ms = 600000

[[phase]]
name = "validation"

[[plugin]]
name = "checker"
path = {path:?}
world = "agent"
grants = ["llm"]
config = {{ publishes = "ValidationResult" }}
[[plugin.subscribe]]
type = "WorkDiscovery"
filter = "payload.phase == 'validation'"

[[input]]
type = "WorkDiscovery"
count = {n}
[input.payload]
description = "check item {{index}}"
phase = "validation"
done_definition = "checked"
discovered_by = "user"
"#,
        path = plugin.display().to_string(),
        n = bench.n,
    ))
}

/// Requests the server holds at once, and the memory sample taken when they first reach
/// every call of the run.
#[derive(Default)]
struct Waiting {
    now: AtomicU64,
    sample_at: std::sync::Mutex<Option<u64>>,
    sample: std::sync::Mutex<Option<InFlightMemory>>,
}

impl Waiting {
    /// One more request waits; the first time all `sample_at` wait, sample the memory.
    fn arrive(&self) {
        let now = self.now.fetch_add(1, Ordering::SeqCst) + 1;
        let Ok(mut at) = self.sample_at.lock() else {
            return;
        };
        if *at == Some(now) {
            *at = None;
            if let Ok(mut s) = self.sample.lock() {
                *s = in_flight_memory(now);
            }
        }
    }
}

/// Accept connections for as long as the runtime lives.
async fn serve(
    listener: TcpListener,
    latency: Duration,
    requests: Arc<AtomicU64>,
    waiting: Arc<Waiting>,
) {
    while let Ok((stream, _)) = listener.accept().await {
        let _ = stream.set_nodelay(true);
        tokio::spawn(connection(
            stream,
            latency,
            requests.clone(),
            waiting.clone(),
        ));
    }
}

/// One keep-alive connection: each request is answered after `latency`.
async fn connection(
    mut stream: TcpStream,
    latency: Duration,
    requests: Arc<AtomicU64>,
    waiting: Arc<Waiting>,
) -> std::io::Result<()> {
    let mut buf = Vec::with_capacity(8192);
    loop {
        let Some((path, _body)) = read_message(&mut stream, &mut buf).await? else {
            return Ok(());
        };
        requests.fetch_add(1, Ordering::SeqCst);
        waiting.arrive();
        tokio::time::sleep(latency).await;
        waiting.now.fetch_sub(1, Ordering::SeqCst);
        let (status, body) = if path.ends_with("/chat/completions") {
            let answer = serde_json::json!({
                "choices": [{ "message": { "role": "assistant", "content": ANSWER } }],
                "usage": { "prompt_tokens": 100, "completion_tokens": 10 }
            });
            ("200 OK", answer.to_string())
        } else {
            (
                "404 Not Found",
                r#"{"error":"no such endpoint"}"#.to_string(),
            )
        };
        let response = format!(
            "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        );
        stream.write_all(response.as_bytes()).await?;
    }
}

/// Read one HTTP/1.1 message (request or response) from `stream`: its first line's
/// second word (a request's path, a response's status) and its body. `None` at the end
/// of the connection.
async fn read_message(
    stream: &mut TcpStream,
    buf: &mut Vec<u8>,
) -> std::io::Result<Option<(String, Vec<u8>)>> {
    let head_end = loop {
        if let Some(p) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break p + 4;
        }
        if stream.read_buf(buf).await? == 0 {
            return Ok(None);
        }
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
    let length: usize = head
        .lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case("content-length")
                .then(|| v.trim().parse().ok())
                .flatten()
        })
        .unwrap_or(0);
    while buf.len() < head_end + length {
        if stream.read_buf(buf).await? == 0 {
            return Ok(None);
        }
    }
    let second = head
        .lines()
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .unwrap_or("")
        .to_string();
    let body = buf[head_end..head_end + length].to_vec();
    buf.drain(..head_end + length);
    Ok(Some((second, body)))
}

/// Requests per second the server answers with `clients` keep-alive clients asking in a
/// loop, over at least two latencies.
async fn capacity(addr: std::net::SocketAddr, clients: u64, latency: Duration) -> Result<f64> {
    let window = (latency * 3).max(Duration::from_secs(2));
    let done = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let deadline = started + window;
    let body =
        serde_json::json!({"model": "bench", "messages": [{"role": "user", "content": "ping"}]})
            .to_string();
    let mut tasks = Vec::new();
    for _ in 0..clients {
        let (done, body) = (done.clone(), body.clone());
        tasks.push(tokio::spawn(async move {
            let mut stream = TcpStream::connect(addr).await?;
            stream.set_nodelay(true)?;
            let mut buf = Vec::with_capacity(4096);
            let request = format!(
                "POST /v1/chat/completions HTTP/1.1\r\nHost: bench\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
                body.len()
            );
            while Instant::now() < deadline {
                stream.write_all(request.as_bytes()).await?;
                if read_message(&mut stream, &mut buf).await?.is_none() {
                    break;
                }
                done.fetch_add(1, Ordering::Relaxed);
            }
            Ok::<(), std::io::Error>(())
        }));
    }
    for t in tasks {
        t.await
            .context("a capacity client panicked")?
            .context("a capacity client")?;
    }
    Ok(done.load(Ordering::Relaxed) as f64 / started.elapsed().as_secs_f64())
}
