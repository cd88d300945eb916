//! The generated bindings of the one world this build implements, and its export macro.
//! Each world is behind a feature so a component carries exactly one world's type section.

#[cfg(not(any(
    feature = "agent",
    feature = "context-provider",
    feature = "router",
    feature = "validator",
    feature = "retrospective"
)))]
compile_error!("murmur-guest: enable one world feature: agent, context-provider, router, validator or retrospective");

#[allow(unused_macros)]
macro_rules! world_bindings {
    ($world:literal, $macro_name:literal, $module:literal) => {
        wit_bindgen::generate!({
            world: $world,
            path: "../../wit",
            pub_export_macro: true,
            export_macro_name: $macro_name,
            default_bindings_module: $module,
            runtime_path: "murmur_guest::__wit_bindgen::rt",
            additional_derives: [Clone],
        });
    };
}

/// Generated bindings (agent world).
#[cfg(all(feature = "agent", not(feature = "http")))]
#[allow(missing_docs)]
pub mod bindings {
    world_bindings!("agent", "__export_agent_world", "murmur_guest::bindings");
    pub use exports::murmur::plugin::agent_api::Guest as AgentGuest;
}

/// Generated bindings (the agent world with outgoing HTTP, `http-agent`).
#[cfg(all(feature = "agent", feature = "http"))]
#[allow(missing_docs)]
pub mod bindings {
    // The WASI interfaces wasi:http uses (io, clocks) are generated here too.
    wit_bindgen::generate!({
        world: "http-agent",
        path: "../../wit",
        pub_export_macro: true,
        export_macro_name: "__export_agent_world",
        default_bindings_module: "murmur_guest::bindings",
        runtime_path: "murmur_guest::__wit_bindgen::rt",
        additional_derives: [Clone],
        // A variant holding a resource (an I/O error) cannot be cloned.
        additional_derives_ignore: ["stream-error"],
        generate_all,
    });
    pub use exports::murmur::plugin::agent_api::Guest as AgentGuest;
}

/// Generated bindings (validator world).
#[cfg(feature = "validator")]
#[allow(missing_docs)]
pub mod bindings {
    world_bindings!("validator", "__export_validator_world", "murmur_guest::bindings");
    pub use exports::murmur::plugin::validator_api::Guest as ValidatorGuest;
}

/// Generated bindings (router world).
#[cfg(feature = "router")]
#[allow(missing_docs)]
pub mod bindings {
    world_bindings!("router", "__export_router_world", "murmur_guest::bindings");
    pub use exports::murmur::plugin::router_api::Guest as RouterGuest;
}

/// Generated bindings (context-provider world).
#[cfg(feature = "context-provider")]
#[allow(missing_docs)]
pub mod bindings {
    world_bindings!("context-provider", "__export_context_provider_world", "murmur_guest::bindings");
    pub use exports::murmur::plugin::context_provider_api::Guest as ContextProviderGuest;
}

/// Generated bindings (retrospective world).
#[cfg(feature = "retrospective")]
#[allow(missing_docs)]
pub mod bindings {
    world_bindings!("retrospective", "__export_retrospective_world", "murmur_guest::bindings");
    pub use exports::murmur::plugin::retrospective_api::Guest as RetrospectiveGuest;
}

pub use bindings::murmur::plugin::types::{
    Artifact, Invocation, Level, Output, PhaseInfo, PluginError, PluginInfo, PluginKind,
    Subscription, Visibility,
};
#[cfg(feature = "router")]
pub use bindings::murmur::plugin::types::RouteDecision;
#[cfg(feature = "validator")]
pub use bindings::murmur::plugin::types::Verdict;

pub(crate) fn log_import(level: Level, message: &str) {
    bindings::murmur::plugin::log::log(level, message);
}

/// The `context` import (agents only).
#[cfg(feature = "agent")]
pub(crate) fn context_import() -> alloc::vec::Vec<Artifact> {
    bindings::murmur::plugin::context::get()
}

/// Implement this for an agent, then `murmur_guest::export_agent!(YourType);`.
#[cfg(feature = "agent")]
pub trait Agent {
    /// Name, version, subscriptions and published types.
    fn describe() -> PluginInfo;
    /// Handle one invocation; return zero or more outputs (fan-out).
    fn handle(invocation: Invocation) -> Result<alloc::vec::Vec<Output>, PluginError>;
}

