//! Reading objects: a single-part object's file is opened before the response starts, so an
//! overwrite or delete during a download cannot tear it. A multipart object's parts are opened
//! one after another as the body streams; if an overwrite removes a part meanwhile, the body
//! ends with an error (never with another version's bytes).

use std::path::PathBuf;

use bytes::Bytes;
use futures_util::Stream;
use tokio::io::{AsyncReadExt, AsyncSeekExt};

use super::{LocalBackend, index::Record};
use crate::{BucketName, ByteRange, ObjectBody, ObjectKey, ObjectMeta, StorageError, TenantId};

/// Read size for GET bodies: large enough for throughput, small enough that memory per stream
/// stays bounded (hyper applies backpressure per chunk; HTTP/2 may park one chunk per stream).
const READ_CHUNK: usize = 64 * 1024;

/// An object opened for reading.
#[derive(Debug)]
pub struct OpenObject {
    pub meta: ObjectMeta,
    /// (path, size) of each segment: one for a single-part object, one per part otherwise.
    segments: Vec<(PathBuf, u64)>,
    first: Option<tokio::fs::File>,
}

impl LocalBackend {
    /// Opens an object for reading. Retries when an overwrite replaced the blob between the
    /// index read and the open.
    pub async fn open_object(
        &self,
        tenant: &TenantId,
        bucket: &BucketName,
        key: &ObjectKey,
    ) -> Result<OpenObject, StorageError> {
        for _ in 0..3 {
            let (t, b, k) = (tenant.clone(), bucket.clone(), key.clone());
            let record: Record = self
                .blocking(move |inner| inner.index.get_object(&t, &b, &k))
                .await?;
            let segments: Vec<(PathBuf, u64)> = record
                .segments()
                .map(|(id, size)| (self.inner.blobs.path_of(id), size))
                .collect();
            let first = match segments.first() {
                Some((path, _)) => match tokio::fs::File::open(path).await {
                    Ok(file) => Some(file),
                    Err(err) if err.kind() == std::io::ErrorKind::NotFound => continue,
                    Err(err) => return Err(err.into()),
                },
                None => None,
            };
            return Ok(OpenObject {
                meta: record.meta,
                segments,
                first,
            });
        }
        Err(StorageError::Index(
            "object record points at a missing blob".into(),
        ))
    }
}

impl OpenObject {
    /// Part sizes, in order (one entry for a single-part object).
    pub fn part_sizes(&self) -> Vec<u64> {
        self.segments.iter().map(|(_, size)| *size).collect()
    }

    /// The object's bytes, or the given range of them, as a stream of bounded chunks.
    pub async fn into_body(self, range: Option<ByteRange>) -> Result<ObjectBody, StorageError> {
        let (start, len) = match range {
            Some(r) => (r.start, r.len()),
            None => (0, self.meta.size),
        };
        // The slices of each segment the range covers: (segment index, offset in it, length).
        let mut plan = Vec::new();
        let mut seg_start = 0u64;
        for (i, (_, size)) in self.segments.iter().enumerate() {
            let seg_end = seg_start + size;
            let from = start.max(seg_start);
            let to = (start + len).min(seg_end);
            if from < to {
                plan.push((i, from - seg_start, to - from));
            }
            seg_start = seg_end;
        }
        let state = ReadState {
            segments: self.segments,
            first: self.first,
            plan: plan.into_iter(),
            current: None,
        };
        Ok(Box::pin(read_stream(state)))
    }
}

struct ReadState {
    segments: Vec<(PathBuf, u64)>,
    first: Option<tokio::fs::File>,
    plan: std::vec::IntoIter<(usize, u64, u64)>,
    /// The open segment and the bytes still to read from it.
    current: Option<(tokio::fs::File, u64)>,
}

impl ReadState {
    async fn next_chunk(&mut self) -> Option<Result<Bytes, StorageError>> {
        loop {
            if let Some((file, remaining)) = &mut self.current {
                if *remaining == 0 {
                    self.current = None;
                    continue;
                }
                let want = (*remaining).min(READ_CHUNK as u64) as usize;
                let mut buf = bytes::BytesMut::zeroed(want);
                return match file.read(&mut buf).await {
                    // A blob shorter than its record must end the response with an error, never
                    // with a silently short body.
                    Ok(0) => Some(Err(StorageError::Io(std::io::Error::new(
                        std::io::ErrorKind::UnexpectedEof,
                        "stored object is shorter than its record",
                    )))),
                    Ok(n) => {
                        *remaining -= n as u64;
                        buf.truncate(n);
                        Some(Ok(buf.freeze()))
                    }
                    Err(err) => Some(Err(err.into())),
                };
            }
            let (index, offset, len) = self.plan.next()?;
            let file = match (index, self.first.take()) {
                (0, Some(file)) => Ok(file),
                _ => tokio::fs::File::open(&self.segments[index].0).await,
            };
            let mut file = match file {
                Ok(f) => f,
                Err(err) => return Some(Err(err.into())),
            };
            if offset > 0
                && let Err(err) = file.seek(std::io::SeekFrom::Start(offset)).await
            {
                return Some(Err(err.into()));
            }
            self.current = Some((file, len));
        }
    }
}

fn read_stream(state: ReadState) -> impl Stream<Item = Result<Bytes, StorageError>> + Send {
    futures_util::stream::unfold(Some(state), |state| async move {
        let mut state = state?;
        match state.next_chunk().await {
            Some(Ok(chunk)) => Some((Ok(chunk), Some(state))),
            // After an error the stream ends.
            Some(Err(err)) => Some((Err(err), None)),
            None => None,
        }
    })
}
