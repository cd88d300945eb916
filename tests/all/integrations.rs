//! Outgoing HTTP for plugins, and the `github-issues` plugin, against a fake GitHub REST
//! server: a real HTTP server on loopback that keeps issues, lists them, creates them,
//! rate-limits on demand and records every request it got.

use crate::helpers::{AUTH_AGENTS, murmur};
use crate::loopback::{Answer, Request, serve_http};
use serde_json::{Value, json};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

/// The token the tests hand the host; it must reach the fake server and nothing else.
const TOKEN: &str = "ghp_murmurTEST0123456789abcdefSECRET";

/// What the fake server does besides answering.
#[derive(Default)]
struct Behaviour {
    /// Answer this many issue creations with GitHub's primary rate limit (403).
    rate_limited_posts: u32,
    /// Then this many with its secondary rate limit (429 and `Retry-After`).
    retry_after_posts: u32,
    /// Keep a creation's answer this long after storing the issue (a kill lands there).
    post_delay: Duration,
    /// Answer a creation with 422 and the request's Authorization header in the body and
    /// a header (a hostile or broken server).
    echo_authorization: bool,
}

#[derive(Default)]
struct State {
    issues: Vec<Value>,
    /// Request line and headers of every request.
    requests: Vec<(String, Vec<(String, String)>)>,
    behaviour: Behaviour,
}

struct FakeGitHub {
    port: u16,
    state: Arc<Mutex<State>>,
}

fn json_answer(status: u16, body: &Value) -> Answer {
    Answer {
        status,
        headers: vec![("Content-Type".into(), "application/json".into())],
        body: body.to_string().into_bytes(),
        delay: Duration::ZERO,
        close: false,
    }
}

impl FakeGitHub {
    fn start(behaviour: Behaviour) -> FakeGitHub {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let state = Arc::new(Mutex::new(State {
            behaviour,
            ..State::default()
        }));
        let shared = state.clone();
        serve_http(listener, move |req| answer(&shared, req));
        FakeGitHub { port, state }
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    fn issues(&self) -> Vec<Value> {
        self.state.lock().expect("state").issues.clone()
    }

    fn requests(&self) -> Vec<(String, Vec<(String, String)>)> {
        self.state.lock().expect("state").requests.clone()
    }
}

fn answer(state: &Mutex<State>, req: Request) -> Answer {
    let mut s = state.lock().expect("state");
    s.requests.push((req.line.clone(), req.headers.clone()));
    let mut parts = req.line.split_whitespace();
    let (method, target) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    let param = |name: &str| {
        query
            .split('&')
            .find_map(|kv| kv.strip_prefix(&format!("{name}=")))
            .map(str::to_string)
    };
    match (method, path) {
        ("GET", "/repos/acme/widgets/issues") => {
            let page: usize = param("page").and_then(|p| p.parse().ok()).unwrap_or(1);
            let per_page: usize = param("per_page").and_then(|p| p.parse().ok()).unwrap_or(30);
            let label = param("labels");
            let listed: Vec<Value> = s
                .issues
                .iter()
                .rev()
                .filter(|i| {
                    label.as_ref().is_none_or(|l| {
                        i["labels"]
                            .as_array()
                            .is_some_and(|ls| ls.iter().any(|x| x["name"] == l.as_str()))
                    })
                })
                .skip((page - 1) * per_page)
                .take(per_page)
                .cloned()
                .collect();
            json_answer(200, &Value::Array(listed))
        }
        ("POST", "/repos/acme/widgets/issues") => {
            if s.behaviour.echo_authorization {
                let auth = req.header("authorization").unwrap_or("").to_string();
                let mut a = json_answer(
                    422,
                    &json!({ "message": format!("bad credentials: {auth}") }),
                );
                a.headers.push(("X-Echo".into(), auth));
                return a;
            }
            if s.behaviour.rate_limited_posts > 0 {
                s.behaviour.rate_limited_posts -= 1;
                let now = SystemTime::now();
                let reset = now
                    .duration_since(SystemTime::UNIX_EPOCH)
                    .expect("clock")
                    .as_secs()
                    + 1;
                let mut a = json_answer(403, &json!({ "message": "API rate limit exceeded" }));
                a.headers.extend([
                    ("X-RateLimit-Remaining".into(), "0".into()),
                    ("X-RateLimit-Reset".into(), reset.to_string()),
                    ("Date".into(), httpdate::fmt_http_date(now)),
                ]);
                return a;
            }
            if s.behaviour.retry_after_posts > 0 {
                s.behaviour.retry_after_posts -= 1;
                let mut a = json_answer(
                    429,
                    &json!({ "message": "You have exceeded a secondary rate limit" }),
                );
                a.headers.push(("Retry-After".into(), "1".into()));
                return a;
            }
            let Ok(body) = serde_json::from_slice::<Value>(&req.body) else {
                return json_answer(400, &json!({ "message": "Problems parsing JSON" }));
            };
            let number = s.issues.len() as u64 + 1;
            let labels: Vec<Value> = body["labels"]
                .as_array()
                .cloned()
                .unwrap_or_default()
                .into_iter()
                .map(|l| json!({ "name": l }))
                .collect();
            let issue = json!({
                "number": number,
                "html_url": format!("https://github.example/acme/widgets/issues/{number}"),
                "title": body["title"],
                "body": body["body"],
                "labels": labels,
            });
            s.issues.push(issue.clone());
            let mut a = json_answer(201, &issue);
            a.delay = s.behaviour.post_delay;
            a
        }
        _ => json_answer(404, &json!({ "message": "Not Found" })),
    }
}

/// A fake GitHub behaving as told, and the workflow mirroring to it in a temporary
/// directory, with the database path a run should use.
struct Scene {
    github: FakeGitHub,
    dir: tempfile::TempDir,
    manifest: PathBuf,
    db: PathBuf,
}

fn scene(behaviour: Behaviour) -> Scene {
    let github = FakeGitHub::start(behaviour);
    let dir = tempfile::tempdir().expect("tempdir");
    let manifest = manifest(dir.path(), &github.url(), &github.url());
    let db = dir.path().join("run.db");
    Scene {
        github,
        dir,
        manifest,
        db,
    }
}

/// The auth-system workflow with `github-issues` mirroring its discoveries to `api`.
fn manifest(dir: &Path, api: &str, allowed: &str) -> PathBuf {
    let path = dir.join("workflow.toml");
    let text = format!(
        r#"[workflow]
name = "github-sync"
{AUTH_AGENTS}
[[type]]
name = "ExternalLink"
schema = {{ type = "object", required = ["url", "number", "discovery_id"] }}

[[plugin]]
name = "github"
path = "{{plugin:github-issues}}"
world = "agent"
observer = true
grants = ["kv"]
http = [{{ url = "{allowed}", headers = {{ Authorization = "Bearer ${{env:MURMUR_TEST_GITHUB_TOKEN}}" }} }}]
[plugin.limits]
timeout_ms = 30000
[plugin.config]
repo = "acme/widgets"
api_url = "{api}"
"#
    );
    std::fs::write(&path, crate::helpers::expand(&text)).expect("write manifest");
    path
}

/// `murmur run` with the token in the environment: its output (stderr is the log, at
/// info).
fn run(manifest: &Path, db: &Path, extra: &[&str]) -> std::process::Output {
    murmur()
        .args(["run", "-q", "--json", "-v", "--store"])
        .arg(format!("sqlite:{}", db.display()))
        .args(extra)
        .arg(manifest)
        .env("MURMUR_TEST_GITHUB_TOKEN", TOKEN)
        .output()
        .expect("murmur run")
}

fn summary(out: &std::process::Output) -> Value {
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "run printed no summary ({e}); stderr:\n{}",
            String::from_utf8_lossy(&out.stderr)
        )
    })
}

