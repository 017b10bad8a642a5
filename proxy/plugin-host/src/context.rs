//! The request a plugin call is about (`resource request-context` in `wit/plugin.wit`): held
//! by the host for the length of one call, and read by the plugin through the resource's
//! methods, each of which copies only its own answer into the plugin's memory.
//!
//! A call hands the plugin a borrow of the context its [`HostState`] holds; the methods answer
//! from that context, whatever handle they are given (a plugin only ever has the one, and
//! wasmtime refuses a borrow used after its call).

use std::net::SocketAddr;

use wasmtime::component::Resource;

use crate::capabilities::HostState;
use crate::types::{
    AuthMethod, ByteRange, EncryptionPolicy, HostRequestContext, OpKind, PayloadProtection, Route,
    TlsVersion,
};

/// Everything a plugin may be told about one request. Whoever builds it leaves secret query
/// parameters out ([`is_secret_parameter`]); secret headers may stay in `headers`, as the
/// request had them: the methods never show them (see [`SECRET_HEADERS`]), and neither does
/// `Debug`, which shows header names only.
#[derive(Clone)]
pub struct RequestContext {
    pub tenant: String,
    pub access_key_id: String,
    pub operation: Operation,
    pub method: http::Method,
    /// Decoded, in the client's order.
    pub query: Vec<(String, String)>,
    /// As the request had them (cloning a request's map shares its values).
    pub headers: http::HeaderMap,
    pub source_address: SocketAddr,
    pub tls: Option<TlsVersion>,
    pub auth_method: AuthMethod,
    pub payload: PayloadProtection,
    pub content_length: Option<u64>,
    pub configured_route: Option<Route>,
    pub encryption: EncryptionPolicy,
}

impl std::fmt::Debug for RequestContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RequestContext")
            .field("tenant", &self.tenant)
            .field("access_key_id", &self.access_key_id)
            .field("operation", &self.operation)
            .field("method", &self.method)
            .field("query", &self.query)
            .field("headers", &self.headers.keys().collect::<Vec<_>>())
            .field("source_address", &self.source_address)
            .field("tls", &self.tls)
            .field("auth_method", &self.auth_method)
            .field("payload", &self.payload)
            .field("content_length", &self.content_length)
            .field("configured_route", &self.configured_route)
            .field("encryption", &self.encryption)
            .finish()
    }
}

/// The parsed S3 operation and what it names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Operation {
    pub kind: OpKind,
    /// The S3 name, e.g. `PutObject`.
    pub name: String,
    pub bucket: Option<String>,
    pub key: Option<String>,
    pub part_number: Option<u32>,
    pub upload_id: Option<String>,
    pub range: Option<ByteRange>,
    pub copy_source: Option<(String, String)>,
}

impl HostState {
    /// The context of the call under way (a plugin can only call the methods during one).
    fn context(&self) -> wasmtime::Result<&RequestContext> {
        self.context
            .as_deref()
            .ok_or_else(|| wasmtime::format_err!("a request context read outside a call"))
    }
}

/// Headers a plugin is never shown: credentials and SSE-C keys.
pub const SECRET_HEADERS: [http::HeaderName; 6] = [
    http::header::AUTHORIZATION,
    http::header::PROXY_AUTHORIZATION,
    http::header::COOKIE,
    http::HeaderName::from_static("x-amz-security-token"),
    http::HeaderName::from_static("x-amz-server-side-encryption-customer-key"),
    http::HeaderName::from_static("x-amz-copy-source-server-side-encryption-customer-key"),
];

/// Whether `name` is one of [`SECRET_HEADERS`].
pub fn is_secret_header(name: &http::HeaderName) -> bool {
    SECRET_HEADERS.contains(name)
}

/// Whether a query parameter is one a plugin is never shown: the signature and the session
/// token of a presigned URL.
pub fn is_secret_parameter(name: &str) -> bool {
    name.eq_ignore_ascii_case("x-amz-signature")
        || name.eq_ignore_ascii_case("x-amz-security-token")
}

type Ctx = Resource<RequestContext>;
type Answer<T> = wasmtime::Result<T>;

impl HostRequestContext for HostState {
    fn tenant(&mut self, _: Ctx) -> Answer<String> {
        Ok(self.context()?.tenant.clone())
    }

    fn access_key_id(&mut self, _: Ctx) -> Answer<String> {
        Ok(self.context()?.access_key_id.clone())
    }

