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
//! subscriptions → the next invocations.
//!
//! The crate exports what a program embedding the engine needs; the engine's inner
//! modules are private, and `unreachable_pub` is denied so that every `pub` item is one a
//! user can reach. The `murmur` command line lives in the binary (`src/commands/`).

pub mod artifact;
pub mod bench;
pub mod blackboard;
mod context;
pub mod durations;
pub mod egress;
pub mod expect;
#[doc(hidden)]
pub mod fuzz;
pub mod graph;
pub mod hotload;
mod id;
pub mod inspect;
pub mod invocation;
pub mod lessons;
mod llm;
pub mod manifest;
mod name;
pub mod observe;
mod phase;
mod placement;
pub mod plugin;
mod policy;
mod routing;
pub mod run;
pub mod scaffold;
pub mod scheduler;
mod schema;
mod similarity;
mod subscription;
pub mod summary;
mod validation;
pub mod work;
pub mod workers;
pub mod workflow;

pub use artifact::{Artifact, ArtifactId, Visibility};
pub use blackboard::{MemoryStore, Store};
pub use manifest::{Manifest, ManifestError};
pub use name::Name;
pub use scheduler::Scheduler;
pub use schema::{ArtifactType, TypeRegistry};
pub use summary::{RunStatus, RunSummary};
pub use workflow::{LoadOptions, Workflow, WorkflowError};
