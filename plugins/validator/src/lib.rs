//! Example validation agent for the auth-system scenario.
//!
//! Plain rule-based code: for a WorkDiscovery in the `validation` phase it checks that
//! the implementation it carries lists code and test files, publishes a
//! ValidationResult, and — when a configured discovery rule's keyword occurs in the work's
//! description — discovers new work in another phase (the scenario's caching optimisation,
//! sent back to `analysis`), published both inside the result and as its own
//! WorkDiscovery artifact (fan-out).

use murmur_guest::prelude::*;
use serde::Deserialize;

#[derive(Deserialize, Default)]
struct Config {
    #[serde(default)]
    discoveries: Vec<DiscoveryRule>,
}

#[derive(Deserialize)]
struct DiscoveryRule {
    /// Case-insensitive keyword looked for in the work description.
    when: String,
    description: String,
    phase: String,
    #[serde(default)]
    priority: Priority,
}

struct Validator;

impl Agent for Validator {
    fn describe() -> PluginInfo {
        PluginInfo::agent("validator", env!("CARGO_PKG_VERSION"))
            .description("Validates implementations and discovers optimisations")
            .subscribe(Subscription::to(types::WORK_DISCOVERY).filter("payload.phase == 'validation'"))
            .publishes([types::VALIDATION_RESULT, types::WORK_DISCOVERY])
    }

    fn handle(inv: Invocation) -> Result<Vec<Output>, PluginError> {
        let config: Config = inv.config()?;
        let input = inv.first_input()?;
        let work: WorkDiscovery = input.parse()?;

        let mut issues = Vec::new();
        match work.metadata.get("implementation") {
            None => issues.push("no implementation attached to the validation work".to_string()),
            Some(imp) => {
                for key in ["code_files", "test_files"] {
                    let listed = imp.get(key).and_then(|v| v.as_array()).map(|a| !a.is_empty());
                    if listed != Some(true) {
                        issues.push(format!("implementation lists no {key}"));
                    }
                }
            }
        }

        let lower = work.description.to_lowercase();
        let discovered: Vec<WorkDiscovery> = config
            .discoveries
            .iter()
            .filter(|r| lower.contains(&r.when.to_lowercase()))
            .map(|r| WorkDiscovery {
                description: r.description.clone(),
                phase: r.phase.clone(),
                priority: r.priority,
                done_definition: "Analysis complete with implementation plan".into(),
                discovered_by: inv.agent.clone(),
                parent_work_id: Some(input.id.clone()),
                ..Default::default()
            })
            .collect();
        for d in &discovered {
            log(Level::Info, &format!("discovered: {} -> phase {}", d.description, d.phase));
        }

        let result = ValidationResult {
            passed: issues.is_empty(),
            issues,
            optimizations_discovered: discovered.clone(),
            ..Default::default()
        };
        let mut outputs = vec![Output::json(types::VALIDATION_RESULT, &result)?];
        for d in &discovered {
            outputs.push(Output::json(types::WORK_DISCOVERY, d)?);
        }
        Ok(outputs)
    }
}

murmur_guest::export_agent!(Validator);
