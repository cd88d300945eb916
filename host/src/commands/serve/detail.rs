//! What a person inspecting a run asks beyond the listings: one work item's story (its
//! attempts and refusals, what it duplicates and discovered), a run's invocations (the
//! faults among them), and the artifact types a run knows with their schemas (a publish
//! form is generated from them). Operator reads: invocations carry no visibility of
//! their own, so a tenant's token reads none of this.

use super::api::{ApiError, ApiResult, AppState, ErrorBody, Query, cursor_of, page_limit};
use super::auth::Access;
use axum::Extension;
use axum::Json;
use axum::extract::{Path, State};
use murmur::artifact::ArtifactId;
use murmur::invocation::InvocationRecord;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::{IntoParams, ToSchema};

/// One invocation: an agent's run on its inputs, with what went wrong, if anything.
#[derive(Serialize, ToSchema)]
pub(crate) struct InvocationView {
    id: String,
    agent: String,
    /// The work item it serves.
    work_item: Option<String>,
    /// queued, running, done or failed.
    status: String,
    /// Times it was claimed.
    attempts: u32,
    inputs: Vec<String>,
    outputs: Vec<String>,
    /// Cascade depth of its inputs.
    depth: u32,
    priority: String,
    /// Whether it only watches the work it serves.
    observer: bool,
    /// What went wrong, if it failed (or, while it waits for a retry, why).
    error: Option<String>,
    /// The fault class, when the plugin misbehaved: trap, timeout, memory, denied,
    /// invalid_output.
    fault: Option<String>,
    /// Times it was put back in the queue.
    retries: u32,
    /// Times a validator rejected its outputs.
    rejections: u32,
    /// Why its previous attempt did not publish (the validators' reasons, or the error).
    feedback: Vec<String>,
}

impl From<&InvocationRecord> for InvocationView {
    fn from(r: &InvocationRecord) -> Self {
        Self {
            id: r.id.to_string(),
            agent: r.agent.to_string(),
            work_item: r.work_item.as_ref().map(|w| w.to_string()),
            status: text(&r.status),
            attempts: r.attempts,
            inputs: r.inputs.iter().map(|i| i.to_string()).collect(),
            outputs: r.outputs.iter().map(|o| o.to_string()).collect(),
            depth: r.depth,
            priority: text(&r.priority),
            observer: r.observer,
            error: r.error().map(str::to_string),
            fault: r.fault().map(|f| f.as_str().to_string()),
            retries: r.retries(),
            rejections: r.rejections(),
            feedback: r.feedback().to_vec(),
        }
    }
}

/// A unit enum's name as it is serialized (`queued`, `high`).
fn text<T: serde::Serialize>(value: &T) -> String {
    match serde_json::to_value(value) {
        Ok(Value::String(s)) => s,
        Ok(other) => other.to_string(),
        Err(_) => String::new(),
    }
}

/// Invocation filter and page.
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct InvocationFilter {
    /// Only this agent's.
    agent: Option<String>,
    /// Only those serving this work item.
    work_item: Option<String>,
    /// Only those with a fault class (`true`), or only those without (`false`).
    faulted: Option<bool>,
    /// Only those that failed for good, were retried or had outputs rejected.
    troubled: Option<bool>,
    /// Where the last page ended (its `next`).
    cursor: Option<String>,
    /// At most this many (1 to 1000, default 100).
    #[param(minimum = 1, maximum = 1000)]
    limit: Option<usize>,
}

/// A page of a run's invocations.
#[derive(Serialize, ToSchema)]
pub(crate) struct InvocationPage {
    /// In creation order.
    items: Vec<InvocationView>,
    /// Pass as `cursor` for the next page; null on the last.
    next: Option<String>,
}

fn work_id(text: &str, name: &str) -> ApiResult<ArtifactId> {
    text.parse().map_err(|_| {
        ApiError::new(
            axum::http::StatusCode::BAD_REQUEST,
            format!("{name} '{text}': not an id"),
        )
    })
}

