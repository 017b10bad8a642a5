//! Sluice's configuration: raw serde structs (unknown fields rejected) → [`validate`] → typed
//! values the rest of the server uses. Every error names its place in the file, e.g.
//! `tenants[1].keys[0].secret: not valid base64`, and validation reports all of them at once.
//!
//! Relative paths (data directories, certificates, `file:` secrets) are relative to the config
//! file's own directory, so a config means the same thing whatever the working directory.

mod raw;
mod secret_ref;
mod units;

use std::collections::{BTreeMap, HashSet};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use base64::Engine as _;
use sluice_crypto::MasterKey;
use sluice_sigv4::SecretKey;
use sluice_storage::{BucketName, TenantId};

pub use secret_ref::{SecretRef, resolve as resolve_secret};
pub use units::{ByteSize, ConfigDuration};

/// At most this many HMAC keys per tenant, config and key store together (as in Cloud Storage).
pub const MAX_KEYS_PER_TENANT: usize = 10;
/// Length of a secret: 30 random bytes in base64, as Cloud Storage's HMAC secrets.
pub const SECRET_LEN: usize = 40;

#[derive(Debug)]
pub struct Config {
    pub source: PathBuf,
    pub listeners: Vec<ListenerConfig>,
    pub s3: S3Settings,
    pub limits: Limits,
    pub key_store: Option<KeyStoreConfig>,
    pub backends: BTreeMap<String, BackendConfig>,
    pub tenants: Vec<TenantConfig>,
}

#[derive(Debug, Clone)]
pub struct ListenerConfig {
    pub bind: SocketAddr,
    pub tls: Option<TlsFiles>,
    /// Plain HTTP only: accept bodies the signature does not cover (`UNSIGNED-PAYLOAD`,
    /// `STREAMING-UNSIGNED-PAYLOAD-TRAILER`), which a man in the middle could alter.
    pub danger_accept_unsigned_payload: bool,
}

#[derive(Debug, Clone)]
pub struct TlsFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
}

#[derive(Debug, Clone)]
pub struct S3Settings {
    pub region: String,
    /// Host names under which `<bucket>.<base domain>` selects virtual-hosted-style addressing.
    pub base_domains: Vec<String>,
}

#[derive(Debug, Clone)]
pub struct Limits {
    pub max_header_bytes: usize,
    pub header_read_timeout: Duration,
    pub idle_timeout: Duration,
    pub max_connections: usize,
    pub shutdown_grace: Duration,
    /// How request bodies must arrive; see [`BodyPace`].
    pub body: BodyPace,
}

/// How slowly a request body may arrive before Sluice answers `400 RequestTimeout` and closes
/// the connection. Time counts only while Sluice waits for the client (never while it writes
/// to storage). Two rules:
/// - no body byte for `read_timeout`;
/// - past a grace of `read_timeout`, fewer than `min_bytes_per_sec` on average (each byte
///   received buys `1 / min_bytes_per_sec` s more), so a trickle cannot hold a connection and
///   its upload for ever. `0` turns this rule off.
#[derive(Debug, Clone, Copy)]
pub struct BodyPace {
    pub read_timeout: Duration,
    pub min_bytes_per_sec: u64,
}

#[derive(Debug)]
pub struct KeyStoreConfig {
    pub path: PathBuf,
    pub master_key: MasterKey,
}

#[derive(Debug, Clone)]
pub enum BackendConfig {
    Local {
        path: PathBuf,
        /// Multipart uploads not completed or aborted within this time are aborted.
        abandoned_uploads_after: Duration,
    },
}

#[derive(Debug)]
pub struct TenantConfig {
    pub id: TenantId,
    pub keys: Vec<StaticKey>,
    pub routes: Vec<Route>,
}

/// A key declared in the config file (as opposed to the managed key store).
#[derive(Debug)]
pub struct StaticKey {
    pub access_id: String,
    pub secret: SecretKey,
    pub active: bool,
}

#[derive(Debug, Clone)]
pub struct Route {
    pub bucket: BucketPattern,
    pub backend: String,
}

/// `*` (any bucket), `prefix*`, or one exact bucket name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BucketPattern {
    Any,
    Prefix(String),
    Exact(BucketName),
}

impl BucketPattern {
    pub fn matches(&self, bucket: &BucketName) -> bool {
        match self {
            Self::Any => true,
            Self::Prefix(p) => bucket.as_str().starts_with(p.as_str()),
            Self::Exact(b) => b == bucket,
        }
    }
}

impl TenantConfig {
    /// The backend this tenant's first matching route names for `bucket`.
    pub fn backend_for(&self, bucket: &BucketName) -> Option<&str> {
        self.routes
            .iter()
            .find(|r| r.bucket.matches(bucket))
            .map(|r| r.backend.as_str())
    }
}

