//! The one interface every store speaks: the built-in local backend, upstream S3 stores, and
//! layers that wrap either (renaming for routes, encryption). The S3 handlers hold a store as
//! `Arc<dyn Backend>` and never know which one it is.
//!
//! Bodies cross this boundary boxed ([`PutBody`] in, [`ObjectBody`] out), so a layer adapts
//! streams without generic stacks. Names are the store's own: a layer that renames buckets or
//! prefixes keys maps them on the way in and back on the way out (listings included).

use std::collections::BTreeMap;
use std::pin::Pin;

use async_trait::async_trait;
use bytes::Bytes;
use futures_util::Stream;

use crate::{
    BodyError, BucketInfo, BucketName, CompletePart, ListPage, ListRequest, NewUpload, ObjectKey,
    ObjectMeta, ObjectRead, PartInfo, PutCondition, PutObject, ReadRange, ReadRequest,
    StorageError, StoredHeaders, TenantId, UploadListPage, UploadListRequest,
};

/// A request body on its way into storage. An error item means the client's side failed a
/// check: the store must then store nothing and return [`StorageError::Body`] with it.
pub type PutBody = Pin<Box<dyn Stream<Item = Result<Bytes, BodyError>> + Send>>;

/// An operation Sluice does not model (bucket policy, lifecycle, ACLs, ...), to be forwarded
/// as the client sent it: only on routes that say `passthrough`.
pub struct Forward {
    pub method: http::Method,
    /// The query parameters, decoded, in the client's order.
    pub query: Vec<(String, String)>,
    /// The end-to-end headers to send on (no authentication or framing headers).
    pub headers: http::HeaderMap,
    /// The body and its length, if the request has one.
    pub body: Option<(PutBody, u64)>,
}

impl std::fmt::Debug for Forward {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Forward")
            .field("method", &self.method)
            .field("query", &self.query)
            .finish_non_exhaustive()
    }
}

/// The store's answer to a [`Forward`], to be returned as it is.
pub struct Forwarded {
    pub status: http::StatusCode,
    pub headers: http::HeaderMap,
    pub body: crate::ObjectBody,
}

impl std::fmt::Debug for Forwarded {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Forwarded")
            .field("status", &self.status)
            .finish_non_exhaustive()
    }
}

/// Which part of which upload.
#[derive(Debug, Clone, Copy)]
pub struct PartId<'a> {
    pub upload_id: &'a str,
    pub number: u32,
    /// The SSE-C key of an upload started with one.
    pub customer_key: Option<&'a crate::CustomerKey>,
}

/// S3's part numbers.
pub const PART_NUMBERS: std::ops::RangeInclusive<u32> = 1..=10_000;

/// The object a copy reads from: in `store` (which may be the destination's), under its
/// conditions (`x-amz-copy-source-if-*`).
#[derive(Debug, Clone, Copy)]
pub struct CopySource<'a> {
    pub store: &'a dyn Backend,
    pub bucket: &'a BucketName,
    pub key: &'a ObjectKey,
    pub conditions: &'a crate::Preconditions,
    /// The source's SSE-C key (`x-amz-copy-source-server-side-encryption-customer-*`).
    pub customer_key: Option<&'a crate::CustomerKey>,
}

/// What CopyObject writes beside the copied bytes: the source's headers and tags unless
/// replaced (`x-amz-metadata-directive` / `x-amz-tagging-directive: REPLACE`).
#[derive(Debug, Clone, Default)]
pub struct CopyObject {
    pub headers: Option<StoredHeaders>,
    pub tags: Option<BTreeMap<String, String>>,
    pub condition: PutCondition,
    /// System metadata for the copy (a layer's, e.g. a rewrapped envelope: the stored bytes
    /// are copied as they are); `None` keeps none of the source's. A store that copies on its
    /// side then replaces the headers too, so `headers` must be given with it.
    pub system_meta: Option<crate::SystemMeta>,
    /// The copy's SSE-C key, to encrypt it under.
    pub customer_key: Option<crate::CustomerKey>,
}

#[async_trait]
pub trait Backend: Send + Sync + std::fmt::Debug {
    /// The store that holds `bucket`/`key` under the names it has there: a renaming layer
    /// answers with the store underneath and the mapped names; any other store with itself.
    /// Copies resolve their source this way, so that a store can tell a source of its own (and
    /// copy on its side) whatever route named it.
    /// Fails where the store could not hold such a key (a prefixed key too long).
    fn resolve(
        &self,
        bucket: &BucketName,
        key: &ObjectKey,
    ) -> Result<(&dyn Backend, BucketName, ObjectKey), StorageError>;

    /// How this store encrypts what is written to it: `None` if it cannot (writes asking for
    /// encryption must then be refused, never stored in plaintext).
    fn encryption(&self) -> Option<crate::Policy> {
        None
    }

