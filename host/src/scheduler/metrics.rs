//! WorkflowMetrics: the host's periodic account of a run, published on the blackboard so
//! agents (a monitor, a planner) can react to it like to any artifact. Published when
//! counts have changed, at most once per `[monitoring] interval_ms`, and once more when the
//! run goes idle — coalesced, never one per artifact.

use crate::blackboard::tally::Tally;
use crate::blackboard::{Store, StoreError};
use crate::workflow::Workflow;
use serde_json::{Value, json};

/// The WorkflowMetrics payload of `workflow_id` now: from the store's running tally when
/// it keeps one, otherwise counted from its records.
pub(super) fn snapshot(
    wf: &Workflow,
    store: &dyn Store,
    workflow_id: &str,
) -> Result<Value, StoreError> {
    let artifacts = store.counts(workflow_id)?.total;
    let tally = Tally::of(store, workflow_id)?;
    Ok(json!({
        "phases": tally.phase_counts(wf.manifest.phases.iter().map(|p| p.name.clone())),
        "artifacts": artifacts,
        "invocations": tally.ran,
        "work": tally.work,
    }))
}
