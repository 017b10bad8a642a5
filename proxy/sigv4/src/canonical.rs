//! Canonicalisation: URI encoding, the canonical URI, query and headers, the canonical request
//! and the string to sign.
//!
//! Spec: <https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_sigv-create-signed-request.html#create-canonical-request>
//! and, for S3's single encoding of the path,
//! <https://docs.aws.amazon.com/AmazonS3/latest/API/sig-v4-header-based-auth.html>.

use std::fmt::Write as _;

use http::HeaderMap;
use percent_encoding::percent_decode_str;

use crate::error::SigV4Error;
use crate::secret::sha256;
use crate::time::AmzDate;

/// How the path enters the canonical request. The difference between S3 and every other service.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct CanonicalSettings {
    /// Remove `.`/`..` segments and collapse empty segments (RFC 3986 §5.2.4 plus `//` → `/`).
    pub normalize_path: bool,
    /// Percent-encode the path as received (already encoded once on the wire), i.e. twice.
    pub double_encode_path: bool,
}

impl CanonicalSettings {
    /// S3: the path exactly as sent, each segment encoded once (an object key may contain `..`
    /// or `//`, so nothing is normalised).
    pub const S3: Self = Self {
        normalize_path: false,
        double_encode_path: false,
    };
    /// Every other AWS service, as in the AWS SigV4 test suite.
    pub const GENERIC: Self = Self {
        normalize_path: true,
        double_encode_path: true,
    };
}

/// AWS `UriEncode`: `A-Za-z0-9-_.~` are kept, every other byte becomes `%XX` (uppercase); `/` is
/// kept unless `encode_slash`.
pub fn uri_encode(s: &[u8], encode_slash: bool) -> String {
    let mut out = String::with_capacity(s.len());
    push_uri_encoded(&mut out, s, encode_slash);
    out
}

fn push_uri_encoded(out: &mut String, s: &[u8], encode_slash: bool) {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    for &b in s {
        if b.is_ascii_alphanumeric()
            || matches!(b, b'-' | b'_' | b'.' | b'~')
            || (b == b'/' && !encode_slash)
        {
            out.push(char::from(b));
        } else {
            out.push('%');
            out.push(char::from(HEX[usize::from(b >> 4)]));
            out.push(char::from(HEX[usize::from(b & 0xf)]));
        }
    }
}

/// The canonical URI for `raw_path`, the path as it arrived on the wire (still percent-encoded).
///
/// With single encoding (S3) each `/`-separated segment is percent-decoded and re-encoded, so
/// `%7e`, `~` and `%7E` all canonicalise to `~`, and an encoded slash stays `%2F` inside its
/// segment. With double encoding the wire path itself is encoded again, as other services expect.
pub fn canonical_uri(raw_path: &str, settings: CanonicalSettings) -> String {
    let path = if raw_path.is_empty() { "/" } else { raw_path };
    let normalized;
    let path = if settings.normalize_path {
        normalized = remove_dot_segments(path);
        normalized.as_str()
    } else {
        path
    };
    if settings.double_encode_path {
        return uri_encode(path.as_bytes(), false);
    }
    let mut out = String::with_capacity(path.len());
    for (i, segment) in path.split('/').enumerate() {
        if i > 0 {
            out.push('/');
        }
        let decoded: Vec<u8> = percent_decode_str(segment).collect();
        push_uri_encoded(&mut out, &decoded, true);
    }
    out
}

/// RFC 3986 dot-segment removal, with empty segments dropped as AWS does (`//a//` → `/a/`).
fn remove_dot_segments(path: &str) -> String {
    let mut kept: Vec<&str> = Vec::new();
    for segment in path.split('/') {
        match segment {
            "" | "." => {}
            ".." => {
                kept.pop();
            }
            s => kept.push(s),
        }
    }
    let mut out = String::with_capacity(path.len());
    out.push('/');
    out.push_str(&kept.join("/"));
    let ends_in_directory = path.ends_with('/') || path.ends_with("/.") || path.ends_with("/..");
    if !kept.is_empty() && ends_in_directory {
        out.push('/');
    }
    out
}

