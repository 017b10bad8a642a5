//! Targets `sigv4_authorization_header` and `sigv4_presigned_query`: what
//! `sluice_sigv4::parse_auth` accepts must be exactly what the client wrote, in its one spelling.
//!
//! Spec: <https://docs.aws.amazon.com/AmazonS3/latest/API/sigv4-auth-using-authorization-header.html>,
//! <https://docs.aws.amazon.com/AmazonS3/latest/API/sigv4-query-string-auth.html>.

use http::{HeaderMap, HeaderValue, Method, Uri, header};
use rand::Rng;
use rand::rngs::StdRng;
use rand::seq::{IndexedRandom, SliceRandom};
use sluice_sigv4::{
    ALGORITHM, AuthKind, AuthRequest, EMPTY_SHA256, MAX_PRESIGNED_EXPIRES_SECS, PayloadMode,
    parse_auth,
};

use crate::percent;

const HOST: &str = "examplebucket.s3.amazonaws.com";

/// The presigned-URL parameters that may each appear once (in any ASCII case of their name).
const AUTH_PARAMS: [&str; 8] = [
    "X-Amz-Algorithm",
    "X-Amz-Credential",
    "X-Amz-Date",
    "X-Amz-Expires",
    "X-Amz-SignedHeaders",
    "X-Amz-Signature",
    "X-Amz-Content-Sha256",
    "X-Amz-Security-Token",
];

/// Input: `Authorization` value, then optionally `\n` + `x-amz-date`, then optionally `\n` +
/// `x-amz-content-sha256` (an absent line is an absent header).
///
/// When the header is accepted: the parsed parts are the header's own text (signature in
/// lowercase hex, exactly as sent), signed headers are lowercase, strictly sorted and contain
/// `host`, the scope is complete and matches the date, and re-rendering the header from the
/// parsed parts parses to the same request.
pub fn sigv4_authorization_header(data: &[u8]) {
    let mut lines = data.splitn(3, |&b| b == b'\n');
    let auth = lines.next().unwrap_or_default();
    let (date, sha) = (lines.next(), lines.next());
    let mut headers = HeaderMap::new();
    headers.insert(header::HOST, HeaderValue::from_static(HOST));
    for (name, value) in [("x-amz-date", date), ("x-amz-content-sha256", sha)] {
        if let Some(value) = value {
            let Ok(value) = HeaderValue::from_bytes(value) else {
                return;
            };
            headers.insert(name, value);
        }
    }
    let Ok(auth_value) = HeaderValue::from_bytes(auth) else {
        return;
    };
    headers.insert(header::AUTHORIZATION, auth_value);
    let uri = Uri::from_static("/bucket/key");
    let req = match parse_auth(&Method::GET, &uri, &headers) {
        Ok(Some(req)) => req,
        Ok(None) => panic!("a request with an Authorization header is never anonymous"),
        Err(_) => return,
    };
    check_common(&req);
    assert_eq!(req.kind, AuthKind::Header);

    let text = std::str::from_utf8(auth).expect("an accepted Authorization header is ASCII");
    let parts = header_components(text).expect("an accepted header has the three components");
    assert_eq!(
        req.signature.to_hex(),
        parts.signature,
        "Signature= must be exactly the lowercase hex of the parsed signature"
    );
    assert_eq!(
        format!("{}/{}", req.access_key_id, req.scope.as_string()),
        parts.credential
    );
    assert_eq!(req.signed_headers.join(";"), parts.signed_headers);

    let header_text = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    let date_text = header_text("x-amz-date").expect("accepted without a date");
    assert_eq!(req.date.as_str(), date_text.trim());
    match header_text("x-amz-content-sha256") {
        Some(declared) => assert_eq!(
            req.payload.header_value(),
            declared,
            "the payload mode must be the declared text, in its one spelling"
        ),
        None => {
            assert_ne!(req.scope.service, "s3", "S3 requires x-amz-content-sha256");
            assert_eq!(req.payload.header_value(), EMPTY_SHA256);
        }
    }

    let rendered = format!(
        "{ALGORITHM} Credential={}/{}, SignedHeaders={}, Signature={}",
        req.access_key_id,
        req.scope.as_string(),
        req.signed_headers.join(";"),
        req.signature.to_hex()
    );
    headers.insert(
        header::AUTHORIZATION,
        HeaderValue::from_str(&rendered).expect("parsed parts are header-safe"),
    );
    let again = parse_auth(&Method::GET, &uri, &headers)
        .unwrap_or_else(|e| panic!("re-rendered {rendered:?} refused: {e:?}"))
        .expect("not anonymous");
    assert_same(&req, &again);
}

