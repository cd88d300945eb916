//! Example implementation agent for the auth-system scenario.
//!
//! Plain rule-based code: for a WorkDiscovery in the `implementation` phase it "writes"
//! a source file and a test file named after the component (names only; nothing touches a
//! disk), publishes an Implementation, and, as the implementation phase's done-definition
//! asks, a `validation` WorkDiscovery that carries what to validate.
//!
//! Two configurable behaviours replay what real agents do:
//! - `drafts`: for work whose description contains one of these keywords, the first
//!   attempt is a draft without tests; when a validator refuses it, the retry receives
//!   the reasons (the host's `PreviousAttempt` context) and adds the tests. Like a model
//!   that reads its instructions, it honours a lesson from an earlier run: when the
//!   phase's instructions carry one that mentions tests, the first attempt has them;
//! - `unsupported`: work containing one of these keywords fails for good with the given
//!   error (the host then spawns recovery work).

use murmur_guest::prelude::*;
use serde::Deserialize;
use serde_json::json;

#[derive(Deserialize, Default)]
struct Config {
    #[serde(default)]
    drafts: Vec<String>,
    #[serde(default)]
    unsupported: Vec<Unsupported>,
}

#[derive(Deserialize)]
struct Unsupported {
    when: String,
    error: String,
}

fn mentions(text: &str, keyword: &str) -> bool {
    text.to_lowercase().contains(&keyword.to_lowercase())
}

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
        let config: Config = inv.config()?;
        let input = inv.first_input()?;
        let work: WorkDiscovery = input.parse()?;
        if let Some(u) = config.unsupported.iter().find(|u| mentions(&work.description, &u.when)) {
            return Err(PluginError::failed(&u.error));
        }
        let name = slug(&work.description);
        if name.is_empty() {
            return Err(PluginError::invalid_input("work description has no words to name files after"));
        }
        let refused = inv.previous_refusal();
        let warned = inv.lessons().iter().any(|l| mentions(l, "test"));
        if warned {
            log(Level::Info, "a lesson from an earlier run asks for tests up front");
        }
        let draft =
            refused.is_empty() && !warned && config.drafts.iter().any(|d| mentions(&work.description, d));
        if !refused.is_empty() {
            log(Level::Info, &format!("revising after refusal: {}", refused.join("; ")));
        }
        log(Level::Debug, &format!("{} context artifact(s)", inv.context.len()));
        let implementation = Implementation {
            code_files: vec![format!("src/{name}.rs")],
            test_files: if draft { Vec::new() } else { vec![format!("tests/{name}_test.rs")] },
            summary: if draft {
                format!("Draft of {} (tests to follow)", work.description)
            } else {
                format!("Implemented {}", work.description)
            },
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
