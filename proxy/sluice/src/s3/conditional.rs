//! Conditional requests on GET and HEAD (`If-Match`, `If-None-Match`, `If-Modified-Since`,
//! `If-Unmodified-Since`), evaluated in RFC 9110 order as S3 does, and the request headers that
//! ask for features Sluice does not implement yet: those answer `NotImplemented` rather than
//! being silently ignored (an ignored `x-amz-server-side-encryption-aws-kms-key-id` would store
//! plaintext that the client believes is encrypted).

use http::HeaderMap;
use sluice_storage::{ObjectMeta, Preconditions, StorageError};

use super::S3Error;
use crate::body::header_str;

/// What the preconditions decided for a GET or HEAD.
#[derive(Debug, PartialEq, Eq)]
pub enum Precondition {
    Proceed,
    NotModified,
}

/// A GET or HEAD's `If-*` headers, for the store to check against the object it reads.
pub fn preconditions(headers: &HeaderMap) -> Preconditions {
    read_conditions(
        headers,
        [
            "if-match",
            "if-none-match",
            "if-modified-since",
            "if-unmodified-since",
        ],
    )
}

/// CopyObject and UploadPartCopy's `x-amz-copy-source-if-*` conditions on the source.
pub fn copy_source_preconditions(headers: &HeaderMap) -> Preconditions {
    read_conditions(
        headers,
        [
            "x-amz-copy-source-if-match",
            "x-amz-copy-source-if-none-match",
            "x-amz-copy-source-if-modified-since",
            "x-amz-copy-source-if-unmodified-since",
        ],
    )
}

fn read_conditions(headers: &HeaderMap, names: [&str; 4]) -> Preconditions {
    let [if_match, if_none_match, modified, unmodified] = names;
    Preconditions {
        if_match: header_str(headers, if_match).map(str::to_owned),
        if_none_match: header_str(headers, if_none_match).map(str::to_owned),
        if_modified_since: header_str(headers, modified).and_then(http_date_secs),
        if_unmodified_since: header_str(headers, unmodified).and_then(http_date_secs),
    }
}

/// The GET/HEAD preconditions in `headers` evaluated against `meta` (as the store does).
pub fn evaluate(headers: &HeaderMap, meta: &ObjectMeta) -> Result<Precondition, S3Error> {
    match preconditions(headers).check(meta) {
        Ok(()) => Ok(Precondition::Proceed),
        Err(StorageError::NotModified(_)) => Ok(Precondition::NotModified),
        Err(err) => Err(err.into()),
    }
}

fn http_date_secs(value: &str) -> Option<i64> {
    let t = httpdate::parse_http_date(value.trim()).ok()?;
    Some(t.duration_since(std::time::UNIX_EPOCH).ok()?.as_secs() as i64)
}

/// The copy-source preconditions in `headers` evaluated against `meta`: any that fails is
/// `PreconditionFailed` (a copy has no 304).
pub fn evaluate_copy_source(headers: &HeaderMap, meta: &ObjectMeta) -> Result<(), S3Error> {
    Ok(copy_source_preconditions(headers).check_copy_source(meta)?)
}

/// Request headers for features not implemented yet, per operation. A value of `None` means
/// any value is refused; `Some(ok)` lists the values that mean "nothing special".
const UNSUPPORTED_ON_PUT: &[(&str, Option<&[&str]>)] = &[
    ("x-amz-server-side-encryption-aws-kms-key-id", None),
    ("x-amz-server-side-encryption-context", None),
    ("x-amz-object-lock-mode", None),
    ("x-amz-object-lock-retain-until-date", None),
    ("x-amz-object-lock-legal-hold", None),
    ("x-amz-website-redirect-location", None),
    ("x-amz-storage-class", Some(&["STANDARD"])),
    ("x-amz-acl", Some(&["private"])),
    ("x-amz-grant-full-control", None),
    ("x-amz-grant-read", None),
    ("x-amz-grant-read-acp", None),
    ("x-amz-grant-write-acp", None),
];

const UNSUPPORTED_ON_GET: &[(&str, Option<&[&str]>)] = &[("x-amz-request-payer", None)];

const UNSUPPORTED_ON_CREATE_BUCKET: &[(&str, Option<&[&str]>)] = &[
    ("x-amz-bucket-object-lock-enabled", Some(&["false"])),
    ("x-amz-acl", Some(&["private"])),
    ("x-amz-grant-full-control", None),
    ("x-amz-grant-read", None),
    ("x-amz-grant-write", None),
];

/// Whether a write asks for `x-amz-server-side-encryption: AES256`, which a store that
/// encrypts (`encryption` is `Some`) honours; anything else (another algorithm, or a store
/// that cannot encrypt) is `NotImplemented`, never stored in plaintext. A copy (`copy`) is
/// encrypted only by a store whose policy encrypts every write.
pub fn server_side_encryption(
    headers: &HeaderMap,
    encryption: Option<sluice_storage::Policy>,
    copy: bool,
) -> Result<bool, S3Error> {
    let Some(value) = headers.get("x-amz-server-side-encryption") else {
        return Ok(false);
    };
    let aes256 = value.to_str().is_ok_and(|v| v.trim() == "AES256");
    let honoured = match encryption {
        None => false,
        Some(sluice_storage::Policy::Off) => !copy,
        Some(_) => true,
    };
    if aes256 && honoured {
        Ok(true)
    } else {
        Err(
            S3Error::not_implemented("This x-amz-server-side-encryption on this bucket")
                .with("Header", "x-amz-server-side-encryption"),
        )
    }
}