/// Export an [`Agent`] implementation as the component's `agent-api`.
#[cfg(feature = "agent")]
#[macro_export]
macro_rules! export_agent {
    ($ty:ty) => {
        struct __MurmurAgentExport;
        impl $crate::bindings::AgentGuest for __MurmurAgentExport {
            fn describe() -> $crate::PluginInfo {
                <$ty as $crate::Agent>::describe()
            }
            fn handle(
                invocation: $crate::Invocation,
            ) -> ::core::result::Result<::std::vec::Vec<$crate::Output>, $crate::PluginError> {
                $crate::__install_panic_hook();
                <$ty as $crate::Agent>::handle(invocation)
            }
        }
        $crate::bindings::__export_agent_world!(__MurmurAgentExport);
    };
}

/// Implement this for a validator, then `murmur_guest::export_validator!(YourType);`.
#[cfg(feature = "validator")]
pub trait Validator {
    /// Name and version.
    fn describe() -> PluginInfo;
    /// Accept or reject an invocation's outputs before they are published.
    fn validate(invocation: Invocation, outputs: alloc::vec::Vec<Output>) -> Result<Verdict, PluginError>;
}

/// Export a [`Validator`] implementation.
#[cfg(feature = "validator")]
#[macro_export]
macro_rules! export_validator {
    ($ty:ty) => {
        struct __MurmurValidatorExport;
        impl $crate::bindings::ValidatorGuest for __MurmurValidatorExport {
            fn describe() -> $crate::PluginInfo {
                <$ty as $crate::Validator>::describe()
            }
            fn validate(
                invocation: $crate::Invocation,
                outputs: ::std::vec::Vec<$crate::Output>,
            ) -> ::core::result::Result<$crate::Verdict, $crate::PluginError> {
                $crate::__install_panic_hook();
                <$ty as $crate::Validator>::validate(invocation, outputs)
            }
        }
        $crate::bindings::__export_validator_world!(__MurmurValidatorExport);
    };
}

/// Implement this for a router, then `murmur_guest::export_router!(YourType);`.
#[cfg(feature = "router")]
pub trait Router {
    /// Name and version.
    fn describe() -> PluginInfo;
    /// Choose a phase for a discovery whose phase is `auto` or unknown.
    fn route(discovery: Artifact, phases: alloc::vec::Vec<PhaseInfo>) -> Result<RouteDecision, PluginError>;
    /// How similar `discovery` is to each candidate (0–1, one score per candidate), for
    /// deduplication when the manifest's `[dedup] plugin` names this router. The default
    /// is the Jaccard index of the descriptions' lower-cased word sets.
    fn similarity(
        discovery: Artifact,
        candidates: alloc::vec::Vec<Artifact>,
    ) -> Result<alloc::vec::Vec<f32>, PluginError> {
        let text = crate::description_words(&discovery);
        Ok(candidates
            .iter()
            .map(|c| crate::jaccard(&text, &crate::description_words(c)))
            .collect())
    }
}

/// Export a [`Router`] implementation.
#[cfg(feature = "router")]
#[macro_export]
macro_rules! export_router {
    ($ty:ty) => {
        struct __MurmurRouterExport;
        impl $crate::bindings::RouterGuest for __MurmurRouterExport {
            fn describe() -> $crate::PluginInfo {
                <$ty as $crate::Router>::describe()
            }
            fn route(
                discovery: $crate::Artifact,
                phases: ::std::vec::Vec<$crate::PhaseInfo>,
            ) -> ::core::result::Result<$crate::RouteDecision, $crate::PluginError> {
                $crate::__install_panic_hook();
                <$ty as $crate::Router>::route(discovery, phases)
            }
            fn similarity(
                discovery: $crate::Artifact,
                candidates: ::std::vec::Vec<$crate::Artifact>,
            ) -> ::core::result::Result<::std::vec::Vec<f32>, $crate::PluginError> {
                $crate::__install_panic_hook();
                <$ty as $crate::Router>::similarity(discovery, candidates)
            }
        }
        $crate::bindings::__export_router_world!(__MurmurRouterExport);
    };
}

/// Implement this for a context provider, then `murmur_guest::export_context_provider!(YourType);`.
#[cfg(feature = "context-provider")]
pub trait ContextProvider {
    /// Name and version.
    fn describe() -> PluginInfo;
    /// Choose the context artifacts for an invocation from the host's candidates.
    fn provide(
        invocation: Invocation,
        candidates: alloc::vec::Vec<Artifact>,
    ) -> Result<alloc::vec::Vec<Artifact>, PluginError>;
}

