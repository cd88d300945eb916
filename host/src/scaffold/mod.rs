//! `murmur new WORLD NAME --lang LANG`: a plugin that builds and has a passing test.
//!
//! Every world in every language. Creates the plugin's source where `cargo xtask build-plugins` builds it (`plugins/NAME`
//! for Rust and Python, `plugins/js/NAME.js` for JavaScript) and a `test.toml` workflow
//! beside it that feeds the plugin one input and completes when the plugin works:
//! `murmur run plugins/NAME/test.toml --store memory` exits 0.

use crate::manifest::World;
use std::path::{Path, PathBuf};
use thiserror::Error;

/// The languages a plugin can be created in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Language {
    /// Rust, with the `murmur-guest` SDK (`plugins/NAME`).
    Rust,
    /// JavaScript, built with componentize-js (`plugins/js/NAME.js`).
    Js,
    /// Python, built with componentize-py (`plugins/python/NAME`).
    Python,
}

/// Why a plugin could not be created.
#[derive(Debug, Error)]
pub enum ScaffoldError {
    /// A bad name.
    #[error("{0}")]
    Invalid(String),
    /// Something is already there.
    #[error("{} already exists; choose another name", .0.display())]
    Exists(PathBuf),
    /// Writing failed.
    #[error("cannot write {}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
}

/// What was created.
#[derive(Debug)]
pub struct Created {
    /// The files written.
    pub files: Vec<PathBuf>,
    /// The component `cargo xtask build-plugins` will produce.
    pub component: String,
    /// The test workflow.
    pub test: PathBuf,
}

const RUST_CARGO: &str = r#"[package]
name = "{name}"
version.workspace = true
edition.workspace = true
license.workspace = true
publish = false

[lib]
crate-type = ["cdylib"]

[dependencies]
murmur-guest = { workspace = true, features = ["{world}"] }
serde.workspace = true
serde_json.workspace = true
"#;

const RUST_AGENT: &str = r#"//! {name}: an agent. Answers every Request with a Response.

use murmur_guest::prelude::*;
use serde_json::json;

struct Plugin;

impl Agent for Plugin {
    fn describe() -> PluginInfo {
        PluginInfo::agent("{name}", env!("CARGO_PKG_VERSION"))
            .description("answers requests")
            .subscribe(Subscription::to("Request"))
            .publishes(["Response"])
            // Handed no context; `inv.read_context()` asks the host for it when needed.
            .context_on_demand()
    }

    fn handle(inv: Invocation) -> Result<Vec<Output>, PluginError> {
        let request: serde_json::Value = inv.input()?;
        log(Level::Info, &format!("{name} handles {request}"));
        Ok(vec![Output::json("Response", &json!({ "answer": request, "by": inv.agent }))?])
    }
}

murmur_guest::export_agent!(Plugin);
"#;

const RUST_VALIDATOR: &str = r#"//! {name}: a validator. Rejects outputs whose payload mentions TODO.

use murmur_guest::prelude::*;

struct Plugin;

impl Validator for Plugin {
    fn describe() -> PluginInfo {
        PluginInfo::validator("{name}", env!("CARGO_PKG_VERSION")).description("rejects unfinished work")
    }

    fn validate(_inv: Invocation, outputs: Vec<Output>) -> Result<Verdict, PluginError> {
        let reasons: Vec<String> = outputs
            .iter()
            .enumerate()
            .filter(|(_, o)| o.payload.contains("TODO"))
            .map(|(i, o)| format!("output #{i} ({}) mentions TODO", o.type_name))
            .collect();
        Ok(Verdict { accepted: reasons.is_empty(), reasons })
    }
}

murmur_guest::export_validator!(Plugin);
"#;

const RUST_ROUTER: &str = r#"//! {name}: a router. Sends a discovery to the first phase named in its description.

use murmur_guest::prelude::*;

struct Plugin;

impl Router for Plugin {
    fn describe() -> PluginInfo {
        PluginInfo::router("{name}", env!("CARGO_PKG_VERSION")).description("routes by phase name")
    }

    fn route(discovery: Artifact, phases: Vec<PhaseInfo>) -> Result<RouteDecision, PluginError> {
        let work: WorkDiscovery = discovery.parse()?;
        let text = work.description.to_lowercase();
        phases
            .iter()
            .find(|p| text.contains(&p.name))
            .map(|p| RouteDecision { phase: p.name.clone(), reason: format!("the description names '{}'", p.name) })
            .ok_or_else(|| PluginError::invalid_input("no phase is named; the built-in router decides"))
    }
}

