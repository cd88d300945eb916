//! The per-invocation store state and the host imports it serves.
//!
//! Each invocation gets a fresh `Store` holding one of these: its memory limiter, its
//! deadline, its identity (for visibility) and its view of the blackboard. Nothing
//! survives the call, so a faulted instance can never be reused.

use super::bindings::types::{self, HostError, Level};
use super::bindings::{blackboard, kv, llm, log};
use super::capability::Capability;
use super::convert;
use crate::artifact::{ArtifactId, Viewer};
use crate::blackboard::{ArtifactQuery, Store};
use std::sync::Arc;
use std::time::Instant;
use wasmtime::ResourceLimiter;
use wasmtime::component::ResourceTable;
use wasmtime_wasi::p2::pipe::MemoryOutputPipe;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

/// Bytes of a guest's stdout and stderr kept per call.
pub const MAX_GUEST_OUTPUT: usize = 64 << 10;

/// Most log lines one invocation may write; later lines are counted and dropped.
pub const MAX_LOG_LINES: u32 = 1_000;
/// Longest log message kept, in bytes.
pub const MAX_LOG_BYTES: usize = 16 * 1024;
/// Most artifacts one blackboard query returns.
pub const MAX_QUERY_RESULTS: usize = 1_000;

/// Caps linear-memory and table growth, remembering whether it refused memory.
pub struct MemoryLimiter {
    /// Bytes a memory may grow to.
    pub max_bytes: usize,
    /// Set when a growth beyond `max_bytes` was refused.
    pub denied: bool,
}

impl ResourceLimiter for MemoryLimiter {
    fn memory_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired > self.max_bytes {
            self.denied = true;
            return Ok(false);
        }
        Ok(true)
    }
    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(desired <= 1_000_000)
    }
}

/// Read access to the blackboard for one caller.
#[derive(Clone)]
pub struct BoardAccess {
    /// The store.
    pub store: Arc<dyn Store>,
    /// The caller's workflow.
    pub workflow_id: String,
    /// Labels the caller holds.
    pub labels: Vec<String>,
    /// The caller's tenant.
    pub tenant: Option<String>,
    /// Artifacts one query returns at most.
    pub max_results: usize,
    /// Payload bytes one query returns at most.
    pub max_bytes: usize,
    /// Whether `blackboard` is granted.
    pub read: bool,
    /// Whether `kv` is granted.
    pub kv: bool,
    /// The language-model host, when `llm` is granted and a provider is configured.
    pub llm: Option<LlmAccess>,
    /// Its `http` grant, if it has one.
    pub http: Option<Arc<crate::egress::HttpGrant>>,
}

/// A call's access to the language-model host.
#[derive(Clone)]
pub struct LlmAccess {
    /// The host.
    pub host: Arc<crate::llm::LlmHost>,
    /// The phase the call serves (for accounting).
    pub phase: String,
    /// Set when a call could not be made for a reason not the invocation's (the provider
    /// out of reach, the run stopping): its failure then sends it back to the queue.
    pub given_back: Arc<std::sync::atomic::AtomicBool>,
}

impl LlmAccess {
    /// The host's answer, noting a call not made for a reason not the invocation's, and
    /// turning the error into the WIT's.
    fn answer<T>(&self, result: Result<T, crate::llm::LlmError>) -> Result<T, llm::LlmError> {
        if let Err(crate::llm::LlmError::Unavailable(_) | crate::llm::LlmError::Cancelled(_)) =
            &result
        {
            self.given_back
                .store(true, std::sync::atomic::Ordering::Relaxed);
        }
        result.map_err(llm_error)
    }
}

impl BoardAccess {
    /// Blackboard access for `plugin` in `workflow_id`, if its manifest grants it.
    pub fn granted(
        store: &Arc<dyn Store>,
        workflow_id: &str,
        plugin: &super::LoadedPlugin,
    ) -> Option<Self> {
        let (read, kv) = (
            plugin.granted(Capability::Blackboard),
            plugin.granted(Capability::Kv),
        );
        (read || kv || plugin.granted(Capability::Llm) || plugin.http.is_some()).then(|| {
            BoardAccess {
                store: store.clone(),
                workflow_id: workflow_id.to_string(),
                labels: plugin.labels.clone(),
                tenant: plugin.tenant.clone(),
                max_results: plugin.limits.max_query_results,
                max_bytes: plugin.limits.max_query_bytes,
                read,
                kv,
                llm: None,
                http: plugin.http.clone(),
            }
        })
    }
}

