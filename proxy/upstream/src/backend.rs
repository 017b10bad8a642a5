//! [`UpstreamBackend`]: the storage interface spoken to an upstream S3 store. Each operation is
//! built from Sluice's parsed request (never from the client's bytes), re-signed with the
//! backend's credentials, and its answer mapped back into Sluice's model.

use std::collections::BTreeMap;
use std::sync::Arc;

use async_trait::async_trait;
use base64::Engine as _;
use bytes::Bytes;
use http::{HeaderMap, Method, Response, StatusCode};
use hyper::body::Incoming;
use md5::Digest as _;
use sluice_storage::{
    Backend, BucketInfo, BucketName, ByteRange, CompletePart, CopyObject, CopySource, Forward,
    Forwarded, ListPage, ListRequest, NewUpload, ObjectKey, ObjectMeta, ObjectRead, PartId,
    PartInfo, PutBody, PutCondition, PutObject, ReadRange, ReadRequest, StorageError,
    StoredHeaders, SystemMeta, TenantId, UploadInfo, UploadListPage, UploadListRequest,
    stream_copy, stream_copy_part,
};

use crate::client::HttpClient;
use crate::request::{Call, MAX_DOCUMENT, Payload, Subject, set};
use crate::{Addressing, CredentialCache, Endpoint, Quirks, Timeouts, UpstreamConfig, body, xml};

/// User metadata names under which Sluice keeps its own metadata on an upstream object. A
/// client's metadata may not use the prefix.
const SYSTEM_META_PREFIX: &str = "sluice-sys-";

#[derive(Debug)]
pub struct UpstreamBackend {
    pub(crate) name: Arc<str>,
    pub(crate) endpoint: Endpoint,
    pub(crate) region: String,
    pub(crate) addressing: Addressing,
    pub(crate) quirks: Quirks,
    pub(crate) timeouts: Timeouts,
    /// Bodies the client did not sign a hash of are sent as a new signed chunk chain.
    pub(crate) sign_chunks: bool,
    pub(crate) credentials: CredentialCache,
    /// The signing key of the current day and credentials.
    pub(crate) signing_key: SigningKeyCache,
    pub(crate) client: HttpClient,
}

pub(crate) type SigningKeyCache =
    std::sync::Mutex<Option<(Arc<crate::Credentials>, String, sluice_sigv4::SigningKey)>>;

impl UpstreamBackend {
    /// Reads the credentials and builds the connection pool; connects lazily.
    pub fn new(config: UpstreamConfig) -> Result<Self, String> {
        let client = crate::client::build(&config)?;
        let quirks = config.profile.quirks();
        let sign_chunks = match config.payload_signing {
            crate::PayloadSigning::Chunks => true,
            crate::PayloadSigning::Auto => {
                quirks.signed_chunks && !config.endpoint.https && !config.endpoint.is_loopback()
            }
        };
        Ok(Self {
            sign_chunks,
            name: config.name.into(),
            quirks: config.profile.quirks(),
            endpoint: config.endpoint,
            region: config.region,
            addressing: config.addressing,
            timeouts: config.timeouts,
            credentials: CredentialCache::new(config.credentials)?,
            signing_key: Default::default(),
            client,
        })
    }

    /// A small document answer, read whole.
    async fn document(&self, response: Response<Incoming>) -> Result<Bytes, StorageError> {
        body::read_small(
            response.into_body(),
            MAX_DOCUMENT,
            &self.name,
            self.timeouts.idle,
        )
        .await
    }

    /// A result document that may be an `<Error>` despite its 200 (CompleteMultipartUpload,
    /// CopyObject, UploadPartCopy).
    async fn result<T: serde::de::DeserializeOwned>(
        &self,
        response: Response<Incoming>,
        root: &str,
    ) -> Result<T, StorageError> {
        let doc = self.document(response).await?;
        if xml::root_name(std::str::from_utf8(&doc).unwrap_or_default()).as_deref() == Some("Error")
        {
            let err: xml::ErrorDoc = xml::parse(&doc, "Error").unwrap_or_default();
            return Err(
                crate::request::known_error(&err.code, None).unwrap_or_else(|| {
                    StorageError::Upstream(Box::new(sluice_storage::UpstreamError {
                        backend: self.name.to_string(),
                        status: 500,
                        code: err.code,
                        message: err.message,
                    }))
                }),
            );
        }
        xml::parse(&doc, root).map_err(|e| self.bad_answer(e))
    }

    /// An answer Sluice cannot read: the detail goes to the log, the client hears only that.
    fn bad_answer(&self, detail: String) -> StorageError {
        tracing::error!(backend = %self.name, detail = detail.as_str(), "unreadable answer from the upstream");
        StorageError::Upstream(Box::new(sluice_storage::UpstreamError {
            backend: self.name.to_string(),
            status: 502,
            code: String::new(),
            message: "The storage behind this gateway gave an answer Sluice could not read.".into(),
        }))
    }

