//! Subscriptions: which artifacts trigger which plugin.
//!
//! A subscription names an artifact type and may narrow it with producers, tags and a
//! CEL expression. CEL is compiled once when the workflow loads (a bad expression is a
//! load error naming the plugin), then evaluated per candidate artifact with these
//! variables: `payload` (the JSON payload), `type`, `producer`, `tags`, `depth`.

use crate::artifact::Artifact;
use std::fmt;
use std::sync::Arc;
use thiserror::Error;

thread_local! {
    static STDLIB: Arc<cel::Env> = Arc::new(cel::Env::stdlib());
}

/// A compiled CEL filter.
#[derive(Clone)]
pub struct Filter {
    source: String,
    program: Arc<cel::Program>,
    /// For the commonest filter, `payload.FIELD == 'TEXT'`: the field and the text, so a
    /// payload whose field is a string is judged without building CEL values (the full
    /// evaluation converts the whole payload first). Anything else — the field missing or
    /// not a string — goes to CEL, so the answer is always CEL's.
    field_equals: Option<(String, String)>,
}

/// `payload.FIELD == 'TEXT'` (or with double quotes, no escapes), as (FIELD, TEXT).
fn field_equals(source: &str) -> Option<(String, String)> {
    let (left, right) = source.split_once("==")?;
    let field = left.trim().strip_prefix("payload.")?;
    let ident = !field.is_empty()
        && field.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
        && !field.starts_with(|c: char| c.is_ascii_digit());
    let right = right.trim();
    let quote = right.chars().next()?;
    if !ident || !(quote == '\'' || quote == '"') || right.len() < 2 {
        return None;
    }
    let text = right.strip_prefix(quote)?.strip_suffix(quote)?;
    if text.contains(['\\', '\'', '"']) {
        return None;
    }
    Some((field.to_string(), text.to_string()))
}

impl fmt::Debug for Filter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Filter({:?})", self.source)
    }
}

/// A CEL filter that did not compile or did not evaluate to a boolean.
#[derive(Debug, Error)]
pub enum FilterError {
    /// The expression does not parse.
    #[error("CEL filter `{source_text}` does not compile: {message}")]
    Compile {
        /// The expression.
        source_text: String,
        /// The parser's complaint.
        message: String,
    },
    /// The expression failed on an artifact (e.g. a missing field) or was not boolean.
    #[error("CEL filter `{source_text}` failed on artifact {artifact}: {message}")]
    Evaluate {
        /// The expression.
        source_text: String,
        /// The artifact it was evaluated on.
        artifact: String,
        /// What went wrong.
        message: String,
    },
}

impl Filter {
    /// Compile a CEL expression.
    pub fn compile(source: &str) -> Result<Self, FilterError> {
        let program = cel::Program::compile(source).map_err(|e| FilterError::Compile {
            source_text: source.to_string(),
            message: e.to_string().replace('\n', " "),
        })?;
        Ok(Self {
            source: source.to_string(),
            program: Arc::new(program),
            field_equals: field_equals(source),
        })
    }

    /// The expression's text.
    pub fn source(&self) -> &str {
        &self.source
    }

    /// Evaluate against an artifact. A reference to a field the payload lacks is an
    /// evaluation error: the caller decides whether that means "no match".
    pub fn matches(&self, artifact: &Artifact) -> Result<bool, FilterError> {
        let fail = |message: String| FilterError::Evaluate {
            source_text: self.source.clone(),
            artifact: artifact.id.to_string(),
            message,
        };
        let payload = artifact.payload.parse();
        if let Some((field, text)) = &self.field_equals
            && let Some(serde_json::Value::String(value)) = payload.get(field)
        {
            return Ok(value == text);
        }
        // Building CEL's standard library is costly: do it once per thread, not per evaluation.
        let mut ctx = STDLIB.with(|env| cel::Context::with_env(env.clone()));
        let payload = cel::to_value(&*payload).map_err(|e| fail(e.to_string()))?;
        ctx.add_variable_from_value("payload", payload);
        ctx.add_variable_from_value("type", artifact.type_name.to_string());
        ctx.add_variable_from_value("producer", artifact.producer.to_string());
        ctx.add_variable_from_value(
            "tags",
            cel::Value::List(Arc::new(
                artifact
                    .tags()
                    .iter()
                    .map(|t| cel::Value::from(t.clone()))
                    .collect(),
            )),
        );
        ctx.add_variable_from_value("depth", artifact.depth as i64);
        match self.program.execute(&ctx) {
            Ok(cel::Value::Bool(b)) => Ok(b),
            Ok(other) => Err(fail(format!("expected a boolean, got {other:?}"))),
            Err(e) => Err(fail(e.to_string())),
        }
    }
}

/// Which artifacts trigger a plugin.
#[derive(Debug, Clone)]
pub struct Subscription {
    /// Artifact type name.
    pub type_name: String,
    /// Optional CEL filter.
    pub filter: Option<Filter>,
    /// Only artifacts from these producers (empty: any).
    pub from: Vec<String>,
    /// Only artifacts carrying all of these tags (empty: any).
    pub tags: Vec<String>,
    /// Whether the subscriber's own outputs may trigger it.
    pub allow_self: bool,
}

