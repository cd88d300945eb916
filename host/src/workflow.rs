//! A loaded workflow: the manifest checked against reality — types registered, plugins
//! compiled, linked and described, subscriptions and their CEL filters compiled, inputs
//! validated. Every problem found here is reported at its manifest line and column,
//! before anything runs.

use crate::artifact::Viewer;
use crate::llm::{LlmConfig, LlmHost};
use crate::manifest::{Manifest, ManifestError, WorkflowLimits};
use crate::phase::Phase;
use crate::plugin::convert::phase_to_wit;
use crate::plugin::{ComponentCache, bindings::types as wit};
use crate::plugin::{EngineOptions, LoadedPlugin, PluginEngine};
use crate::routing::Router;
use crate::schema::{PHASE_INSTRUCTIONS, TypeRegistry};
use crate::subscription::{Filter, Subscription};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use thiserror::Error;

/// Why a workflow could not be loaded.
#[derive(Debug, Error)]
pub enum WorkflowError {
    /// The manifest (or something it points at) is wrong; located.
    #[error(transparent)]
    Manifest(#[from] ManifestError),
    /// The wasmtime engine could not be built.
    #[error("cannot start the WebAssembly engine: {0}")]
    Engine(String),
    /// The language-model setup failed (replay or record file).
    #[error(transparent)]
    Llm(#[from] crate::llm::LlmSetupError),
    /// The HTTP record or replay file cannot be used.
    #[error(transparent)]
    Http(#[from] crate::egress::TapeError),
}

/// An agent: a loaded plugin and the subscriptions in force for it.
pub struct Agent {
    /// The plugin.
    pub plugin: crate::plugin::Agent,
    /// Its subscriptions (the manifest's override, else the plugin's own).
    pub subscriptions: Vec<Subscription>,
    /// Its context budget: the workflow's `[context]` with the agent's own `context`
    /// keys over it.
    pub context: crate::policy::ContextPolicy,
    /// Whether it only observes: its invocations neither hold the work they serve open
    /// nor fail it (`observer = true`).
    pub observer: bool,
    /// A native handler that replaces the plugin's sandboxed `handle()`. Only benchmarks
    /// set it (`murmur bench cascade --native`), to price the sandbox: everything else —
    /// matching, output checks, commits — stays on the same path.
    pub native: Option<Arc<dyn NativeHandler>>,
}

/// An agent implemented in Rust inside the host, without a sandbox (benchmarks only).
pub trait NativeHandler: Send + Sync {
    /// Handle one invocation, as the plugin's `handle()` would.
    fn handle(&self, invocation: &wit::Invocation) -> Result<Vec<wit::Output>, wit::PluginError>;
}

impl Agent {
    /// The agent's name.
    pub fn name(&self) -> &str {
        &self.plugin.name
    }
    /// The identity visibility checks use.
    pub fn viewer(&self) -> Viewer<'_> {
        Viewer {
            name: &self.plugin.name,
            labels: &self.plugin.labels,
            tenant: self.plugin.tenant.as_deref(),
            operator: false,
        }
    }
}

/// The runtime settings a workflow is loaded with: what the process's surroundings
/// decide rather than the manifest. The command line builds them from its flags and its
/// environment (`MURMUR_CACHE_DIR`, `MURMUR_LLM_*`, the variable `[llm] api_key_env`
/// names) and hands them in; the library reads no environment variable. The default
/// caches nothing and overrides nothing.
#[derive(Debug, Clone, Default)]
pub struct LoadOptions {
    /// Where compiled components are cached.
    pub cache: ComponentCache,
    /// The language-model endpoint, model and key, over the manifest's `[llm]`.
    pub llm: LlmSettings,
    /// Append every language-model exchange to this file (`--llm-record`).
    pub llm_record: Option<PathBuf>,
    /// Answer language-model requests from this file, never the network (`--llm-replay`).
    pub llm_replay: Option<PathBuf>,
    /// With `llm_replay`: a request the file has no answer for goes to the configured
    /// provider instead of being refused (`murmur lessons eval --fallback provider`).
    pub llm_fallback: bool,
    /// An existing language-model host to keep (a hot-loaded version shares the run's
    /// budgets, cache and accounting).
    pub llm_host: Option<Arc<LlmHost>>,
    /// Append every plugin HTTP exchange to this file (`--http-record`).
    pub http_record: Option<PathBuf>,
    /// Answer plugins' HTTP requests from this file, never the network (`--http-replay`).
    pub http_replay: Option<PathBuf>,
    /// An existing recording to keep (a hot-loaded version records into the run's).
    pub http_tape: Option<Arc<crate::egress::Tape>>,
    /// The variables `${env:NAME}` in the manifest's `http` headers read: the process's
    /// environment, handed in by the command line.
    pub secrets: Secrets,
}

/// Values `${env:NAME}` may read; never shown (`Debug` prints the names only).
#[derive(Clone, Default)]
pub struct Secrets(pub BTreeMap<String, String>);

impl std::fmt::Debug for Secrets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_set().entries(self.0.keys()).finish()
    }
}

