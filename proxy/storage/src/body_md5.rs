//! The MD5 of a body as it arrives: S3's ETag of a single-part object, and what Content-MD5 is
//! checked against. MD5 cannot be parallelised and runs at ~550 MB/s per core, so past
//! [`OFFLOAD_AFTER`] bytes the hashing moves to a blocking thread of its own, fed through a
//! bounded channel: a large upload is then bound by the slower of MD5 and the receive-and-write
//! loop, not by their sum. Such a thread waits on the body's chunks, that is on the network,
//! so at most [`HASHERS`] exist at once (out of tokio's 512 blocking threads, which file I/O
//! needs too); a body that finds none free goes on hashing inline. Small bodies never pay for
//! the hand-off.

use bytes::Bytes;
use md5::{Digest, Md5};
use tokio::sync::Semaphore;

use crate::StorageError;

/// Bodies up to this size (an 8 MiB multipart part, say) are hashed inline.
const OFFLOAD_AFTER: u64 = 8 * 1024 * 1024;
/// Batches queued for a hashing thread at most.
const QUEUE: usize = 8;
/// Chunks go to the hashing thread in batches of about this many bytes: one hand-off (and one
/// wake-up of the thread) per batch, not per chunk (a TLS record's 16 KiB).
const BATCH: usize = 512 * 1024;
/// Hashing threads at most, server-wide.
const HASHERS: usize = 16;
static HASHER_PERMITS: Semaphore = Semaphore::const_new(HASHERS);

#[derive(Debug)]
pub(crate) enum BodyMd5 {
    Inline {
        md5: Md5,
        hashed: u64,
    },
    Offloaded {
        batches: tokio::sync::mpsc::Sender<Vec<Bytes>>,
        /// Chunks not handed over yet, and their bytes.
        pending: Vec<Bytes>,
        pending_len: usize,
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
    pub(crate) async fn update(&mut self, chunk: &Bytes) -> Result<(), StorageError> {
        match self {
            Self::Inline { md5, hashed } => {
                md5.update(chunk);
                *hashed += chunk.len() as u64;
                if *hashed > OFFLOAD_AFTER
                    && let Ok(permit) = HASHER_PERMITS.try_acquire()
                {
                    let mut md5 = std::mem::take(md5);
                    let (batches, mut queued) = tokio::sync::mpsc::channel::<Vec<Bytes>>(QUEUE);
                    let hasher = tokio::task::spawn_blocking(move || {
                        let _permit = permit;
                        while let Some(batch) = queued.blocking_recv() {
                            for chunk in batch {
                                md5.update(&chunk);
                            }
                        }
                        md5.finalize().into()
                    });
                    *self = Self::Offloaded {
                        batches,
                        pending: Vec::new(),
                        pending_len: 0,
                        hasher,
                    };
                }
                Ok(())
            }
            Self::Offloaded {
                batches,
                pending,
                pending_len,
                ..
            } => {
                pending.push(chunk.clone());
                *pending_len += chunk.len();
                if *pending_len < BATCH {
                    return Ok(());
                }
                *pending_len = 0;
                batches
                    .send(std::mem::take(pending))
                    .await
                    .map_err(|_| StorageError::Index("the body's MD5 thread stopped".into()))
            }
        }
    }

    pub(crate) async fn finish(self) -> Result<[u8; 16], StorageError> {
        match self {
            Self::Inline { md5, .. } => Ok(md5.finalize().into()),
            Self::Offloaded {
                batches,
                pending,
                hasher,
                ..
            } => {
                if !pending.is_empty() {
                    batches
                        .send(pending)
                        .await
                        .map_err(|_| StorageError::Index("the body's MD5 thread stopped".into()))?;
                }
                drop(batches);
                hasher
                    .await
                    .map_err(|e| StorageError::Index(format!("the body's MD5 thread failed: {e}")))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Inline, moving to a thread mid-body, many chunks after: the digest is always the MD5 of
    /// all the bytes in order. Also with every hashing thread taken: then all inline.
    #[tokio::test]
    async fn digest_is_the_md5_of_every_byte_in_order() {
        let mib = 1 << 20;
        let cases = [
            (1000, 1000),
            (mib, 8 * mib),
            (3 * mib + 17, 8 * mib + 1),
            (65_536, 21 * mib + 5),
        ];
        for all_taken in [false, true] {
            let _taken =
                all_taken.then(|| HASHER_PERMITS.try_acquire_many(HASHERS as u32).unwrap());
            for (chunk, total) in cases {
                let data: Vec<u8> = (0..total).map(|i| (i * 7 % 251) as u8).collect();
                let mut md5 = BodyMd5::default();
                for piece in data.chunks(chunk) {
                    md5.update(&Bytes::copy_from_slice(piece)).await.unwrap();
                }
                let offloaded = matches!(md5, BodyMd5::Offloaded { .. });
                assert_eq!(offloaded, total > 8 * mib && !all_taken, "{chunk}/{total}");
                let want: [u8; 16] = Md5::digest(&data).into();
                assert_eq!(
                    md5.finish().await.unwrap(),
                    want,
                    "chunk {chunk}, total {total}"
                );
            }
        }
        let empty: [u8; 16] = Md5::digest(b"").into();
        assert_eq!(BodyMd5::default().finish().await.unwrap(), empty);
    }
}
