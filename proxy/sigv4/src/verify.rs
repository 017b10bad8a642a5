//! Signature verification: the only way to obtain a [`Verified`] principal.
//!
//! Spec: <https://docs.aws.amazon.com/AmazonS3/latest/API/sig-v4-authenticating-requests.html>
//! (time windows: <https://docs.aws.amazon.com/AmazonS3/latest/API/sigv4-query-string-auth.html>).

use http::{HeaderMap, Method, Uri};

use crate::MAX_CLOCK_SKEW_SECS;
use crate::auth::{AuthKind, AuthRequest, CredentialScope, PayloadMode};
use crate::canonical::{
    CanonicalSettings, canonical_headers, canonical_query, canonical_request, canonical_uri,
    string_to_sign,
};
use crate::chunked::ChunkSignatureChain;
use crate::error::SigV4Error;
use crate::secret::{Signature, SigningKey};
use crate::time::AmzDate;

/// A request whose signature and time window have been checked.
///
/// Later phases take this as proof of authentication; only [`verify`] can build one, so skipping
/// the check does not compile. The body is *not* covered yet: for [`PayloadMode::Signed`] the
/// caller hashes the body, for the streaming modes it feeds [`Verified::chunk_verifier`].
#[derive(Clone, Debug)]
pub struct Verified {
    pub access_key_id: String,
    pub scope: CredentialScope,
    pub date: AmzDate,
    pub payload: PayloadMode,
    seed_signature: Signature,
    signing_key: SigningKey,
}

impl Verified {
    /// The request signature, which seeds the chunk-signature chain.
    pub fn seed_signature(&self) -> &Signature {
        &self.seed_signature
    }

    /// The key the request was verified with.
    pub fn signing_key(&self) -> &SigningKey {
        &self.signing_key
    }

    /// The chain that verifies chunk (and trailer) signatures; `Some` only for the two signed
    /// streaming modes.
    pub fn chunk_verifier(&self) -> Option<ChunkSignatureChain> {
        match self.payload {
            PayloadMode::StreamingSigned | PayloadMode::StreamingSignedTrailer => {
                Some(ChunkSignatureChain::new(
                    self.signing_key.clone(),
                    &self.date,
                    &self.scope,
                    self.seed_signature.clone(),
                ))
            }
            _ => None,
        }
    }
}

/// Checks `req` (from [`crate::parse_auth`] on the same request) against the request itself.
///
/// `key` must be derived from the secret of `req.access_key_id` for exactly `req.scope`; checking
/// that the scope's region and service are ones this server answers for is the caller's job.
/// `now_unix` is the server clock. On a wrong signature the error carries the string to sign and
/// canonical request (what S3 echoes back), never the expected signature.
pub fn verify(
    req: &AuthRequest,
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
    key: &SigningKey,
    now_unix: i64,
    settings: CanonicalSettings,
) -> Result<Verified, SigV4Error> {
    check_time_window(req, now_unix)?;

    let presigned = matches!(req.kind, AuthKind::Presigned { .. });
    let canonical = canonical_request(
        method.as_str(),
        &canonical_uri(uri.path(), settings),
        &canonical_query(uri.query(), presigned),
        &canonical_headers(headers, &req.signed_headers)?,
        &req.signed_headers.join(";"),
        &req.payload.header_value(),
    );
    let to_sign = string_to_sign(&req.date, &req.scope.as_string(), &canonical);
    if !key.sign(to_sign.as_bytes()).ct_eq(&req.signature) {
        return Err(SigV4Error::SignatureDoesNotMatch {
            string_to_sign: to_sign,
            canonical_request: canonical,
        });
    }

    Ok(Verified {
        access_key_id: req.access_key_id.clone(),
        scope: req.scope.clone(),
        date: req.date.clone(),
        payload: req.payload,
        seed_signature: req.signature.clone(),
        signing_key: key.clone(),
    })
}

