//! The encryption layer over any store: object bodies are sealed on the way in and opened on
//! the way out (format v1 of `sluice_crypto`, `docs/ENCRYPTION.md`). Clients see plaintext
//! sizes, ETags and ranges, and never the envelope.
//!
//! What a client sees of an encrypted object (its [`View`]) follows from the store's record:
//! the envelope in system metadata, the plaintext size from the stored size, and the ETag (the
//! plaintext's MD5) from `sluice-etag` where the store keeps metadata learnt at a body's end
//! (the local backend), else from the object's footer, remembered by the stored ETag.
//! Conditions are checked here against the plaintext ETag, never passed to the store.
//!
//! Not built yet: multipart uploads and copies of encrypted objects (refused as
//! `Unsupported`), SSE-C, and stores that list no system metadata (upstreams).

use std::collections::BTreeMap;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, ready};

use async_trait::async_trait;
use bytes::Bytes;
use futures_util::{Stream, StreamExt};
use md5::{Digest as _, Md5};
use sluice_crypto::stream::{FOOTER_LEN, HEADER_LEN};
use sluice_crypto::{
    CryptoError, DataKey, Envelope, Footer, Keyring, Layout, StreamDecryptor, StreamEncryptor,
    StreamHeader, Wrapping,
};

use crate::{
    Backend, BodyError, BucketInfo, BucketName, CompletePart, CopyObject, CopySource, ListPage,
    ListRequest, NewUpload, ObjectBody, ObjectKey, ObjectMeta, ObjectRead, PartId, PartInfo,
    PutBody, PutCondition, PutObject, ReadRange, ReadRequest, StorageError, TenantId,
    UploadListPage, UploadListRequest,
};

/// The system metadata that holds an object's envelope.
pub const ENVELOPE_META: &str = "sluice-enc";
/// The system metadata that holds an encrypted object's plaintext ETag, where the store keeps
/// metadata learnt at the body's end.
pub const ETAG_META: &str = "sluice-etag";

/// When new objects are encrypted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Policy {
    /// Only when the client asks (`x-amz-server-side-encryption`).
    #[default]
    Off,
    /// Always, unless the client asks otherwise where allowed.
    On,
    /// Always: plaintext is never written.
    Required,
}

/// The encryption layer; see the module documentation.
pub struct Encrypted {
    inner: Arc<dyn Backend>,
    keyring: Arc<Keyring>,
    policy: Policy,
    /// Plaintext ETags of encrypted objects by (bucket, key, stored ETag), for stores that do
    /// not keep them beside the object.
    etags: moka::sync::Cache<(String, String, String), Arc<str>>,
}

impl std::fmt::Debug for Encrypted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Encrypted")
            .field("inner", &self.inner)
            .field("policy", &self.policy)
            .field("keyring", &self.keyring)
            .finish_non_exhaustive()
    }
}

/// How many plaintext ETags are remembered (about 200 bytes each).
const ETAG_CACHE: u64 = 100_000;

/// An encrypted object as a client sees it.
struct View {
    envelope: Envelope,
    key: DataKey,
    /// The stored record with the plaintext size and ETag, and no Sluice metadata.
    meta: ObjectMeta,
    stored_size: u64,
    stored_etag: String,
}

impl Encrypted {
    pub fn new(inner: Arc<dyn Backend>, keyring: Arc<Keyring>, policy: Policy) -> Self {
        Self {
            inner,
            keyring,
            policy,
            etags: moka::sync::Cache::new(ETAG_CACHE),
        }
    }

    fn encrypts_new_objects(&self) -> bool {
        self.policy != Policy::Off
    }

    /// Multipart writes are not encrypted yet: refused rather than stored as plaintext.
    fn refuse_multipart(&self) -> Result<(), StorageError> {
        if self.encrypts_new_objects() {
            return Err(StorageError::Unsupported(
                "A multipart upload to an encrypting route",
            ));
        }
        Ok(())
    }

    fn data_key(&self, envelope: &Envelope) -> Result<DataKey, StorageError> {
        match &envelope.wrapping {
            Wrapping::Keyring(id) => self.keyring.unwrap(id, &envelope.wrapped).map_err(sealed),
            Wrapping::Customer => Err(StorageError::Unsupported(
                "Reading an object encrypted with a customer key (SSE-C)",
            )),
        }
    }

