//! Target `sigv4_canonical`: `uri_encode`, `canonical_uri` and `canonical_query` against a
//! reference written from AWS's rules (crate::percent), plus idempotence where it holds.
//!
//! Spec: <https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_sigv-create-signed-request.html#create-canonical-request>.

use rand::Rng;
use rand::rngs::StdRng;
use rand::seq::IndexedRandom;
use sluice_sigv4::canonical::{CanonicalSettings, canonical_query, canonical_uri, uri_encode};

use crate::percent;

/// Input: any bytes, used as raw bytes for `uri_encode` and (lossily as UTF-8) as a wire path
/// and a wire query.
///
/// Properties: `uri_encode` equals the reference for both slash modes and decodes back to its
/// input; the S3 canonical URI is each `/` segment decoded and re-encoded (slash encoded),
/// and is a fixed point; the canonical query is the decoded, re-encoded pairs sorted by name
/// then value, without `X-Amz-Signature` when asked, and is a fixed point; the generic
/// (non-S3) canonical URI has no empty, `.` or `..` segment.
pub fn sigv4_canonical(data: &[u8]) {
    for encode_slash in [false, true] {
        let encoded = uri_encode(data, encode_slash);
        assert_eq!(encoded, percent::aws_encode(data, encode_slash));
        assert_eq!(
            percent::decode(&encoded),
            data,
            "uri_encode must be reversible"
        );
    }

    let text = String::from_utf8_lossy(data);
    let s3 = canonical_uri(&text, CanonicalSettings::S3);
    assert_eq!(s3, reference_s3_uri(&text), "canonical_uri(S3) of {text:?}");
    assert_eq!(
        canonical_uri(&s3, CanonicalSettings::S3),
        s3,
        "not idempotent"
    );

    let generic = canonical_uri(&text, CanonicalSettings::GENERIC);
    let once = String::from_utf8(percent::decode(&generic)).expect("decoded from UTF-8 text");
    assert!(once.starts_with('/'), "{generic:?}");
    let segments: Vec<&str> = once[1..].split('/').collect();
    let last = segments.len() - 1;
    for (i, segment) in segments.iter().enumerate() {
        let empty_ok = i == last || once == "/";
        assert!(
            !matches!(*segment, "." | "..") && (empty_ok || !segment.is_empty()),
            "generic canonical URI {generic:?} of {text:?} is not normalised"
        );
    }

    for exclude_signature in [false, true] {
        let query = canonical_query(Some(&text), exclude_signature);
        assert_eq!(
            query,
            reference_query(&text, exclude_signature),
            "canonical_query({text:?}, {exclude_signature})"
        );
        assert_eq!(
            canonical_query(Some(&query), exclude_signature),
            query,
            "not idempotent"
        );
    }
    assert_eq!(canonical_query(None, false), "");
}

/// S3 encodes the path once: each segment as received is decoded, then encoded with `/`
/// encoded (an encoded slash stays inside its segment). An empty path is `/`.
fn reference_s3_uri(path: &str) -> String {
    if path.is_empty() {
        return "/".into();
    }
    path.split('/')
        .map(|segment| percent::aws_encode(&percent::decode(segment), true))
        .collect::<Vec<_>>()
        .join("/")
}

/// Pairs split at the first `=`, decoded, re-encoded (slash too), sorted by encoded name then
/// encoded value (byte order), joined with `&`.
fn reference_query(query: &str, exclude_signature: bool) -> String {
    let mut pairs: Vec<(String, String)> = percent::query_pairs(query)
        .into_iter()
        .filter(|(name, _)| !(exclude_signature && name == b"X-Amz-Signature"))
        .map(|(n, v)| (percent::aws_encode(&n, true), percent::aws_encode(&v, true)))
        .collect();
    pairs.sort();
    pairs
        .iter()
        .map(|(n, v)| format!("{n}={v}"))
        .collect::<Vec<_>>()
        .join("&")
}

/// Paths and queries made of the pieces that matter: escapes in both cases, invalid escapes,
/// reserved characters, dot segments, repeated slashes, UTF-8 and the signature parameter.
pub fn gen_canonical(rng: &mut StdRng) -> Vec<u8> {
    const PIECES: &[&str] = &[
        "/",
        "//",
        "a",
        "Z",
        "~",
        "%7e",
        "%7E",
        "%2F",
        "%2f",
        "%",
        "%4",
        "%zz",
        "%25",
        ".",
        "..",
        "/./",
        "/../",
        "=",
        "&",
        "&&",
        "+",
        " ",
        "%20",
        "ሴ",
        "%E1%88%B4",
        "X-Amz-Signature",
        "X-Amz-Signature=abc",
        "x-amz-signature",
        "a=b=c",
        "*",
        "$",
        "?",
        "#",
        "\0",
        "\u{7f}",
    ];
    let n = rng.random_range(0..12);
    let mut out = String::new();
    for _ in 0..n {
        out.push_str(PIECES.choose(rng).unwrap());
    }
    out.into_bytes()
}
