//! The language-model retrospective: a model reads what went wrong in a run and writes
//! the lessons (`grants = ["llm"]`; the host calls the model on its behalf).
//!
//! The prompt carries the workflow's phases (name and description), the run's findings
//! (kind, phase, agent, work, detail, whether the run fixed it, and the artifact ids it
//! rests on) and the lessons kept already, so the model adds what is missing instead of
//! restating them. The answer must be JSON, `{"lessons": [{"phase", "text",
//! "evidence": [ids]}]}`, asked for as structured output; an answer that does not parse
//! is asked for once more with the error. The host then checks every lesson (phase,
//! length, evidence among the findings') before it keeps any.
//!
//! Config (optional): `system` (more instructions), `max_tokens`, `temperature`,
//! `max_lessons` (default 5).

use murmur_guest::bindings::murmur::plugin::llm;
use murmur_guest::prelude::*;
use serde::Deserialize;
use serde_json::{json, Value};

#[derive(Deserialize, Default)]
struct Config {
    #[serde(default)]
    system: String,
    #[serde(default)]
    max_tokens: Option<u32>,
    #[serde(default)]
    temperature: Option<f32>,
    #[serde(default = "five")]
    max_lessons: usize,
}

fn five() -> usize {
    5
}

const SCHEMA: &str = r#"{"type":"object","required":["lessons"],"properties":{"lessons":{"type":"array","items":{"type":"object","required":["phase","text","evidence"],"properties":{"phase":{"type":"string"},"text":{"type":"string"},"evidence":{"type":"array","items":{"type":"string"}}}}}}}"#;

#[derive(Deserialize)]
struct Answer {
    lessons: Vec<Draft>,
}

#[derive(Deserialize)]
struct Draft {
    phase: String,
    text: String,
    evidence: Vec<String>,
}

fn kind(k: FindingKind) -> &'static str {
    match k {
        FindingKind::Rejection => "rejection",
        FindingKind::Retry => "retry",
        FindingKind::Failure => "failure",
        FindingKind::Duplicate => "duplicate",
    }
}

fn prompt(review: &RunReview, config: &Config) -> (String, String) {
    let mut system = String::from(
        "You are the retrospective of a multi-agent workflow. After each run you read what went wrong \
         (outputs a validator refused, transient errors retried, work that failed and how it was recovered, \
         work discovered twice) and write short lessons that the agents of a phase will read in their \
         instructions on the next run, so the same problems do not happen again. A lesson is one or two \
         sentences addressed to the agents of its phase: what to do differently, not what happened. \
         Cite as evidence the artifact ids of the findings it rests on, and only those. Do not repeat a \
         lesson that is kept already. Answer with JSON only: {\"lessons\": [{\"phase\": …, \"text\": …, \
         \"evidence\": [ids]}]}; an empty list when there is nothing to learn.",
    );
    if !config.system.is_empty() {
        system.push('\n');
        system.push_str(&config.system);
    }
    let phases: Vec<Value> = review
        .phases
        .iter()
        .map(|p| json!({ "name": p.name, "description": p.description }))
        .collect();
    let findings: Vec<Value> = review
        .findings
        .iter()
        .map(|f| {
            json!({
                "kind": kind(f.kind), "phase": f.phase, "agent": f.agent, "work": f.work,
                "detail": f.detail, "fixed": f.fixed, "evidence": f.evidence,
            })
        })
        .collect();
    let kept: Vec<Value> = review
        .lessons
        .iter()
        .map(|l| json!({ "phase": l.phase, "text": l.text, "used": l.uses, "helped": l.helped }))
        .collect();
    let user = json!({
        "workflow": review.workflow,
        "run_status": review.status,
        "phases": phases,
        "findings": findings,
        "lessons_kept": kept,
        "at_most": config.max_lessons,
    });
    (system, user.to_string())
}

fn ask(request: &llm::CompletionRequest) -> Result<llm::Completion, PluginError> {
    llm::complete(request).map_err(|e| match e {
        llm::LlmError::RateLimited(m) | llm::LlmError::Timeout(m) => PluginError::retryable(format!("llm: {m}")),
        llm::LlmError::BudgetExhausted(m) => PluginError::failed(format!("llm budget exhausted: {m}")),
        llm::LlmError::Refused(m) | llm::LlmError::InvalidResponse(m) | llm::LlmError::Denied(m) => {
            PluginError::failed(format!("llm: {m}"))
        }
    })
}

fn parse(content: &str) -> Result<Answer, String> {
    let trimmed = content.trim().trim_start_matches("```json").trim_start_matches("```").trim_end_matches("```").trim();
    serde_json::from_str(trimmed).map_err(|e| format!("not the JSON asked for: {e}"))
}

struct LlmRetrospective;

impl Retrospective for LlmRetrospective {
    fn describe() -> RetrospectiveInfo {
        RetrospectiveInfo::new(
            "llm-retrospective",
            env!("CARGO_PKG_VERSION"),
            "A language model turns a run's findings into lessons",
        )
    }

    fn distill(review: RunReview) -> Result<Vec<LessonDraft>, PluginError> {
        if review.findings.is_empty() {
            return Ok(Vec::new());
        }
        let config: Config = if review.config.trim().is_empty() {
            Config { max_lessons: five(), ..Config::default() }
        } else {
            serde_json::from_str(&review.config).map_err(|e| PluginError::invalid_input(format!("config: {e}")))?
        };
        let (system, user) = prompt(&review, &config);
        let mut request = llm::CompletionRequest {
            system,
            messages: vec![llm::Message { role: "user".into(), content: user }],
            json_schema: Some(SCHEMA.into()),
            max_tokens: config.max_tokens,
            temperature: config.temperature,
        };
        let first = ask(&request)?;
        let answer = match parse(&first.content) {
            Ok(a) => a,
            Err(e) => {
                log(Level::Warn, &format!("asking again: {e}"));
                request.messages.push(llm::Message { role: "assistant".into(), content: first.content });
                request.messages.push(llm::Message {
                    role: "user".into(),
                    content: format!("That answer was {e}. Answer again with the JSON object only."),
                });
                let second = ask(&request)?;
                parse(&second.content).map_err(|e| PluginError::failed(format!("the model's answer is {e}")))?
            }
        };
        Ok(answer
            .lessons
            .into_iter()
            .take(config.max_lessons)
            .map(|d| LessonDraft { phase: d.phase, text: d.text, evidence: d.evidence })
            .collect())
    }
}

murmur_guest::export_retrospective!(LlmRetrospective);
