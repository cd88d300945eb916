//! The worker side of an invocation: build what the plugin sees (inputs, pinned host
//! context, the context providers' selection), call it in its sandbox, and check
//! everything it returns — limits, declarations, JSON, schemas, routing of `auto`
//! discoveries, built-in checks and validator plugins — before the scheduler may publish
//! any of it. Runs as a worker task outside the run's lock, so all of this happens in
//! parallel across invocations.

use crate::artifact::Visibility;
use crate::blackboard::Store;
use crate::context;
use crate::invocation::FaultKind;
use crate::invocation::InvocationRecord;
use crate::plugin::bindings::types as wit;
use crate::plugin::convert::visibility_from_wit;
use crate::plugin::{BoardAccess, ContextSource, Fault, InvokeError, LlmAccess, LoadedPlugin};
use crate::schema::{HOST_ONLY, PREVIOUS_ATTEMPT, WORK_DISCOVERY};
use crate::validation::{self, Refusal};
use crate::work::Routing;
use crate::workflow::Workflow;
use std::sync::Arc;
use std::time::Instant;

/// An output that passed every check and may be published.
#[derive(Debug, Clone)]
pub(crate) struct CheckedOutput {
    /// Its type.
    pub type_name: crate::name::Name,
    /// Its parsed, schema-valid payload.
    pub payload: serde_json::Value,
    /// Tags.
    pub tags: Vec<String>,
    /// Visibility.
    pub visibility: Visibility,
    /// How the router placed it (a WorkDiscovery whose phase was `auto` or unknown).
    pub routing: Option<Routing>,
    /// The payload as the plugin wrote it (kept so the next plugin gets it without
    /// re-serialising); `None` once the host changed the payload.
    pub text: Option<Box<str>>,
    /// For a WorkDiscovery, when a plugin or an embedding model scores duplicates: its
    /// placement, decided before the commit (see `crate::placement`).
    pub placement: Option<Box<crate::placement::Placement>>,
}

/// Why an attempt published nothing.
#[derive(Debug, Clone)]
pub(super) enum Failure {
    /// The plugin erred or faulted, or its outputs broke a rule.
    Invoke(InvokeError),
    /// A validator refused the outputs.
    Refused(Refusal),
}

impl Failure {
    /// Its class, as metrics and traces name it: the fault's class, `plugin_error` or
    /// `refused`.
    pub(super) fn class(&self) -> String {
        match self {
            Failure::Invoke(InvokeError::Fault(f)) => f.kind.to_string(),
            Failure::Invoke(InvokeError::Plugin(_)) => "plugin_error".into(),
            Failure::Refused(_) => "refused".into(),
        }
    }
}

impl From<InvokeError> for Failure {
    fn from(e: InvokeError) -> Self {
        Failure::Invoke(e)
    }
}

/// The result of running one invocation.
pub(super) struct Executed {
    /// The invocation, as claimed.
    pub record: InvocationRecord,
    /// Host time from the claim to the start of the plugin call (inputs fetched,
    /// invocation built, worker thread reached).
    pub dispatch: std::time::Duration,
    /// From the plugin call's start to its outputs checked (validators included).
    pub ran: std::time::Duration,
    /// Its checked outputs, or why there are none.
    pub result: Result<Vec<CheckedOutput>, Failure>,
    /// A model call of this invocation (the agent's or a validator's) could not be made
    /// for a reason not the work's — the provider out of reach, or the run stopping: a
    /// failure then sends it back to the queue.
    pub given_back: bool,
}

/// Run `record` to completion (or fault). A future: while the plugin waits in a host call
/// (a model's answer), its thread runs other invocations.
pub(super) async fn execute(
    wf: &Arc<Workflow>,
    store: &Arc<dyn Store>,
    record: InvocationRecord,
    claimed: Instant,
) -> Executed {
    let mut dispatch = std::time::Duration::ZERO;
    let outage = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let result = run(wf, store, &record, claimed, &mut dispatch, &outage).await;
    Executed {
        record,
        dispatch,
        ran: claimed.elapsed().saturating_sub(dispatch),
        result,
        given_back: outage.load(std::sync::atomic::Ordering::Relaxed),
    }
}

fn internal(message: String) -> InvokeError {
    InvokeError::Plugin(wit::PluginError::Failed(format!("host: {message}")))
}

