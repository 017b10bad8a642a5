//! SSE-C: a client's own key for an object (`x-amz-server-side-encryption-customer-*`; for a
//! copy's source, `x-amz-copy-source-server-side-encryption-customer-*`), checked as S3 checks
//! it and echoed in responses. The key itself is never stored or echoed: only its MD5.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use http::HeaderMap;
use sluice_storage::{CustomerKey, ObjectMeta, Policy};

use super::S3Error;
use crate::body::header_str;

/// The headers that carry the object's key, and the copy source's.
pub const OBJECT: &str = "x-amz-server-side-encryption-customer-";
pub const COPY_SOURCE: &str = "x-amz-copy-source-server-side-encryption-customer-";

/// The SSE-C key a request gives under `prefix` (`OBJECT` or `COPY_SOURCE`), if any: all three
/// headers, algorithm `AES256`, a 256-bit key whose MD5 is the one sent, over TLS, to a
/// store that can encrypt (`encryption`), or the error S3 gives.
pub fn from_headers(
    headers: &HeaderMap,
    prefix: &str,
    tls: bool,
    encryption: Option<Policy>,
) -> Result<Option<CustomerKey>, S3Error> {
    let field = |name: &str| header_str(headers, &format!("{prefix}{name}"));
    let (algorithm, key, md5) = (field("algorithm"), field("key"), field("key-MD5"));
    if algorithm.is_none() && key.is_none() && md5.is_none() {
        return Ok(None);
    }
    if !tls {
        return Err(S3Error::invalid_request(
            "Requests specifying Server Side Encryption with Customer provided keys must be made over a secure connection.",
        ));
    }
    let (Some(algorithm), Some(key), Some(md5)) = (algorithm, key, md5) else {
        return Err(S3Error::invalid_argument(
            "Requests specifying Server Side Encryption with Customer provided keys must provide the algorithm, the key and the key's MD5.",
        )
        .with("ArgumentName", format!("{prefix}algorithm")));
    };
    if algorithm != "AES256" {
        return Err(S3Error::new(
            http::StatusCode::BAD_REQUEST,
            "InvalidEncryptionAlgorithmError",
            "The encryption request you specified is not valid. The valid value is AES256.",
        )
        .with("ArgumentName", format!("{prefix}algorithm")));
    }
    let Some(bytes) = STANDARD
        .decode(key)
        .ok()
        .and_then(|k| <[u8; 32]>::try_from(k.as_slice()).ok())
    else {
        return Err(S3Error::invalid_argument(
            "The secret key was invalid for the specified algorithm.",
        )
        .with("ArgumentName", format!("{prefix}key")));
    };
    use md5::Digest as _;
    let actual = STANDARD.encode(md5::Md5::digest(bytes));
    if actual != md5 {
        return Err(S3Error::invalid_argument(
            "The calculated MD5 hash of the key did not match the hash that was provided.",
        )
        .with("ArgumentName", format!("{prefix}key-MD5")));
    }
    if encryption.is_none() {
        return Err(S3Error::not_implemented("SSE-C on this bucket")
            .with("Header", format!("{prefix}algorithm")));
    }
    Ok(Some(CustomerKey::new(bytes, actual)))
}

/// The response headers S3 sends for an object encrypted with the client's key: the algorithm
/// and the key's MD5 (never the key).
pub fn echo(
    mut resp: http::response::Builder,
    key: Option<&CustomerKey>,
) -> http::response::Builder {
    if let (Some(key), Some(headers)) = (key, resp.headers_mut()) {
        echo_into(headers, key);
    }
    resp
}

/// [`echo`] into the headers of a response built already.
pub fn echo_into(headers: &mut HeaderMap, key: &CustomerKey) {
    let md5 = http::HeaderValue::from_str(key.md5()).expect("base64 is a valid header value");
    headers.insert(
        http::HeaderName::from_static("x-amz-server-side-encryption-customer-algorithm"),
        http::HeaderValue::from_static("AES256"),
    );
    headers.insert(
        http::HeaderName::from_static("x-amz-server-side-encryption-customer-key-md5"),
        md5,
    );
}

/// [`echo`] for an object the store reported: only if it is encrypted with the client's key.
pub fn echo_for(
    resp: http::response::Builder,
    meta: &ObjectMeta,
    key: Option<&CustomerKey>,
) -> http::response::Builder {
    echo(
        resp,
        key.filter(|_| sluice_storage::encrypted::customer_encrypted(meta)),
    )
}
