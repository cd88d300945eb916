//! Events the scheduler reports as a workflow runs, for progress displays and logs.
//! Sent on an unbounded channel so reporting never slows the scheduler.

use crate::invocation::FaultKind;
use crate::invocation::InvocationId;
use crate::name::Name;
use serde::Serialize;

/// Something that happened in a workflow.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Event {
    /// An invocation was claimed and started.
    InvocationStarted {
        /// The agent.
        agent: Name,
        /// The invocation.
        invocation: InvocationId,
    },
    /// An invocation finished and its outputs were published.
    InvocationDone {
        /// The agent.
        agent: Name,
        /// The invocation.
        invocation: InvocationId,
        /// Types of the artifacts it published.
        outputs: Vec<Name>,
    },
    /// An invocation failed: a plugin error, or a fault.
    InvocationFailed {
        /// The agent.
        agent: Name,
        /// The invocation.
        invocation: InvocationId,
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
    /// An invocation published nothing this attempt and will be retried.
    InvocationRetrying {
        /// The agent.
        agent: Name,
        /// The invocation.
        invocation: InvocationId,
        /// The attempt that failed (1 = the first).
        attempt: u32,
        /// Why (rejection reasons or the error).
        reason: String,
        /// Delay before the next attempt, in ms.
        backoff_ms: u64,
    },
    /// A discovery was routed to a phase.
    WorkRouted {
        /// The work item.
        work: String,
        /// The phase chosen.
        phase: String,
        /// `builtin` or the router plugin.
        by: String,
        /// Why.
        reason: String,
    },
    /// A discovery was recorded as a duplicate and not scheduled.
    WorkDuplicate {
        /// The duplicate.
        work: String,
        /// The original.
        original: String,
        /// Their similarity.
        score: f64,
    },
    /// Blocked work was released: all its blockers are done.
    WorkUnblocked {
        /// The work item.
        work: String,
    },
    /// A work item failed for good and recovery work was spawned for it.
    RecoverySpawned {
        /// The failed work item.
        failed: String,
        /// The recovery work item.
        recovery: String,
    },
    /// Hot loading swapped in a new version of the workflow.
    PluginsLoaded {
        /// The bundles in force.
        bundles: Vec<String>,
        /// Plugins that are new in this version.
        added: Vec<String>,
        /// Every plugin in force, as `name@sha256-prefix`.
        plugins: Vec<String>,
    },
    /// A hot-loaded bundle or component was rejected; the last good version stays.
    ReloadRejected {
        /// The file that triggered the reload.
        file: String,
        /// Why.
        message: String,
    },
    /// A subscription filter failed on an artifact (treated as no match).
    FilterFailed {
        /// The subscriber.
        agent: Name,
        /// The error.
        message: String,
    },
    /// Work entered a phase (or was discovered by an agent) that requires approval: it
    /// waits for a person's decision.
    ApprovalRequested {
        /// The work item.
        work: String,
        /// Its phase.
        phase: String,
        /// When it expires unless decided (ms since the Unix epoch).
        expires_at_ms: Option<u64>,
    },
    /// Work awaiting approval was approved: it goes on.
    WorkApproved {
        /// The work item.
        work: String,
    },
    /// Work awaiting approval was rejected: it failed, with the reason.
    WorkRejected {
        /// The work item.
        work: String,
        /// Why.
        reason: String,
    },
    /// Work awaiting approval was not decided on before its timeout.
    WorkExpired {
        /// The work item.
        work: String,
    },
    /// The run stopped: it ended (`complete`, `stalled`, …), or was interrupted
    /// (`running`), paused or cancelled.
    RunEnded {
        /// How it stands now.
        status: crate::run::RunStatus,
    },
}

impl Event {
    /// The event's kind, as stored (`invocation_failed`, `work_routed`, …).
    pub fn kind(&self) -> &'static str {
        match self {
            Event::InvocationStarted { .. } => "invocation_started",
            Event::InvocationDone { .. } => "invocation_done",
            Event::InvocationFailed { .. } => "invocation_failed",
            Event::InvocationRetrying { .. } => "invocation_retrying",
            Event::WorkRouted { .. } => "work_routed",
            Event::WorkDuplicate { .. } => "work_duplicate",
            Event::WorkUnblocked { .. } => "work_unblocked",
            Event::RecoverySpawned { .. } => "recovery_spawned",
            Event::DepthLimited { .. } => "depth_limited",
            Event::FilterFailed { .. } => "filter_failed",
            Event::PluginsLoaded { .. } => "plugins_loaded",
            Event::ReloadRejected { .. } => "reload_rejected",
            Event::RunEnded { .. } => "run_ended",
            Event::ApprovalRequested { .. } => "approval_requested",
            Event::WorkApproved { .. } => "work_approved",
            Event::WorkRejected { .. } => "work_rejected",
            Event::WorkExpired { .. } => "work_expired",
        }
    }

    /// Whether a durable store keeps it: the loop's decisions and failures. Starts and
    /// completions are not kept as events: the invocation records already hold them.
    pub fn is_notable(&self) -> bool {
        !matches!(
            self,
            Event::InvocationStarted { .. } | Event::InvocationDone { .. }
        )
    }
}
