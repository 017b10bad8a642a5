//! The ordered index of buckets and object records, in one redb database.
//!
//! Keys (DO NOT CHANGE: data on disk depends on them):
//! - `BUCKETS`: `tenant \0 bucket` → JSON [`BucketRecord`]
//! - `OBJECTS`: `tenant \0 bucket \0 key` → JSON [`Record`]
//! - `UPLOADS`: `tenant \0 bucket \0 key \0 upload id` → JSON [`UploadRecord`]
//! - `PARTS`: `upload id \0 part number (u32, big-endian)` → JSON [`PartRecord`]
//! - `BLOBS`: blob id → empty: every blob a committed record (object or part) refers to. It
//!   changes in the same transaction as the records, so after a crash any file in `blobs/`
//!   missing from it is garbage (written but never committed, or released but not yet
//!   removed), and [`Index::unreferenced`] lets the startup sweep find it without a scan.
//! - `META`: `schema` → the index layout version.
//!
//! Upload ids are 32 hex digits that start with the creation time, so a key's uploads sort in
//! the order they were created, as ListMultipartUploads returns them.
//!
//! Tenant and bucket names cannot contain NUL and object keys cannot either, so these encodings
//! are unambiguous and a bucket's objects form one contiguous, sorted range. Listing is a range
//! scan that starts at the resume point and stops after one page: its cost depends on the page
//! size, never on how many keys the bucket holds. Under a delimiter, each common prefix is
//! skipped with one seek past every key that shares it.

use std::path::Path;

use redb::{Database, Durability, ReadableTable, TableDefinition};
use serde::{Deserialize, Serialize};

use std::collections::BTreeMap;

use crate::{
    BucketInfo, BucketName, ListPage, ListRequest, ObjectKey, ObjectMeta, PutCondition,
    StorageError, TenantId,
};

const BUCKETS: TableDefinition<&[u8], &[u8]> = TableDefinition::new("buckets");
const OBJECTS: TableDefinition<&[u8], &[u8]> = TableDefinition::new("objects");
const UPLOADS: TableDefinition<&[u8], &[u8]> = TableDefinition::new("uploads");
const PARTS: TableDefinition<&[u8], &[u8]> = TableDefinition::new("parts");
const BLOBS: TableDefinition<&str, ()> = TableDefinition::new("blobs");
const META: TableDefinition<&str, u64> = TableDefinition::new("meta");
/// Memory for cached index pages: enough for the hot part of a large bucket's B-tree.
const INDEX_CACHE_BYTES: usize = 32 * 1024 * 1024;
/// DO NOT CHANGE: bumped only with a migration in `Index::open`.
const SCHEMA: u64 = 2;
const RECORD_VERSION: u8 = 1;
/// Larger than any byte of valid UTF-8, so `prefix ++ [0xFF]` sorts after every key with `prefix`.
const AFTER_ALL: u8 = 0xFF;

#[derive(Debug)]
pub(super) struct Index {
    db: Database,
}

#[derive(Debug, Serialize, Deserialize)]
struct BucketRecord {
    v: u8,
    created_ms: i64,
    /// Bucket settings by name (e.g. `cors`), each an opaque document the S3 layer owns.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    config: BTreeMap<String, String>,
}

/// An object's index record: which blob(s) hold its bytes, and its metadata.
#[derive(Debug, Serialize, Deserialize)]
pub(super) struct Record {
    v: u8,
    /// The body of a single-part object.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    blob: Option<String>,
    /// The bodies of a multipart object's parts, in order.
    #[serde(default, skip_serializing_if = "Vec::is_empty", rename = "part_blobs")]
    parts: Vec<PartRef>,
    /// The single blob ends with a block checksum table (see `integrity`).
    #[serde(default)]
    checked: bool,
    /// The multipart upload that made this object, so that a retried CompleteMultipartUpload
    /// (a client that timed out waiting for the first) gets the same answer, as from S3.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    upload: Option<String>,
    #[serde(flatten)]
    pub(super) meta: ObjectMeta,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct PartRef {
    blob: String,
    size: u64,
    #[serde(default)]
    checked: bool,
}

impl Record {
    pub(super) fn single(blob: String, meta: ObjectMeta) -> Self {
        Self {
            v: RECORD_VERSION,
            blob: Some(blob),
            parts: Vec::new(),
            checked: true,
            upload: None,
            meta,
        }
    }

    /// Every blob this record owns.
    pub(super) fn blob_ids(&self) -> impl Iterator<Item = &str> {
        self.blob
            .as_deref()
            .into_iter()
            .chain(self.parts.iter().map(|p| p.blob.as_str()))
    }

    /// (blob id, data size, has a checksum table) of each segment of the body, in order.
    pub(super) fn segments(&self) -> impl Iterator<Item = (&str, u64, bool)> {
        let single = self
            .blob
            .as_deref()
            .map(|b| (b, self.meta.size, self.checked));
        single.into_iter().chain(
            self.parts
                .iter()
                .map(|p| (p.blob.as_str(), p.size, p.checked)),
        )
    }
}

/// A multipart upload in progress.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(super) struct UploadRecord {
    v: u8,
    pub(super) initiated_ms: i64,
    pub(super) headers: crate::StoredHeaders,
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub(super) tags: std::collections::BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub(super) system_meta: crate::SystemMeta,
}

impl UploadRecord {
    pub(super) fn new(upload: crate::NewUpload) -> Self {
        Self {
            v: RECORD_VERSION,
            initiated_ms: super::now_ms(),
            headers: upload.headers,
            tags: upload.tags,
            system_meta: upload.system_meta,
        }
    }
}

/// A stored part: its blob and what ListParts reports.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(super) struct PartRecord {
    pub(super) blob: String,
    /// The blob ends with a block checksum table (see `integrity`).
    #[serde(default)]
    pub(super) checked: bool,
    #[serde(flatten)]
    pub(super) info: crate::PartInfo,
}

