//! The built-in local backend: Sluice's embedded default storage.
//!
//! Layout under the data directory (DO NOT CHANGE without a migration: data on disk depends on it):
//!
//! ```text
//! index.redb          ordered index: buckets and object records (redb, ACID, fsync on commit)
//! blobs/ab/<uuid>     object bodies, one file per stored version, named by a random id
//! tmp/<uuid>          bodies being received; everything here is garbage after a restart
//! ```
//!
//! Object keys never become filesystem paths: a key is only ever an index key, and the file
//! holding its bytes is named by a random id. So no key (`../x`, `/etc/passwd`, `a//b`) can
//! reach outside the data directory, by construction rather than by sanitising.
//!
//! A PUT streams into `tmp/`, is fsynced, renamed into `blobs/`, and only then becomes visible
//! through one index transaction that replaces the key's record. Readers see the old object or the
//! new one, never a mix; a crash before the commit leaves the old record in place.

mod blobs;
mod index;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;
use futures_util::{Stream, StreamExt};
use md5::{Digest, Md5};
use tokio::io::{AsyncReadExt, AsyncSeekExt, AsyncWriteExt};

use crate::{
    BucketInfo, BucketName, ByteRange, ListPage, ListRequest, ObjectBody, ObjectKey, ObjectMeta,
    PutError, PutObject, StorageError, TenantId,
};
use blobs::{BlobDir, TempBlob};
use index::{Index, Record};

/// S3's limit for a single PUT.
pub const MAX_PUT_SIZE: u64 = 5 * 1024 * 1024 * 1024;
/// Read size for GET bodies: large enough for throughput, small enough that memory per
/// connection stays bounded (hyper applies backpressure per chunk).
const READ_CHUNK: usize = 64 * 1024;

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

