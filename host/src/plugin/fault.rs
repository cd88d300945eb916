//! Fault classes: how a plugin misbehaved, as opposed to an error it returned.
//!
//! A plugin that returns `plugin-error` has failed politely (errors are data). A plugin
//! that traps, overruns its deadline, hits its memory cap, reaches for something it was
//! not granted or returns garbage has *faulted*: its instance is discarded, nothing it
//! returned is published, and the fault is counted by class in the run summary.

use crate::invocation::FaultKind;
use std::fmt;

/// A classified fault with the evidence.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fault {
    /// The class.
    pub kind: FaultKind,
    /// What happened, for the log and the invocation record.
    pub message: String,
}

impl fmt::Display for Fault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.kind, self.message)
    }
}

/// Classify an error from instantiating or calling a guest.
/// `memory_denied`: the store's limiter refused a growth during this call.
/// `deadline_passed`: the invocation's wall-clock deadline has passed.
pub fn classify(err: &wasmtime::Error, memory_denied: bool, deadline_passed: bool) -> Fault {
    let mut message = first_lines(&format!("{err:#}"), 6);
    // The trap's own words (e.g. "call stack exhausted") come after a backtrace: lead with them.
    if let Some(trap) = err.downcast_ref::<wasmtime::Trap>() {
        message = format!("{trap} | {message}");
    }
    if memory_denied {
        return Fault {
            kind: FaultKind::Memory,
            message: format!("memory cap reached; then {message}"),
        };
    }
    match err.downcast_ref::<wasmtime::Trap>() {
        Some(wasmtime::Trap::Interrupt) | Some(wasmtime::Trap::OutOfFuel) => Fault {
            kind: FaultKind::Timeout,
            message,
        },
        _ if deadline_passed => Fault {
            kind: FaultKind::Timeout,
            message,
        },
        _ => Fault {
            kind: FaultKind::Trap,
            message,
        },
    }
}

fn first_lines(text: &str, n: usize) -> String {
    let mut out: Vec<&str> = text.lines().take(n).collect();
    if text.lines().count() > n {
        out.push("…");
    }
    out.join(" | ")
}
