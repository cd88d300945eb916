//! Language models: the host's OpenAI-compatible provider against a real HTTP server on
//! loopback that speaks the API with scripted answers; the generic LLM agent; budgets;
//! record and replay.

use crate::helpers::*;
use crate::loopback::{Answer, serve_http};
use murmur::RunStatus;
use murmur::blackboard::Store as _;
use serde_json::{Value, json};
use std::net::TcpListener;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A scripted answer: status, extra headers, body, delay before answering.
pub(crate) struct Reply {
    status: u16,
    headers: Vec<(&'static str, String)>,
    body: String,
    delay: Duration,
}

pub(crate) fn ok(content: &str, tokens: u32) -> Reply {
    Reply {
        status: 200,
        headers: vec![],
        body: json!({
            "choices": [{ "message": { "role": "assistant", "content": content } }],
            "usage": { "prompt_tokens": tokens / 2, "completion_tokens": tokens - tokens / 2 }
        })
        .to_string(),
        delay: Duration::ZERO,
    }
}

/// An OpenAI-compatible server on loopback: the n-th request gets `script(n, body)`.
pub(crate) struct FakeOpenAi {
    pub(crate) url: String,
    requests: Arc<Mutex<Vec<Value>>>,
}

pub(crate) fn serve(script: impl Fn(usize, &Value) -> Reply + Send + Sync + 'static) -> FakeOpenAi {
    serve_on(TcpListener::bind("127.0.0.1:0").expect("bind"), script)
}

/// A loopback address nothing listens on (bound, then closed): connection refused.
fn closed_port() -> std::net::SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.local_addr().expect("addr")
}

/// [`serve`] on `listener`.
fn serve_on(
    listener: TcpListener,
    script: impl Fn(usize, &Value) -> Reply + Send + Sync + 'static,
) -> FakeOpenAi {
    let url = format!("http://{}/v1", listener.local_addr().expect("addr"));
    let requests = Arc::new(Mutex::new(Vec::new()));
    let seen = requests.clone();
    serve_http(listener, move |request| {
        let mut body: Value = serde_json::from_slice(&request.body).unwrap_or(Value::Null);
        // The recorded request keeps the header the host sent, for the key's tests.
        if let (Some(a), Some(obj)) = (request.header("authorization"), body.as_object_mut()) {
            obj.insert("_authorization".into(), Value::String(a.to_string()));
        }
        let n = {
            let mut r = seen.lock().expect("lock");
            r.push(body.clone());
            r.len() - 1
        };
        let reply = script(n, &body);
        let mut headers = vec![("Content-Type".to_string(), "application/json".to_string())];
        headers.extend(reply.headers.into_iter().map(|(k, v)| (k.to_string(), v)));
        Answer {
            status: reply.status,
            headers,
            body: reply.body.into_bytes(),
            delay: reply.delay,
            close: true,
        }
    });
    FakeOpenAi { url, requests }
}

/// An analysis workflow with the generic LLM agent, implementation work echoed as Notes.
fn workflow(url: &str, llm_extra: &str, agent_extra: &str, inputs: usize) -> String {
    let mut text = format!(
        r#"[workflow]
name = "llm"
limits = {{ concurrency = 1 }}
[retry]
max_attempts = 1
[recovery]
enabled = false
[llm]
base_url = "{url}"
model = "test-model"
max_retries = 2
backoff_ms = 10
{llm_extra}
{PHASES_AND_NOTE}
[[plugin]]
name = "analyst"
path = "{{plugin:llm-agent}}"
world = "agent"
grants = ["llm"]
config = {{ publishes = "AnalysisResult" {agent_extra} }}
[[plugin.subscribe]]
type = "WorkDiscovery"
filter = "payload.phase == 'analysis'"
{}"#,
        probe(
            "builder",
            "mode = \"echo\", emit_type = \"Note\"",
            "WorkDiscovery",
            Some("payload.phase == 'implementation'")
        ),
    );
    for i in 0..inputs {
        text.push_str(&discovery(
            &format!("Design the login service {i}"),
            "analysis",
            "",
        ));
    }
    text
}