/// Input: a query string (without `?`), then optionally `\n` + an `x-amz-content-sha256` header.
///
/// When the query is accepted as presigned: no auth parameter appears twice (in any case of its
/// name), `X-Amz-Expires` was ASCII digits only with a value of 1..=604800, and every parsed part
/// is the parameter's own (decoded) text, the signature in lowercase hex.
pub fn sigv4_presigned_query(data: &[u8]) {
    let mut lines = data.splitn(2, |&b| b == b'\n');
    let query = lines.next().unwrap_or_default();
    let sha = lines.next();
    let Ok(query) = std::str::from_utf8(query) else {
        return;
    };
    let Ok(uri) = format!("/bucket/key?{query}").parse::<Uri>() else {
        return;
    };
    let mut headers = HeaderMap::new();
    headers.insert(header::HOST, HeaderValue::from_static(HOST));
    if let Some(sha) = sha {
        let Ok(value) = HeaderValue::from_bytes(sha) else {
            return;
        };
        headers.insert("x-amz-content-sha256", value);
    }
    let result = parse_auth(&Method::GET, &uri, &headers);
    let pairs = percent::query_pairs(uri.query().unwrap_or(""));
    let values = |name: &str| -> Vec<String> {
        pairs
            .iter()
            .filter(|(k, _)| k.eq_ignore_ascii_case(name.as_bytes()))
            .map(|(_, v)| String::from_utf8_lossy(v).into_owned())
            .collect()
    };
    let req = match result {
        Ok(Some(req)) => req,
        Ok(None) => {
            for name in ["X-Amz-Algorithm", "X-Amz-Credential", "X-Amz-Signature"] {
                assert!(
                    !pairs.iter().any(|(k, _)| k == name.as_bytes()),
                    "{name} present but the request was taken as anonymous"
                );
            }
            return;
        }
        Err(_) => return,
    };
    for name in AUTH_PARAMS {
        assert!(
            values(name).len() <= 1,
            "{name} appears {} times, yet the presigned request was accepted",
            values(name).len()
        );
    }
    let one = |name: &str| -> String {
        values(name)
            .pop()
            .unwrap_or_else(|| panic!("accepted without {name}"))
    };
    check_common(&req);
    assert_eq!(one("X-Amz-Algorithm"), ALGORITHM);
    let AuthKind::Presigned { expires_secs } = req.kind else {
        panic!("a query-signed request parsed as {:?}", req.kind);
    };
    let expires = one("X-Amz-Expires");
    assert!(
        !expires.is_empty() && expires.bytes().all(|b| b.is_ascii_digit()),
        "X-Amz-Expires={expires:?} accepted: only ASCII digits are a number of seconds"
    );
    assert_eq!(expires.parse::<u128>().ok(), Some(u128::from(expires_secs)));
    assert!((1..=MAX_PRESIGNED_EXPIRES_SECS).contains(&expires_secs));
    assert_eq!(
        req.signature.to_hex(),
        one("X-Amz-Signature"),
        "X-Amz-Signature must be exactly the lowercase hex of the parsed signature"
    );
    assert_eq!(
        format!("{}/{}", req.access_key_id, req.scope.as_string()),
        one("X-Amz-Credential")
    );
    assert_eq!(req.date.as_str(), one("X-Amz-Date"));
    assert_eq!(req.signed_headers.join(";"), one("X-Amz-SignedHeaders"));
    assert!(
        !req.payload.is_chunked(),
        "a presigned URL cannot carry aws-chunked"
    );
    let declared = values("X-Amz-Content-Sha256").pop().or_else(|| {
        headers
            .get("x-amz-content-sha256")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    });
    match declared {
        Some(text) => assert_eq!(req.payload.header_value(), text),
        None if req.scope.service == "s3" => assert_eq!(req.payload, PayloadMode::Unsigned),
        None => assert_eq!(req.payload.header_value(), EMPTY_SHA256),
    }
}

