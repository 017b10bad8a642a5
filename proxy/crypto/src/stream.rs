//! One encrypted stream (a single-part object's body, or one part of a multipart object):
//! the header, the STREAM construction over fixed-size segments, and the footer; the encryptor
//! and decryptor are state machines over bytes, with no I/O.
//!
//! ```text
//! header  32 B  "SLCE" | version 1 | segment log2 | 0 0 | part number (u32 BE) | salt (16) | 0 0 0 0
//! segment i     AES-256-GCM(stream key, nonce(i, last?), plaintext of S bytes; the last 0..=S)
//! footer  72 B  nonce (12) | AES-256-GCM(footer key, nonce, plaintext length (u64 BE) | MD5 (16) | salt (16) | part number (u32 BE))
//!
//! stream key = HMAC-SHA256(data key, "sluice/v1/stream" | header)
//! footer key = HMAC-SHA256(data key, "sluice/v1/footer")
//! nonce(i, kind) = i (u64 BE) | 0 0 0 | kind      kind: 0 segment, 1 last segment
//! ```
//!
//! The stream key commits to the whole header, so a header edited in any bit opens nothing. A
//! segment moved within its stream has the wrong index in its nonce; one moved from another
//! stream (another part, a retried upload of the same part, another object) was sealed under
//! another key, the salt making every stream's key its own; a stream cut short lacks the
//! segment sealed as last. The footer, readable alone with the data key, gives the plaintext
//! length, MD5 (an ETag's worth) and part number without reading the body, and names the
//! stream's salt so it cannot be moved to another stream. A multipart object's part sizes can be
//! found by walking its footers back from the end.

use zeroize::Zeroizing;

use crate::CryptoError;
use crate::aead::{AwsLc, NONCE_LEN, SegmentAead, TAG_LEN};
use crate::keyring::DataKey;
use crate::layout::{Layout, Span};

pub const HEADER_LEN: usize = 32;
pub const FOOTER_LEN: usize = NONCE_LEN + FOOTER_PLAIN_LEN + TAG_LEN;
const FOOTER_PLAIN_LEN: usize = 8 + 16 + SALT_LEN + 4;
const SALT_LEN: usize = 16;
const MAGIC: &[u8; 4] = b"SLCE";
pub const FORMAT_VERSION: u8 = 1;

const KIND_SEGMENT: u8 = 0;
const KIND_LAST: u8 = 1;

/// A stream's header: its layout, its part number (0 for a single-part object) and its salt.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StreamHeader {
    pub layout: Layout,
    pub part: u32,
    salt: [u8; SALT_LEN],
}

impl StreamHeader {
    /// A header with a fresh random salt.
    pub fn new(layout: Layout, part: u32) -> Self {
        let mut salt = [0u8; SALT_LEN];
        rand::fill(&mut salt);
        Self { layout, part, salt }
    }

    pub fn to_bytes(&self) -> [u8; HEADER_LEN] {
        let mut out = [0u8; HEADER_LEN];
        out[..4].copy_from_slice(MAGIC);
        out[4] = FORMAT_VERSION;
        out[5] = self.layout.segment_log2();
        out[8..12].copy_from_slice(&self.part.to_be_bytes());
        out[12..28].copy_from_slice(&self.salt);
        out
    }

    pub fn parse(bytes: &[u8]) -> Result<Self, CryptoError> {
        let bytes: &[u8; HEADER_LEN] = bytes
            .get(..HEADER_LEN)
            .and_then(|b| b.try_into().ok())
            .ok_or(CryptoError::NotEncrypted)?;
        if &bytes[..4] != MAGIC {
            return Err(CryptoError::NotEncrypted);
        }
        if bytes[4] != FORMAT_VERSION {
            return Err(CryptoError::UnsupportedFormat(format!(
                "stream v{}",
                bytes[4]
            )));
        }
        if bytes[6..8] != [0, 0] || bytes[28..] != [0; 4] {
            return Err(CryptoError::Malformed);
        }
        Ok(Self {
            layout: Layout::new(bytes[5])?,
            part: u32::from_be_bytes(bytes[8..12].try_into().expect("4 bytes")),
            salt: bytes[12..28].try_into().expect("16 bytes"),
        })
    }
}

/// What a stream's footer says.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Footer {
    pub plain_len: u64,
    pub md5: [u8; 16],
    pub part: u32,
    salt: [u8; SALT_LEN],
}

/// The key that seals an object's footers, derived from its data key: what reading sizes and
/// MD5s takes, without the key to the body (an SSE-C object's envelope keeps it wrapped under
/// the keyring, so listings need no customer key).
#[derive(Clone)]
pub struct FooterKey(DataKey);

