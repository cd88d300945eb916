//! The workflow manifest (TOML): phases, artifact types, plugins, limits and inputs.
//!
//! Parsing keeps the byte span of every value a later check may complain about, so every
//! error — syntax, a wrong type, an unknown world, a bad CEL filter, a missing plugin file,
//! a payload that violates its schema — names the file, line and column.
//! Relative paths are resolved against the manifest's own directory.

use crate::artifact::Visibility;
use crate::phase::Phase;
use crate::policy::{
    ContextPolicy, DedupPolicy, MonitoringPolicy, Policies, RecoveryPolicy, RetryPolicy,
    RoutingPolicy, ValidationPolicy,
};
use serde::Deserialize;
use std::collections::BTreeMap;

use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use thiserror::Error;
use toml::Spanned;

/// A manifest problem, located.
#[derive(Debug, Error)]
#[error("{}:{line}:{column}: {message}", file.display())]
pub struct ManifestError {
    /// The manifest file.
    pub file: PathBuf,
    /// 1-based line.
    pub line: usize,
    /// 1-based column (in characters).
    pub column: usize,
    /// What is wrong and what was expected.
    pub message: String,
}

/// Byte offset → (line, column), both 1-based.
pub fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let offset = offset.min(text.len());
    let before = &text[..offset];
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map(|i| i + 1).unwrap_or(0);
    (line, before[line_start..].chars().count() + 1)
}

pub use crate::plugin::Capability;

/// An error at byte `span` of `text`, read from `file`.
fn locate(file: &Path, text: &str, span: Range<usize>, message: String) -> ManifestError {
    let (line, column) = line_col(text, span.start);
    ManifestError {
        file: file.to_path_buf(),
        line,
        column,
        message,
    }
}

/// TOML `text` (from `file`) as `T`, a syntax or shape error located.
fn parse_toml<T: serde::de::DeserializeOwned>(file: &Path, text: &str) -> Result<T, ManifestError> {
    toml::from_str(text).map_err(|e| {
        locate(
            file,
            text,
            e.span().unwrap_or(0..0),
            e.message().trim().to_string(),
        )
    })
}

pub use crate::plugin::World;

/// A parsed manifest, with paths resolved.
#[derive(Debug, Clone)]
pub struct Manifest {
    /// Where it was read from.
    pub path: PathBuf,
    /// Its text (kept to locate later errors).
    pub source: String,
    /// `[workflow]`.
    pub workflow: WorkflowSection,
    /// `[[phase]]` tables, in order.
    pub phases: Vec<Phase>,
    /// `[[type]]` tables: user artifact types.
    pub types: Vec<TypeDecl>,
    /// `[[plugin]]` tables, in order.
    pub plugins: Vec<PluginDecl>,
    /// `[[input]]` tables: the workflow's initial artifacts.
    pub inputs: Vec<InputDecl>,
    /// `[context]`, `[routing]`, `[dedup]`, `[retry]`, `[recovery]`, `[monitoring]`,
    /// `[validation]`.
    pub policies: Policies,
    /// `[llm]`: the language-model provider, if any.
    pub llm: Option<crate::llm::LlmConfig>,
}

/// `[workflow]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WorkflowSection {
    /// The workflow's name.
    pub name: String,
    /// What it is for.
    #[serde(default)]
    pub description: String,
    /// `[workflow.limits]`.
    #[serde(default)]
    pub limits: WorkflowLimits,
}

/// `[workflow.limits]`: loop safety and parallelism. Every key has a default.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WorkflowLimits {
    /// Invocations running at once. Default: the number of CPUs (at least 2).
    pub concurrency: usize,
    /// Artifacts at this cascade depth or deeper trigger no invocations. Default 32.
    pub max_depth: u32,
    /// Budget: invocations in all before the workflow ends `budget_exhausted`. Default 1,000,000.
    pub max_invocations: u64,
    /// Invocations per agent before that agent's further work is cancelled. Default: unlimited (0).
    pub max_invocations_per_agent: u64,
}

impl Default for WorkflowLimits {
    fn default() -> Self {
        let cpus = std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(2);
        Self {
            concurrency: cpus.max(2),
            max_depth: 32,
            max_invocations: 1_000_000,
            max_invocations_per_agent: 0,
        }
    }
}