    /// Whether listings carry each object's system metadata (the local backend's index does;
    /// an S3 listing carries none, so a layer that needs it must read it per object).
    fn lists_system_meta(&self) -> bool {
        true
    }

    /// The tenant's buckets in this store.
    async fn list_buckets(&self, tenant: &TenantId) -> Result<Vec<BucketInfo>, StorageError>;

    async fn create_bucket(
        &self,
        tenant: &TenantId,
        bucket: &BucketName,
    ) -> Result<(), StorageError>;

    /// `NoSuchBucket` unless the bucket exists.
    async fn head_bucket(&self, tenant: &TenantId, bucket: &BucketName)
    -> Result<(), StorageError>;

    async fn delete_bucket(
        &self,
        tenant: &TenantId,
        bucket: &BucketName,
    ) -> Result<(), StorageError>;

    /// A bucket setting kept beside the bucket (its format is the S3 layer's, e.g. CORS XML).
    async fn bucket_config(
        &self,
        tenant: &TenantId,
        bucket: &BucketName,
        name: &'static str,
    ) -> Result<Option<String>, StorageError>;

    async fn set_bucket_config(
        &self,
        tenant: &TenantId,
        bucket: &BucketName,
        name: &'static str,
        value: Option<String>,
    ) -> Result<(), StorageError>;

    /// Streams `body` into a new version of `key`, visible atomically once the body ended
    /// cleanly, matched `put.expected_size` and `put.content_md5`, and is durable. Memory stays
    /// bounded whatever the size.
    async fn put_object(
        &self,
        tenant: &TenantId,
        bucket: &BucketName,
        key: &ObjectKey,
        put: PutObject,
        body: PutBody,
    ) -> Result<ObjectMeta, StorageError>;

    /// HEAD: the record, and the range resolved, without a body.
    async fn head_object(
        &self,
        tenant: &TenantId,
        bucket: &BucketName,
        key: &ObjectKey,
        read: ReadRequest,
    ) -> Result<ObjectRead, StorageError>;

    /// GET: the record and the requested bytes, conditions checked against the object read.
    async fn get_object(
        &self,
        tenant: &TenantId,
        bucket: &BucketName,
        key: &ObjectKey,
        read: ReadRequest,
    ) -> Result<ObjectRead, StorageError>;

    /// Copies `source` (already [`resolved`](Backend::resolve)) to `key`: [`stream_copy`]
    /// streams the source's bytes into a PUT (its system metadata stays behind: a layer that
    /// wrote some re-makes its own); a store that can copy on its side (a source of its own)
    /// does so.
    async fn copy_object(
        &self,
        tenant: &TenantId,
        bucket: &BucketName,
        key: &ObjectKey,
        source: CopySource<'_>,
        copy: CopyObject,
    ) -> Result<ObjectMeta, StorageError>;

    async fn get_tags(
        &self,
        tenant: &TenantId,
        bucket: &BucketName,
        key: &ObjectKey,
    ) -> Result<BTreeMap<String, String>, StorageError>;

    /// Replaces an object's tags, keeping its bytes (an empty map deletes them).
    async fn set_tags(
        &self,
        tenant: &TenantId,
        bucket: &BucketName,
        key: &ObjectKey,
        tags: BTreeMap<String, String>,
    ) -> Result<(), StorageError>;

    /// Deletes a key; deleting a key that does not exist succeeds, as in S3.
    async fn delete_object(
        &self,
        tenant: &TenantId,
        bucket: &BucketName,
        key: &ObjectKey,
    ) -> Result<(), StorageError>;

    async fn list_objects(
        &self,
        tenant: &TenantId,
        bucket: &BucketName,
        request: ListRequest,
    ) -> Result<ListPage, StorageError>;

    /// Starts an upload and returns its id.
    async fn create_multipart_upload(
        &self,
        tenant: &TenantId,
        bucket: &BucketName,
        key: &ObjectKey,
        upload: NewUpload,
    ) -> Result<String, StorageError>;

    /// `NoSuchUpload` unless the upload is in progress.
    async fn head_upload(
        &self,
        tenant: &TenantId,
        bucket: &BucketName,
        key: &ObjectKey,
        upload_id: &str,
    ) -> Result<(), StorageError>;

    async fn upload_part(
        &self,
        tenant: &TenantId,
        bucket: &BucketName,
        key: &ObjectKey,
        part: PartId<'_>,
        put: PutObject,
        body: PutBody,
    ) -> Result<PartInfo, StorageError>;

    /// UploadPartCopy: `range` of the source (all of it if `None`) becomes the part, by
    /// [`stream_copy_part`] or on the store's side.
    async fn copy_part(
        &self,
        tenant: &TenantId,
        bucket: &BucketName,
        key: &ObjectKey,
        part: PartId<'_>,
        source: CopySource<'_>,
        range: Option<ReadRange>,
    ) -> Result<PartInfo, StorageError>;

