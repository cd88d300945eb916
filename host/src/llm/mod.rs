//! Language models, called by the host on a plugin's behalf.
//!
//! Plugins never hold keys or sockets: a plugin granted `llm` calls the WIT `llm`
//! interface, and the host makes the request — to any OpenAI-compatible server (OpenAI,
//! Ollama, vLLM, llama.cpp's server, LM Studio) configured in the manifest's `[llm]` table,
//! with the endpoint, model and key the command line hands in (`LlmSettings`, from
//! `MURMUR_LLM_*` and `api_key_env`: the library reads no environment variable).
//! Around every call the host enforces, in order: the token budgets (per workflow and per
//! agent, checked *before* the call, so a run ends `budget_exhausted` instead of
//! overspending), the response cache and replay file (an identical request is never paid
//! for twice, and a replayed run needs no network), the concurrency and rate limits
//! (requests and tokens per minute), then the request itself with a timeout and retries
//! (exponential backoff with jitter on 429 and 5xx, honouring `Retry-After`). Every
//! exchange can be recorded to a file for replay.

pub(crate) mod openai;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::future::Future;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use thiserror::Error;
use tracing::Instrument;

/// `[llm]`: the provider and its limits. Every key but `base_url` and `model` is optional.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct LlmConfig {
    /// The OpenAI-compatible API root, e.g. `https://api.openai.com/v1` or
    /// `http://localhost:11434/v1` (Ollama). The command line's `MURMUR_LLM_BASE_URL`
    /// overrides it.
    #[serde(default)]
    pub base_url: String,
    /// The chat model. The command line's `MURMUR_LLM_MODEL` overrides it.
    #[serde(default)]
    pub model: String,
    /// The *name* of the environment variable holding the API key (never the key itself),
    /// which the command line reads; `MURMUR_LLM_API_KEY` is used when set.
    #[serde(default)]
    pub api_key_env: Option<String>,
    /// The embedding model, if embeddings are wanted.
    #[serde(default)]
    pub embedding_model: Option<String>,
    /// Per-request timeout, ms. Default 60,000.
    #[serde(default = "default_timeout")]
    pub timeout_ms: u64,
    /// Retries after a 429, a 5xx or a timeout. Default 3.
    #[serde(default = "default_retries")]
    pub max_retries: u32,
    /// First retry delay, ms (doubled each time, with jitter). Default 500.
    #[serde(default = "default_backoff")]
    pub backoff_ms: u64,
    /// The longest wait before a retry, ms, whatever the backoff or the server's
    /// `Retry-After` asks for. Default 60,000.
    #[serde(default = "default_max_backoff")]
    pub max_backoff_ms: u64,
    /// Requests per minute at most (0: unlimited). Default 0.
    #[serde(default)]
    pub requests_per_minute: u32,
    /// Tokens per minute at most (0: unlimited). Default 0.
    #[serde(default)]
    pub tokens_per_minute: u64,
    /// Requests in flight at once. Default 64: a waiting request holds no thread, and
    /// most hosted APIs take that many from one key (lower it for a local server that
    /// answers one at a time).
    #[serde(default = "default_concurrency")]
    pub max_concurrency: usize,
    /// Tokens (prompt + completion) the whole run may spend (0: unlimited). Default 0.
    #[serde(default)]
    pub budget_tokens: u64,
    /// Tokens per agent, by agent name.
    #[serde(default)]
    pub agent_budget_tokens: BTreeMap<String, u64>,
}

impl Default for LlmConfig {
    fn default() -> Self {
        Self {
            base_url: String::new(),
            model: String::new(),
            api_key_env: None,
            embedding_model: None,
            timeout_ms: default_timeout(),
            max_retries: default_retries(),
            backoff_ms: default_backoff(),
            max_backoff_ms: default_max_backoff(),
            requests_per_minute: 0,
            tokens_per_minute: 0,
            max_concurrency: default_concurrency(),
            budget_tokens: 0,
            agent_budget_tokens: BTreeMap::new(),
        }
    }
}

fn default_timeout() -> u64 {
    60_000
}
fn default_retries() -> u32 {
    3
}
fn default_backoff() -> u64 {
    500
}
fn default_max_backoff() -> u64 {
    60_000
}
fn default_concurrency() -> usize {
    64
}

impl LlmConfig {
    /// `[llm]` with the endpoint and model the command line chose over the manifest's.
    pub fn with_overrides(mut self, settings: &crate::workflow::LlmSettings) -> Self {
        if let Some(v) = &settings.base_url {
            self.base_url = v.clone();
        }
        if let Some(v) = &settings.model {
            self.model = v.clone();
        }
        self
    }
}

/// One chat message.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Message {
    /// `system`, `user` or `assistant`.
    pub role: String,
    /// The text.
    pub content: String,
}

/// A completion request, as the host sends it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Request {
    /// The model.
    pub model: String,
    /// System prompt first, then the conversation.
    pub messages: Vec<Message>,
    /// JSON Schema the answer must satisfy.
    pub json_schema: Option<JsonSchema>,
    /// Completion token cap.
    pub max_tokens: Option<u32>,
    /// Sampling temperature.
    pub temperature: Option<f32>,
}

impl Request {
    /// The cache and replay key: sha256 of the request's canonical JSON.
    pub fn key(&self) -> String {
        let text = serde_json::to_string(self).unwrap_or_default();
        let digest = Sha256::digest(text.as_bytes());
        digest.iter().map(|b| format!("{b:02x}")).collect()
    }
}

/// A JSON Schema for an answer, held as its canonical text (compact, keys sorted: what a
/// `serde_json::Value` writes) rather than as a tree. A call in flight holds one string
/// instead of a map per object of the schema, and the text goes into the request body,
/// the cache key and the record file as it is, the same bytes the tree would write.
#[derive(Debug, Clone)]
pub struct JsonSchema(Box<serde_json::value::RawValue>);

