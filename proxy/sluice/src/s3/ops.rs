//! Executing S3 operations against a backend: request headers in, response headers and bodies
//! out. Authentication and routing have already happened; nothing here looks at signatures.

use base64::Engine as _;
use http::{HeaderMap, HeaderValue, Response, StatusCode, header};
use sluice_storage::{
    BucketName, LocalBackend, ObjectKey, ObjectMeta, PutCondition, PutError, PutObject,
    StoredHeaders, TenantId,
};

use super::conditional::{Checked, Precondition, evaluate, refuse_unsupported};
use super::list::{self, iso8601_ms};
use super::router::query_pairs;
use super::router::{BucketOp, ObjectOp};
use super::xml::{XmlWriter, parse_create_bucket};
use super::{S3Error, S3Op};
use crate::body::{RequestBody, ResponseBody, full_body, header_str, stream_body};

/// S3's limit on user-defined metadata: 2 KiB of names and values.
const MAX_USER_META_BYTES: usize = 2048;
/// Largest XML request body accepted for small documents (CreateBucketConfiguration, Tagging).
pub(super) const MAX_XML_BODY: usize = 64 * 1024;
/// Largest XML body for the long lists (DeleteObjects: 1,000 keys; CompleteMultipartUpload:
/// 10,000 parts).
pub(super) const MAX_LIST_XML_BODY: usize = 4 * 1024 * 1024;

/// What an operation runs against.
#[derive(Debug)]
pub struct OpContext<'a> {
    pub tenant: &'a TenantId,
    pub region: &'a str,
    /// The backend for the op's bucket; for ListBuckets, every backend the tenant routes to.
    pub backends: Vec<&'a LocalBackend>,
    /// The gateway and tenant whose routes pick a bucket's backend (ListBuckets lists a bucket
    /// only from the backend its route names).
    pub gateway: &'a crate::gateway::Gateway,
    pub tenant_config: &'a crate::config::TenantConfig,
    pub headers: &'a HeaderMap,
    pub query: Option<&'a str>,
    /// For log lines about this request.
    pub request_id: &'a str,
}

impl OpContext<'_> {
    pub(super) fn backend(&self) -> &LocalBackend {
        self.backends[0]
    }
}

pub async fn execute(
    op: S3Op,
    ctx: OpContext<'_>,
    body: RequestBody,
) -> Result<Response<ResponseBody>, S3Error> {
    match op {
        S3Op::ListBuckets => list_buckets(&ctx).await,
        S3Op::Bucket(bucket, op) => bucket_op(&ctx, &bucket, op, body).await,
        S3Op::Object(bucket, key, op) => match op {
            ObjectOp::Put => put_object(&ctx, &bucket, &key, body).await,
            ObjectOp::Copy => super::copy::copy_object(&ctx, &bucket, &key).await,
            ObjectOp::Get => get_object(&ctx, &bucket, &key, false).await,
            ObjectOp::Head => get_object(&ctx, &bucket, &key, true).await,
            ObjectOp::Delete => {
                ctx.backend()
                    .delete_object(ctx.tenant, &bucket, &key)
                    .await?;
                Ok(no_content())
            }
            ObjectOp::CreateMultipartUpload => super::multipart::create(&ctx, &bucket, &key).await,
            ObjectOp::UploadPart {
                upload_id,
                part_number,
            } => {
                super::multipart::upload_part(&ctx, &bucket, &key, &upload_id, &part_number, body)
                    .await
            }
            ObjectOp::UploadPartCopy {
                upload_id,
                part_number,
            } => {
                super::multipart::upload_part_copy(&ctx, &bucket, &key, &upload_id, &part_number)
                    .await
            }
            ObjectOp::CompleteMultipartUpload { upload_id } => {
                super::multipart::complete(&ctx, &bucket, &key, &upload_id, body).await
            }
            ObjectOp::AbortMultipartUpload { upload_id } => {
                ctx.backend()
                    .abort_multipart_upload(ctx.tenant, &bucket, &key, &upload_id)
                    .await?;
                Ok(no_content())
            }
            ObjectOp::ListParts { upload_id } => {
                super::multipart::list_parts(&ctx, &bucket, &key, &upload_id).await
            }
            ObjectOp::GetTagging => super::tagging::get(&ctx, &bucket, &key).await,
            ObjectOp::PutTagging => super::tagging::put(&ctx, &bucket, &key, body).await,
            ObjectOp::DeleteTagging => {
                ctx.backend()
                    .set_tags(ctx.tenant, &bucket, &key, Default::default())
                    .await?;
                Ok(no_content())
            }
        },
    }
}

