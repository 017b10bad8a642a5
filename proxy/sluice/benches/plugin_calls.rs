//! What a plugin costs a request, call by call, as percentiles (`cargo bench -p sluice --bench
//! plugin_calls`), in microseconds. `-- WORD` runs only the scenarios whose name holds WORD.
//!
//! - `template` (does nothing: the cost of a call itself), `tenant-router` in Rust and in
//!   Python, each through a warm pooled instance and through a fresh instance per call
//!   (`isolation: per-request`);
//! - a decision-cache hit alone: the call's key built and looked up;
//! - the plugin phase as the pipeline runs it (`Plugins::decide`, one plugin): route from the
//!   decision cache and authorize called; both from the cache; and one decision (ListBuckets
//!   has no route step) from the cache: what a cache hit costs a request, all told.
//!
//! The machine is shared, and its speed is not constant: for stretches of tens of
//! milliseconds, ordinary code runs 1.6 to 2 times slower than at other times (plain Rust as
//! much as a plugin call; seen on this project's 2-core KVM machine, whose neighbours we do not
//! see). So the scenarios are timed in interleaved rounds (`SLUICE_BENCH_ROUNDS`, 30, of
//! `SLUICE_BENCH_ROUND_MS`, 10 ms, each), and between every two rounds a control runs: plain
//! Rust work that, like a plugin call, branches and allocates (`serde_json` parsing a small
//! document), 3 ms of it. A round whose controls before and after both ran within 15% of the
//! control's fastest is *quiet*. Each scenario prints its percentiles over all its calls and
//! over the calls of its quiet rounds: the first says what the machine gave, the second what
//! the call costs when nothing else slows the machine down.
//!
//! `SLUICE_BENCH_EVICT_KIB` writes that much memory before each call (untimed), as a server's
//! other work would, evicting the plugin from the CPU's caches.
//!
//! The components come from `SLUICE_PLUGINS_DIR` (else `plugins/build.sh` and
//! `plugins/build-second-language.sh` are run).

use std::hint::black_box;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use sluice::config::{OnFailure, PluginConfig, PluginsConfig};
use sluice::plugins::cache::{Cached, DecisionCache};
use sluice::plugins::{Facts, Plugins};
use sluice::s3::S3Op;

use sluice_plugin_host::context::header_map;
use sluice_plugin_host::types::{ContextFields, OpKind, Verdict};
use sluice_plugin_host::{Capabilities, Limits, LoadedPlugin, PluginEngine, RequestContext};

#[path = "../../plugin-host/tests/common/mod.rs"]
mod common;

/// Calls made before any is timed, per scenario.
const WARMUP: usize = 2_000;
/// How long the control runs between two rounds.
const CONTROL: Duration = Duration::from_millis(3);
/// A control block this much slower than the fastest one ran on a slowed-down machine.
const QUIET_WITHIN: f64 = 1.15;

fn setting(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(default)
}

/// Where both the Rust components and the Python one are.
fn built() -> PathBuf {
    common::built("plugin_template.wasm", "build.sh");
    common::built("tenant_router_py.wasm", "build-second-language.sh")
}

fn router_grants() -> Capabilities {
    common::router_grants(&[("acme/eu-*", "eu-store"), ("*/logs", "archive")])
}

/// A GetObject as an SDK sends it (the plugin host's test context, with an SDK's headers).
fn context() -> Arc<RequestContext> {
    let mut ctx = common::context("acme", OpKind::GetObject, "eu-photos", "2026/12/cat.jpg");
    ctx.headers = header_map([
        ("host", "127.0.0.1:9000"),
        ("user-agent", "aws-sdk-rust/1.0"),
        ("x-amz-date", "20261201T120000Z"),
        ("x-amz-content-sha256", "UNSIGNED-PAYLOAD"),
        ("accept-encoding", "identity"),
    ])
    .unwrap();
    Arc::new(ctx)
}

