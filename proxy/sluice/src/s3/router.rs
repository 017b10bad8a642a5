//! Addressing and routing: turns method + host + path + query into one closed [`S3Op`].
//!
//! Path-style (`/bucket/key`) and virtual-hosted-style (`bucket.<base domain>/key`) are both
//! accepted. Sub-resources Sluice does not implement answer `NotImplemented`, never a wrong
//! success: a query parameter is only ignored when S3 itself treats it as a plain parameter.

use http::Method;
use percent_encoding::percent_decode_str;
use sluice_storage::{BucketName, ObjectKey, ReadRange};

use super::S3Error;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum S3Op {
    ListBuckets,
    Bucket(BucketName, BucketOp),
    Object(BucketName, ObjectKey, ObjectOp),
    /// An S3 operation Sluice does not model (`?policy`, `?lifecycle`, `?acl`, ...): forwarded
    /// verbatim on routes that say `passthrough`, else `NotImplemented` (the text says which).
    Unmodelled {
        bucket: BucketName,
        key: Option<ObjectKey>,
        what: String,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BucketOp {
    Create,
    Head,
    Delete,
    GetLocation,
    ListObjectsV1,
    ListObjectsV2,
    ListObjectVersions,
    ListMultipartUploads,
    DeleteObjects,
    GetVersioning,
    GetCors,
    PutCors,
    DeleteCors,
    GetEncryption,
    PutEncryption,
    DeleteEncryption,
}

/// An object operation, its parameters parsed once: part numbers are S3's (1 to 10,000) and
/// ranges are typed, still to be resolved by the store against the object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ObjectOp {
    Put,
    Copy,
    /// `range`: the `Range` header or `partNumber` parameter (never both).
    Get {
        range: Option<ReadRange>,
    },
    Head {
        range: Option<ReadRange>,
    },
    Delete,
    CreateMultipartUpload,
    UploadPart {
        upload_id: String,
        part_number: u32,
    },
    UploadPartCopy {
        upload_id: String,
        part_number: u32,
        /// `x-amz-copy-source-range`; all of the source if absent.
        source_range: Option<ReadRange>,
    },
    CompleteMultipartUpload {
        upload_id: String,
    },
    AbortMultipartUpload {
        upload_id: String,
    },
    ListParts {
        upload_id: String,
    },
    GetTagging,
    PutTagging,
    DeleteTagging,
}

impl S3Op {
    pub fn name(&self) -> &'static str {
        match self {
            Self::ListBuckets => "ListBuckets",
            Self::Bucket(_, op) => match op {
                BucketOp::Create => "CreateBucket",
                BucketOp::Head => "HeadBucket",
                BucketOp::Delete => "DeleteBucket",
                BucketOp::GetLocation => "GetBucketLocation",
                BucketOp::ListObjectsV1 => "ListObjects",
                BucketOp::ListObjectsV2 => "ListObjectsV2",
                BucketOp::ListObjectVersions => "ListObjectVersions",
                BucketOp::ListMultipartUploads => "ListMultipartUploads",
                BucketOp::DeleteObjects => "DeleteObjects",
                BucketOp::GetVersioning => "GetBucketVersioning",
                BucketOp::GetCors => "GetBucketCors",
                BucketOp::PutCors => "PutBucketCors",
                BucketOp::DeleteCors => "DeleteBucketCors",
                BucketOp::GetEncryption => "GetBucketEncryption",
                BucketOp::PutEncryption => "PutBucketEncryption",
                BucketOp::DeleteEncryption => "DeleteBucketEncryption",
            },
            Self::Unmodelled { .. } => "Unmodelled",
            Self::Object(_, _, op) => match op {
                ObjectOp::Put => "PutObject",
                ObjectOp::Copy => "CopyObject",
                ObjectOp::Get { .. } => "GetObject",
                ObjectOp::Head { .. } => "HeadObject",
                ObjectOp::Delete => "DeleteObject",
                ObjectOp::CreateMultipartUpload => "CreateMultipartUpload",
                ObjectOp::UploadPart { .. } => "UploadPart",
                ObjectOp::UploadPartCopy { .. } => "UploadPartCopy",
                ObjectOp::CompleteMultipartUpload { .. } => "CompleteMultipartUpload",
                ObjectOp::AbortMultipartUpload { .. } => "AbortMultipartUpload",
                ObjectOp::ListParts { .. } => "ListParts",
                ObjectOp::GetTagging => "GetObjectTagging",
                ObjectOp::PutTagging => "PutObjectTagging",
                ObjectOp::DeleteTagging => "DeleteObjectTagging",
            },
        }
    }

    pub fn bucket(&self) -> Option<&BucketName> {
        match self {
            Self::ListBuckets => None,
            Self::Bucket(b, _) | Self::Object(b, _, _) | Self::Unmodelled { bucket: b, .. } => {
                Some(b)
            }
        }
    }
}