/// What the command line says about the language-model provider, over `[llm]`.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct LlmSettings {
    /// The API root (`MURMUR_LLM_BASE_URL`). With no `[llm]` table, setting it is enough
    /// to configure a provider.
    pub base_url: Option<String>,
    /// The chat model (`MURMUR_LLM_MODEL`).
    pub model: Option<String>,
    /// The API key (`MURMUR_LLM_API_KEY`, else the variable `[llm] api_key_env` names).
    pub api_key: Option<String>,
}

impl std::fmt::Debug for LlmSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LlmSettings")
            .field("base_url", &self.base_url)
            .field("model", &self.model)
            .field("api_key", &self.api_key.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

/// A phase in the form every invocation serving it receives, built once at load (and
/// once more, with its lessons, when a run that uses lessons starts).
#[derive(Clone)]
pub struct PhaseContext {
    /// The phase as WIT.
    pub info: wit::PhaseInfo,
    /// Its `PhaseInstructions` artifact, put first in the invocation's context
    /// (`workflow-id` and `depth` are filled in per invocation).
    pub instructions: wit::Artifact,
}

impl PhaseContext {
    fn new(phase: &Phase) -> Self {
        Self::with_lessons(phase, &[])
    }

    /// The phase with `lessons` from earlier runs after its instructions: in the
    /// instructions' text (under [`crate::lessons::inject::HEADING`], one `- ` line
    /// each) and, with their ids, in the `PhaseInstructions` payload.
    pub(crate) fn with_lessons(phase: &Phase, lessons: &[&crate::lessons::UsedLesson]) -> Self {
        let instructions = crate::lessons::inject::instructions(&phase.instructions, lessons);
        let mut payload = serde_json::json!({
            "phase_name": phase.name,
            "description": phase.description,
            "done_definitions": phase.done_definitions,
            "expected_outputs": phase.expected_outputs,
            "instructions": instructions,
        });
        if !lessons.is_empty() {
            payload["lessons"] = lessons
                .iter()
                .map(|l| serde_json::json!({ "id": l.id, "text": l.text }))
                .collect();
        }
        let mut info = phase_to_wit(phase);
        info.instructions = instructions;
        Self {
            info,
            instructions: wit::Artifact {
                id: format!("phase-instructions/{}", phase.name),
                ..crate::plugin::convert::unpublished(PHASE_INSTRUCTIONS, &payload, "host", "")
            },
        }
    }
}

/// The lessons a run put in its phases' instructions, and each phase as an agent that
/// may see all of them receives it (with whether every agent may: all the phase's
/// lessons are public, so no invocation needs to check).
struct RunLessons {
    used: BTreeMap<String, Vec<crate::lessons::UsedLesson>>,
    everyone: BTreeMap<String, (PhaseContext, bool)>,
}

/// A workflow ready to run.
pub struct Workflow {
    /// The manifest it came from.
    pub manifest: Manifest,
    /// Known artifact types.
    pub types: TypeRegistry,
    /// Phases by name.
    pub phases: BTreeMap<String, Phase>,
    /// Phases by name, as invocations receive them.
    pub phase_context: BTreeMap<String, PhaseContext>,
    /// Agents, in manifest order.
    pub agents: Vec<Agent>,
    /// Every loaded plugin (agents and the other worlds), in manifest order.
    pub plugins: Vec<Arc<LoadedPlugin>>,
    /// Context-provider plugins, in manifest order (the chain every invocation's context
    /// passes through).
    pub context_providers: Vec<crate::plugin::ContextProvider>,
    /// Validator plugins, in manifest order.
    pub validators: Vec<crate::plugin::Validator>,
    /// The router for discoveries whose phase is `auto` or unknown (none without phases).
    pub router: Option<Router>,
    /// How new discoveries are scored for deduplication on the worker, when a router
    /// plugin (`[dedup] plugin`) or an embedding model replaces the built-in measure;
    /// `None`: the commit's lexical index decides alone.
    pub(crate) placement: Option<Arc<dyn crate::placement::Scorer>>,
    /// The language-model host, when `[llm]`, `MURMUR_LLM_*` or a replay file configure one.
    pub llm: Option<Arc<LlmHost>>,
    /// The recording (or replay) of the plugins' HTTP exchanges.
    pub http_tape: Arc<crate::egress::Tape>,
    /// The engine they run on.
    pub engine: Arc<PluginEngine>,
    /// The retrospective that distils lessons when a run ends (`[lessons] retrospective`).
    pub retrospective: Option<crate::plugin::Retrospective>,
    /// The lessons the run puts in its phases' instructions: set once, when it starts
    /// or resumes (see [`Workflow::use_lessons`]).
    lessons: std::sync::OnceLock<RunLessons>,
}

impl Workflow {
    /// Load and check the manifest at `path`.
    pub fn load(path: &Path, options: LoadOptions) -> Result<Self, WorkflowError> {
        Self::from_manifest(Manifest::load(path)?, options)
    }

    /// Load a parsed manifest.
    pub fn from_manifest(manifest: Manifest, options: LoadOptions) -> Result<Self, WorkflowError> {
        let mut types = TypeRegistry::builtin();
        for t in &manifest.types {
            types.register(&t.name, t.schema.clone()).map_err(|e| {
                manifest.located(t.origin.as_deref(), t.span.clone(), e.to_string())
            })?;
        }
        for input in &manifest.inputs {
            types
                .validate(&input.type_name, &input.payload_for(0))
                .map_err(|e| manifest.error_at(input.span.clone(), format!("input: {e}")))?;
        }

        let limits = &manifest.workflow.limits;
        let max_memory_mb = manifest
            .plugins
            .iter()
            .map(|p| p.spec.limits.memory_mb)
            .max()
            .unwrap_or(64);
        // Instance slots: per worker, the agent's instance and one more (a validator, a
        // router, a context provider) at a time, plus every warm instance an agent with
        // `limits.reuse` may keep (at most one per worker), plus a few for loading.
        let warm_agents = manifest
            .plugins
            .iter()
            .filter(|p| p.spec.world == crate::manifest::World::Agent && p.spec.limits.reuse > 0)
            .count() as u32;
        let engine = PluginEngine::new(EngineOptions {
            max_instances: (limits.concurrency as u32)
                .saturating_mul(warm_agents.saturating_add(2))
                .saturating_add(8),
            // A store keeps the fiber stack of its last call, so a warm instance holds
            // one too.
            max_stacks: (limits.concurrency as u32)
                .saturating_mul(warm_agents.saturating_add(1))
                .saturating_add(limits.threads as u32)
                .saturating_add(8),
            max_memory_bytes: (max_memory_mb as usize).saturating_mul(1 << 20),
            cache: options.cache.clone(),
            fuel: manifest
                .plugins
                .iter()
                .any(|p| p.spec.limits.fuel.is_some()),
        })
        .map_err(|e| {
            WorkflowError::Engine(format!(
                "{e:#} (the engine reserves address space for {} invocations in flight, each with up to {max_memory_mb} MB of linear memory: lower `[workflow.limits] concurrency` or the plugins' `memory_mb`)",
                limits.concurrency
            ))
        })?;
        let engine = Arc::new(engine);

        let http_tape = match &options.http_tape {
            Some(tape) => tape.clone(),
            None => Arc::new(crate::egress::Tape::open(
                options.http_replay.as_deref(),
                options.http_record.as_deref(),
            )?),
        };
        let mut agents = Vec::new();
        let mut plugins = Vec::new();
        for decl in &manifest.plugins {
            let mut plugin = LoadedPlugin::load(&engine, &decl.spec).map_err(|e| {
                manifest.located(
                    decl.origin.as_deref(),
                    decl.path_span.clone(),
                    e.to_string(),
                )
            })?;
            if let Some(spec) = &decl.spec.http {
                let grant = crate::egress::HttpGrant::new(
                    &decl.spec.name,
                    spec,
                    &options.secrets.0,
                    decl.spec.limits.http(),
                    http_tape.clone(),
                )
                .map_err(|e| {
                    manifest.located(decl.origin.as_deref(), decl.span.clone(), e.to_string())
                })?;
                plugin.http = Some(Arc::new(grant));
            }
            let plugin = Arc::new(plugin);
            for t in &plugin.info.publishes {
                if !types.contains(t) {
                    return Err(manifest
                        .located(decl.origin.as_deref(),
                            decl.span.clone(),
                            format!("plugin '{}' publishes unknown artifact type '{t}' (declare it with a [[type]] table)", decl.spec.name),
                        )
                        .into());
                }
            }
            if let Some(handle) = crate::plugin::Agent::new(plugin.clone()) {
                let subscriptions = match &decl.subscriptions {
                    Some(subs) => subs
                        .iter()
                        .map(|s| {
                            compile_subscription(&types, &s.type_name, s.filter.as_deref(), &s.from, &s.tags, s.allow_self)
                                .map_err(|m| manifest.located(decl.origin.as_deref(), s.span.clone(), format!("plugin '{}': {m}", decl.spec.name)))
                        })
                        .collect::<Result<Vec<_>, _>>()?,
                    None => plugin
                        .info
                        .subscriptions
                        .iter()
                        .map(|s: &wit::Subscription| {
                            compile_subscription(
                                &types,
                                &s.type_name,
                                s.filter.as_deref(),
                                &s.from_producers,
                                &s.tags,
                                s.allow_self,
                            )
                            .map_err(|m| {
                                manifest.located(decl.origin.as_deref(),
                                    decl.span.clone(),
                                    format!("plugin '{}': its own subscription {m}; override it with [[plugin.subscribe]]", decl.spec.name),
                                )
                            })
                        })
                        .collect::<Result<Vec<_>, _>>()?,
                };
                if subscriptions.is_empty() {
                    tracing::warn!(plugin = %decl.spec.name, "agent has no subscriptions; it will never run");
                }
                let base = &manifest.policies.context;
                agents.push(Agent {
                    plugin: handle,
                    subscriptions,
                    context: decl
                        .context
                        .as_ref()
                        .map_or_else(|| base.clone(), |c| c.apply(base)),
                    observer: decl.observer,
                    native: None,
                });
            }
            plugins.push(plugin);
        }

        let phase_context = manifest
            .phases
            .iter()
            .map(|p| (p.name.clone(), PhaseContext::new(p)))
            .collect();

        // `[lessons] retrospective` names one (checked with the manifest).
        let retrospective = manifest
            .lessons
            .as_ref()
            .and_then(|l| l.retrospective.as_deref())
            .and_then(|name| plugins.iter().find(|p| *p.name == *name).cloned())
            .and_then(crate::plugin::Retrospective::new);

        // The policies name routers (checked with the manifest).
        let named = |name: &Option<toml::Spanned<String>>| {
            name.as_ref()
                .and_then(|n| plugins.iter().find(|p| *p.name == **n.get_ref()).cloned())
                .and_then(crate::plugin::Router::new)
        };
        let policies = &manifest.policies;
        let llm = llm_host(&manifest, &options)?;
        let router = Router::new(
            &policies.routing,
            &manifest.phases,
            named(&policies.routing.plugin),
        )
        .map(|r| match &llm {
            Some(host) if host.config().embedding_model.is_some() => {
                r.with_embeddings(host.clone())
            }
            _ => r,
        });
        let placement: Option<Arc<dyn crate::placement::Scorer>> =
            match (named(&policies.dedup.plugin), &llm) {
                (Some(plugin), _) => Some(Arc::new(crate::placement::PluginScorer {
                    plugin,
                    threshold: policies.dedup.threshold,
                })),
                (None, Some(host)) if host.config().embedding_model.is_some() => {
                    Some(Arc::new(crate::placement::Embedding::new(
                        host.clone(),
                        policies.dedup.embedding_threshold,
                    )))
                }
                _ => None,
            };
        Ok(Workflow {
            llm,
            http_tape,
            context_providers: plugins
                .iter()
                .cloned()
                .filter_map(crate::plugin::ContextProvider::new)
                .collect(),
            validators: plugins
                .iter()
                .cloned()
                .filter_map(crate::plugin::Validator::new)
                .collect(),
            router,
            placement,
            phases: manifest.phase_map(),
            phase_context,
            retrospective,
            lessons: std::sync::OnceLock::new(),
            manifest,
            types,
            agents,
            plugins,
            engine,
        })
    }

    /// Put `used` (lessons by phase, as a run chose them when it started) in the phases'
    /// instructions of every invocation from now on. Set once: a later call is ignored
    /// (a run keeps the lessons it started with, resumed or hot-reloaded).
    pub fn use_lessons(&self, used: BTreeMap<String, Vec<crate::lessons::UsedLesson>>) {
        let everyone = used
            .iter()
            .filter_map(|(name, lessons)| {
                let phase = self.phases.get(name)?;
                let all: Vec<&crate::lessons::UsedLesson> = lessons.iter().collect();
                let public = lessons.iter().all(|l| l.visibility.is_empty());
                Some((
                    name.clone(),
                    (PhaseContext::with_lessons(phase, &all), public),
                ))
            })
            .collect();
        let _ = self.lessons.set(RunLessons { used, everyone });
    }

    /// The lessons the run put in its phases' instructions, by phase.
    pub fn lessons_in_use(&self) -> BTreeMap<String, Vec<crate::lessons::UsedLesson>> {
        self.lessons
            .get()
            .map(|l| l.used.clone())
            .unwrap_or_default()
    }

    /// Phase `name` as `viewer` receives it: with the run's lessons that it may see
    /// (a lesson carries the visibility of its evidence).
    pub fn phase_for(
        &self,
        name: &str,
        viewer: &crate::artifact::Viewer<'_>,
    ) -> Option<std::borrow::Cow<'_, PhaseContext>> {
        use std::borrow::Cow;
        let base = self.phase_context.get(name)?;
        let Some(run) = self.lessons.get() else {
            return Some(Cow::Borrowed(base));
        };
        let (Some(used), Some((everyone, public))) = (run.used.get(name), run.everyone.get(name))
        else {
            return Some(Cow::Borrowed(base));
        };
        if *public {
            return Some(Cow::Borrowed(everyone));
        }
        let seen =
            |l: &&crate::lessons::UsedLesson| l.visibility.iter().all(|v| v.allows("host", viewer));
        if used.iter().all(|l| seen(&l)) {
            return Some(Cow::Borrowed(everyone));
        }
        let visible: Vec<&crate::lessons::UsedLesson> = used.iter().filter(seen).collect();
        let phase = self.phases.get(name)?;
        Some(Cow::Owned(PhaseContext::with_lessons(phase, &visible)))
    }

    /// The workflow's name.
    pub fn name(&self) -> &str {
        &self.manifest.workflow.name
    }

    /// The workflow's limits.
    pub fn limits(&self) -> &WorkflowLimits {
        &self.manifest.workflow.limits
    }

    /// The phase recovery work goes to: `[recovery] phase`, else `analysis` if declared,
    /// else the first phase; none without phases.
    pub fn recovery_phase(&self) -> Option<&str> {
        if let Some(p) = &self.manifest.policies.recovery.phase {
            return Some(p.get_ref());
        }
        if self.phases.contains_key("analysis") {
            return Some("analysis");
        }
        self.manifest.phases.first().map(|p| p.name.as_str())
    }

    /// Whether work in `phase` discovered by `producer` waits for approval: `None` if
    /// not; else when it expires, in ms from now (`None` inside: never). A gated phase
    /// gives its timeout; an agent whose outputs are gated, the phase's if it has one.
    pub fn approval_gate(&self, phase: &str, producer: &str) -> Option<Option<u64>> {
        use crate::phase::Approval;
        let declared = self.manifest.phases.iter().find(|p| p.name == phase);
        let by_phase = declared.is_some_and(|p| p.approval == Approval::Required);
        let by_producer = self
            .manifest
            .plugins
            .iter()
            .any(|p| *p.spec.name == *producer && p.approval == Approval::Required);
        (by_phase || by_producer).then(|| declared.and_then(|p| p.approval_timeout_ms))
    }

    /// Whether any phase or agent requires approval (else no work ever awaits it).
    pub fn has_approval_gates(&self) -> bool {
        use crate::phase::Approval;
        self.manifest
            .phases
            .iter()
            .any(|p| p.approval == Approval::Required)
            || self
                .manifest
                .plugins
                .iter()
                .any(|p| p.approval == Approval::Required)
    }

    /// An agent by name.
    pub fn agent(&self, name: &str) -> Option<&Agent> {
        self.agents.iter().find(|a| a.name() == name)
    }
}