/// Invariants of any accepted request, header or query.
fn check_common(req: &AuthRequest) {
    let token =
        |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit() || b"!#$%&'*+-.^_`|~".contains(&b);
    for name in &req.signed_headers {
        assert!(
            !name.is_empty() && name.bytes().all(token),
            "signed header {name:?} is not a lowercase token"
        );
    }
    assert!(
        req.signed_headers.windows(2).all(|w| w[0] < w[1]),
        "signed headers not strictly sorted: {:?}",
        req.signed_headers
    );
    assert!(req.signed_headers.iter().any(|h| h == "host"));
    let scope = &req.scope;
    for part in [&req.access_key_id, &scope.region, &scope.service] {
        assert!(
            !part.is_empty() && !part.contains('/'),
            "scope part {part:?}"
        );
    }
    assert!(scope.date.len() == 8 && scope.date.bytes().all(|b| b.is_ascii_digit()));
    assert_eq!(scope.date, req.date.date_stamp());
    assert_eq!(req.signature.to_hex().len(), 64);
}

fn assert_same(a: &AuthRequest, b: &AuthRequest) {
    assert_eq!(a.access_key_id, b.access_key_id);
    assert_eq!(a.scope, b.scope);
    assert_eq!(a.signed_headers, b.signed_headers);
    assert!(a.signature.ct_eq(&b.signature));
    assert_eq!(a.date, b.date);
    assert_eq!(a.kind, b.kind);
    assert_eq!(a.payload, b.payload);
}

struct HeaderParts<'a> {
    credential: &'a str,
    signed_headers: &'a str,
    signature: &'a str,
}

/// The three `name=value` components after the scheme, separated by commas with optional
/// spaces, as the AWS documentation writes them.
fn header_components(text: &str) -> Option<HeaderParts<'_>> {
    let rest = text
        .trim_start_matches([' ', '\t'])
        .strip_prefix(ALGORITHM)?;
    let (mut credential, mut signed_headers, mut signature) = (None, None, None);
    for part in rest.split(',') {
        let (name, value) = part.trim_matches([' ', '\t']).split_once('=')?;
        let slot = match name {
            "Credential" => &mut credential,
            "SignedHeaders" => &mut signed_headers,
            "Signature" => &mut signature,
            _ => return None,
        };
        if slot.replace(value).is_some() {
            return None;
        }
    }
    Some(HeaderParts {
        credential: credential?,
        signed_headers: signed_headers?,
        signature: signature?,
    })
}

fn gen_token(rng: &mut StdRng, alphabet: &[u8], len: std::ops::RangeInclusive<usize>) -> String {
    let n = rng.random_range(len);
    (0..n)
        .map(|_| char::from(*alphabet.choose(rng).unwrap()))
        .collect()
}

/// At most one defect per generated request, so that about half the requests are valid and
/// the properties on accepted requests are exercised.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Defect {
    None,
    SignatureUppercase,
    SignatureShort,
    SignatureLong,
    SignatureNotHex,
    BadDate,
    ScopeDateDiffers,
    HeadersUnsorted,
    HeadersRepeated,
    NoHost,
    HeaderUppercase,
    HeaderEmpty,
    EmptyAccessKey,
    EmptyRegion,
    NotS3,
    NoPayload,
    PayloadUppercase,
    ComponentsShuffled,
    ComponentRepeated,
    ExpiresOdd,
    ParamRepeated,
    ParamMissing,
}

const DEFECTS: &[Defect] = &[
    Defect::SignatureUppercase,
    Defect::SignatureShort,
    Defect::SignatureLong,
    Defect::SignatureNotHex,
    Defect::BadDate,
    Defect::ScopeDateDiffers,
    Defect::HeadersUnsorted,
    Defect::HeadersRepeated,
    Defect::NoHost,
    Defect::HeaderUppercase,
    Defect::HeaderEmpty,
    Defect::EmptyAccessKey,
    Defect::EmptyRegion,
    Defect::NotS3,
    Defect::NoPayload,
    Defect::PayloadUppercase,
    Defect::ComponentsShuffled,
    Defect::ComponentRepeated,
    Defect::ExpiresOdd,
    Defect::ParamRepeated,
    Defect::ParamMissing,
];

