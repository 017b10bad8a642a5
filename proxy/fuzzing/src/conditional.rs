//! Target `conditional_headers`: `evaluate` and `evaluate_copy_source` against a reference of
//! RFC 9110's precondition order and entity-tag list matching.
//!
//! Spec: <https://www.rfc-editor.org/rfc/rfc9110#name-preconditions>,
//! <https://www.rfc-editor.org/rfc/rfc9110#name-evaluation-order>.

use http::{HeaderMap, HeaderValue};
use rand::Rng;
use rand::rngs::StdRng;
use rand::seq::IndexedRandom;
use sluice::s3::conditional::{Precondition, evaluate, evaluate_copy_source};
use sluice_storage::ObjectMeta;

const NAMES: [&str; 4] = [
    "if-match",
    "if-none-match",
    "if-modified-since",
    "if-unmodified-since",
];

/// The outcome of one list item against an ETag.
enum Item {
    Matches,
    Differs,
    /// Not `*`, not `[W/]"etag"`, not a bare unquoted tag: S3 leaves these undefined.
    Malformed,
}

fn item(text: &str, etag: &str) -> Item {
    let t = text.trim_matches([' ', '\t']);
    if t == "*" {
        return Item::Matches;
    }
    let opaque = t.strip_prefix("W/").unwrap_or(t);
    let inner = match opaque.strip_prefix('"').and_then(|o| o.strip_suffix('"')) {
        Some(inner) if !inner.contains('"') => inner,
        // S3 also takes an unquoted tag.
        None if !opaque.contains('"') && !opaque.is_empty() && !t.starts_with("W/") => opaque,
        _ => return Item::Malformed,
    };
    if inner == etag {
        Item::Matches
    } else {
        Item::Differs
    }
}

/// Whether a comma-separated entity-tag list matches `etag`; `None` when the answer rests on a
/// malformed item (no well-formed item matches, and some item is malformed).
fn list_matches(list: &str, etag: &str) -> Option<bool> {
    let mut malformed = false;
    for text in list.split(',') {
        match item(text, etag) {
            Item::Matches => return Some(true),
            Item::Differs => {}
            Item::Malformed => malformed = true,
        }
    }
    (!malformed).then_some(false)
}

#[derive(Debug, PartialEq, Eq)]
enum Answer {
    Proceed,
    NotModified,
    Failed,
}

/// RFC 9110 §13.2.2: If-Match (else If-Unmodified-Since), then If-None-Match (else
/// If-Modified-Since). Only values readable as text count (others are treated as absent, as
/// the server's header reader does). `None` when a malformed ETag list decides.
fn reference(headers: &HeaderMap, meta: &ObjectMeta) -> Option<Answer> {
    let text = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    let date = |name: &str| {
        text(name)
            .and_then(|v| httpdate::parse_http_date(v.trim()).ok())
            .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
            .map(|d| d.as_secs() as i64)
    };
    let modified = meta.last_modified_ms.div_euclid(1000);
    if let Some(list) = text("if-match") {
        if !list_matches(list, &meta.etag)? {
            return Some(Answer::Failed);
        }
    } else if date("if-unmodified-since").is_some_and(|since| modified > since) {
        return Some(Answer::Failed);
    }
    if let Some(list) = text("if-none-match") {
        if list_matches(list, &meta.etag)? {
            return Some(Answer::NotModified);
        }
    } else if date("if-modified-since").is_some_and(|since| modified <= since) {
        return Some(Answer::NotModified);
    }
    Some(Answer::Proceed)
}

