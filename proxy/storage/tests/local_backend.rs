//! The local backend through its public API: listing semantics (a model check against a
//! brute-force listing), atomic overwrite, failed bodies storing nothing, bucket rules.

use std::collections::BTreeSet;

use bytes::Bytes;
use futures_util::StreamExt;
use sluice_storage::{
    Backend, BodyError, BucketName, ListRequest, LocalBackend, NewUpload, ObjectBody, ObjectKey,
    Preconditions, PutBody, PutObject, ReadRange, ReadRequest, StorageError, TenantId,
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

/// Boxes a stream of chunks into a request body.
fn boxed(
    body: impl futures_util::Stream<Item = Result<Bytes, BodyError>> + Send + 'static,
) -> PutBody {
    Box::pin(body)
}

/// A body that yields `chunks` in order (an `Err` is the client's side failing a check).
fn body_of(chunks: Vec<Result<Bytes, BodyError>>) -> PutBody {
    boxed(futures_util::stream::iter(chunks))
}

/// What the server's body adapter reports when a chunk signature or checksum fails.
fn body_error(message: &'static str) -> BodyError {
    BodyError(message.into())
}

async fn put(backend: &LocalBackend, bucket: &BucketName, key: &str, data: &[u8]) {
    let body = part_body(data);
    let put = PutObject {
        expected_size: Some(data.len() as u64),
        ..Default::default()
    };
    backend
        .put_object(&t(), bucket, &k(key), put, body)
        .await
        .unwrap();
}

/// A GET of the whole object, without conditions.
fn whole() -> ReadRequest {
    ReadRequest::default()
}

/// A GET of `range`, without conditions.
fn ranged(range: ReadRange) -> ReadRequest {
    ReadRequest {
        range: Some(range),
        ..Default::default()
    }
}

/// Everything a body holds, or the first error it ends with.
async fn collect(mut body: ObjectBody) -> Result<Vec<u8>, StorageError> {
    let mut out = Vec::new();
    while let Some(chunk) = body.next().await {
        out.extend_from_slice(&chunk?);
    }
    Ok(out)
}

async fn read(backend: &LocalBackend, bucket: &BucketName, key: &str) -> Vec<u8> {
    let open = backend
        .get_object(&t(), bucket, &k(key), whole())
        .await
        .unwrap();
    assert_eq!(open.range, None);
    collect(open.body).await.unwrap()
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
/// from the last key) as its next `marker`, v2 hands `NextContinuationToken` (the store's
/// opaque token) back as `continuation`, sending its `start-after` again beside it. Both start
/// from the client's `marker` / `start-after`.
#[derive(Debug, Clone, Copy)]
enum Paging {
    V1Marker,
    V2Continuation,
}

/// Pages through a whole listing from `start_after`, checking every page against the model:
/// its entries, whether it is truncated (a token is issued exactly then), and its resume point
/// (`NextMarker`, the last entry it returned). Returns how many pages it took.
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
    let mut token: Option<String> = None;
    let mut done = 0usize;
    let mut pages = 0usize;
    loop {
        let ctx = format!(
            "prefix={prefix:?} delimiter={delimiter:?} start_after={start_after:?} page={page} \
             {paging:?} page#={pages} resume={resume:?} token={token:?}"
        );
        let req = ListRequest {
            prefix: prefix.into(),
            delimiter: delimiter.map(Into::into),
            start_after: resume.clone(),
            continuation: token.clone(),
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
        assert_eq!(result.next_token.is_some(), truncated, "{ctx}: IsTruncated");
        // NextMarker: the last key or common prefix of the page, so the next page neither
        // repeats nor skips one.
        assert_eq!(
            result.last_entry(),
            expected.last().map(|(n, _)| n.as_str()),
            "{ctx}: resume point"
        );
        let Some(next_token) = result.next_token.clone() else {
            return pages;
        };
        let next_marker = result.last_entry().expect("a truncated page has entries");
        match paging {
            // The client sends its start-after again; the token wins over it.
            Paging::V2Continuation => token = Some(next_token),
            Paging::V1Marker if delimiter.is_some() => resume = Some(next_marker.to_owned()),
            Paging::V1Marker => {
                resume = Some(keys_got.last().expect("a truncated page has keys").clone())
            }
        }
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
                    Paging::V2Continuation,
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
                ..Default::default()
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
        let paging = *rng.pick(&[Paging::V1Marker, Paging::V2Continuation]);
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
    let open_v1 = backend
        .get_object(&t(), &bucket, &k("k"), whole())
        .await
        .unwrap();
    put(&backend, &bucket, "k", b"version two!").await;
    assert_eq!(open_v1.meta.etag, md5_hex(b"version one"));
    let got = collect(open_v1.body).await.unwrap();
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

    let body = body_of(vec![
        Ok(Bytes::from_static(b"partial")),
        Err(body_error("signature mismatch")),
    ]);
    let put_req = PutObject {
        expected_size: Some(100),
        ..Default::default()
    };
    let err = backend
        .put_object(&t(), &bucket, &k("k"), put_req, body)
        .await
        .unwrap_err();
    match &err {
        StorageError::Body(e) => assert!(e.to_string().contains("signature mismatch"), "{e}"),
        other => panic!("expected the body's own error, got {other:?}"),
    }
    assert!(!err.is_internal(), "a failed body is the client's fault");

    let body = part_body(b"short");
    let put_req = PutObject {
        expected_size: Some(100),
        ..Default::default()
    };
    let err = backend
        .put_object(&t(), &bucket, &k("k"), put_req, body)
        .await
        .unwrap_err();
    assert!(matches!(err, StorageError::IncompleteBody), "{err:?}");

    let body = part_body(b"bad md5");
    let put_req = PutObject {
        expected_size: Some(7),
        content_md5: Some([0; 16]),
        ..Default::default()
    };
    let err = backend
        .put_object(&t(), &bucket, &k("k"), put_req, body)
        .await
        .unwrap_err();
    assert!(matches!(err, StorageError::BadDigest), "{err:?}");

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
    let body = boxed(futures_util::stream::iter(
        (0..70u32).map(move |i| Ok(chunk(i))),
    ));
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
    let body = boxed(futures_util::stream::iter(
        (0..70u32).map(move |i| Ok(chunk(i))),
    ));
    let err = backend
        .put_object(&t(), &bucket, &k("other"), put, body)
        .await
        .unwrap_err();
    assert!(matches!(err, StorageError::BadDigest), "{err:?}");
    assert_eq!(walk(&dir.path().join("tmp")), 0);
}

/// A body of one chunk.
fn part_body(data: &[u8]) -> PutBody {
    body_of(vec![Ok(Bytes::copy_from_slice(data))])
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
        .create_multipart_upload(&t(), &bucket, &k("big"), NewUpload::default())
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
                    customer_key: None,
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
                customer_key: None,
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
    // The object keeps its part layout: parts of five MiB and five bytes, read by number.
    let part = |n: u32| {
        let (backend, bucket) = (&backend, &bucket);
        async move {
            let open = backend
                .get_object(&t(), bucket, &k("big"), ranged(ReadRange::Part(n)))
                .await?;
            let range = open.range.expect("a part read is a range");
            Ok::<_, StorageError>(((range.start, range.len()), collect(open.body).await?))
        }
    };
    assert_eq!(part(1).await.unwrap(), ((0, five as u64), p1.clone()));
    assert_eq!(
        part(2).await.unwrap(),
        ((five as u64, 5), b"tail!".to_vec())
    );
    for n in [0, 3] {
        let err = part(n).await.unwrap_err();
        assert!(matches!(err, StorageError::InvalidPartNumber), "{err:?}");
    }
    let head = backend
        .head_object(&t(), &bucket, &k("big"), ranged(ReadRange::Part(2)))
        .await
        .unwrap();
    assert_eq!(
        head.range,
        Some(sluice_storage::ByteRange {
            start: five as u64,
            end_inclusive: five as u64 + 4,
        })
    );
    assert_eq!(head.meta.parts, Some(2));
    assert!(
        collect(head.body).await.unwrap().is_empty(),
        "HEAD has no body"
    );
    // A range across the part boundary.
    let range = ReadRange::From {
        first: five as u64 - 3,
        last: Some(five as u64 + 1),
    };
    let open = backend
        .get_object(&t(), &bucket, &k("big"), ranged(range))
        .await
        .unwrap();
    assert_eq!(open.range.map(|r| r.len()), Some(5));
    let got = collect(open.body).await.unwrap();
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
                .create_multipart_upload(&t(), &bucket, &k(key), NewUpload::default())
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
                customer_key: None,
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
                customer_key: None,
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
    assert!(
        matches!(err, StorageError::PreconditionFailed { .. }),
        "{err:?}"
    );
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
    assert!(
        matches!(err, StorageError::PreconditionFailed { .. }),
        "{err:?}"
    );
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
    assert!(matches!(err, StorageError::NoSuchKey), "{err:?}");
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
    let range = ReadRange::Exact {
        first: start,
        last: end,
    };
    let open = backend
        .get_object(&t(), bucket, &k(key), ranged(range))
        .await?;
    assert_eq!(
        open.range,
        Some(sluice_storage::ByteRange {
            start,
            end_inclusive: end,
        })
    );
    collect(open.body).await
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
            .create_multipart_upload(&t(), &bucket, &k(key), NewUpload::default())
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
        .create_multipart_upload(&t(), &bucket, &k("z"), NewUpload::default())
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
                customer_key: None,
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

/// Read preconditions are checked by the store against the object it reads: a matching
/// `If-None-Match` is 304 (with the object's record), an `If-Match` that does not match is 412,
/// on GET and on HEAD alike.
#[tokio::test]
async fn conditional_reads_answer_not_modified_or_precondition_failed() {
    let dir = tempfile::tempdir().unwrap();
    let backend = LocalBackend::open(dir.path()).await.unwrap();
    let bucket = b("cond-read");
    backend.create_bucket(&t(), &bucket).await.unwrap();
    put(&backend, &bucket, "k", b"conditional").await;
    let etag = md5_hex(b"conditional");
    let when = |conditions: Preconditions| ReadRequest {
        conditions,
        ..Default::default()
    };

    let if_none_match = Preconditions {
        if_none_match: Some(format!("\"{etag}\"")),
        ..Default::default()
    };
    let err = backend
        .get_object(&t(), &bucket, &k("k"), when(if_none_match.clone()))
        .await
        .unwrap_err();
    match &err {
        StorageError::NotModified(meta) => {
            assert_eq!(meta.etag, etag);
            assert_eq!(meta.size, 11);
        }
        other => panic!("expected NotModified, got {other:?}"),
    }
    assert!(!err.is_internal());
    let err = backend
        .head_object(&t(), &bucket, &k("k"), when(if_none_match))
        .await
        .unwrap_err();
    assert!(matches!(err, StorageError::NotModified(_)), "{err:?}");

    let if_match_wrong = Preconditions {
        if_match: Some("\"0123456789abcdef0123456789abcdef\"".into()),
        ..Default::default()
    };
    for head in [false, true] {
        let err = if head {
            backend
                .head_object(&t(), &bucket, &k("k"), when(if_match_wrong.clone()))
                .await
                .unwrap_err()
        } else {
            backend
                .get_object(&t(), &bucket, &k("k"), when(if_match_wrong.clone()))
                .await
                .unwrap_err()
        };
        assert!(
            matches!(err, StorageError::PreconditionFailed { .. }),
            "head={head}: {err:?}"
        );
    }

    // The conditions that hold let the read through: a matching If-Match, an If-None-Match
    // for another version.
    let open = backend
        .get_object(
            &t(),
            &bucket,
            &k("k"),
            when(Preconditions {
                if_match: Some(format!("\"{etag}\"")),
                if_none_match: Some("\"0123456789abcdef0123456789abcdef\"".into()),
                ..Default::default()
            }),
        )
        .await
        .unwrap();
    assert_eq!(collect(open.body).await.unwrap(), b"conditional");
    // A key that does not exist is 404 whatever the conditions.
    let err = backend
        .get_object(
            &t(),
            &bucket,
            &k("missing"),
            when(Preconditions {
                if_none_match: Some("*".into()),
                ..Default::default()
            }),
        )
        .await
        .unwrap_err();
    assert!(matches!(err, StorageError::NoSuchKey), "{err:?}");
}

/// Paging with the store's own tokens: handed back as `continuation`, they visit every key
/// exactly once, in order; a token the store did not issue is refused.
#[tokio::test]
async fn continuation_tokens_page_through_every_key_once() {
    let dir = tempfile::tempdir().unwrap();
    let backend = LocalBackend::open(dir.path()).await.unwrap();
    let keys: BTreeSet<String> = (0..23)
        .map(|i| format!("dir{}/key-{i:02}", i % 3))
        .chain(["top".to_owned(), "é".to_owned()])
        .collect();
    let bucket = bucket_with(&backend, "tokens", &keys).await;

    for (delimiter, max_keys) in [
        (None, 1),
        (None, 4),
        (None, 25),
        (Some("/"), 1),
        (Some("/"), 2),
    ] {
        let mut seen: Vec<String> = Vec::new();
        let mut token = None;
        let mut pages = 0;
        loop {
            let req = ListRequest {
                delimiter: delimiter.map(Into::into),
                continuation: token.take(),
                max_keys,
                ..Default::default()
            };
            let page = backend.list_objects(&t(), &bucket, req).await.unwrap();
            pages += 1;
            assert!(page.objects.len() + page.common_prefixes.len() <= max_keys);
            seen.extend(page.objects.iter().map(|(k, _)| k.as_str().to_owned()));
            seen.extend(page.common_prefixes.iter().cloned());
            match page.next_token {
                Some(next) => token = Some(next),
                None => break,
            }
            assert!(pages <= keys.len(), "paging does not end");
        }
        let want: Vec<String> = match delimiter {
            None => keys.iter().cloned().collect(),
            Some(_) => ["dir0/", "dir1/", "dir2/", "top", "é"]
                .map(String::from)
                .into(),
        };
        seen.sort();
        assert_eq!(seen, want, "delimiter={delimiter:?} max_keys={max_keys}");
        assert_eq!(pages, want.len().div_ceil(max_keys).max(1));
    }

    // Garbage is not a token: not base64url, or not a key once decoded.
    for garbage in ["%%% not a token %%%", "a+b/c==", "_w"] {
        let req = ListRequest {
            continuation: Some(garbage.into()),
            max_keys: 10,
            ..Default::default()
        };
        let err = backend.list_objects(&t(), &bucket, req).await.unwrap_err();
        assert!(
            matches!(err, StorageError::InvalidToken),
            "{garbage:?}: {err:?}"
        );
        assert!(!err.is_internal());
    }
}