/// Header form: within ±15 minutes of the server clock. Presigned: not more than 15 minutes in the
/// future (clock skew) and strictly before `date + expires`.
fn check_time_window(req: &AuthRequest, now_unix: i64) -> Result<(), SigV4Error> {
    let date = req.date.unix_seconds();
    match req.kind {
        AuthKind::Header => {
            if now_unix.abs_diff(date) > MAX_CLOCK_SKEW_SECS.unsigned_abs() {
                return Err(SigV4Error::RequestTimeTooSkewed);
            }
        }
        AuthKind::Presigned { expires_secs } => {
            if date.saturating_sub(now_unix) > MAX_CLOCK_SKEW_SECS {
                return Err(SigV4Error::RequestTimeTooSkewed);
            }
            let expires_at = date.saturating_add(i64::try_from(expires_secs).unwrap_or(i64::MAX));
            if now_unix >= expires_at {
                return Err(SigV4Error::Expired);
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::parse_auth;
    use crate::secret::SecretKey;
    use http::HeaderValue;

    fn key() -> SigningKey {
        let secret = SecretKey::new("wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY".to_owned());
        SigningKey::derive(&secret, "20130524", "us-east-1", "s3")
    }

    /// S3's documented "GET Object" example.
    fn get_object() -> (Uri, HeaderMap) {
        let mut h = HeaderMap::new();
        h.insert(
            "host",
            HeaderValue::from_static("examplebucket.s3.amazonaws.com"),
        );
        h.insert("range", HeaderValue::from_static("bytes=0-9"));
        h.insert(
            "x-amz-content-sha256",
            HeaderValue::from_static(crate::EMPTY_SHA256),
        );
        h.insert("x-amz-date", HeaderValue::from_static("20130524T000000Z"));
        h.insert("authorization", HeaderValue::from_static(
            "AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/s3/aws4_request,SignedHeaders=host;range;x-amz-content-sha256;x-amz-date,Signature=f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41",
        ));
        ("/test.txt".parse().unwrap(), h)
    }

    fn run(uri: &Uri, h: &HeaderMap, now: i64) -> Result<Verified, SigV4Error> {
        let req = parse_auth(&Method::GET, uri, h).unwrap().unwrap();
        verify(
            &req,
            &Method::GET,
            uri,
            h,
            &key(),
            now,
            CanonicalSettings::S3,
        )
    }

    const T0: i64 = 1_369_353_600; // 20130524T000000Z

    #[test]
    fn header_time_window_edges() {
        let (uri, h) = get_object();
        assert!(run(&uri, &h, T0).is_ok());
        assert!(run(&uri, &h, T0 + 900).is_ok());
        assert!(run(&uri, &h, T0 - 900).is_ok());
        assert!(matches!(
            run(&uri, &h, T0 + 901),
            Err(SigV4Error::RequestTimeTooSkewed)
        ));
        assert!(matches!(
            run(&uri, &h, T0 - 901),
            Err(SigV4Error::RequestTimeTooSkewed)
        ));
        assert!(matches!(
            run(&uri, &h, i64::MIN),
            Err(SigV4Error::RequestTimeTooSkewed)
        ));
    }

    #[test]
    fn verified_carries_the_request() {
        let (uri, h) = get_object();
        let v = run(&uri, &h, T0).unwrap();
        assert_eq!(v.access_key_id, "AKIAIOSFODNN7EXAMPLE");
        assert_eq!(
            v.seed_signature().to_hex(),
            "f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41"
        );
        assert!(v.chunk_verifier().is_none());
        assert!(format!("{v:?}").contains("SigningKey(<redacted>)"));
    }

    #[test]
    fn mismatch_reports_what_s3_echoes_and_no_expected_signature() {
        let (uri, mut h) = get_object();
        h.insert("range", HeaderValue::from_static("bytes=0-10"));
        let err = run(&uri, &h, T0).unwrap_err();
        let SigV4Error::SignatureDoesNotMatch {
            string_to_sign,
            canonical_request,
        } = &err
        else {
            panic!("{err:?}");
        };
        assert!(canonical_request.contains("range:bytes=0-10\n"));
        assert!(string_to_sign.starts_with("AWS4-HMAC-SHA256\n20130524T000000Z\n"));
        let expected = key().sign(string_to_sign.as_bytes()).to_hex();
        assert!(!format!("{err:?}").contains(&expected));
        assert!(!err.to_string().contains(&expected));
    }

    #[test]
    fn missing_signed_header_is_reported() {
        let (uri, mut h) = get_object();
        h.remove("range");
        assert!(matches!(
            run(&uri, &h, T0),
            Err(SigV4Error::MissingSignedHeader(name)) if name == "range"
        ));
    }

    #[test]
    fn presigned_time_window() {
        let uri: Uri = "/test.txt?X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=AKIAIOSFODNN7EXAMPLE%2F20130524%2Fus-east-1%2Fs3%2Faws4_request&X-Amz-Date=20130524T000000Z&X-Amz-Expires=86400&X-Amz-SignedHeaders=host&X-Amz-Signature=aeeed9bbccd4d02ee5c0109b86d86835f995330da4c265957d157751f604d404".parse().unwrap();
        let mut h = HeaderMap::new();
        h.insert(
            "host",
            HeaderValue::from_static("examplebucket.s3.amazonaws.com"),
        );
        assert!(run(&uri, &h, T0).is_ok());
        assert!(run(&uri, &h, T0 + 86_399).is_ok());
        assert!(run(&uri, &h, T0 - 900).is_ok());
        assert!(matches!(
            run(&uri, &h, T0 + 86_400),
            Err(SigV4Error::Expired)
        ));
        assert!(matches!(
            run(&uri, &h, T0 - 901),
            Err(SigV4Error::RequestTimeTooSkewed)
        ));
    }
}
