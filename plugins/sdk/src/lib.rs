//! # murmur-guest: write a Murmuration plugin in a few lines
//!
//! Murmuration runs agents as sandboxed WebAssembly components built against the WIT
//! package `murmur:plugin@0.1.0` (the repository's `wit/` folder). This crate wraps the
//! generated bindings so that a plugin author deals in Rust values:
//!
//! - payloads are JSON on the wire; [`Artifact::parse`] and [`Output::json`] turn them
//!   into and out of `serde` types ([`payload`] has the built-in ones);
//! - errors are data: return [`PluginError`] variants, never panic on bad input;
//! - a panic is still reported: the export shim installs a hook that sends the panic
//!   message through the host's `log` import before the instance traps.
//!
//! Enable exactly one world feature (`agent`, `context-provider`, `router` or
//! `validator`): a component implements one world, and each feature generates that world's
//! bindings and its export macro.
//!
//! ```ignore
//! use murmur_guest::prelude::*;
//! struct Echo;
//! impl Agent for Echo {
//!     fn describe() -> PluginInfo {
//!         PluginInfo::agent("echo", env!("CARGO_PKG_VERSION")).subscribe(Subscription::to("Note"))
//!     }
//!     fn handle(inv: Invocation) -> Result<Vec<Output>, PluginError> {
//!         Ok(vec![Output::json("Note", &inv.input::<serde_json::Value>()?)?])
//!     }
//! }
//! murmur_guest::export_agent!(Echo);
//! ```


extern crate alloc;
extern crate self as murmur_guest;


use alloc::format;
use alloc::string::{String, ToString};
use alloc::vec::Vec;
use serde::de::DeserializeOwned;
use serde::Serialize;

#[doc(hidden)]
pub use wit_bindgen as __wit_bindgen;

/// The API version this SDK was built against; reported by `describe()`.
pub const API_VERSION: &str = "0.1.0";

#[cfg(feature = "http")]
pub mod http;
pub mod payload;
#[cfg(feature = "fast-alloc")]
pub mod size_classes;
mod world;

/// Small blocks by size class (see [`size_classes`]); the `fast-alloc` feature.
#[cfg(feature = "fast-alloc")]
#[global_allocator]
static ALLOCATOR: size_classes::SizeClasses = size_classes::SizeClasses::new();
pub use world::*;

/// Everything a plugin usually needs.
pub mod prelude {
    pub use crate::payload::*;
    pub use crate::{
        log, Artifact, Invocation, Level, Output, PhaseInfo, PluginError, PluginInfo,
        PluginKind, Subscription, Visibility,
    };
    #[cfg(feature = "agent")]
    pub use crate::Agent;
    #[cfg(feature = "validator")]
    pub use crate::{Validator, Verdict};
    #[cfg(feature = "router")]
    pub use crate::{RouteDecision, Router};
    #[cfg(feature = "context-provider")]
    pub use crate::ContextProvider;
    #[cfg(feature = "retrospective")]
    pub use crate::{Finding, FindingKind, KeptLesson, LessonDraft, Retrospective, RetrospectiveInfo, RunReview};
}

impl PluginError {
    /// The work failed; not worth retrying.
    pub fn failed(message: impl ToString) -> Self {
        PluginError::Failed(message.to_string())
    }
    /// The inputs are not something this plugin handles.
    pub fn invalid_input(message: impl ToString) -> Self {
        PluginError::InvalidInput(message.to_string())
    }
    /// A transient failure; the host may retry.
    pub fn retryable(message: impl ToString) -> Self {
        PluginError::Retryable(message.to_string())
    }
}

impl Artifact {
    /// Parse the payload into `T`; a mismatch is an `invalid-input` error naming the type.
    pub fn parse<T: DeserializeOwned>(&self) -> Result<T, PluginError> {
        serde_json::from_str(&self.payload).map_err(|e| {
            PluginError::invalid_input(format!(
                "artifact {} ({}): payload does not parse: {e}",
                self.id, self.type_name
            ))
        })
    }
}

