//! HTTP API v1: the handlers, their request and answer types, and the OpenAPI document
//! generated from them (`/v1/openapi.json`).
//!
//! Every error is a JSON object `{"error": {"status", "message", "pointer"?,
//! "problems"?}}`; `pointer` is a JSON pointer into the request body where the request
//! is wrong. Bodies are read as bytes and parsed here, so a malformed body is answered
//! with its line and column, and an idempotency key is compared on the bytes received.

use super::auth::Access;
use super::events;
use super::runs::{Runs, RunsError, Source};
use axum::Extension;
use axum::Json;
use axum::body::Bytes;
use axum::extract::{FromRequestParts, Path, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use murmur::artifact::{ArtifactId, SharedArtifact, Visibility};
use murmur::graph::Graph;
use murmur::scheduler::{
    Decide, DecideError, IdempotencyKey, Problem, Publish, PublishError, Published, Request,
};
use murmur::summary::{RunStatus, RunSummary};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use sha2::Digest;
use std::sync::Arc;
use utoipa::{IntoParams, OpenApi, ToSchema};

/// The server's state, shared by every handler.
pub(crate) type AppState = Arc<Runs>;

/// The OpenAPI 3.1 document of API v1.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "murmur",
        description = "Self-improving multi-agent workflows on sandboxed WebAssembly agents: start runs, publish into them, watch and steer them.",
        version = "1"
    ),
    paths(
        start_workflow,
        list_workflows,
        get_workflow,
        pause_workflow,
        resume_workflow,
        cancel_workflow,
        publish_artifact,
        list_artifacts,
        get_artifact,
        list_work,
        approve_work,
        reject_work,
        get_graph,
        super::detail::get_work,
        super::detail::list_invocations,
        super::detail::list_types,
        super::lessons::list_lessons,
        super::lessons::get_lesson,
        super::lessons::forget_lesson,
        super::lessons::distill_run,
        events::stream,
        super::health::healthz,
        super::health::readyz,
        super::health::metrics,
    ),
    components(schemas(
        StartRequest,
        Started,
        RunListing,
        RunListingItem,
        RunCounts,
        StatusChange,
        PublishRequest,
        PublishAnswer,
        ArtifactPage,
        WorkPage,
        RejectRequest,
        Decided,
        ErrorBody,
        ErrorDetail,
        ProblemBody,
        GraphKind,
        VisibilityDoc,
        super::detail::InvocationView,
        super::detail::InvocationPage,
        super::detail::WorkStory,
        super::detail::TypeView,
        super::detail::TypeList,
        super::lessons::LessonView,
        super::lessons::LessonList,
        super::lessons::DistilledView
    )),
    modifiers(&CommonAnswers)
)]
pub(crate) struct ApiDoc;

/// The answers any operation of the API may give besides its own, added to each in the
/// document: 401 and 403 (tokens), and 413 where it takes a body. The health checks
/// need no token.
struct CommonAnswers;

impl utoipa::Modify for CommonAnswers {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::{Content, Ref, ResponseBuilder};
        let error = |description: &str| {
            ResponseBuilder::new()
                .description(description)
                .content(
                    "application/json",
                    Content::new(Some(Ref::from_schema_name("ErrorBody"))),
                )
                .build()
        };
        for (path, item) in openapi.paths.paths.iter_mut() {
            if path == "/healthz" || path == "/readyz" {
                continue;
            }
            for op in [&mut item.get, &mut item.post].into_iter().flatten() {
                let answers = &mut op.responses.responses;
                answers
                    .entry("401".into())
                    .or_insert_with(|| error("No token, or not one of the server's").into());
                answers
                    .entry("403".into())
                    .or_insert_with(|| error("The token may not do this").into());
                if op.request_body.is_some() {
                    answers
                        .entry("413".into())
                        .or_insert_with(|| error("The body is over the limit").into());
                }
            }
        }
    }
}

/// `GET /v1/openapi.json`.
pub(crate) async fn openapi() -> Response {
    match ApiDoc::openapi().to_json() {
        Ok(text) => ([(header::CONTENT_TYPE, "application/json")], text).into_response(),
        Err(e) => ApiError::internal(e.to_string()).into_response(),
    }
}

/// An error answer.
#[derive(Debug)]
pub(crate) struct ApiError {
    status: StatusCode,
    message: String,
    pointer: Option<String>,
    problems: Vec<Problem>,
}

