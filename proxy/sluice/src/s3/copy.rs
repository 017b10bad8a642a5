//! CopyObject and the copy source shared with UploadPartCopy: `x-amz-copy-source` parsing,
//! authorisation of the source bucket through the tenant's routes, source preconditions, and
//! the metadata and tagging directives. The destination's store copies: by default it streams
//! the source's bytes into an ordinary PUT (as atomic and as bounded in memory as a PUT); a
//! store that can copy on its side does so.

use http::{Response, StatusCode};
use percent_encoding::percent_decode_str;
use sluice_storage::{
    Backend, BucketName, CopyObject, CopySource, CustomerKey, ObjectKey, Preconditions,
};

use super::S3Error;
use super::conditional::{Checked, copy_source_preconditions, refuse_unsupported};
use super::list::iso8601;
use super::ops::OpContext;
use super::request::{put_condition, stored_headers};
use super::response::{empty, quoted};
use super::xml::XmlWriter;
use crate::body::{ResponseBody, full_body, header_str};

/// The object named by `x-amz-copy-source`: the store that holds it (through the tenant's route
/// for its bucket, and any renaming there) under its names in that store, so the destination's
/// store can recognise a source of its own and copy on its side; with its
/// `x-amz-copy-source-if-*` conditions.
#[derive(Debug)]
pub(super) struct ResolvedSource<'a> {
    store: &'a dyn Backend,
    /// As the client named it.
    pub bucket: BucketName,
    pub key: ObjectKey,
    stored_bucket: BucketName,
    stored_key: ObjectKey,
    conditions: Preconditions,
    /// The source's SSE-C key (`x-amz-copy-source-server-side-encryption-customer-*`).
    customer_key: Option<CustomerKey>,
}

impl ResolvedSource<'_> {
    pub fn as_copy_source(&self) -> CopySource<'_> {
        CopySource {
            store: self.store,
            bucket: &self.stored_bucket,
            key: &self.stored_key,
            conditions: &self.conditions,
            customer_key: self.customer_key.as_ref(),
        }
    }
}

/// `bucket/key` or `/bucket/key`, URL-encoded, optionally `?versionId=null`.
pub(crate) fn parse_copy_source(value: &str) -> Result<(BucketName, ObjectKey), S3Error> {
    let invalid = || {
        S3Error::invalid_argument(
            "Copy Source must mention the source bucket and key: sourcebucket/sourcekey",
        )
    };
    let (path, version) = match value.split_once("?versionId=") {
        Some((p, v)) => (p, Some(v)),
        None => (value, None),
    };
    if version.is_some_and(|v| v != "null") {
        return Err(S3Error::invalid_argument("Invalid version id specified"));
    }
    let decoded = percent_decode_str(path)
        .decode_utf8()
        .map_err(|_| invalid())?;
    let (bucket, key) = decoded
        .trim_start_matches('/')
        .split_once('/')
        .ok_or_else(invalid)?;
    let bucket = BucketName::parse(bucket)
        .map_err(|e| S3Error::from(sluice_storage::StorageError::from(e)))?;
    let key =
        ObjectKey::parse(key).map_err(|e| S3Error::from(sluice_storage::StorageError::from(e)))?;
    Ok((bucket, key))
}

/// The copy source is reachable only through the tenant's own routes, like any request.
pub(super) fn resolve_source<'a>(ctx: &OpContext<'a>) -> Result<ResolvedSource<'a>, S3Error> {
    let value = header_str(ctx.headers, "x-amz-copy-source").unwrap_or_default();
    let (bucket, key) = parse_copy_source(value)?;
    let backend = ctx
        .gateway
        .backend_for(ctx.tenant_config, &bucket)
        .ok_or_else(|| {
            S3Error::access_denied(format!(
                "No route for bucket {bucket} is configured for this tenant."
            ))
        })?;
    let (store, stored_bucket, stored_key) = backend.resolve(&bucket, &key)?;
    let customer_key = super::customer_key::from_headers(
        ctx.headers,
        super::customer_key::COPY_SOURCE,
        ctx.tls,
        store.encryption(),
    )?;
    Ok(ResolvedSource {
        store,
        bucket,
        key,
        stored_bucket,
        stored_key,
        conditions: copy_source_preconditions(ctx.headers),
        customer_key,
    })
}