impl JsonSchema {
    /// Parse `text`; any valid JSON is accepted and rewritten canonically.
    pub fn parse(text: &str) -> Result<Self, serde_json::Error> {
        Self::canonical(&serde_json::from_str(text)?)
    }

    /// The schema `value`, written canonically.
    pub fn canonical(value: &serde_json::Value) -> Result<Self, serde_json::Error> {
        serde_json::value::to_raw_value(value).map(Self)
    }

    /// The canonical text.
    pub fn as_str(&self) -> &str {
        self.0.get()
    }
}

impl PartialEq for JsonSchema {
    fn eq(&self, other: &Self) -> bool {
        self.as_str() == other.as_str()
    }
}

impl Serialize for JsonSchema {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.0.serialize(s)
    }
}

impl<'de> Deserialize<'de> for JsonSchema {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let value = serde_json::Value::deserialize(d)?;
        Self::canonical(&value).map_err(serde::de::Error::custom)
    }
}

/// A completion.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Completion {
    /// The answer's text.
    pub content: String,
    /// Tokens in the prompt.
    pub prompt_tokens: u32,
    /// Tokens in the answer.
    pub completion_tokens: u32,
}

/// Why a call gave no completion (the WIT `llm-error`, as data).
#[derive(Debug, Clone, PartialEq, Error)]
pub enum LlmError {
    /// The provider kept answering 429.
    #[error("rate limited: {0}")]
    RateLimited(String),
    /// No answer in time.
    #[error("timeout: {0}")]
    Timeout(String),
    /// The provider refused the request.
    #[error("refused: {0}")]
    Refused(String),
    /// The answer could not be understood.
    #[error("invalid response: {0}")]
    InvalidResponse(String),
    /// A token budget would be exceeded.
    #[error("budget exhausted: {0}")]
    BudgetExhausted(String),
    /// No provider, or not granted.
    #[error("denied: {0}")]
    Denied(String),
    /// The provider cannot be reached or refuses the host itself (connection refused,
    /// DNS, TLS, 401, 403, 404): no fault of the work that asked. The run stops claiming
    /// and ends `provider_unavailable`, its work left for `resume`.
    #[error("provider unavailable: {0}")]
    Unavailable(String),
    /// The run is stopping: the call was dropped unanswered, and its invocation goes back
    /// to the queue for `resume`.
    #[error("cancelled: {0}")]
    Cancelled(String),
}

impl LlmError {
    /// Its class, as a trace's `error.type` names it.
    pub fn class(&self) -> &'static str {
        match self {
            LlmError::RateLimited(_) => "rate_limited",
            LlmError::Timeout(_) => "timeout",
            LlmError::Refused(_) => "refused",
            LlmError::InvalidResponse(_) => "invalid_response",
            LlmError::BudgetExhausted(_) => "budget_exhausted",
            LlmError::Denied(_) => "denied",
            LlmError::Unavailable(_) => "unavailable",
            LlmError::Cancelled(_) => "cancelled",
        }
    }
}

/// Why the provider is out of reach: the run's end names it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Outage {
    /// The API root the host called.
    pub url: String,
    /// What the last attempt got.
    pub error: String,
}

/// A boxed future, as a [`Provider`] returns (a trait object cannot have `async fn`s).
pub(crate) type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Where answers come from. Both calls are futures: waiting for the answer holds no
/// thread, and dropping the future abandons the request.
pub trait Provider: Send + Sync {
    /// Complete `request`, giving up at `deadline` (the asking invocation's). The request
    /// is the provider's to drop once it is written out: a call waiting for its answer
    /// need not hold its prompt twice.
    fn complete<'a>(
        &'a self,
        request: Request,
        deadline: Option<Instant>,
    ) -> BoxFuture<'a, Result<Completion, LlmError>>;
    /// Embed `texts` with `model`, giving up at `deadline`.
    fn embed<'a>(
        &'a self,
        model: &'a str,
        texts: &'a [String],
        deadline: Option<Instant>,
    ) -> BoxFuture<'a, Result<Embeddings, LlmError>>;
}

/// Embeddings of some texts, one vector each, and the tokens they cost.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Embeddings {
    /// One vector per text, in order.
    pub vectors: Vec<Vec<f32>>,
    /// Tokens the provider counted (0 when it does not say).
    pub prompt_tokens: u32,
}

/// One recorded embedding exchange (a line of a record/replay file, beside completions).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct EmbeddingExchange {
    /// The key: sha256 of the model and texts.
    pub embedding_key: String,
    /// The model.
    pub model: String,
    /// The texts.
    pub texts: Vec<String>,
    /// The answer.
    pub embeddings: Embeddings,
}

/// A line of a record/replay file.
#[derive(Deserialize)]
#[serde(untagged)]
enum TapeLine {
    Completion(Exchange),
    Embedding(EmbeddingExchange),
}

/// The cache and replay key of an embedding request.
fn embedding_key(model: &str, texts: &[String]) -> String {
    let text = serde_json::to_string(&(model, texts)).unwrap_or_default();
    let digest = Sha256::digest(text.as_bytes());
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

/// One recorded exchange (a line of a record/replay file).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Exchange {
    /// [`Request::key`].
    pub key: String,
    /// The request.
    pub request: Request,
    /// The answer.
    pub completion: Completion,
}