/// Query parameters that select an S3 sub-resource or operation. Any of these not handled
/// below makes the request `NotImplemented`.
const SUBRESOURCES: &[&str] = &[
    "accelerate",
    "acl",
    "analytics",
    "attributes",
    "cors",
    "delete",
    "encryption",
    "intelligent-tiering",
    "inventory",
    "legal-hold",
    "lifecycle",
    "location",
    "logging",
    "metadataTable",
    "metrics",
    "notification",
    "object-lock",
    "ownershipControls",
    "partNumber",
    "policy",
    "policyStatus",
    "publicAccessBlock",
    "replication",
    "requestPayment",
    "restore",
    "retention",
    "select",
    "session",
    "tagging",
    "torrent",
    "uploadId",
    "uploads",
    "versionId",
    "versioning",
    "versions",
    "website",
];

/// The resource a request names: its bucket and key as the client sent them (decoded).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Target {
    pub bucket: Option<String>,
    pub key: Option<String>,
}

impl Target {
    /// `/bucket/key` for error bodies, with control characters percent-encoded so that every
    /// error document stays well-formed XML 1.0 whatever key was asked for.
    pub fn resource(&self) -> String {
        let raw = match (&self.bucket, &self.key) {
            (Some(b), Some(k)) => format!("/{b}/{k}"),
            (Some(b), None) => format!("/{b}"),
            _ => "/".into(),
        };
        raw.chars()
            .map(|c| {
                if c.is_control() {
                    format!("%{:02X}", c as u32)
                } else {
                    c.to_string()
                }
            })
            .collect()
    }
}

/// Splits host and path into bucket and key according to the configured base domains.
pub fn target(
    host: Option<&str>,
    raw_path: &str,
    base_domains: &[String],
) -> Result<Target, S3Error> {
    let path = percent_decode_str(raw_path).decode_utf8().map_err(|_| {
        S3Error::new(
            http::StatusCode::BAD_REQUEST,
            "InvalidURI",
            "Couldn't parse the specified URI.",
        )
    })?;
    let path = path.strip_prefix('/').unwrap_or(&path);
    let host = host.map(|h| strip_port(h).trim_end_matches('.').to_ascii_lowercase());
    let virtual_bucket = host.as_deref().and_then(|h| {
        base_domains
            .iter()
            .find_map(|d| {
                h.strip_suffix(d.as_str())
                    .and_then(|b| b.strip_suffix('.'))
                    .filter(|b| !b.is_empty())
            })
            .map(str::to_owned)
    });
    let non_empty = |s: &str| (!s.is_empty()).then(|| s.to_owned());
    Ok(match virtual_bucket {
        Some(bucket) => Target {
            bucket: Some(bucket),
            key: non_empty(path),
        },
        None => match path.split_once('/') {
            Some((bucket, key)) => Target {
                bucket: non_empty(bucket),
                key: non_empty(key),
            },
            None => Target {
                bucket: non_empty(path),
                key: None,
            },
        },
    })
}

fn strip_port(host: &str) -> &str {
    if host.starts_with('[') {
        return host
            .split_once(']')
            .map_or(host, |(h, _)| &host[..h.len() + 1]);
    }
    host.rsplit_once(':').map_or(host, |(h, port)| {
        if port.bytes().all(|b| b.is_ascii_digit()) {
            h
        } else {
            host
        }
    })
}

/// The query's parameter names (decoded), for sub-resource detection.
pub fn query_has(query: Option<&str>, name: &str) -> bool {
    query_pairs(query).any(|(k, _)| k == name)
}

pub fn query_get(query: Option<&str>, name: &str) -> Option<String> {
    query_pairs(query).find(|(k, _)| k == name).map(|(_, v)| v)
}

pub fn query_pairs(query: Option<&str>) -> impl Iterator<Item = (String, String)> + '_ {
    query
        .unwrap_or("")
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            let decode = |s: &str| {
                percent_decode_str(&s.replace('+', "%20"))
                    .decode_utf8_lossy()
                    .into_owned()
            };
            (decode(k), decode(v))
        })
}

