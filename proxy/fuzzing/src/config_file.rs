//! Target `config_loader`: `sluice::config::parse` on any text, hermetically, with the
//! invariants `validate` promises checked on every config it accepts, and generated configs
//! with one known defect (or none) whose verdict is known in advance.

use std::collections::HashSet;
use std::path::Path;
use std::time::Duration;

use base64::Engine as _;
use rand::Rng;
use rand::rngs::StdRng;
use rand::seq::IndexedRandom;
use sluice::config::{
    BackendConfig, Config, MAX_KEYS_PER_TENANT, parse, validate_access_id, validate_secret,
};

const MASTER_KEY: &str = "Keqk++p6qEH58N+2ilh7CBKHUyBVr3JjiohbUNUnIxw=";

/// Makes any text safe to load: `env:` and `file:` secret references become inline values (a
/// fuzzer must not read the environment, nor `/dev/zero` through `file:`), and backslashes go,
/// since YAML escapes (`"\x65nv:"`) could spell those prefixes.
pub fn hermetic(text: &str) -> String {
    text.replace('\\', "/")
        .replace("env:", "enw:")
        .replace("file:", "fyle:")
}

/// Input: YAML text (made [`hermetic`] first), loaded relative to a directory that does not
/// exist.
///
/// Never panics. An accepted config keeps every promise of `validate`: at least one listener,
/// TLS xor plain HTTP with `danger_accept_unsigned_payload` only on plain HTTP, a region of
/// letters, digits and `-`, lowercase base domains without a trailing dot, limits in range,
/// valid backend names and upload ages, unique tenant names, at most 10 keys per tenant,
/// access ids valid and unique across tenants, 40-character base64 secrets, routes naming
/// existing backends, and every tenant and listener of the file present.
pub fn config_loader(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let text = hermetic(text);
    match parse(&text, Path::new("f.yaml"), Path::new("/nonexistent-base")) {
        Ok(config) => check_config(&config, &text),
        Err(errors) => assert!(!errors.0.is_empty(), "an error without a message"),
    }
}

fn check_config(c: &Config, text: &str) {
    assert!(!c.listeners.is_empty());
    for l in &c.listeners {
        assert!(
            !(l.tls.is_some() && l.danger_accept_unsigned_payload),
            "unsigned payloads on a TLS listener"
        );
    }
    assert!(
        !c.s3.region.is_empty()
            && c.s3
                .region
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-'),
        "region {:?}",
        c.s3.region
    );
    for d in &c.s3.base_domains {
        assert!(
            !d.ends_with('.') && !d.bytes().any(|b| b.is_ascii_uppercase()),
            "{d:?}"
        );
    }
    assert!((8192..=1 << 20).contains(&c.limits.max_header_bytes));
    assert!(c.limits.max_connections >= 1);
    assert!(!c.limits.header_read_timeout.is_zero() && !c.limits.idle_timeout.is_zero());
    for (name, backend) in &c.backends {
        assert!(
            !name.is_empty()
                && name
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"-_".contains(&b)),
            "backend name {name:?}"
        );
        match backend {
            BackendConfig::Local {
                abandoned_uploads_after,
                ..
            } => assert!(
                (Duration::from_secs(60)..=Duration::from_secs(3650 * 86_400))
                    .contains(abandoned_uploads_after)
            ),
            // An accepted upstream is reachable without leaking: plain HTTP only to loopback
            // unless asked for, and a region to sign for.
            BackendConfig::S3(up) => {
                assert!(!up.region.is_empty());
                assert!(!up.timeouts.connect.is_zero() && !up.timeouts.first_byte.is_zero());
            }
        }
    }
    let mut tenants = HashSet::new();
    let mut ids = HashSet::new();
    for t in &c.tenants {
        assert!(
            tenants.insert(t.id.as_str().to_owned()),
            "tenant {} twice",
            t.id.as_str()
        );
        assert!(t.keys.len() <= MAX_KEYS_PER_TENANT, "{} keys", t.keys.len());
        for k in &t.keys {
            validate_access_id(&k.access_id).expect("accepted access id is valid");
            assert!(
                ids.insert(k.access_id.clone()),
                "access id {} twice",
                k.access_id
            );
            validate_secret(k.secret.expose()).expect("accepted secret is valid");
        }
        for r in &t.routes {
            assert!(
                c.backends.contains_key(&r.backend),
                "route to {:?}",
                r.backend
            );
        }
    }
    // Counted from the same text by a schema-less reader: nothing may be dropped silently.
    if let Ok(value) = serde_yaml::from_str::<serde_yaml::Value>(text) {
        let count = |key: &str| {
            value
                .get(key)
                .and_then(|v| v.as_sequence())
                .map_or(0, Vec::len)
        };
        assert_eq!(c.tenants.len(), count("tenants"), "tenants dropped");
        assert_eq!(c.listeners.len(), count("listeners"), "listeners dropped");
    }
}

/// A generated config and the one defect it was given, if any.
#[derive(Debug)]
pub struct GeneratedConfig {
    pub text: String,
    pub defect: Option<&'static str>,
}

