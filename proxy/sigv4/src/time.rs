//! [`AmzDate`]: the request timestamp in SigV4's `YYYYMMDDTHHMMSSZ` form, plus the RFC 1123 `Date`
//! header fallback.
//!
//! Spec: <https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_sigv-signing-elements.html#date>

use std::fmt;

use time::{Date, Month, OffsetDateTime, PrimitiveDateTime, Time, macros::format_description};

/// A UTC second, as SigV4 writes it: `20130524T000000Z`.
///
/// Always within years 0000..=9999 so that it formats back to exactly 16 characters.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct AmzDate {
    unix: i64,
    text: String,
}

/// 0000-01-01T00:00:00Z, the earliest representable instant.
const MIN_UNIX: i64 = -62_167_219_200;
/// 9999-12-31T23:59:59Z, the latest representable instant.
const MAX_UNIX: i64 = 253_402_300_799;

impl AmzDate {
    /// Parses exactly `YYYYMMDDTHHMMSSZ`; anything else (including leap second 60) is `None`.
    pub fn parse(text: &str) -> Option<AmzDate> {
        let b = text.as_bytes();
        let digits_ok = b.len() == 16
            && b[8] == b'T'
            && b[15] == b'Z'
            && b[..8].iter().chain(&b[9..15]).all(u8::is_ascii_digit);
        if !digits_ok {
            return None;
        }
        let num = |range: std::ops::Range<usize>| -> u32 {
            b[range]
                .iter()
                .fold(0, |acc, d| acc * 10 + u32::from(d - b'0'))
        };
        let month = Month::try_from(u8::try_from(num(4..6)).ok()?).ok()?;
        let date = Date::from_calendar_date(i32::try_from(num(0..4)).ok()?, month, num(6..8) as u8)
            .ok()?;
        let time = Time::from_hms(num(9..11) as u8, num(11..13) as u8, num(13..15) as u8).ok()?;
        let unix = PrimitiveDateTime::new(date, time)
            .assume_utc()
            .unix_timestamp();
        Some(AmzDate {
            unix,
            text: text.to_owned(),
        })
    }

    /// Parses an RFC 1123 HTTP date (`Fri, 24 May 2013 00:00:00 GMT`), the `Date` header form
    /// S3 accepts when `x-amz-date` is absent.
    pub fn parse_rfc1123(text: &str) -> Option<AmzDate> {
        let format = format_description!(
            "[weekday repr:short], [day] [month repr:short] [year] [hour]:[minute]:[second] GMT"
        );
        let parsed = PrimitiveDateTime::parse(text.trim(), format).ok()?;
        Some(Self::from_unix(parsed.assume_utc().unix_timestamp()))
    }

    /// The date for a Unix time, saturating to years 0000..=9999 (the only ones SigV4 can write).
    pub fn from_unix(unix: i64) -> AmzDate {
        let unix = unix.clamp(MIN_UNIX, MAX_UNIX);
        // In range by the clamp above, so the conversion cannot fail.
        let dt = OffsetDateTime::from_unix_timestamp(unix).unwrap_or(OffsetDateTime::UNIX_EPOCH);
        let text = format!(
            "{:04}{:02}{:02}T{:02}{:02}{:02}Z",
            dt.year(),
            u8::from(dt.month()),
            dt.day(),
            dt.hour(),
            dt.minute(),
            dt.second()
        );
        AmzDate { unix, text }
    }

    /// Seconds since the Unix epoch.
    pub fn unix_seconds(&self) -> i64 {
        self.unix
    }

    /// `YYYYMMDD`, the first element of the credential scope.
    pub fn date_stamp(&self) -> String {
        self.text[..8].to_owned()
    }

    /// `YYYYMMDDTHHMMSSZ`.
    pub fn as_str(&self) -> &str {
        &self.text
    }
}

impl fmt::Display for AmzDate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_formats() {
        let d = AmzDate::parse("20130524T000000Z").unwrap();
        assert_eq!(d.unix_seconds(), 1_369_353_600);
        assert_eq!(d.date_stamp(), "20130524");
        assert_eq!(d.to_string(), "20130524T000000Z");
        assert_eq!(AmzDate::from_unix(1_369_353_600), d);
        let d = AmzDate::parse("20150830T123600Z").unwrap();
        assert_eq!(
            AmzDate::from_unix(d.unix_seconds()).as_str(),
            "20150830T123600Z"
        );
    }

    #[test]
    fn rejects_malformed() {
        for bad in [
            "",
            "20130524T000000",
            "20130524 000000Z",
            "2013-05-24T00:00:00Z",
            "20131324T000000Z",
            "20130532T000000Z",
            "20130229T000000Z",
            "20130524T240000Z",
            "20130524T235960Z",
            "+0130524T000000Z",
            "20130524T000000z",
            "20130524T000000Z ",
        ] {
            assert!(AmzDate::parse(bad).is_none(), "{bad:?}");
        }
    }

    #[test]
    fn rfc1123() {
        let d = AmzDate::parse_rfc1123("Fri, 24 May 2013 00:00:00 GMT").unwrap();
        assert_eq!(d.as_str(), "20130524T000000Z");
        assert!(AmzDate::parse_rfc1123("Fri, 24 May 2013 00:00:00 +0000").is_none());
        assert!(AmzDate::parse_rfc1123("20130524T000000Z").is_none());
    }

    #[test]
    fn from_unix_saturates() {
        assert_eq!(AmzDate::from_unix(i64::MAX).as_str(), "99991231T235959Z");
        assert_eq!(AmzDate::from_unix(i64::MIN).as_str(), "00000101T000000Z");
        assert_eq!(AmzDate::from_unix(0).as_str(), "19700101T000000Z");
    }
}
