//! The workflow's policies: the manifest sections that tune the self-improving loop.
//!
//! Every key has a default that serves most workflows, so a manifest names only what it
//! changes. Each section is one concern:
//!
//! | section | what it governs |
//! |---|---|
//! | `[context]` | what an invocation sees besides its inputs, and how much |
//! | `[routing]` | where a discovery whose phase is `auto` (or unknown) goes |
//! | `[dedup]` | when a new discovery is recorded as a duplicate instead of scheduled |
//! | `[retry]` | how retryable errors and validator rejections are retried |
//! | `[recovery]` | the recovery work a final failure spawns |
//! | `[monitoring]` | the `WorkflowMetrics` artifacts the host publishes |
//! | `[validation]` | the host's built-in output checks |

use serde::Deserialize;
use toml::Spanned;

/// `[context]`: the built-in context provider's budget. The host assembles candidates —
/// the invocation's ancestry (nearest first), then the workflow's most recent artifacts —
/// visible to the agent, within this budget; context-provider plugins (in manifest
/// order) may then reorder or drop them. Phase instructions and retry feedback always
/// come first and do not count against the budget.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ContextPolicy {
    /// Artifacts at most. Default 12; 0 sends no context beyond the pinned host artifacts.
    pub max_artifacts: usize,
    /// Payload bytes at most. Default 64 KiB.
    pub max_bytes: usize,
    /// Generations of ancestors to walk up. Default 4.
    pub ancestry_depth: u32,
    /// Whether recent artifacts of the workflow fill what ancestry leaves. Default true.
    pub recent: bool,
}

impl Default for ContextPolicy {
    fn default() -> Self {
        Self {
            max_artifacts: 12,
            max_bytes: 64 << 10,
            ancestry_depth: 4,
            recent: true,
        }
    }
}

/// `context` on an agent's `[[plugin]]` table: that agent's own budget, for agents that
/// need more, less or none of what `[context]` gives the others (a formatter that reads
/// only its input; a planner that wants a longer history). Each key left out keeps the
/// workflow's value.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ContextOverride {
    /// [`ContextPolicy::max_artifacts`].
    pub max_artifacts: Option<usize>,
    /// [`ContextPolicy::max_bytes`].
    pub max_bytes: Option<usize>,
    /// [`ContextPolicy::ancestry_depth`].
    pub ancestry_depth: Option<u32>,
    /// [`ContextPolicy::recent`].
    pub recent: Option<bool>,
}

impl ContextOverride {
    /// `base` with the keys this override sets.
    pub fn apply(&self, base: &ContextPolicy) -> ContextPolicy {
        ContextPolicy {
            max_artifacts: self.max_artifacts.unwrap_or(base.max_artifacts),
            max_bytes: self.max_bytes.unwrap_or(base.max_bytes),
            ancestry_depth: self.ancestry_depth.unwrap_or(base.ancestry_depth),
            recent: self.recent.unwrap_or(base.recent),
        }
    }
}

/// One `[[routing.rule]]`: a phrase and the phase it sends work to.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RouteRule {
    /// A phrase such as "bug fix needed"; it matches a discovery whose description
    /// contains every one of its words (case-insensitive, plurals folded).
    #[serde(rename = "match")]
    pub phrase: String,
    /// The phase it routes to.
    pub phase: Spanned<String>,
}

/// `[routing]`.
#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct RoutingPolicy {
    /// A router plugin (world `router`) to ask first; on its error or an unknown answer
    /// the built-in router decides. Default: none.
    pub plugin: Option<Spanned<String>>,
    /// Rules tried in order before phase descriptions. Default: the built-in rules
    /// ("optimization opportunity" → analysis, "bug fix needed" → implementation, …)
    /// for the phases the manifest declares.
    pub rule: Option<Vec<RouteRule>>,
    /// The phase when nothing matches. Default: the first declared phase.
    pub default_phase: Option<Spanned<String>>,
}

