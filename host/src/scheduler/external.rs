//! Publishes from outside a run: an artifact a person or a program sends into a running
//! workflow (`murmur serve`'s API).
//!
//! Such a publish takes the path of the manifest's inputs — checked against its type's
//! schema, routed and deduplicated like any WorkDiscovery, published in one commit under
//! the run's lock — with two differences: its producer is `api` (so it is never taken for
//! one of the manifest's inputs when a run resumes), and it may carry an idempotency key,
//! which lands in the same commit as the artifact. The run's coordinator takes publishes
//! one at a time, so two requests with one key cannot both publish: the second finds the
//! key in the store.

use super::execute::CheckedOutput;
use crate::artifact::{ArtifactId, Visibility};
use crate::blackboard::KeyRecord;
use crate::schema::SchemaError;
use serde::Serialize;
use thiserror::Error;
use tokio::sync::oneshot;

/// The producer of every artifact published from outside a run (a reserved plugin name).
pub const PRODUCER: &str = "api";

/// One artifact to publish into a running workflow, and where to send the answer.
#[derive(Debug)]
pub struct Publish {
    /// Its type.
    pub type_name: String,
    /// Its payload, to be checked against the type's schema.
    pub payload: serde_json::Value,
    /// Its tags.
    pub tags: Vec<String>,
    /// Who may see it.
    pub visibility: Visibility,
    /// The client's idempotency key, if it sent one.
    pub key: Option<IdempotencyKey>,
    /// Receives the outcome.
    pub reply: oneshot::Sender<Result<Published, PublishError>>,
}

/// A client's idempotency key and the request it came with.
#[derive(Debug, Clone)]
pub struct IdempotencyKey {
    /// The key.
    pub key: String,
    /// The sha256 of the request's body, hex.
    pub request_sha256: String,
}

/// What a publish did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Published {
    /// It published this artifact.
    Created(ArtifactId),
    /// Its key and body were seen before: this is the artifact that request published.
    Repeated(ArtifactId),
}

/// One way a payload breaks its type's schema.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Problem {
    /// Where, as a JSON pointer into the payload (`""`: the payload itself).
    pub pointer: String,
    /// What was expected there.
    pub message: String,
}

/// Why a publish was refused.
#[derive(Debug, Clone, Error)]
pub enum PublishError {
    /// The workflow declares no such type.
    #[error("unknown artifact type '{0}'")]
    UnknownType(String),
    /// The payload breaks its type's schema.
    #[error("the payload violates the schema of '{type_name}'")]
    Invalid {
        /// The type.
        type_name: String,
        /// Each violation.
        problems: Vec<Problem>,
    },
    /// The key was used before with another body.
    #[error("idempotency key '{key}' was used with another request body")]
    KeyReused {
        /// The key.
        key: String,
        /// The artifact the first request published.
        artifact: ArtifactId,
    },
    /// The run failed to publish (its store); the run ends with the error.
    #[error("the run could not publish: {0}")]
    Failed(String),
}

impl PublishError {
    /// The refusal of a payload the schema check turned down.
    pub(super) fn from_schema(error: SchemaError) -> Self {
        match error {
            SchemaError::UnknownType(t) => PublishError::UnknownType(t),
            SchemaError::Invalid {
                type_name,
                problems,
                pointers,
            } => PublishError::Invalid {
                type_name,
                problems: pointers
                    .into_iter()
                    .zip(problems)
                    .map(|(pointer, line)| {
                        // The line names the place; the pointer says it here.
                        let at =
                            format!("at {}: ", if pointer.is_empty() { "/" } else { &pointer });
                        let message = line.strip_prefix(&at).unwrap_or(&line).to_string();
                        Problem { pointer, message }
                    })
                    .collect(),
            },
            other => PublishError::Failed(other.to_string()),
        }
    }
}

/// What the store says of a key before a publish: publish, answer as before, or refuse.
pub(super) fn settled_by_key(
    existing: Option<KeyRecord>,
    key: &IdempotencyKey,
) -> Option<Result<Published, PublishError>> {
    let existing = existing?;
    Some(if existing.request_sha256 == key.request_sha256 {
        Ok(Published::Repeated(existing.artifact))
    } else {
        Err(PublishError::KeyReused {
            key: key.key.clone(),
            artifact: existing.artifact,
        })
    })
}

/// The checked output a publish becomes.
pub(super) fn output(publish: &mut Publish) -> CheckedOutput {
    CheckedOutput {
        type_name: crate::name::Name::new(&publish.type_name),
        payload: std::mem::take(&mut publish.payload),
        tags: std::mem::take(&mut publish.tags),
        visibility: std::mem::take(&mut publish.visibility),
        routing: None,
        text: None,
        placement: None,
    }
}
