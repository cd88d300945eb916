//! Expectations: what a test workflow's finished run must show.
//!
//! A test workflow (`murmur test`, a plugin project's `tests/*.toml`) is a manifest with
//! `[[expect]]` tables, each a CEL expression over the finished run:
//!
//! ```toml
//! [[expect]]
//! that = "artifacts.exists(a, a.type == 'Response' && a.payload.answer.question == 'ping')"
//! why = "the agent answers the request"
//! ```
//!
//! The expression sees `status` (the run's: `completed`, `stalled`, …), `artifacts`
//! (each `{id, type, producer, tags, payload}`, in publication order), `invocations`
//! (each `{agent, status, attempts, error, fault}`; `error` and `fault` are `""` when
//! none) and `work` (each `{phase, description, status}`). CEL rather than a fixed list of
//! checks: the subscription filters' language, so an author learns one. A run ignores
//! expectations; the expressions are compiled when the manifest loads, so a typo is an
//! error at its line.

use crate::artifact::Viewer;
use crate::blackboard::{ArtifactQuery, Store};
use crate::summary::RunSummary;
use serde_json::{Value, json};
use std::sync::Arc;

/// One `[[expect]]`: a CEL expression that must hold.
#[derive(Clone)]
pub struct Expectation {
    /// The expression.
    pub that: String,
    /// What it means, for the report.
    pub why: Option<String>,
    /// Its line in the manifest.
    pub line: usize,
    program: Arc<cel::Program>,
}

impl std::fmt::Debug for Expectation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Expectation")
            .field("that", &self.that)
            .field("line", &self.line)
            .finish()
    }
}

/// One expectation's outcome.
#[derive(Debug, Clone)]
pub struct Checked {
    /// The expectation.
    pub expectation: Expectation,
    /// `None` if it held; else why not (false, or the evaluation's error).
    pub failure: Option<String>,
}

impl Expectation {
    /// Compile `that` (at `line`); the error is CEL's message.
    pub fn compile(that: &str, why: Option<String>, line: usize) -> Result<Self, String> {
        let program = cel::Program::compile(that).map_err(|e| {
            format!(
                "expect: not a CEL expression: {}",
                e.to_string().replace('\n', " ")
            )
        })?;
        Ok(Self {
            that: that.to_string(),
            why,
            line,
            program: Arc::new(program),
        })
    }

    /// Evaluate against `facts` (see [`facts`]).
    pub fn check(&self, facts: &Value) -> Checked {
        let mut ctx = cel::Context::default();
        let mut failure = None;
        if let Value::Object(map) = facts {
            for (name, value) in map {
                match cel::to_value(value) {
                    Ok(v) => ctx.add_variable_from_value(name.as_str(), v),
                    Err(e) => failure = Some(format!("cannot hand '{name}' to CEL: {e}")),
                }
            }
        }
        let failure = failure.or_else(|| match self.program.execute(&ctx) {
            Ok(cel::Value::Bool(true)) => None,
            Ok(cel::Value::Bool(false)) => Some("false".to_string()),
            Ok(other) => Some(format!("expected true or false, got {other:?}")),
            Err(e) => Some(e.to_string()),
        });
        Checked {
            expectation: self.clone(),
            failure,
        }
    }
}

/// What expectations see of a finished run: its status, artifacts, invocations and work.
pub fn facts(
    store: &dyn Store,
    summary: &RunSummary,
) -> Result<Value, crate::blackboard::StoreError> {
    let id = &summary.workflow_id;
    let query = ArtifactQuery {
        workflow_id: id.clone(),
        type_name: None,
        tags: vec![],
        limit: usize::MAX,
    };
    let artifacts: Vec<Value> = store
        .query(&query, &Viewer::operator())?
        .iter()
        .map(|a| {
            json!({
                "id": a.id.to_string(),
                "type": a.type_name.to_string(),
                "producer": a.producer.to_string(),
                "tags": a.tags().iter().map(|t| t.to_string()).collect::<Vec<_>>(),
                "payload": *a.payload.parse(),
            })
        })
        .collect();
    let invocations: Vec<Value> = store
        .invocations(id)?
        .iter()
        .map(|i| {
            json!({
                "agent": i.agent.to_string(),
                "status": i.status,
                "attempts": i.attempts,
                "error": i.error().unwrap_or(""),
                "fault": i.fault().map(|f| f.as_str()).unwrap_or(""),
            })
        })
        .collect();
    let work: Vec<Value> = store
        .work_items(id)?
        .iter()
        .map(|w| {
            json!({
                "phase": w.phase.to_string(),
                "description": w.description.to_string(),
                "status": w.status(),
            })
        })
        .collect();
    Ok(json!({
        "status": summary.status,
        "artifacts": artifacts,
        "invocations": invocations,
        "work": work,
    }))
}