/// `[[type]]`: a user artifact type.
#[derive(Debug, Clone)]
pub struct TypeDecl {
    /// The type's name.
    pub name: String,
    /// Its JSON Schema.
    pub schema: serde_json::Value,
    /// Where it was declared.
    pub span: Range<usize>,
    /// The hot-load bundle it came from (`None`: the manifest itself).
    pub origin: Option<Arc<Origin>>,
}

/// Per-plugin resource limits. Every key has a documented default.
#[derive(Debug, Clone, Copy, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PluginLimits {
    /// Linear memory an instance may grow to, in MiB. Default 64. Growth beyond it fails,
    /// and an instance that then traps is classified `memory`.
    pub memory_mb: u64,
    /// Wall-clock deadline per invocation, in milliseconds, covering guest code and host
    /// calls alike. Default 10,000. Exceeding it is classified `timeout`.
    pub timeout_ms: u64,
    /// Outputs one invocation may return. Default 256; more is `invalid_output`.
    pub max_outputs: usize,
    /// Bytes of one output payload. Default 1 MiB; more is `invalid_output`.
    pub max_output_bytes: usize,
    /// Payload bytes handed to one call (inputs and context). Default 4 MiB: context is
    /// trimmed to fit; inputs alone beyond it fail the invocation without calling it.
    pub max_input_bytes: usize,
    /// Artifacts one blackboard query returns at most. Default 100.
    pub max_query_results: usize,
    /// Payload bytes one blackboard query returns at most. Default 1 MiB.
    pub max_query_bytes: usize,
    /// Optional fuel per call: a deterministic instruction budget (the same work faults
    /// at the same point on every machine). Running out is classified `timeout`.
    /// Default: none (the wall-clock deadline alone).
    pub fuel: Option<u64>,
    /// Calls one agent instance may serve. Default 0: every call gets a fresh instance,
    /// so nothing one call leaves in the guest's memory reaches the next. N > 0 keeps
    /// healthy instances warm (at most one per concurrent call) and reuses each for up to
    /// N calls of this plugin — never of another plugin, even one built from the same
    /// file. It saves instantiating and resetting memory (about two thirds of a small
    /// agent's cost), for agents that keep no state between calls. An instance that
    /// faults, errs at the host, times out or prints a lot is dropped, not reused.
    /// Agents only; validators, routers and context providers are always fresh.
    pub reuse: u32,
}

impl Default for PluginLimits {
    fn default() -> Self {
        Self {
            memory_mb: 64,
            timeout_ms: 10_000,
            max_outputs: 256,
            max_output_bytes: 1 << 20,
            max_input_bytes: 4 << 20,
            max_query_results: 100,
            max_query_bytes: 1 << 20,
            fuel: None,
            reuse: 0,
        }
    }
}

/// A subscription as written in the manifest (overrides the plugin's own).
#[derive(Debug, Clone)]
pub struct SubscriptionDecl {
    /// Artifact type name.
    pub type_name: String,
    /// Optional CEL filter.
    pub filter: Option<String>,
    /// Only from these producers.
    pub from: Vec<String>,
    /// Only with all of these tags.
    pub tags: Vec<String>,
    /// Whether the plugin's own outputs may trigger it.
    pub allow_self: bool,
    /// Where it was declared.
    pub span: Range<usize>,
}

/// `[[plugin]]`.
#[derive(Debug, Clone)]
pub struct PluginDecl {
    /// Unique name; the agent's identity (producer of its outputs).
    pub name: String,
    /// The component file, resolved against the manifest's directory.
    pub path: PathBuf,
    /// Which world it implements.
    pub world: World,
    /// Expected sha256 of the component file, if pinned.
    pub sha256: Option<String>,
    /// Resource limits.
    pub limits: PluginLimits,
    /// The `config` table, as JSON, handed to every invocation.
    pub config: serde_json::Value,
    /// Subscriptions replacing the plugin's own, when present.
    pub subscriptions: Option<Vec<SubscriptionDecl>>,
    /// Labels granted (for label visibility).
    pub labels: Vec<String>,
    /// Tenant (for tenant visibility).
    pub tenant: Option<String>,
    /// Host capabilities granted beyond `log` (`blackboard`, `llm`). A plugin whose
    /// component imports an interface not granted here is refused at load.
    pub grants: Vec<Capability>,
    /// Directories a WASI guest may read, as (guest path, host directory); read-only.
    pub read_dirs: Vec<(String, PathBuf)>,
    /// An agent's own context budget over the workflow's `[context]`.
    pub context: Option<crate::policy::ContextOverride>,
    /// Where the table starts (for later errors about this plugin).
    pub span: Range<usize>,
    /// Where `path` was written.
    pub path_span: Range<usize>,
    /// The hot-load bundle it came from (`None`: the manifest itself); spans refer to it.
    pub origin: Option<Arc<Origin>>,
}

