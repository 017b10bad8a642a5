//! Addressing and routing: turns method + host + path + query into one closed [`S3Op`].
//!
//! Path-style (`/bucket/key`) and virtual-hosted-style (`bucket.<base domain>/key`) are both
//! accepted. Sub-resources Sluice does not implement answer `NotImplemented`, never a wrong
//! success: a query parameter is only ignored when S3 itself treats it as a plain parameter.

use http::Method;
use percent_encoding::percent_decode_str;
use sluice_storage::{BucketName, ObjectKey};

use super::S3Error;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum S3Op {
    ListBuckets,
    CreateBucket(BucketName),
    HeadBucket(BucketName),
    DeleteBucket(BucketName),
    GetBucketLocation(BucketName),
    ListObjectsV1(BucketName),
    ListObjectsV2(BucketName),
    PutObject(BucketName, ObjectKey),
    GetObject(BucketName, ObjectKey),
    HeadObject(BucketName, ObjectKey),
    DeleteObject(BucketName, ObjectKey),
}

impl S3Op {
    pub fn name(&self) -> &'static str {
        match self {
            Self::ListBuckets => "ListBuckets",
            Self::CreateBucket(_) => "CreateBucket",
            Self::HeadBucket(_) => "HeadBucket",
            Self::DeleteBucket(_) => "DeleteBucket",
            Self::GetBucketLocation(_) => "GetBucketLocation",
            Self::ListObjectsV1(_) => "ListObjects",
            Self::ListObjectsV2(_) => "ListObjectsV2",
            Self::PutObject(..) => "PutObject",
            Self::GetObject(..) => "GetObject",
            Self::HeadObject(..) => "HeadObject",
            Self::DeleteObject(..) => "DeleteObject",
        }
    }

    pub fn bucket(&self) -> Option<&BucketName> {
        match self {
            Self::ListBuckets => None,
            Self::CreateBucket(b)
            | Self::HeadBucket(b)
            | Self::DeleteBucket(b)
            | Self::GetBucketLocation(b)
            | Self::ListObjectsV1(b)
            | Self::ListObjectsV2(b)
            | Self::PutObject(b, _)
            | Self::GetObject(b, _)
            | Self::HeadObject(b, _)
            | Self::DeleteObject(b, _) => Some(b),
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

pub fn route(method: &Method, target: &Target, query: Option<&str>) -> Result<S3Op, S3Error> {
    let subresource = query_pairs(query)
        .map(|(k, _)| k)
        .find(|k| SUBRESOURCES.contains(&k.as_str()));
    let Some(bucket) = &target.bucket else {
        return match *method {
            Method::GET => Ok(S3Op::ListBuckets),
            _ => Err(S3Error::method_not_allowed()),
        };
    };
    let bucket = BucketName::parse(bucket)
        .map_err(|e| S3Error::from(sluice_storage::StorageError::from(e)))?;
    match &target.key {
        None => match (method.clone(), subresource.as_deref()) {
            (Method::GET, Some("location")) => Ok(S3Op::GetBucketLocation(bucket)),
            (_, Some(sub)) => Err(S3Error::not_implemented(&format!(
                "The bucket sub-resource ?{sub}"
            ))),
            (Method::GET, None) if query_get(query, "list-type").as_deref() == Some("2") => {
                Ok(S3Op::ListObjectsV2(bucket))
            }
            (Method::GET, None) => Ok(S3Op::ListObjectsV1(bucket)),
            (Method::PUT, None) => Ok(S3Op::CreateBucket(bucket)),
            (Method::HEAD, None) => Ok(S3Op::HeadBucket(bucket)),
            (Method::DELETE, None) => Ok(S3Op::DeleteBucket(bucket)),
            _ => Err(S3Error::method_not_allowed()),
        },
        Some(key) => {
            let key = ObjectKey::parse(key)
                .map_err(|e| S3Error::from(sluice_storage::StorageError::from(e)))?;
            if let Some(sub) = subresource {
                return Err(S3Error::not_implemented(&format!(
                    "The object sub-resource ?{sub}"
                )));
            }
            match *method {
                Method::GET => Ok(S3Op::GetObject(bucket, key)),
                Method::HEAD => Ok(S3Op::HeadObject(bucket, key)),
                Method::PUT => Ok(S3Op::PutObject(bucket, key)),
                Method::DELETE => Ok(S3Op::DeleteObject(bucket, key)),
                _ => Err(S3Error::method_not_allowed()),
            }
        }
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

    #[test]
    fn routes_and_subresources() {
        let tg = t("localhost", "/bucket/key");
        assert!(matches!(
            route(&Method::GET, &tg, Some("x-id=GetObject")),
            Ok(S3Op::GetObject(..))
        ));
        assert!(matches!(
            route(&Method::GET, &tg, Some("response-content-type=a")),
            Ok(S3Op::GetObject(..))
        ));
        let err = route(&Method::GET, &tg, Some("tagging")).unwrap_err();
        assert_eq!(err.code, "NotImplemented");
        let b = t("localhost", "/bucket");
        assert!(matches!(
            route(&Method::GET, &b, Some("list-type=2&prefix=a")),
            Ok(S3Op::ListObjectsV2(_))
        ));
        assert!(matches!(
            route(&Method::GET, &b, None),
            Ok(S3Op::ListObjectsV1(_))
        ));
        assert!(matches!(
            route(&Method::GET, &b, Some("location")),
            Ok(S3Op::GetBucketLocation(_))
        ));
        assert_eq!(
            route(&Method::POST, &b, Some("delete")).unwrap_err().code,
            "NotImplemented"
        );
        assert_eq!(
            route(&Method::GET, &t("localhost", "/Bad_Bucket"), None)
                .unwrap_err()
                .code,
            "InvalidBucketName"
        );
    }
}