    /// A source of this same upstream can be copied on its side.
    fn is_own(&self, store: &dyn Backend) -> bool {
        std::ptr::addr_eq(store as *const dyn Backend, self as *const Self)
    }

    /// An object's stored headers, metadata and tags as request headers.
    fn object_headers(
        &self,
        headers: &mut HeaderMap,
        stored: &StoredHeaders,
        system: &SystemMeta,
        tags: &BTreeMap<String, String>,
    ) -> Result<(), StorageError> {
        for (name, value) in [
            ("content-type", &stored.content_type),
            ("cache-control", &stored.cache_control),
            ("content-disposition", &stored.content_disposition),
            ("content-encoding", &stored.content_encoding),
            ("content-language", &stored.content_language),
            ("expires", &stored.expires),
        ] {
            if let Some(value) = value {
                set(headers, name, value)?;
            }
        }
        for (name, value) in &stored.user_meta {
            if name.starts_with(SYSTEM_META_PREFIX) {
                return Err(StorageError::NotAllowed(
                    "Metadata names starting with sluice-sys- are reserved.",
                ));
            }
            set(headers, &format!("x-amz-meta-{name}"), value)?;
        }
        for (name, value) in system {
            set(
                headers,
                &format!("x-amz-meta-{SYSTEM_META_PREFIX}{name}"),
                value,
            )?;
        }
        if !tags.is_empty() {
            if !self.quirks.tagging {
                return Err(StorageError::Unsupported("Object tagging"));
            }
            set(headers, "x-amz-tagging", &tag_query(tags))?;
        }
        Ok(())
    }

    /// A write's condition (checked by the upstream at commit).
    fn put_condition(
        headers: &mut HeaderMap,
        condition: &PutCondition,
    ) -> Result<(), StorageError> {
        match condition {
            PutCondition::None => Ok(()),
            PutCondition::IfNoneMatch => set(headers, "if-none-match", "*"),
            PutCondition::IfMatch(etag) => set(headers, "if-match", etag),
        }
    }

    /// The framing headers of a client's body: its digests, as the profile accepts them.
    fn body_headers(&self, headers: &mut HeaderMap, put: &PutObject) -> Result<(), StorageError> {
        if let Some(md5) = put.content_md5 {
            set(
                headers,
                "content-md5",
                &base64::engine::general_purpose::STANDARD.encode(md5),
            )?;
        }
        if self.quirks.checksum_headers
            && let Some((name, value)) = &put.checksum
        {
            set(headers, name, value)?;
        }
        Ok(())
    }

    /// Sends a write carrying the client's body (PutObject, UploadPart): its framing headers,
    /// the body itself; returns the upstream's ETag and the verified checksum to report.
    async fn send_body(
        &self,
        mut call: Call<'_>,
        put: &PutObject,
        len: u64,
        body: PutBody,
    ) -> Result<(String, Option<(String, String)>), StorageError> {
        self.body_headers(&mut call.headers, put)?;
        let call = call.payload(Payload::Stream {
            body,
            len,
            sha256: put.sha256,
            content_md5: put.content_md5,
        });
        let response = self.send(call).await?;
        let etag = response
            .headers()
            .get(http::header::ETAG)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .trim_matches('"')
            .to_owned();
        let checksum = put.checksum.clone().or_else(|| {
            put.late_checksum
                .as_ref()
                .and_then(|l| l.lock().ok()?.clone())
        });
        Ok((etag, checksum))
    }

    fn read_headers(
        headers: &mut HeaderMap,
        read: &ReadRequest,
        call_query: &mut Vec<(String, String)>,
    ) -> Result<(), StorageError> {
        match read.range {
            Some(ReadRange::Part(n)) => call_query.push(("partNumber".into(), n.to_string())),
            Some(range) => {
                if let Some(value) = range.header_value() {
                    set(headers, "range", &value)?;
                }
            }
            None => {}
        }
        let c = &read.conditions;
        if let Some(v) = &c.if_match {
            set(headers, "if-match", v)?;
        }
        if let Some(v) = &c.if_none_match {
            set(headers, "if-none-match", v)?;
        }
        if let Some(secs) = c.if_modified_since {
            set(headers, "if-modified-since", &http_date(secs))?;
        }
        if let Some(secs) = c.if_unmodified_since {
            set(headers, "if-unmodified-since", &http_date(secs))?;
        }
        Ok(())
    }

