//! What part of an object a read asks for. The request is parsed into a [`ReadRange`] once, by
//! the server; only the store resolves it into bytes, because only the store knows the object's
//! size and parts (and a layer that transforms bodies, such as encryption, maps the client's
//! ranges to stored ones).

use crate::StorageError;

/// An inclusive byte range already resolved against the object size.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ByteRange {
    pub start: u64,
    pub end_inclusive: u64,
}

impl ByteRange {
    pub fn len(&self) -> u64 {
        self.end_inclusive - self.start + 1
    }

    pub fn is_empty(&self) -> bool {
        false
    }
}

/// A requested range, not yet resolved. Offsets saturate at `u64::MAX` (a number too large
/// for `u64` is a very large offset, past any object's end).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReadRange {
    /// `Range: bytes=first-last` or `bytes=first-`: clamped to the object's end, `InvalidRange`
    /// if `first` is at or past it (or after `last`: a request parser ignores such a range).
    From { first: u64, last: Option<u64> },
    /// `Range: bytes=-n`: the last `n` bytes (`InvalidRange` for 0, or an empty object).
    Suffix(u64),
    /// `partNumber=n` (1-based) of a multipart object; a single-part object has one part.
    Part(u32),
    /// `x-amz-copy-source-range: bytes=first-last`: must lie wholly inside the object.
    Exact { first: u64, last: u64 },
}

impl ReadRange {
    /// The bytes this range covers of an object of `size` bytes made of parts of `part_sizes`
    /// (one entry, the size, for a single-part object).
    pub fn resolve(&self, size: u64, part_sizes: &[u64]) -> Result<ByteRange, StorageError> {
        let invalid = StorageError::InvalidRange { size };
        match *self {
            Self::From { first, last } => {
                if first >= size || last.is_some_and(|last| last < first) {
                    return Err(invalid);
                }
                Ok(ByteRange {
                    start: first,
                    end_inclusive: last.unwrap_or(u64::MAX).min(size - 1),
                })
            }
            Self::Suffix(n) => {
                if n == 0 || size == 0 {
                    return Err(invalid);
                }
                Ok(ByteRange {
                    start: size.saturating_sub(n),
                    end_inclusive: size - 1,
                })
            }
            Self::Part(n) => {
                let n = n as usize;
                if n == 0 || n > part_sizes.len() || size == 0 || part_sizes[n - 1] == 0 {
                    return Err(StorageError::InvalidPartNumber);
                }
                let start: u64 = part_sizes[..n - 1].iter().sum();
                Ok(ByteRange {
                    start,
                    end_inclusive: start + part_sizes[n - 1] - 1,
                })
            }
            Self::Exact { first, last } => {
                if last >= size || first > last {
                    return Err(invalid);
                }
                Ok(ByteRange {
                    start: first,
                    end_inclusive: last,
                })
            }
        }
    }

    /// The `Range` header value that asks another S3 store for the same bytes (`None` for a
    /// part, which travels as the `partNumber` parameter).
    pub fn header_value(&self) -> Option<String> {
        match *self {
            Self::From { first, last: None } => Some(format!("bytes={first}-")),
            Self::From {
                first,
                last: Some(last),
            }
            | Self::Exact { first, last } => Some(format!("bytes={first}-{last}")),
            Self::Suffix(n) => Some(format!("bytes=-{n}")),
            Self::Part(_) => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(start: u64, end_inclusive: u64) -> ByteRange {
        ByteRange {
            start,
            end_inclusive,
        }
    }

    #[test]
    fn resolution() {
        let from = |first, last| ReadRange::From { first, last }.resolve(100, &[100]);
        assert_eq!(from(0, Some(9)).unwrap(), r(0, 9));
        assert_eq!(from(90, None).unwrap(), r(90, 99));
        assert_eq!(from(50, Some(u64::MAX)).unwrap(), r(50, 99));
        assert!(from(10, Some(5)).is_err());
        assert!(matches!(
            from(100, None),
            Err(StorageError::InvalidRange { size: 100 })
        ));
        assert_eq!(
            ReadRange::Suffix(10).resolve(100, &[100]).unwrap(),
            r(90, 99)
        );
        assert_eq!(
            ReadRange::Suffix(1000).resolve(100, &[100]).unwrap(),
            r(0, 99)
        );
        assert!(ReadRange::Suffix(0).resolve(100, &[100]).is_err());
        assert!(ReadRange::Suffix(5).resolve(0, &[0]).is_err());
        let parts = [5, 5, 2];
        assert_eq!(ReadRange::Part(2).resolve(12, &parts).unwrap(), r(5, 9));
        assert_eq!(ReadRange::Part(3).resolve(12, &parts).unwrap(), r(10, 11));
        assert!(matches!(
            ReadRange::Part(4).resolve(12, &parts),
            Err(StorageError::InvalidPartNumber)
        ));
        let exact = |first, last| ReadRange::Exact { first, last }.resolve(100, &[100]);
        assert_eq!(exact(10, 99).unwrap(), r(10, 99));
        assert!(exact(10, 100).is_err());
    }

    #[test]
    fn header_values_ask_for_the_same_bytes() {
        assert_eq!(
            ReadRange::From {
                first: 3,
                last: None
            }
            .header_value()
            .unwrap(),
            "bytes=3-"
        );
        assert_eq!(ReadRange::Suffix(7).header_value().unwrap(), "bytes=-7");
        assert_eq!(ReadRange::Part(2).header_value(), None);
    }
}