/// An object opened for reading: its record and an open handle on its bytes. The handle keeps
/// the bytes readable even if the key is overwritten or deleted while the body streams.
#[derive(Debug)]
pub struct OpenObject {
    pub meta: ObjectMeta,
    file: tokio::fs::File,
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
            Ok(Inner { root, blobs, index })
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
        self.blocking(move |inner| inner.index.delete_bucket(&tenant, &bucket))
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
        if put.expected_size.is_some_and(|size| size > MAX_PUT_SIZE) {
            return Err(StorageError::EntityTooLarge.into());
        }
        let mut temp = self.inner.blobs.create_temp().await?;
        let mut md5 = Md5::new();
        let mut size: u64 = 0;
        let mut body = std::pin::pin!(body);
        while let Some(chunk) = body.next().await {
            let chunk = chunk.map_err(PutError::Body)?;
            size += chunk.len() as u64;
            if size > put.expected_size.unwrap_or(MAX_PUT_SIZE) {
                let err = if put.expected_size.is_some() {
                    // More bytes than declared: the framing is broken, so is the request.
                    StorageError::IncompleteBody
                } else {
                    StorageError::EntityTooLarge
                };
                return Err(err.into());
            }
            md5.update(&chunk);
            temp.file
                .write_all(&chunk)
                .await
                .map_err(StorageError::Io)?;
        }
        if put.expected_size.is_some_and(|expected| expected != size) {
            return Err(StorageError::IncompleteBody.into());
        }
        temp.file.flush().await.map_err(StorageError::Io)?;
        let TempBlob { file, id, guard } = temp;
        let file = file.into_std().await;
        let digest: [u8; 16] = md5.finalize().into();
        if put.content_md5.is_some_and(|expected| expected != digest) {
            return Err(StorageError::BadDigest.into());
        }
        let meta = ObjectMeta {
            size,
            etag: hex::encode(digest),
            last_modified_ms: now_ms(),
            headers: put.headers,
            checksum: put.checksum,
        };
        let (tenant, bucket, key) = (tenant.clone(), bucket.clone(), key.clone());
        let record_meta = meta.clone();
        // Everything from fsync to commit runs on one blocking task that owns the temp file, so a
        // client that disconnects now cannot leave a committed record without its blob.
        self.blocking(move |inner| {
            let blob = inner.blobs.persist(file, &id, guard)?;
            let replaced =
                inner
                    .index
                    .put_object(&tenant, &bucket, &key, &Record::new(id, record_meta))?;
            blob.disarm();
            if let Some(old) = replaced {
                inner.blobs.remove(&old.blob);
            }
            Ok(())
        })
        .await?;
        Ok(meta)
    }

    pub async fn head_object(
        &self,
        tenant: &TenantId,
        bucket: &BucketName,
        key: &ObjectKey,
    ) -> Result<ObjectMeta, StorageError> {
        let (tenant, bucket, key) = (tenant.clone(), bucket.clone(), key.clone());
        self.blocking(move |inner| {
            inner
                .index
                .get_object(&tenant, &bucket, &key)
                .map(|r| r.meta)
        })
        .await
    }

    /// Opens an object for reading. Retries once when an overwrite replaced the blob between the
    /// index read and the open.
    pub async fn open_object(
        &self,
        tenant: &TenantId,
        bucket: &BucketName,
        key: &ObjectKey,
    ) -> Result<OpenObject, StorageError> {
        for _ in 0..3 {
            let (t, b, k) = (tenant.clone(), bucket.clone(), key.clone());
            let record = self
                .blocking(move |inner| inner.index.get_object(&t, &b, &k))
                .await?;
            match tokio::fs::File::open(self.inner.blobs.path_of(&record.blob)).await {
                Ok(file) => {
                    return Ok(OpenObject {
                        meta: record.meta,
                        file,
                    });
                }
                Err(err) if err.kind() == std::io::ErrorKind::NotFound => continue,
                Err(err) => return Err(err.into()),
            }
        }
        Err(StorageError::Index(
            "object record points at a missing blob".into(),
        ))
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
            if let Some(old) = inner.index.delete_object(&tenant, &bucket, &key)? {
                inner.blobs.remove(&old.blob);
            }
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

impl OpenObject {
    /// The object's bytes, or the given range of them, as a stream of bounded chunks.
    pub async fn into_body(mut self, range: Option<ByteRange>) -> Result<ObjectBody, StorageError> {
        let (start, len) = match range {
            Some(r) => (r.start, r.len()),
            None => (0, self.meta.size),
        };
        if start > 0 {
            self.file.seek(std::io::SeekFrom::Start(start)).await?;
        }
        let reader = self.file.take(len);
        let stream = tokio_util_like::read_stream(reader, len);
        Ok(Box::pin(stream))
    }
}

mod tokio_util_like {
    //! A reader-to-stream adapter that also detects a blob shorter than its record says (a
    //! truncated file must end the response with an error, never a silently short body).
    use super::*;

    pub(super) fn read_stream<R>(
        reader: R,
        expected: u64,
    ) -> impl Stream<Item = Result<Bytes, StorageError>> + Send
    where
        R: tokio::io::AsyncRead + Unpin + Send + 'static,
    {
        futures_util::stream::unfold((reader, expected), |(mut reader, remaining)| async move {
            if remaining == 0 {
                return None;
            }
            let want = remaining.min(READ_CHUNK as u64) as usize;
            let mut buf = bytes::BytesMut::zeroed(want);
            match reader.read(&mut buf).await {
                Ok(0) => Some((
                    Err(StorageError::Io(std::io::Error::new(
                        std::io::ErrorKind::UnexpectedEof,
                        "stored object is shorter than its record",
                    ))),
                    (reader, 0),
                )),
                Ok(n) => {
                    buf.truncate(n);
                    Some((Ok(buf.freeze()), (reader, remaining - n as u64)))
                }
                Err(err) => Some((Err(err.into()), (reader, 0))),
            }
        })
    }
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
