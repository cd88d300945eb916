//! Test fixtures: manifests written to temp dirs, runs on an in-memory store.

use murmur::artifact::SharedArtifact;
use murmur::blackboard::ArtifactQuery;
use murmur::plugin::ComponentCache;
use murmur::{
    LoadOptions, Manifest, MemoryStore, RunSummary, Scheduler, Store, Workflow, WorkflowError,
};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// The `murmur` binary, with the tests' compile cache.
pub(crate) fn murmur() -> std::process::Command {
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_murmur"));
    cmd.env("MURMUR_CACHE_DIR", cache_dir());
    cmd
}

/// Where `cargo xtask build-plugins` puts components.
pub(crate) fn plugin(name: &str) -> PathBuf {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../target/plugins")
        .join(format!("{name}.wasm"));
    assert!(
        path.exists(),
        "{} is missing: run the tests with `cargo xtask test` (it builds the plugins)",
        path.display()
    );
    path
}

/// The tests' compiled-component cache: private to this build tree (cargo's scratch
/// directory for integration tests, under `target/`), never a fixed path in `/tmp`.
pub(crate) fn cache_dir() -> PathBuf {
    Path::new(env!("CARGO_TARGET_TMPDIR")).join("component-cache")
}

/// A compiled-component cache shared by the tests of this process.
pub(crate) fn options() -> LoadOptions {
    LoadOptions {
        cache: ComponentCache::at(cache_dir()),
        ..Default::default()
    }
}

/// The repository root.
pub(crate) fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// `{plugin:NAME}` in `text` becomes that component's absolute path.
pub(crate) fn expand(text: &str) -> String {
    let mut out = String::new();
    let mut rest = text;
    while let Some(i) = rest.find("{plugin:") {
        out.push_str(&rest[..i]);
        let end = rest[i..].find('}').expect("unterminated {plugin:…}") + i;
        let p = plugin(&rest[i + 8..end]);
        out.push_str(&p.display().to_string());
        rest = &rest[end + 1..];
    }
    out.push_str(rest);
    out
}

/// Parse manifest text (after `{plugin:…}` expansion) as if read from `workflow.toml` in a temp dir.
pub(crate) fn load(text: &str) -> Result<Workflow, WorkflowError> {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("workflow.toml");
    let text = expand(text);
    std::fs::write(&path, &text).expect("write manifest");
    let manifest = Manifest::parse(&path, &text)?;
    Workflow::from_manifest(manifest, options())
}

/// A finished run and the store it ran on.
pub(crate) struct Run {
    pub summary: RunSummary,
    pub store: Arc<dyn Store>,
}

impl Run {
    /// Artifacts of one type, oldest first.
    pub(crate) fn artifacts(&self, type_name: &str) -> Vec<SharedArtifact> {
        let q = ArtifactQuery {
            workflow_id: self.summary.workflow_id.clone(),
            type_name: Some(type_name.into()),
            tags: vec![],
            limit: usize::MAX,
        };
        self.store
            .query(
                &q,
                &murmur::artifact::Viewer {
                    name: "host",
                    labels: &[],
                    tenant: None,
                    operator: false,
                },
            )
            .expect("query")
    }
}

impl Run {
    /// Every public artifact of the run, in publish order.
    pub(crate) fn all_artifacts(&self) -> Vec<SharedArtifact> {
        let q = ArtifactQuery {
            workflow_id: self.summary.workflow_id.clone(),
            type_name: None,
            tags: vec![],
            limit: usize::MAX,
        };
        let viewer = murmur::artifact::Viewer {
            name: "host",
            labels: &[],
            tenant: None,
            operator: false,
        };
        self.store.query(&q, &viewer).expect("query")
    }

    /// The run's work items, in creation order.
    pub(crate) fn work_items(&self) -> Vec<murmur::work::WorkItem> {
        self.store
            .work_items(&self.summary.workflow_id)
            .expect("work items")
    }

