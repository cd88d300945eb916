//! Context: what an invocation sees besides its inputs.
//!
//! Reading the whole blackboard into every prompt is what makes peer frameworks slow and
//! expensive, so the host hands each invocation a bounded, relevant selection:
//!
//! 1. **pinned** host artifacts, always first: the served phase's `PhaseInstructions`, and
//!    on a retry the `PreviousAttempt` that says why the last attempt was refused;
//! 2. the **built-in provider's candidates**: the inputs' ancestry (nearest generation
//!    first, up to `[context] ancestry_depth`), then the workflow's most recent artifacts,
//!    within `[context] max_artifacts` and `max_bytes`;
//! 3. **context-provider plugins**, chained in manifest order, each given the previous
//!    selection, may reorder or drop candidates. They cannot add: an answer naming an
//!    artifact that was not a candidate is ignored (so a provider can neither smuggle in
//!    what the agent may not see nor forge an artifact), and a provider that faults or errs
//!    leaves the selection as it was.
//!
//! Every candidate is checked against the agent's visibility before any provider or the
//! agent sees it.
//!
//! **When** it is chosen depends on the agent. By default the context is chosen at
//! dispatch and copied into `invocation.context` on every call: a dozen artifacts, each
//! eight strings and lists lowered one by one into the guest, which was a third of a
//! WebAssembly agent's cost in the cascade benchmark whether the agent read them or not.
//! An agent that lists the capability `context` in `describe()` reads its context on
//! demand instead: it is handed none, and the same choice is made ([`OnDemand`]) only
//! when it calls the `context` import — an agent that never reads context never pays for
//! it, one that reads it pays what it paid before.

use crate::artifact::{ArtifactId, SharedArtifact};
use crate::blackboard::{ArtifactQuery, ArtifactReader, Store};
use crate::name::Name;
use crate::plugin::bindings::types as wit;
use crate::plugin::{BoardAccess, LoadedPlugin};
use crate::workflow::{Agent, PhaseContext, Workflow};
use std::collections::HashSet;
use std::sync::Arc;

pub(crate) use crate::plugin::convert::{Handed, Reuse};
use crate::plugin::convert::{invocation_for, wit_visible};

/// The built-in provider's candidates for an invocation of `agent` on `inputs`, as WIT,
/// within the agent's context budget.
///
/// Artifacts are read in place in the store, and only the chosen ones (a dozen) are
/// kept, by reference count, to be copied into their WIT form (or taken from `reuse`)
/// after the store's lock is released. Copying them under the lock made every completion
/// — which commits to the store while it holds the run's lock — wait for the other
/// worker's copies: native agents ran 12% faster once the copies moved out.
pub(crate) fn candidates(
    store: &dyn Store,
    agent: &Agent,
    workflow_id: &str,
    inputs: &[SharedArtifact],
    reuse: &mut Reuse,
) -> Vec<wit::Artifact> {
    let policy = &agent.context;
    if policy.max_artifacts == 0 {
        return Vec::new();
    }
    let viewer = agent.viewer();
    let mut chosen = Vec::new();
    // Chosen under one hold of the store (see `Store::read`), copied into WIT after it:
    // a completion waits for the store while the run's lock is held.
    let _ = store.read(&mut |board| {
        choose(board, policy, &viewer, workflow_id, inputs, &mut chosen);
        Ok(())
    });
    chosen.iter().map(|a| reuse.wit(a)).collect()
}

/// [`candidates`]' choice, read from `board`, into `chosen`.
fn choose(
    board: &dyn ArtifactReader,
    policy: &crate::policy::ContextPolicy,
    viewer: &crate::artifact::Viewer<'_>,
    workflow_id: &str,
    inputs: &[SharedArtifact],
    chosen: &mut Vec<SharedArtifact>,
) {
    // A handful of ids: a list searched in place beats hashing each one.
    let mut seen: Vec<ArtifactId> = inputs.iter().map(|a| a.id).collect();
    let mut bytes = 0usize;
    // Take `a` if it fits the byte budget; whether there is room for more.
    let mut room = |a: &SharedArtifact, chosen: &mut Vec<SharedArtifact>| -> bool {
        let size = a.payload_len();
        if bytes + size <= policy.max_bytes {
            bytes += size;
            chosen.push(a.clone());
        }
        chosen.len() < policy.max_artifacts
    };
    // Ancestry, a generation at a time.
    let mut generation: Vec<ArtifactId> = inputs
        .iter()
        .flat_map(|a| a.parent_ids.iter().copied())
        .collect();
    for _ in 0..policy.ancestry_depth {
        let mut next = Vec::new();
        for id in generation {
            if seen.contains(&id) {
                continue;
            }
            let mut full = false;
            let _ = board.visit_artifact(&id, &mut |a| {
                next.extend(a.parent_ids.iter().copied());
                full = a.workflow_id == workflow_id && a.visible_to(viewer) && !room(a, chosen);
            });
            if full {
                return;
            }
            seen.push(id);
        }
        if next.is_empty() {
            break;
        }
        generation = next;
    }
    if policy.recent {
        let query = ArtifactQuery {
            workflow_id: workflow_id.to_string(),
            type_name: None,
            tags: Vec::new(),
            limit: policy.max_artifacts + seen.len(),
        };
        // The recent artifacts are distinct from one another: only the inputs and the
        // ancestry can repeat among them.
        let _ = board.visit_recent(&query, viewer, &mut |a| {
            seen.contains(&a.id) || room(a, chosen)
        });
    }
}