/// The body of every error answer.
#[derive(Serialize, ToSchema)]
pub(crate) struct ErrorBody {
    error: ErrorDetail,
}

/// What went wrong.
#[derive(Serialize, ToSchema)]
pub(crate) struct ErrorDetail {
    /// The HTTP status.
    status: u16,
    /// What went wrong, for a person.
    message: String,
    /// Where in the request body, as a JSON pointer.
    #[serde(skip_serializing_if = "Option::is_none")]
    pointer: Option<String>,
    /// Every schema violation, when the body broke a schema.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    problems: Vec<ProblemBody>,
}

/// One schema violation.
#[derive(Serialize, ToSchema)]
pub(crate) struct ProblemBody {
    /// Where, as a JSON pointer into the request body.
    pointer: String,
    /// What was expected there.
    message: String,
}

impl ApiError {
    pub(crate) fn new(status: StatusCode, message: impl Into<String>) -> Self {
        Self {
            status,
            message: message.into(),
            pointer: None,
            problems: Vec::new(),
        }
    }

    pub(crate) fn at(mut self, pointer: impl Into<String>) -> Self {
        self.pointer = Some(pointer.into());
        self
    }

    pub(crate) fn internal(message: impl Into<String>) -> Self {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, message)
    }

    pub(crate) fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, message)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = ErrorBody {
            error: ErrorDetail {
                status: self.status.as_u16(),
                message: self.message,
                pointer: self.pointer,
                problems: self
                    .problems
                    .into_iter()
                    .map(|p| ProblemBody {
                        pointer: p.pointer,
                        message: p.message,
                    })
                    .collect(),
            },
        };
        (self.status, Json(body)).into_response()
    }
}

impl From<RunsError> for ApiError {
    fn from(e: RunsError) -> Self {
        let status = match &e {
            RunsError::NotFound(_) => StatusCode::NOT_FOUND,
            RunsError::Conflict { .. } | RunsError::Held(_) => StatusCode::CONFLICT,
            RunsError::Invalid(_) => StatusCode::UNPROCESSABLE_ENTITY,
            RunsError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        };
        ApiError::new(status, e.to_string())
    }
}

impl From<murmur::blackboard::StoreError> for ApiError {
    fn from(e: murmur::blackboard::StoreError) -> Self {
        ApiError::internal(format!("store: {e}"))
    }
}

pub(super) type ApiResult<T> = Result<T, ApiError>;

/// A query string read into `T`: as axum's `Query`, with a wrong parameter answered
/// like every other error (400, JSON, naming the parameter).
pub(crate) struct Query<T>(pub T);

impl<T, S> FromRequestParts<S> for Query<T>
where
    T: serde::de::DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        match axum::extract::Query::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Query(value)) => Ok(Query(value)),
            Err(rejection) => Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                format!("the query string: {}", rejection.body_text()),
            )),
        }
    }
}

/// A method a route does not take: 405, as JSON.
pub(crate) async fn method_not_allowed() -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "this route does not take that method (see /v1/openapi.json)",
    )
}

/// Parse a JSON request body: a malformed one is 400 with its line and column, one of
/// the wrong shape 422 with the JSON pointer of the field at fault.
fn parse_body<T: serde::de::DeserializeOwned>(body: &[u8]) -> ApiResult<T> {
    let value: Value = serde_json::from_slice(body).map_err(|e| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            // serde_json's message ends with the line and column.
            format!("the body is not JSON: {e}"),
        )
    })?;
    let mut track = serde_path_to_error::Track::new();
    T::deserialize(serde_path_to_error::Deserializer::new(&value, &mut track)).map_err(|e| {
        let pointer = pointer_of(&track.path());
        ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            format!(
                "the body at {}: {e}",
                if pointer.is_empty() { "/" } else { &pointer }
            ),
        )
        .at(pointer)
    })
}

/// A serde path (`a.b[2]`) as a JSON pointer (`/a/b/2`).
fn pointer_of(path: &serde_path_to_error::Path) -> String {
    use serde_path_to_error::Segment;
    let mut out = String::new();
    for segment in path.iter() {
        out.push('/');
        match segment {
            Segment::Seq { index } => out.push_str(&index.to_string()),
            Segment::Map { key } | Segment::Enum { variant: key } => {
                out.push_str(&key.replace('~', "~0").replace('/', "~1"))
            }
            Segment::Unknown => out.push('?'),
        }
    }
    out
}