    /// The work item whose description is `description`.
    pub(crate) fn work(&self, description: &str) -> murmur::work::WorkItem {
        self.work_items()
            .into_iter()
            .find(|w| w.description == description)
            .unwrap_or_else(|| panic!("no work item '{description}'"))
    }

    /// The run's invocations, in creation order.
    pub(crate) fn invocations(&self) -> Vec<murmur::invocation::InvocationRecord> {
        self.store
            .invocations(&self.summary.workflow_id)
            .expect("invocations")
    }
}

/// A `probe` agent named `name` in `config` (a TOML inline table's inside), subscribed to
/// `type_name` with an optional CEL filter.
pub(crate) fn probe(name: &str, config: &str, type_name: &str, filter: Option<&str>) -> String {
    let filter = filter
        .map(|f| format!("filter = \"{f}\"\n"))
        .unwrap_or_default();
    format!(
        "\n[[plugin]]\nname = \"{name}\"\npath = \"{{plugin:probe}}\"\nworld = \"agent\"\nconfig = {{ {config} }}\n[[plugin.subscribe]]\ntype = \"{type_name}\"\n{filter}"
    )
}

/// A `reader` agent (granted the blackboard) named `name`; see [`probe`].
pub(crate) fn reader(name: &str, config: &str, type_name: &str, filter: Option<&str>) -> String {
    probe(name, config, type_name, filter)
        .replacen("{plugin:probe}", "{plugin:reader}", 1)
        .replacen(
            "world = \"agent\"\n",
            "world = \"agent\"\ngrants = [\"blackboard\"]\n",
            1,
        )
}

/// A WorkDiscovery `[[input]]` in `phase` (and optional extra payload keys).
pub(crate) fn discovery(description: &str, phase: &str, extra: &str) -> String {
    format!(
        "\n[[input]]\ntype = \"WorkDiscovery\"\npayload = {{ description = \"{description}\", phase = \"{phase}\", done_definition = \"done\", discovered_by = \"user\"{extra} }}\n"
    )
}

/// The three usual phases and a `Note` type.
pub(crate) const PHASES_AND_NOTE: &str = r#"
[[phase]]
name = "analysis"
description = "Understand problems and create implementation plans"
[[phase]]
name = "implementation"
description = "Build solutions based on analysis"
[[phase]]
name = "validation"
description = "Test and verify solutions"
[[type]]
name = "Note"
schema = { type = "object" }
"#;

/// Run a loaded workflow to idle on a fresh in-memory store.
pub(crate) async fn run_workflow(wf: Workflow) -> Run {
    let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
    let summary = Scheduler::new(Arc::new(wf), store.clone())
        .run()
        .await
        .expect("run");
    Run { summary, store }
}

/// Load and run manifest text.
pub(crate) async fn run(text: &str) -> Run {
    let wf = load(text).unwrap_or_else(|e| panic!("manifest should load: {e}"));
    run_workflow(wf).await
}

/// The auth-system agents, as a manifest fragment (after `[workflow]`).
pub(crate) const AUTH_AGENTS: &str = r#"
[[phase]]
name = "analysis"
[[phase]]
name = "implementation"
[[phase]]
name = "validation"

[[plugin]]
name = "analyzer"
path = "{plugin:analyzer}"
world = "agent"
[[plugin.config.rules]]
when = "authentication"
components = ["OAuth 2.0 login flow", "JWT issuing and verification", "User session store"]
[[plugin.config.rules]]
when = "caching"
components = ["Apply response caching to API routes"]

[[plugin]]
name = "implementer"
path = "{plugin:implementer}"
world = "agent"

[[plugin]]
name = "validator"
path = "{plugin:validator}"
world = "agent"
[[plugin.config.discoveries]]
when = "JWT"
description = "Caching pattern could optimize all API routes"
phase = "analysis"
priority = "high"

[[input]]
type = "WorkDiscovery"
[input.payload]
description = "Build authentication system with OAuth and JWT"
phase = "analysis"
done_definition = "Analysis complete with implementation plan"
discovered_by = "user"
"#;
