//! Multipart uploads on the local backend. Each part is received like a PUT (tmp, fsync,
//! rename) into its own blob and recorded under the upload; completion validates the part list
//! and, in one transaction, points the object's record at the chosen parts' blobs, so no byte is
//! copied again. Uploads left unfinished are aborted after a configurable age.

use std::collections::BTreeMap;
use std::time::Duration;

use bytes::Bytes;
use futures_util::Stream;

use super::index::{PartRecord, UploadRecord};
use super::{LocalBackend, late_checksum, now_ms};
use crate::{
    BucketName, CompletePart, ObjectKey, ObjectMeta, PartInfo, PutCondition, PutError, PutObject,
    StorageError, StoredHeaders, TenantId, UploadListPage, UploadListRequest,
};

/// Which part of which upload.
#[derive(Debug, Clone, Copy)]
pub struct PartId<'a> {
    pub upload_id: &'a str,
    pub number: u32,
}

/// S3's part numbers.
pub const PART_NUMBERS: std::ops::RangeInclusive<u32> = 1..=10_000;

impl LocalBackend {
    /// Starts an upload; the headers and tags become the object's when it completes.
    pub async fn create_multipart_upload(
        &self,
        tenant: &TenantId,
        bucket: &BucketName,
        key: &ObjectKey,
        headers: StoredHeaders,
        tags: BTreeMap<String, String>,
    ) -> Result<String, StorageError> {
        // Time first, so ids sort in creation order; then randomness, so they cannot be guessed.
        let upload_id = format!("{:016x}{:016x}", now_ms() as u64, rand::random::<u64>());
        let (t, b, k, id) = owned(tenant, bucket, key, &upload_id);
        let record = UploadRecord::new(headers, tags);
        self.blocking(move |inner| inner.index.create_upload(&t, &b, &k, &id, &record))
            .await?;
        Ok(upload_id)
    }

    pub async fn upload_part<E, S>(
        &self,
        tenant: &TenantId,
        bucket: &BucketName,
        key: &ObjectKey,
        part: PartId<'_>,
        put: PutObject,
        body: S,
    ) -> Result<PartInfo, PutError<E>>
    where
        S: Stream<Item = Result<Bytes, E>> + Send,
    {
        let PartId {
            upload_id,
            number: part_number,
        } = part;
        check_upload_id(upload_id)?;
        // Refuse before reading a byte of the body.
        self.get_upload(tenant, bucket, key, upload_id).await?;
        let received = self.receive(&put, body).await?;
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

    /// The upload's stored headers (NoSuchUpload if it is not in progress).
    pub async fn get_upload(
        &self,
        tenant: &TenantId,
        bucket: &BucketName,
        key: &ObjectKey,
        upload_id: &str,
    ) -> Result<StoredHeaders, StorageError> {
        check_upload_id(upload_id)?;
        let (t, b, k, id) = owned(tenant, bucket, key, upload_id);
        self.blocking(move |inner| inner.index.get_upload(&t, &b, &k, &id).map(|u| u.headers))
            .await
    }

    pub async fn complete_multipart_upload(
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
            for blob in &done.unused_blobs {
                inner.blobs.remove(blob);
            }
            Ok(done.meta)
        })
        .await
    }

    pub async fn abort_multipart_upload(
        &self,
        tenant: &TenantId,
        bucket: &BucketName,
        key: &ObjectKey,
        upload_id: &str,
    ) -> Result<(), StorageError> {
        check_upload_id(upload_id)?;
        let (t, b, k, id) = owned(tenant, bucket, key, upload_id);
        self.blocking(move |inner| {
            for blob in inner.index.abort_upload(&t, &b, &k, &id)? {
                inner.blobs.remove(&blob);
            }
            Ok(())
        })
        .await
    }

    /// Parts after `after`, at most `max`; the flag says whether more follow.
    pub async fn list_parts(
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

    pub async fn list_multipart_uploads(
        &self,
        tenant: &TenantId,
        bucket: &BucketName,
        request: UploadListRequest,
    ) -> Result<UploadListPage, StorageError> {
        let (t, b) = (tenant.clone(), bucket.clone());
        self.blocking(move |inner| inner.index.list_uploads(&t, &b, &request))
            .await
    }

    /// Aborts uploads older than `max_age`; returns how many parts' blobs were removed.
    pub async fn abort_abandoned_uploads(&self, max_age: Duration) -> Result<usize, StorageError> {
        const BATCH: usize = 1000;
        let age_ms = i64::try_from(max_age.as_millis()).unwrap_or(i64::MAX);
        let cutoff = now_ms().saturating_sub(age_ms);
        let mut removed = 0;
        loop {
            let (count, more) = self
                .blocking(move |inner| {
                    let (blobs, more) = inner.index.abort_uploads_before(cutoff, BATCH)?;
                    for blob in &blobs {
                        inner.blobs.remove(blob);
                    }
                    Ok((blobs.len(), more))
                })
                .await?;
            removed += count;
            if !more {
                return Ok(removed);
            }
        }
    }
}

/// Upload ids are made here: 32 hex digits. Anything else cannot name an upload.
fn check_upload_id(upload_id: &str) -> Result<(), StorageError> {
    if upload_id.len() == 32 && upload_id.bytes().all(|b| b.is_ascii_hexdigit()) {
        Ok(())
    } else {
        Err(StorageError::NoSuchUpload)
    }
}

/// An upload's address, owned, for a blocking task.
fn owned(
    tenant: &TenantId,
    bucket: &BucketName,
    key: &ObjectKey,
    upload_id: &str,
) -> (TenantId, BucketName, ObjectKey, String) {
    (
        tenant.clone(),
        bucket.clone(),
        key.clone(),
        upload_id.to_owned(),
    )
}
