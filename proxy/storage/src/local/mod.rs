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
mod etag;
mod index;
mod integrity;
mod multipart;
mod read;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;
use futures_util::{Stream, StreamExt};
use tokio::io::AsyncWriteExt;

use crate::{
    BucketInfo, BucketName, ListPage, ListRequest, ObjectKey, ObjectMeta, PutError, PutObject,
    StorageError, TenantId,
};
use blobs::{BlobDir, EarlySync, RemoveOnDrop, TempBlob};
use index::{Index, Record};
pub use multipart::{PART_NUMBERS, PartId};
pub use read::OpenObject;

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

    pub async fn list_buckets(&self, tenant: &TenantId) -> Result<Vec<BucketInfo>, StorageError> {
        let tenant = tenant.clone();
        self.blocking(move |inner| inner.index.list_buckets(&tenant))
            .await
    }

    pub async fn create_bucket(
        &self,
        tenant: &TenantId,
        bucket: &BucketName,
    ) -> Result<(), StorageError> {
        let (tenant, bucket) = (tenant.clone(), bucket.clone());
        self.blocking(move |inner| inner.index.create_bucket(&tenant, &bucket))
            .await
    }

    pub async fn head_bucket(
        &self,
        tenant: &TenantId,
        bucket: &BucketName,
    ) -> Result<(), StorageError> {
        let (tenant, bucket) = (tenant.clone(), bucket.clone());
        self.blocking(move |inner| inner.index.require_bucket(&tenant, &bucket))
            .await
    }

    pub async fn delete_bucket(
        &self,
        tenant: &TenantId,
        bucket: &BucketName,
    ) -> Result<(), StorageError> {
        let (tenant, bucket) = (tenant.clone(), bucket.clone());
        self.blocking(move |inner| {
            for blob in inner.index.delete_bucket(&tenant, &bucket)? {
                inner.blobs.remove(&blob);
            }
            Ok(())
        })
        .await
    }

    /// A bucket setting stored beside the bucket (the S3 layer owns its format).
    pub async fn bucket_config(
        &self,
        tenant: &TenantId,
        bucket: &BucketName,
        name: &'static str,
    ) -> Result<Option<String>, StorageError> {
        let (tenant, bucket) = (tenant.clone(), bucket.clone());
        self.blocking(move |inner| inner.index.bucket_config(&tenant, &bucket, name))
            .await
    }

    pub async fn set_bucket_config(
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

    /// Streams `body` into a new version of `key` and makes it visible atomically once the body
    /// ended cleanly, matched `expected_size`, and is durable. If the body stream yields an
    /// error (a failed signature or checksum check), nothing is stored and the error is returned.
    pub async fn put_object<E, S>(
        &self,
        tenant: &TenantId,
        bucket: &BucketName,
        key: &ObjectKey,
        put: PutObject,
        body: S,
    ) -> Result<ObjectMeta, PutError<E>>
    where
        S: Stream<Item = Result<Bytes, E>> + Send,
    {
        self.head_bucket(tenant, bucket).await?;
        let received = self.receive(&put, body).await?;
        let checksum = put.checksum.clone().or_else(|| late_checksum(&put));
        let meta = ObjectMeta {
            size: received.size,
            etag: hex::encode(received.md5),
            last_modified_ms: now_ms(),
            headers: put.headers,
            checksum,
            tags: put.tags,
            parts: None,
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

    /// Receives a body into `tmp/`: size bounded, MD5 computed, Content-MD5 checked.
    async fn receive<E, S>(&self, put: &PutObject, body: S) -> Result<Received, PutError<E>>
    where
        S: Stream<Item = Result<Bytes, E>> + Send,
    {
        if put.expected_size.is_some_and(|size| size > MAX_PUT_SIZE) {
            return Err(StorageError::EntityTooLarge.into());
        }
        let TempBlob {
            mut file,
            id,
            guard,
        } = self.inner.blobs.create_temp().await?;
        let mut md5 = etag::BodyMd5::default();
        let mut blocks = integrity::BlockSummer::new();
        let mut early_sync = EarlySync::default();
        let mut size: u64 = 0;
        let mut body = std::pin::pin!(body);
        while let Some(chunk) = body.next().await {
            let chunk = chunk.map_err(PutError::Body)?;
            size += chunk.len() as u64;
            if size > put.expected_size.unwrap_or(MAX_PUT_SIZE) {
                // More bytes than declared breaks the framing; without a declared size, too big.
                let err = if put.expected_size.is_some() {
                    StorageError::IncompleteBody
                } else {
                    StorageError::EntityTooLarge
                };
                return Err(err.into());
            }
            md5.update(&chunk).await?;
            blocks.update(&chunk);
            file.write_all(&chunk).await.map_err(StorageError::Io)?;
            early_sync
                .wrote(chunk.len(), &mut file)
                .await
                .map_err(StorageError::Io)?;
        }
        if put.expected_size.is_some_and(|expected| expected != size) {
            return Err(StorageError::IncompleteBody.into());
        }
        let md5 = md5.finish().await?;
        if put.content_md5.is_some_and(|expected| expected != md5) {
            return Err(StorageError::BadDigest.into());
        }
        file.write_all(&blocks.finish())
            .await
            .map_err(StorageError::Io)?;
        file.flush().await.map_err(StorageError::Io)?;
        early_sync.wait().await.map_err(StorageError::Io)?;
        let file = file.into_std().await;
        Ok(Received {
            file,
            id,
            guard,
            size,
            md5,
        })
    }

    pub async fn head_object(
        &self,
        tenant: &TenantId,
        bucket: &BucketName,
        key: &ObjectKey,
    ) -> Result<ObjectMeta, StorageError> {
        // A point lookup, on the runtime thread (see `Index::get_object`).
        self.inner
            .index
            .get_object(tenant, bucket, key)
            .map(|r| r.meta)
    }

    /// Replaces an object's tags (PutObjectTagging / DeleteObjectTagging), keeping its bytes.
    pub async fn set_tags(
        &self,
        tenant: &TenantId,
        bucket: &BucketName,
        key: &ObjectKey,
        tags: std::collections::BTreeMap<String, String>,
    ) -> Result<(), StorageError> {
        let (tenant, bucket, key) = (tenant.clone(), bucket.clone(), key.clone());
        self.blocking(move |inner| inner.index.set_tags(&tenant, &bucket, &key, tags))
            .await
    }

    /// Deletes a key. Deleting a key that does not exist succeeds, as in S3.
    pub async fn delete_object(
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

    pub async fn list_objects(
        &self,
        tenant: &TenantId,
        bucket: &BucketName,
        request: ListRequest,
    ) -> Result<ListPage, StorageError> {
        let (tenant, bucket) = (tenant.clone(), bucket.clone());
        self.blocking(move |inner| inner.index.list_objects(&tenant, &bucket, &request))
            .await
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
