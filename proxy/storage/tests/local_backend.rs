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

/// One entry of a listing: a key, or a common prefix (`true`).
type Entry = (String, bool);

/// What a listing must return, computed the slow, obvious way from S3's definition: every key
/// under `prefix`, rolled up into its common prefix (up to the first `delimiter` after the
/// prefix) when it has one, in byte order, then only the entries, keys and common prefixes
/// alike, that sort after `start_after` (v2 `start-after`, v1 `marker`, or the resume point of a
/// continuation). ListObjectsV2: "CommonPrefixes is filtered out from results if it is not
/// lexicographically greater than the StartAfter value"; ListObjects says the same of the
/// marker. So a start-after inside a rolled-up prefix (`a/b/` or `a/b/c` under `a/`) skips that
/// whole prefix, and a start-after equal to a common prefix skips it too.
fn model(
    keys: &BTreeSet<String>,
    prefix: &str,
    delimiter: Option<&str>,
    start_after: Option<&str>,
) -> Vec<Entry> {
    let mut out: Vec<Entry> = Vec::new();
    for key in keys.iter().filter(|k| k.starts_with(prefix)) {
        let entry = match delimiter.and_then(|d| {
            key[prefix.len()..]
                .find(d)
                .map(|i| &key[..prefix.len() + i + d.len()])
        }) {
            Some(common) => (common.to_owned(), true),
            None => (key.clone(), false),
        };
        if out.last() != Some(&entry) {
            out.push(entry);
        }
    }
    out.retain(|(name, _)| start_after.is_none_or(|after| name.as_str() > after));
    out
}

/// How a client pages: v1 resumes from `NextMarker` (sent only with a delimiter; without one,
/// from the last key), v2 from `NextContinuationToken` (the handler's token carries the page's
/// resume point). Both start from the client's `marker` / `start-after`.
#[derive(Debug, Clone, Copy)]
enum Paging {
    V1Marker,
    V2StartAfter,
}

/// Pages through a whole listing from `start_after`, checking every page against the model:
/// its entries, whether it is truncated, and its resume point (the last entry it returned).
/// Returns how many pages it took.
#[allow(clippy::too_many_arguments)]
async fn check_pages(
    backend: &LocalBackend,
    bucket: &BucketName,
    keys: &BTreeSet<String>,
    prefix: &str,
    delimiter: Option<&str>,
    start_after: Option<&str>,
    page: usize,
    paging: Paging,
) -> usize {
    let want = model(keys, prefix, delimiter, start_after);
    let mut resume = start_after.map(str::to_owned);
    let mut done = 0usize;
    let mut pages = 0usize;
    loop {
        let ctx = format!(
            "prefix={prefix:?} delimiter={delimiter:?} start_after={start_after:?} page={page} \
             {paging:?} page#={pages} resume={resume:?}"
        );
        let req = ListRequest {
            prefix: prefix.into(),
            delimiter: delimiter.map(Into::into),
            start_after: resume.clone(),
            max_keys: page,
        };
        let result = backend.list_objects(&t(), bucket, req).await.unwrap();
        pages += 1;
        let keys_got: Vec<String> = result
            .objects
            .iter()
            .map(|(k, _)| k.as_str().to_owned())
            .collect();
        assert!(keys_got.is_sorted(), "{ctx}: keys out of order");
        assert!(
            result.common_prefixes.is_sorted(),
            "{ctx}: common prefixes out of order"
        );
        let mut got: Vec<Entry> = keys_got.iter().map(|k| (k.clone(), false)).collect();
        got.extend(result.common_prefixes.iter().map(|p| (p.clone(), true)));
        got.sort();
        let expected = &want[done..(done + page).min(want.len())];
        assert_eq!(got, expected, "{ctx}");
        done += expected.len();
        let truncated = done < want.len();
        assert_eq!(result.next_after.is_some(), truncated, "{ctx}: IsTruncated");
        let Some(next) = result.next_after else {
            return pages;
        };
        // NextMarker / NextContinuationToken: the last key or common prefix of the page, so
        // the next page neither repeats nor skips one.
        assert_eq!(
            Some(next.as_str()),
            expected.last().map(|(n, _)| n.as_str()),
            "{ctx}: resume point"
        );
        resume = Some(match paging {
            Paging::V2StartAfter => next,
            Paging::V1Marker if delimiter.is_some() => next,
            Paging::V1Marker => keys_got.last().expect("a truncated page has keys").clone(),
        });
    }
}

