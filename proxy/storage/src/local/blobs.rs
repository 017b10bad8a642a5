//! Object body files: created in `tmp/`, fsynced, then renamed into `blobs/<2 hex>/<id>`.
//! Every file not yet referenced by a committed record is owned by a [`RemoveOnDrop`] guard, so
//! an aborted, failed or cancelled upload leaves nothing behind.

use std::path::{Path, PathBuf};

use crate::StorageError;

#[derive(Debug)]
pub(super) struct BlobDir {
    blobs: PathBuf,
    tmp: PathBuf,
}

/// A body being received.
#[derive(Debug)]
pub(super) struct TempBlob {
    pub(super) file: tokio::fs::File,
    pub(super) id: String,
    pub(super) guard: RemoveOnDrop,
}

/// Removes its file on drop unless [`RemoveOnDrop::disarm`]ed.
#[derive(Debug)]
pub(super) struct RemoveOnDrop {
    path: PathBuf,
    armed: bool,
}

impl RemoveOnDrop {
    pub(super) fn disarm(mut self) {
        self.armed = false;
    }
}

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        if self.armed {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

impl BlobDir {
    pub(super) fn open(root: &Path) -> Result<Self, StorageError> {
        let blobs = root.join("blobs");
        let tmp = root.join("tmp");
        // Every shard directory exists (and is durable) before the first blob is renamed into
        // one, so a committed record can never point into a directory a crash forgot.
        for shard in 0..=255u8 {
            std::fs::create_dir_all(blobs.join(format!("{shard:02x}")))?;
        }
        std::fs::File::open(&blobs)?.sync_all()?;
        std::fs::File::open(root)?.sync_all()?;
        if tmp.exists() {
            std::fs::remove_dir_all(&tmp)?;
        }
        std::fs::create_dir_all(&tmp)?;
        Ok(Self { blobs, tmp })
    }

    pub(super) async fn create_temp(&self) -> Result<TempBlob, StorageError> {
        let id = uuid::Uuid::new_v4().simple().to_string();
        let path = self.tmp.join(&id);
        let file = tokio::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&path)
            .await?;
        Ok(TempBlob {
            file,
            id,
            guard: RemoveOnDrop { path, armed: true },
        })
    }

    pub(super) fn path_of(&self, id: &str) -> PathBuf {
        self.blobs.join(&id[..2.min(id.len())]).join(id)
    }

    /// Makes a received body durable under its final name: fsync the file, rename it, fsync the
    /// directory. The returned guard still removes the blob until the caller commits its record.
    pub(super) fn persist(
        &self,
        file: std::fs::File,
        id: &str,
        temp: RemoveOnDrop,
    ) -> Result<RemoveOnDrop, StorageError> {
        let final_path = self.path_of(id);
        let shard = final_path
            .parent()
            .expect("blob paths have a shard directory")
            .to_path_buf();
        file.sync_all()?;
        drop(file);
        std::fs::rename(&temp.path, &final_path)?;
        temp.disarm();
        let guard = RemoveOnDrop {
            path: final_path,
            armed: true,
        };
        std::fs::File::open(&shard)?.sync_all()?;
        Ok(guard)
    }

    /// The blob ids in one shard directory (`00`..`ff`).
    pub(super) fn shard_ids(&self, shard: u8) -> Result<Vec<String>, StorageError> {
        let mut ids = Vec::new();
        for entry in std::fs::read_dir(self.blobs.join(format!("{shard:02x}")))? {
            ids.push(entry?.file_name().to_string_lossy().into_owned());
        }
        Ok(ids)
    }

    /// Removes a blob no record points at any more. Failure only leaks space, so it is logged.
    pub(super) fn remove(&self, id: &str) {
        if let Err(err) = std::fs::remove_file(self.path_of(id)) {
            tracing::warn!(blob = id, error = %err, "could not remove an unreferenced blob");
        }
    }
}
