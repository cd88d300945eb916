//! The run summary (a contract: `run --json`, `status --json`): computed from the store, never from counters
//! only one process holds, so `run`, `resume` and `status` agree.

use crate::blackboard::tally::Tally;
pub use crate::blackboard::tally::{PhaseCounts, WorkCounters};
use crate::blackboard::{Store, StoreError};
use crate::invocation::FaultKind;
pub use crate::run::RunStatus;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Invocation counts of one agent.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct AgentCounts {
    /// Invocations run (finished or failed).
    pub invocations: u64,
    /// Of which failed.
    pub failed: u64,
    /// Artifacts it published, by type.
    pub published: BTreeMap<String, u64>,
    /// How long its invocations took, when the run recorded it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time: Option<AgentTime>,
}

/// How long an agent's invocations took: from the call's start to its outputs checked.
/// Percentiles are within a fifth of the exact ones (see [`crate::durations`]); the
/// maximum and the total are exact.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct AgentTime {
    /// Half took at most this long.
    pub p50_ms: f64,
    /// 95% took at most this long.
    pub p95_ms: f64,
    /// The longest.
    pub max_ms: f64,
    /// All its invocations together.
    pub total_ms: f64,
    /// Of that, waiting for the language model (its calls, queueing for a slot
    /// included).
    pub model_ms: f64,
}

/// Open work at the end of a run that did not complete.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct OpenWork {
    /// The work item (WorkDiscovery id).
    pub id: String,
    /// Its phase.
    pub phase: String,
    /// Its status.
    pub status: String,
    /// What it is.
    pub description: String,
    /// Why it is stuck.
    pub reason: String,
}

impl OpenWork {
    /// How the summary names work item `w`.
    fn of(w: &crate::work::WorkItem) -> Self {
        OpenWork {
            id: w.id.to_string(),
            phase: w.phase.to_string(),
            status: w.status().to_string(),
            description: w.description.to_string(),
            reason: w.reason().unwrap_or_default().to_string(),
        }
    }
}

/// What `murmur run --json` prints.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RunSummary {
    /// How the run ended.
    pub status: RunStatus,
    /// The workflow's name.
    pub workflow: String,
    /// The run's correlation id.
    pub workflow_id: String,
    /// Artifacts on the blackboard.
    pub artifacts: u64,
    /// Invocations run.
    pub invocations: u64,
    /// Artifacts by type.
    pub by_type: BTreeMap<String, u64>,
    /// Work items by phase and status.
    pub phases: BTreeMap<String, PhaseCounts>,
    /// Invocations by agent.
    pub agents: BTreeMap<String, AgentCounts>,
    /// What the self-improving loop did.
    pub work: WorkCounters,
    /// Faults by class (every class present, zero or not).
    pub faults: BTreeMap<String, u64>,
    /// Invocations not run because their input reached the cascade-depth limit.
    pub depth_limited: u64,
    /// Language-model usage (calls, tokens by agent and phase), when a provider is configured.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub llm: Option<crate::llm::Usage>,
    /// The language-model provider the run could not reach, when that ended it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub provider: Option<crate::llm::Outage>,
    /// Open work, when the run did not complete.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub open_work: Vec<OpenWork>,
    /// Work that failed for good with no recovery that succeeded (what makes a run
    /// `failed`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub failed_work: Vec<OpenWork>,
    /// The lessons from earlier runs it used, and what its end did to them (with
    /// `[lessons]` in the manifest).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lessons: Option<LessonsReport>,
    /// Wall-clock time of the run.
    pub elapsed_ms: u64,
}

/// A run's lessons: which each phase used, and what its end distilled.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct LessonsReport {
    /// The ids of the lessons each phase's instructions carried.
    pub used: BTreeMap<String, Vec<String>>,
    /// What its end did to the workflow's lessons, once distilled.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub distilled: Option<crate::lessons::distill::Distilled>,
}

impl RunSummary {
    /// Fill in each agent's times from the run's histograms (and its model time from
    /// the summary's `llm` usage).
    pub fn add_times(&mut self, times: &BTreeMap<String, crate::durations::Durations>) {
        let ms = |d: std::time::Duration| (d.as_secs_f64() * 1e6).round() / 1e3;
        for (agent, d) in times {
            let model_ms = self
                .llm
                .as_ref()
                .and_then(|u| u.model_ms_by_agent.get(agent))
                .copied()
                .unwrap_or(0) as f64;
            let entry = self.agents.entry(agent.clone()).or_default();
            entry.time = Some(AgentTime {
                p50_ms: ms(d.quantile(0.5)),
                p95_ms: ms(d.quantile(0.95)),
                max_ms: ms(d.max()),
                total_ms: ms(d.total()),
                model_ms,
            });
        }
    }

