//! The workflow manifest (TOML): phases, artifact types, plugins, limits and inputs.
//!
//! Parsing keeps the byte span of every value a later check may complain about, so every
//! error — syntax, a wrong type, an unknown world, a bad CEL filter, a missing plugin file,
//! a payload that violates its schema — names the file, line and column.
//! Relative paths are resolved against the manifest's own directory.
//!
//! Three parts: `raw` (the serde shapes, as written), `check` (one short function per
//! section, turning them into the types below) and `error` (located errors).

mod check;
mod error;
mod raw;

pub use error::{ManifestError, line_col};

use crate::artifact::Visibility;
use crate::phase::Phase;
use crate::policy::Policies;
use error::{locate, parse_toml};
use raw::RawManifest;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use toml::Spanned;

pub use crate::plugin::{Capability, PluginLimits, PluginSpec};

pub use crate::plugin::World;

/// A policy section as written, or its defaults when absent.
fn section_or_default<T: Default>(s: Option<Spanned<T>>) -> T {
    s.map(Spanned::into_inner).unwrap_or_default()
}

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
    /// `[[expect]]` tables: what `murmur test` checks on the finished run (a run
    /// ignores them).
    pub expectations: Vec<crate::expect::Expectation>,
    /// `[lessons]`: how runs learn from each other, if they do.
    pub lessons: Option<crate::lessons::Settings>,
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

/// Invocations in flight by default: enough that a workflow of agents waiting on models
/// is fast without tuning (each waiting one costs memory, not a thread).
pub const DEFAULT_CONCURRENCY: usize = 1_024;

/// The most invocations in flight a manifest may ask for: each holds an instance slot of
/// the engine's pool, reserved up front.
pub const MAX_CONCURRENCY: usize = 100_000;

/// `[workflow.limits]`: loop safety and parallelism. Every key has a default.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WorkflowLimits {
    /// Invocations in flight at once: running, or waiting in a host call such as a
    /// model's answer (a waiting invocation holds no thread). Default 1,024.
    pub concurrency: usize,
    /// Threads that run guest code: the bound on CPU work at once. Default: the number
    /// of CPUs (at least 2).
    pub threads: usize,
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
            concurrency: DEFAULT_CONCURRENCY,
            threads: cpus.max(2),
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

/// `[[plugin]]`: what plugin/ needs to load it, and what only the manifest knows.
#[derive(Debug, Clone)]
pub struct PluginDecl {
    /// Name, component, world, limits, config, grants, visibility identity.
    pub spec: PluginSpec,
    /// Subscriptions replacing the plugin's own, when present.
    pub subscriptions: Option<Vec<SubscriptionDecl>>,
    /// An agent's own context budget over the workflow's `[context]`.
    pub context: Option<crate::policy::ContextOverride>,
    /// An observer agent (auditor, notifier, integration): its invocations watch the work
    /// they serve without holding it open or deciding its outcome.
    pub observer: bool,
    /// `required`: the work this agent's outputs discover waits for a person's approval.
    pub approval: crate::phase::Approval,
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

        let check::Parts {
            phase_names,
            types,
            plugins,
        } = check::parts(
            source,
            &at,
            &base,
            &raw.phase,
            raw.types,
            raw.plugin,
            check::Existing::default(),
        )?;
        let inputs = raw
            .input
            .into_iter()
            .map(|i| check::input(i, &at))
            .collect::<Result<Vec<_>, _>>()?;

        let Some(workflow) = raw.workflow else {
            return Err(at(0..0, "missing field `workflow`".into()));
        };
        let limits_at = workflow.span();
        let workflow = workflow.into_inner();
        // At the `[workflow]` table, whose `limits` they are.
        let limits = &workflow.limits;
        if limits.concurrency == 0 {
            return Err(at(
                limits_at.clone(),
                "workflow.limits.concurrency must be at least 1".into(),
            ));
        }
        if limits.threads == 0 {
            return Err(at(
                limits_at.clone(),
                "workflow.limits.threads must be at least 1".into(),
            ));
        }
        if limits.concurrency > MAX_CONCURRENCY {
            return Err(at(
                limits_at,
                format!(
                    "workflow.limits.concurrency is {}; at most {MAX_CONCURRENCY} invocations can be in flight",
                    limits.concurrency
                ),
            ));
        }

        let policies = Policies {
            context: section_or_default(raw.context),
            routing: section_or_default(raw.routing),
            dedup: section_or_default(raw.dedup),
            retry: section_or_default(raw.retry),
            recovery: section_or_default(raw.recovery),
            monitoring: section_or_default(raw.monitoring),
            validation: section_or_default(raw.validation),
        };
        check::policies(source, &policies, &phase_names, &plugins, &at)?;
        let llm = match raw.llm {
            Some(l) => Some(check::llm(l, &at)?),
            None => None,
        };

