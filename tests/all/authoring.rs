//! Plugin authoring outside the repository: `murmur new` → `murmur build` → `murmur test`
//! in a temporary directory, for every language and world, as docs/plugins.md tells an
//! author to; errors in the author's own words; the build's checks.

use crate::helpers::{murmur, repo};
use std::path::{Path, PathBuf};
use std::process::Output;

const WORLDS: [&str; 4] = ["agent", "validator", "router", "context-provider"];

/// `murmur ARGS` in `dir`. Rust guests share the repository's guest target directory:
/// the standard library the Debian toolchain builds from source is built once.
fn murmur_in(dir: &Path, args: &[&str]) -> Output {
    murmur()
        .current_dir(dir)
        .env("CARGO_TARGET_DIR", repo().join("target/wasm-guests"))
        .args(args)
        .output()
        .expect("murmur runs")
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn succeeds(out: Output, what: &str) -> String {
    let said = text(&out);
    assert!(out.status.success(), "{what}: {said}");
    said
}

/// The guide's commands (docs/plugins.md) for `lang`, in every world: the project is
/// created outside the repository, built, and its test passes; a validator that stops
/// rejecting fails its test at the expectation that says so.
fn follow_the_guide(lang: &str) {
    let guide = std::fs::read_to_string(repo().join("docs/plugins.md")).expect("guide");
    for command in [
        format!("murmur new validator no-todo --lang {lang}"),
        "cd no-todo".to_string(),
        "murmur build".to_string(),
        "murmur test".to_string(),
    ] {
        assert!(
            guide.contains(&command),
            "docs/plugins.md no longer says `{command}`"
        );
    }
    let dir = tempfile::tempdir().expect("tempdir");
    for world in WORLDS {
        let name = format!("{}-{lang}", world.replace("context-provider", "provider"));
        succeeds(
            murmur_in(dir.path(), &["new", world, &name, "--lang", lang]),
            "new",
        );
        let project = dir.path().join(&name);
        let built = succeeds(murmur_in(&project, &["build"]), &format!("{world} build"));
        assert!(
            built.contains(&format!("built target/{name}.wasm ({world}")),
            "{built}"
        );
        let tested = succeeds(murmur_in(&project, &["test"]), &format!("{world} test"));
        assert!(
            tested.contains(&format!("test tests/{name}.toml ... ok"))
                && tested.contains("1 passed; 0 failed"),
            "{world}: {tested}"
        );
        if world == "agent" {
            // The manifest fragment, pasted into a workflow elsewhere.
            let fragment = std::fs::read_to_string(project.join("plugin.toml")).expect("fragment");
            let fragment =
                fragment.replace("path = \"target/", &format!("path = \"../{name}/target/"));
            let elsewhere = dir.path().join("elsewhere");
            std::fs::create_dir_all(&elsewhere).expect("mkdir");
            std::fs::write(
                elsewhere.join("workflow.toml"),
                format!(
                    "[workflow]\nname = \"uses-{name}\"\n[[phase]]\nname = \"analysis\"\n\
                     [[type]]\nname = \"Request\"\nschema = {{ type = \"object\" }}\n\
                     [[type]]\nname = \"Response\"\nschema = {{ type = \"object\" }}\n\
                     [[input]]\ntype = \"Request\"\npayload = {{ q = 1 }}\n{fragment}"
                ),
            )
            .expect("workflow");
            let ran = murmur_in(
                &elsewhere,
                &["run", "workflow.toml", "--store", "memory", "--json", "-q"],
            );
            assert!(
                ran.status.success(),
                "run with the fragment: {}",
                text(&ran)
            );
            let summary: serde_json::Value = serde_json::from_slice(&ran.stdout).expect("summary");
            assert_eq!(summary["by_type"]["Response"], 1, "{summary}");
        }
        if world == "validator" {
            // The validator stops recognising unfinished work: its test must say so.
            let source = match lang {
                "rust" => project.join("src/lib.rs"),
                "js" => project.join(format!("{name}.js")),
                _ => project.join("app.py"),
            };
            let code = std::fs::read_to_string(&source).expect("source");
            assert!(code.contains("TODO"), "{code}");
            std::fs::write(&source, code.replace("TODO", "NOTHING-IS-UNFINISHED")).expect("edit");
            let broken = murmur_in(&project, &["test"]);
            let said = text(&broken);
            assert_eq!(broken.status.code(), Some(1), "{said}");
            assert!(
                said.contains(&format!("test tests/{name}.toml ... FAILED")),
                "{said}"
            );
            assert!(
                said.contains("(the unfinished one is not published): false"),
                "{said}"
            );
            assert!(said.contains("0 passed; 1 failed"), "{said}");
        }
    }
}

#[test]
fn the_plugin_guide_builds_and_tests_a_rust_plugin_of_every_world_outside_the_repository() {
    follow_the_guide("rust");
}

#[test]
fn the_plugin_guide_builds_and_tests_a_javascript_plugin_of_every_world_outside_the_repository() {
    follow_the_guide("js");
}

#[test]
fn the_plugin_guide_builds_and_tests_a_python_plugin_of_every_world_outside_the_repository() {
    follow_the_guide("python");
}

#[test]
fn murmur_new_refuses_an_unknown_world_or_language_naming_the_choices() {
    let dir = tempfile::tempdir().expect("tempdir");
    for (args, says) in [
        (
            ["new", "agnt", "x", "--lang", "rust"],
            "possible values: agent, validator, router, context-provider",
        ),
        (
            ["new", "agent", "x", "--lang", "ruby"],
            "possible values: rust, js, python",
        ),
    ] {
        let out = murmur_in(dir.path(), &args);
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        assert!(text(&out).contains(says), "{args:?}: {}", text(&out));
    }
    assert_eq!(
        std::fs::read_dir(dir.path()).expect("read").count(),
        0,
        "nothing was written"
    );
}

#[test]
fn murmur_new_refuses_a_bad_name_or_a_directory_that_is_not_empty_and_writes_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = murmur_in(dir.path(), &["new", "agent", "Bad_Name"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out).contains("'Bad_Name': a plugin name is lower-case letters"),
        "{}",
        text(&out)
    );
    std::fs::create_dir(dir.path().join("taken")).expect("mkdir");
    std::fs::write(dir.path().join("taken/notes.txt"), "mine").expect("write");
    let out = murmur_in(dir.path(), &["new", "agent", "p", "--dir", "taken"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out).contains("taken already exists and is not empty"),
        "{}",
        text(&out)
    );
    let names: Vec<_> = std::fs::read_dir(dir.path().join("taken"))
        .expect("read")
        .map(|e| e.expect("entry").file_name())
        .collect();
    assert_eq!(names, ["notes.txt"], "the author's files are untouched");
    assert!(!dir.path().join("Bad_Name").exists());
}

