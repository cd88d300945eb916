//! Placement: which known work a new WorkDiscovery duplicates.
//!
//! Scoring a discovery against the open and done work of its phase may call a router
//! plugin's `similarity()` or an embedding model over HTTP: slow, and never to be done
//! while the run's one lock is held (one slow embedding would stall every worker's
//! commits). So a [`Scorer`] runs on the worker — after the plugin returned, before the
//! commit — against the candidates its phase held when they were read, and against the
//! discoveries before it in the same batch. The commit only re-checks: the most similar
//! candidate that is still open or done wins, and work indexed since the candidates were
//! read (by another worker's commit in between) is compared by the lexical index, which
//! is in memory and calls nothing.
//!
//! Three scorers share one trait: [`Lexical`] (the Jaccard index of the descriptions'
//! word sets, the built-in measure), [`PluginScorer`] (`[dedup] plugin`, a router's
//! `similarity()`) and [`Embedding`] (`[llm] embedding_model`, cosine similarity of the
//! descriptions' embeddings). With neither configured the commit's lexical index decides
//! alone and nothing runs on the worker. When a plugin or the model fails, the lexical
//! scorer decides for that discovery, as it always did.
//!
//! Discoveries the host publishes inside a commit (recovery work) are compared by the
//! lexical index.

use crate::artifact::ArtifactId;
use crate::llm::LlmHost;
use crate::plugin::bindings::types as wit;
use crate::similarity::{cosine, jaccard, words};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// Candidates a discovery is scored against at most: the most recent of its phase.
pub(crate) const CANDIDATES: usize = 64;

/// Something a discovery may duplicate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Target {
    /// Work already on the blackboard.
    Known(ArtifactId),
    /// The output at this position of the same batch (published before it, in the same
    /// commit).
    Earlier(usize),
}

/// A candidate as the scorers see it.
#[derive(Debug, Clone)]
pub(crate) struct Candidate {
    /// Which work it is.
    pub(crate) target: Target,
    /// Its description.
    pub(crate) description: String,
    /// Its discovery as WIT, for a plugin.
    pub(crate) wire: wit::Artifact,
}

/// The open and done work of one phase when a worker read it.
#[derive(Debug, Clone, Default)]
pub(crate) struct Known {
    /// Entries in the phase's index then: the commit compares later ones itself.
    pub(crate) seen: u64,
    /// The most recent open or done work items, most recent first.
    pub(crate) candidates: Vec<Candidate>,
}

/// A discovery about to be placed.
#[derive(Debug, Clone)]
pub(crate) struct Pending {
    /// Its phase.
    pub(crate) phase: String,
    /// Its description.
    pub(crate) description: String,
    /// Its payload as WIT.
    pub(crate) wire: wit::Artifact,
    /// Its position among the outputs it is published with.
    pub(crate) position: usize,
}

/// A discovery's placement, decided outside the run's lock.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct Placement {
    /// Entries in its phase's index when the candidates were read.
    pub(crate) seen: u64,
    /// Candidates at or above the scorer's threshold, most similar first.
    pub(crate) ranked: Vec<(Target, f64)>,
    /// Who scored (`builtin`, a plugin's name, `embedding`).
    pub(crate) by: String,
}

/// A similarity measure between a discovery and candidate work.
pub(crate) trait Scorer: Send + Sync {
    /// Who scores, for placements and logs.
    fn name(&self) -> &str;
    /// Scores at or above this are duplicates.
    fn threshold(&self) -> f64;
    /// One score in 0..=1 per candidate, in order.
    fn score(&self, discovery: &Pending, candidates: &[&Candidate]) -> Result<Vec<f64>, String>;
}

/// The built-in measure: the Jaccard index of the descriptions' word sets.
pub(crate) struct Lexical {
    /// `[dedup] threshold`.
    pub(crate) threshold: f64,
}

impl Scorer for Lexical {
    fn name(&self) -> &str {
        "builtin"
    }
    fn threshold(&self) -> f64 {
        self.threshold
    }
    fn score(&self, discovery: &Pending, candidates: &[&Candidate]) -> Result<Vec<f64>, String> {
        let me = words(&discovery.description);
        Ok(candidates
            .iter()
            .map(|c| jaccard(&me, &words(&c.description)))
            .collect())
    }
}

