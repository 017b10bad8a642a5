//! The built-in local backend: Sluice's embedded default storage.
//!
//! Layout under the data directory (DO NOT CHANGE without a migration: data on disk depends on it):
//!
//! ```text
//! index.redb          ordered index: buckets, object records, uploads, parts (redb, ACID, fsync on commit)
//! blobs/ab/<uuid>     object bodies and multipart parts, one file per stored body, named by a random id
//! tmp/<uuid>          bodies being received; everything here is garbage after a restart
//! ```
//!
//! Object keys never become filesystem paths: a key is only ever an index key, and the file
//! holding its bytes is named by a random id. So no key (`../x`, `/etc/passwd`, `a//b`) can
//! reach outside the data directory, by construction rather than by sanitising.
//!
//! A PUT streams into `tmp/`, is fsynced, renamed into `blobs/`, and only then becomes visible
//! through one index transaction that replaces the key's record. Readers see the old object or the
//! new one, never a mix; a crash before the commit leaves the old record in place. A completed
//! multipart upload's record points at its parts' blobs in order: parts are never copied again.

mod blobs;
mod index;
mod integrity;
mod multipart;
mod read;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use std::collections::BTreeMap;

use async_trait::async_trait;
use futures_util::StreamExt;
use tokio::io::AsyncWriteExt;

use crate::backend::{stream_copy, stream_copy_part};
use crate::object::{opaque_token, token_text};
use crate::{
    Backend, BucketInfo, BucketName, CompletePart, CopyObject, CopySource, ListPage, ListRequest,
    NewUpload, ObjectKey, ObjectMeta, ObjectRead, PartId, PartInfo, PutBody, PutCondition,
    PutObject, ReadRange, ReadRequest, StorageError, TenantId, UploadListPage, UploadListRequest,
};
use blobs::{BlobDir, EarlySync, RemoveOnDrop, TempBlob};
use index::{Index, PartRecord, Record, UploadRecord};
use multipart::{check_upload_id, owned};

/// The version of a listing continuation token's format: what follows is the key or common
/// prefix to resume after.
const TOKEN_V1: &str = "1/";

/// S3's limit for a single PUT (and for one part).
pub const MAX_PUT_SIZE: u64 = 5 * 1024 * 1024 * 1024;

#[derive(Debug, Clone)]
pub struct LocalBackend {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    root: PathBuf,
    blobs: BlobDir,
    index: Index,
}

/// A body received into `tmp/`, complete and checked, not yet durable or visible.
struct Received {
    file: std::fs::File,
    id: String,
    guard: RemoveOnDrop,
    size: u64,
    /// Zero when not computed (`receive` was told the caller needs none).
    md5: [u8; 16],
}

impl LocalBackend {
    /// Opens (creating if needed) the data directory. Leftover temporary files from an earlier
    /// run are removed: they were never acknowledged.
    pub async fn open(root: impl AsRef<Path>) -> Result<Self, StorageError> {
        let root = root.as_ref().to_path_buf();
        let inner = tokio::task::spawn_blocking(move || -> Result<Inner, StorageError> {
            std::fs::create_dir_all(&root)?;
            // The index takes redb's exclusive file lock: open it first, so a second instance on
            // the same directory fails here before it can touch the first one's temp files.
            let index = Index::open(&root.join("index.redb"))?;
            let blobs = BlobDir::open(&root)?;
            let inner = Inner { root, blobs, index };
            inner.sweep_unreferenced_blobs()?;
            Ok(inner)
        })
        .await
        .map_err(join_error)??;
        Ok(Self {
            inner: Arc::new(inner),
        })
    }

    pub fn root(&self) -> &Path {
        &self.inner.root
    }