/// A hot-load bundle file, kept to locate errors in it.
#[derive(Debug)]
pub struct Origin {
    /// The bundle's TOML file.
    pub file: PathBuf,
    /// Its text.
    pub source: String,
}

/// `[[input]]`: an initial artifact.
#[derive(Debug, Clone)]
pub struct InputDecl {
    /// Artifact type name.
    pub type_name: String,
    /// Its payload.
    pub payload: serde_json::Value,
    /// Tags.
    pub tags: Vec<String>,
    /// How many copies to publish (default 1); in copy `i`, every `{index}` inside a
    /// string of the payload becomes `i`.
    pub count: u64,
    /// Who may see it (default public).
    pub visibility: Visibility,
    /// Where the payload was written.
    pub span: Range<usize>,
}

impl InputDecl {
    /// The payload of copy `index`: `{index}` in its strings becomes the copy's number,
    /// 0 for a single input as for the first of many.
    pub fn payload_for(&self, index: u64) -> serde_json::Value {
        fn fill(v: &serde_json::Value, index: &str) -> serde_json::Value {
            match v {
                serde_json::Value::String(s) if s.contains("{index}") => {
                    serde_json::Value::String(s.replace("{index}", index))
                }
                serde_json::Value::Array(a) => a.iter().map(|x| fill(x, index)).collect(),
                serde_json::Value::Object(o) => {
                    o.iter().map(|(k, x)| (k.clone(), fill(x, index))).collect()
                }
                other => other.clone(),
            }
        }
        fill(&self.payload, &index.to_string())
    }
}

/// Check what the policies name: phases that exist, plugins of the right world, sane numbers.
fn check_policies(
    source: &str,
    policies: &Policies,
    phases: &std::collections::BTreeSet<String>,
    plugins: &[PluginDecl],
    at: &dyn Fn(Range<usize>, String) -> ManifestError,
) -> Result<(), ManifestError> {
    // Section-level problems point at the section header.
    let section = |name: &str| {
        let off = source.find(&format!("[{name}]")).unwrap_or(0);
        off..off
    };
    let phase = |p: &Spanned<String>, what: &str| {
        if phases.contains(p.get_ref()) {
            Ok(())
        } else {
            Err(at(
                p.span(),
                format!(
                    "{what} names phase '{}', which is not declared (declared: {})",
                    p.get_ref(),
                    phases.iter().cloned().collect::<Vec<_>>().join(", ")
                ),
            ))
        }
    };
    let router =
        |p: &Spanned<String>, what: &str| match plugins.iter().find(|d| d.name == *p.get_ref()) {
            Some(d) if d.world == World::Router => Ok(()),
            Some(d) => Err(at(
                p.span(),
                format!(
                    "{what} names plugin '{}', which implements world '{}', not 'router'",
                    d.name, d.world
                ),
            )),
            None => Err(at(
                p.span(),
                format!(
                    "{what} names plugin '{}', which is not declared",
                    p.get_ref()
                ),
            )),
        };
    let r = &policies.routing;
    if let Some(p) = &r.plugin {
        router(p, "routing.plugin")?;
    }
    for rule in r.rule.iter().flatten() {
        phase(&rule.phase, &format!("routing rule '{}'", rule.phrase))?;
    }
    if let Some(p) = &r.default_phase {
        phase(p, "routing.default_phase")?;
    }
    let d = &policies.dedup;
    if !(d.threshold > 0.0 && d.threshold <= 1.0) {
        return Err(at(
            section("dedup"),
            format!(
                "dedup.threshold must be above 0 and at most 1, not {}",
                d.threshold
            ),
        ));
    }
    if let Some(p) = &d.plugin {
        router(p, "dedup.plugin")?;
    }
    if policies.retry.max_attempts == 0 {
        return Err(at(
            section("retry"),
            "retry.max_attempts must be at least 1 (1 means no retries)".into(),
        ));
    }
    if let Some(p) = &policies.recovery.phase {
        phase(p, "recovery.phase")?;
    }
    if policies.monitoring.interval_ms == 0 {
        return Err(at(
            section("monitoring"),
            "monitoring.interval_ms must be at least 1".into(),
        ));
    }
    Ok(())
}

