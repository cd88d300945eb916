//! Example validator (world `validator`): a code review gate for the auth-system scenario.
//!
//! It sees every invocation's Implementation outputs before they are published and
//! rejects an implementation that lists no test files, or whose summary admits to
//! unfinished work (`TODO`, `draft`, words configurable as `config.forbidden`). A
//! rejection carries the reasons; the host hands them to the agent's retry.

use murmur_guest::prelude::*;
use serde::Deserialize;

#[derive(Deserialize)]
struct Config {
    #[serde(default = "default_forbidden")]
    forbidden: Vec<String>,
}

fn default_forbidden() -> Vec<String> {
    vec!["TODO".into()]
}

struct Review;

impl Validator for Review {
    fn describe() -> PluginInfo {
        PluginInfo::validator("review", env!("CARGO_PKG_VERSION"))
            .description("Rejects implementations without tests or with unfinished work")
            // A validator's subscriptions name the output types it reviews.
            .subscribe(Subscription::to(types::IMPLEMENTATION))
    }

    fn validate(inv: Invocation, outputs: Vec<Output>) -> Result<Verdict, PluginError> {
        let config: Config = inv.config()?;
        let mut reasons = Vec::new();
        for (i, out) in outputs.iter().enumerate().filter(|(_, o)| o.type_name == types::IMPLEMENTATION) {
            let imp: Implementation = serde_json::from_str(&out.payload)
                .map_err(|e| PluginError::invalid_input(format!("output #{i} is not an Implementation: {e}")))?;
            if imp.test_files.is_empty() {
                reasons.push(format!("output #{i}: Implementation lists no test_files; untested code is not accepted"));
            }
            let summary = imp.summary.to_lowercase();
            for word in &config.forbidden {
                if summary.contains(&word.to_lowercase()) {
                    reasons.push(format!("output #{i}: summary mentions '{word}': unfinished work"));
                }
            }
        }
        if !reasons.is_empty() {
            log(Level::Info, &format!("rejecting {}'s outputs: {}", inv.agent, reasons.join("; ")));
        }
        Ok(Verdict { accepted: reasons.is_empty(), reasons })
    }
}

murmur_guest::export_validator!(Review);