fn gen_defect(rng: &mut StdRng) -> Defect {
    if rng.random_bool(0.5) {
        Defect::None
    } else {
        *DEFECTS.choose(rng).unwrap()
    }
}

fn gen_hex(rng: &mut StdRng, defect: Defect) -> String {
    let mut hex = gen_token(rng, b"0123456789abcdef", 64..=64);
    match defect {
        Defect::SignatureUppercase => hex = hex.to_ascii_uppercase(),
        Defect::SignatureShort => hex.truncate(rng.random_range(0..64)),
        Defect::SignatureLong => hex.push('0'),
        Defect::SignatureNotHex => hex.replace_range(0..1, "g"),
        _ => {}
    }
    hex
}

struct Parts {
    akid: String,
    date: String,
    scope_date: String,
    region: String,
    service: String,
    signed: String,
    signature: String,
}

fn gen_parts(rng: &mut StdRng, defect: Defect) -> Parts {
    let year = rng.random_range(1990..=2100);
    let month = rng.random_range(1..=12);
    let day = rng.random_range(1..=28);
    let time = format!(
        "T{:02}{:02}{:02}Z",
        rng.random_range(0..24),
        rng.random_range(0..60),
        rng.random_range(0..60)
    );
    let mut date = format!("{year:04}{month:02}{day:02}{time}");
    let mut scope_date = date[..8].to_owned();
    match defect {
        Defect::BadDate => {
            date = ["20130524", "2013-05-24T00:00:00Z", "20130230T000000Z", ""]
                .choose(rng)
                .unwrap()
                .to_string();
            scope_date = date.get(..8).unwrap_or("").to_owned();
        }
        Defect::ScopeDateDiffers => scope_date = "19991231".into(),
        _ => {}
    }
    let mut names: Vec<String> = [
        "content-md5",
        "host",
        "range",
        "x-amz-content-sha256",
        "x-amz-date",
        "x-amz-meta-a",
    ]
    .iter()
    .filter(|n| **n == "host" || rng.random_bool(0.5))
    .map(|n| n.to_string())
    .collect();
    match defect {
        Defect::HeadersUnsorted => names.insert(0, "zz".into()),
        Defect::HeadersRepeated => names.push("x-amz-meta-a".into()),
        Defect::NoHost => names.retain(|n| n != "host"),
        Defect::HeaderUppercase => names[0] = names[0].to_ascii_uppercase(),
        Defect::HeaderEmpty => names.push(String::new()),
        _ => {}
    }
    let service = match defect {
        Defect::NotS3 => "iam",
        _ => "s3",
    };
    Parts {
        akid: if defect == Defect::EmptyAccessKey {
            String::new()
        } else {
            gen_token(rng, b"ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789", 1..=24)
        },
        date,
        scope_date,
        region: if defect == Defect::EmptyRegion {
            ""
        } else {
            *["us-east-1", "eu-west-3", "auto"].choose(rng).unwrap()
        }
        .to_owned(),
        service: service.to_owned(),
        signed: names.join(";"),
        signature: gen_hex(rng, defect),
    }
}

fn gen_payload(rng: &mut StdRng, defect: Defect) -> Option<String> {
    let choices = [
        EMPTY_SHA256,
        "UNSIGNED-PAYLOAD",
        "STREAMING-AWS4-HMAC-SHA256-PAYLOAD",
        "STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER",
        "STREAMING-UNSIGNED-PAYLOAD-TRAILER",
    ];
    match defect {
        Defect::NoPayload => None,
        Defect::PayloadUppercase => Some(
            [
                "E3B0C44298FC1C149AFBF4C8996FB92427AE41E4649B934CA495991B7852B855",
                "unsigned-payload",
            ]
            .choose(rng)
            .unwrap()
            .to_string(),
        ),
        _ => Some(choices.choose(rng).unwrap().to_string()),
    }
}

