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
    "proxy-connection",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
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
    // A copy source names another bucket, which only the tenant's routes may reach: a forwarded
    // request never carries one (S3 stores copy on any PUT that does, whatever its query).
    if let Some(name) = ctx.headers.keys().find(|n| {
        n.as_str().starts_with("x-amz-copy-source")
            || n.as_str().starts_with("x-amz-meta-sluice-sys-")
    }) {
        return Err(S3Error::invalid_request(format!(
            "The {name} header is not accepted on an operation Sluice forwards."
        )));
    }
    let body = match body.declared_len(ctx.headers) {
        Some(len) if len > 0 => Some((body.into_put_body(), len)),
        _ => None,
    };
    let request = Forward {
        method: ctx.method.clone(),
        // The client's presigned parameters authenticated it to Sluice; the upstream request
        // carries Sluice's own signature.
        query: query_pairs(ctx.query)
            .filter(|(k, _)| !k.to_ascii_lowercase().starts_with("x-amz-"))
            .collect(),
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
        if name == http::header::CONTENT_ENCODING {
            let rest: Vec<&str> = value
                .to_str()
                .unwrap_or_default()
                .split(',')
                .map(str::trim)
                .filter(|v| !v.is_empty() && !v.eq_ignore_ascii_case("aws-chunked"))
                .collect();
            if let Ok(v) = http::HeaderValue::from_str(&rest.join(","))
                && !rest.is_empty()
            {
                out.append(name.clone(), v);
            }
            continue;
        }
        out.append(name.clone(), value.clone());
    }
    out
}
