//! The request phases, named once and run in order by [`handle`]:
//!
//! ```text
//! accept ─▶ limits ─▶ route (S3Op) ─▶ authenticate (Principal) ─▶ authorise (tenant route → backend)
//!        ─▶ execute (body verified while streaming) ─▶ respond (errors through S3Error) ─▶ log
//! ```
//!
//! Every error from any phase becomes a response in exactly one place, `S3Error::into_response`,
//! and the log line is written for every request whatever happened.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use http::{HeaderName, HeaderValue, Request, Response, StatusCode};
use hyper::body::Incoming;
use sluice_sigv4::{EMPTY_SHA256_DIGEST, SigV4Error};

use crate::auth::{Principal, authenticate};
use crate::body::{RequestBody, ResponseBody};
use crate::gateway::Gateway;
use crate::plugins::{Decision as PluginDecision, Facts};
use crate::s3::bucket::list_buckets;
use crate::s3::ops::{OpContext, execute};
use crate::s3::router::{route, target};
use crate::s3::{Fault, S3Error, Target, cors};
use sluice_plugin_host::types::{Requirements, Route as PluginRoute, TlsVersion};

// Built once: a header name from a `&str` is parsed and validated on every insert.
const X_AMZ_REQUEST_ID: HeaderName = HeaderName::from_static("x-amz-request-id");
const X_AMZ_ID_2: HeaderName = HeaderName::from_static("x-amz-id-2");

/// What the connection a request arrived on allows.
#[derive(Debug, Clone, Copy)]
pub struct ConnInfo {
    pub peer: SocketAddr,
    /// The TLS version of the connection; `None` on plain HTTP.
    pub tls: Option<TlsVersion>,
    /// False on plain-HTTP listeners unless `danger_accept_unsigned_payload` is set.
    pub accept_unsigned_payload: bool,
}

