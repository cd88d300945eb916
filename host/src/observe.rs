//! Events the scheduler reports as a workflow runs, for progress displays and logs.
//! Sent on an unbounded channel so reporting never slows the scheduler.

use crate::plugin::FaultKind;

/// Something that happened in a workflow.
#[derive(Debug, Clone)]
pub enum Event {
    /// An invocation was claimed and started.
    InvocationStarted {
        /// The agent.
        agent: String,
        /// The invocation.
        invocation: String,
    },
    /// An invocation finished and its outputs were published.
    InvocationDone {
        /// The agent.
        agent: String,
        /// The invocation.
        invocation: String,
        /// Types of the artifacts it published.
        outputs: Vec<String>,
    },
    /// An invocation failed: a plugin error, or a fault.
    InvocationFailed {
        /// The agent.
        agent: String,
        /// The invocation.
        invocation: String,
        /// The fault class, if it misbehaved.
        fault: Option<FaultKind>,
        /// What happened.
        message: String,
    },
    /// An artifact reached the cascade-depth limit and triggered nothing.
    DepthLimited {
        /// The artifact.
        artifact: String,
        /// Its type.
        type_name: String,
        /// Its depth.
        depth: u32,
    },
    /// A subscription filter failed on an artifact (treated as no match).
    FilterFailed {
        /// The subscriber.
        agent: String,
        /// The error.
        message: String,
    },
}
