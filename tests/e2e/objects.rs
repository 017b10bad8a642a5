//! Buckets and objects through aws-sdk-s3: every operation of the local backend's first part.

use std::collections::BTreeSet;

use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{BucketLocationConstraint, CreateBucketConfiguration};
use sha2::{Digest, Sha256};
use sluice_tests::Sluice;

use crate::support::{bucket, client, code, get_bytes, http_status, make_bucket, sha256_hex};

#[tokio::test(flavor = "multi_thread")]
async fn bucket_lifecycle() {
    let s = Sluice::start();
    let c = client(&s);
    let b = bucket("life");
    c.create_bucket().bucket(&b).send().await.unwrap();
    let err = c.create_bucket().bucket(&b).send().await.unwrap_err();
    assert_eq!(code(&err), "BucketAlreadyOwnedByYou");
    c.head_bucket().bucket(&b).send().await.unwrap();

    let names: Vec<String> = c
        .list_buckets()
        .send()
        .await
        .unwrap()
        .buckets()
        .iter()
        .filter_map(|b| b.name().map(str::to_owned))
        .collect();
    assert_eq!(names, vec![b.clone()]);

    c.put_object()
        .bucket(&b)
        .key("k")
        .body(ByteStream::from_static(b"x"))
        .send()
        .await
        .unwrap();
    let err = c.delete_bucket().bucket(&b).send().await.unwrap_err();
    assert_eq!(
        (code(&err).as_str(), http_status(&err)),
        ("BucketNotEmpty", 409)
    );
    c.delete_object().bucket(&b).key("k").send().await.unwrap();
    c.delete_bucket().bucket(&b).send().await.unwrap();

    let err = c.head_bucket().bucket(&b).send().await.unwrap_err();
    assert_eq!(http_status(&err), 404);
    let err = c.delete_bucket().bucket(&b).send().await.unwrap_err();
    assert_eq!(code(&err), "NoSuchBucket");
    assert!(c.list_buckets().send().await.unwrap().buckets().is_empty());

    // A location constraint for another region is refused, as S3's regional endpoints do.
    let conf = CreateBucketConfiguration::builder()
        .location_constraint(BucketLocationConstraint::EuWest1)
        .build();
    let err = c
        .create_bucket()
        .bucket(bucket("loc"))
        .create_bucket_configuration(conf)
        .send()
        .await
        .unwrap_err();
    assert_eq!(code(&err), "IllegalLocationConstraintException");
}

#[tokio::test(flavor = "multi_thread")]
async fn invalid_bucket_names_and_keys() {
    let s = Sluice::start();
    let c = client(&s);
    for bad in ["ab", "Has-Upper", "a..b", "192.168.0.1", "bucket-"] {
        let err = c.create_bucket().bucket(bad).send().await.unwrap_err();
        assert_eq!(code(&err), "InvalidBucketName", "{bad}");
    }
    let b = make_bucket(&c, "keys").await;
    let long = "k".repeat(1025);
    let err = c
        .put_object()
        .bucket(&b)
        .key(&long)
        .body(ByteStream::from_static(b"x"))
        .send()
        .await
        .unwrap_err();
    assert_eq!(code(&err), "KeyTooLongError");
    let max = "k".repeat(1024);
    c.put_object()
        .bucket(&b)
        .key(&max)
        .body(ByteStream::from_static(b"x"))
        .send()
        .await
        .unwrap();
    assert_eq!(get_bytes(&c, &b, &max).await, b"x");
}