fn bucket_key(tenant: &TenantId, bucket: &BucketName) -> Vec<u8> {
    [
        tenant.as_str().as_bytes(),
        b"\0",
        bucket.as_str().as_bytes(),
    ]
    .concat()
}

/// The prefix every object key of a bucket starts with in `OBJECTS`.
fn objects_prefix(tenant: &TenantId, bucket: &BucketName) -> Vec<u8> {
    let mut key = bucket_key(tenant, bucket);
    key.push(0);
    key
}

fn object_key(tenant: &TenantId, bucket: &BucketName, key: &ObjectKey) -> Vec<u8> {
    let mut full = objects_prefix(tenant, bucket);
    full.extend_from_slice(key.as_str().as_bytes());
    full
}

fn decode<T: for<'de> Deserialize<'de>>(bytes: &[u8]) -> Result<T, StorageError> {
    serde_json::from_slice(bytes).map_err(StorageError::index)
}

fn encode<T: Serialize>(value: &T) -> Vec<u8> {
    serde_json::to_vec(value).expect("index records always serialise")
}

impl Index {
    pub(super) fn open(path: &Path) -> Result<Self, StorageError> {
        // redb caches index pages in memory (1 GiB by default); bound it.
        let db = Database::builder()
            .set_cache_size(INDEX_CACHE_BYTES)
            .create(path)
            .map_err(StorageError::index)?;
        let txn = db.begin_write().map_err(StorageError::index)?;
        txn.open_table(BUCKETS).map_err(StorageError::index)?;
        txn.open_table(OBJECTS).map_err(StorageError::index)?;
        txn.open_table(UPLOADS).map_err(StorageError::index)?;
        txn.open_table(PARTS).map_err(StorageError::index)?;
        txn.open_table(BLOBS).map_err(StorageError::index)?;
        let mut meta = txn.open_table(META).map_err(StorageError::index)?;
        let schema = meta
            .get("schema")
            .map_err(StorageError::index)?
            .map(|v| v.value());
        if let Some(found) = schema.filter(|s| *s > SCHEMA) {
            return Err(StorageError::Index(format!(
                "the data directory was written by a newer Sluice (index schema {found}, this build knows {SCHEMA})"
            )));
        }
        if schema.is_none() {
            // Schema 1 had no BLOBS table: rebuild it from the records (once).
            rebuild_blob_references(&txn)?;
            meta.insert("schema", SCHEMA).map_err(StorageError::index)?;
        }
        drop(meta);
        txn.commit().map_err(StorageError::index)?;
        Ok(Self { db })
    }

    /// Runs `work` in a write transaction committed durably (fsync) before returning.
    fn write<T>(
        &self,
        work: impl FnOnce(&redb::WriteTransaction) -> Result<T, StorageError>,
    ) -> Result<T, StorageError> {
        let mut txn = self.db.begin_write().map_err(StorageError::index)?;
        txn.set_durability(Durability::Immediate);
        let out = work(&txn)?;
        txn.commit().map_err(StorageError::index)?;
        Ok(out)
    }

    fn read(&self) -> Result<redb::ReadTransaction, StorageError> {
        self.db.begin_read().map_err(StorageError::index)
    }

    pub(super) fn list_buckets(&self, tenant: &TenantId) -> Result<Vec<BucketInfo>, StorageError> {
        let txn = self.read()?;
        let table = txn.open_table(BUCKETS).map_err(StorageError::index)?;
        let mut prefix = tenant.as_str().as_bytes().to_vec();
        prefix.push(0);
        let mut out = Vec::new();
        for entry in table
            .range(prefix.as_slice()..)
            .map_err(StorageError::index)?
        {
            let (key, value) = entry.map_err(StorageError::index)?;
            let Some(name) = key.value().strip_prefix(prefix.as_slice()) else {
                break;
            };
            let record: BucketRecord = decode(value.value())?;
            out.push(BucketInfo {
                name: String::from_utf8_lossy(name).into_owned(),
                created_ms: record.created_ms,
            });
        }
        Ok(out)
    }

    pub(super) fn create_bucket(
        &self,
        tenant: &TenantId,
        bucket: &BucketName,
    ) -> Result<(), StorageError> {
        let key = bucket_key(tenant, bucket);
        self.write(|txn| {
            let mut table = txn.open_table(BUCKETS).map_err(StorageError::index)?;
            if table
                .get(key.as_slice())
                .map_err(StorageError::index)?
                .is_some()
            {
                return Err(StorageError::BucketAlreadyOwnedByYou);
            }
            let record = encode(&BucketRecord {
                v: RECORD_VERSION,
                created_ms: super::now_ms(),
                config: BTreeMap::new(),
            });
            table
                .insert(key.as_slice(), record.as_slice())
                .map_err(StorageError::index)?;
            Ok(())
        })
    }

    /// A bucket setting (NoSuchBucket if the bucket does not exist).
    pub(super) fn bucket_config(
        &self,
        tenant: &TenantId,
        bucket: &BucketName,
        name: &str,
    ) -> Result<Option<String>, StorageError> {
        let txn = self.read()?;
        let table = txn.open_table(BUCKETS).map_err(StorageError::index)?;
        let key = bucket_key(tenant, bucket);
        let record: BucketRecord = match table.get(key.as_slice()).map_err(StorageError::index)? {
            Some(v) => decode(v.value())?,
            None => return Err(StorageError::NoSuchBucket),
        };
        Ok(record.config.get(name).cloned())
    }

