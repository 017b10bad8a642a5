//! Parsing what the client claims: the `Authorization` header or the presigned `X-Amz-*` query
//! parameters, into an [`AuthRequest`]. Nothing here checks a signature; see [`crate::verify()`].
//!
//! Specs: <https://docs.aws.amazon.com/AmazonS3/latest/API/sigv4-auth-using-authorization-header.html>,
//! <https://docs.aws.amazon.com/AmazonS3/latest/API/sigv4-query-string-auth.html>,
//! <https://docs.aws.amazon.com/AmazonS3/latest/API/sig-v4-header-based-auth.html> (payload modes).

use http::{HeaderMap, Method, Uri, header};
use percent_encoding::percent_decode_str;

use crate::error::SigV4Error;
use crate::secret::Signature;
use crate::time::AmzDate;
use crate::{
    ALGORITHM, EMPTY_SHA256_DIGEST, MAX_PRESIGNED_EXPIRES_SECS, STREAMING_SIGNED,
    STREAMING_SIGNED_TRAILER, STREAMING_UNSIGNED_TRAILER, UNSIGNED_PAYLOAD,
};

/// `date/region/service/aws4_request`, the part of `Credential` after the access key id.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct CredentialScope {
    /// `YYYYMMDD`.
    pub date: String,
    pub region: String,
    pub service: String,
}

impl CredentialScope {
    /// `date/region/service/aws4_request`, as it appears in the string to sign.
    pub fn as_string(&self) -> String {
        format!(
            "{}/{}/{}/aws4_request",
            self.date, self.region, self.service
        )
    }
}

/// Where the signature came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AuthKind {
    /// The `Authorization` header.
    Header,
    /// Query parameters of a presigned URL, valid for `expires_secs` after `X-Amz-Date`.
    Presigned { expires_secs: u64 },
}

/// What `x-amz-content-sha256` (or a presigned URL's default) says about the body.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PayloadMode {
    /// The SHA-256 of the whole body: the caller must hash the body and compare before committing.
    Signed([u8; 32]),
    /// `UNSIGNED-PAYLOAD`: the body is not covered by the signature.
    Unsigned,
    /// `STREAMING-AWS4-HMAC-SHA256-PAYLOAD`: aws-chunked, every chunk signed.
    StreamingSigned,
    /// `STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER`: as above plus signed trailing headers.
    StreamingSignedTrailer,
    /// `STREAMING-UNSIGNED-PAYLOAD-TRAILER`: aws-chunked without signatures, trailing headers.
    StreamingUnsignedTrailer,
}

impl PayloadMode {
    /// Parses an `x-amz-content-sha256` value. Hex must be lowercase: the value is signed
    /// verbatim, so accepting other spellings would make [`Self::header_value`] lie.
    pub fn parse(value: &str) -> Result<PayloadMode, SigV4Error> {
        Ok(match value {
            UNSIGNED_PAYLOAD => Self::Unsigned,
            STREAMING_SIGNED => Self::StreamingSigned,
            STREAMING_SIGNED_TRAILER => Self::StreamingSignedTrailer,
            STREAMING_UNSIGNED_TRAILER => Self::StreamingUnsignedTrailer,
            hex_text => {
                let lowercase_hex = hex_text.len() == 64
                    && hex_text
                        .bytes()
                        .all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
                let mut hash = [0u8; 32];
                if !lowercase_hex || hex::decode_to_slice(hex_text, &mut hash).is_err() {
                    return Err(SigV4Error::InvalidContentSha256);
                }
                Self::Signed(hash)
            }
        })
    }

    /// The literal that ends the canonical request.
    pub fn header_value(&self) -> String {
        match self {
            Self::Signed(hash) => hex::encode(hash),
            Self::Unsigned => UNSIGNED_PAYLOAD.to_owned(),
            Self::StreamingSigned => STREAMING_SIGNED.to_owned(),
            Self::StreamingSignedTrailer => STREAMING_SIGNED_TRAILER.to_owned(),
            Self::StreamingUnsignedTrailer => STREAMING_UNSIGNED_TRAILER.to_owned(),
        }
    }