    /// GET or HEAD of an object.
    async fn read(
        &self,
        method: Method,
        bucket: &BucketName,
        key: &ObjectKey,
        read: &ReadRequest,
    ) -> Result<ObjectRead, StorageError> {
        let mut call = Call::new(method.clone(), Subject::Object).object(bucket, key);
        Self::read_headers(&mut call.headers, read, &mut call.query)?;
        let response = match self.send(call).await {
            Err(err) if method == Method::HEAD && is_bare_403(&err) => {
                // A HEAD's 403 has no body to say why: ask with a one-byte GET that does.
                let probe = Call::new(Method::GET, Subject::Object)
                    .object(bucket, key)
                    .header("range", "bytes=0-0")?;
                return Err(self.send(probe).await.err().unwrap_or(err));
            }
            other => other?,
        };
        let (meta, range) = self.meta_of(response.headers(), response.status())?;
        if response.status() == StatusCode::NOT_MODIFIED {
            return Err(StorageError::NotModified(Box::new(meta)));
        }
        // Some S3 implementations ignore conditions: check them again on what was answered.
        read.conditions.check(&meta)?;
        // A copy-source range must lie inside the object: an upstream that trimmed it (or sent
        // the whole object) did not answer what was asked.
        if let Some(ReadRange::Exact { first, last }) = read.range
            && (meta.size == 0
                || range.map_or((0, meta.size - 1), |r| (r.start, r.end_inclusive))
                    != (first, last))
        {
            return Err(StorageError::InvalidRange { size: meta.size });
        }
        if let Some(ReadRange::Part(n)) = read.range
            && range.is_none()
            && (n > 1 || meta.etag.contains('-'))
        {
            // The upstream ignored partNumber and sent the whole object: its parts' bounds are
            // unknown here, and the whole object is not the part asked for.
            return Err(StorageError::Unsupported("Reading one part (partNumber)"));
        }
        let body = if method == Method::HEAD {
            body::boxed(futures_util::stream::empty())
        } else {
            body::response_stream(
                response.into_body(),
                Arc::clone(&self.name),
                self.timeouts.idle,
            )
        };
        Ok(ObjectRead { meta, range, body })
    }

    /// An object's record from a GET or HEAD answer's headers, and the range the body holds.
    fn meta_of(
        &self,
        headers: &HeaderMap,
        status: StatusCode,
    ) -> Result<(ObjectMeta, Option<ByteRange>), StorageError> {
        let text = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
        let owned = |name: &str| text(name).map(str::to_owned);
        let mut meta = ObjectMeta {
            etag: text("etag")
                .unwrap_or_default()
                .trim_matches('"')
                .to_owned(),
            last_modified_ms: text("last-modified")
                .and_then(|d| httpdate::parse_http_date(d).ok())
                .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
                .map_or(0, |d| d.as_millis() as i64),
            headers: StoredHeaders {
                content_type: owned("content-type"),
                cache_control: owned("cache-control"),
                content_disposition: owned("content-disposition"),
                content_encoding: owned("content-encoding"),
                content_language: owned("content-language"),
                expires: owned("expires"),
                user_meta: BTreeMap::new(),
            },
            parts: text("x-amz-mp-parts-count").and_then(|n| n.parse().ok()),
            tag_count: text("x-amz-tagging-count").and_then(|n| n.parse().ok()),
            ..Default::default()
        };
        for (name, value) in headers {
            let Ok(value) = value.to_str() else { continue };
            if let Some(meta_name) = name.as_str().strip_prefix("x-amz-meta-") {
                match meta_name.strip_prefix(SYSTEM_META_PREFIX) {
                    Some(system) => meta.system_meta.insert(system.to_owned(), value.to_owned()),
                    None => meta
                        .headers
                        .user_meta
                        .insert(meta_name.to_owned(), value.to_owned()),
                };
            } else if sluice_sigv4::ChecksumAlgorithm::from_header_name(name.as_str()).is_some() {
                meta.checksum = Some((name.as_str().to_owned(), value.to_owned()));
            }
        }
        let length: Option<u64> = text("content-length").and_then(|n| n.parse().ok());
        let range = if status == StatusCode::PARTIAL_CONTENT {
            let (range, total) = text("content-range")
                .and_then(parse_content_range)
                .ok_or_else(|| self.bad_answer("206 without a usable Content-Range".into()))?;
            meta.size = total;
            Some(range)
        } else {
            // Without a length a body's end cannot be told from its breaking off (and the
            // client would be told 0): refuse rather than guess.
            meta.size = match length {
                Some(length) => length,
                None if status == StatusCode::NOT_MODIFIED => 0,
                None => {
                    return Err(self.bad_answer("an object answer without Content-Length".into()));
                }
            };
            None
        };
        Ok((meta, range))
    }

    /// The whole record of an object just written by the upstream itself (a completion or a
    /// copy answers only with its ETag).
    async fn record_of(
        &self,
        bucket: &BucketName,
        key: &ObjectKey,
    ) -> Result<ObjectMeta, StorageError> {
        Ok(self
            .read(Method::HEAD, bucket, key, &ReadRequest::default())
            .await?
            .meta)
    }

    /// A server-side copy's source conditions, checked here as well: some S3 implementations
    /// ignore `x-amz-copy-source-if-*` (one HEAD, only when there are conditions).
    async fn check_copy_source(&self, source: &CopySource<'_>) -> Result<(), StorageError> {
        if source.conditions.is_empty() {
            return Ok(());
        }
        let meta = self.record_of(source.bucket, source.key).await?;
        source.conditions.check_copy_source(&meta)
    }