/// A mostly valid `Authorization` header with its date and payload lines, varied in the ways
/// clients and attackers vary them: spacing, component order, case, repeats.
pub fn gen_authorization_header(rng: &mut StdRng) -> Vec<u8> {
    let defect = gen_defect(rng);
    let p = gen_parts(rng, defect);
    let credential = format!(
        "{}/{}/{}/{}/aws4_request",
        p.akid, p.scope_date, p.region, p.service
    );
    let mut components = vec![
        format!("Credential={credential}"),
        format!("SignedHeaders={}", p.signed),
        format!("Signature={}", p.signature),
    ];
    if defect == Defect::ComponentsShuffled {
        components.shuffle(rng);
    }
    if defect == Defect::ComponentRepeated {
        let extra = components.choose(rng).unwrap().clone();
        components.push(extra);
    }
    let sep = [", ", ",", " , ", ",  "].choose(rng).unwrap();
    let lead = [" ", " ", "  ", "\t"].choose(rng).unwrap();
    let mut out = format!("{ALGORITHM}{lead}{}", components.join(sep));
    out.push('\n');
    out.push_str(&p.date);
    if let Some(payload) = gen_payload(rng, defect) {
        out.push('\n');
        out.push_str(&payload);
    }
    out.into_bytes()
}

/// A mostly valid presigned query, with parameters percent-encoded in varied ways, sometimes
/// repeated (also in another case), and `X-Amz-Expires` in valid and invalid spellings.
pub fn gen_presigned_query(rng: &mut StdRng) -> Vec<u8> {
    let defect = gen_defect(rng);
    let p = gen_parts(rng, defect);
    let credential = format!(
        "{}/{}/{}/{}/aws4_request",
        p.akid, p.scope_date, p.region, p.service
    );
    let expires = if defect == Defect::ExpiresOdd {
        [
            "604801",
            "0",
            "+5",
            " 5",
            "5 ",
            "-1",
            "1e3",
            "",
            "99999999999999999999999",
            "３",
        ]
        .choose(rng)
        .unwrap()
    } else {
        ["86400", "1", "604800", "05"].choose(rng).unwrap()
    }
    .to_string();
    let mut params: Vec<(String, String)> = vec![
        ("X-Amz-Algorithm".into(), ALGORITHM.into()),
        ("X-Amz-Credential".into(), credential),
        ("X-Amz-Date".into(), p.date),
        ("X-Amz-Expires".into(), expires),
        ("X-Amz-SignedHeaders".into(), p.signed),
        ("X-Amz-Signature".into(), p.signature),
    ];
    if rng.random_ratio(1, 4) {
        let payload = gen_payload(rng, defect).unwrap_or_default();
        params.push(("X-Amz-Content-Sha256".into(), payload));
    }
    if rng.random_ratio(1, 4) {
        params.push(("X-Amz-Security-Token".into(), "token/with+chars=".into()));
    }
    if rng.random_ratio(1, 3) {
        params.push(("versionId".into(), "null".into()));
    }
    if defect == Defect::ParamRepeated {
        let (name, value) = params.choose(rng).unwrap().clone();
        let name = match rng.random_range(0..3) {
            0 => name.to_ascii_lowercase(),
            1 => name.to_ascii_uppercase(),
            _ => name,
        };
        params.push((name, value));
    }
    if defect == Defect::ParamMissing {
        params.remove(rng.random_range(0..params.len()));
    }
    params.shuffle(rng);
    let encode = |rng: &mut StdRng, s: &str| -> String {
        match rng.random_range(0..4) {
            0 => s.to_owned(),
            1 => lowercase_escapes(&percent::aws_encode(s.as_bytes(), true)),
            _ => percent::aws_encode(s.as_bytes(), true),
        }
    };
    let query: Vec<String> = params
        .iter()
        .map(|(k, v)| format!("{}={}", encode(rng, k), encode(rng, v)))
        .collect();
    let mut out = query.join("&");
    if rng.random_ratio(1, 6) {
        out.push('\n');
        out.push_str(&gen_payload(rng, defect).unwrap_or_default());
    }
    out.into_bytes()
}

/// `%2F` → `%2f`: the other spelling of the same escape.
fn lowercase_escapes(encoded: &str) -> String {
    let mut out = String::with_capacity(encoded.len());
    let mut escape_left = 0;
    for c in encoded.chars() {
        if c == '%' {
            escape_left = 2;
            out.push(c);
        } else if escape_left > 0 {
            escape_left -= 1;
            out.push(c.to_ascii_lowercase());
        } else {
            out.push(c);
        }
    }
    out
}
