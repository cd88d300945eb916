//! Outgoing HTTP for plugins: the `http` grant.
//!
//! A plugin reaches the world through wasi:http's outgoing handler, the component model's
//! standard interface (JavaScript's `fetch` under componentize-js, Python's HTTP under
//! componentize-py and Rust wasi:http clients use it unchanged), and the host decides
//! every request. The manifest lists where a plugin may go:
//!
//! ```toml
//! [[plugin]]
//! http = ["http://127.0.0.1:*", { url = "https://api.github.com", headers = { Authorization = "Bearer ${env:GITHUB_TOKEN}" } }]
//! ```
//!
//! - [`rule`]: the allow-list (scheme, host and port patterns) and the addresses a name
//!   may resolve to. Anything else is refused, and the call faults `denied`: an unlisted
//!   host, a redirect to one (redirects are the plugin's to follow, each a request of its
//!   own), a name that resolves to a loopback or private address the list does not name.
//! - [`secret`]: headers the host adds per destination, from the environment; the plugin
//!   never sees them, and logs, the store and recordings redact them.
//! - [`call`]: one invocation's requests, within its limits (requests per invocation,
//!   bytes each way, a timeout inside the invocation's deadline, concurrent requests per
//!   plugin).
//! - [`tape`]: exchanges recorded and replayed (`--http-record`, `--http-replay`).

pub mod call;
pub mod rule;
pub mod secret;
pub mod tape;

pub use call::HttpCall;
pub use rule::Rule;
pub use secret::Template;
pub use tape::{Tape, TapeError};

use std::collections::BTreeMap;
use std::sync::Arc;

/// One allow-list entry of a manifest: a destination, and the headers the host adds on
/// requests to it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Destination {
    /// Where.
    pub rule: Rule,
    /// Headers added on the way out: name and value template.
    pub headers: Vec<(String, Template)>,
    /// A signature the host adds: HMAC-SHA256 of the request body under a secret key.
    pub sign: Option<Signing>,
}

/// `sign = { header = "X-Murmur-Signature", secret = "${env:NAME}" }`: the host adds
/// `header: sha256=HEX`, the HMAC-SHA256 of the body under the secret (the scheme GitHub's
/// and many chat tools' webhooks use), so the plugin signs without holding the key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Signing {
    /// The header the signature goes in.
    pub header: String,
    /// The key, from the environment.
    pub secret: Template,
}

/// A plugin's `http` list, as the manifest has it (secrets not yet read).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct HttpSpec {
    /// The destinations, in manifest order (the first that allows a request adds its
    /// headers).
    pub destinations: Vec<Destination>,
}

/// The limits on one plugin's requests (its `[plugin.limits]` `http_*` keys).
#[derive(Debug, Clone, Copy)]
pub struct HttpLimits {
    /// Requests one invocation may make.
    pub requests: u32,
    /// Request body bytes one invocation may send, all requests together.
    pub request_bytes: usize,
    /// Response body bytes one invocation may receive, all requests together.
    pub response_bytes: usize,
    /// Longest a request may take, from sending to the last byte of its answer (and never
    /// past the invocation's deadline).
    pub timeout: std::time::Duration,
    /// Requests of this plugin in flight at once, across its invocations.
    pub concurrency: usize,
}

/// Why a plugin's grant cannot be made.
#[derive(Debug, thiserror::Error)]
pub enum GrantError {
    /// A header reads an environment variable that is not set.
    #[error(
        "plugin '{plugin}': the http header {header} for {rule} reads ${{env:{variable}}}, which is not set in this process's environment (`murmur serve` and `murmur worker` hand plugins only the variables their --secret-env names)"
    )]
    Unset {
        /// The plugin.
        plugin: String,
        /// The destination.
        rule: String,
        /// The header.
        header: String,
        /// The variable.
        variable: String,
    },
    /// A header's value is not one HTTP allows.
    #[error(
        "plugin '{plugin}': the http header {header} for {rule} is not a valid header: {message}"
    )]
    Header {
        /// The plugin.
        plugin: String,
        /// The destination.
        rule: String,
        /// The header.
        header: String,
        /// What is wrong (never the value).
        message: String,
    },
    /// The HTTP client could not be built.
    #[error("plugin '{plugin}': cannot set up its HTTP client: {message}")]
    Client {
        /// The plugin.
        plugin: String,
        /// The client's error.
        message: String,
    },
}