pub fn route(
    method: &Method,
    target: &Target,
    query: Option<&str>,
    headers: &http::HeaderMap,
) -> Result<S3Op, S3Error> {
    let mut subresources: Vec<String> = query_pairs(query)
        .map(|(k, _)| k)
        .filter(|k| SUBRESOURCES.contains(&k.as_str()))
        .collect();
    // An unversioned bucket has exactly one version of each object, named "null" (S3's answer
    // for cleanup tools and test suites that always send a version id).
    if query_pairs(query).filter(|(k, _)| k == "versionId").count() > 1 {
        return Err(S3Error::invalid_argument(
            "versionId appears more than once",
        ));
    }
    if let Some(version) = query_get(query, "versionId") {
        if version != "null" {
            return Err(S3Error::invalid_argument("Invalid version id specified"));
        }
        subresources.retain(|k| k != "versionId");
    }
    let has = |name: &str| subresources.iter().any(|k| k == name);
    let only = |names: &[&str]| subresources.iter().all(|k| names.contains(&k.as_str()));
    let unmodelled = |level: &str, bucket: BucketName, key: Option<ObjectKey>| {
        let list = subresources.join(", ?");
        S3Op::Unmodelled {
            bucket,
            key,
            what: format!("The {level} sub-resource ?{list} with {method}"),
        }
    };
    let Some(bucket) = &target.bucket else {
        return match *method {
            Method::GET => Ok(S3Op::ListBuckets),
            _ => Err(S3Error::method_not_allowed()),
        };
    };
    let bucket = BucketName::parse(bucket)
        .map_err(|e| S3Error::from(sluice_storage::StorageError::from(e)))?;
    let Some(key) = &target.key else {
        let op = match (method.clone(), subresources.as_slice()) {
            (Method::GET, []) if query_get(query, "list-type").as_deref() == Some("2") => {
                BucketOp::ListObjectsV2
            }
            (Method::GET, []) => BucketOp::ListObjectsV1,
            (Method::GET, [s]) if s == "location" => BucketOp::GetLocation,
            (Method::GET, [s]) if s == "uploads" => BucketOp::ListMultipartUploads,
            (Method::GET, [s]) if s == "versioning" => BucketOp::GetVersioning,
            (Method::GET, [s]) if s == "versions" => BucketOp::ListObjectVersions,
            (Method::POST, [s]) if s == "delete" => BucketOp::DeleteObjects,
            (Method::GET, [s]) if s == "cors" => BucketOp::GetCors,
            (Method::PUT, [s]) if s == "cors" => BucketOp::PutCors,
            (Method::DELETE, [s]) if s == "cors" => BucketOp::DeleteCors,
            (Method::GET, [s]) if s == "encryption" => BucketOp::GetEncryption,
            (Method::PUT, [s]) if s == "encryption" => BucketOp::PutEncryption,
            (Method::DELETE, [s]) if s == "encryption" => BucketOp::DeleteEncryption,
            (Method::PUT, []) => BucketOp::Create,
            (Method::HEAD, []) => BucketOp::Head,
            (Method::DELETE, []) => BucketOp::Delete,
            (_, []) => return Err(S3Error::method_not_allowed()),
            _ => return Ok(unmodelled("bucket", bucket, None)),
        };
        return Ok(S3Op::Bucket(bucket, op));
    };
    let key =
        ObjectKey::parse(key).map_err(|e| S3Error::from(sluice_storage::StorageError::from(e)))?;
    let upload_id = || query_get(query, "uploadId").unwrap_or_default();
    let part_number =
        || super::range::part_number(&query_get(query, "partNumber").unwrap_or_default());
    let copy = headers.contains_key("x-amz-copy-source");
    let op = match method.clone() {
        Method::GET if subresources.is_empty() || only(&["partNumber"]) => ObjectOp::Get {
            range: read_range(query, headers)?,
        },
        Method::HEAD if subresources.is_empty() || only(&["partNumber"]) => ObjectOp::Head {
            range: read_range(query, headers)?,
        },
        Method::GET if has("uploadId") && only(&["uploadId"]) => ObjectOp::ListParts {
            upload_id: upload_id(),
        },
        Method::GET if has("tagging") && only(&["tagging"]) => ObjectOp::GetTagging,
        Method::PUT if subresources.is_empty() && copy => ObjectOp::Copy,
        Method::PUT if subresources.is_empty() => ObjectOp::Put,
        Method::PUT
            if has("uploadId") && has("partNumber") && only(&["uploadId", "partNumber"]) =>
        {
            if copy {
                ObjectOp::UploadPartCopy {
                    upload_id: upload_id(),
                    part_number: part_number()?,
                    source_range: crate::body::header_str(headers, "x-amz-copy-source-range")
                        .map(super::range::parse_copy_source_range)
                        .transpose()?,
                }
            } else {
                ObjectOp::UploadPart {
                    upload_id: upload_id(),
                    part_number: part_number()?,
                }
            }
        }
        Method::PUT if has("tagging") && only(&["tagging"]) => ObjectOp::PutTagging,
        Method::POST if has("uploads") && only(&["uploads"]) => ObjectOp::CreateMultipartUpload,
        Method::POST if has("uploadId") && only(&["uploadId"]) => {
            ObjectOp::CompleteMultipartUpload {
                upload_id: upload_id(),
            }
        }
        Method::DELETE if subresources.is_empty() => ObjectOp::Delete,
        Method::DELETE if has("uploadId") && only(&["uploadId"]) => {
            ObjectOp::AbortMultipartUpload {
                upload_id: upload_id(),
            }
        }
        Method::DELETE if has("tagging") && only(&["tagging"]) => ObjectOp::DeleteTagging,
        _ if subresources.is_empty() => return Err(S3Error::method_not_allowed()),
        _ => return Ok(unmodelled("object", bucket, Some(key))),
    };
    Ok(S3Op::Object(bucket, key, op))
}