impl FooterKey {
    pub fn of(key: &DataKey) -> Self {
        Self(DataKey::from_bytes(*crate::aead::derive(
            key.bytes(),
            b"sluice/v1/footer",
            b"",
        )))
    }

    /// The key as a data key, to wrap or unwrap it with the keyring's keys.
    pub fn as_data_key(&self) -> &DataKey {
        &self.0
    }

    pub fn from_data_key(key: DataKey) -> Self {
        Self(key)
    }
}

impl std::fmt::Debug for FooterKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("FooterKey(..)")
    }
}

impl Footer {
    /// Opens a footer (the last [`FOOTER_LEN`] stored bytes of a stream) with the footer key
    /// alone.
    pub fn open(key: &FooterKey, stored: &[u8]) -> Result<Self, CryptoError> {
        let stored: &[u8; FOOTER_LEN] = stored.try_into().map_err(|_| CryptoError::Truncated)?;
        let nonce: [u8; NONCE_LEN] = stored[..NONCE_LEN].try_into().expect("nonce length");
        let mut sealed = Zeroizing::new(stored[NONCE_LEN..].to_vec());
        footer_aead::<AwsLc>(key)
            .open(nonce, &mut sealed)
            .map_err(|_| CryptoError::Footer)?;
        Ok(Self {
            plain_len: u64::from_be_bytes(sealed[..8].try_into().expect("8 bytes")),
            md5: sealed[8..24].try_into().expect("16 bytes"),
            salt: sealed[24..40].try_into().expect("16 bytes"),
            part: u32::from_be_bytes(sealed[40..44].try_into().expect("4 bytes")),
        })
    }

    /// Whether this footer belongs to the stream with `header`.
    pub fn belongs_to(&self, header: &StreamHeader) -> bool {
        self.salt == header.salt && self.part == header.part
    }
}

fn footer_aead<A: SegmentAead>(key: &FooterKey) -> A {
    A::new(key.0.bytes())
}

fn stream_aead<A: SegmentAead>(key: &DataKey, header: &StreamHeader) -> A {
    A::new(&crate::aead::derive(
        key.bytes(),
        b"sluice/v1/stream",
        &header.to_bytes(),
    ))
}

fn nonce(index: u64, kind: u8) -> [u8; NONCE_LEN] {
    let mut n = [0u8; NONCE_LEN];
    n[..8].copy_from_slice(&index.to_be_bytes());
    n[11] = kind;
    n
}

/// Encrypts one stream. Feed it the plaintext in pieces of any size with [`push`](Self::push),
/// then [`finish`](Self::finish) with the plaintext's MD5; the stored bytes come out in order
/// and add up to [`Layout::stored_len`] of the plaintext length. A full segment is held back
/// until more plaintext arrives, since the last one is sealed differently.
pub struct StreamEncryptor<A: SegmentAead = AwsLc> {
    aead: A,
    footer_aead: A,
    header: StreamHeader,
    index: u64,
    pending: Vec<u8>,
    started: bool,
    plain_len: u64,
}

impl<A: SegmentAead> std::fmt::Debug for StreamEncryptor<A> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StreamEncryptor")
            .field("header", &self.header)
            .field("segment", &self.index)
            .finish_non_exhaustive()
    }
}

impl<A: SegmentAead> StreamEncryptor<A> {
    pub fn new(key: &DataKey, layout: Layout, part: u32) -> Self {
        Self::with_header(key, StreamHeader::new(layout, part))
    }

    /// With a given header (fixed salt): for the format's golden test vectors.
    pub fn with_header(key: &DataKey, header: StreamHeader) -> Self {
        Self {
            aead: stream_aead(key, &header),
            footer_aead: footer_aead(&FooterKey::of(key)),
            pending: Vec::with_capacity(header.layout.segment_size() as usize),
            header,
            index: 0,
            started: false,
            plain_len: 0,
        }
    }

    pub fn header(&self) -> &StreamHeader {
        &self.header
    }

    fn start(&mut self, out: &mut Vec<u8>) {
        if !self.started {
            out.extend_from_slice(&self.header.to_bytes());
            self.started = true;
        }
    }

    fn seal(&mut self, plain: &[u8], kind: u8, out: &mut Vec<u8>) {
        let at = out.len();
        out.extend_from_slice(plain);
        let tag = self.aead.seal(nonce(self.index, kind), &mut out[at..]);
        out.extend_from_slice(&tag);
        self.index += 1;
    }