    /// The record of an object the upstream just made; if it cannot be read right now, what
    /// the upstream's answer said (the object exists: the write is not failed after the fact).
    async fn record_or(
        &self,
        bucket: &BucketName,
        key: &ObjectKey,
        result: &xml::EtagResult,
    ) -> ObjectMeta {
        match self.record_of(bucket, key).await {
            Ok(meta) => meta,
            Err(err) => {
                tracing::warn!(backend = %self.name, error = %err, "cannot read back an object just written");
                ObjectMeta {
                    etag: result.etag.trim_matches('"').to_owned(),
                    last_modified_ms: result
                        .last_modified
                        .as_deref()
                        .map_or_else(now_ms, iso8601_ms),
                    ..Default::default()
                }
            }
        }
    }

    fn copy_source_header(source: &CopySource<'_>) -> String {
        format!(
            "/{}/{}",
            source.bucket.as_str(),
            sluice_sigv4::uri_encode(source.key.as_str().as_bytes(), false)
        )
    }

    fn copy_source_conditions(
        headers: &mut HeaderMap,
        source: &CopySource<'_>,
    ) -> Result<(), StorageError> {
        let c = source.conditions;
        if let Some(v) = &c.if_match {
            set(headers, "x-amz-copy-source-if-match", v)?;
        }
        if let Some(v) = &c.if_none_match {
            set(headers, "x-amz-copy-source-if-none-match", v)?;
        }
        if let Some(secs) = c.if_modified_since {
            set(
                headers,
                "x-amz-copy-source-if-modified-since",
                &http_date(secs),
            )?;
        }
        if let Some(secs) = c.if_unmodified_since {
            set(
                headers,
                "x-amz-copy-source-if-unmodified-since",
                &http_date(secs),
            )?;
        }
        Ok(())
    }
}

#[async_trait]
impl Backend for UpstreamBackend {
    fn resolve(
        &self,
        bucket: &BucketName,
        key: &ObjectKey,
    ) -> Result<(&dyn Backend, BucketName, ObjectKey), StorageError> {
        Ok((self, bucket.clone(), key.clone()))
    }

    fn lists_system_meta(&self) -> bool {
        false
    }

    async fn list_buckets(&self, _tenant: &TenantId) -> Result<Vec<BucketInfo>, StorageError> {
        let response = self.send(Call::new(Method::GET, Subject::Service)).await?;
        let doc = self.document(response).await?;
        let result: xml::ListAllMyBucketsResult =
            xml::parse(&doc, "ListAllMyBucketsResult").map_err(|e| self.bad_answer(e))?;
        Ok(result
            .buckets
            .bucket
            .into_iter()
            .map(|b| BucketInfo {
                created_ms: iso8601_ms(&b.creation_date),
                name: b.name,
            })
            .collect())
    }

    async fn create_bucket(
        &self,
        _tenant: &TenantId,
        bucket: &BucketName,
    ) -> Result<(), StorageError> {
        let mut call = Call::new(Method::PUT, Subject::Bucket).bucket(bucket);
        if self.quirks.fixed_region.is_none() && self.region != "us-east-1" {
            call = call.payload(Payload::Full(Bytes::from(format!(
                "<CreateBucketConfiguration><LocationConstraint>{}</LocationConstraint></CreateBucketConfiguration>",
                xml::escape(&self.region)
            ))));
        }
        self.send(call).await.map(drop)
    }

    async fn head_bucket(
        &self,
        _tenant: &TenantId,
        bucket: &BucketName,
    ) -> Result<(), StorageError> {
        let call = Call::new(Method::HEAD, Subject::Bucket).bucket(bucket);
        match self.send(call).await {
            Err(err) if is_bare_403(&err) => {
                // A HEAD's 403 has no body to say why: ask with a GET that does.
                let probe = Call::new(Method::GET, Subject::Bucket)
                    .bucket(bucket)
                    .query("list-type", "2")
                    .query("max-keys", "0");
                Err(self.send(probe).await.err().unwrap_or(err))
            }
            other => other.map(drop),
        }
    }

    async fn delete_bucket(
        &self,
        _tenant: &TenantId,
        bucket: &BucketName,
    ) -> Result<(), StorageError> {
        let call = Call::new(Method::DELETE, Subject::Bucket).bucket(bucket);
        self.send(call).await.map(drop)
    }

    /// Bucket settings kept by Sluice (CORS rules) are not kept on upstream buckets: they
    /// have none, and setting them is not supported.
    async fn bucket_config(
        &self,
        _tenant: &TenantId,
        _bucket: &BucketName,
        _name: &'static str,
    ) -> Result<Option<String>, StorageError> {
        Ok(None)
    }

    async fn set_bucket_config(
        &self,
        _tenant: &TenantId,
        _bucket: &BucketName,
        name: &'static str,
        _value: Option<String>,
    ) -> Result<(), StorageError> {
        Err(StorageError::Unsupported(match name {
            "cors" => "Bucket CORS configuration",
            _ => "Bucket settings kept by Sluice on this backend",
        }))
    }