/// Tokens spent, by agent and by phase.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Usage {
    /// Calls answered by the provider (not the cache or replay file).
    pub calls: u64,
    /// Calls answered from the cache or the replay file.
    pub cached: u64,
    /// Prompt tokens.
    pub prompt_tokens: u64,
    /// Completion tokens.
    pub completion_tokens: u64,
    /// Tokens by agent.
    pub by_agent: BTreeMap<String, u64>,
    /// Tokens by phase.
    pub by_phase: BTreeMap<String, u64>,
    /// Time each agent spent waiting for the model (ms), queueing for a slot included.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub model_ms_by_agent: BTreeMap<String, u64>,
}

impl Usage {
    fn total(&self) -> u64 {
        self.prompt_tokens + self.completion_tokens
    }
}

/// Why an [`LlmHost`] could not be built.
#[derive(Debug, Error)]
pub enum LlmSetupError {
    /// The replay file could not be read.
    #[error("cannot read the LLM replay file {}: {message}", path.display())]
    Replay {
        /// The file.
        path: PathBuf,
        /// What went wrong.
        message: String,
    },
    /// The record file could not be created.
    #[error("cannot create the LLM record file {}: {source}", path.display())]
    Record {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The HTTP client could not be built (no TLS roots, for one).
    #[error("cannot set up the model client: {0}")]
    Client(String),
}

struct Limits {
    requests: VecDeque<Instant>,
    tokens: VecDeque<(Instant, u64)>,
    /// Tokens the calls in flight are expected to spend: held against the tokens-per-
    /// minute limit until their answers say what they spent.
    reserved: u64,
}

/// What a request's prompt may cost before its answer says: about four characters a
/// token, as OpenAI's tokenizers average on English (an estimate only holds the
/// tokens-per-minute limit's room while the call is in flight).
fn estimate_tokens(messages: &[Message]) -> u64 {
    messages
        .iter()
        .map(|m| m.content.len() as u64 / 4 + 4)
        .sum()
}

/// Tokens held against the budgets by calls in flight.
#[derive(Default)]
struct Reserved {
    total: u64,
    by_agent: HashMap<String, u64>,
}

/// ", N held by calls in flight" when calls hold some of a budget.
fn in_flight_note(held: u64) -> String {
    if held == 0 {
        String::new()
    } else {
        format!(", {held} held by calls in flight")
    }
}

/// A call's hold on the budgets (see `LlmHost::reserve`), released when dropped.
struct Hold<'a> {
    host: &'a LlmHost,
    agent: String,
    tokens: u64,
}

impl Drop for Hold<'_> {
    fn drop(&mut self) {
        let mut held = LlmHost::lock(&self.host.reserved);
        held.total = held.total.saturating_sub(self.tokens);
        if let Some(n) = held.by_agent.get_mut(&self.agent) {
            *n = n.saturating_sub(self.tokens);
        }
    }
}

/// A call that ran out of its invocation's time before an answer.
fn past_deadline() -> LlmError {
    LlmError::Timeout("the invocation's deadline passed before the model answered".into())
}

/// Who the host's own model calls (embeddings) are accounted to.
const HOST: &str = "host";

/// Run a provider's request as a task of its own on the current runtime, so that polling
/// the HTTP client (connecting, writing, reading: deep call chains) happens on a worker
/// thread's stack, not on the stack of the guest fiber that asked, which then stays
/// shallow — that stack's touched pages are memory every call in flight holds. Dropping
/// the returned future aborts the task. Outside a runtime the request runs in place.
async fn off_fiber<T: Send + 'static>(
    work: impl Future<Output = T> + Send + 'static,
) -> Result<T, LlmError> {
    struct AbortOnDrop<T>(tokio::task::JoinHandle<T>);
    impl<T> Drop for AbortOnDrop<T> {
        fn drop(&mut self) {
            self.0.abort();
        }
    }
    let Ok(runtime) = tokio::runtime::Handle::try_current() else {
        return Ok(work.await);
    };
    let mut task = AbortOnDrop(runtime.spawn(work));
    (&mut task.0)
        .await
        .map_err(|e| LlmError::Refused(format!("the request's task ended: {e}")))
}

/// The error of a call the stopping run dropped.
fn stopping() -> LlmError {
    LlmError::Cancelled("the run is stopping".into())
}

/// A request being made: its answer, once there, for the identical requests waiting.
#[derive(Default)]
struct Pending {
    answer: Mutex<Option<Result<Completion, LlmError>>>,
    ready: tokio::sync::Notify,
}

impl Pending {
    /// The answer, once the request that leads has one.
    async fn answer(&self) -> Result<Completion, LlmError> {
        loop {
            let ready = self.ready.notified();
            tokio::pin!(ready);
            ready.as_mut().enable();
            if let Some(answer) = &*LlmHost::lock(&self.answer) {
                return answer.clone();
            }
            ready.await;
        }
    }
}

/// The one call of identical ones that is made: whatever becomes of it (an answer, an
/// error, or its future dropped), the calls waiting on it learn, and the key is free.
struct Leader<'a> {
    host: &'a LlmHost,
    key: &'a str,
    pending: Arc<Pending>,
}

impl Leader<'_> {
    fn finish(&self, result: Result<Completion, LlmError>) {
        let mut answer = LlmHost::lock(&self.pending.answer);
        if answer.is_none() {
            *answer = Some(result);
        }
        drop(answer);
        self.pending.ready.notify_waiters();
    }
}

impl Drop for Leader<'_> {
    fn drop(&mut self) {
        self.finish(Err(LlmError::Cancelled(
            "the identical request this one waited for was abandoned".into(),
        )));
        LlmHost::lock(&self.host.pending).remove(self.key);
    }
}

/// A concurrency slot and the rate limits' room, held while a request is in flight;
/// dropping it (the call answered, failed, or was abandoned) gives both back.
struct Slot<'a> {
    host: &'a LlmHost,
    expected: u64,
    spent: u64,
}

