//! `backends`: the stores Sluice serves from: the built-in local backend, and upstream S3
//! stores re-signed with their own credentials.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use sluice_upstream::{
    Addressing, CredentialSources, Endpoint, PayloadSigning, Profile, SecretSource, Timeouts,
    UpstreamConfig,
};
use zeroize::Zeroizing;

use super::raw::{self, RawBackend, RawUpstream};
use super::{Check, SecretRef, resolve_secret, valid_name};

#[derive(Debug)]
pub enum BackendConfig {
    Local {
        path: PathBuf,
        /// Multipart uploads not completed or aborted within this time are aborted.
        abandoned_uploads_after: Duration,
    },
    /// An upstream S3 store.
    S3(Box<UpstreamConfig>),
}

pub(super) fn validate(
    raw: &BTreeMap<String, RawBackend>,
    base_dir: &Path,
    check: &mut Check,
) -> BTreeMap<String, BackendConfig> {
    let mut backends = BTreeMap::new();
    for (name, b) in raw {
        let place = format!("backends.{name}");
        if !valid_name(name) {
            check.err(&place, "backend names use a-z, 0-9, - and _");
        }
        let backend = match b {
            RawBackend::Local {
                path,
                abandoned_uploads_after,
            } => {
                let age = abandoned_uploads_after.0;
                if !(Duration::from_secs(60)..=Duration::from_secs(3650 * 86_400)).contains(&age) {
                    check.err(
                        format_args!("{place}.abandoned_uploads_after"),
                        "must be between 1m and 3650d",
                    );
                }
                Some(BackendConfig::Local {
                    path: base_dir.join(path),
                    abandoned_uploads_after: age,
                })
            }
            RawBackend::S3(up) => upstream(name, up, &place, base_dir, check)
                .map(|config| BackendConfig::S3(Box::new(config))),
        };
        if let Some(backend) = backend {
            backends.insert(name.clone(), backend);
        }
    }
    backends
}