/// What to start: a manifest file the server can read, or manifest text.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct StartRequest {
    /// A manifest path on the server's machine.
    manifest_path: Option<String>,
    /// Manifest text (TOML).
    manifest: Option<String>,
    /// Where the relative paths of `manifest` resolve (default: the server's directory).
    base_dir: Option<String>,
}

/// A started run.
#[derive(Serialize, ToSchema)]
pub(crate) struct Started {
    /// The run's id.
    workflow_id: String,
    /// `running`.
    status: String,
}

/// Start a workflow run.
#[utoipa::path(post, path = "/v1/workflows", request_body = StartRequest,
    responses((status = 201, body = Started), (status = 400, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub(crate) async fn start_workflow(
    State(runs): State<AppState>,
    Extension(access): Extension<Access>,
    body: Bytes,
) -> ApiResult<(StatusCode, Json<Started>)> {
    access.operator_only("starting a run")?;
    let request: StartRequest = parse_body(&body)?;
    let source = match (request.manifest_path, request.manifest) {
        (Some(path), None) if request.base_dir.is_none() => Source::Path(path.into()),
        (None, Some(text)) => Source::Text {
            text,
            base_dir: request.base_dir.map(Into::into),
        },
        _ => {
            return Err(ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "give `manifest_path`, or `manifest` and optionally `base_dir`",
            )
            .at(""));
        }
    };
    let id = runs.start(source).await?;
    Ok((
        StatusCode::CREATED,
        Json(Started {
            workflow_id: id,
            status: RunStatus::Running.to_string(),
        }),
    ))
}

/// The runs a store holds.
#[derive(Serialize, ToSchema)]
pub(crate) struct RunListing {
    /// Newest first.
    workflows: Vec<RunListingItem>,
}

/// One run.
#[derive(Serialize, ToSchema)]
pub(crate) struct RunListingItem {
    workflow_id: String,
    name: String,
    status: String,
    started_at_ms: u64,
    finished_at_ms: Option<u64>,
    /// Whether this server drives it now.
    live: bool,
    /// Its counts as it stands (a run this server drives) or as it last ended; absent
    /// for a run neither driven nor ended (its records are not read for a listing).
    counts: Option<RunCounts>,
}

/// A run's counts, for a listing.
#[derive(Serialize, ToSchema)]
pub(crate) struct RunCounts {
    artifacts: u64,
    invocations: u64,
    /// Work items pending, active, blocked or awaiting approval.
    open_work: u64,
    awaiting_approval: u64,
    /// Faults of every class.
    faults: u64,
}

impl RunCounts {
    fn of(summary: &RunSummary) -> Self {
        let phases = summary.phases.values();
        Self {
            artifacts: summary.artifacts,
            invocations: summary.invocations,
            open_work: phases
                .clone()
                .map(|p| p.pending + p.active + p.blocked + p.awaiting_approval)
                .sum(),
            awaiting_approval: phases.map(|p| p.awaiting_approval).sum(),
            faults: summary.faults.values().sum(),
        }
    }
}

/// List runs, newest first.
#[utoipa::path(get, path = "/v1/workflows", responses((status = 200, body = RunListing)))]
pub(crate) async fn list_workflows(State(runs): State<AppState>) -> ApiResult<Json<RunListing>> {
    let workflows = runs
        .store()
        .runs()?
        .into_iter()
        .map(|r| {
            let live = runs.is_live(&r.workflow_id);
            let summary = if live {
                RunSummary::of_record(runs.store(), &r).ok()
            } else {
                r.summary
                    .as_ref()
                    .and_then(|s| serde_json::from_value::<RunSummary>(s.clone()).ok())
            };
            RunListingItem {
                live,
                counts: summary.as_ref().map(RunCounts::of),
                workflow_id: r.workflow_id,
                name: r.name,
                status: r.status.to_string(),
                started_at_ms: r.started_at_ms,
                finished_at_ms: r.finished_at_ms,
            }
        })
        .collect();
    Ok(Json(RunListing { workflows }))
}

/// A run's summary: the object `murmur run --json` prints.
#[utoipa::path(get, path = "/v1/workflows/{id}", params(("id" = String, Path, description = "The run's id")),
    responses((status = 200, description = "The run summary", body = Object), (status = 404, body = ErrorBody)))]
