//! The generic LLM agent: one component, configured from the manifest, that does any
//! phase's work with a language model the host calls on its behalf (`grants = ["llm"]`).
//!
//! `config.publishes` names the artifact type it produces (`AnalysisResult`,
//! `Implementation`, `ValidationResult` or `WorkDiscovery`). For each invocation it:
//! 1. builds the prompt: the served phase's instructions and done-definitions (the host's
//!    `PhaseInstructions`), why a previous attempt was refused (if this is a retry), the
//!    inputs and the context the host chose, and `config.system` if given;
//! 2. asks for JSON matching the output type's JSON Schema (the host's own schema, with
//!    nested discoveries spelled out), as structured output;
//! 3. parses the answer; if it is not a JSON object of the right shape it asks once more,
//!    feeding the error back;
//! 4. returns the artifact, and fans out every nested discovery (`next_phase_work`,
//!    `optimizations_discovered`, `discovered_issues`) as its own WorkDiscovery — phase
//!    `auto` when the model names none, so the host's router places it — plus, with
//!    `config.follow_up`, one WorkDiscovery in a fixed phase carrying the output (how
//!    implementation hands its work to validation).

use murmur_guest::bindings::murmur::plugin::llm;
use murmur_guest::prelude::*;
use serde::Deserialize;
use serde_json::{json, Map, Value};

#[derive(Deserialize)]
struct Config {
    publishes: String,
    #[serde(default)]
    system: String,
    #[serde(default)]
    max_tokens: Option<u32>,
    #[serde(default)]
    temperature: Option<f32>,
    /// Characters of each context artifact's payload put in the prompt.
    #[serde(default = "default_excerpt")]
    excerpt: usize,
    /// Work to hand on whatever the model says (the workflow's "spawn a validation work
    /// discovery"): one WorkDiscovery in this phase, carrying the output.
    #[serde(default)]
    follow_up: Option<FollowUp>,
}

#[derive(Deserialize)]
struct FollowUp {
    phase: String,
    #[serde(default)]
    prefix: String,
}

fn default_excerpt() -> usize {
    1500
}

/// The output type's schema (the host's) as the text the model is given, its required
/// fields, and the field holding nested discoveries. Only the text and the field names
/// are kept: the parsed tree is gone before the call waits for the model.
fn schema_of(type_name: &str) -> Result<(String, Vec<String>, Option<&'static str>), PluginError> {
    let (text, nested) = match type_name {
        "AnalysisResult" => (include_str!("../../../host/schemas/AnalysisResult.json"), Some("next_phase_work")),
        "Implementation" => (include_str!("../../../host/schemas/Implementation.json"), Some("discovered_issues")),
        "ValidationResult" => {
            (include_str!("../../../host/schemas/ValidationResult.json"), Some("optimizations_discovered"))
        }
        "WorkDiscovery" => (include_str!("../../../host/schemas/WorkDiscovery.json"), None),
        other => return Err(PluginError::invalid_input(format!("llm-agent cannot publish '{other}'"))),
    };
    let mut schema: Value = serde_json::from_str(text).map_err(|e| PluginError::failed(format!("schema: {e}")))?;
    if let Some(obj) = schema.as_object_mut() {
        obj.remove("$schema");
    }
    if let Some(field) = nested {
        // Spell out what a nested discovery is, so the model fills it usefully.
        schema["properties"][field]["items"] = json!({
            "type": "object",
            "required": ["description"],
            "properties": {
                "description": { "type": "string", "description": "the work, in one sentence" },
                "phase": { "type": "string", "description": "the phase that should do it, or 'auto'" },
                "priority": { "enum": ["low", "medium", "high", "critical"] },
                "done_definition": { "type": "string" }
            }
        });
    }
    let required = schema["required"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|r| r.as_str().map(str::to_owned))
        .collect();
    Ok((schema.to_string(), required, nested))
}

fn excerpt(payload: &str, n: usize) -> String {
    if payload.chars().count() <= n {
        payload.to_string()
    } else {
        let mut s: String = payload.chars().take(n).collect();
        s.push('…');
        s
    }
}