pub(super) async fn copy_object(
    ctx: &OpContext<'_>,
    bucket: &BucketName,
    key: &ObjectKey,
) -> Result<Response<ResponseBody>, S3Error> {
    refuse_unsupported(ctx.headers, Checked::Put)?;
    let encrypt =
        super::conditional::server_side_encryption(ctx.headers, ctx.backend().encryption(), true)?;
    let customer_key = ctx.customer_key()?;
    if encrypt && customer_key.is_some() {
        return Err(super::object::both_encryptions());
    }
    // S3 copies ranges only part by part (UploadPartCopy); a CopyObject that ignored the header
    // would store the whole source where the client asked for a slice.
    if ctx.headers.contains_key("x-amz-copy-source-range") {
        return Err(S3Error::invalid_argument(
            "x-amz-copy-source-range is valid only with UploadPartCopy",
        )
        .with("ArgumentName", "x-amz-copy-source-range"));
    }
    let source = resolve_source(ctx)?;
    let replace_meta = directive(ctx, "x-amz-metadata-directive")?;
    let replace_tags = directive(ctx, "x-amz-tagging-directive")?;
    // Asking for encryption again changes the object's encryption attributes, as S3 counts
    // them: on an encrypting route the copy rewraps its data key under the current key.
    let asks_encryption = encrypt || customer_key.is_some() || source.customer_key.is_some();
    if source.bucket == *bucket
        && source.key == *key
        && !replace_meta
        && !replace_tags
        && !asks_encryption
    {
        return Err(S3Error::invalid_request(
            "This copy request is illegal because it is trying to copy an object to itself without changing the object's metadata, storage class, website redirect location or encryption attributes.",
        ));
    }
    let copy = CopyObject {
        headers: replace_meta
            .then(|| stored_headers(ctx.headers))
            .transpose()?,
        tags: replace_tags
            .then(|| super::tagging::from_header(ctx.headers))
            .transpose()?,
        condition: put_condition(ctx.headers)?,
        system_meta: None,
        customer_key: customer_key.clone(),
    };
    let meta = ctx
        .backend()
        .copy_object(ctx.tenant, bucket, key, source.as_copy_source(), copy)
        .await?;
    let mut x = XmlWriter::new();
    x.root("CopyObjectResult");
    x.element("LastModified", &iso8601(&meta));
    x.element("ETag", &quoted(&meta.etag));
    x.close("CopyObjectResult");
    let mut resp = empty(StatusCode::OK).header(http::header::CONTENT_TYPE, "application/xml");
    if let Some(sse) = sluice_storage::encrypted::server_side_encryption(&meta) {
        resp = resp.header("x-amz-server-side-encryption", sse);
    }
    resp = super::customer_key::echo_for(resp, &meta, customer_key.as_ref());
    Ok(resp.body(full_body(x.finish())).unwrap())
}

/// `COPY` (default) or `REPLACE`; true for REPLACE.
fn directive(ctx: &OpContext<'_>, name: &str) -> Result<bool, S3Error> {
    match header_str(ctx.headers, name).map(str::trim) {
        None | Some("COPY") => Ok(false),
        Some("REPLACE") => Ok(true),
        Some(_) => Err(S3Error::invalid_argument(format!("Unknown {name}"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn copy_sources() {
        let (b, k) = parse_copy_source("src-bucket/dir/a%20b%2Bc").unwrap();
        assert_eq!((b.as_str(), k.as_str()), ("src-bucket", "dir/a b+c"));
        let (_, k) = parse_copy_source("/src-bucket/k?versionId=null").unwrap();
        assert_eq!(k.as_str(), "k");
        assert_eq!(
            parse_copy_source("src-bucket/k?versionId=abc")
                .err()
                .unwrap()
                .code,
            "InvalidArgument"
        );
        assert_eq!(
            parse_copy_source("justbucket").err().unwrap().code,
            "InvalidArgument"
        );
        assert_eq!(
            parse_copy_source("src-bucket/").err().unwrap().code,
            "InvalidArgument"
        );
    }
}