pub(crate) async fn get_workflow(
    State(runs): State<AppState>,
    Path(id): Path<String>,
) -> ApiResult<Json<RunSummary>> {
    let record = runs.record(&id)?;
    Ok(Json(RunSummary::of_record(runs.store(), &record)?))
}

/// A run's status after a change.
#[derive(Serialize, ToSchema)]
pub(crate) struct StatusChange {
    workflow_id: String,
    status: String,
}

fn changed(id: String, status: RunStatus) -> Json<StatusChange> {
    Json(StatusChange {
        workflow_id: id,
        status: status.to_string(),
    })
}

/// Pause a running run: it claims nothing more, what runs finishes, and it waits.
#[utoipa::path(post, path = "/v1/workflows/{id}/pause", params(("id" = String, Path)),
    responses((status = 200, body = StatusChange), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub(crate) async fn pause_workflow(
    State(runs): State<AppState>,
    Extension(access): Extension<Access>,
    Path(id): Path<String>,
) -> ApiResult<Json<StatusChange>> {
    access.operator_only("pausing a run")?;
    let status = runs.pause(&id).await?;
    Ok(changed(id, status))
}

/// Resume a paused or interrupted run.
#[utoipa::path(post, path = "/v1/workflows/{id}/resume", params(("id" = String, Path)),
    responses((status = 200, body = StatusChange), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub(crate) async fn resume_workflow(
    State(runs): State<AppState>,
    Extension(access): Extension<Access>,
    Path(id): Path<String>,
) -> ApiResult<Json<StatusChange>> {
    access.operator_only("resuming a run")?;
    let status = runs.resume(&id).await?;
    Ok(changed(id, status))
}

/// Cancel a run for good.
#[utoipa::path(post, path = "/v1/workflows/{id}/cancel", params(("id" = String, Path)),
    responses((status = 200, body = StatusChange), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub(crate) async fn cancel_workflow(
    State(runs): State<AppState>,
    Extension(access): Extension<Access>,
    Path(id): Path<String>,
) -> ApiResult<Json<StatusChange>> {
    access.operator_only("cancelling a run")?;
    let status = runs.cancel(&id).await?;
    Ok(changed(id, status))
}

/// An artifact to publish into a run.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct PublishRequest {
    /// Its type, declared by the workflow (or built in).
    #[serde(rename = "type")]
    type_name: String,
    /// Its payload, checked against the type's schema.
    #[schema(value_type = Object)]
    payload: Value,
    /// Its tags.
    #[serde(default)]
    tags: Vec<String>,
    /// Who may see it (default: everyone), e.g. `{"kind": "tenant", "value": "acme"}`.
    #[serde(default)]
    #[schema(value_type = VisibilityDoc)]
    visibility: Visibility,
}

/// Who may see an artifact, as the document describes it (the host's own type is
/// `murmur::artifact::Visibility`, serialised the same way).
#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "snake_case", tag = "kind", content = "value")]
#[schema(as = Visibility)]
#[allow(dead_code)]
pub(crate) enum VisibilityDoc {
    /// Everyone in the workflow.
    Public,
    /// Only the named agents (and the producer).
    Private(Vec<String>),
    /// Agents holding at least one of these labels.
    Labels(Vec<String>),
    /// Agents of this tenant.
    Tenant(String),
}

/// A published artifact.
#[derive(Serialize, ToSchema)]
pub(crate) struct PublishAnswer {
    /// The artifact's id.
    id: String,
    /// Whether this answers a request made before with the same idempotency key.
    repeated: bool,
}

/// Publish an artifact into a run. With an `Idempotency-Key` header, the same key and
/// body publish once and answer the same; the same key with another body is 409. A run
/// that had ended goes on with the artifact.
#[utoipa::path(post, path = "/v1/workflows/{id}/artifacts", params(("id" = String, Path),
        ("Idempotency-Key" = Option<String>, Header, description = "Publish once per key (1 to 255 visible ASCII characters)",
            min_length = 1, max_length = 255, pattern = "^[!-~]+$")),
    request_body = PublishRequest,
    responses((status = 201, body = PublishAnswer), (status = 200, description = "A repeated request", body = PublishAnswer),
        (status = 400, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub(crate) async fn publish_artifact(
    State(runs): State<AppState>,
    Extension(access): Extension<Access>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult<(StatusCode, Json<PublishAnswer>)> {
    let key = match headers.get("idempotency-key") {
        Some(v) => {
            let key = v.to_str().ok().filter(|k| !k.is_empty() && k.len() <= 255);
            let Some(key) = key else {
                return Err(ApiError::new(
                    StatusCode::BAD_REQUEST,
                    "Idempotency-Key: expected 1 to 255 visible ASCII characters",
                ));
            };
            Some(IdempotencyKey {
                key: key.to_string(),
                request_sha256: hex(&sha2::Sha256::digest(&body)),
            })
        }
        None => None,
    };
    let mut request: PublishRequest = parse_body(&body)?;
    request.visibility = access.publish_as(std::mem::take(&mut request.visibility))?;
    // A run drops the publishes it had not taken when it stops (its loop ended as this
    // one came): nothing of them was published, so the request is sent again.
    for _ in 0..5 {
        let (reply, answer) = tokio::sync::oneshot::channel();
        let publish = Publish {
            type_name: request.type_name.clone(),
            payload: request.payload.clone(),
            tags: request.tags.clone(),
            visibility: request.visibility.clone(),
            key: key.clone(),
            reply,
        };
        runs.request(&id, Request::Publish(Box::new(publish)))
            .await?;
        match answer.await {
            Ok(Ok(published)) => {
                let (status, artifact, repeated) = match published {
                    Published::Created(a) => (StatusCode::CREATED, a, false),
                    Published::Repeated(a) => (StatusCode::OK, a, true),
                };
                // Answered once the file has it: a 201 is never taken back by a crash.
                runs.durable().await?;
                let id = artifact.to_string();
                return Ok((status, Json(PublishAnswer { id, repeated })));
            }
            Ok(Err(e)) => return Err(publish_error(e)),
            // The run was stopping (paused, cancelled, or ending as the request came):
            // once it has stopped, the request is answered by what it stopped as.
            Err(_) => runs.finished(&id).await,
        }
    }
    Err(ApiError::new(
        StatusCode::SERVICE_UNAVAILABLE,
        format!("run {id} stopped each time before it took the artifact; nothing was published"),
    ))
}

fn publish_error(e: PublishError) -> ApiError {
    match e {
        PublishError::UnknownType(t) => ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            format!("unknown artifact type '{t}'"),
        )
        .at("/type"),
        PublishError::Invalid {
            type_name,
            problems,
        } => {
            let problems: Vec<Problem> = problems
                .into_iter()
                .map(|p| Problem {
                    pointer: format!("/payload{}", p.pointer),
                    message: p.message,
                })
                .collect();
            let first = problems.first().map(|p| p.pointer.clone());
            let mut error = ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                format!(
                    "the payload violates the schema of '{type_name}': {}",
                    problems
                        .iter()
                        .map(|p| p.message.as_str())
                        .collect::<Vec<_>>()
                        .join("; ")
                ),
            );
            error.pointer = first;
            error.problems = problems;
            error
        }
        PublishError::KeyReused { key, artifact } => ApiError::new(
            StatusCode::CONFLICT,
            format!(
                "Idempotency-Key '{key}' was used before with another body (it published {artifact})"
            ),
        ),
        PublishError::Failed(m) => ApiError::internal(m),
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Filters and a page of artifacts.
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct ArtifactFilter {
    /// Only this type.
    #[serde(rename = "type")]
    #[param(rename = "type")]
    type_name: Option<String>,
    /// Only artifacts of work in this phase.
    phase: Option<String>,
    /// Only this producer (`user`: the manifest's inputs, `api`: published here).
    producer: Option<String>,
    /// Only artifacts of this work item.
    work_item: Option<String>,
    /// Only this visibility kind: `public`, `private`, `labels` or `tenant`.
    visibility: Option<String>,
    /// Where the last page ended (its `next_cursor`).
    cursor: Option<String>,
    /// At most this many (1 to 1000, default 100).
    #[param(minimum = 1, maximum = 1000)]
    limit: Option<usize>,
}

/// A page of artifacts.
#[derive(Serialize, ToSchema)]
pub(crate) struct ArtifactPage {
    /// The artifacts, in the order published.
    #[schema(value_type = Vec<Object>)]
    artifacts: Vec<Value>,
    /// Pass as `cursor` for the next page; absent on the last.
    #[serde(skip_serializing_if = "Option::is_none")]
    next_cursor: Option<String>,
}

/// List a run's artifacts, oldest first, filtered, a page at a time.
#[utoipa::path(get, path = "/v1/workflows/{id}/artifacts", params(("id" = String, Path), ArtifactFilter),
    responses((status = 200, body = ArtifactPage), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub(crate) async fn list_artifacts(
    State(runs): State<AppState>,
    Extension(access): Extension<Access>,
    Path(id): Path<String>,
    Query(filter): Query<ArtifactFilter>,
) -> ApiResult<Json<ArtifactPage>> {
    let _reading = runs.record(&id)?;
    let limit = filter.limit.unwrap_or(100);
    if !(1..=1000).contains(&limit) {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "limit: expected 1 to 1000",
        ));
    }
    let mut at: u64 = match &filter.cursor {
        Some(c) => c.parse().map_err(|_| {
            ApiError::new(
                StatusCode::BAD_REQUEST,
                format!("cursor '{c}': expected a next_cursor this API gave"),
            )
        })?,
        None => 0,
    };
    if let Some(v) = &filter.visibility
        && !["public", "private", "labels", "tenant"].contains(&v.as_str())
    {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            format!("visibility '{v}': expected public, private, labels or tenant"),
        ));
    }
    let work_item = match &filter.work_item {
        Some(w) => Some(w.parse::<ArtifactId>().map_err(|_| {
            ApiError::new(
                StatusCode::BAD_REQUEST,
                format!("work_item '{w}': not an id"),
            )
        })?),
        None => None,
    };
    let store = runs.store();
    let mut artifacts = Vec::new();
    const SCAN: usize = 512;
    loop {
        let batch = store.artifacts_from(&id, at, SCAN)?;
        let n = batch.len();
        for a in batch {
            at += 1;
            if access.sees(&a) && keep(store, &filter, work_item.as_ref(), &a)? {
                artifacts.push(artifact_json(&a)?);
                if artifacts.len() == limit {
                    let more = !store.artifacts_from(&id, at, 1)?.is_empty();
                    return Ok(Json(ArtifactPage {
                        artifacts,
                        next_cursor: more.then(|| at.to_string()),
                    }));
                }
            }
        }
        if n < SCAN {
            return Ok(Json(ArtifactPage {
                artifacts,
                next_cursor: None,
            }));
        }
    }
}

fn keep(
    store: &dyn murmur::Store,
    filter: &ArtifactFilter,
    work_item: Option<&ArtifactId>,
    a: &SharedArtifact,
) -> ApiResult<bool> {
    if filter
        .type_name
        .as_deref()
        .is_some_and(|t| *a.type_name != *t)
        || filter
            .producer
            .as_deref()
            .is_some_and(|p| *a.producer != *p)
        || work_item.is_some_and(|w| a.work_item.as_ref() != Some(w))
    {
        return Ok(false);
    }
    if let Some(kind) = &filter.visibility {
        let actual = match a.visibility() {
            Visibility::Public => "public",
            Visibility::Private(_) => "private",
            Visibility::Labels(_) => "labels",
            Visibility::Tenant(_) => "tenant",
        };
        if actual != kind {
            return Ok(false);
        }
    }
    if let Some(phase) = &filter.phase {
        let of = match &a.work_item {
            Some(w) => store.work_phase(w)?,
            None => None,
        };
        if of.as_deref() != Some(phase.as_str()) {
            return Ok(false);
        }
    }
    Ok(true)
}

fn artifact_json(a: &SharedArtifact) -> ApiResult<Value> {
    serde_json::to_value(&**a).map_err(|e| ApiError::internal(e.to_string()))
}

/// One artifact.
#[utoipa::path(get, path = "/v1/workflows/{id}/artifacts/{artifact}",
    params(("id" = String, Path), ("artifact" = String, Path)),
    responses((status = 200, body = Object), (status = 404, body = ErrorBody)))]
