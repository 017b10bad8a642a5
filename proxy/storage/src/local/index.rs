//! The ordered index of buckets and object records, in one redb database.
//!
//! Keys (DO NOT CHANGE: data on disk depends on them):
//! - `BUCKETS`: `tenant \0 bucket` → JSON [`BucketRecord`]
//! - `OBJECTS`: `tenant \0 bucket \0 key` → JSON [`Record`]
//!
//! Tenant and bucket names cannot contain NUL and object keys cannot either, so these encodings
//! are unambiguous and a bucket's objects form one contiguous, sorted range. Listing is a range
//! scan that starts at the resume point and stops after one page: its cost depends on the page
//! size, never on how many keys the bucket holds. Under a delimiter, each common prefix is
//! skipped with one seek past every key that shares it.

use std::path::Path;

use redb::{Database, Durability, ReadableTable, TableDefinition};
use serde::{Deserialize, Serialize};

use crate::{
    BucketInfo, BucketName, ListPage, ListRequest, ObjectKey, ObjectMeta, StorageError, TenantId,
};

const BUCKETS: TableDefinition<&[u8], &[u8]> = TableDefinition::new("buckets");
const OBJECTS: TableDefinition<&[u8], &[u8]> = TableDefinition::new("objects");
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
}

/// An object's index record: which blob holds its bytes, and its metadata.
#[derive(Debug, Serialize, Deserialize)]
pub(super) struct Record {
    v: u8,
    pub(super) blob: String,
    #[serde(flatten)]
    pub(super) meta: ObjectMeta,
}

impl Record {
    pub(super) fn new(blob: String, meta: ObjectMeta) -> Self {
        Self {
            v: RECORD_VERSION,
            blob,
            meta,
        }
    }
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
        let db = Database::create(path).map_err(StorageError::index)?;
        let txn = db.begin_write().map_err(StorageError::index)?;
        txn.open_table(BUCKETS).map_err(StorageError::index)?;
        txn.open_table(OBJECTS).map_err(StorageError::index)?;
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
            });
            table
                .insert(key.as_slice(), record.as_slice())
                .map_err(StorageError::index)?;
            Ok(())
        })
    }

    pub(super) fn require_bucket(
        &self,
        tenant: &TenantId,
        bucket: &BucketName,
    ) -> Result<(), StorageError> {
        let txn = self.read()?;
        let table = txn.open_table(BUCKETS).map_err(StorageError::index)?;
        bucket_exists(&table, tenant, bucket)
    }

    pub(super) fn delete_bucket(
        &self,
        tenant: &TenantId,
        bucket: &BucketName,
    ) -> Result<(), StorageError> {
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
            Ok(())
        })
    }

    /// Replaces the record of `key` in one durable transaction; returns the record it replaced.
    pub(super) fn put_object(
        &self,
        tenant: &TenantId,
        bucket: &BucketName,
        key: &ObjectKey,
        record: &Record,
    ) -> Result<Option<Record>, StorageError> {
        let full = object_key(tenant, bucket, key);
        let value = encode(record);
        self.write(|txn| {
            // Checked inside the transaction so a concurrent DeleteBucket cannot orphan the object.
            bucket_exists(
                &txn.open_table(BUCKETS).map_err(StorageError::index)?,
                tenant,
                bucket,
            )?;
            let mut objects = txn.open_table(OBJECTS).map_err(StorageError::index)?;
            let old = objects
                .insert(full.as_slice(), value.as_slice())
                .map_err(StorageError::index)?;
            old.map(|v| decode(v.value())).transpose()
        })
    }

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
        bucket_exists(
            &txn.open_table(BUCKETS).map_err(StorageError::index)?,
            tenant,
            bucket,
        )?;
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
            bucket_exists(
                &txn.open_table(BUCKETS).map_err(StorageError::index)?,
                tenant,
                bucket,
            )?;
            let mut objects = txn.open_table(OBJECTS).map_err(StorageError::index)?;
            let old = objects
                .remove(full.as_slice())
                .map_err(StorageError::index)?;
            old.map(|v| decode(v.value())).transpose()
        })
    }

    pub(super) fn list_objects(
        &self,
        tenant: &TenantId,
        bucket: &BucketName,
        req: &ListRequest,
    ) -> Result<ListPage, StorageError> {
        let txn = self.read()?;
        bucket_exists(
            &txn.open_table(BUCKETS).map_err(StorageError::index)?,
            tenant,
            bucket,
        )?;
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
        let mut taken = 0usize;
        'scan: loop {
            let mut range = objects
                .range(cursor.as_slice()..)
                .map_err(StorageError::index)?;
            loop {
                let Some(entry) = range.next() else {
                    break 'scan;
                };
                let (k, v) = entry.map_err(StorageError::index)?;
                let full_key = k.value();
                if !full_key.starts_with(&full_prefix) {
                    break 'scan;
                }
                let key =
                    std::str::from_utf8(&full_key[base.len()..]).map_err(StorageError::index)?;
                if taken == req.max_keys {
                    // One more entry exists: the page is truncated after the last one returned.
                    page.next_after = last_returned(&page);
                    break 'scan;
                }
                if let Some(d) = delimiter
                    && let Some(pos) = key[req.prefix.len()..].find(d)
                {
                    let common = key[..req.prefix.len() + pos + d.len()].to_owned();
                    cursor = [base.as_slice(), common.as_bytes(), &[AFTER_ALL]].concat();
                    page.common_prefixes.push(common);
                    taken += 1;
                    continue 'scan;
                }
                let record: Record = decode(v.value())?;
                page.objects.push((ObjectKey::parse(key)?, record.meta));
                taken += 1;
            }
        }
        Ok(page)
    }
}

/// Where to resume after `after`: just past it, or past everything under it when it is a common
/// prefix of this listing.
fn resume_point(base: &[u8], after: &str, prefix: &str, delimiter: Option<&str>) -> Vec<u8> {
    let is_common_prefix = delimiter.is_some_and(|d| {
        after
            .strip_prefix(prefix)
            .is_some_and(|rest| rest.ends_with(d) && rest.contains(d))
    });
    let mut point = [base, after.as_bytes()].concat();
    // A key is "after" itself once any byte is appended; 0x00 is the smallest such key.
    point.push(if is_common_prefix { AFTER_ALL } else { 0 });
    point
}

/// The last key or common prefix in a page, whichever sorts later.
fn last_returned(page: &ListPage) -> Option<String> {
    let key = page.objects.last().map(|(k, _)| k.as_str());
    let prefix = page.common_prefixes.last().map(String::as_str);
    key.max(prefix).map(str::to_owned)
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
