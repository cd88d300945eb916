//! Conversions between the host's records and the WIT types that cross the boundary.

use super::bindings::types as wit;
use crate::artifact::{Artifact, Visibility};
use crate::phase::Phase;

/// The `plugin-kind` a plugin of `world` describes itself as.
pub fn kind_to_wit(world: super::World) -> Option<wit::PluginKind> {
    match world {
        super::World::Agent => Some(wit::PluginKind::Agent),
        super::World::Validator => Some(wit::PluginKind::Validator),
        super::World::Router => Some(wit::PluginKind::Router),
        super::World::ContextProvider => Some(wit::PluginKind::ContextProvider),
        // Its `describe()` answers a record of its own, without a kind.
        super::World::Retrospective => None,
    }
}

/// An artifact a plugin is handed without its being on the blackboard — the host's
/// phase instructions and retry feedback, a discovery not yet published — as WIT: no id
/// or parents, public, made now, at depth 0. Callers set what differs.
pub fn unpublished(
    type_name: &str,
    payload: &serde_json::Value,
    producer: &str,
    workflow_id: &str,
) -> wit::Artifact {
    wit::Artifact {
        id: String::new(),
        type_name: type_name.to_string(),
        payload: payload.to_string(),
        producer: producer.to_string(),
        workflow_id: workflow_id.to_string(),
        parent_ids: Vec::new(),
        tags: Vec::new(),
        visibility: wit::Visibility::Public,
        created_at_ms: crate::artifact::now_ms(),
        depth: 0,
    }
}

/// Whether `viewer` may see something `producer` made with this WIT visibility (`None`:
/// public): the host's one rule, `Visibility::allows`.
pub fn wit_visible(
    visibility: Option<&wit::Visibility>,
    producer: &str,
    viewer: &crate::artifact::Viewer<'_>,
) -> bool {
    match visibility {
        None | Some(wit::Visibility::Public) => true,
        Some(v) => visibility_from_wit(v.clone()).allows(producer, viewer),
    }
}

/// `invocation` as `viewer` may see it: the inputs and context it may not see removed.
pub fn invocation_for(
    invocation: &wit::Invocation,
    viewer: &crate::artifact::Viewer<'_>,
) -> wit::Invocation {
    let visible = |a: &&wit::Artifact| wit_visible(Some(&a.visibility), &a.producer, viewer);
    wit::Invocation {
        inputs: invocation.inputs.iter().filter(visible).cloned().collect(),
        context: invocation.context.iter().filter(visible).cloned().collect(),
        ..invocation.clone()
    }
}

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

// WIT copies of artifacts an earlier invocation on this thread was handed, kept for the
// next one (see `Reuse`).
thread_local! {
    static KEPT: std::cell::RefCell<Vec<wit::Artifact>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// WIT copies of artifacts, reused from one invocation to the next on a worker thread.
///
/// Consecutive invocations see mostly the same recent artifacts (a worker's next call
/// comes after two or three new ones), and copying each into its WIT form — six or more
/// strings — was a tenth of the run loop's time. Artifacts never change once published,
/// so a copy made for one invocation serves the next as it is.
#[derive(Default)]
pub(crate) struct Reuse {
    /// The copies not yet handed out again (read by the context tests).
    pub(crate) kept: Vec<wit::Artifact>,
}

impl Reuse {
    /// What the last invocation on this thread gave back.
    pub(crate) fn take() -> Self {
        Self {
            kept: KEPT.with(|k| std::mem::take(&mut *k.borrow_mut())),
        }
    }

    /// `a` in WIT form: a kept copy if there is one, else a new one.
    pub(crate) fn wit(&mut self, a: &Artifact) -> wit::Artifact {
        let id = a.id.text();
        match self.kept.iter().position(|k| k.id == *id) {
            Some(i) => self.kept.swap_remove(i),
            None => artifact_to_wit(a),
        }
    }

    /// Keep `used` (an invocation's inputs and context, done with) for the next
    /// invocation on this thread, which takes them all ([`Reuse::take`]) and drops what
    /// it does not reuse. At most [`MAX_KEPT`] are kept, the latest.
    pub(crate) fn give_back(used: impl IntoIterator<Item = wit::Artifact>) {
        KEPT.with(|k| {
            let mut k = k.borrow_mut();
            k.extend(used);
            if k.len() > MAX_KEPT {
                let extra = k.len() - MAX_KEPT;
                k.drain(..extra);
            }
        });
    }
}

/// Most WIT copies a worker thread keeps between invocations: a few invocations' worth.
pub(crate) const MAX_KEPT: usize = 64;

/// An invocation on its way to the plugin: when it is dropped, whatever way the call
/// ends, its inputs and context (not the `pinned` host artifacts, made afresh each time)
/// go back to this thread's [`Reuse`] for the next invocation.
pub(crate) struct Handed {
    /// The invocation.
    pub invocation: wit::Invocation,
    pinned: usize,
}

impl Handed {
    /// `invocation`, whose first `pinned` context artifacts are the host's own.
    pub(crate) fn new(invocation: wit::Invocation, pinned: usize) -> Self {
        Self { invocation, pinned }
    }
}

impl Drop for Handed {
    fn drop(&mut self) {
        let inputs = std::mem::take(&mut self.invocation.inputs);
        let context = std::mem::take(&mut self.invocation.context);
        Reuse::give_back(
            inputs
                .into_iter()
                .chain(context.into_iter().skip(self.pinned)),
        );
    }
}