    /// The client's view of a stored record: `None` for a plaintext object.
    async fn view(
        &self,
        tenant: &TenantId,
        bucket: &BucketName,
        key: &ObjectKey,
        mut meta: ObjectMeta,
    ) -> Result<Option<View>, StorageError> {
        let Some(text) = meta.system_meta.remove(ENVELOPE_META) else {
            return Ok(None);
        };
        let envelope = Envelope::from_meta(&text).map_err(sealed)?;
        let data_key = self.data_key(&envelope)?;
        if meta.parts.is_some() {
            return Err(StorageError::Unsupported(
                "Reading an encrypted multipart object",
            ));
        }
        let stored_size = meta.size;
        let stored_etag = meta.etag.clone();
        meta.size = envelope.layout.plain_len(stored_size).map_err(sealed)?;
        meta.etag = match meta.system_meta.remove(ETAG_META) {
            Some(etag) => etag,
            None => {
                self.footer_etag(tenant, bucket, key, &meta.etag, &data_key, stored_size)
                    .await?
            }
        };
        meta.system_meta.clear();
        Ok(Some(View {
            envelope,
            key: data_key,
            meta,
            stored_size,
            stored_etag,
        }))
    }

    /// The plaintext ETag kept in an object's footer, remembered by its stored ETag.
    async fn footer_etag(
        &self,
        tenant: &TenantId,
        bucket: &BucketName,
        key: &ObjectKey,
        stored_etag: &str,
        data_key: &DataKey,
        stored_size: u64,
    ) -> Result<String, StorageError> {
        let cache_key = (
            bucket.as_str().to_owned(),
            key.as_str().to_owned(),
            stored_etag.to_owned(),
        );
        if let Some(etag) = self.etags.get(&cache_key) {
            return Ok(etag.to_string());
        }
        let first = stored_size
            .checked_sub(FOOTER_LEN as u64)
            .ok_or_else(|| corrupt("shorter than a footer"))?;
        let bytes = self
            .read_stored(tenant, bucket, key, first, stored_size - 1, stored_etag)
            .await?;
        let footer = Footer::open(data_key, &bytes).map_err(sealed)?;
        let etag = hex::encode(footer.md5);
        self.etags.insert(cache_key, etag.as_str().into());
        Ok(etag)
    }

    /// Stored bytes `first..=last` of an object, whole, if its stored ETag is still
    /// `stored_etag` (an object replaced meanwhile is not mixed with the one described).
    async fn read_stored(
        &self,
        tenant: &TenantId,
        bucket: &BucketName,
        key: &ObjectKey,
        first: u64,
        last: u64,
        stored_etag: &str,
    ) -> Result<Vec<u8>, StorageError> {
        let read = self
            .inner
            .get_object(tenant, bucket, key, stored_read(first, last, stored_etag))
            .await
            .map_err(replaced_meanwhile)?;
        let mut out = Vec::with_capacity((last - first + 1) as usize);
        let mut body = read.body;
        while let Some(piece) = body.next().await {
            out.extend_from_slice(&piece?);
        }
        if out.len() as u64 != last - first + 1 {
            return Err(corrupt("a ranged read came back short"));
        }
        Ok(out)
    }

    /// The stored record of `key`, without conditions (they are checked on the view).
    async fn stored_head(
        &self,
        tenant: &TenantId,
        bucket: &BucketName,
        key: &ObjectKey,
    ) -> Result<ObjectMeta, StorageError> {
        Ok(self
            .inner
            .head_object(tenant, bucket, key, ReadRequest::default())
            .await?
            .meta)
    }

