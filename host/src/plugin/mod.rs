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
pub use handles::{Agent, ContextProvider, Retrospective, Router, Validator};
pub use loaded::{InvokeError, LoadError, LoadedPlugin};
pub use spec::{PluginLimits, PluginSpec};
pub use state::{BoardAccess, ContextSource, LlmAccess};
use std::sync::Arc;
pub use world::World;

/// Drive `work` (an async guest call) to its end on this thread, for the callers that are
/// not async: loading (`describe()`), routing and choosing context. A guest's epoch
/// yields wake this loop at once, and those calls make no host call that waits, so the
/// thread parks only between a wake-up and the next poll.
pub(crate) fn block_on<F: std::future::Future>(work: F) -> F::Output {
    use std::task::{Context, Poll, Wake, Waker};
    struct Unpark(std::thread::Thread);
    impl Wake for Unpark {
        fn wake(self: Arc<Self>) {
            self.0.unpark();
        }
        fn wake_by_ref(self: &Arc<Self>) {
            self.0.unpark();
        }
    }
    let waker = Waker::from(Arc::new(Unpark(std::thread::current())));
    let mut cx = Context::from_waker(&waker);
    let mut work = std::pin::pin!(work);
    loop {
        if let Poll::Ready(out) = work.as_mut().poll(&mut cx) {
            return out;
        }
        std::thread::park();
    }
}
