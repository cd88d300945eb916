//! Keeping lessons sane: what a run's end does to the lessons of its workflow.
//!
//! Two steps, both pure (the caller reads the lessons and stores the change in one
//! commit): [`judge`] scores the lessons the run used — one that the run's findings show
//! did not prevent its problem misses, and after [`Policy::give_up_after`] misses in a
//! row it is retired — and [`absorb`] folds the run's new lessons in: a new lesson as
//! close as [`Policy::merge_at`] to a kept one of the same phase merges into it (its
//! evidence and problems added), and a phase over [`Policy::budget`] retires its
//! lowest-scored lessons.
//!
//! A retired lesson is no longer read by any run, but it is kept (at most
//! [`Policy::budget`] per phase, the most recently changed), so that the problem that
//! keeps coming back, proposed again by the next retrospective, merges into the lesson
//! that failed instead of starting over with a clean record. Forgetting a lesson
//! (`murmur lessons forget`) deletes it, retired or not.

use super::{Lesson, LessonChange};
use crate::similarity::{jaccard, words};
use std::collections::{BTreeMap, BTreeSet};

/// The rules lessons are kept by (`[lessons]` in the manifest).
#[derive(Debug, Clone, PartialEq)]
pub struct Policy {
    /// Most lessons kept per phase.
    pub budget: usize,
    /// Word-set similarity (Jaccard) at which two lessons of a phase are one.
    pub merge_at: f64,
    /// Uses in a row that did not help after which a lesson is retired.
    pub give_up_after: u32,
    /// Most evidence ids one lesson keeps (the newest win).
    pub max_evidence: usize,
}

impl Default for Policy {
    fn default() -> Self {
        Self {
            budget: 5,
            merge_at: 0.6,
            give_up_after: 3,
            max_evidence: 32,
        }
    }
}

/// Whether `problem` (a finding's signature) is one `lesson` is about.
pub fn is_about(lesson: &Lesson, problem: &str, policy: &Policy) -> bool {
    let p = words(problem);
    lesson
        .about
        .iter()
        .any(|a| jaccard(&words(a), &p) >= policy.merge_at)
}

/// Score the lessons a run used: `used` names them by phase; `problems` are the run's
/// findings' signatures (of every phase: a lesson for one phase may be about a problem
/// met in another). Returns the lessons the run changed (in `put`; those that missed
/// their last chance retired).
pub fn judge(
    kept: &[Lesson],
    used: &BTreeMap<String, Vec<String>>,
    problems: &[String],
    policy: &Policy,
    now_ms: u64,
) -> LessonChange {
    let mut change = LessonChange::default();
    for lesson in kept {
        let Some(ids) = used.get(&lesson.phase) else {
            continue;
        };
        if !ids.contains(&lesson.id) {
            continue;
        }
        let came_back = problems.iter().any(|p| is_about(lesson, p, policy));
        let mut l = lesson.clone();
        l.uses += 1;
        if came_back {
            l.misses += 1;
        } else {
            l.helped += 1;
            l.misses = 0;
        }
        l.updated_at_ms = now_ms;
        l.retired = l.misses >= policy.give_up_after;
        change.put.push(l);
    }
    change
}

