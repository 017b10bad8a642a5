//! The example plugins in `plugins/`, built to wasm32-wasip2 components by `plugins/build.sh`
//! (run here if `SLUICE_PLUGINS_DIR` does not name its output) and, for the tenant-router in
//! Python, `plugins/build-second-language.sh`, loaded and called as Sluice will call them.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

mod common;

use sluice_plugin_host::context::header_map;
use sluice_plugin_host::types::{AuthMethod, Requirements};
use sluice_plugin_host::types::{
    ByteRange, ContextFields, EncryptionPolicy, OpKind, PayloadProtection, Route, RouteChoice,
    S3Error, TlsVersion, Verdict,
};
use sluice_plugin_host::{
    Capabilities, Capability, Limits, LoadError, LoadedPlugin, PluginEngine, RequestContext,
};

/// The directory of the example plugins `plugins/build.sh` builds.
fn built() -> PathBuf {
    // The newest of its components: a directory without it predates some.
    common::built("context_echo.wasm", "build.sh")
}

/// The directory holding the tenant-router built from Python (`tenant_router_py.wasm`).
fn built_second_language() -> PathBuf {
    common::built(SECOND_LANGUAGE_ROUTER, "build-second-language.sh")
}

/// The tenant-router written in Python, built by `plugins/build-second-language.sh`.
const SECOND_LANGUAGE_ROUTER: &str = "tenant_router_py.wasm";

fn ctx(tenant: &str, bucket: &str) -> Arc<RequestContext> {
    Arc::new(common::context(tenant, OpKind::GetObject, bucket, "k"))
}

/// The tenant-router's `tables` grant: its table `routes`.
fn router_grants() -> Capabilities {
    common::router_grants(&[
        ("acme/eu-*", "eu-store"),
        ("acme/eu-archive", "cold/acme-archive"),
        ("*/logs", "archive/logs-2026"),
    ])
}

/// A route to `backend`, in its bucket `target` if given.
fn to(backend: &str, target: Option<&str>) -> RouteChoice {
    RouteChoice::To(Route {
        backend: backend.into(),
        target_bucket: target.map(str::to_owned),
        key_prefix: None,
    })
}

