//! A route's view of a store: the client's bucket may be another bucket there, and every key
//! may live under a prefix. Names are mapped on the way in and back on the way out, so every
//! name a client sees (keys, prefixes, markers, `<Bucket>`) is its own; continuation tokens are
//! the store's and pass unchanged.

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::object::{opaque_token, token_text};
use async_trait::async_trait;

use crate::{
    Backend, BucketInfo, BucketName, CompletePart, CopyObject, CopySource, Forward, Forwarded,
    ListPage, ListRequest, NewUpload, ObjectKey, ObjectMeta, ObjectRead, PartId, PartInfo, PutBody,
    PutCondition, PutObject, ReadRange, ReadRequest, StorageError, TenantId, UploadListPage,
    UploadListRequest,
};

#[derive(Debug)]
pub struct Renamed {
    inner: Arc<dyn Backend>,
    /// `(client's name, store's name)` when the route renames its (one, exact) bucket.
    bucket: Option<(BucketName, BucketName)>,
    key_prefix: String,
}

impl Renamed {
    /// `rename`: the route's exact bucket and the bucket it is in the store.
    pub fn new(
        inner: Arc<dyn Backend>,
        rename: Option<(BucketName, BucketName)>,
        key_prefix: String,
    ) -> Self {
        Self {
            inner,
            bucket: rename,
            key_prefix,
        }
    }

    fn bucket(&self, bucket: &BucketName) -> BucketName {
        match &self.bucket {
            Some((client, store)) if client == bucket => store.clone(),
            _ => bucket.clone(),
        }
    }

    fn key(&self, key: &ObjectKey) -> Result<ObjectKey, StorageError> {
        if self.key_prefix.is_empty() {
            return Ok(key.clone());
        }
        // `.` and `..` segments are literal in S3, but a proxy or store that normalises paths
        // would take `x/../../k` out of the prefix: under a prefix they are refused.
        if key.as_str().split('/').any(|s| s == "." || s == "..") {
            return Err(StorageError::NotAllowed(
                "Keys with . or .. segments are refused in this bucket.",
            ));
        }
        Ok(ObjectKey::parse(&format!(
            "{}{}",
            self.key_prefix,
            key.as_str()
        ))?)
    }

    fn prefixed(&self, text: &str) -> String {
        format!("{}{text}", self.key_prefix)
    }

    /// A name from the store, as the client knows it (`None`: outside the prefix, not the
    /// client's).
    fn unprefixed<'a>(&self, name: &'a str) -> Option<&'a str> {
        name.strip_prefix(self.key_prefix.as_str())
    }

    /// A continuation token as the client holds it: the store's token, which may spell out a
    /// key (with the prefix the client must not see), wrapped opaquely.
    fn client_token(&self, token: &str) -> String {
        if self.key_prefix.is_empty() {
            return token.to_owned();
        }
        opaque_token(token)
    }

    fn inner_token(&self, token: &str) -> Result<String, StorageError> {
        if self.key_prefix.is_empty() {
            return Ok(token.to_owned());
        }
        token_text(token)
    }

    fn client_key(&self, key: ObjectKey) -> Option<ObjectKey> {
        if self.key_prefix.is_empty() {
            return Some(key);
        }
        ObjectKey::parse(self.unprefixed(key.as_str())?).ok()
    }
}

#[async_trait]
impl Backend for Renamed {
    fn resolve(
        &self,
        bucket: &BucketName,
        key: &ObjectKey,
    ) -> Result<(&dyn Backend, BucketName, ObjectKey), StorageError> {
        // Never unprefixed: that would name another prefix's (another tenant's) object.
        self.inner.resolve(&self.bucket(bucket), &self.key(key)?)
    }

    fn encryption(&self) -> Option<crate::Policy> {
        self.inner.encryption()
    }

    fn lists_system_meta(&self) -> bool {
        self.inner.lists_system_meta()
    }

    async fn list_buckets(&self, tenant: &TenantId) -> Result<Vec<BucketInfo>, StorageError> {
        let listed = self.inner.list_buckets(tenant).await?;
        Ok(match &self.bucket {
            None => listed,
            Some((client, store)) => listed
                .into_iter()
                .filter(|b| b.name == store.as_str())
                .map(|b| BucketInfo {
                    name: client.as_str().to_owned(),
                    ..b
                })
                .collect(),
        })
    }

    async fn create_bucket(
        &self,
        tenant: &TenantId,
        bucket: &BucketName,
    ) -> Result<(), StorageError> {
        if !self.key_prefix.is_empty() {
            // The store's bucket is shared with other prefixes: it exists or not for all.
            self.inner.head_bucket(tenant, &self.bucket(bucket)).await?;
            return Err(StorageError::BucketAlreadyOwnedByYou);
        }
        self.inner.create_bucket(tenant, &self.bucket(bucket)).await
    }

