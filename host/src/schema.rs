//! Artifact types and their JSON Schemas.
//!
//! Every payload is checked against its type's schema on publish; a payload that fails is
//! refused with the schema's complaint and stored nowhere. Schemas are compiled once, at
//! load time, so a check on the hot path is a walk of a prepared validator.

use serde_json::Value;
use std::collections::BTreeMap;
use std::sync::Arc;
use thiserror::Error;

/// The built-in artifact types the host understands, with their schemas.
pub(crate) const BUILTIN_TYPES: &[(&str, &str)] = &[
    (
        WORK_DISCOVERY,
        include_str!("../schemas/WorkDiscovery.json"),
    ),
    (
        "AnalysisResult",
        include_str!("../schemas/AnalysisResult.json"),
    ),
    (
        "Implementation",
        include_str!("../schemas/Implementation.json"),
    ),
    (
        "ValidationResult",
        include_str!("../schemas/ValidationResult.json"),
    ),
    (
        PHASE_INSTRUCTIONS,
        include_str!("../schemas/PhaseInstructions.json"),
    ),
    (
        PREVIOUS_ATTEMPT,
        include_str!("../schemas/PreviousAttempt.json"),
    ),
    (
        WORKFLOW_METRICS,
        include_str!("../schemas/WorkflowMetrics.json"),
    ),
    (LESSON, include_str!("../schemas/Lesson.json")),
    (
        WORKFLOW_COMPLETE,
        include_str!("../schemas/WorkflowComplete.json"),
    ),
];

/// The type name of work discoveries, which the scheduler understands.
pub(crate) const WORK_DISCOVERY: &str = "WorkDiscovery";
/// The type name of the host's completion record.
pub(crate) const WORKFLOW_COMPLETE: &str = "WorkflowComplete";
/// The type name of injected phase instructions.
pub(crate) const PHASE_INSTRUCTIONS: &str = "PhaseInstructions";
/// The type name of the retry feedback put in a retried invocation's context.
pub(crate) const PREVIOUS_ATTEMPT: &str = "PreviousAttempt";
/// The type name of the host's per-phase work counts.
pub(crate) const WORKFLOW_METRICS: &str = "WorkflowMetrics";
/// The types only the host publishes: a plugin that returns one is refused
/// (`invalid_output`), so no plugin can end a run, report its metrics, or write the phase
/// instructions, retry feedback and lessons other agents trust, in the host's name.
pub(crate) const HOST_ONLY: &[&str] = &[
    WORKFLOW_COMPLETE,
    WORKFLOW_METRICS,
    PHASE_INSTRUCTIONS,
    PREVIOUS_ATTEMPT,
    LESSON,
];
/// The type name of a lesson (see `lessons/`): text that reaches later runs' prompts,
/// so no plugin may publish one.
pub(crate) const LESSON: &str = "Lesson";

/// The type name of analysis results (checked by the built-in validator).
pub(crate) const ANALYSIS_RESULT: &str = "AnalysisResult";
/// The type name of implementations (checked by the built-in validator).
pub(crate) const IMPLEMENTATION: &str = "Implementation";

/// Why a type could not be registered or a payload was refused.
#[derive(Debug, Error)]
pub enum SchemaError {
    /// The type name is already taken.
    #[error("artifact type '{0}' is declared twice (built-in types: {builtins})", builtins = builtin_names())]
    Duplicate(String),
    /// The schema itself is not a valid JSON Schema.
    #[error("the JSON Schema of type '{type_name}' is invalid: {message}")]
    InvalidSchema {
        /// The type being declared.
        type_name: String,
        /// What the schema compiler said.
        message: String,
    },
    /// No such type.
    #[error("unknown artifact type '{0}' (declare it with a [[type]] table in the manifest)")]
    UnknownType(String),
    /// The payload does not satisfy the schema.
    #[error("payload of type '{type_name}' violates its schema: {}", .problems.join("; "))]
    Invalid {
        /// The type checked against.
        type_name: String,
        /// One line per violation: where in the payload, and what was expected.
        problems: Vec<String>,
        /// Where each violation is, as a JSON pointer into the payload (`""` for the
        /// payload itself), in the order of `problems`.
        pointers: Vec<String>,
    },
}

fn builtin_names() -> String {
    BUILTIN_TYPES
        .iter()
        .map(|(n, _)| *n)
        .collect::<Vec<_>>()
        .join(", ")
}