/// The language-model host: from `[llm]` with the environment's overrides, or from the
/// environment alone, or a replay file; none when nothing configures one.
fn llm_host(
    manifest: &Manifest,
    options: &LoadOptions,
) -> Result<Option<Arc<LlmHost>>, WorkflowError> {
    if let Some(host) = &options.llm_host {
        return Ok(Some(host.clone()));
    }
    let overridden = options.llm.base_url.is_some();
    let config = match (&manifest.llm, overridden || options.llm_replay.is_some()) {
        (Some(c), _) => c.clone(),
        (None, true) => LlmConfig::default(),
        (None, false) => return Ok(None),
    }
    .with_overrides(&options.llm);
    let provider: Option<Box<dyn crate::llm::Provider>> =
        if (options.llm_replay.is_none() || options.llm_fallback) && !config.base_url.is_empty() {
            let client = crate::llm::openai::OpenAi::new(&config, options.llm.api_key.clone())
                .map_err(crate::llm::LlmSetupError::Client)?;
            Some(Box::new(client))
        } else {
            None
        };
    let host = LlmHost::new(
        config,
        provider,
        options.llm_replay.as_deref(),
        options.llm_record.as_deref(),
    )?;
    Ok(Some(Arc::new(host)))
}

fn compile_subscription(
    types: &TypeRegistry,
    type_name: &str,
    filter: Option<&str>,
    from: &[String],
    tags: &[String],
    allow_self: bool,
) -> Result<Subscription, String> {
    if !types.contains(type_name) {
        return Err(format!("subscribes to unknown artifact type '{type_name}'"));
    }
    let filter = filter
        .map(Filter::compile)
        .transpose()
        .map_err(|e| e.to_string())?;
    Ok(Subscription {
        type_name: type_name.to_string(),
        filter,
        from: from.to_vec(),
        tags: tags.to_vec(),
        allow_self,
    })
}
