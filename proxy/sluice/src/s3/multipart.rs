//! The multipart upload operations on the wire: CreateMultipartUpload, UploadPart,
//! UploadPartCopy, CompleteMultipartUpload, ListParts and ListMultipartUploads (Abort is one
//! storage call in `ops`). Validation of the part list is the storage layer's; this module
//! parses requests and renders S3's XML.

use http::{Response, StatusCode, header};
use sluice_storage::{
    BucketName, CompletePart, NewUpload, ObjectKey, PartId, ReadRange, UploadListRequest,
};

use super::S3Error;
use super::conditional::{Checked, refuse_unsupported};
use super::list::{encode_if, iso8601_ms, max_param, url_encoding};
use super::ops::OpContext;
use super::request::{MAX_LIST_XML_BODY, body_put, put_condition, stored_headers};
use super::response::{empty, no_content, owner, quoted, xml_response};
use super::router::query_get;
use super::xml::{XmlWriter, parse_tree};
use crate::body::{RequestBody, ResponseBody, full_body};

const MAX_PARTS_LISTED: usize = 1000;

const MAX_UPLOADS_LISTED: usize = 1000;

pub(super) async fn create(
    ctx: &OpContext<'_>,
    bucket: &BucketName,
    key: &ObjectKey,
) -> Result<Response<ResponseBody>, S3Error> {
    refuse_unsupported(ctx.headers, Checked::Put)?;
    if ctx.headers.contains_key("if-none-match") || ctx.headers.contains_key("if-match") {
        // Conditions belong on CompleteMultipartUpload, where S3 evaluates them.
        return Err(S3Error::not_implemented(
            "Conditional headers on CreateMultipartUpload",
        ));
    }
    let encrypt =
        super::conditional::server_side_encryption(ctx.headers, ctx.backend().encryption(), false)?;
    let customer_key = ctx.customer_key()?;
    if encrypt && customer_key.is_some() {
        return Err(super::object::both_encryptions());
    }
    let upload = NewUpload {
        headers: stored_headers(ctx.headers)?,
        tags: super::tagging::from_header(ctx.headers)?,
        system_meta: Default::default(),
        encrypt,
        customer_key: customer_key.clone(),
    };
    let upload_id = ctx
        .backend()
        .create_multipart_upload(ctx.tenant, bucket, key, upload)
        .await?;
    let mut x = XmlWriter::new();
    x.root("InitiateMultipartUploadResult");
    x.element("Bucket", bucket.as_str());
    x.element("Key", key.as_str());
    x.element("UploadId", &upload_id);
    x.close("InitiateMultipartUploadResult");
    let mut resp = xml_response(x.finish());
    if let Some(key) = &customer_key {
        super::customer_key::echo_into(resp.headers_mut(), key);
    }
    Ok(resp)
}

pub(super) async fn upload_part(
    ctx: &OpContext<'_>,
    bucket: &BucketName,
    key: &ObjectKey,
    upload_id: &str,
    number: u32,
    body: RequestBody,
) -> Result<Response<ResponseBody>, S3Error> {
    let put = body_put(&body, ctx.headers)?;
    let checksum = put.checksum.clone();
    let late = put.late_checksum.clone();
    let customer_key = ctx.customer_key()?;
    let part = ctx
        .backend()
        .upload_part(
            ctx.tenant,
            bucket,
            key,
            PartId {
                upload_id,
                number,
                customer_key: customer_key.as_ref(),
            },
            put,
            body.into_put_body(),
        )
        .await?;
    let mut resp = empty(StatusCode::OK).header(header::ETAG, quoted(&part.etag));
    if let Some((name, value)) = checksum.or_else(|| late.and_then(|l| l.lock().ok()?.clone())) {
        resp = resp.header(name, value);
    }
    resp = super::customer_key::echo(resp, customer_key.as_ref());
    Ok(resp.body(full_body(Vec::new())).unwrap())
}