/// A project whose agent (world `agent`: it may call the model) fails three ways by its
/// input's `mode`: an exception thrown deep in the author's code, a model call the host
/// refuses (no provider here) left unhandled, and the same refusal handled.
fn failing_agent(lang: &str) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().expect("tempdir");
    succeeds(
        murmur_in(dir.path(), &["new", "agent", "oops", "--lang", lang]),
        "new",
    );
    let project = dir.path().join("oops");
    let file = project.join("murmur-plugin.toml");
    let p = std::fs::read_to_string(&file).expect("project");
    std::fs::write(
        &file,
        p.replace("world = \"basic-agent\"", "world = \"agent\""),
    )
    .expect("world");
    let (source, code) = if lang == "js" {
        (
            project.join("oops.js"),
            r#"import { complete } from 'murmur:plugin/llm@0.1.0';
import { plugin, hostError } from './murmur.js';

function deep(q) {
  throw new RangeError(`no answer for ${q}`);
}

function ask() {
  return complete({ system: '', messages: [{ role: 'user', content: 'hi' }], jsonSchema: undefined, maxTokens: undefined, temperature: undefined });
}

export const agentApi = plugin({
  describe() {
    return { name: 'oops', version: '0.1.0', apiVersion: '0.1.0', kind: 'agent', description: 'fails',
      subscriptions: [{ typeName: 'Request', filter: undefined, fromProducers: [], tags: [], allowSelf: false }],
      publishes: ['Response'], phases: [], capabilities: [] };
  },
  handle(invocation) {
    const { mode } = JSON.parse(invocation.inputs[0].payload);
    if (mode === 'throw') deep(mode);
    if (mode === 'refused') ask();
    let caught = null;
    try { ask(); } catch (e) { caught = hostError(e).tag; }
    return [{ typeName: 'Response', payload: JSON.stringify({ answer: mode, caught }), tags: [], visibility: undefined }];
  },
});
"#,
        )
    } else {
        (
            project.join("app.py"),
            r#"import json

from murmur_plugin import host_error, plugin
from wit_world import exports
from wit_world.imports import llm, types


def deep(q):
    raise ValueError(f"no answer for {q}")


def ask():
    return llm.complete(llm.CompletionRequest(system="", messages=[llm.Message(role="user", content="hi")], json_schema=None, max_tokens=None, temperature=None))


@plugin
class AgentApi(exports.AgentApi):
    def describe(self) -> types.PluginInfo:
        return types.PluginInfo(
            name="oops", version="0.1.0", api_version="0.1.0", kind=types.PluginKind.AGENT, description="fails",
            subscriptions=[types.Subscription(type_name="Request", filter=None, from_producers=[], tags=[], allow_self=False)],
            publishes=["Response"], phases=[], capabilities=[])

    def handle(self, invocation: types.Invocation):
        mode = json.loads(invocation.inputs[0].payload)["mode"]
        if mode == "throw":
            deep(mode)
        if mode == "refused":
            ask()
        caught = None
        try:
            ask()
        except Exception as e:
            caught = host_error(e)[0]
        return [types.Output(type_name="Response", payload=json.dumps({"answer": mode, "caught": caught}), tags=[], visibility=None)]
"#,
        )
    };
    std::fs::write(&source, code).expect("source");
    let throw_line = code
        .lines()
        .position(|l| l.contains("no answer for"))
        .expect("throw")
        + 1;
    let file = source.file_name().and_then(|f| f.to_str()).expect("name");
    std::fs::write(
        project.join("tests/oops.toml"),
        format!(
            r#"[workflow]
name = "oops-test"
[[phase]]
name = "analysis"
[[type]]
name = "Request"
schema = {{ type = "object" }}
[[type]]
name = "Response"
schema = {{ type = "object" }}
[[plugin]]
name = "oops"
path = "../target/oops.wasm"
world = "agent"
grants = ["blackboard", "kv", "llm"]
[retry]
max_attempts = 1
[[input]]
type = "Request"
payload = {{ mode = "throw" }}
[[input]]
type = "Request"
payload = {{ mode = "refused" }}
[[input]]
type = "Request"
payload = {{ mode = "handled" }}

[[expect]]
that = "invocations.exists(i, i.status == 'failed' && i.fault == '' && i.error.contains('no answer for throw') && i.error.contains('{file}:{throw_line}'))"
why = "an exception is the plugin's `failed` error, with its message and where in the author's file"
[[expect]]
that = "invocations.exists(i, i.fault == 'denied' && i.error.contains('no language-model provider'))"
why = "an unhandled refusal is classified denied, with the host's reason"
[[expect]]
that = "artifacts.exists(a, a.type == 'Response' && a.payload.caught == 'denied')"
why = "a refusal the author handles is a typed error"
"#
        ),
    )
    .expect("test");
    (dir, project)
}