/// Every (type, payload) stored in `db`.
fn artifacts(db: &Path, type_name: &str) -> Vec<Value> {
    let c = rusqlite::Connection::open(db).expect("open db");
    let mut q = c
        .prepare("SELECT data FROM artifacts WHERE type_name = ?1 ORDER BY seq")
        .expect("prepare");
    let rows = q
        .query_map([type_name], |r| r.get::<_, String>(0))
        .expect("query");
    rows.map(|r| {
        let v: Value = serde_json::from_str(&r.expect("row")).expect("artifact json");
        v
    })
    .collect()
}

/// Every failed invocation's record in `db`, as stored (its error and fault class).
fn invocation_errors(db: &Path) -> Vec<String> {
    let c = rusqlite::Connection::open(db).expect("open db");
    let mut q = c
        .prepare("SELECT data FROM invocations WHERE status = 'failed'")
        .expect("prepare");
    let rows = q.query_map([], |r| r.get::<_, String>(0)).expect("query");
    rows.map(|r| r.expect("row")).collect()
}

/// Each discovery id the issues' markers name, and how many issues name it.
fn markers(issues: &[Value]) -> std::collections::BTreeMap<String, usize> {
    let mut seen = std::collections::BTreeMap::new();
    for issue in issues {
        let body = issue["body"].as_str().unwrap_or_default();
        let id = body
            .split("<!-- murmur-discovery: ")
            .nth(1)
            .and_then(|rest| rest.split(" -->").next())
            .unwrap_or_else(|| panic!("issue without a marker: {issue}"));
        *seen.entry(id.to_string()).or_insert(0) += 1;
    }
    seen
}

fn assert_no_token(what: &str, bytes: &[u8]) {
    let text = String::from_utf8_lossy(bytes);
    assert!(!text.contains(TOKEN), "the token appears in {what}");
    assert!(
        !text.contains("murmurTEST"),
        "part of the token appears in {what}"
    );
}