        let expectations = raw
            .expect
            .into_iter()
            .map(|e| {
                let span = e.span();
                let e = e.into_inner();
                let line = source[..span.start.min(source.len())].matches('\n').count() + 1;
                crate::expect::Expectation::compile(&e.that, e.why, line)
                    .map_err(|message| at(span, message))
            })
            .collect::<Result<Vec<_>, _>>()?;

        let lessons = match raw.lessons {
            Some(l) => {
                let span = l.span();
                let l = l.into_inner();
                if let Some(problem) = l.problem() {
                    return Err(at(span, problem));
                }
                if let Some(name) = &l.retrospective {
                    match plugins.iter().find(|p| p.spec.name == *name) {
                        Some(p) if p.spec.world == World::Retrospective => {}
                        Some(p) => {
                            return Err(at(
                                span,
                                format!(
                                    "lessons.retrospective names plugin '{name}', which implements world '{}', not 'retrospective'",
                                    p.spec.world
                                ),
                            ));
                        }
                        None => {
                            return Err(at(
                                span,
                                format!(
                                    "lessons.retrospective names '{name}', which is not a [[plugin]] of this manifest"
                                ),
                            ));
                        }
                    }
                }
                Some(l)
            }
            None => None,
        };

        Ok(Manifest {
            lessons,
            expectations,
            path: path.to_path_buf(),
            source: source.to_string(),
            workflow,
            phases: raw.phase,
            types,
            plugins,
            inputs,
            policies,
            llm,
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
        let raw: RawManifest = parse_toml(file, text)?;
        if let Some((section, span)) = raw.manifest_only() {
            return Err(at(
                span,
                format!(
                    "a bundle holds only [[phase]], [[type]] and [[plugin]] tables; {section} belongs in the workflow's manifest"
                ),
            ));
        }
        let base = file.parent().map(Path::to_path_buf).unwrap_or_default();
        let check::Parts {
            mut types,
            mut plugins,
            ..
        } = check::parts(
            text,
            &at,
            &base,
            &raw.phase,
            raw.types,
            raw.plugin,
            check::Existing {
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
        assert_eq!(m.plugins[0].spec.path, Path::new("/x/y/a/b.wasm"));
        assert_eq!(m.plugins[0].spec.limits, PluginLimits::default());
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

    #[test]
    fn a_manifest_without_a_workflow_section_is_refused() {
        let err =
            Manifest::parse(Path::new("w.toml"), "[[phase]]\nname = \"a\"\n").expect_err("refused");
        assert_eq!(err.to_string(), "w.toml:1:1: missing field `workflow`");
    }

    #[test]
    fn a_bundle_holds_only_phases_types_and_plugins() {
        let m = Manifest::parse(Path::new("w.toml"), "[workflow]\nname = \"w\"\n").expect("parse");
        let ok = m
            .with_bundle(
                Path::new("b.toml"),
                "[[phase]]\nname = \"deploy\"\n[[type]]\nname = \"T\"\nschema = { type = \"object\" }\n",
            )
            .expect("a bundle of phases and types");
        assert_eq!(ok.phases.len(), 1);
        for (text, section, line) in [
            (
                "[[phase]]\nname = \"d\"\n\n[workflow]\nname = \"x\"\n",
                "[workflow]",
                4,
            ),
            ("[dedup]\nthreshold = 0.5\n", "[dedup]", 1),
            ("[[input]]\ntype = \"T\"\npayload = {}\n", "[[input]]", 1),
        ] {
            let err = m
                .with_bundle(Path::new("b.toml"), text)
                .expect_err("refused");
            let msg = err.to_string();
            assert!(
                msg.starts_with(&format!("b.toml:{line}:"))
                    && msg.contains(&format!("{section} belongs in the workflow's manifest")),
                "{msg}"
            );
        }
    }

    #[test]
    fn an_unknown_world_is_refused_naming_the_choices() {
        let err = Manifest::parse(
            Path::new("w.toml"),
            "[workflow]\nname = \"w\"\n[[plugin]]\nname = \"p\"\npath = \"a.wasm\"\nworld = \"agnt\"\n",
        )
        .expect_err("refused");
        assert!(
            err.to_string().starts_with("w.toml:6:9: unknown world 'agnt' (expected agent, context-provider, router, validator or retrospective)"),
            "{err}"
        );
    }
}
