//! `/healthz`, `/readyz` and `/metrics`: what an orchestrator and a Prometheus scraper
//! ask of a server.

use super::api::{ApiError, AppState};
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use murmur::summary::RunSummary;
use std::fmt::Write;

/// The process answers.
#[utoipa::path(get, path = "/healthz", responses((status = 200, description = "`ok`")))]
pub(crate) async fn healthz() -> &'static str {
    "ok\n"
}

/// The store answers: a flush reaches it (a SQLite file whose writer failed does not).
#[utoipa::path(get, path = "/readyz", responses((status = 200, description = "`ready`"),
    (status = 503, description = "The store does not answer")))]
pub(crate) async fn readyz(State(runs): State<AppState>) -> Response {
    let flushed = tokio::task::spawn_blocking(move || runs.store().flush()).await;
    match flushed {
        Ok(Ok(())) => (StatusCode::OK, "ready\n").into_response(),
        Ok(Err(e)) => (StatusCode::SERVICE_UNAVAILABLE, format!("store: {e}\n")).into_response(),
        Err(e) => (StatusCode::SERVICE_UNAVAILABLE, format!("{e}\n")).into_response(),
    }
}

/// Metrics in Prometheus' text format: per run, artifacts by type, invocations by agent
/// and outcome, faults by class, invocations queued and running, model tokens by agent
/// and phase; and runs by status.
#[utoipa::path(get, path = "/metrics", responses((status = 200, description = "Prometheus text format 0.0.4")))]
pub(crate) async fn metrics(State(runs): State<AppState>) -> Result<Response, ApiError> {
    let text = tokio::task::spawn_blocking(move || render(&runs))
        .await
        .map_err(|e| ApiError::internal(e.to_string()))??;
    Ok((
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        text,
    )
        .into_response())
}

/// The histogram's bucket bounds, in seconds.
const LE: [f64; 12] = [
    0.001, 0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 60.0,
];

