//! Routing: choosing the phase of a discovery that names none the workflow knows.
//!
//! A WorkDiscovery whose `phase` is `auto` — or a name no declared phase has — is routed
//! before it is published. A router plugin (`[routing] plugin`) is asked first; the
//! built-in semantic router decides when there is none, or when the plugin errs, faults or
//! answers a phase that does not exist. The built-in router tries the manifest's rules in
//! order (a rule matches when every word of its phrase occurs in the description), then
//! picks the phase whose description, done-definitions, expected outputs and instructions
//! share the most words with the discovery, and finally falls back to the default phase.
//!
//! The host publishes the discovery with the chosen phase — so subscriptions that filter on
//! `payload.phase` see where it went — and keeps the request, the decider and the reason in
//! `metadata.routing` and on the work item.

use crate::phase::Phase;
use crate::plugin::bindings::types as wit;
use crate::plugin::convert::phase_to_wit;
use crate::policy::RoutingPolicy;
use crate::similarity::words;
use crate::work::Routing;
use std::collections::BTreeSet;
use std::sync::Arc;

/// The phase name that asks for routing.
pub(crate) const AUTO: &str = "auto";

/// The built-in routing rules, used when the manifest gives none (only those whose phase
/// the workflow declares).
pub(crate) const DEFAULT_RULES: &[(&str, &str)] = &[
    ("optimization opportunity", "analysis"),
    ("performance improvement", "analysis"),
    ("security issue", "analysis"),
    ("bug fix needed", "implementation"),
    ("test failure", "validation"),
];

struct Rule {
    phrase: String,
    words: BTreeSet<String>,
    phase: String,
}

/// A workflow's router: built-in rules and phase texts, and optionally a plugin.
pub struct Router {
    rules: Vec<Rule>,
    phases: Vec<(String, BTreeSet<String>)>,
    phase_info: Vec<wit::PhaseInfo>,
    default_phase: String,
    plugin: Option<crate::plugin::Router>,
    /// Phase texts and, once computed, their embeddings (with an embedding model).
    embedder: Option<Arc<crate::llm::LlmHost>>,
    phase_texts: Vec<String>,
    phase_vectors: std::sync::Mutex<Option<Vec<Vec<f32>>>>,
}

impl Router {
    /// The router for `phases` (none if no phase is declared: there is nowhere to route).
    pub fn new(
        policy: &RoutingPolicy,
        phases: &[Phase],
        plugin: Option<crate::plugin::Router>,
    ) -> Option<Self> {
        let first = phases.first()?;
        let declared = |p: &str| phases.iter().any(|x| x.name == p);
        let rules = match &policy.rule {
            Some(rules) => rules
                .iter()
                .map(|r| (r.phrase.clone(), r.phase.get_ref().clone()))
                .collect::<Vec<_>>(),
            None => DEFAULT_RULES
                .iter()
                .filter(|(_, p)| declared(p))
                .map(|(m, p)| (m.to_string(), p.to_string()))
                .collect(),
        };
        Some(Self {
            rules: rules
                .into_iter()
                .map(|(phrase, phase)| Rule {
                    words: words(&phrase),
                    phrase,
                    phase,
                })
                .collect(),
            phases: phases
                .iter()
                .map(|p| {
                    let text = format!(
                        "{} {} {} {} {}",
                        p.name,
                        p.description,
                        p.done_definitions.join(" "),
                        p.expected_outputs.join(" "),
                        p.instructions
                    );
                    (p.name.clone(), words(&text))
                })
                .collect(),
            phase_info: phases.iter().map(phase_to_wit).collect(),
            embedder: None,
            phase_texts: phases
                .iter()
                .map(|p| format!("{}: {} {}", p.name, p.description, p.instructions))
                .collect(),
            phase_vectors: std::sync::Mutex::new(None),
            default_phase: policy
                .default_phase
                .as_ref()
                .map(|p| p.get_ref().clone())
                .unwrap_or_else(|| first.name.clone()),
            plugin,
        })
    }

    /// Compare descriptions with phases by embedding (after the rules; the lexical
    /// comparison stays the fallback).
    pub fn with_embeddings(mut self, host: Arc<crate::llm::LlmHost>) -> Self {
        self.embedder = Some(host);
        self
    }

    /// The phase whose text embeds closest to `description`, with its cosine similarity.
    fn closest_by_embedding(&self, description: &str) -> Result<Option<(String, f64)>, String> {
        let Some(host) = &self.embedder else {
            return Ok(None);
        };
        let mut cached = self.phase_vectors.lock().unwrap_or_else(|p| p.into_inner());
        if cached.is_none() {
            *cached = Some(
                crate::llm::LlmHost::block_on(host.embed(&self.phase_texts, None))
                    .map_err(|e| e.to_string())?,
            );
        }
        let me = crate::llm::LlmHost::block_on(host.embed(&[description.to_string()], None))
            .map_err(|e| e.to_string())?
            .pop()
            .ok_or("no embedding returned")?;
        let best = cached
            .iter()
            .flatten()
            .zip(&self.phases)
            .map(|(v, (name, _))| (name.clone(), crate::similarity::cosine(&me, v)))
            .max_by(|a, b| a.1.total_cmp(&b.1));
        Ok(best)
    }

    /// Whether a discovery asking for `phase` must be routed.
    pub fn needs_routing(&self, phase: &str) -> bool {
        phase == AUTO || !self.phases.iter().any(|(p, _)| p == phase)
    }

    fn known(&self, phase: &str) -> bool {
        self.phases.iter().any(|(p, _)| p == phase)
    }

