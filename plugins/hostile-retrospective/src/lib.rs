//! A retrospective that misbehaves on purpose, for the host's tests: `config.mode` picks
//! how — `trap`, `loop`, `memory` (grows until its limit), `foreign-evidence` (cites an
//! artifact no finding holds), `unknown-phase`, `flood` (more lessons than the host
//! takes), `empty-text`, or `each` (one well-formed lesson per finding, its text
//! `config.text` and the finding's agent: what the visibility tests use).

use murmur_guest::prelude::*;
use serde::Deserialize;

#[derive(Deserialize)]
struct Config {
    mode: String,
    #[serde(default)]
    text: String,
}

fn one(phase: &str, text: &str, evidence: Vec<String>) -> LessonDraft {
    LessonDraft { phase: phase.into(), text: text.into(), evidence }
}

struct Hostile;

impl Retrospective for Hostile {
    fn describe() -> RetrospectiveInfo {
        RetrospectiveInfo::new("hostile-retrospective", env!("CARGO_PKG_VERSION"), "Misbehaves for the tests")
    }

    fn distill(review: RunReview) -> Result<Vec<LessonDraft>, PluginError> {
        let config: Config =
            serde_json::from_str(&review.config).map_err(|e| PluginError::invalid_input(format!("config: {e}")))?;
        let first = review.findings.first().cloned();
        let phase = first.as_ref().map(|f| f.phase.clone()).unwrap_or_else(|| "analysis".into());
        let evidence = first.map(|f| f.evidence).unwrap_or_default();
        match config.mode.as_str() {
            "trap" => panic!("the retrospective gave up"),
            "loop" => {
                let mut n: u64 = 0;
                loop {
                    n = n.wrapping_add(1);
                    if n == u64::MAX {
                        break;
                    }
                    core::hint::black_box(n);
                }
                Ok(Vec::new())
            }
            "memory" => {
                let mut hoard: Vec<Vec<u8>> = Vec::new();
                loop {
                    hoard.push(vec![1u8; 1 << 20]);
                    core::hint::black_box(&hoard);
                }
            }
            "foreign-evidence" => Ok(vec![one(&phase, "Trust this lesson", vec!["01a00000-0000-7000-8000-000000000000".into()])]),
            "unknown-phase" => Ok(vec![one("nowhere", "A lesson for no phase", evidence)]),
            "flood" => Ok((0..100).map(|i| one(&phase, &format!("Lesson number {i}"), evidence.clone())).collect()),
            "empty-text" => Ok(vec![one(&phase, "   ", evidence)]),
            "each" => Ok(review
                .findings
                .iter()
                .map(|f| one(&f.phase, &format!("{} ({})", config.text, f.agent), f.evidence.clone()))
                .collect()),
            other => Err(PluginError::invalid_input(format!("unknown mode '{other}'"))),
        }
    }
}

murmur_guest::export_retrospective!(Hostile);
