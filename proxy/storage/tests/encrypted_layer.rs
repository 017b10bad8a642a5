//! The encryption layer over the local backend, through the storage interface: clients see
//! plaintext sizes, ETags and ranges; the store (read directly, underneath the layer) holds
//! only ciphertext; plaintext objects written before encryption stay readable.

use std::sync::Arc;

use bytes::Bytes;
use futures_util::StreamExt;
use md5::{Digest as _, Md5};
use rand::rngs::StdRng;
use rand::{Rng as _, SeedableRng as _};
use sluice_crypto::{KeyId, Keyring, WrappingKey};
use sluice_storage::encrypted::{ENVELOPE_META, server_side_encryption};
use sluice_storage::{
    Backend, BucketName, CompletePart, CopyObject, CopySource, Encrypted, ListRequest,
    LocalBackend, NewUpload, ObjectBody, ObjectKey, PartId, PartInfo, Policy, Preconditions,
    PutBody, PutCondition, PutObject, ReadRange, ReadRequest, StorageError, TenantId,
};

fn t() -> TenantId {
    TenantId::parse("t1").unwrap()
}

fn b() -> BucketName {
    BucketName::parse("vault").unwrap()
}

fn k(key: &str) -> ObjectKey {
    ObjectKey::parse(key).unwrap()
}

fn keyring() -> Arc<Keyring> {
    let id = KeyId::new("k1").unwrap();
    Arc::new(Keyring::new(vec![(id.clone(), WrappingKey::from_bytes([4; 32]))], &id).unwrap())
}

struct Stack {
    _dir: tempfile::TempDir,
    local: Arc<LocalBackend>,
    encrypted: Encrypted,
}

async fn stack(policy: Policy) -> Stack {
    let dir = tempfile::tempdir().unwrap();
    let local = Arc::new(LocalBackend::open(dir.path()).await.unwrap());
    local.create_bucket(&t(), &b()).await.unwrap();
    let encrypted = Encrypted::new(local.clone(), keyring(), policy);
    Stack {
        _dir: dir,
        local,
        encrypted,
    }
}

fn plaintext(len: usize, seed: u64) -> Vec<u8> {
    let mut rng = StdRng::seed_from_u64(seed);
    (0..len).map(|_| rng.random()).collect()
}

/// A body in uneven pieces, as a client's arrives.
fn body(data: &[u8]) -> PutBody {
    let pieces: Vec<_> = data
        .chunks(10_007)
        .map(|c| Ok(Bytes::copy_from_slice(c)))
        .collect();
    Box::pin(futures_util::stream::iter(pieces))
}

fn put_of(data: &[u8]) -> PutObject {
    PutObject {
        expected_size: Some(data.len() as u64),
        ..Default::default()
    }
}

async fn collect(mut body: ObjectBody) -> Result<Vec<u8>, StorageError> {
    let mut out = Vec::new();
    while let Some(piece) = body.next().await {
        out.extend_from_slice(&piece?);
    }
    Ok(out)
}

fn ranged(range: ReadRange) -> ReadRequest {
    ReadRequest {
        range: Some(range),
        ..Default::default()
    }
}

async fn get(store: &dyn Backend, key: &str, read: ReadRequest) -> Result<Vec<u8>, StorageError> {
    let open = store.get_object(&t(), &b(), &k(key), read).await?;
    collect(open.body).await
}