/// Fold `new` lessons into `kept` (as [`judge`] left them: apply its change first).
/// Returns the change to store.
pub fn absorb(kept: &[Lesson], new: Vec<Lesson>, policy: &Policy) -> LessonChange {
    let mut all: Vec<Lesson> = kept.to_vec();
    let mut touched: BTreeSet<String> = BTreeSet::new();
    for lesson in new {
        let w = words(&lesson.text);
        // A retired twin takes it too: a problem that keeps coming back stays retired.
        let twin = all.iter_mut().find(|k| {
            k.phase == lesson.phase
                && k.workflow == lesson.workflow
                && jaccard(&words(&k.text), &w) >= policy.merge_at
        });
        match twin {
            Some(k) => {
                merge_into(k, lesson, policy);
                touched.insert(k.id.clone());
            }
            None => {
                touched.insert(lesson.id.clone());
                all.push(lesson);
            }
        }
    }
    let kept_ids: BTreeSet<&str> = kept.iter().map(|k| k.id.as_str()).collect();
    // The budget, per phase: the lowest-scored active lessons retire (the older of a
    // tie); a new one that does not make it is not kept at all.
    let mut by_phase: BTreeMap<String, Vec<usize>> = BTreeMap::new();
    for (i, l) in all.iter().enumerate().filter(|(_, l)| !l.retired) {
        by_phase.entry(l.phase.clone()).or_default().push(i);
    }
    let mut unkept = BTreeSet::new();
    for active in by_phase.values_mut() {
        if active.len() <= policy.budget {
            continue;
        }
        active.sort_by(|&a, &b| {
            let (a, b) = (&all[a], &all[b]);
            b.score()
                .total_cmp(&a.score())
                .then(b.created_at_ms.cmp(&a.created_at_ms))
                .then(b.id.cmp(&a.id))
        });
        for &i in &active[policy.budget..] {
            if kept_ids.contains(all[i].id.as_str()) {
                all[i].retired = true;
                touched.insert(all[i].id.clone());
            } else {
                unkept.insert(all[i].id.clone());
            }
        }
    }
    // Retired lessons are kept as a memory of what did not help, a budget's worth per
    // phase (the most recently changed); older ones go.
    let mut retired: BTreeMap<String, Vec<&Lesson>> = BTreeMap::new();
    for l in all.iter().filter(|l| l.retired) {
        retired.entry(l.phase.clone()).or_default().push(l);
    }
    let mut forget = BTreeSet::new();
    for list in retired.values_mut() {
        list.sort_by(|a, b| {
            b.updated_at_ms
                .cmp(&a.updated_at_ms)
                .then(b.created_at_ms.cmp(&a.created_at_ms))
        });
        for l in list.iter().skip(policy.budget) {
            forget.insert(l.id.clone());
        }
    }
    LessonChange {
        put: all
            .iter()
            .filter(|l| {
                touched.contains(&l.id) && !unkept.contains(&l.id) && !forget.contains(&l.id)
            })
            .cloned()
            .collect(),
        forget: forget
            .into_iter()
            .filter(|id| kept_ids.contains(id.as_str()))
            .collect(),
    }
}

