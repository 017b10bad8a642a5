//! How much an encrypted range read takes from the store: only the stored segments that cover
//! the range (and the stream's header, once), counted by a store that sits between the
//! encryption layer and the local backend and counts every byte it hands up.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use async_trait::async_trait;
use bytes::Bytes;
use futures_util::StreamExt;
use sluice_crypto::{KeyId, Keyring, WrappingKey};
use sluice_storage::{
    Backend, BucketInfo, BucketName, CompletePart, CopyObject, CopySource, Encrypted, ListPage,
    ListRequest, LocalBackend, NewUpload, ObjectKey, ObjectMeta, ObjectRead, PartId, PartInfo,
    Policy, PutBody, PutCondition, PutObject, ReadRange, ReadRequest, StorageError, TenantId,
    UploadListPage, UploadListRequest,
};

/// The local backend, counting the body bytes of every read.
#[derive(Debug)]
struct Counting {
    inner: LocalBackend,
    read: Arc<AtomicU64>,
}

#[async_trait]
impl Backend for Counting {
    fn resolve(
        &self,
        bucket: &BucketName,
        key: &ObjectKey,
    ) -> Result<(&dyn Backend, BucketName, ObjectKey), StorageError> {
        Ok((self, bucket.clone(), key.clone()))
    }
    async fn list_buckets(&self, t: &TenantId) -> Result<Vec<BucketInfo>, StorageError> {
        self.inner.list_buckets(t).await
    }
    async fn create_bucket(&self, t: &TenantId, b: &BucketName) -> Result<(), StorageError> {
        self.inner.create_bucket(t, b).await
    }
    async fn head_bucket(&self, t: &TenantId, b: &BucketName) -> Result<(), StorageError> {
        self.inner.head_bucket(t, b).await
    }
    async fn delete_bucket(&self, t: &TenantId, b: &BucketName) -> Result<(), StorageError> {
        self.inner.delete_bucket(t, b).await
    }
    async fn bucket_config(
        &self,
        t: &TenantId,
        b: &BucketName,
        name: &'static str,
    ) -> Result<Option<String>, StorageError> {
        self.inner.bucket_config(t, b, name).await
    }
    async fn set_bucket_config(
        &self,
        t: &TenantId,
        b: &BucketName,
        name: &'static str,
        value: Option<String>,
    ) -> Result<(), StorageError> {
        self.inner.set_bucket_config(t, b, name, value).await
    }
    async fn put_object(
        &self,
        t: &TenantId,
        b: &BucketName,
        k: &ObjectKey,
        put: PutObject,
        body: PutBody,
    ) -> Result<ObjectMeta, StorageError> {
        self.inner.put_object(t, b, k, put, body).await
    }
    async fn head_object(
        &self,
        t: &TenantId,
        b: &BucketName,
        k: &ObjectKey,
        read: ReadRequest,
    ) -> Result<ObjectRead, StorageError> {
        self.inner.head_object(t, b, k, read).await
    }
    async fn get_object(
        &self,
        t: &TenantId,
        b: &BucketName,
        k: &ObjectKey,
        read: ReadRequest,
    ) -> Result<ObjectRead, StorageError> {
        let mut open = self.inner.get_object(t, b, k, read).await?;
        let counter = Arc::clone(&self.read);
        open.body = Box::pin(open.body.inspect(move |piece| {
            if let Ok(piece) = piece {
                counter.fetch_add(piece.len() as u64, Ordering::Relaxed);
            }
        }));
        Ok(open)
    }
    async fn copy_object(
        &self,
        t: &TenantId,
        b: &BucketName,
        k: &ObjectKey,
        source: CopySource<'_>,
        copy: CopyObject,
    ) -> Result<ObjectMeta, StorageError> {
        sluice_storage::stream_copy(self, t, b, k, source, copy).await
    }
    async fn get_tags(
        &self,
        t: &TenantId,
        b: &BucketName,
        k: &ObjectKey,
    ) -> Result<BTreeMap<String, String>, StorageError> {
        self.inner.get_tags(t, b, k).await
    }
    async fn set_tags(
        &self,
        t: &TenantId,
        b: &BucketName,
        k: &ObjectKey,
        tags: BTreeMap<String, String>,
    ) -> Result<(), StorageError> {
        self.inner.set_tags(t, b, k, tags).await
    }
    async fn delete_object(
        &self,
        t: &TenantId,
        b: &BucketName,
        k: &ObjectKey,
    ) -> Result<(), StorageError> {
        self.inner.delete_object(t, b, k).await
    }
    async fn list_objects(
        &self,
        t: &TenantId,
        b: &BucketName,
        request: ListRequest,
    ) -> Result<ListPage, StorageError> {
        self.inner.list_objects(t, b, request).await
    }
    async fn create_multipart_upload(
        &self,
        t: &TenantId,
        b: &BucketName,
        k: &ObjectKey,
        upload: NewUpload,
    ) -> Result<String, StorageError> {
        self.inner.create_multipart_upload(t, b, k, upload).await
    }
    async fn head_upload(
        &self,
        t: &TenantId,
        b: &BucketName,
        k: &ObjectKey,
        id: &str,
    ) -> Result<(), StorageError> {
        self.inner.head_upload(t, b, k, id).await
    }
    async fn upload_part(
        &self,
        t: &TenantId,
        b: &BucketName,
        k: &ObjectKey,
        part: PartId<'_>,
        put: PutObject,
        body: PutBody,
    ) -> Result<PartInfo, StorageError> {
        self.inner.upload_part(t, b, k, part, put, body).await
    }
    async fn copy_part(
        &self,
        t: &TenantId,
        b: &BucketName,
        k: &ObjectKey,
        part: PartId<'_>,
        source: CopySource<'_>,
        range: Option<ReadRange>,
    ) -> Result<PartInfo, StorageError> {
        sluice_storage::stream_copy_part(self, t, b, k, part, source, range).await
    }
    async fn complete_multipart_upload(
        &self,
        t: &TenantId,
        b: &BucketName,
        k: &ObjectKey,
        id: &str,
        parts: Vec<CompletePart>,
        condition: PutCondition,
    ) -> Result<ObjectMeta, StorageError> {
        self.inner
            .complete_multipart_upload(t, b, k, id, parts, condition)
            .await
    }
    async fn abort_multipart_upload(
        &self,
        t: &TenantId,
        b: &BucketName,
        k: &ObjectKey,
        id: &str,
    ) -> Result<(), StorageError> {
        self.inner.abort_multipart_upload(t, b, k, id).await
    }
    async fn list_parts(
        &self,
        t: &TenantId,
        b: &BucketName,
        k: &ObjectKey,
        id: &str,
        after: u32,
        max: usize,
    ) -> Result<(Vec<PartInfo>, bool), StorageError> {
        self.inner.list_parts(t, b, k, id, after, max).await
    }
    async fn list_multipart_uploads(
        &self,
        t: &TenantId,
        b: &BucketName,
        request: UploadListRequest,
    ) -> Result<UploadListPage, StorageError> {
        self.inner.list_multipart_uploads(t, b, request).await
    }
}

