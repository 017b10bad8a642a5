//! Golden tests for configs: every file in `config/` validates, and each bad config reports the
//! error at its place.

use std::time::Duration;

use sluice_storage::BucketName;

use super::*;

fn parse_str(text: &str) -> Result<Config, Vec<String>> {
    parse(text, Path::new("test.yaml"), Path::new(".")).map_err(|e| e.0)
}

const GOOD: &str = r#"
listeners:
  - bind: 127.0.0.1:0
    danger_plain_http: true
backends:
  local: { type: local, path: data }
tenants:
  - name: dev
    keys:
      - access_id: DEVKEY0000000000
        secret: "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"
    routes:
      - { bucket: "*", backend: local }
"#;

#[test]
fn shipped_configs_validate() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../config");
    let mut seen = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "yaml") {
            load(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            seen += 1;
        }
    }
    assert!(seen >= 1, "no configs found in {}", dir.display());
}

#[test]
fn good_config_parses() {
    let c = parse_str(GOOD).unwrap();
    assert_eq!(c.tenants[0].keys.len(), 1);
    assert_eq!(c.s3.region, "us-east-1");
    assert_eq!(c.limits.max_header_bytes, 16384);
    let b = BucketName::parse("photos").unwrap();
    assert_eq!(c.tenants[0].backend_for(&b), Some("local"));
}

#[test]
fn unknown_fields_are_rejected_with_their_path() {
    let text = GOOD.replace(
        "danger_plain_http: true",
        "danger_plain_http: true\n    colour: blue",
    );
    let errors = parse_str(&text).unwrap_err();
    assert!(
        errors[0].starts_with("listeners[0]: unknown field `colour`"),
        "{errors:?}"
    );
}

#[test]
fn every_semantic_error_is_reported_with_its_place() {
    let text = GOOD
        .replace("AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA", "not base64!")
        .replace("backend: local }", "backend: nowhere }")
        .replace("    danger_plain_http: true\n", "");
    let errors = parse_str(&text).unwrap_err();
    let expected = [
        "listeners[0]: has no tls section; plain HTTP must be asked for with `danger_plain_http: true`",
        "tenants[0].keys[0].secret: not valid base64",
        "tenants[0].routes[0].backend: no backend named \"nowhere\"",
    ];
    assert_eq!(errors, expected);
}

#[test]
fn secret_references_resolve_without_echoing_secrets() {
    let text = GOOD.replace(
        "\"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA\"",
        "env:SLUICE_TEST_UNSET_VARIABLE",
    );
    let errors = parse_str(&text).unwrap_err();
    assert_eq!(
        errors,
        ["tenants[0].keys[0].secret: environment variable SLUICE_TEST_UNSET_VARIABLE is not set"]
    );

    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("s"),
        "BBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBB\n",
    )
    .unwrap();
    let text = GOOD.replace("\"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA\"", "file:s");
    let c = parse(&text, Path::new("x.yaml"), dir.path()).unwrap();
    assert_eq!(
        c.tenants[0].keys[0].secret.expose(),
        "BBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBB"
    );

    let short = GOOD.replace("AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA", "AAAA");
    assert_eq!(
        parse_str(&short).unwrap_err(),
        ["tenants[0].keys[0].secret: must be 40 characters of base64 (got 4)"]
    );
}

#[test]
fn limits_and_names_are_checked() {
    let text = format!(
        "{GOOD}limits:\n  max_header_bytes: 1KiB\n  idle_timeout: 0s\n  max_connections: 0\n"
    )
    .replace("name: dev", "name: Dev!");
    let errors = parse_str(&text).unwrap_err();
    for want in [
        "limits.max_header_bytes: must be between 8KiB and 1MiB",
        "limits.max_connections: must be at least 1",
        "limits.idle_timeout: must be greater than zero",
        "tenants[0].name: tenant names are 1-63 characters of a-z, 0-9, - and _",
    ] {
        assert!(
            errors.iter().any(|e| e == want),
            "missing {want:?} in {errors:?}"
        );
    }
    let bad_duration = format!("{GOOD}limits:\n  idle_timeout: 10\n");
    let errors = parse_str(&bad_duration).unwrap_err();
    assert!(
        errors[0].starts_with("limits: invalid duration \"10\"") && errors[0].contains("line 15"),
        "{errors:?}"
    );
}

