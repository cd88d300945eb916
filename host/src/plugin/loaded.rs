//! A loaded plugin: compiled, version-checked, linked (`InstancePre`), described.
//! Each call instantiates afresh from the `InstancePre` in a new store with the plugin's
//! limits; the instance is dropped after the call, faulted or not — unless the manifest
//! opts an agent into `limits.reuse`, which keeps healthy instances warm for later calls
//! of the same plugin (see [`PluginLimits::reuse`]).

use super::bindings::types::{self as wit, PluginKind};
use super::bindings::{agent, context_provider, retrospective, router, validator};
use super::cache::{CacheOutcome, sha256_hex};
use super::capability::Capability;
use super::engine::PluginEngine;
use super::fault::{Fault, classify};
use super::shape::Shape;
use super::spec::{PluginLimits, PluginSpec};
use super::state::{BoardAccess, ContextSource, InvocationState};
use super::version;
use super::world::World;
use retrospective::exports::murmur::plugin::retrospective_api::{
    LessonDraft, RetrospectiveInfo, RunReview,
};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};
use thiserror::Error;
use wasmtime::Store;

/// Deadline of the load-time `describe()` call.
const DESCRIBE_TIMEOUT: Duration = Duration::from_secs(5);
/// How many times loading instantiates a component whose memory image the kernel would not
/// seal yet (pauses of 20, 40, 80, 160 and 320 ms between tries: about 0.6 s in all).
const SEAL_TRIES: usize = 6;

/// Whether `err` is the kernel refusing, for now, to seal a memory image's memfd
/// (`EBUSY` from `fcntl(F_ADD_SEALS)`): a moment's contention, not the plugin's doing.
fn image_seal_was_busy(err: &wasmtime::Error) -> bool {
    err.chain().any(|cause| {
        cause
            .downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.raw_os_error() == Some(libc::EBUSY))
    })
}

/// Why a plugin could not be loaded.
#[derive(Debug, Error)]
pub enum LoadError {
    /// The component file could not be read.
    #[error("plugin '{plugin}': cannot read {}: {source}{hint}", path.display(), hint = if source.kind() == std::io::ErrorKind::NotFound { " (build it first: `murmur build` in its plugin project; in this repository, `cargo xtask build-plugins`)" } else { "" })]
    Read {
        /// Plugin name.
        plugin: String,
        /// Component path.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The file's sha256 differs from the manifest's pin.
    #[error("plugin '{plugin}': {} has sha256 {actual}, but the manifest pins {expected}; refusing to load it", path.display())]
    PinMismatch {
        /// Plugin name.
        plugin: String,
        /// Component path.
        path: PathBuf,
        /// Pinned hash.
        expected: String,
        /// Actual hash.
        actual: String,
    },
    /// Not a valid component, or the compiler refused it.
    #[error("plugin '{plugin}': {} is not a loadable WebAssembly component: {message}", path.display())]
    Compile {
        /// Plugin name.
        plugin: String,
        /// Component path.
        path: PathBuf,
        /// The compiler's message.
        message: String,
    },
    /// Built against an incompatible API version, or the wrong world.
    #[error("plugin '{plugin}' ({}): {message}", path.display())]
    Incompatible {
        /// Plugin name.
        plugin: String,
        /// Component path.
        path: PathBuf,
        /// What does not match.
        message: String,
    },
    /// Imports host interfaces its manifest does not grant (all of them named at once).
    #[error(
        "plugin '{plugin}' imports {}, which its manifest does not grant: {fix}",
        imports.join(" and ")
    )]
    NotGranted {
        /// Plugin name.
        plugin: String,
        /// The imports not granted.
        imports: Vec<String>,
        /// The capabilities (manifest `grants` entries) that would allow them.
        capabilities: Vec<Capability>,
        /// What to write in the manifest: a `grants` key, or entries for the one it has.
        fix: String,
    },
    /// Imports something the host does not provide.
    #[error("plugin '{plugin}': cannot be linked: {message}")]
    Link {
        /// Plugin name.
        plugin: String,
        /// The linker's message.
        message: String,
    },
    /// `describe()` faulted or answered nonsense.
    #[error("plugin '{plugin}': describe() failed: {message}")]
    Describe {
        /// Plugin name.
        plugin: String,
        /// What happened.
        message: String,
    },
}

enum Pre {
    Agent(agent::AgentPre<InvocationState>, HandleExport),
    Validator(validator::ValidatorPre<InvocationState>),
    Router(router::RouterPre<InvocationState>),
    ContextProvider(context_provider::ContextProviderPre<InvocationState>),
    Retrospective(retrospective::RetrospectivePre<InvocationState>),
}