/// One artifact type: its name, schema text and compiled validator.
pub struct ArtifactType {
    /// The type's name.
    pub name: String,
    /// The schema as declared.
    pub schema: Value,
    /// Whether the host ships it.
    pub builtin: bool,
    validator: jsonschema::Validator,
}

impl std::fmt::Debug for ArtifactType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ArtifactType")
            .field("name", &self.name)
            .field("builtin", &self.builtin)
            .finish()
    }
}

/// All artifact types a workflow knows: the built-ins plus the manifest's.
#[derive(Debug, Clone)]
pub struct TypeRegistry {
    types: Arc<BTreeMap<String, Arc<ArtifactType>>>,
}

impl TypeRegistry {
    /// A registry of the built-in types only.
    pub fn builtin() -> Self {
        let mut types = BTreeMap::new();
        for (name, text) in BUILTIN_TYPES {
            // The built-in schemas are part of the binary and covered by tests.
            let schema: Value = serde_json::from_str(text).unwrap_or(Value::Bool(true));
            let validator = jsonschema::validator_for(&schema)
                .or_else(|_| jsonschema::validator_for(&Value::Bool(true)));
            if let Ok(validator) = validator {
                types.insert(
                    name.to_string(),
                    Arc::new(ArtifactType {
                        name: name.to_string(),
                        schema,
                        builtin: true,
                        validator,
                    }),
                );
            }
        }
        Self {
            types: Arc::new(types),
        }
    }

    /// Add a user type with its schema.
    pub fn register(&mut self, name: &str, schema: Value) -> Result<(), SchemaError> {
        if self.types.contains_key(name) {
            return Err(SchemaError::Duplicate(name.to_string()));
        }
        let validator =
            jsonschema::validator_for(&schema).map_err(|e| SchemaError::InvalidSchema {
                type_name: name.to_string(),
                message: e.to_string(),
            })?;
        let ty = ArtifactType {
            name: name.to_string(),
            schema,
            builtin: false,
            validator,
        };
        Arc::make_mut(&mut self.types).insert(name.to_string(), Arc::new(ty));
        Ok(())
    }

    /// Whether `name` is a known type.
    pub fn contains(&self, name: &str) -> bool {
        self.types.contains_key(name)
    }

    /// The known types, by name.
    pub fn types(&self) -> impl Iterator<Item = &ArtifactType> {
        self.types.values().map(|t| t.as_ref())
    }

    /// Check `payload` against the schema of `type_name`.
    pub fn validate(&self, type_name: &str, payload: &Value) -> Result<(), SchemaError> {
        let ty = self
            .types
            .get(type_name)
            .ok_or_else(|| SchemaError::UnknownType(type_name.to_string()))?;
        if ty.validator.is_valid(payload) {
            return Ok(());
        }
        let (problems, pointers) = ty
            .validator
            .iter_errors(payload)
            .take(8)
            .map(|e| {
                let pointer = e.instance_path().to_string();
                let at = if pointer.is_empty() { "/" } else { &pointer };
                (format!("at {at}: {e}"), pointer)
            })
            .unzip();
        Err(SchemaError::Invalid {
            type_name: type_name.to_string(),
            problems,
            pointers,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn every_builtin_schema_parses_and_compiles() {
        for (name, text) in BUILTIN_TYPES {
            let schema: Value =
                serde_json::from_str(text).unwrap_or_else(|e| panic!("{name}: {e}"));
            jsonschema::validator_for(&schema).unwrap_or_else(|e| panic!("{name}: {e}"));
        }
        assert_eq!(TypeRegistry::builtin().types().count(), BUILTIN_TYPES.len());
    }

    #[test]
    fn a_bad_work_discovery_is_refused_with_where_and_what() {
        let reg = TypeRegistry::builtin();
        let ok = json!({"description": "d", "phase": "analysis", "done_definition": "x", "discovered_by": "u"});
        reg.validate(WORK_DISCOVERY, &ok).expect("valid");
        let bad = json!({"description": "d", "phase": "analysis", "done_definition": "x", "discovered_by": "u", "priority": "urgent"});
        let err = reg
            .validate(WORK_DISCOVERY, &bad)
            .expect_err("invalid")
            .to_string();
        assert!(err.contains("/priority"), "{err}");
        match reg.validate(WORK_DISCOVERY, &bad) {
            Err(SchemaError::Invalid { pointers, .. }) => assert_eq!(pointers, ["/priority"]),
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            reg.validate("Nope", &ok),
            Err(SchemaError::UnknownType(_))
        ));
    }
}