impl Invocation {
    /// The first input, parsed into `T`.
    pub fn input<T: DeserializeOwned>(&self) -> Result<T, PluginError> {
        self.inputs
            .first()
            .ok_or_else(|| PluginError::invalid_input("invocation has no inputs"))?
            .parse()
    }

    /// The first input artifact itself.
    pub fn first_input(&self) -> Result<&Artifact, PluginError> {
        self.inputs
            .first()
            .ok_or_else(|| PluginError::invalid_input("invocation has no inputs"))
    }

    /// The plugin's manifest `config` table, parsed into `T` (an empty table if unset).
    pub fn config<T: DeserializeOwned>(&self) -> Result<T, PluginError> {
        let text = if self.config.is_empty() { "{}" } else { &self.config };
        serde_json::from_str(text)
            .map_err(|e| PluginError::invalid_input(format!("plugin config does not parse: {e}")))
    }

    /// The phase name of the work item served, or `""`.
    pub fn phase_name(&self) -> &str {
        self.phase.as_ref().map(|p| p.name.as_str()).unwrap_or("")
    }

    /// The lessons from earlier runs of the workflow that the host put in the phase's
    /// instructions (after [`LESSONS_HEADING`], one `- ` line each), in order.
    pub fn lessons(&self) -> alloc::vec::Vec<&str> {
        self.phase
            .as_ref()
            .and_then(|p| p.instructions.split_once(LESSONS_HEADING))
            .map(|(_, rest)| rest.lines().filter_map(|l| l.strip_prefix("- ")).collect())
            .unwrap_or_default()
    }
}

/// The line after which the host lists lessons from earlier runs in a phase's
/// instructions.
pub const LESSONS_HEADING: &str = "Lessons from earlier runs of this workflow:";

impl Output {
    /// An output of type `type_name` whose payload is `value` serialised to JSON.
    pub fn json<T: Serialize + ?Sized>(type_name: &str, value: &T) -> Result<Output, PluginError> {
        let payload = serde_json::to_string(value)
            .map_err(|e| PluginError::failed(format!("cannot serialise {type_name}: {e}")))?;
        Ok(Output { type_name: type_name.to_string(), payload, tags: Vec::new(), visibility: None })
    }

    /// Add tags.
    pub fn tagged<I: IntoIterator<Item = S>, S: ToString>(mut self, tags: I) -> Self {
        self.tags.extend(tags.into_iter().map(|t| t.to_string()));
        self
    }

    /// Set the visibility (default: public).
    pub fn visible_to(mut self, visibility: Visibility) -> Self {
        self.visibility = Some(visibility);
        self
    }
}

impl Subscription {
    /// A subscription to every artifact of `type_name`.
    pub fn to(type_name: &str) -> Self {
        Subscription {
            type_name: type_name.to_string(),
            filter: None,
            from_producers: Vec::new(),
            tags: Vec::new(),
            allow_self: false,
        }
    }
    /// Only artifacts for which this CEL expression is true (e.g. `payload.phase == "analysis"`).
    pub fn filter(mut self, cel: &str) -> Self {
        self.filter = Some(cel.to_string());
        self
    }
    /// Only artifacts from these producers.
    pub fn from<I: IntoIterator<Item = S>, S: ToString>(mut self, producers: I) -> Self {
        self.from_producers.extend(producers.into_iter().map(|p| p.to_string()));
        self
    }
    /// Let the plugin's own outputs trigger it.
    pub fn allow_self(mut self) -> Self {
        self.allow_self = true;
        self
    }
}