/// The canonical query string for `raw_query` as it arrived on the wire (without the `?`).
///
/// Each `&`-separated pair is split at its first `=` (no `=` means an empty value), both halves
/// percent-decoded (`+` is a literal plus, not a space) and re-encoded with `/` encoded, then the
/// pairs are sorted by encoded name, then encoded value. `exclude_signature` drops
/// `X-Amz-Signature`, which a presigned URL cannot sign.
pub fn canonical_query(raw_query: Option<&str>, exclude_signature: bool) -> String {
    let Some(query) = raw_query else {
        return String::new();
    };
    let mut pairs: Vec<(String, String)> = query
        .split('&')
        .filter(|pair| !pair.is_empty())
        .filter_map(|pair| {
            let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
            let name: Vec<u8> = percent_decode_str(name).collect();
            if exclude_signature && name == b"X-Amz-Signature" {
                return None;
            }
            let value: Vec<u8> = percent_decode_str(value).collect();
            Some((uri_encode(&name, true), uri_encode(&value, true)))
        })
        .collect();
    pairs.sort_unstable();
    let mut out = String::with_capacity(query.len() + 16);
    for (i, (name, value)) in pairs.iter().enumerate() {
        if i > 0 {
            out.push('&');
        }
        out.push_str(name);
        out.push('=');
        out.push_str(value);
    }
    out
}

/// The canonical headers block: `name:value\n` for each name in `signed` (lowercase, already
/// sorted, as in `SignedHeaders`).
///
/// Values are trimmed and runs of spaces collapsed to one; repeated headers are joined with `,` in
/// the order received. `host` is read like any other header: for HTTP/2 the caller passes
/// `:authority` as `Host`. Non-UTF-8 bytes are replaced (the client cannot have signed them
/// meaningfully, so the signature check will fail rather than this function).
pub fn canonical_headers(headers: &HeaderMap, signed: &[String]) -> Result<String, SigV4Error> {
    let mut out = String::with_capacity(signed.len() * 32);
    for name in signed {
        let mut values = headers.get_all(name.as_str()).iter().peekable();
        if values.peek().is_none() {
            return Err(SigV4Error::MissingSignedHeader(name.clone()));
        }
        out.push_str(name);
        out.push(':');
        for (i, value) in values.enumerate() {
            if i > 0 {
                out.push(',');
            }
            push_trimmed_value(&mut out, &String::from_utf8_lossy(value.as_bytes()));
        }
        out.push('\n');
    }
    Ok(out)
}

fn push_trimmed_value(out: &mut String, value: &str) {
    let mut previous_space = false;
    for c in value.trim_matches([' ', '\t']).chars() {
        if c == ' ' {
            if !previous_space {
                out.push(' ');
            }
            previous_space = true;
        } else {
            out.push(c);
            previous_space = false;
        }
    }
}

/// Joins the six parts of the canonical request. `canonical_headers` already ends with `\n`.
pub fn canonical_request(
    method: &str,
    canonical_uri: &str,
    canonical_query: &str,
    canonical_headers: &str,
    signed_headers: &str,
    payload_hash: &str,
) -> String {
    format!(
        "{method}\n{canonical_uri}\n{canonical_query}\n{canonical_headers}\n{signed_headers}\n{payload_hash}"
    )
}

