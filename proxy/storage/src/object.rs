//! The object model every backend speaks: what is stored beside the bytes, what a listing asks
//! for and returns, and byte ranges.

use std::collections::BTreeMap;
use std::pin::Pin;

use bytes::Bytes;
use futures_util::Stream;
use serde::{Deserialize, Serialize};

use crate::{ByteRange, ObjectKey, Preconditions, ReadRange, StorageError};

/// Sluice's own metadata about an object (for example, how its body is encrypted): stored with
/// it, read back by the layer that wrote it, never shown to clients and kept apart from their
/// `x-amz-meta-*`. Names are lowercase ASCII.
pub type SystemMeta = BTreeMap<String, String>;

/// An SSE-C key a client sent (`x-amz-server-side-encryption-customer-key`, checked against
/// its MD5 by the S3 layer): it opens the object's data key and is never stored or printed.
#[derive(Clone, PartialEq, Eq)]
pub struct CustomerKey {
    key: [u8; 32],
    /// The key's MD5, base64, as the client sent it (echoed in responses).
    md5: String,
}

impl CustomerKey {
    pub fn new(key: [u8; 32], md5: String) -> Self {
        Self { key, md5 }
    }

    pub fn bytes(&self) -> &[u8; 32] {
        &self.key
    }

    pub fn md5(&self) -> &str {
        &self.md5
    }
}

impl Drop for CustomerKey {
    fn drop(&mut self) {
        // Not left behind in freed memory.
        zeroize::Zeroize::zeroize(&mut self.key);
    }
}

impl std::fmt::Debug for CustomerKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "CustomerKey(md5 {})", self.md5)
    }
}

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

/// A verified checksum that only becomes known when the body ends (an aws-chunked trailer):
/// the body adapter fills it in before ending its stream cleanly, storage reads it at commit.
pub type LateChecksum = std::sync::Arc<std::sync::Mutex<Option<(String, String)>>>;

/// See [`PutObject::late_meta`].
pub type LateMeta = std::sync::Arc<std::sync::Mutex<SystemMeta>>;

/// A precondition on the key's current state, checked inside the commit transaction, so two
/// concurrent conditional writers cannot both succeed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum PutCondition {
    #[default]
    None,
    /// `If-None-Match: *`: only if the key does not exist.
    IfNoneMatch,
    /// `If-Match: "etag"`: only if the key exists with this ETag.
    IfMatch(String),
}

/// What a PUT asks to store beside the bytes.
#[derive(Debug, Clone, Default)]
pub struct PutObject {
    pub headers: StoredHeaders,
    pub tags: BTreeMap<String, String>,
    pub condition: PutCondition,
    pub late_checksum: Option<LateChecksum>,
    /// The size the client declared; the stored size must match it exactly.
    pub expected_size: Option<u64>,
    /// A verified `x-amz-checksum-*` (algorithm header name, base64 value) to keep and return.
    pub checksum: Option<(String, String)>,
    /// The client's `Content-MD5`; the body must hash to it or nothing is stored.
    pub content_md5: Option<[u8; 16]>,
    /// The body's SHA-256 when known before it arrives: the client signed it, and the body
    /// adapter fails the stream at its end unless the bytes match. An upstream store signs
    /// its own request with it. A layer that transforms bodies must clear it.
    pub sha256: Option<[u8; 32]>,
    /// The ETag to record instead of the MD5 of the bytes stored: a layer that transforms
    /// bodies computes it on what the client sent (and checks `content_md5` itself).
    pub etag: Option<String>,
    /// System metadata known only once the body has ended (an encrypting layer's plaintext
    /// ETag): the layer fills it in before ending its stream cleanly; a store that records
    /// metadata after the body (the local backend) adds it to `system_meta` at commit. An
    /// upstream sends metadata before the body and keeps none of it.
    pub late_meta: Option<LateMeta>,
    /// The client asked for the object to be encrypted (`x-amz-server-side-encryption:
    /// AES256`): only a store whose [`encryption`](crate::Backend::encryption) is `Some` is
    /// given this.
    pub encrypt: bool,
    /// The client's SSE-C key: the object is encrypted under it (given only to a store whose
    /// [`encryption`](crate::Backend::encryption) is `Some`).
    pub customer_key: Option<CustomerKey>,
    pub system_meta: SystemMeta,
}

/// An object's record.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
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
    #[serde(skip_serializing_if = "BTreeMap::is_empty", default)]
    pub tags: BTreeMap<String, String>,
    /// How many tags the object has, when a store reports the count without the tags (an
    /// upstream's `x-amz-tagging-count`); else `tags` says.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub tag_count: Option<u32>,
    /// Number of parts, for objects made by CompleteMultipartUpload.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub parts: Option<u32>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty", default)]
    pub system_meta: SystemMeta,
}