    async fn head_bucket(
        &self,
        tenant: &TenantId,
        bucket: &BucketName,
    ) -> Result<(), StorageError> {
        self.inner.head_bucket(tenant, &self.bucket(bucket)).await
    }

    async fn delete_bucket(
        &self,
        tenant: &TenantId,
        bucket: &BucketName,
    ) -> Result<(), StorageError> {
        if !self.key_prefix.is_empty() {
            return Err(StorageError::NotAllowed(
                "This bucket is a key prefix of a shared bucket and cannot be deleted.",
            ));
        }
        self.inner.delete_bucket(tenant, &self.bucket(bucket)).await
    }

    async fn bucket_config(
        &self,
        tenant: &TenantId,
        bucket: &BucketName,
        name: &'static str,
    ) -> Result<Option<String>, StorageError> {
        self.inner
            .bucket_config(tenant, &self.bucket(bucket), name)
            .await
    }

    async fn set_bucket_config(
        &self,
        tenant: &TenantId,
        bucket: &BucketName,
        name: &'static str,
        value: Option<String>,
    ) -> Result<(), StorageError> {
        if !self.key_prefix.is_empty() {
            return Err(StorageError::NotAllowed(
                "This bucket is a key prefix of a shared bucket: its settings are the operator's.",
            ));
        }
        self.inner
            .set_bucket_config(tenant, &self.bucket(bucket), name, value)
            .await
    }

    async fn put_object(
        &self,
        tenant: &TenantId,
        bucket: &BucketName,
        key: &ObjectKey,
        put: PutObject,
        body: PutBody,
    ) -> Result<ObjectMeta, StorageError> {
        self.inner
            .put_object(tenant, &self.bucket(bucket), &self.key(key)?, put, body)
            .await
    }

    async fn head_object(
        &self,
        tenant: &TenantId,
        bucket: &BucketName,
        key: &ObjectKey,
        read: ReadRequest,
    ) -> Result<ObjectRead, StorageError> {
        self.inner
            .head_object(tenant, &self.bucket(bucket), &self.key(key)?, read)
            .await
    }

    async fn get_object(
        &self,
        tenant: &TenantId,
        bucket: &BucketName,
        key: &ObjectKey,
        read: ReadRequest,
    ) -> Result<ObjectRead, StorageError> {
        self.inner
            .get_object(tenant, &self.bucket(bucket), &self.key(key)?, read)
            .await
    }

    async fn copy_object(
        &self,
        tenant: &TenantId,
        bucket: &BucketName,
        key: &ObjectKey,
        source: CopySource<'_>,
        copy: CopyObject,
    ) -> Result<ObjectMeta, StorageError> {
        self.inner
            .copy_object(tenant, &self.bucket(bucket), &self.key(key)?, source, copy)
            .await
    }

    async fn get_tags(
        &self,
        tenant: &TenantId,
        bucket: &BucketName,
        key: &ObjectKey,
    ) -> Result<BTreeMap<String, String>, StorageError> {
        self.inner
            .get_tags(tenant, &self.bucket(bucket), &self.key(key)?)
            .await
    }

    async fn set_tags(
        &self,
        tenant: &TenantId,
        bucket: &BucketName,
        key: &ObjectKey,
        tags: BTreeMap<String, String>,
    ) -> Result<(), StorageError> {
        self.inner
            .set_tags(tenant, &self.bucket(bucket), &self.key(key)?, tags)
            .await
    }

    async fn delete_object(
        &self,
        tenant: &TenantId,
        bucket: &BucketName,
        key: &ObjectKey,
    ) -> Result<(), StorageError> {
        match self.key(key) {
            Ok(key) => {
                self.inner
                    .delete_object(tenant, &self.bucket(bucket), &key)
                    .await
            }
            // Too long with the prefix: cannot exist, and deleting what does not exist succeeds.
            Err(_) => Ok(()),
        }
    }

    async fn list_objects(
        &self,
        tenant: &TenantId,
        bucket: &BucketName,
        request: ListRequest,
    ) -> Result<ListPage, StorageError> {
        let continuation = request
            .continuation
            .map(|token| self.inner_token(&token))
            .transpose()?;
        let request = ListRequest {
            prefix: self.prefixed(&request.prefix),
            start_after: request.start_after.map(|s| self.prefixed(&s)),
            continuation,
            ..request
        };
        let page = self
            .inner
            .list_objects(tenant, &self.bucket(bucket), request)
            .await?;
        Ok(ListPage {
            objects: page
                .objects
                .into_iter()
                .filter_map(|(k, meta)| Some((self.client_key(k)?, meta)))
                .collect(),
            common_prefixes: page
                .common_prefixes
                .iter()
                .filter_map(|p| self.unprefixed(p).map(str::to_owned))
                .collect(),
            next_token: page.next_token.map(|token| self.client_token(&token)),
        })
    }