/// What the `context` import answers during one call.
#[derive(Default)]
pub enum ContextSource {
    /// No context: `describe()`, a warm instance between calls, a plugin that is not an
    /// agent.
    #[default]
    Empty,
    /// Chosen already: the list the invocation was handed, or the answer to an earlier
    /// `get` of the same call. Shared: each `get` lowers it into the guest from here.
    Ready(Arc<Vec<types::Artifact>>),
    /// Chosen at the first `get` (an agent that reads its context on demand).
    OnDemand(Box<dyn FnOnce() -> Vec<types::Artifact> + Send>),
}

/// State of one invocation's store.
pub struct InvocationState {
    /// The guest's WASI context, made at its first WASI call: most guests (Rust built
    /// for `wasm32-unknown-unknown`) never make one, and a fresh instance per call would
    /// otherwise build one per call.
    wasi: Option<WasiCtx>,
    /// The guest's stdout and stderr, captured (made with the WASI context).
    output: Option<MemoryOutputPipe>,
    /// The manifest's `read_dirs`, for the WASI context.
    read_dirs: Arc<[(String, std::path::PathBuf)]>,
    pub(crate) table: ResourceTable,
    /// wasi:http's context (its field limits), and this call's requests.
    http_ctx: wasmtime_wasi_http::WasiHttpCtx,
    pub(crate) http: crate::egress::HttpCall,
    pub(crate) limiter: MemoryLimiter,
    pub(crate) plugin: Arc<str>,
    pub(crate) deadline: Instant,
    pub(crate) log_lines: u32,
    pub(crate) board: Option<BoardAccess>,
    /// What the `context` import answers.
    pub(crate) context: ContextSource,
    /// A reach beyond the plugin's grants, seen during the call: the call faults `denied`.
    pub(crate) violation: Option<String>,
    /// A host call (a model's answer) ran past the invocation's deadline: the call ends
    /// `timeout`, whatever the guest made of the error it got.
    pub(crate) past_deadline: bool,
    /// The last error-level line the guest logged (a panic message, typically), so a trap
    /// is reported with the guest's own words rather than a bare `unreachable`.
    pub(crate) last_error: Option<String>,
    /// Why the host refused a call the guest made (no grant, no model provider): if the
    /// call then traps (an exception its language let escape), it faults
    /// `denied` with this reason rather than a bare trap.
    pub(crate) refused: std::cell::Cell<Option<String>>,
}

impl InvocationState {
    /// State for a call of `plugin` with `max_memory` bytes and the given deadline.
    pub fn new(
        plugin: Arc<str>,
        max_memory: usize,
        deadline: Instant,
        board: Option<BoardAccess>,
        read_dirs: Arc<[(String, std::path::PathBuf)]>,
    ) -> Self {
        let http =
            crate::egress::HttpCall::new(board.as_ref().and_then(|b| b.http.clone()), deadline);
        Self {
            wasi: None,
            output: None,
            read_dirs,
            table: ResourceTable::new(),
            http_ctx: wasmtime_wasi_http::WasiHttpCtx::new(),
            http,
            limiter: MemoryLimiter {
                max_bytes: max_memory,
                denied: false,
            },
            plugin,
            deadline,
            log_lines: 0,
            board,
            context: ContextSource::Empty,
            violation: None,
            past_deadline: false,
            last_error: None,
            refused: Default::default(),
        }
    }

    fn check_deadline(&self) -> Result<(), HostError> {
        if Instant::now() >= self.deadline {
            return Err(HostError::Timeout(
                "the invocation's deadline has passed".into(),
            ));
        }
        Ok(())
    }

    /// Bytes the guest has printed to stdout and stderr so far.
    pub(crate) fn printed_len(&self) -> usize {
        self.output.as_ref().map_or(0, |o| o.contents().len())
    }

    /// What the guest printed from byte `from` on.
    pub(crate) fn printed_since(&self, from: usize) -> String {
        match &self.output {
            Some(o) => {
                let contents = o.contents();
                String::from_utf8_lossy(contents.get(from..).unwrap_or_default()).into_owned()
            }
            None => String::new(),
        }
    }
}

