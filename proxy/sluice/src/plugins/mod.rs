//! The plugin phase: after authentication, before the route is used, a tenant's chain of
//! WebAssembly plugins (`wit/plugin.wit`, run by `sluice-plugin-host`) may choose the request's
//! route and decide whether it may proceed.
//!
//! ```text
//! route:     each plugin in order; `to(route)` replaces the route in effect (later plugins
//!            see it as `configured-route`), an error denies the request
//! authorize: each plugin in order, after routing; the first `deny` ends it, `allow-if`
//!            requirements add up and are checked by the pipeline
//! ```
//!
//! A plugin that gives no decision (trap, timeout, memory, garbage, an unknown backend) denies
//! the request with `AccessDenied` naming the plugin, unless its config says `on_failure:
//! allow`. Decisions a plugin marks cacheable are kept in the [`cache`] for their TTL. Module
//! map: [`context`] (the request as plugins see it; cache keys), [`cache`] (the decision cache),
//! [`reload`] (component files replaced or SIGHUP: swapped in for new requests).

pub mod cache;
pub mod context;
pub mod reload;

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};

use arc_swap::ArcSwap;
use sluice_plugin_host::types::{
    Authorization, ContextFields, Requirements, Route, RouteChoice, RouteDecision, Verdict,
};
use sluice_plugin_host::{CallError, LoadedPlugin, PluginEngine, RequestContext};

use crate::config::{OnFailure, PluginConfig, PluginsConfig};
use crate::s3::S3Error;
use cache::{Cached, DecisionCache};
pub use context::Facts;

/// Every loaded plugin, by name, on one engine.
pub struct Plugins {
    engine: PluginEngine,
    slots: HashMap<String, Arc<Slot>>,
    cache: DecisionCache,
}

