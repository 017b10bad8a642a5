//! The client side: signing a request ([`sign_request`]) or producing a presigned URL
//! ([`presign_url`]) with the same canonicalisation the verifier uses. For tests and the upstream
//! S3 client.
//!
//! Spec: <https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_sigv-create-signed-request.html>,
//! <https://docs.aws.amazon.com/AmazonS3/latest/API/sigv4-query-string-auth.html>

use http::{HeaderMap, HeaderName, HeaderValue, Method, Uri, header};

use crate::auth::{CredentialScope, PayloadMode};
use crate::canonical::{
    CanonicalSettings, canonical_headers, canonical_query, canonical_request, canonical_uri,
    string_to_sign, uri_encode,
};
use crate::error::SigV4Error;
use crate::secret::{SecretKey, Signature, SigningKey};
use crate::time::AmzDate;
use crate::{ALGORITHM, MAX_PRESIGNED_EXPIRES_SECS};

/// Headers never signed: hop-by-hop headers and ones that proxies or HTTP stacks rewrite.
const UNSIGNED_HEADERS: &[&str] = &[
    "authorization",
    "connection",
    "expect",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "user-agent",
    "x-amzn-trace-id",
];

/// Who signs, for which scope, when.
#[derive(Clone, Copy, Debug)]
pub struct SigningParams<'a> {
    pub access_key_id: &'a str,
    pub secret: &'a SecretKey,
    /// An STS session token, sent (and signed) as `x-amz-security-token`.
    pub session_token: Option<&'a str>,
    pub region: &'a str,
    pub service: &'a str,
    pub date: &'a AmzDate,
    pub settings: CanonicalSettings,
}

impl SigningParams<'_> {
    pub fn scope(&self) -> CredentialScope {
        CredentialScope {
            date: self.date.date_stamp(),
            region: self.region.to_owned(),
            service: self.service.to_owned(),
        }
    }

    pub fn signing_key(&self) -> SigningKey {
        SigningKey::derive(
            self.secret,
            &self.date.date_stamp(),
            self.region,
            self.service,
        )
    }
}

/// Signs a request in place: sets `host` (from the URI if absent), `x-amz-date`,
/// `x-amz-content-sha256` (always: S3 requires it), `x-amz-security-token` if any, and
/// `Authorization`, signing every header present except hop-by-hop ones, `user-agent` and
/// `x-amzn-trace-id`.
///
/// Returns the signature, which seeds the chain for a streaming body
/// ([`crate::ChunkSignatureChain::new`]).
pub fn sign_request(
    method: &Method,
    uri: &Uri,
    headers: &mut HeaderMap,
    payload: &PayloadMode,
    params: &SigningParams<'_>,
) -> Result<Signature, SigV4Error> {
    sign_request_with_key(method, uri, headers, payload, params, &params.signing_key())
}

/// [`sign_request`] with the signing key already derived (it changes once a day per secret,
/// region and service: a client signing many requests derives it once).
pub fn sign_request_with_key(
    method: &Method,
    uri: &Uri,
    headers: &mut HeaderMap,
    payload: &PayloadMode,
    params: &SigningParams<'_>,
    key: &SigningKey,
) -> Result<Signature, SigV4Error> {
    headers.remove(header::AUTHORIZATION);
    ensure_host(uri, headers)?;
    insert(headers, "x-amz-date", params.date.as_str())?;
    insert(headers, "x-amz-content-sha256", &payload.header_value())?;
    if let Some(token) = params.session_token {
        insert(headers, "x-amz-security-token", token)?;
    }

    let signed = signable_header_names(headers);
    let scope = params.scope();
    let canonical = canonical_request(
        method.as_str(),
        &canonical_uri(uri.path(), params.settings),
        &canonical_query(uri.query(), false),
        &canonical_headers(headers, &signed)?,
        &signed.join(";"),
        &payload.header_value(),
    );
    let signature =
        key.sign(string_to_sign(params.date, &scope.as_string(), &canonical).as_bytes());
    let authorization = format!(
        "{ALGORITHM} Credential={}/{}, SignedHeaders={}, Signature={}",
        params.access_key_id,
        scope.as_string(),
        signed.join(";"),
        signature.to_hex()
    );
    insert(headers, header::AUTHORIZATION.as_str(), &authorization)?;
    Ok(signature)
}

