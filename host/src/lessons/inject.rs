//! Using lessons: which kept lessons a run puts in its phases' instructions, and how
//! they read there.
//!
//! A run chooses its lessons once, when it starts, and records them with the run (so a
//! resumed run, a hot-reloaded workflow and a worker process use the same ones). Each
//! phase gets its best-scored lessons, whole, until its share of the context
//! ([`super::Settings::max_chars`]) is full; each invocation sees those its agent may
//! see (see [`crate::workflow::Workflow::phase_for`]).

use super::{Lesson, UsedLesson};
use std::collections::BTreeMap;

/// The line after which a phase's instructions list its lessons, one `- ` line each
/// (the guest SDK's `Invocation::lessons` reads them back).
pub const HEADING: &str = "Lessons from earlier runs of this workflow:";

/// The lessons of `kept` a run of a workflow with `phases` uses, by phase: the best
/// scored first (the older of a tie), whole, within `max_chars` per phase.
pub fn choose(
    kept: &[Lesson],
    phases: &[String],
    max_chars: usize,
) -> BTreeMap<String, Vec<UsedLesson>> {
    let mut by_phase: BTreeMap<String, Vec<&Lesson>> = BTreeMap::new();
    for l in kept
        .iter()
        .filter(|l| !l.retired && phases.contains(&l.phase))
    {
        by_phase.entry(l.phase.clone()).or_default().push(l);
    }
    let mut chosen = BTreeMap::new();
    for (phase, mut lessons) in by_phase {
        lessons.sort_by(|a, b| {
            b.score()
                .total_cmp(&a.score())
                .then(a.created_at_ms.cmp(&b.created_at_ms))
                .then(a.id.cmp(&b.id))
        });
        let mut room = max_chars;
        let mut used = Vec::new();
        for l in lessons {
            let len = l.text.chars().count() + 3;
            if len > room {
                continue;
            }
            room -= len;
            used.push(UsedLesson {
                id: l.id.clone(),
                text: one_line(&l.text),
                visibility: l.visibility.clone(),
            });
        }
        if !used.is_empty() {
            chosen.insert(phase, used);
        }
    }
    chosen
}

/// `base` instructions with `lessons` after them.
pub fn instructions(base: &str, lessons: &[&UsedLesson]) -> String {
    if lessons.is_empty() {
        return base.to_string();
    }
    let mut text = base.trim_end().to_string();
    text.push_str("\n\n");
    text.push_str(HEADING);
    for l in lessons {
        text.push_str("\n- ");
        text.push_str(&one_line(&l.text));
    }
    text
}

/// A lesson's text on one line, as a list item must be.
fn one_line(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lesson(id: &str, phase: &str, text: &str, uses: u32, helped: u32) -> Lesson {
        Lesson {
            uses,
            helped,
            ..crate::lessons::sample(id, phase, text)
        }
    }

    #[test]
    fn each_phase_gets_its_best_lessons_whole_within_its_share() {
        let kept = vec![
            lesson("weak", "implementation", "aaaa aaaa", 4, 0),
            lesson("strong", "implementation", "bbbb bbbb", 4, 4),
            lesson("long", "implementation", &"c".repeat(200), 0, 0),
            lesson("elsewhere", "retired-phase", "dddd", 0, 0),
            Lesson {
                retired: true,
                ..lesson("retired", "implementation", "eeee", 0, 0)
            },
        ];
        let phases = vec!["implementation".to_string(), "analysis".to_string()];
        let chosen = choose(&kept, &phases, 30);
        let ids: Vec<&str> = chosen["implementation"]
            .iter()
            .map(|l| l.id.as_str())
            .collect();
        assert_eq!(ids, ["strong", "weak"], "the long one does not fit");
        assert!(!chosen.contains_key("retired-phase"));
        assert!(!chosen.contains_key("analysis"));
    }

    #[test]
    fn lessons_follow_the_instructions_one_line_each() {
        let l = UsedLesson {
            id: "a".into(),
            text: "Write the\ntests first.".into(),
            visibility: Vec::new(),
        };
        assert_eq!(
            instructions("Implement it.\n", &[&l]),
            format!("Implement it.\n\n{HEADING}\n- Write the tests first.")
        );
        assert_eq!(instructions("Implement it.", &[]), "Implement it.");
    }
}
