//! Artifacts: the immutable, typed records agents exchange through the blackboard.
//!
//! An artifact's payload is JSON validated against its type's schema before it is stored
//! (see [`crate::schema`]); everything else (id, producer, causality, depth) is assigned
//! by the host, never by a plugin, so provenance cannot be forged from inside a sandbox.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

/// A UUIDv7: time-ordered, so ids sort in publish order.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct ArtifactId(Arc<str>);

impl ArtifactId {
    /// A fresh time-ordered id.
    pub fn generate() -> Self {
        Self(uuid::Uuid::now_v7().to_string().into())
    }
    /// The id's text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl From<&str> for ArtifactId {
    fn from(s: &str) -> Self {
        Self(s.into())
    }
}

impl fmt::Display for ArtifactId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Who may see an artifact. Enforced by the host on everything that reaches a plugin.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind", content = "value")]
pub enum Visibility {
    /// Everyone in the workflow.
    #[default]
    Public,
    /// Only the named agents (and the producer).
    Private(Vec<String>),
    /// Agents holding at least one of these labels.
    Labels(Vec<String>),
    /// Agents of this tenant.
    Tenant(String),
}

/// The identity a visibility check is made for.
#[derive(Debug, Clone, Default)]
pub struct Viewer<'a> {
    /// The agent's name.
    pub name: &'a str,
    /// Labels granted to the agent in the manifest.
    pub labels: &'a [String],
    /// The agent's tenant, if any.
    pub tenant: Option<&'a str>,
    /// The operator (`murmur status`, `graph`): sees everything. Never a plugin.
    pub operator: bool,
}

impl Viewer<'static> {
    /// The operator's view: every artifact, whatever its visibility.
    pub fn operator() -> Self {
        Viewer {
            name: "",
            labels: &[],
            tenant: None,
            operator: true,
        }
    }
}

impl Visibility {
    /// Whether `viewer` may see an artifact with this visibility produced by `producer`.
    pub fn allows(&self, producer: &str, viewer: &Viewer<'_>) -> bool {
        if viewer.operator || producer == viewer.name {
            return true;
        }
        match self {
            Visibility::Public => true,
            Visibility::Private(names) => names.iter().any(|n| n == viewer.name),
            Visibility::Labels(labels) => labels.iter().any(|l| viewer.labels.contains(l)),
            Visibility::Tenant(t) => viewer.tenant == Some(t.as_str()),
        }
    }
}

/// An immutable, typed record on the blackboard.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Artifact {
    /// Assigned at publish time.
    pub id: ArtifactId,
    /// The type's name, e.g. `WorkDiscovery`.
    #[serde(rename = "type")]
    pub type_name: String,
    /// The JSON payload, valid against the type's schema.
    pub payload: serde_json::Value,
    /// The agent that produced it (`user` for workflow inputs, `host` for the host's own).
    pub producer: String,
    /// The workflow (correlation) id.
    pub workflow_id: String,
    /// The artifacts this one was produced from.
    pub parent_ids: Vec<ArtifactId>,
    /// Free-form tags.
    pub tags: Vec<String>,
    /// Who may see it.
    pub visibility: Visibility,
    /// Milliseconds since the Unix epoch.
    pub created_at_ms: u64,
    /// 0 for workflow inputs; one more than the deepest parent for outputs.
    pub depth: u32,
    /// The work item (a WorkDiscovery's id) this artifact belongs to: its own id for a
    /// WorkDiscovery, otherwise inherited from its inputs. Host bookkeeping.
    pub work_item: Option<ArtifactId>,
    /// The payload as JSON text, made once on first use: an artifact handed to many
    /// invocations (as input or context) is serialised once, not once per invocation.
    #[serde(skip)]
    pub payload_text: std::sync::OnceLock<Arc<str>>,
}

impl Artifact {
    /// The payload's JSON text (made once, then shared).
    pub fn payload_text(&self) -> &Arc<str> {
        self.payload_text.get_or_init(|| {
            serde_json::to_string(&self.payload)
                .unwrap_or_default()
                .into()
        })
    }

    /// The length of the payload's JSON text.
    pub fn payload_len(&self) -> usize {
        self.payload_text().len()
    }

    /// Whether `viewer` may see this artifact.
    pub fn visible_to(&self, viewer: &Viewer<'_>) -> bool {
        self.visibility.allows(&self.producer, viewer)
    }
}

/// Milliseconds since the Unix epoch, now.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn visibility_admits_exactly_the_named_viewers_and_the_producer() {
        let alice = Viewer {
            name: "alice",
            labels: &["ops".to_string()],
            tenant: Some("acme"),
            operator: false,
        };
        let bob = Viewer {
            name: "bob",
            labels: &[],
            tenant: None,
            operator: false,
        };
        let private = Visibility::Private(vec!["alice".into()]);
        assert!(private.allows("carol", &alice));
        assert!(!private.allows("carol", &bob));
        assert!(private.allows("bob", &bob), "a producer sees its own");
        assert!(Visibility::Labels(vec!["ops".into()]).allows("carol", &alice));
        assert!(!Visibility::Labels(vec!["ops".into()]).allows("carol", &bob));
        assert!(Visibility::Tenant("acme".into()).allows("carol", &alice));
        assert!(!Visibility::Tenant("acme".into()).allows("carol", &bob));
        assert!(Visibility::Public.allows("carol", &bob));
    }
}