pub(crate) async fn get_artifact(
    State(runs): State<AppState>,
    Extension(access): Extension<Access>,
    Path((id, artifact)): Path<(String, String)>,
) -> ApiResult<Json<Value>> {
    let _reading = runs.record(&id)?;
    let parsed: ArtifactId = artifact
        .parse()
        .map_err(|_| ApiError::not_found(format!("no artifact {artifact} in run {id}")))?;
    match runs.store().artifact(&parsed)? {
        // What this token may not see does not exist for it.
        Some(a) if *a.workflow_id == *id && access.sees(&a) => Ok(Json(artifact_json(&a)?)),
        _ => Err(ApiError::not_found(format!(
            "no artifact {artifact} in run {id}"
        ))),
    }
}

/// Work item filter and page.
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct WorkFilter {
    /// Only this status: pending, blocked, active, done, failed, duplicate, cancelled,
    /// awaiting_approval, expired.
    status: Option<String>,
    /// Only work in this phase.
    phase: Option<String>,
    /// Where the last page ended (its `next`).
    cursor: Option<String>,
    /// At most this many (1 to 1000, default 100).
    #[param(minimum = 1, maximum = 1000)]
    limit: Option<usize>,
}

/// A page of a run's work items.
#[derive(Serialize, ToSchema)]
pub(crate) struct WorkPage {
    /// In creation order: each with its `id`, `phase`, `status`, `description`,
    /// `priority`, blockers and attempts.
    #[schema(value_type = Vec<Object>)]
    items: Vec<Value>,
    /// Pass as `cursor` for the next page; null on the last.
    next: Option<String>,
}

