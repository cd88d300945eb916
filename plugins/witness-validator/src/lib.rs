//! A test validator that reports what it was handed: it rejects every call, its one
//! reason listing the producers and types of the invocation's inputs and context and of
//! the outputs it judges. The host's tests use it to show that a validator is handed only
//! what its own visibility allows. Never use it in a real workflow.

use murmur_guest::prelude::*;

struct Witness;

fn list(items: impl Iterator<Item = String>) -> String {
    let mut v: Vec<String> = items.collect();
    v.sort();
    v.join(",")
}

impl Validator for Witness {
    fn describe() -> PluginInfo {
        PluginInfo::validator("witness-validator", env!("CARGO_PKG_VERSION"))
            .description("Rejects every call, saying what it was handed")
    }

    fn validate(inv: Invocation, outputs: Vec<Output>) -> Result<Verdict, PluginError> {
        let seen = format!(
            "inputs [{}] context [{}] outputs [{}]",
            list(inv.inputs.iter().map(|a| format!("{}:{}", a.producer, a.type_name))),
            list(inv.context.iter().map(|a| format!("{}:{}", a.producer, a.type_name))),
            list(outputs.iter().map(|o| o.type_name.clone())),
        );
        Ok(Verdict { accepted: false, reasons: vec![seen] })
    }
}

murmur_guest::export_validator!(Witness);
