//! Reading objects: a single-part object's file is opened before the response starts, so an
//! overwrite or delete during a download cannot tear it. A multipart object's parts are opened
//! one after another as the body streams; if an overwrite removes a part meanwhile, the body
//! ends with an error (never with another version's bytes).
//!
//! Blobs with a checksum table (see `integrity`) are read in whole 64 KiB blocks, each verified
//! before any of its bytes is handed out; a mismatch ends the body with `StorageError::Corrupt`.

use std::path::PathBuf;

use bytes::Bytes;
use futures_util::Stream;
use tokio::io::{AsyncReadExt, AsyncSeekExt};

use super::integrity::{BLOCK, crc32c, table_len};
use super::{LocalBackend, index::Record};
use crate::{BucketName, ByteRange, ObjectBody, ObjectKey, ObjectMeta, StorageError, TenantId};

/// Read size for unchecked (older) blobs; checked blobs are read one block at a time. Either
/// way memory per stream stays bounded (hyper applies backpressure per chunk; HTTP/2 may park
/// one chunk per stream).
const READ_CHUNK: usize = 64 * 1024;
/// Checksum table entries read at once: 1,024 blocks cover 64 MiB of data in 4 KiB.
const TABLE_WINDOW: u64 = 1024;
/// Blocks read (and verified) per read call for large objects: 256 KiB per chunk.
const READ_BLOCKS: u64 = 4;
/// A remainder of data plus table up to this size is read in one call.
const SMALL_TAIL: u64 = 256 * 1024;

#[derive(Debug, Clone)]
struct Segment {
    path: PathBuf,
    size: u64,
    checked: bool,
}

/// An object opened for reading.
#[derive(Debug)]
pub struct OpenObject {
    pub meta: ObjectMeta,
    segments: Vec<Segment>,
    first: Option<tokio::fs::File>,
    /// A small object's whole, verified data, read while opening.
    preloaded: Option<Bytes>,
}

impl LocalBackend {
    /// Opens an object for reading, in one blocking call: the index lookup, the open of the
    /// first blob, and for small single-part objects the whole read and its verification (a
    /// GET of a small object then costs one hop to the blocking pool, not three). Retries when
    /// an overwrite replaced the blob between the index read and the open.
    pub async fn open_object(
        &self,
        tenant: &TenantId,
        bucket: &BucketName,
        key: &ObjectKey,
    ) -> Result<OpenObject, StorageError> {
        for _ in 0..3 {
            let (t, b, k) = (tenant.clone(), bucket.clone(), key.clone());
            let opened = self
                .blocking(move |inner| {
                    let record: Record = inner.index.get_object(&t, &b, &k)?;
                    let segments: Vec<Segment> = record
                        .segments()
                        .map(|(id, size, checked)| Segment {
                            path: inner.blobs.path_of(id),
                            size,
                            checked,
                        })
                        .collect();
                    let mut first = match segments.first() {
                        Some(seg) => match std::fs::File::open(&seg.path) {
                            Ok(file) => Some(file),
                            Err(err) if err.kind() == std::io::ErrorKind::NotFound => {
                                return Ok(None);
                            }
                            Err(err) => return Err(err.into()),
                        },
                        None => None,
                    };
                    let preloaded = match (&segments[..], first.as_mut()) {
                        ([seg], Some(file))
                            if seg.checked && seg.size + table_len(seg.size) <= SMALL_TAIL =>
                        {
                            read_small(file, seg.size)?
                        }
                        _ => None,
                    };
                    Ok(Some((record.meta, segments, first, preloaded)))
                })
                .await?;
            let Some((meta, segments, first, preloaded)) = opened else {
                continue;
            };
            let first = if preloaded.is_some() {
                None
            } else {
                first.map(tokio::fs::File::from_std)
            };
            return Ok(OpenObject {
                meta,
                segments,
                first,
                preloaded,
            });
        }
        Err(StorageError::Index(
            "object record points at a missing blob".into(),
        ))
    }
}

/// Reads a small checked blob whole and verifies every block. `None` when it does not verify:
/// the streaming path then finds the same corruption and reports it where it is.
fn read_small(file: &mut std::fs::File, size: u64) -> Result<Option<Bytes>, StorageError> {
    use std::io::Seek;
    let verified = read_and_verify(file, size)?;
    if verified.is_none() {
        // The streaming path reads this file again from the start.
        file.seek(std::io::SeekFrom::Start(0))?;
    }
    Ok(verified)
}