impl Subscription {
    /// Whether `artifact` triggers `subscriber` through this subscription. A filter that
    /// fails to evaluate does not match (and the error is returned for the event log).
    pub fn matches(&self, artifact: &Artifact, subscriber: &str) -> Result<bool, FilterError> {
        if !self.allow_self && artifact.producer == subscriber {
            return Ok(false);
        }
        self.matches_whoever_published(artifact)
    }

    /// Whether `artifact` would trigger the subscriber were it not its own output (the
    /// one rule `allow_self` lifts): to explain work nothing took.
    pub fn matches_whoever_published(&self, artifact: &Artifact) -> Result<bool, FilterError> {
        if artifact.type_name != self.type_name {
            return Ok(false);
        }
        if !self.from.is_empty() && !self.from.iter().any(|f| *f == artifact.producer) {
            return Ok(false);
        }
        if !self.tags.iter().all(|t| artifact.tags().contains(t)) {
            return Ok(false);
        }
        match &self.filter {
            None => Ok(true),
            Some(f) => f.matches(artifact),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::artifact::{ArtifactId, Visibility};

    fn artifact(producer: &str, payload: serde_json::Value) -> Artifact {
        Artifact {
            id: ArtifactId::named("a"),
            type_name: "WorkDiscovery".into(),
            payload: payload.into(),
            producer: producer.into(),
            workflow_id: "w".into(),
            parent_ids: vec![].into(),
            audience: crate::artifact::Audience::boxed(vec!["x".into()], Visibility::Public),
            created_at_ms: 0,
            depth: 2,
            work_item: None,
        }
    }

    fn sub(filter: Option<&str>) -> Subscription {
        Subscription {
            type_name: "WorkDiscovery".into(),
            filter: filter.map(|f| Filter::compile(f).expect("compiles")),
            from: vec![],
            tags: vec![],
            allow_self: false,
        }
    }

    #[test]
    fn cel_sees_payload_producer_tags_and_depth() {
        let a = artifact("user", serde_json::json!({"phase": "analysis", "n": 3}));
        assert!(
            sub(Some("payload.phase == 'analysis' && payload.n > 2"))
                .matches(&a, "agent")
                .expect("eval")
        );
        assert!(
            sub(Some("producer == 'user' && 'x' in tags && depth == 2"))
                .matches(&a, "agent")
                .expect("eval")
        );
        assert!(
            !sub(Some("payload.phase == 'validation'"))
                .matches(&a, "agent")
                .expect("eval")
        );
    }

    #[test]
    fn the_field_equality_shortcut_answers_as_cel_does() {
        assert_eq!(
            field_equals("payload.phase == 'analysis'"),
            Some(("phase".into(), "analysis".into()))
        );
        assert_eq!(
            field_equals(" payload.p_2 ==\"x y\" "),
            Some(("p_2".into(), "x y".into()))
        );
        for not_simple in [
            "payload.a.b == 'x'",
            "payload.phase == 'a' || true",
            "payload.phase != 'a'",
            "'a' == payload.phase",
            "payload.phase == 'it\\'s'",
            "payload.n == 3",
        ] {
            assert_eq!(field_equals(not_simple), None, "{not_simple}");
        }
        let f = sub(Some("payload.phase == 'analysis'"));
        for (payload, expected) in [
            (serde_json::json!({"phase": "analysis"}), Some(true)),
            (serde_json::json!({"phase": "validation"}), Some(false)),
            (serde_json::json!({"phase": 3}), Some(false)),
            (serde_json::json!({}), None),
        ] {
            let a = artifact("user", payload.clone());
            let cel_only = Filter {
                field_equals: None,
                ..Filter::compile("payload.phase == 'analysis'").expect("compiles")
            };
            let full = cel_only.matches(&a);
            let fast = f.matches(&a, "agent");
            assert_eq!(fast.as_ref().ok().copied(), expected, "{payload}");
            assert_eq!(
                fast.as_ref().ok(),
                full.as_ref().ok(),
                "same answer as CEL on {payload}"
            );
        }
    }

    #[test]
    fn a_missing_field_is_an_evaluation_error_and_a_non_boolean_is_refused() {
        let a = artifact("user", serde_json::json!({}));
        assert!(
            sub(Some("payload.phase == 'analysis'"))
                .matches(&a, "agent")
                .is_err()
        );
        assert!(sub(Some("1 + 1")).matches(&a, "agent").is_err());
        assert!(Filter::compile("payload.phase ==").is_err());
    }

    #[test]
    fn own_outputs_do_not_match_unless_allowed() {
        let a = artifact("me", serde_json::json!({}));
        assert!(!sub(None).matches(&a, "me").expect("eval"));
        let mut s = sub(None);
        s.allow_self = true;
        assert!(s.matches(&a, "me").expect("eval"));
    }
}
