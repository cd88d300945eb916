//! The rule-based retrospective: lessons without a language model, for offline use.
//!
//! Findings of the same kind, agent and problem (in the same phase) make one lesson,
//! resting on all of their evidence; its wording depends only on the problem, never on
//! counts or ids, so the same problem in a later run reads the same and the host merges
//! it into the lesson it keeps instead of adding another:
//! - a rejection: the validator's reasons, to be met in the first attempt;
//! - a failure: what could not be done and the recovery that worked, so the phase plans
//!   around it;
//! - a duplicate: check the blackboard for the same work before discovering it again;
//! - a retry that never passed (retries that passed need no lesson).
//!
//! Config (optional): `kinds`, the finding kinds to learn from (default all), and
//! `max`, the most lessons one run yields (default 8).

use murmur_guest::prelude::*;
use serde::Deserialize;

#[derive(Deserialize)]
struct Config {
    #[serde(default = "all_kinds")]
    kinds: Vec<String>,
    #[serde(default = "eight")]
    max: usize,
}

fn all_kinds() -> Vec<String> {
    ["rejection", "failure", "duplicate", "retry"].iter().map(|k| k.to_string()).collect()
}

fn eight() -> usize {
    8
}

/// Most evidence ids one lesson carries.
const MAX_EVIDENCE: usize = 8;

fn kind_name(kind: FindingKind) -> &'static str {
    match kind {
        FindingKind::Rejection => "rejection",
        FindingKind::Retry => "retry",
        FindingKind::Failure => "failure",
        FindingKind::Duplicate => "duplicate",
    }
}

/// A validator's reason without the output number it was given for (`output #0: …`).
fn reason(text: &str) -> &str {
    match text.strip_prefix("output #") {
        Some(rest) => rest.split_once(": ").map_or(text, |(_, r)| r),
        None => text,
    }
}

/// The lesson a finding teaches, or none.
fn lesson_text(f: &Finding) -> Option<String> {
    match f.kind {
        FindingKind::Rejection => {
            let mut reasons: Vec<&str> = f.detail.iter().map(|d| reason(d)).collect();
            reasons.dedup();
            Some(format!(
                "{}'s outputs were refused by validation: {}. Meet this in the first attempt.",
                f.agent,
                reasons.join("; ")
            ))
        }
        FindingKind::Failure => {
            let error = f.detail.first().map(String::as_str).unwrap_or("it failed");
            let recovered: Vec<&str> = f
                .detail
                .iter()
                .filter_map(|d| d.strip_prefix("recovered by: "))
                .collect();
            // The recovery's own description names the failure again: said once here.
            let mut text = format!("{} could not do \"{}\": {error}.", f.agent, f.work);
            if f.fixed && !recovered.is_empty() {
                text.push_str(" Recovery work put it right in the run; plan around it from the start.");
            } else {
                text.push_str(" Plan around it.");
            }
            Some(text)
        }
        FindingKind::Duplicate => Some(
            "Discoveries repeated work already on the blackboard: check the open and done work of the phase before publishing a discovery."
                .to_string(),
        ),
        FindingKind::Retry if !f.fixed => Some(format!(
            "{} kept failing with a transient error: {}.",
            f.agent,
            f.detail.join("; ")
        )),
        FindingKind::Retry => None,
    }
}

struct Rules;

impl Retrospective for Rules {
    fn describe() -> RetrospectiveInfo {
        RetrospectiveInfo::new(
            "retrospective",
            env!("CARGO_PKG_VERSION"),
            "Rule-based lessons from rejections, failures, duplicates and retries",
        )
    }

    fn distill(review: RunReview) -> Result<Vec<LessonDraft>, PluginError> {
        let config: Config = if review.config.trim().is_empty() {
            Config { kinds: all_kinds(), max: eight() }
        } else {
            serde_json::from_str(&review.config)
                .map_err(|e| PluginError::invalid_input(format!("config: {e}")))?
        };
        let mut drafts: Vec<LessonDraft> = Vec::new();
        for f in &review.findings {
            if !config.kinds.iter().any(|k| k == kind_name(f.kind)) {
                continue;
            }
            let Some(text) = lesson_text(f) else { continue };
            match drafts.iter_mut().find(|d| d.phase == f.phase && d.text == text) {
                Some(d) => {
                    for e in &f.evidence {
                        if d.evidence.len() < MAX_EVIDENCE && !d.evidence.contains(e) {
                            d.evidence.push(e.clone());
                        }
                    }
                }
                None => drafts.push(LessonDraft {
                    phase: f.phase.clone(),
                    text,
                    evidence: f.evidence.iter().take(MAX_EVIDENCE).cloned().collect(),
                }),
            }
        }
        drafts.truncate(config.max);
        log(Level::Info, &format!("{} finding(s), {} lesson(s)", review.findings.len(), drafts.len()));
        Ok(drafts)
    }
}

murmur_guest::export_retrospective!(Rules);
