//! DeleteObjects: up to 1,000 keys in one `Delete` document, each deleted on its own, with
//! per-key results (`Deleted` or `Error`) and quiet mode (errors only).

use http::{Response, StatusCode};
use sluice_storage::{BucketName, ObjectKey};

use super::S3Error;
use super::ops::{MAX_LIST_XML_BODY, OpContext, xml_response};
use super::xml::{XmlWriter, parse_tree};
use crate::body::{RequestBody, ResponseBody};

const MAX_KEYS_PER_REQUEST: usize = 1000;

pub(super) async fn delete_objects(
    ctx: &OpContext<'_>,
    bucket: &BucketName,
    body: RequestBody,
) -> Result<Response<ResponseBody>, S3Error> {
    let xml = body.collect_bounded(MAX_LIST_XML_BODY).await?;
    let root = parse_tree(&xml).map_err(|_| S3Error::malformed_xml())?;
    if root.name != "Delete" {
        return Err(S3Error::malformed_xml());
    }
    let quiet = root.text_of("Quiet").is_some_and(|q| q.trim() == "true");
    let objects: Vec<_> = root.children_named("Object").collect();
    if objects.is_empty() || objects.len() > MAX_KEYS_PER_REQUEST {
        return Err(S3Error::malformed_xml());
    }
    // The whole document is checked before anything is deleted: a malformed entry must not
    // leave the request half done.
    let entries: Vec<(&str, Option<&str>)> = objects
        .iter()
        .map(|o| o.text_of("Key").map(|k| (k, o.text_of("VersionId"))))
        .collect::<Option<_>>()
        .ok_or_else(S3Error::malformed_xml)?;
    ctx.backend().head_bucket(ctx.tenant, bucket).await?;
    let mut x = XmlWriter::new();
    x.root("DeleteResult");
    for (raw_key, version) in entries {
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
                if err.status == StatusCode::INTERNAL_SERVER_ERROR {
                    tracing::error!(key = raw_key, "DeleteObjects: one key failed");
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