/// List a run's work items, by status and phase, a page at a time.
#[utoipa::path(get, path = "/v1/workflows/{id}/work", params(("id" = String, Path), WorkFilter),
    responses((status = 200, body = WorkPage), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub(crate) async fn list_work(
    State(runs): State<AppState>,
    Extension(access): Extension<Access>,
    Path(id): Path<String>,
    Query(filter): Query<WorkFilter>,
) -> ApiResult<Json<WorkPage>> {
    let _reading = runs.record(&id)?;
    let limit = page_limit(filter.limit)?;
    let from = cursor_of(filter.cursor.as_deref())?;
    if let Some(s) = &filter.status
        && !murmur::work::WorkStatus::ALL
            .iter()
            .any(|w| w.to_string() == *s)
    {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            format!("status '{s}': not a work item status"),
        ));
    }
    let mut items = Vec::new();
    let mut next = None;
    let all = runs.store().work_items(&id)?;
    for (position, w) in all.iter().enumerate().skip(from as usize) {
        if filter
            .status
            .as_deref()
            .is_some_and(|s| w.status().to_string() != s)
            || filter.phase.as_deref().is_some_and(|p| *w.phase != *p)
        {
            continue;
        }
        if access.tenant.is_some()
            && !runs
                .store()
                .artifact(&w.id)?
                .is_some_and(|a| access.sees(&a))
        {
            continue;
        }
        if items.len() == limit {
            next = Some(position.to_string());
            break;
        }
        items.push(serde_json::to_value(w).map_err(|e| ApiError::internal(e.to_string()))?);
    }
    Ok(Json(WorkPage { items, next }))
}