/// A GET or HEAD: which bytes, under which conditions.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReadRequest {
    pub range: Option<ReadRange>,
    pub conditions: Preconditions,
    /// The SSE-C key the object was written with, if it was.
    pub customer_key: Option<CustomerKey>,
}

/// An object opened for reading: its record, the bytes the body holds, and the body.
pub struct ObjectRead {
    pub meta: ObjectMeta,
    /// The range the body holds, resolved; `None` for the whole object.
    pub range: Option<ByteRange>,
    /// Empty for a HEAD.
    pub body: ObjectBody,
}

impl std::fmt::Debug for ObjectRead {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ObjectRead")
            .field("meta", &self.meta)
            .field("range", &self.range)
            .finish_non_exhaustive()
    }
}

/// What CreateMultipartUpload keeps for the object the upload will make.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NewUpload {
    pub headers: StoredHeaders,
    pub tags: BTreeMap<String, String>,
    pub system_meta: SystemMeta,
    /// As [`PutObject::encrypt`].
    pub encrypt: bool,
    /// As [`PutObject::customer_key`]: every part must then carry it too.
    pub customer_key: Option<CustomerKey>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BucketInfo {
    pub name: String,
    pub created_ms: i64,
}

/// An inclusive byte range already resolved against the object size.
/// A streamed object body. Errors mid-stream mean the reader must abort the response.
pub type ObjectBody = Pin<Box<dyn Stream<Item = Result<Bytes, StorageError>> + Send>>;

/// A ListObjects request, already validated. A continuation token, when given, says where to
/// resume and wins over `start_after` (exclusive), which it always follows in a paginated listing.
#[derive(Debug, Clone, Default)]
pub struct ListRequest {
    pub prefix: String,
    pub delimiter: Option<String>,
    pub start_after: Option<String>,
    /// A [`ListPage::next_token`] this store issued, as the client handed it back.
    pub continuation: Option<String>,
    pub max_keys: usize,
}

#[derive(Debug, Clone, Default)]
pub struct ListPage {
    pub objects: Vec<(ObjectKey, ObjectMeta)>,
    pub common_prefixes: Vec<String>,
    /// When set, there is more: an opaque token for the next page. Only the store that issued
    /// it can read it; clients and layers above pass it back unchanged.
    pub next_token: Option<String>,
}

/// Wraps `text` (a resume key, another store's token) as a continuation token: opaque to
/// clients, URL-safe, checked to decode by [`token_text`].
pub(crate) fn opaque_token(text: &str) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(text)
}

/// What [`opaque_token`] wrapped; `InvalidToken` for anything it did not make.
pub(crate) fn token_text(token: &str) -> Result<String, StorageError> {
    use base64::Engine as _;
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(token)
        .ok()
        .and_then(|b| String::from_utf8(b).ok())
        .ok_or(StorageError::InvalidToken)
}

impl ListPage {
    /// The last key or common prefix listed (ListObjects v1's `NextMarker`).
    pub fn last_entry(&self) -> Option<&str> {
        let key = self.objects.last().map(|(k, _)| k.as_str());
        let prefix = self.common_prefixes.last().map(String::as_str);
        key.max(prefix)
    }
}

/// A multipart upload in progress.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UploadInfo {
    pub key: ObjectKey,
    pub upload_id: String,
    pub initiated_ms: i64,
}

/// A part of a multipart upload.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartInfo {
    pub part_number: u32,
    pub size: u64,
    /// Hex MD5 of the part.
    pub etag: String,
    pub last_modified_ms: i64,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub checksum: Option<(String, String)>,
}

/// One entry of a CompleteMultipartUpload request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CompletePart {
    pub part_number: u32,
    /// As the client sent it, quotes allowed.
    pub etag: String,
}

/// A ListMultipartUploads request; markers are exclusive.
#[derive(Debug, Clone, Default)]
pub struct UploadListRequest {
    pub prefix: String,
    pub delimiter: Option<String>,
    pub key_marker: Option<String>,
    pub upload_id_marker: Option<String>,
    pub max_uploads: usize,
}

#[derive(Debug, Clone, Default)]
pub struct UploadListPage {
    pub uploads: Vec<UploadInfo>,
    pub common_prefixes: Vec<String>,
    /// When truncated: the key and upload id markers to resume from.
    pub next: Option<(String, String)>,
}
