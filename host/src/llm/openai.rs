//! The OpenAI-compatible HTTP provider: `POST {base_url}/chat/completions` and
//! `POST {base_url}/embeddings`, as OpenAI, Ollama, vLLM, llama.cpp's server and LM Studio
//! all speak them. Structured output uses `response_format: json_schema`.

use super::{BoxFuture, Completion, Embeddings, LlmConfig, LlmError, Provider, Request};
use serde::Serialize;
use serde_json::{Value, json};
use std::time::{Duration, Instant};

/// A provider over HTTP.
pub(crate) struct OpenAi {
    base_url: String,
    api_key: Option<String>,
    client: reqwest::Client,
    max_retries: u32,
    backoff: Duration,
    max_backoff: Duration,
    timeout: Duration,
}

impl OpenAi {
    /// A provider for `config` (its base URL, timeout and retry policy) with `api_key`.
    /// One client per run: its connection pool keeps HTTP/1.1 connections alive and
    /// multiplexes HTTP/2 (negotiated by ALPN over TLS) across every call in flight.
    pub(crate) fn new(config: &LlmConfig, api_key: Option<String>) -> Result<Self, String> {
        let client = reqwest::Client::builder()
            .timeout(Duration::from_millis(config.timeout_ms))
            // Redirects would carry the key elsewhere: a model API answers where asked.
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| format!("the HTTP client could not be built: {e}"))?;
        Ok(Self {
            base_url: config.base_url.trim_end_matches('/').to_string(),
            api_key,
            client,
            max_retries: config.max_retries,
            backoff: Duration::from_millis(config.backoff_ms),
            max_backoff: Duration::from_millis(config.max_backoff_ms),
            timeout: Duration::from_millis(config.timeout_ms),
        })
    }

    /// POST `body` to `path`, retrying 429, 5xx and transport failures with exponential
    /// backoff and jitter, honouring `Retry-After`; no wait is longer than
    /// `max_backoff_ms`. A provider that cannot be reached, or refuses the host itself
    /// (401, 403, 404), is [`LlmError::Unavailable`]: the run's problem, not the work's.
    /// Waiting (for the answer, or before a retry) holds no thread.
    async fn post(
        &self,
        path: &str,
        body: bytes::Bytes,
        deadline: Option<Instant>,
    ) -> Result<Value, LlmError> {
        let url = format!("{}{path}", self.base_url);
        let mut attempt = 0u32;
        loop {
            // No request outlives the invocation that asked: its deadline bounds each
            // attempt's timeout, and no retry starts after it.
            let left = match deadline {
                Some(d) => match d.checked_duration_since(Instant::now()) {
                    Some(left) if !left.is_zero() => Some(left),
                    _ => {
                        return Err(LlmError::Timeout(format!(
                            "{url}: the invocation's deadline passed"
                        )));
                    }
                },
                None => None,
            };
            let mut req = self
                .client
                .post(&url)
                .header("Content-Type", "application/json")
                .body(body.clone());
            if let Some(left) = left.filter(|l| *l < self.timeout) {
                req = req.timeout(left);
            }
            if let Some(key) = &self.api_key {
                req = req.header("Authorization", format!("Bearer {key}"));
            }
            let outcome = match req.send().await {
                Ok(resp) => {
                    let status = resp.status().as_u16();
                    let retry_after = resp
                        .headers()
                        .get("retry-after")
                        .and_then(|v| v.to_str().ok())
                        .and_then(|v| retry_after(v, std::time::SystemTime::now()));
                    resp.text().await.map(|text| (status, retry_after, text))
                }
                Err(e) => Err(e),
            };
            let (retry, error, wait) = match outcome {
                Ok((status, retry_after, text)) => match status {
                    200..=299 => {
                        return serde_json::from_str(&text).map_err(|e| {
                            LlmError::InvalidResponse(format!("{url}: not JSON: {e}"))
                        });
                    }
                    429 => (
                        true,
                        LlmError::RateLimited(format!("{url}: 429 {}", snippet(&text))),
                        retry_after,
                    ),
                    500..=599 => (
                        true,
                        LlmError::Refused(format!("{url}: {status} {}", snippet(&text))),
                        retry_after,
                    ),
                    // The key, the account or the address is wrong: no retry and
                    // no other request will fare better.
                    401 | 403 | 404 => {
                        return Err(LlmError::Unavailable(format!(
                            "{url}: {status} {}",
                            snippet(&text)
                        )));
                    }
                    _ => {
                        return Err(LlmError::Refused(format!(
                            "{url}: {status} {}",
                            snippet(&text)
                        )));
                    }
                },
                Err(e) if e.is_timeout() => (
                    true,
                    LlmError::Timeout(format!("{url}: no answer in time")),
                    None,
                ),
                // An answer cut off or not HTTP: the server's fault, retried.
                Err(e) if e.is_body() || e.is_decode() => (
                    true,
                    LlmError::Refused(format!("{url}: {}", chain(&e))),
                    None,
                ),
                // Connection refused, no such host, TLS: retried (a server restarting
                // comes back), then the provider is out of reach.
                Err(e) => (
                    true,
                    LlmError::Unavailable(format!("{url}: {}", chain(&e))),
                    None,
                ),
            };
            if !retry || attempt >= self.max_retries {
                return Err(error);
            }
            attempt += 1;
            let backoff = self.backoff.saturating_mul(1 << (attempt - 1).min(10));
            let jitter = Duration::from_millis(
                u64::from(jitter_ms()) % (backoff.as_millis() as u64 / 4 + 1),
            );
            let mut delay = wait.unwrap_or(backoff + jitter).min(self.max_backoff);
            if let Some(d) = deadline {
                delay = delay.min(d.saturating_duration_since(Instant::now()));
            }
            tracing::info!("LLM request: {error}; retry {attempt} in {delay:?}");
            tokio::time::sleep(delay).await;
        }
    }
}