/// List a run's invocations (by agent, work item, fault), a page at a time.
#[utoipa::path(get, path = "/v1/workflows/{id}/invocations", params(("id" = String, Path), InvocationFilter),
    responses((status = 200, body = InvocationPage), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub(crate) async fn list_invocations(
    State(runs): State<AppState>,
    Extension(access): Extension<Access>,
    Path(id): Path<String>,
    Query(filter): Query<InvocationFilter>,
) -> ApiResult<Json<InvocationPage>> {
    access.operator_only("invocations")?;
    let _reading = runs.record(&id)?;
    let limit = page_limit(filter.limit)?;
    let from = cursor_of(filter.cursor.as_deref())?;
    let work_item = filter
        .work_item
        .as_deref()
        .map(|w| work_id(w, "work_item"))
        .transpose()?;
    let mut items = Vec::new();
    let mut next = None;
    for (position, r) in runs
        .store()
        .invocations(&id)?
        .iter()
        .enumerate()
        .skip(from as usize)
    {
        let troubled = r.retries() > 0
            || r.rejections() > 0
            || r.status == murmur::invocation::InvocationStatus::Failed;
        if filter.agent.as_deref().is_some_and(|a| *r.agent != *a)
            || work_item
                .as_ref()
                .is_some_and(|w| r.work_item.as_ref() != Some(w))
            || filter.faulted.is_some_and(|f| r.fault().is_some() != f)
            || filter.troubled.is_some_and(|t| troubled != t)
        {
            continue;
        }
        if items.len() == limit {
            next = Some(position.to_string());
            break;
        }
        items.push(InvocationView::from(r));
    }
    Ok(Json(InvocationPage { items, next }))
}

/// One work item and its story.
#[derive(Serialize, ToSchema)]
pub(crate) struct WorkStory {
    /// The work item as the work listing gives it: phase, status, priority, reason,
    /// blockers, duplicate_of, routing, recovery_of, approval.
    #[schema(value_type = Object)]
    work: Value,
    /// The invocations that served it, in creation order: attempts, errors, faults,
    /// the validators' reasons.
    invocations: Vec<InvocationView>,
    /// Later discoveries recorded as duplicates of it.
    duplicates: Vec<String>,
    /// Work its invocations discovered.
    discovered: Vec<String>,
}

/// One work item: its record, the invocations that served it, its duplicates and the
/// work it discovered.
#[utoipa::path(get, path = "/v1/workflows/{id}/work/{work_id}",
    params(("id" = String, Path), ("work_id" = String, Path)),
    responses((status = 200, body = WorkStory), (status = 404, body = ErrorBody)))]
pub(crate) async fn get_work(
    State(runs): State<AppState>,
    Extension(access): Extension<Access>,
    Path((id, work)): Path<(String, String)>,
) -> ApiResult<Json<WorkStory>> {
    access.operator_only("a work item's story")?;
    let _reading = runs.record(&id)?;
    let missing = || ApiError::not_found(format!("no work item {work} in run {id}"));
    let wid: ArtifactId = work.parse().map_err(|_| missing())?;
    let store = runs.store();
    let item = store
        .work_item(&wid)?
        .filter(|w| *w.workflow_id == *id)
        .ok_or_else(missing)?;
    let mut duplicates = Vec::new();
    let mut discovered = Vec::new();
    for w in store.work_items(&id)? {
        if w.duplicate_of() == Some(wid) {
            duplicates.push(w.id.to_string());
        }
        if w.parent_work == Some(wid) {
            discovered.push(w.id.to_string());
        }
    }
    let invocations = store
        .invocations(&id)?
        .iter()
        .filter(|r| r.work_item.as_ref() == Some(&wid))
        .map(InvocationView::from)
        .collect();
    Ok(Json(WorkStory {
        work: serde_json::to_value(&item).map_err(|e| ApiError::internal(e.to_string()))?,
        invocations,
        duplicates,
        discovered,
    }))
}

/// An artifact type a run knows.
#[derive(Serialize, ToSchema)]
pub(crate) struct TypeView {
    name: String,
    /// Its JSON Schema.
    #[schema(value_type = Object)]
    schema: Value,
    /// Whether the host ships it (else the manifest or a hot-loaded bundle declares it).
    builtin: bool,
}

/// The artifact types a run knows.
#[derive(Serialize, ToSchema)]
pub(crate) struct TypeList {
    /// By name.
    types: Vec<TypeView>,
}

/// The artifact types a run knows, with their JSON Schemas: what it accepts to publish.
#[utoipa::path(get, path = "/v1/workflows/{id}/types", params(("id" = String, Path)),
    responses((status = 200, body = TypeList), (status = 404, body = ErrorBody)))]
pub(crate) async fn list_types(
    State(runs): State<AppState>,
    Path(id): Path<String>,
) -> ApiResult<Json<TypeList>> {
    let record = runs.record(&id)?;
    let types = runs
        .types(&record)?
        .types()
        .map(|t| TypeView {
            name: t.name.clone(),
            schema: t.schema.clone(),
            builtin: t.builtin,
        })
        .collect();
    Ok(Json(TypeList { types }))
}
