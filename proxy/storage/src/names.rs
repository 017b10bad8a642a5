//! Validated names. A value of these types has passed S3's rules, so code past the router never
//! re-checks them, and an object key never becomes a filesystem path (see `local`).

use std::fmt;

/// S3's limit on the UTF-8 length of an object key.
pub const MAX_KEY_BYTES: usize = 1024;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    #[error("the specified bucket is not valid: {0}")]
    InvalidBucketName(&'static str),
    #[error("your key is too long")]
    KeyTooLong,
    #[error("object key is empty")]
    EmptyKey,
    #[error("object keys cannot contain NUL")]
    InvalidKeyCharacter,
}

/// A bucket name that satisfies S3's general-purpose bucket naming rules:
/// <https://docs.aws.amazon.com/AmazonS3/latest/userguide/bucketnamingrules.html>
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct BucketName(String);

impl BucketName {
    pub fn parse(name: &str) -> Result<Self, NameError> {
        use NameError::InvalidBucketName as bad;
        if !(3..=63).contains(&name.len()) {
            return Err(bad("bucket names must be between 3 and 63 characters long"));
        }
        let bytes = name.as_bytes();
        if !bytes
            .iter()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'.' || *b == b'-')
        {
            return Err(bad(
                "bucket names can consist only of lowercase letters, numbers, dots and hyphens",
            ));
        }
        let alnum = |b: &u8| b.is_ascii_lowercase() || b.is_ascii_digit();
        if !alnum(&bytes[0]) || !alnum(&bytes[bytes.len() - 1]) {
            return Err(bad(
                "bucket names must begin and end with a letter or number",
            ));
        }
        if name.contains("..") || name.contains(".-") || name.contains("-.") {
            return Err(bad(
                "bucket names must not contain two adjacent periods or a period next to a hyphen",
            ));
        }
        if name.split('.').count() == 4 && name.split('.').all(|p| p.parse::<u8>().is_ok()) {
            return Err(bad("bucket names must not be formatted as an IP address"));
        }
        const RESERVED_PREFIXES: [&str; 4] =
            ["xn--", "sthree-", "sthree-configurator", "amzn-s3-demo-"];
        const RESERVED_SUFFIXES: [&str; 4] = ["-s3alias", "--ol-s3", ".mrap", "--x-s3"];
        if RESERVED_PREFIXES.iter().any(|p| name.starts_with(p))
            || RESERVED_SUFFIXES.iter().any(|s| name.ends_with(s))
        {
            return Err(bad("bucket names must not use a reserved prefix or suffix"));
        }
        Ok(Self(name.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for BucketName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// An object key: any UTF-8 of 1 to 1024 bytes except NUL. Keys such as `../x`, `/etc/passwd`
/// or `a//b` are legal S3 keys and are stored as such: the local backend never maps a key to a
/// path. Other control characters are allowed, as in S3; listings carry them safely with
/// `encoding-type=url`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ObjectKey(String);

impl ObjectKey {
    pub fn parse(key: &str) -> Result<Self, NameError> {
        if key.is_empty() {
            return Err(NameError::EmptyKey);
        }
        if key.len() > MAX_KEY_BYTES {
            return Err(NameError::KeyTooLong);
        }
        if key.contains('\0') {
            return Err(NameError::InvalidKeyCharacter);
        }
        Ok(Self(key.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for ObjectKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The tenant a bucket belongs to. Each tenant has its own bucket namespace in the local backend.
/// Validated by the config layer (`[a-z0-9-]`, 1..=63), so it can never contain the index separator.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct TenantId(String);

impl TenantId {
    pub fn parse(name: &str) -> Option<Self> {
        let ok = (1..=63).contains(&name.len())
            && name
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_');
        ok.then(|| Self(name.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bucket_rules() {
        for ok in ["abc", "my-bucket.v2", "a1b", &"a".repeat(63)] {
            assert!(BucketName::parse(ok).is_ok(), "{ok}");
        }
        for bad in [
            "ab",
            &"a".repeat(64),
            "ABC",
            "-abc",
            "abc-",
            "a..b",
            "a.-b",
            "192.168.1.1",
            "xn--abc",
            "abc-s3alias",
            "a_b",
            "a b",
        ] {
            assert!(BucketName::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn key_rules() {
        for ok in [
            "a",
            "../../etc/passwd",
            "/abs",
            "a//b",
            "ünïcödé/🙂",
            &"k".repeat(1024),
        ] {
            assert!(ObjectKey::parse(ok).is_ok(), "{ok}");
        }
        assert!(
            ObjectKey::parse("ctrl\u{1}\u{1f}").is_ok(),
            "S3 keys may hold control characters"
        );
        assert_eq!(ObjectKey::parse(""), Err(NameError::EmptyKey));
        assert_eq!(
            ObjectKey::parse(&"k".repeat(1025)),
            Err(NameError::KeyTooLong)
        );
        assert_eq!(
            ObjectKey::parse("a\0b"),
            Err(NameError::InvalidKeyCharacter)
        );
    }
}
