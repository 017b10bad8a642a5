//! The local backend through its public API: listing semantics (a model check against a
//! brute-force listing), atomic overwrite, failed bodies storing nothing, bucket rules.

use std::collections::BTreeSet;

use bytes::Bytes;
use futures_util::StreamExt;
use sluice_storage::{
    BucketName, ListRequest, LocalBackend, ObjectKey, PutError, PutObject, StorageError, TenantId,
};

fn t() -> TenantId {
    TenantId::parse("t1").unwrap()
}

fn b(name: &str) -> BucketName {
    BucketName::parse(name).unwrap()
}

fn k(key: &str) -> ObjectKey {
    ObjectKey::parse(key).unwrap()
}

async fn put(backend: &LocalBackend, bucket: &BucketName, key: &str, data: &[u8]) {
    let body = futures_util::stream::iter([Ok::<_, std::io::Error>(Bytes::copy_from_slice(data))]);
    let put = PutObject {
        expected_size: Some(data.len() as u64),
        ..Default::default()
    };
    backend
        .put_object(&t(), bucket, &k(key), put, body)
        .await
        .unwrap();
}

async fn read(backend: &LocalBackend, bucket: &BucketName, key: &str) -> Vec<u8> {
    let open = backend.open_object(&t(), bucket, &k(key)).await.unwrap();
    let mut body = open.into_body(None).await.unwrap();
    let mut out = Vec::new();
    while let Some(chunk) = body.next().await {
        out.extend_from_slice(&chunk.unwrap());
    }
    out
}

/// What a listing must return, computed the slow, obvious way.
fn model(keys: &BTreeSet<String>, prefix: &str, delimiter: Option<&str>) -> Vec<String> {
    let mut out = Vec::new();
    for key in keys.iter().filter(|k| k.starts_with(prefix)) {
        let entry = match delimiter.and_then(|d| {
            key[prefix.len()..]
                .find(d)
                .map(|i| &key[..prefix.len() + i + d.len()])
        }) {
            Some(common) => common.to_owned(),
            None => key.clone(),
        };
        if out.last() != Some(&entry) {
            out.push(entry);
        }
    }
    out
}

/// Pages through a whole listing, returning keys and common prefixes in order.
async fn list_all(
    backend: &LocalBackend,
    bucket: &BucketName,
    prefix: &str,
    delimiter: Option<&str>,
    page: usize,
) -> Vec<String> {
    let mut out = Vec::new();
    let mut after = None;
    loop {
        let req = ListRequest {
            prefix: prefix.into(),
            delimiter: delimiter.map(Into::into),
            start_after: after.clone(),
            max_keys: page,
        };
        let result = backend.list_objects(&t(), bucket, req).await.unwrap();
        assert!(result.objects.len() + result.common_prefixes.len() <= page);
        let mut entries: Vec<String> = result
            .objects
            .iter()
            .map(|(k, _)| k.as_str().to_owned())
            .collect();
        entries.extend(result.common_prefixes.iter().cloned());
        entries.sort();
        out.extend(entries);
        match result.next_after {
            Some(next) => after = Some(next),
            None => return out,
        }
    }
}

#[tokio::test]
async fn listing_matches_the_model_for_every_page_size() {
    let dir = tempfile::tempdir().unwrap();
    let backend = LocalBackend::open(dir.path()).await.unwrap();
    let bucket = b("list");
    backend.create_bucket(&t(), &bucket).await.unwrap();
    let mut keys = BTreeSet::new();
    for a in [
        "a", "a/", "a/b", "a/b/c", "a/b/d", "a-b", "a/c", "b", "b/x/y", "b//z", "c/", "c/d", "é/x",
        "zz",
    ] {
        keys.insert(a.to_owned());
    }
    for i in 0..30 {
        keys.insert(format!("d/{i:03}"));
    }
    for key in &keys {
        put(&backend, &bucket, key, key.as_bytes()).await;
    }
    for prefix in ["", "a", "a/", "a/b", "b/", "d/", "d/01", "nothing"] {
        for delimiter in [None, Some("/"), Some("b"), Some("/b")] {
            let want = model(&keys, prefix, delimiter);
            for page in [1, 2, 3, 7, 1000] {
                let got = list_all(&backend, &bucket, prefix, delimiter, page).await;
                assert_eq!(
                    got, want,
                    "prefix={prefix:?} delimiter={delimiter:?} page={page}"
                );
            }
        }
    }
}