/// An HTTP client error with its causes ("error sending request: connection refused"),
/// which reqwest's own message leaves out.
fn chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

/// How long a `Retry-After` value asks to wait, read at `now`: delay-seconds (a
/// fraction is accepted, as some servers send one) or an HTTP-date. `None` for anything
/// else — negative, not a number, infinite — so the ordinary backoff applies. A date in
/// the past is no wait; a huge value is a huge duration, which the caller clamps.
pub(crate) fn retry_after(value: &str, now: std::time::SystemTime) -> Option<Duration> {
    let value = value.trim();
    if let Ok(seconds) = value.parse::<f64>() {
        // `try_from_secs_f64` refuses negative, NaN and infinite values and values past
        // `Duration::MAX` instead of panicking as `from_secs_f64` does.
        return Duration::try_from_secs_f64(seconds)
            .ok()
            .or((seconds.is_finite() && seconds > 0.0).then_some(Duration::MAX));
    }
    let at = httpdate::parse_http_date(value).ok()?;
    Some(at.duration_since(now).unwrap_or(Duration::ZERO))
}

fn snippet(text: &str) -> String {
    text.chars().take(200).collect()
}

/// A little randomness for backoff jitter, without a dependency.
fn jitter_ms() -> u32 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0)
}

/// A `/chat/completions` request body, written straight from the request it borrows (no
/// JSON tree of it is built: with thousands of calls in flight, each tree was kilobytes
/// held for the whole wait).
#[derive(Serialize)]
struct ChatBody<'a> {
    model: &'a str,
    messages: &'a [super::Message],
    #[serde(skip_serializing_if = "Option::is_none")]
    max_tokens: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    temperature: Option<f32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    response_format: Option<ResponseFormat<'a>>,
}

/// `response_format: {type: "json_schema", json_schema: {name, schema}}`.
#[derive(Serialize)]
struct ResponseFormat<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    json_schema: NamedSchema<'a>,
}

#[derive(Serialize)]
struct NamedSchema<'a> {
    name: &'static str,
    schema: &'a super::JsonSchema,
}

/// The body as bytes, in an allocation of its own size (it is held until the answer
/// comes, for a retry); `hint` is its expected length. Serialising borrowed strings and
/// numbers cannot fail.
fn body_of(body: &impl Serialize, hint: usize) -> Result<bytes::Bytes, LlmError> {
    let mut bytes = Vec::with_capacity(hint);
    serde_json::to_writer(&mut bytes, body)
        .map_err(|e| LlmError::Refused(format!("the request could not be written: {e}")))?;
    Ok(bytes::Bytes::from(bytes.into_boxed_slice()))
}

