//! Example implementation agent for the auth-system scenario.
//!
//! Plain rule-based code: for a WorkDiscovery in the `implementation` phase it "writes"
//! a source file and a test file named after the component (names only; nothing touches a
//! disk), publishes an Implementation, and, as the implementation phase's done-definition
//! asks, a `validation` WorkDiscovery that carries what to validate.

use murmur_guest::prelude::*;
use serde_json::json;

struct Implementer;

fn slug(text: &str) -> String {
    let mut s = String::new();
    for word in text.split(|c: char| !c.is_ascii_alphanumeric()).filter(|w| !w.is_empty()) {
        if !s.is_empty() {
            s.push('_');
        }
        s.push_str(&word.to_ascii_lowercase());
    }
    s
}

impl Agent for Implementer {
    fn describe() -> PluginInfo {
        PluginInfo::agent("implementer", env!("CARGO_PKG_VERSION"))
            .description("Implements planned components")
            .subscribe(Subscription::to(types::WORK_DISCOVERY).filter("payload.phase == 'implementation'"))
            .publishes([types::IMPLEMENTATION, types::WORK_DISCOVERY])
    }

    fn handle(inv: Invocation) -> Result<Vec<Output>, PluginError> {
        let input = inv.first_input()?;
        let work: WorkDiscovery = input.parse()?;
        let name = slug(&work.description);
        if name.is_empty() {
            return Err(PluginError::invalid_input("work description has no words to name files after"));
        }
        let implementation = Implementation {
            code_files: vec![format!("src/{name}.rs")],
            test_files: vec![format!("tests/{name}_test.rs")],
            summary: format!("Implemented {}", work.description),
            ..Default::default()
        };
        let mut validate = WorkDiscovery {
            description: format!("Validate: {}", work.description),
            phase: "validation".into(),
            priority: work.priority,
            done_definition: "Tests pass and the implementation meets its done-definition".into(),
            discovered_by: inv.agent.clone(),
            parent_work_id: Some(input.id.clone()),
            ..Default::default()
        };
        validate.metadata.insert(
            "implementation".into(),
            json!({
                "code_files": implementation.code_files,
                "test_files": implementation.test_files,
                "summary": implementation.summary,
            }),
        );
        Ok(vec![
            Output::json(types::IMPLEMENTATION, &implementation)?,
            Output::json(types::WORK_DISCOVERY, &validate)?,
        ])
    }
}

murmur_guest::export_agent!(Implementer);
