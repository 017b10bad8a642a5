//! Object basics: PutObject, GetObject and HeadObject (ranges, parts, conditions, `response-*`
//! overrides, ChecksumMode), DeleteObject.

use http::{HeaderValue, Response, StatusCode, header};
use sluice_storage::{
    BucketName, ObjectKey, ObjectMeta, PutObject, ReadRange, ReadRequest, StorageError,
};

use super::S3Error;
use super::conditional::{Checked, preconditions, refuse_unsupported};
use super::ops::OpContext;
use super::request::{body_put, put_condition, stored_headers};
use super::response::{empty, http_date, no_content, quoted};
use super::router::query_pairs;
use crate::body::{RequestBody, ResponseBody, full_body, header_str, stream_body};

pub(super) async fn put(
    ctx: &OpContext<'_>,
    bucket: &BucketName,
    key: &ObjectKey,
    body: RequestBody,
) -> Result<Response<ResponseBody>, S3Error> {
    let headers = ctx.headers;
    refuse_unsupported(headers, Checked::Put)?;
    let encrypt =
        super::conditional::server_side_encryption(headers, ctx.backend().encryption(), false)?;
    let customer_key = ctx.customer_key()?;
    if encrypt && customer_key.is_some() {
        return Err(both_encryptions());
    }
    let put = PutObject {
        encrypt,
        customer_key: customer_key.clone(),
        headers: stored_headers(headers)?,
        tags: super::tagging::from_header(headers)?,
        condition: put_condition(headers)?,
        ..body_put(&body, headers)?
    };
    let checksum = put.checksum.clone();
    let late = put.late_checksum.clone();
    let meta = ctx
        .backend()
        .put_object(ctx.tenant, bucket, key, put, body.into_put_body())
        .await?;
    let mut resp = empty(StatusCode::OK).header(header::ETAG, quoted(&meta.etag));
    if let Some((name, value)) = checksum.or_else(|| late.and_then(|l| l.lock().ok()?.clone())) {
        resp = resp.header(name, value);
    }
    if let Some(sse) = sluice_storage::encrypted::server_side_encryption(&meta) {
        resp = resp.header("x-amz-server-side-encryption", sse);
    }
    resp = super::customer_key::echo_for(resp, &meta, customer_key.as_ref());
    Ok(resp.body(full_body(Vec::new())).unwrap())
}

/// `x-amz-server-side-encryption` and SSE-C headers in one request.
pub(super) fn both_encryptions() -> S3Error {
    S3Error::invalid_argument(
        "Server Side Encryption with Customer provided key is incompatible with the encryption method specified",
    )
    .with("ArgumentName", "x-amz-server-side-encryption")
}

pub(super) async fn delete(
    ctx: &OpContext<'_>,
    bucket: &BucketName,
    key: &ObjectKey,
) -> Result<Response<ResponseBody>, S3Error> {
    ctx.backend().delete_object(ctx.tenant, bucket, key).await?;
    Ok(no_content())
}

/// GetObject and HeadObject: headers from the stored record, the body (or a range or part of
/// it). The store resolves the range and checks the conditions against the object it reads.
pub(super) async fn get(
    ctx: &OpContext<'_>,
    bucket: &BucketName,
    key: &ObjectKey,
    range: Option<ReadRange>,
    head: bool,
) -> Result<Response<ResponseBody>, S3Error> {
    refuse_unsupported(ctx.headers, Checked::Get)?;
    let customer_key = ctx.customer_key()?;
    let read = ReadRequest {
        range,
        conditions: preconditions(ctx.headers),
        customer_key: customer_key.clone(),
    };
    let backend = ctx.backend();
    let opened = if head {
        backend.head_object(ctx.tenant, bucket, key, read).await
    } else {
        backend.get_object(ctx.tenant, bucket, key, read).await
    };
    let opened = opened.map_err(|err| match err {
        StorageError::InvalidRange { size }
            if matches!(range, Some(ReadRange::From { .. } | ReadRange::Suffix(_))) =>
        {
            let mut err = S3Error::from(err);
            err.headers
                .push(("content-range", format!("bytes */{size}")));
            err.extra.push(("ActualObjectSize", size.to_string()));
            err
        }
        err => S3Error::from(err),
    })?;
    let meta = &opened.meta;
    // S3 returns the stored checksum only when asked (ChecksumMode) and only for whole objects:
    // a checksum of the whole object would not match a range.
    let checksum_mode = header_str(ctx.headers, "x-amz-checksum-mode")
        .is_some_and(|m| m.eq_ignore_ascii_case("enabled"));
    let mut resp = object_headers(meta, ctx.query, checksum_mode && opened.range.is_none())?;
    resp = super::customer_key::echo_for(resp, meta, customer_key.as_ref());
    if matches!(range, Some(ReadRange::Part(_)))
        && let Some(parts) = meta.parts
    {
        resp = resp.header("x-amz-mp-parts-count", parts);
    }
    let status = match opened.range {
        Some(r) => {
            resp = resp
                .header(
                    header::CONTENT_RANGE,
                    format!("bytes {}-{}/{}", r.start, r.end_inclusive, meta.size),
                )
                .header(header::CONTENT_LENGTH, r.len());
            StatusCode::PARTIAL_CONTENT
        }
        None => {
            resp = resp.header(header::CONTENT_LENGTH, meta.size);
            StatusCode::OK
        }
    };
    let body = if head {
        full_body(Vec::new())
    } else {
        stream_body(first_chunk_checked(opened.body).await?)
    };
    Ok(resp.status(status).body(body).unwrap())
}