pub(super) async fn upload_part_copy(
    ctx: &OpContext<'_>,
    bucket: &BucketName,
    key: &ObjectKey,
    upload_id: &str,
    number: u32,
    source_range: Option<ReadRange>,
) -> Result<Response<ResponseBody>, S3Error> {
    let source = super::copy::resolve_source(ctx)?;
    let customer_key = ctx.customer_key()?;
    let part = ctx
        .backend()
        .copy_part(
            ctx.tenant,
            bucket,
            key,
            PartId {
                upload_id,
                number,
                customer_key: customer_key.as_ref(),
            },
            source.as_copy_source(),
            source_range,
        )
        .await?;
    let mut x = XmlWriter::new();
    x.root("CopyPartResult");
    x.element("LastModified", &iso8601_ms(part.last_modified_ms));
    x.element("ETag", &quoted(&part.etag));
    x.close("CopyPartResult");
    let mut resp = xml_response(x.finish());
    if let Some(key) = &customer_key {
        super::customer_key::echo_into(resp.headers_mut(), key);
    }
    Ok(resp)
}

/// Parses a `CompleteMultipartUpload` document into its part list, in document order (the
/// backend checks the order, ETags and sizes).
pub fn parse_complete(xml: &[u8]) -> Result<Vec<CompletePart>, S3Error> {
    let root = parse_tree(xml)?;
    if root.name != "CompleteMultipartUpload" {
        return Err(S3Error::malformed_xml());
    }
    let mut parts = Vec::new();
    for part in root.children_named("Part") {
        let number = part
            .text_of("PartNumber")?
            .ok_or_else(S3Error::malformed_xml)?;
        let etag = part.text_of("ETag")?.ok_or_else(S3Error::malformed_xml)?;
        parts.push(CompletePart {
            // An xs:int, as S3's schema types it: an optional `+`, then digits.
            part_number: super::range::part_number(
                number.trim().strip_prefix('+').unwrap_or(number.trim()),
            )?,
            etag: etag.to_owned(),
        });
    }
    if parts.is_empty() {
        return Err(S3Error::malformed_xml());
    }
    Ok(parts)
}

pub(super) async fn complete(
    ctx: &OpContext<'_>,
    bucket: &BucketName,
    key: &ObjectKey,
    upload_id: &str,
    body: RequestBody,
) -> Result<Response<ResponseBody>, S3Error> {
    let condition = put_condition(ctx.headers)?;
    let xml = body.collect_bounded(MAX_LIST_XML_BODY).await?;
    let parts = parse_complete(&xml)?;
    let meta = ctx
        .backend()
        .complete_multipart_upload(ctx.tenant, bucket, key, upload_id, parts, condition)
        .await?;
    let mut x = XmlWriter::new();
    x.root("CompleteMultipartUploadResult");
    x.element("Location", &format!("/{bucket}/{key}"));
    x.element("Bucket", bucket.as_str());
    x.element("Key", key.as_str());
    x.element("ETag", &quoted(&meta.etag));
    x.close("CompleteMultipartUploadResult");
    Ok(xml_response(x.finish()))
}

pub(super) async fn abort(
    ctx: &OpContext<'_>,
    bucket: &BucketName,
    key: &ObjectKey,
    upload_id: &str,
) -> Result<Response<ResponseBody>, S3Error> {
    ctx.backend()
        .abort_multipart_upload(ctx.tenant, bucket, key, upload_id)
        .await?;
    Ok(no_content())
}

pub(super) async fn list_parts(
    ctx: &OpContext<'_>,
    bucket: &BucketName,
    key: &ObjectKey,
    upload_id: &str,
) -> Result<Response<ResponseBody>, S3Error> {
    let q = ctx.query;
    let marker = match query_get(q, "part-number-marker") {
        Some(m) => m
            .parse::<u32>()
            .map_err(|_| S3Error::invalid_argument("Invalid part-number-marker"))?,
        None => 0,
    };
    let max = max_param(q, "max-parts", 1, MAX_PARTS_LISTED)?;
    let (parts, truncated) = ctx
        .backend()
        .list_parts(ctx.tenant, bucket, key, upload_id, marker, max)
        .await?;
    let mut x = XmlWriter::new();
    x.root("ListPartsResult");
    x.element("Bucket", bucket.as_str());
    x.element("Key", key.as_str());
    x.element("UploadId", upload_id);
    initiator_and_owner(&mut x, ctx);
    x.element("StorageClass", "STANDARD");
    x.element("PartNumberMarker", &marker.to_string());
    if let Some(last) = parts.last() {
        x.element("NextPartNumberMarker", &last.part_number.to_string());
    }
    x.element("MaxParts", &max.to_string());
    x.element("IsTruncated", if truncated { "true" } else { "false" });
    for part in &parts {
        x.open("Part");
        x.element("PartNumber", &part.part_number.to_string());
        x.element("LastModified", &iso8601_ms(part.last_modified_ms));
        x.element("ETag", &quoted(&part.etag));
        x.element("Size", &part.size.to_string());
        if let Some((name, value)) = &part.checksum {
            let element = checksum_element(name);
            x.element(&element, value);
        }
        x.close("Part");
    }
    x.close("ListPartsResult");
    Ok(xml_response(x.finish()))
}

