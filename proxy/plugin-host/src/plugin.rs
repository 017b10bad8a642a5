//! A loaded plugin: a compiled component whose imports were checked against what the config
//! grants, linked once (`InstancePre`), and called through warm instances kept per tenant.
//!
//! A call runs on the caller's thread under a CPU deadline with its instance's memory capped.
//! The deadline is enforced with epochs (a 1 ms tick): a call has used its budget when the
//! plugin has been seen running at more ticks than the budget holds *and* the thread has used
//! the budget's CPU time since the first of them. Either measure alone can be fooled by time
//! the plugin did not spend: a thread the hypervisor stops still gains CPU time (on a shared
//! machine, milliseconds at a time), and a plugin seen at a tick after a long host function
//! or a long preemption was running for only part of it; each is seen at one tick, however
//! long it lasted. A plugin that spins is stopped within a tick of its budget.
//!
//! A call's failures are kept apart: the plugin trapped, ran out of time, hit its memory cap,
//! answered something the interface does not allow, or there was no room for another
//! instance. An instance is thrown away after any failure and after [`Limits::max_calls`]
//! calls, so a plugin's state never outlives a fault and never crosses tenants.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use wasmtime::Store;
use wasmtime::component::{Component, Linker, Resource};

use crate::bindings::{Plugin as Bindings, PluginPre};
use crate::capabilities::{Capabilities, Capability, HostState, link};
use crate::context::RequestContext;
use crate::engine::{PluginEngine, TICK};
use crate::types::{Authorization, RouteDecision, S3Error};

/// A plugin's limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// The most CPU time one call may take (rounded up to the epoch tick).
    pub deadline: Duration,
    /// The most linear memory one instance may have.
    pub memory: usize,
    /// A warm instance serves at most this many calls, then is replaced (1: a fresh
    /// instance per call, `isolation: per-request`).
    pub max_calls: u32,
    /// Warm instances kept per tenant.
    pub warm_per_tenant: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            deadline: Duration::from_millis(5),
            memory: 16 << 20,
            max_calls: 10_000,
            warm_per_tenant: 4,
        }
    }
}

/// Why a plugin could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("the plugin engine could not start: {0}")]
    Engine(String),
    #[error("the compiled-plugin cache failed: {0}")]
    Cache(String),
    #[error("not a WebAssembly component Sluice can run: {0}")]
    Invalid(String),
    /// The component imports an interface the config does not grant (or one Sluice does not
    /// offer at all, such as WASI's).
    #[error("it imports `{import}`, which {why}")]
    NotGranted { import: String, why: String },
    #[error("it does not fit the world sluice:plugin/plugin@0.1.0: {0}")]
    WrongWorld(String),
}

/// Why a call gave no decision.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CallError {
    #[error("the plugin trapped: {0}")]
    Trap(String),
    #[error("the plugin ran past its deadline of {0:?}")]
    Timeout(Duration),
    #[error("the plugin reached its memory limit of {0} bytes")]
    Memory(usize),
    /// An answer the interface does not allow (a bad discriminant, invalid UTF-8, ...).
    #[error("the plugin answered something the interface does not allow: {0}")]
    Garbage(String),
    /// Too many plugin instances alive at once.
    #[error("no room for another plugin instance")]
    Busy,
}

/// Caps a store's linear memory growth and remembers whether it refused any.
pub(crate) struct MemoryLimiter {
    max: usize,
    pub(crate) hit: bool,
}

impl wasmtime::ResourceLimiter for MemoryLimiter {
    fn memory_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired > self.max {
            self.hit = true;
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
        Ok(desired <= 20_000)
    }
}

/// An instance kept warm between calls.
struct Warm {
    store: Store<HostState>,
    plugin: Bindings,
    calls: u32,
}

/// A plugin ready to be called; see the module documentation.
pub struct LoadedPlugin {
    name: Arc<str>,
    engine: PluginEngine,
    pre: PluginPre<HostState>,
    grants: Arc<Capabilities>,
    limits: Limits,
    /// Whether the compiled form came from the cache.
    cached: bool,
    /// Warm instances by tenant (foldhash, not SipHash: tenants are named by the config, not
    /// by clients).
    warm: Mutex<foldhash::HashMap<String, Vec<Warm>>>,
}

impl std::fmt::Debug for LoadedPlugin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoadedPlugin")
            .field("name", &self.name)
            .field("limits", &self.limits)
            .field("granted", &self.grants.granted)
            .finish_non_exhaustive()
    }
}