    async fn create_multipart_upload(
        &self,
        tenant: &TenantId,
        bucket: &BucketName,
        key: &ObjectKey,
        upload: NewUpload,
    ) -> Result<String, StorageError> {
        self.inner
            .create_multipart_upload(tenant, &self.bucket(bucket), &self.key(key)?, upload)
            .await
    }

    async fn head_upload(
        &self,
        tenant: &TenantId,
        bucket: &BucketName,
        key: &ObjectKey,
        upload_id: &str,
    ) -> Result<(), StorageError> {
        self.inner
            .head_upload(tenant, &self.bucket(bucket), &self.key(key)?, upload_id)
            .await
    }

    async fn upload_part(
        &self,
        tenant: &TenantId,
        bucket: &BucketName,
        key: &ObjectKey,
        part: PartId<'_>,
        put: PutObject,
        body: PutBody,
    ) -> Result<PartInfo, StorageError> {
        self.inner
            .upload_part(
                tenant,
                &self.bucket(bucket),
                &self.key(key)?,
                part,
                put,
                body,
            )
            .await
    }

    async fn copy_part(
        &self,
        tenant: &TenantId,
        bucket: &BucketName,
        key: &ObjectKey,
        part: PartId<'_>,
        source: CopySource<'_>,
        range: Option<ReadRange>,
    ) -> Result<PartInfo, StorageError> {
        self.inner
            .copy_part(
                tenant,
                &self.bucket(bucket),
                &self.key(key)?,
                part,
                source,
                range,
            )
            .await
    }

    async fn complete_multipart_upload(
        &self,
        tenant: &TenantId,
        bucket: &BucketName,
        key: &ObjectKey,
        upload_id: &str,
        parts: Vec<CompletePart>,
        condition: PutCondition,
    ) -> Result<ObjectMeta, StorageError> {
        self.inner
            .complete_multipart_upload(
                tenant,
                &self.bucket(bucket),
                &self.key(key)?,
                upload_id,
                parts,
                condition,
            )
            .await
    }

    async fn abort_multipart_upload(
        &self,
        tenant: &TenantId,
        bucket: &BucketName,
        key: &ObjectKey,
        upload_id: &str,
    ) -> Result<(), StorageError> {
        self.inner
            .abort_multipart_upload(tenant, &self.bucket(bucket), &self.key(key)?, upload_id)
            .await
    }

    async fn list_parts(
        &self,
        tenant: &TenantId,
        bucket: &BucketName,
        key: &ObjectKey,
        upload_id: &str,
        after: u32,
        max: usize,
    ) -> Result<(Vec<PartInfo>, bool), StorageError> {
        self.inner
            .list_parts(
                tenant,
                &self.bucket(bucket),
                &self.key(key)?,
                upload_id,
                after,
                max,
            )
            .await
    }

    async fn forward(
        &self,
        tenant: &TenantId,
        bucket: &BucketName,
        key: Option<&ObjectKey>,
        request: Forward,
    ) -> Result<Forwarded, StorageError> {
        // Configs allow passthrough only on routes that rename the bucket alone.
        if !self.key_prefix.is_empty() {
            return Err(StorageError::NotAllowed(
                "Operations Sluice does not model cannot be forwarded under a key prefix.",
            ));
        }
        self.inner
            .forward(tenant, &self.bucket(bucket), key, request)
            .await
    }

    async fn list_multipart_uploads(
        &self,
        tenant: &TenantId,
        bucket: &BucketName,
        request: UploadListRequest,
    ) -> Result<UploadListPage, StorageError> {
        let request = UploadListRequest {
            prefix: self.prefixed(&request.prefix),
            key_marker: request.key_marker.map(|m| self.prefixed(&m)),
            ..request
        };
        let page = self
            .inner
            .list_multipart_uploads(tenant, &self.bucket(bucket), request)
            .await?;
        Ok(UploadListPage {
            uploads: page
                .uploads
                .into_iter()
                .filter_map(|mut u| {
                    u.key = self.client_key(u.key)?;
                    Some(u)
                })
                .collect(),
            common_prefixes: page
                .common_prefixes
                .iter()
                .filter_map(|p| self.unprefixed(p).map(str::to_owned))
                .collect(),
            next: page
                .next
                .and_then(|(k, id)| Some((self.unprefixed(&k)?.to_owned(), id))),
        })
    }
}
