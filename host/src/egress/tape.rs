//! Recording plugins' HTTP exchanges, and answering from a recording.
//!
//! `--http-record FILE` appends one JSON line per exchange; `--http-replay FILE` answers
//! each request from the file and never opens a connection, so a run with integrations
//! reruns offline, as `--llm-replay` does for model calls. A request is known by its
//! method and URL (see [`key`]); requests with the same key are answered in the order
//! they were recorded, the last answer repeating once the recorded ones are used up (a
//! poll that ran more often this time). Headers the host adds are never recorded, and
//! response bodies and headers are recorded redacted.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::{HashMap, VecDeque};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// One recorded exchange (a line of a record file).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Exchange {
    /// The request's key (see [`key`]).
    pub key: String,
    /// The plugin that made it.
    pub plugin: String,
    /// `GET`, `POST`, …
    pub method: String,
    /// The full URL.
    pub url: String,
    /// The status.
    pub status: u16,
    /// Response headers, redacted.
    pub headers: Vec<(String, String)>,
    /// The response body as text, redacted (bodies that are not UTF-8 are kept as hex
    /// in `body_hex`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body: Option<String>,
    /// A body that is not UTF-8, as hex.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body_hex: Option<String>,
}

impl Exchange {
    /// The response body's bytes.
    pub fn body_bytes(&self) -> Vec<u8> {
        if let Some(text) = &self.body {
            return text.as_bytes().to_vec();
        }
        let hex = self.body_hex.as_deref().unwrap_or_default();
        (0..hex.len() / 2)
            .filter_map(|i| u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).ok())
            .collect()
    }

    /// Set the body from `bytes`.
    pub fn set_body(&mut self, bytes: &[u8]) {
        match std::str::from_utf8(bytes) {
            Ok(text) => self.body = Some(text.to_string()),
            Err(_) => {
                self.body_hex = Some(bytes.iter().map(|b| format!("{b:02x}")).collect());
            }
        }
    }
}

/// The key of a request: its method and URL. Not its body or headers: a rerun is a new
/// run, whose requests carry new run and artifact ids, and is still answered from the
/// recording, the answers to one method and URL in the order they were recorded.
pub fn key(method: &str, url: &str) -> String {
    let mut h = Sha256::new();
    h.update(method.as_bytes());
    h.update(b" ");
    h.update(url.as_bytes());
    format!("{:x}", h.finalize())
}

/// Why a record or replay file cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum TapeError {
    /// The replay file could not be read or has a bad line.
    #[error("cannot read the HTTP replay file {}: {message}", path.display())]
    Replay {
        /// The file.
        path: PathBuf,
        /// What went wrong (with the line).
        message: String,
    },
    /// The record file could not be created.
    #[error("cannot create the HTTP record file {}: {source}", path.display())]
    Record {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
}

/// A run's recording: answers to replay, and the file exchanges are appended to.
#[derive(Default)]
pub struct Tape {
    replay: Option<Mutex<HashMap<String, VecDeque<Exchange>>>>,
    record: Option<Mutex<std::fs::File>>,
}

impl std::fmt::Debug for Tape {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tape")
            .field("replaying", &self.replay.is_some())
            .field("recording", &self.record.is_some())
            .finish()
    }
}

impl Tape {
    /// Answer from `replay` (never the network) and/or append to `record`.
    pub fn open(replay: Option<&Path>, record: Option<&Path>) -> Result<Tape, TapeError> {
        let replay = match replay {
            None => None,
            Some(path) => {
                let text = std::fs::read_to_string(path).map_err(|e| TapeError::Replay {
                    path: path.to_path_buf(),
                    message: e.to_string(),
                })?;
                let mut answers: HashMap<String, VecDeque<Exchange>> = HashMap::new();
                for (i, line) in text.lines().enumerate() {
                    if line.trim().is_empty() {
                        continue;
                    }
                    let exchange: Exchange =
                        serde_json::from_str(line).map_err(|e| TapeError::Replay {
                            path: path.to_path_buf(),
                            message: format!("line {}: {e}", i + 1),
                        })?;
                    answers
                        .entry(exchange.key.clone())
                        .or_default()
                        .push_back(exchange);
                }
                Some(Mutex::new(answers))
            }
        };
        let record = match record {
            None => None,
            Some(path) => Some(Mutex::new(
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(path)
                    .map_err(|source| TapeError::Record {
                        path: path.to_path_buf(),
                        source,
                    })?,
            )),
        };
        Ok(Tape { replay, record })
    }

    /// Whether requests are answered from a file.
    pub fn replaying(&self) -> bool {
        self.replay.is_some()
    }

    /// The recorded answer to the request with `key`: `None` when replaying and there is
    /// none.
    pub fn answer(&self, key: &str) -> Option<Exchange> {
        let mut answers = self.replay.as_ref()?.lock().ok()?;
        let queue = answers.get_mut(key)?;
        if queue.len() > 1 {
            queue.pop_front()
        } else {
            queue.front().cloned()
        }
    }

    /// Append `exchange` to the record file, if there is one.
    pub fn record(&self, exchange: &Exchange) {
        let Some(file) = &self.record else { return };
        let Ok(mut line) = serde_json::to_string(exchange) else {
            return;
        };
        line.push('\n');
        if let Ok(mut file) = file.lock()
            && let Err(e) = file.write_all(line.as_bytes())
        {
            tracing::warn!("cannot append to the HTTP record file: {e}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn exchange(key: &str, status: u16, body: &[u8]) -> Exchange {
        let mut e = Exchange {
            key: key.into(),
            plugin: "p".into(),
            method: "GET".into(),
            url: "https://example.com/".into(),
            status,
            headers: vec![("content-type".into(), "application/json".into())],
            body: None,
            body_hex: None,
        };
        e.set_body(body);
        e
    }

    #[test]
    fn a_recording_replays_identical_requests_in_order_and_repeats_the_last() {
        let dir = std::env::temp_dir().join(format!("murmur-tape-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("test value");
        let file = dir.join("http.jsonl");
        let _ = std::fs::remove_file(&file);
        let tape = Tape::open(None, Some(&file)).expect("test value");
        tape.record(&exchange("k", 200, b"[]"));
        tape.record(&exchange("k", 200, b"[1]"));
        tape.record(&exchange("bin", 200, &[0xff, 0x00]));
        drop(tape);
        let replay = Tape::open(Some(&file), None).expect("test value");
        assert!(replay.replaying());
        assert_eq!(replay.answer("k").expect("test value").body_bytes(), b"[]");
        assert_eq!(replay.answer("k").expect("test value").body_bytes(), b"[1]");
        assert_eq!(replay.answer("k").expect("test value").body_bytes(), b"[1]");
        assert_eq!(
            replay.answer("bin").expect("test value").body_bytes(),
            vec![0xff, 0x00]
        );
        assert!(replay.answer("unknown").is_none());
        std::fs::write(&file, "{\"key\": 1}\n").expect("test value");
        let err = Tape::open(Some(&file), None).expect_err("bad line");
        assert!(err.to_string().contains("line 1"), "{err}");
        std::fs::remove_dir_all(&dir).ok();
    }

    #[test]
    fn the_key_is_the_method_and_the_url() {
        assert_eq!(key("GET", "https://a/x"), key("GET", "https://a/x"));
        assert_ne!(key("GET", "https://a/x"), key("POST", "https://a/x"));
        assert_ne!(key("GET", "https://a/x"), key("GET", "https://a/x?page=2"));
    }
}