    /// Sets (or with `None`, removes) a bucket setting.
    pub(super) fn set_bucket_config(
        &self,
        tenant: &TenantId,
        bucket: &BucketName,
        name: &str,
        value: Option<String>,
    ) -> Result<(), StorageError> {
        let key = bucket_key(tenant, bucket);
        self.write(|txn| {
            let mut table = txn.open_table(BUCKETS).map_err(StorageError::index)?;
            let mut record: BucketRecord =
                match table.get(key.as_slice()).map_err(StorageError::index)? {
                    Some(v) => decode(v.value())?,
                    None => return Err(StorageError::NoSuchBucket),
                };
            match value {
                Some(v) => record.config.insert(name.to_owned(), v),
                None => record.config.remove(name),
            };
            table
                .insert(key.as_slice(), encode(&record).as_slice())
                .map_err(StorageError::index)?;
            Ok(())
        })
    }

    pub(super) fn require_bucket(
        &self,
        tenant: &TenantId,
        bucket: &BucketName,
    ) -> Result<(), StorageError> {
        bucket_exists_in(&self.read()?, tenant, bucket)
    }

    /// Deletes an empty bucket, aborting its unfinished uploads in the same transaction;
    /// returns their parts' blobs for removal.
    pub(super) fn delete_bucket(
        &self,
        tenant: &TenantId,
        bucket: &BucketName,
    ) -> Result<Vec<String>, StorageError> {
        let key = bucket_key(tenant, bucket);
        let prefix = objects_prefix(tenant, bucket);
        self.write(|txn| {
            let mut buckets = txn.open_table(BUCKETS).map_err(StorageError::index)?;
            if buckets
                .remove(key.as_slice())
                .map_err(StorageError::index)?
                .is_none()
            {
                return Err(StorageError::NoSuchBucket);
            }
            let objects = txn.open_table(OBJECTS).map_err(StorageError::index)?;
            let mut range = objects
                .range(prefix.as_slice()..)
                .map_err(StorageError::index)?;
            if let Some(entry) = range.next() {
                let (k, _) = entry.map_err(StorageError::index)?;
                if k.value().starts_with(&prefix) {
                    return Err(StorageError::BucketNotEmpty);
                }
            }
            drop(range);
            drop(objects);
            let mut uploads = Vec::new();
            {
                let table = txn.open_table(UPLOADS).map_err(StorageError::index)?;
                for entry in table
                    .range(prefix.as_slice()..)
                    .map_err(StorageError::index)?
                {
                    let (k, _) = entry.map_err(StorageError::index)?;
                    let k = k.value();
                    if !k.starts_with(&prefix) {
                        break;
                    }
                    let id_start = k.iter().rposition(|b| *b == 0).map_or(0, |i| i + 1);
                    uploads.push((
                        k.to_vec(),
                        String::from_utf8_lossy(&k[id_start..]).into_owned(),
                    ));
                }
            }
            let mut blobs = Vec::new();
            let mut table = txn.open_table(UPLOADS).map_err(StorageError::index)?;
            for (k, id) in uploads {
                table.remove(k.as_slice()).map_err(StorageError::index)?;
                blobs.extend(remove_parts(txn, &id)?);
            }
            Ok(blobs)
        })
    }

    /// Replaces the record of `key` in one durable transaction; returns the record it replaced.
    pub(super) fn put_object(
        &self,
        tenant: &TenantId,
        bucket: &BucketName,
        key: &ObjectKey,
        record: &Record,
        condition: &PutCondition,
    ) -> Result<Option<Record>, StorageError> {
        self.write(|txn| put_in(txn, tenant, bucket, key, record, condition))
    }

    pub(super) fn set_tags(
        &self,
        tenant: &TenantId,
        bucket: &BucketName,
        key: &ObjectKey,
        tags: BTreeMap<String, String>,
    ) -> Result<(), StorageError> {
        let full = object_key(tenant, bucket, key);
        self.write(|txn| {
            bucket_exists_in(txn, tenant, bucket)?;
            let mut objects = txn.open_table(OBJECTS).map_err(StorageError::index)?;
            let mut record: Record =
                match objects.get(full.as_slice()).map_err(StorageError::index)? {
                    Some(v) => decode(v.value())?,
                    None => return Err(StorageError::NoSuchKey),
                };
            record.meta.tags = tags;
            objects
                .insert(full.as_slice(), encode(&record).as_slice())
                .map_err(StorageError::index)?;
            Ok(())
        })
    }

    /// One object's record. Cheap enough for the runtime thread, where GET and HEAD call it:
    /// a point lookup whose pages are normally in redb's cache (or the kernel's), and redb
    /// readers never wait for a writer's fsync (commits flush outside the state lock).
    pub(super) fn get_object(
        &self,
        tenant: &TenantId,
        bucket: &BucketName,
        key: &ObjectKey,
    ) -> Result<Record, StorageError> {
        let txn = self.read()?;
        let full = object_key(tenant, bucket, key);
        let objects = txn.open_table(OBJECTS).map_err(StorageError::index)?;
        if let Some(value) = objects.get(full.as_slice()).map_err(StorageError::index)? {
            return decode(value.value());
        }
        bucket_exists_in(&txn, tenant, bucket)?;
        Err(StorageError::NoSuchKey)
    }

    pub(super) fn delete_object(
        &self,
        tenant: &TenantId,
        bucket: &BucketName,
        key: &ObjectKey,
    ) -> Result<Option<Record>, StorageError> {
        let full = object_key(tenant, bucket, key);
        self.write(|txn| {
            bucket_exists_in(txn, tenant, bucket)?;
            let mut objects = txn.open_table(OBJECTS).map_err(StorageError::index)?;
            let old: Option<Record> = objects
                .remove(full.as_slice())
                .map_err(StorageError::index)?
                .map(|v| decode(v.value()))
                .transpose()?;
            drop(objects);
            if let Some(old) = &old {
                unreference(txn, old.blob_ids())?;
            }
            Ok(old)
        })
    }

