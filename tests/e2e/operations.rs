//! The rest of the local backend's S3 surface through aws-sdk-s3: CopyObject, DeleteObjects,
//! tagging, versioning answers, conditional PUTs and stored checksums.

use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{
    ChecksumAlgorithm, ChecksumMode, Delete, MetadataDirective, ObjectIdentifier, Tag, Tagging,
    TaggingDirective,
};
use sluice_tests::{Options, Sluice};

use crate::support::{client, code, get_bytes, http_status, make_bucket, tls_client};

#[tokio::test(flavor = "multi_thread")]
async fn copy_object_directives_and_conditions() {
    let s = Sluice::start();
    let c = client(&s);
    let a = make_bucket(&c, "copy-a").await;
    let z = make_bucket(&c, "copy-z").await;
    let put = c
        .put_object()
        .bucket(&a)
        .key("dir/src file")
        .body(ByteStream::from_static(b"copy me"))
        .content_type("text/plain")
        .metadata("k", "v")
        .tagging("t=1")
        .send()
        .await
        .unwrap();
    let etag = put.e_tag().unwrap().to_owned();

    // Cross-bucket, metadata copied; the source name is URL-encoded as S3 requires.
    let out = c
        .copy_object()
        .bucket(&z)
        .key("copy")
        .copy_source(format!("{a}/dir/src%20file"))
        .send()
        .await
        .unwrap();
    assert_eq!(
        out.copy_object_result().unwrap().e_tag(),
        Some(etag.as_str())
    );
    let head = c.head_object().bucket(&z).key("copy").send().await.unwrap();
    assert_eq!(head.content_type(), Some("text/plain"));
    assert_eq!(
        head.metadata().unwrap().get("k").map(String::as_str),
        Some("v")
    );
    assert_eq!(get_bytes(&c, &z, "copy").await, b"copy me");
    let tags = c
        .get_object_tagging()
        .bucket(&z)
        .key("copy")
        .send()
        .await
        .unwrap();
    assert_eq!(tags.tag_set().len(), 1);

    // REPLACE metadata and tags; copying onto itself is allowed only with REPLACE.
    let err = c
        .copy_object()
        .bucket(&a)
        .key("dir/src file")
        .copy_source(format!("{a}/dir/src%20file"))
        .send()
        .await
        .unwrap_err();
    assert_eq!(code(&err), "InvalidRequest");
    c.copy_object()
        .bucket(&a)
        .key("dir/src file")
        .copy_source(format!("{a}/dir/src%20file"))
        .metadata_directive(MetadataDirective::Replace)
        .content_type("application/json")
        .metadata("new", "1")
        .tagging_directive(TaggingDirective::Replace)
        .tagging("x=y&z=w")
        .send()
        .await
        .unwrap();
    let head = c
        .head_object()
        .bucket(&a)
        .key("dir/src file")
        .send()
        .await
        .unwrap();
    assert_eq!(head.content_type(), Some("application/json"));
    let meta = head.metadata().unwrap();
    assert_eq!(
        (meta.get("new").map(String::as_str), meta.get("k")),
        (Some("1"), None)
    );
    assert_eq!(head.tag_count(), Some(2));
    assert_eq!(get_bytes(&c, &a, "dir/src file").await, b"copy me");

    // Source preconditions.
    let err = c
        .copy_object()
        .bucket(&z)
        .key("c2")
        .copy_source(format!("{a}/dir/src%20file"))
        .copy_source_if_match("\"nope\"")
        .send()
        .await
        .unwrap_err();
    assert_eq!(
        (code(&err).as_str(), http_status(&err)),
        ("PreconditionFailed", 412)
    );
    let err = c
        .copy_object()
        .bucket(&z)
        .key("c2")
        .copy_source(format!("{a}/dir/src%20file"))
        .copy_source_if_none_match(&etag)
        .send()
        .await
        .unwrap_err();
    assert_eq!(http_status(&err), 412);
    c.copy_object()
        .bucket(&z)
        .key("c2")
        .copy_source(format!("{a}/dir/src%20file"))
        .copy_source_if_match(&etag)
        .send()
        .await
        .unwrap();
    let err = c
        .copy_object()
        .bucket(&z)
        .key("c3")
        .copy_source(format!("{a}/missing"))
        .send()
        .await
        .unwrap_err();
    assert_eq!(code(&err), "NoSuchKey");
    let err = c
        .copy_object()
        .bucket(&z)
        .key("c3")
        .copy_source(format!("{a}/dir/src%20file?versionId=3"))
        .send()
        .await
        .unwrap_err();
    assert_eq!(code(&err), "InvalidArgument");
}