    /// Receives a body into `tmp/`: size bounded, MD5 computed (if `hash`, or to check a
    /// Content-MD5), Content-MD5 checked.
    async fn receive(
        &self,
        put: &PutObject,
        body: PutBody,
        hash: bool,
    ) -> Result<Received, StorageError> {
        if put.expected_size.is_some_and(|size| size > MAX_PUT_SIZE) {
            return Err(StorageError::EntityTooLarge);
        }
        let TempBlob {
            mut file,
            id,
            guard,
        } = self.inner.blobs.create_temp().await?;
        let mut md5 = (hash || put.content_md5.is_some()).then(crate::body_md5::BodyMd5::default);
        let mut blocks = integrity::BlockSummer::new();
        let mut early_sync = EarlySync::default();
        let mut size: u64 = 0;
        let mut body = body;
        while let Some(chunk) = body.next().await {
            let chunk = chunk.map_err(StorageError::Body)?;
            size += chunk.len() as u64;
            if size > put.expected_size.unwrap_or(MAX_PUT_SIZE) {
                // More bytes than declared breaks the framing; without a declared size, too big.
                return Err(if put.expected_size.is_some() {
                    StorageError::IncompleteBody
                } else {
                    StorageError::EntityTooLarge
                });
            }
            if let Some(md5) = md5.as_mut() {
                md5.update(&chunk).await?;
            }
            blocks.update(&chunk);
            file.write_all(&chunk).await?;
            early_sync.wrote(chunk.len(), &mut file).await?;
        }
        if put.expected_size.is_some_and(|expected| expected != size) {
            return Err(StorageError::IncompleteBody);
        }
        let md5 = match md5 {
            Some(md5) => md5.finish().await?,
            None => [0; 16],
        };
        if put.content_md5.is_some_and(|expected| expected != md5) {
            return Err(StorageError::BadDigest);
        }
        file.write_all(&blocks.finish()).await?;
        file.flush().await?;
        early_sync.wait().await?;
        let file = file.into_std().await;
        Ok(Received {
            file,
            id,
            guard,
            size,
            md5,
        })
    }

    async fn blocking<T: Send + 'static>(
        &self,
        work: impl FnOnce(&Inner) -> Result<T, StorageError> + Send + 'static,
    ) -> Result<T, StorageError> {
        let inner = Arc::clone(&self.inner);
        tokio::task::spawn_blocking(move || work(&inner))
            .await
            .map_err(join_error)?
    }
}

#[async_trait]
impl Backend for LocalBackend {
    fn resolve(
        &self,
        bucket: &BucketName,
        key: &ObjectKey,
    ) -> Result<(&dyn Backend, BucketName, ObjectKey), StorageError> {
        Ok((self, bucket.clone(), key.clone()))
    }

    async fn list_buckets(&self, tenant: &TenantId) -> Result<Vec<BucketInfo>, StorageError> {
        let tenant = tenant.clone();
        self.blocking(move |inner| inner.index.list_buckets(&tenant))
            .await
    }

    async fn create_bucket(
        &self,
        tenant: &TenantId,
        bucket: &BucketName,
    ) -> Result<(), StorageError> {
        let (tenant, bucket) = (tenant.clone(), bucket.clone());
        self.blocking(move |inner| inner.index.create_bucket(&tenant, &bucket))
            .await
    }

    async fn head_bucket(
        &self,
        tenant: &TenantId,
        bucket: &BucketName,
    ) -> Result<(), StorageError> {
        let (tenant, bucket) = (tenant.clone(), bucket.clone());
        self.blocking(move |inner| inner.index.require_bucket(&tenant, &bucket))
            .await
    }

    async fn delete_bucket(
        &self,
        tenant: &TenantId,
        bucket: &BucketName,
    ) -> Result<(), StorageError> {
        let (tenant, bucket) = (tenant.clone(), bucket.clone());
        self.blocking(move |inner| {
            inner
                .blobs
                .remove_all(&inner.index.delete_bucket(&tenant, &bucket)?);
            Ok(())
        })
        .await
    }

    async fn bucket_config(
        &self,
        tenant: &TenantId,
        bucket: &BucketName,
        name: &'static str,
    ) -> Result<Option<String>, StorageError> {
        let (tenant, bucket) = (tenant.clone(), bucket.clone());
        self.blocking(move |inner| inner.index.bucket_config(&tenant, &bucket, name))
            .await
    }

