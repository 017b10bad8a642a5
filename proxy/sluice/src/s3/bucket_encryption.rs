//! Put/Get/DeleteBucketEncryption: a bucket's default encryption, within what its route
//! allows. The default (`AES256`, the only algorithm Sluice offers) is kept as a bucket setting
//! that the encryption layer reads on every write; a route whose policy already encrypts every
//! write reports it whether set or not, and deleting it there changes nothing. Buckets whose
//! store cannot encrypt answer `NotImplemented`.

use http::{Response, StatusCode};
use sluice_storage::encrypted::BUCKET_DEFAULT;
use sluice_storage::{BucketName, Policy};

use super::S3Error;
use super::ops::OpContext;
use super::request::MAX_XML_BODY;
use super::response::{empty, no_content, xml_response};
use super::xml::{XmlWriter, parse_tree};
use crate::body::{RequestBody, ResponseBody, full_body};

/// The store's policy, or `NotImplemented` where it cannot encrypt.
fn policy(ctx: &OpContext<'_>) -> Result<Policy, S3Error> {
    ctx.backend()
        .encryption()
        .ok_or_else(|| S3Error::not_implemented("Bucket encryption on this bucket"))
}

/// The algorithm a `ServerSideEncryptionConfiguration` asks for.
fn parse(body: &[u8]) -> Result<String, S3Error> {
    let root = parse_tree(body)?;
    if root.name != "ServerSideEncryptionConfiguration" {
        return Err(S3Error::malformed_xml());
    }
    let mut rules = root.children_named("Rule");
    let (Some(rule), None) = (rules.next(), rules.next()) else {
        return Err(S3Error::malformed_xml());
    };
    let algorithm = rule
        .child("ApplyServerSideEncryptionByDefault")?
        .ok_or_else(S3Error::malformed_xml)?
        .text_of("SSEAlgorithm")?
        .ok_or_else(S3Error::malformed_xml)?
        .trim()
        .to_owned();
    Ok(algorithm)
}

fn render() -> Vec<u8> {
    let mut x = XmlWriter::new();
    x.root("ServerSideEncryptionConfiguration");
    x.open("Rule");
    x.open("ApplyServerSideEncryptionByDefault");
    x.element("SSEAlgorithm", "AES256");
    x.close("ApplyServerSideEncryptionByDefault");
    x.element("BucketKeyEnabled", "false");
    x.close("Rule");
    x.close("ServerSideEncryptionConfiguration");
    x.finish()
}

pub(super) async fn put(
    ctx: &OpContext<'_>,
    bucket: &BucketName,
    body: RequestBody,
) -> Result<Response<ResponseBody>, S3Error> {
    policy(ctx)?;
    let xml = body.collect_bounded(MAX_XML_BODY).await?;
    if parse(&xml)? != "AES256" {
        return Err(S3Error::not_implemented(
            "This SSEAlgorithm (only AES256 is offered)",
        ));
    }
    ctx.backend()
        .set_bucket_config(ctx.tenant, bucket, BUCKET_DEFAULT, Some("AES256".into()))
        .await?;
    Ok(empty(StatusCode::OK).body(full_body(Vec::new())).unwrap())
}

pub(super) async fn get(
    ctx: &OpContext<'_>,
    bucket: &BucketName,
) -> Result<Response<ResponseBody>, S3Error> {
    let policy = policy(ctx)?;
    let set = ctx
        .backend()
        .bucket_config(ctx.tenant, bucket, BUCKET_DEFAULT)
        .await?
        .is_some();
    if set || policy != Policy::Off {
        return Ok(xml_response(render()));
    }
    Err(S3Error::new(
        StatusCode::NOT_FOUND,
        "ServerSideEncryptionConfigurationNotFoundError",
        "The server side encryption configuration was not found",
    ))
}

pub(super) async fn delete(
    ctx: &OpContext<'_>,
    bucket: &BucketName,
) -> Result<Response<ResponseBody>, S3Error> {
    policy(ctx)?;
    ctx.backend()
        .set_bucket_config(ctx.tenant, bucket, BUCKET_DEFAULT, None)
        .await?;
    Ok(no_content())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn configurations_parse_to_their_algorithm() {
        let doc = |alg: &str| {
            format!(
                "<ServerSideEncryptionConfiguration><Rule><ApplyServerSideEncryptionByDefault>\
                 <SSEAlgorithm>{alg}</SSEAlgorithm></ApplyServerSideEncryptionByDefault>\
                 </Rule></ServerSideEncryptionConfiguration>"
            )
        };
        assert_eq!(parse(doc("AES256").as_bytes()).unwrap(), "AES256");
        assert_eq!(parse(doc("aws:kms").as_bytes()).unwrap(), "aws:kms");
        for bad in [
            "<ServerSideEncryptionConfiguration/>",
            "<Other><Rule/></Other>",
            "<ServerSideEncryptionConfiguration><Rule></Rule></ServerSideEncryptionConfiguration>",
            "not xml",
        ] {
            assert_eq!(
                parse(bad.as_bytes()).unwrap_err().code,
                "MalformedXML",
                "{bad}"
            );
        }
        assert!(
            String::from_utf8(render())
                .unwrap()
                .contains("<SSEAlgorithm>AES256</SSEAlgorithm>")
        );
    }
}