#[test]
fn a_javascript_exception_and_a_refused_host_call_reach_the_author_in_their_own_words() {
    let (_dir, project) = failing_agent("js");
    let said = succeeds(murmur_in(&project, &["test"]), "test");
    assert!(said.contains("1 passed; 0 failed"), "{said}");
}

#[test]
fn a_python_exception_and_a_refused_host_call_reach_the_author_in_their_own_words() {
    let (_dir, project) = failing_agent("python");
    let said = succeeds(murmur_in(&project, &["test"]), "test");
    assert!(said.contains("1 passed; 0 failed"), "{said}");
}

#[test]
fn an_import_the_world_lacks_is_a_build_error_naming_the_world_to_declare() {
    let dir = tempfile::tempdir().expect("tempdir");
    for (lang, file, import, says) in [
        (
            "js",
            "needs-llm.js",
            "import { complete } from 'murmur:plugin/llm@0.1.0';\n",
            "needs-llm.js:1: imports murmur:plugin/llm@0.1.0, which the world 'basic-agent' does not import",
        ),
        (
            "python",
            "app.py",
            "from wit_world.imports import llm\n",
            "app.py:1: imports llm, which the world 'basic-agent' does not import",
        ),
    ] {
        let name = "needs-llm";
        let root = dir.path().join(lang);
        std::fs::create_dir(&root).expect("mkdir");
        succeeds(
            murmur_in(&root, &["new", "agent", name, "--lang", lang]),
            "new",
        );
        let source = root.join(name).join(file);
        let code = std::fs::read_to_string(&source).expect("source");
        std::fs::write(&source, format!("{import}{code}")).expect("edit");
        let out = murmur_in(&root.join(name), &["build"]);
        let said = text(&out);
        assert_eq!(out.status.code(), Some(1), "{said}");
        assert!(said.contains(says), "{lang}: {said}");
        assert!(
            said.contains("declare a world that does as the plugin's world (agent, http-agent)"),
            "{lang}: {said}"
        );
        assert!(
            !root
                .join(name)
                .join("target")
                .join(format!("{name}.wasm"))
                .exists()
        );
    }
}