impl Drop for Slot<'_> {
    fn drop(&mut self) {
        self.host.release(self.expected, self.spent);
    }
}

/// The host's side of the `llm` capability for one workflow run.
pub struct LlmHost {
    config: LlmConfig,
    provider: Option<Arc<dyn Provider>>,
    replay: Option<HashMap<String, Completion>>,
    replay_embeddings: HashMap<String, Embeddings>,
    record: Option<Mutex<std::fs::File>>,
    cache: Mutex<HashMap<String, Completion>>,
    embedding_cache: Mutex<HashMap<String, Embeddings>>,
    /// Requests being made now, by key: an identical request waits for that answer
    /// instead of paying for its own.
    pending: Mutex<HashMap<String, Arc<Pending>>>,
    usage: Mutex<Usage>,
    /// Tokens the calls in flight hold against the budgets (taken after `usage`).
    reserved: Mutex<Reserved>,
    limits: Mutex<Limits>,
    /// Requests in flight at most (`max_concurrency`), waited for in order; closed when
    /// the run stops.
    slots: tokio::sync::Semaphore,
    /// Woken when the rate limits' room changes (a call ends).
    room: tokio::sync::Notify,
    /// Woken when the run begins stopping.
    stop: tokio::sync::Notify,
    exhausted: std::sync::atomic::AtomicBool,
    /// Set by the first call that finds the provider out of reach; later calls fail at
    /// once instead of each waiting out its own retries.
    outage: Mutex<Option<Outage>>,
    /// The rate limits' window: a minute (shorter only in this module's tests).
    window: Duration,
    /// The run is stopping: calls in flight are dropped and no new one starts.
    cancelled: std::sync::atomic::AtomicBool,
}

impl std::fmt::Debug for LlmHost {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LlmHost")
            .field("base_url", &self.config.base_url)
            .field("model", &self.config.model)
            .field("replaying", &self.replay.is_some())
            .finish()
    }
}

impl LlmHost {
    /// A host calling `provider` under `config` (with `replay`, answering from a file:
    /// a request it has no answer for goes to `provider` if there is one, and is refused
    /// if not; with `record`, appending every exchange to a file).
    pub fn new(
        config: LlmConfig,
        provider: Option<Box<dyn Provider>>,
        replay: Option<&Path>,
        record: Option<&Path>,
    ) -> Result<Self, LlmSetupError> {
        let mut replay_embeddings = HashMap::new();
        let replay = match replay {
            Some(path) => {
                let text = std::fs::read_to_string(path).map_err(|e| LlmSetupError::Replay {
                    path: path.to_path_buf(),
                    message: e.to_string(),
                })?;
                let mut answers = HashMap::new();
                for (i, line) in text
                    .lines()
                    .enumerate()
                    .filter(|(_, l)| !l.trim().is_empty())
                {
                    let e: TapeLine =
                        serde_json::from_str(line).map_err(|e| LlmSetupError::Replay {
                            path: path.to_path_buf(),
                            message: format!("line {}: {e}", i + 1),
                        })?;
                    match e {
                        TapeLine::Completion(e) => {
                            answers.insert(e.key, e.completion);
                        }
                        TapeLine::Embedding(e) => {
                            replay_embeddings.insert(e.embedding_key, e.embeddings);
                        }
                    }
                }
                Some(answers)
            }
            None => None,
        };
        let record = match record {
            Some(path) => Some(Mutex::new(
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(path)
                    .map_err(|source| LlmSetupError::Record {
                        path: path.to_path_buf(),
                        source,
                    })?,
            )),
            None => None,
        };
        let concurrency = config.max_concurrency.max(1);
        Ok(Self {
            config,
            provider: provider.map(Arc::from),
            replay,
            replay_embeddings,
            record,
            cache: Mutex::new(HashMap::new()),
            embedding_cache: Mutex::new(HashMap::new()),
            pending: Mutex::new(HashMap::new()),
            usage: Mutex::new(Usage::default()),
            reserved: Mutex::new(Reserved::default()),
            limits: Mutex::new(Limits {
                requests: VecDeque::new(),
                tokens: VecDeque::new(),
                reserved: 0,
            }),
            slots: tokio::sync::Semaphore::new(concurrency),
            room: tokio::sync::Notify::new(),
            stop: tokio::sync::Notify::new(),
            exhausted: std::sync::atomic::AtomicBool::new(false),
            outage: Mutex::new(None),
            window: Duration::from_secs(60),
            cancelled: std::sync::atomic::AtomicBool::new(false),
        })
    }

    /// The configuration in force.
    pub fn config(&self) -> &LlmConfig {
        &self.config
    }