/// One thing timed call by call.
struct Scenario<'a> {
    name: String,
    call: Box<dyn FnMut() + 'a>,
    /// Printed under its percentiles.
    note: Option<String>,
    /// The calls of each round.
    rounds: Vec<Vec<Duration>>,
}

impl<'a> Scenario<'a> {
    fn new(name: impl Into<String>, call: impl FnMut() + 'a) -> Self {
        Self {
            name: name.into(),
            call: Box::new(call),
            note: None,
            rounds: Vec::new(),
        }
    }
}

/// Times `call` one call at a time for `length` (at least 20 calls), writing `evict` (the
/// other work of `SLUICE_BENCH_EVICT_KIB`) before each call, untimed.
fn block(call: &mut dyn FnMut(), length: Duration, evict: &mut [u8]) -> Vec<Duration> {
    let mut samples = Vec::new();
    let started = Instant::now();
    while samples.len() < 20 || started.elapsed() < length {
        for byte in evict.iter_mut().step_by(64) {
            *byte = byte.wrapping_add(1);
        }
        black_box(&mut *evict);
        let at = Instant::now();
        call();
        samples.push(at.elapsed());
    }
    samples
}

fn median(samples: &mut [Duration]) -> Duration {
    samples.sort_unstable();
    samples[samples.len() / 2]
}

/// p50 and p99 of `samples`, in microseconds.
fn percentiles(mut samples: Vec<Duration>) -> (f64, f64) {
    samples.sort_unstable();
    let at = |q: f64| {
        let i = ((samples.len() as f64 * q) as usize).min(samples.len() - 1);
        samples[i].as_secs_f64() * 1e6
    };
    (at(0.50), at(0.99))
}