    /// Opens `view`'s bytes for `range` (all of them if `None`): only the stored segments that
    /// cover it are read. The first piece is decrypted before this returns, so damage at the
    /// start fails the request before any response.
    async fn open(
        &self,
        tenant: &TenantId,
        bucket: &BucketName,
        key: &ObjectKey,
        view: &View,
        range: Option<crate::ByteRange>,
    ) -> Result<ObjectBody, StorageError> {
        let layout = view.envelope.layout;
        let stored_etag = &view.stored_etag;
        let (decryptor, first, last) = match range {
            None => (
                StreamDecryptor::whole(&view.key, layout, view.stored_size, Some(0))
                    .map_err(sealed)?,
                0,
                view.stored_size - 1,
            ),
            Some(r) => {
                let header_bytes = self
                    .read_stored(tenant, bucket, key, 0, HEADER_LEN as u64 - 1, stored_etag)
                    .await?;
                let header = StreamHeader::parse(&header_bytes).map_err(sealed)?;
                if header.layout != layout || header.part != 0 {
                    return Err(corrupt("the stream header does not match the envelope"));
                }
                let span = layout.span(view.meta.size, r.start, r.end_inclusive);
                let decryptor = StreamDecryptor::span(&view.key, &header, view.meta.size, &span);
                (decryptor, span.stored_first, span.stored_last)
            }
        };
        let read = self
            .inner
            .get_object(tenant, bucket, key, stored_read(first, last, stored_etag))
            .await
            .map_err(replaced_meanwhile)?;
        let mut opening = Opening {
            body: read.body,
            decryptor: Some(decryptor),
        };
        match opening.next().await {
            None => Ok(Box::pin(futures_util::stream::empty())),
            Some(Err(err)) => Err(err),
            Some(Ok(first)) => Ok(Box::pin(
                futures_util::stream::once(async move { Ok(first) }).chain(opening),
            )),
        }
    }

    async fn read(
        &self,
        tenant: &TenantId,
        bucket: &BucketName,
        key: &ObjectKey,
        read: ReadRequest,
        with_body: bool,
    ) -> Result<ObjectRead, StorageError> {
        let meta = self.stored_head(tenant, bucket, key).await?;
        let Some(view) = self.view(tenant, bucket, key, meta).await? else {
            // A plaintext object (written before encryption was on): read as it is.
            return if with_body {
                self.inner.get_object(tenant, bucket, key, read).await
            } else {
                self.inner.head_object(tenant, bucket, key, read).await
            };
        };
        read.conditions.check(&view.meta)?;
        let size = view.meta.size;
        let range = read.range.map(|r| r.resolve(size, &[size])).transpose()?;
        let body = if !with_body || size == 0 {
            Box::pin(futures_util::stream::empty()) as ObjectBody
        } else {
            // A range that is the whole object is read as the whole object (footer checked).
            let part = range.filter(|r| r.start > 0 || r.end_inclusive + 1 < size);
            self.open(tenant, bucket, key, &view, part).await?
        };
        Ok(ObjectRead {
            meta: view.meta,
            range,
            body,
        })
    }
}

/// A read of stored bytes `first..=last`, only of the object with `stored_etag`.
fn stored_read(first: u64, last: u64, stored_etag: &str) -> ReadRequest {
    ReadRequest {
        range: Some(ReadRange::Exact { first, last }),
        conditions: crate::Preconditions {
            if_match: Some(format!("\"{stored_etag}\"")),
            ..Default::default()
        },
    }
}

/// The object changed between reading its record and its bytes: as S3 answers a read racing
/// an overwrite, it is simply gone from under the reader.
fn replaced_meanwhile(err: StorageError) -> StorageError {
    match err {
        StorageError::PreconditionFailed { .. } => {
            StorageError::Corrupt("the object was replaced while it was being read".into())
        }
        other => other,
    }
}

fn sealed(err: CryptoError) -> StorageError {
    match err {
        CryptoError::UnknownKey(_) | CryptoError::WrongKey(_) => {
            StorageError::Corrupt(format!("cannot open the object's data key: {err}"))
        }
        other => StorageError::Corrupt(format!("encrypted object: {other}")),
    }
}

fn corrupt(what: &str) -> StorageError {
    StorageError::Corrupt(format!("encrypted object: {what}"))
}

/// A body being sealed on its way into the store: the plaintext's MD5 is taken as it passes
/// (the ETag, and the client's `Content-MD5` checked), and the stream is finished with it.
struct Sealing {
    body: PutBody,
    encryptor: Option<StreamEncryptor>,
    md5: Md5,
    content_md5: Option<[u8; 16]>,
    late: crate::LateMeta,
    segment: usize,
}

