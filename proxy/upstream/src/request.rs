//! One request to an upstream: its address (path-style or virtual-hosted), query, headers and
//! body, signed with the backend's credentials, sent with timeouts and (when safe) retries, and
//! its answer checked: an S3 error document becomes a [`StorageError`] that says where it came
//! from and carries the upstream's code and message.

use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue, Method, Request, Response, StatusCode};
use hyper::body::Incoming;
use sha2::{Digest, Sha256};
use sluice_sigv4::{
    AmzDate, CanonicalSettings, ChunkSignatureChain, PayloadMode, SigningKey, SigningParams,
    uri_encode,
};
use sluice_storage::{BucketName, ObjectKey, PutBody, StorageError, UpstreamError};

use crate::backend::UpstreamBackend;
use crate::body::{self, BodyOutcome};
use crate::client::RequestBody;
use crate::xml;
use crate::{Addressing, Credentials};

/// Largest error or result document read from an upstream.
pub const MAX_DOCUMENT: usize = 4 * 1024 * 1024;
/// Attempts for a request that is safe to repeat (its body is in memory, its effect idempotent).
const ATTEMPTS: u32 = 3;

/// What a request sends.
pub enum Payload {
    Empty,
    /// A document in memory, signed by its SHA-256.
    Full(Bytes),
    /// The client's body: `len` bytes, signed by `sha256` when the client's signature already
    /// fixed it, else sent as `UNSIGNED-PAYLOAD` (over TLS or loopback).
    Stream {
        body: PutBody,
        len: u64,
        sha256: Option<[u8; 32]>,
        content_md5: Option<[u8; 16]>,
    },
}

/// What the request is about, for mapping a bodiless error answer (HEAD) to the right code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Subject {
    Service,
    Bucket,
    Object,
    Upload,
}

pub struct Call<'a> {
    pub method: Method,
    pub bucket: Option<&'a BucketName>,
    pub key: Option<&'a ObjectKey>,
    /// Parameters, unencoded; an empty value is sent as the bare name (`?uploads`).
    pub query: Vec<(String, String)>,
    pub headers: HeaderMap,
    pub payload: Payload,
    pub subject: Subject,
    /// Safe to send again after a failure (nothing streamed, the same effect twice, and an
    /// answer to the repeat that means what the first would have): reads, and the writes that
    /// say so with [`Call::repeatable`].
    repeat: bool,
}

impl<'a> Call<'a> {
    pub fn new(method: Method, subject: Subject) -> Self {
        Self {
            repeat: matches!(method, Method::GET | Method::HEAD),
            method,
            bucket: None,
            key: None,
            query: Vec::new(),
            headers: HeaderMap::new(),
            payload: Payload::Empty,
            subject,
        }
    }

    /// Marks a write whose repeat is harmless and answered alike (DeleteObject, tagging).
    pub fn repeatable(mut self) -> Self {
        self.repeat = true;
        self
    }

    pub fn bucket(mut self, bucket: &'a BucketName) -> Self {
        self.bucket = Some(bucket);
        self
    }

    pub fn object(mut self, bucket: &'a BucketName, key: &'a ObjectKey) -> Self {
        self.bucket = Some(bucket);
        self.key = Some(key);
        self
    }

    pub fn query(mut self, name: &str, value: impl Into<String>) -> Self {
        self.query.push((name.to_owned(), value.into()));
        self
    }

    /// A parameter sent only when given (an empty prefix is no prefix).
    pub fn query_some(self, name: &str, value: Option<String>) -> Self {
        match value.filter(|v| !v.is_empty()) {
            Some(value) => self.query(name, value),
            None => self,
        }
    }

    pub fn header(mut self, name: &'static str, value: &str) -> Result<Self, StorageError> {
        set(&mut self.headers, name, value)?;
        Ok(self)
    }

    pub fn payload(mut self, payload: Payload) -> Self {
        self.payload = payload;
        self
    }

    fn can_repeat(&self) -> bool {
        self.repeat && !matches!(self.payload, Payload::Stream { .. })
    }
}

/// Sets a header, refusing a value HTTP cannot carry (a client's metadata is checked before,
/// so this is only a safety net).
pub fn set(headers: &mut HeaderMap, name: &str, value: &str) -> Result<(), StorageError> {
    let name = HeaderName::from_bytes(name.as_bytes());
    let value = HeaderValue::from_str(value);
    match (name, value) {
        (Ok(name), Ok(value)) => {
            headers.insert(name, value);
            Ok(())
        }
        _ => Err(StorageError::Unsupported(
            "a header value an HTTP request cannot carry",
        )),
    }
}

