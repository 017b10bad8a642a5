//! Target `range_header`: `parse_range`, `copy_source_range` and `part_range` against a
//! reference in exact arithmetic (u128 values, digit strings compared exactly past that).
//!
//! Spec: <https://www.rfc-editor.org/rfc/rfc9110#name-range-requests>,
//! <https://docs.aws.amazon.com/AmazonS3/latest/API/API_UploadPartCopy.html>.

use std::cmp::Ordering;

use http::HeaderValue;
use rand::Rng;
use rand::rngs::StdRng;
use rand::seq::IndexedRandom;
use sluice::s3::range::{copy_source_range, parse_range, part_range};
use sluice_storage::{ByteRange, StorageError};

/// Object sizes every input is resolved against, beside the ones derived from its numbers.
const SIZES: &[u64] = &[0, 1, 2, 10, 100, 1 << 32, u64::MAX - 1, u64::MAX];

/// Part size lists for `part_range` (sums fit in u64, as a stored object's do).
const PART_LISTS: &[&[u64]] = &[
    &[],
    &[5],
    &[5, 3],
    &[0, 7],
    &[1, 1, 1],
    &[u64::MAX],
    &[u64::MAX / 2, u64::MAX / 2],
    &[5 << 20, 5 << 20, 1],
];

/// A number as the client wrote it: ASCII digits, compared exactly however long.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Num<'a>(&'a str);

impl Num<'_> {
    fn parse(text: &str) -> Option<Num<'_>> {
        (!text.is_empty() && text.bytes().all(|b| b.is_ascii_digit())).then_some(Num(text))
    }

    fn significant(&self) -> &str {
        let s = self.0.trim_start_matches('0');
        if s.is_empty() { "0" } else { s }
    }

    /// Exact below 10^38; above, a value larger than any size.
    fn value(&self) -> u128 {
        let s = self.significant();
        if s.len() > 38 {
            u128::MAX
        } else {
            s.parse().expect("digits")
        }
    }

    fn cmp(&self, other: &Num) -> Ordering {
        let (a, b) = (self.significant(), other.significant());
        a.len().cmp(&b.len()).then_with(|| a.cmp(b))
    }
}

/// HTTP optional whitespace.
fn ows(s: &str) -> &str {
    s.trim_matches([' ', '\t'])
}

#[derive(Debug, PartialEq, Eq)]
enum RangeAnswer {
    /// The header is ignored: the whole object (200).
    Whole,
    /// 206 with these bounds.
    Part(u64, u64),
    /// 416.
    Unsatisfiable,
}

/// RFC 9110 single byte range: `bytes=first-[last]` or `bytes=-suffix`, optional whitespace
/// around the parts, numbers of ASCII digits of any length. Syntactically invalid (including
/// last < first) or multiple ranges: ignored. First at or past the end, or a zero suffix, or
/// any range of an empty object: 416.
fn reference_range(value: &str, size: u64) -> RangeAnswer {
    let size = u128::from(size);
    let Some(spec) = ows(value).strip_prefix("bytes=") else {
        return RangeAnswer::Whole;
    };
    if spec.contains(',') {
        return RangeAnswer::Whole;
    }
    let Some((first, last)) = ows(spec).split_once('-') else {
        return RangeAnswer::Whole;
    };
    let (first, last) = (ows(first), ows(last));
    if first.is_empty() {
        let Some(n) = Num::parse(last) else {
            return RangeAnswer::Whole;
        };
        let n = n.value();
        if n == 0 || size == 0 {
            return RangeAnswer::Unsatisfiable;
        }
        return RangeAnswer::Part((size - n.min(size)) as u64, (size - 1) as u64);
    }
    let Some(first) = Num::parse(first) else {
        return RangeAnswer::Whole;
    };
    let end = if last.is_empty() {
        u128::MAX
    } else {
        match Num::parse(last) {
            Some(last) if last.cmp(&first) != Ordering::Less => last.value(),
            _ => return RangeAnswer::Whole,
        }
    };
    if first.value() >= size {
        return RangeAnswer::Unsatisfiable;
    }
    RangeAnswer::Part(first.value() as u64, end.min(size - 1) as u64)
}

/// `bytes=first-last`, both required (no whitespace inside), first <= last, last inside the
/// object. Errors by S3 code.
fn reference_copy_range(value: &str, size: u64) -> Result<(u64, u64), &'static str> {
    let bad = "InvalidArgument";
    let (first, last) = ows(value)
        .strip_prefix("bytes=")
        .and_then(|r| r.split_once('-'))
        .ok_or(bad)?;
    let (first, last) = (Num::parse(first).ok_or(bad)?, Num::parse(last).ok_or(bad)?);
    if first.cmp(&last) == Ordering::Greater {
        return Err(bad);
    }
    if last.value() >= u128::from(size) {
        return Err("InvalidRange");
    }
    Ok((first.value() as u64, last.value() as u64))
}