/// A page size: 1 to 1000, default 100.
pub(super) fn page_limit(limit: Option<usize>) -> ApiResult<usize> {
    let limit = limit.unwrap_or(100);
    if !(1..=1000).contains(&limit) {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "limit: expected 1 to 1000",
        ));
    }
    Ok(limit)
}

/// A position a page ended at, as this API gave it.
pub(super) fn cursor_of(cursor: Option<&str>) -> ApiResult<u64> {
    match cursor {
        Some(c) => c.parse().map_err(|_| {
            ApiError::new(
                StatusCode::BAD_REQUEST,
                format!("cursor '{c}': expected a cursor this API gave"),
            )
        }),
        None => Ok(0),
    }
}

/// A rejection.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct RejectRequest {
    /// Why (required): the work item fails with it.
    #[schema(min_length = 1, pattern = r"\S")]
    reason: String,
}

/// A work item after a decision.
#[derive(Serialize, ToSchema)]
pub(crate) struct Decided {
    /// The work item.
    id: String,
    /// Where it stands now: `pending`, `blocked` (approved, waiting for its blockers) or
    /// `failed` (rejected).
    status: String,
}

/// Approve work awaiting approval: it goes on.
#[utoipa::path(post, path = "/v1/workflows/{id}/work/{work_id}/approve",
    params(("id" = String, Path), ("work_id" = String, Path)),
    responses((status = 200, body = Decided), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub(crate) async fn approve_work(
    State(runs): State<AppState>,
    Extension(access): Extension<Access>,
    Path((id, work)): Path<(String, String)>,
) -> ApiResult<Json<Decided>> {
    access.operator_only("deciding on work")?;
    decide(&runs, &id, &work, true, None).await
}

/// Reject work awaiting approval: it fails with the reason (recovery rules apply).
#[utoipa::path(post, path = "/v1/workflows/{id}/work/{work_id}/reject",
    params(("id" = String, Path), ("work_id" = String, Path)), request_body = RejectRequest,
    responses((status = 200, body = Decided), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub(crate) async fn reject_work(
    State(runs): State<AppState>,
    Extension(access): Extension<Access>,
    Path((id, work)): Path<(String, String)>,
    body: Bytes,
) -> ApiResult<Json<Decided>> {
    access.operator_only("deciding on work")?;
    let request: RejectRequest = parse_body(&body)?;
    if request.reason.trim().is_empty() {
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "a rejection needs a reason",
        )
        .at("/reason"));
    }
    decide(&runs, &id, &work, false, Some(request.reason)).await
}