impl UpstreamBackend {
    /// Sends `call` and returns the response if it succeeded (2xx, or 304 for a conditional
    /// read); any other answer is read and returned as an error.
    pub(crate) async fn send(&self, call: Call<'_>) -> Result<Response<Incoming>, StorageError> {
        let repeatable = call.can_repeat();
        let Call {
            method,
            bucket,
            key,
            query,
            mut headers,
            payload,
            subject,
            ..
        } = call;
        let uri = self.uri(bucket, key, &query)?;
        let (mode, mut stream, full) = match payload {
            Payload::Empty => (
                PayloadMode::Signed(Sha256::digest(b"").into()),
                None,
                Bytes::new(),
            ),
            Payload::Full(bytes) => {
                set(&mut headers, "content-length", &bytes.len().to_string())?;
                (
                    PayloadMode::Signed(Sha256::digest(&bytes).into()),
                    None,
                    bytes,
                )
            }
            // An empty body: hyper would never read it, so it is read (and its checks run) here,
            // and an empty document sent.
            Payload::Stream {
                body,
                len: 0,
                sha256: _,
                content_md5,
            } => {
                body::drain_empty(body, content_md5).await?;
                set(&mut headers, "content-length", "0")?;
                (
                    PayloadMode::Signed(Sha256::digest(b"").into()),
                    None,
                    Bytes::new(),
                )
            }
            Payload::Stream {
                body,
                len,
                sha256,
                content_md5,
            } => {
                let mode = match sha256 {
                    // The client signed this hash and the body passes unchanged: reuse it.
                    Some(hash) => PayloadMode::Signed(hash),
                    None if self.sign_chunks => PayloadMode::StreamingSigned,
                    None => PayloadMode::Unsigned,
                };
                if mode == PayloadMode::StreamingSigned {
                    // The object's own encoding, if any, stays after the framing's.
                    let encoding = match headers
                        .get(http::header::CONTENT_ENCODING)
                        .and_then(|v| v.to_str().ok())
                    {
                        Some(stored) => format!("aws-chunked,{stored}"),
                        None => "aws-chunked".to_owned(),
                    };
                    set(&mut headers, "content-encoding", &encoding)?;
                    set(
                        &mut headers,
                        "x-amz-decoded-content-length",
                        &len.to_string(),
                    )?;
                    let wire = body::signed_chunked_len(len);
                    set(&mut headers, "content-length", &wire.to_string())?;
                } else {
                    set(&mut headers, "content-length", &len.to_string())?;
                }
                (mode, Some((body, len, content_md5)), Bytes::new())
            }
        };
        let mut attempt = 0;
        loop {
            attempt += 1;
            let mut request_headers = headers.clone();
            let chain = self.sign(&method, &uri, &mut request_headers, &mode)?;
            let outcome = BodyOutcome::default();
            let streaming = stream.is_some();
            let request_body: RequestBody = match stream.take() {
                Some((body, len, content_md5)) => {
                    let held = body::held_back(body, len, content_md5, outcome.clone());
                    match chain {
                        Some(chain) => body::streamed(body::signed_chunks(
                            held,
                            sluice_sigv4::ChunkedEncoder::new(Some(chain), false),
                        )),
                        None => body::streamed(held),
                    }
                }
                None if full.is_empty() => body::empty(),
                None => body::full(full.clone()),
            };
            let mut request = Request::builder()
                .method(method.clone())
                .uri(uri.clone())
                .body(request_body)
                .map_err(|e| self.unreachable(format!("cannot build the request: {e}")))?;
            *request.headers_mut() = request_headers;
            let answer = self.exchange(request, &outcome, streaming).await;
            let retry = |status: Option<StatusCode>| {
                repeatable
                    && attempt < ATTEMPTS
                    && status.is_none_or(|s| matches!(s.as_u16(), 500 | 502 | 503 | 504))
            };
            match answer {
                Ok(response)
                    if response.status().is_success()
                        || response.status() == StatusCode::NOT_MODIFIED =>
                {
                    return Ok(response);
                }
                Ok(response) if retry(Some(response.status())) => {
                    tracing::debug!(backend = %self.name, status = %response.status(), attempt, "upstream answered a server error; retrying");
                }
                Ok(response) => return Err(self.error_of(response, &method, subject).await),
                Err(err) if retry(None) && matches!(err, StorageError::Unreachable { .. }) => {
                    tracing::debug!(backend = %self.name, error = %err, attempt, "upstream unreachable; retrying");
                }
                Err(err) => return Err(err),
            }
            tokio::time::sleep(Duration::from_millis(100 * 4u64.pow(attempt - 1))).await;
        }
    }