#[tokio::test(flavor = "multi_thread")]
async fn delete_objects_in_batch() {
    let s = Sluice::start();
    let c = client(&s);
    let b = make_bucket(&c, "batch").await;
    for i in 0..5 {
        c.put_object()
            .bucket(&b)
            .key(format!("k{i}"))
            .body(ByteStream::from_static(b"x"))
            .send()
            .await
            .unwrap();
    }
    let ids = |keys: &[&str]| {
        Delete::builder().set_objects(Some(
            keys.iter()
                .map(|k| ObjectIdentifier::builder().key(*k).build().unwrap())
                .collect(),
        ))
    };
    let out = c
        .delete_objects()
        .bucket(&b)
        .delete(ids(&["k0", "k1", "never-there"]).build().unwrap())
        .send()
        .await
        .unwrap();
    let mut deleted: Vec<_> = out.deleted().iter().map(|d| d.key().unwrap()).collect();
    deleted.sort();
    assert_eq!(deleted, ["k0", "k1", "never-there"]);
    assert!(out.errors().is_empty());
    let out = c
        .delete_objects()
        .bucket(&b)
        .delete(ids(&["k2", "k3"]).quiet(true).build().unwrap())
        .send()
        .await
        .unwrap();
    assert!(out.deleted().is_empty() && out.errors().is_empty());
    let bad = Delete::builder()
        .objects(
            ObjectIdentifier::builder()
                .key("k4")
                .version_id("123")
                .build()
                .unwrap(),
        )
        .build()
        .unwrap();
    let out = c
        .delete_objects()
        .bucket(&b)
        .delete(bad)
        .send()
        .await
        .unwrap();
    assert_eq!(
        out.errors()
            .iter()
            .map(|e| e.code().unwrap())
            .collect::<Vec<_>>(),
        ["InvalidArgument"]
    );
    // A malformed entry anywhere refuses the whole request: nothing is deleted.
    let doc = "<Delete><Object><Key>k4</Key></Object><Object><VersionId>null</VersionId></Object></Delete>";
    let (status, body) =
        crate::auth::post_signed(&s, &format!("/{b}?delete"), doc.as_bytes().to_vec()).await;
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("MalformedXML"), "{body}");
    let left: Vec<_> = c
        .list_objects_v2()
        .bucket(&b)
        .send()
        .await
        .unwrap()
        .contents()
        .iter()
        .map(|o| o.key().unwrap().to_owned())
        .collect();
    assert_eq!(left, ["k4"]);
}

