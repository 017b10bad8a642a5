//! The MD5 of a body as it arrives: S3's ETag of a single-part object, and what Content-MD5 is
//! checked against. MD5 cannot be parallelised and runs at ~550 MB/s per core, so past
//! [`OFFLOAD_AFTER`] bytes the hashing moves to a blocking thread of its own, fed through a
//! bounded channel: a large upload is then bound by the slower of MD5 and the receive-and-write
//! loop, not by their sum. Small bodies never pay for the hand-off.

use bytes::Bytes;
use md5::{Digest, Md5};

use crate::StorageError;

/// Bodies up to this size (an 8 MiB multipart part, say) are hashed inline.
const OFFLOAD_AFTER: u64 = 8 * 1024 * 1024;
/// Chunks queued for the hashing thread at most (each is a body chunk, up to hyper's buffer).
const QUEUE: usize = 32;

#[derive(Debug)]
pub(super) enum BodyMd5 {
    Inline {
        md5: Md5,
        hashed: u64,
    },
    Offloaded {
        chunks: tokio::sync::mpsc::Sender<Bytes>,
        hasher: tokio::task::JoinHandle<[u8; 16]>,
    },
}

impl Default for BodyMd5 {
    fn default() -> Self {
        Self::Inline {
            md5: Md5::new(),
            hashed: 0,
        }
    }
}

impl BodyMd5 {
    pub(super) async fn update(&mut self, chunk: &Bytes) -> Result<(), StorageError> {
        match self {
            Self::Inline { md5, hashed } => {
                md5.update(chunk);
                *hashed += chunk.len() as u64;
                if *hashed > OFFLOAD_AFTER {
                    let md5 = std::mem::take(md5);
                    let (chunks, mut queued) = tokio::sync::mpsc::channel::<Bytes>(QUEUE);
                    let hasher = tokio::task::spawn_blocking(move || {
                        let mut md5 = md5;
                        while let Some(chunk) = queued.blocking_recv() {
                            md5.update(&chunk);
                        }
                        md5.finalize().into()
                    });
                    *self = Self::Offloaded { chunks, hasher };
                }
                Ok(())
            }
            Self::Offloaded { chunks, .. } => chunks
                .send(chunk.clone())
                .await
                .map_err(|_| StorageError::Index("the body's MD5 thread stopped".into())),
        }
    }

    pub(super) async fn finish(self) -> Result<[u8; 16], StorageError> {
        match self {
            Self::Inline { md5, .. } => Ok(md5.finalize().into()),
            Self::Offloaded { chunks, hasher } => {
                drop(chunks);
                hasher
                    .await
                    .map_err(|e| StorageError::Index(format!("the body's MD5 thread failed: {e}")))
            }
        }
    }
}