/// Input: up to six lines: If-Match, If-None-Match, If-Modified-Since, If-Unmodified-Since (a
/// line `-` or a missing line is an absent header), the object's ETag, its last-modified time
/// in milliseconds.
///
/// `evaluate` must answer as the reference does (precondition order, `*`, quoted, weak and
/// unquoted tags in comma lists), and `evaluate_copy_source` must fail exactly when
/// `evaluate` would not proceed.
pub fn conditional_headers(data: &[u8]) {
    let lines: Vec<&[u8]> = data.split(|&b| b == b'\n').collect();
    let line = |i: usize| lines.get(i).copied().filter(|l| *l != b"-");
    let etag = line(4)
        .map(|l| String::from_utf8_lossy(l).into_owned())
        .unwrap_or_else(|| "abc".into());
    let last_modified_ms = line(5)
        .and_then(|l| std::str::from_utf8(l).ok()?.parse().ok())
        .unwrap_or(1_700_000_000_500);
    let meta = ObjectMeta {
        size: 1,
        etag,
        last_modified_ms,
        ..Default::default()
    };
    let mut headers = HeaderMap::new();
    let mut copy_headers = HeaderMap::new();
    for (i, name) in NAMES.iter().enumerate() {
        if let Some(value) = line(i) {
            let Ok(value) = HeaderValue::from_bytes(value) else {
                return;
            };
            headers.insert(*name, value.clone());
            copy_headers.insert(
                format!("x-amz-copy-source-{name}")
                    .as_str()
                    .parse::<http::HeaderName>()
                    .expect("valid name"),
                value,
            );
        }
    }
    let got = match evaluate(&headers, &meta) {
        Ok(Precondition::Proceed) => Answer::Proceed,
        Ok(Precondition::NotModified) => Answer::NotModified,
        Err(e) => {
            assert_eq!(e.code, "PreconditionFailed");
            Answer::Failed
        }
    };
    if let Some(want) = reference(&headers, &meta) {
        assert_eq!(got, want, "evaluate disagrees with the reference");
    }
    match evaluate_copy_source(&copy_headers, &meta) {
        Ok(()) => assert_eq!(got, Answer::Proceed),
        Err(e) => {
            assert_eq!(e.code, "PreconditionFailed");
            assert_ne!(got, Answer::Proceed);
        }
    }
}

/// Condition sets around one object: lists built from its ETag (quoted, weak, bare, `*`, other
/// tags, odd spacing and quoting) and dates one second either side of its last-modified time.
pub fn gen_conditional_headers(rng: &mut StdRng) -> Vec<u8> {
    let etag = [
        "abc",
        "d41d8cd98f00b204e9800998ecf8427e",
        "9b2cf535f27731c974343645a3985328-2",
    ]
    .choose(rng)
    .unwrap()
    .to_string();
    let last_modified_ms: i64 = rng.random_range(0..2_000_000_000_000);
    let tag = |rng: &mut StdRng| -> String {
        let e = if rng.random_bool(0.5) {
            etag.as_str()
        } else {
            "other"
        };
        match rng.random_range(0..9) {
            0 => "*".into(),
            1 => format!("W/\"{e}\""),
            2 => e.into(),
            3 => format!("\"{e}"),
            4 => format!("W/W/\"{e}\""),
            5 => format!("\"\"{e}\"\""),
            _ => format!("\"{e}\""),
        }
    };
    let list = |rng: &mut StdRng| -> String {
        let n = rng.random_range(1..=3);
        let sep = [",", ", ", " ,"].choose(rng).unwrap();
        (0..n).map(|_| tag(rng)).collect::<Vec<_>>().join(sep)
    };
    let date = |rng: &mut StdRng| -> String {
        let secs = last_modified_ms.div_euclid(1000) + rng.random_range(-1..=1);
        let t = std::time::UNIX_EPOCH + std::time::Duration::from_secs(secs.max(0) as u64);
        match rng.random_range(0..6) {
            0 => "not a date".into(),
            1 => format!(" {} ", httpdate::fmt_http_date(t)),
            _ => httpdate::fmt_http_date(t),
        }
    };
    let mut lines = Vec::new();
    for i in 0..4 {
        let present = rng.random_bool(0.4);
        lines.push(match (present, i) {
            (false, _) => "-".to_owned(),
            (true, 0 | 1) => list(rng),
            (true, _) => date(rng),
        });
    }
    lines.push(etag);
    lines.push(last_modified_ms.to_string());
    lines.join("\n").into_bytes()
}
