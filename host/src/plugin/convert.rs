//! Conversions between the host's records and the WIT types that cross the boundary.

use super::bindings::types as wit;
use crate::artifact::{Artifact, Visibility};
use crate::phase::Phase;

/// A host visibility as WIT.
pub fn visibility_to_wit(v: &Visibility) -> wit::Visibility {
    match v {
        Visibility::Public => wit::Visibility::Public,
        Visibility::Private(n) => wit::Visibility::Private(n.to_vec()),
        Visibility::Labels(l) => wit::Visibility::Labels(l.to_vec()),
        Visibility::Tenant(t) => wit::Visibility::Tenant(t.clone()),
    }
}

/// A WIT visibility as the host's.
pub fn visibility_from_wit(v: wit::Visibility) -> Visibility {
    match v {
        wit::Visibility::Public => Visibility::Public,
        wit::Visibility::Private(n) => Visibility::Private(n.into()),
        wit::Visibility::Labels(l) => Visibility::Labels(l.into()),
        wit::Visibility::Tenant(t) => Visibility::Tenant(t),
    }
}

/// An artifact as WIT (payload serialised to JSON text).
///
/// Every invocation converts a dozen artifacts (its inputs and context), so the strings
/// are copied directly: `to_string()` on an `Arc<str>`-backed field goes through the
/// formatting machinery, which was 6% of the run loop's profile.
pub fn artifact_to_wit(a: &Artifact) -> wit::Artifact {
    wit::Artifact {
        id: String::from(&*a.id.text()),
        type_name: a.type_name.as_str().to_owned(),
        payload: String::from(a.payload_text()),
        producer: a.producer.as_str().to_owned(),
        workflow_id: a.workflow_id.as_str().to_owned(),
        parent_ids: a
            .parent_ids
            .iter()
            .map(|p| String::from(&*p.text()))
            .collect(),
        tags: a.tags().to_vec(),
        visibility: visibility_to_wit(a.visibility()),
        created_at_ms: a.created_at_ms,
        depth: a.depth,
    }
}

/// A phase as WIT.
pub fn phase_to_wit(p: &Phase) -> wit::PhaseInfo {
    wit::PhaseInfo {
        name: p.name.clone(),
        description: p.description.clone(),
        done_definitions: p.done_definitions.clone(),
        expected_outputs: p.expected_outputs.clone(),
        instructions: p.instructions.clone(),
    }
}
