//! Lessons: what one run of a workflow teaches the next.
//!
//! A run improves itself while it runs (refused outputs are retried with the reasons,
//! failures spawn recovery); a lesson carries that across runs. At the end of a run the
//! host gathers what went wrong and what fixed it ([`findings`]), hands it to the
//! workflow's retrospective plugin (the `retrospective` world of the WIT), checks what it
//! answers, and keeps the result in the store ([`keep`]); a later run of the same workflow
//! reads the kept lessons into its phases' instructions ([`inject`]) and, when it ends,
//! judges whether each lesson it used helped.
//!
//! A lesson is text that ends up in prompts, so three rules hold:
//! - only the host writes lessons (from a retrospective's drafts it checked, or
//!   `murmur lessons forget`): no agent can publish one;
//! - a lesson carries the visibility of every artifact it rests on, and reaches only an
//!   agent that may see all of them;
//! - lessons never grow without bound: a budget per phase, near-duplicates merged, and
//!   a lesson that stops helping is retired (no longer read, and not proposed anew).

pub mod distill;
pub mod findings;
pub mod inject;
pub mod keep;

use crate::artifact::{Viewer, Visibility};
use serde::{Deserialize, Serialize};

/// One lesson, as the store keeps it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Lesson {
    /// A UUIDv7.
    pub id: String,
    /// The workflow's name (lessons are shared by its runs, not by one run).
    pub workflow: String,
    /// The phase whose instructions it joins.
    pub phase: String,
    /// What to do differently, in the retrospective's words.
    pub text: String,
    /// The artifacts it rests on (work items, outputs that passed).
    pub evidence: Vec<String>,
    /// The run it was first distilled from.
    pub source_run: String,
    /// Runs that used it.
    pub uses: u32,
    /// Of those, runs where the problem it is about did not come back.
    pub helped: u32,
    /// Uses in a row that did not help; at the policy's limit the lesson is dropped.
    #[serde(default)]
    pub misses: u32,
    /// The problems it is about, as the findings named them: how a later run is judged.
    #[serde(default)]
    pub about: Vec<String>,
    /// Every visibility of its evidence: a viewer must pass each one to see it.
    #[serde(default)]
    pub visibility: Vec<Visibility>,
    /// Retired: it stopped helping (or lost its place to better ones), so no run reads
    /// it; kept so that its problem, proposed again, merges here (see [`keep`]).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub retired: bool,
    /// The retrospective plugin that wrote it.
    pub by: String,
    /// When it was first kept (ms since the Unix epoch).
    pub created_at_ms: u64,
    /// When it last changed.
    pub updated_at_ms: u64,
}

impl Lesson {
    /// Whether `viewer` may see it: it may see every artifact the lesson rests on.
    pub fn visible_to(&self, viewer: &Viewer<'_>) -> bool {
        self.visibility.iter().all(|v| v.allows("host", viewer))
    }

    /// The tenant its evidence belongs to, if any (its scope beside the workflow's name).
    pub fn tenant(&self) -> Option<&str> {
        self.visibility.iter().find_map(|v| match v {
            Visibility::Tenant(t) => Some(t.as_str()),
            _ => None,
        })
    }

    /// How well it has done: helped uses over uses, with one imagined use each way so a
    /// new lesson starts at one half.
    pub fn score(&self) -> f64 {
        (f64::from(self.helped) + 1.0) / (f64::from(self.uses) + 2.0)
    }
}

/// One atomic change to a workflow's lessons: `put` inserted or replaced (by id),
/// `forget` deleted.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LessonChange {
    /// Lessons to insert or replace.
    pub put: Vec<Lesson>,
    /// Ids to delete.
    pub forget: Vec<String>,
}

impl LessonChange {
    /// Whether it changes nothing.
    pub fn is_empty(&self) -> bool {
        self.put.is_empty() && self.forget.is_empty()
    }
}

/// A lesson a run put in a phase's instructions: what the summary and `status` name.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UsedLesson {
    /// The lesson's id.
    pub id: String,
    /// Its text as the run used it.
    pub text: String,
    /// Its visibility then.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub visibility: Vec<Visibility>,
}

/// `[lessons]` in a manifest: whether and how its runs learn from each other.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    /// The plugin (world `retrospective`) that distils a run's findings into lessons
    /// when it ends; without one, runs use the lessons kept but add none (`murmur
    /// lessons distill` names one).
    #[serde(default)]
    pub retrospective: Option<String>,
    /// Whether runs put the kept lessons in their phases' instructions.
    #[serde(default = "yes", rename = "use")]
    pub use_kept: bool,
    /// Most lessons kept per phase.
    #[serde(default = "default_budget")]
    pub budget: usize,
    /// Word-set similarity at which two lessons of a phase merge.
    #[serde(default = "default_merge_at")]
    pub merge_at: f64,
    /// Uses in a row that did not help after which a lesson is dropped.
    #[serde(default = "default_give_up_after")]
    pub give_up_after: u32,
    /// Most characters of lessons one phase's instructions carry (the lessons' share of
    /// the context budget): the best-scored lessons first, whole, until it is full.
    #[serde(default = "default_max_chars")]
    pub max_chars: usize,
}

fn yes() -> bool {
    true
}
fn default_budget() -> usize {
    keep::Policy::default().budget
}
fn default_merge_at() -> f64 {
    keep::Policy::default().merge_at
}
fn default_give_up_after() -> u32 {
    keep::Policy::default().give_up_after
}
fn default_max_chars() -> usize {
    2000
}

impl Settings {
    /// The keeping rules these settings name.
    pub fn policy(&self) -> keep::Policy {
        keep::Policy {
            budget: self.budget,
            merge_at: self.merge_at,
            give_up_after: self.give_up_after,
            ..keep::Policy::default()
        }
    }

    /// What is wrong with these settings, if anything.
    pub fn problem(&self) -> Option<String> {
        if !(1..=100).contains(&self.budget) {
            return Some(format!(
                "lessons.budget is {}; expected 1 to 100 lessons per phase",
                self.budget
            ));
        }
        if !(self.merge_at > 0.0 && self.merge_at <= 1.0) {
            return Some(format!(
                "lessons.merge_at is {}; expected a similarity above 0 and at most 1",
                self.merge_at
            ));
        }
        if self.give_up_after == 0 {
            return Some("lessons.give_up_after must be at least 1".into());
        }
        if self.max_chars < 100 {
            return Some(format!(
                "lessons.max_chars is {}; expected at least 100",
                self.max_chars
            ));
        }
        None
    }
}

/// A lesson for the tests: of workflow `wf`, about a rejection of `text`.
#[cfg(test)]
pub(crate) fn sample(id: &str, phase: &str, text: &str) -> Lesson {
    Lesson {
        id: id.into(),
        workflow: "wf".into(),
        phase: phase.into(),
        text: text.into(),
        evidence: vec![format!("e-{id}")],
        source_run: "run-1".into(),
        uses: 0,
        helped: 0,
        misses: 0,
        about: vec![format!("rejection implementer: {text}")],
        visibility: Vec::new(),
        retired: false,
        by: "retro".into(),
        created_at_ms: 1,
        updated_at_ms: 1,
    }
}