impl Stream for Sealing {
    type Item = Result<Bytes, BodyError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        loop {
            if this.encryptor.is_none() {
                return Poll::Ready(None);
            }
            match ready!(this.body.poll_next_unpin(cx)) {
                Some(Ok(piece)) => {
                    this.md5.update(&piece);
                    let grows = piece.len() / this.segment * 16 + 64;
                    let mut out = Vec::with_capacity(piece.len() + grows + HEADER_LEN);
                    let encryptor = this.encryptor.as_mut().expect("checked above");
                    encryptor.push(&piece, &mut out);
                    if !out.is_empty() {
                        return Poll::Ready(Some(Ok(out.into())));
                    }
                }
                Some(Err(err)) => {
                    this.encryptor = None;
                    return Poll::Ready(Some(Err(err)));
                }
                None => {
                    let encryptor = this.encryptor.take().expect("checked above");
                    let md5: [u8; 16] = this.md5.finalize_reset().into();
                    if this.content_md5.is_some_and(|expected| expected != md5) {
                        return Poll::Ready(Some(Err(BodyError(Box::new(
                            StorageError::BadDigest,
                        )))));
                    }
                    if let Ok(mut late) = this.late.lock() {
                        late.insert(ETAG_META.to_owned(), hex::encode(md5));
                    }
                    let mut out = Vec::with_capacity(this.segment + 16 + FOOTER_LEN);
                    encryptor.finish(md5, &mut out);
                    return Poll::Ready(Some(Ok(out.into())));
                }
            }
        }
    }
}

/// Stored bytes being opened on their way out: plaintext only of authenticated segments; an
/// integrity failure or an early end is an error, so no client takes a cut body as whole.
struct Opening {
    body: ObjectBody,
    decryptor: Option<StreamDecryptor>,
}

impl Stream for Opening {
    type Item = Result<Bytes, StorageError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        loop {
            let Some(decryptor) = this.decryptor.as_mut() else {
                return Poll::Ready(None);
            };
            match ready!(this.body.poll_next_unpin(cx)) {
                Some(Ok(piece)) => {
                    let mut out = Vec::with_capacity(piece.len());
                    if let Err(err) = decryptor.push(&piece, &mut out) {
                        this.decryptor = None;
                        tracing::error!(error = %err, "an encrypted object failed to decrypt");
                        return Poll::Ready(Some(Err(sealed(err))));
                    }
                    if !out.is_empty() {
                        return Poll::Ready(Some(Ok(out.into())));
                    }
                }
                Some(Err(err)) => {
                    this.decryptor = None;
                    return Poll::Ready(Some(Err(err)));
                }
                None => {
                    let decryptor = this.decryptor.take().expect("checked above");
                    return Poll::Ready(decryptor.finish().err().map(|err| {
                        tracing::error!(error = %err, "an encrypted object ends early");
                        Err(sealed(err))
                    }));
                }
            }
        }
    }
}

#[async_trait]
impl Backend for Encrypted {
    fn resolve(
        &self,
        bucket: &BucketName,
        key: &ObjectKey,
    ) -> Result<(&dyn Backend, BucketName, ObjectKey), StorageError> {
        // Copies read through this layer (never the stored bytes underneath).
        Ok((self, bucket.clone(), key.clone()))
    }

    async fn list_buckets(&self, tenant: &TenantId) -> Result<Vec<BucketInfo>, StorageError> {
        self.inner.list_buckets(tenant).await
    }

    async fn create_bucket(
        &self,
        tenant: &TenantId,
        bucket: &BucketName,
    ) -> Result<(), StorageError> {
        self.inner.create_bucket(tenant, bucket).await
    }

    async fn head_bucket(
        &self,
        tenant: &TenantId,
        bucket: &BucketName,
    ) -> Result<(), StorageError> {
        self.inner.head_bucket(tenant, bucket).await
    }

    async fn delete_bucket(
        &self,
        tenant: &TenantId,
        bucket: &BucketName,
    ) -> Result<(), StorageError> {
        self.inner.delete_bucket(tenant, bucket).await
    }

