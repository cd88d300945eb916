//! One typed handle per world: an [`Agent`] can only be handed work, a [`Validator`]
//! only asked for a verdict, a [`Router`] only to route or score, a [`ContextProvider`]
//! only to choose context. A handle is made only from a plugin of its world, and the
//! world's calls are reachable only through it, so calling a validator as an agent does
//! not compile. Each dereferences to the [`LoadedPlugin`] for what all plugins share
//! (name, limits, grants, what `describe()` said).
//!
//! ```compile_fail
//! // A validator has no `handle()`: the agent's call is out of its reach.
//! fn call_as_agent(v: &murmur::plugin::Validator, i: &murmur::plugin::bindings::types::Invocation) {
//!     let _ = v.handle(i, None, murmur::plugin::ContextSource::default());
//! }
//! ```

use super::bindings::types as wit;
use super::loaded::{InvokeError, LoadedPlugin};
use super::state::{BoardAccess, ContextSource};
use super::world::World;
use std::sync::Arc;

macro_rules! handle {
    ($(#[$doc:meta])* $name:ident, $world:expr) => {
        $(#[$doc])*
        #[derive(Clone)]
        pub struct $name(Arc<LoadedPlugin>);

        impl $name {
            /// `plugin` as this world's handle; `None` if it implements another world.
            pub fn new(plugin: Arc<LoadedPlugin>) -> Option<Self> {
                (plugin.world == $world).then(|| Self(plugin))
            }

            /// The plugin, for what every world shares.
            pub fn plugin(&self) -> &Arc<LoadedPlugin> {
                &self.0
            }
        }

        impl std::ops::Deref for $name {
            type Target = LoadedPlugin;
            fn deref(&self) -> &LoadedPlugin {
                &self.0
            }
        }
    };
}

handle!(
    /// A plugin of world `agent`.
    Agent,
    World::Agent
);
handle!(
    /// A plugin of world `validator`.
    Validator,
    World::Validator
);
handle!(
    /// A plugin of world `router`.
    Router,
    World::Router
);
handle!(
    /// A plugin of world `context-provider`.
    ContextProvider,
    World::ContextProvider
);

handle!(
    /// A plugin of world `retrospective`.
    Retrospective,
    World::Retrospective
);

impl Agent {
    /// Call `handle()`; `context` is what its `context` import answers. A future: while
    /// the guest waits in a host call (a model's answer) its thread serves others.
    pub async fn handle(
        &self,
        invocation: &wit::Invocation,
        board: Option<BoardAccess>,
        context: ContextSource,
    ) -> Result<Vec<wit::Output>, InvokeError> {
        self.0.handle(invocation, board, context).await
    }
}

impl Validator {
    /// Call `validate()` (a future, as `Agent::handle`).
    pub async fn validate(
        &self,
        invocation: &wit::Invocation,
        outputs: &[wit::Output],
        board: Option<BoardAccess>,
    ) -> Result<wit::Verdict, InvokeError> {
        self.0.validate(invocation, outputs, board).await
    }
}

impl Router {
    /// Call `route()`.
    pub fn route(
        &self,
        discovery: &wit::Artifact,
        phases: &[wit::PhaseInfo],
    ) -> Result<wit::RouteDecision, InvokeError> {
        self.0.route(discovery, phases)
    }

    /// Call `similarity()`: one score in 0..=1 per candidate, checked.
    pub fn similarity(
        &self,
        discovery: &wit::Artifact,
        candidates: &[wit::Artifact],
    ) -> Result<Vec<f32>, InvokeError> {
        self.0.similarity(discovery, candidates)
    }
}

impl ContextProvider {
    /// Call `provide()`.
    pub fn provide(
        &self,
        invocation: &wit::Invocation,
        candidates: &[wit::Artifact],
        board: Option<BoardAccess>,
    ) -> Result<Vec<wit::Artifact>, InvokeError> {
        self.0.provide(invocation, candidates, board)
    }
}

impl Retrospective {
    /// Call `distill()` (a future, as `Agent::handle`: it may wait for a model).
    pub async fn distill(
        &self,
        review: &super::bindings::retrospective::exports::murmur::plugin::retrospective_api::RunReview,
        board: Option<BoardAccess>,
    ) -> Result<
        Vec<
            super::bindings::retrospective::exports::murmur::plugin::retrospective_api::LessonDraft,
        >,
        InvokeError,
    > {
        self.0.distill(review, board).await
    }
}