impl PluginInfo {
    fn new(kind: PluginKind, name: &str, version: &str) -> Self {
        PluginInfo {
            name: name.to_string(),
            version: version.to_string(),
            api_version: API_VERSION.to_string(),
            kind,
            description: String::new(),
            subscriptions: Vec::new(),
            publishes: Vec::new(),
            phases: Vec::new(),
            capabilities: Vec::new(),
        }
    }
    /// Describe an agent.
    pub fn agent(name: &str, version: &str) -> Self {
        Self::new(PluginKind::Agent, name, version)
    }
    /// Describe a validator.
    pub fn validator(name: &str, version: &str) -> Self {
        Self::new(PluginKind::Validator, name, version)
    }
    /// Describe a router.
    pub fn router(name: &str, version: &str) -> Self {
        Self::new(PluginKind::Router, name, version)
    }
    /// Describe a context provider.
    pub fn context_provider(name: &str, version: &str) -> Self {
        Self::new(PluginKind::ContextProvider, name, version)
    }
    /// A one-line description.
    pub fn description(mut self, text: &str) -> Self {
        self.description = text.to_string();
        self
    }
    /// Add a subscription.
    pub fn subscribe(mut self, subscription: Subscription) -> Self {
        self.subscriptions.push(subscription);
        self
    }
    /// Declare the artifact types this plugin publishes.
    pub fn publishes<I: IntoIterator<Item = S>, S: ToString>(mut self, types: I) -> Self {
        self.publishes.extend(types.into_iter().map(|t| t.to_string()));
        self
    }
    /// Request host capabilities (`blackboard`, `kv`, `llm`).
    pub fn capabilities<I: IntoIterator<Item = S>, S: ToString>(mut self, caps: I) -> Self {
        self.capabilities.extend(caps.into_iter().map(|c| c.to_string()));
        self
    }
    /// An agent that reads its context on demand: the host hands it no context
    /// (`invocation.context` is empty) and chooses it only when the agent calls
    /// [`Invocation::read_context`] (the `context` import). An agent that reads its
    /// context on some calls, or never, then pays for it on those calls only.
    pub fn context_on_demand(self) -> Self {
        self.capabilities(["context"])
    }
}

/// The lower-cased words of an artifact's `description` field (empty if it has none).
pub fn description_words(artifact: &Artifact) -> alloc::collections::BTreeSet<String> {
    let payload: serde_json::Value = serde_json::from_str(&artifact.payload).unwrap_or_default();
    payload
        .get("description")
        .and_then(|d| d.as_str())
        .unwrap_or("")
        .split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .map(|w| w.to_lowercase())
        .collect()
}

/// The Jaccard index of two word sets (1 for two empty sets).
pub fn jaccard(a: &alloc::collections::BTreeSet<String>, b: &alloc::collections::BTreeSet<String>) -> f32 {
    if a.is_empty() && b.is_empty() {
        return 1.0;
    }
    let common = a.intersection(b).count();
    common as f32 / (a.len() + b.len() - common) as f32
}

impl Invocation {
    /// The invocation's context, phase instructions first: the list it was handed, or —
    /// for an agent built with [`PluginInfo::context_on_demand`], handed none — the
    /// host's answer through the `context` import, chosen at this call.
    pub fn read_context(&self) -> alloc::borrow::Cow<'_, [Artifact]> {
        #[cfg(feature = "agent")]
        if self.context.is_empty() {
            return alloc::borrow::Cow::Owned(world::context_import());
        }
        alloc::borrow::Cow::Borrowed(&self.context)
    }

    /// The context artifacts of type `type_name` (e.g. `PreviousAttempt`), in order.
    pub fn context_of(&self, type_name: &str) -> Vec<Artifact> {
        self.read_context().iter().filter(|a| a.type_name == type_name).cloned().collect()
    }

    /// On a retry: the reasons the previous attempt was refused (empty on a first attempt).
    pub fn previous_refusal(&self) -> Vec<String> {
        self.context_of("PreviousAttempt")
            .iter()
            .filter_map(|a| serde_json::from_str::<serde_json::Value>(&a.payload).ok())
            .flat_map(|v| {
                v.get("reasons")
                    .and_then(|r| r.as_array())
                    .map(|r| r.iter().filter_map(|x| x.as_str().map(String::from)).collect::<Vec<_>>())
                    .unwrap_or_default()
            })
            .collect()
    }
}

/// Log through the host (always granted). The host tags the line with the plugin's name.
pub fn log(level: Level, message: &str) {
    world::log_import(level, message);
}

/// Report panics through the host log before the instance traps, so the author sees the
/// message rather than a bare `unreachable`.
#[doc(hidden)]
pub fn __install_panic_hook() {
    std::panic::set_hook(alloc::boxed::Box::new(|info| {
        log(Level::Error, &format!("panic: {info}"));
    }));
}