/// What a fragment is merged into (empty for a whole manifest).
#[derive(Default, Clone, Copy)]
struct Existing<'a> {
    phases: &'a [Phase],
    plugins: &'a [PluginDecl],
}

/// Check phases and convert types and plugins (shared by manifests and hot-load bundles).
#[allow(clippy::type_complexity)]
fn convert_parts(
    source: &str,
    at: &dyn Fn(Range<usize>, String) -> ManifestError,
    base: &Path,
    phases: &[Phase],
    raw_types: Vec<Spanned<RawType>>,
    raw_plugins: Vec<Spanned<RawPlugin>>,
    existing: Existing<'_>,
) -> Result<
    (
        std::collections::BTreeSet<String>,
        Vec<TypeDecl>,
        Vec<PluginDecl>,
    ),
    ManifestError,
> {
    let mut phase_names: std::collections::BTreeSet<String> =
        existing.phases.iter().map(|p| p.name.clone()).collect();
    for p in phases.iter() {
        if p.name.is_empty() || p.name == "auto" {
            return Err(at(
                0..0,
                format!("phase name '{}' is reserved or empty", p.name),
            ));
        }
        if !phase_names.insert(p.name.clone()) {
            let off = source.find(&format!("\"{}\"", p.name)).unwrap_or(0);
            return Err(at(
                off..off,
                format!("phase '{}' is declared twice", p.name),
            ));
        }
    }

    let mut types = Vec::new();
    for t in raw_types {
        let span = t.span();
        let t = t.into_inner();
        let schema = match (t.schema, t.schema_file) {
            (Some(s), None) => serde_json::to_value(s).map_err(|e| {
                at(
                    span.clone(),
                    format!("type '{}': schema is not JSON-compatible: {e}", t.name),
                )
            })?,
            (None, Some(file)) => {
                let p = base.join(file.get_ref());
                let text = std::fs::read_to_string(&p).map_err(|e| {
                    at(
                        file.span(),
                        format!(
                            "type '{}': cannot read schema_file {}: {e}",
                            t.name,
                            p.display()
                        ),
                    )
                })?;
                serde_json::from_str(&text).map_err(|e| {
                    at(
                        file.span(),
                        format!(
                            "type '{}': schema_file {} is not JSON: {e}",
                            t.name,
                            p.display()
                        ),
                    )
                })?
            }
            _ => {
                return Err(at(
                    span,
                    format!(
                        "type '{}': give exactly one of `schema` or `schema_file`",
                        t.name
                    ),
                ));
            }
        };
        types.push(TypeDecl {
            name: t.name,
            schema,
            span,
            origin: None,
        });
    }

    let mut plugins: Vec<PluginDecl> = Vec::new();
    let taken = |name: &str, plugins: &[PluginDecl]| {
        plugins
            .iter()
            .chain(existing.plugins)
            .any(|q| q.name == name)
    };
    for p in raw_plugins {
        let span = p.span();
        let p = p.into_inner();
        let name = p.name.get_ref().clone();
        if name.is_empty() || name == "user" || name == "host" {
            return Err(at(
                p.name.span(),
                format!("plugin name '{name}' is reserved or empty"),
            ));
        }
        if taken(&name, &plugins) {
            return Err(at(
                p.name.span(),
                format!("plugin '{name}' is declared twice"),
            ));
        }
        let Some(world) = World::parse(p.world.get_ref()) else {
            return Err(at(
                p.world.span(),
                format!(
                    "plugin '{name}': unknown world '{}' (expected {})",
                    p.world.get_ref(),
                    World::choices()
                ),
            ));
        };
        if let Some(sha) = &p.sha256 {
            let ok =
                sha.get_ref().len() == 64 && sha.get_ref().chars().all(|c| c.is_ascii_hexdigit());
            if !ok {
                return Err(at(
                    sha.span(),
                    format!("plugin '{name}': sha256 must be 64 hex digits"),
                ));
            }
        }
        let l = &p.limits;
        if l.memory_mb == 0
            || l.timeout_ms == 0
            || l.max_outputs == 0
            || l.max_output_bytes == 0
            || l.max_input_bytes == 0
            || l.fuel == Some(0)
        {
            return Err(at(
                span,
                format!("plugin '{name}': limits must be positive"),
            ));
        }
        let config = match p.config {
            Some(c) => serde_json::to_value(c).map_err(|e| {
                at(
                    span.clone(),
                    format!("plugin '{name}': config is not JSON-compatible: {e}"),
                )
            })?,
            None => serde_json::Value::Object(Default::default()),
        };
        let subscriptions = p.subscribe.map(|subs| {
            subs.into_iter()
                .map(|s| {
                    let span = s.span();
                    let s = s.into_inner();
                    SubscriptionDecl {
                        type_name: s.type_name,
                        filter: s.filter,
                        from: s.from,
                        tags: s.tags,
                        allow_self: s.allow_self,
                        span,
                    }
                })
                .collect()
        });
        let grants = match p.grants {
            Some(g) => {
                let span = g.span();
                let g = g.into_inner();
                let mut grants = Vec::with_capacity(g.len());
                for c in &g {
                    let Some(capability) = Capability::parse(c) else {
                        return Err(at(
                            span,
                            format!(
                                "plugin '{name}': unknown capability '{c}' in grants (known: {}; `log` is always granted)",
                                Capability::choices()
                            ),
                        ));
                    };
                    grants.push(capability);
                }
                grants
            }
            None => Vec::new(),
        };
        let read_dirs = match p.read_dirs {
            Some(dirs) => {
                let span = dirs.span();
                let mut out = Vec::new();
                for (guest, host) in dirs.into_inner() {
                    let host = base.join(host);
                    if !guest.starts_with('/') || !host.is_dir() {
                        return Err(at(
                            span,
                            format!(
                                "plugin '{name}': read_dirs maps '{guest}' to {}, which is not a directory (guest paths are absolute, host paths relative to the manifest)",
                                host.display()
                            ),
                        ));
                    }
                    out.push((guest, host));
                }
                out
            }
            None => Vec::new(),
        };
        let context = match p.context {
            Some(c) if world != World::Agent => {
                return Err(at(
                    c.span(),
                    format!(
                        "plugin '{name}': `context` sets an agent's context budget; this plugin implements world '{world}', not 'agent'"
                    ),
                ));
            }
            c => c.map(Spanned::into_inner),
        };
        plugins.push(PluginDecl {
            name,
            grants,
            read_dirs,
            context,
            path: base.join(p.path.get_ref()),
            world,
            sha256: p.sha256.map(|s| s.into_inner().to_ascii_lowercase()),
            limits: p.limits,
            config,
            subscriptions,
            labels: p.labels,
            tenant: p.tenant,
            span,
            path_span: p.path.span(),
            origin: None,
        });
    }

    Ok((phase_names, types, plugins))
}

