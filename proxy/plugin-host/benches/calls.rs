//! What a plugin call costs: `tenant-router` (built by `plugins/build.sh`, run here if
//! `SLUICE_PLUGINS_DIR` does not name its output) called through a warm pooled instance, and
//! with a fresh instance (and Store) per call (`isolation: per-request`); and loading the
//! component from the compiled cache.
//!
//! `cargo bench -p sluice-plugin-host --bench calls`

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
#[path = "../tests/common/mod.rs"]
mod common;

use std::sync::Arc;

use sluice_plugin_host::types::OpKind;
use sluice_plugin_host::{Capabilities, Limits, LoadedPlugin, PluginEngine, RequestContext};

fn component() -> Vec<u8> {
    let dir = common::built("tenant_router.wasm", "build.sh");
    std::fs::read(dir.join("tenant_router.wasm")).unwrap()
}

fn grants() -> Capabilities {
    common::router_grants(&[("acme/eu-*", "eu-store"), ("*/logs", "archive")])
}

fn ctx() -> Arc<RequestContext> {
    Arc::new(common::context(
        "acme",
        OpKind::GetObject,
        "eu-photos",
        "2026/12/cat.jpg",
    ))
}

fn calls(c: &mut Criterion) {
    let wasm = component();
    let cache = tempfile::tempdir().unwrap();
    let engine = PluginEngine::new(Some(cache.path())).unwrap();
    let warm =
        LoadedPlugin::load(&engine, "tenant-router", &wasm, grants(), Limits::default()).unwrap();
    let fresh_limits = Limits {
        max_calls: 1,
        ..Limits::default()
    };
    let fresh =
        LoadedPlugin::load(&engine, "tenant-router", &wasm, grants(), fresh_limits).unwrap();
    let ctx = ctx();
    let mut group = c.benchmark_group("tenant-router");
    group.bench_function("route, warm instance", |b| {
        b.iter(|| warm.route("acme", black_box(&ctx)).unwrap().unwrap())
    });
    group.bench_function("route, fresh instance and Store", |b| {
        b.iter(|| fresh.route("acme", black_box(&ctx)).unwrap().unwrap())
    });
    group.bench_function("load from the compiled cache", |b| {
        b.iter(|| {
            let plugin =
                LoadedPlugin::load(&engine, "tenant-router", &wasm, grants(), Limits::default())
                    .unwrap();
            assert!(plugin.was_cached());
        })
    });
    group.finish();
    let started = std::time::Instant::now();
    let uncached = PluginEngine::new(None).unwrap();
    LoadedPlugin::load(
        &uncached,
        "tenant-router",
        &wasm,
        grants(),
        Limits::default(),
    )
    .unwrap();
    println!("tenant-router: compiled in {:?}", started.elapsed());
}

criterion_group!(benches, calls);
criterion_main!(benches);