murmur_guest::export_router!(Plugin);
"#;

const RUST_CONTEXT_PROVIDER: &str = r#"//! {name}: a context provider. Keeps the host's candidates, newest first.

use murmur_guest::prelude::*;

struct Plugin;

impl ContextProvider for Plugin {
    fn describe() -> PluginInfo {
        PluginInfo::context_provider("{name}", env!("CARGO_PKG_VERSION")).description("newest context first")
    }

    fn provide(_inv: Invocation, mut candidates: Vec<Artifact>) -> Result<Vec<Artifact>, PluginError> {
        candidates.sort_by(|a, b| b.created_at_ms.cmp(&a.created_at_ms));
        Ok(candidates)
    }
}

murmur_guest::export_context_provider!(Plugin);
"#;

const JS_AGENT: &str = r#"// {name}: an agent in JavaScript. Answers every Request with a Response.
import { log } from 'murmur:plugin/log@0.1.0';

export const agentApi = {
  describe() {
    return {
      name: '{name}', version: '0.1.0', apiVersion: '0.1.0', kind: 'agent',
      description: 'answers requests',
      subscriptions: [{ typeName: 'Request', filter: undefined, fromProducers: [], tags: [], allowSelf: false }],
      // 'context': handed no context; `get()` from 'murmur:plugin/context@0.1.0'
      // asks the host for it when needed.
      publishes: ['Response'], phases: [], capabilities: ['context'],
    };
  },
  handle(invocation) {
    const request = JSON.parse(invocation.inputs[0].payload);
    log('info', `{name} handles ${JSON.stringify(request)}`);
    return [{ typeName: 'Response', payload: JSON.stringify({ answer: request, by: invocation.agent }), tags: [], visibility: undefined }];
  },
};
"#;

const PY_AGENT: &str = r#""""{name}: an agent in Python. Answers every Request with a Response."""
import json
from wit_world import exports
from wit_world.imports import types, log


class AgentApi(exports.AgentApi):
    def describe(self) -> types.PluginInfo:
        return types.PluginInfo(
            name="{name}", version="0.1.0", api_version="0.1.0", kind=types.PluginKind.AGENT,
            description="answers requests",
            subscriptions=[types.Subscription(type_name="Request", filter=None, from_producers=[], tags=[], allow_self=False)],
            # "context": handed no context; wit_world.imports.context.get() asks the host
            # for it when needed.
            publishes=["Response"], phases=[], capabilities=["context"])

    def handle(self, invocation: types.Invocation):
        request = json.loads(invocation.inputs[0].payload)
        log.log(types.Level.INFO, "{name} handles " + json.dumps(request))
        answer = {"answer": request, "by": invocation.agent}
        return [types.Output(type_name="Response", payload=json.dumps(answer), tags=[], visibility=None)]
"#;

const JS_VALIDATOR: &str = r#"// murmur-world: validator
// {name}: a validator in JavaScript. Rejects outputs whose payload mentions TODO.
export const validatorApi = {
  describe() {
    return { name: '{name}', version: '0.1.0', apiVersion: '0.1.0', kind: 'validator',
             description: 'rejects unfinished work', subscriptions: [], publishes: [], phases: [], capabilities: [] };
  },
  validate(invocation, outputs) {
    const reasons = outputs
      .map((o, i) => (o.payload.includes('TODO') ? `output #${i} (${o.typeName}) mentions TODO` : null))
      .filter((r) => r !== null);
    return { accepted: reasons.length === 0, reasons };
  },
};
"#;

const JS_ROUTER: &str = r#"// murmur-world: router
// {name}: a router in JavaScript. Sends a discovery to the first phase its description names.
function words(artifact) {
  const d = JSON.parse(artifact.payload).description || '';
  return new Set(d.toLowerCase().split(/[^a-z0-9]+/).filter(Boolean));
}
export const routerApi = {
  describe() {
    return { name: '{name}', version: '0.1.0', apiVersion: '0.1.0', kind: 'router',
             description: 'routes by phase name', subscriptions: [], publishes: [], phases: [], capabilities: [] };
  },
  route(discovery, phases) {
    const text = (JSON.parse(discovery.payload).description || '').toLowerCase();
    const phase = phases.find((p) => text.includes(p.name));
    if (!phase) throw { tag: 'invalid-input', val: 'no phase is named; the built-in router decides' };
    return { phase: phase.name, reason: `the description names '${phase.name}'` };
  },
  similarity(discovery, candidates) {
    const a = words(discovery);
    return candidates.map((c) => {
      const b = words(c);
      const common = [...a].filter((w) => b.has(w)).length;
      const union = a.size + b.size - common;
      return union === 0 ? 1 : common / union;
    });
  },
};
"#;