    /// Route a WorkDiscovery payload about to be published by `producer`, if it needs it:
    /// its `phase` becomes the chosen one and `metadata.routing` records the request, the
    /// decider and the reason. Returns the decision, or `None` if the phase was known.
    pub fn place(
        &self,
        payload: &mut serde_json::Value,
        producer: &str,
        workflow_id: &str,
    ) -> Option<Routing> {
        let requested = payload.get("phase")?.as_str()?.to_string();
        if !self.needs_routing(&requested) {
            return None;
        }
        let description = payload
            .get("description")
            .and_then(|d| d.as_str())
            .unwrap_or_default()
            .to_string();
        let discovery = crate::plugin::convert::unpublished(
            crate::schema::WORK_DISCOVERY,
            payload,
            producer,
            workflow_id,
        );
        let (phase, routing) = self.route(&discovery, &description, &requested);
        let obj = payload.as_object_mut()?;
        obj.insert("phase".into(), serde_json::Value::String(phase));
        let meta = obj
            .entry("metadata")
            .or_insert_with(|| serde_json::Value::Object(Default::default()));
        if let Some(meta) = meta.as_object_mut() {
            meta.insert(
                "routing".into(),
                serde_json::json!({
                    "requested": routing.requested,
                    "by": routing.by,
                    "reason": routing.reason,
                }),
            );
        }
        Some(routing)
    }

    /// Choose a phase for `discovery` (a WorkDiscovery, possibly not yet published).
    pub fn route(
        &self,
        discovery: &wit::Artifact,
        description: &str,
        requested: &str,
    ) -> (String, Routing) {
        let mut note = String::new();
        if let Some(plugin) = &self.plugin {
            match plugin.route(discovery, &self.phase_info) {
                Ok(d) if self.known(&d.phase) => {
                    let routing = Routing {
                        requested: requested.to_string(),
                        by: plugin.name.to_string(),
                        reason: d.reason,
                    };
                    return (d.phase, routing);
                }
                Ok(d) => {
                    note = format!(
                        "router '{}' answered unknown phase '{}'; ",
                        plugin.name, d.phase
                    )
                }
                Err(e) => note = format!("router '{}' failed ({e}); ", plugin.name),
            }
            tracing::warn!("{note}the built-in router decides");
        }
        let (phase, reason) = self.builtin(description);
        let routing = Routing {
            requested: requested.to_string(),
            by: "builtin".into(),
            reason: format!("{note}{reason}"),
        };
        (phase, routing)
    }

    /// The built-in decision and its reason.
    pub fn builtin(&self, description: &str) -> (String, String) {
        let text = words(description);
        if let Some(rule) = self
            .rules
            .iter()
            .find(|r| !r.words.is_empty() && r.words.is_subset(&text))
        {
            return (
                rule.phase.clone(),
                format!("rule '{}' matched", rule.phrase),
            );
        }
        match self.closest_by_embedding(description) {
            Ok(Some((phase, score))) => {
                return (
                    phase,
                    format!("closest phase by embedding (cosine similarity {score:.2})"),
                );
            }
            Ok(None) => {}
            Err(e) => tracing::warn!("embedding failed ({e}); routing by words"),
        }
        let mut best: Option<(&str, f64, usize)> = None;
        for (name, phase_words) in &self.phases {
            let shared = text.intersection(phase_words).count();
            if shared == 0 {
                continue;
            }
            // Cosine similarity of the two word sets.
            let score = shared as f64 / ((text.len() * phase_words.len()) as f64).sqrt();
            if best.is_none_or(|(_, s, _)| score > s) {
                best = Some((name, score, shared));
            }
        }
        match best {
            Some((name, score, shared)) => (
                name.to_string(),
                format!(
                    "closest phase description ({shared} shared word(s), similarity {score:.2})"
                ),
            ),
            None => (
                self.default_phase.clone(),
                "no rule or phase description matched; default phase".into(),
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn phase(name: &str, description: &str) -> Phase {
        Phase {
            name: name.into(),
            description: description.into(),
            done_definitions: vec![],
            expected_outputs: vec![],
            instructions: String::new(),
            approval: Default::default(),
            approval_timeout_ms: None,
        }
    }

    fn router() -> Router {
        let phases = [
            phase(
                "analysis",
                "Understand problems and create implementation plans",
            ),
            phase("implementation", "Build solutions based on analysis"),
            phase("validation", "Test and verify solutions"),
        ];
        Router::new(&RoutingPolicy::default(), &phases, None).expect("phases")
    }

    #[test]
    fn the_built_in_rules_come_first() {
        let r = router();
        let (p, why) = r.builtin("Bug fix needed: OAuth callback accepts expired state");
        assert_eq!(
            (p.as_str(), why.as_str()),
            ("implementation", "rule 'bug fix needed' matched")
        );
        assert_eq!(
            r.builtin("An optimization opportunity in caching").0,
            "analysis"
        );
        assert_eq!(
            r.builtin("test failures in CI").0,
            "validation",
            "plurals fold"
        );
    }

    #[test]
    fn without_a_rule_the_closest_phase_description_wins() {
        let r = router();
        let (p, why) = r.builtin("verify the token refresh");
        assert_eq!(p, "validation");
        assert!(why.starts_with("closest phase description"), "{why}");
    }

    #[test]
    fn nothing_in_common_falls_back_to_the_default_phase() {
        let (p, why) = router().builtin("zebra");
        assert_eq!(p, "analysis");
        assert!(why.contains("default"), "{why}");
    }

    #[test]
    fn auto_and_unknown_phases_need_routing() {
        let r = router();
        assert!(r.needs_routing("auto"));
        assert!(r.needs_routing("deployment"));
        assert!(!r.needs_routing("analysis"));
    }
}