    async fn bucket_config(
        &self,
        tenant: &TenantId,
        bucket: &BucketName,
        name: &'static str,
    ) -> Result<Option<String>, StorageError> {
        self.inner.bucket_config(tenant, bucket, name).await
    }

    async fn set_bucket_config(
        &self,
        tenant: &TenantId,
        bucket: &BucketName,
        name: &'static str,
        value: Option<String>,
    ) -> Result<(), StorageError> {
        self.inner
            .set_bucket_config(tenant, bucket, name, value)
            .await
    }

    async fn put_object(
        &self,
        tenant: &TenantId,
        bucket: &BucketName,
        key: &ObjectKey,
        mut put: PutObject,
        body: PutBody,
    ) -> Result<ObjectMeta, StorageError> {
        if !self.encrypts_new_objects() {
            return self.inner.put_object(tenant, bucket, key, put, body).await;
        }
        if let PutCondition::IfMatch(wanted) = &put.condition {
            // The store knows only stored ETags: the client's (plaintext) one is checked here,
            // and the store is asked to replace exactly the object that was checked.
            match self.stored_head(tenant, bucket, key).await {
                // A missing key: the store answers as it does for any conditional write.
                Err(StorageError::NoSuchKey) => {}
                Err(err) => return Err(err),
                Ok(meta) => {
                    let stored_etag = meta.etag.clone();
                    let current = match self.view(tenant, bucket, key, meta).await? {
                        Some(view) => view.meta.etag,
                        None => stored_etag.clone(),
                    };
                    if wanted.trim_matches('"') != current {
                        return Err(StorageError::PreconditionFailed {
                            condition: Some("If-Match"),
                        });
                    }
                    put.condition = PutCondition::IfMatch(stored_etag);
                }
            }
        }
        let layout = Layout::default();
        let data_key = DataKey::generate();
        let (wrapping, wrapped) = self.keyring.wrap(&data_key);
        let envelope = Envelope {
            layout,
            wrapping,
            wrapped,
        };
        let plain_size = put.expected_size;
        put.expected_size = plain_size.map(|p| layout.stored_len(p));
        put.system_meta
            .insert(ENVELOPE_META.to_owned(), envelope.to_meta());
        let late: crate::LateMeta = Arc::new(Mutex::new(BTreeMap::new()));
        put.late_meta = Some(Arc::clone(&late));
        // The store sees ciphertext: the client's digests are checked here, on the plaintext.
        let content_md5 = put.content_md5.take();
        put.sha256 = None;
        put.etag = None;
        let sealing = Sealing {
            body,
            encryptor: Some(StreamEncryptor::new(&data_key, layout, 0)),
            md5: Md5::new(),
            content_md5,
            late: Arc::clone(&late),
            segment: layout.segment_size() as usize,
        };
        let stored = self
            .inner
            .put_object(tenant, bucket, key, put, Box::pin(sealing))
            .await
            .map_err(|err| match err {
                StorageError::Body(body)
                    if matches!(
                        body.0.downcast_ref::<StorageError>(),
                        Some(StorageError::BadDigest)
                    ) =>
                {
                    StorageError::BadDigest
                }
                other => other,
            })?;
        let etag = late
            .lock()
            .ok()
            .and_then(|late| late.get(ETAG_META).cloned())
            .ok_or_else(|| corrupt("the body ended without its ETag"))?;
        self.etags.insert(
            (
                bucket.as_str().to_owned(),
                key.as_str().to_owned(),
                stored.etag.clone(),
            ),
            etag.as_str().into(),
        );
        let mut meta = stored;
        meta.size = layout.plain_len(meta.size).map_err(sealed)?;
        meta.etag = etag;
        meta.system_meta.clear();
        Ok(meta)
    }

    async fn head_object(
        &self,
        tenant: &TenantId,
        bucket: &BucketName,
        key: &ObjectKey,
        read: ReadRequest,
    ) -> Result<ObjectRead, StorageError> {
        self.read(tenant, bucket, key, read, false).await
    }

    async fn get_object(
        &self,
        tenant: &TenantId,
        bucket: &BucketName,
        key: &ObjectKey,
        read: ReadRequest,
    ) -> Result<ObjectRead, StorageError> {
        self.read(tenant, bucket, key, read, true).await
    }