/// A presigned URL valid for `expires_secs` (1..=604800): the URI with `X-Amz-*` parameters
/// appended, absolute if `uri` is. Signs `host` (from `headers` or the URI) and every other
/// signable header in `headers`, which the eventual requester must then send unchanged.
///
/// `payload` ends the canonical request: [`PayloadMode::Unsigned`] for S3. Anything else must
/// reach the verifier some other way (an `x-amz-content-sha256` header).
pub fn presign_url(
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
    expires_secs: u64,
    payload: &PayloadMode,
    params: &SigningParams<'_>,
) -> Result<String, SigV4Error> {
    if !(1..=MAX_PRESIGNED_EXPIRES_SECS).contains(&expires_secs) {
        return Err(SigV4Error::QueryParams(
            "X-Amz-Expires must be a number of seconds from 1 to 604800".into(),
        ));
    }
    let mut headers = headers.clone();
    ensure_host(uri, &mut headers)?;
    let signed = signable_header_names(&headers);
    let scope = params.scope();

    let mut query = uri.query().unwrap_or("").to_owned();
    append_param(&mut query, "X-Amz-Algorithm", ALGORITHM);
    append_param(
        &mut query,
        "X-Amz-Credential",
        &format!("{}/{}", params.access_key_id, scope.as_string()),
    );
    append_param(&mut query, "X-Amz-Date", params.date.as_str());
    append_param(&mut query, "X-Amz-Expires", &expires_secs.to_string());
    append_param(&mut query, "X-Amz-SignedHeaders", &signed.join(";"));
    if let Some(token) = params.session_token {
        append_param(&mut query, "X-Amz-Security-Token", token);
    }

    let canonical = canonical_request(
        method.as_str(),
        &canonical_uri(uri.path(), params.settings),
        &canonical_query(Some(&query), false),
        &canonical_headers(&headers, &signed)?,
        &signed.join(";"),
        &payload.header_value(),
    );
    let signature = params
        .signing_key()
        .sign(string_to_sign(params.date, &scope.as_string(), &canonical).as_bytes());
    append_param(&mut query, "X-Amz-Signature", &signature.to_hex());

    let path = if uri.path().is_empty() {
        "/"
    } else {
        uri.path()
    };
    Ok(match (uri.scheme_str(), uri.authority()) {
        (Some(scheme), Some(authority)) => format!("{scheme}://{authority}{path}?{query}"),
        _ => format!("{path}?{query}"),
    })
}

fn append_param(query: &mut String, name: &str, value: &str) {
    if !query.is_empty() {
        query.push('&');
    }
    query.push_str(name);
    query.push('=');
    query.push_str(&uri_encode(value.as_bytes(), true));
}

fn ensure_host(uri: &Uri, headers: &mut HeaderMap) -> Result<(), SigV4Error> {
    if headers.contains_key(header::HOST) {
        return Ok(());
    }
    let authority = uri
        .authority()
        .ok_or_else(|| SigV4Error::Signing("no Host header and no authority in the URI".into()))?;
    // Userinfo never travels in Host.
    let host = authority.as_str().rsplit('@').next().unwrap_or_default();
    insert(headers, header::HOST.as_str(), host)
}

fn insert(headers: &mut HeaderMap, name: &str, value: &str) -> Result<(), SigV4Error> {
    let value = HeaderValue::from_str(value)
        .map_err(|_| SigV4Error::Signing(format!("{name} value is not a valid header value")))?;
    let name = HeaderName::from_bytes(name.as_bytes())
        .map_err(|_| SigV4Error::Signing(format!("{name} is not a valid header name")))?;
    headers.insert(name, value);
    Ok(())
}