    /// The ids among `candidates` that no committed record refers to (the startup sweep).
    pub(super) fn unreferenced(
        &self,
        candidates: Vec<String>,
    ) -> Result<Vec<String>, StorageError> {
        let txn = self.read()?;
        let blobs = txn.open_table(BLOBS).map_err(StorageError::index)?;
        let mut out = Vec::new();
        for id in candidates {
            if blobs
                .get(id.as_str())
                .map_err(StorageError::index)?
                .is_none()
            {
                out.push(id);
            }
        }
        Ok(out)
    }

    pub(super) fn list_objects(
        &self,
        tenant: &TenantId,
        bucket: &BucketName,
        req: &ListRequest,
    ) -> Result<ListPage, StorageError> {
        let txn = self.read()?;
        bucket_exists_in(&txn, tenant, bucket)?;
        let objects = txn.open_table(OBJECTS).map_err(StorageError::index)?;
        let base = objects_prefix(tenant, bucket);
        let full_prefix = [base.as_slice(), req.prefix.as_bytes()].concat();
        let delimiter = req.delimiter.as_deref().filter(|d| !d.is_empty());

        // The first index key to look at: the prefix, or just past the resume point.
        let mut cursor = full_prefix.clone();
        if let Some(after) = &req.start_after {
            let resume = resume_point(&base, after, &req.prefix, delimiter);
            if resume > cursor {
                cursor = resume;
            }
        }

        let mut page = ListPage::default();
        let more = scan_page(
            &objects,
            Scan {
                base: &base,
                full_prefix: &full_prefix,
                prefix: &req.prefix,
                delimiter,
                cursor,
                max: req.max_keys,
            },
            utf8,
            |rest, value| {
                let record: Record = decode(value)?;
                page.objects
                    .push((ObjectKey::parse(utf8(rest)?)?, record.meta));
                Ok(())
            },
            &mut page.common_prefixes,
        )?;
        if more {
            // The page is truncated after the last key or common prefix it returned.
            page.next_token = last_returned(&page);
        }
        Ok(page)
    }
}

/// One page of a delimiter-aware scan of `table` from `cursor`. Each entry under
/// `full_prefix` is either handed to `item` (with its key bytes after `base`) or, when its name
/// (`name_of`) past `prefix` contains `delimiter`, folded into one common prefix, and the scan
/// seeks past every key that shares it: a directory of a million keys costs one seek. Takes at
/// most `max` entries; returns whether more follow.
struct Scan<'a> {
    base: &'a [u8],
    full_prefix: &'a [u8],
    prefix: &'a str,
    delimiter: Option<&'a str>,
    cursor: Vec<u8>,
    max: usize,
}

fn scan_page(
    table: &impl ReadableTable<&'static [u8], &'static [u8]>,
    scan: Scan<'_>,
    name_of: impl for<'k> Fn(&'k [u8]) -> Result<&'k str, StorageError>,
    mut item: impl FnMut(&[u8], &[u8]) -> Result<(), StorageError>,
    common_prefixes: &mut Vec<String>,
) -> Result<bool, StorageError> {
    let Scan {
        base,
        full_prefix,
        prefix,
        delimiter,
        mut cursor,
        max,
    } = scan;
    let mut taken = 0usize;
    'scan: loop {
        let mut range = table
            .range(cursor.as_slice()..)
            .map_err(StorageError::index)?;
        loop {
            let Some(entry) = range.next() else {
                return Ok(false);
            };
            let (k, v) = entry.map_err(StorageError::index)?;
            let full = k.value();
            if !full.starts_with(full_prefix) {
                return Ok(false);
            }
            if taken == max {
                return Ok(true);
            }
            let rest = &full[base.len()..];
            let name = name_of(rest)?;
            if let Some(common) = common_prefix_of(name, prefix, delimiter) {
                let common = common.to_owned();
                cursor = [base, common.as_bytes(), &[AFTER_ALL]].concat();
                common_prefixes.push(common);
                taken += 1;
                continue 'scan;
            }
            item(rest, v.value())?;
            taken += 1;
        }
    }
}

fn utf8(bytes: &[u8]) -> Result<&str, StorageError> {
    std::str::from_utf8(bytes).map_err(StorageError::index)
}

/// An `UPLOADS` key after the bucket prefix: `key \0 upload id`.
fn split_upload_key(rest: &[u8]) -> Result<(&str, &str), StorageError> {
    let split = rest
        .iter()
        .rposition(|b| *b == 0)
        .ok_or_else(|| StorageError::Index("malformed upload key".into()))?;
    Ok((utf8(&rest[..split])?, utf8(&rest[split + 1..])?))
}

/// Where to resume after `after`: just past it, or, when it lies inside a common prefix of this
/// listing (it is the prefix, `a/`, or sorts within it, `a/b/` or `a/b/c` under delimiter `/`),
/// past every key under that common prefix. S3 filters out a common prefix that is not
/// lexicographically greater than the start-after (v2) or marker (v1), and the one `after` lies
/// in is not; every other entry after `after` is listed. One seek either way.
fn resume_point(base: &[u8], after: &str, prefix: &str, delimiter: Option<&str>) -> Vec<u8> {
    match common_prefix_of(after, prefix, delimiter) {
        Some(common) => [base, common.as_bytes(), &[AFTER_ALL]].concat(),
        // A key is "after" itself once any byte is appended; 0x00 is the smallest such key.
        None => [base, after.as_bytes(), &[0]].concat(),
    }
}

/// The common prefix `name` falls in under `prefix` and `delimiter`: `name` up to the first
/// delimiter after the prefix, if it has one.
fn common_prefix_of<'a>(name: &'a str, prefix: &str, delimiter: Option<&str>) -> Option<&'a str> {
    let d = delimiter?;
    let pos = name.strip_prefix(prefix)?.find(d)?;
    Some(&name[..prefix.len() + pos + d.len()])
}