/// A guest's WASI context, made at its first WASI call. WASI is linked for guests built
/// for wasm32-wasip2, with nothing granted: no files, no environment, no sockets, no
/// inherited stdio. What a guest writes to stdout or stderr (a JavaScript exception, a
/// Python traceback) goes to `output` and reaches the host's log under the plugin's name.
fn make_wasi(
    output: &mut Option<MemoryOutputPipe>,
    read_dirs: &[(String, std::path::PathBuf)],
    plugin: &str,
) -> WasiCtx {
    let pipe = output
        .get_or_insert_with(|| MemoryOutputPipe::new(MAX_GUEST_OUTPUT))
        .clone();
    let mut builder = WasiCtx::builder();
    builder.stdout(pipe.clone()).stderr(pipe);
    // The only files a guest sees: the manifest's `read_dirs`, read-only.
    for (guest, host) in read_dirs {
        if let Err(e) = builder.preopened_dir(host, guest, wasmtime_wasi::FsPerms::ReadOnly) {
            tracing::warn!(%plugin, "cannot open {} for the guest: {e}", host.display());
        }
    }
    builder.build()
}

impl WasiView for InvocationState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        let Self {
            wasi,
            output,
            read_dirs,
            plugin,
            table,
            ..
        } = self;
        WasiCtxView {
            ctx: wasi.get_or_insert_with(|| make_wasi(output, read_dirs, plugin)),
            table,
        }
    }
}

/// wasi:http for guests: every request goes through this call's [`crate::egress::HttpCall`],
/// which refuses all of them when the plugin has no `http` grant.
impl wasmtime_wasi_http::WasiHttpView for InvocationState {
    fn http(&mut self) -> wasmtime_wasi_http::WasiHttpCtxView<'_> {
        wasmtime_wasi_http::WasiHttpCtxView {
            ctx: &mut self.http_ctx,
            table: &mut self.table,
            hooks: &mut self.http,
        }
    }
}

impl types::Host for InvocationState {}

impl log::Host for InvocationState {
    fn log(&mut self, level: Level, message: String) {
        self.log_lines += 1;
        if self.log_lines > MAX_LOG_LINES {
            if self.log_lines == MAX_LOG_LINES + 1 {
                tracing::warn!(plugin = %self.plugin, "log limit of {MAX_LOG_LINES} lines reached; dropping the rest");
            }
            return;
        }
        let mut msg = message;
        if msg.len() > MAX_LOG_BYTES {
            let mut cut = MAX_LOG_BYTES;
            while !msg.is_char_boundary(cut) {
                cut -= 1;
            }
            msg.truncate(cut);
            msg.push('…');
        }
        if level == Level::Error {
            self.last_error = Some(msg.clone());
        }
        let plugin = &*self.plugin;
        match level {
            Level::Trace => tracing::trace!(target: "murmur::guest", plugin, "{msg}"),
            Level::Debug => tracing::debug!(target: "murmur::guest", plugin, "{msg}"),
            Level::Info => tracing::info!(target: "murmur::guest", plugin, "{msg}"),
            Level::Warn => tracing::warn!(target: "murmur::guest", plugin, "{msg}"),
            Level::Error => tracing::error!(target: "murmur::guest", plugin, "{msg}"),
        }
    }
}

impl InvocationState {
    /// After a call: the context its `get` answered goes back to this thread's copies
    /// for the next invocation (see `convert::Reuse`); nothing is left for the
    /// next call of this instance.
    pub(crate) fn done_with_context(&mut self) {
        if let ContextSource::Ready(list) = std::mem::take(&mut self.context)
            && let Ok(list) = Arc::try_unwrap(list)
        {
            super::convert::Reuse::give_back(list);
        }
    }

    /// The `context` import's answer: chosen at the first `get` of a call, the same list
    /// at later ones.
    fn context(&mut self) -> Arc<Vec<types::Artifact>> {
        let list = match std::mem::take(&mut self.context) {
            ContextSource::Empty => Arc::new(Vec::new()),
            ContextSource::Ready(list) => list,
            ContextSource::OnDemand(choose) => Arc::new(choose()),
        };
        self.context = ContextSource::Ready(list.clone());
        list
    }
}

/// Define the `context` interface in `linker`. By hand rather than through the bindings'
/// `Host` trait, whose `get` must return an owned list: the answer is lowered into the
/// guest from the list the call keeps (a reference count, not a copy of a dozen
/// artifacts), and that list goes back to the worker's copies when the call ends.
pub fn add_context_to_linker(
    linker: &mut wasmtime::component::Linker<InvocationState>,
) -> wasmtime::Result<()> {
    let interface = format!("murmur:plugin/context@{}", super::version::API_VERSION);
    linker.instance(&interface)?.func_wrap(
        "get",
        |mut store: wasmtime::StoreContextMut<'_, InvocationState>, (): ()| {
            Ok((store.data_mut().context(),))
        },
    )
}

