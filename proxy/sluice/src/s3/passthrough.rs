//! Operations Sluice does not model (bucket policy, lifecycle, versioning calls, object lock,
//! ACLs, ...): on a route that says `passthrough: true` (an upstream route that only renames the
//! bucket) they are forwarded verbatim, re-signed with the backend's credentials, and its answer
//! is returned as it is; everywhere else they answer `NotImplemented`. With passthrough a tenant
//! can change the upstream bucket's settings, hence off by default.

use http::{HeaderMap, Response};
use sluice_storage::{BucketName, Forward, ObjectKey};

use super::S3Error;
use super::ops::OpContext;
use super::router::query_pairs;
use crate::body::{RequestBody, ResponseBody, stream_body};

/// Headers that are the client's connection or its signature, not the operation: Sluice's own
/// request to the upstream carries its own.
const NOT_FORWARDED: &[&str] = &[
    "authorization",
    "connection",
    "content-length",
    "expect",
    "host",
    "keep-alive",
    "transfer-encoding",
    "x-amz-content-sha256",
    "x-amz-date",
    "x-amz-decoded-content-length",
    "x-amz-sdk-checksum-algorithm",
    "x-amz-security-token",
    "x-amz-trailer",
];

pub(super) async fn forward(
    ctx: &OpContext<'_>,
    bucket: &BucketName,
    key: Option<&ObjectKey>,
    what: &str,
    body: RequestBody,
) -> Result<Response<ResponseBody>, S3Error> {
    if !ctx.passthrough {
        return Err(S3Error::not_implemented(what));
    }
    let body = match body.declared_len(ctx.headers) {
        Some(len) if len > 0 => Some((body.into_put_body(), len)),
        _ => None,
    };
    let request = Forward {
        method: ctx.method.clone(),
        query: query_pairs(ctx.query).collect(),
        headers: forwarded_headers(ctx.headers),
        body,
    };
    let answer = ctx
        .backend()
        .forward(ctx.tenant, bucket, key, request)
        .await?;
    let mut response = Response::builder()
        .status(answer.status)
        .body(stream_body(answer.body))
        .map_err(S3Error::internal)?;
    *response.headers_mut() = answer.headers;
    Ok(response)
}

fn forwarded_headers(headers: &HeaderMap) -> HeaderMap {
    let mut out = HeaderMap::new();
    for (name, value) in headers {
        if NOT_FORWARDED.contains(&name.as_str()) {
            continue;
        }
        // aws-chunked framed the client's body; what is forwarded is the decoded body.
        if name == http::header::CONTENT_ENCODING
            && value
                .to_str()
                .is_ok_and(|v| v.eq_ignore_ascii_case("aws-chunked"))
        {
            continue;
        }
        out.append(name.clone(), value.clone());
    }
    out
}