#[tokio::test(flavor = "multi_thread")]
async fn tagging_versions_and_conditional_puts() {
    let s = Sluice::start();
    let c = client(&s);
    let b = make_bucket(&c, "tags").await;
    c.put_object()
        .bucket(&b)
        .key("k")
        .body(ByteStream::from_static(b"v1"))
        .send()
        .await
        .unwrap();
    let tagging = Tagging::builder()
        .tag_set(Tag::builder().key("env").value("test").build().unwrap())
        .tag_set(Tag::builder().key("team").value("edge").build().unwrap())
        .build()
        .unwrap();
    c.put_object_tagging()
        .bucket(&b)
        .key("k")
        .tagging(tagging)
        .send()
        .await
        .unwrap();
    let got = c
        .get_object_tagging()
        .bucket(&b)
        .key("k")
        .send()
        .await
        .unwrap();
    let mut pairs: Vec<_> = got.tag_set().iter().map(|t| (t.key(), t.value())).collect();
    pairs.sort();
    assert_eq!(pairs, [("env", "test"), ("team", "edge")]);
    assert_eq!(
        c.get_object()
            .bucket(&b)
            .key("k")
            .send()
            .await
            .unwrap()
            .tag_count(),
        Some(2)
    );
    c.delete_object_tagging()
        .bucket(&b)
        .key("k")
        .send()
        .await
        .unwrap();
    assert!(
        c.get_object_tagging()
            .bucket(&b)
            .key("k")
            .send()
            .await
            .unwrap()
            .tag_set()
            .is_empty()
    );
    let err = c
        .get_object_tagging()
        .bucket(&b)
        .key("missing")
        .send()
        .await
        .unwrap_err();
    assert_eq!(code(&err), "NoSuchKey");

    // An unversioned bucket's answers.
    let v = c.get_bucket_versioning().bucket(&b).send().await.unwrap();
    assert!(v.status().is_none());
    let versions = c.list_object_versions().bucket(&b).send().await.unwrap();
    let listed: Vec<_> = versions
        .versions()
        .iter()
        .map(|v| (v.key().unwrap(), v.version_id().unwrap(), v.is_latest()))
        .collect();
    assert_eq!(listed, [("k", "null", Some(true))]);
    let got = c
        .get_object()
        .bucket(&b)
        .key("k")
        .version_id("null")
        .send()
        .await
        .unwrap();
    assert_eq!(
        got.body.collect().await.unwrap().into_bytes().as_ref(),
        b"v1"
    );
    let err = c
        .get_object()
        .bucket(&b)
        .key("k")
        .version_id("abc")
        .send()
        .await
        .unwrap_err();
    assert_eq!(code(&err), "InvalidArgument");

    // Conditional writes.
    let err = c
        .put_object()
        .bucket(&b)
        .key("k")
        .if_none_match("*")
        .body(ByteStream::from_static(b"v2"))
        .send()
        .await
        .unwrap_err();
    assert_eq!(http_status(&err), 412);
    c.put_object()
        .bucket(&b)
        .key("fresh")
        .if_none_match("*")
        .body(ByteStream::from_static(b"new"))
        .send()
        .await
        .unwrap();
    let etag = c
        .head_object()
        .bucket(&b)
        .key("k")
        .send()
        .await
        .unwrap()
        .e_tag()
        .unwrap()
        .to_owned();
    let err = c
        .put_object()
        .bucket(&b)
        .key("k")
        .if_match("\"nope\"")
        .body(ByteStream::from_static(b"v2"))
        .send()
        .await
        .unwrap_err();
    assert_eq!(http_status(&err), 412);
    c.put_object()
        .bucket(&b)
        .key("k")
        .if_match(&etag)
        .body(ByteStream::from_static(b"v2"))
        .send()
        .await
        .unwrap();
    assert_eq!(get_bytes(&c, &b, "k").await, b"v2");
    c.delete_object()
        .bucket(&b)
        .key("k")
        .version_id("null")
        .send()
        .await
        .unwrap();
    assert_eq!(
        http_status(
            &c.head_object()
                .bucket(&b)
                .key("k")
                .send()
                .await
                .unwrap_err()
        ),
        404
    );
}