fn upstream(
    name: &str,
    raw: &RawUpstream,
    place: &str,
    base_dir: &Path,
    check: &mut Check,
) -> Option<UpstreamConfig> {
    let errors_before = check.errors.len();
    let profile = Profile::parse(&raw.profile);
    if profile.is_none() {
        let known: Vec<&str> = Profile::ALL.iter().map(|p| p.name()).collect();
        check.err(
            format_args!("{place}.profile"),
            format_args!(
                "unknown profile {:?} (one of {})",
                raw.profile,
                known.join(", ")
            ),
        );
    }
    let profile = profile.unwrap_or(Profile::Generic);
    let quirks = profile.quirks();
    let endpoint = Endpoint::parse(&raw.endpoint)
        .map_err(|e| check.err(format_args!("{place}.endpoint"), e))
        .ok();
    if let Some(endpoint) = &endpoint {
        match (endpoint.https, raw.danger_plain_http) {
            (false, false) if !endpoint.is_loopback() => check.err(
                format_args!("{place}.endpoint"),
                "plain http:// is allowed for loopback addresses only, unless the backend \
                 says `danger_plain_http: true` (credentials are not sent, but bodies and \
                 names travel in the clear)",
            ),
            (true, true) => check.err(
                format_args!("{place}.danger_plain_http"),
                "only applies to http:// endpoints",
            ),
            _ => {}
        }
    }
    let region = match (quirks.fixed_region, raw.region.as_deref()) {
        (Some(fixed), None) => fixed.to_owned(),
        (Some(fixed), Some(region)) if region == fixed => fixed.to_owned(),
        (Some(fixed), Some(_)) => {
            check.err(
                format_args!("{place}.region"),
                format_args!(
                    "profile {} signs for region {fixed:?}; leave it out",
                    profile.name()
                ),
            );
            fixed.to_owned()
        }
        (None, Some(region))
            if !region.is_empty()
                && region
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-') =>
        {
            region.to_owned()
        }
        (None, Some(_)) => {
            check.err(
                format_args!("{place}.region"),
                "must be a region name such as eu-west-1",
            );
            String::new()
        }
        (None, None) => {
            check.err(
                format_args!("{place}.region"),
                "is required (the region requests are signed for)",
            );
            String::new()
        }
    };
    let addressing = match raw.addressing {
        Some(raw::RawAddressing::Virtual) => Addressing::Virtual,
        Some(raw::RawAddressing::Path) => Addressing::Path,
        None => quirks.addressing,
    };
    if addressing == Addressing::Virtual
        && endpoint
            .as_ref()
            .is_some_and(|e| e.host.parse::<std::net::IpAddr>().is_ok())
    {
        check.err(
            format_args!("{place}.addressing"),
            "virtual-hosted addressing needs a host name, not an IP address (use `addressing: path`)",
        );
    }
    let mut secret = |field: &str, text: &str| -> Option<SecretSource> {
        match SecretRef::classify(text) {
            // A file is read now (so `sluice check` reports it) and again whenever it changes.
            SecretRef::File(path) => {
                let path = base_dir.join(path);
                match std::fs::read_to_string(&path) {
                    Ok(_) => Some(SecretSource::File(path)),
                    Err(e) => {
                        check.err(
                            format_args!("{place}.{field}"),
                            format_args!("cannot read {}: {e}", path.display()),
                        );
                        None
                    }
                }
            }
            _ => match resolve_secret(text, base_dir) {
                Ok(value) if !value.trim().is_empty() => {
                    Some(SecretSource::Value(Zeroizing::new(value.trim().to_owned())))
                }
                Ok(_) => {
                    check.err(format_args!("{place}.{field}"), "is empty");
                    None
                }
                Err(e) => {
                    check.err(format_args!("{place}.{field}"), e);
                    None
                }
            },
        }
    };
    let access_key_id = secret("access_key_id", &raw.access_key_id);
    let secret_access_key = secret("secret_access_key", &raw.secret_access_key);
    let session_token = raw
        .session_token
        .as_deref()
        .map(|t| secret("session_token", t));
    let ca = raw.ca.as_deref().map(|p| base_dir.join(p));
    if let Some(ca) = &ca
        && !ca.is_file()
    {
        check.err(
            format_args!("{place}.ca"),
            format_args!("{} does not exist", ca.display()),
        );
    }
    let defaults = Timeouts::default();
    let timeouts = Timeouts {
        connect: raw.connect_timeout.map_or(defaults.connect, |d| d.0),
        first_byte: raw.first_byte_timeout.map_or(defaults.first_byte, |d| d.0),
        idle: raw.idle_timeout.map_or(defaults.idle, |d| d.0),
    };
    for (field, d) in [
        ("connect_timeout", timeouts.connect),
        ("first_byte_timeout", timeouts.first_byte),
        ("idle_timeout", timeouts.idle),
    ] {
        if d.is_zero() {
            check.err(format_args!("{place}.{field}"), "must be greater than zero");
        }
    }
    let payload_signing = match raw.payload_signing {
        raw::RawPayloadSigning::Auto => PayloadSigning::Auto,
        raw::RawPayloadSigning::Chunks => {
            if !quirks.signed_chunks {
                check.err(
                    format_args!("{place}.payload_signing"),
                    format_args!(
                        "profile {} does not accept signed aws-chunked bodies",
                        profile.name()
                    ),
                );
            }
            PayloadSigning::Chunks
        }
    };
    if check.errors.len() > errors_before {
        return None;
    }
    Some(UpstreamConfig {
        name: name.to_owned(),
        profile,
        endpoint: endpoint?,
        region,
        addressing,
        credentials: CredentialSources {
            access_key_id: access_key_id?,
            secret_access_key: secret_access_key?,
            session_token: session_token.flatten(),
        },
        ca,
        timeouts,
        payload_signing,
    })
}
