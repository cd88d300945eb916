//! `murmur graph`: a run's cascade as Mermaid, DOT or JSON.

use super::store::{Access, RunTarget, Target};
use anyhow::Result;
use clap::ValueEnum;
use murmur::graph::Graph;

/// Print a run's cascade: artifacts and their causality, grouped by phase.
#[derive(Debug, clap::Args)]
pub(crate) struct GraphCommand {
    #[command(flatten)]
    run: RunTarget,
    /// Output format.
    #[arg(long, value_enum, default_value = "mermaid")]
    format: GraphFormat,
}

/// `murmur graph` output formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum GraphFormat {
    /// A Mermaid flowchart.
    Mermaid,
    /// Graphviz DOT.
    Dot,
    /// JSON: nodes and edges.
    Json,
}

impl GraphCommand {
    pub(crate) fn execute(self) -> Result<i32> {
        let (store, record) = match self.run.open(Access::Read)? {
            Target::Store(store, record) => (store, record),
            Target::Server(client, id) => {
                let format = self
                    .format
                    .to_possible_value()
                    .map(|v| v.get_name().to_string())
                    .unwrap_or_default();
                let text = client.send(
                    reqwest::Method::GET,
                    &format!("/v1/workflows/{id}/graph?format={format}"),
                    None,
                )?;
                print!("{text}");
                if self.format == GraphFormat::Json {
                    println!();
                }
                return Ok(0);
            }
        };
        let graph = Graph::from_store(store.as_ref(), &record.workflow_id)?;
        match self.format {
            GraphFormat::Mermaid => print!("{}", graph.mermaid()),
            GraphFormat::Dot => print!("{}", graph.dot()),
            GraphFormat::Json => println!("{}", serde_json::to_string_pretty(&graph)?),
        }
        Ok(0)
    }
}