fn prompt(inv: &Invocation, config: &Config) -> (String, String) {
    let mut system = format!("You are '{}', an agent in a multi-agent workflow.\n", inv.agent);
    let mut user = String::new();
    for a in &inv.context {
        match a.type_name.as_str() {
            "PhaseInstructions" => {
                let p: Value = serde_json::from_str(&a.payload).unwrap_or_default();
                system.push_str(&format!(
                    "Phase: {}\n{}\nInstructions: {}\nDone when: {}\nExpected outputs: {}\n",
                    p["phase_name"].as_str().unwrap_or(""),
                    p["description"].as_str().unwrap_or(""),
                    p["instructions"].as_str().unwrap_or(""),
                    p["done_definitions"].as_array().map(|d| d.iter().filter_map(|x| x.as_str()).collect::<Vec<_>>().join("; ")).unwrap_or_default(),
                    p["expected_outputs"].as_array().map(|d| d.iter().filter_map(|x| x.as_str()).collect::<Vec<_>>().join("; ")).unwrap_or_default(),
                ));
            }
            "PreviousAttempt" => {}
            _ => user.push_str(&format!(
                "Context ({} from {}): {}\n",
                a.type_name,
                a.producer,
                excerpt(&a.payload, config.excerpt)
            )),
        }
    }
    if !config.system.is_empty() {
        system.push_str(&config.system);
        system.push('\n');
    }
    system.push_str(&format!(
        "Answer with one JSON object: a {} matching the JSON Schema you are given. No prose.",
        config.publishes
    ));
    let mut head = String::new();
    for a in &inv.inputs {
        head.push_str(&format!("Input ({} from {}): {}\n", a.type_name, a.producer, a.payload));
    }
    let refused = inv.previous_refusal();
    if !refused.is_empty() {
        head.push_str(&format!(
            "Your previous answer was refused: {}. Fix that this time.\n",
            refused.join("; ")
        ));
    }
    (system, head + &user)
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

/// The answer as a JSON object with the schema's required fields, or why not.
fn parse(content: &str, required: &[String]) -> Result<Map<String, Value>, String> {
    let trimmed = content.trim().trim_start_matches("```json").trim_start_matches("```").trim_end_matches("```").trim();
    let value: Value = serde_json::from_str(trimmed).map_err(|e| format!("not valid JSON: {e}"))?;
    let obj = value.as_object().cloned().ok_or("not a JSON object")?;
    let missing: Vec<&str> = required.iter().map(String::as_str).filter(|r| !obj.contains_key(*r)).collect();
    if !missing.is_empty() {
        return Err(format!("missing required field(s): {}", missing.join(", ")));
    }
    Ok(obj)
}

struct LlmAgent;

impl Agent for LlmAgent {
    fn describe() -> PluginInfo {
        PluginInfo::agent("llm-agent", env!("CARGO_PKG_VERSION"))
            .description("does any phase's work with a language model")
            .capabilities(["llm"])
    }

    fn handle(inv: Invocation) -> Result<Vec<Output>, PluginError> {
        let config: Config = inv.config()?;
        let (schema, required, nested) = schema_of(&config.publishes)?;
        let (system, user) = prompt(&inv, &config);
        // One request, built once: a retry appends to its conversation.
        let mut request = llm::CompletionRequest {
            system,
            messages: vec![llm::Message { role: "user".into(), content: user }],
            json_schema: Some(schema),
            max_tokens: config.max_tokens,
            temperature: config.temperature,
        };
        let first = ask(&request)?;
        let obj = match parse(&first.content, &required) {
            Ok(obj) => obj,
            Err(problem) => {
                log(Level::Info, &format!("answer refused ({problem}); asking once more"));
                request.messages.push(llm::Message { role: "assistant".into(), content: first.content });
                request.messages.push(llm::Message {
                    role: "user".into(),
                    content: format!(
                        "That answer is {problem}. Reply again with only the JSON object matching the schema."
                    ),
                });
                let second = ask(&request)?;
                parse(&second.content, &required)
                    .map_err(|p| PluginError::failed(format!("the model's answer is {p}, twice")))?
            }
        };
        drop(request);
        let parent = inv.first_input()?.id.clone();
        let mut outputs = Vec::new();
        let mut discoveries = Vec::new();
        if let Some(field) = nested {
            for item in obj.get(field).and_then(|v| v.as_array()).into_iter().flatten() {
                let description = item["description"].as_str().unwrap_or("").trim().to_string();
                if description.is_empty() {
                    continue;
                }
                let mut d = json!({
                    "description": description,
                    "phase": item["phase"].as_str().filter(|p| !p.is_empty()).unwrap_or("auto"),
                    "priority": item["priority"].as_str().unwrap_or("medium"),
                    "done_definition": item["done_definition"].as_str().unwrap_or("Done as described"),
                    "discovered_by": inv.agent,
                    "parent_work_id": parent,
                });
                if !matches!(d["priority"].as_str(), Some("low" | "medium" | "high" | "critical")) {
                    d["priority"] = json!("medium");
                }
                discoveries.push(d);
            }
        }
        if let Some(f) = &config.follow_up {
            let input: Value = serde_json::from_str(&inv.first_input()?.payload).unwrap_or_default();
            let about = input["description"].as_str().unwrap_or("the previous work");
            discoveries.push(json!({
                "description": format!("{}{about}", f.prefix),
                "phase": f.phase,
                "priority": input["priority"].as_str().unwrap_or("medium"),
                "done_definition": "Checked against its done-definition",
                "discovered_by": inv.agent,
                "parent_work_id": parent,
                "metadata": { config.publishes.to_lowercase(): Value::Object(obj.clone()) },
            }));
        }
        outputs.push(Output::json(&config.publishes, &Value::Object(obj))?);
        for d in &discoveries {
            outputs.push(Output::json(types::WORK_DISCOVERY, d)?);
        }
        Ok(outputs)
    }
}

murmur_guest::export_agent!(LlmAgent);
