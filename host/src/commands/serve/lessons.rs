//! API v1's lessons: what runs left for the next runs of their workflow, read by anyone
//! whose token may see their evidence, forgotten and distilled by the operator.

use super::api::{ApiError, ApiResult, AppState};
use super::auth::Access;
use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use murmur::artifact::Viewer;
use murmur::lessons::{Lesson, LessonChange};
use murmur::run::RunStatus;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

/// A kept lesson.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct LessonView {
    /// Its id (a UUIDv7).
    id: String,
    /// The workflow's name: the lesson reaches its later runs.
    workflow: String,
    /// The phase whose instructions it joins.
    phase: String,
    /// What agents of the phase should do differently.
    text: String,
    /// The artifacts it rests on.
    evidence: Vec<String>,
    /// The run it was first distilled from.
    source_run: String,
    /// Runs that used it.
    uses: u32,
    /// Of those, runs where its problem did not come back.
    helped: u32,
    /// Uses in a row that did not help.
    misses: u32,
    /// Retired: it stopped helping or lost its place; no run reads it.
    retired: bool,
    /// The problems it is about.
    about: Vec<String>,
    /// Its tenant, when its evidence belongs to one.
    #[serde(skip_serializing_if = "Option::is_none")]
    tenant: Option<String>,
    /// Every visibility of its evidence (`{"kind": "tenant", "value": "acme"}`, …).
    #[schema(value_type = Vec<Object>)]
    visibility: Vec<serde_json::Value>,
    /// The retrospective that wrote it.
    by: String,
    /// When it was first kept, and last changed (ms since the Unix epoch).
    created_at_ms: u64,
    updated_at_ms: u64,
}

impl From<Lesson> for LessonView {
    fn from(l: Lesson) -> Self {
        Self {
            tenant: l.tenant().map(str::to_string),
            visibility: l
                .visibility
                .iter()
                .filter_map(|v| serde_json::to_value(v).ok())
                .collect(),
            id: l.id,
            workflow: l.workflow,
            phase: l.phase,
            text: l.text,
            evidence: l.evidence,
            source_run: l.source_run,
            uses: l.uses,
            helped: l.helped,
            misses: l.misses,
            retired: l.retired,
            about: l.about,
            by: l.by,
            created_at_ms: l.created_at_ms,
            updated_at_ms: l.updated_at_ms,
        }
    }
}

/// Kept lessons.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct LessonList {
    lessons: Vec<LessonView>,
}

/// `GET /v1/lessons` filters.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct LessonFilter {
    /// Only this workflow's (by its name).
    workflow: Option<String>,
    /// Only this phase's.
    phase: Option<String>,
}

/// What a distillation did (the run summary's `lessons.distilled`).
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct DistilledView {
    /// Findings the run's records hold.
    findings: usize,
    /// The retrospective asked.
    retrospective: Option<String>,
    /// Lessons it proposed.
    proposed: usize,
    /// New lessons kept, kept lessons merged into, and lessons dropped, by id.
    added: Vec<String>,
    merged: Vec<String>,
    dropped: Vec<String>,
    /// Why nothing was learned, if the retrospective failed or was refused.
    error: Option<String>,
}

/// Whether `access` may read `lesson`: a tenant's token, only what that tenant may see.
fn may_read(access: &Access, lesson: &Lesson) -> bool {
    match &access.tenant {
        None => true,
        Some(t) => lesson.visible_to(&Viewer {
            name: "",
            labels: &[],
            tenant: Some(t),
            operator: false,
        }),
    }
}

/// The lesson `id`, if `access` may read it.
fn lesson(runs: &AppState, access: &Access, id: &str) -> ApiResult<Lesson> {
    runs.store()
        .lessons(None)?
        .into_iter()
        .find(|l| l.id == id && may_read(access, l))
        .ok_or_else(|| ApiError::not_found(format!("no lesson {id}")))
}

#[utoipa::path(get, path = "/v1/lessons", params(LessonFilter),
    responses((status = 200, body = LessonList)))]
pub(crate) async fn list_lessons(
    State(runs): State<AppState>,
    axum::Extension(access): axum::Extension<Access>,
    Query(filter): Query<LessonFilter>,
) -> ApiResult<Json<LessonList>> {
    let lessons = runs
        .store()
        .lessons(filter.workflow.as_deref())?
        .into_iter()
        .filter(|l| filter.phase.as_ref().is_none_or(|p| *p == l.phase))
        .filter(|l| may_read(&access, l))
        .map(LessonView::from)
        .collect();
    Ok(Json(LessonList { lessons }))
}

#[utoipa::path(get, path = "/v1/lessons/{lesson}", params(("lesson" = String, Path)),
    responses((status = 200, body = LessonView), (status = 404, body = super::api::ErrorBody)))]
pub(crate) async fn get_lesson(
    State(runs): State<AppState>,
    axum::Extension(access): axum::Extension<Access>,
    Path(id): Path<String>,
) -> ApiResult<Json<LessonView>> {
    Ok(Json(lesson(&runs, &access, &id)?.into()))
}

#[utoipa::path(delete, path = "/v1/lessons/{lesson}", params(("lesson" = String, Path)),
    responses((status = 204), (status = 404, body = super::api::ErrorBody)))]
pub(crate) async fn forget_lesson(
    State(runs): State<AppState>,
    axum::Extension(access): axum::Extension<Access>,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    access.operator_only("forgetting a lesson")?;
    let found = lesson(&runs, &access, &id)?;
    runs.store().change_lessons(&LessonChange {
        put: Vec::new(),
        forget: vec![found.id],
    })?;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(post, path = "/v1/workflows/{id}/lessons/distill", params(("id" = String, Path)),
    responses((status = 200, body = DistilledView), (status = 404, body = super::api::ErrorBody),
        (status = 409, body = super::api::ErrorBody), (status = 422, body = super::api::ErrorBody)))]
pub(crate) async fn distill_run(
    State(runs): State<AppState>,
    axum::Extension(access): axum::Extension<Access>,
    Path(id): Path<String>,
) -> ApiResult<Json<DistilledView>> {
    access.operator_only("distilling lessons")?;
    let record = runs.record(&id)?.record.clone();
    if record.status == RunStatus::Running || runs.is_live(&id) {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            format!("run {id} has not ended: its lessons are distilled when it does"),
        ));
    }
    let loading = record.clone();
    let wf = tokio::task::spawn_blocking(move || super::super::lessons::workflow_of(&loading))
        .await
        .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?
        .map_err(|e| ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, format!("{e:#}")))?;
    if wf.retrospective.is_none() {
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            format!("run {id}: its manifest names no retrospective (`[lessons] retrospective`)"),
        ));
    }
    let store = runs.shared_store();
    let judge = record.distilled.is_none();
    let d = murmur::lessons::distill::distill(&wf, &store, &record, judge).await?;
    if judge {
        let mut record = record;
        record.distilled = Some(Box::new(d.clone()));
        store.save_run(&record)?;
    }
    Ok(Json(DistilledView {
        findings: d.findings,
        retrospective: d.retrospective,
        proposed: d.proposed,
        added: d.added,
        merged: d.merged,
        dropped: d.dropped,
        error: d.error,
    }))
}