fn t() -> TenantId {
    TenantId::parse("t1").unwrap()
}

fn b() -> BucketName {
    BucketName::parse("vault").unwrap()
}

const SEGMENT: u64 = 65_536;
/// A stored segment: its plaintext and its tag.
const STORED_SEGMENT: u64 = SEGMENT + 16;
const HEADER: u64 = 32;

#[tokio::test]
async fn a_range_reads_only_the_stored_segments_that_cover_it() {
    let dir = tempfile::tempdir().unwrap();
    let read = Arc::new(AtomicU64::new(0));
    let counting = Arc::new(Counting {
        inner: LocalBackend::open(dir.path()).await.unwrap(),
        read: Arc::clone(&read),
    });
    counting.create_bucket(&t(), &b()).await.unwrap();
    let id = KeyId::new("k1").unwrap();
    let keyring =
        Arc::new(Keyring::new(vec![(id.clone(), WrappingKey::from_bytes([9; 32]))], &id).unwrap());
    let layer = Encrypted::new(counting.clone(), keyring, Policy::Required);

    // 64 segments (4 MiB) and a short last one.
    let data: Vec<u8> = (0..64 * SEGMENT + 100)
        .map(|i| (i * 7 % 251) as u8)
        .collect();
    let key = ObjectKey::parse("big").unwrap();
    let put = PutObject {
        expected_size: Some(data.len() as u64),
        ..Default::default()
    };
    let body: PutBody = Box::pin(futures_util::stream::iter(
        data.chunks(100_000)
            .map(|c| Ok(Bytes::copy_from_slice(c)))
            .collect::<Vec<_>>(),
    ));
    layer.put_object(&t(), &b(), &key, put, body).await.unwrap();

    let read_range = |first: u64, last: u64| {
        let (layer, key, data, read) = (&layer, &key, &data, &read);
        async move {
            read.store(0, Ordering::Relaxed);
            let open = layer
                .get_object(
                    &t(),
                    &b(),
                    key,
                    ReadRequest {
                        range: Some(ReadRange::Exact { first, last }),
                        ..Default::default()
                    },
                )
                .await
                .unwrap();
            let mut got = Vec::new();
            let mut body = open.body;
            while let Some(piece) = body.next().await {
                got.extend_from_slice(&piece.unwrap());
            }
            assert_eq!(got, data[first as usize..=last as usize], "{first}-{last}");
            read.load(Ordering::Relaxed)
        }
    };
    // 1 KiB inside segment 40: its header (first range read of the object) and one segment.
    assert_eq!(
        read_range(40 * SEGMENT + 10, 40 * SEGMENT + 1033).await,
        HEADER + STORED_SEGMENT
    );
    // Again: the header is remembered.
    assert_eq!(
        read_range(40 * SEGMENT + 10, 40 * SEGMENT + 1033).await,
        STORED_SEGMENT
    );
    // Across one segment edge: two segments.
    assert_eq!(
        read_range(10 * SEGMENT - 5, 10 * SEGMENT + 5).await,
        2 * STORED_SEGMENT
    );
    // From the start: the header comes with the first segment; the read stops there.
    assert_eq!(read_range(0, 99).await, HEADER + STORED_SEGMENT);
    // The short last segment (100 bytes and its tag), not the footer.
    assert_eq!(
        read_range(64 * SEGMENT + 50, 64 * SEGMENT + 99).await,
        100 + 16
    );
    // Nowhere near the whole object.
    let stored_total = HEADER + 64 * STORED_SEGMENT + 100 + 16 + 72;
    assert!(read_range(30 * SEGMENT, 33 * SEGMENT - 1).await < stored_total / 20);
}