const JS_CONTEXT_PROVIDER: &str = r#"// murmur-world: context-provider
// {name}: a context provider in JavaScript. Keeps the host's candidates, newest first.
export const contextProviderApi = {
  describe() {
    return { name: '{name}', version: '0.1.0', apiVersion: '0.1.0', kind: 'context-provider',
             description: 'newest context first', subscriptions: [], publishes: [], phases: [], capabilities: [] };
  },
  provide(invocation, candidates) {
    return [...candidates].sort((a, b) => (b.createdAtMs > a.createdAtMs ? 1 : b.createdAtMs < a.createdAtMs ? -1 : 0));
  },
};
"#;

const PY_VALIDATOR: &str = r#"# murmur-world: validator
"""{name}: a validator in Python. Rejects outputs whose payload mentions TODO."""
from wit_world import exports
from wit_world.imports import types


class ValidatorApi(exports.ValidatorApi):
    def describe(self) -> types.PluginInfo:
        return types.PluginInfo(
            name="{name}", version="0.1.0", api_version="0.1.0", kind=types.PluginKind.VALIDATOR,
            description="rejects unfinished work", subscriptions=[], publishes=[], phases=[], capabilities=[])

    def validate(self, invocation: types.Invocation, outputs) -> types.Verdict:
        reasons = [f"output #{i} ({o.type_name}) mentions TODO" for i, o in enumerate(outputs) if "TODO" in o.payload]
        return types.Verdict(accepted=not reasons, reasons=reasons)
"#;

const PY_ROUTER: &str = r#"# murmur-world: router
"""{name}: a router in Python. Sends a discovery to the first phase its description names."""
import json
from wit_world import exports
from wit_world.imports import types
from componentize_py_types import Err


def words(artifact):
    text = json.loads(artifact.payload).get("description", "").lower()
    return set("".join(c if c.isalnum() else " " for c in text).split())


class RouterApi(exports.RouterApi):
    def describe(self) -> types.PluginInfo:
        return types.PluginInfo(
            name="{name}", version="0.1.0", api_version="0.1.0", kind=types.PluginKind.ROUTER,
            description="routes by phase name", subscriptions=[], publishes=[], phases=[], capabilities=[])

    def route(self, discovery: types.Artifact, phases) -> types.RouteDecision:
        text = json.loads(discovery.payload).get("description", "").lower()
        for phase in phases:
            if phase.name in text:
                return types.RouteDecision(phase=phase.name, reason=f"the description names '{phase.name}'")
        raise Err(types.PluginError_InvalidInput("no phase is named; the built-in router decides"))

    def similarity(self, discovery: types.Artifact, candidates):
        a = words(discovery)
        scores = []
        for c in candidates:
            b = words(c)
            union = len(a | b)
            scores.append(1.0 if union == 0 else len(a & b) / union)
        return scores
"#;

const PY_CONTEXT_PROVIDER: &str = r#"# murmur-world: context-provider
"""{name}: a context provider in Python. Keeps the host's candidates, newest first."""
from wit_world import exports
from wit_world.imports import types


class ContextProviderApi(exports.ContextProviderApi):
    def describe(self) -> types.PluginInfo:
        return types.PluginInfo(
            name="{name}", version="0.1.0", api_version="0.1.0", kind=types.PluginKind.CONTEXT_PROVIDER,
            description="newest context first", subscriptions=[], publishes=[], phases=[], capabilities=[])

    def provide(self, invocation: types.Invocation, candidates):
        return sorted(candidates, key=lambda a: a.created_at_ms, reverse=True)
"#;

/// The `grants` a JavaScript or Python plugin of `world` needs: those toolchains import
/// every interface of the world, used or not.
fn whole_world_grants(world: World) -> &'static str {
    match world {
        World::Validator => "grants = [\"blackboard\", \"llm\"]\n",
        World::Router => "grants = [\"llm\"]\n",
        World::ContextProvider => "grants = [\"blackboard\"]\n",
        World::Agent => "",
    }
}