/// Runs the scenarios in interleaved rounds with the control between them (see the module
/// documentation) and prints each one's percentiles, over all rounds and over quiet ones.
fn run(scenarios: &mut [Scenario<'_>]) {
    let rounds = setting("SLUICE_BENCH_ROUNDS", 30) as usize;
    let length = Duration::from_millis(setting("SLUICE_BENCH_ROUND_MS", 10));
    let mut evict = vec![0u8; (setting("SLUICE_BENCH_EVICT_KIB", 0) as usize) << 10];
    let document = format!(
        "[{}]",
        (0..8)
            .map(|i| format!(
                r#"{{"key":"photos/2026/{i}/cat.jpg","size":4096{i},"etag":"\"e{i}\"","tags":["a","b"]}}"#
            ))
            .collect::<Vec<_>>()
            .join(",")
    );
    let mut control = || {
        black_box(serde_json::from_str::<serde_json::Value>(black_box(&document)).unwrap());
    };
    for scenario in scenarios.iter_mut() {
        for _ in 0..WARMUP {
            (scenario.call)();
        }
    }
    // The control's median in each block, in order: block i ran before the i-th scenario
    // block (counting across rounds) and block i + 1 after it.
    let mut controls = vec![median(&mut block(&mut control, CONTROL, &mut evict))];
    for _ in 0..rounds {
        for scenario in scenarios.iter_mut() {
            let samples = block(&mut *scenario.call, length, &mut evict);
            scenario.rounds.push(samples);
            controls.push(median(&mut block(&mut control, CONTROL, &mut evict)));
        }
    }
    let fastest = *controls.iter().min().unwrap();
    let quiet = |c: Duration| c.as_secs_f64() <= fastest.as_secs_f64() * QUIET_WITHIN;
    let quiet_blocks = controls.iter().filter(|c| quiet(**c)).count();
    println!(
        "control (serde_json, 8 objects): fastest block p50 {:.2} us; {quiet_blocks} of {} blocks quiet (within {:.0}% of it)",
        fastest.as_secs_f64() * 1e6,
        controls.len(),
        (QUIET_WITHIN - 1.0) * 100.0
    );
    println!("{:<52} {:>27}   quiet rounds", "", "all rounds");
    let n = scenarios.len();
    for (s, scenario) in scenarios.iter_mut().enumerate() {
        let mut all = Vec::new();
        let mut calm = Vec::new();
        let mut calm_rounds = 0;
        for (r, samples) in scenario.rounds.drain(..).enumerate() {
            let i = r * n + s;
            if quiet(controls[i]) && quiet(controls[i + 1]) {
                calm_rounds += 1;
                calm.extend_from_slice(&samples);
            }
            all.extend(samples);
        }
        let (p50, p99) = percentiles(all);
        let calm = if calm.is_empty() {
            "none".to_owned()
        } else {
            let (q50, q99) = percentiles(calm);
            format!("{calm_rounds:>2}/{rounds}: p50 {q50:>8.2} us  p99 {q99:>8.2} us")
        };
        println!(
            "{:<52} p50 {p50:>8.2} us  p99 {p99:>8.2} us   {calm}",
            scenario.name
        );
        if let Some(note) = &scenario.note {
            println!("{:<52} {note}", "");
        }
    }
}

/// Calls of each plugin directly (`LoadedPlugin::route`). Loaded first, so that each Rust
/// plugin's note says how long compiling it took.
fn direct<'a>(
    engine: &PluginEngine,
    dir: &Path,
    ctx: &'a Arc<RequestContext>,
) -> Vec<Scenario<'a>> {
    let mut scenarios = Vec::new();
    let fresh = Limits {
        max_calls: 1,
        ..Limits::default()
    };
    // A Python instance's first call instantiates it: more than the default 5 ms.
    let python = Limits {
        deadline: Duration::from_millis(50),
        ..Limits::default()
    };
    let python_fresh = Limits {
        max_calls: 1,
        ..python
    };
    let cases: [(&str, &str, Capabilities, Limits); 6] = [
        (
            "template, warm",
            "plugin_template.wasm",
            Capabilities::default(),
            Limits::default(),
        ),
        (
            "template, fresh instance",
            "plugin_template.wasm",
            Capabilities::default(),
            fresh,
        ),
        (
            "tenant-router (Rust), warm",
            "tenant_router.wasm",
            router_grants(),
            Limits::default(),
        ),
        (
            "tenant-router (Rust), fresh instance",
            "tenant_router.wasm",
            router_grants(),
            fresh,
        ),
        (
            "tenant-router (Python), warm",
            "tenant_router_py.wasm",
            router_grants(),
            python,
        ),
        (
            "tenant-router (Python), fresh instance",
            "tenant_router_py.wasm",
            router_grants(),
            python_fresh,
        ),
    ];
    for (name, file, grants, limits) in cases {
        let name = format!("route: {name}");
        if !wanted(&name) {
            continue;
        }
        let wasm = std::fs::read(dir.join(file)).unwrap();
        let started = Instant::now();
        let plugin = LoadedPlugin::load(engine, &name, &wasm, grants, limits).unwrap();
        let loaded = started.elapsed();
        let how = if plugin.was_cached() {
            "loaded from the cache"
        } else {
            "compiled"
        };
        let mut scenario = Scenario::new(name, move || {
            black_box(plugin.route("acme", black_box(ctx)).unwrap().unwrap());
        });
        scenario.note = Some(format!("{how} in {:.1} ms", loaded.as_secs_f64() * 1e3));
        scenarios.push(scenario);
    }
    scenarios
}