/// Run the context-provider plugins over `chosen`, in manifest order.
pub(crate) fn provide(
    providers: &[crate::plugin::ContextProvider],
    board: impl Fn(&LoadedPlugin) -> Option<BoardAccess>,
    invocation: &wit::Invocation,
    mut chosen: Vec<wit::Artifact>,
) -> Vec<wit::Artifact> {
    for provider in providers {
        if chosen.is_empty() {
            break;
        }
        // A provider is handed only what its own visibility allows, of the invocation
        // and of the candidates, with its own manifest config. Candidates it may not see
        // (the agent may) are not its to judge: they stay, after its choice.
        let viewer = provider.viewer();
        let (seen, hidden): (Vec<wit::Artifact>, Vec<wit::Artifact>) = chosen
            .into_iter()
            .partition(|a| wit_visible(Some(&a.visibility), &a.producer, &viewer));
        chosen = seen;
        let mut call = invocation_for(invocation, &viewer);
        call.config.clone_from(&provider.config_json);
        let answer = provider.provide(&call, &chosen, board(provider));
        let mut chosen_now = match answer {
            Ok(answer) => {
                let mut kept = Vec::with_capacity(answer.len());
                let mut used = HashSet::new();
                for a in answer {
                    match chosen.iter().find(|c| c.id == a.id) {
                        Some(c) if used.insert(a.id.clone()) => kept.push(c.clone()),
                        Some(_) => {}
                        None => tracing::warn!(
                            provider = %provider.name,
                            "context provider returned artifact '{}', which was not a candidate; ignored",
                            a.id
                        ),
                    }
                }
                kept
            }
            Err(e) => {
                tracing::warn!(
                    provider = %provider.name,
                    "context provider failed ({e}); keeping the context as it was"
                );
                chosen
            }
        };
        chosen_now.extend(hidden);
        chosen = chosen_now;
    }
    chosen
}

/// The host's own context artifacts, always first: the served phase's
/// `PhaseInstructions` (with this invocation's workflow and depth), then `previous` (on a
/// retry, why the last attempt was refused).
pub(crate) fn pinned(
    phase: Option<&PhaseContext>,
    workflow_id: &str,
    depth: u32,
    previous: Option<wit::Artifact>,
) -> Vec<wit::Artifact> {
    let mut context = Vec::new();
    if let Some(p) = phase {
        let mut instructions = p.instructions.clone();
        instructions.workflow_id = workflow_id.to_owned();
        instructions.depth = depth;
        context.push(instructions);
    }
    context.extend(previous);
    context
}

/// The context after the pinned artifacts: the built-in provider's candidates in
/// `workflow_id`, narrowed by the context-provider plugins, who are shown `call` (the
/// agent's invocation; `None` only when the workflow has no providers).
pub(crate) fn select(
    wf: &Workflow,
    store: &Arc<dyn Store>,
    agent: &Agent,
    inputs: &[SharedArtifact],
    workflow_id: &str,
    call: Option<&wit::Invocation>,
    reuse: &mut Reuse,
) -> Vec<wit::Artifact> {
    let chosen = candidates(store.as_ref(), agent, workflow_id, inputs, reuse);
    match call {
        Some(call) if !wf.context_providers.is_empty() => {
            let board = |p: &LoadedPlugin| BoardAccess::granted(store, workflow_id, p);
            provide(&wf.context_providers, board, call, chosen)
        }
        _ => chosen,
    }
}

/// Keep a call's payload bytes within `limit`: drop context from the end, never the first
/// `pinned` (the host's own), until `input_bytes` and the context's payloads fit.
pub(crate) fn fit(
    context: &mut Vec<wit::Artifact>,
    pinned: usize,
    input_bytes: usize,
    limit: usize,
) {
    let mut bytes = input_bytes + context.iter().map(|a| a.payload.len()).sum::<usize>();
    while context.len() > pinned && bytes > limit {
        if let Some(dropped) = context.pop() {
            bytes -= dropped.payload.len();
        }
    }
}