/// An agent's `handle` export, found once per component so that an instance (fresh, or
/// made to be kept warm) is called without the generated bindings' per-instance lookup.
///
/// The bindings' `instantiate` looks up and type-checks every export of `agent-api` on
/// each new instance (comparing the WIT types field by field: 2% of a `--fresh` run),
/// although the types are a property of the component, not of the instance. The check
/// is done once, when the plugin is loaded: `describe()` instantiates the component
/// through the bindings, whose check covers `handle` too, and a plugin whose
/// `describe()` fails is never loaded.
struct HandleExport(wasmtime::component::ComponentExportIndex);

/// `handle`'s signature, as the bindings type it.
type HandleFunc<'a> = wasmtime::component::TypedFunc<
    (&'a wit::Invocation,),
    (Result<Vec<wit::Output>, wit::PluginError>,),
>;

impl HandleExport {
    /// The export index of `handle` in `agent-api`, named as the bindings name it.
    fn find(pre: &wasmtime::component::InstancePre<InvocationState>) -> wasmtime::Result<Self> {
        let component = pre.component();
        let interface = format!("murmur:plugin/agent-api@{}", version::API_VERSION);
        let (_, api) = component
            .get_export(None, &interface)
            .ok_or_else(|| wasmtime::Error::msg(format!("no exported interface `{interface}`")))?;
        let (_, handle) = component
            .get_export(Some(&api), "handle")
            .ok_or_else(|| wasmtime::Error::msg(format!("`{interface}` exports no `handle`")))?;
        Ok(Self(handle))
    }

    /// Instantiate `pre` in `store`; its `handle`.
    async fn instantiate(
        &self,
        pre: &agent::AgentPre<InvocationState>,
        store: &mut Store<InvocationState>,
    ) -> wasmtime::Result<Handle> {
        let instance = pre.instance_pre().instantiate_async(&mut *store).await?;
        instance
            .get_func(&mut *store, self.0)
            .map(Handle)
            .ok_or_else(|| wasmtime::Error::msg("the instance has no `handle` export"))
    }
}

/// The `handle` function of one agent instance (see [`HandleExport`]).
#[derive(Clone, Copy)]
struct Handle(wasmtime::component::Func);

impl Handle {
    /// Call it in `store`, the store of its instance.
    async fn call(
        self,
        store: &mut Store<InvocationState>,
        invocation: &wit::Invocation,
    ) -> wasmtime::Result<Result<Vec<wit::Output>, wit::PluginError>> {
        // SAFETY: the function is `handle` of an instance of the component whose `handle`
        // the bindings type-checked against these very types when `describe()` ran at
        // load (see `HandleExport`); every instance of a component has its types.
        let typed = unsafe { HandleFunc::new_unchecked(self.0) };
        let (result,) = typed.call_async(&mut *store, (invocation,)).await?;
        Ok(result)
    }
}

/// Why an invocation produced no outputs.
#[derive(Debug, Clone)]
pub enum InvokeError {
    /// The plugin returned an error (data, not a fault).
    Plugin(wit::PluginError),
    /// The plugin misbehaved.
    Fault(Fault),
}

/// A plugin ready to be invoked.
pub struct LoadedPlugin {
    /// The manifest name (the plugin's identity as a producer).
    pub name: Arc<str>,
    /// The world it implements.
    pub world: World,
    /// The component file.
    pub path: PathBuf,
    /// sha256 of the component file.
    pub sha256: String,
    /// Its limits.
    pub limits: PluginLimits,
    /// What `describe()` returned.
    pub info: wit::PluginInfo,
    /// The manifest `config` table, as JSON text.
    pub config_json: String,
    /// Labels granted (visibility).
    pub labels: Vec<String>,
    /// Tenant (visibility).
    pub tenant: Option<String>,
    /// Capabilities granted beyond `log`.
    pub grants: Vec<Capability>,
    /// An agent that reads its context on demand (`describe()` lists the capability
    /// `context`): it is handed no context, and the host chooses it only if the agent
    /// asks through the `context` import.
    pub context_on_demand: bool,
    /// Whether the component imports the `context` interface at all: if it does not,
    /// the host has nothing to prepare for the import.
    pub imports_context: bool,
    /// Read-only directories for WASI guests (guest path, host directory).
    pub read_dirs: Arc<[(String, PathBuf)]>,
    /// Its `http` grant, ready to serve requests (set by the workflow that loads it, which
    /// reads the grant's secrets and owns the run's recording).
    pub http: Option<Arc<crate::egress::HttpGrant>>,
    /// Whether the compiled component came from the cache.
    pub cache: CacheOutcome,
    /// Time to load (read, compile or deserialise, link, describe).
    pub load_time: Duration,
    pre: Pre,
    engine: wasmtime::Engine,
    fuel: bool,
    /// Warm agent instances waiting for their next call (`limits.reuse` > 0 only).
    warm: std::sync::Mutex<Vec<Warm>>,
}

/// An agent instance kept for its next call, and the calls it has served.
struct Warm {
    store: Store<InvocationState>,
    handle: Handle,
    calls: u32,
    /// The thread that used it last.
    thread: std::thread::ThreadId,
}

/// From warm instances `list`, the one thread `me` used last if there is one, else the
/// one returned last.
fn take_for<T>(
    list: &mut Vec<T>,
    thread: impl Fn(&T) -> std::thread::ThreadId,
    me: std::thread::ThreadId,
) -> Option<T> {
    match list.iter().rposition(|i| thread(i) == me) {
        Some(i) => Some(list.swap_remove(i)),
        None => list.pop(),
    }
}

impl LoadedPlugin {
    /// Load the plugin a manifest declares.
    pub fn load(host: &PluginEngine, spec: &PluginSpec) -> Result<Self, LoadError> {
        let compiled = Self::compile(host, &spec.name, &spec.path, spec.sha256.as_deref())?;
        Self::link(host, spec, compiled)
    }

    /// The first half of [`LoadedPlugin::load`]: read the component at `path`, check
    /// its sha256 against `pin`, compile it (or take it from the cache) and read its
    /// shape — what `murmur inspect` needs to learn a component's world before it links.
    pub fn compile(
        host: &PluginEngine,
        name: &str,
        path: &Path,
        pin: Option<&str>,
    ) -> Result<Compiled, LoadError> {
        let started = Instant::now();
        let bytes = std::fs::read(path).map_err(|source| LoadError::Read {
            plugin: name.to_string(),
            path: path.to_path_buf(),
            source,
        })?;
        let sha256 = sha256_hex(&bytes);
        if let Some(expected) = pin
            && expected != sha256
        {
            return Err(LoadError::PinMismatch {
                plugin: name.to_string(),
                path: path.to_path_buf(),
                expected: expected.to_string(),
                actual: sha256,
            });
        }
        let (component, cache) = host
            .cache
            .load(&host.engine, &bytes, &sha256)
            .map_err(|e| LoadError::Compile {
                plugin: name.to_string(),
                path: path.to_path_buf(),
                message: format!("{e:#}"),
            })?;
        Ok(Compiled {
            bytes: bytes.len() as u64,
            shape: Shape::read(&host.engine, &component),
            sha256,
            cache,
            component,
            started,
        })
    }

    /// The second half of [`LoadedPlugin::load`]: check `compiled` against `spec`'s
    /// world and grants, link it and ask it to describe itself.
    pub fn link(
        host: &PluginEngine,
        spec: &PluginSpec,
        compiled: Compiled,
    ) -> Result<Self, LoadError> {
        let Compiled {
            sha256,
            cache,
            shape,
            component,
            started,
            ..
        } = compiled;
        let plugin = spec.name.clone();
        shape
            .check(spec.world)
            .map_err(|message| LoadError::Incompatible {
                plugin: plugin.clone(),
                path: spec.path.clone(),
                message,
            })?;
        // Capabilities by omission: every host interface beyond `log` and `context` must
        // be granted.
        grant_check(&plugin, &shape, &spec.grants)?;
        if let Some(import) = shape.imports_http()
            && spec.http.is_none()
        {
            return Err(LoadError::NotGranted {
                plugin: plugin.clone(),
                imports: vec![import.to_string()],
                capabilities: Vec::new(),
                fix: "add `http = [\"https://HOST\"]`, the destinations it may send requests to, to its [[plugin]] table if it should reach them".into(),
            });
        }
        let imports_context = shape.imports_context();
        let link = |e: wasmtime::Error| LoadError::Link {
            plugin: plugin.clone(),
            message: format!("{e:#}"),
        };
        let instance_pre = host.linker.instantiate_pre(&component).map_err(link)?;
        let pre = match spec.world {
            World::Agent => {
                let handle = HandleExport::find(&instance_pre).map_err(link)?;
                Pre::Agent(agent::AgentPre::new(instance_pre).map_err(link)?, handle)
            }
            World::Validator => {
                Pre::Validator(validator::ValidatorPre::new(instance_pre).map_err(link)?)
            }
            World::Router => Pre::Router(router::RouterPre::new(instance_pre).map_err(link)?),
            World::ContextProvider => Pre::ContextProvider(
                context_provider::ContextProviderPre::new(instance_pre).map_err(link)?,
            ),
            World::Retrospective => Pre::Retrospective(
                retrospective::RetrospectivePre::new(instance_pre).map_err(link)?,
            ),
        };
        let mut loaded = LoadedPlugin {
            name: plugin.as_str().into(),
            world: spec.world,
            path: spec.path.clone(),
            sha256,
            limits: spec.limits,
            info: wit::PluginInfo {
                name: String::new(),
                version: String::new(),
                api_version: String::new(),
                kind: PluginKind::Agent,
                description: String::new(),
                subscriptions: Vec::new(),
                publishes: Vec::new(),
                phases: Vec::new(),
                capabilities: Vec::new(),
            },
            config_json: spec.config.to_string(),
            labels: spec.labels.clone(),
            tenant: spec.tenant.clone(),
            grants: spec.grants.clone(),
            context_on_demand: false,
            imports_context,
            read_dirs: spec.read_dirs.clone().into(),
            http: None,
            cache,
            load_time: Duration::ZERO,
            pre,
            engine: host.engine.clone(),
            fuel: host.fuel,
            warm: std::sync::Mutex::new(Vec::new()),
        };
        let info = loaded.describe().map_err(|f| LoadError::Describe {
            plugin: plugin.clone(),
            message: f.to_string(),
        })?;
        if let Some(kind) = super::convert::kind_to_wit(spec.world)
            && info.kind != kind
        {
            return Err(LoadError::Describe {
                plugin,
                message: format!(
                    "it describes itself as {:?} but implements world '{}'",
                    info.kind, spec.world
                ),
            });
        }
        if !version::compatible(&info.api_version) {
            return Err(LoadError::Incompatible {
                plugin,
                path: spec.path.clone(),
                message: format!(
                    "describe() reports API version {}, but this host implements murmur:plugin@{}",
                    info.api_version,
                    version::API_VERSION
                ),
            });
        }
        loaded.context_on_demand =
            matches!(spec.world, World::Agent) && info.capabilities.iter().any(|c| c == "context");
        loaded.info = info;
        loaded.load_time = started.elapsed();
        Ok(loaded)
    }

    /// A store with this plugin's limits, a deadline of `timeout` and `board` access.
    fn new_store(
        &self,
        timeout: Duration,
        board: Option<BoardAccess>,
    ) -> Result<Store<InvocationState>, Fault> {
        let deadline = Instant::now() + timeout;
        let max_memory = (self.limits.memory_mb as usize).saturating_mul(1 << 20);
        let state = InvocationState::new(
            self.name.clone(),
            max_memory,
            deadline,
            board,
            self.read_dirs.clone(),
        );
        let mut store = Store::new(&self.engine, state);
        store.limiter(|s| &mut s.limiter);
        // Every epoch tick a running guest yields to the executor, so other invocations
        // on its thread go on; past its deadline it is stopped (classified `timeout`).
        store.epoch_deadline_callback(|ctx| {
            Ok(if Instant::now() >= ctx.data().deadline {
                wasmtime::UpdateDeadline::Interrupt
            } else {
                wasmtime::UpdateDeadline::Yield(1)
            })
        });
        self.arm(&mut store)?;
        Ok(store)
    }

    /// Start the call's epoch checks (its deadline is in the store's state) and set its
    /// fuel on `store`.
    fn arm(&self, store: &mut Store<InvocationState>) -> Result<(), Fault> {
        // The first check two ticks on, then every tick: a call that runs a whole tick
        // yields within two, and one shorter than a tick never does. A yield lets the run
        // start another invocation beside the busy one, so with the first check one tick
        // on, microsecond calls that happened to span a tick boundary kept adding workers
        // and warm instances (12 MB more peak memory at the cascade's N = 100,000, for no
        // speed).
        store.set_epoch_deadline(2);
        if self.fuel {
            store
                .set_fuel(self.limits.fuel.unwrap_or(u64::MAX))
                .map_err(|e| classify(&e, false, false))?;
        }
        Ok(())
    }

    /// After a call: log what the guest printed (from byte `printed_from` of its output),
    /// classify a failure, and fault a reach beyond the plugin's grants.
    fn finish_call<R>(
        &self,
        store: &mut Store<InvocationState>,
        result: wasmtime::Result<R>,
        deadline: Instant,
        printed_from: usize,
    ) -> Result<R, Fault> {
        // What the guest printed reaches the host's log with the plugin's name.
        let printed = store.data().printed_since(printed_from);
        for line in printed.lines().filter(|l| !l.trim().is_empty()) {
            tracing::warn!(target: "murmur::guest", plugin = %self.name, "{line}");
        }
        let result = result.map_err(|e| {
            let mut fault = classify(&e, store.data().limiter.denied, Instant::now() >= deadline);
            // Lead with the guest's own words: its last error log line, else the end of
            // what it printed (a traceback's last lines name the exception).
            let tail: Vec<&str> = printed.lines().filter(|l| !l.trim().is_empty()).collect();
            if let Some(said) = &store.data().last_error {
                fault.message = format!("{said} | {}", fault.message);
            } else if let Some(line) = tail
                .iter()
                .rev()
                .find(|l| l.contains("Error") || l.contains("Exception"))
                .or_else(|| tail.iter().rev().find(|l| l.contains("panicked")))
            {
                // A JavaScript `Error: …` line, a Python traceback's last line.
                fault.message = format!("{} | {}", line.trim(), fault.message);
            } else if !tail.is_empty() {
                let last = tail[tail.len().saturating_sub(3)..].join(" | ");
                fault.message = format!("{last} | {}", fault.message);
            }
            if let Some(reason) = store.data().refused.take() {
                // The guest failed on a call the host refused: that is the cause.
                fault.kind = crate::invocation::FaultKind::Denied;
                fault.message = format!("the host refused a call: {reason} | {}", fault.message);
            }
            fault
        });
        // Reaching beyond a grant faults the call, whatever the guest made of the refusal.
        if let Some(violation) = store
            .data_mut()
            .violation
            .take()
            .or_else(|| store.data_mut().http.take_violation())
        {
            return Err(Fault {
                kind: crate::invocation::FaultKind::Denied,
                message: violation,
            });
        }
        if std::mem::take(&mut store.data_mut().past_deadline) {
            return Err(Fault {
                kind: crate::invocation::FaultKind::Timeout,
                message: "the call's deadline passed while it waited for a model's answer".into(),
            });
        }
        result
    }

    /// Call an agent's `handle()` on a warm instance (`limits.reuse` > 0): taken from
    /// the plugin's warm list or instantiated, given this call's deadline and access, and
    /// put back only if the call returned normally, printed little and the instance has
    /// served fewer than `reuse` calls. Anything else drops it, so a trapped, timed-out,
    /// denied or over-chatty instance never serves again.
    async fn handle_warm(
        &self,
        invocation: &wit::Invocation,
        board: Option<BoardAccess>,
        context: ContextSource,
    ) -> Result<Vec<wit::Output>, InvokeError> {
        let timeout = Duration::from_millis(self.limits.timeout_ms);
        // This thread's own instance if it left one: its memory is still in this core's
        // cache, where another thread's is in the other core's (the first allocation of
        // a call then waited on a cache miss: 8% of a run when instances went to
        // whichever worker asked next).
        let me = std::thread::current().id();
        let taken = self
            .warm
            .lock()
            .ok()
            .and_then(|mut w| take_for(&mut w, |i| i.thread, me));
        let mut warm = match taken {
            Some(mut warm) => {
                let state = warm.store.data_mut();
                state.deadline = Instant::now() + timeout;
                state.http = crate::egress::HttpCall::new(
                    board.as_ref().and_then(|b| b.http.clone()),
                    state.deadline,
                );
                state.board = board;
                state.last_error = None;
                state.refused.set(None);
                state.log_lines = 0;
                state.limiter.denied = false;
                self.arm(&mut warm.store).map_err(InvokeError::Fault)?;
                warm
            }
            None => {
                let mut store = self.new_store(timeout, board).map_err(InvokeError::Fault)?;
                let Pre::Agent(pre, export) = &self.pre else {
                    return Err(InvokeError::Fault(Fault {
                        kind: crate::invocation::FaultKind::Trap,
                        message: format!("plugin '{}' is not an agent", self.name),
                    }));
                };
                let deadline = store.data().deadline;
                let instantiated = export.instantiate(pre, &mut store).await;
                let handle = self
                    .finish_call(&mut store, instantiated, deadline, 0)
                    .map_err(InvokeError::Fault)?;
                Warm {
                    store,
                    handle,
                    calls: 0,
                    thread: me,
                }
            }
        };
        warm.store.data_mut().context = context;
        let deadline = warm.store.data().deadline;
        let printed_from = warm.store.data().printed_len();
        let result = warm.handle.call(&mut warm.store, invocation).await;
        warm.store.data_mut().done_with_context();
        let healthy = matches!(result, Ok(Ok(_)) | Ok(Err(_)));
        let result = self.finish_call(&mut warm.store, result, deadline, printed_from);
        warm.calls += 1;
        warm.thread = me;
        let printed = warm.store.data().printed_len();
        if healthy
            && result.is_ok()
            && warm.calls < self.limits.reuse
            && printed < super::state::MAX_GUEST_OUTPUT / 2
        {
            // A waiting instance holds no access to the blackboard.
            warm.store.data_mut().board = None;
            if let Ok(mut list) = self.warm.lock() {
                list.push(warm);
            }
        }
        flatten(result)
    }

    /// A fresh store for one call and the call's deadline.
    fn call_store(
        &self,
        timeout: Duration,
        board: Option<BoardAccess>,
    ) -> Result<(Store<InvocationState>, Instant), InvokeError> {
        let store = self.new_store(timeout, board).map_err(InvokeError::Fault)?;
        let deadline = store.data().deadline;
        Ok((store, deadline))
    }

    /// The fault of calling a world's function on a plugin of another world (the typed
    /// handles make it unreachable from outside `plugin/`).
    fn not_a(&self, world: &str) -> InvokeError {
        InvokeError::Fault(Fault {
            kind: crate::invocation::FaultKind::Trap,
            message: format!("plugin '{}' is not {world}", self.name),
        })
    }

    /// The timeout of one call of this plugin.
    fn timeout(&self) -> Duration {
        Duration::from_millis(self.limits.timeout_ms)
    }

    /// Call `describe()` (from code that is not async: loading).
    ///
    /// This is a component's first instantiation, where wasmtime builds each memory's
    /// copy-on-write image in a sealed memfd. Linux refuses the seal with `EBUSY` while
    /// any page of the new file is briefly referenced elsewhere (a per-CPU LRU batch,
    /// compaction, migration), which a loaded machine sees now and then; wasmtime does not
    /// keep the failure, so the call is tried again, a few times, with a growing pause.
    /// `describe()` has no effects, so a second try is the same call.
    pub fn describe(&self) -> Result<wit::PluginInfo, Fault> {
        let mut pause = Duration::from_millis(20);
        for _ in 1..SEAL_TRIES {
            let mut store = self.new_store(DESCRIBE_TIMEOUT, None)?;
            match self.describe_in(&mut store) {
                Err(e) if image_seal_was_busy(&e) => {
                    tracing::debug!(plugin = %self.name, "memory image not sealed yet ({e:#}); trying again in {pause:?}");
                    std::thread::sleep(pause);
                    pause *= 2;
                }
                result => {
                    let deadline = store.data().deadline;
                    return self.finish_call(&mut store, result, deadline, 0);
                }
            }
        }
        let mut store = self.new_store(DESCRIBE_TIMEOUT, None)?;
        let deadline = store.data().deadline;
        let result = self.describe_in(&mut store);
        self.finish_call(&mut store, result, deadline, 0)
    }

    /// One instantiation and `describe()` call in `store`.
    fn describe_in(
        &self,
        mut store: &mut Store<InvocationState>,
    ) -> wasmtime::Result<wit::PluginInfo> {
        super::block_on(async {
            match &self.pre {
                Pre::Agent(p, _) => {
                    p.instantiate_async(&mut store)
                        .await?
                        .murmur_plugin_agent_api()
                        .call_describe(&mut store)
                        .await
                }
                Pre::Validator(p) => {
                    p.instantiate_async(&mut store)
                        .await?
                        .murmur_plugin_validator_api()
                        .call_describe(&mut store)
                        .await
                }
                Pre::Router(p) => {
                    p.instantiate_async(&mut store)
                        .await?
                        .murmur_plugin_router_api()
                        .call_describe(&mut store)
                        .await
                }
                Pre::ContextProvider(p) => {
                    p.instantiate_async(&mut store)
                        .await?
                        .murmur_plugin_context_provider_api()
                        .call_describe(&mut store)
                        .await
                }
                Pre::Retrospective(p) => p
                    .instantiate_async(&mut store)
                    .await?
                    .murmur_plugin_retrospective_api()
                    .call_describe(&mut store)
                    .await
                    .map(retrospective_info),
            }
        })
    }

    /// Call an agent's `handle()`; `context` is what its `context` import answers.
    pub(super) async fn handle(
        &self,
        invocation: &wit::Invocation,
        board: Option<BoardAccess>,
        context: ContextSource,
    ) -> Result<Vec<wit::Output>, InvokeError> {
        if self.limits.reuse > 0 {
            return self.handle_warm(invocation, board, context).await;
        }
        let Pre::Agent(p, export) = &self.pre else {
            return Err(self.not_a("an agent"));
        };
        let (mut store, deadline) = self.call_store(self.timeout(), board)?;
        store.data_mut().context = context;
        let result = async {
            export
                .instantiate(p, &mut store)
                .await?
                .call(&mut store, invocation)
                .await
        }
        .await;
        store.data_mut().done_with_context();
        flatten(self.finish_call(&mut store, result, deadline, 0))
    }

    /// Call a validator's `validate()`.
    pub(super) async fn validate(
        &self,
        invocation: &wit::Invocation,
        outputs: &[wit::Output],
        board: Option<BoardAccess>,
    ) -> Result<wit::Verdict, InvokeError> {
        let Pre::Validator(p) = &self.pre else {
            return Err(self.not_a("a validator"));
        };
        let (mut store, deadline) = self.call_store(self.timeout(), board)?;
        let result = async {
            p.instantiate_async(&mut store)
                .await?
                .murmur_plugin_validator_api()
                .call_validate(&mut store, invocation, outputs)
                .await
        }
        .await;
        flatten(self.finish_call(&mut store, result, deadline, 0))
    }
}

impl std::fmt::Display for InvokeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            InvokeError::Plugin(wit::PluginError::Failed(m)) => write!(f, "failed: {m}"),
            InvokeError::Plugin(wit::PluginError::InvalidInput(m)) => {
                write!(f, "invalid input: {m}")
            }
            InvokeError::Plugin(wit::PluginError::Retryable(m)) => {
                write!(f, "retryable error: {m}")
            }
            InvokeError::Fault(fault) => write!(f, "{} fault: {}", fault.kind, fault.message),
        }
    }
}

