//! `murmur inspect`: what a plugin component is.

use anyhow::Result;
use std::path::PathBuf;

/// What a plugin component is: world, API version, imports (the grants it needs),
/// and what its describe() says.
#[derive(Debug, clap::Args)]
pub(crate) struct InspectCommand {
    /// The component (`.wasm`).
    plugin: PathBuf,
    /// Print the report as JSON.
    #[arg(long)]
    json: bool,
}

impl InspectCommand {
    pub(crate) fn execute(self) -> Result<i32> {
        let report = murmur::inspect::inspect(&self.plugin, super::settings::cache())?;
        if self.json {
            println!("{}", serde_json::to_string_pretty(&report)?);
        } else {
            print!("{}", report.text());
        }
        Ok(0)
    }
}
