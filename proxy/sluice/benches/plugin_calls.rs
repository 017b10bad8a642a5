//! What a plugin costs a request, call by call, as percentiles (`cargo bench -p sluice --bench
//! plugin_calls`): each scenario times 20,000 calls one by one (after 2,000 to warm up) and
//! prints p50 and p99 in microseconds. `-- WORD` runs only the scenarios whose name holds
//! WORD; `SLUICE_BENCH_CALLS` changes the number of calls, `SLUICE_BENCH_EVICT_KIB` writes that
//! much memory between calls (a server's other work, evicting the plugin from the caches).
//!
//! - `template` (does nothing: the cost of a call itself), `tenant-router` in Rust and in
//!   Python, each through a warm pooled instance and through a fresh instance per call
//!   (`isolation: per-request`);
//! - a decision-cache hit alone: the call's key built and looked up;
//! - the plugin phase as the pipeline runs it (`Plugins::decide`, one plugin): route from the
//!   decision cache and authorize called; both from the cache; and one decision (ListBuckets
//!   has no route step) from the cache: what a cache hit costs a request, all told.
//!
//! The components come from `SLUICE_PLUGINS_DIR` (else `plugins/build.sh` and
//! `plugins/build-second-language.sh` are run).

use std::hint::black_box;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use sluice::config::{OnFailure, PluginConfig, PluginsConfig};
use sluice::plugins::cache::{Cached, DecisionCache};
use sluice::plugins::{Facts, Plugins};
use sluice::s3::S3Op;
use std::sync::Arc;

use sluice_plugin_host::context::header_map;
use sluice_plugin_host::types::{ContextFields, OpKind, Verdict};
use sluice_plugin_host::{Capabilities, Limits, LoadedPlugin, PluginEngine, RequestContext};

#[path = "../../plugin-host/tests/common/mod.rs"]
mod common;

/// Calls timed per scenario: 20,000, or `SLUICE_BENCH_CALLS` (more, to profile one).
fn calls() -> usize {
    std::env::var("SLUICE_BENCH_CALLS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(20_000)
}
const WARMUP: usize = 2_000;

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

/// Times `f` call by call; prints and returns (p50, p99) in microseconds.
fn percentiles(name: &str, mut f: impl FnMut()) -> (f64, f64) {
    for _ in 0..WARMUP {
        f();
    }
    let calls = calls();
    // Memory written between calls (untimed), as a server's other work would, evicting the
    // plugin from the CPU's caches: `SLUICE_BENCH_EVICT_KIB` (none by default).
    let evict: usize = std::env::var("SLUICE_BENCH_EVICT_KIB")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    let mut other_work = vec![0u8; evict << 10];
    let mut samples: Vec<Duration> = (0..calls)
        .map(|i| {
            for byte in other_work.iter_mut().step_by(64) {
                *byte = byte.wrapping_add(i as u8);
            }
            black_box(&other_work);
            let started = Instant::now();
            f();
            started.elapsed()
        })
        .collect();
    samples.sort_unstable();
    let at = |q: f64| samples[((calls as f64 * q) as usize).min(calls - 1)].as_secs_f64() * 1e6;
    let (p50, p99) = (at(0.50), at(0.99));
    println!("{name:<52} p50 {p50:>9.2} us   p99 {p99:>9.2} us");
    (p50, p99)
}

fn direct(engine: &PluginEngine, dir: &Path) {
    let ctx = context();
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
        if !wanted(&format!("route: {name}")) {
            continue;
        }
        let wasm = std::fs::read(dir.join(file)).unwrap();
        let started = Instant::now();
        let plugin = LoadedPlugin::load(engine, name, &wasm, grants, limits).unwrap();
        let loaded = started.elapsed();
        percentiles(&format!("route: {name}"), || {
            black_box(plugin.route("acme", black_box(&ctx)).unwrap().unwrap());
        });
        println!(
            "{:<52} {} in {:.1} ms",
            "",
            if plugin.was_cached() {
                "loaded from the cache"
            } else {
                "compiled"
            },
            loaded.as_secs_f64() * 1e3
        );
    }
}

fn phase(dir: &Path, cache: &Path) {
    let module = |name: &str, file: &str, grants: Capabilities| PluginConfig {
        name: name.to_owned(),
        component: dir.join(file),
        grants,
        limits: Limits::default(),
        on_failure: OnFailure::Deny,
    };
    let config = PluginsConfig {
        cache_dir: Some(cache.to_path_buf()),
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
    let ok = |_: &sluice_plugin_host::types::Route| Ok(());
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
    let answer = Arc::new(Cached::Authorize(Verdict::Allow));
    cache.insert(&key, answer, 60_000);
    if wanted("decision cache: key and lookup (a hit)") {
        percentiles("decision cache: key and lookup (a hit)", || {
            facts.write_cache_key(&mut key, 7, None, fields);
            black_box(cache.get(&key).unwrap());
        });
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
        if !wanted(&format!("plugin phase, {name}")) {
            continue;
        }
        let mut log = String::new();
        percentiles(&format!("plugin phase, {name}"), || {
            log.clear();
            black_box(plugins.decide(chain, facts, None, &ok, &mut log).unwrap());
        });
    }
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

fn main() {
    let dir = built();
    let cache = tempfile::tempdir().unwrap();
    let engine = PluginEngine::new(Some(cache.path())).unwrap();
    direct(&engine, &dir);
    phase(&dir, cache.path());
}
