//! `murmur approve` and `murmur reject`: a person's decision on work awaiting approval.

use super::store::{Access, RunTarget, Target};
use anyhow::{Context, Result};
use murmur::artifact::ArtifactId;

/// Approve work awaiting approval: on a server it goes on at once; in a database,
/// `murmur resume` goes on with it.
#[derive(Debug, clap::Args)]
pub(crate) struct ApproveCommand {
    #[command(flatten)]
    run: RunTarget,
    /// The work item (its WorkDiscovery's id).
    work_id: String,
}

/// Reject work awaiting approval: it fails with the reason, and recovery follows as for
/// any failure.
#[derive(Debug, clap::Args)]
pub(crate) struct RejectCommand {
    #[command(flatten)]
    run: RunTarget,
    /// The work item (its WorkDiscovery's id).
    work_id: String,
    /// Why.
    #[arg(long)]
    reason: String,
}

impl ApproveCommand {
    pub(crate) fn execute(self) -> Result<i32> {
        decide(&self.run, &self.work_id, true, None)
    }
}

impl RejectCommand {
    pub(crate) fn execute(self) -> Result<i32> {
        decide(&self.run, &self.work_id, false, Some(self.reason))
    }
}

fn decide(run: &RunTarget, work: &str, approve: bool, reason: Option<String>) -> Result<i32> {
    let verb = if approve { "approve" } else { "reject" };
    match run.open(Access::Write)? {
        Target::Server(client, id) => {
            let body = match &reason {
                Some(r) => serde_json::json!({ "reason": r }),
                None => serde_json::json!({}),
            };
            let answer = client.send(
                reqwest::Method::POST,
                &format!("/v1/workflows/{id}/work/{work}/{verb}"),
                Some(&body),
            )?;
            let value: serde_json::Value = serde_json::from_str(&answer)?;
            println!(
                "work {work}: {}",
                value["status"].as_str().unwrap_or("decided")
            );
        }
        Target::Store(store, record) => {
            let parsed: ArtifactId = work
                .parse()
                .with_context(|| format!("'{work}' is not a work item id"))?;
            murmur::scheduler::record_decision(
                store.as_ref(),
                &record.workflow_id,
                &parsed,
                approve,
                reason,
            )
            .with_context(|| format!("run {}", record.workflow_id))?;
            store.close()?;
            println!(
                "work {work}: {}d; `murmur resume` goes on with run {}",
                verb, record.workflow_id
            );
        }
    }
    Ok(0)
}
