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
use crate::{
    BucketName, ByteRange, ObjectBody, ObjectKey, ObjectMeta, ObjectRead, ReadRequest,
    StorageError, TenantId,
};

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
struct OpenObject {
    meta: ObjectMeta,
    segments: Vec<Segment>,
    first: Option<tokio::fs::File>,
    /// A small object's whole, verified data, read while opening.
    preloaded: Option<Bytes>,
}

impl LocalBackend {
    /// Opens an object for reading: the index lookup, the open of the first blob, and for a
    /// small single-part object the whole read and its verification. When all of that is in
    /// memory (redb's cache, the kernel's dentry and page caches) it completes here, on the
    /// runtime thread, like a static file server's open and read; whatever would wait on the
    /// disk goes to the blocking pool instead. Retries when an overwrite replaced the blob
    /// between the index read and the open. Preconditions are checked before any file is opened.
    pub(super) async fn read_object(
        &self,
        tenant: &TenantId,
        bucket: &BucketName,
        key: &ObjectKey,
        read: ReadRequest,
    ) -> Result<ObjectRead, StorageError> {
        let open = self.open_object(tenant, bucket, key, &read).await?;
        let meta = open.meta.clone();
        let range = read
            .range
            .map(|r| r.resolve(meta.size, &open.part_sizes()))
            .transpose()?;
        let body = open.into_body(range).await?;
        Ok(ObjectRead { meta, range, body })
    }

    async fn open_object(
        &self,
        tenant: &TenantId,
        bucket: &BucketName,
        key: &ObjectKey,
        read: &ReadRequest,
    ) -> Result<OpenObject, StorageError> {
        for _ in 0..3 {
            let record: Record = self.inner.index.get_object(tenant, bucket, key)?;
            read.conditions.check(&record.meta)?;
            let segments = self.inner.segments(&record);
            let (segments, opened) = match self.inner.open_first(&segments, Wait::No)? {
                Opened::WouldBlock => {
                    self.blocking(move |inner| {
                        let opened = inner.open_first(&segments, Wait::Yes)?;
                        Ok((segments, opened))
                    })
                    .await?
                }
                opened => (segments, opened),
            };
            let Opened::Ready { first, preloaded } = opened else {
                continue;
            };
            return Ok(OpenObject {
                meta: record.meta,
                segments,
                first: first.map(tokio::fs::File::from_std),
                preloaded,
            });
        }
        Err(StorageError::Index(
            "object record points at a missing blob".into(),
        ))
    }
}

/// Whether opening may wait on the disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Wait {
    Yes,
    No,
}

enum Opened {
    Ready {
        /// The first segment's file, unless the object is empty or preloaded.
        first: Option<std::fs::File>,
        preloaded: Option<Bytes>,
    },
    /// The first blob is gone: an overwrite replaced the record after it was read.
    Replaced,
    /// Only with `Wait::No`: finishing would wait on the disk.
    WouldBlock,
}

impl super::Inner {
    /// Where a record's bytes are, segment by segment.
    fn segments(&self, record: &Record) -> Vec<Segment> {
        record
            .segments()
            .map(|(id, size, checked)| Segment {
                path: self.blobs.path_of(id),
                size,
                checked,
            })
            .collect()
    }

    fn open_first(&self, segments: &[Segment], wait: Wait) -> Result<Opened, StorageError> {
        let Some(seg) = segments.first() else {
            return Ok(Opened::Ready {
                first: None,
                preloaded: None,
            });
        };
        let small =
            segments.len() == 1 && seg.checked && seg.size + table_len(seg.size) <= SMALL_TAIL;
        if wait == Wait::No && small && !self.blobs.reads_from_cache() {
            return Ok(Opened::WouldBlock);
        }
        let opened = match wait {
            Wait::No => self.blobs.open_cached(&seg.path),
            Wait::Yes => std::fs::File::open(&seg.path).map(Some),
        };
        let file = match opened {
            Ok(Some(file)) => file,
            Ok(None) => return Ok(Opened::WouldBlock),
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(Opened::Replaced),
            Err(err) => return Err(err.into()),
        };
        if !small {
            return Ok(Opened::Ready {
                first: Some(file),
                preloaded: None,
            });
        }
        let Some(stored) = read_whole(&self.blobs, &file, seg.size + table_len(seg.size), wait)?
        else {
            return Ok(Opened::WouldBlock);
        };
        // A blob that does not verify is left to the streaming path, which reports the
        // corruption where it is.
        Ok(match verified(stored, seg.size) {
            Some(data) => Opened::Ready {
                first: None,
                preloaded: Some(data),
            },
            None => Opened::Ready {
                first: Some(file),
                preloaded: None,
            },
        })
    }
}