    async fn set_bucket_config(
        &self,
        tenant: &TenantId,
        bucket: &BucketName,
        name: &'static str,
        value: Option<String>,
    ) -> Result<(), StorageError> {
        let (tenant, bucket) = (tenant.clone(), bucket.clone());
        self.blocking(move |inner| inner.index.set_bucket_config(&tenant, &bucket, name, value))
            .await
    }

    async fn put_object(
        &self,
        tenant: &TenantId,
        bucket: &BucketName,
        key: &ObjectKey,
        put: PutObject,
        body: PutBody,
    ) -> Result<ObjectMeta, StorageError> {
        self.head_bucket(tenant, bucket).await?;
        // An ETag given by a layer spares the hashing.
        let received = self.receive(&put, body, put.etag.is_none()).await?;
        let checksum = put.checksum.clone().or_else(|| late_checksum(&put));
        let mut put = put;
        let system_meta = system_meta(&mut put);
        let meta = ObjectMeta {
            size: received.size,
            etag: put.etag.unwrap_or_else(|| hex::encode(received.md5)),
            last_modified_ms: now_ms(),
            headers: put.headers,
            checksum,
            tags: put.tags,
            tag_count: None,
            parts: None,
            system_meta,
        };
        let (tenant, bucket, key) = (tenant.clone(), bucket.clone(), key.clone());
        let record = Record::single(received.id.clone(), meta.clone());
        let condition = put.condition;
        // Everything from fsync to commit runs on one blocking task that owns the temp file, so a
        // client that disconnects now cannot leave a committed record without its blob.
        self.blocking(move |inner| {
            let blob = inner
                .blobs
                .persist(received.file, &received.id, received.guard)?;
            let replaced = inner
                .index
                .put_object(&tenant, &bucket, &key, &record, &condition)?;
            blob.disarm();
            inner.remove_blobs(replaced.as_ref());
            Ok(())
        })
        .await?;
        Ok(meta)
    }

    async fn head_object(
        &self,
        tenant: &TenantId,
        bucket: &BucketName,
        key: &ObjectKey,
        read: ReadRequest,
    ) -> Result<ObjectRead, StorageError> {
        // A part's bytes need the part layout: that is the open file's.
        if matches!(read.range, Some(ReadRange::Part(_))) {
            let mut opened = self.read_object(tenant, bucket, key, read).await?;
            opened.body = Box::pin(futures_util::stream::empty());
            return Ok(opened);
        }
        // A point lookup, on the runtime thread (see `Index::get_object`).
        let meta = self.inner.index.get_object(tenant, bucket, key)?.meta;
        read.conditions.check(&meta)?;
        let range = read
            .range
            .map(|r| r.resolve(meta.size, &[meta.size]))
            .transpose()?;
        Ok(ObjectRead {
            meta,
            range,
            body: Box::pin(futures_util::stream::empty()),
        })
    }

    async fn get_object(
        &self,
        tenant: &TenantId,
        bucket: &BucketName,
        key: &ObjectKey,
        read: ReadRequest,
    ) -> Result<ObjectRead, StorageError> {
        self.read_object(tenant, bucket, key, read).await
    }

    async fn copy_object(
        &self,
        tenant: &TenantId,
        bucket: &BucketName,
        key: &ObjectKey,
        source: CopySource<'_>,
        copy: CopyObject,
    ) -> Result<ObjectMeta, StorageError> {
        // Bytes are copied even within this store: blobs are never shared between records.
        stream_copy(self, tenant, bucket, key, source, copy).await
    }

    async fn get_tags(
        &self,
        tenant: &TenantId,
        bucket: &BucketName,
        key: &ObjectKey,
    ) -> Result<BTreeMap<String, String>, StorageError> {
        Ok(self.inner.index.get_object(tenant, bucket, key)?.meta.tags)
    }

