//! # Murmuration: a host runtime for self-improving multi-agent workflows
//!
//! Agents do not follow a fixed pipeline. They work in **phases**, consume typed
//! **artifacts** from a shared **blackboard** and publish results; any agent may publish a
//! `WorkDiscovery` into any phase, so the workflow branches itself at run time.
//!
//! Why a WebAssembly host: agents are untrusted code in any language. Each runs as a
//! sandboxed component built against the WIT package `murmur:plugin@0.1.0` (the
//! repository's `wit/`), in a fresh instance per invocation, with a memory cap and a
//! deadline, and reaches the world only through the host interfaces it is given. The host
//! owns the blackboard and the phase lifecycle: it validates every payload against its
//! type's schema, matches subscriptions, schedules invocations by priority under a
//! concurrency limit, publishes outputs atomically with the invocation's completion,
//! contains and classifies faults, and detects completion.
//!
//! Data flows one way: [`manifest`] → [`workflow`] (loads types, phases and
//! [`plugin`]s) → [`scheduler`] → plugin → outputs → [`blackboard`] → matching
//! [`subscription`]s → the next invocations.

pub mod artifact;
pub mod bench;
pub mod blackboard;
pub mod cli;
pub mod context;
pub mod graph;
pub mod hotload;
pub mod id;
pub mod inspect;
pub mod invocation;
pub mod llm;
pub mod manifest;
pub mod name;
pub mod observe;
pub mod phase;
pub mod plugin;
pub mod policy;
pub mod routing;
pub mod scaffold;
pub mod scheduler;
pub mod schema;
pub mod similarity;
pub mod subscription;
pub mod summary;
pub mod validation;
pub mod work;
pub mod workflow;

pub use artifact::{Artifact, ArtifactId, Visibility};
pub use blackboard::{MemoryStore, Store};
pub use manifest::{Manifest, ManifestError};
pub use name::Name;
pub use scheduler::Scheduler;
pub use summary::{RunStatus, RunSummary};
pub use workflow::{LoadOptions, Workflow, WorkflowError};
