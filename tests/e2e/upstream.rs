//! Upstream S3 backends end to end: one Sluice in front of s3s-fs (`fs-*`, profile `minio`),
//! moto (`moto-*`, profile `generic`) and its local store, driven by aws-sdk-s3 with its default
//! checksum behaviour, and by raw requests whose bodies were tampered with after signing.
//!
//! What the upstreams hold is always read from the upstream itself (an SDK client with the
//! upstream's own key), never only through Sluice. moto verifies no payload at all, so a
//! tampered body that reached it whole would be stored: it is the upstream that shows Sluice
//! held the body back. s3s-fs verifies payload hashes and chunk signatures itself.

use std::time::Duration;

use aws_sdk_s3::Client;
use aws_sdk_s3::config::{Credentials, Region};
use aws_sdk_s3::presigning::PresigningConfig;
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{CompletedMultipartUpload, CompletedPart};
use base64::Engine as _;
use http::{HeaderMap, HeaderValue, Method};
use md5::Digest as _;
use sluice_sigv4::{
    ChecksumAlgorithm, Checksummer, ChunkSignatureChain, ChunkedEncoder, PayloadMode, SecretKey,
    Signature, SigningParams,
};
use sluice_tests::upstream::Upstream;
use sluice_tests::{Options, REGION, Sluice};

use crate::auth::{send_signed, xml_code};
use crate::support::{client, get_bytes, http_status, make_bucket, now, sha256_hex};

const KIB: usize = 1024;
const MIB: usize = 1024 * KIB;

/// s3s-fs, moto and a Sluice fronting both (and its local store).
struct Stack {
    fs: Upstream,
    moto: Upstream,
    sluice: Sluice,
}

impl Stack {
    /// Both upstreams start at once (moto takes a few seconds to bootstrap), then Sluice with
    /// routes `renamed` → fs bucket `fs-target` under `p/`, `fs-*` → fs, `moto-*` → moto, and
    /// everything else → local.
    fn start() -> Self {
        let (fs, moto) = std::thread::scope(|scope| {
            let fs = scope.spawn(Upstream::s3s_fs);
            let moto = scope.spawn(Upstream::moto);
            (fs.join().expect("s3s-fs"), moto.join().expect("moto"))
        });
        let sluice = Sluice::start_with(Options {
            backends: [
                fs.backend_yaml("fs", "minio"),
                moto.backend_yaml("moto", "generic"),
            ]
            .join("\n"),
            routes: [
                r#"      - { bucket: "renamed", backend: fs, target_bucket: fs-target, key_prefix: "p/" }"#,
                r#"      - { bucket: "fs-*", backend: fs }"#,
                r#"      - { bucket: "moto-*", backend: moto }"#,
            ]
            .join("\n"),
            ..Default::default()
        });
        Self { fs, moto, sluice }
    }
}

/// An SDK client talking to the upstream directly, with the upstream's own key, path-style.
fn direct(u: &Upstream) -> Client {
    let config = aws_sdk_s3::Config::builder()
        .behavior_version_latest()
        .endpoint_url(&u.endpoint)
        .region(Region::new(REGION))
        .credentials_provider(Credentials::new(
            &u.access_key,
            &u.secret_key,
            None,
            None,
            "upstream",
        ))
        .force_path_style(true)
        .build();
    Client::from_conf(config)
}

/// Deterministic, incompressible-looking bytes.
fn data(len: usize, seed: u32) -> Vec<u8> {
    let mut x = seed.wrapping_mul(2_654_435_761).wrapping_add(1);
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            (x >> 24) as u8
        })
        .collect()
}

fn md5_hex(data: &[u8]) -> String {
    hex::encode(md5::Md5::digest(data))
}

fn crc32(data: &[u8]) -> String {
    let mut c = Checksummer::new(ChecksumAlgorithm::Crc32);
    c.update(data);
    c.finalize()
}

/// The object's bytes as the upstream itself serves them, or `None` if it has no such key.
async fn upstream_bytes(c: &Client, bucket: &str, key: &str) -> Option<Vec<u8>> {
    match c.get_object().bucket(bucket).key(key).send().await {
        Ok(out) => Some(out.body.collect().await.unwrap().into_bytes().to_vec()),
        Err(err) if http_status(&err) == 404 => None,
        Err(err) => panic!("GET {bucket}/{key} from the upstream: {err:?}"),
    }
}

async fn put(c: &Client, bucket: &str, key: &str, body: Vec<u8>) -> String {
    c.put_object()
        .bucket(bucket)
        .key(key)
        .body(ByteStream::from(body))
        .send()
        .await
        .unwrap_or_else(|e| panic!("PUT {bucket}/{key}: {e:?}"))
        .e_tag()
        .unwrap_or_default()
        .trim_matches('"')
        .to_owned()
}

/// A copy source header value: `bucket/key`, the key URL-encoded.
fn copy_source(bucket: &str, key: &str) -> String {
    format!(
        "{bucket}/{}",
        sluice_sigv4::uri_encode(key.as_bytes(), false)
    )
}

/// Keys that need care on the way to an upstream: spaces, `+` (a space in some decoders),
/// `%`, non-ASCII, an empty path segment, characters the query encoder must escape.
const ODD_KEYS: &[&str] = &[
    "with space",
    "plus+sign",
    "100%",
    "%41%2F",
    "ünïcødé/ключ/鍵",
    "a//b",
    "q?x=1&y=#frag",
    "tilde~star*paren(1)",
];