impl Provider for OpenAi {
    fn complete<'a>(
        &'a self,
        request: Request,
        deadline: Option<Instant>,
    ) -> BoxFuture<'a, Result<Completion, LlmError>> {
        Box::pin(async move {
            // The texts, plus room for the JSON around them and a little escaping.
            let hint = request
                .messages
                .iter()
                .map(|m| m.content.len() + m.role.len() + 32)
                .sum::<usize>()
                + request.json_schema.as_ref().map_or(0, |s| s.as_str().len())
                + request.model.len()
                + 160;
            let body = body_of(
                &ChatBody {
                    model: &request.model,
                    messages: &request.messages,
                    max_tokens: request.max_tokens,
                    temperature: request.temperature,
                    response_format: request.json_schema.as_ref().map(|schema| ResponseFormat {
                        kind: "json_schema",
                        json_schema: NamedSchema {
                            name: "output",
                            schema,
                        },
                    }),
                },
                hint,
            )?;
            drop(request);
            completion_from(&self.post("/chat/completions", body, deadline).await?)
        })
    }

    fn embed<'a>(
        &'a self,
        model: &'a str,
        texts: &'a [String],
        deadline: Option<Instant>,
    ) -> BoxFuture<'a, Result<Embeddings, LlmError>> {
        Box::pin(async move {
            let hint = texts.iter().map(|t| t.len() + 4).sum::<usize>() + model.len() + 32;
            let body = body_of(&json!({ "model": model, "input": texts }), hint)?;
            embeddings_from(&self.post("/embeddings", body, deadline).await?)
        })
    }
}

/// The completion in a `/chat/completions` answer: its first choice's text and the
/// tokens the server counted (0 where it does not say; a count past `u32` is the most).
pub(crate) fn completion_from(answer: &Value) -> Result<Completion, LlmError> {
    let content = answer["choices"][0]["message"]["content"]
        .as_str()
        .ok_or_else(|| {
            LlmError::InvalidResponse(format!(
                "no choices[0].message.content in {}",
                snippet(&answer.to_string())
            ))
        })?
        .to_string();
    Ok(Completion {
        content,
        prompt_tokens: count(&answer["usage"]["prompt_tokens"]),
        completion_tokens: count(&answer["usage"]["completion_tokens"]),
    })
}

/// The vectors in an `/embeddings` answer, in order, and the tokens it cost.
pub(crate) fn embeddings_from(answer: &Value) -> Result<Embeddings, LlmError> {
    let data = answer["data"]
        .as_array()
        .ok_or_else(|| LlmError::InvalidResponse("no data[] in the embeddings answer".into()))?;
    let vectors = data
        .iter()
        .map(|d| {
            d["embedding"]
                .as_array()
                .map(|v| {
                    v.iter()
                        .filter_map(|x| x.as_f64())
                        .map(|x| x as f32)
                        .collect()
                })
                .ok_or_else(|| LlmError::InvalidResponse("an embedding is not an array".into()))
        })
        .collect::<Result<Vec<Vec<f32>>, LlmError>>()?;
    Ok(Embeddings {
        vectors,
        prompt_tokens: count(&answer["usage"]["prompt_tokens"]),
    })
}

/// A token count as a server wrote it; absent, negative or not a number is 0.
fn count(v: &Value) -> u32 {
    v.as_u64()
        .map(|n| u32::try_from(n).unwrap_or(u32::MAX))
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::retry_after;
    use std::time::{Duration, SystemTime, UNIX_EPOCH};

    fn at(seconds: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(seconds)
    }

    #[test]
    fn retry_after_reads_delay_seconds_and_fractions() {
        let now = at(0);
        assert_eq!(retry_after("3", now), Some(Duration::from_secs(3)));
        assert_eq!(retry_after(" 0.25 ", now), Some(Duration::from_millis(250)));
        assert_eq!(retry_after("0", now), Some(Duration::ZERO));
    }

    #[test]
    fn retry_after_never_panics_on_values_a_duration_cannot_hold() {
        let now = at(0);
        for garbage in ["-1", "-0.5", "inf", "-inf", "NaN", "", "soon", "1e", "0x10"] {
            assert_eq!(retry_after(garbage, now), None, "{garbage:?}");
        }
        // Too large for a Duration: the longest one, which the caller clamps.
        assert_eq!(retry_after("1e30", now), Some(Duration::MAX));
        assert_eq!(
            retry_after("18446744073709551616", now),
            Some(Duration::MAX)
        );
    }

    #[test]
    fn retry_after_reads_an_http_date_relative_to_now() {
        // Sun, 06 Nov 1994 08:49:37 GMT is 784111777 s after the epoch (RFC 9110's example).
        let date = "Sun, 06 Nov 1994 08:49:37 GMT";
        assert_eq!(
            retry_after(date, at(784_111_777 - 5)),
            Some(Duration::from_secs(5))
        );
        assert_eq!(
            retry_after(date, at(784_111_777 + 5)),
            Some(Duration::ZERO),
            "a date in the past is no wait"
        );
        assert_eq!(retry_after("Sun, 32 Nov 1994 08:49:37 GMT", at(0)), None);
    }
}