    /// Whether a token budget stopped a call (the run then ends `budget_exhausted`).
    pub fn exhausted(&self) -> bool {
        self.exhausted.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Refuse new calls and drop every call made (`LlmError::Cancelled`): those waiting
    /// for a slot, for the rate limits or for an identical request's answer, and those on
    /// the wire (their requests are abandoned). The run is stopping, and their
    /// invocations go back to the queue for `resume`.
    pub fn cancel(&self) {
        self.cancelled
            .store(true, std::sync::atomic::Ordering::SeqCst);
        self.slots.close();
        self.stop.notify_waiters();
    }

    fn check_cancelled(&self) -> Result<(), LlmError> {
        if self.cancelled.load(std::sync::atomic::Ordering::SeqCst) {
            Err(stopping())
        } else {
            Ok(())
        }
    }

    /// `work`, unless the run starts stopping ([`LlmError::Cancelled`]) or `deadline`
    /// passes ([`LlmError::Timeout`]) first; either way `work` is dropped.
    async fn bounded<T>(
        &self,
        deadline: Option<Instant>,
        work: impl Future<Output = Result<T, LlmError>>,
    ) -> Result<T, LlmError> {
        let stop = self.stop.notified();
        tokio::pin!(stop);
        stop.as_mut().enable();
        self.check_cancelled()?;
        let late = async {
            match deadline {
                Some(d) => tokio::time::sleep_until(d.into()).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            biased;
            _ = &mut stop => Err(stopping()),
            _ = late => Err(past_deadline()),
            result = work => result,
        }
    }

    /// Run `work` (a call of this host) to its end from code that is not async: on a
    /// multi-threaded tokio runtime's worker the thread is handed over meanwhile
    /// (`block_in_place`); outside any runtime, a small one is made for the call.
    pub(crate) fn block_on<T>(
        work: impl Future<Output = Result<T, LlmError>>,
    ) -> Result<T, LlmError> {
        use tokio::runtime::{Handle, RuntimeFlavor};
        match Handle::try_current() {
            Ok(handle) if handle.runtime_flavor() == RuntimeFlavor::MultiThread => {
                tokio::task::block_in_place(|| handle.block_on(work))
            }
            Ok(_) => Err(LlmError::Denied(
                "a model call from a single-threaded runtime cannot wait".into(),
            )),
            Err(_) => tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|e| LlmError::Refused(format!("no runtime for the call: {e}")))?
                .block_on(work),
        }
    }

    /// Whether the provider was found out of reach (the run then stops claiming and ends
    /// `provider_unavailable`), and why.
    pub fn outage(&self) -> Option<Outage> {
        Self::lock(&self.outage).clone()
    }

    /// Fail at once when the provider is known to be out of reach.
    fn check_reachable(&self) -> Result<(), LlmError> {
        match &*Self::lock(&self.outage) {
            Some(o) => Err(LlmError::Unavailable(format!("{}: {}", o.url, o.error))),
            None => Ok(()),
        }
    }

    /// Note the provider out of reach when `result` says so (the first cause is kept).
    fn note_outage<T>(&self, result: &Result<T, LlmError>) {
        if let Err(LlmError::Unavailable(message)) = result {
            let mut outage = Self::lock(&self.outage);
            if outage.is_none() {
                tracing::warn!("language-model provider unavailable: {message}");
                *outage = Some(Outage {
                    url: self.config.base_url.clone(),
                    error: message.clone(),
                });
            }
        }
    }

    /// Continue from `usage`, what the run spent before it was interrupted: its budgets
    /// are the run's, not the process's.
    pub fn restore(&self, usage: Usage) {
        *Self::lock(&self.usage) = usage;
    }

    /// Tokens spent so far.
    pub fn usage(&self) -> Usage {
        self.usage.lock().map(|u| u.clone()).unwrap_or_default()
    }

    fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
        m.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Complete a request made by `agent` serving `phase`, giving up at `deadline` (the
    /// invocation's: waiting for a slot, for an identical request's answer, and the
    /// request itself all end there). Every wait is a future: a call waiting holds no
    /// thread, and a call dropped gives back what it held.
    pub async fn complete(
        &self,
        agent: &str,
        phase: &str,
        request: Request,
        deadline: Option<Instant>,
    ) -> Result<Completion, LlmError> {
        let began = Instant::now();
        // The model call's trace span (`chat {model}`, OpenTelemetry's generative-AI
        // conventions), a child of the invocation's; `account` records its tokens.
        let model = if request.model.is_empty() {
            &self.config.model
        } else {
            &request.model
        };
        let span = tracing::info_span!(
            "chat",
            otel.name = format!("chat {model}").as_str(),
            otel.kind = "client",
            otel.status_code = tracing::field::Empty,
            gen_ai.operation.name = "chat",
            gen_ai.request.model = model.as_str(),
            gen_ai.agent.name = agent,
            gen_ai.usage.input_tokens = tracing::field::Empty,
            gen_ai.usage.output_tokens = tracing::field::Empty,
            error.type = tracing::field::Empty,
        );
        let answer = self
            .complete_timed(agent, phase, request, deadline)
            .instrument(span.clone())
            .await;
        if let Err(e) = &answer {
            span.record("otel.status_code", "ERROR");
            span.record("error.type", e.class());
        }
        let ms = u64::try_from(began.elapsed().as_millis()).unwrap_or(u64::MAX);
        let mut u = Self::lock(&self.usage);
        match u.model_ms_by_agent.get_mut(agent) {
            Some(n) => *n = n.saturating_add(ms),
            None => {
                u.model_ms_by_agent.insert(agent.to_string(), ms);
            }
        }
        answer
    }

    async fn complete_timed(
        &self,
        agent: &str,
        phase: &str,
        mut request: Request,
        deadline: Option<Instant>,
    ) -> Result<Completion, LlmError> {
        if request.model.is_empty() {
            request.model = self.config.model.clone();
        }
        let cap = request.max_tokens.unwrap_or(0) as u64;
        let expected = cap + estimate_tokens(&request.messages);
        let _hold = self.reserve(agent, cap, expected)?;
        let key = request.key();
        if let Some(hit) = Self::lock(&self.cache).get(&key).cloned() {
            Self::lock(&self.usage).cached += 1;
            return Ok(hit);
        }
        if let Some(replay) = &self.replay {
            // A request the file has no answer for goes to the provider if one is
            // configured beside the file (a fallback), and is refused otherwise.
            match replay.get(&key).cloned() {
                Some(answer) => {
                    Self::lock(&self.usage).cached += 1;
                    self.account(agent, phase, &answer, false);
                    Self::lock(&self.cache).insert(key, answer.clone());
                    return Ok(answer);
                }
                None if self.provider.is_some() => {}
                None => {
                    return Err(LlmError::Denied(format!(
                        "replaying: the replay file has no answer for this request (key {key}); record it first"
                    )));
                }
            }
        }
        let provider = self.provider.as_ref().ok_or_else(|| {
            LlmError::Denied(
                "no language-model provider is configured: set [llm] base_url and model, or MURMUR_LLM_BASE_URL and MURMUR_LLM_MODEL".into(),
            )
        })?;
        self.check_reachable()?;
        // One request per key at a time: an identical request already on its way is
        // waited for and its answer shared (counted as cached), never paid twice.
        let (pending, first) = {
            let mut p = Self::lock(&self.pending);
            match p.get(&key) {
                Some(waiting) => (waiting.clone(), false),
                None => {
                    let made = Arc::new(Pending::default());
                    p.insert(key.clone(), made.clone());
                    (made, true)
                }
            }
        };
        if !first {
            let shared = self
                .bounded(deadline, async { pending.answer().await })
                .await?;
            // As a cache hit: not paid for, so not counted against a budget.
            Self::lock(&self.usage).cached += 1;
            return Ok(shared);
        }
        let leader = Leader {
            host: self,
            key: &key,
            pending,
        };
        // The provider drops the request once it is written out; a copy is kept only
        // to be recorded.
        let recorded = self.record.is_some().then(|| request.clone());
        let result = self
            .bounded(deadline, async move {
                let mut slot = self.acquire(expected, deadline).await?;
                self.check_reachable()?;
                let provider = provider.clone();
                let result =
                    off_fiber(async move { provider.complete(request, deadline).await }).await?;
                slot.spent = result.as_ref().map_or(0, |c| {
                    u64::from(c.prompt_tokens) + u64::from(c.completion_tokens)
                });
                result
            })
            .await;
        self.note_outage(&result);
        if let Ok(answer) = &result {
            Self::lock(&self.cache).insert(key.clone(), answer.clone());
        }
        leader.finish(result.clone());
        drop(leader);
        let answer = result?;
        self.account(agent, phase, &answer, true);
        if let Some(request) = recorded {
            self.record_line(&Exchange {
                key: key.clone(),
                request,
                completion: answer.clone(),
            });
        }
        Ok(answer)
    }

    /// Embed texts (the configured embedding model) on the host's behalf (deduplication,
    /// routing). Embeddings go the way completions do: the workflow's token budget, the
    /// cache, the replay file (offline, the same answers), the concurrency and rate
    /// limits, the record file; their tokens count for the host (`by_agent["host"]`).
    pub async fn embed(
        &self,
        texts: &[String],
        deadline: Option<Instant>,
    ) -> Result<Vec<Vec<f32>>, LlmError> {
        let model = self
            .config
            .embedding_model
            .as_ref()
            .ok_or_else(|| LlmError::Denied("no [llm] embedding_model is configured".into()))?;
        let expected: u64 = texts.iter().map(|t| t.len() as u64 / 4 + 1).sum();
        let _hold = self.reserve(HOST, 0, expected)?;
        let key = embedding_key(model, texts);
        if let Some(hit) = Self::lock(&self.embedding_cache).get(&key).cloned() {
            Self::lock(&self.usage).cached += 1;
            return Ok(hit.vectors);
        }
        if self.replay.is_some() {
            let answer = self.replay_embeddings.get(&key).cloned().ok_or_else(|| {
                LlmError::Denied(format!(
                    "replaying: the replay file has no embeddings for this request (key {key}); record it first"
                ))
            })?;
            Self::lock(&self.usage).cached += 1;
            Self::lock(&self.embedding_cache).insert(key, answer.clone());
            return Ok(answer.vectors);
        }
        let provider = self
            .provider
            .as_ref()
            .ok_or_else(|| LlmError::Denied("no language-model provider is configured".into()))?;
        self.check_reachable()?;
        let result = self
            .bounded(deadline, async {
                let mut slot = self.acquire(expected, deadline).await?;
                self.check_reachable()?;
                let (provider, model, texts) = (provider.clone(), model.clone(), texts.to_vec());
                let result =
                    off_fiber(async move { provider.embed(&model, &texts, deadline).await })
                        .await?;
                slot.spent = result.as_ref().map_or(0, |e| u64::from(e.prompt_tokens));
                result
            })
            .await;
        self.note_outage(&result);
        let answer = result?;
        let spent = Completion {
            content: String::new(),
            prompt_tokens: answer.prompt_tokens,
            completion_tokens: 0,
        };
        self.account(HOST, "embeddings", &spent, true);
        if self.record.is_some() {
            self.record_line(&EmbeddingExchange {
                embedding_key: key.clone(),
                model: model.clone(),
                texts: texts.to_vec(),
                embeddings: answer.clone(),
            });
        }
        Self::lock(&self.embedding_cache).insert(key, answer.clone());
        Ok(answer.vectors)
    }

    /// Append one exchange to the record file, if there is one.
    fn record_line(&self, exchange: &impl Serialize) {
        if let Some(file) = &self.record {
            let line = serde_json::to_string(exchange).unwrap_or_default();
            let mut f = Self::lock(file);
            let _ = writeln!(f, "{line}");
            let _ = f.flush();
        }
    }

    /// Check the budgets before a call that asks for at most `cap` tokens, and hold
    /// `expected` (its cap and its prompt's estimate) against them while it is in flight:
    /// a call passes when what was spent, what the calls in flight hold and its own cap
    /// stay under each budget, so calls made at once cannot all pass a budget only some
    /// of them fit. The hold ends when the call does (its real cost is in the usage by
    /// then).
    fn reserve(&self, agent: &str, cap: u64, expected: u64) -> Result<Hold<'_>, LlmError> {
        let usage = Self::lock(&self.usage);
        let mut held = Self::lock(&self.reserved);
        let budget = self.config.budget_tokens;
        if budget > 0 && usage.total() + held.total + cap >= budget {
            self.exhausted
                .store(true, std::sync::atomic::Ordering::Relaxed);
            return Err(LlmError::BudgetExhausted(format!(
                "the workflow's budget of {budget} tokens is spent ({} used{})",
                usage.total(),
                in_flight_note(held.total)
            )));
        }
        if let Some(limit) = self.config.agent_budget_tokens.get(agent) {
            let used = usage.by_agent.get(agent).copied().unwrap_or(0);
            let in_flight = held.by_agent.get(agent).copied().unwrap_or(0);
            if used + in_flight + cap >= *limit {
                return Err(LlmError::BudgetExhausted(format!(
                    "agent '{agent}' has spent its budget of {limit} tokens ({used} used{})",
                    in_flight_note(in_flight)
                )));
            }
        }
        held.total += expected;
        *held.by_agent.entry(agent.to_string()).or_default() += expected;
        Ok(Hold {
            host: self,
            agent: agent.to_string(),
            tokens: expected,
        })
    }

    fn account(&self, agent: &str, phase: &str, c: &Completion, paid: bool) {
        let tokens = u64::from(c.prompt_tokens) + u64::from(c.completion_tokens);
        // The tokens the run counts are the ones its trace reports (the `chat` span).
        let span = tracing::Span::current();
        span.record("gen_ai.usage.input_tokens", c.prompt_tokens);
        span.record("gen_ai.usage.output_tokens", c.completion_tokens);
        let mut u = Self::lock(&self.usage);
        if paid {
            u.calls += 1;
        }
        u.prompt_tokens += u64::from(c.prompt_tokens);
        u.completion_tokens += u64::from(c.completion_tokens);
        *u.by_agent.entry(agent.to_string()).or_default() += tokens;
        *u.by_phase.entry(phase.to_string()).or_default() += tokens;
    }

    /// Wait for a concurrency slot (in arrival order), then for the rate limits to allow
    /// one more request. The caller bounds the wait by the deadline and the run's stop.
    async fn acquire(
        &self,
        expected_tokens: u64,
        deadline: Option<Instant>,
    ) -> Result<Slot<'_>, LlmError> {
        let permit = self.slots.acquire().await.map_err(|_| stopping())?;
        // The permit is given back by `release`, with the rate limits' room.
        permit.forget();
        let mut slot = Slot {
            host: self,
            expected: 0,
            spent: 0,
        };
        let minute = self.window;
        loop {
            let room = self.room.notified();
            tokio::pin!(room);
            room.as_mut().enable();
            let wait = {
                let mut l = Self::lock(&self.limits);
                let now = Instant::now();
                while l
                    .requests
                    .front()
                    .is_some_and(|t| now.duration_since(*t) >= minute)
                {
                    l.requests.pop_front();
                }
                while l
                    .tokens
                    .front()
                    .is_some_and(|(t, _)| now.duration_since(*t) >= minute)
                {
                    l.tokens.pop_front();
                }
                let rpm = self.config.requests_per_minute as usize;
                let tpm = self.config.tokens_per_minute;
                let tokens: u64 = l.tokens.iter().map(|(_, n)| n).sum();
                let rate_ok = rpm == 0 || l.requests.len() < rpm;
                // A call bigger than the whole limit still goes, alone.
                let tokens_ok = tpm == 0
                    || tokens + l.reserved + expected_tokens <= tpm
                    || (l.tokens.is_empty() && l.reserved == 0);
                if rate_ok && tokens_ok {
                    l.reserved += expected_tokens;
                    l.requests.push_back(now);
                    slot.expected = expected_tokens;
                    return Ok(slot);
                }
                if deadline.is_some_and(|d| now >= d) {
                    return Err(past_deadline());
                }
                // Wake when the oldest entry leaves the window (or a call ends).
                l.requests
                    .front()
                    .copied()
                    .into_iter()
                    .chain(l.tokens.front().map(|(t, _)| *t))
                    .min()
                    .map(|t| minute.saturating_sub(now.duration_since(t)))
                    .unwrap_or(Duration::from_millis(50))
                    .max(Duration::from_millis(1))
            };
            tokio::select! {
                _ = &mut room => {}
                _ = tokio::time::sleep(wait) => {}
            }
        }
    }