    async fn put_object(
        &self,
        _tenant: &TenantId,
        bucket: &BucketName,
        key: &ObjectKey,
        put: PutObject,
        body: PutBody,
    ) -> Result<ObjectMeta, StorageError> {
        let len = put.expected_size.ok_or(StorageError::IncompleteBody)?;
        let mut call = Call::new(Method::PUT, Subject::Object).object(bucket, key);
        self.object_headers(&mut call.headers, &put.headers, &put.system_meta, &put.tags)?;
        Self::put_condition(&mut call.headers, &put.condition)?;
        let (etag, checksum) = self.send_body(call, &put, len, body).await?;
        Ok(ObjectMeta {
            size: len,
            etag: put.etag.unwrap_or(etag),
            last_modified_ms: now_ms(),
            headers: put.headers,
            checksum,
            tag_count: None,
            tags: put.tags,
            parts: None,
            system_meta: put.system_meta,
        })
    }

    async fn head_object(
        &self,
        _tenant: &TenantId,
        bucket: &BucketName,
        key: &ObjectKey,
        read: ReadRequest,
    ) -> Result<ObjectRead, StorageError> {
        self.read(Method::HEAD, bucket, key, &read).await
    }

    async fn get_object(
        &self,
        _tenant: &TenantId,
        bucket: &BucketName,
        key: &ObjectKey,
        read: ReadRequest,
    ) -> Result<ObjectRead, StorageError> {
        self.read(Method::GET, bucket, key, &read).await
    }

    async fn copy_object(
        &self,
        tenant: &TenantId,
        bucket: &BucketName,
        key: &ObjectKey,
        source: CopySource<'_>,
        copy: CopyObject,
    ) -> Result<ObjectMeta, StorageError> {
        if !self.is_own(source.store) {
            return stream_copy(self, tenant, bucket, key, source, copy).await;
        }
        self.check_copy_source(&source).await?;
        let mut call = Call::new(Method::PUT, Subject::Object)
            .object(bucket, key)
            .header("x-amz-copy-source", &Self::copy_source_header(&source))?;
        Self::copy_source_conditions(&mut call.headers, &source)?;
        Self::put_condition(&mut call.headers, &copy.condition)?;
        if let Some(headers) = &copy.headers {
            set(&mut call.headers, "x-amz-metadata-directive", "REPLACE")?;
            self.object_headers(
                &mut call.headers,
                headers,
                copy.system_meta.as_ref().unwrap_or(&SystemMeta::new()),
                &BTreeMap::new(),
            )?;
        } else if copy.system_meta.is_some() {
            return Err(StorageError::Unsupported(
                "A copy with new system metadata and the source's headers",
            ));
        }
        if let Some(tags) = &copy.tags {
            if !self.quirks.tagging && !tags.is_empty() {
                return Err(StorageError::Unsupported("Object tagging"));
            }
            set(&mut call.headers, "x-amz-tagging-directive", "REPLACE")?;
            if !tags.is_empty() {
                set(&mut call.headers, "x-amz-tagging", &tag_query(tags))?;
            }
        }
        let response = self.send(call).await?;
        let result: xml::EtagResult = self.result(response, "CopyObjectResult").await?;
        Ok(self.record_or(bucket, key, &result).await)
    }

    async fn get_tags(
        &self,
        _tenant: &TenantId,
        bucket: &BucketName,
        key: &ObjectKey,
    ) -> Result<BTreeMap<String, String>, StorageError> {
        if !self.quirks.tagging {
            // No tags can exist there; the object must.
            let read = ReadRequest::default();
            self.read(Method::HEAD, bucket, key, &read).await?;
            return Ok(BTreeMap::new());
        }
        let call = Call::new(Method::GET, Subject::Object)
            .object(bucket, key)
            .query("tagging", "");
        let response = self.send(call).await?;
        let doc = self.document(response).await?;
        let tagging: xml::Tagging = xml::parse(&doc, "Tagging").map_err(|e| self.bad_answer(e))?;
        Ok(tagging
            .tag_set
            .tag
            .into_iter()
            .map(|t| (t.key, t.value))
            .collect())
    }

    async fn set_tags(
        &self,
        _tenant: &TenantId,
        bucket: &BucketName,
        key: &ObjectKey,
        tags: BTreeMap<String, String>,
    ) -> Result<(), StorageError> {
        if !self.quirks.tagging {
            if tags.is_empty() {
                return Ok(());
            }
            return Err(StorageError::Unsupported("Object tagging"));
        }
        let call = Call::new(
            if tags.is_empty() {
                Method::DELETE
            } else {
                Method::PUT
            },
            Subject::Object,
        )
        .object(bucket, key)
        .query("tagging", "")
        .repeatable();
        let call = if tags.is_empty() {
            call
        } else {
            let doc = Bytes::from(xml::tagging_document(tags.iter()));
            call.header("content-md5", &content_md5(&doc))?
                .payload(Payload::Full(doc))
        };
        self.send(call).await.map(drop)
    }