    fn operation(&mut self, _: Ctx) -> Answer<OpKind> {
        Ok(self.context()?.operation.kind)
    }

    fn operation_name(&mut self, _: Ctx) -> Answer<String> {
        Ok(self.context()?.operation.name.clone())
    }

    fn bucket(&mut self, _: Ctx) -> Answer<Option<String>> {
        Ok(self.context()?.operation.bucket.clone())
    }

    fn key(&mut self, _: Ctx) -> Answer<Option<String>> {
        Ok(self.context()?.operation.key.clone())
    }

    fn part_number(&mut self, _: Ctx) -> Answer<Option<u32>> {
        Ok(self.context()?.operation.part_number)
    }

    fn upload_id(&mut self, _: Ctx) -> Answer<Option<String>> {
        Ok(self.context()?.operation.upload_id.clone())
    }

    fn range(&mut self, _: Ctx) -> Answer<Option<ByteRange>> {
        Ok(self.context()?.operation.range)
    }

    fn copy_source(&mut self, _: Ctx) -> Answer<Option<(String, String)>> {
        Ok(self.context()?.operation.copy_source.clone())
    }

    fn method(&mut self, _: Ctx) -> Answer<String> {
        Ok(self.context()?.method.as_str().to_owned())
    }

    fn query(&mut self, _: Ctx) -> Answer<Vec<(String, String)>> {
        Ok(self.context()?.query.clone())
    }

    fn headers(&mut self, _: Ctx) -> Answer<Vec<(String, String)>> {
        Ok(self
            .context()?
            .headers
            .iter()
            .filter(|(name, _)| !is_secret_header(name))
            .map(|(name, value)| (name.as_str().to_owned(), text(value).into_owned()))
            .collect())
    }

    fn header(&mut self, _: Ctx, name: String) -> Answer<Option<String>> {
        // `HeaderMap` looks names up case-insensitively only when given a `HeaderName`; a name
        // that is not a valid header name is in no request.
        let Ok(name) = http::HeaderName::from_bytes(name.as_bytes()) else {
            return Ok(None);
        };
        if is_secret_header(&name) {
            return Ok(None);
        }
        let mut values = self.context()?.headers.get_all(name).iter();
        let Some(first) = values.next() else {
            return Ok(None);
        };
        let mut joined = text(first).into_owned();
        for value in values {
            joined.push_str(", ");
            joined.push_str(&text(value));
        }
        Ok(Some(joined))
    }

    fn source_address(&mut self, _: Ctx) -> Answer<String> {
        Ok(self.context()?.source_address.to_string())
    }

    fn tls(&mut self, _: Ctx) -> Answer<Option<TlsVersion>> {
        Ok(self.context()?.tls)
    }

    fn auth_method(&mut self, _: Ctx) -> Answer<AuthMethod> {
        Ok(self.context()?.auth_method)
    }

    fn payload(&mut self, _: Ctx) -> Answer<PayloadProtection> {
        Ok(self.context()?.payload)
    }

    fn content_length(&mut self, _: Ctx) -> Answer<Option<u64>> {
        Ok(self.context()?.content_length)
    }

    fn configured_route(&mut self, _: Ctx) -> Answer<Option<Route>> {
        Ok(self.context()?.configured_route.clone())
    }

    fn encryption(&mut self, _: Ctx) -> Answer<EncryptionPolicy> {
        Ok(self.context()?.encryption)
    }

    fn drop(&mut self, _: Ctx) -> Answer<()> {
        // Plugins are only ever lent a context; there is nothing of theirs to drop.
        Ok(())
    }
}

/// A header value as text (bytes that are not UTF-8 replaced).
fn text(value: &http::HeaderValue) -> std::borrow::Cow<'_, str> {
    String::from_utf8_lossy(value.as_bytes())
}

/// Headers from name-value pairs (for contexts built by hand: tests, `sluice plugin test`).
pub fn header_map<'a>(
    pairs: impl IntoIterator<Item = (&'a str, &'a str)>,
) -> Result<http::HeaderMap, String> {
    let mut map = http::HeaderMap::new();
    for (name, value) in pairs {
        let name = http::HeaderName::from_bytes(name.as_bytes())
            .map_err(|_| format!("{name:?} is not a header name"))?;
        let value = http::HeaderValue::from_str(value)
            .map_err(|_| format!("{value:?} is not a header value"))?;
        map.append(name, value);
    }
    Ok(map)
}
