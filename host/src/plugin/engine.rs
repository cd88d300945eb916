//! The one wasmtime engine a host runs, narrowed to the ways Murmuration uses it.
//!
//! - component model on; every host interface and an empty WASI p2 linked once;
//! - every call async, on a fiber: a guest waiting in a host call (a model's answer)
//!   is suspended and its thread serves other invocations;
//! - epoch interruption driven by a ticker thread: every tick a running guest yields to
//!   the executor (so a busy guest cannot starve the others on its thread), and at its
//!   deadline it is stopped, without instrumenting every instruction with fuel;
//! - the pooling allocator, so instantiating a fresh instance per invocation costs
//!   microseconds (memory slots are reused, not mapped anew);
//! - compiled components cached on disk ([`super::cache`]).

use super::bindings;
use super::cache::ComponentCache;
use super::state::InvocationState;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use wasmtime::component::{HasSelf, Linker};
use wasmtime::{Config, Engine, InstanceAllocationStrategy, PoolingAllocationConfig};

/// How often the epoch advances; deadlines are rounded up to this.
pub const EPOCH_TICK: Duration = Duration::from_millis(5);

/// Sizing of the engine's instance pool.
#[derive(Debug, Clone)]
pub struct EngineOptions {
    /// Instances alive at once (running invocations plus load-time `describe` calls).
    pub max_instances: u32,
    /// Calls running at once, each on a fiber stack of the pool: one per invocation in
    /// flight, one more per thread for a call the host makes while a guest runs (a
    /// context provider answering an agent's `context` import), a few for loading.
    /// A store keeps the stack of its last call, so every warm instance holds one too.
    /// Each stack costs the process two memory mappings, so the pool is sized to these,
    /// not to every instance slot.
    pub max_stacks: u32,
    /// The largest memory any plugin may have, in bytes (the pool's slot size).
    pub max_memory_bytes: usize,
    /// Where compiled components are cached.
    pub cache: ComponentCache,
    /// Whether calls are metered with fuel (some plugin has a `fuel` limit).
    pub fuel: bool,
}

impl Default for EngineOptions {
    fn default() -> Self {
        Self {
            max_instances: 64,
            max_stacks: 64,
            max_memory_bytes: 64 << 20,
            cache: ComponentCache::disabled(),
            fuel: false,
        }
    }
}

/// The wasmtime engine, linker and cache shared by every plugin of a host.
pub struct PluginEngine {
    pub(crate) engine: Engine,
    pub(crate) linker: Linker<InvocationState>,
    pub(crate) cache: ComponentCache,
    pub(crate) fuel: bool,
    _ticker: EpochTicker,
}

/// Bytes at the start of a linear memory that stay resident between instances; beyond
/// them, pages a call touched are given back with madvise (a system call and a TLB
/// shootdown on every core the process runs on) and fault in again on the next instance.
/// Our Rust guests link a 64 KiB stack first (`plugins/.cargo/config.toml`), so a small
/// call's stack, data and first heap pages fall inside. Where the kernel offers
/// `PAGEMAP_SCAN` (Linux 6.7+), only the pages the call wrote are reset; elsewhere the
/// whole region is reset by memset. Measured (`murmur bench cascade --fresh`): see
/// docs/performance.md.
const KEEP_RESIDENT: usize = 256 << 10;