    async fn delete_object(
        &self,
        _tenant: &TenantId,
        bucket: &BucketName,
        key: &ObjectKey,
    ) -> Result<(), StorageError> {
        let call = Call::new(Method::DELETE, Subject::Object)
            .object(bucket, key)
            .repeatable();
        match self.send(call).await {
            Ok(_) | Err(StorageError::NoSuchKey) => Ok(()),
            Err(err) => Err(err),
        }
    }

    async fn list_objects(
        &self,
        _tenant: &TenantId,
        bucket: &BucketName,
        request: ListRequest,
    ) -> Result<ListPage, StorageError> {
        // A token always follows start-after in a paginated listing: it wins.
        let (token, after) = match request.continuation {
            Some(token) => (Some(token), None),
            None => (None, request.start_after),
        };
        let call = Call::new(Method::GET, Subject::Bucket)
            .bucket(bucket)
            .query("list-type", "2")
            .query("encoding-type", "url")
            .query("max-keys", request.max_keys.to_string())
            .query_some("prefix", Some(request.prefix))
            .query_some("delimiter", request.delimiter)
            .query_some("start-after", after);
        let call = match token {
            Some(token) => call.query("continuation-token", token),
            None => call,
        };
        let response = self.send(call).await?;
        let doc = self.document(response).await?;
        let result: xml::ListBucketResult =
            xml::parse(&doc, "ListBucketResult").map_err(|e| self.bad_answer(e))?;
        let url = result.encoding_type.as_deref() == Some("url");
        let mut page = ListPage::default();
        for entry in result.contents {
            let name = decoded(&entry.key, url);
            match ObjectKey::parse(&name) {
                Ok(key) => page.objects.push((
                    key,
                    ObjectMeta {
                        size: entry.size,
                        etag: entry.etag.trim_matches('"').to_owned(),
                        last_modified_ms: iso8601_ms(&entry.last_modified),
                        ..Default::default()
                    },
                )),
                Err(err) => {
                    tracing::warn!(backend = %self.name, key = %name, error = %err, "skipping a listed key Sluice cannot serve");
                }
            }
        }
        page.common_prefixes = result
            .common_prefixes
            .into_iter()
            .map(|p| decoded(&p.prefix, url))
            .collect();
        page.next_token = result
            .next_continuation_token
            .filter(|_| result.is_truncated);
        if result.is_truncated && page.next_token.is_none() {
            return Err(self.bad_answer("a truncated listing without a continuation token".into()));
        }
        Ok(page)
    }

    async fn create_multipart_upload(
        &self,
        _tenant: &TenantId,
        bucket: &BucketName,
        key: &ObjectKey,
        upload: NewUpload,
    ) -> Result<String, StorageError> {
        let mut call = Call::new(Method::POST, Subject::Object)
            .object(bucket, key)
            .query("uploads", "");
        self.object_headers(
            &mut call.headers,
            &upload.headers,
            &upload.system_meta,
            &upload.tags,
        )?;
        if self.quirks.length_on_create_upload {
            call = call.payload(Payload::Full(Bytes::new()));
            set(&mut call.headers, "content-length", "0")?;
        }
        let response = self.send(call).await?;
        let doc = self.document(response).await?;
        let result: xml::InitiateMultipartUploadResult =
            xml::parse(&doc, "InitiateMultipartUploadResult").map_err(|e| self.bad_answer(e))?;
        if result.upload_id.is_empty() {
            return Err(self.bad_answer("an empty upload id".into()));
        }
        Ok(result.upload_id)
    }

    async fn head_upload(
        &self,
        _tenant: &TenantId,
        bucket: &BucketName,
        key: &ObjectKey,
        upload_id: &str,
    ) -> Result<(), StorageError> {
        let call = Call::new(Method::GET, Subject::Upload)
            .object(bucket, key)
            .query("uploadId", upload_id)
            .query("max-parts", "1");
        self.send(call).await.map(drop)
    }

    async fn upload_part(
        &self,
        _tenant: &TenantId,
        bucket: &BucketName,
        key: &ObjectKey,
        part: PartId<'_>,
        put: PutObject,
        body: PutBody,
    ) -> Result<PartInfo, StorageError> {
        let len = put.expected_size.ok_or(StorageError::IncompleteBody)?;
        let call = Call::new(Method::PUT, Subject::Upload)
            .object(bucket, key)
            .query("partNumber", part.number.to_string())
            .query("uploadId", part.upload_id);
        let (etag, checksum) = self.send_body(call, &put, len, body).await?;
        Ok(PartInfo {
            part_number: part.number,
            size: len,
            etag,
            last_modified_ms: now_ms(),
            checksum,
        })
    }

