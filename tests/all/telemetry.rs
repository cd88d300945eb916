//! OpenTelemetry export: `murmur serve --otlp-endpoint` runs the LLM example against a
//! scripted model and an OTLP/HTTP receiver on loopback; the spans it receives are decoded
//! with the protocol's own messages and checked against the run's summary.

use crate::helpers::repo;
use crate::loopback::{Answer, serve_http};
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::any_value::Value as AnyValue;
use opentelemetry_proto::tonic::trace::v1::Span;
use prost::Message;
use serde_json::json;
use std::collections::{BTreeMap, HashMap};
use std::net::TcpListener;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// A span received, with the attributes of the resource it came from.
type Received = (Span, BTreeMap<String, String>);

/// An OTLP/HTTP receiver (`POST /v1/traces`, protobuf) on loopback: keeps every span and
/// the resource attributes it came with.
struct Collector {
    url: String,
    spans: Arc<Mutex<Vec<Received>>>,
}

fn collector() -> Collector {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let url = format!("http://{}", listener.local_addr().expect("addr"));
    let spans = Arc::new(Mutex::new(Vec::new()));
    let kept = spans.clone();
    serve_http(listener, move |request| {
        assert!(
            request.line.starts_with("POST /v1/traces "),
            "{}",
            request.line
        );
        let request =
            ExportTraceServiceRequest::decode(request.body.as_slice()).expect("OTLP protobuf");
        for resource_spans in request.resource_spans {
            let resource = resource_spans
                .resource
                .map(|r| attributes(&r.attributes))
                .unwrap_or_default();
            for scope in resource_spans.scope_spans {
                for span in scope.spans {
                    kept.lock().expect("lock").push((span, resource.clone()));
                }
            }
        }
        Answer {
            status: 200,
            headers: vec![("Content-Type".into(), "application/x-protobuf".into())],
            body: Vec::new(),
            delay: Duration::ZERO,
            close: false,
        }
    });
    Collector { url, spans }
}

/// Attributes as text (numbers printed), by key.
fn attributes(kv: &[opentelemetry_proto::tonic::common::v1::KeyValue]) -> BTreeMap<String, String> {
    kv.iter()
        .map(|kv| {
            let value = match kv.value.as_ref().and_then(|v| v.value.as_ref()) {
                Some(AnyValue::StringValue(s)) => s.clone(),
                Some(AnyValue::IntValue(i)) => i.to_string(),
                Some(AnyValue::BoolValue(b)) => b.to_string(),
                Some(AnyValue::DoubleValue(d)) => d.to_string(),
                other => format!("{other:?}"),
            };
            (kv.key.clone(), value)
        })
        .collect()
}

