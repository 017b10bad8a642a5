//! Bucket CORS: Put/Get/DeleteBucketCors, the unauthenticated `OPTIONS` preflight, and the
//! `Access-Control-*` headers on actual cross-origin requests, with S3's matching rules: the
//! first rule whose origin (one `*` wildcard allowed), method and every requested header match.
//! Browsers upload directly to buckets with presigned URLs; this is what lets them.

use http::{HeaderMap, HeaderValue, Method, Response, StatusCode};
use serde::{Deserialize, Serialize};
use sluice_storage::{Backend, BucketName, TenantId};

use super::S3Error;
use super::ops::OpContext;
use super::request::MAX_XML_BODY;
use super::response::{empty, no_content, xml_response};
use super::xml::{XmlWriter, parse_tree};
use crate::body::{RequestBody, ResponseBody, full_body, header_str};

/// Name of the bucket setting that holds the rules. DO NOT CHANGE: stored in bucket records.
const CONFIG_NAME: &str = "cors";
const MAX_RULES: usize = 100;
const METHODS: [&str; 5] = ["GET", "PUT", "POST", "DELETE", "HEAD"];

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CorsRule {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    id: Option<String>,
    origins: Vec<String>,
    methods: Vec<String>,
    #[serde(default)]
    headers: Vec<String>,
    #[serde(default)]
    expose: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    max_age: Option<u32>,
}

fn invalid(message: impl Into<std::borrow::Cow<'static, str>>) -> S3Error {
    S3Error::invalid_request(message)
}

/// Parses and validates a `CORSConfiguration` document.
pub fn parse(body: &[u8]) -> Result<Vec<CorsRule>, S3Error> {
    let root = parse_tree(body)?;
    if root.name != "CORSConfiguration" {
        return Err(S3Error::malformed_xml());
    }
    let texts = |node: &super::xml::XmlNode, name: &str| {
        node.children_named(name)
            .map(|c| c.text.trim().to_owned())
            .collect::<Vec<_>>()
    };
    let mut rules = Vec::new();
    for rule in root.children_named("CORSRule") {
        let origins = texts(rule, "AllowedOrigin");
        let methods = texts(rule, "AllowedMethod");
        if origins.is_empty() || methods.is_empty() {
            return Err(S3Error::malformed_xml());
        }
        if let Some(m) = methods.iter().find(|m| !METHODS.contains(&m.as_str())) {
            return Err(invalid(format!(
                "Found unsupported HTTP method in CORS config. Unsupported method is {m}"
            )));
        }
        if origins.iter().any(|o| o.matches('*').count() > 1) {
            return Err(invalid(
                "AllowedOrigin can not have more than one wildcard.",
            ));
        }
        if origins
            .iter()
            .any(|o| o.is_empty() || o.bytes().any(|b| b.is_ascii_control()))
        {
            return Err(invalid("AllowedOrigin is not a valid origin."));
        }
        let headers = texts(rule, "AllowedHeader");
        if headers.iter().any(|h| h.matches('*').count() > 1) {
            return Err(invalid(
                "AllowedHeader can not have more than one wildcard.",
            ));
        }
        // They are echoed into response headers: only valid header names (a CR or LF would
        // split the response).
        if headers.iter().any(|h| !is_header_name(h)) {
            return Err(invalid("AllowedHeader is not a valid header name."));
        }
        let expose = texts(rule, "ExposeHeader");
        if expose.iter().any(|h| !is_header_name(h)) {
            return Err(invalid("ExposeHeader is not a valid header name."));
        }
        let max_age = match rule.text_of("MaxAgeSeconds")? {
            Some(v) => Some(v.trim().parse().map_err(|_| S3Error::malformed_xml())?),
            None => None,
        };
        rules.push(CorsRule {
            id: rule.text_of("ID")?.map(str::to_owned),
            origins,
            methods,
            headers,
            expose,
            max_age,
        });
    }
    if rules.is_empty() || rules.len() > MAX_RULES {
        return Err(S3Error::malformed_xml());
    }
    Ok(rules)
}

/// An HTTP field name: an RFC 9110 token (which admits `*`, the wildcard).
fn is_header_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

fn render(rules: &[CorsRule]) -> Vec<u8> {
    let mut x = XmlWriter::new();
    x.root("CORSConfiguration");
    for r in rules {
        x.open("CORSRule");
        if let Some(id) = &r.id {
            x.element("ID", id);
        }
        for (name, values) in [
            ("AllowedHeader", &r.headers),
            ("AllowedMethod", &r.methods),
            ("AllowedOrigin", &r.origins),
            ("ExposeHeader", &r.expose),
        ] {
            for v in values {
                x.element(name, v);
            }
        }
        if let Some(age) = r.max_age {
            x.element("MaxAgeSeconds", &age.to_string());
        }
        x.close("CORSRule");
    }
    x.close("CORSConfiguration");
    x.finish()
}

