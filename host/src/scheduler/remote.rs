//! Invocations run by worker processes: what crosses between a run and a worker, and the
//! seam where the run hands an invocation out instead of running it here.
//!
//! Only the *execution* of an invocation moves: building its context, calling the agent
//! in its sandbox, checking, routing and validating what it returned
//! ([`super::execute`]). Everything that decides the cascade — publishing, subscriptions,
//! deduplication, blocking, retries, completion — stays with the run that dispatched it
//! (the coordinator, one per run, holding the run's claim), which applies a worker's
//! [`Outcome`] exactly as it applies one computed here. So consistency across workers
//! needs no distributed decision: a worker's answer is an input to one process's commit.

use super::execute::{self, CheckedOutput, Executed, Failure};
use crate::artifact::Visibility;
use crate::blackboard::Store;
use crate::invocation::{FaultKind, InvocationRecord};
use crate::plugin::bindings::types as wit;
use crate::plugin::{Fault, InvokeError};
use crate::validation::Refusal;
use crate::work::Routing;
use crate::workflow::Workflow;
use serde::{Deserialize, Serialize};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// What a worker answers for one invocation: its checked outputs, or why it has none.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Outcome {
    /// The outputs (checked, routed and validated on the worker), or the failure.
    pub result: Result<Vec<Output>, Refused>,
    /// From the plugin call's start to its outputs checked, in microseconds.
    pub ran_us: u64,
    /// A model call could not be made for a reason not the work's (see
    /// `Executed::given_back`).
    pub given_back: bool,
}

/// One output that passed every check on the worker.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Output {
    /// Its type.
    pub type_name: String,
    /// Its payload.
    pub payload: serde_json::Value,
    /// Its tags.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<String>,
    /// Who may see it.
    #[serde(default)]
    pub visibility: Visibility,
    /// How the router placed it, if it did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub routing: Option<Routing>,
}

/// Why an invocation published nothing, as it crosses the database.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Refused {
    /// The plugin faulted (trap, timeout, memory, denied, invalid output, …).
    Fault {
        /// The class.
        class: FaultKind,
        /// The evidence.
        message: String,
    },
    /// The plugin returned `invalid-input`.
    InvalidInput {
        /// Its words.
        message: String,
    },
    /// The plugin returned `failed`.
    Failed {
        /// Its words.
        message: String,
    },
    /// The plugin returned `retryable`.
    Retryable {
        /// Its words.
        message: String,
    },
    /// A validator rejected the outputs.
    Rejected {
        /// `builtin` or the validator's name.
        by: String,
        /// Its reasons.
        reasons: Vec<String>,
    },
    /// A validator could not give a verdict.
    ValidatorFailed {
        /// The validator.
        by: String,
        /// What happened to it.
        error: Box<Refused>,
    },
}

impl Refused {
    fn of_invoke(e: InvokeError) -> Self {
        match e {
            InvokeError::Fault(f) => Refused::Fault {
                class: f.kind,
                message: f.message,
            },
            InvokeError::Plugin(wit::PluginError::InvalidInput(message)) => {
                Refused::InvalidInput { message }
            }
            InvokeError::Plugin(wit::PluginError::Failed(message)) => Refused::Failed { message },
            InvokeError::Plugin(wit::PluginError::Retryable(message)) => {
                Refused::Retryable { message }
            }
        }
    }

    fn into_invoke(self) -> InvokeError {
        match self {
            Refused::Fault { class, message } => InvokeError::Fault(Fault {
                kind: class,
                message,
            }),
            Refused::InvalidInput { message } => {
                InvokeError::Plugin(wit::PluginError::InvalidInput(message))
            }
            Refused::Failed { message } => InvokeError::Plugin(wit::PluginError::Failed(message)),
            Refused::Retryable { message } => {
                InvokeError::Plugin(wit::PluginError::Retryable(message))
            }
            // Not an invocation's own error: a validator's verdict read as a failure.
            Refused::Rejected { by, reasons } => InvokeError::Plugin(wit::PluginError::Failed(
                format!("{by}: {}", reasons.join("; ")),
            )),
            Refused::ValidatorFailed { error, .. } => error.into_invoke(),
        }
    }

    fn of_failure(f: Failure) -> Self {
        match f {
            Failure::Invoke(e) => Refused::of_invoke(e),
            Failure::Refused(Refusal::Rejected { by, reasons }) => {
                Refused::Rejected { by, reasons }
            }
            Failure::Refused(Refusal::ValidatorFailed { by, error }) => Refused::ValidatorFailed {
                by,
                error: Box::new(Refused::of_invoke(error)),
            },
        }
    }

    fn into_failure(self) -> Failure {
        match self {
            Refused::Rejected { by, reasons } => {
                Failure::Refused(Refusal::Rejected { by, reasons })
            }
            Refused::ValidatorFailed { by, error } => Failure::Refused(Refusal::ValidatorFailed {
                by,
                error: error.into_invoke(),
            }),
            other => Failure::Invoke(other.into_invoke()),
        }
    }
}

/// Hands invocations to worker processes and resolves with what a worker answered.
/// An error is the dispatcher's own (its database out of reach), never the invocation's:
/// it stops the run, which `resume` continues.
pub trait Dispatch: Send + Sync {
    /// Hand `record` (claimed, its inputs committed) to a worker.
    fn dispatch(
        &self,
        record: &InvocationRecord,
    ) -> Pin<Box<dyn Future<Output = Result<Outcome, String>> + Send + 'static>>;
}

/// A worker's side: run `record` of `wf` here, against `store` (which holds the run's
/// records), as the run itself would.
pub async fn run_here(
    wf: &Arc<Workflow>,
    store: &Arc<dyn Store>,
    record: InvocationRecord,
) -> Outcome {
    let executed = execute::execute(wf, store, record, Instant::now()).await;
    Outcome {
        result: match executed.result {
            Ok(outputs) => Ok(outputs
                .into_iter()
                .map(|o| Output {
                    type_name: o.type_name.to_string(),
                    payload: o.payload,
                    tags: o.tags,
                    visibility: o.visibility,
                    routing: o.routing,
                })
                .collect()),
            Err(f) => Err(Refused::of_failure(f)),
        },
        ran_us: executed.ran.as_micros().min(u64::MAX as u128) as u64,
        given_back: executed.given_back,
    }
}

/// The run's side: what a worker answered, as if it had run here.
pub(super) fn executed(record: InvocationRecord, outcome: Outcome, dispatch: Duration) -> Executed {
    Executed {
        record,
        dispatch,
        ran: Duration::from_micros(outcome.ran_us),
        result: match outcome.result {
            Ok(outputs) => Ok(outputs
                .into_iter()
                .map(|o| CheckedOutput {
                    type_name: crate::name::Name::from(o.type_name.as_str()),
                    payload: o.payload,
                    tags: o.tags,
                    visibility: o.visibility,
                    routing: o.routing,
                    text: None,
                    placement: None,
                })
                .collect()),
            Err(r) => Err(r.into_failure()),
        },
        given_back: outcome.given_back,
    }
}
