//! What loading a plugin takes, in plugin/'s own terms. The manifest's `[[plugin]]`
//! table (or a hot-load bundle's, or `murmur inspect`'s reading of a bare component)
//! carries one, so plugin/ depends on no manifest type.

use super::capability::Capability;
use super::world::World;
use serde::Deserialize;
use std::path::PathBuf;

/// A plugin to load.
#[derive(Debug, Clone)]
pub struct PluginSpec {
    /// Unique name; the agent's identity (producer of its outputs).
    pub name: String,
    /// The component file.
    pub path: PathBuf,
    /// Which world it implements.
    pub world: World,
    /// Expected sha256 of the component file, if pinned.
    pub sha256: Option<String>,
    /// Resource limits.
    pub limits: PluginLimits,
    /// The `config` table, as JSON, handed to every invocation.
    pub config: serde_json::Value,
    /// Labels granted (for label visibility).
    pub labels: Vec<String>,
    /// Tenant (for tenant visibility).
    pub tenant: Option<String>,
    /// Host capabilities granted beyond `log` and `context`. A component that imports
    /// an interface not granted here is refused at load.
    pub grants: Vec<Capability>,
    /// Directories a WASI guest may read, as (guest path, host directory); read-only.
    pub read_dirs: Vec<(String, PathBuf)>,
    /// Where it may send HTTP requests (the manifest's `http` list), if anywhere. A
    /// component that imports wasi:http's outgoing handler without one is refused at load.
    pub http: Option<crate::egress::HttpSpec>,
}

/// Per-plugin resource limits. Every key has a documented default.
#[derive(Debug, Clone, Copy, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PluginLimits {
    /// Linear memory an instance may grow to, in MiB. Default 64. Growth beyond it fails,
    /// and an instance that then traps is classified `memory`.
    pub memory_mb: u64,
    /// Wall-clock deadline per invocation, in milliseconds, covering guest code and host
    /// calls alike. Default 10,000. Exceeding it is classified `timeout`.
    pub timeout_ms: u64,
    /// Outputs one invocation may return. Default 256; more is `invalid_output`.
    pub max_outputs: usize,
    /// Bytes of one output payload. Default 1 MiB; more is `invalid_output`.
    pub max_output_bytes: usize,
    /// Payload bytes handed to one call (inputs and context). Default 4 MiB: context is
    /// trimmed to fit; inputs alone beyond it fail the invocation without calling it.
    pub max_input_bytes: usize,
    /// Artifacts one blackboard query returns at most. Default 100.
    pub max_query_results: usize,
    /// Payload bytes one blackboard query returns at most. Default 1 MiB.
    pub max_query_bytes: usize,
    /// Optional fuel per call: a deterministic instruction budget (the same work faults
    /// at the same point on every machine). Running out is classified `timeout`.
    /// Default: none (the wall-clock deadline alone).
    pub fuel: Option<u64>,
    /// Calls one agent instance may serve. Default 0: every call gets a fresh instance,
    /// so nothing one call leaves in the guest's memory reaches the next. N > 0 keeps
    /// healthy instances warm (at most one per concurrent call) and reuses each for up to
    /// N calls of this plugin — never of another plugin, even one built from the same
    /// file. It saves instantiating and resetting memory (about two thirds of a small
    /// agent's cost), for agents that keep no state between calls. An instance that
    /// faults, errs at the host, times out or prints a lot is dropped, not reused.
    /// Agents only; validators, routers and context providers are always fresh.
    pub reuse: u32,
    /// HTTP requests one invocation may make (the `http` grant). Default 64; later ones
    /// fail.
    pub http_requests: u32,
    /// Request body bytes one invocation may send, all its requests together. Default
    /// 1 MiB.
    pub http_request_bytes: usize,
    /// Response body bytes one invocation may receive, all its requests together.
    /// Default 8 MiB.
    pub http_response_bytes: usize,
    /// Longest one request may take, to the last byte of its answer; never past the
    /// invocation's deadline. Default 10,000 ms.
    pub http_timeout_ms: u64,
    /// Requests of this plugin in flight at once, across its invocations. Default 4.
    pub http_concurrency: usize,
}

impl PluginLimits {
    /// The limits on its HTTP requests.
    pub fn http(&self) -> crate::egress::HttpLimits {
        crate::egress::HttpLimits {
            requests: self.http_requests,
            request_bytes: self.http_request_bytes,
            response_bytes: self.http_response_bytes,
            timeout: std::time::Duration::from_millis(self.http_timeout_ms),
            concurrency: self.http_concurrency,
        }
    }
}

impl Default for PluginLimits {
    fn default() -> Self {
        Self {
            memory_mb: 64,
            timeout_ms: 10_000,
            max_outputs: 256,
            max_output_bytes: 1 << 20,
            max_input_bytes: 4 << 20,
            max_query_results: 100,
            max_query_bytes: 1 << 20,
            fuel: None,
            reuse: 0,
            http_requests: 64,
            http_request_bytes: 1 << 20,
            http_response_bytes: 8 << 20,
            http_timeout_ms: 10_000,
            http_concurrency: 4,
        }
    }
}