/// `new` merged into `kept`: its text stays (it has a record), the evidence, problems
/// and visibilities of both are kept (evidence capped, newest kept).
fn merge_into(kept: &mut Lesson, new: Lesson, policy: &Policy) {
    for id in new.evidence {
        if !kept.evidence.contains(&id) {
            kept.evidence.push(id);
        }
    }
    let over = kept.evidence.len().saturating_sub(policy.max_evidence);
    kept.evidence.drain(..over);
    for a in new.about {
        if !kept.about.contains(&a) {
            kept.about.push(a);
        }
    }
    for v in new.visibility {
        if !kept.visibility.contains(&v) {
            kept.visibility.push(v);
        }
    }
    kept.updated_at_ms = new.updated_at_ms.max(kept.updated_at_ms);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::artifact::Visibility;

    use crate::lessons::sample as lesson;

    #[test]
    fn a_near_duplicate_merges_into_the_kept_lesson_with_its_evidence_and_visibility() {
        let kept = vec![lesson(
            "a",
            "implementation",
            "List test files in the first draft of an implementation",
        )];
        let mut twin = lesson(
            "b",
            "implementation",
            "List the test files in the first draft of every implementation",
        );
        twin.visibility = vec![Visibility::Tenant("acme".into())];
        let change = absorb(&kept, vec![twin], &Policy::default());
        assert!(change.forget.is_empty());
        assert_eq!(change.put.len(), 1, "{change:?}");
        let merged = &change.put[0];
        assert_eq!(merged.id, "a");
        assert_eq!(merged.evidence, vec!["e-a", "e-b"]);
        assert_eq!(merged.visibility, vec![Visibility::Tenant("acme".into())]);
        assert_eq!(merged.tenant(), Some("acme"));
    }

    #[test]
    fn lessons_of_other_phases_or_other_words_stay_apart() {
        let kept = vec![lesson("a", "implementation", "Write tests before the code")];
        let change = absorb(
            &kept,
            vec![
                lesson("b", "validation", "Write tests before the code"),
                lesson("c", "implementation", "Ask for an LDAP library up front"),
            ],
            &Policy::default(),
        );
        let ids: Vec<&str> = change.put.iter().map(|l| l.id.as_str()).collect();
        assert_eq!(ids, ["b", "c"]);
    }

    #[test]
    fn a_phase_over_its_budget_loses_its_lowest_scored_lessons() {
        let mut proven = lesson("proven", "analysis", "alpha beta gamma");
        proven.uses = 4;
        proven.helped = 4;
        let mut failing = lesson("failing", "analysis", "delta epsilon zeta");
        failing.uses = 2;
        failing.misses = 2;
        let kept = vec![proven, failing];
        let policy = Policy {
            budget: 2,
            ..Policy::default()
        };
        let change = absorb(
            &kept,
            vec![lesson("new", "analysis", "eta theta iota")],
            &policy,
        );
        assert!(change.forget.is_empty());
        let put: Vec<(&str, bool)> = change
            .put
            .iter()
            .map(|l| (l.id.as_str(), l.retired))
            .collect();
        assert_eq!(put, [("failing", true), ("new", false)]);
    }

    #[test]
    fn a_new_lesson_over_a_full_budget_of_better_ones_is_not_kept() {
        let mut kept = Vec::new();
        for (i, text) in ["one two", "three four"].iter().enumerate() {
            let mut l = lesson(&format!("k{i}"), "analysis", text);
            l.uses = 3;
            l.helped = 3;
            kept.push(l);
        }
        let policy = Policy {
            budget: 2,
            ..Policy::default()
        };
        let change = absorb(&kept, vec![lesson("new", "analysis", "five six")], &policy);
        assert!(change.is_empty(), "{change:?}");
    }

    #[test]
    fn a_used_lesson_helps_when_its_problem_does_not_come_back_and_retires_after_misses() {
        let l = lesson("a", "implementation", "Implementation lists no test_files");
        let used = BTreeMap::from([("implementation".to_string(), vec!["a".to_string()])]);
        let policy = Policy::default();
        // The problem did not come back.
        let change = judge(std::slice::from_ref(&l), &used, &[], &policy, 5);
        assert_eq!((change.put[0].uses, change.put[0].helped), (1, 1));
        // It came back, three runs in a row.
        let problems =
            vec!["rejection implementer: Implementation lists no test_files".to_string()];
        let mut current = l;
        for run in 1..=3 {
            let change = judge(&[current.clone()], &used, &problems, &policy, 5);
            assert_eq!(change.put[0].misses, run);
            assert_eq!(change.put[0].retired, run == 3, "run {run}");
            assert!(change.forget.is_empty());
            current = change.put[0].clone();
        }
    }

    #[test]
    fn a_problem_that_keeps_coming_back_merges_into_its_retired_lesson_and_stays_retired() {
        let mut failed = lesson("old", "implementation", "Ask for an LDAP library up front");
        failed.retired = true;
        failed.uses = 3;
        failed.misses = 3;
        let again = lesson(
            "again",
            "implementation",
            "Ask for an LDAP library up front",
        );
        let change = absorb(
            std::slice::from_ref(&failed),
            vec![again],
            &Policy::default(),
        );
        assert_eq!(change.put.len(), 1, "{change:?}");
        assert_eq!(change.put[0].id, "old");
        assert!(change.put[0].retired);
        assert_eq!(change.put[0].evidence, vec!["e-old", "e-again"]);
    }

    #[test]
    fn retired_lessons_are_kept_a_budgets_worth_per_phase_the_newest_first() {
        let policy = Policy {
            budget: 2,
            ..Policy::default()
        };
        let kept: Vec<Lesson> = (1..=3u64)
            .map(|i| {
                let mut l = lesson(&format!("r{i}"), "analysis", &format!("word{i} other{i}"));
                l.retired = true;
                l.updated_at_ms = i;
                l
            })
            .collect();
        let change = absorb(&kept, vec![lesson("n", "analysis", "fresh text")], &policy);
        assert_eq!(change.forget, vec!["r1".to_string()]);
        let ids: Vec<&str> = change.put.iter().map(|l| l.id.as_str()).collect();
        assert_eq!(ids, ["n"]);
    }

    #[test]
    fn a_lesson_the_run_did_not_use_is_not_judged() {
        let l = lesson("a", "implementation", "x");
        let change = judge(&[l], &BTreeMap::new(), &[], &Policy::default(), 5);
        assert!(change.is_empty());
    }
}
