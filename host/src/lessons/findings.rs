//! What went wrong in a run, and what fixed it: read from the run's records in the store,
//! so a run distilled long after it ended (`murmur lessons distill`) yields the same
//! findings as at its end.

use crate::blackboard::{Store, StoreError};
use crate::invocation::InvocationStatus;
use crate::work::WorkStatus;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;

/// The kinds of finding (the WIT's `finding-kind`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FindingKind {
    /// A validator refused an invocation's outputs.
    Rejection,
    /// An invocation's retryable error was retried.
    Retry,
    /// Work failed for good (and perhaps recovery work fixed it).
    Failure,
    /// A discovery was recorded as a duplicate of earlier work.
    Duplicate,
}

impl FindingKind {
    /// Its name, as the WIT and the signature spell it.
    pub fn as_str(self) -> &'static str {
        match self {
            FindingKind::Rejection => "rejection",
            FindingKind::Retry => "retry",
            FindingKind::Failure => "failure",
            FindingKind::Duplicate => "duplicate",
        }
    }
}

/// One thing that went wrong in a run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Finding {
    /// What kind of thing.
    pub kind: FindingKind,
    /// The phase of the work it happened in.
    pub phase: String,
    /// The agent whose work it was (for a duplicate: who discovered it again).
    pub agent: String,
    /// The work item's description.
    pub work: String,
    /// The reasons, the error, or what the work duplicated.
    pub detail: Vec<String>,
    /// Whether it was put right in the run: a later attempt passed, or recovery work
    /// was done (a duplicate is never "fixed": it was redundant work avoided).
    pub fixed: bool,
    /// The artifacts it rests on: the work item, and what was published in the end.
    pub evidence: Vec<String>,
}

impl Finding {
    /// The problem in one line (kind, agent, detail): what a lesson is about, and how a
    /// later run's findings are matched against it.
    pub fn signature(&self) -> String {
        format!(
            "{} {}: {}",
            self.kind.as_str(),
            self.agent,
            self.detail.join("; ")
        )
    }
}

/// Every finding of run `workflow_id`, in the order its records were created.
pub fn gather(store: &dyn Store, workflow_id: &str) -> Result<Vec<Finding>, StoreError> {
    let mut findings = Vec::new();
    let mut duplicates = Vec::new();
    store.scan(workflow_id, &mut |work, invocations| {
        let by_id: HashMap<_, _> = work.iter().map(|w| (w.id, *w)).collect();
        for inv in invocations {
            let Some(item) = inv.work_item.and_then(|w| by_id.get(&w)) else {
                continue;
            };
            let done = inv.status == InvocationStatus::Done;
            let mut evidence = vec![item.id.to_string()];
            evidence.extend(inv.outputs.iter().map(|o| o.to_string()));
            let retried = inv.retries().saturating_sub(inv.rejections());
            if inv.rejections() > 0 {
                findings.push(Finding {
                    kind: FindingKind::Rejection,
                    phase: item.phase.to_string(),
                    agent: inv.agent.to_string(),
                    work: item.description.to_string(),
                    detail: inv.feedback().to_vec(),
                    fixed: done,
                    evidence: evidence.clone(),
                });
            }
            if retried > 0 {
                let detail = inv
                    .error()
                    .map_or_else(|| inv.feedback().to_vec(), |e| vec![e.to_string()]);
                findings.push(Finding {
                    kind: FindingKind::Retry,
                    phase: item.phase.to_string(),
                    agent: inv.agent.to_string(),
                    work: item.description.to_string(),
                    detail,
                    fixed: done,
                    evidence: evidence.clone(),
                });
            }
            if inv.status == InvocationStatus::Failed
                && !inv.observer
                && item.status() == WorkStatus::Failed
            {
                let recoveries: Vec<_> = work
                    .iter()
                    .filter(|r| r.recovery_of() == Some(item.id))
                    .collect();
                let mut detail = vec![inv.error().unwrap_or("failed").to_string()];
                detail.extend(
                    recoveries
                        .iter()
                        .map(|r| format!("recovered by: {} ({})", r.description, r.status())),
                );
                evidence.extend(recoveries.iter().map(|r| r.id.to_string()));
                findings.push(Finding {
                    kind: FindingKind::Failure,
                    phase: item.phase.to_string(),
                    agent: inv.agent.to_string(),
                    work: item.description.to_string(),
                    detail,
                    fixed: recoveries.iter().any(|r| r.status() == WorkStatus::Done),
                    evidence,
                });
            }
        }
        for w in work {
            if let Some(original) = w.duplicate_of() {
                let of = by_id
                    .get(&original)
                    .map_or_else(|| original.to_string(), |o| o.description.to_string());
                duplicates.push((
                    w.id,
                    w.phase.to_string(),
                    w.description.to_string(),
                    of,
                    original,
                ));
            }
        }
    })?;
    for (id, phase, description, of, original) in duplicates {
        let agent = store
            .artifact(&id)?
            .map_or_else(String::new, |a| a.producer.to_string());
        findings.push(Finding {
            kind: FindingKind::Duplicate,
            phase,
            agent,
            work: description,
            detail: vec![format!("duplicate of: {of}")],
            fixed: false,
            evidence: vec![id.to_string(), original.to_string()],
        });
    }
    Ok(findings)
}
