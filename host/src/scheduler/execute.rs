//! The worker side of an invocation: build what the plugin sees, call it in its sandbox,
//! and check everything it returns before the scheduler may publish any of it. Runs on a
//! blocking thread, so schema validation of outputs happens in parallel across workers.

use crate::artifact::Visibility;
use crate::blackboard::Store;
use crate::invocation::InvocationRecord;
use crate::plugin::bindings::types as wit;
use crate::plugin::convert::{artifact_to_wit, visibility_from_wit};
use crate::plugin::{BoardAccess, Fault, FaultKind, InvokeError};
use crate::workflow::Workflow;
use std::sync::Arc;
use std::time::Instant;

/// An output that passed every check and may be published.
#[derive(Debug, Clone)]
pub struct CheckedOutput {
    /// Its type.
    pub type_name: String,
    /// Its parsed, schema-valid payload.
    pub payload: serde_json::Value,
    /// Tags.
    pub tags: Vec<String>,
    /// Visibility.
    pub visibility: Visibility,
}

/// The result of running one invocation.
pub struct Executed {
    /// The invocation, as claimed.
    pub record: InvocationRecord,
    /// Host time from the claim to the start of the plugin call (inputs fetched,
    /// invocation built, worker thread reached).
    pub dispatch: std::time::Duration,
    /// Its checked outputs, or why there are none.
    pub result: Result<Vec<CheckedOutput>, InvokeError>,
}

/// Run `record` to completion (or fault).
pub fn execute(
    wf: &Workflow,
    store: &Arc<dyn Store>,
    record: InvocationRecord,
    claimed: Instant,
) -> Executed {
    let mut dispatch = std::time::Duration::ZERO;
    let result = run(wf, store, &record, claimed, &mut dispatch);
    Executed {
        record,
        dispatch,
        result,
    }
}

fn internal(message: String) -> InvokeError {
    InvokeError::Plugin(wit::PluginError::Failed(format!("host: {message}")))
}

fn run(
    wf: &Workflow,
    store: &Arc<dyn Store>,
    record: &InvocationRecord,
    claimed: Instant,
    dispatch: &mut std::time::Duration,
) -> Result<Vec<CheckedOutput>, InvokeError> {
    let agent = wf
        .agent(&record.agent)
        .ok_or_else(|| internal(format!("no agent named '{}'", record.agent)))?;
    let mut inputs = Vec::with_capacity(record.inputs.len());
    for id in &record.inputs {
        let a = store
            .artifact(id)
            .map_err(|e| internal(e.to_string()))?
            .ok_or_else(|| internal(format!("input artifact {id} is missing")))?;
        inputs.push(artifact_to_wit(&a));
    }
    let phase = match &record.work_item {
        Some(w) => store
            .work_item(w)
            .map_err(|e| internal(e.to_string()))?
            .and_then(|w| wf.phase_context.get(&w.phase)),
        None => None,
    };
    // The phase's instructions come first in the context.
    let context = phase
        .map(|p| {
            let mut instructions = p.instructions.clone();
            instructions.workflow_id = record.workflow_id.clone();
            instructions.depth = record.depth;
            vec![instructions]
        })
        .unwrap_or_default();
    let invocation = wit::Invocation {
        agent: record.agent.clone(),
        invocation_id: record.id.clone(),
        workflow_id: record.workflow_id.clone(),
        phase: phase.map(|p| p.info.clone()),
        inputs,
        context,
        config: agent.plugin.config_json.clone(),
    };
    let board = BoardAccess {
        store: store.clone(),
        workflow_id: record.workflow_id.clone(),
        labels: agent.plugin.labels.clone(),
        tenant: agent.plugin.tenant.clone(),
    };
    *dispatch = claimed.elapsed();
    let outputs = match &agent.native {
        Some(native) => native.handle(&invocation).map_err(InvokeError::Plugin)?,
        None => agent.plugin.handle(&invocation, Some(board))?,
    };
    check_outputs(wf, &agent.plugin, outputs)
}

fn invalid(message: String) -> InvokeError {
    InvokeError::Fault(Fault {
        kind: FaultKind::InvalidOutput,
        message,
    })
}

/// Check count, size, type, declaration, JSON and schema of every output. One bad output
/// refuses them all: an invocation publishes whole or not at all.
fn check_outputs(
    wf: &Workflow,
    plugin: &crate::plugin::LoadedPlugin,
    outputs: Vec<wit::Output>,
) -> Result<Vec<CheckedOutput>, InvokeError> {
    let limits = &plugin.limits;
    if outputs.len() > limits.max_outputs {
        return Err(invalid(format!(
            "returned {} outputs; its limit is {}",
            outputs.len(),
            limits.max_outputs
        )));
    }
    let mut checked = Vec::with_capacity(outputs.len());
    for (i, out) in outputs.into_iter().enumerate() {
        if out.payload.len() > limits.max_output_bytes {
            return Err(invalid(format!(
                "output #{i} ({}) is {} bytes; its limit is {}",
                out.type_name,
                out.payload.len(),
                limits.max_output_bytes
            )));
        }
        if !plugin.info.publishes.is_empty() && !plugin.info.publishes.contains(&out.type_name) {
            return Err(invalid(format!(
                "output #{i} has type '{}', which the plugin does not declare in `publishes` ({})",
                out.type_name,
                plugin.info.publishes.join(", ")
            )));
        }
        let payload: serde_json::Value = serde_json::from_str(&out.payload)
            .map_err(|e| invalid(format!("output #{i} ({}) is not JSON: {e}", out.type_name)))?;
        wf.types
            .validate(&out.type_name, &payload)
            .map_err(|e| invalid(format!("output #{i}: {e}")))?;
        checked.push(CheckedOutput {
            type_name: out.type_name,
            payload,
            tags: out.tags,
            visibility: out.visibility.map(visibility_from_wit).unwrap_or_default(),
        });
    }
    Ok(checked)
}
