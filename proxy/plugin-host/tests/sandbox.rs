//! The sandbox, with components made here from small core modules (text format) and the
//! interface in `wit/plugin.wit`: decisions come back as the plugin wrote them; a plugin that
//! traps, loops, grows without bound or answers garbage gets that failure (and the next call a
//! fresh instance); capabilities that are not granted are refused at load, naming the import,
//! and WASI traps; a compiled component is cached on disk.

use std::sync::Arc;
use std::time::{Duration, Instant};

mod common;

use sluice_plugin_host::types::{Authorization, OpKind, RouteChoice, Verdict};
use sluice_plugin_host::{
    CallError, Capabilities, Capability, Limits, LoadError, LoadedPlugin, PluginEngine,
    RequestContext,
};

const WIT: &str = include_str!("../../../wit/plugin.wit");

/// A component of the plugin world (or of `world`, defined in `extra` WIT) from a core module
/// whose functions are `body` (WAT). The module has a bump allocator, 2 pages of memory, a
/// zeroed return area at 512 (`ok(configured)` for `route`, `allow` for `authorize`), and
/// whatever `data` adds; `$drop` lets go of the request context an export is lent (which an
/// export must do before it returns).
fn component(body: &str, extra: Option<(&str, &str)>) -> Vec<u8> {
    let core = format!(
        r#"(module
  (import "sluice:plugin/types@0.1.0" "[resource-drop]request-context" (func $drop (param i32)))
  {body}
  (memory (export "memory") 2)
  (global $next (mut i32) (i32.const 8192))
  (func (export "cabi_realloc") (param i32 i32 i32 i32) (result i32)
    (local $ptr i32)
    (local.set $ptr
      (i32.and
        (i32.add (global.get $next) (i32.sub (local.get 2) (i32.const 1)))
        (i32.xor (i32.sub (local.get 2) (i32.const 1)) (i32.const -1))))
    (global.set $next (i32.add (local.get $ptr) (local.get 3)))
    (block $fits
      (br_if $fits
        (i32.le_u (global.get $next) (i32.mul (memory.size) (i32.const 65536))))
      (if (i32.eq (memory.grow (i32.const 1)) (i32.const -1)) (then unreachable)))
    (local.get $ptr))
  (data (i32.const 1024) "nowhere")
  ;; ok(to(route{{backend: "nowhere"}})): result and variant discriminants, then the string.
  (data (i32.const 256) "\00\00\00\00\01\00\00\00\00\04\00\00\07\00\00\00")
  ;; authorization with the verdict's discriminant 9 (there are three).
  (data (i32.const 768) "\09"))"#
    );
    let mut core = wat::parse_str(&core).expect("fixture WAT");
    let mut resolve = wit_parser::Resolve::default();
    let plugin = resolve.push_str("plugin.wit", WIT).unwrap();
    let world = match extra {
        None => resolve.select_world(&[plugin], Some("plugin")).unwrap(),
        Some((wit, world)) => {
            let pkg = resolve.push_str("extra.wit", wit).unwrap();
            resolve.select_world(&[pkg], Some(world)).unwrap()
        }
    };
    wit_component::embed_component_metadata(
        &mut core,
        &resolve,
        world,
        wit_component::StringEncoding::UTF8,
    )
    .unwrap();
    wit_component::ComponentEncoder::default()
        .module(&core)
        .unwrap()
        .validate(true)
        .encode()
        .unwrap()
}

const ALLOW: &str = r#"
  (func (export "route") (param i32) (result i32) (call $drop (local.get 0)) (i32.const 512))
  (func (export "authorize") (param i32) (result i32) (call $drop (local.get 0)) (i32.const 512))"#;

fn ctx(tenant: &str) -> Arc<RequestContext> {
    Arc::new(common::context(
        tenant,
        OpKind::DeleteObject,
        "photos",
        "protected/cat.jpg",
    ))
}

fn engine() -> PluginEngine {
    PluginEngine::new(None).unwrap()
}

