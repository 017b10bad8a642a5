//! Golden tests for configs: every file in `config/` validates, and each bad config reports the
//! error at its place.

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
    } = &c.backends["local"];
    assert_eq!(*abandoned_uploads_after, Duration::from_secs(7 * 86_400));
    let text = GOOD.replace(
        "{ type: local, path: data }",
        "{ type: local, path: data, abandoned_uploads_after: 36h }",
    );
    let c = parse_str(&text).unwrap();
    let BackendConfig::Local {
        abandoned_uploads_after,
        ..
    } = &c.backends["local"];
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
