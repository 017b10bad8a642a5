//! Building responses: the empty, no-content and XML answers every handler gives, and the
//! pieces of S3's XML and headers they share.

use http::{Response, StatusCode, header};
use sluice_storage::ObjectMeta;

use super::xml::XmlWriter;
use crate::body::{ResponseBody, full_body};

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

/// `<Owner>`: a tenant owns its buckets and objects.
pub(super) fn owner(x: &mut XmlWriter, tenant: &str) {
    x.open("Owner");
    x.element("ID", tenant);
    x.element("DisplayName", tenant);
    x.close("Owner");
}

/// An object's `Last-Modified`, as an HTTP date.
pub(super) fn http_date(meta: &ObjectMeta) -> String {
    httpdate::fmt_http_date(
        std::time::UNIX_EPOCH
            + std::time::Duration::from_millis(meta.last_modified_ms.max(0) as u64),
    )
}

/// A quoted entity tag, as S3 sends it in headers and XML.
pub(super) fn quoted(etag: &str) -> String {
    format!("\"{etag}\"")
}