pub async fn handle(
    gateway: Arc<Gateway>,
    req: Request<Incoming>,
    conn: ConnInfo,
) -> Response<ResponseBody> {
    let (mut parts, incoming) = req.into_parts();
    let mut line = AccessLine {
        request_id: new_request_id(),
        peer: conn.peer,
        tls: conn.tls.is_some(),
        method: parts.method.clone(),
        path: parts.uri.path().to_owned(),
        tenant: String::new(),
        op: "Unknown",
        plugins: String::new(),
        status: None,
        started: Instant::now(),
    };
    let head = parts.method == http::Method::HEAD;
    let host = parts
        .headers
        .get(http::header::HOST)
        .and_then(|h| h.to_str().ok())
        .map(str::to_owned)
        .or_else(|| parts.uri.authority().map(|a| a.to_string()));
    let mut resource = Target::default();
    // Set once the request's tenant and bucket are known, so that error responses of
    // cross-origin requests carry CORS headers too (browsers cannot read them otherwise).
    let mut cors_target = None;
    let request_has_body = !http_body::Body::is_end_stream(&incoming);
    let http1 = parts.version <= http::Version::HTTP_11;

    let result = async {
        check_header_size(&parts.headers, gateway.limits().max_header_bytes)?;
        check_protocol(&parts)?;
        resource = target(
            host.as_deref(),
            parts.uri.path(),
            &gateway.s3().base_domains,
        )?;
        if parts.method == http::Method::OPTIONS {
            // A CORS preflight carries no credentials; it reveals only CORS policy.
            line.op = "PreflightCors";
            let bucket = resource
                .bucket
                .as_deref()
                .ok_or_else(S3Error::method_not_allowed)?;
            let bucket = sluice_storage::BucketName::parse(bucket)
                .map_err(|e| S3Error::from(sluice_storage::StorageError::from(e)))?;
            return cors::preflight(
                gateway.routes_to(&bucket),
                &bucket,
                &parts.headers,
                &line.request_id,
            )
            .await;
        }
        // Routed first (the op names the log line) but answered only after authentication: an
        // anonymous caller learns nothing about what Sluice supports, and cannot make it log.
        let op = route(&parts.method, &resource, parts.uri.query(), &parts.headers);
        if let Ok(op) = &op {
            line.op = op.name();
        }
        let principal = authenticate(&mut parts, gateway.keys(), &gateway.s3().region, now_unix())?;
        line.tenant.clone_from(&principal.tenant);
        let op = op?;
        check_payload_protection(&principal, request_has_body, conn.accept_unsigned_payload)?;
        if !request_has_body {
            check_empty_payload(&principal)?;
            // HTTP/2 frames bodies itself and may omit content-length: a stream that ended
            // with its headers declares an empty body. (HTTP/1 without one is a 411.)
            if !http1 && !parts.headers.contains_key(http::header::CONTENT_LENGTH) {
                parts
                    .headers
                    .insert(http::header::CONTENT_LENGTH, HeaderValue::from_static("0"));
            }
        }
        let tenant = gateway.tenant(&principal.tenant).ok_or_else(|| {
            S3Error::internal(format!("key {} names unknown tenant", principal.access_id))
        })?;
        let decision = run_plugins(
            &gateway,
            tenant,
            &op,
            &parts,
            &principal,
            conn,
            request_has_body,
            &mut line,
        )?;
        let Some(bucket) = op.bucket() else {
            check_requirements(&decision, conn, None, &parts.headers)?;
            let plugin_route = |bucket: &sluice_storage::BucketName| {
                plugin_route_of(
                    &gateway,
                    tenant,
                    bucket,
                    &parts,
                    &principal,
                    conn,
                    &line.request_id,
                )
            };
            return list_buckets(&gateway, tenant, &plugin_route).await;
        };
        let mut ctx = authorise(
            &gateway,
            tenant,
            bucket,
            &parts,
            &line.request_id,
            decision.route.as_ref(),
        )?;
        ctx.tls = conn.tls.is_some();
        check_requirements(&decision, conn, Some(ctx.backend.as_ref()), &parts.headers)?;
        if parts.headers.contains_key(http::header::ORIGIN) {
            cors_target = Some((bucket.clone(), ctx.backend.clone(), ctx.tenant.clone()));
        }
        let body = RequestBody::new(
            incoming,
            &principal.verified,
            &parts.headers,
            gateway.limits().body,
        )?;
        execute(op, ctx, body).await
    }
    .await;

    let mut response = match result {
        Ok(response) => response,
        Err(err) => {
            // Client faults are the access line's business; anything else is an error for the
            // operator, with the request id that the client was also given.
            if err.fault() != Fault::Client {
                tracing::error!(
                    request_id = line.request_id.as_str(),
                    code = err.code,
                    message = %err.message,
                    detail = err.detail.as_deref().unwrap_or_default(),
                    "request failed"
                );
            } else {
                tracing::debug!(
                    request_id = line.request_id.as_str(),
                    code = err.code,
                    message = %err.message,
                    "request refused"
                );
            }
            let mut response = err.into_response(&line.request_id, &resource.resource(), head);
            // The request body may be partly unread: on HTTP/1 the connection cannot carry
            // another request, so say so rather than let the client reuse it and fail.
            if request_has_body && http1 {
                response
                    .headers_mut()
                    .insert(http::header::CONNECTION, HeaderValue::from_static("close"));
            }
            response
        }
    };
    if let Some((bucket, backend, tenant_id)) = &cors_target {
        cors::decorate(
            backend.as_ref(),
            tenant_id,
            bucket,
            &parts.method,
            &parts.headers,
            response.headers_mut(),
            &line.request_id,
        )
        .await;
    }
    let headers = response.headers_mut();
    if http1 && !request_has_body && expects_continue(&parts.headers) {
        // hyper sends no `100 Continue` for an empty body, and botocore (boto/botocore#3010)
        // then misreads the next response on the connection: the aws CLI loses an UploadPart
        // when a sync also puts an empty file. Such a connection ends with its answer.
        headers.insert(http::header::CONNECTION, HeaderValue::from_static("close"));
    }
    if let Ok(v) = HeaderValue::from_str(&line.request_id) {
        headers.insert(X_AMZ_REQUEST_ID, v.clone());
        headers.insert(X_AMZ_ID_2, v);
    }
    headers.insert(http::header::SERVER, HeaderValue::from_static("Sluice"));
    line.status = Some(response.status());
    response
}

fn expects_continue(headers: &http::HeaderMap) -> bool {
    headers
        .get(http::header::EXPECT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("100-continue"))
}

/// nginx's status for a request whose client closed the connection before the answer.
const CLIENT_CLOSED_REQUEST: u16 = 499;

/// One request's access log line (target `sluice::access`), written when it drops: at the end
/// of [`handle`] with the response's status (before a response body streams: a download cut
/// short is logged with its status), or with 499 if hyper dropped the handler first because the
/// client went away while it waited (on HTTP/2, a stream reset).
#[derive(Debug)]
struct AccessLine {
    request_id: String,
    peer: SocketAddr,
    tls: bool,
    method: http::Method,
    path: String,
    tenant: String,
    op: &'static str,
    /// What each plugin decided (`name.route=…`, `name.authorize=…`), if any ran.
    plugins: String,
    status: Option<StatusCode>,
    started: Instant,
}