#[test]
fn every_discovery_becomes_one_issue_with_its_fields_and_a_link_back_and_the_token_stays_on_the_wire()
 {
    let Scene {
        github,
        dir,
        manifest,
        db,
    } = scene(Behaviour::default());
    let recording = dir.path().join("http.jsonl");
    let out = run(
        &manifest,
        &db,
        &["--http-record", &recording.display().to_string()],
    );
    let s = summary(&out);
    assert_eq!(s["status"], "complete", "{s}");

    let discoveries = artifacts(&db, "WorkDiscovery");
    let issues = github.issues();
    assert!(
        discoveries.len() >= 5,
        "the scenario discovers work: {discoveries:?}"
    );
    assert_eq!(issues.len(), discoveries.len(), "one issue per discovery");
    assert!(
        markers(&issues).values().all(|n| *n == 1),
        "no discovery has two issues"
    );
    let links = artifacts(&db, "ExternalLink");
    assert_eq!(links.len(), issues.len(), "one ExternalLink per issue");
    for link in &links {
        let number = link["payload"]["number"].as_u64().expect("number");
        let issue = &issues[number as usize - 1];
        assert_eq!(link["payload"]["url"], issue["html_url"]);
        assert_eq!(link["payload"]["repo"], "acme/widgets");
        let body = issue["body"].as_str().expect("body");
        let id = link["payload"]["discovery_id"]
            .as_str()
            .expect("discovery id");
        assert!(body.contains(id), "the body names the discovery artifact");
        assert!(
            body.contains(s["workflow_id"].as_str().expect("run id")),
            "and the run"
        );
    }
    // Fields of one discovery, as the issue carries them.
    let caching = issues
        .iter()
        .find(|i| i["title"] == "Caching pattern could optimize all API routes")
        .expect("the validator's caching discovery has its issue");
    let body = caching["body"].as_str().expect("body");
    for field in [
        "Caching pattern could optimize all API routes",
        "| Phase | analysis |",
        "| Priority | high |",
        "| Discovered by | validator |",
        "**Done when:**",
    ] {
        assert!(body.contains(field), "issue body lacks {field}: {body}");
    }
    let labels: Vec<&str> = caching["labels"]
        .as_array()
        .expect("labels")
        .iter()
        .filter_map(|l| l["name"].as_str())
        .collect();
    assert_eq!(labels, ["murmur", "phase:analysis", "priority:high"]);

    // The token went on every request to the server, and nowhere else.
    let requests = github.requests();
    assert!(!requests.is_empty());
    for (line, headers) in &requests {
        let auth = headers
            .iter()
            .find(|(n, _)| n == "authorization")
            .map(|(_, v)| v.as_str());
        assert_eq!(auth, Some(&*format!("Bearer {TOKEN}")), "{line}");
    }
    assert_no_token("the run's stdout", &out.stdout);
    assert_no_token("the log", &out.stderr);
    assert_no_token("the store", &std::fs::read(&db).expect("db"));
    let recorded = std::fs::read(&recording).expect("recording");
    assert_no_token("the recording", &recorded);
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("http POST"),
        "the log names each exchange"
    );
    assert_eq!(
        String::from_utf8_lossy(&recorded).lines().count(),
        requests.len(),
        "one recorded line per exchange"
    );
}

#[test]
fn a_rerun_replays_its_recorded_exchanges_with_no_server() {
    let Scene {
        github,
        dir,
        manifest,
        ..
    } = scene(Behaviour::default());
    let recording = dir.path().join("http.jsonl");
    let first = summary(&run(
        &manifest,
        &dir.path().join("first.db"),
        &["--http-record", &recording.display().to_string()],
    ));
    assert_eq!(first["status"], "complete", "{first}");
    let created = github.issues().len();
    let requests = github.requests().len();

    // The same workflow again: the recording answers, the server is not asked (it
    // counts every request it gets).
    let replayed = dir.path().join("replayed.db");
    let out = run(
        &manifest,
        &replayed,
        &["--http-replay", &recording.display().to_string()],
    );
    let second = summary(&out);
    assert_eq!(second["status"], "complete", "{second}");
    assert_eq!(artifacts(&replayed, "ExternalLink").len(), created);
    assert_eq!(
        github.requests().len(),
        requests,
        "the server was not asked again"
    );
}

#[test]
fn a_kill_between_creating_an_issue_and_recording_it_and_resume_make_no_second_issue() {
    let Scene {
        github,
        dir: _dir,
        manifest,
        db,
    } = scene(Behaviour {
        // Long enough that the process is killed while the first answer is held back.
        post_delay: Duration::from_millis(1500),
        ..Behaviour::default()
    });
    let mut child = murmur()
        .args(["run", "-q", "--store"])
        .arg(format!("sqlite:{}", db.display()))
        .arg(&manifest)
        .env("MURMUR_TEST_GITHUB_TOKEN", TOKEN)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("spawn");
    let deadline = Instant::now() + Duration::from_secs(60);
    while github.issues().is_empty() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(5));
    }
    assert!(
        !github.issues().is_empty(),
        "an issue was created before the kill"
    );
    child.kill().expect("kill -9");
    child.wait().expect("wait");
    let before = github.issues().len();

    github.state.lock().expect("state").behaviour.post_delay = Duration::ZERO;
    let out = murmur()
        .args(["resume", "-q", "--json", "--store"])
        .arg(format!("sqlite:{}", db.display()))
        .env("MURMUR_TEST_GITHUB_TOKEN", TOKEN)
        .output()
        .expect("resume");
    let s = summary(&out);
    assert_eq!(s["status"], "complete", "{s}");
    let issues = github.issues();
    assert!(issues.len() >= before);
    let seen = markers(&issues);
    assert!(
        seen.values().all(|n| *n == 1),
        "a discovery got two issues: {seen:?}"
    );
    assert_eq!(seen.len(), artifacts(&db, "WorkDiscovery").len());
    assert_eq!(artifacts(&db, "ExternalLink").len(), issues.len());
}

#[test]
fn githubs_rate_limits_403_with_a_reset_and_429_with_retry_after_are_waited_out() {
    let Scene {
        github,
        dir: _dir,
        manifest,
        db,
    } = scene(Behaviour {
        rate_limited_posts: 2,
        retry_after_posts: 1,
        ..Behaviour::default()
    });
    let out = run(&manifest, &db, &[]);
    let s = summary(&out);
    assert_eq!(s["status"], "complete", "{s}");
    assert_eq!(github.issues().len(), artifacts(&db, "WorkDiscovery").len());
    let posts = github
        .requests()
        .iter()
        .filter(|(line, _)| line.starts_with("POST"))
        .count();
    assert_eq!(
        posts,
        github.issues().len() + 3,
        "the three refused creations were retried"
    );
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("rate limited by GitHub"),
        "the plugin says why it waits"
    );
    assert!(
        invocation_errors(&db).is_empty(),
        "no invocation failed for it"
    );
}