/// All problems found in a config file, each with its place.
#[derive(Debug)]
pub struct ConfigErrors(pub Vec<String>);

impl std::fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for line in &self.0 {
            writeln!(f, "{line}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

/// Reads, parses and validates a config file.
pub fn load(path: &Path) -> Result<Config, ConfigErrors> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| ConfigErrors(vec![format!("{}: cannot read: {e}", path.display())]))?;
    let base_dir = path.parent().map(Path::to_path_buf).unwrap_or_default();
    parse(&text, path, &base_dir)
}

pub fn parse(text: &str, source: &Path, base_dir: &Path) -> Result<Config, ConfigErrors> {
    // serde_yaml's messages already name the key path and the line: `listeners[0]: unknown field …`.
    let raw: raw::RawConfig =
        serde_yaml::from_str(text).map_err(|e| ConfigErrors(vec![e.to_string()]))?;
    validate(raw, source, base_dir)
}

/// Collects every semantic error (with its key path) instead of stopping at the first.
struct Check {
    errors: Vec<String>,
}

impl Check {
    fn err(&mut self, place: impl std::fmt::Display, message: impl std::fmt::Display) {
        self.errors.push(format!("{place}: {message}"));
    }
}

fn validate(raw: raw::RawConfig, source: &Path, base_dir: &Path) -> Result<Config, ConfigErrors> {
    let mut check = Check { errors: Vec::new() };
    let rel = |p: &str| base_dir.join(p);

    if raw.listeners.is_empty() {
        check.err("listeners", "at least one listener is required");
    }
    let mut listeners = Vec::new();
    for (i, l) in raw.listeners.iter().enumerate() {
        let place = format!("listeners[{i}]");
        let bind = match l.bind.parse::<SocketAddr>() {
            Ok(a) => Some(a),
            Err(_) => {
                check.err(
                    format_args!("{place}.bind"),
                    format_args!("{:?} is not an address:port", l.bind),
                );
                None
            }
        };
        let tls = l.tls.as_ref().map(|t| TlsFiles {
            cert: rel(&t.cert),
            key: rel(&t.key),
        });
        match (&tls, l.danger_plain_http) {
            (None, false) => check.err(
                &place,
                "has no tls section; plain HTTP must be asked for with `danger_plain_http: true`",
            ),
            (Some(_), true) => check.err(&place, "has both tls and danger_plain_http"),
            (Some(_), false) if l.danger_accept_unsigned_payload => check.err(
                format_args!("{place}.danger_accept_unsigned_payload"),
                "only applies to plain-HTTP listeners (TLS listeners always accept unsigned payloads)",
            ),
            _ => {}
        }
        if let Some(t) = &tls {
            for (what, file) in [("cert", &t.cert), ("key", &t.key)] {
                if !file.is_file() {
                    check.err(
                        format_args!("{place}.tls.{what}"),
                        format_args!("{} does not exist", file.display()),
                    );
                }
            }
        }
        if let Some(bind) = bind {
            listeners.push(ListenerConfig {
                bind,
                tls,
                danger_accept_unsigned_payload: l.danger_accept_unsigned_payload,
            });
        }
    }

    let s3 = S3Settings {
        region: raw.s3.region.clone(),
        base_domains: raw
            .s3
            .base_domains
            .iter()
            .map(|d| d.trim_end_matches('.').to_ascii_lowercase())
            .collect(),
    };
    if s3.region.is_empty()
        || !s3
            .region
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-')
    {
        check.err("s3.region", "must be a region name such as us-east-1");
    }

    let l = &raw.limits;
    let limits = Limits {
        max_header_bytes: l.max_header_bytes.0 as usize,
        header_read_timeout: l.header_read_timeout.0,
        idle_timeout: l.idle_timeout.0,
        max_connections: l.max_connections,
        shutdown_grace: l.shutdown_grace.0,
        body: BodyPace {
            read_timeout: l.body_read_timeout.0,
            min_bytes_per_sec: l.body_min_bytes_per_sec.0,
        },
    };
    if !(8192..=1 << 20).contains(&limits.max_header_bytes) {
        check.err("limits.max_header_bytes", "must be between 8KiB and 1MiB");
    }
    if limits.max_connections == 0 {
        check.err("limits.max_connections", "must be at least 1");
    }
    for (name, d) in [
        ("header_read_timeout", limits.header_read_timeout),
        ("idle_timeout", limits.idle_timeout),
        ("body_read_timeout", limits.body.read_timeout),
    ] {
        if d.is_zero() {
            check.err(format_args!("limits.{name}"), "must be greater than zero");
        }
    }

    let key_store =
        raw.key_store
            .as_ref()
            .and_then(|ks| match resolve_secret(&ks.master_key, base_dir) {
                Ok(text) => match MasterKey::from_base64(&text) {
                    Ok(master_key) => Some(KeyStoreConfig {
                        path: rel(&ks.path),
                        master_key,
                    }),
                    Err(e) => {
                        check.err("key_store.master_key", e);
                        None
                    }
                },
                Err(e) => {
                    check.err("key_store.master_key", e);
                    None
                }
            });

    let mut backends = BTreeMap::new();
    for (name, b) in &raw.backends {
        if !valid_name(name) {
            check.err(
                format_args!("backends.{name}"),
                "backend names use a-z, 0-9, - and _",
            );
        }
        let backend = match b {
            raw::RawBackend::Local {
                path,
                abandoned_uploads_after,
            } => {
                let age = abandoned_uploads_after.0;
                if !(Duration::from_secs(60)..=Duration::from_secs(3650 * 86_400)).contains(&age) {
                    check.err(
                        format_args!("backends.{name}.abandoned_uploads_after"),
                        "must be between 1m and 3650d",
                    );
                }
                BackendConfig::Local {
                    path: rel(path),
                    abandoned_uploads_after: age,
                }
            }
        };
        backends.insert(name.clone(), backend);
    }

    let mut tenants = Vec::new();
    let mut seen_tenants = HashSet::new();
    let mut seen_ids = HashSet::new();
    for (i, t) in raw.tenants.iter().enumerate() {
        let place = format!("tenants[{i}]");
        let id = TenantId::parse(&t.name);
        if id.is_none() {
            check.err(
                format_args!("{place}.name"),
                "tenant names are 1-63 characters of a-z, 0-9, - and _",
            );
        }
        if !seen_tenants.insert(t.name.clone()) {
            check.err(
                format_args!("{place}.name"),
                format_args!("tenant {:?} is declared twice", t.name),
            );
        }
        if t.keys.len() > MAX_KEYS_PER_TENANT {
            check.err(
                format_args!("{place}.keys"),
                format_args!("at most {MAX_KEYS_PER_TENANT} keys per tenant"),
            );
        }
        let mut keys = Vec::new();
        for (j, k) in t.keys.iter().enumerate() {
            let kplace = format!("{place}.keys[{j}]");
            if let Err(e) = validate_access_id(&k.access_id) {
                check.err(format_args!("{kplace}.access_id"), e);
            }
            if !seen_ids.insert(k.access_id.clone()) {
                check.err(
                    format_args!("{kplace}.access_id"),
                    "access id is used twice",
                );
            }
            match resolve_secret(&k.secret, base_dir).and_then(|s| validate_secret(&s).map(|()| s))
            {
                Ok(secret) => keys.push(StaticKey {
                    access_id: k.access_id.clone(),
                    secret: SecretKey::new(secret.to_string()),
                    active: k.state == raw::KeyState::Active,
                }),
                Err(e) => check.err(format_args!("{kplace}.secret"), e),
            }
        }
        let mut routes = Vec::new();
        for (j, r) in t.routes.iter().enumerate() {
            let rplace = format!("{place}.routes[{j}]");
            let bucket = match r.bucket.as_str() {
                "*" => Some(BucketPattern::Any),
                p if p.ends_with('*') && !p[..p.len() - 1].contains('*') => {
                    Some(BucketPattern::Prefix(p[..p.len() - 1].to_owned()))
                }
                p => match BucketName::parse(p) {
                    Ok(b) => Some(BucketPattern::Exact(b)),
                    Err(e) => {
                        check.err(format_args!("{rplace}.bucket"), e);
                        None
                    }
                },
            };
            if !raw.backends.contains_key(&r.backend) {
                check.err(
                    format_args!("{rplace}.backend"),
                    format_args!("no backend named {:?}", r.backend),
                );
            }
            if let Some(bucket) = bucket {
                routes.push(Route {
                    bucket,
                    backend: r.backend.clone(),
                });
            }
        }
        if let Some(id) = id {
            tenants.push(TenantConfig { id, keys, routes });
        }
    }

    if !check.errors.is_empty() {
        return Err(ConfigErrors(check.errors));
    }
    Ok(Config {
        source: source.to_path_buf(),
        listeners,
        s3,
        limits,
        key_store,
        backends,
        tenants,
    })
}

fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
}

/// Access ids: 16 to 128 upper-case letters and digits (they appear in every Credential= field).
pub fn validate_access_id(id: &str) -> Result<(), String> {
    if (16..=128).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit())
    {
        Ok(())
    } else {
        Err("must be 16 to 128 characters of A-Z and 0-9".into())
    }
}

/// Secrets: exactly 40 characters of standard base64.
pub fn validate_secret(secret: &str) -> Result<(), String> {
    if base64::engine::general_purpose::STANDARD
        .decode(secret)
        .is_err()
    {
        return Err("not valid base64".into());
    }
    if secret.len() != SECRET_LEN {
        return Err(format!(
            "must be {SECRET_LEN} characters of base64 (got {})",
            secret.len()
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests;