/// Reads the body's first chunk before the response starts, so corruption (or an upstream
/// failure) found there becomes a proper error response; one found later can only cut the body
/// short.
async fn first_chunk_checked(
    mut body: sluice_storage::ObjectBody,
) -> Result<sluice_storage::ObjectBody, S3Error> {
    use futures_util::StreamExt;
    match body.next().await {
        None => Ok(body),
        Some(Err(err)) => Err(S3Error::from(err)),
        Some(Ok(first)) => Ok(Box::pin(
            futures_util::stream::once(async move { Ok(first) }).chain(body),
        )),
    }
}

fn object_headers(
    meta: &ObjectMeta,
    query: Option<&str>,
    with_checksum: bool,
) -> Result<http::response::Builder, S3Error> {
    let h = &meta.headers;
    let mut b = empty(StatusCode::OK)
        .header(header::ETAG, quoted(&meta.etag))
        .header(header::LAST_MODIFIED, http_date(meta))
        .header(header::ACCEPT_RANGES, "bytes")
        .header(
            header::CONTENT_TYPE,
            h.content_type.as_deref().unwrap_or("binary/octet-stream"),
        );
    for (name, value) in [
        (header::CACHE_CONTROL, &h.cache_control),
        (header::CONTENT_DISPOSITION, &h.content_disposition),
        (header::CONTENT_ENCODING, &h.content_encoding),
        (header::CONTENT_LANGUAGE, &h.content_language),
        (header::EXPIRES, &h.expires),
    ] {
        if let Some(v) = value {
            b = b.header(name, v);
        }
    }
    for (name, value) in &h.user_meta {
        b = b.header(format!("x-amz-meta-{name}"), value);
    }
    if let Some(sse) = sluice_storage::encrypted::server_side_encryption(meta) {
        b = b.header("x-amz-server-side-encryption", sse);
    }
    let tag_count = meta.tag_count.unwrap_or(meta.tags.len() as u32);
    if tag_count > 0 {
        b = b.header("x-amz-tagging-count", tag_count);
    }
    if let Some((name, value)) = meta.checksum.as_ref().filter(|_| with_checksum) {
        b = b.header(name, value);
    }
    // response-* overrides, as in S3 (only valid on signed requests, which all of ours are).
    for (k, v) in query_pairs(query) {
        let name = match k.as_str() {
            "response-content-type" => header::CONTENT_TYPE,
            "response-content-language" => header::CONTENT_LANGUAGE,
            "response-expires" => header::EXPIRES,
            "response-cache-control" => header::CACHE_CONTROL,
            "response-content-disposition" => header::CONTENT_DISPOSITION,
            "response-content-encoding" => header::CONTENT_ENCODING,
            _ => continue,
        };
        let value = HeaderValue::from_str(&v)
            .map_err(|_| S3Error::invalid_argument(format!("Invalid value for {k}")))?;
        if let Some(headers) = b.headers_mut() {
            headers.insert(name, value);
        }
    }
    Ok(b)
}
