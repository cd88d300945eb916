//! The dashboard: a page at `/` that watches and steers the server's runs through API v1
//! and its event stream.
//!
//! Its three files are compiled into the binary (`include_str!`), so a server answers
//! the page with no network and no files beside it, and page and API always come from
//! the same build. It is plain HTML, CSS and JavaScript with no dependencies and no
//! build step: nothing to fetch, nothing to bundle, nothing to go stale. The files carry
//! no data and need no token; the page asks for one when the API answers 401 and sends
//! it with every call. A strict Content-Security-Policy lets the page load only its own
//! files and talk only to its own server.

use axum::http::header;
use axum::response::{IntoResponse, Response};

const INDEX: &str = include_str!("../../../dashboard/index.html");
const SCRIPT: &str = include_str!("../../../dashboard/app.js");
const STYLE: &str = include_str!("../../../dashboard/app.css");

/// Only this server's own files and API; no inline script, no frames, no plugins.
const POLICY: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
    connect-src 'self'; img-src 'self' data:; base-uri 'none'; form-action 'none'; \
    frame-ancestors 'none'";

fn asset(content_type: &'static str, body: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CACHE_CONTROL, "no-cache"),
            (header::CONTENT_SECURITY_POLICY, POLICY),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
            (header::REFERRER_POLICY, "no-referrer"),
        ],
        body,
    )
        .into_response()
}

/// `/`: the page.
pub(crate) async fn index() -> Response {
    asset("text/html; charset=utf-8", INDEX)
}

/// `/assets/app.js`.
pub(crate) async fn script() -> Response {
    asset("text/javascript; charset=utf-8", SCRIPT)
}

/// `/assets/app.css`.
pub(crate) async fn style() -> Response {
    asset("text/css; charset=utf-8", STYLE)
}
