//! `murmur bench llm`: the engine on its real workload, agents waiting on a model.
//!
//! N work items, each one call of the generic LLM agent (`plugins/llm-agent`) to an
//! OpenAI-compatible server on loopback that answers a schema-valid ValidationResult after
//! a fixed latency. With K calls in flight the ideal time is ⌈N / K⌉ × latency; what the
//! run takes beyond that, and the memory each call in flight holds, is the engine's cost.
//! The server is built in (tokio, one task per connection, keep-alive) and runs as a
//! child process of the benchmark (`murmur bench llm-server`), so its sockets and memory
//! are not counted as the engine's; it is measured alone first, so its figure shows it
//! is not what limits the run.

use anyhow::{Context, Result, bail};
use murmur::summary::RunStatus;
use murmur::workflow::Workflow;
use serde::Serialize;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// The figures: `murmur bench llm --json` prints them as one line.
#[derive(Debug, Serialize)]
pub(crate) struct LlmFigures {
    /// Work items, one model call each.
    pub n: u64,
    /// Calls in flight at most (the workflow's concurrency and `[llm] max_concurrency`),
    /// per worker process with `workers`.
    pub in_flight: u64,
    /// Worker processes that made the calls (0: this process).
    pub workers: u32,
    /// The server's delay before each answer.
    pub latency_ms: u64,
    /// The run, from the first input to the end.
    pub seconds: f64,
    /// ⌈N / K⌉ × latency (K: calls in flight in all processes).
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
    /// The same N requests, K at a time, each of K fresh connections asking in turn, sent
    /// by a bare client (a hand-written HTTP/1.1 request on a tokio socket, no engine):
    /// ideal / its time. What this machine and server allow any client in this shape; the
    /// engine's `efficiency` is measured against the same ideal.
    pub bare_client_efficiency: f64,
    /// What one call in flight holds, read from `/proc/self/smaps` when the server first
    /// had every call waiting at once (KB each; the three add up to what the process
    /// held then over what it held before the run, per call in flight).
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
    /// Everything else the run added: instance and store state (the pool's instance and
    /// table slots), tasks, the HTTP requests and connections.
    pub other: f64,
}

/// The async stack wasmtime gives each call (its default, which the engine keeps).
const FIBER_STACK_KB: u64 = 2048;

/// Read `/proc/self/smaps` and split the resident memory over `baseline_kb` (what the
/// process held before the run) as [`InFlightMemory`] says, per one of `calls` calls in
/// flight.
fn in_flight_memory(calls: u64, baseline_kb: u64) -> Option<InFlightMemory> {
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
        other: per(total.saturating_sub(baseline_kb + memories + stacks)),
    })
}

/// The benchmark's settings.
pub(crate) struct LlmBench {
    pub n: u64,
    pub latency_ms: u64,
    pub in_flight: u64,
    pub plugin: std::path::PathBuf,
    /// Worker processes (0: the calls are made here).
    pub workers: u32,
    /// With workers: the PostgreSQL server.
    pub server: Option<String>,
}

/// The answer every completion gets: valid against ValidationResult's schema.
const ANSWER: &str = r#"{"passed": true, "issues": []}"#;

