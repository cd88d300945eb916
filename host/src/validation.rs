//! Output validation: the last gate before an invocation's outputs are published.
//!
//! Schemas say what an artifact looks like; validators say whether the work is done. After
//! an invocation's outputs pass their schema checks, the host runs its built-in checks
//! (the built-in ones: an approved AnalysisResult carries a plan and spawns next-phase work; an
//! Implementation lists its code files) and then every validator plugin whose
//! subscriptions name one of the output types (a validator with no subscriptions sees
//! everything). The first rejection stops the chain; its reasons go back to the agent in
//! the retry's context (`PreviousAttempt`), and the invocation is retried under
//! `[retry]`. A validator that faults or errs fails the invocation closed: unvalidated
//! outputs are never published.

use crate::plugin::bindings::types as wit;
use crate::plugin::convert::{invocation_for, wit_visible};
use crate::plugin::{BoardAccess, InvokeError, LoadedPlugin};
use crate::schema::{ANALYSIS_RESULT, IMPLEMENTATION, WORK_DISCOVERY};
use serde_json::Value;

/// Why outputs were not accepted.
#[derive(Debug, Clone)]
pub(crate) enum Refusal {
    /// A validator rejected them, with reasons.
    Rejected {
        /// `builtin` or the validator plugin's name.
        by: String,
        /// What is wrong.
        reasons: Vec<String>,
    },
    /// A validator could not give a verdict.
    ValidatorFailed {
        /// The validator plugin.
        by: String,
        /// What happened.
        error: InvokeError,
    },
}

/// The built-in checks on `outputs` (type name, payload) of an invocation serving `phase`.
pub(crate) fn builtin(phase: Option<&str>, outputs: &[(&str, &Value)]) -> Vec<String> {
    let mut reasons = Vec::new();
    let spawns_next = outputs
        .iter()
        .any(|(t, p)| *t == WORK_DISCOVERY && p.get("phase").and_then(Value::as_str) != phase);
    for (i, (type_name, payload)) in outputs.iter().enumerate() {
        match *type_name {
            ANALYSIS_RESULT => {
                let plan = payload.get("plan").and_then(Value::as_str).unwrap_or("");
                if plan.trim().is_empty() {
                    reasons.push(format!("output #{i} (AnalysisResult) has an empty plan"));
                }
                let approved = payload.get("approved").and_then(Value::as_bool) == Some(true);
                let nested = payload
                    .get("next_phase_work")
                    .and_then(Value::as_array)
                    .is_some_and(|a| !a.is_empty());
                if approved && !nested && !spawns_next {
                    reasons.push(format!(
                        "output #{i} (AnalysisResult) is approved but spawns no next-phase work: list it in next_phase_work or publish a WorkDiscovery for another phase"
                    ));
                }
            }
            IMPLEMENTATION => {
                let files = payload
                    .get("code_files")
                    .and_then(Value::as_array)
                    .is_some_and(|a| !a.is_empty());
                if !files {
                    reasons.push(format!("output #{i} (Implementation) lists no code_files"));
                }
            }
            _ => {}
        }
    }
    reasons
}

/// Whether `validator` wants to see outputs of these types.
pub(crate) fn applies(validator: &LoadedPlugin, types: &[&str]) -> bool {
    let subs = &validator.info.subscriptions;
    subs.is_empty() || subs.iter().any(|s| types.contains(&s.type_name.as_str()))
}

/// Run the validator plugins in manifest order; the first rejection or failure stops.
pub(crate) async fn run_plugins(
    validators: &[crate::plugin::Validator],
    board: impl Fn(&LoadedPlugin) -> Option<BoardAccess>,
    invocation: &wit::Invocation,
    outputs: &[wit::Output],
) -> Result<(), Refusal> {
    for v in validators {
        // A validator is handed only what its own visibility allows — of the inputs, the
        // context and the outputs — with its own manifest config; with none of the
        // outputs to see, it has nothing to judge.
        let viewer = v.viewer();
        let seen: Vec<wit::Output> = outputs
            .iter()
            .filter(|o| wit_visible(o.visibility.as_ref(), &invocation.agent, &viewer))
            .cloned()
            .collect();
        let types: Vec<&str> = seen.iter().map(|o| o.type_name.as_str()).collect();
        if seen.is_empty() || !applies(v, &types) {
            continue;
        }
        let mut call = invocation_for(invocation, &viewer);
        call.config.clone_from(&v.config_json);
        match v.validate(&call, &seen, board(v)).await {
            Ok(verdict) if verdict.accepted => {}
            Ok(verdict) => {
                let reasons = if verdict.reasons.is_empty() {
                    vec!["rejected without a reason".to_string()]
                } else {
                    verdict.reasons
                };
                return Err(Refusal::Rejected {
                    by: v.name.to_string(),
                    reasons,
                });
            }
            Err(error) => {
                return Err(Refusal::ValidatorFailed {
                    by: v.name.to_string(),
                    error,
                });
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn an_approved_analysis_must_spawn_next_phase_work() {
        let bare = json!({"plan": "p", "approved": true});
        assert_eq!(
            builtin(Some("analysis"), &[("AnalysisResult", &bare)]).len(),
            1
        );
        let nested = json!({"plan": "p", "approved": true, "next_phase_work": [{}]});
        assert!(builtin(Some("analysis"), &[("AnalysisResult", &nested)]).is_empty());
        let next = json!({"phase": "implementation"});
        assert!(
            builtin(
                Some("analysis"),
                &[("AnalysisResult", &bare), ("WorkDiscovery", &next)]
            )
            .is_empty()
        );
        let same = json!({"phase": "analysis"});
        assert_eq!(
            builtin(
                Some("analysis"),
                &[("AnalysisResult", &bare), ("WorkDiscovery", &same)]
            )
            .len(),
            1,
            "work for the same phase is not next-phase work"
        );
        let unapproved = json!({"plan": "p", "approved": false});
        assert!(builtin(Some("analysis"), &[("AnalysisResult", &unapproved)]).is_empty());
    }

    #[test]
    fn an_analysis_needs_a_plan_and_an_implementation_needs_files() {
        let empty_plan = json!({"plan": " ", "approved": false});
        assert_eq!(builtin(None, &[("AnalysisResult", &empty_plan)]).len(), 1);
        let no_files = json!({"code_files": [], "summary": "s"});
        let reasons = builtin(None, &[("Implementation", &no_files)]);
        assert_eq!(reasons, ["output #0 (Implementation) lists no code_files"]);
    }
}
