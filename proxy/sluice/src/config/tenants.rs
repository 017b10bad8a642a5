//! `tenants`: who may use Sluice (names, static keys) and where each tenant's buckets live
//! (routes: a bucket name or glob → a backend, optionally another bucket there and a key prefix).

use std::collections::{BTreeMap, HashSet};
use std::path::Path;

use base64::Engine as _;
use sluice_sigv4::SecretKey;
use sluice_storage::{BucketName, TenantId};

use super::raw::{self, RawBackend, RawTenant};
use super::{Check, MAX_KEYS_PER_TENANT, SECRET_LEN, resolve_secret};

#[derive(Debug)]
pub struct TenantConfig {
    pub id: TenantId,
    pub keys: Vec<StaticKey>,
    pub routes: Vec<Route>,
    /// The plugins this tenant's requests go through, in order (`plugins.modules` names).
    pub plugins: Vec<String>,
}

/// A key declared in the config file (as opposed to the managed key store).
#[derive(Debug)]
pub struct StaticKey {
    pub access_id: String,
    pub secret: SecretKey,
    pub active: bool,
}

/// Where a tenant's buckets matching `bucket` live.
#[derive(Debug, Clone)]
pub struct Route {
    pub bucket: BucketPattern,
    pub backend: String,
    /// The bucket's name in the backend, for a route of one exact bucket.
    pub target_bucket: Option<BucketName>,
    /// Prepended to every key in the backend; the client never sees it.
    pub key_prefix: String,
    /// Operations Sluice does not model are forwarded verbatim, re-signed (upstream routes
    /// that only rename the bucket).
    pub passthrough: bool,
    /// When objects written through this route are encrypted.
    pub encryption: sluice_storage::Policy,
}

impl Route {
    /// Whether the route changes names on the way to its backend.
    pub fn renames(&self) -> bool {
        self.target_bucket.is_some() || !self.key_prefix.is_empty()
    }
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
    /// This tenant's first route matching `bucket`.
    pub fn route_for(&self, bucket: &BucketName) -> Option<&Route> {
        self.routes.iter().find(|r| r.bucket.matches(bucket))
    }

    /// The backend this tenant's first matching route names for `bucket`.
    pub fn backend_for(&self, bucket: &BucketName) -> Option<&str> {
        self.route_for(bucket).map(|r| r.backend.as_str())
    }
}

/// Longest key prefix a route may add: keys are at most 1,024 bytes with it.
const MAX_KEY_PREFIX: usize = 512;

/// What a route's key prefix (from the config or a plugin) must be, or why not.
pub fn check_key_prefix(prefix: &str) -> Result<(), String> {
    if prefix.len() < 2
        || prefix.len() > MAX_KEY_PREFIX
        || !prefix.ends_with('/')
        || prefix.contains('\0')
    {
        return Err(format!(
            "must be 2 to {MAX_KEY_PREFIX} bytes ending in / (like \"acme/\")"
        ));
    }
    Ok(())
}

pub(super) fn validate(
    raw: &[RawTenant],
    backends: &BTreeMap<String, RawBackend>,
    base_dir: &Path,
    check: &mut Check,
) -> Vec<TenantConfig> {
    let mut tenants = Vec::new();
    let mut seen_tenants = HashSet::new();
    let mut seen_ids = HashSet::new();
    for (i, t) in raw.iter().enumerate() {
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
        let routes = t
            .routes
            .iter()
            .enumerate()
            .filter_map(|(j, r)| route(r, &format!("{place}.routes[{j}]"), backends, check))
            .collect();
        if let Some(id) = id {
            tenants.push(TenantConfig {
                id,
                keys,
                routes,
                plugins: Vec::new(),
            });
        }
    }
    check_shared_buckets(&tenants, check);
    tenants
}

