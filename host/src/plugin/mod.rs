//! Plugins: sandboxed WebAssembly components and the host that runs them.
//!
//! One module per concern, as wasmtime and Spin arrange theirs: [`world`] (the worlds of
//! the WIT contract), [`capability`] (the host interfaces a manifest grants), [`engine`]
//! (the one wasmtime engine: component model, pooling, epochs), [`cache`] (compiled
//! components on disk), [`shape`] (a component's exports and imports, read once: the
//! version and grant checks and `murmur inspect`), [`spec`] (what loading a plugin takes), [`version`] (the API version),
//! [`handles`] (one typed handle per world), [`loaded`] (a linked plugin and
//! its calls), [`state`] (per-invocation store state and the host imports), [`fault`]
//! (classifying misbehaviour) and [`convert`] (host records ↔ WIT types).

pub mod bindings;
pub mod cache;
pub mod capability;
pub mod convert;
pub mod engine;
pub mod fault;
pub mod handles;
pub mod loaded;
pub mod shape;
pub mod spec;
pub mod state;
pub mod version;
pub mod world;

pub use cache::{CacheOutcome, ComponentCache};
pub use capability::Capability;
pub use engine::{EngineOptions, PluginEngine};
pub use fault::Fault;
pub use handles::{Agent, ContextProvider, Router, Validator};
pub use loaded::{InvokeError, LoadError, LoadedPlugin};
pub use spec::{PluginLimits, PluginSpec};
pub use state::{BoardAccess, ContextSource, LlmAccess};
pub use world::World;