async fn run(
    wf: &Arc<Workflow>,
    store: &Arc<dyn Store>,
    record: &InvocationRecord,
    claimed: Instant,
    dispatch: &mut std::time::Duration,
    outage: &Arc<std::sync::atomic::AtomicBool>,
) -> Result<Vec<CheckedOutput>, Failure> {
    let agent = wf
        .agent(&record.agent)
        .ok_or_else(|| internal(format!("no agent named '{}'", record.agent)))?;
    let mut inputs = Vec::with_capacity(record.inputs.len());
    for id in &record.inputs {
        let a = store
            .artifact(id)
            .map_err(|e| internal(e.to_string()))?
            .ok_or_else(|| internal(format!("input artifact {id} is missing")))?;
        inputs.push(a);
    }
    let phase_name = match &record.work_item {
        Some(w) => store.work_phase(w).map_err(|e| internal(e.to_string()))?,
        None => None,
    };
    // The phase as this agent receives it: with the run's lessons it may see.
    let phase = phase_name
        .as_ref()
        .and_then(|name| wf.phase_for(name.as_str(), &agent.plugin.viewer()));
    let phase = phase.as_deref();
    let previous = (!record.feedback().is_empty()).then(|| previous_attempt(record));
    let mut reuse = context::Reuse::take();
    let mut invocation = wit::Invocation {
        agent: record.agent.as_str().to_owned(),
        invocation_id: String::from(&*record.id.text()),
        workflow_id: record.workflow_id.as_str().to_owned(),
        phase: phase.map(|p| p.info.clone()),
        inputs: inputs.iter().map(|a| reuse.wit(a)).collect(),
        context: Vec::new(),
        config: agent.plugin.config_json.clone(),
    };
    let limit = agent.plugin.limits.max_input_bytes;
    let input_bytes: usize = invocation.inputs.iter().map(|a| a.payload.len()).sum();
    let plugin = &agent.plugin;
    let (source, pinned) = if plugin.context_on_demand {
        // Nothing is chosen unless the agent asks (see `context::OnDemand`).
        let source = if plugin.imports_context && agent.native.is_none() {
            let on_demand = context::OnDemand {
                wf: wf.clone(),
                store: store.clone(),
                agent: plugin.name.clone(),
                inputs,
                phase: phase_name,
                workflow_id: record.workflow_id.clone(),
                depth: record.depth,
                previous,
                call: (!wf.context_providers.is_empty()).then(|| invocation.clone()),
                reuse,
            };
            ContextSource::OnDemand(Box::new(move || on_demand.choose()))
        } else {
            ContextSource::Empty
        };
        (source, 0)
    } else {
        // Pinned host context first: the phase's instructions, then why the last attempt
        // was refused; then the providers' selection, within the input budget.
        invocation.context =
            context::pinned(phase, &invocation.workflow_id, record.depth, previous);
        let pinned = invocation.context.len();
        let chosen = context::select(
            wf,
            store,
            agent,
            &inputs,
            &invocation.workflow_id,
            Some(&invocation),
            &mut reuse,
        );
        drop(reuse);
        invocation.context.extend(chosen);
        context::fit(&mut invocation.context, pinned, input_bytes, limit);
        let source = if plugin.imports_context {
            ContextSource::Ready(Arc::new(invocation.context.clone()))
        } else {
            ContextSource::Empty
        };
        (source, pinned)
    };
    // On every way out, the artifacts handed to this call go back for the next one.
    let handed = context::Handed::new(invocation, pinned);
    if input_bytes > limit {
        return Err(internal(format!(
            "the inputs are {input_bytes} bytes, over the plugin's max_input_bytes ({limit}); it was not called"
        ))
        .into());
    }
    let invocation = &handed.invocation;
    // What each plugin of this invocation (the agent, its validators) may reach.
    let phase_name = phase.map(|p| p.info.name.clone()).unwrap_or_default();
    let board = |p: &LoadedPlugin| {
        let mut access = BoardAccess::granted(store, &record.workflow_id, p);
        if let (Some(a), Some(host)) = (access.as_mut(), &wf.llm)
            && p.granted(crate::plugin::Capability::Llm)
        {
            a.llm = Some(LlmAccess {
                host: host.clone(),
                phase: phase_name.clone(),
                given_back: outage.clone(),
            });
        }
        access
    };
    *dispatch = claimed.elapsed();
    let access = board(&agent.plugin);
    let mut outputs = match &agent.native {
        Some(native) => native.handle(invocation).map_err(InvokeError::Plugin)?,
        None => agent.plugin.handle(invocation, access, source).await?,
    };
    let mut checked = check_outputs(
        &wf.types,
        &agent.plugin.limits,
        &agent.plugin.info.publishes,
        &outputs,
    )?;

    // Route discoveries that name no known phase; validators see the routed payload.
    if let Some(router) = &wf.router {
        for (out, wire) in checked.iter_mut().zip(outputs.iter_mut()) {
            if out.type_name == WORK_DISCOVERY {
                out.routing = router.place(&mut out.payload, &record.agent, &record.workflow_id);
                if out.routing.is_some() {
                    out.text = None;
                }
                if out.routing.is_some() {
                    wire.payload = out.payload.to_string();
                }
            }
        }
    }

    if wf.manifest.policies.validation.builtin {
        let view: Vec<(&str, &serde_json::Value)> = checked
            .iter()
            .map(|o| (o.type_name.as_str(), &o.payload))
            .collect();
        let reasons = validation::builtin(phase.map(|p| p.info.name.as_str()), &view);
        if !reasons.is_empty() {
            return Err(Failure::Refused(Refusal::Rejected {
                by: "builtin".into(),
                reasons,
            }));
        }
    }
    if !wf.validators.is_empty() {
        validation::run_plugins(&wf.validators, board, invocation, &outputs)
            .await
            .map_err(Failure::Refused)?;
    }
    Ok(checked)
}