    /// The body is aws-chunked and must go through [`crate::ChunkedDecoder`].
    pub fn is_chunked(&self) -> bool {
        matches!(
            self,
            Self::StreamingSigned | Self::StreamingSignedTrailer | Self::StreamingUnsignedTrailer
        )
    }

    /// The aws-chunked body ends with trailing headers.
    pub fn has_trailer(&self) -> bool {
        matches!(
            self,
            Self::StreamingSignedTrailer | Self::StreamingUnsignedTrailer
        )
    }
}

/// The client's claimed identity and signature, not yet verified.
#[derive(Clone, Debug)]
pub struct AuthRequest {
    pub access_key_id: String,
    pub scope: CredentialScope,
    /// Lowercase, strictly sorted, always containing `host`.
    pub signed_headers: Vec<String>,
    pub signature: Signature,
    pub date: AmzDate,
    pub kind: AuthKind,
    /// Services other than S3 never send their payload hash; for them this defaults to the hash of
    /// an empty body and a caller that accepts bodies must hash the body and set it.
    pub payload: PayloadMode,
}

/// Extracts SigV4 credentials from a request.
///
/// `Ok(None)` means anonymous: no `Authorization` header and no `X-Amz-Algorithm` parameter.
/// `_method` is accepted for symmetry with [`crate::verify()`]; parsing does not depend on it.
pub fn parse_auth(
    _method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
) -> Result<Option<AuthRequest>, SigV4Error> {
    if let Some(name) = repeated_header(headers, &SINGLE_AUTH_HEADERS) {
        return Err(SigV4Error::RepeatedHeader(name));
    }
    let params = decoded_query_pairs(uri.query());
    let has = |name: &str| params.iter().any(|(k, _)| k.eq_ignore_ascii_case(name));
    let any_auth_param = PRESIGNED_AUTH_PARAMS.iter().any(|name| has(name));
    let presign_signature = PRESIGNED_AUTH_PARAMS[..4].iter().any(|name| has(name));
    match (headers.get(header::AUTHORIZATION), any_auth_param) {
        (Some(_), true) => Err(SigV4Error::BothAuthMethods),
        (Some(value), false) => {
            let value = value.to_str().map_err(|_| {
                SigV4Error::MalformedAuthorization("the header is not ASCII".into())
            })?;
            parse_header_auth(value, headers).map(Some)
        }
        (None, _) if has("X-Amz-Algorithm") => parse_query_auth(&params, headers).map(Some),
        (None, _) if has("AWSAccessKeyId") && has("Signature") => {
            Err(SigV4Error::UnsupportedAlgorithm)
        }
        (None, _) if presign_signature => {
            Err(SigV4Error::QueryParams("X-Amz-Algorithm is missing".into()))
        }
        (None, _) => Ok(None),
    }
}

/// The first of `names` that `headers` holds more than once. Free when no header at all is
/// repeated (`len` counts values, `keys_len` names), as in nearly every request.
pub fn repeated_header<'a>(headers: &HeaderMap, names: &[&'a str]) -> Option<&'a str> {
    if headers.len() == headers.keys_len() {
        return None;
    }
    names
        .iter()
        .copied()
        .find(|name| headers.get_all(*name).iter().nth(1).is_some())
}

/// Headers whose one value decides how a request is authenticated. Two copies are refused: a
/// proxy in front of Sluice, or a log, might believe the other one.
const SINGLE_AUTH_HEADERS: [&str; 5] = [
    "authorization",
    "x-amz-date",
    "date",
    "x-amz-content-sha256",
    "x-amz-security-token",
];

/// The query parameters of a presigned URL; the first four mark a request as presigned. None
/// may accompany an `Authorization` header.
const PRESIGNED_AUTH_PARAMS: [&str; 8] = [
    "X-Amz-Algorithm",
    "X-Amz-Credential",
    "X-Amz-Signature",
    "X-Amz-SignedHeaders",
    "X-Amz-Date",
    "X-Amz-Expires",
    "X-Amz-Content-Sha256",
    "X-Amz-Security-Token",
];