#[test]
fn murmur_build_leaves_the_compiled_component_in_the_cache_for_the_first_run() {
    let dir = tempfile::tempdir().expect("tempdir");
    succeeds(murmur_in(dir.path(), &["new", "agent", "warm"]), "new");
    let project = dir.path().join("warm");
    succeeds(murmur_in(&project, &["build"]), "build");
    let report = succeeds(
        murmur_in(&project, &["inspect", "--json", "target/warm.wasm"]),
        "inspect",
    );
    let report: serde_json::Value = serde_json::from_str(&report).expect("json");
    assert_eq!(report["cached"], true, "{report}");
}

#[test]
fn a_test_workflow_with_a_malformed_expectation_is_refused_at_its_line() {
    let dir = tempfile::tempdir().expect("tempdir");
    succeeds(murmur_in(dir.path(), &["new", "agent", "typo"]), "new");
    let project = dir.path().join("typo");
    let test = project.join("tests/typo.toml");
    let text_before = std::fs::read_to_string(&test).expect("test");
    let line = text_before.lines().count() + 2;
    std::fs::write(
        &test,
        format!("{text_before}\n[[expect]]\nthat = \"artifacts.exists(a, \"\n"),
    )
    .expect("edit");
    let out = murmur_in(&project, &["test", "--no-build"]);
    let said = text(&out);
    assert_eq!(out.status.code(), Some(1), "{said}");
    assert!(said.contains(&format!("typo.toml:{line}")), "{said}");
    assert!(said.contains("expect: not a CEL expression"), "{said}");
}

#[test]
fn xtask_builds_one_plugin_by_name_and_refuses_a_name_it_does_not_have() {
    let xtask = repo().join("target/debug/xtask");
    let one = std::process::Command::new(&xtask)
        .args(["build-plugins", "tally"])
        .output()
        .expect("xtask");
    let said = text(&one);
    assert!(one.status.success(), "{said}");
    assert!(said.contains("xtask: 1 plugin components in"), "{said}");
    let none = std::process::Command::new(&xtask)
        .args(["build-plugins", "no-such-plugin"])
        .output()
        .expect("xtask");
    assert_eq!(none.status.code(), Some(1));
    assert!(
        text(&none).contains("no plugin 'no-such-plugin' in"),
        "{}",
        text(&none)
    );
}

#[test]
fn build_and_test_outside_a_project_or_without_tests_say_what_is_missing() {
    let dir = tempfile::tempdir().expect("tempdir");
    for command in ["build", "test"] {
        let out = murmur_in(dir.path(), &[command]);
        let said = text(&out);
        assert_eq!(out.status.code(), Some(1), "{said}");
        assert!(said.contains("no murmur-plugin.toml in"), "{said}");
        assert!(said.contains("murmur new WORLD NAME --lang LANG"), "{said}");
    }
    succeeds(murmur_in(dir.path(), &["new", "agent", "untested"]), "new");
    let project = dir.path().join("untested");
    std::fs::remove_file(project.join("tests/untested.toml")).expect("rm");
    let out = murmur_in(&project, &["test", "--no-build"]);
    let said = text(&out);
    assert_eq!(out.status.code(), Some(1), "{said}");
    assert!(
        said.contains("holds no test workflows (tests/*.toml)"),
        "{said}"
    );
}
