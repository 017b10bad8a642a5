//! Conditional reads (`If-Match`, `If-None-Match`, `If-Modified-Since`, `If-Unmodified-Since`
//! and their `x-amz-copy-source-if-*` forms), evaluated by the store against the object it is
//! about to read, in RFC 9110 order as S3 does. An upstream store forwards them instead.

use crate::{ObjectMeta, StorageError};

/// A read's preconditions. Dates are Unix seconds (HTTP dates have one-second precision); a
/// date header that did not parse is absent, as S3 ignores it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Preconditions {
    /// `*` or a comma-separated list of entity tags, as sent.
    pub if_match: Option<String>,
    pub if_none_match: Option<String>,
    pub if_modified_since: Option<i64>,
    pub if_unmodified_since: Option<i64>,
}

impl Preconditions {
    pub fn is_empty(&self) -> bool {
        *self == Self::default()
    }

    /// `Ok` to proceed; `PreconditionFailed` (412) or `NotModified` (304) otherwise.
    pub fn check(&self, meta: &ObjectMeta) -> Result<(), StorageError> {
        let failed = |condition| StorageError::PreconditionFailed {
            condition: Some(condition),
        };
        let modified_secs = meta.last_modified_ms.div_euclid(1000);
        if let Some(tags) = &self.if_match {
            if !etag_matches(tags, &meta.etag) {
                return Err(failed("If-Match"));
            }
        } else if self
            .if_unmodified_since
            .is_some_and(|since| modified_secs > since)
        {
            return Err(failed("If-Unmodified-Since"));
        }
        let not_modified = match &self.if_none_match {
            Some(tags) => etag_matches(tags, &meta.etag),
            None => self
                .if_modified_since
                .is_some_and(|since| modified_secs <= since),
        };
        if not_modified {
            return Err(StorageError::NotModified(Box::new(meta.clone())));
        }
        Ok(())
    }

    /// A copy source's conditions: a copy has no 304, so every failure is 412.
    pub fn check_copy_source(&self, meta: &ObjectMeta) -> Result<(), StorageError> {
        match self.check(meta) {
            Err(StorageError::NotModified(_)) => {
                Err(StorageError::PreconditionFailed { condition: None })
            }
            other => other,
        }
    }
}

/// `*`, or a comma-separated list of (possibly weak) quoted entity tags.
fn etag_matches(list: &str, etag: &str) -> bool {
    list.split(',')
        .map(str::trim)
        .any(|t| t == "*" || t.trim_start_matches("W/").trim_matches('"') == etag)
}