/// `[dedup] plugin`: a router's `similarity()`.
pub(crate) struct PluginScorer {
    /// The router.
    pub(crate) plugin: crate::plugin::Router,
    /// `[dedup] threshold`.
    pub(crate) threshold: f64,
}

impl Scorer for PluginScorer {
    fn name(&self) -> &str {
        &self.plugin.name
    }
    fn threshold(&self) -> f64 {
        self.threshold
    }
    fn score(&self, discovery: &Pending, candidates: &[&Candidate]) -> Result<Vec<f64>, String> {
        let wire: Vec<wit::Artifact> = candidates.iter().map(|c| c.wire.clone()).collect();
        self.plugin
            .similarity(&discovery.wire, &wire)
            .map(|scores| scores.into_iter().map(f64::from).collect())
            .map_err(|e| e.to_string())
    }
}

/// `[llm] embedding_model`: cosine similarity of the descriptions' embeddings. Each text
/// is embedded once per run (the vectors are kept by text).
pub(crate) struct Embedding {
    host: Arc<LlmHost>,
    threshold: f64,
    vectors: Mutex<HashMap<String, Vec<f32>>>,
}

impl Embedding {
    /// Embeddings from `host`, duplicates at or above `threshold`.
    pub(crate) fn new(host: Arc<LlmHost>, threshold: f64) -> Self {
        Self {
            host,
            threshold,
            vectors: Mutex::new(HashMap::new()),
        }
    }

    fn known(&self, text: &str) -> Option<Vec<f32>> {
        self.vectors.lock().ok()?.get(text).cloned()
    }
}

impl Scorer for Embedding {
    fn name(&self) -> &str {
        "embedding"
    }
    fn threshold(&self) -> f64 {
        self.threshold
    }
    fn score(&self, discovery: &Pending, candidates: &[&Candidate]) -> Result<Vec<f64>, String> {
        let texts = std::iter::once(discovery.description.as_str())
            .chain(candidates.iter().map(|c| c.description.as_str()));
        let mut missing: Vec<String> = Vec::new();
        for t in texts {
            if self.known(t).is_none() && !missing.iter().any(|m| m == t) {
                missing.push(t.to_string());
            }
        }
        if !missing.is_empty() {
            // The request is made holding no lock: two workers may embed one text twice,
            // never wait on each other.
            let vectors =
                LlmHost::block_on(self.host.embed(&missing, None)).map_err(|e| e.to_string())?;
            if vectors.len() != missing.len() {
                return Err(format!(
                    "{} embeddings for {} texts",
                    vectors.len(),
                    missing.len()
                ));
            }
            if let Ok(mut kept) = self.vectors.lock() {
                kept.extend(missing.into_iter().zip(vectors));
            }
        }
        let me = self
            .known(&discovery.description)
            .ok_or("the discovery's embedding is missing")?;
        Ok(candidates
            .iter()
            .map(|c| {
                self.known(&c.description)
                    .map_or(0.0, |v| cosine(&me, &v).clamp(0.0, 1.0))
            })
            .collect())
    }
}