#[test]
fn a_host_the_list_does_not_name_faults_the_call_denied_and_the_server_is_never_asked() {
    let github = FakeGitHub::start(Behaviour::default());
    let dir = tempfile::tempdir().expect("tempdir");
    // The list names another port of the same host.
    let closed = TcpListener::bind("127.0.0.1:0").expect("bind");
    let other = format!(
        "http://127.0.0.1:{}",
        closed.local_addr().expect("addr").port()
    );
    let manifest = manifest(dir.path(), &github.url(), &other);
    let db = dir.path().join("run.db");
    let out = run(&manifest, &db, &[]);
    let _ = summary(&out);
    assert!(github.requests().is_empty(), "nothing left the host");
    assert!(artifacts(&db, "ExternalLink").is_empty());
    let errors = invocation_errors(&db);
    assert!(!errors.is_empty());
    for e in &errors {
        assert!(e.contains("denied"), "{e}");
        assert!(e.contains("does not allow"), "{e}");
    }
}

#[test]
fn a_name_that_resolves_to_loopback_is_denied_unless_the_list_names_the_address() {
    let github = FakeGitHub::start(Behaviour::default());
    // A name of this machine's own (from /etc/hosts or its hostname) that resolves to a
    // loopback or private address.
    let mut candidates: Vec<String> = ["vm", "runsc"].map(String::from).to_vec();
    if let Ok(h) = std::fs::read_to_string("/etc/hostname") {
        candidates.push(h.trim().to_string());
    }
    let name = candidates
        .into_iter()
        .find(|n| {
            use std::net::ToSocketAddrs;
            (n.as_str(), 0)
                .to_socket_addrs()
                .ok()
                .and_then(|mut a| a.next())
                .is_some_and(|a| !murmur::egress::rule::is_public(a.ip()))
        })
        .expect(
            "a name of this machine that resolves to a private or loopback address (/etc/hosts)",
        );
    let dir = tempfile::tempdir().expect("tempdir");
    let api = format!("http://{name}:{}", github.port);
    let manifest = manifest(dir.path(), &api, &format!("http://{name}:*"));
    let db = dir.path().join("run.db");
    let _ = summary(&run(&manifest, &db, &[]));
    assert!(github.requests().is_empty(), "nothing reached the server");
    let errors = invocation_errors(&db);
    assert!(!errors.is_empty());
    assert!(
        errors
            .iter()
            .all(|e| e.contains("denied") && e.contains("private or loopback")),
        "{errors:?}"
    );
}

#[test]
fn a_component_that_imports_http_without_the_grant_is_refused_at_load() {
    let Scene {
        github,
        dir,
        manifest,
        ..
    } = scene(Behaviour::default());
    let text = std::fs::read_to_string(&manifest).expect("manifest");
    let without: String = text
        .lines()
        .filter(|l| !l.starts_with("http = "))
        .map(|l| format!("{l}\n"))
        .collect();
    std::fs::write(&manifest, without).expect("write");
    let out = run(&manifest, &dir.path().join("run.db"), &[]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("imports wasi:http/outgoing-handler") && err.contains("add `http = ["),
        "{err}"
    );
    assert!(github.requests().is_empty());
}

#[test]
fn a_server_that_echoes_the_token_is_redacted_before_the_plugin_the_store_or_the_log_see_it() {
    let Scene {
        github: _github,
        dir,
        manifest,
        db,
    } = scene(Behaviour {
        echo_authorization: true,
        ..Behaviour::default()
    });
    let recording = dir.path().join("http.jsonl");
    let out = run(
        &manifest,
        &db,
        &["--http-record", &recording.display().to_string()],
    );
    let _ = summary(&out);
    // The plugin failed with GitHub's answer in its error: redacted on the way in.
    let errors = invocation_errors(&db);
    assert!(
        errors
            .iter()
            .any(|e| e.contains("bad credentials: Bearer [redacted]")),
        "{errors:?}"
    );
    assert_no_token("the store", &std::fs::read(&db).expect("db"));
    assert_no_token("the log", &out.stderr);
    assert_no_token(
        "the recording",
        &std::fs::read(&recording).expect("recording"),
    );
}

#[test]
fn a_literal_secret_in_a_manifest_is_refused_with_its_line() {
    let dir = tempfile::tempdir().expect("tempdir");
    let manifest = manifest(dir.path(), "http://127.0.0.1:1", "http://127.0.0.1:1");
    let text = std::fs::read_to_string(&manifest)
        .expect("manifest")
        .replace("${env:MURMUR_TEST_GITHUB_TOKEN}", TOKEN);
    std::fs::write(&manifest, &text).expect("write");
    let line = text
        .lines()
        .position(|l| l.starts_with("http = "))
        .expect("http line")
        + 1;
    let out = run(&manifest, &dir.path().join("run.db"), &[]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(&format!("workflow.toml:{line}")), "{err}");
    assert!(
        err.contains("header Authorization carries a credential"),
        "{err}"
    );
    assert_no_token("the error", &out.stderr);

    // And a variable that is not set is named, at load.
    std::fs::write(
        &manifest,
        text.replace(TOKEN, "${env:MURMUR_TEST_UNSET_TOKEN}"),
    )
    .expect("write");
    let out = run(&manifest, &dir.path().join("run.db"), &[]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("${env:MURMUR_TEST_UNSET_TOKEN}, which is not set"),
        "{err}"
    );
}

/// Limits, redirects and concurrency, with the `fetch` test agent in process.
mod limits {
    use crate::helpers::{PHASES_AND_NOTE, run};
    use crate::loopback::{Answer, serve_http};
    use murmur::invocation::FaultKind;
    use std::net::TcpListener;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::{Duration, Instant};

    /// A server answering every request with `status`, `body` after `delay`, counting
    /// requests and the most in flight at once.
    struct Server {
        port: u16,
        requests: Arc<AtomicUsize>,
        peak: Arc<AtomicUsize>,
    }

