//! Test agent (world `http-agent`): sends the requests its config describes and publishes
//! what came back as a `Note`, so the tests can drive the host's `http` grant: its
//! allow-list, redirects, limits and timeouts.
//!
//! Config: `url`, `times` (default 1), `method` (default `GET`), `body_bytes` (a body of
//! that many `x`, default 0). Each request's status, or its error, goes into the Note, in
//! order; a denied request ends the call (the host faults it `denied` anyway).

use murmur_guest::http::{HttpError, Request};
use murmur_guest::prelude::*;
use serde::Deserialize;

#[derive(Deserialize)]
struct Config {
    url: String,
    #[serde(default = "one")]
    times: u32,
    #[serde(default = "get")]
    method: String,
    #[serde(default)]
    body_bytes: usize,
}

fn one() -> u32 {
    1
}
fn get() -> String {
    "GET".into()
}

struct Fetch;

impl Agent for Fetch {
    fn describe() -> PluginInfo {
        PluginInfo::agent("fetch", env!("CARGO_PKG_VERSION")).publishes(["Note"])
    }

    fn handle(inv: Invocation) -> Result<Vec<Output>, PluginError> {
        let config: Config = inv.config()?;
        let mut results = Vec::new();
        let mut bytes = 0usize;
        for _ in 0..config.times {
            let request = Request::new(&config.method, &config.url).body(vec![b'x'; config.body_bytes]);
            match request.send() {
                Ok(answer) => {
                    bytes += answer.body.len();
                    results.push(serde_json::json!({ "status": answer.status, "body": answer.text() }));
                }
                Err(HttpError::Denied) => return Err(HttpError::Denied.into()),
                Err(e) => results.push(serde_json::json!({ "error": e.to_string() })),
            }
        }
        Ok(vec![Output::json("Note", &serde_json::json!({ "results": results, "bytes": bytes }))?])
    }
}

murmur_guest::export_agent!(Fetch);