async fn bucket_with(backend: &LocalBackend, name: &str, keys: &BTreeSet<String>) -> BucketName {
    let bucket = b(name);
    backend.create_bucket(&t(), &bucket).await.unwrap();
    for key in keys {
        put(backend, &bucket, key, key.as_bytes()).await;
    }
    bucket
}

#[tokio::test]
async fn listing_matches_the_model_for_every_page_size() {
    let dir = tempfile::tempdir().unwrap();
    let backend = LocalBackend::open(dir.path()).await.unwrap();
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
    let bucket = bucket_with(&backend, "list", &keys).await;
    for prefix in ["", "a", "a/", "a/b", "b/", "d/", "d/01", "nothing"] {
        for delimiter in [None, Some("/"), Some("b"), Some("/b")] {
            for page in [1, 2, 3, 7, 1000] {
                check_pages(
                    &backend,
                    &bucket,
                    &keys,
                    prefix,
                    delimiter,
                    None,
                    page,
                    Paging::V2StartAfter,
                )
                .await;
            }
        }
    }
}

/// The cases that pin S3's start-after semantics under a delimiter, spelled out.
#[tokio::test]
async fn start_after_inside_or_at_a_common_prefix_skips_it() {
    let dir = tempfile::tempdir().unwrap();
    let backend = LocalBackend::open(dir.path()).await.unwrap();
    let keys: BTreeSet<String> = ["a/b/c", "a/c", "b"].map(String::from).into();
    let bucket = bucket_with(&backend, "marker-cases", &keys).await;
    let list = |after: &'static str| {
        let backend = &backend;
        let bucket = &bucket;
        async move {
            let req = ListRequest {
                prefix: String::new(),
                delimiter: Some("/".into()),
                start_after: Some(after.into()),
                max_keys: 1000,
            };
            let page = backend.list_objects(&t(), bucket, req).await.unwrap();
            let keys: Vec<String> = page
                .objects
                .iter()
                .map(|(k, _)| k.as_str().to_owned())
                .collect();
            (keys, page.common_prefixes)
        }
    };
    let only_b = (vec!["b".to_owned()], Vec::<String>::new());
    // `a/` sorts before each of these start-afters, so S3 filters it out.
    for after in ["a/", "a/b/", "a/b", "a/b/c", "a/c", "a/zzz"] {
        assert_eq!(list(after).await, only_b, "start_after={after:?}");
    }
    // `a/` sorts after these.
    for after in ["a", "a.", "", "0"] {
        assert_eq!(
            list(after).await,
            (vec!["b".to_owned()], vec!["a/".to_owned()]),
            "start_after={after:?}"
        );
    }
}

/// A small deterministic generator (splitmix64), so the randomised test is reproducible.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }

    /// A short string over a small alphabet rich in delimiters, so that common prefixes,
    /// nested ones and near-miss markers are frequent.
    fn word(&mut self, max_len: usize) -> String {
        const ALPHABET: [&str; 8] = ["a", "b", "c", "/", "/", "-", "0", "é"];
        let len = 1 + self.below(max_len);
        (0..len).map(|_| *self.pick(&ALPHABET)).collect()
    }
}

/// A start-after drawn to hit the edges: an existing key, a common prefix of the listing, a
/// key cut just after any delimiter in it (`a/b/` of `a/b/c`), the prefix itself, a string
/// between keys, before or after every key, or anything at all.
fn draw_start_after(
    rng: &mut Rng,
    keys: &[String],
    prefix: &str,
    delimiter: Option<&str>,
) -> Option<String> {
    let key = rng.pick(keys).clone();
    let d = delimiter.unwrap_or("/");
    match rng.below(11) {
        0 => None,
        1 | 2 => Some(key),
        3 | 4 => {
            // Cut after a delimiter: the first past the prefix is this listing's common
            // prefix, a later one lies inside it.
            let cuts: Vec<usize> = key.match_indices(d).map(|(i, _)| i + d.len()).collect();
            match cuts.as_slice() {
                [] => Some(format!("{prefix}{d}")),
                cuts => Some(key[..*rng.pick(cuts)].to_owned()),
            }
        }
        5 => {
            // Just after a key, or just before it.
            let mut s = key;
            if rng.below(2) == 0 {
                s.push(*rng.pick(&['\u{1}', '-', '0', '/', 'a', '\u{10FFFF}']));
            } else {
                s.pop();
            }
            Some(s)
        }
        6 => Some(format!("{key}{d}")),
        7 => Some(prefix.to_owned()),
        8 => Some(format!("{prefix}{}", rng.word(4))),
        9 => Some(
            rng.pick(&["", "\u{1}", "0", "zzz", "\u{10FFFF}"])
                .to_string(),
        ),
        _ => Some(rng.word(6)),
    }
}