fn read_and_verify(file: &mut std::fs::File, size: u64) -> Result<Option<Bytes>, StorageError> {
    use std::io::Read;
    let mut all = Vec::with_capacity((size + table_len(size)) as usize);
    file.read_to_end(&mut all)?;
    if all.len() as u64 != size + table_len(size) {
        return Ok(None);
    }
    let (data, table) = all.split_at(size as usize);
    let intact = data
        .chunks(BLOCK as usize)
        .zip(table.chunks_exact(4))
        .all(|(block, crc)| crc32c(block) == u32::from_be_bytes([crc[0], crc[1], crc[2], crc[3]]));
    if !intact {
        return Ok(None);
    }
    all.truncate(size as usize);
    Ok(Some(Bytes::from(all)))
}

impl OpenObject {
    /// Part sizes, in order (one entry for a single-part object).
    pub fn part_sizes(&self) -> Vec<u64> {
        self.segments.iter().map(|s| s.size).collect()
    }

    /// The object's bytes, or the given range of them, as a stream of bounded chunks.
    pub async fn into_body(self, range: Option<ByteRange>) -> Result<ObjectBody, StorageError> {
        let (start, len) = match range {
            Some(r) => (r.start, r.len()),
            None => (0, self.meta.size),
        };
        if let Some(data) = self.preloaded {
            let slice = data.slice(start as usize..(start + len) as usize);
            let once = futures_util::stream::iter((!slice.is_empty()).then_some(Ok(slice)));
            return Ok(Box::pin(once));
        }
        // The slices of each segment the range covers: (segment index, offset in it, length).
        let mut plan = Vec::new();
        let mut seg_start = 0u64;
        for (i, seg) in self.segments.iter().enumerate() {
            let seg_end = seg_start + seg.size;
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

/// Reading one slice of one segment.
struct SegmentReader {
    file: tokio::fs::File,
    segment: Segment,
    /// Bytes still to hand out.
    remaining: u64,
    /// Checked blobs: the next block to read, bytes of it to skip, and a window of the table
    /// (first block it covers, entries).
    block: u64,
    skip: u64,
    table: Option<(u64, Vec<u32>)>,
}

impl SegmentReader {
    async fn open(
        file: tokio::fs::File,
        segment: Segment,
        offset: u64,
        len: u64,
    ) -> Result<Self, StorageError> {
        let mut reader = Self {
            file,
            segment,
            remaining: len,
            block: offset / BLOCK,
            skip: offset % BLOCK,
            table: None,
        };
        let data_start = if reader.segment.checked {
            reader.block * BLOCK
        } else {
            offset
        };
        if data_start > 0 {
            reader
                .file
                .seek(std::io::SeekFrom::Start(data_start))
                .await?;
        }
        Ok(reader)
    }

    async fn next(&mut self) -> Result<Bytes, StorageError> {
        if !self.segment.checked {
            let want = self.remaining.min(READ_CHUNK as u64) as usize;
            let mut buf = bytes::BytesMut::zeroed(want);
            let n = self.file.read(&mut buf).await?;
            if n == 0 {
                return Err(short_blob());
            }
            buf.truncate(n);
            self.remaining -= n as u64;
            return Ok(buf.freeze());
        }
        let size = self.segment.size;
        let data_left = size - self.block * BLOCK;
        // Small objects (the common case by count): one read of the rest of the data and the
        // whole table, verified in memory, instead of seeking to the table and back.
        if self.table.is_none() && data_left + table_len(size) <= SMALL_TAIL {
            let mut tail = bytes::BytesMut::zeroed((data_left + table_len(size)) as usize);
            self.file
                .read_exact(&mut tail)
                .await
                .map_err(|_| short_blob())?;
            let tail = tail.freeze();
            let table: Vec<u32> = tail[data_left as usize..]
                .chunks_exact(4)
                .map(|c| u32::from_be_bytes([c[0], c[1], c[2], c[3]]))
                .collect();
            return self
                .verify_and_take(tail.slice(..data_left as usize), |b| Ok(table[b as usize]));
        }
        // Larger reads: up to READ_BLOCKS whole blocks per read, each verified.
        let needed_blocks = (self.skip + self.remaining).div_ceil(BLOCK);
        let blocks = needed_blocks.min(READ_BLOCKS);
        let read_len = (blocks * BLOCK).min(data_left) as usize;
        let mut expected = Vec::with_capacity(blocks as usize);
        for b in self.block..self.block + blocks {
            expected.push(self.table_entry(b).await?);
        }
        let mut buf = bytes::BytesMut::zeroed(read_len);
        self.file
            .read_exact(&mut buf)
            .await
            .map_err(|e| match e.kind() {
                std::io::ErrorKind::UnexpectedEof => short_blob(),
                _ => e.into(),
            })?;
        let first = self.block;
        self.verify_and_take(buf.freeze(), |b| Ok(expected[(b - first) as usize]))
    }

    /// Verifies whole blocks starting at `self.block` (the last may be short), then hands out
    /// the part of them this reader still needs, and advances.
    fn verify_and_take(
        &mut self,
        data: Bytes,
        expected: impl Fn(u64) -> Result<u32, StorageError>,
    ) -> Result<Bytes, StorageError> {
        let needed = ((self.skip + self.remaining) as usize).min(data.len());
        for i in 0..(needed as u64).div_ceil(BLOCK) {
            let index = self.block + i;
            let whole =
                &data[(i * BLOCK) as usize..((i + 1) * BLOCK).min(data.len() as u64) as usize];
            if crc32c(whole) != expected(index)? {
                return Err(StorageError::Corrupt(format!(
                    "block {index} of {} does not match its checksum",
                    self.segment.path.display()
                )));
            }
        }
        let out = data.slice(self.skip as usize..needed);
        let consumed_blocks = (needed as u64).div_ceil(BLOCK);
        self.block += consumed_blocks;
        self.skip = 0;
        self.remaining -= out.len() as u64;
        Ok(out)
    }

    /// The stored CRC of `block`, reading the table a window at a time. Called with the file
    /// positioned at the start of `block`; leaves it there. The same handle serves data and
    /// table, so a blob unlinked by an overwrite stays fully readable.
    async fn table_entry(&mut self, block: u64) -> Result<u32, StorageError> {
        let in_window = |(first, entries): &(u64, Vec<u32>)| {
            block >= *first && block < first + entries.len() as u64
        };
        if !self.table.as_ref().is_some_and(in_window) {
            let count = TABLE_WINDOW.min(self.segment.size.div_ceil(BLOCK) - block);
            self.file
                .seek(std::io::SeekFrom::Start(self.segment.size + block * 4))
                .await?;
            let mut raw = vec![0u8; count as usize * 4];
            self.file
                .read_exact(&mut raw)
                .await
                .map_err(|_| short_blob())?;
            self.file
                .seek(std::io::SeekFrom::Start(block * BLOCK))
                .await?;
            let entries = raw
                .chunks_exact(4)
                .map(|c| u32::from_be_bytes([c[0], c[1], c[2], c[3]]))
                .collect();
            self.table = Some((block, entries));
        }
        let (first, entries) = self.table.as_ref().expect("window loaded");
        Ok(entries[(block - first) as usize])
    }
}

/// A blob shorter than its record says must end the response with an error, never with a
/// silently short body.
fn short_blob() -> StorageError {
    StorageError::Corrupt("stored object is shorter than its record".into())
}

struct ReadState {
    segments: Vec<Segment>,
    first: Option<tokio::fs::File>,
    plan: std::vec::IntoIter<(usize, u64, u64)>,
    current: Option<SegmentReader>,
}

impl ReadState {
    async fn next_chunk(&mut self) -> Option<Result<Bytes, StorageError>> {
        loop {
            if let Some(reader) = &mut self.current {
                if reader.remaining == 0 {
                    self.current = None;
                    continue;
                }
                return Some(reader.next().await);
            }
            let (index, offset, len) = self.plan.next()?;
            let file = match (index, self.first.take()) {
                (0, Some(file)) => Ok(file),
                _ => tokio::fs::File::open(&self.segments[index].path).await,
            };
            let file = match file {
                Ok(f) => f,
                Err(err) => return Some(Err(err.into())),
            };
            match SegmentReader::open(file, self.segments[index].clone(), offset, len).await {
                Ok(reader) => self.current = Some(reader),
                Err(err) => return Some(Err(err)),
            }
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
