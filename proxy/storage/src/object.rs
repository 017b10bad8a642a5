//! The object model every backend speaks: what is stored beside the bytes, what a listing asks
//! for and returns, and byte ranges.

use std::collections::BTreeMap;
use std::pin::Pin;

use bytes::Bytes;
use futures_util::Stream;
use serde::{Deserialize, Serialize};

use crate::{ObjectKey, StorageError};

/// The standard headers S3 keeps with an object and returns on GET/HEAD.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredHeaders {
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub content_type: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub cache_control: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub content_disposition: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub content_encoding: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub content_language: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub expires: Option<String>,
    /// `x-amz-meta-*` without the prefix, names lowercased as S3 returns them.
    #[serde(skip_serializing_if = "BTreeMap::is_empty", default)]
    pub user_meta: BTreeMap<String, String>,
}

/// What a PUT asks to store beside the bytes.
#[derive(Debug, Clone, Default)]
pub struct PutObject {
    pub headers: StoredHeaders,
    /// The size the client declared; the stored size must match it exactly.
    pub expected_size: Option<u64>,
    /// A verified `x-amz-checksum-*` (algorithm header name, base64 value) to keep and return.
    pub checksum: Option<(String, String)>,
    /// The client's `Content-MD5`; the body must hash to it or nothing is stored.
    pub content_md5: Option<[u8; 16]>,
}

/// An object's record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ObjectMeta {
    pub size: u64,
    /// Hex MD5 of the body for single-part objects (quoted on the wire).
    pub etag: String,
    /// Milliseconds since the Unix epoch.
    pub last_modified_ms: i64,
    #[serde(flatten)]
    pub headers: StoredHeaders,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub checksum: Option<(String, String)>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BucketInfo {
    pub name: String,
    pub created_ms: i64,
}

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

/// A streamed object body. Errors mid-stream mean the reader must abort the response.
pub type ObjectBody = Pin<Box<dyn Stream<Item = Result<Bytes, StorageError>> + Send>>;

/// A ListObjects request, already validated. `start_after` is exclusive and is the later of the
/// client's `start-after` and its continuation token.
#[derive(Debug, Clone, Default)]
pub struct ListRequest {
    pub prefix: String,
    pub delimiter: Option<String>,
    pub start_after: Option<String>,
    pub max_keys: usize,
}

#[derive(Debug, Clone, Default)]
pub struct ListPage {
    pub objects: Vec<(ObjectKey, ObjectMeta)>,
    pub common_prefixes: Vec<String>,
    /// When set, there is more: resume strictly after this key or common prefix.
    pub next_after: Option<String>,
}