    /// One exchange: the request, bounded by the connect timeout (in the connector) and by
    /// `first_byte` from the moment the whole body was handed over.
    async fn exchange(
        &self,
        request: Request<RequestBody>,
        outcome: &BodyOutcome,
        streaming: bool,
    ) -> Result<Response<Incoming>, StorageError> {
        let first_byte = self.timeouts.first_byte;
        let response = self.client.request(request);
        let result = if streaming {
            let deadline = async {
                outcome.sent.notified().await;
                tokio::time::sleep(first_byte).await;
            };
            tokio::select! {
                result = response => Some(result),
                () = deadline => None,
            }
        } else {
            tokio::time::timeout(first_byte, response).await.ok()
        };
        match result {
            None => {
                Err(self.unreachable(format!("no answer within {} s", first_byte.as_secs_f32())))
            }
            Some(Ok(response)) => Ok(response),
            // The client's own body failed: its error, not the upstream's.
            Some(Err(err)) => Err(outcome
                .take_error()
                .unwrap_or_else(|| self.unreachable(error_chain(&err)))),
        }
    }

    /// Signs the request; for a signed chunk body, returns the chain its chunks continue.
    fn sign(
        &self,
        method: &Method,
        uri: &http::Uri,
        headers: &mut HeaderMap,
        mode: &PayloadMode,
    ) -> Result<Option<ChunkSignatureChain>, StorageError> {
        let credentials: std::sync::Arc<Credentials> = self.credentials.get();
        let date = AmzDate::from_unix(now_unix());
        let key = self.signing_key(&credentials, &date);
        let params = SigningParams {
            access_key_id: &credentials.access_key_id,
            secret: &credentials.secret,
            session_token: credentials.session_token.as_deref(),
            region: &self.region,
            service: "s3",
            date: &date,
            settings: CanonicalSettings::S3,
        };
        let seed = sluice_sigv4::sign_request_with_key(method, uri, headers, mode, &params, &key)
            .map_err(|e| self.unreachable(format!("cannot sign the request: {e}")))?;
        Ok((*mode == PayloadMode::StreamingSigned)
            .then(|| ChunkSignatureChain::new(key, &date, &params.scope(), seed)))
    }

    /// The day's signing key for these credentials, derived once (four HMACs) and kept until
    /// the date or the credentials change.
    fn signing_key(&self, credentials: &std::sync::Arc<Credentials>, date: &AmzDate) -> SigningKey {
        let day = date.date_stamp();
        let mut cached = self.signing_key.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((for_credentials, for_day, key)) = cached.as_ref()
            && std::sync::Arc::ptr_eq(for_credentials, credentials)
            && *for_day == day
        {
            return key.clone();
        }
        let key = SigningKey::derive(&credentials.secret, &day, &self.region, "s3");
        *cached = Some((std::sync::Arc::clone(credentials), day, key.clone()));
        key
    }

    /// The request's URI: `scheme://[bucket.]host[:port]/[bucket/]key?query`.
    fn uri(
        &self,
        bucket: Option<&BucketName>,
        key: Option<&ObjectKey>,
        query: &[(String, String)],
    ) -> Result<http::Uri, StorageError> {
        // A dotted name does not match a wildcard certificate (`*.s3.amazonaws.com`): over TLS
        // such buckets go path-style, as the SDKs do.
        let virtual_bucket = bucket.filter(|b| {
            self.addressing == Addressing::Virtual
                && !(self.endpoint.https && b.as_str().contains('.'))
        });
        let mut path = String::from("/");
        if let Some(b) = bucket.filter(|_| virtual_bucket.is_none()) {
            path.push_str(b.as_str());
            if key.is_some() {
                path.push('/');
            }
        }
        if let Some(k) = key {
            path.push_str(&uri_encode(k.as_str().as_bytes(), false));
        }
        let mut query_text = String::new();
        for (name, value) in query {
            query_text.push(if query_text.is_empty() { '?' } else { '&' });
            query_text.push_str(&uri_encode(name.as_bytes(), true));
            if !value.is_empty() {
                query_text.push('=');
                query_text.push_str(&uri_encode(value.as_bytes(), true));
            }
        }
        let text = format!(
            "{}://{}{path}{query_text}",
            self.endpoint.scheme(),
            self.endpoint
                .authority(virtual_bucket.map(BucketName::as_str))
        );
        text.parse()
            .map_err(|e| self.unreachable(format!("cannot address {text:?}: {e}")))
    }