/// The last key or common prefix in a page, whichever sorts later.
fn last_returned(page: &ListPage) -> Option<String> {
    let key = page.objects.last().map(|(k, _)| k.as_str());
    let prefix = page.common_prefixes.last().map(String::as_str);
    key.max(prefix).map(str::to_owned)
}

/// Replaces the record of `key` inside `txn` if `condition` holds; returns the replaced record.
fn put_in(
    txn: &redb::WriteTransaction,
    tenant: &TenantId,
    bucket: &BucketName,
    key: &ObjectKey,
    record: &Record,
    condition: &PutCondition,
) -> Result<Option<Record>, StorageError> {
    // Checked inside the transaction so a concurrent DeleteBucket cannot orphan the object.
    bucket_exists_in(txn, tenant, bucket)?;
    let full = object_key(tenant, bucket, key);
    let mut objects = txn.open_table(OBJECTS).map_err(StorageError::index)?;
    if *condition != PutCondition::None {
        let current: Option<Record> = objects
            .get(full.as_slice())
            .map_err(StorageError::index)?
            .map(|v| decode(v.value()))
            .transpose()?;
        let holds = match (condition, &current) {
            (PutCondition::IfNoneMatch, None) => true,
            (PutCondition::IfMatch(etag), Some(r)) => {
                etag.trim_matches('"') == r.meta.etag || etag == "*"
            }
            _ => false,
        };
        if !holds {
            return Err(
                if matches!(condition, PutCondition::IfMatch(_)) && current.is_none() {
                    StorageError::NoSuchKey
                } else {
                    StorageError::PreconditionFailed {
                        condition: Some(match condition {
                            PutCondition::IfMatch(_) => "If-Match",
                            _ => "If-None-Match",
                        }),
                    }
                },
            );
        }
    }
    let old: Option<Record> = objects
        .insert(full.as_slice(), encode(record).as_slice())
        .map_err(StorageError::index)?
        .map(|v| decode(v.value()))
        .transpose()?;
    drop(objects);
    reference(txn, record.blob_ids())?;
    if let Some(old) = &old {
        unreference(txn, old.blob_ids())?;
    }
    Ok(old)
}

fn reference<'a>(
    txn: &redb::WriteTransaction,
    ids: impl Iterator<Item = &'a str>,
) -> Result<(), StorageError> {
    let mut blobs = txn.open_table(BLOBS).map_err(StorageError::index)?;
    for id in ids {
        blobs.insert(id, ()).map_err(StorageError::index)?;
    }
    Ok(())
}

fn unreference<'a>(
    txn: &redb::WriteTransaction,
    ids: impl Iterator<Item = &'a str>,
) -> Result<(), StorageError> {
    let mut blobs = txn.open_table(BLOBS).map_err(StorageError::index)?;
    for id in ids {
        blobs.remove(id).map_err(StorageError::index)?;
    }
    Ok(())
}

/// Fills `BLOBS` from every object and part record (migration from schema 1), streaming: the
/// record tables are read while `BLOBS` is written, in the same transaction.
fn rebuild_blob_references(txn: &redb::WriteTransaction) -> Result<(), StorageError> {
    let mut blobs = txn.open_table(BLOBS).map_err(StorageError::index)?;
    for entry in txn
        .open_table(OBJECTS)
        .map_err(StorageError::index)?
        .iter()
        .map_err(StorageError::index)?
    {
        let (_, v) = entry.map_err(StorageError::index)?;
        let record: Record = decode(v.value())?;
        for id in record.blob_ids() {
            blobs.insert(id, ()).map_err(StorageError::index)?;
        }
    }
    for entry in txn
        .open_table(PARTS)
        .map_err(StorageError::index)?
        .iter()
        .map_err(StorageError::index)?
    {
        let (_, v) = entry.map_err(StorageError::index)?;
        let part: PartRecord = decode(v.value())?;
        blobs
            .insert(part.blob.as_str(), ())
            .map_err(StorageError::index)?;
    }
    Ok(())
}

/// A read or a write transaction: both can say whether a bucket exists.
trait ReadsBuckets {
    fn buckets(&self) -> Result<impl ReadableTable<&'static [u8], &'static [u8]>, StorageError>;
}

impl ReadsBuckets for redb::ReadTransaction {
    fn buckets(&self) -> Result<impl ReadableTable<&'static [u8], &'static [u8]>, StorageError> {
        self.open_table(BUCKETS).map_err(StorageError::index)
    }
}

impl ReadsBuckets for redb::WriteTransaction {
    fn buckets(&self) -> Result<impl ReadableTable<&'static [u8], &'static [u8]>, StorageError> {
        self.open_table(BUCKETS).map_err(StorageError::index)
    }
}

/// `NoSuchBucket` unless the bucket exists, as `txn` sees it.
fn bucket_exists_in(
    txn: &impl ReadsBuckets,
    tenant: &TenantId,
    bucket: &BucketName,
) -> Result<(), StorageError> {
    bucket_exists(&txn.buckets()?, tenant, bucket)
}

fn bucket_exists(
    table: &impl ReadableTable<&'static [u8], &'static [u8]>,
    tenant: &TenantId,
    bucket: &BucketName,
) -> Result<(), StorageError> {
    let key = bucket_key(tenant, bucket);
    match table.get(key.as_slice()).map_err(StorageError::index)? {
        Some(_) => Ok(()),
        None => Err(StorageError::NoSuchBucket),
    }
}

/// S3's minimum size for every part but the last.
pub(super) const MIN_PART_SIZE: u64 = 5 * 1024 * 1024;

fn upload_key(tenant: &TenantId, bucket: &BucketName, key: &ObjectKey, upload_id: &str) -> Vec<u8> {
    let mut full = object_key(tenant, bucket, key);
    full.push(0);
    full.extend_from_slice(upload_id.as_bytes());
    full
}