async fn decide(
    runs: &AppState,
    id: &str,
    work: &str,
    approve: bool,
    reason: Option<String>,
) -> ApiResult<Json<Decided>> {
    let _reading = runs.record(id)?;
    let not_found = || ApiError::not_found(format!("no work item {work} in run {id}"));
    let parsed: ArtifactId = work.parse().map_err(|_| not_found())?;
    match runs.store().work_item(&parsed)? {
        Some(w) if *w.workflow_id == *id => {
            if w.status() != murmur::work::WorkStatus::AwaitingApproval {
                return Err(ApiError::new(
                    StatusCode::CONFLICT,
                    format!("work item {work} is {}, not awaiting approval", w.status()),
                ));
            }
        }
        _ => return Err(not_found()),
    }
    for _ in 0..5 {
        let (reply, answer) = tokio::sync::oneshot::channel();
        let request = Request::Decide(Decide {
            work: parsed,
            approve,
            reason: reason.clone(),
            reply,
        });
        runs.request(id, request).await?;
        match answer.await {
            Ok(Ok(status)) => {
                runs.durable().await?;
                return Ok(Json(Decided {
                    id: work.to_string(),
                    status: status.to_string(),
                }));
            }
            Ok(Err(e)) => {
                let status = match e {
                    DecideError::NotFound(_) => StatusCode::NOT_FOUND,
                    DecideError::NotAwaiting { .. } => StatusCode::CONFLICT,
                    DecideError::NoReason => StatusCode::UNPROCESSABLE_ENTITY,
                    DecideError::Failed(_) => StatusCode::INTERNAL_SERVER_ERROR,
                };
                return Err(ApiError::new(status, e.to_string()));
            }
            Err(_) => runs.finished(id).await,
        }
    }
    Err(ApiError::new(
        StatusCode::SERVICE_UNAVAILABLE,
        format!("run {id} stopped each time before it took the decision; nothing was decided"),
    ))
}

/// Graph format.
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct GraphFormat {
    /// `mermaid` (default), `dot` or `json`.
    format: Option<GraphKind>,
}

/// How a graph is drawn.
#[derive(Deserialize, ToSchema, Clone, Copy)]
#[serde(rename_all = "lowercase")]
pub(crate) enum GraphKind {
    /// A Mermaid flowchart (text).
    Mermaid,
    /// Graphviz DOT (text).
    Dot,
    /// Nodes and edges as JSON.
    Json,
}

/// A run's cascade: artifacts and their parents, grouped by phase.
#[utoipa::path(get, path = "/v1/workflows/{id}/graph", params(("id" = String, Path), GraphFormat),
    responses((status = 200, description = "Mermaid or DOT text, or JSON nodes and edges"), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub(crate) async fn get_graph(
    State(runs): State<AppState>,
    Extension(access): Extension<Access>,
    Path(id): Path<String>,
    Query(format): Query<GraphFormat>,
) -> ApiResult<Response> {
    access.operator_only("the whole graph")?;
    let _reading = runs.record(&id)?;
    let graph = Graph::from_store(runs.store(), &id)?;
    Ok(match format.format.unwrap_or(GraphKind::Mermaid) {
        GraphKind::Mermaid => (
            [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
            graph.mermaid(),
        )
            .into_response(),
        GraphKind::Dot => (
            [(header::CONTENT_TYPE, "text/vnd.graphviz; charset=utf-8")],
            graph.dot(),
        )
            .into_response(),
        GraphKind::Json => Json(json!(graph)).into_response(),
    })
}

/// Anything else under `/v1`.
pub(crate) async fn not_found() -> ApiError {
    ApiError::not_found("no such endpoint (see /v1/openapi.json)")
}
