//! Sluice's configuration: raw serde structs (unknown fields rejected) → [`validate`] → typed
//! values the rest of the server uses. Every error names its place in the file, e.g.
//! `tenants[1].keys[0].secret: not valid base64`, and validation reports all of them at once.
//!
//! Relative paths (data directories, certificates, `file:` secrets) are relative to the config
//! file's own directory, so a config means the same thing whatever the working directory.

mod backends;
mod encryption;
mod limits;
mod listeners;
mod plugins;
mod raw;
mod secret_ref;
mod tenants;
mod units;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use sluice_crypto::MasterKey;

pub use backends::BackendConfig;
pub use limits::{BodyPace, Limits};
pub use listeners::{ListenerConfig, TlsFiles};
pub use plugins::{
    OnFailure, PluginConfig, PluginsConfig, default_cache_dir as default_plugin_cache,
};
pub use secret_ref::{SecretRef, resolve as resolve_secret};
pub use tenants::{
    BucketPattern, Route, StaticKey, TenantConfig, check_key_prefix, validate_access_id,
    validate_secret,
};
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
    /// The keys that wrap objects' data keys, when encryption at rest is configured.
    pub keyring: Option<std::sync::Arc<sluice_crypto::Keyring>>,
    pub backends: BTreeMap<String, BackendConfig>,
    pub tenants: Vec<TenantConfig>,
    pub plugins: PluginsConfig,
}

#[derive(Debug, Clone)]
pub struct S3Settings {
    pub region: String,
    /// Host names under which `<bucket>.<base domain>` selects virtual-hosted-style addressing.
    pub base_domains: Vec<String>,
}

#[derive(Debug)]
pub struct KeyStoreConfig {
    pub path: PathBuf,
    pub master_key: MasterKey,
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
    let listeners = listeners::validate(&raw.listeners, &rel, &mut check);
    let s3 = s3_settings(&raw.s3, &mut check);
    let limits = limits::validate(&raw.limits, &mut check);
    let key_store = key_store(raw.key_store.as_ref(), base_dir, &mut check);
    let backends = backends::validate(&raw.backends, base_dir, &mut check);
    let mut tenants = tenants::validate(&raw.tenants, &raw.backends, base_dir, &mut check);
    let plugins = plugins::validate(raw.plugins.as_ref(), base_dir, &mut check);
    for (i, t) in raw.tenants.iter().enumerate() {
        let chain = plugins::chain(
            t.plugins.as_deref(),
            raw.plugins.as_ref(),
            &format!("tenants[{i}].plugins"),
            &mut check,
        );
        if let Some(tenant) = tenants.iter_mut().find(|v| v.id.as_str() == t.name) {
            tenant.plugins = chain;
        }
    }
    let keyring = encryption::validate(raw.encryption.as_ref(), base_dir, &mut check);
    if raw.encryption.is_none() {
        for (t, tenant) in raw.tenants.iter().enumerate() {
            for (r, route) in tenant.routes.iter().enumerate() {
                if route.encryption != raw::RawPolicy::Off {
                    check.err(
                        format_args!("tenants[{t}].routes[{r}].encryption"),
                        "needs the encryption section (the keys that wrap data keys)",
                    );
                }
            }
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
        keyring,
        backends,
        tenants,
        plugins,
    })
}

fn s3_settings(raw: &raw::RawS3, check: &mut Check) -> S3Settings {
    let s3 = S3Settings {
        region: raw.region.clone(),
        base_domains: raw
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
    s3
}

fn key_store(
    raw: Option<&raw::RawKeyStore>,
    base_dir: &Path,
    check: &mut Check,
) -> Option<KeyStoreConfig> {
    raw.and_then(|ks| match resolve_secret(&ks.master_key, base_dir) {
        Ok(text) => match MasterKey::from_base64(&text) {
            Ok(master_key) => Some(KeyStoreConfig {
                path: base_dir.join(&ks.path),
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
    })
}

fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
}

#[cfg(test)]
mod tests;