/// One destination of a grant, its secrets read.
pub(crate) struct Allowed {
    pub(crate) rule: Rule,
    pub(crate) headers: http::HeaderMap,
    /// The signature header and its key.
    pub(crate) sign: Option<(http::HeaderName, Vec<u8>)>,
}

/// A plugin's grant, ready to serve requests: its destinations with their headers read
/// from the environment, its limits, its client and the run's recording.
pub struct HttpGrant {
    pub(crate) plugin: Arc<str>,
    pub(crate) destinations: Vec<Allowed>,
    /// Every secret value its headers hold, for redaction.
    pub(crate) secrets: Vec<String>,
    pub(crate) limits: HttpLimits,
    pub(crate) slots: Arc<tokio::sync::Semaphore>,
    pub(crate) client: reqwest::Client,
    pub(crate) tape: Arc<Tape>,
}

impl std::fmt::Debug for HttpGrant {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpGrant")
            .field("plugin", &self.plugin)
            .field("destinations", &self.listed())
            .field("limits", &self.limits)
            .finish_non_exhaustive()
    }
}

impl HttpGrant {
    /// The grant of `plugin` for `spec`, its headers' variables taken from `env`.
    pub fn new(
        plugin: &str,
        spec: &HttpSpec,
        env: &BTreeMap<String, String>,
        limits: HttpLimits,
        tape: Arc<Tape>,
    ) -> Result<HttpGrant, GrantError> {
        let mut destinations = Vec::new();
        let mut secrets = Vec::new();
        for d in &spec.destinations {
            let error = |header: &str, message: String| GrantError::Header {
                plugin: plugin.to_string(),
                rule: d.rule.to_string(),
                header: header.to_string(),
                message,
            };
            // A header's name and its template's value; the secrets in it go to `secrets`.
            let mut resolve = |header: &str, template: &Template| {
                let (value, found) =
                    template
                        .resolve(env)
                        .map_err(|variable| GrantError::Unset {
                            plugin: plugin.to_string(),
                            rule: d.rule.to_string(),
                            header: header.to_string(),
                            variable,
                        })?;
                let name = http::HeaderName::from_bytes(header.as_bytes())
                    .map_err(|e| error(header, format!("the name: {e}")))?;
                let sensitive = !found.is_empty();
                secrets.extend(found);
                Ok::<_, GrantError>((name, value, sensitive))
            };
            let mut headers = http::HeaderMap::new();
            for (header, template) in &d.headers {
                let (name, value, sensitive) = resolve(header, template)?;
                let mut value = http::HeaderValue::from_str(&value).map_err(|_| {
                    error(
                        header,
                        "its value holds characters a header cannot carry".into(),
                    )
                })?;
                value.set_sensitive(sensitive);
                headers.insert(name, value);
            }
            let sign = match &d.sign {
                Some(signing) => {
                    let (name, key, _) = resolve(&signing.header, &signing.secret)?;
                    Some((name, key.into_bytes()))
                }
                None => None,
            };
            destinations.push(Allowed {
                rule: d.rule.clone(),
                headers,
                sign,
            });
        }
        // Longest first: a secret that contains another is redacted whole.
        secrets.sort_by_key(|s| std::cmp::Reverse(s.len()));
        secrets.dedup();
        let client = call::client(rule::Private::of(destinations.iter().map(|d| &d.rule)))
            .map_err(|e| GrantError::Client {
                plugin: plugin.to_string(),
                message: e.to_string(),
            })?;
        Ok(HttpGrant {
            plugin: plugin.into(),
            destinations,
            secrets,
            limits,
            slots: Arc::new(tokio::sync::Semaphore::new(limits.concurrency.max(1))),
            client,
            tape,
        })
    }

    /// The destinations, for messages: `https://api.github.com, http://127.0.0.1:*`.
    pub fn listed(&self) -> String {
        let rules: Vec<String> = self
            .destinations
            .iter()
            .map(|d| d.rule.to_string())
            .collect();
        rules.join(", ")
    }

    /// `text` with this grant's secrets redacted.
    pub fn redact(&self, text: &str) -> String {
        secret::redact(text, &self.secrets)
    }
}