impl PluginEngine {
    /// Build the engine. Fails only if wasmtime rejects the configuration.
    pub fn new(options: EngineOptions) -> wasmtime::Result<Self> {
        let instances = options.max_instances.max(4);
        let mut pool = PoolingAllocationConfig::default();
        pool.total_component_instances(instances)
            .total_core_instances(instances * 8)
            .total_memories(instances * 2)
            .total_tables(instances * 4)
            .max_memory_size(options.max_memory_bytes)
            .max_memories_per_component(8)
            .max_tables_per_component(16)
            .max_core_instances_per_component(64)
            .max_component_instance_size(1 << 20)
            .max_core_instance_size(1 << 20)
            // Reset the first KEEP_RESIDENT bytes of a reused slot in place (they stay
            // resident: no page faults on the next instance), the rest with madvise.
            .linear_memory_keep_resident(KEEP_RESIDENT)
            // Ask the kernel which of those pages the call wrote, and reset only them
            // instead of memset over the whole region (11% of a `--fresh` profile).
            .pagemap_scan(wasmtime::Enabled::Auto)
            .table_keep_resident(64 << 10)
            // Each instance's call runs on a fiber stack taken from the pool.
            .total_stacks(options.max_stacks.clamp(4, instances));
        let mut config = Config::new();
        config
            .wasm_component_model(true)
            .epoch_interruption(true)
            // Fuel instruments every function; only when some plugin asks for it.
            .consume_fuel(options.fuel)
            // Bounds-checked memories without guard regions. With guard pages (the
            // default), every fresh instance whose previous occupant grew its memory has
            // its slot shrunk back by mprotect, and the guest's first memory.grow
            // mprotects it open again: two page-table changes per call, each a TLB
            // shootdown interrupting the other core (30% of a --fresh profile). Without
            // them a slot keeps its read/write size between instances and only its
            // contents are reset. Out-of-bounds accesses still trap, by explicit checks
            // that cost warm instances ~5%; fresh instances, the default, gain ~65%.
            .signals_based_traps(false)
            // A pool slot is as large as a memory may grow, not wasmtime's 4 GiB
            // default: with thousands of invocations in flight the pool's address space
            // is slots × 2 memories, and 4 GiB slots ran past the 128 TiB a process has
            // at 10,000 in flight.
            .memory_reservation(options.max_memory_bytes as u64)
            .memory_guard_size(0)
            .guard_before_linear_memory(false)
            .allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
        let engine = Engine::new(&config)?;

        let mut linker: Linker<InvocationState> = Linker::new(&engine);
        wasmtime_wasi::p2::add_to_linker_async(&mut linker)?;
        wasmtime_wasi_http::p2::add_only_http_to_linker_async(&mut linker)?;
        // The agent world imports every host interface, so its linker serves all worlds:
        // each interface through the bindings, but `context` by hand (see there).
        fn host(s: &mut InvocationState) -> &mut InvocationState {
            s
        }
        bindings::types::add_to_linker::<_, HasSelf<_>>(&mut linker, host)?;
        bindings::log::add_to_linker::<_, HasSelf<_>>(&mut linker, host)?;
        bindings::blackboard::add_to_linker::<_, HasSelf<_>>(&mut linker, host)?;
        bindings::kv::add_to_linker::<_, HasSelf<_>>(&mut linker, host)?;
        bindings::llm::add_to_linker::<_, HasSelf<_>>(&mut linker, host)?;
        super::state::add_context_to_linker(&mut linker)?;

        let ticker = EpochTicker::start(engine.clone());
        Ok(Self {
            fuel: options.fuel,
            engine,
            linker,
            cache: options.cache,
            _ticker: ticker,
        })
    }

    /// The wasmtime engine.
    pub fn engine(&self) -> &Engine {
        &self.engine
    }
}

/// Advances the engine's epoch every [`EPOCH_TICK`] until dropped.
struct EpochTicker {
    stop: Arc<AtomicBool>,
}

impl EpochTicker {
    fn start(engine: Engine) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let spawned = std::thread::Builder::new()
            .name("murmur-epoch".into())
            .spawn(move || {
                while !flag.load(Ordering::Relaxed) {
                    std::thread::sleep(EPOCH_TICK);
                    engine.increment_epoch();
                }
            });
        if let Err(e) = spawned {
            tracing::error!("cannot start the epoch ticker; deadlines will not be enforced: {e}");
        }
        Self { stop }
    }
}

impl Drop for EpochTicker {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}