    /// Encrypts what it can of `input`, appending stored bytes to `out`.
    pub fn push(&mut self, mut input: &[u8], out: &mut Vec<u8>) {
        self.start(out);
        self.plain_len += input.len() as u64;
        let size = self.header.layout.segment_size() as usize;
        while !input.is_empty() {
            if self.pending.len() == size {
                let pending = std::mem::take(&mut self.pending);
                self.seal(&pending, KIND_SEGMENT, out);
                self.pending = pending;
                self.pending.clear();
            }
            if self.pending.is_empty() && input.len() > size {
                // A whole segment with more after it: sealed straight from the input.
                let (segment, rest) = input.split_at(size);
                self.seal(segment, KIND_SEGMENT, out);
                input = rest;
                continue;
            }
            let take = (size - self.pending.len()).min(input.len());
            self.pending.extend_from_slice(&input[..take]);
            input = &input[take..];
        }
    }

    /// Seals the last segment and the footer. `md5` is the MD5 of all the plaintext pushed.
    pub fn finish(mut self, md5: [u8; 16], out: &mut Vec<u8>) {
        self.start(out);
        let pending = std::mem::take(&mut self.pending);
        self.seal(&pending, KIND_LAST, out);
        let mut footer = [0u8; FOOTER_LEN];
        rand::fill(&mut footer[..NONCE_LEN]);
        let footer_nonce: [u8; NONCE_LEN] = footer[..NONCE_LEN].try_into().expect("nonce length");
        let plain = &mut footer[NONCE_LEN..NONCE_LEN + FOOTER_PLAIN_LEN];
        plain[..8].copy_from_slice(&self.plain_len.to_be_bytes());
        plain[8..24].copy_from_slice(&md5);
        plain[24..40].copy_from_slice(&self.header.salt);
        plain[40..].copy_from_slice(&self.header.part.to_be_bytes());
        let tag = self.footer_aead.seal(footer_nonce, plain);
        footer[NONCE_LEN + FOOTER_PLAIN_LEN..].copy_from_slice(&tag);
        out.extend_from_slice(&footer);
    }
}

/// Decrypts stored bytes of one stream: either all of it (header, segments, footer, every
/// check) or a [`Span`] of its segments. Feed stored bytes in pieces of any size with
/// [`push`](Self::push); plaintext comes out as each segment is authenticated, never before.
/// [`finish`](Self::finish) fails if the stored bytes ended early.
pub struct StreamDecryptor<A: SegmentAead = AwsLc> {
    key: DataKey,
    aead: Option<A>,
    header: Option<StreamHeader>,
    layout: Layout,
    /// Segments in the whole stream, and the next one expected.
    segments: u64,
    index: u64,
    /// One past the last segment to read.
    end: u64,
    /// Plaintext to drop, then to keep.
    skip: u64,
    take: u64,
    /// Whether the footer follows the last segment read (a whole-stream read).
    footer: bool,
    /// Stored bytes of an unfinished header, segment or footer.
    buf: Vec<u8>,
    done: Option<Footer>,
    expect_part: Option<u32>,
    plain_len: u64,
}

impl<A: SegmentAead> std::fmt::Debug for StreamDecryptor<A> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StreamDecryptor")
            .field("header", &self.header)
            .field("segment", &self.index)
            .field("end", &self.end)
            .finish_non_exhaustive()
    }
}

impl<A: SegmentAead> StreamDecryptor<A> {
    /// For a whole stored stream of `stored_len` bytes (header first). `expect_part`: the part
    /// number its header must carry (`Some(0)` for a single-part object).
    pub fn whole(
        key: &DataKey,
        layout: Layout,
        stored_len: u64,
        expect_part: Option<u32>,
    ) -> Result<Self, CryptoError> {
        let plain_len = layout.plain_len(stored_len)?;
        Ok(Self::prefix(key, layout, plain_len, expect_part, plain_len))
    }

    /// For the first `take` plaintext bytes of a stream of `plain_len` bytes, read from its
    /// start (header first): the whole stream, footer checked, when `take == plain_len`. Feed it
    /// [`Layout::prefix_stored_len`] stored bytes.
    pub fn prefix(
        key: &DataKey,
        layout: Layout,
        plain_len: u64,
        expect_part: Option<u32>,
        take: u64,
    ) -> Self {
        let segments = layout.segments(plain_len);
        let whole = take >= plain_len;
        Self {
            key: key.clone(),
            aead: None,
            header: None,
            layout,
            segments,
            index: 0,
            end: if whole {
                segments
            } else {
                take.div_ceil(layout.segment_size())
            },
            skip: 0,
            take: take.min(plain_len),
            footer: whole,
            buf: Vec::new(),
            done: None,
            expect_part,
            plain_len,
        }
    }