async fn bucket_op(
    ctx: &OpContext<'_>,
    bucket: &BucketName,
    op: BucketOp,
    body: RequestBody,
) -> Result<Response<ResponseBody>, S3Error> {
    match op {
        BucketOp::Create => create_bucket(ctx, bucket, body).await,
        BucketOp::Head => {
            ctx.backend().head_bucket(ctx.tenant, bucket).await?;
            Ok(empty(StatusCode::OK)
                .header("x-amz-bucket-region", ctx.region)
                .body(full_body(Vec::new()))
                .unwrap())
        }
        BucketOp::Delete => {
            ctx.backend().delete_bucket(ctx.tenant, bucket).await?;
            Ok(no_content())
        }
        BucketOp::GetLocation => {
            ctx.backend().head_bucket(ctx.tenant, bucket).await?;
            let mut x = XmlWriter::new();
            x.root("LocationConstraint");
            // us-east-1 is reported as an empty constraint, as S3 does.
            if ctx.region != "us-east-1" {
                x.element_text(ctx.region);
            }
            x.close("LocationConstraint");
            Ok(xml_response(x.finish()))
        }
        BucketOp::ListObjectsV1 => list_objects(ctx, bucket, false).await,
        BucketOp::ListObjectsV2 => list_objects(ctx, bucket, true).await,
        BucketOp::ListObjectVersions => super::versions::list_object_versions(ctx, bucket).await,
        BucketOp::GetVersioning => super::versions::get_versioning(ctx, bucket).await,
        BucketOp::ListMultipartUploads => super::multipart::list_uploads(ctx, bucket).await,
        BucketOp::DeleteObjects => super::batch::delete_objects(ctx, bucket, body).await,
        BucketOp::GetCors => super::cors::get(ctx, bucket).await,
        BucketOp::PutCors => super::cors::put(ctx, bucket, body).await,
        BucketOp::DeleteCors => super::cors::delete(ctx, bucket).await,
    }
}

async fn list_buckets(ctx: &OpContext<'_>) -> Result<Response<ResponseBody>, S3Error> {
    let mut buckets = Vec::new();
    for backend in &ctx.backends {
        // A bucket is listed only by the backend its route names now, so every listed bucket
        // answers HeadBucket, and a name present in two backends appears once.
        let listed = backend.list_buckets(ctx.tenant).await?;
        buckets.extend(listed.into_iter().filter(|b| {
            BucketName::parse(&b.name)
                .ok()
                .and_then(|n| ctx.gateway.backend_for(ctx.tenant_config, &n))
                .is_some_and(|r| std::ptr::eq(r, *backend))
        }));
    }
    buckets.sort_by(|a, b| a.name.cmp(&b.name));
    let mut x = XmlWriter::new();
    x.root("ListAllMyBucketsResult");
    owner(&mut x, ctx.tenant.as_str());
    x.open("Buckets");
    for b in &buckets {
        x.open("Bucket");
        x.element("Name", &b.name);
        x.element("CreationDate", &iso8601_ms(b.created_ms));
        x.close("Bucket");
    }
    x.close("Buckets");
    x.close("ListAllMyBucketsResult");
    Ok(xml_response(x.finish()))
}

async fn create_bucket(
    ctx: &OpContext<'_>,
    bucket: &BucketName,
    body: RequestBody,
) -> Result<Response<ResponseBody>, S3Error> {
    refuse_unsupported(ctx.headers, Checked::CreateBucket)?;
    let xml = body.collect_bounded(MAX_XML_BODY).await?;
    let location = parse_create_bucket(&xml).map_err(|_| S3Error::malformed_xml())?;
    if let Some(location) = location.filter(|l| !l.is_empty())
        && location != ctx.region
    {
        return Err(S3Error::new(
            StatusCode::BAD_REQUEST,
            "IllegalLocationConstraintException",
            format!(
                "The {location} location constraint is incompatible for the region specific endpoint this request was sent to."
            ),
        ));
    }
    ctx.backend().create_bucket(ctx.tenant, bucket).await?;
    Ok(empty(StatusCode::OK)
        .header(header::LOCATION, format!("/{bucket}"))
        .body(full_body(Vec::new()))
        .unwrap())
}

async fn list_objects(
    ctx: &OpContext<'_>,
    bucket: &BucketName,
    v2: bool,
) -> Result<Response<ResponseBody>, S3Error> {
    let params = list::parse_params(ctx.query, v2)?;
    let page = if params.request.max_keys == 0 {
        ctx.backend().head_bucket(ctx.tenant, bucket).await?;
        Default::default()
    } else {
        ctx.backend()
            .list_objects(ctx.tenant, bucket, params.request.clone())
            .await?
    };
    Ok(xml_response(list::render(
        bucket.as_str(),
        &params,
        &page,
        v2,
        ctx.tenant.as_str(),
    )))
}

