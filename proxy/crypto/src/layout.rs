//! Where plaintext bytes sit in the stored bytes: sizes both ways, and the stored span that
//! covers a plaintext range, for one stream (a single-part object or one part) and for a
//! multipart object's streams laid end to end.
//!
//! A stream of `p` plaintext bytes is stored as
//! `header (32) | n sealed segments | footer (72)`, `n = max(1, ceil(p / S))`, each sealed
//! segment being its plaintext (`S` bytes, the last 0 to `S`) and a 16-byte tag. So
//! `stored = p + 16 n + 104`, which is strictly increasing in `p`: the plaintext size follows
//! from the stored size alone.

use crate::CryptoError;
use crate::aead::TAG_LEN;
use crate::stream::{FOOTER_LEN, HEADER_LEN};

/// The smallest and largest segment sizes a stream may declare (4 KiB .. 16 MiB).
pub const MIN_SEGMENT_LOG2: u8 = 12;
pub const MAX_SEGMENT_LOG2: u8 = 24;
/// What Sluice writes: 64 KiB segments (a 1 KiB range costs at most two segments' reading;
/// the tags add 0.02%).
pub const DEFAULT_SEGMENT_LOG2: u8 = 16;

/// The segment size of a stream.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Layout {
    segment_log2: u8,
}

impl Default for Layout {
    fn default() -> Self {
        Self {
            segment_log2: DEFAULT_SEGMENT_LOG2,
        }
    }
}

/// The stored bytes to read for a plaintext range of one stream, and what to keep of them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Span {
    /// First and last stored byte (inclusive), relative to the stream's start.
    pub stored_first: u64,
    pub stored_last: u64,
    /// The first segment read.
    pub first_segment: u64,
    /// Plaintext bytes to drop from the start of the first segment read.
    pub skip: u64,
    /// Plaintext bytes to keep after that.
    pub take: u64,
}

impl Layout {
    pub fn new(segment_log2: u8) -> Result<Self, CryptoError> {
        if (MIN_SEGMENT_LOG2..=MAX_SEGMENT_LOG2).contains(&segment_log2) {
            Ok(Self { segment_log2 })
        } else {
            Err(CryptoError::Malformed)
        }
    }

    pub fn segment_log2(&self) -> u8 {
        self.segment_log2
    }

    pub fn segment_size(&self) -> u64 {
        1 << self.segment_log2
    }

    /// One sealed segment's stored size (a full one).
    fn sealed_size(&self) -> u64 {
        self.segment_size() + TAG_LEN as u64
    }

    /// How many segments a stream of `plain` bytes has (at least one, so an empty stream still
    /// ends in a sealed last segment).
    pub fn segments(&self, plain: u64) -> u64 {
        plain.div_ceil(self.segment_size()).max(1)
    }

    /// The stored size of a stream of `plain` bytes.
    pub fn stored_len(&self, plain: u64) -> u64 {
        HEADER_LEN as u64 + plain + TAG_LEN as u64 * self.segments(plain) + FOOTER_LEN as u64
    }

    /// The plaintext size of a stream stored in `stored` bytes; an error if no plaintext size
    /// gives exactly that many.
    pub fn plain_len(&self, stored: u64) -> Result<u64, CryptoError> {
        let body = stored
            .checked_sub((HEADER_LEN + FOOTER_LEN + TAG_LEN) as u64)
            .ok_or(CryptoError::BadStoredLength(stored))?
            + TAG_LEN as u64;
        let n = body.div_ceil(self.sealed_size());
        let plain = body - TAG_LEN as u64 * n;
        if self.segments(plain) == n {
            Ok(plain)
        } else {
            Err(CryptoError::BadStoredLength(stored))
        }
    }

    /// Where segment `index` starts in the stored stream.
    pub fn segment_offset(&self, index: u64) -> u64 {
        HEADER_LEN as u64 + index * self.sealed_size()
    }

    /// The stored bytes from a stream's start that hold its first `take` plaintext bytes:
    /// the header and the covering segments, and the footer too when `take` is all of it.
    pub fn prefix_stored_len(&self, plain: u64, take: u64) -> u64 {
        if take >= plain {
            return self.stored_len(plain);
        }
        let segments = take.div_ceil(self.segment_size());
        if segments == self.segments(plain) {
            // Into the last segment, which may be short: all but the footer.
            return self.stored_len(plain) - FOOTER_LEN as u64;
        }
        HEADER_LEN as u64 + segments * self.sealed_size()
    }

    /// Where the footer starts in a stored stream of `plain` bytes.
    pub fn footer_offset(&self, plain: u64) -> u64 {
        self.stored_len(plain) - FOOTER_LEN as u64
    }

    /// The stored span covering plaintext bytes `first..=last` of a stream of `plain` bytes
    /// (`first <= last < plain`).
    pub fn span(&self, plain: u64, first: u64, last: u64) -> Span {
        debug_assert!(first <= last && last < plain);
        let s = self.segment_size();
        let (first_segment, last_segment) = (first / s, last / s);
        let last_len = (plain - last_segment * s).min(s);
        Span {
            stored_first: self.segment_offset(first_segment),
            stored_last: self.segment_offset(last_segment) + last_len + TAG_LEN as u64 - 1,
            first_segment,
            skip: first - first_segment * s,
            take: last - first + 1,
        }
    }
}

/// One stream of a multipart object: where its plaintext and stored bytes sit in the object.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PartEntry {
    pub number: u32,
    pub plain_start: u64,
    pub plain_len: u64,
    pub stored_start: u64,
    pub stored_len: u64,
}

/// A multipart object's streams laid end to end, from their part numbers and stored sizes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PartMap {
    parts: Vec<PartEntry>,
}

impl PartMap {
    /// `parts`: (part number, stored size) in the object's order.
    pub fn new(layout: Layout, parts: &[(u32, u64)]) -> Result<Self, CryptoError> {
        let (mut plain_start, mut stored_start) = (0u64, 0u64);
        let mut out = Vec::with_capacity(parts.len());
        for &(number, stored_len) in parts {
            let plain_len = layout.plain_len(stored_len)?;
            out.push(PartEntry {
                number,
                plain_start,
                plain_len,
                stored_start,
                stored_len,
            });
            plain_start += plain_len;
            stored_start += stored_len;
        }
        Ok(Self { parts: out })
    }

    pub fn parts(&self) -> &[PartEntry] {
        &self.parts
    }

    pub fn plain_len(&self) -> u64 {
        self.parts.last().map_or(0, |p| p.plain_start + p.plain_len)
    }

    pub fn stored_len(&self) -> u64 {
        self.parts
            .last()
            .map_or(0, |p| p.stored_start + p.stored_len)
    }

    /// The parts holding plaintext bytes `first..=last` of the object, each with the
    /// plaintext range within it (`first <= last < plain_len()`).
    pub fn covering(&self, first: u64, last: u64) -> impl Iterator<Item = (&PartEntry, u64, u64)> {
        self.parts
            .iter()
            .filter(move |p| p.plain_len > 0)
            .filter(move |p| p.plain_start <= last && first < p.plain_start + p.plain_len)
            .map(move |p| {
                let from = first.max(p.plain_start) - p.plain_start;
                let to = last.min(p.plain_start + p.plain_len - 1) - p.plain_start;
                (p, from, to)
            })
    }
}
