//! DeleteObjects: up to 1,000 keys in one `Delete` document, each deleted on its own, with
//! per-key results (`Deleted` or `Error`) and quiet mode (errors only).

use http::Response;
use sluice_storage::{BucketName, ObjectKey};

use super::S3Error;
use super::ops::OpContext;
use super::request::MAX_LIST_XML_BODY;
use super::response::xml_response;
use super::xml::{MalformedXml, XmlWriter, parse_tree};
use crate::body::{RequestBody, ResponseBody};

const MAX_KEYS_PER_REQUEST: usize = 1000;

/// A `Delete` document: the keys (each with an optional version id) and quiet mode.
#[derive(Debug, PartialEq, Eq)]
pub struct DeleteRequest {
    pub quiet: bool,
    pub objects: Vec<(String, Option<String>)>,
}

/// Parses a whole `Delete` document. It is checked entirely before anything is deleted: a
/// malformed entry must not leave the request half done.
pub fn parse_delete(xml: &[u8]) -> Result<DeleteRequest, S3Error> {
    let root = parse_tree(xml)?;
    if root.name != "Delete" {
        return Err(S3Error::malformed_xml());
    }
    let quiet = match root.text_of("Quiet")?.map(str::trim) {
        None => false,
        Some(q) if q.eq_ignore_ascii_case("false") => false,
        Some(q) if q.eq_ignore_ascii_case("true") => true,
        Some(_) => return Err(S3Error::malformed_xml()),
    };
    let objects = root
        .children_named("Object")
        .map(|o| {
            let key = o.text_of("Key")?.ok_or(MalformedXml)?;
            Ok((key.to_owned(), o.text_of("VersionId")?.map(str::to_owned)))
        })
        .collect::<Result<Vec<_>, MalformedXml>>()?;
    if objects.is_empty() || objects.len() > MAX_KEYS_PER_REQUEST {
        return Err(S3Error::malformed_xml());
    }
    Ok(DeleteRequest { quiet, objects })
}

pub(super) async fn delete_objects(
    ctx: &OpContext<'_>,
    bucket: &BucketName,
    body: RequestBody,
) -> Result<Response<ResponseBody>, S3Error> {
    let xml = body.collect_bounded(MAX_LIST_XML_BODY).await?;
    let DeleteRequest { quiet, objects } = parse_delete(&xml)?;
    ctx.backend().head_bucket(ctx.tenant, bucket).await?;
    let mut x = XmlWriter::new();
    x.root("DeleteResult");
    for (raw_key, version) in &objects {
        let (raw_key, version) = (raw_key.as_str(), version.as_deref());
        let result = match (ObjectKey::parse(raw_key), version) {
            (_, Some(v)) if v != "null" => {
                Err(S3Error::invalid_argument("Invalid version id specified"))
            }
            (Ok(key), _) => ctx
                .backend()
                .delete_object(ctx.tenant, bucket, &key)
                .await
                .map_err(S3Error::from),
            (Err(e), _) => Err(S3Error::from(sluice_storage::StorageError::from(e))),
        };
        match result {
            Ok(()) if quiet => {}
            Ok(()) => {
                x.open("Deleted");
                x.element("Key", raw_key);
                if let Some(v) = version {
                    x.element("VersionId", v);
                }
                x.close("Deleted");
            }
            Err(err) => {
                if err.fault() != super::Fault::Client {
                    tracing::error!(
                        request_id = ctx.request_id,
                        key = raw_key,
                        code = err.code,
                        detail = err.detail.as_deref().unwrap_or_default(),
                        "DeleteObjects: one key failed"
                    );
                }
                x.open("Error");
                x.element("Key", raw_key);
                if let Some(v) = version {
                    x.element("VersionId", v);
                }
                x.element("Code", err.code);
                x.element("Message", &err.message);
                x.close("Error");
            }
        }
    }
    x.close("DeleteResult");
    Ok(xml_response(x.finish()))
}