/// The test workflow: for an agent, one Request in, one Response out; for the other
/// worlds, the plugin is loaded and described beside a workflow that completes.
fn test_manifest(name: &str, world: &str, component: &str, grants: &str) -> String {
    let io = if world == "agent" {
        "\n[[input]]\ntype = \"Request\"\npayload = { question = \"ping\" }\n".to_string()
    } else {
        String::new()
    };
    format!(
        "# The test of plugin '{name}': `murmur run <this file> --store memory` exits 0.\n\
         [workflow]\nname = \"{name}-test\"\n\n[[phase]]\nname = \"analysis\"\n\n\
         [[type]]\nname = \"Request\"\nschema = {{ type = \"object\" }}\n\
         [[type]]\nname = \"Response\"\nschema = {{ type = \"object\", required = [\"answer\"] }}\n\n\
         [[plugin]]\nname = \"{name}\"\npath = \"{component}\"\nworld = \"{world}\"\n{grants}{io}"
    )
}

fn write(path: &Path, text: &str, files: &mut Vec<PathBuf>) -> Result<(), ScaffoldError> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|source| ScaffoldError::Io {
            path: dir.to_path_buf(),
            source,
        })?;
    }
    std::fs::write(path, text).map_err(|source| ScaffoldError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    files.push(path.to_path_buf());
    Ok(())
}

/// Create plugin `name` of `world` in `lang` under the plugins directory `plugins`.
/// `components` is where built components land (`target/plugins`), for the test
/// manifest's path.
pub fn create(
    plugins: &Path,
    components: &Path,
    world: World,
    name: &str,
    lang: Language,
) -> Result<Created, ScaffoldError> {
    let valid = !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && name.starts_with(|c: char| c.is_ascii_lowercase());
    if !valid {
        return Err(ScaffoldError::Invalid(format!(
            "'{name}': a plugin name is lower-case letters, digits and '-', starting with a letter"
        )));
    }
    let mut files = Vec::new();
    let fill = |t: &str| t.replace("{name}", name).replace("{world}", world.as_str());
    let (component, test) = match lang {
        Language::Rust => {
            let source = match world {
                World::Agent => RUST_AGENT,
                World::Validator => RUST_VALIDATOR,
                World::Router => RUST_ROUTER,
                World::ContextProvider => RUST_CONTEXT_PROVIDER,
            };
            let dir = plugins.join(name);
            if dir.exists() {
                return Err(ScaffoldError::Exists(dir));
            }
            write(&dir.join("Cargo.toml"), &fill(RUST_CARGO), &mut files)?;
            write(&dir.join("src/lib.rs"), &fill(source), &mut files)?;
            // Join the plugins workspace.
            let ws = plugins.join("Cargo.toml");
            if let Ok(text) = std::fs::read_to_string(&ws)
                && let Some(pos) = text.find("members = [")
                && let Some(end) = text[pos..].find(']')
            {
                let list = &text[pos + "members = [".len()..pos + end];
                let sep = if list.trim().is_empty() { "" } else { ", " };
                let mut updated = text.clone();
                updated.insert_str(pos + end, &format!("{sep}\"{name}\""));
                write(&ws, &updated, &mut files)?;
            }
            (format!("{name}.wasm"), dir.join("test.toml"))
        }
        Language::Js => {
            let file = plugins.join("js").join(format!("{name}.js"));
            if file.exists() {
                return Err(ScaffoldError::Exists(file));
            }
            let source = match world {
                World::Agent => JS_AGENT,
                World::Validator => JS_VALIDATOR,
                World::Router => JS_ROUTER,
                World::ContextProvider => JS_CONTEXT_PROVIDER,
            };
            write(&file, &fill(source), &mut files)?;
            (
                format!("js-{name}.wasm"),
                plugins.join("js").join(format!("{name}.test.toml")),
            )
        }
        Language::Python => {
            let dir = plugins.join("python").join(name);
            if dir.exists() {
                return Err(ScaffoldError::Exists(dir));
            }
            let source = match world {
                World::Agent => PY_AGENT,
                World::Validator => PY_VALIDATOR,
                World::Router => PY_ROUTER,
                World::ContextProvider => PY_CONTEXT_PROVIDER,
            };
            write(&dir.join("app.py"), &fill(source), &mut files)?;
            (format!("py-{name}.wasm"), dir.join("test.toml"))
        }
    };
    let component_path = components.join(&component);
    write(
        &test,
        &test_manifest(
            name,
            world.as_str(),
            &component_path.display().to_string(),
            match lang {
                Language::Rust => "",
                Language::Js | Language::Python => whole_world_grants(world),
            },
        ),
        &mut files,
    )?;
    Ok(Created {
        files,
        component,
        test,
    })
}