    /// Validates the part list (order, ETags, sizes) and makes the object, atomically.
    async fn complete_multipart_upload(
        &self,
        tenant: &TenantId,
        bucket: &BucketName,
        key: &ObjectKey,
        upload_id: &str,
        parts: Vec<CompletePart>,
        condition: PutCondition,
    ) -> Result<ObjectMeta, StorageError>;

    async fn abort_multipart_upload(
        &self,
        tenant: &TenantId,
        bucket: &BucketName,
        key: &ObjectKey,
        upload_id: &str,
    ) -> Result<(), StorageError>;

    /// Parts after part number `after`, at most `max`; the flag says whether more follow.
    async fn list_parts(
        &self,
        tenant: &TenantId,
        bucket: &BucketName,
        key: &ObjectKey,
        upload_id: &str,
        after: u32,
        max: usize,
    ) -> Result<(Vec<PartInfo>, bool), StorageError>;

    async fn list_multipart_uploads(
        &self,
        tenant: &TenantId,
        bucket: &BucketName,
        request: UploadListRequest,
    ) -> Result<UploadListPage, StorageError>;

    /// Forwards an operation Sluice does not model. Only an upstream store can; the others
    /// answer `Unsupported`.
    async fn forward(
        &self,
        _tenant: &TenantId,
        _bucket: &BucketName,
        _key: Option<&ObjectKey>,
        _request: Forward,
    ) -> Result<Forwarded, StorageError> {
        Err(StorageError::Unsupported("This operation"))
    }
}

/// CopyObject by streaming: the source's bytes into an ordinary PUT of `dest`, as atomic and as
/// bounded in memory as a PUT. What a store does that cannot copy on its side, or whose source
/// is elsewhere.
pub async fn stream_copy(
    dest: &dyn Backend,
    tenant: &TenantId,
    bucket: &BucketName,
    key: &ObjectKey,
    source: CopySource<'_>,
    copy: CopyObject,
) -> Result<ObjectMeta, StorageError> {
    let read = open_copy_source(tenant, &source, None).await?;
    let src = read.meta;
    let tags = match copy.tags {
        Some(tags) => tags,
        // A store that reads objects without their tags (an upstream) counted them: fetch them.
        None if src.tags.is_empty() && src.tag_count.unwrap_or(0) > 0 => {
            source
                .store
                .get_tags(tenant, source.bucket, source.key)
                .await?
        }
        None => src.tags,
    };
    let put = PutObject {
        headers: copy.headers.unwrap_or(src.headers),
        tags,
        condition: copy.condition,
        expected_size: Some(src.size),
        system_meta: copy.system_meta.unwrap_or_default(),
        customer_key: copy.customer_key,
        ..Default::default()
    };
    dest.put_object(tenant, bucket, key, put, storage_body(read.body))
        .await
}

/// UploadPartCopy by streaming; see [`stream_copy`].
pub async fn stream_copy_part(
    dest: &dyn Backend,
    tenant: &TenantId,
    bucket: &BucketName,
    key: &ObjectKey,
    part: PartId<'_>,
    source: CopySource<'_>,
    range: Option<ReadRange>,
) -> Result<PartInfo, StorageError> {
    // Refuse an unknown upload before reading the source.
    dest.head_upload(tenant, bucket, key, part.upload_id)
        .await?;
    let read = open_copy_source(tenant, &source, range).await?;
    let len = read.range.map_or(read.meta.size, |r| r.len());
    let put = PutObject {
        expected_size: Some(len),
        ..Default::default()
    };
    dest.upload_part(tenant, bucket, key, part, put, storage_body(read.body))
        .await
}

/// Opens a copy source for reading, its conditions checked as a copy checks them: a copy has
/// no 304, so every failed condition is 412.
async fn open_copy_source(
    tenant: &TenantId,
    source: &CopySource<'_>,
    range: Option<ReadRange>,
) -> Result<ObjectRead, StorageError> {
    let read = ReadRequest {
        range,
        conditions: source.conditions.clone(),
        customer_key: source.customer_key.cloned(),
    };
    match source
        .store
        .get_object(tenant, source.bucket, source.key, read)
        .await
    {
        Err(StorageError::NotModified(_)) => {
            Err(StorageError::PreconditionFailed { condition: None })
        }
        other => other,
    }
}

/// An object body read from one store, as a body to put into another: a read error (corrupt
/// source, unreachable upstream) fails the write as a storage error, not as the client's.
pub fn storage_body(body: crate::ObjectBody) -> PutBody {
    use futures_util::StreamExt;
    Box::pin(body.map(|item| item.map_err(|e| BodyError(Box::new(e)))))
}