#[test]
fn local_backend_upload_expiry() {
    let c = parse_str(GOOD).unwrap();
    let BackendConfig::Local {
        abandoned_uploads_after,
        ..
    } = &c.backends["local"]
    else {
        panic!("not a local backend");
    };
    assert_eq!(*abandoned_uploads_after, Duration::from_secs(7 * 86_400));
    let text = GOOD.replace(
        "{ type: local, path: data }",
        "{ type: local, path: data, abandoned_uploads_after: 36h }",
    );
    let c = parse_str(&text).unwrap();
    let BackendConfig::Local {
        abandoned_uploads_after,
        ..
    } = &c.backends["local"]
    else {
        panic!("not a local backend");
    };
    assert_eq!(*abandoned_uploads_after, Duration::from_secs(36 * 3600));
    let bad = GOOD.replace(
        "{ type: local, path: data }",
        "{ type: local, path: data, abandoned_uploads_after: soon }",
    );
    assert!(parse_str(&bad).is_err());
}

#[test]
fn upload_expiry_must_be_sane() {
    for bad in ["0s", "30s", "3651d"] {
        let text = GOOD.replace(
            "{ type: local, path: data }",
            &format!("{{ type: local, path: data, abandoned_uploads_after: {bad} }}"),
        );
        assert_eq!(
            parse_str(&text).unwrap_err(),
            ["backends.local.abandoned_uploads_after: must be between 1m and 3650d"],
            "{bad}"
        );
    }
}

const UPSTREAM: &str = r#"
listeners:
  - bind: 127.0.0.1:0
    danger_plain_http: true
backends:
  local: { type: local, path: data }
  eu:
    type: s3
    profile: aws
    endpoint: https://s3.eu-west-1.amazonaws.com
    region: eu-west-1
    access_key_id: AKIAEXAMPLE
    secret_access_key: env:SLUICE_TEST_NEVER_SET_SECRET
tenants:
  - name: acme
    routes:
      - { bucket: "logs-*", backend: eu }
      - { bucket: "reports", backend: eu, target_bucket: acme-prod-reports, key_prefix: "acme/" }
      - { bucket: "*", backend: local }
"#;

/// Upstream backends and renaming routes, with the key path in every error.
#[test]
fn upstream_backends_and_routes() {
    let errors = parse_str(UPSTREAM).unwrap_err();
    assert_eq!(
        errors,
        [
            "backends.eu.secret_access_key: environment variable SLUICE_TEST_NEVER_SET_SECRET is not set"
        ]
    );
    let good = UPSTREAM.replace("env:SLUICE_TEST_NEVER_SET_SECRET", "inline-dev-secret");
    let c = parse_str(&good).unwrap();
    let BackendConfig::S3(eu) = &c.backends["eu"] else {
        panic!("not an upstream");
    };
    assert_eq!(eu.region, "eu-west-1");
    assert_eq!(eu.addressing, sluice_upstream::Addressing::Virtual);
    let reports = c.tenants[0]
        .route_for(&BucketName::parse("reports").unwrap())
        .unwrap();
    assert_eq!(
        reports.target_bucket.as_ref().unwrap().as_str(),
        "acme-prod-reports"
    );
    assert_eq!(reports.key_prefix, "acme/");
    assert!(reports.renames());

    for (from, to, error) in [
        (
            "https://s3.eu-west-1.amazonaws.com",
            "http://s3.example.com:9000",
            "backends.eu.endpoint: plain http:// is allowed for loopback addresses only",
        ),
        (
            "profile: aws",
            "profile: azure",
            "backends.eu.profile: unknown profile \"azure\"",
        ),
        (
            "region: eu-west-1",
            "region: \"eu west\"",
            "backends.eu.region: must be a region name",
        ),
        (
            "{ bucket: \"logs-*\", backend: eu }",
            "{ bucket: \"logs-*\", backend: eu, target_bucket: other }",
            "tenants[0].routes[0].target_bucket: only a route of one exact bucket",
        ),
        (
            "key_prefix: \"acme/\" }",
            "key_prefix: \"acme/\", passthrough: true }",
            "tenants[0].routes[1].passthrough: only for routes that rename the bucket alone",
        ),
        (
            "{ bucket: \"*\", backend: local }",
            "{ bucket: \"*\", backend: local, passthrough: true }",
            "tenants[0].routes[2].passthrough: only for upstream",
        ),
        (
            "    region: eu-west-1\n",
            "",
            "backends.eu.region: is required",
        ),
    ] {
        let text = good.replace(from, to);
        let errors = parse_str(&text).unwrap_err();
        assert!(
            errors.iter().any(|e| e.starts_with(error)),
            "{to}: {errors:?}"
        );
    }
    // Loopback may be plain HTTP; elsewhere only when the backend says so.
    let loopback = good.replace(
        "https://s3.eu-west-1.amazonaws.com",
        "http://127.0.0.1:9000",
    );
    let loopback = loopback.replace("profile: aws", "profile: minio");
    assert!(parse_str(&loopback).is_ok());
    let danger = good
        .replace(
            "https://s3.eu-west-1.amazonaws.com",
            "http://s3.example.com",
        )
        .replace("profile: aws", "profile: aws\n    danger_plain_http: true");
    assert!(parse_str(&danger).is_ok(), "{:?}", parse_str(&danger).err());
    // GCS and R2 sign for region "auto", whatever the config says.
    let gcs = good
        .replace("profile: aws", "profile: gcs")
        .replace("    region: eu-west-1\n", "");
    let c = parse_str(&gcs).unwrap();
    let BackendConfig::S3(eu) = &c.backends["eu"] else {
        panic!("not an upstream");
    };
    assert_eq!(eu.region, "auto");
}

