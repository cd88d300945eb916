//! `--server URL`: the commands that read or steer a run asking a `murmur serve`
//! instead of opening its database.

use anyhow::{Context, Result, bail};
use serde_json::Value;

/// A blocking client of one server's API v1.
pub(crate) struct Client {
    base: String,
    token: Option<String>,
    http: reqwest::Client,
    runtime: tokio::runtime::Runtime,
}

impl Client {
    /// A client of the server at `url` (`http://HOST:PORT`), with the bearer token the
    /// variable `token_env` holds, if named.
    pub(crate) fn new(url: &str, token_env: Option<&str>) -> Result<Self> {
        if !(url.starts_with("http://") || url.starts_with("https://")) {
            bail!("--server {url}: expected http://HOST:PORT or https://HOST:PORT");
        }
        let token = match token_env {
            Some(name) => Some(
                std::env::var(name)
                    .with_context(|| format!("--token-env {name}: the variable is not set"))?,
            ),
            None => None,
        };
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .context("starting tokio")?;
        let http = reqwest::Client::builder()
            .timeout(std::time::Duration::from_secs(60))
            .build()
            .context("building the HTTP client")?;
        Ok(Self {
            base: url.trim_end_matches('/').to_string(),
            token,
            http,
            runtime,
        })
    }

    /// `method path` with an optional JSON body; the answer's body, or the server's
    /// error as an error.
    pub(crate) fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<String> {
        let url = format!("{}{path}", self.base);
        let mut request = self.http.request(method.clone(), &url);
        if let Some(token) = &self.token {
            request = request.bearer_auth(token.trim());
        }
        if let Some(body) = body {
            request = request
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .body(body.to_string());
        }
        self.runtime.block_on(async {
            let response = request
                .send()
                .await
                .with_context(|| format!("{method} {url}"))?;
            let status = response.status();
            let text = response
                .text()
                .await
                .with_context(|| format!("{method} {url}: reading the answer"))?;
            if !status.is_success() {
                let message = serde_json::from_str::<Value>(&text)
                    .ok()
                    .and_then(|v| v["error"]["message"].as_str().map(str::to_string))
                    .unwrap_or(text);
                bail!("{method} {url}: {status}: {message}");
            }
            Ok(text)
        })
    }

    /// GET `path` as JSON.
    pub(crate) fn get(&self, path: &str) -> Result<Value> {
        let text = self.send(reqwest::Method::GET, path, None)?;
        serde_json::from_str(&text).with_context(|| format!("GET {path}: the answer is not JSON"))
    }

    /// The newest run the server's store holds.
    pub(crate) fn newest_run(&self) -> Result<String> {
        let list = self.get("/v1/workflows")?;
        list["workflows"][0]["workflow_id"]
            .as_str()
            .map(str::to_string)
            .context("the server's store holds no runs")
    }
}