    pub(crate) fn unreachable(&self, detail: String) -> StorageError {
        StorageError::Unreachable {
            backend: self.name.to_string(),
            detail,
        }
    }

    /// An upstream's error answer as a [`StorageError`]: the errors Sluice itself knows keep
    /// their meaning (so a client sees the same answer from any backend); any other carries the
    /// upstream's code and message.
    pub(crate) async fn error_of(
        &self,
        response: Response<Incoming>,
        method: &Method,
        subject: Subject,
    ) -> StorageError {
        let status = response.status();
        if status.is_redirection() {
            // A redirect (a wrong region or endpoint) is the operator's to fix.
            let location = response
                .headers()
                .get(http::header::LOCATION)
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default()
                .to_owned();
            tracing::error!(backend = %self.name, %status, location = location.as_str(), "the upstream redirected: check its endpoint and region");
            return StorageError::Upstream(Box::new(UpstreamError {
                backend: self.name.to_string(),
                status: 502,
                code: String::new(),
                message: "The storage behind this gateway is not configured correctly.".into(),
            }));
        }
        let content_range = response
            .headers()
            .get(http::header::CONTENT_RANGE)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let doc = if *method == Method::HEAD {
            xml::ErrorDoc::default()
        } else {
            match body::read_small(
                response.into_body(),
                MAX_DOCUMENT,
                &self.name,
                self.timeouts.idle,
            )
            .await
            {
                Ok(bytes) => xml::parse(&bytes, "Error").unwrap_or_default(),
                Err(err) => return err,
            }
        };
        let code = if doc.code.is_empty() {
            code_for_status(status, subject).to_owned()
        } else {
            doc.code
        };
        known_error(&code, content_range.as_deref()).unwrap_or_else(|| {
            let err = UpstreamError {
                backend: self.name.to_string(),
                status: status.as_u16(),
                code,
                message: doc.message,
            };
            if err.refused_sluice() {
                tracing::error!(
                    backend = %self.name,
                    code = err.code.as_str(),
                    "the upstream refused Sluice's credentials for this backend"
                );
            } else if status == StatusCode::FORBIDDEN {
                // A bucket policy, or a permission Sluice's key lacks there: the operator may
                // need to know either way.
                tracing::warn!(
                    backend = %self.name,
                    code = err.code.as_str(),
                    "the upstream denied a request"
                );
            }
            StorageError::Upstream(Box::new(err))
        })
    }
}

/// The code S3 would have put in the body a HEAD answer cannot carry.
fn code_for_status(status: StatusCode, subject: Subject) -> &'static str {
    match (status.as_u16(), subject) {
        (404, Subject::Object) => "NoSuchKey",
        (404, Subject::Upload) => "NoSuchUpload",
        (404, _) => "NoSuchBucket",
        (403, _) => "AccessDenied",
        (412, _) => "PreconditionFailed",
        (416, _) => "InvalidRange",
        (400, _) => "BadRequest",
        (503, _) => "ServiceUnavailable",
        _ => "InternalError",
    }
}

/// Errors with the same meaning in Sluice's own model.
pub(crate) fn known_error(code: &str, content_range: Option<&str>) -> Option<StorageError> {
    Some(match code {
        "NoSuchBucket" => StorageError::NoSuchBucket,
        "NoSuchKey" => StorageError::NoSuchKey,
        "NoSuchUpload" => StorageError::NoSuchUpload,
        "BucketAlreadyOwnedByYou" => StorageError::BucketAlreadyOwnedByYou,
        "BucketNotEmpty" => StorageError::BucketNotEmpty,
        "InvalidPart" => StorageError::InvalidPart,
        "InvalidPartOrder" => StorageError::InvalidPartOrder,
        "EntityTooSmall" => StorageError::EntityTooSmall,
        "EntityTooLarge" => StorageError::EntityTooLarge,
        "BadDigest" => StorageError::BadDigest,
        "IncompleteBody" => StorageError::IncompleteBody,
        "InvalidPartNumber" => StorageError::InvalidPartNumber,
        "PreconditionFailed" => StorageError::PreconditionFailed { condition: None },
        "InvalidRange" => StorageError::InvalidRange {
            size: content_range
                .and_then(|r| r.rsplit_once('/'))
                .and_then(|(_, total)| total.parse().ok())
                .unwrap_or(0),
        },
        _ => return None,
    })
}

/// An error and its sources, for the log: hyper's own message is often only "client error".
fn error_chain(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

fn now_unix() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or_default()
}
