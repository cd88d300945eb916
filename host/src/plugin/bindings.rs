//! Host bindings generated from `wit/`, one module per world. The types and host
//! interfaces are generated once (in `agent`, whose world imports every host interface)
//! and shared by the other worlds through `with`, so a host `Artifact` is one Rust type.
//! Kept in its own module so the macro expansion is not recompiled on every edit elsewhere.
//!
//! Every call into a guest is async (a fiber the host can suspend), so `llm` is an async
//! import: a guest waiting for a model holds no thread.

#![allow(missing_docs)]

/// The `agent` world: also the home of the shared types and host interfaces.
pub mod agent {
    wasmtime::component::bindgen!({
        world: "agent",
        path: "../wit",
        imports: { "murmur:plugin/llm": async },
        exports: { default: async },
    });
}

/// The `validator` world.
pub mod validator {
    wasmtime::component::bindgen!({
        world: "validator",
        path: "../wit",
        exports: { default: async },
        with: {
            "murmur:plugin/types": super::agent::murmur::plugin::types,
            "murmur:plugin/log": super::agent::murmur::plugin::log,
            "murmur:plugin/blackboard": super::agent::murmur::plugin::blackboard,
            "murmur:plugin/llm": super::agent::murmur::plugin::llm,
        },
    });
}

/// The `router` world.
pub mod router {
    wasmtime::component::bindgen!({
        world: "router",
        path: "../wit",
        exports: { default: async },
        with: {
            "murmur:plugin/types": super::agent::murmur::plugin::types,
            "murmur:plugin/log": super::agent::murmur::plugin::log,
            "murmur:plugin/llm": super::agent::murmur::plugin::llm,
        },
    });
}

/// The `context-provider` world.
pub mod context_provider {
    wasmtime::component::bindgen!({
        world: "context-provider",
        path: "../wit",
        exports: { default: async },
        with: {
            "murmur:plugin/types": super::agent::murmur::plugin::types,
            "murmur:plugin/log": super::agent::murmur::plugin::log,
            "murmur:plugin/blackboard": super::agent::murmur::plugin::blackboard,
        },
    });
}

/// The `retrospective` world.
pub mod retrospective {
    wasmtime::component::bindgen!({
        world: "retrospective",
        path: "../wit",
        exports: { default: async },
        with: {
            "murmur:plugin/types": super::agent::murmur::plugin::types,
            "murmur:plugin/log": super::agent::murmur::plugin::log,
            "murmur:plugin/llm": super::agent::murmur::plugin::llm,
        },
    });
}

pub use agent::murmur::plugin::types;
pub use agent::murmur::plugin::{blackboard, context, kv, llm, log};