// ---- raw serde shapes -------------------------------------------------------------

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawManifest {
    workflow: WorkflowSection,
    #[serde(default)]
    phase: Vec<Phase>,
    #[serde(default, rename = "type")]
    types: Vec<Spanned<RawType>>,
    #[serde(default)]
    plugin: Vec<Spanned<RawPlugin>>,
    #[serde(default)]
    input: Vec<Spanned<RawInput>>,
    #[serde(default)]
    context: ContextPolicy,
    #[serde(default)]
    routing: RoutingPolicy,
    #[serde(default)]
    dedup: DedupPolicy,
    #[serde(default)]
    retry: RetryPolicy,
    #[serde(default)]
    recovery: RecoveryPolicy,
    #[serde(default)]
    monitoring: MonitoringPolicy,
    #[serde(default)]
    validation: ValidationPolicy,
    #[serde(default)]
    llm: Option<crate::llm::LlmConfig>,
}

/// `visibility = "public"`, `{ private = [..] }`, `{ labels = [..] }` or `{ tenant = ".." }`.
#[derive(Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
enum RawVisibility {
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

/// A hot-load bundle: phases, types and plugins to add to a running workflow.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawBundle {
    #[serde(default)]
    phase: Vec<Phase>,
    #[serde(default, rename = "type")]
    types: Vec<Spanned<RawType>>,
    #[serde(default)]
    plugin: Vec<Spanned<RawPlugin>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawType {
    name: String,
    #[serde(default)]
    schema: Option<toml::Value>,
    #[serde(default)]
    schema_file: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPlugin {
    name: Spanned<String>,
    path: Spanned<String>,
    world: Spanned<String>,
    #[serde(default)]
    sha256: Option<Spanned<String>>,
    #[serde(default)]
    limits: PluginLimits,
    #[serde(default)]
    config: Option<toml::Table>,
    #[serde(default)]
    subscribe: Option<Vec<Spanned<RawSubscription>>>,
    #[serde(default)]
    labels: Vec<String>,
    #[serde(default)]
    tenant: Option<String>,
    #[serde(default)]
    grants: Option<Spanned<Vec<String>>>,
    #[serde(default)]
    read_dirs: Option<Spanned<BTreeMap<String, String>>>,
    #[serde(default)]
    context: Option<Spanned<crate::policy::ContextOverride>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSubscription {
    #[serde(rename = "type")]
    type_name: String,
    #[serde(default)]
    filter: Option<String>,
    #[serde(default)]
    from: Vec<String>,
    #[serde(default)]
    tags: Vec<String>,
    #[serde(default)]
    allow_self: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawInput {
    #[serde(rename = "type")]
    type_name: String,
    payload: toml::Table,
    #[serde(default)]
    tags: Vec<String>,
    #[serde(default)]
    count: Option<u64>,
    #[serde(default)]
    visibility: Option<RawVisibility>,
}

impl Manifest {
    /// Read and check a manifest file.
    pub fn load(path: &Path) -> Result<Self, ManifestError> {
        let source = std::fs::read_to_string(path).map_err(|e| ManifestError {
            file: path.to_path_buf(),
            line: 1,
            column: 1,
            message: format!("cannot read the manifest: {e}"),
        })?;
        Self::parse(path, &source)
    }

    /// Parse manifest text; `path` names it in errors and anchors relative paths.
    pub fn parse(path: &Path, source: &str) -> Result<Self, ManifestError> {
        let at = |span: Range<usize>, message: String| locate(path, source, span, message);
        let raw: RawManifest = parse_toml(path, source)?;
        let base = path.parent().map(Path::to_path_buf).unwrap_or_default();

        let (phase_names, types, plugins) = convert_parts(
            source,
            &at,
            &base,
            &raw.phase,
            raw.types,
            raw.plugin,
            Existing::default(),
        )?;

        let mut inputs = Vec::new();
        for i in raw.input {
            let span = i.span();
            let i = i.into_inner();
            let payload = serde_json::to_value(i.payload).map_err(|e| {
                at(
                    span.clone(),
                    format!("input payload is not JSON-compatible: {e}"),
                )
            })?;
            let count = i.count.unwrap_or(1);
            if count == 0 {
                return Err(at(span, "input count must be at least 1".into()));
            }
            inputs.push(InputDecl {
                type_name: i.type_name,
                payload,
                tags: i.tags,
                count,
                visibility: i.visibility.map(Visibility::from).unwrap_or_default(),
                span,
            });
        }

        if raw.workflow.limits.concurrency == 0 {
            return Err(at(
                0..0,
                "workflow.limits.concurrency must be at least 1".into(),
            ));
        }

        let policies = Policies {
            context: raw.context,
            routing: raw.routing,
            dedup: raw.dedup,
            retry: raw.retry,
            recovery: raw.recovery,
            monitoring: raw.monitoring,
            validation: raw.validation,
        };
        check_policies(source, &policies, &phase_names, &plugins, &at)?;

        Ok(Manifest {
            path: path.to_path_buf(),
            source: source.to_string(),
            workflow: raw.workflow,
            phases: raw.phase,
            types,
            plugins,
            inputs,
            policies,
            llm: raw.llm,
        })
    }

    /// An error located at `span` of this manifest.
    pub fn error_at(&self, span: Range<usize>, message: impl Into<String>) -> ManifestError {
        locate(&self.path, &self.source, span, message.into())
    }

    /// An error at `span` of the manifest, or of the bundle `origin` if given.
    pub fn located(
        &self,
        origin: Option<&Origin>,
        span: Range<usize>,
        message: impl Into<String>,
    ) -> ManifestError {
        match origin {
            Some(o) => locate(&o.file, &o.source, span, message.into()),
            None => self.error_at(span, message),
        }
    }

    /// This manifest with a hot-load bundle merged in: the bundle's `[[phase]]`,
    /// `[[type]]` and `[[plugin]]` tables (plugin paths relative to the bundle's file).
    /// Names must not clash with what the manifest declares; errors name the bundle's
    /// file, line and column.
    pub fn with_bundle(&self, file: &Path, text: &str) -> Result<Manifest, ManifestError> {
        let at = |span: Range<usize>, message: String| locate(file, text, span, message);
        let raw: RawBundle = parse_toml(file, text)?;
        let base = file.parent().map(Path::to_path_buf).unwrap_or_default();
        let (_, mut types, mut plugins) = convert_parts(
            text,
            &at,
            &base,
            &raw.phase,
            raw.types,
            raw.plugin,
            Existing {
                phases: &self.phases,
                plugins: &self.plugins,
            },
        )?;
        if let Some(t) = types
            .iter()
            .find(|t| self.types.iter().any(|x| x.name == t.name))
        {
            return Err(at(
                t.span.clone(),
                format!("type '{}' is already declared", t.name),
            ));
        }
        let origin = Arc::new(Origin {
            file: file.to_path_buf(),
            source: text.to_string(),
        });
        for t in &mut types {
            t.origin = Some(origin.clone());
        }
        for p in &mut plugins {
            p.origin = Some(origin.clone());
        }
        let mut merged = self.clone();
        merged.phases.extend(raw.phase);
        merged.types.extend(types);
        merged.plugins.extend(plugins);
        Ok(merged)
    }

    /// The phases by name.
    pub fn phase_map(&self) -> BTreeMap<String, Phase> {
        self.phases
            .iter()
            .map(|p| (p.name.clone(), p.clone()))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn index_placeholders_become_the_copy_number_even_for_a_single_input() {
        let decl = |count| InputDecl {
            type_name: "Note".into(),
            payload: serde_json::json!({ "d": "item {index}", "n": ["{index}", 3] }),
            tags: Vec::new(),
            count,
            visibility: Default::default(),
            span: 0..0,
        };
        assert_eq!(
            decl(1).payload_for(0),
            serde_json::json!({ "d": "item 0", "n": ["0", 3] })
        );
        assert_eq!(
            decl(5).payload_for(4),
            serde_json::json!({ "d": "item 4", "n": ["4", 3] })
        );
    }

    #[test]
    fn line_col_counts_lines_and_characters_from_one() {
        let text = "ab\ncdé\nf";
        assert_eq!(line_col(text, 0), (1, 1));
        assert_eq!(line_col(text, 3), (2, 1));
        assert_eq!(line_col(text, 7), (2, 4), "é is one column");
        assert_eq!(line_col(text, 999), (3, 2), "past the end clamps");
    }

    #[test]
    fn limits_default_when_omitted_and_paths_resolve_against_the_manifest() {
        let m = Manifest::parse(
            Path::new("/x/y/workflow.toml"),
            "[workflow]\nname = \"w\"\n[[plugin]]\nname = \"p\"\npath = \"a/b.wasm\"\nworld = \"agent\"\n",
        )
        .expect("parses");
        assert_eq!(m.plugins[0].path, Path::new("/x/y/a/b.wasm"));
        assert_eq!(m.plugins[0].limits, PluginLimits::default());
        assert_eq!(m.workflow.limits.max_depth, 32);
    }

    #[test]
    fn zero_limits_are_refused() {
        let err = Manifest::parse(
            Path::new("w.toml"),
            "[workflow]\nname = \"w\"\n[[plugin]]\nname = \"p\"\npath = \"a.wasm\"\nworld = \"agent\"\nlimits = { memory_mb = 0 }\n",
        )
        .expect_err("refused");
        assert!(err.to_string().contains("limits must be positive"), "{err}");
    }
}
