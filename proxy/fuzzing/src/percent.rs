//! Reference percent-coding, written from RFC 3986 and AWS's `UriEncode` description rather than
//! from the code under test.
//!
//! Spec: <https://www.rfc-editor.org/rfc/rfc3986#section-2.1>,
//! <https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_sigv-create-signed-request.html>.

/// `%XX` (either hex case) becomes the byte; a `%` not followed by two hex digits stays as is.
/// `+` is not a space.
pub fn decode(s: &str) -> Vec<u8> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%'
            && let (Some(h), Some(l)) = (
                b.get(i + 1).and_then(|c| hex_value(*c)),
                b.get(i + 2).and_then(|c| hex_value(*c)),
            )
        {
            out.push(h << 4 | l);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    out
}

fn hex_value(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

/// AWS `UriEncode`: the unreserved characters `A-Z a-z 0-9 - _ . ~` stay, `/` stays unless
/// `encode_slash`, every other byte is `%XX` in uppercase hex.
pub fn aws_encode(bytes: &[u8], encode_slash: bool) -> String {
    let mut out = String::new();
    for &b in bytes {
        let unreserved = b.is_ascii_uppercase()
            || b.is_ascii_lowercase()
            || b.is_ascii_digit()
            || b"-_.~".contains(&b);
        if unreserved || (b == b'/' && !encode_slash) {
            out.push(char::from(b));
        } else {
            // Written digit by digit: `format!` per byte dominates a fuzz run under ASan.
            const HEX: &[u8; 16] = b"0123456789ABCDEF";
            out.push('%');
            out.push(char::from(HEX[usize::from(b >> 4)]));
            out.push(char::from(HEX[usize::from(b & 0xf)]));
        }
    }
    out
}

/// `name=value` pairs of a query, split at the first `=` (none means an empty value), empty
/// pairs skipped, both halves decoded as [`decode`] does.
pub fn query_pairs(query: &str) -> Vec<(Vec<u8>, Vec<u8>)> {
    query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (n, v) = p.split_once('=').unwrap_or((p, ""));
            (decode(n), decode(v))
        })
        .collect()
}