fn load(engine: &PluginEngine, wasm: &[u8], limits: Limits) -> LoadedPlugin {
    LoadedPlugin::load(engine, "fixture", wasm, Capabilities::default(), limits).unwrap()
}

#[test]
fn decisions_come_back_as_the_plugin_wrote_them() {
    let engine = engine();
    let allow = load(&engine, &component(ALLOW, None), Limits::default());
    for _ in 0..3 {
        let routed = allow.route("t1", &ctx("t1")).unwrap().unwrap();
        assert_eq!(routed.choice, RouteChoice::Configured);
        assert!(routed.cache.is_none());
        let Authorization { verdict, cache } = allow.authorize("t1", &ctx("t1")).unwrap();
        assert_eq!(verdict, Verdict::Allow);
        assert!(cache.is_none());
    }

    let elsewhere = load(
        &engine,
        &component(
            r#"(func (export "route") (param i32) (result i32) (call $drop (local.get 0)) (i32.const 256))
               (func (export "authorize") (param i32) (result i32) (call $drop (local.get 0)) (i32.const 512))"#,
            None,
        ),
        Limits::default(),
    );
    let routed = elsewhere.route("t1", &ctx("t1")).unwrap().unwrap();
    match routed.choice {
        RouteChoice::To(route) => {
            assert_eq!(route.backend, "nowhere");
            assert_eq!((route.target_bucket, route.key_prefix), (None, None));
        }
        other => panic!("expected a route, got {other:?}"),
    }
}

#[test]
fn a_trap_a_loop_and_unbounded_memory_each_fail_within_their_limits() {
    let engine = engine();
    let limits = Limits {
        deadline: Duration::from_millis(20),
        memory: 4 << 20,
        ..Limits::default()
    };
    let trap = load(
        &engine,
        &component(
            r#"(func (export "route") (param i32) (result i32) (call $drop (local.get 0)) unreachable)
               (func (export "authorize") (param i32) (result i32) (call $drop (local.get 0)) (i32.const 512))"#,
            None,
        ),
        limits,
    );
    assert!(matches!(
        trap.route("t1", &ctx("t1")),
        Err(CallError::Trap(_))
    ));
    // The instance that trapped is gone; the next call gets a fresh one.
    assert_eq!(
        trap.authorize("t1", &ctx("t1")).unwrap().verdict,
        Verdict::Allow
    );

    let looping = load(
        &engine,
        &component(
            r#"(func (export "route") (param i32) (result i32) (call $drop (local.get 0)) (loop $l (br $l)) (i32.const 0))
               (func (export "authorize") (param i32) (result i32) (call $drop (local.get 0)) (i32.const 512))"#,
            None,
        ),
        limits,
    );
    let started = Instant::now();
    assert_eq!(
        looping.route("t1", &ctx("t1")),
        Err(CallError::Timeout(limits.deadline))
    );
    // Stopped within a tick of its budget, never before it (preemption only adds time).
    let took = started.elapsed();
    assert!(
        took >= limits.deadline - Duration::from_millis(1) && took < Duration::from_secs(1),
        "a 20 ms deadline took {took:?}"
    );

    let hog = load(
        &engine,
        &component(
            r#"(func (export "route") (param i32) (result i32)
                 (loop $grow
                   (if (i32.eq (memory.grow (i32.const 16)) (i32.const -1)) (then unreachable))
                   (br $grow))
                 (i32.const 0))
               (func (export "authorize") (param i32) (result i32) (call $drop (local.get 0)) (i32.const 512))"#,
            None,
        ),
        limits,
    );
    assert_eq!(
        hog.route("t1", &ctx("t1")),
        Err(CallError::Memory(limits.memory))
    );
    assert_eq!(
        hog.authorize("t1", &ctx("t1")).unwrap().verdict,
        Verdict::Allow
    );
}

/// A tracing subscriber that keeps the CPU busy for a while on every event: the plugin's
/// thread gains CPU time while the plugin is not running, as it does when the hypervisor
/// stops the machine's virtual CPU or a host function is slow.
struct BusyLogger(Duration);

