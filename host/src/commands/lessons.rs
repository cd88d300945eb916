//! `murmur lessons`: review, prune and distil the lessons a store keeps, and prove them
//! by replay (`eval`).

use super::store::{Access, RunSelector, StoreSpec};
use anyhow::{Context, Result, bail};
use murmur::blackboard::{DurableStore, Store};
use murmur::lessons::{Lesson, LessonChange};
use murmur::manifest::Manifest;
use murmur::workflow::Workflow;
use std::path::PathBuf;
use std::sync::Arc;

/// Review, prune and distil the lessons runs leave for the next runs of their workflow.
#[derive(Debug, clap::Args)]
pub(crate) struct LessonsCommand {
    #[command(subcommand)]
    action: Action,
}

#[derive(Debug, clap::Subcommand)]
enum Action {
    /// The lessons kept, per workflow and phase, best scored first.
    List {
        /// The database (`sqlite:PATH` or `postgres://…`).
        #[arg(long)]
        store: StoreSpec,
        /// Only this workflow's (by its name).
        #[arg(long)]
        name: Option<String>,
        /// Print them as a JSON array.
        #[arg(long)]
        json: bool,
    },
    /// One lesson, whole: its text, evidence, scope and record.
    Show {
        /// The database.
        #[arg(long)]
        store: StoreSpec,
        /// The lesson's id (or a prefix of it that names one lesson).
        id: String,
        /// Print it as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Delete lessons: later runs no longer read them.
    Forget {
        /// The database.
        #[arg(long)]
        store: StoreSpec,
        /// The lessons' ids (or unique prefixes).
        #[arg(required_unless_present = "all")]
        ids: Vec<String>,
        /// Every lesson (of the workflow `--name` names, if given).
        #[arg(long, conflicts_with = "ids")]
        all: bool,
        /// With `--all`: only this workflow's.
        #[arg(long, requires = "all")]
        name: Option<String>,
    },
    /// Distil a run's findings into lessons now, with the retrospective its manifest
    /// names (a run ended with `[lessons]` was distilled when it ended; this distils
    /// again, adding what a changed retrospective finds, without judging twice).
    Distill {
        #[command(flatten)]
        run: RunSelector,
        /// Print what it did as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Rerun a recorded run's inputs with and without the kept lessons, and compare.
    Eval(super::lessons_eval::EvalCommand),
}

impl LessonsCommand {
    pub(crate) fn execute(self) -> Result<i32> {
        match self.action {
            Action::List { store, name, json } => {
                let store = open(&store)?;
                let mut lessons = store.lessons(name.as_deref())?;
                lessons.sort_by(|a, b| {
                    (&a.workflow, &a.phase)
                        .cmp(&(&b.workflow, &b.phase))
                        .then(b.score().total_cmp(&a.score()))
                });
                if json {
                    println!("{}", serde_json::to_string_pretty(&lessons)?);
                    return Ok(0);
                }
                if lessons.is_empty() {
                    println!("no lessons kept in {}", store.describe());
                }
                for l in &lessons {
                    println!(
                        "{}  {}/{}  used {}, helped {}{}{}\n    {}",
                        l.id,
                        l.workflow,
                        l.phase,
                        l.uses,
                        l.helped,
                        if l.retired { ", retired" } else { "" },
                        l.tenant()
                            .map(|t| format!(", tenant {t}"))
                            .unwrap_or_default(),
                        l.text
                    );
                }
                Ok(0)
            }
            Action::Show { store, id, json } => {
                let store = open(&store)?;
                let lesson = find(store.as_ref(), &id)?;
                if json {
                    println!("{}", serde_json::to_string_pretty(&lesson)?);
                } else {
                    print_lesson(&lesson);
                }
                Ok(0)
            }
            Action::Forget {
                store,
                ids,
                all,
                name,
            } => {
                let store = open(&store)?;
                let forget: Vec<String> = if all {
                    store
                        .lessons(name.as_deref())?
                        .into_iter()
                        .map(|l| l.id)
                        .collect()
                } else {
                    ids.iter()
                        .map(|id| find(store.as_ref(), id).map(|l| l.id))
                        .collect::<Result<_>>()?
                };
                store.change_lessons(&LessonChange {
                    put: Vec::new(),
                    forget: forget.clone(),
                })?;
                store.close()?;
                eprintln!("murmur: forgot {} lesson(s)", forget.len());
                Ok(0)
            }
            Action::Distill { run, json } => {
                let (store, mut record) = run.open(Access::Write)?;
                let wf = workflow_of(&record)?;
                if wf.retrospective.is_none() {
                    bail!(
                        "run {}: its manifest names no retrospective (`[lessons] retrospective = \"PLUGIN\"`, a plugin of world 'retrospective')",
                        record.workflow_id
                    );
                }
                let judge = record.distilled.is_none();
                let store_dyn: Arc<dyn Store> = store.clone();
                let runtime = tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(1)
                    .enable_all()
                    .build()?;
                let distilled = runtime.block_on(murmur::lessons::distill::distill(
                    &wf, &store_dyn, &record, judge,
                ))?;
                if judge {
                    record.distilled = Some(Box::new(distilled.clone()));
                    store.save_run(&record)?;
                }
                store.close()?;
                if json {
                    println!("{}", serde_json::to_string_pretty(&distilled)?);
                } else {
                    println!(
                        "run {}: {} finding(s); {} proposed, {} added, {} merged, {} dropped",
                        record.workflow_id,
                        distilled.findings,
                        distilled.proposed,
                        distilled.added.len(),
                        distilled.merged.len(),
                        distilled.dropped.len()
                    );
                    if let Some(e) = &distilled.error {
                        println!("nothing learned: {e}");
                    }
                }
                Ok(if distilled.error.is_some() { 1 } else { 0 })
            }
            Action::Eval(e) => e.execute(),
        }
    }
}

/// Open a database's lessons (no run is claimed: lessons are not a run's).
fn open(spec: &StoreSpec) -> Result<Arc<DurableStore>> {
    let store = spec.open_existing()?;
    store.check()?;
    Ok(Arc::new(store))
}

/// The one lesson `id` (or a prefix of one id) names.
fn find(store: &dyn Store, id: &str) -> Result<Lesson> {
    let mut found: Vec<Lesson> = store
        .lessons(None)?
        .into_iter()
        .filter(|l| l.id.starts_with(id))
        .collect();
    match found.len() {
        0 => bail!("{}: no lesson {id}", store.describe()),
        1 => Ok(found.remove(0)),
        n => bail!("{id}: names {n} lessons; give more of the id"),
    }
}

fn print_lesson(l: &Lesson) {
    println!("lesson {}", l.id);
    println!("  workflow  {}", l.workflow);
    println!("  phase     {}", l.phase);
    println!("  text      {}", l.text);
    println!("  by        {} (from run {})", l.by, l.source_run);
    println!(
        "  record    used {}, helped {}, missed {} in a row{}",
        l.uses,
        l.helped,
        l.misses,
        if l.retired {
            "; retired: no run reads it"
        } else {
            ""
        }
    );
    println!("  evidence  {}", l.evidence.join(", "));
    for a in &l.about {
        println!("  about     {a}");
    }
    if l.visibility.is_empty() {
        println!("  visible   to every agent");
    } else {
        for v in &l.visibility {
            println!("  visible   only where {}", serde_json::json!(v));
        }
    }
}

/// The workflow a run ran, loaded from the manifest text it recorded.
pub(super) fn workflow_of(record: &murmur::blackboard::RunRecord) -> Result<Workflow> {
    let path = PathBuf::from(&record.manifest_path);
    let manifest = Manifest::parse(&path, &record.manifest_text)
        .with_context(|| format!("run {}: its manifest", record.workflow_id))?;
    let options = super::settings::load_options(Some(&manifest));
    Ok(Workflow::from_manifest(manifest, options)?)
}
