//! The manifest's serde shapes: TOML as written, with the span of every value a check
//! may complain about. `check` turns them into the checked types of `super`.

use super::{PluginLimits, WorkflowSection};
use crate::artifact::Visibility;
use crate::phase::Phase;
use crate::plugin::World;
use crate::policy::{
    ContextPolicy, DedupPolicy, MonitoringPolicy, RecoveryPolicy, RetryPolicy, RoutingPolicy,
    ValidationPolicy,
};
use serde::Deserialize;
use std::collections::BTreeMap;
use toml::Spanned;

/// A manifest, or a hot-load bundle: one shape for both. A bundle holds only the
/// `[[phase]]`, `[[type]]` and `[[plugin]]` tables ([`RawManifest::manifest_only`] finds
/// anything else); a manifest must have `[workflow]`. Sections are optional and spanned
/// here so both checks can point at them.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawManifest {
    #[serde(default)]
    pub(crate) workflow: Option<Spanned<WorkflowSection>>,
    #[serde(default)]
    pub(crate) phase: Vec<Phase>,
    #[serde(default, rename = "type")]
    pub(crate) types: Vec<Spanned<RawType>>,
    #[serde(default)]
    pub(crate) plugin: Vec<Spanned<RawPlugin>>,
    #[serde(default)]
    pub(crate) input: Vec<Spanned<RawInput>>,
    #[serde(default)]
    pub(crate) context: Option<Spanned<ContextPolicy>>,
    #[serde(default)]
    pub(crate) routing: Option<Spanned<RoutingPolicy>>,
    #[serde(default)]
    pub(crate) dedup: Option<Spanned<DedupPolicy>>,
    #[serde(default)]
    pub(crate) retry: Option<Spanned<RetryPolicy>>,
    #[serde(default)]
    pub(crate) recovery: Option<Spanned<RecoveryPolicy>>,
    #[serde(default)]
    pub(crate) monitoring: Option<Spanned<MonitoringPolicy>>,
    #[serde(default)]
    pub(crate) validation: Option<Spanned<ValidationPolicy>>,
    #[serde(default)]
    pub(crate) llm: Option<Spanned<crate::llm::LlmConfig>>,
    #[serde(default)]
    pub(crate) expect: Vec<Spanned<RawExpect>>,
    #[serde(default)]
    pub(crate) lessons: Option<Spanned<crate::lessons::Settings>>,
}

/// `[[expect]]`: what a test workflow's finished run must show (`murmur test`).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawExpect {
    pub(crate) that: String,
    #[serde(default)]
    pub(crate) why: Option<String>,
}

impl RawManifest {
    /// The first section only a whole manifest may have, by name and span.
    pub(crate) fn manifest_only(&self) -> Option<(&'static str, std::ops::Range<usize>)> {
        let span = |s: Option<std::ops::Range<usize>>| s;
        [
            (
                "[workflow]",
                span(self.workflow.as_ref().map(Spanned::span)),
            ),
            ("[[input]]", span(self.input.first().map(Spanned::span))),
            ("[context]", span(self.context.as_ref().map(Spanned::span))),
            ("[routing]", span(self.routing.as_ref().map(Spanned::span))),
            ("[dedup]", span(self.dedup.as_ref().map(Spanned::span))),
            ("[retry]", span(self.retry.as_ref().map(Spanned::span))),
            (
                "[recovery]",
                span(self.recovery.as_ref().map(Spanned::span)),
            ),
            (
                "[monitoring]",
                span(self.monitoring.as_ref().map(Spanned::span)),
            ),
            (
                "[validation]",
                span(self.validation.as_ref().map(Spanned::span)),
            ),
            ("[llm]", span(self.llm.as_ref().map(Spanned::span))),
            ("[[expect]]", span(self.expect.first().map(Spanned::span))),
            ("[lessons]", span(self.lessons.as_ref().map(Spanned::span))),
        ]
        .into_iter()
        .find_map(|(name, s)| s.map(|s| (name, s)))
    }
}

/// `visibility = "public"`, `{ private = [..] }`, `{ labels = [..] }` or `{ tenant = ".." }`.
#[derive(Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub(crate) enum RawVisibility {
    Public,
    Private(Vec<String>),
    Labels(Vec<String>),
    Tenant(String),
}

impl From<RawVisibility> for Visibility {
    fn from(v: RawVisibility) -> Self {
        match v {
            RawVisibility::Public => Visibility::Public,
            RawVisibility::Private(names) => Visibility::Private(names.into()),
            RawVisibility::Labels(labels) => Visibility::Labels(labels.into()),
            RawVisibility::Tenant(t) => Visibility::Tenant(t),
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawType {
    pub(crate) name: String,
    #[serde(default)]
    pub(crate) schema: Option<toml::Value>,
    #[serde(default)]
    pub(crate) schema_file: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawPlugin {
    pub(crate) name: Spanned<String>,
    pub(crate) path: Spanned<String>,
    pub(crate) world: Spanned<World>,
    #[serde(default)]
    pub(crate) sha256: Option<Spanned<String>>,
    #[serde(default)]
    pub(crate) limits: Option<Spanned<PluginLimits>>,
    #[serde(default)]
    pub(crate) config: Option<toml::Table>,
    #[serde(default)]
    pub(crate) subscribe: Option<Vec<Spanned<RawSubscription>>>,
    #[serde(default)]
    pub(crate) labels: Vec<String>,
    #[serde(default)]
    pub(crate) tenant: Option<String>,
    #[serde(default)]
    pub(crate) grants: Option<Spanned<Vec<String>>>,
    #[serde(default)]
    pub(crate) read_dirs: Option<Spanned<BTreeMap<String, String>>>,
    /// Each entry a URL pattern, or a table `{ url, headers }` (checked in check.rs, where
    /// a wrong shape gets a message of its own rather than serde's "no variant matched").
    #[serde(default)]
    pub(crate) http: Option<Spanned<Vec<Spanned<toml::Value>>>>,
    #[serde(default)]
    pub(crate) context: Option<Spanned<crate::policy::ContextOverride>>,
    #[serde(default)]
    pub(crate) observer: Option<Spanned<bool>>,
    #[serde(default)]
    pub(crate) approval: Option<Spanned<crate::phase::Approval>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawSubscription {
    #[serde(rename = "type")]
    pub(crate) type_name: String,
    #[serde(default)]
    pub(crate) filter: Option<String>,
    #[serde(default)]
    pub(crate) from: Vec<String>,
    #[serde(default)]
    pub(crate) tags: Vec<String>,
    #[serde(default)]
    pub(crate) allow_self: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawInput {
    #[serde(rename = "type")]
    pub(crate) type_name: String,
    pub(crate) payload: toml::Table,
    #[serde(default)]
    pub(crate) tags: Vec<String>,
    #[serde(default)]
    pub(crate) count: Option<u64>,
    #[serde(default)]
    pub(crate) visibility: Option<RawVisibility>,
}