    async fn set_tags(
        &self,
        tenant: &TenantId,
        bucket: &BucketName,
        key: &ObjectKey,
        tags: BTreeMap<String, String>,
    ) -> Result<(), StorageError> {
        let (tenant, bucket, key) = (tenant.clone(), bucket.clone(), key.clone());
        self.blocking(move |inner| inner.index.set_tags(&tenant, &bucket, &key, tags))
            .await
    }

    async fn delete_object(
        &self,
        tenant: &TenantId,
        bucket: &BucketName,
        key: &ObjectKey,
    ) -> Result<(), StorageError> {
        let (tenant, bucket, key) = (tenant.clone(), bucket.clone(), key.clone());
        self.blocking(move |inner| {
            let old = inner.index.delete_object(&tenant, &bucket, &key)?;
            inner.remove_blobs(old.as_ref());
            Ok(())
        })
        .await
    }

    async fn list_objects(
        &self,
        tenant: &TenantId,
        bucket: &BucketName,
        mut request: ListRequest,
    ) -> Result<ListPage, StorageError> {
        // A token is the key or common prefix to resume after, versioned and encoded: opaque
        // to clients, and checked to decode.
        if let Some(token) = request.continuation.take() {
            let text = token_text(&token)?;
            let after = text
                .strip_prefix(TOKEN_V1)
                .ok_or(StorageError::InvalidToken)?;
            request.start_after = Some(after.to_owned());
        }
        let (tenant, bucket) = (tenant.clone(), bucket.clone());
        let mut page = self
            .blocking(move |inner| inner.index.list_objects(&tenant, &bucket, &request))
            .await?;
        page.next_token = page
            .next_token
            .map(|after| opaque_token(&format!("{TOKEN_V1}{after}")));
        Ok(page)
    }

    async fn create_multipart_upload(
        &self,
        tenant: &TenantId,
        bucket: &BucketName,
        key: &ObjectKey,
        upload: NewUpload,
    ) -> Result<String, StorageError> {
        // Time first, so ids sort in creation order; then randomness, so they cannot be guessed.
        let upload_id = format!("{:016x}{:016x}", now_ms() as u64, rand::random::<u64>());
        let (t, b, k, id) = owned(tenant, bucket, key, &upload_id);
        let record = UploadRecord::new(upload);
        self.blocking(move |inner| inner.index.create_upload(&t, &b, &k, &id, &record))
            .await?;
        Ok(upload_id)
    }

    async fn head_upload(
        &self,
        tenant: &TenantId,
        bucket: &BucketName,
        key: &ObjectKey,
        upload_id: &str,
    ) -> Result<(), StorageError> {
        check_upload_id(upload_id)?;
        let (t, b, k, id) = owned(tenant, bucket, key, upload_id);
        self.blocking(move |inner| inner.index.get_upload(&t, &b, &k, &id).map(drop))
            .await
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
        let PartId {
            upload_id,
            number: part_number,
            ..
        } = part;
        check_upload_id(upload_id)?;
        // Refuse before reading a byte of the body.
        self.head_upload(tenant, bucket, key, upload_id).await?;
        let received = self.receive(&put, body, true).await?;
        let info = PartInfo {
            part_number,
            size: received.size,
            etag: hex::encode(received.md5),
            last_modified_ms: now_ms(),
            checksum: put.checksum.clone().or_else(|| late_checksum(&put)),
        };
        let part = PartRecord {
            blob: received.id.clone(),
            checked: true,
            info: info.clone(),
        };
        let (t, b, k, id) = owned(tenant, bucket, key, upload_id);
        self.blocking(move |inner| {
            let blob = inner
                .blobs
                .persist(received.file, &received.id, received.guard)?;
            let replaced = inner.index.put_part(&t, &b, &k, &id, &part)?;
            blob.disarm();
            if let Some(old) = replaced {
                inner.blobs.remove(&old.blob);
            }
            Ok(())
        })
        .await?;
        Ok(info)
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
        stream_copy_part(self, tenant, bucket, key, part, source, range).await
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
        check_upload_id(upload_id)?;
        let (t, b, k, id) = owned(tenant, bucket, key, upload_id);
        self.blocking(move |inner| {
            let done = inner
                .index
                .complete_upload(&t, &b, &k, &id, &parts, &condition)?;
            inner.remove_blobs(done.replaced.as_ref());
            inner.blobs.remove_all(&done.unused_blobs);
            Ok(done.meta)
        })
        .await
    }

