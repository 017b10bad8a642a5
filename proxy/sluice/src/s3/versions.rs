//! What an unversioned bucket answers to the versioning API: GetBucketVersioning reports
//! versioning as never enabled, and ListObjectVersions lists each object as its only version,
//! `null` and latest. Cleanup tools (`aws s3 rb --force`, test-suite teardowns, rclone) rely on
//! these answers.

use http::Response;
use sluice_storage::{BucketName, ListRequest};

use super::S3Error;
use super::list::{MAX_KEYS, encode_if, iso8601, max_param, url_encoding};
use super::ops::OpContext;
use super::response::{owner, quoted, xml_response};
use super::router::query_get;
use super::xml::XmlWriter;
use crate::body::ResponseBody;

pub(super) async fn get_versioning(
    ctx: &OpContext<'_>,
    bucket: &BucketName,
) -> Result<Response<ResponseBody>, S3Error> {
    ctx.backend().head_bucket(ctx.tenant, bucket).await?;
    let mut x = XmlWriter::new();
    x.root("VersioningConfiguration");
    x.close("VersioningConfiguration");
    Ok(xml_response(x.finish()))
}

pub(super) async fn list_object_versions(
    ctx: &OpContext<'_>,
    bucket: &BucketName,
) -> Result<Response<ResponseBody>, S3Error> {
    let q = ctx.query;
    let max_keys = max_param(q, "max-keys", 0, MAX_KEYS)?;
    let key_marker = query_get(q, "key-marker").filter(|m| !m.is_empty());
    // Each key has exactly one version ("null"): after (key, null) means after the key.
    let request = ListRequest {
        prefix: query_get(q, "prefix").unwrap_or_default(),
        delimiter: query_get(q, "delimiter").filter(|d| !d.is_empty()),
        start_after: key_marker.clone(),
        continuation: None,
        max_keys,
    };
    let page = if max_keys == 0 {
        ctx.backend().head_bucket(ctx.tenant, bucket).await?;
        Default::default()
    } else {
        ctx.backend()
            .list_objects(ctx.tenant, bucket, request.clone())
            .await?
    };
    let url = url_encoding(q)?;
    let enc = |s: &str| encode_if(url, s);
    let mut x = XmlWriter::new();
    x.root("ListVersionsResult");
    x.element("Name", bucket.as_str());
    x.element("Prefix", &enc(&request.prefix));
    x.element("KeyMarker", &enc(key_marker.as_deref().unwrap_or("")));
    x.element(
        "VersionIdMarker",
        &query_get(q, "version-id-marker").unwrap_or_default(),
    );
    let next = page.next_token.as_ref().and(page.last_entry());
    if let Some(next) = next {
        x.element("NextKeyMarker", &enc(next));
        x.element("NextVersionIdMarker", "null");
    }
    x.element("MaxKeys", &max_keys.to_string());
    if let Some(d) = &request.delimiter {
        x.element("Delimiter", &enc(d));
    }
    if url {
        x.element("EncodingType", "url");
    }
    x.element("IsTruncated", if next.is_some() { "true" } else { "false" });
    for (key, meta) in &page.objects {
        x.open("Version");
        x.element("Key", &enc(key.as_str()));
        x.element("VersionId", "null");
        x.element("IsLatest", "true");
        x.element("LastModified", &iso8601(meta));
        x.element("ETag", &quoted(&meta.etag));
        x.element("Size", &meta.size.to_string());
        owner(&mut x, ctx.tenant.as_str());
        x.element("StorageClass", "STANDARD");
        x.close("Version");
    }
    for prefix in &page.common_prefixes {
        x.open("CommonPrefixes");
        x.element("Prefix", &enc(prefix));
        x.close("CommonPrefixes");
    }
    x.close("ListVersionsResult");
    Ok(xml_response(x.finish()))
}
