//! `murmur lessons eval`: prove lessons by replay.
//!
//! A recorded run's workflow is run twice from its inputs, each time on a store of its
//! own in memory — once without lessons, once with the lessons its store keeps — and
//! the two are compared: rejected outputs, retries, failures, invocations, tokens.
//! Model calls are answered from the run's recording (`--llm-record`) where the prompt
//! is the recorded one; where it is not (a lesson changed the prompt), by the stated
//! fallback: refused (the call fails, as an agent's model call without an answer does),
//! or the live provider. Nothing is written to the store.

use super::store::{Access, RunSelector};
use anyhow::{Context, Result};
use murmur::Store;
use murmur::blackboard::{MemoryStore, RunRecord};
use murmur::lessons::{LessonChange, Settings};
use murmur::manifest::Manifest;
use murmur::scheduler::Scheduler;
use murmur::summary::RunSummary;
use murmur::workflow::{LoadOptions, Workflow};
use serde::Serialize;
use std::path::PathBuf;
use std::sync::Arc;

/// Rerun a recorded run's inputs with and without the kept lessons, and compare.
#[derive(Debug, clap::Args)]
pub(crate) struct EvalCommand {
    #[command(flatten)]
    run: RunSelector,
    /// The run's recorded model exchanges (`murmur run --llm-record FILE`; an empty
    /// file for a workflow that asks no model).
    #[arg(long)]
    tape: PathBuf,
    /// Where a model request the tape has no answer for goes: `refuse` (the call fails)
    /// or `provider` (the live provider of the manifest's `[llm]` or `MURMUR_LLM_*`).
    #[arg(long, value_enum, default_value = "refuse")]
    fallback: Fallback,
    /// Print the comparison as JSON.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Serialize)]
#[serde(rename_all = "snake_case")]
enum Fallback {
    /// Refuse the call: the agent's model call fails.
    Refuse,
    /// Ask the live provider.
    Provider,
}

/// One side of the comparison.
#[derive(Debug, Serialize)]
struct Side {
    status: String,
    lessons_used: usize,
    rejected_outputs: u64,
    retries: u64,
    failed_invocations: u64,
    invocations: u64,
    tokens: u64,
    /// Model calls answered from the tape.
    from_tape: u64,
    /// Model calls answered by the live provider.
    from_provider: u64,
}

#[derive(Debug, Serialize)]
struct Comparison {
    workflow: String,
    run: String,
    tape: String,
    fallback: Fallback,
    without: Side,
    with: Side,
}

impl EvalCommand {
    pub(crate) fn execute(self) -> Result<i32> {
        let (store, record) = self.run.open(Access::Read)?;
        // The tape must be readable before anything runs.
        std::fs::metadata(&self.tape).with_context(|| format!("--tape {}", self.tape.display()))?;
        let kept = store.lessons(Some(&record.name))?;
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()?;
        let without = self.side(&runtime, &record, None)?;
        let with = self.side(&runtime, &record, Some(kept))?;
        let comparison = Comparison {
            workflow: record.name.clone(),
            run: record.workflow_id.clone(),
            tape: self.tape.display().to_string(),
            fallback: self.fallback,
            without,
            with,
        };
        if self.json {
            println!("{}", serde_json::to_string_pretty(&comparison)?);
            return Ok(0);
        }
        print(&comparison);
        Ok(0)
    }

    /// Run the recorded run's workflow from its inputs on a memory store, with
    /// `lessons` in its phases' instructions (none: without lessons).
    fn side(
        &self,
        runtime: &tokio::runtime::Runtime,
        record: &RunRecord,
        lessons: Option<Vec<murmur::lessons::Lesson>>,
    ) -> Result<Side> {
        let path = PathBuf::from(&record.manifest_path);
        let mut manifest = Manifest::parse(&path, &record.manifest_text)
            .with_context(|| format!("run {}: its manifest", record.workflow_id))?;
        let store = Arc::new(MemoryStore::new());
        // Nothing is distilled here: only the lessons kept are put to the test.
        manifest.lessons = match &lessons {
            Some(kept) => {
                let mut settings = match manifest.lessons.take() {
                    Some(s) => s,
                    None => serde_json::from_value::<Settings>(serde_json::json!({}))?,
                };
                settings.retrospective = None;
                settings.use_kept = true;
                store.change_lessons(&LessonChange {
                    put: kept.clone(),
                    forget: Vec::new(),
                })?;
                Some(settings)
            }
            None => None,
        };
        let options = LoadOptions {
            llm_replay: Some(self.tape.clone()),
            llm_fallback: self.fallback == Fallback::Provider,
            ..super::settings::load_options(Some(&manifest))
        };
        let wf = Arc::new(Workflow::from_manifest(manifest, options)?);
        let scheduler = Scheduler::new(wf, store.clone() as Arc<dyn Store>);
        let summary: RunSummary = runtime.block_on(scheduler.run())?;
        let llm = summary.llm.clone().unwrap_or_default();
        Ok(Side {
            status: summary.status.to_string(),
            lessons_used: summary
                .lessons
                .as_ref()
                .map_or(0, |l| l.used.values().map(Vec::len).sum()),
            rejected_outputs: summary.work.rejected_outputs,
            retries: summary.work.retries,
            failed_invocations: summary.agents.values().map(|a| a.failed).sum(),
            invocations: summary.invocations,
            tokens: llm.prompt_tokens + llm.completion_tokens,
            from_tape: llm.cached,
            from_provider: llm.calls,
        })
    }
}

/// A line of the comparison: its name, and its value on one side.
type Row = (&'static str, fn(&Side) -> String);

fn print(c: &Comparison) {
    println!(
        "run {} of '{}' replayed from {} (a request not on the tape: {})",
        c.run,
        c.workflow,
        c.tape,
        match c.fallback {
            Fallback::Refuse => "refused",
            Fallback::Provider => "asked of the live provider",
        }
    );
    println!(
        "{:<22} {:>16} {:>16}",
        "", "without lessons", "with lessons"
    );
    let rows: [Row; 9] = [
        ("status", |s| s.status.clone()),
        ("lessons used", |s| s.lessons_used.to_string()),
        ("rejected outputs", |s| s.rejected_outputs.to_string()),
        ("retries", |s| s.retries.to_string()),
        ("failed invocations", |s| s.failed_invocations.to_string()),
        ("invocations", |s| s.invocations.to_string()),
        ("tokens", |s| s.tokens.to_string()),
        ("answers from the tape", |s| s.from_tape.to_string()),
        ("answers from provider", |s| s.from_provider.to_string()),
    ];
    for (name, value) in rows {
        println!(
            "{name:<22} {:>16} {:>16}",
            value(&c.without),
            value(&c.with)
        );
    }
}
