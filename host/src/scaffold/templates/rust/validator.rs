//! {name}: a validator. Rejects outputs whose payload mentions TODO.

use murmur_guest::prelude::*;

struct Plugin;

impl Validator for Plugin {
    fn describe() -> PluginInfo {
        PluginInfo::validator("{name}", env!("CARGO_PKG_VERSION")).description("rejects unfinished work")
    }

    fn validate(_inv: Invocation, outputs: Vec<Output>) -> Result<Verdict, PluginError> {
        let reasons: Vec<String> = outputs
            .iter()
            .enumerate()
            .filter(|(_, o)| o.payload.contains("TODO"))
            .map(|(i, o)| format!("output #{i} ({}) mentions TODO", o.type_name))
            .collect();
        Ok(Verdict { accepted: reasons.is_empty(), reasons })
    }
}

murmur_guest::export_validator!(Plugin);
