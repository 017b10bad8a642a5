//! The example plugins in `plugins/`, built to wasm32-wasip2 components by `plugins/build.sh`
//! (run here if `SLUICE_PLUGINS_DIR` does not name its output), loaded and called as Sluice
//! will call them.

use std::collections::BTreeMap;
use std::path::PathBuf;

mod common;

use sluice_plugin_host::types::{
    ContextFields, OpKind, RequestContext, Route, RouteChoice, Verdict,
};
use sluice_plugin_host::{Capabilities, Capability, Limits, LoadError, LoadedPlugin, PluginEngine};

/// The directory of built example plugins.
fn built() -> PathBuf {
    if let Some(dir) = std::env::var_os("SLUICE_PLUGINS_DIR") {
        return dir.into();
    }
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../../plugins/build.sh");
    let out = std::process::Command::new("bash")
        .arg(script)
        .output()
        .expect("running plugins/build.sh");
    assert!(
        out.status.success(),
        "plugins/build.sh failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    PathBuf::from(String::from_utf8(out.stdout).unwrap().trim())
}

fn ctx(tenant: &str, bucket: &str) -> RequestContext {
    common::context(tenant, OpKind::GetObject, bucket, "k")
}

#[test]
fn tenant_router_routes_by_tenant_and_bucket_pattern() {
    let wasm = std::fs::read(built().join("tenant_router.wasm")).unwrap();
    let engine = PluginEngine::new(None).unwrap();

    // It reads its table: without `tables` granted it is refused, naming what it needs.
    let err = LoadedPlugin::load(
        &engine,
        "tenant-router",
        &wasm,
        Capabilities::default(),
        Limits::default(),
    )
    .unwrap_err();
    assert!(
        matches!(&err, LoadError::NotGranted { import, .. } if import == "sluice:plugin/tables@0.1.0"),
        "{err}"
    );

    let routes: BTreeMap<String, String> = [
        ("acme/eu-*", "eu-store"),
        ("acme/eu-archive", "cold/acme-archive"),
        ("*/logs", "archive/logs-2026"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect();
    let grants = Capabilities {
        granted: vec![Capability::Tables],
        tables: [("routes".to_owned(), routes)].into_iter().collect(),
        ..Default::default()
    };
    let router =
        LoadedPlugin::load(&engine, "tenant-router", &wasm, grants, Limits::default()).unwrap();
    let to = |backend: &str, target: Option<&str>| {
        RouteChoice::To(Route {
            backend: backend.into(),
            target_bucket: target.map(str::to_owned),
            key_prefix: None,
        })
    };
    for (tenant, bucket, expected) in [
        ("acme", "eu-photos", to("eu-store", None)),
        ("acme", "eu-archive", to("cold", Some("acme-archive"))),
        ("acme", "logs", to("archive", Some("logs-2026"))),
        ("other", "logs", to("archive", Some("logs-2026"))),
        ("other", "eu-photos", RouteChoice::Configured),
        ("acme", "us-photos", RouteChoice::Configured),
    ] {
        let decision = router.route(tenant, &ctx(tenant, bucket)).unwrap().unwrap();
        assert_eq!(decision.choice, expected, "{tenant}/{bucket}");
        let cache = decision.cache.expect("a cache hint");
        assert_eq!(cache.ttl_ms, 60_000);
        assert_eq!(
            cache.depends_on,
            ContextFields::TENANT | ContextFields::BUCKET
        );
    }
    assert_eq!(
        router.authorize("acme", &ctx("acme", "x")).unwrap().verdict,
        Verdict::Allow
    );
}