/// `AWS4-HMAC-SHA256\n{date}\n{scope}\n{hex(sha256(canonical_request))}`.
pub fn string_to_sign(date: &AmzDate, scope: &str, canonical_request: &str) -> String {
    let mut out = String::with_capacity(160);
    let _ = write!(
        out,
        "{}\n{date}\n{scope}\n{}",
        crate::ALGORITHM,
        hex::encode(sha256(canonical_request.as_bytes()))
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    #[test]
    fn uri_encode_rules() {
        assert_eq!(
            uri_encode(b"AZaz09-_.~", true),
            "AZaz09-_.~",
            "unreserved characters are kept"
        );
        assert_eq!(uri_encode(b"a b+c*d", true), "a%20b%2Bc%2Ad");
        assert_eq!(uri_encode(b"a/b", true), "a%2Fb");
        assert_eq!(uri_encode(b"a/b", false), "a/b");
        assert_eq!(uri_encode("ሴ".as_bytes(), true), "%E1%88%B4");
        assert_eq!(uri_encode(b"%=&!$'()", true), "%25%3D%26%21%24%27%28%29");
        assert_eq!(uri_encode(&[0x00, 0xff], true), "%00%FF");
    }

    #[test]
    fn canonical_uri_s3_is_single_encoded_and_unnormalised() {
        let s3 = CanonicalSettings::S3;
        assert_eq!(canonical_uri("", s3), "/");
        assert_eq!(canonical_uri("/test$file.text", s3), "/test%24file.text");
        assert_eq!(canonical_uri("/test%24file.text", s3), "/test%24file.text");
        assert_eq!(canonical_uri("/a%7eb/%7E~", s3), "/a~b/~~");
        assert_eq!(
            canonical_uri("/a%2fb", s3),
            "/a%2Fb",
            "encoded slash stays in its segment"
        );
        assert_eq!(canonical_uri("/a//b/../c/./", s3), "/a//b/../c/./");
        assert_eq!(canonical_uri("/photos/a+b%20c", s3), "/photos/a%2Bb%20c");
        assert_eq!(canonical_uri("/ሴ", s3), "/%E1%88%B4");
    }

    #[test]
    fn canonical_uri_generic_normalises_and_double_encodes() {
        let g = CanonicalSettings::GENERIC;
        assert_eq!(canonical_uri("/example/..", g), "/");
        assert_eq!(canonical_uri("//example//", g), "/example/");
        assert_eq!(canonical_uri("/./example", g), "/example");
        assert_eq!(canonical_uri("/a/b/..", g), "/a/");
        assert_eq!(canonical_uri("/a%20b", g), "/a%2520b");
    }

    #[test]
    fn canonical_query_rules() {
        assert_eq!(canonical_query(None, false), "");
        assert_eq!(canonical_query(Some(""), false), "");
        // `+` is a literal plus, not a space.
        assert_eq!(canonical_query(Some("a=1+2"), false), "a=1%2B2");
        assert_eq!(canonical_query(Some("a=1%202"), false), "a=1%202");
        // Empty values, with and without `=`.
        assert_eq!(canonical_query(Some("acl"), false), "acl=");
        assert_eq!(canonical_query(Some("acl="), false), "acl=");
        // Sorted by name then value, repeated keys kept.
        assert_eq!(canonical_query(Some("b=2&a=2&a=1"), false), "a=1&a=2&b=2");
        assert_eq!(
            canonical_query(Some("Param2=value2&Param1=value1"), false),
            "Param1=value1&Param2=value2"
        );
        // Unicode, raw or encoded (lowercase hex canonicalises to uppercase).
        assert_eq!(canonical_query(Some("ሴ=bar"), false), "%E1%88%B4=bar");
        assert_eq!(
            canonical_query(Some("%e1%88%b4=bar"), false),
            "%E1%88%B4=bar"
        );
        assert_eq!(canonical_query(Some("k=a/b"), false), "k=a%2Fb");
        assert_eq!(canonical_query(Some("a=1&&b=2"), false), "a=1&b=2");
        // Only `=` splits once: the value may contain `=`.
        assert_eq!(canonical_query(Some("a=b=c"), false), "a=b%3Dc");
        assert_eq!(
            canonical_query(Some("X-Amz-Signature=abc&X-Amz-Date=1"), true),
            "X-Amz-Date=1"
        );
        assert_eq!(
            canonical_query(Some("X-Amz-Signature=abc"), false),
            "X-Amz-Signature=abc"
        );
    }

    #[test]
    fn canonical_headers_trim_collapse_and_join() {
        let mut headers = HeaderMap::new();
        headers.insert("host", HeaderValue::from_static("example.com"));
        headers.append("my-header1", HeaderValue::from_static("  a   b  c "));
        headers.append("my-header1", HeaderValue::from_static("\tz"));
        headers.insert("x-quoted", HeaderValue::from_static("\"a   b   c\""));
        headers.insert("x-empty", HeaderValue::from_static(""));
        let signed: Vec<String> = ["host", "my-header1", "x-empty", "x-quoted"]
            .map(String::from)
            .to_vec();
        assert_eq!(
            canonical_headers(&headers, &signed).unwrap(),
            "host:example.com\nmy-header1:a b c,z\nx-empty:\nx-quoted:\"a b c\"\n"
        );
        let missing = vec!["host".to_owned(), "range".to_owned()];
        assert!(matches!(
            canonical_headers(&headers, &missing),
            Err(SigV4Error::MissingSignedHeader(h)) if h == "range"
        ));
    }

    #[test]
    fn string_to_sign_shape() {
        let date = AmzDate::parse("20150830T123600Z").unwrap();
        let sts = string_to_sign(&date, "20150830/us-east-1/service/aws4_request", "");
        assert_eq!(
            sts,
            format!(
                "AWS4-HMAC-SHA256\n20150830T123600Z\n20150830/us-east-1/service/aws4_request\n{}",
                crate::EMPTY_SHA256
            )
        );
    }
}