/// The model check with random start-afters: random keys, prefixes, delimiters, start-afters
/// (see `draw_start_after`) and page sizes, paged v1- and v2-style to the end, every page
/// compared with S3's answer.
#[tokio::test]
async fn start_after_listing_matches_the_model() {
    let started = std::time::Instant::now();
    let dir = tempfile::tempdir().unwrap();
    let backend = LocalBackend::open(dir.path()).await.unwrap();
    let mut rng = Rng(0x5EED_0F51_71CE);
    let mut keys: BTreeSet<String> = [
        "a", "a/", "a/b", "a/b/", "a/b/c", "a/b/d", "a-b", "a/c", "a//", "b", "b/x/y", "b//z",
        "c/", "c/d", "é/x", "zz",
    ]
    .map(String::from)
    .into();
    while keys.len() < 80 {
        keys.insert(rng.word(7));
    }
    let bucket = bucket_with(&backend, "random", &keys).await;
    let key_list: Vec<String> = keys.iter().cloned().collect();
    let delimiters = [
        None,
        Some("/"),
        Some("//"),
        Some("b"),
        Some("/b"),
        Some("é"),
    ];
    let (mut cases, mut pages) = (0usize, 0usize);
    for _ in 0..600 {
        let prefix = match rng.below(4) {
            0 => String::new(),
            1 => rng.word(2),
            _ => {
                let key = rng.pick(&key_list);
                let mut cut = rng.below(key.len() + 1);
                while !key.is_char_boundary(cut) {
                    cut -= 1;
                }
                key[..cut].to_owned()
            }
        };
        let delimiter = *rng.pick(&delimiters);
        let start_after = draw_start_after(&mut rng, &key_list, &prefix, delimiter);
        let total = model(&keys, &prefix, delimiter, start_after.as_deref()).len();
        let page = match rng.below(3) {
            0 => 1,
            1 => 1 + rng.below(4),
            _ => 1 + rng.below(total + 1),
        };
        let paging = *rng.pick(&[Paging::V1Marker, Paging::V2StartAfter]);
        pages += check_pages(
            &backend,
            &bucket,
            &keys,
            &prefix,
            delimiter,
            start_after.as_deref(),
            page,
            paging,
        )
        .await;
        cases += 1;
    }
    eprintln!("{cases} listings, {pages} pages in {:?}", started.elapsed());
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

/// A body large enough that it is synced early while still arriving (every 32 MiB) and hashed
/// on a thread of its own (past 8 MiB) comes back intact, with the MD5 of all its bytes as its
/// ETag; a Content-MD5 that does not match it stores nothing.
#[tokio::test]
async fn large_body_synced_while_arriving_reads_back_whole() {
    let dir = tempfile::tempdir().unwrap();
    let backend = LocalBackend::open(dir.path()).await.unwrap();
    let bucket = b("large");
    backend.create_bucket(&t(), &bucket).await.unwrap();
    let chunk = |i: u32| Bytes::from(vec![(i % 251) as u8; 1 << 20]);
    let body =
        futures_util::stream::iter((0..70u32).map(move |i| Ok::<_, std::io::Error>(chunk(i))));
    let meta = backend
        .put_object(&t(), &bucket, &k("big"), PutObject::default(), body)
        .await
        .unwrap();
    let data = read(&backend, &bucket, "big").await;
    assert_eq!(meta.etag, md5_hex(&data));
    assert_eq!(data.len(), 70 << 20);
    assert!(
        data.chunks(1 << 20)
            .enumerate()
            .all(|(i, c)| c.iter().all(|&x| x == (i % 251) as u8))
    );

    let mut wrong: [u8; 16] = hex::decode(&meta.etag).unwrap().try_into().unwrap();
    wrong[0] ^= 1;
    let put = PutObject {
        content_md5: Some(wrong),
        ..Default::default()
    };
    let body =
        futures_util::stream::iter((0..70u32).map(move |i| Ok::<_, std::io::Error>(chunk(i))));
    let err = backend
        .put_object(&t(), &bucket, &k("other"), put, body)
        .await
        .unwrap_err();
    assert!(
        matches!(err, PutError::Storage(StorageError::BadDigest)),
        "{err:?}"
    );
    assert_eq!(walk(&dir.path().join("tmp")), 0);
}

fn part_body(
    data: &[u8],
) -> impl futures_util::Stream<Item = Result<Bytes, std::io::Error>> + Send + use<> {
    futures_util::stream::iter([Ok(Bytes::copy_from_slice(data))])
}

fn md5_hex(data: &[u8]) -> String {
    use md5::Digest;
    hex::encode(md5::Md5::digest(data))
}

#[tokio::test]
async fn multipart_upload_complete_and_read_back() {
    use sluice_storage::{CompletePart, PutCondition};
    let dir = tempfile::tempdir().unwrap();
    let backend = LocalBackend::open(dir.path()).await.unwrap();
    let bucket = b("mpu");
    backend.create_bucket(&t(), &bucket).await.unwrap();
    let id = backend
        .create_multipart_upload(
            &t(),
            &bucket,
            &k("big"),
            Default::default(),
            Default::default(),
        )
        .await
        .unwrap();
    let five = 5 * 1024 * 1024;
    let p1: Vec<u8> = (0..five).map(|i| (i % 251) as u8).collect();
    let p2: Vec<u8> = (0..five).map(|i| (i % 13) as u8).collect();
    let p3 = b"tail".to_vec();
    let mut etags = Vec::new();
    for (n, data) in [(1u32, &p1), (2, &p2), (3, &p3)] {
        let put = PutObject {
            expected_size: Some(data.len() as u64),
            ..Default::default()
        };
        let info = backend
            .upload_part(
                &t(),
                &bucket,
                &k("big"),
                sluice_storage::PartId {
                    upload_id: &id,
                    number: n,
                },
                put,
                part_body(data),
            )
            .await
            .unwrap();
        assert_eq!(info.etag, md5_hex(data));
        etags.push(info.etag);
    }
    // Re-uploading part 3 replaces it.
    let put = PutObject {
        expected_size: Some(5),
        ..Default::default()
    };
    let info = backend
        .upload_part(
            &t(),
            &bucket,
            &k("big"),
            sluice_storage::PartId {
                upload_id: &id,
                number: 3,
            },
            put,
            part_body(b"tail!"),
        )
        .await
        .unwrap();
    etags[2] = info.etag;
    let (parts, more) = backend
        .list_parts(&t(), &bucket, &k("big"), &id, 0, 2)
        .await
        .unwrap();
    assert_eq!((parts.len(), more), (2, true));
    let (parts, more) = backend
        .list_parts(&t(), &bucket, &k("big"), &id, 2, 10)
        .await
        .unwrap();
    assert_eq!(
        (
            parts.iter().map(|p| p.part_number).collect::<Vec<_>>(),
            more
        ),
        (vec![3], false)
    );

    let cp = |n: u32, e: &str| CompletePart {
        part_number: n,
        etag: format!("\"{e}\""),
    };
    let complete = async |parts: Vec<CompletePart>| {
        backend
            .complete_multipart_upload(&t(), &bucket, &k("big"), &id, parts, PutCondition::None)
            .await
    };
    // Validation: order, unknown etag, too-small middle part.
    let err = complete(vec![cp(2, &etags[1]), cp(1, &etags[0])])
        .await
        .unwrap_err();
    assert!(matches!(err, StorageError::InvalidPartOrder), "{err:?}");
    let err = complete(vec![cp(1, "00")]).await.unwrap_err();
    assert!(matches!(err, StorageError::InvalidPart), "{err:?}");
    let err = complete(vec![cp(3, &etags[2]), cp(1, &etags[0])])
        .await
        .unwrap_err();
    assert!(matches!(err, StorageError::InvalidPartOrder), "{err:?}");

    // Complete with parts 1 and 3 only: part 2's blob is released.
    let meta = complete(vec![cp(1, &etags[0]), cp(3, &etags[2])])
        .await
        .unwrap();
    let mut concat = Vec::new();
    concat.extend(hex::decode(&etags[0]).unwrap());
    concat.extend(hex::decode(&etags[2]).unwrap());
    assert_eq!(meta.etag, format!("{}-2", md5_hex(&concat)));
    assert_eq!(meta.size, five as u64 + 5);
    let mut want = p1.clone();
    want.extend_from_slice(b"tail!");
    assert_eq!(read(&backend, &bucket, "big").await, want);
    // A range across the part boundary.
    let open = backend.open_object(&t(), &bucket, &k("big")).await.unwrap();
    assert_eq!(open.part_sizes(), vec![five as u64, 5]);
    let range = sluice_storage::ByteRange {
        start: five as u64 - 3,
        end_inclusive: five as u64 + 1,
    };
    let mut body = open.into_body(Some(range)).await.unwrap();
    let mut got = Vec::new();
    while let Some(c) = body.next().await {
        got.extend_from_slice(&c.unwrap());
    }
    assert_eq!(got, &want[five - 3..five + 2]);
    assert_eq!(
        walk(&dir.path().join("blobs")),
        2,
        "unused and replaced parts are removed"
    );
    // The upload is gone.
    let err = backend
        .list_parts(&t(), &bucket, &k("big"), &id, 0, 10)
        .await
        .unwrap_err();
    assert!(matches!(err, StorageError::NoSuchUpload));
    // A retried completion (the client timed out waiting for the first) gets the same answer
    // and changes nothing.
    let again = complete(vec![cp(1, &etags[0]), cp(3, &etags[2])])
        .await
        .unwrap();
    assert_eq!(
        (again.etag.as_str(), again.size, again.last_modified_ms),
        (meta.etag.as_str(), meta.size, meta.last_modified_ms)
    );
    assert_eq!(walk(&dir.path().join("blobs")), 2);
    // Deleting the object removes its part blobs.
    backend
        .delete_object(&t(), &bucket, &k("big"))
        .await
        .unwrap();
    assert_eq!(walk(&dir.path().join("blobs")), 0);
    // Once the key no longer holds what the upload made, the upload id is unknown again.
    let err = complete(vec![cp(1, &etags[0]), cp(3, &etags[2])])
        .await
        .unwrap_err();
    assert!(matches!(err, StorageError::NoSuchUpload), "{err:?}");
}

#[tokio::test]
async fn uploads_list_abort_and_expire() {
    let dir = tempfile::tempdir().unwrap();
    let backend = LocalBackend::open(dir.path()).await.unwrap();
    let bucket = b("uploads");
    backend.create_bucket(&t(), &bucket).await.unwrap();
    let mut ids = Vec::new();
    for key in ["a/1", "a/2", "b", "b", "c/d/e"] {
        ids.push((
            key,
            backend
                .create_multipart_upload(
                    &t(),
                    &bucket,
                    &k(key),
                    Default::default(),
                    Default::default(),
                )
                .await
                .unwrap(),
        ));
    }
    let put = PutObject {
        expected_size: Some(3),
        ..Default::default()
    };
    backend
        .upload_part(
            &t(),
            &bucket,
            &k("b"),
            sluice_storage::PartId {
                upload_id: &ids[2].1,
                number: 1,
            },
            put,
            part_body(b"abc"),
        )
        .await
        .unwrap();

    let req = |max: usize,
               key_marker: Option<&str>,
               id_marker: Option<&str>,
               delimiter: Option<&str>| sluice_storage::UploadListRequest {
        prefix: String::new(),
        delimiter: delimiter.map(Into::into),
        key_marker: key_marker.map(Into::into),
        upload_id_marker: id_marker.map(Into::into),
        max_uploads: max,
    };
    let page = backend
        .list_multipart_uploads(&t(), &bucket, req(10, None, None, None))
        .await
        .unwrap();
    let keys: Vec<_> = page.uploads.iter().map(|u| u.key.as_str()).collect();
    assert_eq!(keys, ["a/1", "a/2", "b", "b", "c/d/e"]);
    // Two uploads of "b", listed in creation order.
    assert!(page.uploads[2].upload_id < page.uploads[3].upload_id);
    let page = backend
        .list_multipart_uploads(&t(), &bucket, req(3, None, None, None))
        .await
        .unwrap();
    let (key_marker, id_marker) = page.next.clone().unwrap();
    assert_eq!(key_marker, "b");
    let page = backend
        .list_multipart_uploads(
            &t(),
            &bucket,
            req(10, Some(&key_marker), Some(&id_marker), None),
        )
        .await
        .unwrap();
    assert_eq!(
        page.uploads
            .iter()
            .map(|u| u.key.as_str())
            .collect::<Vec<_>>(),
        ["b", "c/d/e"]
    );
    let page = backend
        .list_multipart_uploads(&t(), &bucket, req(10, None, None, Some("/")))
        .await
        .unwrap();
    assert_eq!(page.common_prefixes, ["a/", "c/"]);
    assert_eq!(page.uploads.len(), 2);

    backend
        .abort_multipart_upload(&t(), &bucket, &k("b"), &ids[2].1)
        .await
        .unwrap();
    assert!(matches!(
        backend
            .abort_multipart_upload(&t(), &bucket, &k("b"), &ids[2].1)
            .await,
        Err(StorageError::NoSuchUpload)
    ));
    assert_eq!(
        walk(&dir.path().join("blobs")),
        0,
        "aborting removes the parts"
    );
    assert!(matches!(
        backend
            .abort_multipart_upload(&t(), &bucket, &k("b"), "not-an-id")
            .await,
        Err(StorageError::NoSuchUpload)
    ));

    assert_eq!(
        backend
            .abort_abandoned_uploads(std::time::Duration::from_secs(3600))
            .await
            .unwrap(),
        0
    );
    let put = PutObject {
        expected_size: Some(3),
        ..Default::default()
    };
    backend
        .upload_part(
            &t(),
            &bucket,
            &k("a/1"),
            sluice_storage::PartId {
                upload_id: &ids[0].1,
                number: 1,
            },
            put,
            part_body(b"abc"),
        )
        .await
        .unwrap();
    backend
        .abort_abandoned_uploads(std::time::Duration::ZERO)
        .await
        .unwrap();
    let page = backend
        .list_multipart_uploads(&t(), &bucket, req(10, None, None, None))
        .await
        .unwrap();
    assert!(
        page.uploads.is_empty(),
        "every upload was older than zero seconds"
    );
    assert_eq!(walk(&dir.path().join("blobs")), 0);
}

#[tokio::test]
async fn conditional_puts_are_checked_at_commit() {
    use sluice_storage::PutCondition;
    let dir = tempfile::tempdir().unwrap();
    let backend = LocalBackend::open(dir.path()).await.unwrap();
    let bucket = b("cond");
    backend.create_bucket(&t(), &bucket).await.unwrap();
    let put = |c: PutCondition| PutObject {
        expected_size: Some(1),
        condition: c,
        ..Default::default()
    };
    backend
        .put_object(
            &t(),
            &bucket,
            &k("k"),
            put(PutCondition::IfNoneMatch),
            part_body(b"1"),
        )
        .await
        .unwrap();
    let err = backend
        .put_object(
            &t(),
            &bucket,
            &k("k"),
            put(PutCondition::IfNoneMatch),
            part_body(b"2"),
        )
        .await
        .unwrap_err();
    assert!(matches!(
        err,
        PutError::Storage(StorageError::PreconditionFailed)
    ));
    let etag = md5_hex(b"1");
    let err = backend
        .put_object(
            &t(),
            &bucket,
            &k("k"),
            put(PutCondition::IfMatch("\"nope\"".into())),
            part_body(b"3"),
        )
        .await
        .unwrap_err();
    assert!(matches!(
        err,
        PutError::Storage(StorageError::PreconditionFailed)
    ));
    backend
        .put_object(
            &t(),
            &bucket,
            &k("k"),
            put(PutCondition::IfMatch(format!("\"{etag}\""))),
            part_body(b"4"),
        )
        .await
        .unwrap();
    assert_eq!(read(&backend, &bucket, "k").await, b"4");
    let err = backend
        .put_object(
            &t(),
            &bucket,
            &k("none"),
            put(PutCondition::IfMatch(format!("\"{etag}\""))),
            part_body(b"5"),
        )
        .await
        .unwrap_err();
    assert!(matches!(err, PutError::Storage(StorageError::NoSuchKey)));
    assert_eq!(walk(&dir.path().join("tmp")), 0);
    assert_eq!(walk(&dir.path().join("blobs")), 1);
}

#[tokio::test]
async fn reopening_sweeps_blobs_no_record_refers_to() {
    let dir = tempfile::tempdir().unwrap();
    {
        let backend = LocalBackend::open(dir.path()).await.unwrap();
        backend.create_bucket(&t(), &b("sweep")).await.unwrap();
        put(&backend, &b("sweep"), "kept", b"referenced").await;
    }
    // What a crash between rename and commit (or commit and unlink) leaves behind.
    let orphan = dir.path().join("blobs/ab/ab0000000000000000000000000000ff");
    std::fs::write(&orphan, b"never committed").unwrap();
    assert_eq!(walk(&dir.path().join("blobs")), 2);
    let backend = LocalBackend::open(dir.path()).await.unwrap();
    assert!(!orphan.exists(), "unreferenced blob swept at open");
    assert_eq!(walk(&dir.path().join("blobs")), 1);
    assert_eq!(read(&backend, &b("sweep"), "kept").await, b"referenced");
}

/// The only blob file of a backend with a single object.
fn only_blob(root: &std::path::Path) -> std::path::PathBuf {
    let mut found = Vec::new();
    for shard in std::fs::read_dir(root.join("blobs")).unwrap().flatten() {
        for f in std::fs::read_dir(shard.path()).unwrap().flatten() {
            found.push(f.path());
        }
    }
    assert_eq!(found.len(), 1);
    found.pop().unwrap()
}

async fn read_range(
    backend: &LocalBackend,
    bucket: &BucketName,
    key: &str,
    start: u64,
    end: u64,
) -> Result<Vec<u8>, StorageError> {
    let open = backend.open_object(&t(), bucket, &k(key)).await?;
    let mut body = open
        .into_body(Some(sluice_storage::ByteRange {
            start,
            end_inclusive: end,
        }))
        .await?;
    let mut out = Vec::new();
    while let Some(chunk) = body.next().await {
        out.extend_from_slice(&chunk?);
    }
    Ok(out)
}

#[tokio::test]
async fn bit_rot_is_detected_never_served() {
    let dir = tempfile::tempdir().unwrap();
    let backend = LocalBackend::open(dir.path()).await.unwrap();
    let bucket = b("rot");
    backend.create_bucket(&t(), &bucket).await.unwrap();
    let data: Vec<u8> = (0..200_000u32).map(|i| (i % 253) as u8).collect();
    put(&backend, &bucket, "k", &data).await;
    // Every range reads back intact while the blob is healthy.
    assert_eq!(
        read_range(&backend, &bucket, "k", 65_530, 131_080)
            .await
            .unwrap(),
        &data[65_530..=131_080]
    );

    // Flip one bit in block 1 (bytes 65536..131071).
    let blob = only_blob(dir.path());
    let mut bytes = std::fs::read(&blob).unwrap();
    bytes[100_000] ^= 0x04;
    std::fs::write(&blob, &bytes).unwrap();
    assert!(matches!(
        read_range(&backend, &bucket, "k", 0, 199_999).await,
        Err(StorageError::Corrupt(_))
    ));
    assert!(matches!(
        read_range(&backend, &bucket, "k", 99_990, 100_010).await,
        Err(StorageError::Corrupt(_))
    ));
    // Blocks that are intact still serve.
    assert_eq!(
        read_range(&backend, &bucket, "k", 0, 65_535).await.unwrap(),
        &data[..65_536]
    );
    assert_eq!(
        read_range(&backend, &bucket, "k", 131_072, 199_999)
            .await
            .unwrap(),
        &data[131_072..]
    );

    // A truncated blob is corrupt too, not a short body.
    std::fs::write(&blob, &bytes[..150_000]).unwrap();
    assert!(matches!(
        read_range(&backend, &bucket, "k", 131_072, 199_999).await,
        Err(StorageError::Corrupt(_))
    ));
}

#[tokio::test]
async fn upload_listing_pages_past_common_prefixes_and_bucket_delete_aborts_uploads() {
    let dir = tempfile::tempdir().unwrap();
    let backend = LocalBackend::open(dir.path()).await.unwrap();
    let bucket = b("pfx");
    backend.create_bucket(&t(), &bucket).await.unwrap();
    for key in ["a/1", "a/2", "b", "c/x"] {
        backend
            .create_multipart_upload(
                &t(),
                &bucket,
                &k(key),
                Default::default(),
                Default::default(),
            )
            .await
            .unwrap();
    }
    let mut entries = Vec::new();
    let (mut key_marker, mut id_marker): (Option<String>, Option<String>) = (None, None);
    for _ in 0..10 {
        let req = sluice_storage::UploadListRequest {
            prefix: String::new(),
            delimiter: Some("/".into()),
            key_marker: key_marker.clone(),
            upload_id_marker: id_marker.clone().filter(|i| !i.is_empty()),
            max_uploads: 1,
        };
        let page = backend
            .list_multipart_uploads(&t(), &bucket, req)
            .await
            .unwrap();
        entries.extend(page.common_prefixes.iter().cloned());
        entries.extend(page.uploads.iter().map(|u| u.key.as_str().to_owned()));
        match page.next {
            Some((k, i)) => (key_marker, id_marker) = (Some(k), Some(i)),
            None => break,
        }
    }
    assert_eq!(
        entries,
        ["a/", "b", "c/"],
        "paging by one must move past each common prefix"
    );
    // A key-marker inside a common prefix: S3 filters out a common prefix that is not
    // lexicographically greater than the key-marker, with or without an upload-id-marker.
    for (marker, id) in [
        ("a/1", None),
        ("a/1", Some("0")),
        ("a/", None),
        ("a/0", None),
    ] {
        let req = sluice_storage::UploadListRequest {
            prefix: String::new(),
            delimiter: Some("/".into()),
            key_marker: Some(marker.into()),
            upload_id_marker: id.map(Into::into),
            max_uploads: 10,
        };
        let page = backend
            .list_multipart_uploads(&t(), &bucket, req)
            .await
            .unwrap();
        let keys: Vec<&str> = page.uploads.iter().map(|u| u.key.as_str()).collect();
        assert_eq!(
            (keys, page.common_prefixes),
            (vec!["b"], vec!["c/".to_owned()]),
            "key_marker={marker:?} upload_id_marker={id:?}"
        );
    }

    let put = PutObject {
        expected_size: Some(3),
        ..Default::default()
    };
    let id = backend
        .create_multipart_upload(
            &t(),
            &bucket,
            &k("z"),
            Default::default(),
            Default::default(),
        )
        .await
        .unwrap();
    backend
        .upload_part(
            &t(),
            &bucket,
            &k("z"),
            sluice_storage::PartId {
                upload_id: &id,
                number: 1,
            },
            put,
            part_body(b"abc"),
        )
        .await
        .unwrap();
    backend.delete_bucket(&t(), &bucket).await.unwrap();
    assert_eq!(
        walk(&dir.path().join("blobs")),
        0,
        "the bucket's uploads and parts went with it"
    );
    backend.create_bucket(&t(), &bucket).await.unwrap();
    let page = backend
        .list_multipart_uploads(
            &t(),
            &bucket,
            sluice_storage::UploadListRequest {
                max_uploads: 10,
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert!(
        page.uploads.is_empty(),
        "a re-created bucket starts without old uploads"
    );
}

/// An operator may spread shard directories over disks with symlinks: reads follow them, from
/// the kernel's caches or not.
#[tokio::test]
async fn shard_directories_may_be_symlinks() {
    let dir = tempfile::tempdir().unwrap();
    let elsewhere = tempfile::tempdir().unwrap();
    let backend = LocalBackend::open(dir.path()).await.unwrap();
    let bucket = b("linked");
    backend.create_bucket(&t(), &bucket).await.unwrap();
    put(&backend, &bucket, "k", b"on another disk").await;
    let shard = only_blob(dir.path()).parent().unwrap().to_path_buf();
    let moved = elsewhere.path().join(shard.file_name().unwrap());
    std::fs::rename(&shard, &moved).unwrap();
    std::os::unix::fs::symlink(&moved, &shard).unwrap();
    assert_eq!(read(&backend, &bucket, "k").await, b"on another disk");
}
