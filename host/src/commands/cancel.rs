//! `murmur cancel`: end a run for good.

use super::store::{Access, RunTarget, Target};
use anyhow::{Result, bail};
use murmur::summary::RunStatus;

/// Cancel a run: on a server, a live run stops (what runs finishes) and ends
/// `cancelled`; in a database, a run that is not running ends `cancelled`.
#[derive(Debug, clap::Args)]
pub(crate) struct CancelCommand {
    #[command(flatten)]
    run: RunTarget,
}

impl CancelCommand {
    pub(crate) fn execute(self) -> Result<i32> {
        match self.run.open(Access::Write)? {
            Target::Server(client, id) => {
                let answer = client.send(
                    reqwest::Method::POST,
                    &format!("/v1/workflows/{id}/cancel"),
                    Some(&serde_json::json!({})),
                )?;
                let value: serde_json::Value = serde_json::from_str(&answer)?;
                println!("run {id}: {}", value["status"].as_str().unwrap_or("?"));
            }
            Target::Store(store, mut record) => {
                // The database is claimed: no process is running this run.
                match record.status {
                    RunStatus::Cancelled => {}
                    s if s.resumable() => {
                        record.status = RunStatus::Cancelled;
                        record.finished_at_ms = Some(murmur::artifact::now_ms());
                        store.save_run(&record)?;
                        store.record_events(
                            &record.workflow_id,
                            &[murmur::observe::Event::RunEnded {
                                status: RunStatus::Cancelled,
                            }],
                        )?;
                        store.close()?;
                    }
                    s => bail!(
                        "run {} has ended ({s}); there is nothing to cancel",
                        record.workflow_id
                    ),
                }
                println!("run {}: cancelled", record.workflow_id);
            }
        }
        Ok(0)
    }
}
