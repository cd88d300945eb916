//! One invocation's outgoing requests: wasi:http's `send_request` hook.
//!
//! wasmtime's wasi:http implementation builds the guest's request and hands it here; the
//! host checks it against the grant before anything leaves the machine, adds the
//! destination's secret headers, sends it with the plugin's own client (its resolver
//! refuses private addresses the list does not name, and it follows no redirect), reads
//! the whole answer within the byte limit, redacts secrets from it, records it, and
//! hands it back. Requests and answers are whole in memory: they are bounded by the
//! limits, and a recording needs them whole anyway.

use super::HttpGrant;
use super::rule::{Private, Scheme};
use super::secret;
use super::tape::{self, Exchange};
use bytes::Bytes;
use http_body_util::BodyExt;
use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;
use wasmtime_wasi_http::{Error, RequestOptions, WasiBody, WasiHttpHooks};

/// What the guest's request future resolves to.
type Sent = Box<
    dyn Future<
            Output = Result<
                (
                    http::Response<WasiBody>,
                    Box<dyn Future<Output = Result<(), Error>> + Send>,
                ),
                Error,
            >,
        > + Send,
>;

/// One invocation's HTTP state: the grant (if any), what it has used of its limits, and
/// a reach beyond the grant (which faults the call `denied`). Made for every call, so it
/// allocates nothing until the call sends its first request.
pub struct HttpCall {
    grant: Option<Arc<HttpGrant>>,
    deadline: Instant,
    requests: u32,
    /// A request refused before it left (no grant, an unlisted destination).
    denied: Option<String>,
    /// What the call's requests in flight share, from its first request on.
    shared: Option<Arc<Shared>>,
}

/// The bytes a call's requests sent and received, and a refusal met on the way (a name
/// resolved to an address the list does not name).
#[derive(Default)]
struct Shared {
    sent: AtomicUsize,
    received: AtomicUsize,
    violation: Mutex<Option<String>>,
}

impl HttpCall {
    /// The state of a call under `grant`, ending at `deadline`.
    pub fn new(grant: Option<Arc<HttpGrant>>, deadline: Instant) -> HttpCall {
        HttpCall {
            grant,
            deadline,
            requests: 0,
            denied: None,
            shared: None,
        }
    }

    /// The reach beyond the grant this call made, if any (taken).
    pub fn take_violation(&mut self) -> Option<String> {
        self.denied.take().or_else(|| {
            let shared = self.shared.as_ref()?;
            shared.violation.lock().ok()?.take()
        })
    }

    fn deny(&mut self, message: String) -> Sent {
        match &self.grant {
            Some(grant) => tracing::warn!(plugin = %grant.plugin, "http request denied: {message}"),
            None => tracing::warn!("http request denied: {message}"),
        }
        self.denied.get_or_insert(message);
        Box::new(async { Err(Error::HttpRequestDenied) })
    }
}

impl WasiHttpHooks for HttpCall {
    fn send_request(
        &mut self,
        request: http::Request<WasiBody>,
        _options: Option<RequestOptions>,
        _fut: Box<dyn Future<Output = Result<(), Error>> + Send>,
    ) -> Sent {
        let uri = request.uri().clone();
        let Some(grant) = self.grant.clone() else {
            return self.deny(format!(
                "requested {}, but its manifest grants no http (add `http = [\"SCHEME://HOST[:PORT]\"]` to its [[plugin]] table)",
                without_query(&uri)
            ));
        };
        let scheme = match uri.scheme_str() {
            Some("http") => Scheme::Http,
            Some("https") => Scheme::Https,
            _ => {
                return self.deny(format!(
                    "requested {}: only http and https are allowed",
                    without_query(&uri)
                ));
            }
        };
        let host = uri.host().unwrap_or_default().to_string();
        let port = uri.port_u16().unwrap_or(scheme.default_port());
        let Some(at) = grant
            .destinations
            .iter()
            .position(|d| d.rule.allows(scheme, &host, port))
        else {
            return self.deny(format!(
                "requested {}, which its manifest's http list ({}) does not allow",
                without_query(&uri),
                grant.listed()
            ));
        };
        self.requests += 1;
        if self.requests > grant.limits.requests {
            tracing::warn!(plugin = %grant.plugin, "http request refused: limits.http_requests ({}) reached", grant.limits.requests);
            return Box::new(async { Err(Error::ConnectionLimitReached) });
        }
        let call = Outgoing {
            grant,
            at,
            deadline: self.deadline,
            shared: self.shared.get_or_insert_with(Arc::default).clone(),
        };
        // Waiting for a slot counts against the invocation's deadline too.
        let left = self.deadline.saturating_duration_since(Instant::now());
        Box::new(async move {
            let response = tokio::time::timeout(left, call.exchange(request))
                .await
                .map_err(|_| Error::ConnectionTimeout)??;
            let done: Box<dyn Future<Output = Result<(), Error>> + Send> =
                Box::new(async { Ok(()) });
            Ok((response, done))
        })
    }
}