    /// For `span` of a stream whose header (already read) is `header` and plaintext length is
    /// `plain_len`; feed it the stored bytes `span.stored_first..=span.stored_last`.
    pub fn span(key: &DataKey, header: &StreamHeader, plain_len: u64, span: &Span) -> Self {
        let layout = header.layout;
        let last = span.first_segment + (span.skip + span.take - 1) / layout.segment_size();
        Self {
            key: key.clone(),
            aead: Some(stream_aead(key, header)),
            header: Some(*header),
            layout,
            segments: layout.segments(plain_len),
            index: span.first_segment,
            end: last + 1,
            skip: span.skip,
            take: span.take,
            footer: false,
            buf: Vec::new(),
            done: None,
            expect_part: None,
            plain_len,
        }
    }

    /// The header, once read (or as given).
    pub fn header(&self) -> Option<&StreamHeader> {
        self.header.as_ref()
    }

    /// Stored bytes wanted next: the rest of the header, segment or footer being read.
    fn wanted(&self) -> usize {
        if self.header.is_none() {
            return HEADER_LEN;
        }
        if self.index < self.end {
            let s = self.layout.segment_size();
            let len = if self.index + 1 == self.segments {
                self.plain_len - self.index * s
            } else {
                s
            };
            return len as usize + TAG_LEN;
        }
        if self.footer && self.done.is_none() {
            FOOTER_LEN
        } else {
            0
        }
    }

    /// Decrypts what it can of `input`, appending plaintext to `out`. An error is final.
    pub fn push(&mut self, input: &[u8], out: &mut Vec<u8>) -> Result<(), CryptoError> {
        let used = self.push_some(input, out)?;
        if used < input.len() {
            return Err(CryptoError::TrailingData);
        }
        Ok(())
    }

    /// Whether every stored byte this decryptor reads has been pushed.
    pub fn is_done(&self) -> bool {
        self.buf.is_empty() && self.wanted() == 0
    }

    /// Like [`push`](Self::push), but stops where this decryptor's stored bytes end and says
    /// how many of `input` it took: the rest belongs to whatever follows (the next part).
    pub fn push_some(&mut self, input: &[u8], out: &mut Vec<u8>) -> Result<usize, CryptoError> {
        let total = input.len();
        let mut input = input;
        while !input.is_empty() {
            let wanted = self.wanted();
            if wanted == 0 {
                break;
            }
            if self.buf.is_empty() && input.len() >= wanted && self.header.is_some() {
                // A whole unit in the input: decrypted straight into `out`.
                let (unit, rest) = input.split_at(wanted);
                self.unit(unit, out)?;
                input = rest;
                continue;
            }
            let take = (wanted - self.buf.len()).min(input.len());
            self.buf.extend_from_slice(&input[..take]);
            input = &input[take..];
            if self.buf.len() == wanted {
                let unit = std::mem::take(&mut self.buf);
                self.unit(&unit, out)?;
                self.buf = unit;
                self.buf.clear();
            }
        }
        Ok(total - input.len())
    }

    /// One whole header, sealed segment or footer.
    fn unit(&mut self, unit: &[u8], out: &mut Vec<u8>) -> Result<(), CryptoError> {
        let Some(header) = self.header else {
            let header = StreamHeader::parse(unit)?;
            if header.layout != self.layout {
                return Err(CryptoError::Malformed);
            }
            if self.expect_part.is_some_and(|p| p != header.part) {
                return Err(CryptoError::WrongPart {
                    expected: self.expect_part.unwrap_or(0),
                    found: header.part,
                });
            }
            self.aead = Some(stream_aead(&self.key, &header));
            self.header = Some(header);
            return Ok(());
        };
        if self.index < self.end {
            let kind = if self.index + 1 == self.segments {
                KIND_LAST
            } else {
                KIND_SEGMENT
            };
            let at = out.len();
            out.extend_from_slice(unit);
            let aead = self.aead.as_ref().expect("the header came first");
            let len = aead
                .open(nonce(self.index, kind), &mut out[at..])
                .map_err(|_| {
                    out.truncate(at);
                    CryptoError::Segment(self.index)
                })?;
            out.truncate(at + len);
            // Keep only the asked-for plaintext of this segment.
            let skip = self.skip.min(len as u64) as usize;
            self.skip -= skip as u64;
            let keep = (len - skip).min(self.take as usize);
            if skip > 0 {
                out.copy_within(at + skip..at + skip + keep, at);
            }
            out.truncate(at + keep);
            self.take -= keep as u64;
            self.index += 1;
            return Ok(());
        }
        let footer = Footer::open(&FooterKey::of(&self.key), unit)?;
        if !footer.belongs_to(&header) || footer.plain_len != self.plain_len {
            return Err(CryptoError::Footer);
        }
        self.done = Some(footer);
        Ok(())
    }