async fn put_object(
    ctx: &OpContext<'_>,
    bucket: &BucketName,
    key: &ObjectKey,
    body: RequestBody,
) -> Result<Response<ResponseBody>, S3Error> {
    let headers = ctx.headers;
    refuse_unsupported(headers, Checked::Put)?;
    let put = PutObject {
        headers: stored_headers(headers)?,
        tags: super::tagging::from_header(headers)?,
        condition: put_condition(headers)?,
        ..body_put(&body, headers)?
    };
    let checksum = put.checksum.clone();
    let late = put.late_checksum.clone();
    let meta = ctx
        .backend()
        .put_object(ctx.tenant, bucket, key, put, body.into_stream())
        .await
        .map_err(put_error)?;
    let mut resp = empty(StatusCode::OK).header(header::ETAG, format!("\"{}\"", meta.etag));
    if let Some((name, value)) = checksum.or_else(|| late.and_then(|l| l.lock().ok()?.clone())) {
        resp = resp.header(name, value);
    }
    Ok(resp.body(full_body(Vec::new())).unwrap())
}

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
        ..Default::default()
    })
}

pub(super) fn put_error(err: PutError<S3Error>) -> S3Error {
    match err {
        PutError::Body(e) => e,
        PutError::Storage(e) => S3Error::from(e),
    }
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

/// GetObject and HeadObject: headers from the stored record, the body (or a range or part of it).
async fn get_object(
    ctx: &OpContext<'_>,
    bucket: &BucketName,
    key: &ObjectKey,
    head: bool,
) -> Result<Response<ResponseBody>, S3Error> {
    refuse_unsupported(ctx.headers, Checked::Get)?;
    let part_number = super::router::query_get(ctx.query, "partNumber");
    let backend = ctx.backend();
    // HEAD needs the part layout only for partNumber; GET always opens the object.
    let (meta, open) = if head && part_number.is_none() {
        (backend.head_object(ctx.tenant, bucket, key).await?, None)
    } else {
        let open = backend.open_object(ctx.tenant, bucket, key).await?;
        (open.meta.clone(), Some(open))
    };
    if evaluate(ctx.headers, &meta)? == Precondition::NotModified {
        return Ok(empty(StatusCode::NOT_MODIFIED)
            .header(header::ETAG, format!("\"{}\"", meta.etag))
            .header(header::LAST_MODIFIED, http_date(&meta))
            .body(full_body(Vec::new()))
            .unwrap());
    }
    let range = match (part_number.as_deref(), header_str(ctx.headers, "range")) {
        (Some(_), Some(_)) => {
            return Err(S3Error::invalid_request(
                "Cannot specify both Range header and partNumber query parameter.",
            ));
        }
        (Some(n), None) => Some(super::range::part_range(
            n,
            open.as_ref().map(|o| o.part_sizes()).unwrap_or_default(),
            meta.size,
        )?),
        (None, Some(value)) => super::range::parse_range(value, meta.size).map_err(|e| {
            let mut err = S3Error::from(e);
            err.headers
                .push(("content-range", format!("bytes */{}", meta.size)));
            err.extra.push(("ActualObjectSize", meta.size.to_string()));
            err
        })?,
        (None, None) => None,
    };
    // S3 returns the stored checksum only when asked (ChecksumMode) and only for whole objects:
    // a checksum of the whole object would not match a range.
    let checksum_mode = header_str(ctx.headers, "x-amz-checksum-mode")
        .is_some_and(|m| m.eq_ignore_ascii_case("enabled"));
    let mut resp = object_headers(&meta, ctx.query, checksum_mode && range.is_none())?;
    if part_number.is_some()
        && let Some(parts) = meta.parts
    {
        resp = resp.header("x-amz-mp-parts-count", parts);
    }
    let status = match range {
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
    let body = match open {
        Some(open) if !head => {
            stream_body(first_chunk_checked(open.into_body(range).await?).await?)
        }
        _ => full_body(Vec::new()),
    };
    Ok(resp.status(status).body(body).unwrap())
}

/// Reads the body's first chunk before the response starts, so corruption found there becomes
/// a proper error response; corruption found later can only cut the body short.
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
    let last_modified = http_date(meta);
    let mut b = empty(StatusCode::OK)
        .header(header::ETAG, format!("\"{}\"", meta.etag))
        .header(header::LAST_MODIFIED, last_modified)
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
    if !meta.tags.is_empty() {
        b = b.header("x-amz-tagging-count", meta.tags.len());
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

pub(super) fn http_date(meta: &ObjectMeta) -> String {
    httpdate::fmt_http_date(
        std::time::UNIX_EPOCH
            + std::time::Duration::from_millis(meta.last_modified_ms.max(0) as u64),
    )
}

pub(super) fn owner(x: &mut XmlWriter, tenant: &str) {
    x.open("Owner");
    x.element("ID", tenant);
    x.element("DisplayName", tenant);
    x.close("Owner");
}

pub(super) fn empty(status: StatusCode) -> http::response::Builder {
    Response::builder().status(status)
}

pub(super) fn no_content() -> Response<ResponseBody> {
    empty(StatusCode::NO_CONTENT)
        .body(full_body(Vec::new()))
        .unwrap()
}

pub(super) fn xml_response(xml: Vec<u8>) -> Response<ResponseBody> {
    empty(StatusCode::OK)
        .header(header::CONTENT_TYPE, "application/xml")
        .body(full_body(xml))
        .unwrap()
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