impl LoadedPlugin {
    /// The identity visibility checks use for what it is handed.
    pub fn viewer(&self) -> crate::artifact::Viewer<'_> {
        crate::artifact::Viewer {
            name: &self.name,
            labels: &self.labels,
            tenant: self.tenant.as_deref(),
            operator: false,
        }
    }

    /// Whether the manifest grants it `capability`.
    pub fn granted(&self, capability: Capability) -> bool {
        self.grants.contains(&capability)
    }

    /// Call a router's `route()`. Routers and context providers are called from code
    /// that is not async (placing an output, choosing context): their calls run to their
    /// end on the calling thread, which they hold only for their own work (neither world
    /// is handed the model).
    pub(super) fn route(
        &self,
        discovery: &wit::Artifact,
        phases: &[wit::PhaseInfo],
    ) -> Result<wit::RouteDecision, InvokeError> {
        let Pre::Router(p) = &self.pre else {
            return Err(self.not_a("a router"));
        };
        let (mut store, deadline) = self.call_store(self.timeout(), None)?;
        let result = super::block_on(async {
            p.instantiate_async(&mut store)
                .await?
                .murmur_plugin_router_api()
                .call_route(&mut store, discovery, phases)
                .await
        });
        flatten(self.finish_call(&mut store, result, deadline, 0))
    }

    /// Call a router's `similarity()`; checks that it answers one score in 0–1 per candidate.
    pub(super) fn similarity(
        &self,
        discovery: &wit::Artifact,
        candidates: &[wit::Artifact],
    ) -> Result<Vec<f32>, InvokeError> {
        let Pre::Router(p) = &self.pre else {
            return Err(self.not_a("a router"));
        };
        let (mut store, deadline) = self.call_store(self.timeout(), None)?;
        let result = super::block_on(async {
            p.instantiate_async(&mut store)
                .await?
                .murmur_plugin_router_api()
                .call_similarity(&mut store, discovery, candidates)
                .await
        });
        let scores = flatten(self.finish_call(&mut store, result, deadline, 0))?;
        if scores.len() != candidates.len() || scores.iter().any(|s| !(0.0..=1.0).contains(s)) {
            return Err(InvokeError::Fault(Fault {
                kind: crate::invocation::FaultKind::InvalidOutput,
                message: format!(
                    "similarity() must answer one score in 0..=1 per candidate ({}), answered {:?}",
                    candidates.len(),
                    scores
                ),
            }));
        }
        Ok(scores)
    }

    /// Call a retrospective's `distill()`: a future, as the model calls it makes wait.
    pub(super) async fn distill(
        &self,
        review: &RunReview,
        board: Option<BoardAccess>,
    ) -> Result<Vec<LessonDraft>, InvokeError> {
        let Pre::Retrospective(p) = &self.pre else {
            return Err(self.not_a("a retrospective"));
        };
        let (mut store, deadline) = self.call_store(self.timeout(), board)?;
        let result = async {
            p.instantiate_async(&mut store)
                .await?
                .murmur_plugin_retrospective_api()
                .call_distill(&mut store, review)
                .await
        }
        .await;
        flatten(self.finish_call(&mut store, result, deadline, 0))
    }

    /// Call a context provider's `provide()`.
    pub(super) fn provide(
        &self,
        invocation: &wit::Invocation,
        candidates: &[wit::Artifact],
        board: Option<BoardAccess>,
    ) -> Result<Vec<wit::Artifact>, InvokeError> {
        let Pre::ContextProvider(p) = &self.pre else {
            return Err(self.not_a("a context provider"));
        };
        let (mut store, deadline) = self.call_store(self.timeout(), board)?;
        let result = super::block_on(async {
            p.instantiate_async(&mut store)
                .await?
                .murmur_plugin_context_provider_api()
                .call_provide(&mut store, invocation, candidates)
                .await
        });
        flatten(self.finish_call(&mut store, result, deadline, 0))
    }
}