#[tokio::test(flavor = "multi_thread")]
async fn object_round_trip_with_metadata_and_headers() {
    let s = Sluice::start();
    let c = client(&s);
    let b = make_bucket(&c, "meta").await;
    let body = b"hello, sluice".to_vec();
    let put = c
        .put_object()
        .bucket(&b)
        .key("dir/hello.txt")
        .body(ByteStream::from(body.clone()))
        .content_type("text/plain")
        .cache_control("max-age=60")
        .content_disposition("attachment; filename=\"hello.txt\"")
        .content_encoding("identity")
        .content_language("en")
        .expires(aws_smithy_types::DateTime::from_secs(2_000_000_000))
        .metadata("colour", "blue")
        .metadata("Mixed-Case", "Value")
        .send()
        .await
        .unwrap();
    let md5 = hex_md5(&body);
    assert_eq!(put.e_tag(), Some(format!("\"{md5}\"").as_str()));

    let head = c
        .head_object()
        .bucket(&b)
        .key("dir/hello.txt")
        .send()
        .await
        .unwrap();
    assert_eq!(head.content_length(), Some(body.len() as i64));
    assert_eq!(head.content_type(), Some("text/plain"));
    assert_eq!(head.cache_control(), Some("max-age=60"));
    assert_eq!(
        head.content_disposition(),
        Some("attachment; filename=\"hello.txt\"")
    );
    assert_eq!(head.content_encoding(), Some("identity"));
    assert_eq!(head.content_language(), Some("en"));
    assert_eq!(head.expires_string(), Some("Wed, 18 May 2033 03:33:20 GMT"));
    assert_eq!(head.e_tag(), Some(format!("\"{md5}\"").as_str()));
    let meta = head.metadata().unwrap();
    assert_eq!(meta.get("colour").map(String::as_str), Some("blue"));
    assert_eq!(meta.get("mixed-case").map(String::as_str), Some("Value"));

    let get = c
        .get_object()
        .bucket(&b)
        .key("dir/hello.txt")
        .send()
        .await
        .unwrap();
    assert_eq!(get.content_type(), Some("text/plain"));
    assert_eq!(
        get.body.collect().await.unwrap().into_bytes().as_ref(),
        body.as_slice()
    );

    // Overwrite replaces the whole object, metadata included.
    c.put_object()
        .bucket(&b)
        .key("dir/hello.txt")
        .body(ByteStream::from_static(b"v2"))
        .send()
        .await
        .unwrap();
    let head = c
        .head_object()
        .bucket(&b)
        .key("dir/hello.txt")
        .send()
        .await
        .unwrap();
    assert_eq!(head.content_length(), Some(2));
    assert!(head.metadata().is_none_or(|m| m.is_empty()));
    assert_ne!(head.content_type(), Some("text/plain"));
    assert!(head.cache_control().is_none());

    c.delete_object()
        .bucket(&b)
        .key("dir/hello.txt")
        .send()
        .await
        .unwrap();
    let err = c
        .get_object()
        .bucket(&b)
        .key("dir/hello.txt")
        .send()
        .await
        .unwrap_err();
    assert_eq!((code(&err).as_str(), http_status(&err)), ("NoSuchKey", 404));
    let err = c
        .head_object()
        .bucket(&b)
        .key("dir/hello.txt")
        .send()
        .await
        .unwrap_err();
    assert_eq!(http_status(&err), 404);
    // Deleting what is not there succeeds, as in S3.
    c.delete_object()
        .bucket(&b)
        .key("dir/hello.txt")
        .send()
        .await
        .unwrap();
    let err = c
        .get_object()
        .bucket("no-such-bucket-here")
        .key("k")
        .send()
        .await
        .unwrap_err();
    assert_eq!(code(&err), "NoSuchBucket");
}

fn hex_md5(data: &[u8]) -> String {
    use md5::Digest as _;
    hex::encode(md5::Md5::digest(data))
}

