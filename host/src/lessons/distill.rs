//! Distilling: what a run's end does to its workflow's lessons.
//!
//! Two steps, stored as one change: the lessons the run used are judged by its findings
//! ([`keep::judge`]: a lesson whose problem came back misses), then the retrospective is
//! handed the findings and the lessons kept, and its answer — checked here, whole or
//! not at all — is folded in ([`keep::absorb`]). A retrospective that traps, loops,
//! answers garbage or cites evidence the run does not hold teaches nothing: the run's
//! outcome is untouched and the reason is reported.

use super::findings::{self, Finding, FindingKind};
use super::{Lesson, LessonChange, keep};
use crate::artifact::{ArtifactId, Visibility};
use crate::blackboard::{RunRecord, Store, StoreError};
use crate::plugin::bindings::retrospective::exports::murmur::plugin::retrospective_api as wit;
use crate::plugin::{BoardAccess, Capability, LlmAccess};
use crate::workflow::Workflow;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

/// Most lessons one retrospective answer may propose.
pub const MAX_DRAFTS: usize = 16;
/// Most characters of one lesson's text.
pub const MAX_TEXT: usize = 1000;
/// Most evidence ids one proposed lesson may cite.
pub const MAX_EVIDENCE: usize = 32;

/// What a run's end (or `murmur lessons distill`) did to the lessons.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Distilled {
    /// Findings the run's records hold.
    pub findings: usize,
    /// The retrospective asked, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retrospective: Option<String>,
    /// Lessons it proposed.
    pub proposed: usize,
    /// New lessons kept.
    pub added: Vec<String>,
    /// Kept lessons proposals merged into.
    pub merged: Vec<String>,
    /// Lessons retired by this change: no longer helping, or over a phase's budget
    /// (no run reads them; a problem proposed again merges into them).
    pub dropped: Vec<String>,
    /// Lessons the run used whose problem did not come back.
    pub helped: Vec<String>,
    /// Lessons the run used whose problem came back.
    pub missed: Vec<String>,
    /// Why the retrospective taught nothing, when it failed or was refused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// Distil run `record` of `wf` (its records in `store`) and store the change to the
/// workflow's lessons. `judge`: score the lessons the run used (once per run: a
/// distillation on demand of a run already judged leaves them be).
pub async fn distill(
    wf: &Workflow,
    store: &Arc<dyn Store>,
    record: &RunRecord,
    judge: bool,
) -> Result<Distilled, StoreError> {
    let policy = wf
        .manifest
        .lessons
        .as_ref()
        .map(super::Settings::policy)
        .unwrap_or_default();
    let found = findings::gather(store.as_ref(), &record.workflow_id)?;
    let kept = store.lessons(Some(&record.name))?;
    let now = crate::artifact::now_ms();
    let mut out = Distilled {
        findings: found.len(),
        ..Distilled::default()
    };
    let mut change = LessonChange::default();
    let mut current = kept.clone();
    if judge {
        let used: BTreeMap<String, Vec<String>> = record
            .lessons
            .iter()
            .map(|(phase, l)| (phase.clone(), l.iter().map(|u| u.id.clone()).collect()))
            .collect();
        let problems: Vec<String> = found.iter().map(Finding::signature).collect();
        let judged = keep::judge(&kept, &used, &problems, &policy, now);
        for l in &judged.put {
            let before = kept.iter().find(|k| k.id == l.id).map_or(0, |k| k.helped);
            if l.helped > before {
                out.helped.push(l.id.clone());
            } else {
                out.missed.push(l.id.clone());
            }
            if l.retired {
                out.dropped.push(l.id.clone());
            }
        }
        apply(&mut current, &judged);
        change = judged;
    }
    if let Some(retro) = &wf.retrospective {
        let name = retro.name.to_string();
        out.retrospective = Some(name.clone());
        let review = review(wf, record, &found, &current, &retro.config_json);
        let mut board = BoardAccess::granted(store, &record.workflow_id, retro.plugin());
        if let (Some(access), Some(host)) = (board.as_mut(), &wf.llm)
            && retro.granted(Capability::Llm)
        {
            access.llm = Some(LlmAccess {
                host: host.clone(),
                phase: "retrospective".into(),
                given_back: Arc::default(),
            });
        }
        let answer = retro
            .distill(&review, board)
            .await
            .map_err(|e| format!("retrospective '{name}': {e}"))
            .and_then(|drafts| {
                out.proposed = drafts.len();
                check(wf, store.as_ref(), record, &found, &name, drafts, now)
                    .map_err(|e| format!("retrospective '{name}': {e}"))
            });
        match answer {
            Ok(new) => {
                let absorbed = keep::absorb(&current, new, &policy);
                for l in &absorbed.put {
                    match current.iter().find(|k| k.id == l.id) {
                        None => out.added.push(l.id.clone()),
                        Some(k) if l.retired && !k.retired => out.dropped.push(l.id.clone()),
                        Some(_) => out.merged.push(l.id.clone()),
                    }
                }
                change = combine(change, absorbed);
            }
            Err(e) => {
                tracing::warn!("{e}");
                out.error = Some(e);
            }
        }
    }
    store.change_lessons(&change)?;
    Ok(out)
}

