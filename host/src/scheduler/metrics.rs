//! WorkflowMetrics: the host's periodic account of a run, published on the blackboard so
//! agents (a monitor, a planner) can react to it like to any artifact. Published when
//! counts have changed, at most once per `[monitoring] interval_ms`, and once more when the
//! run goes idle — coalesced, never one per artifact.

use crate::blackboard::{Store, StoreError};
use crate::invocation::InvocationStatus;
use crate::summary::{WorkCounters, phase_counts};
use crate::workflow::Workflow;
use serde_json::{Value, json};

/// The WorkflowMetrics payload of `workflow_id` now.
pub fn snapshot(wf: &Workflow, store: &dyn Store, workflow_id: &str) -> Result<Value, StoreError> {
    let mut payload = Value::Null;
    let artifacts = store.counts(workflow_id)?.total;
    store.scan(workflow_id, &mut |work, invocations| {
        let phases = phase_counts(
            work.iter().copied(),
            wf.manifest.phases.iter().map(|p| p.name.clone()),
        );
        let ran = invocations
            .iter()
            .filter(|i| matches!(i.status, InvocationStatus::Done | InvocationStatus::Failed))
            .count();
        payload = json!({
            "phases": phases,
            "artifacts": artifacts,
            "invocations": ran,
            "work": WorkCounters::from_records(work.iter().copied(), invocations.iter().copied()),
        });
    })?;
    Ok(payload)
}