/// Every method of the request context answers from the context the host lends, as the
/// plugin (`context-echo`, which reads them all) sees it, never showing a secret header; the
/// next context lent to the same instance is what the next call sees.
#[test]
fn context_methods_answer_from_the_context_lent() {
    let wasm = std::fs::read(built().join("context_echo.wasm")).unwrap();
    let engine = PluginEngine::new(None).unwrap();
    let echo = LoadedPlugin::load(
        &engine,
        "context-echo",
        &wasm,
        Capabilities::default(),
        Limits::default(),
    )
    .unwrap();
    let mut full = common::context("t1", OpKind::GetObject, "photos", "cat.jpg");
    full.operation = sluice_plugin_host::Operation {
        kind: OpKind::UploadPartCopy,
        name: "UploadPartCopy".into(),
        bucket: Some("photos".into()),
        key: Some("big.bin".into()),
        part_number: Some(3),
        upload_id: Some("u-1".into()),
        range: Some(ByteRange::Span((10, Some(19)))),
        copy_source: Some(("src".into(), "a/b.bin".into())),
    };
    full.method = http::Method::PUT;
    full.query = vec![
        ("partNumber".into(), "3".into()),
        ("uploadId".into(), "u-1".into()),
    ];
    // Secrets stay in the context's map, as the request had them, and are never shown.
    full.headers = header_map([
        (
            "authorization",
            "AWS4-HMAC-SHA256 Credential=SLUICEEXAMPLE0000/...",
        ),
        ("x-approved-by", "alice"),
        ("x-amz-security-token", "token"),
        ("x-multi", "a"),
        ("x-amz-server-side-encryption-customer-key", "c2VjcmV0"),
        ("x-multi", "b"),
        ("cookie", "session=1"),
    ])
    .unwrap();
    full.source_address = "[2001:db8::1]:443".parse().unwrap();
    full.tls = Some(TlsVersion::Tls13);
    full.auth_method = AuthMethod::PresignedUrl;
    full.payload = PayloadProtection::StreamingSigned;
    full.content_length = Some(42);
    full.configured_route = Some(Route {
        backend: "eu".into(),
        target_bucket: Some("t".into()),
        key_prefix: Some("p/".into()),
    });
    full.encryption = EncryptionPolicy::Required;
    let full = Arc::new(full);

    let message = |answer: Result<_, S3Error>| answer.unwrap_err().message;
    assert_eq!(
        message(echo.route("t1", &full).unwrap()),
        "operation=OpKind::UploadPartCopy name=UploadPartCopy bucket=Some(\"photos\") \
         key=Some(\"big.bin\") part=Some(3) upload=Some(\"u-1\") \
         range=Some(ByteRange::Span((10, Some(19)))) copy=Some((\"src\", \"a/b.bin\"))"
    );
    let denied = |verdict: Verdict| match verdict {
        Verdict::Deny(err) => err.message,
        other => panic!("expected a denial, got {other:?}"),
    };
    assert_eq!(
        denied(echo.authorize("t1", &full).unwrap().verdict),
        "tenant=t1 akid=SLUICEEXAMPLE0000 method=PUT \
         query=[(\"partNumber\", \"3\"), (\"uploadId\", \"u-1\")] \
         headers=[(\"x-approved-by\", \"alice\"), (\"x-multi\", \"a\"), (\"x-multi\", \"b\")] \
         approved=Some(\"alice\") missing=None secret=None source=[2001:db8::1]:443 tls=Some(TlsVersion::Tls13) \
         auth=AuthMethod::PresignedUrl payload=PayloadProtection::StreamingSigned length=Some(42) \
         route=Some(Route { backend: \"eu\", target-bucket: Some(\"t\"), key-prefix: Some(\"p/\") }) \
         encryption=EncryptionPolicy::Required"
    );

    // The same instance, the next call: it sees that call's context.
    let other = Arc::new(common::context("t1", OpKind::DeleteObject, "b2", "k2"));
    assert!(
        message(echo.route("t1", &other).unwrap())
            .starts_with("operation=OpKind::DeleteObject name=DeleteObject bucket=Some(\"b2\")")
    );
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

    let router = LoadedPlugin::load(
        &engine,
        "tenant-router",
        &wasm,
        router_grants(),
        Limits::default(),
    )
    .unwrap();
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
    let authorize = |ctx: RequestContext| {
        let tenant = ctx.tenant.clone();
        guard.authorize(&tenant, &Arc::new(ctx)).unwrap()
    };
    let verdict = |ctx: RequestContext| authorize(ctx).verdict;
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
        .append("x-approved-by", http::HeaderValue::from_static("alice"));
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

    // Verdicts on anything but deletes may be reused, keyed by the fields this policy uses
    // (all of them here: a size cap, tenant prefixes, sensitive buckets); deletes never.
    let cache = |ctx: RequestContext| authorize(ctx).cache;
    let hint = cache(get("narrow", "b", "inbox/x")).expect("a GET's verdict is reusable");
    assert_eq!(
        hint.depends_on,
        ContextFields::OPERATION_KIND
            | ContextFields::CONTENT_LENGTH
            | ContextFields::KEY
            | ContextFields::BUCKET
            | ContextFields::AUTH
    );
    assert!(
        cache(get("narrow", "b", "other/x")).is_some(),
        "a denial too"
    );
    assert_eq!(cache(delete("t", "scratch/a")), None);
    assert_eq!(cache(delete("t", "protected/a")), None);

    // A sensitive bucket: no presigned URLs, TLS required.
    let mut presigned = get("t", "vault", "k");
    presigned.auth_method = AuthMethod::PresignedUrl;
    assert_eq!(code(verdict(presigned)), "AccessDenied");
    assert_eq!(
        verdict(get("t", "vault", "k")),
        Verdict::AllowIf(Requirements::TLS)
    );
}

