//! `murmur status`: where a run stands.

use super::report::print_summary_to;
use super::store::{Access, RunTarget, Target};
use anyhow::{Context, Result};
use murmur::artifact::now_ms;
use murmur::summary::RunSummary;

/// Where a run stands: per phase, per agent, open and blocked work.
#[derive(Debug, clap::Args)]
pub(crate) struct StatusCommand {
    #[command(flatten)]
    run: RunTarget,
    /// Print the summary object as JSON instead.
    #[arg(long)]
    json: bool,
}

impl StatusCommand {
    pub(crate) fn execute(self) -> Result<i32> {
        let (store, record) = match self.run.open(Access::Read)? {
            Target::Store(store, record) => (store, record),
            Target::Server(client, id) => {
                let value = client.get(&format!("/v1/workflows/{id}"))?;
                if self.json {
                    println!("{}", serde_json::to_string_pretty(&value)?);
                    return Ok(0);
                }
                let summary: RunSummary = serde_json::from_value(value)
                    .context("the server's summary is not one this build reads")?;
                println!("run {id} of '{}' ({})", summary.workflow, summary.status);
                print_summary_to(&summary, &mut std::io::stdout());
                print_agents(&summary);
                return Ok(0);
            }
        };
        let summary = RunSummary::of_record(store.as_ref(), &record)?;
        if self.json {
            println!("{}", serde_json::to_string_pretty(&summary)?);
            return Ok(0);
        }
        println!(
            "run {} of '{}' ({}), started {} ms ago",
            record.workflow_id,
            record.name,
            record.status,
            now_ms().saturating_sub(record.started_at_ms)
        );
        print_summary_to(&summary, &mut std::io::stdout());
        print_agents(&summary);
        let queued = store.open_invocations(&record.workflow_id)?.len();
        println!("  invocations queued or running: {queued}");
        let mut open = Vec::new();
        store.notable_work(&record.workflow_id, &mut |work| {
            for w in work.iter().filter(|w| !w.status().is_final()) {
                let waiting = if w.blocked_by().is_empty() {
                    String::new()
                } else {
                    let ids: Vec<String> = w.blocked_by().iter().map(|b| b.to_string()).collect();
                    format!(" waiting for {}", ids.join(", "))
                };
                open.push(format!(
                    "  open: [{}] {} ({}){waiting}",
                    w.phase,
                    w.description,
                    w.status()
                ));
            }
        })?;
        for line in open {
            println!("{line}");
        }
        Ok(0)
    }
}

fn print_agents(summary: &RunSummary) {
    for (agent, a) in &summary.agents {
        let time = match &a.time {
            Some(t) => format!(
                "  p50 {:.1} ms  p95 {:.1} ms  max {:.1} ms  model {:.0} ms",
                t.p50_ms, t.p95_ms, t.max_ms, t.model_ms
            ),
            None => String::new(),
        };
        println!(
            "  agent {agent:<16} invocations {:>5}  failed {:>3}{time}",
            a.invocations, a.failed
        );
    }
}