/// A label value, escaped as the text format wants.
fn label(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

fn render(runs: &AppState) -> Result<String, ApiError> {
    let records = runs.store().runs()?;
    let mut out = String::new();
    let mut by_status = std::collections::BTreeMap::<String, u64>::new();
    for r in &records {
        *by_status.entry(r.status.to_string()).or_default() += 1;
    }
    out.push_str("# HELP murmur_runs Runs in the store, by status.\n# TYPE murmur_runs gauge\n");
    for (status, n) in &by_status {
        let _ = writeln!(out, "murmur_runs{{status=\"{status}\"}} {n}");
    }
    out.push_str(
        "# HELP murmur_runs_live Runs this server drives now.\n# TYPE murmur_runs_live gauge\n",
    );
    let _ = writeln!(out, "murmur_runs_live {}", runs.live_count());
    out.push_str(
        "# HELP murmur_runs_loaded Runs whose records this server holds in memory (driven, or read in the last seconds); the per-run series below are theirs.\n# TYPE murmur_runs_loaded gauge\n",
    );
    let _ = writeln!(out, "murmur_runs_loaded {}", runs.loaded_count());
    let mut artifacts = String::new();
    let mut invocations = String::new();
    let mut faults = String::new();
    let mut queued = String::new();
    let mut running = String::new();
    let mut tokens_agent = String::new();
    let mut durations = String::new();
    let mut model = String::new();
    let mut tokens_phase = String::new();
    for record in &records {
        // Metrics of the runs this server has read or driven; others are only records.
        if !runs.is_loaded(&record.workflow_id) {
            continue;
        }
        let wf = label(&record.workflow_id);
        let summary = RunSummary::of_record(runs.store(), record)?;
        for (ty, n) in &summary.by_type {
            let _ = writeln!(
                artifacts,
                "murmur_artifacts_total{{workflow_id=\"{wf}\",type=\"{}\"}} {n}",
                label(ty)
            );
        }
        for (agent, a) in &summary.agents {
            let agent = label(agent);
            let _ = writeln!(
                invocations,
                "murmur_invocations_total{{workflow_id=\"{wf}\",agent=\"{agent}\",outcome=\"done\"}} {}",
                a.invocations.saturating_sub(a.failed)
            );
            let _ = writeln!(
                invocations,
                "murmur_invocations_total{{workflow_id=\"{wf}\",agent=\"{agent}\",outcome=\"failed\"}} {}",
                a.failed
            );
        }
        for (class, n) in &summary.faults {
            let _ = writeln!(
                faults,
                "murmur_faults_total{{workflow_id=\"{wf}\",class=\"{}\"}} {n}",
                label(class)
            );
        }
        let tally = murmur::blackboard::tally::Tally::of(runs.store(), &record.workflow_id)?;
        let (q, r) = (tally.queued, tally.running);
        let _ = writeln!(
            queued,
            "murmur_invocations_queued{{workflow_id=\"{wf}\"}} {q}"
        );
        let _ = writeln!(
            running,
            "murmur_invocations_running{{workflow_id=\"{wf}\"}} {r}"
        );
        for (agent, d) in &record.agent_times {
            let agent = label(agent);
            for le in LE {
                let _ = writeln!(
                    durations,
                    "murmur_invocation_duration_seconds_bucket{{workflow_id=\"{wf}\",agent=\"{agent}\",le=\"{le}\"}} {}",
                    d.at_most(std::time::Duration::from_secs_f64(le))
                );
            }
            let _ = writeln!(
                durations,
                "murmur_invocation_duration_seconds_bucket{{workflow_id=\"{wf}\",agent=\"{agent}\",le=\"+Inf\"}} {}\nmurmur_invocation_duration_seconds_sum{{workflow_id=\"{wf}\",agent=\"{agent}\"}} {}\nmurmur_invocation_duration_seconds_count{{workflow_id=\"{wf}\",agent=\"{agent}\"}} {}",
                d.count(),
                d.total().as_secs_f64(),
                d.count()
            );
        }
        if let Some(usage) = &record.llm_usage {
            for (agent, ms) in &usage.model_ms_by_agent {
                let _ = writeln!(
                    model,
                    "murmur_llm_wait_seconds_total{{workflow_id=\"{wf}\",agent=\"{}\"}} {}",
                    label(agent),
                    *ms as f64 / 1000.0
                );
            }
            for (agent, n) in &usage.by_agent {
                let _ = writeln!(
                    tokens_agent,
                    "murmur_llm_tokens_total{{workflow_id=\"{wf}\",agent=\"{}\"}} {n}",
                    label(agent)
                );
            }
            for (phase, n) in &usage.by_phase {
                let _ = writeln!(
                    tokens_phase,
                    "murmur_llm_phase_tokens_total{{workflow_id=\"{wf}\",phase=\"{}\"}} {n}",
                    label(phase)
                );
            }
        }
    }
    for (name, kind, help, body) in [
        (
            "murmur_artifacts_total",
            "counter",
            "Artifacts published, by type.",
            &artifacts,
        ),
        (
            "murmur_invocations_total",
            "counter",
            "Invocations finished, by agent and outcome.",
            &invocations,
        ),
        (
            "murmur_faults_total",
            "counter",
            "Plugin faults, by class.",
            &faults,
        ),
        (
            "murmur_invocation_duration_seconds",
            "histogram",
            "Invocation times by agent: from the call's start to its outputs checked.",
            &durations,
        ),
        (
            "murmur_llm_wait_seconds_total",
            "counter",
            "Time agents spent waiting for the language model.",
            &model,
        ),
        (
            "murmur_invocations_queued",
            "gauge",
            "Invocations waiting to run.",
            &queued,
        ),
        (
            "murmur_invocations_running",
            "gauge",
            "Invocations in flight.",
            &running,
        ),
        (
            "murmur_llm_tokens_total",
            "counter",
            "Language-model tokens, by agent.",
            &tokens_agent,
        ),
        (
            "murmur_llm_phase_tokens_total",
            "counter",
            "Language-model tokens, by phase.",
            &tokens_phase,
        ),
    ] {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
        out.push_str(body);
    }
    Ok(out)
}