impl std::fmt::Debug for Plugins {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Plugins")
            .field("loaded", &self.slots.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

/// One configured plugin: its config and the component serving new requests (replaced on
/// reload; a request keeps the one it started with).
pub struct Slot {
    pub config: PluginConfig,
    current: ArcSwap<Loaded>,
}

/// A component as loaded, with what reload compares and what the cache keys on.
pub(crate) struct Loaded {
    plugin: LoadedPlugin,
    /// Unique per load: decisions of an older component are never reused.
    generation: u64,
    /// The component file as it was read (size, modification time, SHA-256).
    pub(crate) stamp: reload::Stamp,
    /// The context fields this plugin's last cacheable decision of each kind depended on
    /// (encoded by [`mask`]; 0 for none yet).
    masks: [AtomicU32; 2],
    /// Its last call ran out of time: until a call succeeds, its calls leave the async
    /// runtime's thread to the runtime's other tasks (see [`Plugins::decide`]).
    slow: AtomicBool,
}

static GENERATION: AtomicU64 = AtomicU64::new(1);

/// The two exports, as indexes into [`Loaded::masks`] and parts of cache keys.
#[derive(Debug, Clone, Copy)]
enum Export {
    Route = 0,
    Authorize = 1,
}

impl Plugins {
    /// Loads every configured plugin (compiling, or from the compiled-component cache). Slow:
    /// call it off the async runtime's threads.
    pub fn load(config: &PluginsConfig) -> Result<Self, String> {
        let engine =
            PluginEngine::new(config.cache_dir.as_deref()).map_err(|e| format!("plugins: {e}"))?;
        let mut slots = HashMap::new();
        for plugin in &config.modules {
            let loaded = load_component(&engine, plugin, &plugin.component)?;
            slots.insert(
                plugin.name.clone(),
                Arc::new(Slot {
                    config: plugin.clone(),
                    current: ArcSwap::from_pointee(loaded),
                }),
            );
        }
        Ok(Self {
            engine,
            slots,
            cache: DecisionCache::new(),
        })
    }

    /// The plugins `names` lists, in order (names were checked against the config).
    pub fn chain(&self, names: &[String]) -> Vec<Arc<Slot>> {
        names
            .iter()
            .filter_map(|n| self.slots.get(n).cloned())
            .collect()
    }

    pub(crate) fn engine(&self) -> &PluginEngine {
        &self.engine
    }

    pub(crate) fn slots(&self) -> impl Iterator<Item = &Arc<Slot>> {
        self.slots.values()
    }

    /// Runs `chain` on a request: see the module documentation. `valid_route` says whether a
    /// route a plugin chose may be taken (its backend is one the tenant's routes name). What
    /// each plugin decided is appended to `log` for the access line.
    pub fn decide(
        &self,
        chain: &[Arc<Slot>],
        facts: &Facts<'_>,
        configured: Option<Route>,
        valid_route: &dyn Fn(&Route) -> Result<(), String>,
        log: &mut String,
    ) -> Result<Decision, S3Error> {
        let mut run = Run::new(self, chain, facts, configured, valid_route, log);
        let slow = run.loaded.iter().any(|l| l.slow.load(Ordering::Relaxed));
        let phases = |run: &mut Run<'_, '_>| {
            if facts.op.bucket().is_some() {
                run.route_phase()?;
            }
            run.authorize_phase()
        };
        // Calls run on the calling thread, each bounded by its CPU deadline. A plugin that
        // last ran out of time will likely hold the thread that long again: on the
        // multi-threaded runtime its calls first hand this thread's other tasks to another
        // (a few microseconds), so other tenants' requests do not wait behind it.
        let multi_thread = || {
            tokio::runtime::Handle::try_current()
                .is_ok_and(|h| h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread)
        };
        if slow && multi_thread() {
            tokio::task::block_in_place(|| phases(&mut run))?;
        } else {
            phases(&mut run)?;
        }
        Ok(run.decision)
    }

    /// The route `chain` chooses for a request, without authorising it (ListBuckets asks this
    /// of every bucket it lists). A plugin that fails or refuses counts as choosing none.
    pub fn route_of(
        &self,
        chain: &[Arc<Slot>],
        facts: &Facts<'_>,
        configured: Option<Route>,
        valid_route: &dyn Fn(&Route) -> Result<(), String>,
    ) -> Option<Route> {
        let mut log = String::new();
        let mut run = Run::new(self, chain, facts, configured, valid_route, &mut log);
        run.route_phase().ok()?;
        run.decision.route.map(|(_, route)| route)
    }

    /// One call, or its cached answer (`true` when from the cache).
    fn call(
        &self,
        plugin: &Loaded,
        export: Export,
        facts: &Facts<'_>,
        route: Option<&Route>,
        scratch: &mut Scratch,
        f: impl FnOnce(
            &LoadedPlugin,
            &Arc<RequestContext>,
        )
            -> Result<(Cached, Option<sluice_plugin_host::types::CacheHint>), CallError>,
    ) -> Result<(Arc<Cached>, bool), CallError> {
        let Scratch { ctx, key } = scratch;
        let call = plugin.generation << 1 | export as u64;
        let known = plugin.masks[export as usize].load(Ordering::Relaxed);
        if known != 0 {
            facts.write_cache_key(key, call, route, fields(known));
            if let Some(hit) = self.cache.get(key) {
                return Ok((hit, true));
            }
        }
        let ctx = match ctx {
            Some(ctx) => {
                if ctx.configured_route.as_ref() != route {
                    // No call holds it now: this changes it in place.
                    Arc::make_mut(ctx).configured_route = route.cloned();
                }
                ctx
            }
            None => ctx.insert(Arc::new(facts.context(route))),
        };
        let (answer, hint) = f(&plugin.plugin, ctx).inspect_err(|err| {
            if matches!(err, CallError::Timeout(_)) {
                plugin.slow.store(true, Ordering::Relaxed);
            }
        })?;
        plugin.slow.store(false, Ordering::Relaxed);
        let answer = Arc::new(answer);
        if let Some(hint) = hint.filter(|h| h.ttl_ms > 0) {
            let named = mask(hint.depends_on);
            plugin.masks[export as usize].store(named, Ordering::Relaxed);
            // The key looked up above, unless the plugin now names other fields.
            if named != known {
                facts.write_cache_key(key, call, route, hint.depends_on);
            }
            self.cache.insert(key, Arc::clone(&answer), hint.ttl_ms);
        }
        Ok((answer, false))
    }
}

/// What a request's calls build once and share.
#[derive(Default)]
struct Scratch {
    /// The context: built on the first call that misses the cache, then kept up to date.
    ctx: Option<Arc<RequestContext>>,
    /// The decision-cache key of the call under way.
    key: Vec<u8>,
}

/// One request's way through a chain.
struct Run<'r, 'f> {
    plugins: &'r Plugins,
    chain: &'r [Arc<Slot>],
    /// Each plugin's component, held for the whole request: routing and authorising see the
    /// same one even if a reload lands in between. (Guards, not clones: a clone would make
    /// every request write the component's shared reference count.)
    loaded: Vec<arc_swap::Guard<Arc<Loaded>>>,
    facts: &'r Facts<'f>,
    valid_route: &'r dyn Fn(&Route) -> Result<(), String>,
    /// The route in effect: the configured one, or the last a plugin chose.
    route: Option<Route>,
    scratch: Scratch,
    log: &'r mut String,
    decision: Decision,
}

impl<'r, 'f> Run<'r, 'f> {
    fn new(
        plugins: &'r Plugins,
        chain: &'r [Arc<Slot>],
        facts: &'r Facts<'f>,
        configured: Option<Route>,
        valid_route: &'r dyn Fn(&Route) -> Result<(), String>,
        log: &'r mut String,
    ) -> Self {
        Self {
            plugins,
            chain,
            loaded: chain.iter().map(|s| s.current.load()).collect(),
            facts,
            valid_route,
            route: configured,
            scratch: Scratch::default(),
            log,
            decision: Decision {
                route: None,
                requirements: Requirements::empty(),
            },
        }
    }

    /// Each plugin's `route`, in order.
    fn route_phase(&mut self) -> Result<(), S3Error> {
        let tenant = self.facts.tenant;
        for (slot, plugin) in self.chain.iter().zip(&self.loaded) {
            let outcome = self.plugins.call(
                plugin,
                Export::Route,
                self.facts,
                self.route.as_ref(),
                &mut self.scratch,
                |p, c| {
                    p.route(tenant, c).map(|answer| match answer {
                        Ok(RouteDecision { choice, cache }) => (Cached::Route(Ok(choice)), cache),
                        Err(err) => (Cached::Route(Err(err)), None),
                    })
                },
            );
            let Some((answer, hit)) = answered(slot, self.facts, "route", outcome, self.log)?
            else {
                continue;
            };
            let Cached::Route(answer) = &*answer else {
                unreachable!("route answers are cached as routes")
            };
            let name = &slot.config.name;
            match answer {
                Ok(RouteChoice::Configured) => note(self.log, name, "route", "configured", hit),
                Ok(RouteChoice::To(to)) => match (self.valid_route)(to) {
                    Ok(()) => {
                        note(self.log, name, "route", &describe(to), hit);
                        self.route = Some(to.clone());
                        self.decision.route = Some((Arc::from(name.as_str()), to.clone()));
                    }
                    Err(why) => failed(slot, self.facts, "route", &why, self.log)?,
                },
                Err(err) => {
                    note(self.log, name, "route", &format!("error:{}", err.code), hit);
                    return Err(plugin_error(slot, self.facts, err)?);
                }
            }
        }
        Ok(())
    }

    /// Each plugin's `authorize`, in order, with the route in effect.
    fn authorize_phase(&mut self) -> Result<(), S3Error> {
        let tenant = self.facts.tenant;
        for (slot, plugin) in self.chain.iter().zip(&self.loaded) {
            let outcome = self.plugins.call(
                plugin,
                Export::Authorize,
                self.facts,
                self.route.as_ref(),
                &mut self.scratch,
                |p, c| {
                    p.authorize(tenant, c)
                        .map(|Authorization { verdict, cache }| (Cached::Authorize(verdict), cache))
                },
            );
            let Some((answer, hit)) = answered(slot, self.facts, "authorize", outcome, self.log)?
            else {
                continue;
            };
            let Cached::Authorize(verdict) = &*answer else {
                unreachable!("authorize answers are cached as verdicts")
            };
            let name = &slot.config.name;
            match verdict {
                Verdict::Allow => note(self.log, name, "authorize", "allow", hit),
                Verdict::AllowIf(needs) => {
                    note(
                        self.log,
                        name,
                        "authorize",
                        &format!("allow-if:{needs:?}"),
                        hit,
                    );
                    self.decision.requirements |= *needs;
                }
                Verdict::Deny(err) => {
                    note(
                        self.log,
                        name,
                        "authorize",
                        &format!("deny:{}", err.code),
                        hit,
                    );
                    return Err(plugin_error(slot, self.facts, err)?);
                }
            }
        }
        Ok(())
    }
}

impl std::fmt::Debug for Slot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Slot")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

/// What the chain decided for a request it let through.
#[derive(Debug)]
pub struct Decision {
    /// The route a plugin chose (the last that chose one), if any did.
    pub route: Option<(Arc<str>, Route)>,
    /// What `allow-if` verdicts require of the request.
    pub requirements: Requirements,
}

/// Reads and loads a component file for `config`.
pub(crate) fn load_component(
    engine: &PluginEngine,
    config: &PluginConfig,
    path: &Path,
) -> Result<Loaded, String> {
    let place = format!("plugins.modules.{} ({})", config.name, path.display());
    let wasm = std::fs::read(path).map_err(|e| format!("{place}: cannot read: {e}"))?;
    let stamp = reload::Stamp::of(path, &wasm);
    let plugin = LoadedPlugin::load(
        engine,
        &config.name,
        &wasm,
        config.grants.clone(),
        config.limits,
    )
    .map_err(|e| format!("{place}: {e}"))?;
    Ok(Loaded {
        plugin,
        generation: GENERATION.fetch_add(1, Ordering::Relaxed),
        stamp,
        masks: [AtomicU32::new(0), AtomicU32::new(0)],
        slow: AtomicBool::new(false),
    })
}

impl Slot {
    /// Serves new requests with `loaded`; requests under way finish on the old component.
    pub(crate) fn replace(&self, loaded: Loaded) {
        self.current.store(Arc::new(loaded));
    }

    pub(crate) fn current(&self) -> Arc<Loaded> {
        self.current.load_full()
    }
}

/// A call's answer, or `None` when the plugin gave none and its config lets the request go on
/// without it.
fn answered(
    slot: &Slot,
    facts: &Facts<'_>,
    export: &str,
    outcome: Result<(Arc<Cached>, bool), CallError>,
    log: &mut String,
) -> Result<Option<(Arc<Cached>, bool)>, S3Error> {
    match outcome {
        Ok(answer) => Ok(Some(answer)),
        Err(err) => {
            failed(slot, facts, export, &err.to_string(), log)?;
            Ok(None)
        }
    }
}

/// A plugin gave no decision: fail closed (the request is denied, naming the plugin but never
/// its internals) or, where its config says so, open.
fn failed(
    slot: &Slot,
    facts: &Facts<'_>,
    export: &str,
    why: &str,
    log: &mut String,
) -> Result<(), S3Error> {
    let name = &slot.config.name;
    note(log, name, export, "failed", false);
    tracing::warn!(
        target: "sluice::plugin",
        plugin = name.as_str(),
        request_id = facts.request_id,
        tenant = facts.tenant,
        export,
        error = why,
        fail_open = slot.config.on_failure == OnFailure::Allow,
        "plugin gave no decision"
    );
    match slot.config.on_failure {
        OnFailure::Allow => Ok(()),
        OnFailure::Deny => Err(S3Error::access_denied(format!(
            "Plugin {name} could not decide on this request."
        ))),
    }
}

/// The error a plugin answered with; one that is not a valid S3 error is a plugin failure.
fn plugin_error(
    slot: &Slot,
    facts: &Facts<'_>,
    err: &sluice_plugin_host::types::S3Error,
) -> Result<S3Error, S3Error> {
    match S3Error::from_plugin(&err.code, &err.message, err.status) {
        Ok(err) => Ok(err),
        Err(why) => {
            let mut ignored = String::new();
            failed(slot, facts, "answer", &why, &mut ignored)?;
            // Fail-open: the plugin meant to refuse, but said it in a way Sluice cannot pass on.
            Ok(S3Error::access_denied(format!(
                "Plugin {} denied this request.",
                slot.config.name
            )))
        }
    }
}

fn note(log: &mut String, plugin: &str, export: &str, what: &str, cached: bool) {
    if !log.is_empty() {
        log.push(' ');
    }
    for part in [plugin, ".", export, "=", what] {
        log.push_str(part);
    }
    if cached {
        log.push_str("(cached)");
    }
}

fn describe(route: &Route) -> String {
    let mut out = route.backend.clone();
    if let Some(bucket) = &route.target_bucket {
        out.push('/');
        out.push_str(bucket);
    }
    if let Some(prefix) = &route.key_prefix {
        out.push_str("+prefix:");
        out.push_str(prefix);
    }
    out
}

/// Context fields in the order of their flags in the WIT.
const FIELDS: [ContextFields; 12] = [
    ContextFields::TENANT,
    ContextFields::ACCESS_KEY_ID,
    ContextFields::OPERATION_KIND,
    ContextFields::BUCKET,
    ContextFields::KEY,
    ContextFields::METHOD,
    ContextFields::SOURCE_ADDRESS,
    ContextFields::TLS,
    ContextFields::AUTH,
    ContextFields::HEADERS,
    ContextFields::QUERY,
    ContextFields::CONTENT_LENGTH,
];

/// `fields` as a non-zero `u32` (bit 31 marks "known"), for an atomic.
fn mask(fields: ContextFields) -> u32 {
    FIELDS
        .iter()
        .enumerate()
        .filter(|(_, f)| fields.contains(**f))
        .fold(1 << 31, |m, (i, _)| m | 1 << i)
}

fn fields(mask: u32) -> ContextFields {
    FIELDS
        .iter()
        .enumerate()
        .filter(|(i, _)| mask & (1 << i) != 0)
        .fold(ContextFields::empty(), |f, (_, field)| f | *field)
}
