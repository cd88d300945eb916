//! Outgoing HTTP (feature `http`): a small blocking client over wasi:http.
//!
//! The host sends each request only where the manifest's `http` list allows, and adds
//! that destination's secret headers itself: a plugin never holds a token. A request to
//! anywhere else fails with [`HttpError::Denied`] and the host faults the invocation
//! `denied`, so there is nothing to catch; redirects are answers like any other (the host
//! follows none), and following one is a new request, checked again.
//!
//! ```ignore
//! use murmur_guest::http::Request;
//! let answer = Request::post("https://api.github.com/repos/o/r/issues")
//!     .header("Accept", "application/vnd.github+json")
//!     .json(&serde_json::json!({ "title": "…" }))?
//!     .send()?;
//! if answer.status == 201 { let created: serde_json::Value = answer.json()?; }
//! ```

use crate::bindings::wasi::clocks::monotonic_clock;
use crate::bindings::wasi::http::outgoing_handler;
use crate::bindings::wasi::http::types::{
    ErrorCode, Fields, Method, OutgoingBody, OutgoingRequest, Scheme,
};
use crate::bindings::wasi::io::streams::StreamError;
use crate::PluginError;
use alloc::format;
use alloc::string::{String, ToString};
use alloc::vec::Vec;
use serde::de::DeserializeOwned;
use serde::Serialize;

/// A request to send.
#[derive(Debug, Clone)]
pub struct Request {
    method: Method,
    url: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

/// An answer, read whole.
#[derive(Debug, Clone)]
pub struct Response {
    /// The status code.
    pub status: u16,
    /// The headers, names lowercase.
    pub headers: Vec<(String, String)>,
    /// The body.
    pub body: Vec<u8>,
}

/// Why a request got no answer.
#[derive(Debug, Clone)]
pub enum HttpError {
    /// The host refused it: a destination the manifest does not list, or no `http` grant.
    /// The invocation faults `denied` whatever the plugin does next.
    Denied,
    /// The URL is not `http(s)://host[:port][/path][?query]`.
    BadUrl(String),
    /// Anything else (connection, timeout, limit), in the host's words.
    Failed(String),
}

impl core::fmt::Display for HttpError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            HttpError::Denied => f.write_str("the host denied the request (not in the manifest's http list)"),
            HttpError::BadUrl(u) => write!(f, "not an http(s) URL: {u}"),
            HttpError::Failed(m) => f.write_str(m),
        }
    }
}

impl From<HttpError> for PluginError {
    /// A failed request is worth retrying later; a denied or malformed one is not.
    fn from(e: HttpError) -> Self {
        match e {
            HttpError::Failed(m) => PluginError::retryable(format!("http: {m}")),
            e => PluginError::failed(format!("http: {e}")),
        }
    }
}

impl Request {
    /// A request with `method` (`GET`, `POST`, …) to `url`.
    pub fn new(method: &str, url: &str) -> Request {
        let method = match method.to_ascii_uppercase().as_str() {
            "GET" => Method::Get,
            "HEAD" => Method::Head,
            "POST" => Method::Post,
            "PUT" => Method::Put,
            "DELETE" => Method::Delete,
            "PATCH" => Method::Patch,
            "OPTIONS" => Method::Options,
            other => Method::Other(other.to_string()),
        };
        Request { method, url: url.to_string(), headers: Vec::new(), body: Vec::new() }
    }
    /// `GET url`.
    pub fn get(url: &str) -> Request {
        Request::new("GET", url)
    }
    /// `POST url`.
    pub fn post(url: &str) -> Request {
        Request::new("POST", url)
    }
    /// `PATCH url`.
    pub fn patch(url: &str) -> Request {
        Request::new("PATCH", url)
    }
    /// Add a header.
    pub fn header(mut self, name: &str, value: &str) -> Request {
        self.headers.push((name.to_string(), value.to_string()));
        self
    }
    /// A JSON body (and its content type).
    pub fn json<T: Serialize + ?Sized>(self, value: &T) -> Result<Request, PluginError> {
        let body = serde_json::to_vec(value).map_err(|e| PluginError::failed(format!("http body: {e}")))?;
        Ok(self.header("content-type", "application/json").body(body))
    }
    /// A body.
    pub fn body(mut self, body: Vec<u8>) -> Request {
        self.body = body;
        self
    }

    /// Send it and read the whole answer, following up to 5 redirects as `fetch` does
    /// (each one a request of its own, which the host checks against the manifest's
    /// `http` list: a redirect elsewhere fails [`HttpError::Denied`]).
    pub fn send(self) -> Result<Response, HttpError> {
        let mut request = self;
        for _ in 0..5 {
            let answer = request.clone().send_once()?;
            let Some(location) = answer.header("location").filter(|_| matches!(answer.status, 301 | 302 | 303 | 307 | 308))
            else {
                return Ok(answer);
            };
            let url = resolve(&request.url, location).ok_or_else(|| HttpError::BadUrl(location.to_string()))?;
            // 303, and 301/302 after a POST, go on as a GET without a body.
            let as_get = answer.status == 303 || (matches!(answer.status, 301 | 302) && matches!(request.method, Method::Post));
            request.url = url;
            if as_get {
                request.method = Method::Get;
                request.body.clear();
                request.headers.retain(|(n, _)| !n.eq_ignore_ascii_case("content-type"));
            }
        }
        Err(HttpError::Failed(format!("more than 5 redirects, the last to {}", request.url)))
    }

