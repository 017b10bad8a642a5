//! The one wasmtime engine every plugin runs on: cranelift, epoch interruption (a ticker
//! thread advances the epoch every [`TICK`]), the pooling allocator with small explicit
//! limits, and the on-disk cache of compiled components.
//!
//! Compiling a component takes cranelift from tens of milliseconds (a small Rust plugin) to
//! tens of seconds (a JavaScript or Python one); loading a compiled artifact takes a few. So
//! artifacts are kept in a cache directory, named by the SHA-256 of the component and of
//! everything the engine's compatibility depends on, written atomically, and recompiled when
//! they do not load.

use std::hash::{Hash as _, Hasher as _};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use sha2::{Digest as _, Sha256};
use wasmtime::component::Component;
use wasmtime::{Config, Engine, InstanceAllocationStrategy, PoolingAllocationConfig};

use crate::plugin::LoadError;

/// How often the epoch advances: the unit of a call's deadline.
pub const TICK: Duration = Duration::from_millis(1);

/// The most memory any plugin instance may be given (per-plugin caps are lower).
pub const MAX_MEMORY: usize = 256 << 20;

/// Plugin instances alive at once, across plugins and tenants.
const MAX_INSTANCES: u32 = 1000;

/// The engine, shared by every plugin.
#[derive(Clone)]
pub struct PluginEngine {
    inner: Arc<Inner>,
}

struct Inner {
    engine: Engine,
    /// Compiled artifacts, if a cache directory was given.
    cache: Option<PathBuf>,
    /// Stops the ticker when the engine goes.
    _ticker: Ticker,
}

impl std::fmt::Debug for PluginEngine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PluginEngine")
            .field("cache", &self.inner.cache)
            .finish_non_exhaustive()
    }
}

impl PluginEngine {
    /// An engine whose compiled components are cached under `cache` (created if missing).
    pub fn new(cache: Option<&Path>) -> Result<Self, LoadError> {
        let mut pool = PoolingAllocationConfig::new();
        pool.total_component_instances(MAX_INSTANCES)
            .total_core_instances(MAX_INSTANCES * 8)
            .total_memories(MAX_INSTANCES)
            .total_tables(MAX_INSTANCES * 4)
            // A componentize-py component holds 38 (libc, libpython, its runtime, a stub per
            // WASI interface); a Rust one, 1 to 3.
            .max_core_instances_per_component(48)
            .max_memories_per_component(2)
            .max_tables_per_component(4)
            .max_memory_size(MAX_MEMORY)
            .table_elements(20_000);
        let mut config = Config::new();
        config
            .epoch_interruption(true)
            .max_wasm_stack(512 << 10)
            .allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
        let engine = Engine::new(&config).map_err(|e| LoadError::Engine(e.to_string()))?;
        if let Some(dir) = cache {
            std::fs::create_dir_all(dir)
                .map_err(|e| LoadError::Cache(format!("{}: {e}", dir.display())))?;
        }
        let ticker = Ticker::start(&engine);
        Ok(Self {
            inner: Arc::new(Inner {
                engine,
                cache: cache.map(Path::to_path_buf),
                _ticker: ticker,
            }),
        })
    }

    pub(crate) fn engine(&self) -> &Engine {
        &self.inner.engine
    }

    /// The compiled form of `wasm`: from the cache if there, else compiled (and cached).
    /// Returns whether it came from the cache.
    pub fn compile(&self, wasm: &[u8]) -> Result<(Component, bool), LoadError> {
        let engine = &self.inner.engine;
        let Some(dir) = &self.inner.cache else {
            return Ok((compile(engine, wasm)?, false));
        };
        let name = self.artifact_name(wasm);
        let path = dir.join(format!("{name}.cwasm"));
        if let Ok(bytes) = std::fs::read(&path) {
            // SAFETY: `deserialize` runs the artifact's native code, so it must be one this
            // engine wrote: the cache directory is Sluice's own, files are written there
            // atomically by `compile` below and named by the SHA-256 of their source and of
            // the engine's settings; wasmtime checks the engine compatibility again.
            #[allow(unsafe_code)]
            match unsafe { Component::deserialize(engine, &bytes) } {
                Ok(component) => return Ok((component, true)),
                Err(err) => {
                    tracing::warn!(path = %path.display(), error = %err, "recompiling a cached plugin that did not load");
                }
            }
        }
        let component = compile(engine, wasm)?;
        let bytes = component
            .serialize()
            .map_err(|e| LoadError::Cache(e.to_string()))?;
        let tmp = dir.join(format!(".{name}.tmp"));
        std::fs::write(&tmp, &bytes)
            .and_then(|()| std::fs::rename(&tmp, &path))
            .map_err(|e| LoadError::Cache(format!("{}: {e}", path.display())))?;
        Ok((component, false))
    }

    /// The cache's name for `wasm` compiled by this engine.
    fn artifact_name(&self, wasm: &[u8]) -> String {
        let mut settings = std::collections::hash_map::DefaultHasher::new();
        self.inner
            .engine
            .precompile_compatibility_hash()
            .hash(&mut settings);
        let mut name = Sha256::new();
        name.update(wasm);
        name.update(settings.finish().to_be_bytes());
        name.update(b"wasmtime-48");
        hex::encode(&name.finalize()[..20])
    }
}

fn compile(engine: &Engine, wasm: &[u8]) -> Result<Component, LoadError> {
    Component::new(engine, wasm).map_err(|e| LoadError::Invalid(format!("{e:#}")))
}

/// A thread that advances the engine's epoch every [`TICK`] until dropped.
struct Ticker {
    stop: Arc<std::sync::atomic::AtomicBool>,
}

impl Ticker {
    fn start(engine: &Engine) -> Self {
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let weak = engine.weak();
        let stopped = Arc::clone(&stop);
        std::thread::Builder::new()
            .name("plugin-epoch".into())
            .spawn(move || {
                while !stopped.load(std::sync::atomic::Ordering::Relaxed) {
                    std::thread::sleep(TICK);
                    match weak.upgrade() {
                        Some(engine) => engine.increment_epoch(),
                        None => break,
                    }
                }
            })
            .expect("spawning the plugin epoch thread");
        Self { stop }
    }
}

impl Drop for Ticker {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
    }
}