/// `x-amz-checksum-crc32c` → `ChecksumCRC32C`.
fn checksum_element(header: &str) -> String {
    let alg = header
        .trim_start_matches("x-amz-checksum-")
        .to_ascii_uppercase();
    format!("Checksum{alg}")
}

fn initiator_and_owner(x: &mut XmlWriter, ctx: &OpContext<'_>) {
    x.open("Initiator");
    x.element("ID", ctx.tenant.as_str());
    x.element("DisplayName", ctx.tenant.as_str());
    x.close("Initiator");
    owner(x, ctx.tenant.as_str());
}

pub(super) async fn list_uploads(
    ctx: &OpContext<'_>,
    bucket: &BucketName,
) -> Result<Response<ResponseBody>, S3Error> {
    let q = ctx.query;
    let max = max_param(q, "max-uploads", 1, MAX_UPLOADS_LISTED)?;
    let key_marker = query_get(q, "key-marker").filter(|m| !m.is_empty());
    let upload_id_marker =
        query_get(q, "upload-id-marker").filter(|m| !m.is_empty() && key_marker.is_some());
    let request = UploadListRequest {
        prefix: query_get(q, "prefix").unwrap_or_default(),
        delimiter: query_get(q, "delimiter").filter(|d| !d.is_empty()),
        key_marker: key_marker.clone(),
        upload_id_marker: upload_id_marker.clone(),
        max_uploads: max,
    };
    let page = ctx
        .backend()
        .list_multipart_uploads(ctx.tenant, bucket, request.clone())
        .await?;
    let url = url_encoding(q)?;
    let enc = |s: &str| encode_if(url, s);
    let mut x = XmlWriter::new();
    x.root("ListMultipartUploadsResult");
    x.element("Bucket", bucket.as_str());
    x.element("KeyMarker", &enc(key_marker.as_deref().unwrap_or("")));
    x.element("UploadIdMarker", upload_id_marker.as_deref().unwrap_or(""));
    if let Some((k, id)) = &page.next {
        x.element("NextKeyMarker", &enc(k));
        x.element("NextUploadIdMarker", id);
    }
    x.element("Prefix", &enc(&request.prefix));
    if let Some(d) = &request.delimiter {
        x.element("Delimiter", &enc(d));
    }
    x.element("MaxUploads", &max.to_string());
    if url {
        x.element("EncodingType", "url");
    }
    x.element(
        "IsTruncated",
        if page.next.is_some() { "true" } else { "false" },
    );
    for upload in &page.uploads {
        x.open("Upload");
        x.element("Key", &enc(upload.key.as_str()));
        x.element("UploadId", &upload.upload_id);
        initiator_and_owner(&mut x, ctx);
        x.element("StorageClass", "STANDARD");
        x.element("Initiated", &iso8601_ms(upload.initiated_ms));
        x.close("Upload");
    }
    for prefix in &page.common_prefixes {
        x.open("CommonPrefixes");
        x.element("Prefix", &enc(prefix));
        x.close("CommonPrefixes");
    }
    x.close("ListMultipartUploadsResult");
    Ok(xml_response(x.finish()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn part_numbers_and_checksum_names() {
        let part_number = super::super::range::part_number;
        assert_eq!(part_number("0").unwrap_err().code, "InvalidArgument");
        assert_eq!(part_number("10001").unwrap_err().code, "InvalidArgument");
        assert_eq!(
            checksum_element("x-amz-checksum-crc64nvme"),
            "ChecksumCRC64NVME"
        );
    }
}