/// Part `n` (ASCII digits, 1 to 10,000) of an object made of `sizes`: a part that does not exist
/// or is empty is `InvalidPartNumber`.
fn reference_part(n: &str, sizes: &[u64]) -> Result<(u64, u64), &'static str> {
    let n = Num::parse(n)
        .map(|n| n.value())
        .filter(|n| (1..=10_000).contains(n))
        .ok_or("InvalidArgument")? as usize;
    let total: u128 = sizes.iter().map(|s| u128::from(*s)).sum();
    if n > sizes.len() || total == 0 || sizes[n - 1] == 0 {
        return Err("InvalidPartNumber");
    }
    let start: u128 = sizes[..n - 1].iter().map(|s| u128::from(*s)).sum();
    let end = start + u128::from(sizes[n - 1]) - 1;
    Ok((start as u64, end as u64))
}

/// Sizes at and next to every number in the input: where off-by-one errors live.
fn sizes_for(text: &str) -> Vec<u64> {
    let mut sizes = SIZES.to_vec();
    for run in text
        .split(|c: char| !c.is_ascii_digit())
        .filter(|r| !r.is_empty())
        .take(4)
    {
        let n = Num(run).value().min(u128::from(u64::MAX)) as u64;
        sizes.extend([
            n.saturating_sub(1),
            n,
            n.saturating_add(1),
            n.saturating_add(2),
        ]);
    }
    sizes
}

/// Input: a header value (as it can arrive: `HeaderValue::to_str` must accept it), used as
/// `Range`, as `x-amz-copy-source-range` and as the `partNumber` parameter, each resolved
/// against many sizes. Every answer must equal the reference's exactly.
pub fn range_header(data: &[u8]) {
    let Some(value) = HeaderValue::from_bytes(data)
        .ok()
        .and_then(|v| v.to_str().ok().map(str::to_owned))
    else {
        return;
    };
    for size in sizes_for(&value) {
        let got = match parse_range(&value, size) {
            Ok(None) => RangeAnswer::Whole,
            Ok(Some(ByteRange {
                start,
                end_inclusive,
            })) => RangeAnswer::Part(start, end_inclusive),
            Err(StorageError::InvalidRange { .. }) => RangeAnswer::Unsatisfiable,
            Err(e) => panic!("parse_range({value:?}, {size}) gave {e:?}"),
        };
        assert_eq!(
            got,
            reference_range(&value, size),
            "parse_range({value:?}, {size})"
        );
        if let RangeAnswer::Part(start, end) = got {
            assert!(start <= end && end < size);
        }

        let got = copy_source_range(&value, size)
            .map(|r| (r.start, r.end_inclusive))
            .map_err(|e| e.code);
        assert_eq!(
            got,
            reference_copy_range(&value, size),
            "copy_source_range({value:?}, {size})"
        );
    }
    for sizes in PART_LISTS {
        let total = sizes.iter().sum();
        let got = part_range(&value, sizes.to_vec(), total)
            .map(|r| (r.start, r.end_inclusive))
            .map_err(|e| e.code);
        assert_eq!(
            got,
            reference_part(&value, sizes),
            "part_range({value:?}, {sizes:?})"
        );
    }
}

/// Range values: single, suffix, open, multiple, with signs, spaces, huge numbers and leading
/// zeros, and bare part numbers.
pub fn gen_range_header(rng: &mut StdRng) -> Vec<u8> {
    let numbers = [
        "0",
        "1",
        "9",
        "10",
        "99",
        "100",
        "007",
        "4294967296",
        "18446744073709551614",
        "18446744073709551615",
        "18446744073709551616",
        "18446744073709551617",
        "99999999999999999999999",
        "340282366920938463463374607431768211456",
        "10000",
        "10001",
        "+5",
        "-1",
        "1 0",
        "0x10",
        "",
    ];
    let num = |rng: &mut StdRng| numbers.choose(rng).unwrap().to_string();
    let space = |rng: &mut StdRng| [" ", "", "", "\t"].choose(rng).unwrap().to_string();
    let value = match rng.random_range(0..8) {
        0 => format!("bytes={}-{}", num(rng), num(rng)),
        1 => format!("bytes=-{}", num(rng)),
        2 => format!("bytes={}-", num(rng)),
        3 => format!("bytes={}-{},{}-{}", num(rng), num(rng), num(rng), num(rng)),
        4 => format!(
            "{}bytes={}{}{}-{}{}{}",
            space(rng),
            space(rng),
            num(rng),
            space(rng),
            space(rng),
            num(rng),
            space(rng)
        ),
        5 => num(rng),
        6 => format!(
            "{}={}-{}",
            ["Bytes", "items", "bytes "].choose(rng).unwrap(),
            num(rng),
            num(rng)
        ),
        _ => format!("bytes={}--{}", num(rng), num(rng)),
    };
    value.into_bytes()
}