/// Put, get, head, ranges, odd keys and a multipart upload on one bucket through Sluice; the
/// upstream (when there is one) holds the same bytes under the same names. `listed_as` names
/// odd keys the store itself lists under another name (an upstream's own quirk).
async fn exercise_backend(
    c: &Client,
    bucket: &str,
    upstream: Option<&Client>,
    listed_as: &[(&str, &str)],
) {
    let what = bucket.split('-').next().unwrap();
    let body = data(300 * KIB + 7, 1);
    let etag = c
        .put_object()
        .bucket(bucket)
        .key("dir/obj")
        .body(ByteStream::from(body.clone()))
        .content_type("application/x-e2e")
        .metadata("colour", "blue")
        .send()
        .await
        .unwrap_or_else(|e| panic!("{what}: put: {e:?}"))
        .e_tag()
        .unwrap()
        .trim_matches('"')
        .to_owned();
    assert_eq!(etag, md5_hex(&body), "{what}: ETag of a single PUT");
    assert_eq!(get_bytes(c, bucket, "dir/obj").await, body, "{what}: GET");
    let head = c
        .head_object()
        .bucket(bucket)
        .key("dir/obj")
        .send()
        .await
        .unwrap();
    assert_eq!(head.content_length(), Some(body.len() as i64), "{what}");
    assert_eq!(head.content_type(), Some("application/x-e2e"), "{what}");
    assert_eq!(head.e_tag().map(|e| e.trim_matches('"')), Some(&*etag));
    assert_eq!(
        head.metadata()
            .and_then(|m| m.get("colour"))
            .map(String::as_str),
        Some("blue"),
        "{what}: user metadata"
    );
    let err = c
        .head_object()
        .bucket(bucket)
        .key("dir/none")
        .send()
        .await
        .unwrap_err();
    assert_eq!(http_status(&err), 404, "{what}: HEAD of a missing key");

    // Ranges: a middle slice, a suffix, an open end.
    for (range, first, last) in [
        ("bytes=1000-66535", 1000, 66535),
        ("bytes=-5", body.len() - 5, body.len() - 1),
        (
            &*format!("bytes={}-", body.len() - 100),
            body.len() - 100,
            body.len() - 1,
        ),
    ] {
        let out = c
            .get_object()
            .bucket(bucket)
            .key("dir/obj")
            .range(range)
            .send()
            .await
            .unwrap_or_else(|e| panic!("{what}: {range}: {e:?}"));
        assert_eq!(
            out.content_range(),
            Some(&*format!("bytes {first}-{last}/{}", body.len())),
            "{what}: {range}"
        );
        let got = out.body.collect().await.unwrap().into_bytes();
        assert_eq!(&got[..], &body[first..=last], "{what}: {range}");
    }

    // Odd keys round trip, and are listed under their own names.
    for (i, key) in ODD_KEYS.iter().enumerate() {
        let value = format!("value of {key}").into_bytes();
        put(c, bucket, &format!("odd/{key}"), value.clone()).await;
        assert_eq!(
            get_bytes(c, bucket, &format!("odd/{key}")).await,
            value,
            "{what}: key {key:?} ({i})"
        );
    }
    let mut listed: Vec<String> = c
        .list_objects_v2()
        .bucket(bucket)
        .prefix("odd/")
        .send()
        .await
        .unwrap()
        .contents()
        .iter()
        .filter_map(|o| o.key().map(str::to_owned))
        .collect();
    let mut expected: Vec<String> = ODD_KEYS
        .iter()
        .map(|k| {
            let listed = listed_as
                .iter()
                .find(|(key, _)| key == k)
                .map_or(*k, |l| l.1);
            format!("odd/{listed}")
        })
        .collect();
    expected.sort();
    if !listed_as.is_empty() {
        // Listed in the order of the names the store had before its quirk changed them.
        listed.sort();
    }
    assert_eq!(listed, expected, "{what}: listing of odd keys");

    // Multipart: two parts of 5 MiB + 1 byte, completed, read back whole.
    let parts = [data(5 * MIB + 1, 2), data(5 * MIB + 1, 3)];
    let id = c
        .create_multipart_upload()
        .bucket(bucket)
        .key("big")
        .send()
        .await
        .unwrap_or_else(|e| panic!("{what}: create upload: {e:?}"))
        .upload_id()
        .unwrap()
        .to_owned();
    let mut done = Vec::new();
    for (i, part) in parts.iter().enumerate() {
        let n = i as i32 + 1;
        let out = c
            .upload_part()
            .bucket(bucket)
            .key("big")
            .upload_id(&id)
            .part_number(n)
            .body(ByteStream::from(part.clone()))
            .send()
            .await
            .unwrap_or_else(|e| panic!("{what}: part {n}: {e:?}"));
        let etag = out.e_tag().unwrap().to_owned();
        assert_eq!(etag.trim_matches('"'), md5_hex(part), "{what}: part {n}");
        done.push(CompletedPart::builder().part_number(n).e_tag(etag).build());
    }
    let out = c
        .complete_multipart_upload()
        .bucket(bucket)
        .key("big")
        .upload_id(&id)
        .multipart_upload(
            CompletedMultipartUpload::builder()
                .set_parts(Some(done))
                .build(),
        )
        .send()
        .await
        .unwrap_or_else(|e| panic!("{what}: complete: {e:?}"));
    assert!(
        out.e_tag().unwrap().trim_matches('"').ends_with("-2"),
        "{what}: multipart ETag {:?}",
        out.e_tag()
    );
    let whole = parts.concat();
    let got = get_bytes(c, bucket, "big").await;
    assert_eq!(got.len(), whole.len(), "{what}: multipart size");
    assert_eq!(
        sha256_hex(&got),
        sha256_hex(&whole),
        "{what}: multipart bytes"
    );

    if let Some(up) = upstream {
        assert_eq!(upstream_bytes(up, bucket, "dir/obj").await, Some(body));
        let got = upstream_bytes(up, bucket, "big").await.unwrap();
        assert_eq!(
            sha256_hex(&got),
            sha256_hex(&whole),
            "{what}: on the upstream"
        );
        for key in [
            "with space",
            "plus+sign",
            "ünïcødé/ключ/鍵",
            "q?x=1&y=#frag",
        ] {
            assert_eq!(
                upstream_bytes(up, bucket, &format!("odd/{key}")).await,
                Some(format!("value of {key}").into_bytes()),
                "{what}: {key:?} under its own name on the upstream"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn sdk_round_trips_on_every_backend() {
    let stack = Stack::start();
    let c = client(&stack.sluice);
    let fs = make_bucket(&c, "fs").await;
    let moto = make_bucket(&c, "moto").await;
    let local = make_bucket(&c, "local").await;
    // The buckets are where the routes say, under their own names.
    direct(&stack.fs)
        .head_bucket()
        .bucket(&fs)
        .send()
        .await
        .unwrap();
    direct(&stack.moto)
        .head_bucket()
        .bucket(&moto)
        .send()
        .await
        .unwrap();
    // s3s-fs keeps objects as files: `a//b` is the file `a/b` and is listed so; and it answers
    // `EncodingType=url` without encoding its keys, so `%41%2F` comes back decoded, as `A/`
    // (s3s-fs 0.14.1's own behaviour: boto3 lists the same). Both still read back by their
    // names.
    let fs_quirks = [("a//b", "a/b"), ("%41%2F", "A/")];
    exercise_backend(&c, &fs, Some(&direct(&stack.fs)), &fs_quirks).await;
    exercise_backend(&c, &moto, Some(&direct(&stack.moto)), &[]).await;
    exercise_backend(&c, &local, None, &[]).await;
    // Each bucket is in one store only.
    let err = direct(&stack.moto)
        .head_bucket()
        .bucket(&fs)
        .send()
        .await
        .unwrap_err();
    assert_eq!(http_status(&err), 404);
}

#[tokio::test(flavor = "multi_thread")]
async fn renamed_route_copies_and_presigned_urls() {
    let stack = Stack::start();
    let c = client(&stack.sluice);
    let up_fs = direct(&stack.fs);
    let up_moto = direct(&stack.moto);

    // `fs-target` matches `fs-*`: created through Sluice, it is the upstream bucket behind the
    // route `renamed` (keys under `p/`).
    c.create_bucket().bucket("fs-target").send().await.unwrap();
    put(&c, "fs-target", "outside", b"not under p/".to_vec()).await;
    let keys = ["k1", "k2", "k3 space", "k4/deep", "k5+"];
    for key in keys {
        put(&c, "renamed", key, key.as_bytes().to_vec()).await;
    }
    for key in keys {
        assert_eq!(get_bytes(&c, "renamed", key).await, key.as_bytes());
        assert_eq!(
            upstream_bytes(&up_fs, "fs-target", &format!("p/{key}")).await,
            Some(key.as_bytes().to_vec()),
            "{key} is p/{key} in fs-target upstream"
        );
    }
    // ListObjectsV2 through the renamed route, two keys a page: only the route's keys, under
    // the client's names.
    let mut pages = Vec::new();
    let mut token = None;
    loop {
        let out = c
            .list_objects_v2()
            .bucket("renamed")
            .max_keys(2)
            .set_continuation_token(token.clone())
            .send()
            .await
            .unwrap();
        assert_eq!(out.name(), Some("renamed"));
        let page: Vec<String> = out
            .contents()
            .iter()
            .map(|o| o.key().unwrap().to_owned())
            .collect();
        assert!(page.len() <= 2, "{page:?}");
        pages.push(page);
        token = out.next_continuation_token().map(str::to_owned);
        if !out.is_truncated().unwrap_or(false) {
            assert!(token.is_none());
            break;
        }
        assert!(token.is_some(), "a truncated page carries a token");
        assert!(pages.len() < 10, "listing does not end: {pages:?}");
    }
    let mut sorted: Vec<&str> = keys.to_vec();
    sorted.sort();
    assert_eq!(pages.concat(), sorted, "pages: {pages:?}");
    assert_eq!(pages.len(), 3, "pages: {pages:?}");
    // With a delimiter, through the route too.
    let out = c
        .list_objects_v2()
        .bucket("renamed")
        .delimiter("/")
        .send()
        .await
        .unwrap();
    let prefixes: Vec<&str> = out
        .common_prefixes()
        .iter()
        .filter_map(|p| p.prefix())
        .collect();
    assert_eq!(prefixes, ["k4/"]);
    // The route's bucket is fs-target upstream.
    let listed: Vec<String> = up_fs
        .list_objects_v2()
        .bucket("fs-target")
        .send()
        .await
        .unwrap()
        .contents()
        .iter()
        .map(|o| o.key().unwrap().to_owned())
        .collect();
    assert!(listed.contains(&"outside".to_owned()), "{listed:?}");
    assert!(listed.contains(&"p/k3 space".to_owned()), "{listed:?}");
    assert_eq!(listed.len(), keys.len() + 1, "{listed:?}");

    // CopyObject: within fs (the upstream copies), fs → moto and fs → local (streamed).
    let fs = make_bucket(&c, "fs").await;
    let moto = make_bucket(&c, "moto").await;
    let local = make_bucket(&c, "local").await;
    let src_key = "src dir/ü+x%";
    let body = data(700 * KIB + 3, 9);
    put(&c, &fs, src_key, body.clone()).await;
    let source = copy_source(&fs, src_key);
    for (dest, key) in [
        (&fs, "copy in fs"),
        (&moto, "copy from fs"),
        (&local, "copy from fs"),
    ] {
        let out = c
            .copy_object()
            .bucket(dest)
            .key(key)
            .copy_source(&source)
            .send()
            .await
            .unwrap_or_else(|e| panic!("copy to {dest}: {e:?}"));
        let etag = out.copy_object_result().unwrap().e_tag().unwrap();
        assert_eq!(etag.trim_matches('"'), md5_hex(&body), "copy to {dest}");
        assert_eq!(
            sha256_hex(&get_bytes(&c, dest, key).await),
            sha256_hex(&body),
            "copy to {dest}"
        );
    }
    for (up, bucket) in [(&up_fs, &fs), (&up_moto, &moto)] {
        let key = if *bucket == fs {
            "copy in fs"
        } else {
            "copy from fs"
        };
        let got = upstream_bytes(up, bucket, key).await.unwrap();
        assert_eq!(sha256_hex(&got), sha256_hex(&body), "{bucket} upstream");
    }
    // Copy through the renamed route (source and destination both renamed).
    c.copy_object()
        .bucket("renamed")
        .key("k1 copy")
        .copy_source(copy_source("renamed", "k1"))
        .send()
        .await
        .unwrap();
    assert_eq!(
        upstream_bytes(&up_fs, "fs-target", "p/k1 copy").await,
        Some(b"k1".to_vec())
    );

    // Presigned PUT and GET to Sluice for an fs bucket (Sluice checks the presigned signature,
    // then signs its own request to s3s-fs).
    let presigned_body = data(200 * KIB, 11);
    let key = "presigned/ä b+c";
    let expires = || PresigningConfig::expires_in(Duration::from_secs(300)).unwrap();
    let req = c
        .put_object()
        .bucket(&fs)
        .key(key)
        .presigned(expires())
        .await
        .unwrap();
    let http = reqwest::Client::new();
    let mut put = http.put(req.uri()).body(presigned_body.clone());
    for (name, value) in req.headers() {
        put = put.header(name, value);
    }
    let resp = put.send().await.unwrap();
    assert_eq!(
        resp.status().as_u16(),
        200,
        "{}",
        resp.text().await.unwrap()
    );
    assert_eq!(
        upstream_bytes(&up_fs, &fs, key).await.as_deref(),
        Some(&presigned_body[..])
    );
    let req = c
        .get_object()
        .bucket(&fs)
        .key(key)
        .presigned(expires())
        .await
        .unwrap();
    let resp = http.get(req.uri()).send().await.unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    assert_eq!(resp.bytes().await.unwrap(), presigned_body);
    // A presigned URL for one key does not open another.
    let other = req.uri().replace("presigned/", "presigned2/");
    let resp = http.get(&other).send().await.unwrap();
    assert_eq!(resp.status().as_u16(), 403);
}

/// How a raw PUT's body is made wrong after signing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Tamper {
    /// (a) `x-amz-content-sha256` = the SHA-256 of the data; the last byte sent differs.
    SignedPayloadLastByte,
    /// (b) `STREAMING-AWS4-HMAC-SHA256-PAYLOAD`; the last data chunk's last byte flipped.
    ChunkDataLastChunk,
    /// (b) as above; the last data chunk's signature itself wrong, its data intact.
    ChunkSignatureLastChunk,
    /// (c) `STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER`, a correctly signed but wrong
    /// `x-amz-checksum-crc32` trailer.
    SignedTrailerChecksum,
    /// (d) `STREAMING-UNSIGNED-PAYLOAD-TRAILER` with a wrong `x-amz-checksum-crc32` trailer.
    UnsignedTrailerChecksum,
    /// (e) `UNSIGNED-PAYLOAD` with a wrong `Content-MD5`.
    UnsignedContentMd5,
    /// (f) `UNSIGNED-PAYLOAD` with a wrong `x-amz-checksum-crc32` header.
    UnsignedChecksumHeader,
}

impl Tamper {
    /// Every mode but `Content-MD5` (see `wrong_content_md5_leaves_nothing_upstream`).
    const VERIFIED: [Tamper; 6] = [
        Self::SignedPayloadLastByte,
        Self::ChunkDataLastChunk,
        Self::ChunkSignatureLastChunk,
        Self::SignedTrailerChecksum,
        Self::UnsignedTrailerChecksum,
        Self::UnsignedChecksumHeader,
    ];

    /// The answer S3 gives (and Sluice documents) for this tampering.
    fn expected(self) -> (u16, &'static str) {
        match self {
            Self::SignedPayloadLastByte => (400, "XAmzContentSHA256Mismatch"),
            Self::ChunkDataLastChunk | Self::ChunkSignatureLastChunk => {
                (403, "SignatureDoesNotMatch")
            }
            Self::SignedTrailerChecksum
            | Self::UnsignedTrailerChecksum
            | Self::UnsignedContentMd5
            | Self::UnsignedChecksumHeader => (400, "BadDigest"),
        }
    }
}

const CHUNK: usize = 64 * KIB;

/// An aws-chunked body of `data` in 64 KiB chunks, signed when given a chain, with `trailer`
/// (a `-TRAILER` mode) if any. `mutate` may change the framed bytes of the last data chunk.
fn aws_chunked(
    chain: Option<ChunkSignatureChain>,
    trailer: Option<(&str, &str)>,
    data: &[u8],
    mutate: impl FnOnce(&mut [u8]),
) -> Vec<u8> {
    let mut enc = ChunkedEncoder::new(chain, trailer.is_some());
    let pieces: Vec<&[u8]> = data.chunks(CHUNK).collect();
    let mut out = Vec::new();
    let mut mutate = Some(mutate);
    for (i, piece) in pieces.iter().enumerate() {
        let mut framed = enc.chunk(piece);
        if i == pieces.len() - 1 {
            (mutate.take().unwrap())(&mut framed);
        }
        out.extend(framed);
    }
    out.extend(enc.finish(trailer.as_slice()));
    out
}

fn chain(params: &SigningParams<'_>, seed: Signature) -> ChunkSignatureChain {
    ChunkSignatureChain::new(params.signing_key(), params.date, &params.scope(), seed)
}

/// Leaves a framed chunk as it is.
fn intact(_: &mut [u8]) {}

/// Flips the last data byte of a framed chunk (`...data\r\n`).
fn flip_last_data_byte(framed: &mut [u8]) {
    let at = framed.len() - 3;
    framed[at] ^= 0x01;
}

/// Changes one hex digit of a framed chunk's `chunk-signature=`.
fn break_chunk_signature(framed: &mut [u8]) {
    let marker = b"chunk-signature=";
    let at = framed
        .windows(marker.len())
        .position(|w| w == marker)
        .expect("a signed chunk")
        + marker.len()
        + 10;
    framed[at] = if framed[at] == b'0' { b'1' } else { b'0' };
}

/// A PUT of `data` to `path` (an object or, with `?partNumber=…&uploadId=…`, a part) in the
/// payload mode `tamper` names; tampered with only if `tampered`. Returns (status, body).
async fn put_raw(
    s: &Sluice,
    path: &str,
    data: &[u8],
    tamper: Tamper,
    tampered: bool,
) -> (u16, String) {
    let good_crc = crc32(data);
    let wrong_crc = crc32(b"something else entirely");
    let crc = if tampered { &wrong_crc } else { &good_crc };
    let mut headers = HeaderMap::new();
    let chunked = |headers: &mut HeaderMap, encoded_len: usize, trailer: bool| {
        headers.insert("content-encoding", HeaderValue::from_static("aws-chunked"));
        headers.insert("x-amz-decoded-content-length", data.len().into());
        headers.insert("content-length", encoded_len.into());
        if trailer {
            headers.insert(
                "x-amz-trailer",
                HeaderValue::from_static("x-amz-checksum-crc32"),
            );
        }
    };
    // Framing lengths do not depend on signature values: measure with a dummy chain.
    let dummy_secret = SecretKey::new("dummy".into());
    let date = now();
    let dummy = crate::support::signing_params("DUMMY", &dummy_secret, &date);
    let zero = || Signature::from_hex(&"0".repeat(64)).unwrap();
    let trailer = ("x-amz-checksum-crc32", crc.as_str());
    let payload = match tamper {
        Tamper::SignedPayloadLastByte => {
            let hash: [u8; 32] = sha2::Sha256::digest(data).into();
            PayloadMode::Signed(hash)
        }
        Tamper::ChunkDataLastChunk | Tamper::ChunkSignatureLastChunk => {
            let len = aws_chunked(Some(chain(&dummy, zero())), None, data, intact).len();
            chunked(&mut headers, len, false);
            PayloadMode::StreamingSigned
        }
        Tamper::SignedTrailerChecksum => {
            let len = aws_chunked(Some(chain(&dummy, zero())), Some(trailer), data, intact).len();
            chunked(&mut headers, len, true);
            PayloadMode::StreamingSignedTrailer
        }
        Tamper::UnsignedTrailerChecksum => {
            let len = aws_chunked(None, Some(trailer), data, intact).len();
            chunked(&mut headers, len, true);
            PayloadMode::StreamingUnsignedTrailer
        }
        Tamper::UnsignedContentMd5 => {
            let md5 = if tampered {
                md5::Md5::digest(b"something else entirely")
            } else {
                md5::Md5::digest(data)
            };
            let value = base64::engine::general_purpose::STANDARD.encode(md5);
            headers.insert("content-md5", value.parse().unwrap());
            PayloadMode::Unsigned
        }
        Tamper::UnsignedChecksumHeader => {
            headers.insert("x-amz-checksum-crc32", crc.parse().unwrap());
            PayloadMode::Unsigned
        }
    };
    send_signed(
        s,
        Method::PUT,
        path,
        headers,
        payload,
        |params, seed| match tamper {
            Tamper::SignedPayloadLastByte => {
                let mut body = data.to_vec();
                if tampered {
                    *body.last_mut().unwrap() ^= 0x01;
                }
                body
            }
            Tamper::ChunkDataLastChunk | Tamper::ChunkSignatureLastChunk => {
                aws_chunked(Some(chain(params, seed)), None, data, |framed| {
                    match (tampered, tamper) {
                        (false, _) => {}
                        (true, Tamper::ChunkDataLastChunk) => flip_last_data_byte(framed),
                        (true, _) => break_chunk_signature(framed),
                    }
                })
            }
            Tamper::SignedTrailerChecksum => {
                aws_chunked(Some(chain(params, seed)), Some(trailer), data, intact)
            }
            Tamper::UnsignedTrailerChecksum => aws_chunked(None, Some(trailer), data, intact),
            Tamper::UnsignedContentMd5 | Tamper::UnsignedChecksumHeader => data.to_vec(),
        },
    )
    .await
}

/// Every payload mode, tampered, against one upstream bucket: the client gets the mode's S3
/// error, and the upstream holds nothing under a new key and the old bytes under an old one.
/// Each mode is first sent untampered, so the request itself is known to be good.
async fn tampered_bodies_leave_nothing(
    s: &Sluice,
    c: &Client,
    up: &Client,
    bucket: &str,
    modes: &[Tamper],
) {
    let body = data(MIB, 21);
    let old = data(1000, 22);
    for &tamper in modes {
        let ok_key = format!("ok-{tamper:?}");
        let (status, text) = put_raw(s, &format!("/{bucket}/{ok_key}"), &body, tamper, false).await;
        assert_eq!(status, 200, "{bucket}: {tamper:?} untampered: {text}");
        let stored = upstream_bytes(up, bucket, &ok_key).await.expect("stored");
        assert_eq!(
            sha256_hex(&stored),
            sha256_hex(&body),
            "{bucket}: {tamper:?} untampered"
        );

        let new_key = format!("new-{tamper:?}");
        let (status, text) = put_raw(s, &format!("/{bucket}/{new_key}"), &body, tamper, true).await;
        assert_eq!(
            (status, xml_code(&text)),
            tamper.expected(),
            "{bucket}: {tamper:?}: {text}"
        );
        assert_eq!(
            upstream_bytes(up, bucket, &new_key).await.map(|b| b.len()),
            None,
            "{bucket}: {tamper:?}: the upstream must hold nothing under a new key"
        );

        let old_key = format!("old-{tamper:?}");
        put(c, bucket, &old_key, old.clone()).await;
        let (status, text) = put_raw(s, &format!("/{bucket}/{old_key}"), &body, tamper, true).await;
        assert_eq!(
            (status, xml_code(&text)),
            tamper.expected(),
            "{bucket}: {tamper:?} over an old object: {text}"
        );
        assert_eq!(
            upstream_bytes(up, bucket, &old_key)
                .await
                .map(|b| sha256_hex(&b)),
            Some(sha256_hex(&old)),
            "{bucket}: {tamper:?}: the upstream must still hold the old bytes"
        );
    }
    // Once more at the end, long after each refusal: nothing arrived late either.
    let listed: Vec<(String, i64)> = up
        .list_objects_v2()
        .bucket(bucket)
        .send()
        .await
        .unwrap()
        .contents()
        .iter()
        .map(|o| (o.key().unwrap().to_owned(), o.size().unwrap_or(-1)))
        .collect();
    let mut expected: Vec<(String, i64)> = modes
        .iter()
        .flat_map(|t| {
            [
                (format!("ok-{t:?}"), body.len() as i64),
                (format!("old-{t:?}"), old.len() as i64),
            ]
        })
        .collect();
    expected.sort();
    assert_eq!(listed, expected, "{bucket}: what the upstream holds");
}

#[tokio::test(flavor = "multi_thread")]
async fn tampered_bodies_leave_nothing_on_moto() {
    let stack = Stack::start();
    let c = client(&stack.sluice);
    let b = make_bucket(&c, "moto").await;
    let up = direct(&stack.moto);
    tampered_bodies_leave_nothing(&stack.sluice, &c, &up, &b, &Tamper::VERIFIED).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn tampered_bodies_leave_nothing_on_s3s_fs() {
    let stack = Stack::start();
    let c = client(&stack.sluice);
    let b = make_bucket(&c, "fs").await;
    let up = direct(&stack.fs);
    tampered_bodies_leave_nothing(&stack.sluice, &c, &up, &b, &Tamper::VERIFIED).await;
}

/// (e) `UNSIGNED-PAYLOAD` with a wrong `Content-MD5`, against both upstreams.
///
/// Sluice checks the MD5 itself (the upstream body holds its last piece back until it matched):
/// moto would not check it, and s3s-fs writes the file before comparing.
#[tokio::test(flavor = "multi_thread")]
async fn wrong_content_md5_leaves_nothing_upstream() {
    let stack = Stack::start();
    let c = client(&stack.sluice);
    let modes = [Tamper::UnsignedContentMd5];
    let b = make_bucket(&c, "moto").await;
    let up = direct(&stack.moto);
    tampered_bodies_leave_nothing(&stack.sluice, &c, &up, &b, &modes).await;
    let b = make_bucket(&c, "fs").await;
    let up = direct(&stack.fs);
    tampered_bodies_leave_nothing(&stack.sluice, &c, &up, &b, &modes).await;
}

/// UploadPart through Sluice to moto with a tampered last chunk: moto never records the part
/// (it would: it checks no chunk signatures), and a good part before it stays as it was.
#[tokio::test(flavor = "multi_thread")]
async fn tampered_upload_part_is_not_recorded_upstream() {
    let stack = Stack::start();
    let c = client(&stack.sluice);
    let up = direct(&stack.moto);
    let b = make_bucket(&c, "moto").await;
    let id = c
        .create_multipart_upload()
        .bucket(&b)
        .key("mpu")
        .send()
        .await
        .unwrap()
        .upload_id()
        .unwrap()
        .to_owned();
    let path = |n: u32| {
        format!(
            "/{b}/mpu?partNumber={n}&uploadId={}",
            sluice_sigv4::uri_encode(id.as_bytes(), true)
        )
    };
    let good = data(MIB, 31);
    let (status, text) = put_raw(
        &stack.sluice,
        &path(1),
        &good,
        Tamper::ChunkDataLastChunk,
        false,
    )
    .await;
    assert_eq!(status, 200, "{text}");
    for tamper in [Tamper::ChunkDataLastChunk, Tamper::ChunkSignatureLastChunk] {
        for n in [2, 1] {
            let (status, text) =
                put_raw(&stack.sluice, &path(n), &data(MIB, 32), tamper, true).await;
            assert_eq!(
                (status, xml_code(&text)),
                (403, "SignatureDoesNotMatch"),
                "part {n}, {tamper:?}: {text}"
            );
        }
    }
    // moto answers ListParts with a `<ListPartsResponse>` root the SDK refuses: read it raw.
    let (status, doc) = direct_get(
        &stack.moto,
        &format!(
            "/{b}/mpu?uploadId={}",
            sluice_sigv4::uri_encode(id.as_bytes(), true)
        ),
    )
    .await;
    assert_eq!(status, 200, "{doc}");
    let listed: Vec<(String, String, String)> = doc
        .split("<Part>")
        .skip(1)
        .map(|part| {
            (
                element(part, "PartNumber"),
                element(part, "Size"),
                element(part, "ETag").replace("&quot;", "").replace('"', ""),
            )
        })
        .collect();
    assert_eq!(
        listed,
        [("1".to_owned(), MIB.to_string(), md5_hex(&good))],
        "moto holds part 1 as first uploaded and no part 2: {doc}"
    );
    // Completed with that part, the object on moto is the good part's bytes.
    let part = CompletedPart::builder()
        .part_number(1)
        .e_tag(format!("\"{}\"", md5_hex(&good)))
        .build();
    c.complete_multipart_upload()
        .bucket(&b)
        .key("mpu")
        .upload_id(&id)
        .multipart_upload(CompletedMultipartUpload::builder().parts(part).build())
        .send()
        .await
        .unwrap();
    assert_eq!(
        upstream_bytes(&up, &b, "mpu").await.map(|b| sha256_hex(&b)),
        Some(sha256_hex(&good))
    );
}

/// The text of the first `<name>` element in `doc`.
fn element(doc: &str, name: &str) -> String {
    doc.split(&format!("<{name}>"))
        .nth(1)
        .and_then(|rest| rest.split(&format!("</{name}>")).next())
        .unwrap_or_default()
        .to_owned()
}

/// A GET signed with the upstream's own key, sent to the upstream directly.
async fn direct_get(u: &Upstream, path_and_query: &str) -> (u16, String) {
    let uri: http::Uri = format!("{}{path_and_query}", u.endpoint).parse().unwrap();
    let secret = SecretKey::new(u.secret_key.clone());
    let date = now();
    let params = crate::support::signing_params(&u.access_key, &secret, &date);
    let mut headers = HeaderMap::new();
    let empty: [u8; 32] = sha2::Sha256::digest(b"").into();
    sluice_sigv4::sign_request(
        &Method::GET,
        &uri,
        &mut headers,
        &PayloadMode::Signed(empty),
        &params,
    )
    .unwrap();
    let resp = reqwest::Client::new()
        .get(uri.to_string())
        .headers(headers)
        .send()
        .await
        .unwrap();
    (resp.status().as_u16(), resp.text().await.unwrap())
}

/// `payload_signing: chunks`: bodies the client did not sign a hash of reach the upstream as a
/// new signed chunk chain. s3s-fs checks every chunk signature (and refuses a chain that does
/// not verify), so each upload landing byte for byte shows the chain Sluice wrote is right,
/// for sizes around the 64 KiB chunk boundary and for a multipart part.
#[tokio::test(flavor = "multi_thread")]
async fn signed_chunk_chains_reach_a_verifying_upstream() {
    let fs = Upstream::s3s_fs();
    let sluice = Sluice::start_with(Options {
        backends: format!(
            "{}\n    payload_signing: chunks",
            fs.backend_yaml("fs", "minio")
        ),
        routes: r#"      - { bucket: "fs-*", backend: fs }"#.to_owned(),
        ..Default::default()
    });
    let c = client(&sluice);
    let up = direct(&fs);
    c.create_bucket().bucket("fs-chains").send().await.unwrap();
    for (i, len) in [0, 1, 64 * KIB - 1, 64 * KIB, 64 * KIB + 5, MIB + 3]
        .into_iter()
        .enumerate()
    {
        let body = data(len, 900 + i as u32);
        let key = format!("chain-{len}");
        // Unsigned: the client signs no hash of the body, so Sluice signs a chain for it.
        let mut headers = HeaderMap::new();
        headers.insert("content-length", HeaderValue::from(len));
        let sent = body.clone();
        let (status, answer) = send_signed(
            &sluice,
            Method::PUT,
            &format!("/fs-chains/{key}"),
            headers,
            PayloadMode::Unsigned,
            move |_, _| sent,
        )
        .await;
        assert_eq!(status, 200, "{key}: {answer}");
        assert_eq!(
            upstream_bytes(&up, "fs-chains", &key).await.as_deref(),
            Some(&body[..]),
            "{key}"
        );
    }
    let upload = c
        .create_multipart_upload()
        .bucket("fs-chains")
        .key("mp")
        .send()
        .await
        .unwrap();
    let part = data(5 * MIB + 7, 77);
    let etag = c
        .upload_part()
        .bucket("fs-chains")
        .key("mp")
        .upload_id(upload.upload_id().unwrap())
        .part_number(1)
        .body(ByteStream::from(part.clone()))
        .send()
        .await
        .unwrap()
        .e_tag()
        .unwrap()
        .to_owned();
    c.complete_multipart_upload()
        .bucket("fs-chains")
        .key("mp")
        .upload_id(upload.upload_id().unwrap())
        .multipart_upload(
            aws_sdk_s3::types::CompletedMultipartUpload::builder()
                .parts(
                    aws_sdk_s3::types::CompletedPart::builder()
                        .part_number(1)
                        .e_tag(etag)
                        .build(),
                )
                .build(),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(
        upstream_bytes(&up, "fs-chains", "mp").await.as_deref(),
        Some(&part[..])
    );
}

/// A TLS upstream whose certificate only the backend's own `ca` file vouches for (a second
/// Sluice, TLS-only, on its local backend): objects round-trip through it, and without the `ca`
/// the first Sluice refuses to trust it (503, the upstream unreachable) rather than send to it.
#[tokio::test(flavor = "multi_thread")]
async fn tls_upstream_trusted_through_its_ca_file() {
    let inner = Sluice::start_with(Options {
        tls: true,
        ..Default::default()
    });
    let backend = |name: &str, ca: bool| {
        let mut yaml = format!(
            "  {name}:\n    type: s3\n    profile: generic\n    endpoint: {}\n    region: {REGION}\n    addressing: path\n    access_key_id: {}\n    secret_access_key: \"{}\"",
            inner.endpoint,
            sluice_tests::ACCESS_ID,
            inner.secret
        );
        if ca {
            yaml.push_str(&format!("\n    ca: {}", inner.cert_path().display()));
        }
        yaml
    };
    let outer = Sluice::start_with(Options {
        backends: [backend("inner", true), backend("untrusted", false)].join("\n"),
        routes: [
            r#"      - { bucket: "tls-*", backend: inner }"#,
            r#"      - { bucket: "untrusted-*", backend: untrusted }"#,
        ]
        .join("\n"),
        ..Default::default()
    });
    let c = client(&outer);
    c.create_bucket().bucket("tls-b").send().await.unwrap();
    let body = data(3 * MIB + 11, 5);
    put(&c, "tls-b", "k", body.clone()).await;
    assert_eq!(get_bytes(&c, "tls-b", "k").await, body);
    // The inner Sluice holds it, under the same names.
    let direct_inner = crate::support::tls_client(&inner);
    assert_eq!(get_bytes(&direct_inner, "tls-b", "k").await, body);

    let err = c
        .create_bucket()
        .bucket("untrusted-b")
        .send()
        .await
        .unwrap_err();
    assert_eq!(http_status(&err), 503, "{err:?}");
}

/// Operations Sluice does not model: on a `passthrough` route (here to moto, renaming the
/// bucket) they are forwarded re-signed and the upstream's answer returned; elsewhere they are
/// `NotImplemented`; a forwarded request never carries a copy source.
#[tokio::test(flavor = "multi_thread")]
async fn passthrough_routes_forward_unmodelled_operations() {
    let moto = Upstream::moto();
    let sluice = Sluice::start_with(Options {
        backends: moto.backend_yaml("moto", "generic"),
        routes: [
            r#"      - { bucket: "policies", backend: moto, target_bucket: moto-policies, passthrough: true }"#,
            r#"      - { bucket: "moto-*", backend: moto }"#,
        ]
        .join("\n"),
        ..Default::default()
    });
    let c = client(&sluice);
    c.create_bucket().bucket("policies").send().await.unwrap();
    c.create_bucket().bucket("moto-plain").send().await.unwrap();
    let policy = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":"*","Action":"s3:GetObject","Resource":"arn:aws:s3:::moto-policies/*"}]}"#;
    let put_policy = |bucket: &'static str| {
        let mut headers = HeaderMap::new();
        headers.insert("content-length", HeaderValue::from(policy.len()));
        headers.insert("content-type", HeaderValue::from_static("application/json"));
        let body = policy.as_bytes().to_vec();
        let hash: [u8; 32] = sha2::Sha256::digest(&body).into();
        let path = format!("/{bucket}?policy");
        let sluice = &sluice;
        async move {
            send_signed(
                sluice,
                Method::PUT,
                &path,
                headers,
                PayloadMode::Signed(hash),
                move |_, _| body,
            )
            .await
        }
    };
    let (status, body) = put_policy("policies").await;
    assert!((200..300).contains(&status), "{status}: {body}");
    // It is the upstream's bucket (under its own name) that holds the policy now.
    let (status, stored) = direct_get(&moto, "/moto-policies?policy").await;
    assert_eq!(status, 200, "{stored}");
    assert!(stored.contains("moto-policies/*"), "{stored}");
    // And the client reads it back through Sluice.
    let empty: [u8; 32] = sha2::Sha256::digest(b"").into();
    let (status, got) = send_signed(
        &sluice,
        Method::GET,
        "/policies?policy",
        HeaderMap::new(),
        PayloadMode::Signed(empty),
        |_, _| Vec::new(),
    )
    .await;
    assert_eq!(status, 200, "{got}");
    assert!(got.contains("moto-policies/*"), "{got}");

    // Without passthrough: NotImplemented, and nothing reaches the upstream.
    let (status, body) = put_policy("moto-plain").await;
    assert_eq!((status, xml_code(&body)), (501, "NotImplemented"), "{body}");
    let (status, _) = direct_get(&moto, "/moto-plain?policy").await;
    assert_eq!(status, 404, "the policy reached the upstream");

    // A copy source never travels on a forwarded request (S3 stores copy on any PUT that
    // carries one, whatever its query).
    let mut headers = HeaderMap::new();
    headers.insert(
        "x-amz-copy-source",
        HeaderValue::from_static("/moto-plain/secret"),
    );
    let (status, body) = send_signed(
        &sluice,
        Method::PUT,
        "/policies/stolen?torrent",
        headers,
        PayloadMode::Signed(empty),
        |_, _| Vec::new(),
    )
    .await;
    assert_eq!((status, xml_code(&body)), (400, "InvalidRequest"), "{body}");
}