/// A bucket that tenants share by key prefixes must keep them apart: no tenant's prefix inside
/// another tenant's on the same bucket, and no other tenant's route reaching the shared bucket
/// itself (it would see every prefix). One tenant's own routes may overlap: it is all its data.
fn check_shared_buckets(tenants: &[TenantConfig], check: &mut Check) {
    // (tenant, backend, bucket in the store, prefix, place) of every prefixed route of one bucket.
    let mut shared = Vec::new();
    for (i, t) in tenants.iter().enumerate() {
        for (j, r) in t.routes.iter().enumerate() {
            let stored = match (&r.bucket, &r.target_bucket) {
                (_, Some(target)) => Some(target.clone()),
                (BucketPattern::Exact(b), None) => Some(b.clone()),
                _ => None,
            };
            if let (Some(stored), false) = (stored, r.key_prefix.is_empty()) {
                shared.push((
                    i,
                    &r.backend,
                    stored,
                    &r.key_prefix,
                    format!("tenants[{i}].routes[{j}]"),
                ));
            }
        }
    }
    for (a, (owner, backend, bucket, prefix, place)) in shared.iter().enumerate() {
        for (other_owner, other_backend, other_bucket, other_prefix, other_place) in
            &shared[a + 1..]
        {
            if owner != other_owner
                && backend == other_backend
                && bucket == other_bucket
                && (prefix.starts_with(other_prefix.as_str())
                    || other_prefix.starts_with(prefix.as_str()))
            {
                check.err(
                    format_args!("{other_place}.key_prefix"),
                    format_args!(
                        "{other_prefix:?} overlaps {prefix:?} of {place} in the same bucket {bucket}"
                    ),
                );
            }
        }
        for (i, t) in tenants.iter().enumerate().filter(|(i, _)| i != owner) {
            for (j, r) in t.routes.iter().enumerate() {
                let reaches = r.key_prefix.is_empty()
                    && &r.backend == *backend
                    && match &r.target_bucket {
                        Some(target) => target == bucket,
                        None => r.bucket.matches(bucket),
                    };
                if reaches {
                    check.err(
                        format_args!("tenants[{i}].routes[{j}]"),
                        format_args!(
                            "reaches bucket {bucket} of backend {backend} whole, which {place} shares by key prefix"
                        ),
                    );
                }
            }
        }
    }
}

fn route(
    r: &raw::RawRoute,
    place: &str,
    backends: &BTreeMap<String, RawBackend>,
    check: &mut Check,
) -> Option<Route> {
    let bucket = match r.bucket.as_str() {
        "*" => Some(BucketPattern::Any),
        p if p.ends_with('*') && !p[..p.len() - 1].contains('*') => {
            Some(BucketPattern::Prefix(p[..p.len() - 1].to_owned()))
        }
        p => match BucketName::parse(p) {
            Ok(b) => Some(BucketPattern::Exact(b)),
            Err(e) => {
                check.err(format_args!("{place}.bucket"), e);
                None
            }
        },
    };
    let backend = backends.get(&r.backend);
    if backend.is_none() {
        check.err(
            format_args!("{place}.backend"),
            format_args!("no backend named {:?}", r.backend),
        );
    }
    let target_bucket = r.target_bucket.as_deref().and_then(|name| {
        if matches!(bucket, Some(BucketPattern::Any | BucketPattern::Prefix(_))) {
            check.err(
                format_args!("{place}.target_bucket"),
                "only a route of one exact bucket can rename it",
            );
        }
        BucketName::parse(name)
            .map_err(|e| check.err(format_args!("{place}.target_bucket"), e))
            .ok()
    });
    let key_prefix = r.key_prefix.clone().unwrap_or_default();
    if r.key_prefix.is_some()
        && let Err(e) = check_key_prefix(&key_prefix)
    {
        check.err(format_args!("{place}.key_prefix"), e);
    }
    if r.passthrough {
        if !key_prefix.is_empty() {
            check.err(
                format_args!("{place}.passthrough"),
                "only for routes that rename the bucket alone: a key prefix cannot be kept on \
                 operations Sluice does not model",
            );
        }
        if !matches!(backend, Some(RawBackend::S3(_)) | None) {
            check.err(
                format_args!("{place}.passthrough"),
                "only for upstream (type: s3) backends",
            );
        }
    }
    let encryption = match r.encryption {
        raw::RawPolicy::Off => sluice_storage::Policy::Off,
        raw::RawPolicy::On => sluice_storage::Policy::On,
        raw::RawPolicy::Required => sluice_storage::Policy::Required,
    };
    if encryption != sluice_storage::Policy::Off && r.passthrough {
        // Operations Sluice does not model could read or write bodies past the encryption.
        check.err(
            format_args!("{place}.passthrough"),
            "cannot be combined with encryption",
        );
    }
    Some(Route {
        bucket: bucket?,
        backend: r.backend.clone(),
        target_bucket,
        key_prefix,
        passthrough: r.passthrough,
        encryption,
    })
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
