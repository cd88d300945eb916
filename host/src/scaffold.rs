//! `murmur new WORLD NAME --lang LANG`: a plugin that builds and has a passing test.
//!
//! Creates the plugin's source where `cargo xtask build-plugins` builds it (`plugins/NAME`
//! for Rust and Python, `plugins/js/NAME.js` for JavaScript) and a `test.toml` workflow
//! beside it that feeds the plugin one input and completes when the plugin works:
//! `murmur run plugins/NAME/test.toml --store memory` exits 0.

use std::path::{Path, PathBuf};
use thiserror::Error;

/// Why a plugin could not be created.
#[derive(Debug, Error)]
pub enum ScaffoldError {
    /// A bad name or an unsupported combination.
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
      publishes: ['Response'], phases: [], capabilities: [],
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
            publishes=["Response"], phases=[], capabilities=[])

    def handle(self, invocation: types.Invocation):
        request = json.loads(invocation.inputs[0].payload)
        log.log(types.Level.INFO, "{name} handles " + json.dumps(request))
        answer = {"answer": request, "by": invocation.agent}
        return [types.Output(type_name="Response", payload=json.dumps(answer), tags=[], visibility=None)]
"#;

/// The test workflow: for an agent, one Request in, one Response out; for the other
/// worlds, the plugin is loaded and described beside a workflow that completes.
fn test_manifest(name: &str, world: &str, component: &str) -> String {
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
         [[plugin]]\nname = \"{name}\"\npath = \"{component}\"\nworld = \"{world}\"\n{io}"
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
    world: &str,
    name: &str,
    lang: &str,
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
    let fill = |t: &str| t.replace("{name}", name).replace("{world}", world);
    let (component, test) = match lang {
        "rust" => {
            let source = match world {
                "agent" => RUST_AGENT,
                "validator" => RUST_VALIDATOR,
                "router" => RUST_ROUTER,
                "context-provider" => RUST_CONTEXT_PROVIDER,
                other => {
                    return Err(ScaffoldError::Invalid(format!(
                        "unknown world '{other}' (agent, validator, router, context-provider)"
                    )));
                }
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
                let mut updated = text.clone();
                updated.insert_str(pos + end, &format!(", \"{name}\""));
                write(&ws, &updated, &mut files)?;
            }
            (format!("{name}.wasm"), dir.join("test.toml"))
        }
        "js" | "python" if world != "agent" => {
            return Err(ScaffoldError::Invalid(format!(
                "--lang {lang} scaffolds agents; write a {world} in Rust (--lang rust)"
            )));
        }
        "js" => {
            let file = plugins.join("js").join(format!("{name}.js"));
            if file.exists() {
                return Err(ScaffoldError::Exists(file));
            }
            write(&file, &fill(JS_AGENT), &mut files)?;
            (
                format!("js-{name}.wasm"),
                plugins.join("js").join(format!("{name}.test.toml")),
            )
        }
        "python" => {
            let dir = plugins.join("python").join(name);
            if dir.exists() {
                return Err(ScaffoldError::Exists(dir));
            }
            write(&dir.join("app.py"), &fill(PY_AGENT), &mut files)?;
            (format!("py-{name}.wasm"), dir.join("test.toml"))
        }
        other => {
            return Err(ScaffoldError::Invalid(format!(
                "unknown language '{other}' (rust, js, python)"
            )));
        }
    };
    let component_path = components.join(&component);
    write(
        &test,
        &test_manifest(name, world, &component_path.display().to_string()),
        &mut files,
    )?;
    Ok(Created {
        files,
        component,
        test,
    })
}