    fn server(
        status: u16,
        headers: Vec<(String, String)>,
        body: Vec<u8>,
        delay: Duration,
    ) -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let requests = Arc::new(AtomicUsize::new(0));
        let in_flight = Arc::new(AtomicUsize::new(0));
        let peak = Arc::new(AtomicUsize::new(0));
        let (r, f, p) = (requests.clone(), in_flight.clone(), peak.clone());
        serve_http(listener, move |_req| {
            r.fetch_add(1, Ordering::SeqCst);
            let now = f.fetch_add(1, Ordering::SeqCst) + 1;
            p.fetch_max(now, Ordering::SeqCst);
            // The answer's delay is served after this returns: hold the count here.
            std::thread::sleep(delay);
            f.fetch_sub(1, Ordering::SeqCst);
            Answer {
                status,
                headers: headers.clone(),
                body: body.clone(),
                delay: Duration::ZERO,
                close: false,
            }
        });
        Server {
            port,
            requests,
            peak,
        }
    }

    /// A workflow of `inputs` Notes, each handed to `fetch` with `config` and `limits`,
    /// allowed to reach `allowed`.
    fn workflow(allowed: &str, config: &str, limits: &str, inputs: u32) -> String {
        format!(
            "[workflow]\nname = \"fetch\"\n[workflow.limits]\nconcurrency = 8\n{PHASES_AND_NOTE}\n[[plugin]]\nname = \"fetch\"\npath = \"{{plugin:fetch}}\"\nworld = \"agent\"\nhttp = [\"{allowed}\"]\nconfig = {{ {config} }}\n[plugin.limits]\n{limits}\n[[plugin.subscribe]]\ntype = \"Note\"\n[[input]]\ntype = \"Note\"\ncount = {inputs}\npayload = {{ n = \"{{index}}\" }}\n"
        )
    }

    /// The `results` of every Note `fetch` published.
    fn results(run: &crate::helpers::Run) -> Vec<Vec<serde_json::Value>> {
        run.artifacts("Note")
            .iter()
            .filter(|a| &*a.producer == "fetch")
            .map(|a| a.payload["results"].as_array().cloned().expect("results"))
            .collect()
    }

    /// Assert that `result` (one request's) is an error saying `what`.
    fn assert_failed(result: &serde_json::Value, what: &str) {
        assert!(
            result["error"].as_str().is_some_and(|e| e.contains(what)),
            "expected an error saying {what}: {result}"
        );
    }

    /// The results of the one Note `fetch` published, fetching with `config` and `limits`.
    async fn fetch_once(allowed: &str, config: &str, limits: &str) -> Vec<serde_json::Value> {
        let run = run(&workflow(allowed, config, limits, 1)).await;
        let mut all = results(&run);
        assert_eq!(all.len(), 1, "{:?}", run.invocations());
        all.remove(0)
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn requests_beyond_the_per_invocation_limit_fail_and_the_call_goes_on() {
        let s = server(200, vec![], b"ok".to_vec(), Duration::ZERO);
        let url = format!("http://127.0.0.1:{}", s.port);
        let r = fetch_once(
            &url,
            &format!("url = \"{url}/x\", times = 5"),
            "http_requests = 3",
        )
        .await;
        assert!(r[..3].iter().all(|x| x["status"] == 200), "{r:?}");
        for late in &r[3..] {
            assert_failed(late, "ConnectionLimitReached");
        }
        assert_eq!(s.requests.load(Ordering::SeqCst), 3);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_body_over_the_byte_limit_is_never_sent_and_an_answer_over_it_is_cut_off() {
        let s = server(200, vec![], vec![b'a'; 100_000], Duration::ZERO);
        let url = format!("http://127.0.0.1:{}", s.port);
        let big_body = fetch_once(
            &url,
            &format!("url = \"{url}/up\", method = \"POST\", body_bytes = 5000"),
            "http_request_bytes = 1000",
        )
        .await;
        assert_failed(&big_body[0], "HttpRequestBodySize");
        assert_eq!(s.requests.load(Ordering::SeqCst), 0, "nothing was sent");

        let big_answer = fetch_once(
            &url,
            &format!("url = \"{url}/down\""),
            "http_response_bytes = 10000",
        )
        .await;
        assert_failed(&big_answer[0], "HttpResponseBodySize");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_slow_server_times_out_at_the_request_timeout_inside_the_deadline() {
        let s = server(200, vec![], b"late".to_vec(), Duration::from_secs(5));
        let url = format!("http://127.0.0.1:{}", s.port);
        let started = Instant::now();
        let r = fetch_once(
            &url,
            &format!("url = \"{url}/slow\""),
            "http_timeout_ms = 300\ntimeout_ms = 20000",
        )
        .await;
        assert_failed(&r[0], "ConnectionTimeout");
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "the call did not wait for the server"
        );

        // The invocation's own deadline bounds a request whatever its timeout.
        let started = Instant::now();
        let run = crate::helpers::run(&workflow(
            &url,
            &format!("url = \"{url}/slow\""),
            "http_timeout_ms = 60000\ntimeout_ms = 500",
            1,
        ))
        .await;
        let inv = &run.invocations()[0];
        assert!(
            matches!(inv.fault(), Some(FaultKind::Timeout))
                || results(&run)
                    .first()
                    .is_some_and(|r| r[0]["error"].is_string()),
            "{:?} {:?}",
            inv.fault(),
            inv.error()
        );
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "the deadline cut the request short"
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_redirect_to_a_host_the_list_does_not_name_is_denied() {
        let elsewhere = server(200, vec![], b"secret".to_vec(), Duration::ZERO);
        let to = format!("http://127.0.0.1:{}/x", elsewhere.port);
        let s = server(302, vec![("Location".into(), to)], vec![], Duration::ZERO);
        let url = format!("http://127.0.0.1:{}", s.port);
        let run = run(&workflow(
            &url,
            &format!("url = \"{url}/start\""),
            "timeout_ms = 5000",
            1,
        ))
        .await;
        assert!(results(&run).is_empty(), "nothing was published");
        let inv = &run.invocations()[0];
        assert_eq!(inv.fault(), Some(FaultKind::Denied), "{:?}", inv.error());
        assert!(
            inv.error().is_some_and(|e| e.contains("does not allow")),
            "{:?}",
            inv.error()
        );
        assert_eq!(s.requests.load(Ordering::SeqCst), 1);
        assert_eq!(
            elsewhere.requests.load(Ordering::SeqCst),
            0,
            "the redirect was not followed"
        );

        // A redirect within the list is followed (here, to itself, until the SDK stops).
        let hop = server(
            302,
            vec![("Location".into(), "/moved".into())],
            vec![],
            Duration::ZERO,
        );
        let hop_url = format!("http://127.0.0.1:{}", hop.port);
        let r = fetch_once(
            "http://127.0.0.1:*",
            &format!("url = \"{hop_url}/start\""),
            "timeout_ms = 5000",
        )
        .await;
        // `/moved` on the same server answers 302 again: five hops, then the SDK stops.
        assert_failed(&r[0], "more than 5 redirects");
        assert_eq!(hop.requests.load(Ordering::SeqCst), 5);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_plugins_requests_in_flight_never_exceed_its_concurrency() {
        let s = server(200, vec![], b"ok".to_vec(), Duration::from_millis(200));
        let url = format!("http://127.0.0.1:{}", s.port);
        let run = run(&workflow(
            &url,
            &format!("url = \"{url}/c\""),
            "http_concurrency = 2",
            6,
        ))
        .await;
        assert_eq!(results(&run).len(), 6);
        assert_eq!(s.requests.load(Ordering::SeqCst), 6);
        assert_eq!(
            s.peak.load(Ordering::SeqCst),
            2,
            "two at a time, never more"
        );
    }
}

#[test]
fn the_webhook_posts_each_discovery_signed_by_the_host_and_a_failed_delivery_is_retried() {
    use hmac::Mac;
    const SECRET: &str = "whsec_murmurTEST0123456789abcdef";
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let got: Arc<Mutex<Vec<Request>>> = Arc::default();
    let seen = got.clone();
    serve_http(listener, move |req| {
        let mut got = seen.lock().expect("got");
        let first = got.is_empty();
        got.push(req);
        // The first delivery meets an outage.
        json_answer(if first { 503 } else { 202 }, &json!({}))
    });
    let dir = tempfile::tempdir().expect("tempdir");
    let url = format!("http://127.0.0.1:{port}");
    let text = format!(
        r#"[workflow]
name = "hooks"
{AUTH_AGENTS}
[[plugin]]
name = "webhook"
path = "{{plugin:webhook}}"
world = "agent"
observer = true
http = [{{ url = "{url}", sign = {{ header = "X-Murmur-Signature", secret = "${{env:MURMUR_TEST_WEBHOOK_SECRET}}" }} }}]
config = {{ url = "{url}/hooks/murmur" }}
"#
    );
    let manifest = dir.path().join("workflow.toml");
    std::fs::write(&manifest, crate::helpers::expand(&text)).expect("write");
    let db = dir.path().join("run.db");
    let out = murmur()
        .args(["run", "-q", "--json", "-v", "--store"])
        .arg(format!("sqlite:{}", db.display()))
        .arg(&manifest)
        .env("MURMUR_TEST_WEBHOOK_SECRET", SECRET)
        .output()
        .expect("run");
    let s = summary(&out);
    assert_eq!(s["status"], "complete", "{s}");

    let got = got.lock().expect("got");
    let discoveries = artifacts(&db, "WorkDiscovery");
    assert_eq!(
        got.len(),
        discoveries.len() + 1,
        "every discovery, and the retried one"
    );
    let mut delivered = std::collections::BTreeSet::new();
    for req in got.iter() {
        assert!(req.line.starts_with("POST /hooks/murmur "), "{}", req.line);
        let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(SECRET.as_bytes()).expect("key");
        mac.update(&req.body);
        let expected: String = mac
            .finalize()
            .into_bytes()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        assert_eq!(
            req.header("x-murmur-signature"),
            Some(&*format!("sha256={expected}")),
            "the signature is the body's HMAC under the secret"
        );
        let body: Value = serde_json::from_slice(&req.body).expect("json body");
        assert_eq!(body["event"], "artifact");
        assert_eq!(body["workflow_id"], s["workflow_id"]);
        assert_eq!(body["artifact"]["type"], "WorkDiscovery");
        assert!(body["artifact"]["payload"]["description"].is_string());
        assert_eq!(
            req.header("x-murmur-delivery"),
            body["artifact"]["id"].as_str()
        );
        delivered.insert(body["artifact"]["id"].as_str().expect("id").to_string());
    }
    assert_eq!(
        delivered.len(),
        discoveries.len(),
        "each discovery delivered"
    );
    assert!(!String::from_utf8_lossy(&out.stderr).contains(SECRET));
    assert!(!String::from_utf8_lossy(&std::fs::read(&db).expect("db")).contains(SECRET));
}

#[test]
fn the_github_sync_example_mirrors_the_auth_demos_discoveries() {
    let github = FakeGitHub::start(Behaviour::default());
    let dir = tempfile::tempdir().expect("tempdir");
    let plugins = crate::helpers::repo().join("target/plugins");
    let text =
        std::fs::read_to_string(crate::helpers::repo().join("examples/github-sync/workflow.toml"))
            .expect("example")
            .replace("https://api.github.com", &github.url())
            .replace("your-org/your-repo", "acme/widgets")
            .replace("../../target/plugins", &plugins.display().to_string())
            .replace("GITHUB_TOKEN", "MURMUR_TEST_GITHUB_TOKEN");
    let manifest = dir.path().join("workflow.toml");
    std::fs::write(&manifest, text).expect("write");
    let db = dir.path().join("run.db");
    let s = summary(&run(&manifest, &db, &[]));
    assert_eq!(s["status"], "complete", "{s}");
    let discoveries = artifacts(&db, "WorkDiscovery");
    assert!(
        discoveries.len() >= 8,
        "the demo's discoveries: {}",
        discoveries.len()
    );
    // Each discovery that became work has its issue (the one that failed for good too);
    // the ones the host recorded as duplicates of open or done work get none (they are
    // noise on a tracker too).
    let c = rusqlite::Connection::open(&db).expect("open db");
    let count = |sql: &str| c.query_row(sql, [], |r| r.get::<_, i64>(0)).expect("count") as usize;
    let work = count("SELECT count(*) FROM work_items WHERE status <> 'duplicate'");
    let duplicates = count("SELECT count(*) FROM work_items WHERE status = 'duplicate'");
    assert!(duplicates > 0, "the demo records duplicates: {s}");
    assert_eq!(work + duplicates, discoveries.len());
    assert_eq!(github.issues().len(), work);
    assert!(markers(&github.issues()).values().all(|n| *n == 1));
    assert_eq!(artifacts(&db, "ExternalLink").len(), work);
}

/// JavaScript's own `fetch` (componentize-js) and Python's wasi:http bindings
/// (componentize-py), through the same grant.
mod polyglot {
    use crate::helpers::{PHASES_AND_NOTE, expand, options, run_workflow};
    use crate::loopback::{Answer, serve_http};
    use murmur::invocation::FaultKind;
    use murmur::workflow::Secrets;
    use std::net::TcpListener;
    use std::time::Duration;

    const TOKEN: &str = "ghp_polyglotTEST0123456789abcdefgh";

    /// `plugin` (its component's name; it names itself `plugin`) handed one Note,
    /// fetching `url`, allowed `allowed` with the token as its Authorization header.
    async fn run_fetcher(plugin: &str, allowed: &str, url: &str) -> crate::helpers::Run {
        let text = expand(&format!(
            "[workflow]\nname = \"fetch\"\n{PHASES_AND_NOTE}\n[[plugin]]\nname = \"{plugin}\"\npath = \"{{plugin:{plugin}}}\"\nworld = \"agent\"\nhttp = [{{ url = \"{allowed}\", headers = {{ Authorization = \"Bearer ${{env:FETCH_TOKEN}}\" }} }}]\nconfig = {{ url = \"{url}\" }}\n[plugin.limits]\ntimeout_ms = 30000\n[[plugin.subscribe]]\ntype = \"Note\"\nfrom = [\"user\"]\n[[input]]\ntype = \"Note\"\npayload = {{}}\n"
        ));
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("workflow.toml");
        std::fs::write(&path, &text).expect("write");
        let manifest = murmur::Manifest::parse(&path, &text).expect("manifest");
        let wf = murmur::Workflow::from_manifest(
            manifest,
            murmur::LoadOptions {
                secrets: Secrets([("FETCH_TOKEN".to_string(), TOKEN.to_string())].into()),
                ..options()
            },
        )
        .expect("load");
        run_workflow(wf).await
    }

    /// A server that says hello and shows, as a header, the Authorization it got.
    fn server() -> String {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().expect("addr").port();
        serve_http(listener, |req| Answer {
            status: 200,
            headers: vec![(
                "X-Seen-Authorization".into(),
                req.header("authorization").unwrap_or("").to_string(),
            )],
            body: b"hello from loopback".to_vec(),
            delay: Duration::ZERO,
            close: false,
        });
        format!("http://127.0.0.1:{port}")
    }

    async fn reaches_a_listed_server_with_the_hosts_header_and_never_sees_it(plugin: &str) {
        let url = server();
        let run = run_fetcher(plugin, &url, &format!("{url}/hello")).await;
        let notes: Vec<_> = run
            .artifacts("Note")
            .into_iter()
            .filter(|a| &*a.producer == plugin)
            .collect();
        assert_eq!(notes.len(), 1, "{:?}", run.invocations());
        let note = &notes[0].payload;
        assert_eq!(note["status"], 200);
        assert_eq!(note["body"], "hello from loopback");
        assert_eq!(
            note["authorization"], "Bearer [redacted]",
            "the server got the token; the plugin sees it redacted"
        );
    }

    async fn faults_denied_at_an_unlisted_host(plugin: &str) {
        let run = run_fetcher(plugin, "http://127.0.0.1:1", "http://127.0.0.1:2/elsewhere").await;
        let inv = &run.invocations()[0];
        assert_eq!(inv.fault(), Some(FaultKind::Denied), "{:?}", inv.error());
        assert!(run.artifacts("Note").iter().all(|a| &*a.producer != plugin));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn javascript_fetch_reaches_a_listed_server_with_the_hosts_header_and_never_sees_it() {
        reaches_a_listed_server_with_the_hosts_header_and_never_sees_it("js-fetcher").await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn javascript_fetch_to_an_unlisted_host_faults_denied() {
        faults_denied_at_an_unlisted_host("js-fetcher").await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn python_reaches_a_listed_server_with_the_hosts_header_and_never_sees_it() {
        reaches_a_listed_server_with_the_hosts_header_and_never_sees_it("py-fetcher").await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn python_to_an_unlisted_host_faults_denied() {
        faults_denied_at_an_unlisted_host("py-fetcher").await;
    }
}

#[test]
fn a_rerun_of_the_workflow_links_the_issues_the_first_run_opened() {
    let Scene {
        github,
        dir: _dir,
        manifest,
        db,
    } = scene(Behaviour::default());
    let first = summary(&run(&manifest, &db, &[]));
    assert_eq!(first["status"], "complete", "{first}");
    let opened = github.issues().len();
    assert!(opened > 0);
    let second = summary(&run(&manifest, &db, &[]));
    assert_eq!(second["status"], "complete", "{second}");
    assert_ne!(first["workflow_id"], second["workflow_id"], "a new run");
    assert_eq!(github.issues().len(), opened, "no issue opened twice");
    let c = rusqlite::Connection::open(&db).expect("open db");
    let mut q = c
        .prepare("SELECT data FROM artifacts WHERE type_name = 'ExternalLink' AND workflow_id = ?1")
        .expect("prepare");
    let links: Vec<Value> = q
        .query_map([second["workflow_id"].as_str().expect("id")], |r| {
            r.get::<_, String>(0)
        })
        .expect("query")
        .map(|r| serde_json::from_str(&r.expect("row")).expect("json"))
        .collect();
    assert_eq!(links.len(), opened, "the rerun links every issue");
    let numbers: std::collections::BTreeSet<u64> = links
        .iter()
        .map(|l| l["payload"]["number"].as_u64().expect("number"))
        .collect();
    assert_eq!(numbers, (1..=opened as u64).collect());
}

#[test]
fn a_server_hands_plugins_only_the_secrets_its_secret_env_names() {
    use crate::serve::Server;
    let Scene {
        github,
        dir,
        manifest,
        ..
    } = scene(Behaviour::default());
    let text = std::fs::read_to_string(&manifest).expect("manifest");
    let body = json!({ "manifest": text, "base_dir": dir.path().display().to_string() });

    // The variable is in the server's environment, but not named: a manifest sent to
    // its API cannot read it.
    let closed = Server::start_with(
        &dir.path().join("closed.db"),
        &[],
        &[("MURMUR_TEST_GITHUB_TOKEN", TOKEN)],
    );
    let (status, answer) = closed.post("/v1/workflows", body.clone());
    assert_eq!(status, 422, "{answer}");
    assert!(answer.to_string().contains("--secret-env"), "{answer}");
    assert!(github.requests().is_empty());

    let open = Server::start_with(
        &dir.path().join("open.db"),
        &["--secret-env", "MURMUR_TEST_GITHUB_TOKEN"],
        &[("MURMUR_TEST_GITHUB_TOKEN", TOKEN)],
    );
    let id = crate::serve::start(&open, body);
    let ended = open.wait_ended(&id);
    assert_eq!(ended["status"], "complete", "{ended}");
    assert!(!github.issues().is_empty());
    assert!(github.requests().iter().all(|(_, h)| {
        h.iter()
            .any(|(n, v)| n == "authorization" && v.ends_with(TOKEN))
    }));

    // A named variable that is not set stops the server at once.
    let out = murmur()
        .args(["serve", "--listen", "127.0.0.1:0", "--store", "memory"])
        .args(["--secret-env", "MURMUR_TEST_NOT_SET_ANYWHERE"])
        .output()
        .expect("serve");
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("MURMUR_TEST_NOT_SET_ANYWHERE"));
}

#[test]
fn worker_processes_send_the_requests_with_the_secrets_their_secret_env_names() {
    use crate::durability::Db;
    let Scene {
        github,
        dir,
        manifest,
        ..
    } = scene(Behaviour::default());
    let db = Db::postgres();
    let worker = murmur()
        .args(["worker", "--json", "--concurrency", "4", "--poll-ms", "100"])
        .args([
            "--store",
            &db.spec(),
            "--secret-env",
            "MURMUR_TEST_GITHUB_TOKEN",
        ])
        .arg("--cache-dir")
        .arg(dir.path())
        .env("MURMUR_TEST_GITHUB_TOKEN", TOKEN)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("murmur worker");
    let out = murmur()
        .args(["run", "-q", "--json", "--workers", "--store", &db.spec()])
        .arg(&manifest)
        .env("MURMUR_TEST_GITHUB_TOKEN", TOKEN)
        .output()
        .expect("murmur run --workers");
    // SAFETY: kill(2) on our own child's pid, not yet waited for.
    let sent = unsafe { libc::kill(worker.id() as libc::pid_t, libc::SIGTERM) };
    assert_eq!(sent, 0);
    let report = worker.wait_with_output().expect("the worker stops");
    let report: Value = serde_json::from_slice(&report.stdout).expect("the worker's report");
    let s = summary(&out);
    assert_eq!(s["status"], "complete", "{s}");
    assert!(
        report["completed"].as_u64().is_some_and(|n| n > 0),
        "{report}"
    );
    let issues = github.issues();
    assert!(!issues.is_empty());
    assert!(markers(&issues).values().all(|n| *n == 1));
    assert_eq!(
        s["by_type"]["ExternalLink"].as_u64(),
        Some(issues.len() as u64)
    );
    for (line, headers) in github.requests() {
        let auth = headers.iter().find(|(n, _)| n == "authorization");
        assert_eq!(
            auth.map(|(_, v)| v.as_str()),
            Some(&*format!("Bearer {TOKEN}")),
            "{line}"
        );
    }
}
