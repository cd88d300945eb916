//! Plugins: sandboxed WebAssembly components and the host that runs them.
//!
//! One module per concern, as wasmtime and Spin arrange theirs: [`engine`] (the one
//! wasmtime engine: component model, pooling, epochs), [`cache`] (compiled components on
//! disk), [`version`] (API version check before linking), [`loaded`] (a linked plugin and
//! its calls), [`state`] (per-invocation store state and the host imports), [`fault`]
//! (classifying misbehaviour) and [`convert`] (host records ↔ WIT types).

pub mod bindings;
pub mod cache;
pub mod convert;
pub mod engine;
pub mod fault;
pub mod loaded;
pub mod state;
pub mod version;

pub use cache::{CacheOutcome, ComponentCache};
pub use engine::{EngineOptions, PluginEngine};
pub use fault::Fault;
pub use loaded::{InvokeError, LoadError, LoadedPlugin};
pub use state::{BoardAccess, ContextSource, LlmAccess};