impl tracing::Subscriber for BusyLogger {
    fn enabled(&self, _: &tracing::Metadata<'_>) -> bool {
        true
    }
    fn new_span(&self, _: &tracing::span::Attributes<'_>) -> tracing::span::Id {
        tracing::span::Id::from_u64(1)
    }
    fn record(&self, _: &tracing::span::Id, _: &tracing::span::Record<'_>) {}
    fn record_follows_from(&self, _: &tracing::span::Id, _: &tracing::span::Id) {}
    fn event(&self, _: &tracing::Event<'_>) {
        let started = Instant::now();
        while started.elapsed() < self.0 {
            std::hint::spin_loop();
        }
    }
    fn enter(&self, _: &tracing::span::Id) {}
    fn exit(&self, _: &tracing::span::Id) {}
}

/// A call is charged for the time its plugin runs, not for CPU time its thread spent
/// elsewhere: here 16 ms in two log lines against a 5 ms deadline, each seen at one tick
/// when the plugin resumes (a function call after each, where wasm checks the epoch).
#[test]
fn time_the_plugin_does_not_run_is_not_charged_to_its_deadline() {
    let engine = engine();
    let logs_twice = component(
        r#"(import "sluice:plugin/log@0.1.0" "write" (func $log (param i32 i32 i32 i32 i32)))
           (func $resume)
           (data (i32.const 2048) "slow line")
           (func (export "route") (param i32) (result i32)
             (call $drop (local.get 0))
             (call $log (i32.const 1) (i32.const 2048) (i32.const 9) (i32.const 0) (i32.const 0))
             (call $resume)
             (call $log (i32.const 1) (i32.const 2048) (i32.const 9) (i32.const 0) (i32.const 0))
             (call $resume)
             (i32.const 512))
           (func (export "authorize") (param i32) (result i32) (call $drop (local.get 0)) (i32.const 512))"#,
        None,
    );
    let granted = Capabilities {
        granted: vec![Capability::Log],
        ..Default::default()
    };
    let limits = Limits::default();
    assert_eq!(limits.deadline, Duration::from_millis(5));
    let plugin = LoadedPlugin::load(&engine, "logger", &logs_twice, granted, limits).unwrap();
    let started = Instant::now();
    let answer = tracing::subscriber::with_default(BusyLogger(Duration::from_millis(8)), || {
        plugin.route("t1", &ctx("t1"))
    });
    let took = started.elapsed();
    assert!(took >= Duration::from_millis(16), "{took:?}");
    assert_eq!(answer.unwrap().unwrap().choice, RouteChoice::Configured);
}

#[test]
fn an_answer_the_interface_does_not_allow_is_garbage() {
    let engine = engine();
    let garbage = load(
        &engine,
        &component(
            r#"(func (export "route") (param i32) (result i32) (call $drop (local.get 0)) (i32.const 512))
               (func (export "authorize") (param i32) (result i32) (call $drop (local.get 0)) (i32.const 768))"#,
            None,
        ),
        Limits::default(),
    );
    assert!(matches!(
        garbage.authorize("t1", &ctx("t1")),
        Err(CallError::Garbage(_))
    ));

    // A plugin must let go of the context it is lent before it returns.
    let keeps = load(
        &engine,
        &component(
            r#"(func (export "route") (param i32) (result i32) (i32.const 512))
               (func (export "authorize") (param i32) (result i32) (i32.const 512))"#,
            None,
        ),
        Limits::default(),
    );
    assert!(matches!(
        keeps.route("t1", &ctx("t1")),
        Err(CallError::Garbage(why)) if why.contains("borrow")
    ));
}

#[test]
fn only_granted_capabilities_are_linked_and_wasi_traps() {
    let engine = engine();
    let clock_user = component(
        r#"(import "sluice:plugin/clock@0.1.0" "now-ms" (func $now (result i64)))
           (func (export "route") (param i32) (result i32) (call $drop (local.get 0)) (drop (call $now)) (i32.const 512))
           (func (export "authorize") (param i32) (result i32) (call $drop (local.get 0)) (i32.const 512))"#,
        None,
    );
    let err = LoadedPlugin::load(
        &engine,
        "clock-user",
        &clock_user,
        Capabilities::default(),
        Limits::default(),
    )
    .unwrap_err();
    assert!(
        matches!(&err, LoadError::NotGranted { import, .. } if import == "sluice:plugin/clock@0.1.0"),
        "{err}"
    );
    assert!(err.to_string().contains("add `clock`"), "{err}");
    let granted = Capabilities {
        granted: vec![Capability::Clock],
        ..Default::default()
    };
    let plugin = LoadedPlugin::load(
        &engine,
        "clock-user",
        &clock_user,
        granted,
        Limits::default(),
    )
    .unwrap();
    assert!(plugin.route("t1", &ctx("t1")).unwrap().is_ok());

    // A component that imports WASI's environment loads (language runtimes import WASI
    // whether they use it or not), but calling it traps: a plugin gets no environment.
    let greedy = component(
        r#"(import "wasi:cli/environment@0.2.0" "get-arguments" (func $args (param i32)))
           (func (export "route") (param i32) (result i32) (call $drop (local.get 0)) (call $args (i32.const 4096)) (i32.const 512))
           (func (export "authorize") (param i32) (result i32) (call $drop (local.get 0)) (i32.const 512))"#,
        Some((
            "package test:greedy;
             world greedy {
                 include sluice:plugin/plugin@0.1.0;
                 import wasi:cli/environment@0.2.0;
             }
             package wasi:cli@0.2.0 {
                 interface environment {
                     get-arguments: func() -> list<string>;
                 }
             }",
            "greedy",
        )),
    );
    let greedy = LoadedPlugin::load(
        &engine,
        "greedy",
        &greedy,
        Capabilities::default(),
        Limits::default(),
    )
    .unwrap();
    assert!(matches!(
        greedy.route("t1", &ctx("t1")),
        Err(CallError::Trap(_))
    ));
    assert_eq!(
        greedy.authorize("t1", &ctx("t1")).unwrap().verdict,
        Verdict::Allow
    );
}

#[test]
fn not_a_component_is_refused_with_the_reason() {
    let engine = engine();
    for bytes in [
        &b"not wasm at all"[..],
        &wat::parse_str("(module)").unwrap(),
    ] {
        let err = LoadedPlugin::load(
            &engine,
            "bad",
            bytes,
            Capabilities::default(),
            Limits::default(),
        )
        .unwrap_err();
        assert!(matches!(err, LoadError::Invalid(_)), "{err}");
    }
}

#[test]
fn compiled_components_are_cached_on_disk() {
    let dir = tempfile::tempdir().unwrap();
    let wasm = component(ALLOW, None);
    let first = PluginEngine::new(Some(dir.path())).unwrap();
    let plugin = load(&first, &wasm, Limits::default());
    assert!(!plugin.was_cached());
    let files: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
    assert_eq!(files.len(), 1, "one artifact, no temporary file left");
    // Another engine with the same settings (a restart) loads it instead of compiling.
    let second = PluginEngine::new(Some(dir.path())).unwrap();
    let plugin = load(&second, &wasm, Limits::default());
    assert!(plugin.was_cached());
    assert_eq!(
        plugin.authorize("t1", &ctx("t1")).unwrap().verdict,
        Verdict::Allow
    );
    // A damaged artifact is recompiled, not trusted.
    let path = std::fs::read_dir(dir.path())
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    std::fs::write(&path, b"garbage").unwrap();
    let plugin = load(&second, &wasm, Limits::default());
    assert!(!plugin.was_cached());
    assert_eq!(
        plugin.authorize("t1", &ctx("t1")).unwrap().verdict,
        Verdict::Allow
    );
}