const ANALYSIS: &str = r#"{"plan": "Split login into a form and a token service", "approved": true, "next_phase_work": [{"description": "Implement the login form", "phase": "implementation", "priority": "high"}, {"description": "Bug fix needed: tokens never expire"}]}"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn structured_output_becomes_artifacts_and_nested_work_fans_out() {
    let server = serve(|_, _| ok(ANALYSIS, 120));
    let run = run(&workflow(&server.url, "", "", 1)).await;
    assert_eq!(
        run.summary.status,
        RunStatus::Complete,
        "{:?}",
        run.summary.open_work
    );
    let request = server.requests.lock().expect("lock")[0].clone();
    assert_eq!(request["model"], "test-model");
    assert_eq!(request["response_format"]["type"], "json_schema");
    assert!(
        request["response_format"]["json_schema"]["schema"]["properties"]["next_phase_work"]
            .is_object()
    );
    let system = request["messages"][0]["content"].as_str().unwrap_or("");
    assert!(
        system.contains("Phase: analysis") && system.contains("Understand problems"),
        "{system}"
    );
    let user = request["messages"][1]["content"].as_str().unwrap_or("");
    assert!(user.contains("Design the login service 0"), "{user}");

    assert_eq!(
        run.artifacts("AnalysisResult")[0].payload["plan"],
        "Split login into a form and a token service"
    );
    let work: Vec<(String, String)> = run
        .work_items()
        .iter()
        .filter(|w| w.parent_work.is_some())
        .map(|w| (w.description.to_string(), w.phase.to_string()))
        .collect();
    assert_eq!(
        work,
        [
            (
                "Implement the login form".to_string(),
                "implementation".to_string()
            ),
            // No phase given: `auto`, and the router placed it.
            (
                "Bug fix needed: tokens never expire".to_string(),
                "implementation".to_string()
            ),
        ]
    );
    let usage = run.summary.llm.clone().expect("usage in the summary");
    assert_eq!(usage.by_agent["analyst"], 120);
    assert_eq!(usage.by_phase["analysis"], 120);
    assert_eq!(run.artifacts("Note").len(), 2, "the builder did both");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_429_is_retried_honouring_retry_after() {
    let server = serve(|n, _| {
        if n == 0 {
            Reply {
                status: 429,
                headers: vec![("Retry-After", "0.3".into())],
                body: r#"{"error": "slow down"}"#.into(),
                delay: Duration::ZERO,
            }
        } else {
            ok(ANALYSIS, 10)
        }
    });
    let started = Instant::now();
    let run = run(&workflow(&server.url, "", "", 1)).await;
    assert!(
        started.elapsed() >= Duration::from_millis(300),
        "Retry-After was honoured"
    );
    assert!(!run.artifacts("AnalysisResult").is_empty());
    assert!(server.requests.lock().expect("lock").len() >= 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hostile_retry_after_is_clamped_and_never_crashes_the_run() {
    // Each value once, then an answer: negative, infinite, too large for a Duration, and
    // an HTTP-date a century ahead. The retries wait at most `max_backoff_ms`.
    for value in ["-1", "inf", "1e30", "Fri, 31 Dec 2125 23:59:59 GMT"] {
        let server = serve(|n, _| {
            if n == 0 {
                Reply {
                    status: 429,
                    headers: vec![("Retry-After", value.into())],
                    body: r#"{"error": "slow down"}"#.into(),
                    delay: Duration::ZERO,
                }
            } else {
                ok(ANALYSIS, 10)
            }
        });
        let run = run(&workflow(&server.url, "max_backoff_ms = 20", "", 1)).await;
        assert_eq!(
            run.summary.status,
            RunStatus::Complete,
            "Retry-After: {value}"
        );
        assert_eq!(
            run.artifacts("AnalysisResult").len(),
            1,
            "Retry-After: {value}"
        );
        assert_eq!(
            server.requests.lock().expect("lock").len(),
            2,
            "one refusal, one retry (Retry-After: {value})"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_provider_that_never_answers_in_time_is_a_timeout_error() {
    let server = serve(|_, _| Reply {
        delay: Duration::from_millis(400),
        ..ok(ANALYSIS, 10)
    });
    let run = run(&workflow(&server.url, "timeout_ms = 100", "", 1)).await;
    let inv = &run.invocations()[0];
    let error = inv.error().unwrap_or_default().to_string();
    assert!(
        error.contains("retryable error: llm: ") && error.contains("no answer in time"),
        "{error}"
    );
    assert_eq!(
        server.requests.lock().expect("lock").len(),
        3,
        "max_retries = 2"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_json_is_repaired_by_asking_again_with_the_error() {
    let server = serve(|n, _| {
        if n == 0 {
            ok("Sure! Here is the plan: {plan: oops", 10)
        } else {
            ok(ANALYSIS, 10)
        }
    });
    let run = run(&workflow(&server.url, "", "", 1)).await;
    assert_eq!(run.summary.status, RunStatus::Complete);
    assert_eq!(run.artifacts("AnalysisResult").len(), 1);
    let second = server.requests.lock().expect("lock")[1].clone();
    let messages = second["messages"].as_array().cloned().unwrap_or_default();
    assert_eq!(messages[2]["role"], "assistant");
    assert!(
        messages[3]["content"]
            .as_str()
            .unwrap_or("")
            .contains("not valid JSON"),
        "{second}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_spent_token_budget_ends_the_run_budget_exhausted_before_overspending() {
    let server = serve(|_, _| ok(r#"{"plan": "p", "approved": false}"#, 80));
    let run = run(&workflow(
        &server.url,
        "budget_tokens = 100",
        ", max_tokens = 50",
        3,
    ))
    .await;
    assert_eq!(run.summary.status, RunStatus::BudgetExhausted);
    assert_eq!(
        server.requests.lock().expect("lock").len(),
        1,
        "80 spent + 50 more would pass 100"
    );
    assert_eq!(
        run.summary
            .llm
            .as_ref()
            .map(|u| u.completion_tokens + u.prompt_tokens),
        Some(80)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_recorded_run_replays_without_a_server_and_identical_requests_are_paid_once() {
    let dir = tempfile::tempdir().expect("tempdir");
    let tape = dir.path().join("tape.jsonl");
    let server = serve(|_, _| ok(r#"{"plan": "p", "approved": false}"#, 10));
    // Two identical inputs: the second request is answered from the cache.
    let text = expand(&workflow(&server.url, "", "", 1))
        .replace(
            "[recovery]",
            "[dedup]\nenabled = false\n[context]\nmax_artifacts = 0\n[recovery]",
        )
        .replace(
            "Design the login service 0\", phase",
            "Design the login service\", phase",
        )
        + &discovery("Design the login service", "analysis", "");
    let load_with = |options: murmur::LoadOptions| {
        let path = dir.path().join("workflow.toml");
        std::fs::write(&path, &text).expect("write");
        let m = murmur::Manifest::parse(&path, &text).expect("parse");
        murmur::Workflow::from_manifest(m, options).expect("load")
    };
    let recorded = run_workflow(load_with(murmur::LoadOptions {
        llm_record: Some(tape.clone()),
        ..options()
    }))
    .await;
    let usage = recorded.summary.llm.clone().expect("usage");
    let requests = server.requests.lock().expect("lock").len();
    assert_eq!(requests, 1, "the identical second request was not paid for");
    assert_eq!((usage.calls, usage.cached), (1, 1));
    drop(server);

    let replayed = run_workflow(load_with(murmur::LoadOptions {
        llm_replay: Some(tape.clone()),
        ..options()
    }))
    .await;
    assert_eq!(replayed.summary.status, RunStatus::Complete);
    assert_eq!(replayed.summary.by_type, recorded.summary.by_type);
    assert_eq!(
        replayed.summary.llm.as_ref().map(|u| u.calls),
        Some(0),
        "no network"
    );
}

/// Answers as a cooperative model would, by the phase named in the system prompt.
pub(crate) fn scenario(_: usize, body: &Value) -> Reply {
    let system = body["messages"][0]["content"].as_str().unwrap_or("");
    // The first line is the input; the rest is context.
    let user = body["messages"][1]["content"]
        .as_str()
        .unwrap_or("")
        .lines()
        .next()
        .unwrap_or("");
    let answer = if system.contains("Phase: analysis") {
        if user.contains("aching") {
            json!({"plan": "Add a response cache in front of the API", "approved": true,
                   "next_phase_work": [{"description": "Apply response caching to API routes", "phase": "implementation"}]})
        } else {
            json!({"plan": "OAuth login, then JWT issuing", "approved": true,
                   "next_phase_work": [
                       {"description": "OAuth 2.0 login flow", "phase": "implementation"},
                       {"description": "JWT issuing and verification", "phase": "implementation"}]})
        }
    } else if system.contains("Phase: implementation") {
        json!({"code_files": ["src/auth.rs"], "test_files": ["tests/auth.rs"], "summary": "implemented"})
    } else if user.contains("Validate: JWT") {
        json!({"passed": true, "issues": [],
               "optimizations_discovered": [{"description": "Caching pattern could optimize all API routes", "phase": "analysis", "priority": "high"}]})
    } else {
        json!({"passed": true, "issues": []})
    };
    ok(&answer.to_string(), 50)
}

/// The scenario, but the first analysis also hands a part back to analysis, as models do.
fn back_to_analysis(n: usize, body: &Value) -> Reply {
    let system = body["messages"][0]["content"].as_str().unwrap_or("");
    let user = body["messages"][1]["content"].as_str().unwrap_or("");
    if system.contains("Phase: analysis") && user.contains("Build authentication system") {
        let answer = json!({"plan": "OAuth login; the token design needs its own analysis", "approved": true,
            "next_phase_work": [
                {"description": "OAuth 2.0 login flow", "phase": "implementation"},
                {"description": "Decide the token format and lifetimes", "phase": "analysis"}]});
        return ok(&answer.to_string(), 50);
    }
    scenario(n, body)
}

fn llm_example(url: &str, edit: impl Fn(String) -> String) -> murmur::Workflow {
    let path = repo().join("examples/llm-auth-system/workflow.toml");
    let text = edit(
        std::fs::read_to_string(&path)
            .expect("example")
            .replace("http://localhost:11434/v1", url),
    );
    let manifest = murmur::Manifest::parse(&path, &text).expect("parse");
    murmur::Workflow::from_manifest(manifest, options()).expect("load")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn work_a_model_sends_back_to_its_own_phase_is_taken_and_the_example_completes() {
    let server = serve(back_to_analysis);
    let run = run_workflow(llm_example(&server.url, |t| t)).await;
    let s = &run.summary;
    assert_eq!(s.status, RunStatus::Complete, "{:?}", s.open_work);
    assert_eq!(
        run.work("Decide the token format and lifetimes").status(),
        murmur::work::WorkStatus::Done,
        "the analyst took the analysis it handed back"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn work_only_its_own_publisher_subscribes_to_stalls_saying_so_and_what_to_set() {
    let server = serve(back_to_analysis);
    let run = run_workflow(llm_example(&server.url, |t| {
        t.replace("allow_self = true\n", "")
    }))
    .await;
    let s = &run.summary;
    assert_eq!(s.status, RunStatus::Stalled);
    let open = s
        .open_work
        .iter()
        .find(|w| w.description == "Decide the token format and lifetimes")
        .expect("the handed-back work is open");
    assert_eq!(
        open.reason,
        "only 'analyst' subscribes to this work (phase 'analysis'), and it published it: an agent does not take its own outputs unless its [[plugin.subscribe]] sets allow_self = true"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_llm_auth_example_runs_its_scenario_against_an_openai_compatible_server() {
    let server = serve(scenario);
    let path = repo().join("examples/llm-auth-system/workflow.toml");
    let text = std::fs::read_to_string(&path)
        .expect("example")
        .replace("http://localhost:11434/v1", &server.url);
    let manifest = murmur::Manifest::parse(&path, &text).expect("parse");
    let run =
        run_workflow(murmur::Workflow::from_manifest(manifest, options()).expect("load")).await;
    let s = &run.summary;
    assert_eq!(s.status, RunStatus::Complete, "{:?}", s.open_work);
    // The branch: the reviewer sent the caching optimisation back to analysis.
    assert_eq!(
        s.agents["reviewer"].published.get("WorkDiscovery"),
        Some(&1)
    );
    assert!(
        run.work("Caching pattern could optimize all API routes")
            .status()
            == murmur::work::WorkStatus::Done
    );
    assert_eq!(s.agents["analyst"].invocations, 2);
    assert_eq!(s.agents["engineer"].invocations, 3);
    assert_eq!(s.agents["reviewer"].invocations, 3);
    let usage = s.llm.clone().expect("usage");
    assert_eq!(usage.calls, 8);
    assert_eq!(usage.by_phase["analysis"], 100);
}

/// Embeddings by topic: one dimension per keyword family, so "memoize" and "caching" meet.
fn topical(_: usize, body: &Value) -> Reply {
    let families: [&[&str]; 3] = [
        &["cach", "memoiz"],
        &["ship", "deploy", "release"],
        &["login", "auth"],
    ];
    let data: Vec<Value> = body["input"]
        .as_array()
        .into_iter()
        .flatten()
        .enumerate()
        .map(|(i, t)| {
            let t = t.as_str().unwrap_or("").to_lowercase();
            let v: Vec<f32> = families
                .iter()
                .map(|f| {
                    if f.iter().any(|w| t.contains(w)) {
                        1.0
                    } else {
                        0.0
                    }
                })
                .collect();
            json!({ "index": i, "embedding": v })
        })
        .collect();
    Reply {
        status: 200,
        headers: vec![],
        body: json!({ "data": data }).to_string(),
        delay: Duration::ZERO,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embeddings_find_duplicates_and_route_where_words_do_not() {
    let server = serve(topical);
    let text = |embedding: &str| {
        format!(
            "[workflow]\nname = \"e\"\n[llm]\nbase_url = \"{}\"\nmodel = \"m\"\n{embedding}\n[[phase]]\nname = \"analysis\"\ndescription = \"Understand problems\"\n[[phase]]\nname = \"deployment\"\ndescription = \"Release to production\"\n[[type]]\nname = \"Note\"\nschema = {{ type = \"object\" }}\n{}{}{}{}",
            server.url,
            probe(
                "worker",
                "mode = \"echo\", emit_type = \"Note\"",
                "WorkDiscovery",
                None
            ),
            discovery("Add caching to the API", "analysis", ""),
            discovery("Memoize the API responses", "analysis", ""),
            discovery("Ship the thing", "auto", ""),
        )
    };
    let words = run(&text("")).await;
    assert_eq!(words.summary.work.duplicates, 0, "no words in common");
    assert_eq!(
        words.work("Ship the thing").phase,
        "analysis",
        "lexically: the default phase"
    );

    let embedded = run(&text("embedding_model = \"topics\"")).await;
    assert_eq!(embedded.summary.work.duplicates, 1);
    assert_eq!(
        embedded.work("Memoize the API responses").duplicate_of(),
        Some(embedded.work("Add caching to the API").id)
    );
    let ship = embedded.work("Ship the thing");
    assert_eq!(ship.phase, "deployment");
    assert!(
        ship.routed()
            .expect("routed")
            .reason
            .starts_with("closest phase by embedding")
    );
}

#[test]
fn murmur_run_with_murmur_llm_base_url_completes_the_llm_example_with_its_branch() {
    let server = serve(scenario);
    let dir = tempfile::tempdir().expect("tempdir");
    let store = format!("sqlite:{}", dir.path().join("llm.db").display());
    let out = murmur()
        .env("MURMUR_LLM_BASE_URL", &server.url)
        .env("MURMUR_LLM_MODEL", "scripted")
        .args(["run", "--json", "-q", "--store", &store])
        .arg(repo().join("examples/llm-auth-system/workflow.toml"))
        .output()
        .expect("murmur run");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let summary: Value = serde_json::from_slice(&out.stdout).expect("summary");
    assert_eq!(summary["status"], "complete");
    // The branch: the reviewer sent an optimisation back to analysis.
    assert_eq!(
        summary["agents"]["reviewer"]["published"]["WorkDiscovery"],
        1
    );
    assert_eq!(summary["llm"]["calls"], 8);
    // `status` reports the model usage the store kept.
    let status = murmur()
        .args(["status", "--json", "--store", &store])
        .output()
        .expect("murmur status");
    let kept: Value = serde_json::from_slice(&status.stdout).expect("status json");
    assert_eq!(kept["llm"], summary["llm"]);
    // Each agent's times, and its time waiting for the model, as the run ended.
    assert_eq!(kept["agents"], summary["agents"]);
    let time = &summary["agents"]["reviewer"]["time"];
    let ms = |k: &str| time[k].as_f64().unwrap_or_else(|| panic!("{k} in {time}"));
    assert!(
        ms("p50_ms") <= ms("p95_ms") && ms("p95_ms") <= ms("max_ms"),
        "{time}"
    );
    assert!(ms("model_ms") <= ms("total_ms") + 1.0, "{time}");
    assert!(
        summary["llm"]["model_ms_by_agent"]["reviewer"].is_u64(),
        "{}",
        summary["llm"]
    );
    let requests = server.requests.lock().expect("lock");
    assert!(
        requests.iter().all(|r| r["model"] == "scripted"),
        "the environment overrides the manifest"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_endpoint_model_and_key_come_from_the_settings_handed_in() {
    let server = serve(|_, _| ok(ANALYSIS, 10));
    // The manifest names an endpoint nothing listens on and another model: the settings
    // the command line hands in win, and the key reaches the server.
    let text = workflow("http://127.0.0.1:9/v1", "", "", 1);
    let wf = murmur::Workflow::from_manifest(
        murmur::Manifest::parse(std::path::Path::new("settings.toml"), &expand(&text))
            .expect("parse"),
        murmur::LoadOptions {
            llm: murmur::workflow::LlmSettings {
                base_url: Some(server.url.clone()),
                model: Some("settings-model".into()),
                api_key: Some("k-settings".into()),
            },
            ..options()
        },
    )
    .expect("load");
    let run = run_workflow(wf).await;
    assert_eq!(run.summary.status, RunStatus::Complete);
    let requests = server.requests.lock().expect("lock").clone();
    assert_eq!(requests.len(), 1);
    assert_eq!(requests[0]["model"], "settings-model");
    assert_eq!(requests[0]["_authorization"], "Bearer k-settings");
    let debug = format!(
        "{:?}",
        murmur::workflow::LlmSettings {
            api_key: Some("k-settings".into()),
            ..Default::default()
        }
    );
    assert!(
        !debug.contains("k-settings"),
        "the key is redacted: {debug}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agents_token_budget_refuses_its_calls_before_it_overspends() {
    let server = serve(|_, _| ok(r#"{"plan": "p", "approved": false}"#, 80));
    let run = run(&workflow(
        &server.url,
        "agent_budget_tokens = { analyst = 100 }",
        ", max_tokens = 50",
        3,
    ))
    .await;
    assert_eq!(
        server.requests.lock().expect("lock").len(),
        1,
        "80 spent + 50 more would pass the analyst's 100"
    );
    let refused: Vec<String> = run
        .invocations()
        .into_iter()
        .filter(|i| i.agent == "analyst")
        .filter_map(|i| i.error().map(str::to_string))
        .collect();
    assert_eq!(refused.len(), 2, "{refused:?}");
    assert!(
        refused
            .iter()
            .all(|e| e.contains("agent 'analyst' has spent its budget of 100 tokens (80 used)")),
        "{refused:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn llm_max_concurrency_bounds_the_requests_in_flight() {
    use std::sync::atomic::{AtomicUsize, Ordering};
    for limit in [1usize, 2] {
        let (now, most) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
        let (n, m) = (now.clone(), most.clone());
        let server = serve(move |_, _| {
            let in_flight = n.fetch_add(1, Ordering::SeqCst) + 1;
            m.fetch_max(in_flight, Ordering::SeqCst);
            std::thread::sleep(Duration::from_millis(150));
            n.fetch_sub(1, Ordering::SeqCst);
            ok(ANALYSIS, 10)
        });
        let text = workflow(&server.url, &format!("max_concurrency = {limit}"), "", 6).replace(
            "limits = { concurrency = 1 }",
            "limits = { concurrency = 4 }",
        );
        let run = run(&text).await;
        assert_eq!(run.summary.status, RunStatus::Complete);
        assert_eq!(server.requests.lock().expect("lock").len(), 6);
        assert_eq!(
            most.load(Ordering::SeqCst),
            limit,
            "four workers, max_concurrency = {limit}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn identical_requests_in_flight_at_once_are_paid_once() {
    // Two copies of one task, taken by two workers at once, with no context: the agent's
    // two requests are identical, and the second waits for the first's answer.
    let server = serve(|_, _| Reply {
        delay: Duration::from_millis(300),
        ..ok(r#"{"plan": "p", "approved": false}"#, 10)
    });
    let text = format!(
        "[workflow]\nname = \"once\"\nlimits = {{ concurrency = 2 }}\n[context]\nmax_artifacts = 0\n[llm]\nbase_url = \"{}\"\nmodel = \"m\"\n{PHASES_AND_NOTE}[[type]]\nname = \"Task\"\nschema = {{ type = \"object\" }}\n[[plugin]]\nname = \"analyst\"\npath = \"{{plugin:llm-agent}}\"\nworld = \"agent\"\ngrants = [\"llm\"]\nconfig = {{ publishes = \"AnalysisResult\" }}\n[[plugin.subscribe]]\ntype = \"Task\"\n[[input]]\ntype = \"Task\"\ncount = 2\npayload = {{ ask = \"the same\" }}\n",
        server.url
    );
    let run = run(&text).await;
    assert_eq!(run.summary.status, RunStatus::Complete);
    assert_eq!(run.summary.agents["analyst"].invocations, 2);
    assert_eq!(
        server.requests.lock().expect("lock").len(),
        1,
        "one request for the two"
    );
    let usage = run.summary.llm.clone().expect("usage");
    assert_eq!((usage.calls, usage.cached), (1, 1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_with_embeddings_replays_offline_to_the_same_decisions() {
    let dir = tempfile::tempdir().expect("tempdir");
    let tape = dir.path().join("tape.jsonl");
    let server = serve(topical);
    let text = format!(
        "[workflow]\nname = \"e\"\n[llm]\nbase_url = \"{}\"\nmodel = \"m\"\nembedding_model = \"topics\"\n[[phase]]\nname = \"analysis\"\ndescription = \"Understand problems\"\n[[phase]]\nname = \"deployment\"\ndescription = \"Release to production\"\n[[type]]\nname = \"Note\"\nschema = {{ type = \"object\" }}\n{}{}{}{}",
        server.url,
        probe(
            "worker",
            "mode = \"echo\", emit_type = \"Note\"",
            "WorkDiscovery",
            None
        ),
        discovery("Add caching to the API", "analysis", ""),
        discovery("Memoize the API responses", "analysis", ""),
        discovery("Ship the thing", "auto", ""),
    );
    let load_with = |options: murmur::LoadOptions| {
        let path = dir.path().join("workflow.toml");
        let text = expand(&text);
        let m = murmur::Manifest::parse(&path, &text).expect("parse");
        murmur::Workflow::from_manifest(m, options).expect("load")
    };
    let recorded = run_workflow(load_with(murmur::LoadOptions {
        llm_record: Some(tape.clone()),
        ..options()
    }))
    .await;
    let paid = server.requests.lock().expect("lock").len();
    assert!(paid > 0, "embeddings were requested");
    let usage = recorded.summary.llm.clone().expect("usage");
    assert_eq!(
        usage.calls, paid as u64,
        "every embedding request counts as a call"
    );
    drop(server);
    let replayed = run_workflow(load_with(murmur::LoadOptions {
        llm_replay: Some(tape.clone()),
        ..options()
    }))
    .await;
    assert_eq!(replayed.summary.status, RunStatus::Complete);
    assert_eq!(
        replayed.summary.work.duplicates, 1,
        "the same duplicate, offline"
    );
    assert_eq!(replayed.work("Ship the thing").phase, "deployment");
    assert_eq!(
        replayed.summary.llm.as_ref().map(|u| u.calls),
        Some(0),
        "no network"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resumed_run_goes_on_with_the_tokens_it_had_spent() {
    // Each call spends 80 tokens and asks for at most 50 more: with a budget of 150, a
    // run affords two calls, resumed or not.
    let stop: Arc<Mutex<Option<murmur::scheduler::StopHandle>>> = Arc::new(Mutex::new(None));
    let stopper = stop.clone();
    let server = serve(move |n, _| {
        if n == 1
            && let Some(s) = stopper.lock().expect("lock").as_ref()
        {
            // Interrupt the run during its second call (one at a time): the first is
            // answered and paid, the second dropped unanswered.
            s.stop();
        }
        ok(r#"{"plan": "p", "approved": false}"#, 80)
    });
    let text = workflow(&server.url, "budget_tokens = 150", ", max_tokens = 50", 3);
    let dir = tempfile::tempdir().expect("tempdir");
    let db = dir.path().join("run.db");
    let store = Arc::new(murmur::blackboard::DurableStore::sqlite(&db).expect("open"));
    let scheduler = murmur::Scheduler::new(Arc::new(load(&text).expect("load")), store.clone());
    *stop.lock().expect("lock") = Some(scheduler.stop_handle());
    let first = scheduler.run().await.expect("run");
    assert_eq!(first.status, RunStatus::Running, "interrupted");
    drop(scheduler);
    murmur::Store::close(store.as_ref()).expect("close");
    drop(store);

    let store = murmur::blackboard::DurableStore::sqlite(&db).expect("reopen");
    let record = store.runs().expect("runs").remove(0);
    let kept = record.llm_usage.clone().expect("usage kept in the store");
    assert_eq!(kept.prompt_tokens + kept.completion_tokens, 80);
    store.load(&record.workflow_id).expect("load");
    let resumed = murmur::Scheduler::new(Arc::new(load(&text).expect("load")), Arc::new(store))
        .resume(record)
        .await
        .expect("resume");
    assert_eq!(resumed.status, RunStatus::BudgetExhausted);
    assert_eq!(
        server.requests.lock().expect("lock").len(),
        3,
        "one more call after the resume (beside the first run's two, one dropped): 80 + 80 spent, and 160 + 50 would pass 150"
    );
    let usage = resumed.llm.expect("usage");
    assert_eq!(usage.prompt_tokens + usage.completion_tokens, 160);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_provider_ends_the_run_naming_it_and_leaves_the_work_for_resume() {
    let addr = closed_port();
    let url = format!("http://{addr}/v1");
    // Recovery on: an outage must not spawn recovery work for each item.
    let text = workflow(&url, "", "", 20)
        .replace("[recovery]\nenabled = false", "[recovery]\nenabled = true");
    let dir = tempfile::tempdir().expect("tempdir");
    let db = dir.path().join("run.db");
    let store = Arc::new(murmur::blackboard::DurableStore::sqlite(&db).expect("open"));
    let first = murmur::Scheduler::new(Arc::new(load(&text).expect("load")), store.clone())
        .run()
        .await
        .expect("run");
    assert_eq!(first.status, RunStatus::ProviderUnavailable);
    let outage = first
        .provider
        .clone()
        .expect("the summary names the provider");
    assert_eq!(outage.url, url);
    assert!(outage.error.contains(&addr.to_string()), "{}", outage.error);
    assert!(first.failed_work.is_empty(), "{:?}", first.failed_work);
    assert_eq!(first.work.recovery_spawned, 0);
    let analysis = &first.phases["analysis"];
    assert_eq!(
        (
            analysis.failed,
            analysis.done,
            analysis.pending + analysis.active
        ),
        (0, 0, 20),
        "every item open, none failed: {analysis:?}"
    );
    assert_eq!(first.faults.values().sum::<u64>(), 0, "{:?}", first.faults);
    murmur::Store::close(store.as_ref()).expect("close");
    drop(store);

    // The provider comes back at the same address: `resume` finishes the work.
    let server = serve_on(TcpListener::bind(addr).expect("rebind"), |_, _| {
        ok(r#"{"plan": "p", "approved": false}"#, 10)
    });
    let store = murmur::blackboard::DurableStore::sqlite(&db).expect("reopen");
    let record = store.runs().expect("runs").remove(0);
    assert_eq!(record.status, RunStatus::ProviderUnavailable);
    store.load(&record.workflow_id).expect("load");
    let resumed = murmur::Scheduler::new(Arc::new(load(&text).expect("load")), Arc::new(store))
        .resume(record)
        .await
        .expect("resume");
    assert_eq!(
        resumed.status,
        RunStatus::Complete,
        "{:?}",
        resumed.open_work
    );
    assert_eq!(resumed.by_type.get("AnalysisResult"), Some(&20));
    assert_eq!(server.requests.lock().expect("lock").len(), 20);
    assert!(resumed.provider.is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_provider_refusing_the_key_is_asked_once_and_the_run_ends_naming_it() {
    for status in [401u16, 403, 404] {
        let server = serve(move |_, _| Reply {
            status,
            headers: vec![],
            body: r#"{"error": {"message": "Incorrect API key provided"}}"#.into(),
            delay: Duration::ZERO,
        });
        let run = run(&workflow(&server.url, "", "", 20)).await;
        assert_eq!(
            run.summary.status,
            RunStatus::ProviderUnavailable,
            "{status}"
        );
        let outage = run.summary.provider.clone().expect("named");
        assert_eq!(outage.url, server.url);
        assert!(
            outage.error.contains(&status.to_string())
                && outage.error.contains("Incorrect API key"),
            "{}",
            outage.error
        );
        assert_eq!(
            server.requests.lock().expect("lock").len(),
            1,
            "{status}: no retry, and no other item asks again"
        );
        assert!(
            run.summary.failed_work.is_empty(),
            "{:?}",
            run.summary.failed_work
        );
        assert!(
            run.invocations()
                .iter()
                .all(|i| i.status == murmur::invocation::InvocationStatus::Queued),
            "every invocation waits for resume"
        );
    }
}

#[test]
fn murmur_run_against_a_closed_port_exits_4_naming_the_url_and_resume_completes() {
    let addr = closed_port();
    let url = format!("http://{addr}/v1");
    let dir = tempfile::tempdir().expect("tempdir");
    let store = format!("sqlite:{}", dir.path().join("llm.db").display());
    let out = murmur()
        .env("MURMUR_LLM_BASE_URL", &url)
        .env("MURMUR_LLM_MODEL", "scripted")
        .args(["run", "--store", &store])
        .arg(repo().join("examples/llm-auth-system/workflow.toml"))
        .output()
        .expect("murmur run");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(4), "{stderr}");
    assert!(
        stderr.contains("murmur: provider_unavailable")
            && stderr.contains(&format!("provider unavailable: {url}")),
        "{stderr}"
    );
    assert!(!stderr.contains("failed:"), "{stderr}");
    assert!(
        stderr.contains(&format!("waits for the model provider ({url})")),
        "the open work says what it waits for: {stderr}"
    );
    // `status` reads the same from the store.
    let status = murmur()
        .args(["status", "--store", &store])
        .output()
        .expect("murmur status");
    let said = String::from_utf8_lossy(&status.stdout);
    assert!(
        said.contains("(provider_unavailable)")
            && said.contains(&format!("provider unavailable: {url}")),
        "{said}"
    );
    let _server = serve_on(TcpListener::bind(addr).expect("rebind"), scenario);
    let out = murmur()
        .env("MURMUR_LLM_BASE_URL", &url)
        .env("MURMUR_LLM_MODEL", "scripted")
        .args(["resume", "--json", "-q", "--store", &store])
        .output()
        .expect("murmur resume");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let summary: Value = serde_json::from_slice(&out.stdout).expect("summary");
    assert_eq!(summary["status"], "complete");
    assert_eq!(
        summary["llm"]["calls"], 8,
        "the same run an uninterrupted one is"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_model_call_ends_at_its_invocations_deadline_not_the_models() {
    // The model answers after 30 s and the request may take 10 minutes; the agent has
    // half a second. The call must end with the invocation's time, as a timeout.
    let server = serve(|_, _| Reply {
        delay: Duration::from_secs(30),
        ..ok(ANALYSIS, 10)
    });
    let text = workflow(&server.url, "timeout_ms = 600000", "", 1).replacen(
        "grants = [\"llm\"]\n",
        "grants = [\"llm\"]\nlimits = { timeout_ms = 500 }\n",
        1,
    );
    let started = Instant::now();
    let run = run(&text).await;
    let took = started.elapsed();
    let inv = &run.invocations()[0];
    assert_eq!(
        inv.fault(),
        Some(murmur::invocation::FaultKind::Timeout),
        "{:?}",
        inv.error()
    );
    // Not a measure of speed: without the bound the run takes the model's 30 s.
    assert!(took < Duration::from_secs(20), "{took:?}");
    assert_eq!(run.summary.status, RunStatus::Failed);
}

/// A server-side gate: every request waits until `n` are in flight at once (or a minute
/// passes), then all are answered. Notes the most seen at once.
struct Gate {
    n: usize,
    /// (in flight now, most at once)
    state: Mutex<(usize, usize)>,
    all_in: std::sync::Condvar,
}

impl Gate {
    fn pass(&self) {
        let mut s = self.state.lock().expect("lock");
        s.0 += 1;
        s.1 = s.1.max(s.0);
        if s.1 >= self.n {
            self.all_in.notify_all();
        }
        let until = Instant::now() + Duration::from_secs(60);
        while s.1 < self.n && Instant::now() < until {
            s = self
                .all_in
                .wait_timeout(s, Duration::from_millis(100))
                .expect("wait")
                .0;
        }
        s.0 -= 1;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_hundred_calls_in_flight_at_once_on_one_guest_thread_complete_with_exact_counts() {
    // The server answers none until all 500 wait at once, and one thread runs guest
    // code: only invocations that wait without holding a thread get there.
    let gate = Arc::new(Gate {
        n: 500,
        state: Mutex::new((0, 0)),
        all_in: std::sync::Condvar::new(),
    });
    let at_server = gate.clone();
    let server = serve(move |_, _| {
        at_server.pass();
        ok(r#"{"plan": "p", "approved": false}"#, 10)
    });
    let text = workflow(&server.url, "max_concurrency = 500", "", 500).replacen(
        "concurrency = 1",
        "concurrency = 500, threads = 1",
        1,
    );
    let run = run(&text).await;
    assert_eq!(
        run.summary.status,
        RunStatus::Complete,
        "{:?}",
        run.summary.failed_work
    );
    assert_eq!(
        gate.state.lock().expect("lock").1,
        500,
        "all 500 waited at once"
    );
    assert_eq!(run.artifacts("AnalysisResult").len(), 500);
    assert_eq!(server.requests.lock().expect("lock").len(), 500);
    let usage = run.summary.llm.clone().expect("usage");
    assert_eq!(
        (usage.calls, usage.prompt_tokens + usage.completion_tokens),
        (500, 5_000)
    );
    assert_eq!(run.summary.faults.values().sum::<u64>(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_made_at_once_cannot_all_pass_a_budget_only_some_fit() {
    // 100 calls at once, 10 tokens each, a budget of 500: checked one by one before any
    // answer came back, all 100 passed and spent 1,000.
    let server = serve(|_, _| Reply {
        delay: Duration::from_millis(200),
        ..ok(r#"{"plan": "p", "approved": false}"#, 10)
    });
    let text = workflow(
        &server.url,
        "max_concurrency = 100\nbudget_tokens = 500",
        ", max_tokens = 5",
        100,
    )
    .replacen("concurrency = 1", "concurrency = 100", 1);
    let run = run(&text).await;
    assert_eq!(run.summary.status, RunStatus::BudgetExhausted);
    let usage = run.summary.llm.clone().expect("usage");
    let spent = usage.prompt_tokens + usage.completion_tokens;
    assert!(spent < 500, "spent {spent} of a budget of 500");
    assert_eq!(
        spent,
        10 * server.requests.lock().expect("lock").len() as u64
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stop_drops_every_model_call_in_flight_and_resume_makes_them() {
    use std::sync::atomic::{AtomicBool, Ordering};
    // Four invocations, one model call at a time: the run is stopped while the first
    // call is on the wire. That call is abandoned (its answer would come 300 ms later)
    // and the three waiting for the slot are never made; none is failed, and `resume`
    // makes all four.
    let stop: Arc<Mutex<Option<murmur::scheduler::StopHandle>>> = Arc::new(Mutex::new(None));
    let first_run = Arc::new(AtomicBool::new(true));
    let (stopper, during_first) = (stop.clone(), first_run.clone());
    let server = serve(move |n, _| {
        if during_first.load(Ordering::SeqCst)
            && n == 0
            && let Some(s) = stopper.lock().expect("lock").as_ref()
        {
            s.stop();
        }
        Reply {
            delay: Duration::from_millis(300),
            ..ok(r#"{"plan": "p", "approved": false}"#, 10)
        }
    });
    let text = workflow(&server.url, "max_concurrency = 1", "", 4).replacen(
        "concurrency = 1",
        "concurrency = 4",
        1,
    );
    let dir = tempfile::tempdir().expect("tempdir");
    let db = dir.path().join("run.db");
    let store = Arc::new(murmur::blackboard::DurableStore::sqlite(&db).expect("open"));
    let scheduler = murmur::Scheduler::new(Arc::new(load(&text).expect("load")), store.clone());
    *stop.lock().expect("lock") = Some(scheduler.stop_handle());
    let first = scheduler.run().await.expect("run");
    assert_eq!(first.status, RunStatus::Running, "interrupted");
    assert!(first.failed_work.is_empty(), "{:?}", first.failed_work);
    assert_eq!(first.faults.values().sum::<u64>(), 0, "{:?}", first.faults);
    assert_eq!(
        first.by_type.get("AnalysisResult"),
        None,
        "the call on the wire was dropped, not waited for"
    );
    assert_eq!(
        server.requests.lock().expect("lock").len(),
        1,
        "the waiting three were not made"
    );
    drop(scheduler);
    murmur::Store::close(store.as_ref()).expect("close");
    drop(store);

    first_run.store(false, Ordering::SeqCst);
    let store = murmur::blackboard::DurableStore::sqlite(&db).expect("reopen");
    let record = store.runs().expect("runs").remove(0);
    store.load(&record.workflow_id).expect("load");
    let resumed = murmur::Scheduler::new(Arc::new(load(&text).expect("load")), Arc::new(store))
        .resume(record)
        .await
        .expect("resume");
    assert_eq!(
        resumed.status,
        RunStatus::Complete,
        "{:?}",
        resumed.open_work
    );
    assert_eq!(resumed.by_type.get("AnalysisResult"), Some(&4));
    assert_eq!(
        server.requests.lock().expect("lock").len(),
        5,
        "all four made on resume"
    );
}
