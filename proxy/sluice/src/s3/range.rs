//! Byte ranges a client asks for: `Range` on GetObject and HeadObject, `partNumber`, and
//! `x-amz-copy-source-range` on UploadPartCopy, each resolved against the object's size.
//!
//! Offsets are exact: only ASCII digits (no sign, no spaces inside), and a number too large for
//! `u64` is a valid, very large offset rather than garbage. So `bytes=18446744073709551616-`
//! starts past any object's end (416, as S3 answers) and `bytes=0-999999999999999999999` reads
//! to the end (206).
//!
//! Spec: <https://www.rfc-editor.org/rfc/rfc9110#name-range-requests>,
//! <https://docs.aws.amazon.com/AmazonS3/latest/API/API_GetObject.html#API_GetObject_RequestSyntax>.

use sluice_storage::{ByteRange, ReadRange, StorageError};

use super::S3Error;

/// An offset: one or more ASCII digits, saturating at `u64::MAX`.
fn offset(text: &str) -> Option<u64> {
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some(text.parse::<u64>().unwrap_or(u64::MAX))
}

/// Whether the offset written `first` is greater than the one written `last` (both all digits),
/// by their exact values: two offsets past `u64` are not equal because both saturate.
fn reversed(first: &str, last: &str) -> bool {
    let (first, last) = (first.trim_start_matches('0'), last.trim_start_matches('0'));
    (first.len(), first) > (last.len(), last)
}

/// Parses a `Range: bytes=…` value. Syntactically invalid or multi-range values are ignored
/// (`None`: the whole object is returned), as S3 does.
pub fn parse_range_header(value: &str) -> Option<ReadRange> {
    let spec = value.trim().strip_prefix("bytes=")?;
    if spec.contains(',') {
        return None;
    }
    let (first, last) = spec.trim().split_once('-')?;
    match (first.trim(), last.trim()) {
        ("", suffix) => Some(ReadRange::Suffix(offset(suffix)?)),
        (first_text, "") => Some(ReadRange::From {
            first: offset(first_text)?,
            last: None,
        }),
        (first_text, last_text) => {
            let first = offset(first_text)?;
            let last = offset(last_text)?;
            (!reversed(first_text, last_text)).then_some(ReadRange::From {
                first,
                last: Some(last),
            })
        }
    }
}

/// Parses a single `Range: bytes=…` and resolves it against `size`: `None` for a value S3
/// ignores, `InvalidRange` (416) for a range that starts at or past the end or a suffix of
/// zero bytes.
pub fn parse_range(value: &str, size: u64) -> Result<Option<ByteRange>, StorageError> {
    parse_range_header(value)
        .map(|range| range.resolve(size, &[size]))
        .transpose()
}

/// A `partNumber` or UploadPart's part number: 1 to 10,000.
pub fn part_number(text: &str) -> Result<u32, S3Error> {
    offset(text)
        .and_then(|n| u32::try_from(n).ok())
        .filter(|n| sluice_storage::PART_NUMBERS.contains(n))
        .ok_or_else(|| {
            S3Error::invalid_argument(
                "Part number must be an integer between 1 and 10000, inclusive",
            )
        })
}

/// The byte range of part `n` (1-based) of an object made of parts of `sizes`.
pub fn part_range(n: &str, sizes: Vec<u64>, total: u64) -> Result<ByteRange, S3Error> {
    let n = part_number(n)?;
    Ok(ReadRange::Part(n).resolve(total, &sizes)?)
}

/// `x-amz-copy-source-range: bytes=first-last`, both required.
pub fn parse_copy_source_range(value: &str) -> Result<ReadRange, S3Error> {
    let bad = || {
        S3Error::invalid_argument(
            "The x-amz-copy-source-range value must be of the form bytes=first-last where first and last are the zero-based offsets of the first and last bytes to copy",
        )
    };
    let (first, last) = value
        .trim()
        .strip_prefix("bytes=")
        .and_then(|r| r.split_once('-'))
        .ok_or_else(bad)?;
    match (offset(first), offset(last)) {
        (Some(f), Some(l)) if !reversed(first, last) => Ok(ReadRange::Exact { first: f, last: l }),
        _ => Err(bad()),
    }
}