/// What choosing an on-demand agent's context needs, kept from its dispatch until the
/// agent asks (see the module's docs); then [`OnDemand::choose`] makes the choice
/// [`pinned`], [`select`] and [`fit`] make at dispatch for other agents.
pub(crate) struct OnDemand {
    /// The workflow version the invocation runs under.
    pub wf: Arc<Workflow>,
    /// The store.
    pub store: Arc<dyn Store>,
    /// The agent's name.
    pub agent: Arc<str>,
    /// The invocation's inputs.
    pub inputs: Vec<SharedArtifact>,
    /// The phase of the work item it serves.
    pub phase: Option<Name>,
    /// Its workflow.
    pub workflow_id: Name,
    /// Its cascade depth.
    pub depth: u32,
    /// On a retry, the `PreviousAttempt` artifact.
    pub previous: Option<wit::Artifact>,
    /// The invocation as handed, for context-provider plugins (`None` when there are none).
    pub call: Option<wit::Invocation>,
    /// The worker's WIT copies the inputs did not use, for the context (see [`Reuse`]).
    pub reuse: Reuse,
}

impl OnDemand {
    /// The invocation's context, chosen now.
    pub(crate) fn choose(self) -> Vec<wit::Artifact> {
        let Some(agent) = self.wf.agent(&self.agent) else {
            return Vec::new();
        };
        let phase = self
            .phase
            .as_ref()
            .and_then(|p| self.wf.phase_for(p.as_str(), &agent.plugin.viewer()));
        let phase = phase.as_deref();
        let mut context = pinned(phase, self.workflow_id.as_str(), self.depth, self.previous);
        let pinned = context.len();
        let mut reuse = self.reuse;
        // Providers see the invocation with its pinned context, as at dispatch.
        let call = self.call.map(|mut call| {
            call.context.clone_from(&context);
            call
        });
        let chosen = select(
            &self.wf,
            &self.store,
            agent,
            &self.inputs,
            self.workflow_id.as_str(),
            call.as_ref(),
            &mut reuse,
        );
        context.extend(chosen);
        let input_bytes = self.inputs.iter().map(|a| a.payload_len()).sum();
        fit(
            &mut context,
            pinned,
            input_bytes,
            agent.plugin.limits.max_input_bytes,
        );
        context
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::artifact::{Artifact, ArtifactId, Visibility};
    use crate::plugin::convert::{MAX_KEPT, artifact_to_wit};

    fn artifact(id: &str, payload: serde_json::Value) -> Artifact {
        Artifact {
            id: ArtifactId::named(id),
            type_name: "Note".into(),
            payload: payload.into(),
            producer: "a".into(),
            workflow_id: "w".into(),
            parent_ids: vec![ArtifactId::named("p")].into(),
            audience: crate::artifact::Audience::boxed(vec!["t".into()], Visibility::Public),
            created_at_ms: 7,
            depth: 1,
            work_item: None,
        }
    }

    #[test]
    fn a_worker_keeps_at_most_max_kept_copies_the_latest() {
        drop(Reuse::take());
        let copies: Vec<wit::Artifact> = (0..MAX_KEPT + 5)
            .map(|i| artifact_to_wit(&artifact(&format!("a{i}"), serde_json::json!({ "i": i }))))
            .collect();
        let sixth = copies[5].id.clone();
        let last = copies[MAX_KEPT + 4].id.clone();
        // Given back in two parts (an on-demand context, then the inputs): both are kept.
        let (first, second) = copies.split_at(10);
        Reuse::give_back(first.to_vec());
        Reuse::give_back(second.to_vec());
        let kept = Reuse::take().kept;
        assert_eq!(kept.len(), MAX_KEPT);
        assert_eq!(kept[0].id, sixth, "the oldest five went");
        assert_eq!(kept[MAX_KEPT - 1].id, last);
        assert!(Reuse::take().kept.is_empty(), "taken once");
    }

    #[test]
    fn a_reused_copy_is_the_artifact_it_was_made_from() {
        let (a, b) = (
            artifact("a", serde_json::json!({"n": 1})),
            artifact("b", serde_json::json!({"n": 2})),
        );
        let fresh = |x: &Artifact| format!("{:?}", artifact_to_wit(x));
        // Another thread's copies are not this thread's.
        std::thread::spawn({
            let a = artifact_to_wit(&a);
            move || Reuse::give_back([a])
        })
        .join()
        .expect("thread");
        let mut reuse = Reuse::take();
        assert!(reuse.kept.is_empty());
        Reuse::give_back([artifact_to_wit(&a), artifact_to_wit(&b)]);
        let mut reuse2 = Reuse::take();
        assert_eq!(reuse2.kept.len(), 2);
        assert_eq!(format!("{:?}", reuse2.wit(&b)), fresh(&b));
        assert_eq!(format!("{:?}", reuse2.wit(&a)), fresh(&a));
        assert!(reuse2.kept.is_empty(), "each copy is handed out once");
        // Not kept: made afresh.
        assert_eq!(format!("{:?}", reuse2.wit(&a)), fresh(&a));
        assert_eq!(format!("{:?}", reuse.wit(&b)), fresh(&b));
    }
}