#[tokio::test]
async fn overwrite_is_atomic_and_old_blob_is_removed() {
    let dir = tempfile::tempdir().unwrap();
    let backend = LocalBackend::open(dir.path()).await.unwrap();
    let bucket = b("over");
    backend.create_bucket(&t(), &bucket).await.unwrap();
    put(&backend, &bucket, "k", b"version one").await;
    // A reader that opened v1 keeps reading v1 even after v2 replaces it.
    let open_v1 = backend.open_object(&t(), &bucket, &k("k")).await.unwrap();
    put(&backend, &bucket, "k", b"version two!").await;
    let mut body = open_v1.into_body(None).await.unwrap();
    let mut got = Vec::new();
    while let Some(c) = body.next().await {
        got.extend_from_slice(&c.unwrap());
    }
    assert_eq!(got, b"version one");
    assert_eq!(read(&backend, &bucket, "k").await, b"version two!");
    let blobs: usize = walk(&dir.path().join("blobs"));
    assert_eq!(blobs, 1, "the replaced blob must be removed");
}

fn walk(dir: &std::path::Path) -> usize {
    std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .map(|e| {
            if e.path().is_dir() {
                walk(&e.path())
            } else {
                1
            }
        })
        .sum()
}

#[tokio::test]
async fn failed_or_short_bodies_store_nothing_and_leak_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let backend = LocalBackend::open(dir.path()).await.unwrap();
    let bucket = b("fail");
    backend.create_bucket(&t(), &bucket).await.unwrap();
    put(&backend, &bucket, "k", b"old").await;

    let body = futures_util::stream::iter([
        Ok(Bytes::from_static(b"partial")),
        Err("signature mismatch"),
    ]);
    let put_req = PutObject {
        expected_size: Some(100),
        ..Default::default()
    };
    let err = backend
        .put_object(&t(), &bucket, &k("k"), put_req, body)
        .await
        .unwrap_err();
    assert!(matches!(err, PutError::Body("signature mismatch")));

    let body = futures_util::stream::iter([Ok::<_, ()>(Bytes::from_static(b"short"))]);
    let put_req = PutObject {
        expected_size: Some(100),
        ..Default::default()
    };
    let err = backend
        .put_object(&t(), &bucket, &k("k"), put_req, body)
        .await
        .unwrap_err();
    assert!(matches!(
        err,
        PutError::Storage(StorageError::IncompleteBody)
    ));

    let body = futures_util::stream::iter([Ok::<_, ()>(Bytes::from_static(b"bad md5"))]);
    let put_req = PutObject {
        expected_size: Some(7),
        content_md5: Some([0; 16]),
        ..Default::default()
    };
    let err = backend
        .put_object(&t(), &bucket, &k("k"), put_req, body)
        .await
        .unwrap_err();
    assert!(matches!(err, PutError::Storage(StorageError::BadDigest)));

    assert_eq!(read(&backend, &bucket, "k").await, b"old");
    assert_eq!(walk(&dir.path().join("tmp")), 0, "temporary files leaked");
    assert_eq!(walk(&dir.path().join("blobs")), 1);
}

#[tokio::test]
async fn buckets_are_per_tenant_and_must_be_empty_to_delete() {
    let dir = tempfile::tempdir().unwrap();
    let backend = LocalBackend::open(dir.path()).await.unwrap();
    let other = TenantId::parse("t2").unwrap();
    let bucket = b("shared-name");
    backend.create_bucket(&t(), &bucket).await.unwrap();
    backend.create_bucket(&other, &bucket).await.unwrap();
    assert!(matches!(
        backend.create_bucket(&t(), &bucket).await,
        Err(StorageError::BucketAlreadyOwnedByYou)
    ));
    put(&backend, &bucket, "k", b"x").await;
    assert!(matches!(
        backend.delete_bucket(&t(), &bucket).await,
        Err(StorageError::BucketNotEmpty)
    ));
    backend.delete_bucket(&other, &bucket).await.unwrap();
    assert_eq!(backend.list_buckets(&t()).await.unwrap().len(), 1);
    assert!(backend.list_buckets(&other).await.unwrap().is_empty());
    backend.delete_object(&t(), &bucket, &k("k")).await.unwrap();
    backend.delete_bucket(&t(), &bucket).await.unwrap();
    assert!(matches!(
        backend.head_bucket(&t(), &bucket).await,
        Err(StorageError::NoSuchBucket)
    ));
}

#[tokio::test]
async fn data_survives_reopen() {
    let dir = tempfile::tempdir().unwrap();
    {
        let backend = LocalBackend::open(dir.path()).await.unwrap();
        backend.create_bucket(&t(), &b("keep")).await.unwrap();
        put(&backend, &b("keep"), "k", b"durable").await;
    }
    std::fs::write(dir.path().join("tmp").join("leftover"), b"junk").unwrap();
    let backend = LocalBackend::open(dir.path()).await.unwrap();
    assert_eq!(read(&backend, &b("keep"), "k").await, b"durable");
    assert_eq!(
        walk(&dir.path().join("tmp")),
        0,
        "leftover temp files are cleared at open"
    );
}