fn main() {
    let dir = built();
    let cache = tempfile::tempdir().unwrap();
    let engine = PluginEngine::new(Some(cache.path())).unwrap();
    let ctx = context();
    let direct = direct(&engine, &dir, &ctx);

    // The plugin phase as the pipeline runs it, and the decision cache alone.
    let module = |name: &str, file: &str, grants: Capabilities| PluginConfig {
        name: name.to_owned(),
        component: dir.join(file),
        grants,
        limits: Limits::default(),
        on_failure: OnFailure::Deny,
    };
    let config = PluginsConfig {
        cache_dir: Some(cache.path().to_path_buf()),
        modules: vec![
            module("router", "tenant_router.wasm", router_grants()),
            module("template", "plugin_template.wasm", Capabilities::default()),
        ],
    };
    let plugins = Plugins::load(&config).unwrap();
    let request = http::Request::get("/eu-photos/2026/12/cat.jpg")
        .header("host", "127.0.0.1:9000")
        .header("x-amz-date", "20261201T120000Z")
        .header("x-amz-content-sha256", "UNSIGNED-PAYLOAD")
        .body(())
        .unwrap();
    let (parts, ()) = request.into_parts();
    let op = S3Op::Object(
        sluice_storage::BucketName::parse("eu-photos").unwrap(),
        sluice_storage::ObjectKey::parse("2026/12/cat.jpg").unwrap(),
        sluice::s3::router::ObjectOp::Get { range: None },
    );
    let payload = sluice_sigv4::PayloadMode::Unsigned;
    let facts = Facts {
        request_id: "bench",
        tenant: "acme",
        access_key_id: "SLUICEBENCH00000",
        op: &op,
        parts: &parts,
        peer: "127.0.0.1:40000".parse().unwrap(),
        tls: None,
        presigned: false,
        payload: &payload,
        has_body: false,
        encryption: sluice_storage::Policy::Off,
    };
    // tenant-router marks its decisions cacheable (tenant, bucket); authorize is not, so the
    // chain [router] hits the cache for route and calls authorize each time.
    let router = plugins.chain(&["router".to_owned()]);
    // The template marks both cacheable: after the first request, no call at all.
    let template = plugins.chain(&["template".to_owned()]);
    // A request without a bucket (ListBuckets) has no route step: with the template, the
    // phase is one decision, from the cache.
    let (list_parts, ()) = http::Request::get("/")
        .header("host", "127.0.0.1:9000")
        .body(())
        .unwrap()
        .into_parts();
    let list_buckets = Facts {
        op: &S3Op::ListBuckets,
        parts: &list_parts,
        ..facts
    };
    // A decision-cache hit alone: the key of a call (tenant, route in effect, and the fields
    // the plugin named: here the operation and the bucket) and its lookup.
    let cache = DecisionCache::new();
    let fields = ContextFields::OPERATION_KIND | ContextFields::BUCKET;
    let mut key = Vec::new();
    facts.write_cache_key(&mut key, 7, None, fields);
    cache.insert(&key, Arc::new(Cached::Authorize(Verdict::Allow)), 60_000);

    let mut scenarios = direct;
    let name = "decision cache: key and lookup (a hit)";
    if wanted(name) {
        let (cache, facts) = (&cache, &facts);
        scenarios.push(Scenario::new(name, move || {
            facts.write_cache_key(&mut key, 7, None, fields);
            black_box(cache.get(&key).unwrap());
        }));
    }
    for (name, chain, facts) in [
        ("router: route cached, authorize called", &router, &facts),
        ("template: both decisions from the cache", &template, &facts),
        (
            "template, ListBuckets: one decision, from the cache",
            &template,
            &list_buckets,
        ),
    ] {
        let name = format!("plugin phase, {name}");
        if !wanted(&name) {
            continue;
        }
        let plugins = &plugins;
        let mut log = String::new();
        scenarios.push(Scenario::new(name, move || {
            log.clear();
            let ok = |_: &sluice_plugin_host::types::Route| Ok(());
            black_box(plugins.decide(chain, facts, None, &ok, &mut log).unwrap());
        }));
    }
    run(&mut scenarios);
}

/// Whether the scenario `name` was asked for: `cargo bench -p sluice --bench plugin_calls --
/// WORD` runs the scenarios whose name contains WORD (all without one).
fn wanted(name: &str) -> bool {
    // `cargo bench` passes `--bench`.
    std::env::args()
        .skip(1)
        .find(|a| !a.starts_with('-'))
        .is_none_or(|word| name.contains(&word))
}