    /// Name the lessons `record`'s run used and what its end distilled, if it used or
    /// distilled any.
    pub fn add_lessons(&mut self, record: &crate::blackboard::RunRecord) {
        if record.lessons.is_empty() && record.distilled.is_none() {
            return;
        }
        self.lessons = Some(LessonsReport {
            used: record
                .lessons
                .iter()
                .map(|(phase, l)| (phase.clone(), l.iter().map(|u| u.id.clone()).collect()))
                .collect(),
            distilled: record.distilled.as_deref().cloned(),
        });
    }

    /// The summary of the run `record` describes, as its records in `store` stand now:
    /// what `murmur status` prints, ended or not. Its phases come from the manifest the
    /// run recorded; what the run's end named that the records do not hold (the
    /// provider's outage) comes from its last summary.
    pub fn of_record(
        store: &dyn Store,
        record: &crate::blackboard::RunRecord,
    ) -> Result<Self, StoreError> {
        let phases = crate::manifest::Manifest::parse(
            std::path::Path::new(&record.manifest_path),
            &record.manifest_text,
        )
        .map(|m| m.phases.iter().map(|p| p.name.clone()).collect::<Vec<_>>())
        .unwrap_or_default();
        let elapsed = record
            .finished_at_ms
            .unwrap_or_else(crate::artifact::now_ms)
            .saturating_sub(record.started_at_ms);
        let mut summary = Self::from_store(
            store,
            &record.name,
            &record.workflow_id,
            phases,
            record.status,
            elapsed,
        )?;
        summary.llm = record.llm_usage.clone();
        summary.add_times(&record.agent_times);
        summary.add_lessons(record);
        summary.provider = record
            .summary
            .as_ref()
            .and_then(|s| s.get("provider"))
            .and_then(|p| serde_json::from_value(p.clone()).ok());
        Ok(summary)
    }

    /// Build the summary of `workflow_id` from the store.
    pub fn from_store(
        store: &dyn Store,
        workflow: &str,
        workflow_id: &str,
        declared_phases: impl IntoIterator<Item = String>,
        status: RunStatus,
        elapsed_ms: u64,
    ) -> Result<Self, StoreError> {
        let counts = store.counts(workflow_id)?;
        let declared: Vec<String> = declared_phases.into_iter().collect();
        let mut open_work = Vec::new();
        let mut failed_work = Vec::new();
        let mut agents: BTreeMap<String, AgentCounts> = BTreeMap::new();
        let mut faults: BTreeMap<String, u64> = FaultKind::ALL
            .iter()
            .map(|k| (k.as_str().to_string(), 0))
            .collect();
        // Counted from the store's tally (kept as records change), the artifact counts
        // and the notable work: never the run's whole history.
        let tally = Tally::of(store, workflow_id)?;
        let phases = tally.phase_counts(declared.iter().cloned());
        let work = tally.work.clone();
        store.notable_work(workflow_id, &mut |notable| {
            for w in crate::work::unrecovered_failures(notable) {
                failed_work.push(OpenWork::of(w));
            }
            if status != RunStatus::Complete {
                for w in notable.iter().filter(|w| !w.status().is_final()) {
                    open_work.push(OpenWork::of(w));
                }
            }
        })?;
        // What each agent published: an agent's artifacts are exactly the outputs of its
        // completed invocations (the host and the workflow's inputs are not agents).
        for (agent, t) in &tally.agents {
            if t.ran == 0 {
                continue;
            }
            for (fault, n) in FaultKind::ALL.iter().zip(t.faults) {
                *faults.entry(fault.as_str().to_string()).or_default() += n;
            }
            agents.insert(
                agent.to_string(),
                AgentCounts {
                    invocations: t.ran,
                    failed: t.failed,
                    published: counts
                        .by_producer
                        .get(agent.as_str())
                        .cloned()
                        .unwrap_or_default(),
                    time: None,
                },
            );
        }
        let invocations = tally.ran;
        let depth_limited = tally.depth_limited;
        Ok(RunSummary {
            status,
            workflow: workflow.to_string(),
            workflow_id: workflow_id.to_string(),
            artifacts: counts.total,
            invocations,
            by_type: counts.by_type,
            phases,
            agents,
            work,
            faults,
            depth_limited,
            llm: None,
            provider: None,
            open_work,
            failed_work,
            lessons: None,
            elapsed_ms,
        })
    }
}
