//! Multipart upkeep on the local backend: upload ids, and aborting uploads left unfinished
//! after a configurable age. (The operations themselves are `Backend` methods in `mod.rs`: each
//! part is received like a PUT into its own blob and recorded under the upload; completion
//! validates the part list and, in one transaction, points the object's record at the chosen
//! parts' blobs, so no byte is copied again.)

use std::time::Duration;

use super::{LocalBackend, now_ms};
use crate::{BucketName, ObjectKey, StorageError, TenantId};

impl LocalBackend {
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
                    inner.blobs.remove_all(&blobs);
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
pub(super) fn check_upload_id(upload_id: &str) -> Result<(), StorageError> {
    if upload_id.len() == 32 && upload_id.bytes().all(|b| b.is_ascii_hexdigit()) {
        Ok(())
    } else {
        Err(StorageError::NoSuchUpload)
    }
}

/// An upload's address, owned, for a blocking task.
pub(super) fn owned(
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
