//! A run's status: where a run stands in the store, and how it ended.

use serde::{Deserialize, Serialize};
use std::fmt;

/// How a run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RunStatus {
    /// Idle with no open work.
    Complete,
    /// Idle with open work that nothing can advance.
    Stalled,
    /// Work failed for good without a recovery that succeeded (the summary's
    /// `failed_work` names it), or the host itself failed.
    Failed,
    /// A budget ran out first.
    BudgetExhausted,
    /// The language-model provider could not be reached or refused the host (the
    /// summary's `provider` says which URL and why): the run stopped claiming, its work
    /// waits, and `murmur resume` goes on once the provider answers.
    ProviderUnavailable,
    /// Idle with open work that waits only for a person's approval: `murmur approve` or
    /// `reject` (or the service's API) decides, and `resume` goes on.
    Waiting,
    /// Stopped on request (`murmur serve`'s pause): what ran is committed, the rest
    /// waits until the run is resumed. A restarted server leaves it paused.
    Paused,
    /// Cancelled on request: it claims nothing more, and no resume goes on with it.
    Cancelled,
    /// Not ended: running now, or interrupted (see `murmur resume`). Only `status` says
    /// this. A store's status this build does not know reads as this.
    #[serde(other)]
    Running,
}

impl RunStatus {
    /// The status as the summary and the store spell it (`complete`, `budget_exhausted`, …).
    pub fn as_str(self) -> &'static str {
        match self {
            RunStatus::Complete => "complete",
            RunStatus::Stalled => "stalled",
            RunStatus::Failed => "failed",
            RunStatus::BudgetExhausted => "budget_exhausted",
            RunStatus::ProviderUnavailable => "provider_unavailable",
            RunStatus::Waiting => "waiting",
            RunStatus::Paused => "paused",
            RunStatus::Cancelled => "cancelled",
            RunStatus::Running => "running",
        }
    }
}

impl RunStatus {
    /// Whether `murmur resume` goes on with a run in this status: interrupted, paused,
    /// or stopped by its provider's outage.
    pub fn resumable(self) -> bool {
        matches!(
            self,
            RunStatus::Running
                | RunStatus::ProviderUnavailable
                | RunStatus::Paused
                | RunStatus::Waiting
        )
    }

    /// Whether the run has ended for good or for now (every status but `running`).
    pub fn ended(self) -> bool {
        self != RunStatus::Running
    }
}

impl fmt::Display for RunStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::RunStatus;

    #[test]
    fn a_status_reads_back_as_stored_and_an_unknown_one_as_running() {
        for s in [
            RunStatus::Complete,
            RunStatus::Stalled,
            RunStatus::Failed,
            RunStatus::BudgetExhausted,
            RunStatus::ProviderUnavailable,
            RunStatus::Waiting,
            RunStatus::Paused,
            RunStatus::Cancelled,
            RunStatus::Running,
        ] {
            let json = serde_json::to_string(&s).expect("json");
            assert_eq!(json, format!("\"{}\"", s.as_str()));
            assert_eq!(serde_json::from_str::<RunStatus>(&json).expect("back"), s);
        }
        let later: RunStatus = serde_json::from_str("\"archived\"").expect("read");
        assert_eq!(later, RunStatus::Running);
    }
}