/// The tenant-router written in Python (`plugins/tenant-router-py`) decides as the Rust one
/// does, route and authorization alike: the interface is not Rust's. Also prints what the
/// Python one costs: its size, its load (compiled by cranelift, or from the compiled-plugin
/// cache), its first call (which instantiates it) and its warm calls.
#[test]
fn second_language_router_matches_the_rust_one() {
    let rust_wasm = std::fs::read(built().join("tenant_router.wasm")).unwrap();
    let py_wasm = std::fs::read(built_second_language().join(SECOND_LANGUAGE_ROUTER)).unwrap();
    // The default deadline, 5 ms of CPU, is too short for the Python component's first call:
    // that call instantiates it, which the first time takes 8-11 ms (wasmtime builds the
    // memory image of its 12 MiB heap snapshot), then 1-2.5 ms; a fresh instance's first call
    // takes about 2 ms more, a warm call 0.1-0.3 ms.
    let limits = Limits {
        deadline: Duration::from_millis(100),
        ..Limits::default()
    };

    // Compiled by cranelift into a cache that outlives the run (20-30 s for this component),
    // then loaded from there by a new engine, as Sluice does when it restarts. It has 38 core
    // module instances (libc, libpython, componentize-py's runtime, a stub per WASI
    // interface...), which the engine's pooling allocator must allow per component.
    let cache = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("plugin-cache");
    let load = |engine: &PluginEngine| {
        let started = Instant::now();
        let plugin = LoadedPlugin::load(
            engine,
            "tenant-router-py",
            &py_wasm,
            router_grants(),
            limits,
        )
        .unwrap();
        (plugin, started.elapsed())
    };
    let (first, first_load) = load(&PluginEngine::new(Some(&cache)).unwrap());
    let compiled = !first.was_cached();
    drop(first);
    let engine = PluginEngine::new(Some(&cache)).unwrap();
    let (py, cached_load) = load(&engine);
    assert!(py.was_cached());
    let rust = LoadedPlugin::load(
        &engine,
        "tenant-router",
        &rust_wasm,
        router_grants(),
        limits,
    )
    .unwrap();

    // The first call instantiates the component.
    let started = Instant::now();
    py.route("acme", &ctx("acme", "eu-photos"))
        .unwrap()
        .unwrap();
    let first_call = started.elapsed();

    // A ListBuckets: no bucket.
    let mut list_buckets = common::context("acme", OpKind::GetObject, "unused", "k");
    list_buckets.operation.kind = OpKind::ListBuckets;
    list_buckets.operation.name = "ListBuckets".into();
    list_buckets.operation.bucket = None;
    list_buckets.operation.key = None;
    let list_buckets = Arc::new(list_buckets);
    let cases = [
        // The tenant's prefix pattern; its exact name before it, with a target bucket.
        (ctx("acme", "eu-photos"), to("eu-store", None)),
        (ctx("acme", "eu-archive"), to("cold", Some("acme-archive"))),
        // A prefix pattern matches the prefix itself, and nothing shorter.
        (ctx("acme", "eu-"), to("eu-store", None)),
        (ctx("acme", "eu"), RouteChoice::Configured),
        // Every tenant's entry, an exact name.
        (ctx("acme", "logs"), to("archive", Some("logs-2026"))),
        (ctx("other", "logs"), to("archive", Some("logs-2026"))),
        (ctx("other", "logs-old"), RouteChoice::Configured),
        // No match: another tenant's entries do not apply.
        (ctx("other", "eu-photos"), RouteChoice::Configured),
        (ctx("acme", "us-photos"), RouteChoice::Configured),
        // Prefixes are cut between characters, not bytes.
        (ctx("acme", "eu-é"), to("eu-store", None)),
        (list_buckets, RouteChoice::Configured),
    ];
    for (request, expected) in &cases {
        let what = format!("{} {:?}", request.tenant, request.operation.bucket);
        let from_rust = rust.route(&request.tenant, request).unwrap();
        let from_py = py.route(&request.tenant, request).unwrap();
        assert_eq!(from_py, from_rust, "route: {what}");
        assert_eq!(&from_rust.unwrap().choice, expected, "route: {what}");
        let from_rust = rust.authorize(&request.tenant, request).unwrap();
        let from_py = py.authorize(&request.tenant, request).unwrap();
        assert_eq!(from_py, from_rust, "authorize: {what}");
    }

    // Warm calls: one tenant, so its instance is reused.
    let warm = |plugin: &LoadedPlugin| {
        let request = ctx("acme", "eu-archive");
        let started = Instant::now();
        for _ in 0..1000 {
            plugin.route("acme", &request).unwrap().unwrap();
        }
        started.elapsed() / 1000
    };
    let (py_warm, rust_warm) = (warm(&py), warm(&rust));
    let ms = |d: Duration| format!("{:.1} ms", d.as_secs_f64() * 1e3);
    let how = if compiled { "compiled" } else { "cached" };
    eprintln!(
        "tenant-router in Python: {} bytes; first load ({how}) {}, from the cache {}; first \
         call (instantiating) {}; warm route call {:?} (the Rust one: {} bytes, {:?})",
        py_wasm.len(),
        ms(first_load),
        ms(cached_load),
        ms(first_call),
        py_warm,
        rust_wasm.len(),
        rust_warm,
    );
}