impl LlmBench {
    pub(crate) fn run(self) -> Result<LlmFigures> {
        if self.n == 0 || self.in_flight == 0 {
            bail!("--n and --in-flight must be at least 1");
        }
        let latency = Duration::from_millis(self.latency_ms);
        let mut server = ServerProcess::start(latency)?;
        let addr = server.addr;
        // The capacity clients' runtime: not the engine's.
        let clients = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .context("starting the capacity clients' runtime")?;
        // Calls in flight in all processes.
        let total = self.in_flight * u64::from(self.workers.max(1));
        let capacity = clients.block_on(capacity(addr, total, latency))?;
        let bare_seconds = clients.block_on(bare_client(addr, self.n, total))?;
        drop(clients);
        let manifest = manifest(&self, &format!("http://{addr}/v1"))?;
        let options = super::settings::load_options(None);
        let wf = Workflow::from_manifest(
            murmur::manifest::Manifest::parse(Path::new("bench-llm.toml"), &manifest)
                .context("the benchmark's manifest")?,
            options,
        )?;
        let before_kb = murmur::bench::status_kb("VmRSS:");
        // From now on the server counts afresh, and says when every call first waits.
        server.reset(total.min(self.n), before_kb)?;
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .context("starting tokio")?;
        let wf = Arc::new(wf);
        let scheduler;
        let mut crew = None;
        let mut scratch = None;
        match &self.server {
            None => {
                let store: Arc<dyn murmur::Store> =
                    Arc::new(murmur::blackboard::MemoryStore::new());
                scheduler = murmur::Scheduler::new(wf.clone(), store);
            }
            Some(server) => {
                let db = murmur::blackboard::postgres::scratch::ScratchDatabase::create(
                    server,
                    "murmur_bench",
                )?;
                let url = db.url();
                scratch = Some(db);
                let store = Arc::new(murmur::blackboard::DurableStore::postgres(&url)?);
                crew = Some(super::bench::Crew::start(
                    &url,
                    self.workers,
                    self.in_flight,
                )?);
                let dispatch = runtime.block_on(murmur::workers::PgDispatch::start_for(
                    &url,
                    store.clone(),
                    &wf,
                ))?;
                scheduler = murmur::Scheduler::new(wf.clone(), store).with_dispatch(dispatch);
            }
        }
        let started = Instant::now();
        let summary = runtime.block_on(scheduler.run())?;
        let seconds = started.elapsed().as_secs_f64();
        drop(crew);
        drop(scratch);
        let peak_kb = murmur::bench::status_kb("VmHWM:");
        let answered = summary
            .by_type
            .get("ValidationResult")
            .copied()
            .unwrap_or(0);
        let asked = server.requests()?;
        if summary.status != RunStatus::Complete || answered != self.n || asked != self.n {
            bail!(
                "self-check failed: status {}, {answered} ValidationResults and {asked} requests for {} items",
                summary.status,
                self.n
            );
        }
        let rounds = self.n.div_ceil(total);
        let ideal_seconds = rounds as f64 * latency.as_secs_f64();
        let in_flight = total.min(self.n);
        Ok(LlmFigures {
            n: self.n,
            in_flight: self.in_flight,
            workers: self.workers,
            latency_ms: self.latency_ms,
            seconds,
            ideal_seconds,
            efficiency: ideal_seconds / seconds,
            peak_rss_mb: peak_kb as f64 / 1024.0,
            rss_per_in_flight_kb: peak_kb.saturating_sub(before_kb) as f64 / in_flight as f64,
            server_capacity_rps: capacity,
            bare_client_efficiency: ideal_seconds / bare_seconds,
            // Measured in this process: with workers, the calls are not here.
            in_flight_kb: if self.workers == 0 {
                server.sample()
            } else {
                None
            },
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
    // The run's concurrency is every process's calls; each process makes `k` at most.
    let all = k * u64::from(bench.workers.max(1));
    Ok(format!(
        r#"[workflow]
name = "bench-llm"
[workflow.limits]
concurrency = {all}
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

/// Requests the server holds at once, and when to tell the engine they all wait.
#[derive(Default)]
struct Waiting {
    now: AtomicU64,
    tell_at: std::sync::Mutex<Option<u64>>,
}

impl Waiting {
    /// One more request waits; the first time `tell_at` wait, say `all-waiting`.
    fn arrive(&self) {
        let now = self.now.fetch_add(1, Ordering::SeqCst) + 1;
        let Ok(mut at) = self.tell_at.lock() else {
            return;
        };
        if *at == Some(now) {
            *at = None;
            println!("all-waiting");
        }
    }
}

/// `murmur bench llm-server`: serve on loopback until stdin closes. Prints `port P`;
/// on stdin, `reset K` zeroes the request count and arms `all-waiting` (printed the first
/// time K requests wait at once), `count` prints `requests N`.
pub(crate) fn server_process(latency: Duration) -> Result<()> {
    use std::io::BufRead;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("starting the model server's runtime")?;
    // The longest accept queue the system allows: the engine opens one connection per
    // call in flight, thousands at once, and a full queue drops the rest's SYNs for a
    // second.
    let listener = runtime
        .block_on(async {
            let socket = tokio::net::TcpSocket::new_v4()?;
            socket.bind(std::net::SocketAddr::from(([127, 0, 0, 1], 0)))?;
            socket.listen(65_535)
        })
        .context("binding the model server")?;
    let requests = Arc::new(AtomicU64::new(0));
    let waiting = Arc::new(Waiting::default());
    println!("port {}", listener.local_addr()?.port());
    // Accepting on a thread of its own, blocking: woken by the kernel for each
    // connection, it drains the queue however busy the connections' tasks are (the
    // queue holds at most `somaxconn`, and a connection dropped from it waits a second
    // for its SYN to be sent again).
    let listener = listener.into_std()?;
    listener.set_nonblocking(false)?;
    let handle = runtime.handle().clone();
    let (r, w) = (requests.clone(), waiting.clone());
    std::thread::Builder::new()
        .name("accept".into())
        .spawn(move || {
            for stream in listener.incoming().map_while(Result::ok) {
                let _ = stream.set_nodelay(true);
                let _ = stream.set_nonblocking(true);
                let (r, w) = (r.clone(), w.clone());
                handle.spawn(async move {
                    let stream = TcpStream::from_std(stream)?;
                    connection(stream, latency, r, w).await
                });
            }
        })
        .context("starting the accept thread")?;
    for line in std::io::stdin().lock().lines() {
        let line = line?;
        let mut words = line.split_whitespace();
        match (words.next(), words.next().and_then(|k| k.parse().ok())) {
            (Some("reset"), Some(k)) => {
                requests.store(0, Ordering::SeqCst);
                if let Ok(mut at) = waiting.tell_at.lock() {
                    *at = Some(k);
                }
            }
            (Some("count"), _) => println!("requests {}", requests.load(Ordering::SeqCst)),
            _ => bail!("bench llm-server: unknown command {line:?}"),
        }
    }
    Ok(())
}

/// The model server's process, seen from the benchmark: its address, its commands, and
/// a thread reading what it says (sampling this process's memory on `all-waiting`).
struct ServerProcess {
    addr: std::net::SocketAddr,
    child: std::process::Child,
    stdin: std::process::ChildStdin,
    counts: std::sync::mpsc::Receiver<u64>,
    baseline_kb: Arc<AtomicU64>,
    calls: Arc<AtomicU64>,
    sample: Arc<std::sync::Mutex<Option<InFlightMemory>>>,
}

impl ServerProcess {
    fn start(latency: Duration) -> Result<Self> {
        use std::io::BufRead;
        use std::process::{Command, Stdio};
        let exe = std::env::current_exe().context("finding this executable")?;
        let mut child = Command::new(exe)
            .args(["bench", "llm-server", "--latency-ms"])
            .arg(latency.as_millis().to_string())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .context("starting the model server's process")?;
        let (Some(stdin), Some(stdout)) = (child.stdin.take(), child.stdout.take()) else {
            bail!("the model server's process has no pipes");
        };
        let mut lines = std::io::BufReader::new(stdout).lines();
        let first = lines.next().transpose()?.unwrap_or_default();
        let port: u16 = first
            .strip_prefix("port ")
            .and_then(|p| p.parse().ok())
            .with_context(|| format!("the model server said {first:?}, not its port"))?;
        let (tx, counts) = std::sync::mpsc::channel();
        let baseline_kb = Arc::new(AtomicU64::new(0));
        let calls = Arc::new(AtomicU64::new(1));
        let sample = Arc::new(std::sync::Mutex::new(None));
        let (b, c, s) = (baseline_kb.clone(), calls.clone(), sample.clone());
        std::thread::spawn(move || {
            for line in lines.map_while(Result::ok) {
                if line == "all-waiting" {
                    let m = in_flight_memory(c.load(Ordering::SeqCst), b.load(Ordering::SeqCst));
                    if let Ok(mut s) = s.lock() {
                        *s = m;
                    }
                } else if let Some(n) = line.strip_prefix("requests ").and_then(|n| n.parse().ok())
                    && tx.send(n).is_err()
                {
                    return;
                }
            }
        });
        Ok(Self {
            addr: std::net::SocketAddr::from(([127, 0, 0, 1], port)),
            child,
            stdin,
            counts,
            baseline_kb,
            calls,
            sample,
        })
    }

    fn say(&mut self, command: &str) -> Result<()> {
        use std::io::Write;
        writeln!(self.stdin, "{command}")
            .and_then(|()| self.stdin.flush())
            .context("talking to the model server's process")
    }

    /// Count afresh; sample memory over `baseline_kb` when `calls` first wait at once.
    fn reset(&mut self, calls: u64, baseline_kb: u64) -> Result<()> {
        self.calls.store(calls, Ordering::SeqCst);
        self.baseline_kb.store(baseline_kb, Ordering::SeqCst);
        self.say(&format!("reset {calls}"))
    }

    /// Requests since the last reset.
    fn requests(&mut self) -> Result<u64> {
        self.say("count")?;
        self.counts
            .recv_timeout(Duration::from_secs(30))
            .context("the model server's process did not say its count")
    }

    fn sample(&self) -> Option<InFlightMemory> {
        self.sample.lock().ok().and_then(|s| *s)
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
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

/// The benchmark's shape without the engine: `n` requests over `k` fresh keep-alive
/// connections, each asking as soon as its last answer came, until all `n` were asked.
/// Returns the seconds from the first connection to the last answer.
async fn bare_client(addr: std::net::SocketAddr, n: u64, k: u64) -> Result<f64> {
    let left = Arc::new(AtomicU64::new(n));
    let request = Arc::new(http_request(
        &serde_json::json!({"model": "bench", "messages": [{"role": "user", "content": "check item"}]})
            .to_string(),
    ));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..k.min(n) {
        let (left, request) = (left.clone(), request.clone());
        tasks.push(tokio::spawn(async move {
            let mut stream = TcpStream::connect(addr).await?;
            stream.set_nodelay(true)?;
            let mut buf = Vec::with_capacity(4096);
            while left
                .fetch_update(Ordering::AcqRel, Ordering::Acquire, |l| l.checked_sub(1))
                .is_ok()
            {
                stream.write_all(request.as_bytes()).await?;
                if read_message(&mut stream, &mut buf).await?.is_none() {
                    return Err(std::io::Error::other("the server closed a connection"));
                }
            }
            Ok::<(), std::io::Error>(())
        }));
    }
    for t in tasks {
        t.await
            .context("a bare client panicked")?
            .context("a bare client")?;
    }
    Ok(started.elapsed().as_secs_f64())
}

/// A chat completion request with `body`, as the bare clients send it.
fn http_request(body: &str) -> String {
    format!(
        "POST /v1/chat/completions HTTP/1.1\r\nHost: bench\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
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
            let request = http_request(&body);
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
