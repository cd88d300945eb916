//! `webhook`: POSTs each artifact it is handed, as JSON, to a URL: chat and automation
//! hooks for a run.
//!
//! An agent (world `http-agent`), usually an observer (`observer = true`): which
//! artifacts it sends is its subscriptions' business (`[[plugin.subscribe]]`: a type, a
//! CEL filter, producers, tags; by default every `WorkDiscovery`). The body is
//!
//! ```json
//! {"event": "artifact", "workflow_id": "…", "artifact": {"id": "…", "type": "…",
//!  "producer": "…", "parent_ids": […], "tags": […], "payload": {…}}}
//! ```
//!
//! with `X-Murmur-Delivery` set to the artifact's id (a receiver drops a delivery it has
//! seen: a retried invocation may send one twice). The signature is the host's: list the
//! URL in the manifest with `sign = { header = "X-Murmur-Signature", secret =
//! "${env:NAME}" }` and the host adds `sha256=HEX`, the HMAC-SHA256 of the body, on the way
//! out; the plugin never holds the key.
//!
//! Config: `url` (required), `event` (the `event` field, default `artifact`). A 2xx answer
//! is success; 429 and 5xx are retried later; any other status fails the invocation.

use murmur_guest::http::Request;
use murmur_guest::prelude::*;
use serde::Deserialize;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Config {
    url: String,
    #[serde(default = "artifact")]
    event: String,
}

fn artifact() -> String {
    "artifact".into()
}

struct Webhook;

impl Agent for Webhook {
    fn describe() -> PluginInfo {
        PluginInfo::agent("webhook", env!("CARGO_PKG_VERSION"))
            .description("POSTs each artifact it is handed, as JSON, to a URL (signed by the host)")
            .subscribe(Subscription::to("WorkDiscovery"))
    }

    fn handle(inv: Invocation) -> Result<Vec<Output>, PluginError> {
        let config: Config = inv.config()?;
        for a in &inv.inputs {
            let payload: serde_json::Value = a.parse()?;
            let body = serde_json::json!({
                "event": config.event,
                "workflow_id": inv.workflow_id,
                "artifact": {
                    "id": a.id,
                    "type": a.type_name,
                    "producer": a.producer,
                    "parent_ids": a.parent_ids,
                    "tags": a.tags,
                    "payload": payload,
                },
            });
            let answer = Request::post(&config.url)
                .header("x-murmur-delivery", &a.id)
                .header("user-agent", concat!("murmur-webhook/", env!("CARGO_PKG_VERSION")))
                .json(&body)?
                .send()?;
            match answer.status {
                200..=299 => {}
                429 | 500..=599 => {
                    return Err(PluginError::retryable(format!("{} answered {}", config.url, answer.status)))
                }
                status => {
                    let text: String = answer.text().chars().take(300).collect();
                    return Err(PluginError::failed(format!("{} answered {status}: {text}", config.url)));
                }
            }
        }
        Ok(Vec::new())
    }
}

murmur_guest::export_agent!(Webhook);