/// Checksums sent by the SDK as aws-chunked trailers (its default over TLS) are verified,
/// stored, and returned with ChecksumMode.
#[tokio::test(flavor = "multi_thread")]
async fn trailer_checksums_are_stored_and_returned() {
    let s = Sluice::start_with(Options {
        tls: true,
        ..Default::default()
    });
    let c = tls_client(&s);
    let b = make_bucket(&c, "cksum").await;
    for algorithm in [
        ChecksumAlgorithm::Crc32C,
        ChecksumAlgorithm::Sha256,
        ChecksumAlgorithm::Crc64Nvme,
    ] {
        let key = format!("obj-{algorithm}");
        let put = c
            .put_object()
            .bucket(&b)
            .key(&key)
            .checksum_algorithm(algorithm.clone())
            .body(ByteStream::from_static(b"checksummed body"))
            .send()
            .await
            .unwrap();
        let got = c
            .get_object()
            .bucket(&b)
            .key(&key)
            .checksum_mode(ChecksumMode::Enabled)
            .send()
            .await
            .unwrap();
        let pair = |crc32c: Option<&str>, sha256: Option<&str>, crc64: Option<&str>| {
            crc32c.or(sha256).or(crc64).map(str::to_owned)
        };
        let sent = pair(
            put.checksum_crc32_c(),
            put.checksum_sha256(),
            put.checksum_crc64_nvme(),
        );
        let returned = pair(
            got.checksum_crc32_c(),
            got.checksum_sha256(),
            got.checksum_crc64_nvme(),
        );
        assert!(
            sent.is_some(),
            "{algorithm}: PutObject answered with the checksum"
        );
        assert_eq!(sent, returned, "{algorithm}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn cors_configuration_and_preflight() {
    use aws_sdk_s3::types::{CorsConfiguration, CorsRule};
    let s = Sluice::start();
    let c = client(&s);
    let b = make_bucket(&c, "cors").await;
    let url = format!("{}/{b}/upload.bin", s.endpoint);
    let http = reqwest::Client::new();
    let preflight = |origin: &'static str, method: &'static str, headers: &'static str| {
        http.request(reqwest::Method::OPTIONS, &url)
            .header("origin", origin)
            .header("access-control-request-method", method)
            .header("access-control-request-headers", headers)
            .send()
    };
    // Before any configuration: refused.
    let resp = preflight("https://app.example.com", "PUT", "content-type")
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 403);
    let err = c.get_bucket_cors().bucket(&b).send().await.unwrap_err();
    assert_eq!(code(&err), "NoSuchCORSConfiguration");

    let rule = CorsRule::builder()
        .allowed_origins("https://*.example.com")
        .allowed_methods("PUT")
        .allowed_methods("GET")
        .allowed_headers("content-type")
        .allowed_headers("x-amz-*")
        .expose_headers("ETag")
        .max_age_seconds(600)
        .build()
        .unwrap();
    c.put_bucket_cors()
        .bucket(&b)
        .cors_configuration(
            CorsConfiguration::builder()
                .cors_rules(rule)
                .build()
                .unwrap(),
        )
        .send()
        .await
        .unwrap();
    let got = c.get_bucket_cors().bucket(&b).send().await.unwrap();
    assert_eq!(
        got.cors_rules()[0].allowed_origins(),
        ["https://*.example.com"]
    );

    let resp = preflight("https://app.example.com", "PUT", "content-type, x-amz-date")
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    let h = resp.headers();
    assert_eq!(h["access-control-allow-origin"], "https://app.example.com");
    assert!(
        h["access-control-allow-methods"]
            .to_str()
            .unwrap()
            .contains("PUT")
    );
    assert_eq!(h["access-control-max-age"], "600");
    assert_eq!(
        preflight("https://evil.example.org", "PUT", "content-type")
            .await
            .unwrap()
            .status()
            .as_u16(),
        403
    );
    assert_eq!(
        preflight("https://app.example.com", "DELETE", "")
            .await
            .unwrap()
            .status()
            .as_u16(),
        403
    );
    assert_eq!(
        preflight("https://app.example.com", "PUT", "authorization")
            .await
            .unwrap()
            .status()
            .as_u16(),
        403
    );

    // The actual (signed) request carries the grant too.
    c.put_object()
        .bucket(&b)
        .key("upload.bin")
        .body(ByteStream::from_static(b"x"))
        .send()
        .await
        .unwrap();
    // A presigned GET of `key`, sent from the app's origin.
    let cross_origin_get = async |key: &str| {
        let presigned = c
            .get_object()
            .bucket(&b)
            .key(key)
            .presigned(
                aws_sdk_s3::presigning::PresigningConfig::expires_in(
                    std::time::Duration::from_secs(60),
                )
                .unwrap(),
            )
            .await
            .unwrap();
        http.get(presigned.uri())
            .header("origin", "https://app.example.com")
            .send()
            .await
            .unwrap()
    };
    let resp = cross_origin_get("upload.bin").await;
    assert_eq!(resp.status().as_u16(), 200);
    assert_eq!(
        resp.headers()["access-control-allow-origin"],
        "https://app.example.com"
    );
    assert_eq!(resp.headers()["access-control-expose-headers"], "ETag");

    // Errors of cross-origin requests carry the grant too, so the browser can read them.
    let resp = cross_origin_get("missing").await;
    assert_eq!(resp.status().as_u16(), 404);
    assert_eq!(
        resp.headers()["access-control-allow-origin"],
        "https://app.example.com"
    );
    assert!(resp.headers().get_all("vary").iter().any(|v| v == "Origin"));

    c.delete_bucket_cors().bucket(&b).send().await.unwrap();
    assert_eq!(
        preflight("https://app.example.com", "PUT", "")
            .await
            .unwrap()
            .status()
            .as_u16(),
        403
    );
}