impl blackboard::Host for InvocationState {
    fn query(&mut self, q: types::ArtifactQuery) -> Result<Vec<types::Artifact>, HostError> {
        self.check_deadline()?;
        let board = self
            .board
            .as_ref()
            .filter(|b| b.read)
            .ok_or_else(|| HostError::Denied(self.refuse("blackboard access not granted")))?;
        if let Some(other) = q.workflow_id.as_ref().filter(|w| **w != board.workflow_id) {
            let message = format!(
                "queried workflow '{other}'; a plugin may only read its own workflow's blackboard"
            );
            self.violation = Some(message.clone());
            return Err(HostError::Denied(message));
        }
        let query = ArtifactQuery {
            workflow_id: board.workflow_id.clone(),
            type_name: q.type_name,
            tags: q.tags,
            limit: (q.limit as usize)
                .min(board.max_results)
                .min(MAX_QUERY_RESULTS),
        };
        let viewer = Viewer {
            name: &self.plugin,
            labels: &board.labels,
            tenant: board.tenant.as_deref(),
            operator: false,
        };
        let found = board
            .store
            .query(&query, &viewer)
            .map_err(|e| HostError::Invalid(e.to_string()))?;
        // Newest last: keep the newest that fit in the byte budget.
        let mut bytes = 0usize;
        let mut out: Vec<types::Artifact> = Vec::new();
        for a in found.iter().rev() {
            let w = convert::artifact_to_wit(a);
            bytes += w.payload.len();
            if bytes > board.max_bytes {
                break;
            }
            out.push(w);
        }
        out.reverse();
        Ok(out)
    }

    fn get(&mut self, id: String) -> Result<Option<types::Artifact>, HostError> {
        self.check_deadline()?;
        let board = self
            .board
            .as_ref()
            .filter(|b| b.read)
            .ok_or_else(|| HostError::Denied(self.refuse("blackboard access not granted")))?;
        // Text that is no id names no artifact.
        let Some(id) = ArtifactId::parse(&id) else {
            return Ok(None);
        };
        let found = board
            .store
            .artifact(&id)
            .map_err(|e| HostError::Invalid(e.to_string()))?;
        let viewer = Viewer {
            name: &self.plugin,
            labels: &board.labels,
            tenant: board.tenant.as_deref(),
            operator: false,
        };
        // An artifact the caller may not see is indistinguishable from a missing one.
        Ok(found
            .filter(|a| a.workflow_id == board.workflow_id && a.visible_to(&viewer))
            .map(|a| convert::artifact_to_wit(&a)))
    }
}

/// Longest kv key, in bytes.
pub const MAX_KV_KEY: usize = 256;
/// Largest kv value, in bytes.
pub const MAX_KV_VALUE: usize = 64 << 10;
/// Most keys one plugin may hold in one workflow run.
pub const MAX_KV_KEYS: usize = 10_000;

impl InvocationState {
    fn kv_access(&self) -> Result<&BoardAccess, HostError> {
        self.check_deadline()?;
        self.board
            .as_ref()
            .filter(|b| b.kv)
            .ok_or_else(|| HostError::Denied(self.refuse("kv not granted")))
    }
}

impl kv::Host for InvocationState {
    fn get(&mut self, key: String) -> Result<Option<String>, HostError> {
        let b = self.kv_access()?;
        b.store
            .kv_get(&b.workflow_id, &self.plugin, &key)
            .map_err(|e| HostError::Invalid(e.to_string()))
    }

    fn set(&mut self, key: String, value: String) -> Result<(), HostError> {
        let b = self.kv_access()?;
        if key.len() > MAX_KV_KEY || value.len() > MAX_KV_VALUE {
            return Err(HostError::TooLarge(format!(
                "kv keys are at most {MAX_KV_KEY} bytes and values at most {MAX_KV_VALUE} (got {} and {})",
                key.len(),
                value.len()
            )));
        }
        let exists = b
            .store
            .kv_get(&b.workflow_id, &self.plugin, &key)
            .map_err(|e| HostError::Invalid(e.to_string()))?
            .is_some();
        if !exists
            && b.store
                .kv_keys(&b.workflow_id, &self.plugin, "")
                .map_err(|e| HostError::Invalid(e.to_string()))?
                .len()
                >= MAX_KV_KEYS
        {
            return Err(HostError::TooLarge(format!(
                "a plugin holds at most {MAX_KV_KEYS} kv keys"
            )));
        }
        b.store
            .kv_set(&b.workflow_id, &self.plugin, &key, Some(value))
            .map_err(|e| HostError::Invalid(e.to_string()))
    }

