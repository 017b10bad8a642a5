//! The example plugins in `plugins/`, built to wasm32-wasip2 components by `plugins/build.sh`
//! (run here if `SLUICE_PLUGINS_DIR` does not name its output), loaded and called as Sluice
//! will call them.

use std::collections::BTreeMap;
use std::path::PathBuf;

mod common;

use sluice_plugin_host::types::{AuthMethod, Requirements};
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

#[test]
fn policy_guard_applies_its_settings_and_tables() {
    let wasm = std::fs::read(built().join("policy_guard.wasm")).unwrap();
    let engine = PluginEngine::new(None).unwrap();
    let table = |pairs: &[(&str, &str)]| -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    };
    let grants = Capabilities {
        granted: vec![Capability::Settings, Capability::Tables],
        settings: table(&[
            ("protected-prefixes", "protected/, legal/"),
            ("max-object-size", "1000"),
        ]),
        tables: [
            (
                "tenant-prefixes".to_owned(),
                table(&[("narrow", "inbox/,outbox/")]),
            ),
            ("sensitive".to_owned(), table(&[("vault", "1")])),
        ]
        .into_iter()
        .collect(),
    };
    let guard =
        LoadedPlugin::load(&engine, "policy-guard", &wasm, grants, Limits::default()).unwrap();
    let verdict = |ctx: RequestContext| guard.authorize(&ctx.tenant.clone(), &ctx).unwrap().verdict;
    let code = |v: Verdict| match v {
        Verdict::Deny(err) => err.code,
        other => panic!("expected a denial, got {other:?}"),
    };
    let delete = |tenant: &str, key: &str| common::context(tenant, OpKind::DeleteObject, "b", key);

    // Deletes under a protected prefix need the approval header.
    assert_eq!(code(verdict(delete("t", "protected/a"))), "AccessDenied");
    assert_eq!(code(verdict(delete("t", "legal/b"))), "AccessDenied");
    let mut approved = delete("t", "protected/a");
    approved
        .headers
        .push(("x-approved-by".into(), "alice".into()));
    assert_eq!(verdict(approved), Verdict::Allow);
    assert_eq!(verdict(delete("t", "scratch/a")), Verdict::Allow);

    // The size cap.
    let mut put = common::context("t", OpKind::GetObject, "b", "k");
    put.operation.kind = OpKind::PutObject;
    put.content_length = Some(1001);
    assert_eq!(code(verdict(put.clone())), "EntityTooLarge");
    put.content_length = Some(1000);
    assert_eq!(verdict(put), Verdict::Allow);

    // A tenant limited to key prefixes.
    let get = |tenant: &str, bucket: &str, key: &str| {
        common::context(tenant, OpKind::GetObject, bucket, key)
    };
    assert_eq!(verdict(get("narrow", "b", "inbox/x")), Verdict::Allow);
    assert_eq!(code(verdict(get("narrow", "b", "other/x"))), "AccessDenied");
    assert_eq!(verdict(get("wide", "b", "other/x")), Verdict::Allow);

    // A sensitive bucket: no presigned URLs, TLS required.
    let mut presigned = get("t", "vault", "k");
    presigned.auth_method = AuthMethod::PresignedUrl;
    assert_eq!(code(verdict(presigned)), "AccessDenied");
    assert_eq!(
        verdict(get("t", "vault", "k")),
        Verdict::AllowIf(Requirements::TLS)
    );
}
