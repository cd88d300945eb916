//! `murmur test [PATH]`: build a plugin project and run its test workflows.

use anyhow::{Context, Result};
use murmur::blackboard::{MemoryStore, Store};
use murmur::expect::{Expectation, facts};
use murmur::manifest::Manifest;
use murmur::scheduler::Scheduler;
use murmur::workflow::Workflow;
use murmur_toolchain::Project;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

/// Build the plugin project in PATH (as `murmur build` does), run each workflow in its
/// `tests/` on an in-memory blackboard and check its `[[expect]]` tables (without any, the
/// run must complete). Exit status: 0 when every test passed, 1 otherwise.
#[derive(Debug, clap::Args)]
pub(crate) struct TestCommand {
    /// The project directory (or its murmur-plugin.toml).
    path: Option<PathBuf>,
    /// Run the tests against the components as they are, without building.
    #[arg(long)]
    no_build: bool,
}

impl TestCommand {
    pub(crate) fn execute(self) -> Result<i32> {
        let project = Project::open(self.path.as_deref().unwrap_or(Path::new(".")))?;
        if !self.no_build {
            super::build::build(&project, false)?;
        }
        let tests = project.tests()?;
        if tests.is_empty() {
            anyhow::bail!(
                "{} holds no test workflows (tests/*.toml)",
                project.dir.display()
            );
        }
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .context("starting tokio")?;
        let mut failed = 0;
        for test in &tests {
            let name = test.strip_prefix(&project.dir).unwrap_or(test);
            let started = Instant::now();
            match runtime.block_on(run_test(test)) {
                Ok(outcome) if outcome.failures.is_empty() => println!(
                    "test {} ... ok ({} invocations, {} artifacts, {} ms)",
                    name.display(),
                    outcome.invocations,
                    outcome.artifacts,
                    started.elapsed().as_millis()
                ),
                Ok(outcome) => {
                    failed += 1;
                    println!(
                        "test {} ... FAILED (run {}, {} invocations)",
                        name.display(),
                        outcome.status,
                        outcome.invocations
                    );
                    for f in &outcome.failures {
                        println!("  {f}");
                    }
                    for line in &outcome.shown {
                        println!("  | {line}");
                    }
                }
                Err(e) => {
                    failed += 1;
                    println!("test {} ... FAILED\n  {e:#}", name.display());
                }
            }
        }
        println!("{} passed; {failed} failed", tests.len() - failed);
        Ok(if failed == 0 { 0 } else { 1 })
    }
}

/// What one test workflow's run showed.
struct Outcome {
    status: String,
    invocations: u64,
    artifacts: u64,
    /// One line per expectation that did not hold.
    failures: Vec<String>,
    /// What the run did, for the reader of a failure: artifacts by type, and each
    /// invocation that did not complete.
    shown: Vec<String>,
}

/// A few lines of what a run did: the artifacts by type, then every invocation that
/// failed, with its fault and error.
fn shown(facts: &serde_json::Value) -> Vec<String> {
    let mut by_type = std::collections::BTreeMap::<&str, usize>::new();
    for a in facts["artifacts"].as_array().into_iter().flatten() {
        *by_type
            .entry(a["type"].as_str().unwrap_or("?"))
            .or_default() += 1;
    }
    let types: Vec<String> = by_type.iter().map(|(t, n)| format!("{t} {n}")).collect();
    let mut lines = vec![format!("artifacts: {}", types.join(", "))];
    for i in facts["invocations"].as_array().into_iter().flatten() {
        if i["status"] != "done" {
            lines.push(format!(
                "invocation of {}: {}{}{}",
                i["agent"].as_str().unwrap_or("?"),
                i["status"].as_str().unwrap_or("?"),
                match i["fault"].as_str() {
                    Some(f) if !f.is_empty() => format!(" ({f})"),
                    _ => String::new(),
                },
                match i["error"].as_str() {
                    Some(e) if !e.is_empty() => format!(": {}", e.lines().next().unwrap_or("")),
                    _ => String::new(),
                }
            ));
        }
    }
    lines
}

async fn run_test(path: &Path) -> Result<Outcome> {
    let manifest = Manifest::load(path)?;
    let options = super::settings::load_options(Some(&manifest));
    let wf = Arc::new(Workflow::from_manifest(manifest, options)?);
    let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
    let summary = Scheduler::new(wf.clone(), store.clone())
        .run()
        .await
        .context("running the workflow")?;
    let facts = facts(&*store, &summary)?;
    let default;
    let expectations: &[Expectation] = if wf.manifest.expectations.is_empty() {
        default =
            [
                Expectation::compile("status == 'completed'", Some("the run completes".into()), 0)
                    .map_err(anyhow::Error::msg)?,
            ];
        &default
    } else {
        &wf.manifest.expectations
    };
    let failures = expectations
        .iter()
        .map(|e| e.check(&facts))
        .filter_map(|c| {
            let failure = c.failure?;
            let e = c.expectation;
            let at = if e.line > 0 {
                format!("{}:{}: ", path.display(), e.line)
            } else {
                String::new()
            };
            let why = e.why.map(|w| format!(" ({w})")).unwrap_or_default();
            Some(format!("{at}expected {}{why}: {failure}", e.that))
        })
        .collect();
    Ok(Outcome {
        shown: shown(&facts),
        status: facts["status"].as_str().unwrap_or("").to_string(),
        invocations: summary.invocations,
        artifacts: summary.artifacts,
        failures,
    })
}
