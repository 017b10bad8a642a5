//! Authentication: from a request's SigV4 fields to a [`Principal`], or an S3 error.
//!
//! A `Principal` can only be built here, from a `sluice_sigv4::Verified`, so every later phase
//! that takes one is guaranteed to run after the signature check.

use std::sync::Arc;

use http::request::Parts;
use http::{HeaderValue, StatusCode};
use sluice_sigv4::{
    AuthKind, AuthRequest, CanonicalSettings, SigV4Error, Verified, parse_auth, verify,
};

use crate::keys::{KeyLookup, KeyTable};
use crate::s3::S3Error;

/// An authenticated caller: which tenant, with which key, and how its body must be verified.
#[derive(Debug)]
pub struct Principal {
    pub tenant: String,
    pub access_id: String,
    /// Authenticated by a presigned URL (rather than an `Authorization` header).
    pub presigned: bool,
    pub verified: Verified,
}

/// Authenticates a request. `region` is the region clients must sign for.
pub fn authenticate(
    parts: &mut Parts,
    keys: &Arc<KeyTable>,
    region: &str,
    now_unix: i64,
) -> Result<Principal, S3Error> {
    // HTTP/2 carries the host in :authority; SigV4 signs it as `host`.
    if !parts.headers.contains_key(http::header::HOST)
        && let Some(authority) = parts.uri.authority()
        && let Ok(value) = HeaderValue::from_str(authority.as_str())
    {
        parts.headers.insert(http::header::HOST, value);
    }
    let request = parse_auth(&parts.method, &parts.uri, &parts.headers)?.ok_or_else(|| {
        S3Error::access_denied("Anonymous access is not allowed; sign requests with a Sluice key.")
    })?;
    check_scope(&request, region)?;
    let entry = match keys.lookup(&request.access_key_id) {
        KeyLookup::Active(entry) => entry,
        KeyLookup::Inactive => {
            return Err(invalid_access_key(
                &request.access_key_id,
                "The access key you provided is inactive.",
            ));
        }
        KeyLookup::Unknown => {
            return Err(invalid_access_key(
                &request.access_key_id,
                "The access key Id you provided does not exist in our records.",
            ));
        }
    };
    check_amz_headers_signed(&request, &parts.headers)?;
    let signing_key = keys.signing_key(&request.access_key_id, &entry, &request.scope);
    let verified = verify(
        &request,
        &parts.method,
        &parts.uri,
        &parts.headers,
        &signing_key,
        now_unix,
        CanonicalSettings::S3,
    )
    .map_err(|e| with_access_key(e, &request.access_key_id))?;
    Ok(Principal {
        tenant: entry.tenant.clone(),
        presigned: matches!(request.kind, AuthKind::Presigned { .. }),
        access_id: request.access_key_id,
        verified,
    })
}

/// The credential scope must name this gateway's region, the `s3` service and the request's date.
fn check_scope(request: &AuthRequest, region: &str) -> Result<(), S3Error> {
    let malformed = |message: String| match request.kind {
        AuthKind::Header => S3Error::from(SigV4Error::MalformedAuthorization(message)),
        AuthKind::Presigned { .. } => S3Error::from(SigV4Error::QueryParams(message)),
    };
    let scope = &request.scope;
    if scope.region != region {
        return Err(malformed(format!(
            "the region '{}' is wrong; expecting '{region}'",
            scope.region
        ))
        .with("Region", region));
    }
    if scope.service != "s3" {
        return Err(malformed(format!(
            "the service '{}' is wrong; expecting 's3'",
            scope.service
        )));
    }
    if scope.date != request.date.date_stamp() {
        return Err(malformed(format!(
            "the credential date '{}' does not match the request date '{}'",
            scope.date,
            request.date.date_stamp()
        )));
    }
    Ok(())
}

/// Every `x-amz-*` header must be covered by the signature, as S3 requires: otherwise anyone on
/// the path could add one (metadata, checksums, copy sources) to a signed request.
fn check_amz_headers_signed(
    request: &AuthRequest,
    headers: &http::HeaderMap,
) -> Result<(), S3Error> {
    let mut unsigned: Vec<&str> = headers
        .keys()
        .map(http::HeaderName::as_str)
        .filter(|name| {
            name.starts_with("x-amz-") && !request.signed_headers.iter().any(|s| s == name)
        })
        .collect();
    if unsigned.is_empty() {
        return Ok(());
    }
    unsigned.sort_unstable();
    unsigned.dedup();
    Err(
        S3Error::access_denied("There were headers present in the request which were not signed")
            .with("HeadersNotSigned", unsigned.join(", ")),
    )
}

fn invalid_access_key(access_id: &str, message: &'static str) -> S3Error {
    S3Error::new(StatusCode::FORBIDDEN, "InvalidAccessKeyId", message)
        .with("AWSAccessKeyId", access_id)
}

fn with_access_key(err: SigV4Error, access_id: &str) -> S3Error {
    let is_sig = matches!(err, SigV4Error::SignatureDoesNotMatch { .. });
    let out = S3Error::from(err);
    if is_sig {
        out.with("AWSAccessKeyId", access_id)
    } else {
        out
    }
}
