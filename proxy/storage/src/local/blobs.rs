//! Object body files: created in `tmp/`, fsynced, then renamed into `blobs/<2 hex>/<id>`.
//! Every file not yet referenced by a committed record is owned by a [`RemoveOnDrop`] guard, so
//! an aborted, failed or cancelled upload leaves nothing behind.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

use tokio::io::AsyncWriteExt;

use crate::StorageError;

#[derive(Debug)]
pub(super) struct BlobDir {
    blobs: PathBuf,
    tmp: PathBuf,
    /// `blobs/` itself, for opens relative to it that only use the kernel's caches.
    dir: std::fs::File,
    /// Cleared when the kernel cannot do cache-only opens (before Linux 5.12).
    cached_opens: AtomicBool,
    /// Cleared when the filesystem cannot do cache-only reads (tmpfs, for one).
    cached_reads: AtomicBool,
}

/// A body being received.
#[derive(Debug)]
pub(super) struct TempBlob {
    pub(super) file: tokio::fs::File,
    pub(super) id: String,
    pub(super) guard: RemoveOnDrop,
}

/// Bytes written between early syncs of a body still arriving.
const EARLY_SYNC_BYTES: u64 = 32 * 1024 * 1024;

/// Starts a large body's trip to the disk while it is still arriving: after every
/// `EARLY_SYNC_BYTES` written, an `fdatasync` of what is there so far runs on a blocking thread
/// (one at a time), so the fsync in [`BlobDir::persist`] has little left to write instead of
/// the whole body. Durability still comes from that fsync; an early sync that fails fails the
/// upload (a failed fsync may not be reported twice).
#[derive(Debug, Default)]
pub(super) struct EarlySync {
    unsynced: u64,
    running: Option<tokio::task::JoinHandle<std::io::Result<()>>>,
}

impl EarlySync {
    /// Records `n` more bytes written to `file`.
    pub(super) async fn wrote(
        &mut self,
        n: usize,
        file: &mut tokio::fs::File,
    ) -> std::io::Result<()> {
        self.unsynced += n as u64;
        if self.unsynced < EARLY_SYNC_BYTES
            || self.running.as_ref().is_some_and(|h| !h.is_finished())
        {
            return Ok(());
        }
        self.wait().await?;
        // Hand tokio's pending write to the kernel, then sync through a second descriptor.
        file.flush().await?;
        let file = file.try_clone().await?.into_std().await;
        self.running = Some(tokio::task::spawn_blocking(move || file.sync_data()));
        self.unsynced = 0;
        Ok(())
    }

    /// Waits for the sync in flight, if any, and reports its error.
    pub(super) async fn wait(&mut self) -> std::io::Result<()> {
        match self.running.take() {
            Some(handle) => handle.await.map_err(std::io::Error::other)?,
            None => Ok(()),
        }
    }
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
        let dir = std::fs::File::open(&blobs)?;
        Ok(Self {
            blobs,
            tmp,
            dir,
            cached_opens: AtomicBool::new(cfg!(target_os = "linux")),
            cached_reads: AtomicBool::new(cfg!(target_os = "linux")),
        })
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

    /// Opens a blob (a path from [`Self::path_of`]) for reading only if that cannot wait on the
    /// disk: `Ok(None)` when resolving the path would need I/O, or the kernel cannot promise
    /// that it will not (`openat2` with `RESOLVE_CACHED`). The caller then opens it on a
    /// blocking thread. A blob that is gone is `NotFound`, as with any open.
    pub(super) fn open_cached(&self, path: &Path) -> std::io::Result<Option<std::fs::File>> {
        #[cfg(target_os = "linux")]
        if self.cached_opens.load(Ordering::Relaxed) {
            use rustix::fs::{Mode, OFlags, ResolveFlags, openat2};
            use rustix::io::Errno;
            let Ok(relative) = path.strip_prefix(&self.blobs) else {
                return Ok(None);
            };
            // Only CACHED: blob paths are ours (keys never become paths), and an operator may
            // have made shard directories symlinks to other disks.
            return match openat2(
                &self.dir,
                relative,
                OFlags::RDONLY | OFlags::CLOEXEC,
                Mode::empty(),
                ResolveFlags::CACHED,
            ) {
                Ok(fd) => Ok(Some(fd.into())),
                Err(Errno::AGAIN) => Ok(None),
                // No openat2 (before 5.6), or no RESOLVE_CACHED (before 5.12), or a sandbox
                // that forbids the call: stop asking.
                Err(Errno::NOSYS | Errno::INVAL | Errno::PERM) => {
                    self.cached_opens.store(false, Ordering::Relaxed);
                    Ok(None)
                }
                Err(err) => Err(err.into()),
            };
        }
        let _ = path;
        Ok(None)
    }

    /// Whether [`Self::read_cached`] can still succeed.
    pub(super) fn reads_from_cache(&self) -> bool {
        self.cached_reads.load(Ordering::Relaxed)
    }

    /// Reads from `offset` into `buf` only what the page cache holds (`preadv2` with
    /// `RWF_NOWAIT`): `Ok(None)` when that is nothing, or the filesystem cannot tell.
    pub(super) fn read_cached(
        &self,
        file: &std::fs::File,
        buf: &mut [u8],
        offset: u64,
    ) -> std::io::Result<Option<usize>> {
        #[cfg(target_os = "linux")]
        if self.reads_from_cache() {
            use rustix::io::{Errno, ReadWriteFlags, preadv2};
            let mut slices = [std::io::IoSliceMut::new(buf)];
            return match preadv2(file, &mut slices, offset, ReadWriteFlags::NOWAIT) {
                Ok(n) => Ok(Some(n)),
                Err(Errno::AGAIN) => Ok(None),
                Err(Errno::OPNOTSUPP | Errno::NOSYS | Errno::INVAL | Errno::PERM) => {
                    self.cached_reads.store(false, Ordering::Relaxed);
                    Ok(None)
                }
                Err(err) => Err(err.into()),
            };
        }
        let _ = (file, buf, offset);
        Ok(None)
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

    /// Removes blobs no record refers to any more (after the commit that released them).
    pub(super) fn remove_all(&self, ids: &[String]) {
        for id in ids {
            self.remove(id);
        }
    }
}