/// Export a [`ContextProvider`] implementation.
#[cfg(feature = "context-provider")]
#[macro_export]
macro_rules! export_context_provider {
    ($ty:ty) => {
        struct __MurmurContextProviderExport;
        impl $crate::bindings::ContextProviderGuest for __MurmurContextProviderExport {
            fn describe() -> $crate::PluginInfo {
                <$ty as $crate::ContextProvider>::describe()
            }
            fn provide(
                invocation: $crate::Invocation,
                candidates: ::std::vec::Vec<$crate::Artifact>,
            ) -> ::core::result::Result<::std::vec::Vec<$crate::Artifact>, $crate::PluginError> {
                $crate::__install_panic_hook();
                <$ty as $crate::ContextProvider>::provide(invocation, candidates)
            }
        }
        $crate::bindings::__export_context_provider_world!(__MurmurContextProviderExport);
    };
}

/// The retrospective's records: what it is handed and what it answers.
#[cfg(feature = "retrospective")]
pub use bindings::exports::murmur::plugin::retrospective_api::{
    Finding, FindingKind, KeptLesson, LessonDraft, RetrospectiveInfo, RunReview,
};

/// Implement this for a retrospective, then `murmur_guest::export_retrospective!(YourType);`.
#[cfg(feature = "retrospective")]
pub trait Retrospective {
    /// Name, version and description.
    fn describe() -> RetrospectiveInfo;
    /// Turn a run's findings into lessons for the workflow's next runs.
    fn distill(review: RunReview) -> Result<alloc::vec::Vec<LessonDraft>, PluginError>;
}

#[cfg(feature = "retrospective")]
impl RetrospectiveInfo {
    /// The info of retrospective `name` at `version`, built against this SDK's API.
    pub fn new(name: &str, version: &str, description: &str) -> Self {
        use alloc::string::ToString;
        Self {
            name: name.to_string(),
            version: version.to_string(),
            api_version: crate::API_VERSION.to_string(),
            description: description.to_string(),
        }
    }
}

/// Export a [`Retrospective`] implementation.
#[cfg(feature = "retrospective")]
#[macro_export]
macro_rules! export_retrospective {
    ($ty:ty) => {
        struct __MurmurRetrospectiveExport;
        impl $crate::bindings::RetrospectiveGuest for __MurmurRetrospectiveExport {
            fn describe() -> $crate::RetrospectiveInfo {
                <$ty as $crate::Retrospective>::describe()
            }
            fn distill(
                review: $crate::RunReview,
            ) -> ::core::result::Result<::std::vec::Vec<$crate::LessonDraft>, $crate::PluginError> {
                $crate::__install_panic_hook();
                <$ty as $crate::Retrospective>::distill(review)
            }
        }
        $crate::bindings::__export_retrospective_world!(__MurmurRetrospectiveExport);
    };
}

/// The blackboard, read-only. Every result is filtered by the caller's visibility: what a
/// plugin may not see is indistinguishable from what does not exist.
#[cfg(any(feature = "agent", feature = "validator", feature = "context-provider"))]
pub mod board {
    use super::Artifact;
    use alloc::string::ToString;
    use alloc::vec::Vec;
    pub use super::bindings::murmur::plugin::types::{ArtifactQuery, HostError};

    /// Up to `limit` artifacts of the caller's workflow (newest last), optionally of one
    /// type and carrying all of `tags`.
    pub fn query(type_name: Option<&str>, tags: &[&str], limit: u32) -> Result<Vec<Artifact>, HostError> {
        super::bindings::murmur::plugin::blackboard::query(&ArtifactQuery {
            type_name: type_name.map(|t| t.to_string()),
            tags: tags.iter().map(|t| t.to_string()).collect(),
            workflow_id: None,
            limit,
        })
    }

    /// One artifact by id, if it exists and the caller may see it.
    pub fn get(id: &str) -> Result<Option<Artifact>, HostError> {
        super::bindings::murmur::plugin::blackboard::get(id)
    }
}

/// Plugin-private state (needs `grants = ["kv"]`): keys and values only this plugin, in
/// this workflow run, reads and writes. Writes take effect at once, not with the outputs.
#[cfg(feature = "agent")]
pub mod kv {
    use alloc::string::String;
    use alloc::vec::Vec;
    pub use super::bindings::murmur::plugin::types::HostError;
    use super::bindings::murmur::plugin::kv as host;

    /// The value of `key`, if set.
    pub fn get(key: &str) -> Result<Option<String>, HostError> {
        host::get(key)
    }
    /// Set `key` (keys up to 256 bytes, values up to 64 KiB, 10,000 keys).
    pub fn set(key: &str, value: &str) -> Result<(), HostError> {
        host::set(key, value)
    }
    /// Remove `key`; whether it existed.
    pub fn delete(key: &str) -> Result<bool, HostError> {
        host::delete(key)
    }
    /// Keys starting with `prefix`, sorted.
    pub fn keys(prefix: &str) -> Result<Vec<String>, HostError> {
        host::keys(prefix)
    }
}