#[tokio::test]
async fn clients_see_plaintext_and_the_store_holds_ciphertext() {
    let s = stack(Policy::On).await;
    for (i, len) in [0usize, 1, 65_535, 65_536, 65_537, 300_000]
        .into_iter()
        .enumerate()
    {
        let data = plaintext(len, i as u64);
        let key = format!("obj-{len}");
        let md5 = hex::encode(Md5::digest(&data));
        let put = s
            .encrypted
            .put_object(&t(), &b(), &k(&key), put_of(&data), body(&data))
            .await
            .unwrap();
        assert_eq!((put.size, put.etag.as_str()), (len as u64, md5.as_str()));
        assert_eq!(server_side_encryption(&put), Some("AES256"));
        assert_eq!(
            put.system_meta.len(),
            1,
            "no other Sluice metadata is shown"
        );

        let head = s
            .encrypted
            .head_object(&t(), &b(), &k(&key), ReadRequest::default())
            .await
            .unwrap();
        assert_eq!(
            (head.meta.size, head.meta.etag.as_str()),
            (len as u64, md5.as_str())
        );
        assert_eq!(head.meta.system_meta.len(), 1);
        assert_eq!(
            get(&s.encrypted, &key, ReadRequest::default())
                .await
                .unwrap(),
            data
        );

        // Underneath the layer: the envelope, a larger stored size, and no plaintext.
        let stored_read = s
            .local
            .get_object(&t(), &b(), &k(&key), ReadRequest::default())
            .await
            .unwrap();
        assert!(stored_read.meta.system_meta.contains_key(ENVELOPE_META));
        let stored = collect(stored_read.body).await.unwrap();
        assert!(stored.len() > data.len() + 100);
        assert_eq!(&stored[..4], b"SLCE");
        if len >= 16 {
            let blocks: std::collections::HashSet<&[u8]> = data.chunks_exact(16).collect();
            assert!(!stored.windows(16).any(|w| blocks.contains(w)), "len {len}");
        }
    }
    // Listings report plaintext sizes and ETags.
    let page = s
        .encrypted
        .list_objects(
            &t(),
            &b(),
            ListRequest {
                max_keys: 1000,
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(page.objects.len(), 6);
    for (key, meta) in &page.objects {
        let len: u64 = key.as_str().trim_start_matches("obj-").parse().unwrap();
        assert_eq!(meta.size, len, "{key:?}");
        assert_eq!(server_side_encryption(meta), Some("AES256"));
        assert_eq!(meta.etag.len(), 32);
    }
}

#[tokio::test]
async fn ranges_of_every_form_return_the_plaintext_bytes() {
    let s = stack(Policy::Required).await;
    let data = plaintext(5 * 65_536 + 1234, 7);
    s.encrypted
        .put_object(&t(), &b(), &k("r"), put_of(&data), body(&data))
        .await
        .unwrap();
    let len = data.len() as u64;
    let mut cases = vec![
        ReadRange::From {
            first: 0,
            last: Some(0),
        },
        ReadRange::From {
            first: 65_535,
            last: Some(65_536),
        },
        ReadRange::From {
            first: 65_536,
            last: None,
        },
        ReadRange::From {
            first: 1,
            last: None,
        },
        ReadRange::From {
            first: 0,
            last: Some(len - 2),
        },
        ReadRange::From {
            first: len - 1,
            last: Some(len + 100),
        },
        ReadRange::Suffix(1),
        ReadRange::Suffix(70_000),
        ReadRange::Suffix(len + 5),
        ReadRange::Part(1),
    ];
    let mut rng = StdRng::seed_from_u64(3);
    for _ in 0..200 {
        let first = rng.random_range(0..len);
        let last = rng.random_range(first..len);
        cases.push(ReadRange::From {
            first,
            last: Some(last),
        });
    }
    for range in cases {
        let open = s
            .encrypted
            .get_object(&t(), &b(), &k("r"), ranged(range))
            .await
            .unwrap();
        let r = open.range.expect("a ranged answer says its range");
        let got = collect(open.body).await.unwrap();
        assert_eq!(
            got,
            &data[r.start as usize..=r.end_inclusive as usize],
            "{range:?}"
        );
    }
    for bad in [
        ReadRange::From {
            first: len,
            last: None,
        },
        ReadRange::Part(2),
    ] {
        let err = s
            .encrypted
            .get_object(&t(), &b(), &k("r"), ranged(bad))
            .await
            .err();
        assert!(
            matches!(err, Some(StorageError::InvalidRange { size } ) if size == len)
                || matches!(err, Some(StorageError::InvalidPartNumber)),
            "{bad:?}: {err:?}"
        );
    }
}

#[tokio::test]
async fn conditions_are_checked_against_the_plaintext_etag() {
    let s = stack(Policy::On).await;
    let data = b"conditional".to_vec();
    let put = s
        .encrypted
        .put_object(&t(), &b(), &k("c"), put_of(&data), body(&data))
        .await
        .unwrap();
    let stored_etag = s
        .local
        .head_object(&t(), &b(), &k("c"), ReadRequest::default())
        .await
        .unwrap()
        .meta
        .etag;
    assert_ne!(stored_etag, put.etag);
    let read = |if_match: Option<&str>, if_none_match: Option<&str>| ReadRequest {
        conditions: Preconditions {
            if_match: if_match.map(|e| format!("\"{e}\"")),
            if_none_match: if_none_match.map(|e| format!("\"{e}\"")),
            ..Default::default()
        },
        ..Default::default()
    };
    assert!(
        get(&s.encrypted, "c", read(Some(&put.etag), None))
            .await
            .is_ok()
    );
    assert!(matches!(
        get(&s.encrypted, "c", read(Some(&stored_etag), None)).await,
        Err(StorageError::PreconditionFailed { .. })
    ));
    assert!(matches!(
        get(&s.encrypted, "c", read(None, Some(&put.etag))).await,
        Err(StorageError::NotModified(meta)) if meta.etag == put.etag
    ));

    // A conditional overwrite: If-Match the plaintext ETag succeeds; the stored one fails.
    let next = b"next".to_vec();
    let conditional = |etag: &str| PutObject {
        condition: PutCondition::IfMatch(format!("\"{etag}\"")),
        ..put_of(&next)
    };
    let refused = s
        .encrypted
        .put_object(&t(), &b(), &k("c"), conditional(&stored_etag), body(&next))
        .await;
    assert!(matches!(
        refused,
        Err(StorageError::PreconditionFailed { .. })
    ));
    s.encrypted
        .put_object(&t(), &b(), &k("c"), conditional(&put.etag), body(&next))
        .await
        .unwrap();
    assert_eq!(
        get(&s.encrypted, "c", ReadRequest::default())
            .await
            .unwrap(),
        next
    );
}

#[tokio::test]
async fn a_wrong_content_md5_stores_nothing() {
    let s = stack(Policy::On).await;
    let data = plaintext(100_000, 1);
    let put = PutObject {
        content_md5: Some([0; 16]),
        ..put_of(&data)
    };
    let err = s
        .encrypted
        .put_object(&t(), &b(), &k("m"), put, body(&data))
        .await
        .unwrap_err();
    assert!(matches!(err, StorageError::BadDigest), "{err:?}");
    assert!(matches!(
        s.encrypted
            .head_object(&t(), &b(), &k("m"), ReadRequest::default())
            .await,
        Err(StorageError::NoSuchKey)
    ));
    let right = PutObject {
        content_md5: Some(Md5::digest(&data).into()),
        ..put_of(&data)
    };
    s.encrypted
        .put_object(&t(), &b(), &k("m"), right, body(&data))
        .await
        .unwrap();
}

#[tokio::test]
async fn plaintext_objects_from_before_stay_readable_and_copies_are_encrypted() {
    let s = stack(Policy::On).await;
    let old = plaintext(70_000, 11);
    // Written straight to the store, as before encryption was turned on.
    s.local
        .put_object(&t(), &b(), &k("old"), put_of(&old), body(&old))
        .await
        .unwrap();
    assert_eq!(
        get(&s.encrypted, "old", ReadRequest::default())
            .await
            .unwrap(),
        old
    );
    let head = s
        .encrypted
        .head_object(&t(), &b(), &k("old"), ReadRequest::default())
        .await
        .unwrap();
    assert_eq!(
        server_side_encryption(&head.meta),
        None,
        "plaintext is not reported encrypted"
    );
    let tail = get(&s.encrypted, "old", ranged(ReadRange::Suffix(10)))
        .await
        .unwrap();
    assert_eq!(tail, &old[old.len() - 10..]);

    // A copy of it through the layer is encrypted.
    let source = k("old");
    let bucket = b();
    let conditions = Preconditions::default();
    let copied = s
        .encrypted
        .copy_object(
            &t(),
            &b(),
            &k("copy"),
            CopySource {
                store: &s.encrypted,
                bucket: &bucket,
                key: &source,
                conditions: &conditions,
                customer_key: None,
            },
            CopyObject::default(),
        )
        .await
        .unwrap();
    assert_eq!(copied.size, old.len() as u64);
    assert_eq!(copied.etag, hex::encode(Md5::digest(&old)));
    let stored = s
        .local
        .head_object(&t(), &b(), &k("copy"), ReadRequest::default())
        .await
        .unwrap();
    assert!(stored.meta.system_meta.contains_key(ENVELOPE_META));
    assert_eq!(
        get(&s.encrypted, "copy", ReadRequest::default())
            .await
            .unwrap(),
        old
    );
}

const MIB: usize = 1 << 20;

async fn upload(s: &Stack, upload_id: &str, number: u32, data: &[u8]) -> PartInfo {
    let part = PartId {
        upload_id,
        number,
        customer_key: None,
    };
    s.encrypted
        .upload_part(&t(), &b(), &k("mp"), part, put_of(data), body(data))
        .await
        .unwrap()
}

#[tokio::test]
async fn multipart_objects_with_odd_parts_out_of_order_and_retried_read_back_whole_and_by_range() {
    let s = stack(Policy::Required).await;
    let id = s
        .encrypted
        .create_multipart_upload(&t(), &b(), &k("mp"), NewUpload::default())
        .await
        .unwrap();
    // Parts of odd sizes, numbered with gaps, uploaded out of order; part 4 uploaded twice
    // (the second wins) under the same data key.
    let p1 = plaintext(5 * MIB + 1, 1);
    let p4_first = plaintext(5 * MIB + 77, 2);
    let p4 = plaintext(6 * MIB - 3, 3);
    let p9 = plaintext(12_345, 4);
    let i9 = upload(&s, &id, 9, &p9).await;
    let _ = upload(&s, &id, 4, &p4_first).await;
    let i4 = upload(&s, &id, 4, &p4).await;
    let i1 = upload(&s, &id, 1, &p1).await;
    assert_eq!(
        (i1.size, i4.size, i9.size),
        (p1.len() as u64, p4.len() as u64, p9.len() as u64)
    );
    let (listed, _) = s
        .encrypted
        .list_parts(&t(), &b(), &k("mp"), &id, 0, 100)
        .await
        .unwrap();
    let sizes: Vec<u64> = listed.iter().map(|p| p.size).collect();
    assert_eq!(sizes, [p1.len() as u64, p4.len() as u64, p9.len() as u64]);
    let complete: Vec<CompletePart> = [&i1, &i4, &i9]
        .iter()
        .map(|p| CompletePart {
            part_number: p.part_number,
            etag: p.etag.clone(),
        })
        .collect();
    let meta = s
        .encrypted
        .complete_multipart_upload(&t(), &b(), &k("mp"), &id, complete, PutCondition::None)
        .await
        .unwrap();
    let whole: Vec<u8> = [&p1[..], &p4[..], &p9[..]].concat();
    let mut md5s = Md5::new();
    for p in [&p1, &p4, &p9] {
        md5s.update(Md5::digest(p));
    }
    let etag = format!("{}-3", hex::encode(md5s.finalize()));
    assert_eq!(
        (meta.size, meta.etag.as_str()),
        (whole.len() as u64, etag.as_str())
    );

    // A fresh layer (nothing remembered) finds the parts from the stored bytes alone.
    let fresh = Encrypted::new(s.local.clone(), keyring(), Policy::Required);
    for store in [&s.encrypted, &fresh] {
        let head = store
            .head_object(&t(), &b(), &k("mp"), ReadRequest::default())
            .await
            .unwrap();
        assert_eq!(
            (head.meta.size, head.meta.etag.as_str()),
            (whole.len() as u64, etag.as_str())
        );
        assert_eq!(
            get(store, "mp", ReadRequest::default()).await.unwrap(),
            whole
        );
    }
    let len = whole.len() as u64;
    let (b1, b2) = (p1.len() as u64, (p1.len() + p4.len()) as u64);
    let mut cases = vec![
        ReadRange::From {
            first: b1 - 1,
            last: Some(b1),
        },
        ReadRange::From {
            first: b1 - 10,
            last: Some(b2 + 10),
        },
        ReadRange::From {
            first: 0,
            last: Some(b2),
        },
        ReadRange::From {
            first: b2,
            last: None,
        },
        ReadRange::Suffix(12_346),
        ReadRange::Part(1),
        ReadRange::Part(2),
        ReadRange::Part(3),
    ];
    let mut rng = StdRng::seed_from_u64(8);
    for _ in 0..60 {
        let first = rng.random_range(0..len);
        let last = rng.random_range(first..len.min(first + 3 * MIB as u64));
        cases.push(ReadRange::From {
            first,
            last: Some(last),
        });
    }
    for range in cases {
        let open = fresh
            .get_object(&t(), &b(), &k("mp"), ranged(range))
            .await
            .unwrap_or_else(|e| panic!("{range:?}: {e:?}"));
        let r = open.range.unwrap();
        let got = collect(open.body).await.unwrap();
        assert_eq!(got.len() as u64, r.len(), "{range:?}");
        assert!(
            got == whole[r.start as usize..=r.end_inclusive as usize],
            "{range:?}"
        );
    }
    assert_eq!(
        fresh
            .get_object(&t(), &b(), &k("mp"), ranged(ReadRange::Part(2)))
            .await
            .unwrap()
            .range
            .unwrap()
            .len(),
        p4.len() as u64
    );
    // Listings report the plaintext size and ETag.
    let page = fresh
        .list_objects(
            &t(),
            &b(),
            ListRequest {
                max_keys: 10,
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(page.objects[0].1.size, len);
    assert_eq!(page.objects[0].1.etag, etag);
}

#[tokio::test]
async fn upload_ids_bind_their_data_key_and_plaintext_uploads_cannot_go_on_where_required() {
    let s = stack(Policy::Required).await;
    let a = s
        .encrypted
        .create_multipart_upload(&t(), &b(), &k("mp"), NewUpload::default())
        .await
        .unwrap();
    let other = s
        .encrypted
        .create_multipart_upload(&t(), &b(), &k("mp"), NewUpload::default())
        .await
        .unwrap();
    // Upload a's store id with upload b's envelope and MAC.
    let (store_a, _) = a.split_once('~').unwrap();
    let (_, b_rest) = other.split_once('~').unwrap();
    let forged = format!("{store_a}~{b_rest}");
    let data = b"x".repeat(10);
    let part = PartId {
        upload_id: &forged,
        number: 1,
        customer_key: None,
    };
    let err = s
        .encrypted
        .upload_part(&t(), &b(), &k("mp"), part, put_of(&data), body(&data))
        .await
        .unwrap_err();
    assert!(matches!(err, StorageError::NoSuchUpload), "{err:?}");

    // An upload started straight on the store (before encryption was required).
    let plain = s
        .local
        .create_multipart_upload(&t(), &b(), &k("mp"), NewUpload::default())
        .await
        .unwrap();
    let part = PartId {
        upload_id: &plain,
        number: 1,
        customer_key: None,
    };
    let err = s
        .encrypted
        .upload_part(&t(), &b(), &k("mp"), part, put_of(&data), body(&data))
        .await
        .unwrap_err();
    assert!(matches!(err, StorageError::NotAllowed(_)), "{err:?}");
}

#[tokio::test]
async fn upload_part_copy_takes_plaintext_from_encrypted_and_plaintext_sources() {
    let s = stack(Policy::On).await;
    let enc = plaintext(5 * MIB + 9, 20);
    let plain = plaintext(300_000, 21);
    s.encrypted
        .put_object(&t(), &b(), &k("enc"), put_of(&enc), body(&enc))
        .await
        .unwrap();
    s.local
        .put_object(&t(), &b(), &k("plain"), put_of(&plain), body(&plain))
        .await
        .unwrap();
    let id = s
        .encrypted
        .create_multipart_upload(&t(), &b(), &k("mp"), NewUpload::default())
        .await
        .unwrap();
    let bucket = b();
    let conditions = Preconditions::default();
    let mut done = Vec::new();
    for (number, source, range) in [
        (1, "enc", None),
        (
            2,
            "plain",
            Some(ReadRange::Exact {
                first: 100,
                last: 200_099,
            }),
        ),
    ] {
        let source_key = k(source);
        let info = s
            .encrypted
            .copy_part(
                &t(),
                &b(),
                &k("mp"),
                PartId {
                    upload_id: &id,
                    number,
                    customer_key: None,
                },
                CopySource {
                    store: &s.encrypted,
                    bucket: &bucket,
                    key: &source_key,
                    conditions: &conditions,
                    customer_key: None,
                },
                range,
            )
            .await
            .unwrap();
        done.push(CompletePart {
            part_number: number,
            etag: info.etag,
        });
    }
    s.encrypted
        .complete_multipart_upload(&t(), &b(), &k("mp"), &id, done, PutCondition::None)
        .await
        .unwrap();
    let expected = [&enc[..], &plain[100..200_100]].concat();
    assert!(
        get(&s.encrypted, "mp", ReadRequest::default())
            .await
            .unwrap()
            == expected
    );
}

#[tokio::test]
async fn a_damaged_or_unreadable_object_is_an_error_not_wrong_bytes() {
    let s = stack(Policy::On).await;
    let data = plaintext(200_000, 5);
    s.encrypted
        .put_object(&t(), &b(), &k("d"), put_of(&data), body(&data))
        .await
        .unwrap();
    // The same store seen through a keyring without the key that wrapped the data key.
    let other_id = KeyId::new("k2").unwrap();
    let other = Keyring::new(
        vec![(other_id.clone(), WrappingKey::from_bytes([5; 32]))],
        &other_id,
    )
    .unwrap();
    let stranger = Encrypted::new(s.local.clone(), Arc::new(other), Policy::On);
    let err = get(&stranger, "d", ReadRequest::default())
        .await
        .unwrap_err();
    assert!(err.is_internal(), "{err:?}");
}