impl LoadedPlugin {
    /// Compiles (or loads from the cache) the component in `wasm`, checks that it imports
    /// only what `grants` gives it and exports the plugin world, and links it.
    pub fn load(
        engine: &PluginEngine,
        name: &str,
        wasm: &[u8],
        grants: Capabilities,
        limits: Limits,
    ) -> Result<Self, LoadError> {
        if limits.memory > crate::engine::MAX_MEMORY {
            return Err(LoadError::Invalid(format!(
                "a memory limit of {} bytes is over Sluice's most, {}",
                limits.memory,
                crate::engine::MAX_MEMORY
            )));
        }
        let (component, cached) = engine.compile(wasm)?;
        check_imports(engine, &component, &grants)?;
        // Build the initial memory image now rather than on the first instantiation, which
        // runs under a call's deadline (a Python component's 12 MiB heap snapshot: 8.5 ms).
        component
            .initialize_copy_on_write_image()
            .map_err(|e| LoadError::Engine(format!("{e:#}")))?;
        let mut linker = Linker::<HostState>::new(engine.engine());
        link(&mut linker, &grants).map_err(|e| LoadError::Engine(format!("{e:#}")))?;
        // WASI, which a component's language runtime imports whether or not it calls it: every
        // function traps (a plugin gets no filesystem, network, environment, clock or
        // randomness that way).
        linker
            .define_unknown_imports_as_traps(&component)
            .map_err(|e| LoadError::WrongWorld(format!("{e:#}")))?;
        let pre = linker
            .instantiate_pre(&component)
            .and_then(PluginPre::new)
            .map_err(|e| LoadError::WrongWorld(format!("{e:#}")))?;
        Ok(Self {
            name: name.into(),
            engine: engine.clone(),
            pre,
            grants: Arc::new(grants),
            limits,
            cached,
            warm: Mutex::default(),
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// Whether the compiled component came from the cache.
    pub fn was_cached(&self) -> bool {
        self.cached
    }

    /// Calls the plugin's `route` for a request of `tenant`: the decision, or the plugin's own
    /// refusal (`Ok(Err(..))`).
    pub fn route(
        &self,
        tenant: &str,
        ctx: &Arc<RequestContext>,
    ) -> Result<Result<RouteDecision, S3Error>, CallError> {
        self.call(tenant, ctx, |plugin, store, ctx| {
            plugin.call_route(store, ctx)
        })
    }

    /// Calls the plugin's `authorize` for a request of `tenant`.
    pub fn authorize(
        &self,
        tenant: &str,
        ctx: &Arc<RequestContext>,
    ) -> Result<Authorization, CallError> {
        self.call(tenant, ctx, |plugin, store, ctx| {
            plugin.call_authorize(store, ctx)
        })
    }

    /// Calls `f` on a warm instance (or a new one), lending it `ctx` for the call.
    fn call<R>(
        &self,
        tenant: &str,
        ctx: &Arc<RequestContext>,
        f: impl FnOnce(
            &Bindings,
            &mut Store<HostState>,
            Resource<RequestContext>,
        ) -> wasmtime::Result<R>,
    ) -> Result<R, CallError> {
        let mut warm = match self.take_warm(tenant) {
            Some(warm) => warm,
            None => self.instantiate()?,
        };
        self.start_clock(&mut warm.store);
        let state = warm.store.data_mut();
        state.lines = 0;
        state.context = Some(Arc::clone(ctx));
        // The plugin is lent the one context its store holds (see `context`).
        let result = f(&warm.plugin, &mut warm.store, Resource::new_borrow(0));
        warm.store.data_mut().context = None;
        warm.calls += 1;
        match result {
            Ok(answer) => {
                self.put_back(tenant, warm);
                Ok(answer)
            }
            // The instance is dropped: after a fault its state cannot be trusted.
            Err(err) => Err(self.classify(err, warm.store.data().limiter.hit)),
        }
    }

    /// Starts the clock of a call (or an instantiation) in `store`: no ticks seen yet. The
    /// thread's CPU time (a system call to read) is read only at ticks, which most calls, a
    /// few microseconds long, end before.
    fn start_clock(&self, store: &mut Store<HostState>) {
        let state = store.data_mut();
        state.ticks = 0;
        state.cpu_at_first_tick = None;
        store.set_epoch_deadline(1);
    }

    fn take_warm(&self, tenant: &str) -> Option<Warm> {
        self.warm.lock().ok()?.get_mut(tenant)?.pop()
    }

    fn put_back(&self, tenant: &str, warm: Warm) {
        if warm.calls >= self.limits.max_calls {
            return;
        }
        if let Ok(mut pool) = self.warm.lock() {
            // The tenant's list is there after its first call: no key to allocate.
            let kept = match pool.get_mut(tenant) {
                Some(kept) => kept,
                None => pool.entry(tenant.to_owned()).or_default(),
            };
            if kept.len() < self.limits.warm_per_tenant {
                kept.push(warm);
            }
        }
    }

    fn instantiate(&self) -> Result<Warm, CallError> {
        let state = HostState {
            plugin: Arc::clone(&self.name),
            grants: Arc::clone(&self.grants),
            limiter: MemoryLimiter {
                max: self.limits.memory,
                hit: false,
            },
            lines: 0,
            ticks: 0,
            cpu_at_first_tick: None,
            budget: self.limits.deadline,
            budget_ticks: self.limits.deadline.div_duration_f64(TICK).ceil() as u32,
            context: None,
        };
        let mut store = Store::new(self.engine.engine(), state);
        store.limiter(|s| &mut s.limiter);
        // At each epoch tick at which the plugin is seen running: stop it once both the ticks
        // and the thread's CPU time say its budget is spent (see the module documentation).
        store.epoch_deadline_callback(|mut cx| {
            let state = cx.data_mut();
            state.ticks += 1;
            let cpu = thread_cpu_time();
            let first = *state.cpu_at_first_tick.get_or_insert(cpu);
            let spent = state.ticks > state.budget_ticks
                && cpu.saturating_sub(first) + TICK >= state.budget;
            Ok(if spent {
                wasmtime::UpdateDeadline::Interrupt
            } else {
                wasmtime::UpdateDeadline::Continue(1)
            })
        });
        self.start_clock(&mut store);
        let plugin = match self.pre.instantiate(&mut store) {
            Ok(plugin) => plugin,
            Err(err) if err.is::<wasmtime::PoolConcurrencyLimitError>() => {
                return Err(CallError::Busy);
            }
            Err(err) => return Err(self.classify(err, store.data().limiter.hit)),
        };
        Ok(Warm {
            store,
            plugin,
            calls: 0,
        })
    }

    fn classify(&self, err: wasmtime::Error, memory_hit: bool) -> CallError {
        match err.downcast_ref::<wasmtime::Trap>() {
            Some(wasmtime::Trap::Interrupt) => CallError::Timeout(self.limits.deadline),
            Some(_) if memory_hit => CallError::Memory(self.limits.memory),
            Some(trap) => CallError::Trap(trap.to_string()),
            None if memory_hit => CallError::Memory(self.limits.memory),
            // A WASI function (linked by `define_unknown_imports_as_traps`, whose error says so;
            // `tests/sandbox.rs` holds it to that).
            None if format!("{err:#}").contains("unknown import: ") => {
                CallError::Trap(format!("called a function Sluice does not grant: {err:#}"))
            }
            // Not a trap: lifting the plugin's answer failed.
            None => CallError::Garbage(format!("{err:#}")),
        }
    }
}

/// The CPU time the calling thread has used.
fn thread_cpu_time() -> Duration {
    let t = rustix::time::clock_gettime(rustix::time::ClockId::ThreadCPUTime);
    Duration::new(t.tv_sec as u64, t.tv_nsec as u32)
}

/// What a component imports, sorted by what Sluice makes of it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Imports {
    /// Sluice's capability interfaces: each must be granted in the config.
    pub capabilities: Vec<Capability>,
    /// WASI interfaces, linked to functions that trap.
    pub wasi: Vec<String>,
    /// Anything else: a component importing these is refused.
    pub unknown: Vec<String>,
}

/// What `wasm` imports (compiling it, or taking it from the cache).
pub fn imports(engine: &PluginEngine, wasm: &[u8]) -> Result<Imports, LoadError> {
    let (component, _) = engine.compile(wasm)?;
    let mut out = Imports::default();
    for (import, kind) in sorted_imports(engine, &component) {
        match kind {
            Import::Capability(capability) => out.capabilities.push(capability),
            Import::Wasi => out.wasi.push(import),
            Import::Unknown => out.unknown.push(import),
        }
    }
    Ok(out)
}

/// What Sluice makes of one import.
enum Import {
    Capability(Capability),
    Wasi,
    Unknown,
}

/// `component`'s imports in order, each with what Sluice makes of it; the world's types (the
/// `types` interface, always linked, and the world's own `use` of `request-context`) left out.
fn sorted_imports(engine: &PluginEngine, component: &Component) -> Vec<(String, Import)> {
    use wasmtime::component::types::ComponentItem;
    component
        .component_type()
        .imports(engine.engine())
        .filter(|(import, item)| {
            *import != TYPES_IMPORT
                && !matches!(item.ty, ComponentItem::Type(_) | ComponentItem::Resource(_))
        })
        .map(|(import, _)| {
            let kind = match Capability::ALL
                .into_iter()
                .find(|c| c.import_name() == import)
            {
                Some(capability) => Import::Capability(capability),
                None if import.starts_with("wasi:") => Import::Wasi,
                None => Import::Unknown,
            };
            (import.to_owned(), kind)
        })
        .collect()
}

/// The interface that holds the world's types and the request context's methods: every
/// plugin imports it, and it is always linked.
const TYPES_IMPORT: &str = "sluice:plugin/types@0.1.0";

/// Every import of `component` must be a granted capability or WASI (linked as traps);
/// anything else is named.
fn check_imports(
    engine: &PluginEngine,
    component: &Component,
    grants: &Capabilities,
) -> Result<(), LoadError> {
    for (import, kind) in sorted_imports(engine, component) {
        let why = match kind {
            Import::Wasi => continue,
            Import::Capability(capability) if grants.grants(capability) => continue,
            Import::Capability(capability) => format!(
                "the config does not grant (add `{}` to the plugin's capabilities)",
                capability.name()
            ),
            Import::Unknown => "Sluice does not offer plugins".to_owned(),
        };
        return Err(LoadError::NotGranted { import, why });
    }
    Ok(())
}