fn part_key(upload_id: &str, part_number: u32) -> Vec<u8> {
    [upload_id.as_bytes(), b"\0", &part_number.to_be_bytes()].concat()
}

/// Every part of an upload, in part-number order.
fn parts_of(
    table: &impl ReadableTable<&'static [u8], &'static [u8]>,
    upload_id: &str,
) -> Result<Vec<PartRecord>, StorageError> {
    let start = part_key(upload_id, 0);
    let prefix = &start[..upload_id.len() + 1];
    let mut out = Vec::new();
    for entry in table
        .range(start.as_slice()..)
        .map_err(StorageError::index)?
    {
        let (k, v) = entry.map_err(StorageError::index)?;
        if !k.value().starts_with(prefix) {
            break;
        }
        out.push(decode(v.value())?);
    }
    Ok(out)
}

/// What completing an upload changed: the new object, the record it replaced, and the blobs of
/// uploaded parts the completion did not use.
/// The answer to a completion of an upload that is gone: the first completion's, if the key
/// still holds the object it made (as S3 answers retries), else `NoSuchUpload`. Whatever the
/// retry asks (parts, conditions), it gets what the completion that happened did.
fn completed_earlier(
    objects: &impl redb::ReadableTable<&'static [u8], &'static [u8]>,
    tenant: &TenantId,
    bucket: &BucketName,
    key: &ObjectKey,
    upload_id: &str,
) -> Result<Completed, StorageError> {
    let current = objects
        .get(object_key(tenant, bucket, key).as_slice())
        .map_err(StorageError::index)?
        .map(|v| decode::<Record>(v.value()))
        .transpose()?;
    match current {
        Some(record) if record.upload.as_deref() == Some(upload_id) => Ok(Completed {
            meta: record.meta,
            replaced: None,
            unused_blobs: Vec::new(),
        }),
        _ => Err(StorageError::NoSuchUpload),
    }
}

pub(super) struct Completed {
    pub(super) meta: ObjectMeta,
    pub(super) replaced: Option<Record>,
    pub(super) unused_blobs: Vec<String>,
}

impl Index {
    pub(super) fn create_upload(
        &self,
        tenant: &TenantId,
        bucket: &BucketName,
        key: &ObjectKey,
        upload_id: &str,
        record: &UploadRecord,
    ) -> Result<(), StorageError> {
        let full = upload_key(tenant, bucket, key, upload_id);
        self.write(|txn| {
            bucket_exists_in(txn, tenant, bucket)?;
            let mut uploads = txn.open_table(UPLOADS).map_err(StorageError::index)?;
            uploads
                .insert(full.as_slice(), encode(record).as_slice())
                .map_err(StorageError::index)?;
            Ok(())
        })
    }

    pub(super) fn get_upload(
        &self,
        tenant: &TenantId,
        bucket: &BucketName,
        key: &ObjectKey,
        upload_id: &str,
    ) -> Result<UploadRecord, StorageError> {
        let txn = self.read()?;
        let uploads = txn.open_table(UPLOADS).map_err(StorageError::index)?;
        let full = upload_key(tenant, bucket, key, upload_id);
        match uploads.get(full.as_slice()).map_err(StorageError::index)? {
            Some(v) => decode(v.value()),
            None => {
                bucket_exists_in(&txn, tenant, bucket)?;
                Err(StorageError::NoSuchUpload)
            }
        }
    }

    /// Records a part (replacing an earlier upload of the same number); returns the replaced part.
    pub(super) fn put_part(
        &self,
        tenant: &TenantId,
        bucket: &BucketName,
        key: &ObjectKey,
        upload_id: &str,
        part: &PartRecord,
    ) -> Result<Option<PartRecord>, StorageError> {
        let full = upload_key(tenant, bucket, key, upload_id);
        self.write(|txn| {
            // Checked in the same transaction, so a part cannot outlive a concurrent abort.
            if txn
                .open_table(UPLOADS)
                .map_err(StorageError::index)?
                .get(full.as_slice())
                .map_err(StorageError::index)?
                .is_none()
            {
                return Err(StorageError::NoSuchUpload);
            }
            let mut parts = txn.open_table(PARTS).map_err(StorageError::index)?;
            let k = part_key(upload_id, part.info.part_number);
            let old: Option<PartRecord> = parts
                .insert(k.as_slice(), encode(part).as_slice())
                .map_err(StorageError::index)?
                .map(|v| decode(v.value()))
                .transpose()?;
            drop(parts);
            reference(txn, std::iter::once(part.blob.as_str()))?;
            if let Some(old) = &old {
                unreference(txn, std::iter::once(old.blob.as_str()))?;
            }
            Ok(old)
        })
    }

    /// Parts after `after`, at most `max`; the flag says whether more follow.
    pub(super) fn list_parts(
        &self,
        tenant: &TenantId,
        bucket: &BucketName,
        key: &ObjectKey,
        upload_id: &str,
        after: u32,
        max: usize,
    ) -> Result<(Vec<crate::PartInfo>, bool), StorageError> {
        self.get_upload(tenant, bucket, key, upload_id)?;
        let txn = self.read()?;
        let table = txn.open_table(PARTS).map_err(StorageError::index)?;
        let prefix_len = upload_id.len() + 1;
        let start = part_key(upload_id, after.saturating_add(1));
        let mut out = Vec::new();
        for entry in table
            .range(start.as_slice()..)
            .map_err(StorageError::index)?
        {
            let (k, v) = entry.map_err(StorageError::index)?;
            if !k.value().starts_with(&start[..prefix_len]) {
                break;
            }
            if out.len() == max {
                return Ok((out, true));
            }
            let part: PartRecord = decode(v.value())?;
            out.push(part.info);
        }
        Ok((out, false))
    }