#[test]
fn a_served_run_exports_a_span_per_run_invocation_and_model_call_with_their_tokens() {
    let model = crate::llm::serve(crate::llm::scenario);
    let otlp = collector();
    let dir = tempfile::tempdir().expect("tempdir");
    let server = crate::serve::Server::start_with(
        &dir.path().join("traced.db"),
        &["--otlp-endpoint", &otlp.url],
        &[
            ("MURMUR_LLM_BASE_URL", &model.url),
            ("MURMUR_LLM_MODEL", "scripted"),
        ],
    );
    let manifest = repo().join("examples/llm-auth-system/workflow.toml");
    let (status, started) = server.post(
        "/v1/workflows",
        json!({ "manifest_path": manifest.display().to_string() }),
    );
    assert_eq!(status, 201, "{started}");
    let id = started["workflow_id"]
        .as_str()
        .expect("workflow_id")
        .to_string();
    let summary = server.wait_ended(&id);
    assert_eq!(summary["status"], "complete", "{summary}");
    // A stopping server exports what it still holds.
    assert!(server.stop().success());

    let spans = otlp.spans.lock().expect("lock").clone();
    let named = |prefix: &str| -> Vec<Received> {
        spans
            .iter()
            .filter(|(s, _)| s.name.starts_with(prefix))
            .map(|(s, r)| {
                (
                    s.clone(),
                    attributes(&s.attributes)
                        .into_iter()
                        .chain(r.iter().map(|(k, v)| (format!("resource.{k}"), v.clone())))
                        .collect(),
                )
            })
            .collect()
    };
    let runs = named("invoke_workflow ");
    let workflow = summary["workflow"].as_str().expect("workflow name");
    assert_eq!(
        runs.len(),
        1,
        "one span for the run: {:?}",
        runs.iter().map(|r| &r.0.name).collect::<Vec<_>>()
    );
    let (run, run_attrs) = &runs[0];
    assert_eq!(run.name, format!("invoke_workflow {workflow}"));
    assert_eq!(run_attrs["gen_ai.operation.name"], "invoke_workflow");
    assert_eq!(run_attrs["gen_ai.workflow.name"], workflow);
    assert_eq!(run_attrs["murmur.workflow.id"], id);
    assert_eq!(run_attrs["resource.service.name"], "murmur");

    // Every invocation is a child of the run's span, named after its agent.
    let agents = named("invoke_agent ");
    assert_eq!(
        agents.len() as u64,
        summary["invocations"].as_u64().expect("invocations"),
        "one span per invocation"
    );
    let mut by_agent: HashMap<String, u64> = HashMap::new();
    for (span, attrs) in &agents {
        assert_eq!(span.trace_id, run.trace_id);
        assert_eq!(span.parent_span_id, run.span_id, "{}", span.name);
        let agent = &attrs["gen_ai.agent.name"];
        assert_eq!(span.name, format!("invoke_agent {agent}"));
        assert_eq!(attrs["gen_ai.operation.name"], "invoke_agent");
        assert_eq!(attrs["gen_ai.workflow.name"], workflow);
        *by_agent.entry(agent.clone()).or_default() += 1;
    }
    for (agent, counts) in summary["agents"].as_object().expect("agents") {
        assert_eq!(
            by_agent.get(agent).copied().unwrap_or(0),
            counts["invocations"].as_u64().expect("invocations"),
            "{agent}"
        );
    }

    // Every model call is a child of the invocation that made it, with its tokens; the
    // tokens add up to what the summary counted.
    let chats = named("chat ");
    let llm = &summary["llm"];
    assert_eq!(
        chats.len() as u64,
        llm["calls"].as_u64().expect("calls") + llm["cached"].as_u64().expect("cached")
    );
    let invocation_ids: HashMap<&[u8], &str> = agents
        .iter()
        .map(|(s, a)| (s.span_id.as_slice(), a["gen_ai.agent.name"].as_str()))
        .collect();
    let (mut input, mut output) = (0u64, 0u64);
    for (span, attrs) in &chats {
        assert_eq!(span.name, "chat scripted");
        assert_eq!(attrs["gen_ai.request.model"], "scripted");
        assert_eq!(attrs["gen_ai.operation.name"], "chat");
        let parent = invocation_ids
            .get(span.parent_span_id.as_slice())
            .unwrap_or_else(|| panic!("a model call outside an invocation: {attrs:?}"));
        assert_eq!(*parent, attrs["gen_ai.agent.name"]);
        assert!(span.start_time_unix_nano <= span.end_time_unix_nano);
        input += attrs
            .get("gen_ai.usage.input_tokens")
            .map_or(0, |t| t.parse().expect("a number"));
        output += attrs
            .get("gen_ai.usage.output_tokens")
            .map_or(0, |t| t.parse().expect("a number"));
    }
    assert_eq!(input, llm["prompt_tokens"].as_u64().expect("prompt_tokens"));
    assert_eq!(
        output,
        llm["completion_tokens"]
            .as_u64()
            .expect("completion_tokens")
    );
    assert!(input > 0 && output > 0, "{llm}");
}