    /// Free what `acquire` took: the concurrency slot, and the call's reservation, which
    /// becomes what it `spent` in the same step, so no other call slips in between.
    fn release(&self, expected_tokens: u64, spent: u64) {
        {
            let mut l = Self::lock(&self.limits);
            l.reserved = l.reserved.saturating_sub(expected_tokens);
            if spent > 0 {
                l.tokens.push_back((Instant::now(), spent));
            }
        }
        self.slots.add_permits(1);
        self.room.notify_waiters();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// The schema is kept as text, but every byte the host writes from it — the request
    /// body's schema, the cache and replay key, a record file's line — is what the parsed
    /// tree wrote before, so recorded runs still replay.
    #[test]
    fn a_schema_is_written_exactly_as_its_parsed_tree_was() {
        let text = r#"{ "type": "object",
            "required": ["passed"], "properties": {"passed": {"type": "boolean"}} }"#;
        let tree: serde_json::Value = serde_json::from_str(text).expect("json");
        let schema = JsonSchema::parse(text).expect("schema");
        assert_eq!(
            schema.as_str(),
            serde_json::to_string(&tree).expect("write")
        );
        let request = |json_schema| Request {
            model: "m".into(),
            messages: vec![Message {
                role: "user".into(),
                content: "check".into(),
            }],
            json_schema,
            max_tokens: None,
            temperature: None,
        };
        let with_text = request(Some(schema));
        // What the request wrote with the schema as a tree: its fields in order, the
        // tree's keys sorted.
        let as_before = format!(
            r#"{{"model":"m","messages":[{{"role":"user","content":"check"}}],"json_schema":{},"max_tokens":null,"temperature":null}}"#,
            serde_json::to_string(&tree).expect("write")
        );
        assert_eq!(serde_json::to_string(&with_text).expect("write"), as_before);
        let digest = Sha256::digest(as_before.as_bytes());
        let key: String = digest.iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(with_text.key(), key);
        // A line written by hand, spaced differently, reads back as the same request.
        let spaced = as_before.replace(',', ", ");
        let read: Request = serde_json::from_str(&spaced).expect("read");
        assert_eq!(read, with_text);
        assert!(JsonSchema::parse("{not json").is_err());
    }