/// `uri` without its query (which may carry a key the plugin was given): for messages.
fn without_query(uri: &http::Uri) -> String {
    let mut text = format!(
        "{}://{}{}",
        uri.scheme_str().unwrap_or("?"),
        uri.authority().map(|a| a.as_str()).unwrap_or_default(),
        uri.path()
    );
    if uri.query().is_some() {
        text.push_str("?…");
    }
    text
}

/// One request on its way.
struct Outgoing {
    grant: Arc<HttpGrant>,
    /// The destination that allows it.
    at: usize,
    deadline: Instant,
    shared: Arc<Shared>,
}

impl Outgoing {
    async fn exchange(
        self,
        request: http::Request<WasiBody>,
    ) -> Result<http::Response<WasiBody>, Error> {
        let grant = &self.grant;
        let limits = grant.limits;
        let _slot = grant
            .slots
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| Error::ConnectionLimitReached)?;
        let (parts, body) = request.into_parts();
        // The body, within what the invocation may still send.
        let room = limits
            .request_bytes
            .saturating_sub(self.shared.sent.load(Ordering::Relaxed));
        let body = http_body_util::Limited::new(body, room)
            .collect()
            .await
            .map_err(|e| match e.downcast::<Error>() {
                Ok(e) => *e,
                Err(_) => Error::HttpRequestBodySize(Some(limits.request_bytes as u64)),
            })?
            .to_bytes();
        self.shared.sent.fetch_add(body.len(), Ordering::Relaxed);
        let url = parts.uri.to_string();
        let method = parts.method.as_str().to_string();
        let key = tape::key(&method, &url);
        let started = Instant::now();
        let exchange = if grant.tape.replaying() {
            grant.tape.answer(&key).ok_or_else(|| {
                Error::InternalError(Some(format!(
                    "replaying: the HTTP replay file has no answer for {method} {} (key {key}); record it first",
                    grant.redact(&url)
                )))
            })?
        } else {
            let exchange = self.live(&parts, &method, &url, &key, body).await?;
            grant.tape.record(&exchange);
            exchange
        };
        tracing::info!(
            plugin = %grant.plugin,
            "http {method} {} → {} ({} ms)",
            grant.redact(&url),
            exchange.status,
            started.elapsed().as_millis()
        );
        let mut response = http::Response::builder().status(exchange.status);
        for (name, value) in &exchange.headers {
            response = response.header(name.as_str(), value.as_str());
        }
        let body = Bytes::from(exchange.body_bytes());
        response
            .body(
                http_body_util::Full::new(body)
                    .map_err(|never| match never {})
                    .boxed_unsync(),
            )
            .map_err(|e| Error::InternalError(Some(format!("the response: {e}"))))
    }

    /// Send it over the network and read the whole answer (redacted).
    async fn live(
        &self,
        parts: &http::request::Parts,
        method: &str,
        url: &str,
        key: &str,
        body: Bytes,
    ) -> Result<Exchange, Error> {
        let grant = &self.grant;
        let limits = grant.limits;
        let left = self.deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(Error::ConnectionTimeout);
        }
        let timeout = limits.timeout.min(left);
        let mut headers = parts.headers.clone();
        headers.remove(http::header::HOST);
        // The destination's own headers last: they replace any the guest set.
        let destination = &grant.destinations[self.at];
        for (name, value) in &destination.headers {
            headers.insert(name, value.clone());
        }
        if let Some((name, key)) = &destination.sign {
            headers.insert(name, signature(key, &body));
        }
        let request = grant
            .client
            .request(parts.method.clone(), url)
            .headers(headers)
            .body(body)
            .timeout(timeout);
        let mut response = request.send().await.map_err(|e| self.failed(&e))?;
        let status = response.status().as_u16();
        let headers: Vec<(String, String)> = response
            .headers()
            .iter()
            .filter(|(n, _)| {
                !matches!(
                    n.as_str(),
                    "transfer-encoding" | "connection" | "keep-alive" | "content-length"
                )
            })
            .map(|(n, v)| {
                (
                    n.as_str().to_string(),
                    grant.redact(&String::from_utf8_lossy(v.as_bytes())),
                )
            })
            .collect();
        let mut body = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(|e| self.failed(&e))? {
            let total = self
                .shared
                .received
                .fetch_add(chunk.len(), Ordering::Relaxed)
                + chunk.len();
            if total > limits.response_bytes {
                return Err(Error::HttpResponseBodySize(Some(
                    limits.response_bytes as u64,
                )));
            }
            body.extend_from_slice(&chunk);
        }
        let mut exchange = Exchange {
            key: key.to_string(),
            plugin: grant.plugin.to_string(),
            method: method.to_string(),
            url: grant.redact(url),
            status,
            headers,
            body: None,
            body_hex: None,
        };
        exchange.set_body(&secret::redact_bytes(&body, &grant.secrets));
        Ok(exchange)
    }

    /// The guest's error for a failed send; a refused address is a reach beyond the grant.
    fn failed(&self, e: &reqwest::Error) -> Error {
        let mut source: Option<&(dyn std::error::Error + 'static)> = Some(e);
        while let Some(s) = source {
            if let Some(refused) = s.downcast_ref::<Refused>() {
                if let Ok(mut v) = self.shared.violation.lock() {
                    v.get_or_insert(refused.0.clone());
                }
                tracing::warn!(plugin = %self.grant.plugin, "http request denied: {}", refused.0);
                return Error::HttpRequestDenied;
            }
            source = s.source();
        }
        if e.is_timeout() {
            return Error::ConnectionTimeout;
        }
        if e.is_connect() {
            return Error::ConnectionRefused;
        }
        // reqwest's message names the URL; the cause is in its sources.
        let mut message = e.to_string();
        let mut source = std::error::Error::source(e);
        while let Some(s) = source {
            message.push_str(": ");
            message.push_str(&s.to_string());
            source = s.source();
        }
        Error::InternalError(Some(self.grant.redact(&message)))
    }
}