impl Drop for AccessLine {
    fn drop(&mut self) {
        tracing::info!(
            target: "sluice::access",
            request_id = self.request_id.as_str(),
            peer = %self.peer,
            tls = self.tls,
            tenant = self.tenant.as_str(),
            op = self.op,
            plugins = self.plugins.as_str(),
            method = %self.method,
            path = self.path.as_str(),
            status = match self.status {
                Some(status) => status.as_u16(),
                // Dropped while a handler panic unwinds: a server error, not the client's doing.
                None if std::thread::panicking() => 500,
                None => CLIENT_CLOSED_REQUEST,
            },
            elapsed_ms = self.started.elapsed().as_secs_f64() * 1000.0,
        );
    }
}

/// The plugin phase: the tenant's plugin chain (if it has one) decides on the request, after
/// authentication and before its route is used. What each plugin decided goes into the access
/// line.
#[allow(clippy::too_many_arguments)]
fn run_plugins(
    gateway: &Gateway,
    tenant: &crate::config::TenantConfig,
    op: &crate::s3::S3Op,
    parts: &http::request::Parts,
    principal: &Principal,
    conn: ConnInfo,
    has_body: bool,
    line: &mut AccessLine,
) -> Result<PluginDecision, S3Error> {
    let chain = gateway.plugin_chain(tenant);
    let Some(plugins) = gateway.plugins().filter(|_| !chain.is_empty()) else {
        return Ok(PluginDecision {
            route: None,
            requirements: Requirements::empty(),
        });
    };
    let configured = op.bucket().and_then(|b| Some((b, tenant.route_for(b)?)));
    let facts = Facts {
        request_id: &line.request_id,
        tenant: tenant.id.as_str(),
        access_key_id: &principal.access_id,
        op,
        parts,
        peer: conn.peer,
        tls: conn.tls,
        presigned: principal.presigned,
        payload: &principal.verified.payload,
        has_body,
        encryption: configured.map(|(_, r)| r.encryption).unwrap_or_default(),
    };
    let configured = configured.map(|(_, r)| plugin_view(r));
    let mut log = String::with_capacity(80);
    let decision = plugins.decide(
        chain,
        &facts,
        configured,
        &|route| gateway.check_plugin_route(tenant, route),
        &mut log,
    );
    line.plugins = log;
    decision
}

/// The backend the tenant's plugins send `bucket` to (for ListBuckets, as if the request were
/// a HeadBucket of it), if they choose one.
fn plugin_route_of(
    gateway: &Gateway,
    tenant: &crate::config::TenantConfig,
    bucket: &sluice_storage::BucketName,
    parts: &http::request::Parts,
    principal: &Principal,
    conn: ConnInfo,
    request_id: &str,
) -> Option<String> {
    let chain = gateway.plugin_chain(tenant);
    let plugins = gateway.plugins().filter(|_| !chain.is_empty())?;
    let op = crate::s3::S3Op::Bucket(bucket.clone(), crate::s3::router::BucketOp::Head);
    let configured = tenant.route_for(bucket);
    let facts = Facts {
        request_id,
        tenant: tenant.id.as_str(),
        access_key_id: &principal.access_id,
        op: &op,
        parts,
        peer: conn.peer,
        tls: conn.tls,
        presigned: principal.presigned,
        payload: &principal.verified.payload,
        has_body: false,
        encryption: configured.map(|r| r.encryption).unwrap_or_default(),
    };
    plugins
        .route_of(chain, &facts, configured.map(plugin_view), &|route| {
            gateway.check_plugin_route(tenant, route)
        })
        .map(|route| route.backend)
}

/// A configured route as plugins see it.
fn plugin_view(route: &crate::config::Route) -> PluginRoute {
    PluginRoute {
        backend: route.backend.clone(),
        target_bucket: route.target_bucket.as_ref().map(|t| t.as_str().to_owned()),
        key_prefix: Some(route.key_prefix.clone()).filter(|p| !p.is_empty()),
    }
}