    /// Validates the client's part list against the stored parts, and in one transaction makes
    /// the object visible and forgets the upload.
    pub(super) fn complete_upload(
        &self,
        tenant: &TenantId,
        bucket: &BucketName,
        key: &ObjectKey,
        upload_id: &str,
        requested: &[crate::CompletePart],
        condition: &PutCondition,
    ) -> Result<Completed, StorageError> {
        let upload_full = upload_key(tenant, bucket, key, upload_id);
        // A retried completion (the client timed out waiting for the first) is answered from
        // a read transaction: nothing to commit.
        {
            let txn = self.read()?;
            let uploads = txn.open_table(UPLOADS).map_err(StorageError::index)?;
            if uploads
                .get(upload_full.as_slice())
                .map_err(StorageError::index)?
                .is_none()
            {
                let objects = txn.open_table(OBJECTS).map_err(StorageError::index)?;
                return completed_earlier(&objects, tenant, bucket, key, upload_id);
            }
        }
        self.write(|txn| {
            let uploads = txn.open_table(UPLOADS).map_err(StorageError::index)?;
            let upload: UploadRecord = match uploads
                .get(upload_full.as_slice())
                .map_err(StorageError::index)?
            {
                Some(v) => decode(v.value())?,
                // Completed by a concurrent request since the check above.
                None => {
                    let objects = txn.open_table(OBJECTS).map_err(StorageError::index)?;
                    return completed_earlier(&objects, tenant, bucket, key, upload_id);
                }
            };
            let mut parts_table = txn.open_table(PARTS).map_err(StorageError::index)?;
            let stored = parts_of(&parts_table, upload_id)?;
            let chosen = choose_parts(&stored, requested)?;

            let mut md5_of_md5s = <md5::Md5 as md5::Digest>::new();
            for part in &chosen {
                let digest = hex::decode(&part.info.etag).map_err(StorageError::index)?;
                md5::Digest::update(&mut md5_of_md5s, &digest);
            }
            let meta = ObjectMeta {
                size: chosen.iter().map(|p| p.info.size).sum(),
                etag: format!(
                    "{}-{}",
                    hex::encode(md5::Digest::finalize(md5_of_md5s)),
                    chosen.len()
                ),
                last_modified_ms: super::now_ms(),
                headers: upload.headers,
                checksum: None,
                tags: upload.tags,
                tag_count: None,
                parts: Some(chosen.len() as u32),
                system_meta: upload.system_meta,
            };
            let record = Record {
                v: RECORD_VERSION,
                blob: None,
                checked: false,
                parts: chosen
                    .iter()
                    .map(|p| PartRef {
                        blob: p.blob.clone(),
                        size: p.info.size,
                        checked: p.checked,
                    })
                    .collect(),
                upload: Some(upload_id.to_owned()),
                meta: meta.clone(),
            };
            drop(uploads);
            let replaced = put_in(txn, tenant, bucket, key, &record, condition)?;
            let used: std::collections::HashSet<&str> =
                chosen.iter().map(|p| p.blob.as_str()).collect();
            let unused_blobs: Vec<String> = stored
                .iter()
                .filter(|p| !used.contains(p.blob.as_str()))
                .map(|p| p.blob.clone())
                .collect();
            unreference(txn, unused_blobs.iter().map(String::as_str))?;
            for part in &stored {
                parts_table
                    .remove(part_key(upload_id, part.info.part_number).as_slice())
                    .map_err(StorageError::index)?;
            }
            txn.open_table(UPLOADS)
                .map_err(StorageError::index)?
                .remove(upload_full.as_slice())
                .map_err(StorageError::index)?;
            Ok(Completed {
                meta,
                replaced,
                unused_blobs,
            })
        })
    }

    /// Forgets an upload and its parts; returns the parts' blobs for removal.
    pub(super) fn abort_upload(
        &self,
        tenant: &TenantId,
        bucket: &BucketName,
        key: &ObjectKey,
        upload_id: &str,
    ) -> Result<Vec<String>, StorageError> {
        let full = upload_key(tenant, bucket, key, upload_id);
        self.write(|txn| {
            let mut uploads = txn.open_table(UPLOADS).map_err(StorageError::index)?;
            if uploads
                .remove(full.as_slice())
                .map_err(StorageError::index)?
                .is_none()
            {
                return Err(StorageError::NoSuchUpload);
            }
            remove_parts(txn, upload_id)
        })
    }

    /// Aborts every upload started before `cutoff_ms`; returns their parts' blobs.
    /// Aborts up to `limit` uploads started before `cutoff_ms` (bounded, so one transaction
    /// never holds the writer for long); returns their parts' blobs and whether more remain.
    pub(super) fn abort_uploads_before(
        &self,
        cutoff_ms: i64,
        limit: usize,
    ) -> Result<(Vec<String>, bool), StorageError> {
        self.write(|txn| {
            let mut expired: Vec<(Vec<u8>, String)> = Vec::new();
            let mut more = false;
            {
                let uploads = txn.open_table(UPLOADS).map_err(StorageError::index)?;
                for entry in uploads.iter().map_err(StorageError::index)? {
                    let (k, v) = entry.map_err(StorageError::index)?;
                    let record: UploadRecord = decode(v.value())?;
                    if record.initiated_ms < cutoff_ms {
                        if expired.len() == limit {
                            more = true;
                            break;
                        }
                        let key = k.value().to_vec();
                        let id_start = key.iter().rposition(|b| *b == 0).map_or(0, |i| i + 1);
                        let id = String::from_utf8_lossy(&key[id_start..]).into_owned();
                        expired.push((key, id));
                    }
                }
            }
            let mut blobs = Vec::new();
            let mut uploads = txn.open_table(UPLOADS).map_err(StorageError::index)?;
            for (key, id) in expired {
                uploads
                    .remove(key.as_slice())
                    .map_err(StorageError::index)?;
                blobs.extend(remove_parts(txn, &id)?);
            }
            Ok((blobs, more))
        })
    }