fn parse_header_auth(value: &str, headers: &HeaderMap) -> Result<AuthRequest, SigV4Error> {
    let malformed = |reason: &str| SigV4Error::MalformedAuthorization(reason.to_owned());
    let (scheme, params) = match value.trim_start().split_once(' ') {
        Some((scheme, params)) => (scheme, params),
        None if value.trim() == ALGORITHM => return Err(malformed("missing Credential")),
        None => return Err(SigV4Error::UnsupportedAlgorithm),
    };
    if scheme != ALGORITHM {
        return Err(SigV4Error::UnsupportedAlgorithm);
    }

    let (mut credential, mut signed, mut signature) = (None, None, None);
    for part in params.split(',') {
        let (name, value) = part
            .trim()
            .split_once('=')
            .ok_or_else(|| malformed("expected Credential=, SignedHeaders= and Signature="))?;
        let slot = match name {
            "Credential" => &mut credential,
            "SignedHeaders" => &mut signed,
            "Signature" => &mut signature,
            _ => return Err(malformed(&format!("unknown component {name:?}"))),
        };
        if slot.replace(value).is_some() {
            return Err(malformed(&format!("{name} appears twice")));
        }
    }
    let credential = credential.ok_or_else(|| malformed("missing Credential"))?;
    let signed = signed.ok_or_else(|| malformed("missing SignedHeaders"))?;
    let signature = signature.ok_or_else(|| malformed("missing Signature"))?;

    let (access_key_id, scope) = parse_credential(credential).map_err(|e| malformed(&e))?;
    let signed_headers = parse_signed_headers(signed).map_err(|e| malformed(&e))?;
    let signature = Signature::from_hex(signature)
        .ok_or_else(|| malformed("Signature must be 64 hexadecimal characters"))?;
    let date = header_date(headers)?;
    check_scope_date(&scope, &date).map_err(|e| malformed(&e))?;

    let payload = match header_str(headers, "x-amz-content-sha256") {
        Some(value) => PayloadMode::parse(value)?,
        None if scope.service == "s3" => return Err(SigV4Error::MissingContentSha256),
        None => PayloadMode::Signed(EMPTY_SHA256_DIGEST),
    };

    Ok(AuthRequest {
        access_key_id,
        scope,
        signed_headers,
        signature,
        date,
        kind: AuthKind::Header,
        payload,
    })
}