/// `*` matches any run of characters, once; matching is case-insensitive for headers and
/// case-sensitive for origins (as S3).
fn wildcard(pattern: &str, value: &str, case_insensitive: bool) -> bool {
    let (p, v) = if case_insensitive {
        (pattern.to_ascii_lowercase(), value.to_ascii_lowercase())
    } else {
        (pattern.to_owned(), value.to_owned())
    };
    match p.split_once('*') {
        None => p == v,
        Some((head, tail)) => {
            v.len() >= head.len() + tail.len() && v.starts_with(head) && v.ends_with(tail)
        }
    }
}

impl CorsRule {
    fn matches(&self, origin: &str, method: &str, headers: &[&str]) -> bool {
        self.origins.iter().any(|o| wildcard(o, origin, false))
            && self.methods.iter().any(|m| m == method)
            && headers.iter().all(|h| {
                self.headers
                    .iter()
                    .any(|allowed| wildcard(allowed, h, true))
            })
    }

    /// The response headers this rule grants `origin`.
    fn grant(&self, origin: &str, headers: &mut HeaderMap) {
        let allow_origin = if self.origins.iter().any(|o| o == "*") {
            "*"
        } else {
            origin
        };
        let mut set = |name: &'static str, value: String| {
            if let Ok(v) = HeaderValue::from_str(&value) {
                headers.insert(name, v);
            }
        };
        set("access-control-allow-origin", allow_origin.to_owned());
        set("access-control-allow-methods", self.methods.join(", "));
        if !self.expose.is_empty() {
            set("access-control-expose-headers", self.expose.join(", "));
        }
        if let Some(age) = self.max_age {
            set("access-control-max-age", age.to_string());
        }
        if allow_origin != "*" {
            set("access-control-allow-credentials", "true".to_owned());
        }
    }
}

async fn rules_of(
    backend: &dyn Backend,
    tenant: &TenantId,
    bucket: &BucketName,
) -> Result<Option<Vec<CorsRule>>, S3Error> {
    match backend.bucket_config(tenant, bucket, CONFIG_NAME).await? {
        Some(json) => serde_json::from_str(&json)
            .map(Some)
            .map_err(|e| S3Error::internal(format!("stored CORS rules unreadable: {e}"))),
        None => Ok(None),
    }
}

/// The bucket's rules for answering a CORS check, where a failure to read them cannot become
/// the response: it is logged (with the request id) and treated as no rules, so nothing is
/// granted.
async fn rules_for_check(
    backend: &dyn Backend,
    tenant: &TenantId,
    bucket: &BucketName,
    request_id: &str,
) -> Option<Vec<CorsRule>> {
    match rules_of(backend, tenant, bucket).await {
        Ok(rules) => rules,
        Err(err) => {
            if err.fault() != super::Fault::Client {
                tracing::error!(
                    request_id,
                    code = err.code,
                    detail = err.detail.as_deref().unwrap_or_default(),
                    "reading CORS rules failed; answering as if the bucket had none"
                );
            }
            None
        }
    }
}

pub(super) async fn put(
    ctx: &OpContext<'_>,
    bucket: &BucketName,
    body: RequestBody,
) -> Result<Response<ResponseBody>, S3Error> {
    let xml = body.collect_bounded(MAX_XML_BODY).await?;
    let rules = parse(&xml)?;
    let json = serde_json::to_string(&rules).expect("rules serialise");
    ctx.backend()
        .set_bucket_config(ctx.tenant, bucket, CONFIG_NAME, Some(json))
        .await?;
    Ok(empty(StatusCode::OK).body(full_body(Vec::new())).unwrap())
}

pub(super) async fn get(
    ctx: &OpContext<'_>,
    bucket: &BucketName,
) -> Result<Response<ResponseBody>, S3Error> {
    match rules_of(ctx.backend(), ctx.tenant, bucket).await? {
        Some(rules) => Ok(xml_response(render(&rules))),
        None => Err(S3Error::new(
            StatusCode::NOT_FOUND,
            "NoSuchCORSConfiguration",
            "The CORS configuration does not exist",
        )),
    }
}

pub(super) async fn delete(
    ctx: &OpContext<'_>,
    bucket: &BucketName,
) -> Result<Response<ResponseBody>, S3Error> {
    ctx.backend()
        .set_bucket_config(ctx.tenant, bucket, CONFIG_NAME, None)
        .await?;
    Ok(no_content())
}