    pub(super) fn list_uploads(
        &self,
        tenant: &TenantId,
        bucket: &BucketName,
        req: &crate::UploadListRequest,
    ) -> Result<crate::UploadListPage, StorageError> {
        let txn = self.read()?;
        bucket_exists_in(&txn, tenant, bucket)?;
        let uploads = txn.open_table(UPLOADS).map_err(StorageError::index)?;
        let base = objects_prefix(tenant, bucket);
        let full_prefix = [base.as_slice(), req.prefix.as_bytes()].concat();
        let delimiter = req.delimiter.as_deref().filter(|d| !d.is_empty());
        let mut cursor = full_prefix.clone();
        if let Some(marker) = &req.key_marker {
            let resume = match (
                common_prefix_of(marker, &req.prefix, delimiter),
                &req.upload_id_marker,
            ) {
                // The marker is a common prefix of this listing or lies inside one: S3 filters
                // out a common prefix not greater than the key-marker, so skip all of it.
                (Some(common), _) => [base.as_slice(), common.as_bytes(), &[AFTER_ALL]].concat(),
                // Strictly after that upload of the marker key.
                (None, Some(id)) => [
                    base.as_slice(),
                    marker.as_bytes(),
                    b"\0",
                    id.as_bytes(),
                    b"\0",
                ]
                .concat(),
                // After every upload of the marker key.
                (None, None) => [base.as_slice(), marker.as_bytes(), b"\0", &[AFTER_ALL]].concat(),
            };
            if resume > cursor {
                cursor = resume;
            }
        }
        let mut page = crate::UploadListPage::default();
        let more = scan_page(
            &uploads,
            Scan {
                base: &base,
                full_prefix: &full_prefix,
                prefix: &req.prefix,
                delimiter,
                cursor,
                max: req.max_uploads,
            },
            |rest| split_upload_key(rest).map(|(key, _)| key),
            |rest, value| {
                let (key, upload_id) = split_upload_key(rest)?;
                let record: UploadRecord = decode(value)?;
                page.uploads.push(crate::UploadInfo {
                    key: ObjectKey::parse(key)?,
                    upload_id: upload_id.to_owned(),
                    initiated_ms: record.initiated_ms,
                });
                Ok(())
            },
            &mut page.common_prefixes,
        )?;
        if more {
            // Resume after the last upload or common prefix returned, whichever sorts later.
            page.next = match (page.uploads.last(), page.common_prefixes.last()) {
                (Some(u), p) if p.is_none_or(|p| u.key.as_str() > p.as_str()) => {
                    Some((u.key.as_str().to_owned(), u.upload_id.clone()))
                }
                (_, Some(p)) => Some((p.clone(), String::new())),
                _ => None,
            };
        }
        Ok(page)
    }
}

/// Removes every part record of an upload; returns their blobs.
fn remove_parts(
    txn: &redb::WriteTransaction,
    upload_id: &str,
) -> Result<Vec<String>, StorageError> {
    let mut parts = txn.open_table(PARTS).map_err(StorageError::index)?;
    let stored = parts_of(&parts, upload_id)?;
    for part in &stored {
        parts
            .remove(part_key(upload_id, part.info.part_number).as_slice())
            .map_err(StorageError::index)?;
    }
    drop(parts);
    unreference(txn, stored.iter().map(|p| p.blob.as_str()))?;
    Ok(stored.into_iter().map(|p| p.blob).collect())
}

/// S3's rules for a CompleteMultipartUpload part list: ascending part numbers, each uploaded
/// with the ETag given, every part but the last at least 5 MiB.
fn choose_parts(
    stored: &[PartRecord],
    requested: &[crate::CompletePart],
) -> Result<Vec<PartRecord>, StorageError> {
    let mut chosen: Vec<PartRecord> = Vec::with_capacity(requested.len());
    for want in requested {
        if chosen
            .last()
            .is_some_and(|p| p.info.part_number >= want.part_number)
        {
            return Err(StorageError::InvalidPartOrder);
        }
        let part = stored
            .iter()
            .find(|p| {
                p.info.part_number == want.part_number
                    && p.info.etag == want.etag.trim().trim_matches('"')
            })
            .ok_or(StorageError::InvalidPart)?;
        chosen.push(part.clone());
    }
    if chosen
        .iter()
        .rev()
        .skip(1)
        .any(|p| p.info.size < MIN_PART_SIZE)
    {
        return Err(StorageError::EntityTooSmall);
    }
    Ok(chosen)
}

#[cfg(feature = "bench")]
impl Index {
    /// Benchmarks only: records for `keys` (empty objects sharing one blob id), in large
    /// transactions, to build a bucket of millions of keys in seconds.
    pub(super) fn bench_load(
        &self,
        tenant: &TenantId,
        bucket: &BucketName,
        keys: &[String],
    ) -> Result<(), StorageError> {
        let meta = ObjectMeta {
            size: 0,
            etag: "d41d8cd98f00b204e9800998ecf8427e".into(),
            last_modified_ms: super::now_ms(),
            ..Default::default()
        };
        let value = encode(&Record::single(
            "00000000000000000000000000000000".into(),
            meta,
        ));
        let mut txn = self.db.begin_write().map_err(StorageError::index)?;
        txn.set_durability(Durability::Eventual);
        {
            let mut objects = txn.open_table(OBJECTS).map_err(StorageError::index)?;
            for key in keys {
                let full = object_key(tenant, bucket, &ObjectKey::parse(key)?);
                objects
                    .insert(full.as_slice(), value.as_slice())
                    .map_err(StorageError::index)?;
            }
        }
        txn.commit().map_err(StorageError::index)
    }
}