/// `[dedup]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DedupPolicy {
    /// Whether discoveries are checked at all. Default true.
    pub enabled: bool,
    /// Similarity (0–1] at or above which a discovery duplicates an open or done one in
    /// the same phase. Default 0.8.
    pub threshold: f64,
    /// A router plugin whose `similarity` replaces the built-in lexical measure
    /// (Jaccard similarity of the descriptions' word sets). Default: none.
    pub plugin: Option<Spanned<String>>,
    /// With an `[llm] embedding_model` (and no plugin), descriptions are compared by the
    /// cosine similarity of their embeddings, duplicates at or above this. Default 0.9.
    pub embedding_threshold: f64,
    /// A discovery is compared with its phase's open work and with the phase's `window`
    /// newest work items, done ones among them; done work older than that is no longer
    /// an original. Bounds the memory a long run's index takes. Default 65,536; 0
    /// compares with all of a run's work.
    pub window: usize,
}

/// The default [`DedupPolicy::window`].
pub(crate) const DEDUP_WINDOW: usize = 65_536;

impl Default for DedupPolicy {
    fn default() -> Self {
        Self {
            enabled: true,
            threshold: 0.8,
            plugin: None,
            embedding_threshold: 0.9,
            window: DEDUP_WINDOW,
        }
    }
}

/// `[retry]`.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct RetryPolicy {
    /// Attempts in all, the first included, for retryable errors and rejected outputs.
    /// Default 3; 1 disables retries.
    pub max_attempts: u32,
    /// Delay before the first retry, in ms; doubled for each further one. Default 50.
    pub backoff_ms: u64,
    /// Longest delay, in ms. Default 5,000.
    pub max_backoff_ms: u64,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_attempts: 3,
            backoff_ms: 50,
            max_backoff_ms: 5_000,
        }
    }
}

impl RetryPolicy {
    /// The delay before retry number `retry` (1-based).
    pub fn backoff(&self, retry: u32) -> std::time::Duration {
        let factor = 1u64 << retry.saturating_sub(1).min(30);
        std::time::Duration::from_millis(
            self.backoff_ms
                .saturating_mul(factor)
                .min(self.max_backoff_ms),
        )
    }
}

/// `[recovery]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RecoveryPolicy {
    /// Whether a work item's final failure spawns recovery work. Default true.
    pub enabled: bool,
    /// The recovery work's phase. Default `analysis` if declared, else the first phase.
    pub phase: Option<Spanned<String>>,
    /// Recovery work items per workflow run at most. Default 16.
    pub max: u32,
}

impl Default for RecoveryPolicy {
    fn default() -> Self {
        Self {
            enabled: true,
            phase: None,
            max: 16,
        }
    }
}

/// `[monitoring]`.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct MonitoringPolicy {
    /// Whether the host publishes `WorkflowMetrics`. Default true.
    pub metrics: bool,
    /// At most one `WorkflowMetrics` per this many ms while counts change (and one when
    /// the run ends). Default 1,000.
    pub interval_ms: u64,
}

impl Default for MonitoringPolicy {
    fn default() -> Self {
        Self {
            metrics: true,
            interval_ms: 1_000,
        }
    }
}

/// `[validation]`.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ValidationPolicy {
    /// The built-in checks: an approved AnalysisResult has a plan and spawns next-phase
    /// work; an Implementation lists its code files. Default true.
    pub builtin: bool,
}

impl Default for ValidationPolicy {
    fn default() -> Self {
        Self { builtin: true }
    }
}

/// All policies of a manifest.
#[derive(Debug, Clone, Default)]
pub struct Policies {
    /// `[context]`.
    pub context: ContextPolicy,
    /// `[routing]`.
    pub routing: RoutingPolicy,
    /// `[dedup]`.
    pub dedup: DedupPolicy,
    /// `[retry]`.
    pub retry: RetryPolicy,
    /// `[recovery]`.
    pub recovery: RecoveryPolicy,
    /// `[monitoring]`.
    pub monitoring: MonitoringPolicy,
    /// `[validation]`.
    pub validation: ValidationPolicy,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_and_is_capped() {
        let r = RetryPolicy {
            max_attempts: 10,
            backoff_ms: 100,
            max_backoff_ms: 350,
        };
        let ms: Vec<u128> = (1..=4).map(|n| r.backoff(n).as_millis()).collect();
        assert_eq!(ms, [100, 200, 350, 350]);
    }
}