/// What `allow-if` verdicts require: TLS, and a route that encrypts what it writes (a route
/// whose policy is `off` satisfies it only for a request that asks for encryption itself).
fn check_requirements(
    decision: &PluginDecision,
    conn: ConnInfo,
    store: Option<&dyn sluice_storage::Backend>,
    headers: &http::HeaderMap,
) -> Result<(), S3Error> {
    let needs = decision.requirements;
    if needs.contains(Requirements::TLS) && conn.tls.is_none() {
        return Err(S3Error::access_denied(
            "A plugin's policy requires this request to be sent over TLS.",
        ));
    }
    if needs.contains(Requirements::ENCRYPTION) {
        let asks = headers.contains_key("x-amz-server-side-encryption")
            || headers.contains_key("x-amz-server-side-encryption-customer-algorithm");
        let encrypts = match store.and_then(|s| s.encryption()) {
            Some(sluice_storage::Policy::On | sluice_storage::Policy::Required) => true,
            Some(sluice_storage::Policy::Off) => asks,
            None => false,
        };
        if !encrypts {
            return Err(S3Error::access_denied(
                "A plugin's policy requires encryption at rest, which this request's route does not give.",
            ));
        }
    }
    Ok(())
}

/// The tenant may only reach buckets its routes name (or, where its plugins chose one, the
/// plugin's route); the route picks the backend.
fn authorise<'a>(
    gateway: &'a Gateway,
    tenant: &'a crate::config::TenantConfig,
    bucket: &sluice_storage::BucketName,
    parts: &'a http::request::Parts,
    request_id: &'a str,
    plugin_route: Option<&(Arc<str>, PluginRoute)>,
) -> Result<OpContext<'a>, S3Error> {
    let (backend, passthrough) = match plugin_route {
        Some((plugin, route)) => {
            let store = gateway.plugin_store(tenant, bucket, route).map_err(|e| {
                S3Error::internal(format!("plugin {plugin}'s route could not be used: {e}"))
            })?;
            (store, false)
        }
        None => {
            let (route, backend) = gateway.route_for(tenant, bucket).ok_or_else(|| {
                S3Error::access_denied(format!(
                    "No route for bucket {bucket} is configured for this tenant."
                ))
            })?;
            (Arc::clone(backend), route.passthrough)
        }
    };
    Ok(OpContext {
        tenant: &tenant.id,
        region: &gateway.s3().region,
        backend,
        method: &parts.method,
        passthrough,
        gateway,
        tenant_config: tenant,
        headers: &parts.headers,
        query: parts.uri.query(),
        request_id,
        tls: false,
    })
}

/// On plain HTTP, a body the signature does not cover could have been changed on the way:
/// refuse it unless the listener explicitly accepts that risk.
fn check_payload_protection(
    principal: &Principal,
    has_body: bool,
    accept_unsigned: bool,
) -> Result<(), S3Error> {
    use sluice_sigv4::PayloadMode;
    let unsigned = matches!(
        principal.verified.payload,
        PayloadMode::Unsigned | PayloadMode::StreamingUnsignedTrailer
    );
    if unsigned && has_body && !accept_unsigned {
        return Err(S3Error::access_denied(
            "Unsigned payloads are refused on this plain-HTTP listener: use TLS, sign the payload, \
             or set danger_accept_unsigned_payload on the listener.",
        ));
    }
    Ok(())
}

/// A request without a body may not claim one: a signed hash other than the empty body's, or
/// an aws-chunked payload, is a signature over something that never arrived.
fn check_empty_payload(principal: &Principal) -> Result<(), S3Error> {
    use sluice_sigv4::PayloadMode;
    match principal.verified.payload {
        PayloadMode::Signed(hash) if hash != EMPTY_SHA256_DIGEST => {
            Err(S3Error::from(SigV4Error::ContentSha256Mismatch)
                .with("ClientComputedContentSHA256", hex::encode(hash))
                .with("S3ComputedContentSHA256", sluice_sigv4::EMPTY_SHA256))
        }
        mode if mode.is_chunked() => Err(S3Error::invalid_request(
            "An aws-chunked x-amz-content-sha256 was sent with an empty body.",
        )),
        _ => Ok(()),
    }
}

/// Headers Sluice reads one value of: a second copy would be ignored here but might be read
/// by something else on the path. (The headers that carry authentication are checked by
/// `sluice_sigv4::parse_auth`, `x-amz-checksum-*` by the body adapter.)
const SINGLE_VALUED_HEADERS: [&str; 13] = [
    "content-length",
    "content-md5",
    "content-type",
    "expect",
    "range",
    "x-amz-copy-source",
    "x-amz-copy-source-range",
    "x-amz-decoded-content-length",
    "x-amz-metadata-directive",
    "x-amz-sdk-checksum-algorithm",
    "x-amz-tagging",
    "x-amz-tagging-directive",
    "x-amz-trailer",
];