    async fn copy_part(
        &self,
        tenant: &TenantId,
        bucket: &BucketName,
        key: &ObjectKey,
        part: PartId<'_>,
        source: CopySource<'_>,
        range: Option<ReadRange>,
    ) -> Result<PartInfo, StorageError> {
        let exact = match range {
            None => None,
            Some(ReadRange::Exact { first, last }) => Some((first, last)),
            // Only UploadPartCopy's exact ranges can be asked of the upstream as such.
            Some(_) => {
                return stream_copy_part(self, tenant, bucket, key, part, source, range).await;
            }
        };
        if !self.is_own(source.store) {
            return stream_copy_part(self, tenant, bucket, key, part, source, range).await;
        }
        self.check_copy_source(&source).await?;
        let size = match exact {
            Some((first, last)) => last.saturating_sub(first) + 1,
            None => self.record_of(source.bucket, source.key).await?.size,
        };
        let mut call = Call::new(Method::PUT, Subject::Upload)
            .object(bucket, key)
            .query("partNumber", part.number.to_string())
            .query("uploadId", part.upload_id)
            .header("x-amz-copy-source", &Self::copy_source_header(&source))?;
        if let Some((first, last)) = exact {
            set(
                &mut call.headers,
                "x-amz-copy-source-range",
                &format!("bytes={first}-{last}"),
            )?;
        }
        Self::copy_source_conditions(&mut call.headers, &source)?;
        let response = self.send(call).await?;
        let result: xml::EtagResult = self.result(response, "CopyPartResult").await?;
        Ok(PartInfo {
            part_number: part.number,
            size,
            etag: result.etag.trim_matches('"').to_owned(),
            last_modified_ms: result
                .last_modified
                .as_deref()
                .map_or_else(now_ms, iso8601_ms),
            checksum: None,
        })
    }

    async fn complete_multipart_upload(
        &self,
        _tenant: &TenantId,
        bucket: &BucketName,
        key: &ObjectKey,
        upload_id: &str,
        parts: Vec<CompletePart>,
        condition: PutCondition,
    ) -> Result<ObjectMeta, StorageError> {
        let list: Vec<(u32, String)> = parts.into_iter().map(|p| (p.part_number, p.etag)).collect();
        let doc = Bytes::from(xml::complete_document(&list));
        let mut call = Call::new(Method::POST, Subject::Upload)
            .object(bucket, key)
            .query("uploadId", upload_id)
            .payload(Payload::Full(doc));
        Self::put_condition(&mut call.headers, &condition)?;
        let response = self.send(call).await?;
        let result: xml::EtagResult = self
            .result(response, "CompleteMultipartUploadResult")
            .await?;
        Ok(self.record_or(bucket, key, &result).await)
    }

    async fn abort_multipart_upload(
        &self,
        _tenant: &TenantId,
        bucket: &BucketName,
        key: &ObjectKey,
        upload_id: &str,
    ) -> Result<(), StorageError> {
        let call = Call::new(Method::DELETE, Subject::Upload)
            .object(bucket, key)
            .query("uploadId", upload_id);
        self.send(call).await.map(drop)
    }

    async fn list_parts(
        &self,
        _tenant: &TenantId,
        bucket: &BucketName,
        key: &ObjectKey,
        upload_id: &str,
        after: u32,
        max: usize,
    ) -> Result<(Vec<PartInfo>, bool), StorageError> {
        let mut call = Call::new(Method::GET, Subject::Upload)
            .object(bucket, key)
            .query("uploadId", upload_id)
            .query("max-parts", max.to_string());
        if after > 0 {
            call = call.query("part-number-marker", after.to_string());
        }
        let response = self.send(call).await?;
        let doc = self.document(response).await?;
        let result: xml::ListPartsResult =
            xml::parse(&doc, "ListPartsResult").map_err(|e| self.bad_answer(e))?;
        let parts = result
            .part
            .into_iter()
            .map(|p| {
                let checksum = [
                    ("x-amz-checksum-crc32", p.checksum_crc32),
                    ("x-amz-checksum-crc32c", p.checksum_crc32c),
                    ("x-amz-checksum-crc64nvme", p.checksum_crc64nvme),
                    ("x-amz-checksum-sha1", p.checksum_sha1),
                    ("x-amz-checksum-sha256", p.checksum_sha256),
                ]
                .into_iter()
                .find_map(|(name, value)| Some((name.to_owned(), value?)));
                PartInfo {
                    part_number: p.part_number,
                    size: p.size,
                    etag: p.etag.trim_matches('"').to_owned(),
                    last_modified_ms: iso8601_ms(&p.last_modified),
                    checksum,
                }
            })
            .collect();
        Ok((parts, result.is_truncated))
    }

    async fn forward(
        &self,
        _tenant: &TenantId,
        bucket: &BucketName,
        key: Option<&ObjectKey>,
        request: Forward,
    ) -> Result<Forwarded, StorageError> {
        let mut call = Call::new(
            request.method,
            if key.is_some() {
                Subject::Object
            } else {
                Subject::Bucket
            },
        );
        call = match key {
            Some(key) => call.object(bucket, key),
            None => call.bucket(bucket),
        };
        call.query = request.query;
        for (name, value) in &request.headers {
            let checksum = name.as_str().starts_with("x-amz-checksum-");
            if !checksum || self.quirks.checksum_headers {
                call.headers.append(name.clone(), value.clone());
            }
        }
        if let Some((body, len)) = request.body {
            call = call.payload(Payload::Stream {
                body,
                len,
                sha256: None,
                content_md5: None,
            });
        }
        let response = self.send(call).await?;
        let status = response.status();
        let mut headers = response.headers().clone();
        for hop in [
            "connection",
            "keep-alive",
            "transfer-encoding",
            "x-amz-request-id",
            "x-amz-id-2",
            "server",
            "date",
        ] {
            headers.remove(hop);
        }
        Ok(Forwarded {
            status,
            headers,
            body: body::response_stream(
                response.into_body(),
                Arc::clone(&self.name),
                self.timeouts.idle,
            ),
        })
    }