    /// A provider standing in for a paid API: answers at once, `tokens` a call, and
    /// notes when each call arrived and how many were in flight.
    struct Clock {
        tokens: u32,
        hold: Duration,
        calls: Mutex<Vec<Instant>>,
        in_flight: AtomicUsize,
        most: AtomicUsize,
    }

    impl Clock {
        fn new(tokens: u32, hold: Duration) -> Arc<Self> {
            Arc::new(Self {
                tokens,
                hold,
                calls: Mutex::new(Vec::new()),
                in_flight: AtomicUsize::new(0),
                most: AtomicUsize::new(0),
            })
        }
    }

    impl Provider for Arc<Clock> {
        fn complete<'a>(
            &'a self,
            _: Request,
            _: Option<Instant>,
        ) -> BoxFuture<'a, Result<Completion, LlmError>> {
            Box::pin(async move {
                let now = self.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
                self.most.fetch_max(now, Ordering::SeqCst);
                self.calls.lock().expect("lock").push(Instant::now());
                tokio::time::sleep(self.hold).await;
                self.in_flight.fetch_sub(1, Ordering::SeqCst);
                Ok(Completion {
                    content: "{}".into(),
                    prompt_tokens: self.tokens / 2,
                    completion_tokens: self.tokens - self.tokens / 2,
                })
            })
        }
        fn embed<'a>(
            &'a self,
            _: &'a str,
            _: &'a [String],
            _: Option<Instant>,
        ) -> BoxFuture<'a, Result<Embeddings, LlmError>> {
            Box::pin(async { Err(LlmError::Denied("no embeddings here".into())) })
        }
    }

    const WINDOW: Duration = Duration::from_millis(300);

    /// `n` distinct requests at once; the host's window is [`WINDOW`].
    fn burst(config: LlmConfig, clock: &Arc<Clock>, n: usize) -> Duration {
        let mut host =
            LlmHost::new(config, Some(Box::new(clock.clone())), None, None).expect("host");
        host.window = WINDOW;
        let host = Arc::new(host);
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("runtime");
        let started = Instant::now();
        let calls: Vec<_> = (0..n)
            .map(|i| {
                let host = host.clone();
                runtime.spawn(async move {
                    let request = Request {
                        model: "m".into(),
                        messages: vec![Message {
                            role: "user".into(),
                            content: format!("request {i}"),
                        }],
                        json_schema: None,
                        max_tokens: Some(55),
                        temperature: None,
                    };
                    host.complete("agent", "analysis", request, None)
                        .await
                        .expect("answer")
                })
            })
            .collect();
        runtime.block_on(async {
            for call in calls {
                call.await.expect("call");
            }
        });
        started.elapsed()
    }

    /// The most calls that arrived within any one window.
    fn busiest_window(calls: &[Instant]) -> usize {
        calls
            .iter()
            .map(|start| {
                calls
                    .iter()
                    .filter(|t| **t >= *start && t.duration_since(*start) < WINDOW)
                    .count()
            })
            .max()
            .unwrap_or(0)
    }

    #[test]
    fn requests_per_minute_never_lets_more_calls_into_one_window() {
        let clock = Clock::new(10, Duration::ZERO);
        let config = LlmConfig {
            requests_per_minute: 2,
            max_concurrency: 8,
            ..LlmConfig::default()
        };
        let took = burst(config, &clock, 5);
        let calls = clock.calls.lock().expect("lock").clone();
        assert_eq!(calls.len(), 5);
        assert_eq!(busiest_window(&calls), 2, "two a window");
        // Five calls, two a window: the fifth waits two windows.
        assert!(took >= WINDOW * 2, "{took:?}");
    }

    #[test]
    fn tokens_per_minute_holds_a_call_until_the_window_has_room() {
        // 60 tokens a call (up to 55 asked for, ~6 of prompt) against 100 a window: one
        // call a window, even when all three ask at once.
        let clock = Clock::new(60, Duration::ZERO);
        let config = LlmConfig {
            tokens_per_minute: 100,
            max_concurrency: 8,
            ..LlmConfig::default()
        };
        let took = burst(config, &clock, 3);
        let calls = clock.calls.lock().expect("lock").clone();
        assert_eq!(calls.len(), 3);
        assert_eq!(busiest_window(&calls), 1, "60 + 60 would pass 100");
        assert!(took >= WINDOW * 2, "{took:?}");
    }

    #[test]
    fn max_concurrency_bounds_the_calls_in_flight() {
        let clock = Clock::new(10, Duration::from_millis(30));
        let config = LlmConfig {
            max_concurrency: 2,
            ..LlmConfig::default()
        };
        burst(config, &clock, 6);
        assert_eq!(clock.calls.lock().expect("lock").len(), 6);
        assert_eq!(clock.most.load(Ordering::SeqCst), 2);
    }
}