/// Place each of `batch` (one invocation's discoveries, or a chunk of inputs, in
/// publishing order) against the work `known` per phase and the discoveries before it in
/// the batch. A scorer that fails hands that discovery to `fallback`.
pub(crate) fn place(
    scorer: &dyn Scorer,
    fallback: &Lexical,
    batch: &[Pending],
    known: &HashMap<String, Known>,
) -> Vec<Placement> {
    let empty = Known::default();
    let mut placements = Vec::with_capacity(batch.len());
    for (k, discovery) in batch.iter().enumerate() {
        let phase = known.get(&discovery.phase).unwrap_or(&empty);
        let earlier: Vec<Candidate> = batch[..k]
            .iter()
            .filter(|d| d.phase == discovery.phase)
            .map(|d| Candidate {
                target: Target::Earlier(d.position),
                description: d.description.clone(),
                wire: d.wire.clone(),
            })
            .collect();
        let candidates: Vec<&Candidate> = phase.candidates.iter().chain(&earlier).collect();
        let mut placement = Placement {
            seen: phase.seen,
            ranked: Vec::new(),
            by: scorer.name().to_string(),
        };
        if !candidates.is_empty() {
            let (scores, threshold) = match scorer.score(discovery, &candidates) {
                Ok(scores) if scores.len() == candidates.len() => (scores, scorer.threshold()),
                outcome => {
                    let why = match outcome {
                        Err(e) => e,
                        Ok(s) => format!("{} scores for {} candidates", s.len(), candidates.len()),
                    };
                    tracing::warn!(
                        scorer = scorer.name(),
                        "similarity failed ({why}); the built-in measure decides"
                    );
                    placement.by = fallback.name().to_string();
                    let scores = fallback.score(discovery, &candidates).unwrap_or_default();
                    (scores, fallback.threshold())
                }
            };
            placement.ranked = candidates
                .iter()
                .zip(scores)
                .filter(|(_, s)| *s >= threshold)
                .map(|(c, s)| (c.target, s))
                .collect();
            // Most similar first; ties keep the candidates' order (recent known work first).
            placement.ranked.sort_by(|a, b| b.1.total_cmp(&a.1));
        }
        placements.push(placement);
    }
    placements
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wire(description: &str) -> wit::Artifact {
        wit::Artifact {
            id: String::new(),
            type_name: "WorkDiscovery".into(),
            payload: serde_json::json!({ "description": description }).to_string(),
            producer: "t".into(),
            workflow_id: "w".into(),
            parent_ids: vec![],
            tags: vec![],
            visibility: wit::Visibility::Public,
            created_at_ms: 0,
            depth: 0,
        }
    }

    fn pending(phase: &str, description: &str, position: usize) -> Pending {
        Pending {
            phase: phase.into(),
            description: description.into(),
            wire: wire(description),
            position,
        }
    }

    fn known(id: &str, description: &str) -> Candidate {
        Candidate {
            target: Target::Known(ArtifactId::named(id)),
            description: description.into(),
            wire: wire(description),
        }
    }

    struct Failing;
    impl Scorer for Failing {
        fn name(&self) -> &str {
            "failing"
        }
        fn threshold(&self) -> f64 {
            0.0
        }
        fn score(&self, _: &Pending, _: &[&Candidate]) -> Result<Vec<f64>, String> {
            Err("no".into())
        }
    }

    #[test]
    fn a_discovery_is_scored_against_known_work_and_earlier_discoveries_of_its_phase() {
        let lexical = Lexical { threshold: 0.5 };
        let mut by_phase = HashMap::new();
        by_phase.insert(
            "analysis".to_string(),
            Known {
                seen: 7,
                candidates: vec![known("a", "fix the login bug"), known("b", "ship it")],
            },
        );
        let batch = [
            pending("analysis", "write docs", 0),
            pending("implementation", "write docs", 2),
            pending("analysis", "fix login bugs", 3),
            pending("analysis", "write the docs", 4),
        ];
        let placed = place(&lexical, &lexical, &batch, &by_phase);
        assert_eq!(placed[0].ranked, vec![], "nothing like it is known");
        assert_eq!(placed[0].seen, 7);
        assert_eq!(placed[1].seen, 0, "a phase with no index yet");
        assert_eq!(placed[1].ranked, vec![], "the same words in another phase");
        assert_eq!(
            placed[2].ranked,
            vec![(Target::Known(ArtifactId::named("a")), 1.0)]
        );
        assert_eq!(placed[3].ranked, vec![(Target::Earlier(0), 1.0)]);
        assert!(placed.iter().all(|p| p.by == "builtin"));
    }

    #[test]
    fn a_failing_scorer_hands_the_discovery_to_the_lexical_measure() {
        let mut by_phase = HashMap::new();
        by_phase.insert(
            "analysis".to_string(),
            Known {
                seen: 1,
                candidates: vec![known("a", "fix the login bug")],
            },
        );
        let placed = place(
            &Failing,
            &Lexical { threshold: 0.8 },
            &[pending("analysis", "fix login bugs", 0)],
            &by_phase,
        );
        assert_eq!(placed[0].by, "builtin");
        assert_eq!(
            placed[0].ranked,
            vec![(Target::Known(ArtifactId::named("a")), 1.0)]
        );
    }
}