/// `lessons` with `change` applied.
fn apply(lessons: &mut Vec<Lesson>, change: &LessonChange) {
    lessons.retain(|l| !change.forget.contains(&l.id));
    for l in &change.put {
        match lessons.iter_mut().find(|k| k.id == l.id) {
            Some(k) => *k = l.clone(),
            None => lessons.push(l.clone()),
        }
    }
}

/// `first` then `then` (made against the lessons as `first` left them) as one change.
fn combine(first: LessonChange, then: LessonChange) -> LessonChange {
    let later: BTreeSet<&str> = then
        .put
        .iter()
        .map(|l| l.id.as_str())
        .chain(then.forget.iter().map(String::as_str))
        .collect();
    let mut put: Vec<Lesson> = first
        .put
        .into_iter()
        .filter(|l| !later.contains(l.id.as_str()))
        .collect();
    put.extend(then.put);
    let mut forget = first.forget;
    forget.extend(then.forget);
    LessonChange { put, forget }
}

/// What the retrospective is handed.
fn review(
    wf: &Workflow,
    record: &RunRecord,
    found: &[Finding],
    kept: &[Lesson],
    config: &str,
) -> wit::RunReview {
    wit::RunReview {
        workflow: record.name.clone(),
        workflow_id: record.workflow_id.clone(),
        status: record.status.as_str().into(),
        phases: wf
            .manifest
            .phases
            .iter()
            .filter_map(|p| wf.phase_context.get(&p.name))
            .map(|p| p.info.clone())
            .collect(),
        findings: found
            .iter()
            .map(|f| wit::Finding {
                kind: match f.kind {
                    FindingKind::Rejection => wit::FindingKind::Rejection,
                    FindingKind::Retry => wit::FindingKind::Retry,
                    FindingKind::Failure => wit::FindingKind::Failure,
                    FindingKind::Duplicate => wit::FindingKind::Duplicate,
                },
                phase: f.phase.clone(),
                agent: f.agent.clone(),
                work: f.work.clone(),
                detail: f.detail.clone(),
                fixed: f.fixed,
                evidence: f.evidence.clone(),
            })
            .collect(),
        lessons: kept
            .iter()
            .map(|l| wit::KeptLesson {
                id: l.id.clone(),
                phase: l.phase.clone(),
                text: l.text.clone(),
                uses: l.uses,
                helped: l.helped,
            })
            .collect(),
        config: config.to_string(),
    }
}

/// The retrospective's drafts as lessons, or why they are refused (one bad draft refuses
/// the answer, as one bad output refuses an invocation's).
fn check(
    wf: &Workflow,
    store: &dyn Store,
    record: &RunRecord,
    found: &[Finding],
    by: &str,
    drafts: Vec<wit::LessonDraft>,
    now: u64,
) -> Result<Vec<Lesson>, String> {
    if drafts.len() > MAX_DRAFTS {
        return Err(format!(
            "answered {} lessons; at most {MAX_DRAFTS} are taken from one run",
            drafts.len()
        ));
    }
    let cited: BTreeSet<&str> = found
        .iter()
        .flat_map(|f| f.evidence.iter().map(String::as_str))
        .collect();
    let mut lessons = Vec::with_capacity(drafts.len());
    for (i, d) in drafts.into_iter().enumerate() {
        if !wf.phases.contains_key(&d.phase) {
            return Err(format!(
                "lesson #{i}: '{}' is not a phase of workflow '{}'",
                d.phase, record.name
            ));
        }
        let text = d.text.trim();
        if text.is_empty() {
            return Err(format!("lesson #{i}: its text is empty"));
        }
        if text.chars().count() > MAX_TEXT {
            return Err(format!(
                "lesson #{i}: its text is {} characters; the limit is {MAX_TEXT}",
                text.chars().count()
            ));
        }
        if d.evidence.is_empty() || d.evidence.len() > MAX_EVIDENCE {
            return Err(format!(
                "lesson #{i}: cites {} artifacts; a lesson rests on 1 to {MAX_EVIDENCE} of the run's findings' artifacts",
                d.evidence.len()
            ));
        }
        if let Some(unknown) = d.evidence.iter().find(|e| !cited.contains(e.as_str())) {
            return Err(format!(
                "lesson #{i}: evidence '{unknown}' is not among the artifacts of the run's findings"
            ));
        }
        let mut visibility: Vec<Visibility> = Vec::new();
        for e in &d.evidence {
            let artifact = ArtifactId::parse(e)
                .map(|id| store.artifact(&id))
                .transpose()
                .map_err(|e| e.to_string())?
                .flatten()
                .ok_or_else(|| {
                    format!("lesson #{i}: evidence '{e}' is not an artifact of the run")
                })?;
            let v = artifact.visibility();
            if *v != Visibility::Public && !visibility.contains(v) {
                visibility.push(v.clone());
            }
        }
        let about: Vec<String> = found
            .iter()
            .filter(|f| f.evidence.iter().any(|e| d.evidence.contains(e)))
            .map(Finding::signature)
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        lessons.push(Lesson {
            id: uuid::Uuid::now_v7().to_string(),
            workflow: record.name.clone(),
            phase: d.phase,
            text: text.to_string(),
            evidence: d.evidence,
            source_run: record.workflow_id.clone(),
            uses: 0,
            helped: 0,
            misses: 0,
            about,
            visibility,
            retired: false,
            by: by.to_string(),
            created_at_ms: now,
            updated_at_ms: now,
        });
    }
    Ok(lessons)
}