    /// Ends the stream: an error if stored bytes are still missing. For a whole-stream read,
    /// the footer (whose MD5 the caller may compare with the plaintext's).
    pub fn finish(&self) -> Result<Option<Footer>, CryptoError> {
        if !self.buf.is_empty() || self.wanted() != 0 {
            return Err(CryptoError::Truncated);
        }
        Ok(self.done)
    }
}

/// Finds the streams of a stored object from its end: each footer gives its stream's stored
/// size, so where the one before ends. A state machine: ask [`next_read`](Self::next_read)
/// which stored bytes to read, [`feed`](Self::feed) them, until it says the walk is done.
///
/// Whether the object is multipart is read from its last footer (authenticated, so the store's
/// own account of it is not needed: a store's server-side copy may not keep it): a single-part
/// object is one stream, part 0; a multipart object's part numbers fall walking back (rise in
/// the object), none of them 0.
#[derive(Debug)]
pub struct FooterWalk {
    key: FooterKey,
    layout: Layout,
    /// Where the streams not yet found end (exclusive).
    end: u64,
    /// (part number, stored length, plaintext MD5), last stream first.
    found: Vec<(u32, u64, [u8; 16])>,
}

/// The most streams an object may have (S3's most parts).
const MAX_STREAMS: usize = 10_000;

impl FooterWalk {
    pub fn new(key: &FooterKey, layout: Layout, stored_len: u64) -> Self {
        Self {
            key: key.clone(),
            layout,
            end: stored_len,
            found: Vec::new(),
        }
    }

    /// The stored bytes (first, last; inclusive) of the next footer, or `None` once every
    /// stream is found.
    pub fn next_read(&self) -> Result<Option<(u64, u64)>, CryptoError> {
        if self.end == 0 {
            return Ok(None);
        }
        let single = self.found.first().is_some_and(|&(part, _, _)| part == 0);
        if self.found.len() == MAX_STREAMS || single {
            return Err(CryptoError::Streams(
                "more streams than the object can have",
            ));
        }
        let first = self
            .end
            .checked_sub(FOOTER_LEN as u64)
            .ok_or(CryptoError::Streams("a stream shorter than its footer"))?;
        Ok(Some((first, self.end - 1)))
    }

    /// The footer bytes asked for by [`next_read`](Self::next_read).
    pub fn feed(&mut self, footer: &[u8]) -> Result<(), CryptoError> {
        let footer = Footer::open(&self.key, footer)?;
        if let Some(&(later, _, _)) = self.found.last()
            && (footer.part >= later || footer.part == 0)
        {
            return Err(CryptoError::Streams("parts out of order"));
        }
        let len = self.layout.stored_len(footer.plain_len);
        self.end = self
            .end
            .checked_sub(len)
            .ok_or(CryptoError::Streams("a stream longer than the object"))?;
        self.found.push((footer.part, len, footer.md5));
        Ok(())
    }

    /// The streams found, in the object's order: (part number, stored length, plaintext MD5).
    pub fn finish(mut self) -> Result<Vec<(u32, u64, [u8; 16])>, CryptoError> {
        if self.end != 0 || self.found.is_empty() {
            return Err(CryptoError::Streams(
                "the walk did not reach the object's start",
            ));
        }
        self.found.reverse();
        Ok(self.found)
    }
}

/// Whether `streams` (as [`FooterWalk::finish`] returns them) are a multipart object's parts.
pub fn is_multipart(streams: &[(u32, u64, [u8; 16])]) -> bool {
    streams.first().is_some_and(|&(part, _, _)| part != 0)
}

/// The ETag S3 clients expect of an object made of `streams` (as [`FooterWalk::finish`]
/// returns them): the plaintext's MD5 for a single-part object; for a multipart one, the MD5
/// of the parts' MD5s and `-N`.
pub fn object_etag(streams: &[(u32, u64, [u8; 16])]) -> String {
    use md5::Digest as _;
    if !is_multipart(streams)
        && let [(_, _, md5)] = streams
    {
        return hex::encode(md5);
    }
    let mut all = md5::Md5::new();
    for (_, _, md5) in streams {
        all.update(md5);
    }
    format!("{}-{}", hex::encode(all.finalize()), streams.len())
}
