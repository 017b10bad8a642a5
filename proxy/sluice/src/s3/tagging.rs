//! Object tags: the `Tagging` XML of Put/GetObjectTagging and the URL-encoded `x-amz-tagging`
//! header of PutObject, CopyObject and CreateMultipartUpload, with S3's limits (10 tags, keys of
//! 128 and values of 256 characters, keys unique).

use std::collections::BTreeMap;

use http::{HeaderMap, Response, StatusCode};
use sluice_storage::{BucketName, ObjectKey};

use super::S3Error;
use super::ops::OpContext;
use super::request::MAX_XML_BODY;
use super::response::{empty, no_content, xml_response};
use super::router::query_pairs;
use super::xml::{XmlWriter, parse_tree};
use crate::body::{RequestBody, ResponseBody, full_body, header_str};

const MAX_TAGS: usize = 10;

fn invalid_tag(message: &'static str) -> S3Error {
    S3Error::new(StatusCode::BAD_REQUEST, "InvalidTag", message)
}

fn check(tags: &[(String, String)]) -> Result<BTreeMap<String, String>, S3Error> {
    if tags.len() > MAX_TAGS {
        return Err(S3Error::new(
            StatusCode::BAD_REQUEST,
            "BadRequest",
            "Object tags cannot be greater than 10",
        ));
    }
    let mut out = BTreeMap::new();
    for (k, v) in tags {
        if k.is_empty() || k.chars().count() > 128 {
            return Err(invalid_tag("The TagKey you have provided is invalid"));
        }
        // The `aws:` prefix is reserved for tags AWS itself sets.
        if k.get(..4).is_some_and(|p| p.eq_ignore_ascii_case("aws:")) {
            return Err(invalid_tag("Your TagKey cannot be prefixed with aws:"));
        }
        if v.chars().count() > 256 {
            return Err(invalid_tag("The TagValue you have provided is invalid"));
        }
        if out.insert(k.clone(), v.clone()).is_some() {
            return Err(invalid_tag(
                "Cannot provide multiple Tags with the same key",
            ));
        }
    }
    Ok(out)
}

/// Tags from `x-amz-tagging: k1=v1&k2=v2` (URL-encoded); none when the header is absent.
pub(super) fn from_header(headers: &HeaderMap) -> Result<BTreeMap<String, String>, S3Error> {
    match header_str(headers, "x-amz-tagging") {
        None => Ok(BTreeMap::new()),
        Some(value) => check(&query_pairs(Some(value)).collect::<Vec<_>>()),
    }
}

/// Parses and checks a `Tagging` document (PutObjectTagging).
pub fn parse_tagging(xml: &[u8]) -> Result<BTreeMap<String, String>, S3Error> {
    let root = parse_tree(xml)?;
    if root.name != "Tagging" {
        return Err(S3Error::malformed_xml());
    }
    let tag_set = root.child("TagSet")?.ok_or_else(S3Error::malformed_xml)?;
    let mut tags = Vec::new();
    for tag in tag_set.children_named("Tag") {
        let k = tag.text_of("Key")?.ok_or_else(S3Error::malformed_xml)?;
        let v = tag.text_of("Value")?.unwrap_or_default();
        tags.push((k.to_owned(), v.to_owned()));
    }
    check(&tags)
}

pub(super) async fn put(
    ctx: &OpContext<'_>,
    bucket: &BucketName,
    key: &ObjectKey,
    body: RequestBody,
) -> Result<Response<ResponseBody>, S3Error> {
    let xml = body.collect_bounded(MAX_XML_BODY).await?;
    ctx.backend()
        .set_tags(ctx.tenant, bucket, key, parse_tagging(&xml)?)
        .await?;
    Ok(empty(StatusCode::OK).body(full_body(Vec::new())).unwrap())
}

pub(super) async fn get(
    ctx: &OpContext<'_>,
    bucket: &BucketName,
    key: &ObjectKey,
) -> Result<Response<ResponseBody>, S3Error> {
    let tags = ctx.backend().get_tags(ctx.tenant, bucket, key).await?;
    let mut x = XmlWriter::new();
    x.root("Tagging");
    x.open("TagSet");
    for (k, v) in &tags {
        x.open("Tag");
        x.element("Key", k);
        x.element("Value", v);
        x.close("Tag");
    }
    x.close("TagSet");
    x.close("Tagging");
    Ok(xml_response(x.finish()))
}

pub(super) async fn delete(
    ctx: &OpContext<'_>,
    bucket: &BucketName,
    key: &ObjectKey,
) -> Result<Response<ResponseBody>, S3Error> {
    ctx.backend()
        .set_tags(ctx.tenant, bucket, key, Default::default())
        .await?;
    Ok(no_content())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tag_limits() {
        let mut h = HeaderMap::new();
        h.insert("x-amz-tagging", "a=1&b=two%20words".parse().unwrap());
        let tags = from_header(&h).unwrap();
        assert_eq!(tags.get("b").map(String::as_str), Some("two words"));
        h.insert("x-amz-tagging", "a=1&a=2".parse().unwrap());
        assert_eq!(from_header(&h).unwrap_err().code, "InvalidTag");
        let many: Vec<String> = (0..11).map(|i| format!("k{i}=v")).collect();
        h.insert("x-amz-tagging", many.join("&").parse().unwrap());
        assert_eq!(from_header(&h).unwrap_err().code, "BadRequest");
        h.insert(
            "x-amz-tagging",
            format!("{}=v", "k".repeat(129)).parse().unwrap(),
        );
        assert_eq!(from_header(&h).unwrap_err().code, "InvalidTag");
    }
}
