//! Logging on stderr and, when asked (`--otlp-endpoint`), OpenTelemetry traces over
//! OTLP/HTTP.
//!
//! The library opens `tracing` spans where a run, an invocation and a model call happen
//! (`invoke_workflow {name}`, `invoke_agent {agent}`, `chat {model}`, with the
//! generative-AI semantic conventions' attributes); they cost nothing unless a subscriber
//! wants them. Here, at the edge, the subscriber is built: the log layer filtered by `-v`
//! and `RUST_LOG`, and — only with an endpoint — a layer that turns the library's spans
//! into OpenTelemetry spans, batched and exported on the SDK's own thread.

use anyhow::{Context, Result};
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_http::{Bytes, HttpClient, HttpError, Request, Response};
use opentelemetry_otlp::{WithExportConfig, WithHttpConfig};
use opentelemetry_sdk::trace::SdkTracerProvider;
use std::sync::atomic::{AtomicBool, Ordering};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{Layer, filter};

/// What was set up; dropping it exports the spans still batched (a run's last ones).
pub(crate) struct Telemetry {
    provider: Option<SdkTracerProvider>,
}

impl Drop for Telemetry {
    fn drop(&mut self) {
        if let Some(provider) = self.provider.take()
            && let Err(e) = provider.shutdown()
        {
            eprintln!("murmur: warning: exporting the last trace spans: {e}");
        }
    }
}

/// The OTLP/HTTP traces URL for `endpoint`: a collector's base URL
/// (`http://127.0.0.1:4318`) gets the signal's path, as `OTEL_EXPORTER_OTLP_ENDPOINT`
/// does; a URL that already ends in `/v1/traces` is kept.
fn traces_url(endpoint: &str) -> Result<String> {
    let endpoint = endpoint.trim();
    if !(endpoint.starts_with("http://") || endpoint.starts_with("https://")) {
        anyhow::bail!(
            "--otlp-endpoint {endpoint}: expected an OTLP/HTTP URL, http://HOST:PORT or https://HOST:PORT (the collector's port is usually 4318)"
        );
    }
    let base = endpoint.trim_end_matches('/');
    Ok(if base.ends_with("/v1/traces") {
        base.to_string()
    } else {
        format!("{base}/v1/traces")
    })
}

/// Install the process's subscriber: logs at `verbose` (`RUST_LOG` overrides), and spans
/// exported to `otlp` when given.
pub(crate) fn init(verbose: u8, otlp: Option<&str>) -> Result<Telemetry> {
    let default = match verbose {
        0 => "warn",
        1 => "info",
        _ => "debug",
    };
    let logs = filter::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| filter::EnvFilter::new(default));
    let fmt = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_filter(logs);
    let Some(endpoint) = otlp else {
        tracing_subscriber::registry().with(fmt).init();
        return Ok(Telemetry { provider: None });
    };
    let url = traces_url(endpoint)?;
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_http_client(Exporting::new()?)
        .with_protocol(opentelemetry_otlp::Protocol::HttpBinary)
        .with_endpoint(url.clone())
        .build()
        .with_context(|| format!("--otlp-endpoint {endpoint}"))?;
    let resource = opentelemetry_sdk::Resource::builder()
        .with_service_name("murmur")
        .with_attribute(opentelemetry::KeyValue::new(
            "service.version",
            env!("CARGO_PKG_VERSION"),
        ))
        .build();
    let provider = SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_resource(resource)
        .build();
    // The engine's own spans only: not the HTTP stacks' underneath (the exporter's own
    // requests among them).
    let spans = tracing_opentelemetry::layer()
        .with_tracer(provider.tracer("murmur"))
        .with_filter(filter::Targets::new().with_target("murmur", tracing::Level::INFO));
    tracing_subscriber::registry().with(fmt).with(spans).init();
    tracing::info!("exporting trace spans to {url}");
    Ok(Telemetry {
        provider: Some(provider),
    })
}

/// The exporter's HTTP client: the reqwest the host already has, driven by a runtime of
/// its own, since the SDK exports on its own thread, outside any tokio runtime.
#[derive(Debug)]
struct Exporting {
    http: reqwest::Client,
    runtime: tokio::runtime::Runtime,
    warned: AtomicBool,
}

impl Exporting {
    fn new() -> Result<Self> {
        Ok(Self {
            http: reqwest::Client::builder()
                .timeout(std::time::Duration::from_secs(10))
                .build()
                .context("building the trace exporter's HTTP client")?,
            runtime: tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .context("starting the trace exporter's runtime")?,
            warned: AtomicBool::new(false),
        })
    }

    /// Say once that spans are being lost, and why; a collector that is down does not
    /// fill the log.
    fn warn_once(&self, why: &str) {
        if !self.warned.swap(true, Ordering::Relaxed) {
            eprintln!("murmur: warning: trace spans are not being exported: {why}");
        }
    }
}

#[async_trait::async_trait]
impl HttpClient for Exporting {
    async fn send_bytes(&self, request: Request<Bytes>) -> Result<Response<Bytes>, HttpError> {
        let request = reqwest::Request::try_from(request)?;
        let answer = self.runtime.block_on(async {
            let response = self.http.execute(request).await?;
            let status = response.status();
            let headers = response.headers().clone();
            let body = response.bytes().await?;
            Ok::<_, reqwest::Error>((status, headers, body))
        });
        let (status, headers, body) = match answer {
            Ok(a) => a,
            Err(e) => {
                self.warn_once(&e.to_string());
                return Err(Box::new(e));
            }
        };
        if !status.is_success() {
            self.warn_once(&format!("the collector answered {status}"));
        }
        let mut response = Response::builder().status(status).body(body)?;
        *response.headers_mut() = headers;
        Ok(response)
    }
}

#[cfg(test)]
mod tests {
    use super::traces_url;

    #[test]
    fn a_collectors_base_url_gets_the_traces_path_once() {
        let url = |s| traces_url(s).expect("a URL");
        assert_eq!(
            url("http://127.0.0.1:4318"),
            "http://127.0.0.1:4318/v1/traces"
        );
        assert_eq!(
            url("http://127.0.0.1:4318/"),
            "http://127.0.0.1:4318/v1/traces"
        );
        assert_eq!(
            url("https://otel.example/v1/traces"),
            "https://otel.example/v1/traces"
        );
        let e = traces_url("127.0.0.1:4317")
            .expect_err("no scheme")
            .to_string();
        assert!(e.contains("expected an OTLP/HTTP URL"), "{e}");
    }
}