/// Answers an `OPTIONS` preflight. It carries no credentials, so the bucket is looked up in
/// every tenant whose routes reach it; the first rule that matches grants the request. A
/// preflight only reveals CORS policy: the actual request is authenticated as usual.
pub async fn preflight(
    candidates: Vec<(&TenantId, &dyn Backend)>,
    bucket: &BucketName,
    headers: &HeaderMap,
    request_id: &str,
) -> Result<Response<ResponseBody>, S3Error> {
    let forbidden = |why: &'static str| S3Error::new(StatusCode::FORBIDDEN, "AccessForbidden", why);
    let origin = header_str(headers, "origin").ok_or_else(|| {
        S3Error::invalid_request("Insufficient information. Origin request header needed.")
    })?;
    let method = header_str(headers, "access-control-request-method")
        .ok_or_else(|| S3Error::invalid_request("Invalid Access-Control-Request-Method: null"))?;
    let requested: Vec<&str> = header_str(headers, "access-control-request-headers")
        .map(|h| {
            h.split(',')
                .map(str::trim)
                .filter(|h| !h.is_empty())
                .collect()
        })
        .unwrap_or_default();
    // Bucket names are per tenant: a preflight is answered only when exactly one tenant holds
    // a bucket of this name, so one tenant's rules can never grant requests to another's.
    let mut owners = Vec::new();
    for (tenant, backend) in candidates {
        if backend.head_bucket(tenant, bucket).await.is_ok() {
            owners.push((tenant, backend));
        }
    }
    if let [(tenant, backend)] = owners.as_slice()
        && let Some(rules) = rules_for_check(*backend, tenant, bucket, request_id).await
        && let Some(rule) = rules.iter().find(|r| r.matches(origin, method, &requested))
    {
        let mut response = empty(StatusCode::OK).body(full_body(Vec::new())).unwrap();
        rule.grant(origin, response.headers_mut());
        if !requested.is_empty()
            && let Ok(v) = HeaderValue::from_str(&requested.join(", "))
        {
            response
                .headers_mut()
                .insert("access-control-allow-headers", v);
        }
        return Ok(response);
    }
    // One answer for every refusal: an unauthenticated caller learns nothing about which
    // buckets exist or have CORS rules.
    Err(forbidden(
        "CORSResponse: This CORS request is not allowed. This is usually because the evalution of Origin, request method / Access-Control-Request-Method or Access-Control-Request-Headers are not whitelisted by the resource's CORS spec.",
    ))
}

/// Adds `Access-Control-*` headers to the response of an actual cross-origin request.
pub async fn decorate(
    backend: &dyn Backend,
    tenant: &TenantId,
    bucket: &BucketName,
    method: &Method,
    request: &HeaderMap,
    response: &mut HeaderMap,
    request_id: &str,
) {
    let Some(origin) = header_str(request, "origin") else {
        return;
    };
    let Some(rules) = rules_for_check(backend, tenant, bucket, request_id).await else {
        return;
    };
    // The answer depends on the Origin whenever the bucket has rules: caches must know.
    response.append(http::header::VARY, HeaderValue::from_static("Origin"));
    if let Some(rule) = rules
        .iter()
        .find(|r| r.matches(origin, method.as_str(), &[]))
    {
        rule.grant(origin, response);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DOC: &[u8] = br#"<CORSConfiguration><CORSRule><AllowedOrigin>https://*.example.com</AllowedOrigin><AllowedMethod>PUT</AllowedMethod><AllowedMethod>GET</AllowedMethod><AllowedHeader>x-amz-*</AllowedHeader><AllowedHeader>content-type</AllowedHeader><ExposeHeader>ETag</ExposeHeader><MaxAgeSeconds>600</MaxAgeSeconds></CORSRule><CORSRule><AllowedOrigin>*</AllowedOrigin><AllowedMethod>GET</AllowedMethod></CORSRule></CORSConfiguration>"#;

    #[test]
    fn rules_parse_render_and_match() {
        let rules = parse(DOC).unwrap();
        assert_eq!(rules.len(), 2);
        assert_eq!(parse(&render(&rules)).unwrap(), rules);
        let up = &rules[0];
        assert!(up.matches(
            "https://app.example.com",
            "PUT",
            &["Content-Type", "x-amz-date"]
        ));
        assert!(!up.matches("https://example.org", "PUT", &[]));
        assert!(!up.matches("https://app.example.com", "DELETE", &[]));
        assert!(!up.matches("https://app.example.com", "PUT", &["authorization"]));
        assert!(rules[1].matches("http://anything", "GET", &[]));
        assert!(!rules[1].matches("http://anything", "GET", &["x-custom"]));
    }

    #[test]
    fn invalid_documents() {
        let bad_method = br#"<CORSConfiguration><CORSRule><AllowedOrigin>*</AllowedOrigin><AllowedMethod>PATCH</AllowedMethod></CORSRule></CORSConfiguration>"#;
        assert_eq!(parse(bad_method).unwrap_err().code, "InvalidRequest");
        let two_wildcards = br#"<CORSConfiguration><CORSRule><AllowedOrigin>*.*</AllowedOrigin><AllowedMethod>GET</AllowedMethod></CORSRule></CORSConfiguration>"#;
        assert_eq!(parse(two_wildcards).unwrap_err().code, "InvalidRequest");
        assert_eq!(
            parse(b"<CORSConfiguration/>").unwrap_err().code,
            "MalformedXML"
        );
    }
}