/// Sorted, de-duplicated lowercase names (`HeaderName` is always lowercase).
fn signable_header_names(headers: &HeaderMap) -> Vec<String> {
    let mut names: Vec<String> = headers
        .keys()
        .map(HeaderName::as_str)
        .filter(|name| !UNSIGNED_HEADERS.contains(name))
        .map(str::to_owned)
        .collect();
    names.sort_unstable();
    names.dedup();
    names
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::{AuthKind, parse_auth};
    use crate::verify::verify;

    fn params<'a>(secret: &'a SecretKey, date: &'a AmzDate) -> SigningParams<'a> {
        SigningParams {
            access_key_id: "AKIDEXAMPLE",
            secret,
            session_token: None,
            region: "eu-west-1",
            service: "s3",
            date,
            settings: CanonicalSettings::S3,
        }
    }

    #[test]
    fn signed_requests_verify_and_skip_unsignable_headers() {
        let secret = SecretKey::new("secret".into());
        let date = AmzDate::from_unix(1_700_000_000);
        let p = params(&secret, &date);
        let uri: Uri = "https://bucket.example.com:9000/a%20b/c+d?list-type=2&prefix=x/y"
            .parse()
            .unwrap();
        let mut headers = HeaderMap::new();
        headers.insert("user-agent", HeaderValue::from_static("test/1.0"));
        headers.insert("content-type", HeaderValue::from_static("text/plain"));
        sign_request(&Method::PUT, &uri, &mut headers, &PayloadMode::Unsigned, &p).unwrap();
        assert_eq!(headers["host"], "bucket.example.com:9000");
        let auth = headers["authorization"].to_str().unwrap();
        assert!(
            auth.contains("SignedHeaders=content-type;host;x-amz-content-sha256;x-amz-date,"),
            "{auth}"
        );

        let req = parse_auth(&Method::PUT, &uri, &headers).unwrap().unwrap();
        let key = p.signing_key();
        let now = date.unix_seconds();
        verify(
            &req,
            &Method::PUT,
            &uri,
            &headers,
            &key,
            now,
            CanonicalSettings::S3,
        )
        .unwrap();
        // The user agent is not signed, so a proxy may rewrite it.
        headers.insert("user-agent", HeaderValue::from_static("other"));
        verify(
            &req,
            &Method::PUT,
            &uri,
            &headers,
            &key,
            now,
            CanonicalSettings::S3,
        )
        .unwrap();
    }

    #[test]
    fn presigned_urls_verify() {
        let secret = SecretKey::new("secret".into());
        let date = AmzDate::from_unix(1_700_000_000);
        let mut p = params(&secret, &date);
        p.session_token = Some("token/with+chars=");
        let uri: Uri = "http://localhost:8080/bucket/key?versionId=3"
            .parse()
            .unwrap();
        let url = presign_url(
            &Method::GET,
            &uri,
            &HeaderMap::new(),
            60,
            &PayloadMode::Unsigned,
            &p,
        )
        .unwrap();
        assert!(url.starts_with("http://localhost:8080/bucket/key?versionId=3&X-Amz-Algorithm="));
        assert!(url.contains("X-Amz-Security-Token=token%2Fwith%2Bchars%3D"));

        let signed_uri: Uri = url.parse().unwrap();
        let mut headers = HeaderMap::new();
        headers.insert("host", HeaderValue::from_static("localhost:8080"));
        let req = parse_auth(&Method::GET, &signed_uri, &headers)
            .unwrap()
            .unwrap();
        assert_eq!(req.kind, AuthKind::Presigned { expires_secs: 60 });
        let now = date.unix_seconds() + 59;
        let key = p.signing_key();
        verify(
            &req,
            &Method::GET,
            &signed_uri,
            &headers,
            &key,
            now,
            CanonicalSettings::S3,
        )
        .unwrap();

        assert!(
            presign_url(
                &Method::GET,
                &uri,
                &HeaderMap::new(),
                0,
                &PayloadMode::Unsigned,
                &p
            )
            .is_err()
        );
        let relative: Uri = "/k".parse().unwrap();
        assert!(matches!(
            presign_url(
                &Method::GET,
                &relative,
                &HeaderMap::new(),
                60,
                &PayloadMode::Unsigned,
                &p
            ),
            Err(SigV4Error::Signing(_))
        ));
    }
}