/// A GET or HEAD's `Range` header or `partNumber` parameter. A `Range` S3 cannot parse is
/// ignored (the whole object is returned), as S3 does.
fn read_range(
    query: Option<&str>,
    headers: &http::HeaderMap,
) -> Result<Option<ReadRange>, S3Error> {
    match (
        query_get(query, "partNumber"),
        crate::body::header_str(headers, "range"),
    ) {
        (Some(_), Some(_)) => Err(S3Error::invalid_request(
            "Cannot specify both Range header and partNumber query parameter.",
        )),
        (Some(n), None) => Ok(Some(ReadRange::Part(super::range::part_number(&n)?))),
        (None, Some(value)) => Ok(super::range::parse_range_header(value)),
        (None, None) => Ok(None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(host: &str, path: &str) -> Target {
        target(Some(host), path, &["s3.example.com".to_owned()]).unwrap()
    }

    #[test]
    fn addressing_styles() {
        assert_eq!(t("localhost:9000", "/"), Target::default());
        assert_eq!(
            t("localhost", "/b1/a/b%20c"),
            Target {
                bucket: Some("b1".into()),
                key: Some("a/b c".into())
            }
        );
        assert_eq!(
            t("b1.s3.example.com:443", "/k//x"),
            Target {
                bucket: Some("b1".into()),
                key: Some("k//x".into())
            }
        );
        assert_eq!(
            t("s3.example.com", "/b1/k"),
            Target {
                bucket: Some("b1".into()),
                key: Some("k".into())
            }
        );
        assert_eq!(
            t("[::1]:9000", "/b1/"),
            Target {
                bucket: Some("b1".into()),
                key: None
            }
        );
        assert_eq!(
            t("localhost", "/b1/..%2F..%2Fetc").key.as_deref(),
            Some("../../etc")
        );
        assert!(target(None, "/b/%FF", &[]).is_err());
    }

    /// Part numbers and ranges are parsed once, into the operation.
    #[test]
    fn reads_carry_typed_ranges() {
        let tg = t("localhost", "/bucket/key");
        let mut h = http::HeaderMap::new();
        h.insert("range", "bytes=5-9".parse().unwrap());
        assert_eq!(
            route(&Method::GET, &tg, None, &h).unwrap(),
            S3Op::Object(
                BucketName::parse("bucket").unwrap(),
                ObjectKey::parse("key").unwrap(),
                ObjectOp::Get {
                    range: Some(ReadRange::From {
                        first: 5,
                        last: Some(9)
                    })
                }
            )
        );
        assert_eq!(
            route(&Method::GET, &tg, Some("partNumber=1"), &h)
                .unwrap_err()
                .code,
            "InvalidRequest"
        );
        let none = http::HeaderMap::new();
        assert!(matches!(
            route(&Method::HEAD, &tg, Some("partNumber=3"), &none),
            Ok(S3Op::Object(
                _,
                _,
                ObjectOp::Head {
                    range: Some(ReadRange::Part(3))
                }
            ))
        ));
        assert_eq!(
            route(&Method::HEAD, &tg, Some("partNumber=x"), &none)
                .unwrap_err()
                .code,
            "InvalidArgument"
        );
        let mut copy = http::HeaderMap::new();
        copy.insert("x-amz-copy-source", "src/k".parse().unwrap());
        copy.insert("x-amz-copy-source-range", "bytes=0-9".parse().unwrap());
        assert!(matches!(
            route(&Method::PUT, &tg, Some("partNumber=2&uploadId=u"), &copy),
            Ok(S3Op::Object(
                _,
                _,
                ObjectOp::UploadPartCopy {
                    part_number: 2,
                    source_range: Some(ReadRange::Exact { first: 0, last: 9 }),
                    ..
                }
            ))
        ));
    }

    #[test]
    fn routes_and_subresources() {
        let tg = t("localhost", "/bucket/key");
        let h = http::HeaderMap::new();
        let route = |m: &Method, t: &Target, q: Option<&str>| super::route(m, t, q, &h);
        assert!(matches!(
            route(&Method::GET, &tg, Some("x-id=GetObject")),
            Ok(S3Op::Object(_, _, ObjectOp::Get { range: None }))
        ));
        assert!(matches!(
            route(&Method::GET, &tg, Some("response-content-type=a")),
            Ok(S3Op::Object(_, _, ObjectOp::Get { range: None }))
        ));
        assert!(matches!(
            route(&Method::GET, &tg, Some("tagging")),
            Ok(S3Op::Object(_, _, ObjectOp::GetTagging))
        ));
        assert!(matches!(
            route(&Method::GET, &tg, Some("versionId=null")),
            Ok(S3Op::Object(_, _, ObjectOp::Get { range: None }))
        ));
        assert_eq!(
            route(&Method::GET, &tg, Some("versionId=3"))
                .unwrap_err()
                .code,
            "InvalidArgument"
        );
        assert!(matches!(
            route(&Method::GET, &tg, Some("acl")),
            Ok(S3Op::Unmodelled { key: Some(_), ref what, .. }) if what == "The object sub-resource ?acl with GET"
        ));
        assert!(matches!(
            route(&Method::PUT, &tg, Some("retention")),
            Ok(S3Op::Unmodelled { key: Some(_), .. })
        ));
        assert!(matches!(
            route(&Method::PUT, &tg, Some("partNumber=2&uploadId=abc")),
            Ok(S3Op::Object(
                _,
                _,
                ObjectOp::UploadPart { part_number: 2, .. }
            ))
        ));
        assert_eq!(
            route(&Method::PUT, &tg, Some("partNumber=0&uploadId=abc"))
                .unwrap_err()
                .code,
            "InvalidArgument"
        );
        assert!(matches!(
            route(&Method::POST, &tg, Some("uploads")),
            Ok(S3Op::Object(_, _, ObjectOp::CreateMultipartUpload))
        ));
        assert_eq!(
            route(&Method::POST, &tg, None).unwrap_err().code,
            "MethodNotAllowed"
        );
        let b = t("localhost", "/bucket");
        assert!(matches!(
            route(&Method::GET, &b, Some("list-type=2&prefix=a")),
            Ok(S3Op::Bucket(_, BucketOp::ListObjectsV2))
        ));
        assert!(matches!(
            route(&Method::GET, &b, None),
            Ok(S3Op::Bucket(_, BucketOp::ListObjectsV1))
        ));
        assert!(matches!(
            route(&Method::GET, &b, Some("location")),
            Ok(S3Op::Bucket(_, BucketOp::GetLocation))
        ));
        assert!(matches!(
            route(&Method::POST, &b, Some("delete")),
            Ok(S3Op::Bucket(_, BucketOp::DeleteObjects))
        ));
        assert!(matches!(
            route(&Method::PUT, &b, Some("cors")),
            Ok(S3Op::Bucket(_, BucketOp::PutCors))
        ));
        assert!(matches!(
            route(&Method::PUT, &b, Some("policy")),
            Ok(S3Op::Unmodelled { key: None, .. })
        ));
        assert_eq!(
            route(&Method::GET, &t("localhost", "/Bad_Bucket"), None)
                .unwrap_err()
                .code,
            "InvalidBucketName"
        );
    }
}