#[test]
fn encryption_keys_and_route_policies() {
    let key = "QkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkI=";
    let with_keys = |routes: &str, keys: &str| {
        GOOD.replace("      - { bucket: \"*\", backend: local }\n", routes)
            + &format!("encryption:\n{keys}")
    };
    let keys = format!(
        "  current: k2\n  keys:\n    - {{ id: k1, key: \"{key}\" }}\n    - {{ id: k2, key: \"{key}\" }}\n"
    );
    let c = parse_str(&with_keys(
        "      - { bucket: \"vault\", backend: local, encryption: required }\n      - { bucket: \"*\", backend: local }\n",
        &keys,
    ))
    .unwrap();
    assert_eq!(c.keyring.as_ref().unwrap().current().as_str(), "k2");
    assert_eq!(
        c.tenants[0].routes[0].encryption,
        sluice_storage::Policy::Required
    );
    assert_eq!(
        c.tenants[0].routes[1].encryption,
        sluice_storage::Policy::Off
    );
    assert!(!format!("{c:?}").contains(key), "keys are never printed");

    // A policy without keys; an unknown policy; an upstream route; a bad or missing key.
    let errors = parse_str(&GOOD.replace(
        "{ bucket: \"*\", backend: local }",
        "{ bucket: \"*\", backend: local, encryption: on }",
    ))
    .unwrap_err();
    assert!(
        errors[0].contains("tenants[0].routes[0].encryption: needs the encryption section"),
        "{errors:?}"
    );
    assert!(
        parse_str(&GOOD.replace("backend: local }", "backend: local, encryption: maybe }"))
            .is_err()
    );
    let upstream = with_keys(
        "      - { bucket: \"*\", backend: up, encryption: on }\n",
        &keys,
    )
    .replace(
        "  local: { type: local, path: data }\n",
        "  local: { type: local, path: data }\n  up: { type: s3, endpoint: \"http://127.0.0.1:9\", region: us-east-1, access_key_id: AKIAUP, secret_access_key: s }\n",
    );
    let c = parse_str(&upstream).expect("encryption on an upstream route");
    assert_eq!(
        c.tenants[0].routes[0].encryption,
        sluice_storage::Policy::On
    );
    let errors =
        parse_str(&upstream.replace("encryption: on", "encryption: on, passthrough: true"))
            .unwrap_err();
    assert_eq!(
        errors,
        ["tenants[0].routes[0].passthrough: cannot be combined with encryption"]
    );
    let errors = parse_str(&with_keys(
        "      - { bucket: \"*\", backend: local }\n",
        "  current: k9\n  keys:\n    - { id: k1, key: \"c2hvcnQ=\" }\n    - { id: \"bad id\", key: \"env:SLUICE_TEST_UNSET_KEY\" }\n",
    ))
    .unwrap_err();
    let joined = errors.join("\n");
    assert!(
        joined.contains("encryption.keys[0].key: a key must be 32 bytes"),
        "{joined}"
    );
    assert!(joined.contains("encryption.keys[1].id"), "{joined}");
    assert!(
        joined.contains(
            "encryption.keys[1].key: environment variable SLUICE_TEST_UNSET_KEY is not set"
        ),
        "{joined}"
    );
    let errors = parse_str(&with_keys(
        "      - { bucket: \"*\", backend: local }\n",
        &format!("  current: k9\n  keys:\n    - {{ id: k1, key: \"{key}\" }}\n"),
    ))
    .unwrap_err();
    assert_eq!(
        errors,
        ["encryption.current: no key with id \"k9\" in encryption.keys"]
    );
}

