//! The MD5 of a body as it arrives: S3's ETag of a single-part object, and what Content-MD5 is
//! checked against. MD5 cannot be parallelised and runs at ~550 MB/s per core, so past
//! [`OFFLOAD_AFTER`] bytes the body is hashed in batches on the blocking pool, one batch at a
//! time, while the next batch arrives: a large upload is then bound by the slower of MD5 and
//! the receive-and-write loop, not by their sum. A batch is only handed over once received, so
//! no thread ever waits on the network; a batch that is full while the previous one is still
//! hashing waits for it (memory stays at two batches). Small bodies are hashed inline.

use bytes::Bytes;
use md5::{Digest, Md5};

use crate::StorageError;

/// Bodies up to this size (an 8 MiB multipart part, say) are hashed inline.
const OFFLOAD_AFTER: u64 = 8 * 1024 * 1024;
/// Bytes per batch handed to the blocking pool.
const BATCH: u64 = 4 * 1024 * 1024;

#[derive(Debug, Default)]
pub(super) struct BodyMd5 {
    /// The state, unless a batch task holds it.
    md5: Option<Md5>,
    running: Option<tokio::task::JoinHandle<Md5>>,
    batch: Vec<Bytes>,
    batched: u64,
    seen: u64,
}

impl BodyMd5 {
    pub(super) async fn update(&mut self, chunk: &Bytes) -> Result<(), StorageError> {
        self.seen += chunk.len() as u64;
        if self.seen <= OFFLOAD_AFTER {
            self.md5.get_or_insert_with(Md5::new).update(chunk);
            return Ok(());
        }
        self.batch.push(chunk.clone());
        self.batched += chunk.len() as u64;
        if self.batched >= BATCH {
            self.hand_over().await?;
        }
        Ok(())
    }

    pub(super) async fn finish(mut self) -> Result<[u8; 16], StorageError> {
        if !self.batch.is_empty() {
            self.hand_over().await?;
        }
        Ok(self.state().await?.finalize().into())
    }

    /// Starts hashing the current batch on the blocking pool, after the previous batch.
    async fn hand_over(&mut self) -> Result<(), StorageError> {
        let mut md5 = self.state().await?;
        let batch = std::mem::take(&mut self.batch);
        self.batched = 0;
        self.running = Some(tokio::task::spawn_blocking(move || {
            batch.iter().for_each(|chunk| md5.update(chunk));
            md5
        }));
        Ok(())
    }

    /// The state once no batch task holds it.
    async fn state(&mut self) -> Result<Md5, StorageError> {
        match self.running.take() {
            Some(task) => task
                .await
                .map_err(|e| StorageError::Index(format!("hashing a body failed: {e}"))),
            None => Ok(self.md5.take().unwrap_or_default()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Inline, crossing into batches mid-chunk, several batches, a batch boundary at the end:
    /// the digest is always the MD5 of all the bytes in order.
    #[tokio::test]
    async fn digest_is_the_md5_of_every_byte_in_order() {
        let mib = 1 << 20;
        for (chunk, total) in [
            (1000, 1000),
            (mib, 8 * mib),
            (3 * mib + 17, 8 * mib + 1),
            (65_536, 21 * mib + 5),
            (mib, 16 * mib),
        ] {
            let data: Vec<u8> = (0..total).map(|i| (i * 7 % 251) as u8).collect();
            let mut md5 = BodyMd5::default();
            for piece in data.chunks(chunk) {
                md5.update(&Bytes::copy_from_slice(piece)).await.unwrap();
            }
            let want: [u8; 16] = Md5::digest(&data).into();
            assert_eq!(
                md5.finish().await.unwrap(),
                want,
                "chunk {chunk}, total {total}"
            );
        }
        let empty: [u8; 16] = Md5::digest(b"").into();
        assert_eq!(BodyMd5::default().finish().await.unwrap(), empty);
    }
}