    async fn abort_multipart_upload(
        &self,
        tenant: &TenantId,
        bucket: &BucketName,
        key: &ObjectKey,
        upload_id: &str,
    ) -> Result<(), StorageError> {
        check_upload_id(upload_id)?;
        let (t, b, k, id) = owned(tenant, bucket, key, upload_id);
        self.blocking(move |inner| {
            let released = inner.index.abort_upload(&t, &b, &k, &id)?;
            inner.blobs.remove_all(&released);
            Ok(())
        })
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
        check_upload_id(upload_id)?;
        let (t, b, k, id) = owned(tenant, bucket, key, upload_id);
        self.blocking(move |inner| inner.index.list_parts(&t, &b, &k, &id, after, max))
            .await
    }

    async fn list_multipart_uploads(
        &self,
        tenant: &TenantId,
        bucket: &BucketName,
        request: UploadListRequest,
    ) -> Result<UploadListPage, StorageError> {
        let (t, b) = (tenant.clone(), bucket.clone());
        self.blocking(move |inner| inner.index.list_uploads(&t, &b, &request))
            .await
    }
}

#[cfg(feature = "bench")]
impl LocalBackend {
    /// Benchmarks only (feature `bench`): inserts empty-object records for `keys` in one
    /// transaction, without blob files, to build large buckets for listing benchmarks.
    pub async fn bench_load(
        &self,
        tenant: &TenantId,
        bucket: &BucketName,
        keys: Vec<String>,
    ) -> Result<(), StorageError> {
        let (tenant, bucket) = (tenant.clone(), bucket.clone());
        self.blocking(move |inner| inner.index.bench_load(&tenant, &bucket, &keys))
            .await
    }
}

impl Inner {
    /// Removes blobs left by a crash: written but never committed, or released by a commit but
    /// not yet removed. Runs before the backend serves, so no upload is in flight. Cost: one
    /// directory listing and one index lookup per blob.
    fn sweep_unreferenced_blobs(&self) -> Result<(), StorageError> {
        let mut removed = 0usize;
        for shard in 0..=255u8 {
            let garbage = self.index.unreferenced(self.blobs.shard_ids(shard)?)?;
            removed += garbage.len();
            for id in &garbage {
                self.blobs.remove(id);
            }
        }
        if removed > 0 {
            tracing::info!(
                removed,
                "removed blobs left unreferenced by an earlier crash"
            );
        }
        Ok(())
    }

    /// Removes the blobs of a record no longer referenced (after its replacement committed).
    fn remove_blobs(&self, record: Option<&Record>) {
        for id in record.into_iter().flat_map(Record::blob_ids) {
            self.blobs.remove(id);
        }
    }
}

/// `put.system_meta` with what the body's layer learnt at its end.
fn system_meta(put: &mut PutObject) -> crate::SystemMeta {
    let mut meta = std::mem::take(&mut put.system_meta);
    if let Some(late) = &put.late_meta
        && let Ok(late) = late.lock()
    {
        meta.extend(late.iter().map(|(k, v)| (k.clone(), v.clone())));
    }
    meta
}

fn late_checksum(put: &PutObject) -> Option<(String, String)> {
    put.late_checksum
        .as_ref()
        .and_then(|slot| slot.lock().ok().and_then(|c| c.clone()))
}

fn join_error(err: tokio::task::JoinError) -> StorageError {
    StorageError::Io(std::io::Error::other(err))
}

pub(crate) fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or_default()
}