fn parse_query_auth(
    params: &[(String, String)],
    headers: &HeaderMap,
) -> Result<AuthRequest, SigV4Error> {
    let bad = |reason: &str| SigV4Error::QueryParams(reason.to_owned());
    // Each auth parameter at most once, in any spelling of its name: `x-amz-signature` beside
    // `X-Amz-Signature` is a second signature that something else might read.
    for name in PRESIGNED_AUTH_PARAMS {
        let mut spellings = params.iter().filter(|(k, _)| k.eq_ignore_ascii_case(name));
        match (spellings.next(), spellings.next()) {
            (_, Some(_)) => return Err(bad(&format!("{name} appears twice"))),
            (Some((k, _)), None) if k != name => {
                return Err(bad(&format!("{k} must be spelled {name}")));
            }
            _ => {}
        }
    }
    // One source per value: a parameter and a header both saying it would be two values.
    for (param, header_name) in [
        ("X-Amz-Content-Sha256", "x-amz-content-sha256"),
        ("X-Amz-Security-Token", "x-amz-security-token"),
        ("X-Amz-Date", "x-amz-date"),
    ] {
        if headers.contains_key(header_name) && params.iter().any(|(k, _)| k == param) {
            return Err(bad(&format!(
                "{param} is given both as a parameter and as the {header_name} header"
            )));
        }
    }
    let get = |name: &str| -> Result<&str, SigV4Error> {
        params
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
            .ok_or_else(|| bad(&format!("{name} is missing")))
    };

    if get("X-Amz-Algorithm")? != ALGORITHM {
        return Err(SigV4Error::UnsupportedAlgorithm);
    }
    let (access_key_id, scope) = parse_credential(get("X-Amz-Credential")?).map_err(|e| bad(&e))?;
    let date = AmzDate::parse(get("X-Amz-Date")?).ok_or_else(|| {
        bad("X-Amz-Date must be in the ISO8601 Long Format \"yyyyMMdd'T'HHmmss'Z'\"")
    })?;
    check_scope_date(&scope, &date).map_err(|e| bad(&e))?;
    let expires = get("X-Amz-Expires")?;
    let expires_secs = Some(expires)
        .filter(|text| !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()))
        .and_then(|text| text.parse::<u64>().ok())
        .filter(|secs| (1..=MAX_PRESIGNED_EXPIRES_SECS).contains(secs))
        .ok_or_else(|| bad("X-Amz-Expires must be a number of seconds from 1 to 604800"))?;
    let signed_headers = parse_signed_headers(get("X-Amz-SignedHeaders")?).map_err(|e| bad(&e))?;
    let signature = Signature::from_hex(get("X-Amz-Signature")?)
        .ok_or_else(|| bad("X-Amz-Signature must be 64 hexadecimal characters"))?;

    let declared = match get("X-Amz-Content-Sha256") {
        Ok(value) => Some(value),
        Err(_) => header_str(headers, "x-amz-content-sha256"),
    };
    let payload = match declared {
        Some(value) => PayloadMode::parse(value)?,
        // A presigned URL is made before the body exists, so S3 treats it as unsigned.
        None if scope.service == "s3" => PayloadMode::Unsigned,
        None => PayloadMode::Signed(EMPTY_SHA256_DIGEST),
    };
    if payload.is_chunked() {
        return Err(bad("a presigned URL cannot carry an aws-chunked payload"));
    }

    Ok(AuthRequest {
        access_key_id,
        scope,
        signed_headers,
        signature,
        date,
        kind: AuthKind::Presigned { expires_secs },
        payload,
    })
}

/// `AKID/YYYYMMDD/region/service/aws4_request`.
fn parse_credential(credential: &str) -> Result<(String, CredentialScope), String> {
    let parts: Vec<&str> = credential.split('/').collect();
    let [akid, date, region, service, terminator] = parts[..] else {
        return Err(format!(
            "the Credential {credential:?} is not of the form AKID/YYYYMMDD/region/service/aws4_request"
        ));
    };
    if akid.is_empty() || region.is_empty() || service.is_empty() {
        return Err("the Credential has an empty component".into());
    }
    if date.len() != 8 || !date.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!("the Credential date {date:?} is not YYYYMMDD"));
    }
    if terminator != "aws4_request" {
        return Err(format!(
            "the Credential terminator is {terminator:?}, expected \"aws4_request\""
        ));
    }
    let scope = CredentialScope {
        date: date.to_owned(),
        region: region.to_owned(),
        service: service.to_owned(),
    };
    Ok((akid.to_owned(), scope))
}

/// `host;x-amz-date;...`: lowercase tokens, strictly ascending (sorted, no repeats), with `host`.
fn parse_signed_headers(list: &str) -> Result<Vec<String>, String> {
    let names: Vec<String> = list.split(';').map(str::to_owned).collect();
    let is_token_char =
        |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit() || b"!#$%&'*+-.^_`|~".contains(&b);
    if let Some(bad) = names
        .iter()
        .find(|n| n.is_empty() || !n.bytes().all(is_token_char))
    {
        return Err(format!(
            "SignedHeaders contains {bad:?}; names must be non-empty and lowercase"
        ));
    }
    if names.windows(2).any(|w| w[0] >= w[1]) {
        return Err("SignedHeaders must be sorted and free of duplicates".into());
    }
    if !names.iter().any(|n| n == "host") {
        return Err("SignedHeaders must include host".into());
    }
    Ok(names)
}