    async fn list_multipart_uploads(
        &self,
        _tenant: &TenantId,
        bucket: &BucketName,
        request: UploadListRequest,
    ) -> Result<UploadListPage, StorageError> {
        let call = Call::new(Method::GET, Subject::Bucket)
            .bucket(bucket)
            .query("uploads", "")
            .query("encoding-type", "url")
            .query("max-uploads", request.max_uploads.to_string())
            .query_some("prefix", Some(request.prefix))
            .query_some("delimiter", request.delimiter)
            .query_some("key-marker", request.key_marker)
            .query_some("upload-id-marker", request.upload_id_marker);
        let response = self.send(call).await?;
        let doc = self.document(response).await?;
        let result: xml::ListMultipartUploadsResult =
            xml::parse(&doc, "ListMultipartUploadsResult").map_err(|e| self.bad_answer(e))?;
        let url = result.encoding_type.as_deref() == Some("url");
        let uploads = result
            .upload
            .into_iter()
            .filter_map(|u| {
                Some(UploadInfo {
                    key: ObjectKey::parse(&decoded(&u.key, url)).ok()?,
                    upload_id: u.upload_id,
                    initiated_ms: iso8601_ms(&u.initiated),
                })
            })
            .collect();
        let next = match (result.is_truncated, result.next_key_marker) {
            (true, Some(key)) => Some((
                decoded(&key, url),
                result.next_upload_id_marker.unwrap_or_default(),
            )),
            _ => None,
        };
        Ok(UploadListPage {
            uploads,
            common_prefixes: result
                .common_prefixes
                .into_iter()
                .map(|p| decoded(&p.prefix, url))
                .collect(),
            next,
        })
    }
}

/// A 403 whose code Sluice had to guess (a HEAD answer carries no error document).
fn is_bare_403(err: &StorageError) -> bool {
    matches!(err, StorageError::Upstream(e) if e.status == 403 && e.message.is_empty())
}

/// `Content-Range: bytes a-b/total` → the range and the total size.
fn parse_content_range(value: &str) -> Option<(ByteRange, u64)> {
    let (range, total) = value.strip_prefix("bytes ")?.split_once('/')?;
    let (start, end) = range.split_once('-')?;
    let (start, end_inclusive): (u64, u64) = (start.parse().ok()?, end.parse().ok()?);
    (start <= end_inclusive).then_some((
        ByteRange {
            start,
            end_inclusive,
        },
        total.parse().ok()?,
    ))
}

/// A name from a listing asked for with `encoding-type=url`.
fn decoded(text: &str, url: bool) -> String {
    if url {
        percent_encoding::percent_decode_str(text)
            .decode_utf8_lossy()
            .into_owned()
    } else {
        text.to_owned()
    }
}

/// `x-amz-tagging`: tags as a URL query string.
fn tag_query(tags: &BTreeMap<String, String>) -> String {
    tags.iter()
        .map(|(k, v)| {
            format!(
                "{}={}",
                sluice_sigv4::uri_encode(k.as_bytes(), true),
                sluice_sigv4::uri_encode(v.as_bytes(), true)
            )
        })
        .collect::<Vec<_>>()
        .join("&")
}

fn content_md5(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(md5::Md5::digest(bytes))
}

fn http_date(unix_secs: i64) -> String {
    httpdate::fmt_http_date(
        std::time::UNIX_EPOCH + std::time::Duration::from_secs(unix_secs.max(0) as u64),
    )
}

/// An ISO 8601 timestamp from a listing (`2024-01-02T03:04:05.000Z`) in Unix milliseconds.
fn iso8601_ms(text: &str) -> i64 {
    time::OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339)
        .map(|t| (t.unix_timestamp_nanos() / 1_000_000) as i64)
        .unwrap_or_default()
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_ranges_and_timestamps() {
        let (r, total) = parse_content_range("bytes 5-9/100").unwrap();
        assert_eq!((r.start, r.end_inclusive, total), (5, 9, 100));
        assert!(parse_content_range("bytes 9-5/100").is_none());
        assert!(parse_content_range("bytes */100").is_none());
        assert_eq!(iso8601_ms("1970-01-01T00:00:01.500Z"), 1500);
        assert_eq!(decoded("a%20b%2Bc", true), "a b+c");
        let tags = BTreeMap::from([("a b".to_owned(), "x&y".to_owned())]);
        assert_eq!(tag_query(&tags), "a%20b=x%26y");
    }
}