fn access_id(rng: &mut StdRng) -> String {
    let len = rng.random_range(16..=24);
    (0..len)
        .map(|_| char::from(*b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567".choose(rng).unwrap()))
        .collect()
}

fn secret(rng: &mut StdRng) -> String {
    let bytes: [u8; 30] = rng.random();
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// A valid config in the shape of `config/local.yaml`, varied (tenants, keys up to the limit,
/// routes, units, key states, base domains), then given at most one defect that `validate`
/// must refuse.
pub fn gen_config(rng: &mut StdRng) -> GeneratedConfig {
    const DEFECTS: &[&str] = &[
        "no listeners",
        "plain http without danger_plain_http",
        "tls and danger_plain_http",
        "bad region",
        "max_header_bytes too small",
        "zero max_connections",
        "zero idle_timeout",
        "bad backend name",
        "abandoned_uploads_after too short",
        "bad master key",
        "duplicate tenant",
        "bad tenant name",
        "eleven keys",
        "lowercase access id",
        "duplicate access id",
        "short secret",
        "secret not base64",
        "route to unknown backend",
        "route with two wildcards",
        "unknown field",
    ];
    let defect = (!rng.random_ratio(2, 5)).then(|| *DEFECTS.choose(rng).unwrap());
    let is = |d: &str| defect == Some(d);

    let mut y = String::new();
    if is("no listeners") {
        y += "listeners: []\n";
    } else {
        y += "listeners:\n  - bind: 127.0.0.1:9000\n";
        if is("tls and danger_plain_http") {
            y += "    tls: {cert: c.pem, key: k.pem}\n    danger_plain_http: true\n";
        } else if !is("plain http without danger_plain_http") {
            y += "    danger_plain_http: true\n";
        }
        if rng.random_bool(0.5) {
            y += "    danger_accept_unsigned_payload: true\n";
        }
        if rng.random_bool(0.3) {
            y += "  - bind: \"[::1]:9001\"\n    danger_plain_http: true\n";
        }
    }
    let region = if is("bad region") {
        "us east 1"
    } else {
        *["us-east-1", "auto", "eu-west-3"].choose(rng).unwrap()
    };
    y += &format!("s3:\n  region: {region}\n  base_domains: [s3.localhost, S3.Example.COM.]\n");
    let header_bytes = if is("max_header_bytes too small") {
        "1KiB"
    } else {
        *["16KiB", "8KiB", "1MiB", "65536"].choose(rng).unwrap()
    };
    let connections = if is("zero max_connections") {
        0
    } else {
        rng.random_range(1..5000)
    };
    let idle = if is("zero idle_timeout") {
        "0s"
    } else {
        *["60s", "5m", "1h"].choose(rng).unwrap()
    };
    y += &format!(
        "limits:\n  max_header_bytes: {header_bytes}\n  header_read_timeout: 10s\n  idle_timeout: {idle}\n  max_connections: {connections}\n  shutdown_grace: 30s\n"
    );
    if rng.random_bool(0.5) || is("bad master key") {
        let key = if is("bad master key") {
            "AAAA"
        } else {
            MASTER_KEY
        };
        y += &format!("key_store:\n  path: keys.yaml\n  master_key: \"{key}\"\n");
    }
    let backend = if is("bad backend name") {
        "Local"
    } else {
        "local"
    };
    let age = if is("abandoned_uploads_after too short") {
        "30s"
    } else {
        *["7d", "1m", "3650d"].choose(rng).unwrap()
    };
    y += &format!(
        "backends:\n  {backend}:\n    type: local\n    path: data\n    abandoned_uploads_after: {age}\n"
    );

    let tenant_count = if is("duplicate tenant") || is("duplicate access id") {
        2
    } else {
        rng.random_range(0..=3)
    };
    let tenant_count = if is("eleven keys")
        || is("lowercase access id")
        || is("short secret")
        || is("secret not base64")
        || is("route to unknown backend")
        || is("route with two wildcards")
        || is("bad tenant name")
    {
        tenant_count.max(1)
    } else {
        tenant_count
    };
    let mut shared_id = None;
    if tenant_count > 0 {
        y += "tenants:\n";
    }
    for i in 0..tenant_count {
        let name = if is("duplicate tenant") || (is("bad tenant name") && i == 0) {
            if is("bad tenant name") {
                "Bad Name".to_owned()
            } else {
                "dup".to_owned()
            }
        } else {
            format!("t{i}")
        };
        y += &format!("  - name: {name}\n");
        let keys = if is("eleven keys") && i == 0 {
            11
        } else {
            rng.random_range(0..=MAX_KEYS_PER_TENANT)
        };
        let keys = if is("duplicate access id")
            || (i == 0
                && (is("lowercase access id") || is("short secret") || is("secret not base64")))
        {
            keys.max(1)
        } else {
            keys
        };
        if keys > 0 {
            y += "    keys:\n";
        }
        for j in 0..keys {
            let mut id = access_id(rng);
            if is("duplicate access id") {
                id = shared_id.get_or_insert_with(|| id.clone()).clone();
            }
            if is("lowercase access id") && i == 0 && j == 0 {
                id = id.to_ascii_lowercase();
            }
            let mut s = secret(rng);
            if i == 0 && j == 0 {
                if is("short secret") {
                    s.truncate(36);
                } else if is("secret not base64") {
                    s.replace_range(0..1, "!");
                }
            }
            y += &format!("      - access_id: {id}\n        secret: \"{s}\"\n");
            if rng.random_bool(0.3) {
                y += "        state: inactive\n";
            }
        }
        if is("duplicate access id") && i == 0 {
            continue;
        }
        y += "    routes:\n";
        let bucket = if is("route with two wildcards") {
            "a*b*"
        } else {
            *["\"*\"", "photos", "\"logs-*\""].choose(rng).unwrap()
        };
        let to = if is("route to unknown backend") {
            "elsewhere"
        } else {
            "local"
        };
        y += &format!("      - bucket: {bucket}\n        backend: {to}\n");
    }
    if is("unknown field") {
        y += "surprise: true\n";
    }
    GeneratedConfig { text: y, defect }
}