#[derive(Debug, Clone, Copy)]
pub enum Checked {
    Put,
    Get,
    CreateBucket,
}

pub fn refuse_unsupported(headers: &HeaderMap, op: Checked) -> Result<(), S3Error> {
    let table = match op {
        Checked::Put => UNSUPPORTED_ON_PUT,
        Checked::Get => UNSUPPORTED_ON_GET,
        Checked::CreateBucket => UNSUPPORTED_ON_CREATE_BUCKET,
    };
    for (name, allowed) in table {
        let Some(value) = headers.get(*name) else {
            continue;
        };
        let harmless = allowed.is_some_and(|ok| {
            value
                .to_str()
                .is_ok_and(|v| ok.iter().any(|a| a.eq_ignore_ascii_case(v.trim())))
        });
        if !harmless {
            return Err(S3Error::not_implemented(&format!("The {name} header")));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta() -> ObjectMeta {
        ObjectMeta {
            size: 1,
            etag: "abc".into(),
            last_modified_ms: 1_700_000_000_500,
            headers: Default::default(),
            ..Default::default()
        }
    }

    fn eval(pairs: &[(&'static str, &str)]) -> Result<Precondition, &'static str> {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, v.parse().unwrap());
        }
        evaluate(&h, &meta()).map_err(|e| e.code)
    }

    #[test]
    fn preconditions_in_rfc_order() {
        let before = "Tue, 14 Nov 2023 22:13:19 GMT"; // 1 s before last-modified
        let at = "Tue, 14 Nov 2023 22:13:20 GMT";
        assert_eq!(eval(&[]), Ok(Precondition::Proceed));
        assert_eq!(eval(&[("if-match", "\"abc\"")]), Ok(Precondition::Proceed));
        assert_eq!(
            eval(&[("if-match", "\"x\", W/\"abc\"")]),
            Ok(Precondition::Proceed)
        );
        assert_eq!(eval(&[("if-match", "*")]), Ok(Precondition::Proceed));
        assert_eq!(eval(&[("if-match", "\"nope\"")]), Err("PreconditionFailed"));
        assert_eq!(
            eval(&[("if-none-match", "\"abc\"")]),
            Ok(Precondition::NotModified)
        );
        assert_eq!(
            eval(&[("if-none-match", "\"other\"")]),
            Ok(Precondition::Proceed)
        );
        assert_eq!(
            eval(&[("if-modified-since", at)]),
            Ok(Precondition::NotModified)
        );
        assert_eq!(
            eval(&[("if-modified-since", before)]),
            Ok(Precondition::Proceed)
        );
        assert_eq!(
            eval(&[("if-unmodified-since", before)]),
            Err("PreconditionFailed")
        );
        assert_eq!(
            eval(&[("if-unmodified-since", at)]),
            Ok(Precondition::Proceed)
        );
        // S3: If-Match true wins over If-Unmodified-Since false; If-None-Match decides over
        // If-Modified-Since.
        assert_eq!(
            eval(&[("if-match", "\"abc\""), ("if-unmodified-since", before)]),
            Ok(Precondition::Proceed)
        );
        assert_eq!(
            eval(&[("if-none-match", "\"other\""), ("if-modified-since", at)]),
            Ok(Precondition::Proceed)
        );
    }

    #[test]
    fn aes256_is_honoured_only_where_the_store_encrypts() {
        use sluice_storage::Policy;
        let mut h = HeaderMap::new();
        assert!(!server_side_encryption(&h, None, false).unwrap());
        h.insert("x-amz-server-side-encryption", "AES256".parse().unwrap());
        assert!(server_side_encryption(&h, Some(Policy::Off), false).unwrap());
        assert!(server_side_encryption(&h, Some(Policy::Required), true).unwrap());
        for (policy, copy) in [(None, false), (Some(Policy::Off), true)] {
            let err = server_side_encryption(&h, policy, copy).unwrap_err();
            assert_eq!(err.code, "NotImplemented");
        }
        h.insert("x-amz-server-side-encryption", "aws:kms".parse().unwrap());
        let err = server_side_encryption(&h, Some(Policy::Required), false).unwrap_err();
        assert_eq!(err.code, "NotImplemented");
    }

    #[test]
    fn unsupported_headers_are_refused_not_ignored() {
        let mut h = HeaderMap::new();
        h.insert("x-amz-storage-class", "STANDARD".parse().unwrap());
        h.insert("x-amz-acl", "private".parse().unwrap());
        assert!(refuse_unsupported(&h, Checked::Put).is_ok());
        h.insert(
            "x-amz-server-side-encryption-aws-kms-key-id",
            "k".parse().unwrap(),
        );
        assert_eq!(
            refuse_unsupported(&h, Checked::Put).unwrap_err().code,
            "NotImplemented"
        );
        h.insert("x-amz-request-payer", "requester".parse().unwrap());
        assert_eq!(
            refuse_unsupported(&h, Checked::Get).unwrap_err().code,
            "NotImplemented"
        );
        let mut h = HeaderMap::new();
        h.insert("x-amz-storage-class", "GLACIER".parse().unwrap());
        assert_eq!(
            refuse_unsupported(&h, Checked::Put).unwrap_err().code,
            "NotImplemented"
        );
    }
}