/// `x-amz-copy-source-range` resolved against the source's `size`: inside it, or 416.
pub fn copy_source_range(value: &str, size: u64) -> Result<ByteRange, S3Error> {
    Ok(parse_copy_source_range(value)?.resolve(size, &[size])?)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn range(start: u64, end_inclusive: u64) -> Option<ByteRange> {
        Some(ByteRange {
            start,
            end_inclusive,
        })
    }

    #[test]
    fn ranges() {
        let r = |s: &str| parse_range(s, 100);
        assert_eq!(r("bytes=0-9").unwrap(), range(0, 9));
        assert_eq!(r("bytes=90-").unwrap(), range(90, 99));
        assert_eq!(r("bytes=-10").unwrap(), range(90, 99));
        assert_eq!(r("bytes=-1000").unwrap(), range(0, 99));
        assert_eq!(r("bytes=50-1000").unwrap(), range(50, 99));
        assert!(matches!(
            r("bytes=100-"),
            Err(StorageError::InvalidRange { .. })
        ));
        assert!(matches!(
            r("bytes=-0"),
            Err(StorageError::InvalidRange { .. })
        ));
        assert_eq!(r("bytes=5-1").unwrap(), None);
        assert_eq!(r("bytes=0-1,5-6").unwrap(), None);
        assert_eq!(r("items=0-1").unwrap(), None);
        assert!(matches!(
            parse_range("bytes=0-", 0),
            Err(StorageError::InvalidRange { .. })
        ));
    }

    /// Numbers past `u64` are large offsets, not garbage to be ignored.
    #[test]
    fn huge_offsets_are_offsets() {
        let r = |s: &str| parse_range(s, 100);
        for past_the_end in [
            "bytes=999999999999999999999-",
            "bytes=18446744073709551616-",
            "bytes=18446744073709551615-",
            "bytes=100-999999999999999999999",
        ] {
            assert!(
                matches!(r(past_the_end), Err(StorageError::InvalidRange { .. })),
                "{past_the_end}"
            );
        }
        assert_eq!(r("bytes=0-999999999999999999999").unwrap(), range(0, 99));
        // Reversed, though both saturate to the same u64: invalid, so ignored.
        assert_eq!(
            r("bytes=18446744073709551617-18446744073709551616").unwrap(),
            None
        );
        assert!(matches!(
            r("bytes=18446744073709551616-18446744073709551617"),
            Err(StorageError::InvalidRange { .. })
        ));
        assert_eq!(r("bytes=010-9").unwrap(), None);
        assert_eq!(r("bytes=09-10").unwrap(), range(9, 10));
        assert_eq!(r("bytes=-999999999999999999999").unwrap(), range(0, 99));
    }

    /// Only digits are offsets: a sign or inner space makes the header invalid (ignored).
    #[test]
    fn offsets_are_digits_only() {
        let r = |s: &str| parse_range(s, 100);
        for invalid in [
            "bytes=+5-",
            "bytes=5-+9",
            "bytes=-+5",
            "bytes=0x1-",
            "bytes=1 0-",
        ] {
            assert_eq!(r(invalid).unwrap(), None, "{invalid}");
        }
    }

    #[test]
    fn copy_source_ranges() {
        assert_eq!(
            copy_source_range("bytes=0-9", 10).unwrap(),
            range(0, 9).unwrap()
        );
        for (value, code) in [
            ("bytes=0-10", "InvalidRange"),
            ("bytes=0-99999999999999999999999", "InvalidRange"),
            ("bytes=5-", "InvalidArgument"),
            ("bytes=5-4", "InvalidArgument"),
            ("bytes=+1-4", "InvalidArgument"),
        ] {
            assert_eq!(
                copy_source_range(value, 10).unwrap_err().code,
                code,
                "{value}"
            );
        }
    }

    #[test]
    fn part_ranges() {
        assert_eq!(
            part_range("2", vec![5, 3], 8).unwrap(),
            range(5, 7).unwrap()
        );
        assert_eq!(
            part_range("3", vec![5, 3], 8).unwrap_err().code,
            "InvalidPartNumber"
        );
        for bad in ["0", "10001", "+1", "99999999999999999999999"] {
            assert_eq!(
                part_range(bad, vec![5], 5).unwrap_err().code,
                "InvalidArgument",
                "{bad}"
            );
        }
    }
}