    fn delete(&mut self, key: String) -> Result<bool, HostError> {
        let b = self.kv_access()?;
        let existed = b
            .store
            .kv_get(&b.workflow_id, &self.plugin, &key)
            .map_err(|e| HostError::Invalid(e.to_string()))?
            .is_some();
        b.store
            .kv_set(&b.workflow_id, &self.plugin, &key, None)
            .map_err(|e| HostError::Invalid(e.to_string()))?;
        Ok(existed)
    }

    fn keys(&mut self, prefix: String) -> Result<Vec<String>, HostError> {
        let b = self.kv_access()?;
        b.store
            .kv_keys(&b.workflow_id, &self.plugin, &prefix)
            .map_err(|e| HostError::Invalid(e.to_string()))
    }
}

fn llm_error(e: crate::llm::LlmError) -> llm::LlmError {
    use crate::llm::LlmError as E;
    match e {
        E::RateLimited(m) => llm::LlmError::RateLimited(m),
        E::Timeout(m) => llm::LlmError::Timeout(m),
        E::Refused(m) => llm::LlmError::Refused(m),
        E::InvalidResponse(m) => llm::LlmError::InvalidResponse(m),
        E::BudgetExhausted(m) => llm::LlmError::BudgetExhausted(m),
        E::Denied(m) => llm::LlmError::Denied(m),
        // The WIT has no variant of its own for it: to the plugin, a refusal.
        e @ (E::Unavailable(_) | E::Cancelled(_)) => llm::LlmError::Refused(e.to_string()),
    }
}

impl InvocationState {
    /// Note that the host refused a call for `reason`, and hand the reason on.
    fn refuse(&self, reason: &str) -> String {
        self.refused.set(Some(reason.to_string()));
        reason.to_string()
    }

    fn llm_access(&self) -> Result<LlmAccess, llm::LlmError> {
        if Instant::now() >= self.deadline {
            return Err(llm::LlmError::Timeout(
                "the invocation's deadline has passed".into(),
            ));
        }
        self.board
            .as_ref()
            .and_then(|b| b.llm.clone())
            .ok_or_else(|| {
                llm::LlmError::Denied(self.refuse(
                    "no language-model provider is configured for this host: set [llm] base_url and model (or MURMUR_LLM_BASE_URL and MURMUR_LLM_MODEL)",
                ))
            })
    }
}

impl InvocationState {
    /// What a model's answer means for the call: a timeout with the invocation's deadline
    /// passed ends it; a refusal is noted (see [`InvocationState::refused`]).
    fn note_answer<T>(&mut self, answer: &Result<T, crate::llm::LlmError>) {
        match answer {
            Err(crate::llm::LlmError::Timeout(_)) if Instant::now() >= self.deadline => {
                self.past_deadline = true;
            }
            Err(crate::llm::LlmError::Denied(reason)) => {
                self.refuse(reason);
            }
            _ => {}
        }
    }
}

impl llm::Host for InvocationState {
    async fn complete(
        &mut self,
        req: llm::CompletionRequest,
    ) -> Result<llm::Completion, llm::LlmError> {
        let access = self.llm_access()?;
        let mut messages = Vec::with_capacity(req.messages.len() + 1);
        if !req.system.is_empty() {
            messages.push(crate::llm::Message {
                role: "system".into(),
                content: req.system,
            });
        }
        messages.extend(req.messages.into_iter().map(|m| crate::llm::Message {
            role: m.role,
            content: m.content,
        }));
        let json_schema = match req.json_schema {
            Some(text) => Some(
                crate::llm::JsonSchema::parse(&text)
                    .map_err(|e| llm::LlmError::Refused(format!("json-schema is not JSON: {e}")))?,
            ),
            None => None,
        };
        let request = crate::llm::Request {
            model: String::new(),
            messages,
            json_schema,
            max_tokens: req.max_tokens,
            temperature: req.temperature,
        };
        // The guest's fiber is suspended here until the answer comes: its thread serves
        // other invocations meanwhile.
        let answer = access
            .host
            .complete(&self.plugin, &access.phase, request, Some(self.deadline))
            .await;
        self.note_answer(&answer);
        let c = access.answer(answer)?;
        Ok(llm::Completion {
            content: c.content,
            prompt_tokens: c.prompt_tokens,
            completion_tokens: c.completion_tokens,
        })
    }

    async fn embed(&mut self, texts: Vec<String>) -> Result<Vec<Vec<f32>>, llm::LlmError> {
        let access = self.llm_access()?;
        let answer = access.host.embed(&texts, Some(self.deadline)).await;
        self.note_answer(&answer);
        access.answer(answer)
    }
}