#[tokio::test(flavor = "multi_thread")]
async fn range_reads() {
    let s = Sluice::start();
    let c = client(&s);
    let b = make_bucket(&c, "range").await;
    let data: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
    c.put_object()
        .bucket(&b)
        .key("r")
        .body(ByteStream::from(data.clone()))
        .send()
        .await
        .unwrap();
    for (range, start, end) in [
        ("bytes=0-0", 0, 1),
        ("bytes=0-1023", 0, 1024),
        ("bytes=5000-70000", 5000, 70001),
        ("bytes=99990-", 99990, 100_000),
        ("bytes=-10", 99990, 100_000),
        ("bytes=99000-200000", 99000, 100_000),
    ] {
        let out = c
            .get_object()
            .bucket(&b)
            .key("r")
            .range(range)
            .send()
            .await
            .unwrap();
        assert_eq!(out.content_length(), Some((end - start) as i64), "{range}");
        assert_eq!(
            out.content_range(),
            Some(format!("bytes {start}-{}/100000", end - 1).as_str()),
            "{range}"
        );
        let got = out.body.collect().await.unwrap().into_bytes();
        assert_eq!(got.as_ref(), &data[start..end], "{range}");
    }
    let err = c
        .get_object()
        .bucket(&b)
        .key("r")
        .range("bytes=100000-")
        .send()
        .await
        .unwrap_err();
    assert_eq!(
        (code(&err).as_str(), http_status(&err)),
        ("InvalidRange", 416)
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn list_objects_v2_pagination_prefix_delimiter() {
    let s = Sluice::start();
    let c = client(&s);
    let b = make_bucket(&c, "list").await;
    let mut keys = BTreeSet::new();
    for dir in ["a", "b", "c"] {
        for i in 0..7 {
            keys.insert(format!("{dir}/{i:02}"));
        }
    }
    keys.extend([
        "top1".to_owned(),
        "top2".to_owned(),
        "a-file".to_owned(),
        "b/deep/x".to_owned(),
    ]);
    for k in &keys {
        c.put_object()
            .bucket(&b)
            .key(k)
            .body(ByteStream::from(k.clone().into_bytes()))
            .send()
            .await
            .unwrap();
    }

    // Full listing in pages of 5 through the SDK paginator.
    let pages: Vec<_> = c
        .list_objects_v2()
        .bucket(&b)
        .max_keys(5)
        .into_paginator()
        .send()
        .collect::<Result<_, _>>()
        .await
        .unwrap();
    assert_eq!(pages.len(), keys.len().div_ceil(5));
    let listed: Vec<String> = pages
        .iter()
        .flat_map(|p| p.contents().iter().map(|o| o.key().unwrap().to_owned()))
        .collect();
    assert_eq!(listed, keys.iter().cloned().collect::<Vec<_>>());
    let first = &pages[0].contents()[0];
    assert_eq!(first.size(), Some(first.key().unwrap().len() as i64));

    // Delimiter: common prefixes count toward max-keys and are listed once each.
    let pages: Vec<_> = c
        .list_objects_v2()
        .bucket(&b)
        .delimiter("/")
        .max_keys(2)
        .into_paginator()
        .send()
        .collect::<Result<_, _>>()
        .await
        .unwrap();
    let prefixes: Vec<String> = pages
        .iter()
        .flat_map(|p| {
            p.common_prefixes()
                .iter()
                .map(|cp| cp.prefix().unwrap().to_owned())
        })
        .collect();
    let files: Vec<String> = pages
        .iter()
        .flat_map(|p| p.contents().iter().map(|o| o.key().unwrap().to_owned()))
        .collect();
    assert_eq!(prefixes, ["a/", "b/", "c/"]);
    assert_eq!(files, ["a-file", "top1", "top2"]);

    // Prefix + delimiter inside a "directory".
    let out = c
        .list_objects_v2()
        .bucket(&b)
        .prefix("b/")
        .delimiter("/")
        .send()
        .await
        .unwrap();
    assert_eq!(
        out.common_prefixes()
            .iter()
            .map(|p| p.prefix().unwrap())
            .collect::<Vec<_>>(),
        ["b/deep/"]
    );
    assert_eq!(out.contents().len(), 7);
    assert_eq!(out.key_count(), Some(8));

    // start-after
    let out = c
        .list_objects_v2()
        .bucket(&b)
        .start_after("c/05")
        .send()
        .await
        .unwrap();
    let after: Vec<_> = out.contents().iter().map(|o| o.key().unwrap()).collect();
    assert_eq!(after, ["c/06", "top1", "top2"]);

    // A bogus continuation token is refused, not ignored.
    let err = c
        .list_objects_v2()
        .bucket(&b)
        .continuation_token("!!!")
        .send()
        .await
        .unwrap_err();
    assert_eq!(code(&err), "InvalidArgument");

    // ListObjects v1 with marker.
    let out = c
        .list_objects()
        .bucket(&b)
        .marker("b/06")
        .max_keys(3)
        .send()
        .await
        .unwrap();
    let v1: Vec<_> = out.contents().iter().map(|o| o.key().unwrap()).collect();
    assert_eq!(v1, ["b/deep/x", "c/00", "c/01"]);
    assert_eq!(out.is_truncated(), Some(true));
}

#[tokio::test(flavor = "multi_thread")]
async fn listing_with_url_encoding() {
    let s = Sluice::start();
    let c = client(&s);
    let b = make_bucket(&c, "enc").await;
    let keys = ["with space/é", "plus+sign", "percent%41", "ünïcödé/🙂"];
    for k in keys {
        c.put_object()
            .bucket(&b)
            .key(k)
            .body(ByteStream::from_static(b"x"))
            .send()
            .await
            .unwrap();
    }
    // With encoding-type=url the keys come back percent-encoded; the Rust SDK leaves them so.
    let out = c
        .list_objects_v2()
        .bucket(&b)
        .encoding_type(aws_sdk_s3::types::EncodingType::Url)
        .send()
        .await
        .unwrap();
    assert_eq!(
        out.encoding_type(),
        Some(&aws_sdk_s3::types::EncodingType::Url)
    );
    let mut want: Vec<_> = keys.to_vec();
    want.sort();
    let got: Vec<_> = out.contents().iter().map(|o| o.key().unwrap()).collect();
    assert!(
        got.iter().all(|k| !k.contains(' ') && k.is_ascii()),
        "{got:?}"
    );
    let decoded: Vec<String> = got
        .iter()
        .map(|k| {
            percent_encoding::percent_decode_str(k)
                .decode_utf8()
                .unwrap()
                .into_owned()
        })
        .collect();
    assert_eq!(decoded, want);
    let plain = c.list_objects_v2().bucket(&b).send().await.unwrap();
    let got: Vec<_> = plain.contents().iter().map(|o| o.key().unwrap()).collect();
    assert_eq!(got, want);
    for k in keys {
        assert_eq!(get_bytes(&c, &b, k).await, b"x", "{k}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn path_traversal_keys_stay_inside_the_data_directory() {
    let s = Sluice::start();
    let c = client(&s);
    let b = make_bucket(&c, "trav").await;
    let before = tree(s.dir.path());
    let keys = [
        "../escape",
        "../../../../tmp/sluice-escape",
        "/abs/path",
        "a//b",
        "./dot",
        "dir/../up",
        "..",
        ".",
        "%2e%2e/x",
    ];
    for (i, k) in keys.iter().enumerate() {
        let body = format!("payload {i}");
        c.put_object()
            .bucket(&b)
            .key(*k)
            .body(ByteStream::from(body.clone().into_bytes()))
            .send()
            .await
            .unwrap_or_else(|e| panic!("{k}: {e:?}"));
        assert_eq!(get_bytes(&c, &b, k).await, body.as_bytes(), "{k}");
    }
    let listed: BTreeSet<String> = c
        .list_objects_v2()
        .bucket(&b)
        .send()
        .await
        .unwrap()
        .contents()
        .iter()
        .map(|o| o.key().unwrap().to_owned())
        .collect();
    assert_eq!(listed, keys.iter().map(|k| k.to_string()).collect());
    // Nothing appeared outside the data directory, and no file inside it is named after a key.
    let after = tree(s.dir.path());
    let new: Vec<_> = after
        .difference(&before)
        .filter(|p| !p.starts_with(s.data_dir()))
        .collect();
    assert!(
        new.is_empty(),
        "files created outside the data dir: {new:?}"
    );
    assert!(!std::path::Path::new("/tmp/sluice-escape").exists());
    assert!(!s.dir.path().join("escape").exists());
    for p in after.iter().filter(|p| p.starts_with(s.data_dir())) {
        let name = p.file_name().unwrap().to_string_lossy();
        assert!(
            !["escape", "path", "b", "dot", "up", "x"].contains(&name.as_ref()),
            "{p:?}"
        );
    }
}

fn tree(root: &std::path::Path) -> BTreeSet<std::path::PathBuf> {
    let mut out = BTreeSet::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for e in std::fs::read_dir(&dir).unwrap().flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p.clone());
            }
            out.insert(p);
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread")]
async fn upload_64_mib_and_compare_sha256() {
    let s = Sluice::start();
    let c = client(&s);
    let b = make_bucket(&c, "big").await;
    let path = s.dir.path().join("big.bin");
    let mut hasher = Sha256::new();
    {
        use std::io::Write;
        let mut f = std::io::BufWriter::new(std::fs::File::create(&path).unwrap());
        let mut block = vec![0u8; 1 << 20];
        for i in 0..64u32 {
            for (j, byte) in block.iter_mut().enumerate() {
                *byte = (j as u32)
                    .wrapping_mul(2_654_435_761)
                    .wrapping_add(i)
                    .to_le_bytes()[1];
            }
            hasher.update(&block);
            f.write_all(&block).unwrap();
        }
    }
    let want = hex::encode(hasher.finalize());
    c.put_object()
        .bucket(&b)
        .key("big.bin")
        .body(ByteStream::from_path(&path).await.unwrap())
        .send()
        .await
        .unwrap();
    let mut out = c
        .get_object()
        .bucket(&b)
        .key("big.bin")
        .send()
        .await
        .unwrap();
    assert_eq!(out.content_length(), Some(64 << 20));
    let mut hasher = Sha256::new();
    let mut total = 0usize;
    while let Some(chunk) = out.body.next().await {
        let chunk = chunk.unwrap();
        total += chunk.len();
        hasher.update(&chunk);
    }
    assert_eq!(total, 64 << 20);
    assert_eq!(hex::encode(hasher.finalize()), want);
    assert_eq!(
        sha256_hex(b""),
        "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn tenants_do_not_see_each_others_buckets() {
    let s = Sluice::start();
    let out = s.keys(&["create", "--tenant", "other"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (id, secret) = crate::auth::parse_created_key(&out.stdout);
    let a = client(&s);
    let b = make_bucket(&a, "mine").await;
    a.put_object()
        .bucket(&b)
        .key("k")
        .body(ByteStream::from_static(b"x"))
        .send()
        .await
        .unwrap();
    let other = crate::support::client_with(&s, &id, &secret);
    let listed =
        crate::auth::eventually(|| async { other.list_buckets().send().await.is_ok() }).await;
    assert!(listed, "new key never accepted");
    assert!(
        other
            .list_buckets()
            .send()
            .await
            .unwrap()
            .buckets()
            .is_empty()
    );
    let err = other
        .get_object()
        .bucket(&b)
        .key("k")
        .send()
        .await
        .unwrap_err();
    assert_eq!(code(&err), "NoSuchBucket");
    // The same name is free in the other tenant's namespace.
    other.create_bucket().bucket(&b).send().await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn conditional_gets_and_unsupported_headers() {
    let s = Sluice::start();
    let c = client(&s);
    let b = make_bucket(&c, "cond").await;
    let put = c
        .put_object()
        .bucket(&b)
        .key("k")
        .body(ByteStream::from_static(b"v1"))
        .send()
        .await
        .unwrap();
    let etag = put.e_tag().unwrap().to_owned();

    let ok = c
        .get_object()
        .bucket(&b)
        .key("k")
        .if_match(&etag)
        .send()
        .await
        .unwrap();
    assert_eq!(
        ok.body.collect().await.unwrap().into_bytes().as_ref(),
        b"v1"
    );
    let err = c
        .get_object()
        .bucket(&b)
        .key("k")
        .if_match("\"other\"")
        .send()
        .await
        .unwrap_err();
    assert_eq!(
        (code(&err).as_str(), http_status(&err)),
        ("PreconditionFailed", 412)
    );
    let err = c
        .get_object()
        .bucket(&b)
        .key("k")
        .if_none_match(&etag)
        .send()
        .await
        .unwrap_err();
    assert_eq!(http_status(&err), 304);
    let err = c
        .head_object()
        .bucket(&b)
        .key("k")
        .if_none_match(&etag)
        .send()
        .await
        .unwrap_err();
    assert_eq!(http_status(&err), 304);
    let future = aws_smithy_types::DateTime::from_secs(4_000_000_000);
    let err = c
        .get_object()
        .bucket(&b)
        .key("k")
        .if_modified_since(future)
        .send()
        .await
        .unwrap_err();
    assert_eq!(http_status(&err), 304);
    let past = aws_smithy_types::DateTime::from_secs(1_000_000_000);
    let err = c
        .get_object()
        .bucket(&b)
        .key("k")
        .if_unmodified_since(past)
        .send()
        .await
        .unwrap_err();
    assert_eq!(http_status(&err), 412);

    // SSE-C over plain HTTP is refused, as S3 refuses it.
    let err = c
        .put_object()
        .bucket(&b)
        .key("k")
        .body(ByteStream::from_static(b"v2"))
        .sse_customer_algorithm("AES256")
        .sse_customer_key("MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=")
        .sse_customer_key_md5("zZ5FnqcIqUjVwvWmyog4zw==")
        .send()
        .await
        .unwrap_err();
    assert_eq!(
        (code(&err).as_str(), http_status(&err)),
        ("InvalidRequest", 400)
    );
    // Features not implemented are refused, never silently ignored.
    let err = c
        .put_object()
        .bucket(&b)
        .key("k")
        .body(ByteStream::from_static(b"v2"))
        .server_side_encryption(aws_sdk_s3::types::ServerSideEncryption::AwsKms)
        .ssekms_key_id("alias/some-key")
        .send()
        .await
        .unwrap_err();
    assert_eq!(
        (code(&err).as_str(), http_status(&err)),
        ("NotImplemented", 501)
    );
    let err = c
        .put_object()
        .bucket(&b)
        .key("k")
        .body(ByteStream::from_static(b"v2"))
        .if_none_match("*")
        .send()
        .await
        .unwrap_err();
    assert_eq!(
        (code(&err).as_str(), http_status(&err)),
        ("PreconditionFailed", 412),
        "If-None-Match: * on an existing key"
    );
    assert_eq!(
        get_bytes(&c, &b, "k").await,
        b"v1",
        "a refused PUT stores nothing"
    );
}