/// HTTP rules hyper leaves to the application: HTTP/1.1 requires exactly one `Host`
/// (RFC 9112 §3.2), and the only expectation there is is `100-continue` (RFC 9110 §10.1.1).
fn check_protocol(parts: &http::request::Parts) -> Result<(), S3Error> {
    let hosts = parts.headers.get_all(http::header::HOST).iter().count();
    if hosts > 1 || (hosts == 0 && parts.version == http::Version::HTTP_11) {
        return Err(S3Error::invalid_request(
            "An HTTP/1.1 request must carry exactly one Host header.",
        ));
    }
    if let Some(name) = sluice_sigv4::repeated_header(&parts.headers, &SINGLE_VALUED_HEADERS) {
        return Err(S3Error::invalid_argument(format!(
            "The {name} header appears more than once."
        ))
        .with("ArgumentName", name));
    }
    if let Some(expect) = parts.headers.get(http::header::EXPECT)
        && !expect.as_bytes().eq_ignore_ascii_case(b"100-continue")
    {
        return Err(S3Error::new(
            StatusCode::EXPECTATION_FAILED,
            "ExpectationFailed",
            "The only expectation supported is 100-continue.",
        ));
    }
    Ok(())
}

/// Most header fields accepted in one request (each value counts). SDKs send about twenty; room
/// is left for many `x-amz-meta-*` fields within S3's 2 KiB of metadata, and for browsers,
/// which send each cookie as a field of its own over HTTP/2.
pub const MAX_HEADERS: usize = 200;

fn check_header_size(headers: &http::HeaderMap, limit: usize) -> Result<(), S3Error> {
    if headers.len() > MAX_HEADERS {
        return Err(S3Error::new(
            StatusCode::BAD_REQUEST,
            "RequestHeaderSectionTooLarge",
            format!("Your request has more than {MAX_HEADERS} header fields."),
        ));
    }
    let size: usize = headers
        .iter()
        .map(|(k, v)| k.as_str().len() + v.len() + 4)
        .sum();
    if size > limit {
        return Err(S3Error::new(
            StatusCode::BAD_REQUEST,
            "RequestHeaderSectionTooLarge",
            format!(
                "Your request header section exceeds the maximum allowed size of {limit} bytes."
            ),
        ));
    }
    Ok(())
}

/// A request id unique within this process and across restarts: a random prefix drawn once,
/// then a counter. (A random id per request cost a getrandom syscall on the hot path.)
fn new_request_id() -> String {
    use std::sync::OnceLock;
    use std::sync::atomic::{AtomicU64, Ordering};
    static PREFIX: OnceLock<u32> = OnceLock::new();
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let prefix = *PREFIX.get_or_init(rand::random);
    format!(
        "{prefix:08X}{:08X}",
        COUNTER.fetch_add(1, Ordering::Relaxed) as u32
    )
}

fn now_unix() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use super::*;

    #[derive(Clone, Default)]
    struct Captured(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Captured {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    /// What dropping `line` writes to the log.
    fn logged(line: AccessLine) -> String {
        let out = Captured::default();
        let writer = out.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(move || writer.clone())
            .with_ansi(false)
            .finish();
        tracing::subscriber::with_default(subscriber, || drop(line));
        String::from_utf8(out.0.lock().unwrap().clone()).unwrap()
    }

    fn line(status: Option<StatusCode>) -> AccessLine {
        AccessLine {
            request_id: "0123456789ABCDEF".into(),
            peer: "127.0.0.1:4000".parse().unwrap(),
            tls: true,
            method: http::Method::PUT,
            path: "/b/k".into(),
            tenant: "t1".into(),
            op: "PutObject",
            plugins: "guard.authorize=allow".into(),
            status,
            started: Instant::now(),
        }
    }

    /// Every request is logged once, however it ends: with the status answered, or with 499
    /// when hyper dropped the handler because the client went away first.
    #[test]
    fn access_line_is_written_on_drop_whatever_happened() {
        let answered = logged(line(Some(StatusCode::OK)));
        assert_eq!(answered.lines().count(), 1, "{answered}");
        for field in [
            "sluice::access",
            "request_id=\"0123456789ABCDEF\"",
            "tenant=\"t1\"",
            "op=\"PutObject\"",
            "plugins=\"guard.authorize=allow\"",
            "path=\"/b/k\"",
            "status=200",
        ] {
            assert!(answered.contains(field), "{field} missing: {answered}");
        }
        let abandoned = logged(line(None));
        assert!(abandoned.contains("status=499"), "{abandoned}");
    }
}