/// A retrospective's `describe()` as the plugin info every world keeps: it declares no
/// subscriptions, types, phases or capabilities, and its kind is never read (its world
/// tells it apart).
fn retrospective_info(info: RetrospectiveInfo) -> wit::PluginInfo {
    wit::PluginInfo {
        name: info.name,
        version: info.version,
        api_version: info.api_version,
        kind: PluginKind::Agent,
        description: info.description,
        subscriptions: Vec::new(),
        publishes: Vec::new(),
        phases: Vec::new(),
        capabilities: Vec::new(),
    }
}

/// Capabilities by omission: refuse a component whose imports need capabilities
/// `granted` lacks, naming every one and the manifest change that grants them.
fn grant_check(plugin: &str, shape: &Shape, granted: &[Capability]) -> Result<(), LoadError> {
    let missing: Vec<Capability> = shape
        .needs()
        .into_iter()
        .filter(|c| !granted.contains(c))
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    let quoted: Vec<String> = missing.iter().map(|c| format!("\"{c}\"")).collect();
    let them = if missing.len() == 1 { "it" } else { "them" };
    let fix = if granted.is_empty() {
        format!(
            "add `grants = [{}]` to its [[plugin]] table if it should have {them}",
            quoted.join(", ")
        )
    } else {
        format!(
            "add {} to its `grants` if it should have {them}",
            quoted.join(" and ")
        )
    };
    Err(LoadError::NotGranted {
        plugin: plugin.to_string(),
        imports: missing
            .iter()
            .filter_map(|c| shape.import_needing(*c))
            .map(str::to_string)
            .collect(),
        capabilities: missing,
        fix,
    })
}

