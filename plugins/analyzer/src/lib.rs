//! Example analysis agent for the auth-system scenario.
//!
//! Plain rule-based code, no language model: it plays the authentication-system scenario
//! deterministically. For a WorkDiscovery in the `analysis` phase it picks the first
//! configured rule whose keyword occurs in the description and splits the work into that
//! rule's components; it publishes one AnalysisResult (the plan) and fans out one
//! `implementation` WorkDiscovery per component. A component may carry a `key` and name
//! the keys of components that must be done first (`after`): the host holds that work
//! blocked until they are.

use murmur_guest::prelude::*;
use serde::Deserialize;

#[derive(Deserialize, Default)]
struct Config {
    #[serde(default)]
    rules: Vec<Rule>,
}

#[derive(Deserialize)]
struct Rule {
    /// Case-insensitive keyword looked for in the work description.
    when: String,
    /// The implementation work items this kind of work splits into.
    components: Vec<Component>,
}

/// A component: its description, or a table with a key and blockers.
#[derive(Deserialize, Clone)]
#[serde(untagged)]
enum Component {
    Plain(String),
    Keyed {
        name: String,
        #[serde(default)]
        key: Option<String>,
        #[serde(default)]
        after: Vec<String>,
    },
}

impl Component {
    fn name(&self) -> &str {
        match self {
            Component::Plain(n) | Component::Keyed { name: n, .. } => n,
        }
    }
}

struct Analyzer;

impl Agent for Analyzer {
    fn describe() -> PluginInfo {
        PluginInfo::agent("analyzer", env!("CARGO_PKG_VERSION"))
            .description("Analyses work discoveries and plans implementation work")
            .subscribe(Subscription::to(types::WORK_DISCOVERY).filter("payload.phase == 'analysis'"))
            .publishes([types::ANALYSIS_RESULT, types::WORK_DISCOVERY])
    }

    fn handle(inv: Invocation) -> Result<Vec<Output>, PluginError> {
        let config: Config = inv.config()?;
        let input = inv.first_input()?;
        let work: WorkDiscovery = input.parse()?;
        let lower = work.description.to_lowercase();
        let components: Vec<Component> = config
            .rules
            .iter()
            .find(|r| lower.contains(&r.when.to_lowercase()))
            .map(|r| r.components.clone())
            .unwrap_or_else(|| vec![Component::Plain(work.description.clone())]);

        let next: Vec<WorkDiscovery> = components
            .iter()
            .map(|c| {
                let (key, after) = match c {
                    Component::Plain(_) => (None, Vec::new()),
                    Component::Keyed { key, after, .. } => (key.clone(), after.clone()),
                };
                WorkDiscovery {
                    description: c.name().to_string(),
                    phase: "implementation".into(),
                    priority: work.priority,
                    done_definition: format!("{}: code and tests written", c.name()),
                    discovered_by: inv.agent.clone(),
                    parent_work_id: Some(input.id.clone()),
                    key,
                    blocking_work_ids: after,
                    ..Default::default()
                }
            })
            .collect();
        let names: Vec<&str> = components.iter().map(Component::name).collect();
        let plan = format!(
            "Plan for '{}': {} component(s): {}",
            work.description,
            components.len(),
            names.join("; ")
        );
        log(Level::Info, &plan);
        let result = AnalysisResult { plan, approved: true, next_phase_work: next.clone(), ..Default::default() };

        let mut outputs = vec![Output::json(types::ANALYSIS_RESULT, &result)?];
        for w in &next {
            outputs.push(Output::json(types::WORK_DISCOVERY, w)?);
        }
        Ok(outputs)
    }
}

murmur_guest::export_agent!(Analyzer);