/// The `PreviousAttempt` context artifact of a retried invocation.
fn previous_attempt(record: &InvocationRecord) -> wit::Artifact {
    let payload = serde_json::json!({
        "attempt": record.attempts.saturating_sub(1).max(1),
        "reasons": record.feedback(),
    });
    wit::Artifact {
        id: format!("previous-attempt/{}/{}", record.id, record.attempts),
        parent_ids: record.inputs.iter().map(|i| i.to_string()).collect(),
        depth: record.depth,
        ..crate::plugin::convert::unpublished(
            PREVIOUS_ATTEMPT,
            &payload,
            "host",
            record.workflow_id.as_str(),
        )
    }
}

fn invalid(message: String) -> InvokeError {
    InvokeError::Fault(Fault {
        kind: FaultKind::InvalidOutput,
        message,
    })
}

/// Check count, size, type, declaration (against `publishes`, the plugin's `describe()`;
/// empty: any type), JSON and schema of every output. One bad output refuses them all:
/// an invocation publishes whole or not at all.
pub(crate) fn check_outputs(
    types: &crate::schema::TypeRegistry,
    limits: &crate::plugin::PluginLimits,
    publishes: &[String],
    outputs: &[wit::Output],
) -> Result<Vec<CheckedOutput>, InvokeError> {
    if outputs.len() > limits.max_outputs {
        return Err(invalid(format!(
            "returned {} outputs; its limit is {}",
            outputs.len(),
            limits.max_outputs
        )));
    }
    let mut checked = Vec::with_capacity(outputs.len());
    for (i, out) in outputs.iter().enumerate() {
        if out.payload.len() > limits.max_output_bytes {
            return Err(invalid(format!(
                "output #{i} ({}) is {} bytes; its limit is {}",
                out.type_name,
                out.payload.len(),
                limits.max_output_bytes
            )));
        }
        if HOST_ONLY.contains(&out.type_name.as_str()) {
            return Err(invalid(format!(
                "output #{i} has type '{}', which only the host publishes",
                out.type_name
            )));
        }
        if !publishes.is_empty() && !publishes.contains(&out.type_name) {
            return Err(invalid(format!(
                "output #{i} has type '{}', which the plugin does not declare in `publishes` ({})",
                out.type_name,
                publishes.join(", ")
            )));
        }
        let payload: serde_json::Value = serde_json::from_str(&out.payload)
            .map_err(|e| invalid(format!("output #{i} ({}) is not JSON: {e}", out.type_name)))?;
        types
            .validate(&out.type_name, &payload)
            .map_err(|e| invalid(format!("output #{i}: {e}")))?;
        checked.push(CheckedOutput {
            type_name: crate::name::Name::new(&out.type_name),
            payload,
            tags: out.tags.clone(),
            visibility: out
                .visibility
                .clone()
                .map(visibility_from_wit)
                .unwrap_or_default(),
            routing: None,
            text: Some(out.payload.as_str().into()),
            placement: None,
        });
    }
    Ok(checked)
}