    /// Send it once and read the whole answer.
    fn send_once(self) -> Result<Response, HttpError> {
        let (scheme, authority, path) = split_url(&self.url).ok_or_else(|| HttpError::BadUrl(self.url.clone()))?;
        let entries: Vec<(String, Vec<u8>)> =
            self.headers.iter().map(|(n, v)| (n.to_ascii_lowercase(), v.as_bytes().to_vec())).collect();
        let fields = Fields::from_list(&entries).map_err(|e| HttpError::Failed(format!("header: {e:?}")))?;
        let request = OutgoingRequest::new(fields);
        let ok = request.set_method(&self.method).is_ok()
            && request.set_scheme(Some(&scheme)).is_ok()
            && request.set_authority(Some(authority)).is_ok()
            && request.set_path_with_query(Some(&path)).is_ok();
        if !ok {
            return Err(HttpError::BadUrl(self.url.clone()));
        }
        let body = request.body().map_err(|()| HttpError::Failed("the request body was taken".into()))?;
        let future = outgoing_handler::handle(request, None).map_err(error)?;
        {
            let stream = body.write().map_err(|()| HttpError::Failed("the request body stream was taken".into()))?;
            for chunk in self.body.chunks(4096) {
                stream
                    .blocking_write_and_flush(chunk)
                    .map_err(|e| HttpError::Failed(format!("writing the body: {e:?}")))?;
            }
        }
        OutgoingBody::finish(body, None).map_err(error)?;
        let answer = loop {
            match future.get() {
                Some(answer) => break answer,
                None => future.subscribe().block(),
            }
        };
        let response = answer
            .map_err(|()| HttpError::Failed("the answer was taken".into()))?
            .map_err(error)?;
        let status = response.status();
        let headers = {
            let fields = response.headers();
            let list = fields.entries();
            list.into_iter()
                .map(|(n, v)| (n.to_ascii_lowercase(), String::from_utf8_lossy(&v).into_owned()))
                .collect()
        };
        let incoming = response.consume().map_err(|()| HttpError::Failed("the answer's body was taken".into()))?;
        let mut body = Vec::new();
        {
            let stream = incoming.stream().map_err(|()| HttpError::Failed("the answer's body stream was taken".into()))?;
            loop {
                match stream.blocking_read(64 * 1024) {
                    Ok(chunk) => body.extend_from_slice(&chunk),
                    Err(StreamError::Closed) => break,
                    Err(StreamError::LastOperationFailed(e)) => {
                        return Err(HttpError::Failed(format!("reading the answer: {}", e.to_debug_string())))
                    }
                }
            }
        }
        drop(incoming);
        Ok(Response { status, headers, body })
    }
}

impl Response {
    /// The first value of header `name` (any case).
    pub fn header(&self, name: &str) -> Option<&str> {
        let name = name.to_ascii_lowercase();
        self.headers.iter().find(|(n, _)| *n == name).map(|(_, v)| v.as_str())
    }
    /// The body as JSON.
    pub fn json<T: DeserializeOwned>(&self) -> Result<T, PluginError> {
        serde_json::from_slice(&self.body).map_err(|e| {
            PluginError::failed(format!("the answer (status {}) is not the JSON expected: {e}", self.status))
        })
    }
    /// The body as text.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// Wait `ms` milliseconds (within the invocation's deadline: the host ends a call that
/// outlives it).
pub fn sleep(ms: u64) {
    monotonic_clock::subscribe_duration(ms.saturating_mul(1_000_000)).block();
}

fn error(e: ErrorCode) -> HttpError {
    match e {
        ErrorCode::HttpRequestDenied => HttpError::Denied,
        ErrorCode::InternalError(Some(m)) => HttpError::Failed(m),
        e => HttpError::Failed(format!("{e:?}")),
    }
}

/// `http(s)://authority/path?query` → scheme, authority, path with query.
fn split_url(url: &str) -> Option<(Scheme, &str, String)> {
    let (scheme, rest) = url.split_once("://")?;
    let scheme = match scheme.to_ascii_lowercase().as_str() {
        "http" => Scheme::Http,
        "https" => Scheme::Https,
        _ => return None,
    };
    let at = rest.find(['/', '?']).unwrap_or(rest.len());
    let (authority, path) = rest.split_at(at);
    if authority.is_empty() {
        return None;
    }
    let path = if path.starts_with('/') { path.to_string() } else { format!("/{path}") };
    Some((scheme, authority, path))
}

/// `location` (absolute, or a path on `base`'s origin) as an absolute URL.
fn resolve(base: &str, location: &str) -> Option<String> {
    if location.contains("://") {
        return Some(location.to_string());
    }
    let (scheme, rest) = base.split_once("://")?;
    let authority = &rest[..rest.find(['/', '?']).unwrap_or(rest.len())];
    location.starts_with('/').then(|| format!("{scheme}://{authority}{location}"))
}