/// A component compiled and its shape read, not yet linked (see
/// [`LoadedPlugin::compile`]).
pub struct Compiled {
    /// The component file's size, in bytes.
    pub bytes: u64,
    /// Its sha256.
    pub sha256: String,
    /// Whether the compiled-component cache had it.
    pub cache: CacheOutcome,
    /// Its exports and imports.
    pub shape: Shape,
    component: wasmtime::component::Component,
    started: Instant,
}

/// A call's fault or plugin error as one [`InvokeError`].
fn flatten<R>(result: Result<Result<R, wit::PluginError>, Fault>) -> Result<R, InvokeError> {
    match result {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(e)) => Err(InvokeError::Plugin(e)),
        Err(fault) => Err(InvokeError::Fault(fault)),
    }
}

#[cfg(test)]
mod tests {
    use super::{Capability, Shape, grant_check, image_seal_was_busy, take_for};

    /// The error memfd reports when the kernel refuses the seal: `EBUSY` under its words.
    #[derive(Debug)]
    struct AddSeals(std::io::Error);

    impl std::fmt::Display for AddSeals {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("cannot add seals to the memfd")
        }
    }

    impl std::error::Error for AddSeals {
        fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
            Some(&self.0)
        }
    }

    #[test]
    fn only_a_busy_memory_image_seal_is_tried_again() {
        let busy = wasmtime::Error::new(AddSeals(std::io::Error::from_raw_os_error(libc::EBUSY)));
        assert!(image_seal_was_busy(&busy));
        assert!(image_seal_was_busy(&busy.context("instantiating")));
        let denied = wasmtime::Error::new(AddSeals(std::io::Error::from_raw_os_error(libc::EPERM)));
        assert!(!image_seal_was_busy(&denied));
        assert!(!image_seal_was_busy(&wasmtime::Error::new(
            wasmtime::Trap::UnreachableCodeReached
        )));
        assert!(!image_seal_was_busy(&wasmtime::Error::msg(
            "device or resource busy"
        )));
    }

    #[test]
    fn every_missing_grant_is_named_in_one_message_with_the_fix_that_reads_right() {
        let shape = Shape {
            exports: vec!["murmur:plugin/validator-api@0.1.0".into()],
            imports: vec![
                "murmur:plugin/log@0.1.0".into(),
                "murmur:plugin/blackboard@0.1.0".into(),
                "murmur:plugin/llm@0.1.0".into(),
            ],
        };
        let none = grant_check("v", &shape, &[]).expect_err("nothing granted");
        assert_eq!(
            none.to_string(),
            "plugin 'v' imports murmur:plugin/blackboard@0.1.0 and murmur:plugin/llm@0.1.0, which its manifest does not grant: add `grants = [\"blackboard\", \"llm\"]` to its [[plugin]] table if it should have them"
        );
        let some = grant_check("v", &shape, &[Capability::Blackboard]).expect_err("llm missing");
        assert_eq!(
            some.to_string(),
            "plugin 'v' imports murmur:plugin/llm@0.1.0, which its manifest does not grant: add \"llm\" to its `grants` if it should have it"
        );
        grant_check("v", &shape, &[Capability::Llm, Capability::Blackboard]).expect("granted");
    }

    #[test]
    fn a_thread_gets_back_the_warm_instance_it_used_last() {
        let me = std::thread::current().id();
        let other = std::thread::spawn(|| std::thread::current().id())
            .join()
            .expect("thread");
        let mut list = vec![(me, "mine"), (other, "theirs")];
        let thread = |i: &(std::thread::ThreadId, &str)| i.0;
        // Not the one returned last: this thread's own.
        assert_eq!(take_for(&mut list, thread, me), Some((me, "mine")));
        // None of its own left: the one returned last.
        assert_eq!(take_for(&mut list, thread, me), Some((other, "theirs")));
        assert_eq!(take_for(&mut list, thread, me), None);
    }
}