const PLUGINS: &str = r#"
plugins:
  default_chain: [guard]
  modules:
    guard:
      component: plugins/guard.wasm
      capabilities: [settings, tables]
      settings: { protected-prefixes: "protected/", max-object-size: 1048576, strict: true }
      tables: { sensitive: { vault: yes } }
    router:
      component: plugins/router.wasm
      capabilities: [tables]
      isolation: per-request
      on_failure: allow
      deadline: 20ms
      memory: 32MiB
"#;

#[test]
fn plugins_are_configured_with_grants_limits_and_chains() {
    let text = format!(
        "{GOOD}  - name: other\n    routes: [{{ bucket: \"*\", backend: local }}]\n    plugins: [router, guard]\n  - name: bare\n    plugins: []\n{PLUGINS}"
    );
    let c = parse_str(&text).unwrap();
    let guard = c.plugins.get("guard").unwrap();
    assert_eq!(guard.component, Path::new("./plugins/guard.wasm"));
    // Scalars of any YAML type reach the plugin as strings.
    assert_eq!(guard.grants.settings["max-object-size"], "1048576");
    assert_eq!(guard.grants.settings["strict"], "true");
    assert_eq!(guard.grants.tables["sensitive"]["vault"], "yes");
    assert_eq!(guard.on_failure, OnFailure::Deny);
    assert_eq!(guard.limits, sluice_plugin_host::Limits::default());
    let router = c.plugins.get("router").unwrap();
    assert_eq!(router.on_failure, OnFailure::Allow);
    assert_eq!(
        router.limits.max_calls, 1,
        "per-request: a fresh instance per call"
    );
    assert_eq!(router.limits.deadline, Duration::from_millis(20));
    assert_eq!(router.limits.memory, 32 << 20);
    // The default chain, a tenant's own, and a tenant that opts out.
    assert_eq!(c.tenants[0].plugins, ["guard"]);
    assert_eq!(c.tenants[1].plugins, ["router", "guard"]);
    assert!(c.tenants[2].plugins.is_empty());
}

#[test]
fn plugin_mistakes_are_reported_at_their_place() {
    let bad = PLUGINS
        .replace("[settings, tables]", "[settings, network]")
        .replace("capabilities: [tables]", "capabilities: [log]")
        .replace("deadline: 20ms", "deadline: 5s")
        .replace("on_failure: allow", "on_failure: allow\n      max_calls: 5")
        .replace(
            "default_chain: [guard]",
            "default_chain: [guard, missing, guard]",
        );
    let errors = parse_str(&format!("{GOOD}{bad}")).unwrap_err();
    for expected in [
        "plugins.modules.guard.capabilities[1]: \"network\" is not a capability",
        "plugins.modules.guard.tables: given, but `tables` is not in its capabilities",
        "plugins.modules.router.deadline: must be between 1ms and 1s",
        "plugins.modules.router.max_calls: means nothing with isolation: per-request",
        "plugins.default_chain[1]: no plugin named \"missing\"",
        "plugins.default_chain[2]: \"guard\" is in the chain twice",
    ] {
        assert!(
            errors.iter().any(|e| e.starts_with(expected)),
            "{expected:?} not in {errors:#?}"
        );
    }
    let errors =
        parse_str(&GOOD.replace("    routes:", "    plugins: [guard]\n    routes:")).unwrap_err();
    assert!(
        errors.contains(
            &"tenants[0].plugins: names plugins, but there is no plugins section".to_owned()
        ),
        "{errors:#?}"
    );
}