/// `x-amz-date`, else an RFC 1123 `Date`; either present but invalid is as bad as absent.
fn header_date(headers: &HeaderMap) -> Result<AmzDate, SigV4Error> {
    let date = match header_str(headers, "x-amz-date") {
        Some(value) => AmzDate::parse(value.trim()),
        None => header_str(headers, "date").and_then(AmzDate::parse_rfc1123),
    };
    date.ok_or(SigV4Error::MissingDate)
}

fn check_scope_date(scope: &CredentialScope, date: &AmzDate) -> Result<(), String> {
    if scope.date == date.date_stamp() {
        Ok(())
    } else {
        Err(format!(
            "invalid credential date {:?}: it must be the date of {date}",
            scope.date
        ))
    }
}

fn header_str<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

/// Query pairs percent-decoded (`+` stays `+`), for reading the `X-Amz-*` parameters.
fn decoded_query_pairs(query: Option<&str>) -> Vec<(String, String)> {
    let decode = |s: &str| percent_decode_str(s).decode_utf8_lossy().into_owned();
    query
        .unwrap_or("")
        .split('&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| {
            let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
            (decode(name), decode(value))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::EMPTY_SHA256;
    use http::HeaderValue;

    const AUTH: &str = "AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/s3/aws4_request, SignedHeaders=host;range;x-amz-content-sha256;x-amz-date, Signature=f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41";

    fn s3_headers(authorization: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(
            "host",
            HeaderValue::from_static("examplebucket.s3.amazonaws.com"),
        );
        h.insert("range", HeaderValue::from_static("bytes=0-9"));
        h.insert(
            "x-amz-content-sha256",
            HeaderValue::from_static(EMPTY_SHA256),
        );
        h.insert("x-amz-date", HeaderValue::from_static("20130524T000000Z"));
        h.insert(
            header::AUTHORIZATION,
            HeaderValue::from_str(authorization).unwrap(),
        );
        h
    }

    fn parse(uri: &str, headers: &HeaderMap) -> Result<Option<AuthRequest>, SigV4Error> {
        parse_auth(&Method::GET, &uri.parse().unwrap(), headers)
    }

    #[test]
    fn parses_header_form() {
        let req = parse("/test.txt", &s3_headers(AUTH)).unwrap().unwrap();
        assert_eq!(req.access_key_id, "AKIAIOSFODNN7EXAMPLE");
        assert_eq!(req.scope.as_string(), "20130524/us-east-1/s3/aws4_request");
        assert_eq!(
            req.signed_headers,
            ["host", "range", "x-amz-content-sha256", "x-amz-date"]
        );
        assert_eq!(req.date.as_str(), "20130524T000000Z");
        assert_eq!(req.kind, AuthKind::Header);
        assert_eq!(req.payload.header_value(), EMPTY_SHA256);
    }

    #[test]
    fn tolerates_missing_spaces_after_commas() {
        let compact = AUTH.replace(", ", ",");
        assert!(parse("/", &s3_headers(&compact)).unwrap().is_some());
        let roomy = AUTH.replace(", ", " ,  ");
        assert!(parse("/", &s3_headers(&roomy)).unwrap().is_some());
    }

    #[test]
    fn anonymous_is_none() {
        let mut h = s3_headers(AUTH);
        h.remove(header::AUTHORIZATION);
        assert!(parse("/bucket/key?versionId=1", &h).unwrap().is_none());
    }

    #[test]
    fn malformed_header_variants() {
        let cases = [
            "AWS4-HMAC-SHA256",
            "AWS4-HMAC-SHA256 ",
            "AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/s3/aws4_request",
            "AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/s3/aws4_request, SignedHeaders=host",
            "AWS4-HMAC-SHA256 Credential=AKID/20130524/us-east-1/s3, SignedHeaders=host, Signature=f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41",
            "AWS4-HMAC-SHA256 Credential=AKID/20130524/us-east-1/s3/aws5_request, SignedHeaders=host, Signature=f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41",
            "AWS4-HMAC-SHA256 Credential=AKID/2013052/us-east-1/s3/aws4_request, SignedHeaders=host, Signature=f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41",
            "AWS4-HMAC-SHA256 Credential=AKID/20130525/us-east-1/s3/aws4_request, SignedHeaders=host, Signature=f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41",
            "AWS4-HMAC-SHA256 Credential=AKID/20130524/us-east-1/s3/aws4_request, SignedHeaders=host, Signature=f0e8",
            "AWS4-HMAC-SHA256 Credential=AKID/20130524/us-east-1/s3/aws4_request, SignedHeaders=host, Signature=f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41, Extra=1",
            "AWS4-HMAC-SHA256 Credential=AKID/20130524/us-east-1/s3/aws4_request, Credential=AKID/20130524/us-east-1/s3/aws4_request, SignedHeaders=host, Signature=f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41",
            "AWS4-HMAC-SHA256 Credential=AKID/20130524/us-east-1/s3/aws4_request SignedHeaders=host Signature=f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41",
        ];
        for auth in cases {
            let err = parse("/", &s3_headers(auth)).unwrap_err();
            assert!(
                matches!(err, SigV4Error::MalformedAuthorization(_)),
                "{auth:?} gave {err:?}"
            );
        }
    }

    #[test]
    fn signed_headers_rules() {
        let with =
            |signed: &str| AUTH.replace("host;range;x-amz-content-sha256;x-amz-date", signed);
        for signed in [
            "range;host;x-amz-content-sha256;x-amz-date",
            "host;host;x-amz-date",
            "range;x-amz-content-sha256;x-amz-date",
            "Host;range",
            "host;;range",
            "",
        ] {
            let err = parse("/", &s3_headers(&with(signed))).unwrap_err();
            assert!(
                matches!(err, SigV4Error::MalformedAuthorization(_)),
                "{signed:?} gave {err:?}"
            );
        }
    }

    #[test]
    fn other_schemes_are_unsupported() {
        for auth in [
            "AWS AKIAIOSFODNN7EXAMPLE:frJIUN8DYpKDtOLCwo//yllqDzg=",
            "AWS4-ECDSA-P256-SHA256 Credential=AKID/20130524/s3/aws4_request, SignedHeaders=host, Signature=00",
            "Bearer token",
            "AWS4-HMAC-SHA256,Credential=x",
        ] {
            let err = parse("/", &s3_headers(auth)).unwrap_err();
            assert!(
                matches!(err, SigV4Error::UnsupportedAlgorithm),
                "{auth:?} gave {err:?}"
            );
        }
        let v2_query =
            "/k?AWSAccessKeyId=AKID&Expires=1141889120&Signature=vjbyPxybdZaNmGa%2ByT272YEAiv4%3D";
        let mut h = s3_headers(AUTH);
        h.remove(header::AUTHORIZATION);
        assert!(matches!(
            parse(v2_query, &h),
            Err(SigV4Error::UnsupportedAlgorithm)
        ));
    }

    #[test]
    fn date_and_content_sha256_requirements() {
        let mut h = s3_headers(AUTH);
        h.remove("x-amz-content-sha256");
        assert!(matches!(
            parse("/", &h),
            Err(SigV4Error::MissingContentSha256)
        ));

        let mut h = s3_headers(AUTH);
        h.insert("x-amz-content-sha256", HeaderValue::from_static("abc"));
        assert!(matches!(
            parse("/", &h),
            Err(SigV4Error::InvalidContentSha256)
        ));
        h.insert(
            "x-amz-content-sha256",
            HeaderValue::from_static(
                "E3B0C44298FC1C149AFBF4C8996FB92427AE41E4649B934CA495991B7852B855",
            ),
        );
        assert!(matches!(
            parse("/", &h),
            Err(SigV4Error::InvalidContentSha256)
        ));

        let mut h = s3_headers(AUTH);
        h.remove("x-amz-date");
        assert!(matches!(parse("/", &h), Err(SigV4Error::MissingDate)));
        h.insert("x-amz-date", HeaderValue::from_static("2013-05-24"));
        assert!(matches!(parse("/", &h), Err(SigV4Error::MissingDate)));
        h.remove("x-amz-date");
        h.insert(
            "date",
            HeaderValue::from_static("Fri, 24 May 2013 00:00:00 GMT"),
        );
        let req = parse("/", &h).unwrap().unwrap();
        assert_eq!(req.date.as_str(), "20130524T000000Z");
    }

    #[test]
    fn payload_modes() {
        for (text, mode) in [
            (UNSIGNED_PAYLOAD, PayloadMode::Unsigned),
            (STREAMING_SIGNED, PayloadMode::StreamingSigned),
            (
                STREAMING_SIGNED_TRAILER,
                PayloadMode::StreamingSignedTrailer,
            ),
            (
                STREAMING_UNSIGNED_TRAILER,
                PayloadMode::StreamingUnsignedTrailer,
            ),
        ] {
            assert_eq!(PayloadMode::parse(text).unwrap(), mode);
            assert_eq!(mode.header_value(), text);
        }
        assert!(PayloadMode::StreamingSignedTrailer.has_trailer());
        assert!(!PayloadMode::StreamingSigned.has_trailer());
        assert!(PayloadMode::StreamingSigned.is_chunked());
        assert!(!PayloadMode::Unsigned.is_chunked());
        assert!(matches!(
            PayloadMode::parse("STREAMING-AWS4-HMAC-SHA256-EVENTS"),
            Err(SigV4Error::InvalidContentSha256)
        ));
    }

    const PRESIGNED: &str = "/test.txt?X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=AKIAIOSFODNN7EXAMPLE%2F20130524%2Fus-east-1%2Fs3%2Faws4_request&X-Amz-Date=20130524T000000Z&X-Amz-Expires=86400&X-Amz-SignedHeaders=host&X-Amz-Signature=aeeed9bbccd4d02ee5c0109b86d86835f995330da4c265957d157751f604d404";

    fn host_only() -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(
            "host",
            HeaderValue::from_static("examplebucket.s3.amazonaws.com"),
        );
        h
    }

    #[test]
    fn parses_query_form() {
        let req = parse(PRESIGNED, &host_only()).unwrap().unwrap();
        assert_eq!(req.access_key_id, "AKIAIOSFODNN7EXAMPLE");
        assert_eq!(req.scope.region, "us-east-1");
        assert_eq!(
            req.kind,
            AuthKind::Presigned {
                expires_secs: 86400
            }
        );
        assert_eq!(req.payload, PayloadMode::Unsigned);
        assert_eq!(req.signed_headers, ["host"]);

        let with_hash = format!("{PRESIGNED}&X-Amz-Content-Sha256={EMPTY_SHA256}");
        let req = parse(&with_hash, &host_only()).unwrap().unwrap();
        assert_eq!(req.payload.header_value(), EMPTY_SHA256);
    }

    #[test]
    fn query_form_errors() {
        let expect_query_error = |uri: &str| {
            let err = parse(uri, &host_only()).unwrap_err();
            assert!(
                matches!(err, SigV4Error::QueryParams(_)),
                "{uri} gave {err:?}"
            );
        };
        expect_query_error(&PRESIGNED.replace("X-Amz-Expires=86400", "X-Amz-Expires=0"));
        expect_query_error(&PRESIGNED.replace("X-Amz-Expires=86400", "X-Amz-Expires=604801"));
        expect_query_error(&PRESIGNED.replace("X-Amz-Expires=86400", "X-Amz-Expires=-1"));
        expect_query_error(&PRESIGNED.replace("&X-Amz-Expires=86400", ""));
        // Exact digits: no sign, no spaces.
        expect_query_error(&PRESIGNED.replace("X-Amz-Expires=86400", "X-Amz-Expires=+86400"));
        expect_query_error(&PRESIGNED.replace("X-Amz-Expires=86400", "X-Amz-Expires=%2B86400"));
        expect_query_error(&PRESIGNED.replace("X-Amz-Expires=86400", "X-Amz-Expires=%2086400"));
        // Lowercase hex only.
        let sig = "aeeed9bbccd4d02ee5c0109b86d86835f995330da4c265957d157751f604d404";
        expect_query_error(&PRESIGNED.replace(sig, &sig.to_ascii_uppercase()));
        // An auth parameter twice, in any spelling.
        expect_query_error(&format!("{PRESIGNED}&X-Amz-Signature={sig}"));
        expect_query_error(&format!("{PRESIGNED}&x-amz-signature={sig}"));
        expect_query_error(&PRESIGNED.replace("X-Amz-Signature=", "x-amz-signature="));
        // A value given both as a parameter and as a header.
        let mut dated = host_only();
        dated.insert("x-amz-date", HeaderValue::from_static("20130524T000000Z"));
        assert!(matches!(
            parse(PRESIGNED, &dated),
            Err(SigV4Error::QueryParams(_))
        ));
        expect_query_error(&PRESIGNED.replace("&X-Amz-Date=20130524T000000Z", ""));
        expect_query_error(&PRESIGNED.replace("20130524T000000Z", "20130524"));
        expect_query_error(
            &PRESIGNED.replace("X-Amz-SignedHeaders=host", "X-Amz-SignedHeaders=range"),
        );
        expect_query_error(&PRESIGNED.replace("&X-Amz-Signature=aeeed9", "&X-Amz-Signature=zz"));
        expect_query_error(&format!("{PRESIGNED}&X-Amz-Date=20130524T000000Z"));
        expect_query_error(&format!(
            "{PRESIGNED}&X-Amz-Content-Sha256={STREAMING_SIGNED}"
        ));
        expect_query_error(&PRESIGNED.replace("X-Amz-Algorithm=AWS4-HMAC-SHA256&", ""));
        let ok_max = PRESIGNED.replace("X-Amz-Expires=86400", "X-Amz-Expires=604800");
        assert!(parse(&ok_max, &host_only()).unwrap().is_some());
        let sigv4a = PRESIGNED.replace("AWS4-HMAC-SHA256", "AWS4-ECDSA-P256-SHA256");
        assert!(matches!(
            parse(&sigv4a, &host_only()),
            Err(SigV4Error::UnsupportedAlgorithm)
        ));
    }

    #[test]
    fn both_forms_is_an_error() {
        assert!(matches!(
            parse(PRESIGNED, &s3_headers(AUTH)),
            Err(SigV4Error::BothAuthMethods)
        ));
        // A header-signed request carrying a presigned URL's signature (without its algorithm).
        let sig = "aeeed9bbccd4d02ee5c0109b86d86835f995330da4c265957d157751f604d404";
        for param in PRESIGNED_AUTH_PARAMS {
            assert!(
                matches!(
                    parse(&format!("/test.txt?{param}={sig}"), &s3_headers(AUTH)),
                    Err(SigV4Error::BothAuthMethods)
                ),
                "{param}"
            );
        }
    }

    #[test]
    fn empty_body_hash_is_sha256_of_nothing() {
        assert_eq!(hex::encode(EMPTY_SHA256_DIGEST), EMPTY_SHA256);
    }

    #[test]
    fn auth_headers_appear_once() {
        for name in SINGLE_AUTH_HEADERS {
            let mut h = s3_headers(AUTH);
            let value = h
                .get(name)
                .cloned()
                .unwrap_or(HeaderValue::from_static("x"));
            h.append(name, value.clone());
            h.append(name, value);
            assert!(
                matches!(parse("/test.txt", &h), Err(SigV4Error::RepeatedHeader(n)) if n == name),
                "{name}"
            );
        }
        let upper = AUTH.replace("Signature=f0e8", "Signature=F0E8");
        assert!(matches!(
            parse("/test.txt", &s3_headers(&upper)),
            Err(SigV4Error::MalformedAuthorization(_))
        ));
    }
}