    async fn copy_object(
        &self,
        tenant: &TenantId,
        bucket: &BucketName,
        key: &ObjectKey,
        source: CopySource<'_>,
        copy: CopyObject,
    ) -> Result<ObjectMeta, StorageError> {
        // Through this layer both ways: the source decrypted, the copy sealed anew.
        crate::stream_copy(self, tenant, bucket, key, source, copy).await
    }

    async fn get_tags(
        &self,
        tenant: &TenantId,
        bucket: &BucketName,
        key: &ObjectKey,
    ) -> Result<BTreeMap<String, String>, StorageError> {
        self.inner.get_tags(tenant, bucket, key).await
    }

    async fn set_tags(
        &self,
        tenant: &TenantId,
        bucket: &BucketName,
        key: &ObjectKey,
        tags: BTreeMap<String, String>,
    ) -> Result<(), StorageError> {
        self.inner.set_tags(tenant, bucket, key, tags).await
    }

    async fn delete_object(
        &self,
        tenant: &TenantId,
        bucket: &BucketName,
        key: &ObjectKey,
    ) -> Result<(), StorageError> {
        self.inner.delete_object(tenant, bucket, key).await
    }

    async fn list_objects(
        &self,
        tenant: &TenantId,
        bucket: &BucketName,
        request: ListRequest,
    ) -> Result<ListPage, StorageError> {
        let mut page = self.inner.list_objects(tenant, bucket, request).await?;
        for (key, meta) in &mut page.objects {
            if let Some(view) = self.view(tenant, bucket, key, meta.clone()).await? {
                *meta = view.meta;
            }
        }
        Ok(page)
    }

    async fn create_multipart_upload(
        &self,
        tenant: &TenantId,
        bucket: &BucketName,
        key: &ObjectKey,
        upload: NewUpload,
    ) -> Result<String, StorageError> {
        self.refuse_multipart()?;
        self.inner
            .create_multipart_upload(tenant, bucket, key, upload)
            .await
    }

    async fn head_upload(
        &self,
        tenant: &TenantId,
        bucket: &BucketName,
        key: &ObjectKey,
        upload_id: &str,
    ) -> Result<(), StorageError> {
        self.inner.head_upload(tenant, bucket, key, upload_id).await
    }

    async fn upload_part(
        &self,
        tenant: &TenantId,
        bucket: &BucketName,
        key: &ObjectKey,
        part: PartId<'_>,
        put: PutObject,
        body: PutBody,
    ) -> Result<PartInfo, StorageError> {
        self.refuse_multipart()?;
        self.inner
            .upload_part(tenant, bucket, key, part, put, body)
            .await
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
        self.refuse_multipart()?;
        crate::stream_copy_part(self, tenant, bucket, key, part, source, range).await
    }

    async fn complete_multipart_upload(
        &self,
        tenant: &TenantId,
        bucket: &BucketName,
        key: &ObjectKey,
        upload_id: &str,
        parts: Vec<CompletePart>,
        condition: PutCondition,
    ) -> Result<ObjectMeta, StorageError> {
        self.refuse_multipart()?;
        self.inner
            .complete_multipart_upload(tenant, bucket, key, upload_id, parts, condition)
            .await
    }

    async fn abort_multipart_upload(
        &self,
        tenant: &TenantId,
        bucket: &BucketName,
        key: &ObjectKey,
        upload_id: &str,
    ) -> Result<(), StorageError> {
        self.inner
            .abort_multipart_upload(tenant, bucket, key, upload_id)
            .await
    }

    async fn list_parts(
        &self,
        tenant: &TenantId,
        bucket: &BucketName,
        key: &ObjectKey,
        upload_id: &str,
        after: u32,
        max: usize,
    ) -> Result<(Vec<PartInfo>, bool), StorageError> {
        self.inner
            .list_parts(tenant, bucket, key, upload_id, after, max)
            .await
    }

    async fn list_multipart_uploads(
        &self,
        tenant: &TenantId,
        bucket: &BucketName,
        request: UploadListRequest,
    ) -> Result<UploadListPage, StorageError> {
        self.inner
            .list_multipart_uploads(tenant, bucket, request)
            .await
    }
}