/// Reads a small blob whole with positioned reads (the file's cursor stays at 0). Reads one
/// byte more than expected, so a longer file shows. With `Wait::No`, `None` unless all the
/// expected bytes came from the page cache.
fn read_whole(
    blobs: &super::BlobDir,
    file: &std::fs::File,
    expected: u64,
    wait: Wait,
) -> Result<Option<Vec<u8>>, StorageError> {
    let mut buf = vec![0u8; expected as usize + 1];
    if wait == Wait::No {
        // A short read may only mean the rest is not cached: the blocking read decides.
        return Ok(match blobs.read_cached(file, &mut buf, 0)? {
            Some(n) if n as u64 >= expected => {
                buf.truncate(n);
                Some(buf)
            }
            _ => None,
        });
    }
    use std::os::unix::fs::FileExt;
    let mut filled = 0;
    while filled < buf.len() {
        match file.read_at(&mut buf[filled..], filled as u64) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(err) if err.kind() == std::io::ErrorKind::Interrupted => {}
            Err(err) => return Err(err.into()),
        }
    }
    buf.truncate(filled);
    Ok(Some(buf))
}

/// A small checked blob's data, if the blob has exactly the expected length and every block
/// matches its checksum.
fn verified(mut stored: Vec<u8>, size: u64) -> Option<Bytes> {
    if stored.len() as u64 != size + table_len(size) {
        return None;
    }
    let (data, table) = stored.split_at(size as usize);
    let intact = data
        .chunks(BLOCK as usize)
        .zip(table.chunks_exact(4))
        .all(|(block, crc)| crc32c(block) == u32::from_be_bytes([crc[0], crc[1], crc[2], crc[3]]));
    if !intact {
        return None;
    }
    stored.truncate(size as usize);
    Some(Bytes::from(stored))
}

impl OpenObject {
    /// Part sizes, in order (one entry for a single-part object).
    fn part_sizes(&self) -> Vec<u64> {
        self.segments.iter().map(|s| s.size).collect()
    }

    /// The object's bytes, or the given range of them, as a stream of bounded chunks.
    async fn into_body(self, range: Option<ByteRange>) -> Result<ObjectBody, StorageError> {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Backend, PutObject};

    /// The cache-only open and read (`Wait::No`) and the blocking one give the same answer for
    /// every kind of blob; with the data just written, the cache-only path does complete.
    #[tokio::test]
    async fn cache_only_and_blocking_opens_agree() {
        let dir = tempfile::tempdir().unwrap();
        let backend = LocalBackend::open(dir.path()).await.unwrap();
        let (tenant, bucket) = (
            TenantId::parse("t").unwrap(),
            BucketName::parse("bkt").unwrap(),
        );
        backend.create_bucket(&tenant, &bucket).await.unwrap();
        let sizes = [0usize, 1, 4096, 200_000, 300_000];
        for size in sizes {
            let data: Vec<u8> = (0..size).map(|i| (i % 251) as u8).collect();
            let key = ObjectKey::parse(&format!("k{size}")).unwrap();
            let body = futures_util::stream::iter([Ok(Bytes::from(data))]);
            backend
                .put_object(&tenant, &bucket, &key, PutObject::default(), Box::pin(body))
                .await
                .unwrap();
        }
        let inner = &backend.inner;
        let outcome = |size: usize, wait: Wait| {
            let key = ObjectKey::parse(&format!("k{size}")).unwrap();
            let record = inner.index.get_object(&tenant, &bucket, &key).unwrap();
            let segments = inner.segments(&record);
            match inner.open_first(&segments, wait).unwrap() {
                Opened::Ready { first, preloaded } => Some((first.is_some(), preloaded)),
                Opened::Replaced => panic!("blob of k{size} missing"),
                Opened::WouldBlock => None,
            }
        };
        // Data just written is in the page cache, so the cache-only path completes, unless the
        // filesystem cannot read from the cache alone (tmpfs): then it defers every small read.
        let agree = |size: usize| {
            let blocking = outcome(size, Wait::Yes).expect("a blocking open always completes");
            match outcome(size, Wait::No) {
                Some(fast) => assert_eq!(fast, blocking, "size {size}"),
                None => assert!(!inner.blobs.reads_from_cache(), "size {size} deferred"),
            }
            blocking
        };
        for size in sizes {
            let (streams, preloaded) = agree(size);
            let small = size <= 200_000;
            assert_eq!(preloaded.map(|b| b.len()), small.then_some(size));
            assert_eq!(streams, !small);
        }

        // A small blob of the wrong length (here: one byte too many) is not preloaded by either
        // path; the streaming read then reads data and table block by block as for a large one.
        let key = ObjectKey::parse("k4096").unwrap();
        let record = inner.index.get_object(&tenant, &bucket, &key).unwrap();
        let path = record
            .segments()
            .next()
            .map(|(id, _, _)| inner.blobs.path_of(id))
            .unwrap();
        let mut stored = std::fs::read(&path).unwrap();
        stored.push(0);
        std::fs::write(&path, &stored).unwrap();
        assert_eq!(agree(4096), (true, None));
    }
}