/// A name resolved to an address the list does not name.
#[derive(Debug)]
struct Refused(String);

impl std::fmt::Display for Refused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Refused {}

/// The resolver of a plugin's client: the system's, refusing names that resolve to an
/// address that is not public unless the list names it.
struct Resolver {
    private: Private,
}

impl reqwest::dns::Resolve for Resolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let private = self.private.clone();
        Box::pin(async move {
            let host = name.as_str().to_string();
            let found: Vec<std::net::SocketAddr> =
                tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            if let Some(bad) = found.iter().find(|a| !private.permits(&host, a.ip())) {
                return Err(Box::new(Refused(format!(
                    "{host} resolves to {}, a private or loopback address its manifest's http list does not name",
                    bad.ip()
                )))
                    as Box<dyn std::error::Error + Send + Sync>);
            }
            Ok(Box::new(found.into_iter()) as reqwest::dns::Addrs)
        })
    }
}

/// A plugin's client: no proxy from the environment, no redirects followed, names
/// resolved through [`Resolver`].
pub(crate) fn client(private: Private) -> Result<reqwest::Client, reqwest::Error> {
    reqwest::Client::builder()
        .no_proxy()
        .redirect(reqwest::redirect::Policy::none())
        .dns_resolver(Arc::new(Resolver { private }))
        .user_agent(concat!("murmur/", env!("CARGO_PKG_VERSION")))
        .build()
}

/// `sha256=HEX`: the HMAC-SHA256 of `body` under `key`.
fn signature(key: &[u8], body: &[u8]) -> http::HeaderValue {
    use hmac::Mac;
    // HMAC takes a key of any length: this never fails.
    let Ok(mut mac) = hmac::Hmac::<sha2::Sha256>::new_from_slice(key) else {
        return http::HeaderValue::from_static("sha256=");
    };
    mac.update(body);
    let hex: String = mac
        .finalize()
        .into_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let mut value = http::HeaderValue::from_str(&format!("sha256={hex}"))
        .unwrap_or(http::HeaderValue::from_static("sha256="));
    value.set_sensitive(true);
    value
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(url: &str) -> http::Request<WasiBody> {
        http::Request::get(url)
            .body(
                http_body_util::Empty::<Bytes>::new()
                    .map_err(|never| match never {})
                    .boxed_unsync(),
            )
            .expect("request")
    }

    #[tokio::test]
    async fn a_call_without_the_grant_is_denied_and_noted_as_a_violation() {
        let deadline = Instant::now() + std::time::Duration::from_secs(5);
        let mut call = HttpCall::new(None, deadline);
        let sent = call.send_request(
            request("https://example.com/x?key=1"),
            None,
            Box::new(async { Ok(()) }),
        );
        let answer = Box::into_pin(sent).await;
        assert!(matches!(answer, Err(Error::HttpRequestDenied)));
        let violation = call.take_violation().expect("a violation");
        assert!(violation.contains("grants no http"), "{violation}");
        assert!(
            violation.contains("https://example.com/x?…"),
            "the query is not shown: {violation}"
        );
        assert!(call.take_violation().is_none(), "taken once");
    }

    #[test]
    fn the_signature_is_hmac_sha256_as_rfc_4231_gives_it() {
        // RFC 4231, test case 2.
        let value = super::signature(b"Jefe", b"what do ya want for nothing?");
        assert_eq!(
            value.to_str().expect("ascii"),
            "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }
}
