//! Reading what a write asks for from its headers: the stored standard headers and user
//! metadata, the body's declared size and digests, and write conditions.

use base64::Engine as _;
use http::{HeaderMap, StatusCode, header};
use sluice_storage::{PutCondition, PutObject, StoredHeaders};

use super::S3Error;
use crate::body::{RequestBody, header_str};

/// S3's limit on user-defined metadata: 2 KiB of names and values.
const MAX_USER_META_BYTES: usize = 2048;
/// Largest XML request body accepted for small documents (CreateBucketConfiguration, Tagging).
pub(super) const MAX_XML_BODY: usize = 64 * 1024;
/// Largest XML body for the long lists (DeleteObjects: 1,000 keys; CompleteMultipartUpload:
/// 10,000 parts).
pub(super) const MAX_LIST_XML_BODY: usize = 4 * 1024 * 1024;

/// The parts of a [`PutObject`] that come from the body and its framing headers: the declared
/// size, Content-MD5, and the checksum (known now from a header, or later from a trailer).
pub(super) fn body_put(body: &RequestBody, headers: &HeaderMap) -> Result<PutObject, S3Error> {
    let expected_size = match body.declared_len(headers) {
        Some(size) => size,
        // S3 takes no HTTP/1.1 chunked uploads, only aws-chunked ones (which declare a size).
        None if headers.contains_key(header::TRANSFER_ENCODING) => {
            return Err(S3Error::new(
                StatusCode::NOT_IMPLEMENTED,
                "NotImplemented",
                "A header you provided implies functionality that is not implemented",
            )
            .with("Header", "Transfer-Encoding"));
        }
        None => {
            return Err(S3Error::new(
                StatusCode::LENGTH_REQUIRED,
                "MissingContentLength",
                "You must provide the Content-Length HTTP header.",
            ));
        }
    };
    let content_md5 = header_str(headers, "content-md5")
        .map(|v| {
            base64::engine::general_purpose::STANDARD
                .decode(v.trim())
                .ok()
                .and_then(|b| <[u8; 16]>::try_from(b.as_slice()).ok())
                .ok_or_else(|| {
                    S3Error::new(
                        StatusCode::BAD_REQUEST,
                        "InvalidDigest",
                        "The Content-MD5 you specified was invalid.",
                    )
                })
        })
        .transpose()?;
    // Only a checksum the body adapter verifies (a known algorithm) is kept and echoed.
    let checksum = headers.iter().find_map(|(name, value)| {
        sluice_sigv4::ChecksumAlgorithm::from_header_name(name.as_str())?;
        Some((name.as_str().to_owned(), value.to_str().ok()?.to_owned()))
    });
    Ok(PutObject {
        expected_size: Some(expected_size),
        checksum,
        late_checksum: body.late_checksum(),
        content_md5,
        sha256: body.signed_sha256(),
        ..Default::default()
    })
}

/// `If-None-Match: *` and `If-Match: "etag"` on a write, checked atomically at commit.
pub(super) fn put_condition(headers: &HeaderMap) -> Result<PutCondition, S3Error> {
    match (
        header_str(headers, "if-none-match"),
        header_str(headers, "if-match"),
    ) {
        (None, None) => Ok(PutCondition::None),
        (Some(v), None) if v.trim() == "*" => Ok(PutCondition::IfNoneMatch),
        (Some(_), None) => Err(S3Error::not_implemented(
            "If-None-Match with a value other than *",
        )),
        (None, Some(etag)) => Ok(PutCondition::IfMatch(etag.trim().to_owned())),
        (Some(_), Some(_)) => Err(S3Error::invalid_request(
            "If-Match and If-None-Match cannot be used together.",
        )),
    }
}

/// The standard headers and `x-amz-meta-*` a PUT asks to keep.
pub(super) fn stored_headers(headers: &HeaderMap) -> Result<StoredHeaders, S3Error> {
    let get = |name: header::HeaderName| -> Result<Option<String>, S3Error> {
        headers
            .get(&name)
            .map(|v| {
                v.to_str()
                    .map(str::to_owned)
                    .map_err(|_| S3Error::invalid_argument(format!("Invalid value for {name}")))
            })
            .transpose()
    };
    let mut stored = StoredHeaders {
        content_type: get(header::CONTENT_TYPE)?,
        cache_control: get(header::CACHE_CONTROL)?,
        content_disposition: get(header::CONTENT_DISPOSITION)?,
        content_encoding: get(header::CONTENT_ENCODING)?.and_then(strip_aws_chunked),
        content_language: get(header::CONTENT_LANGUAGE)?,
        expires: get(header::EXPIRES)?,
        user_meta: Default::default(),
    };
    let mut meta_bytes = 0;
    for (name, value) in headers {
        if let Some(meta_name) = name.as_str().strip_prefix("x-amz-meta-") {
            let value = value.to_str().map_err(|_| {
                S3Error::invalid_argument(
                    "User metadata values must be ASCII (use RFC 2047 for others).",
                )
            })?;
            meta_bytes += meta_name.len() + value.len();
            stored
                .user_meta
                .insert(meta_name.to_owned(), value.to_owned());
        }
    }
    if meta_bytes > MAX_USER_META_BYTES {
        return Err(S3Error::new(
            StatusCode::BAD_REQUEST,
            "MetadataTooLarge",
            "Your metadata headers exceed the maximum allowed metadata size.",
        ));
    }
    Ok(stored)
}

/// `aws-chunked` describes the transfer, not the object: S3 drops it from the stored encoding.
fn strip_aws_chunked(value: String) -> Option<String> {
    let rest: Vec<&str> = value
        .split(',')
        .map(str::trim)
        .filter(|v| !v.eq_ignore_ascii_case("aws-chunked") && !v.is_empty())
        .collect();
    (!rest.is_empty()).then(|| rest.join(","))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aws_chunked_is_not_stored() {
        assert_eq!(strip_aws_chunked("aws-chunked".into()), None);
        assert_eq!(
            strip_aws_chunked("gzip,aws-chunked".into()),
            Some("gzip".into())
        );
    }
}
