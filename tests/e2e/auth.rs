//! Authentication end to end: wrong secrets, presigned URLs fetched with curl, signed chunked
//! uploads (valid and tampered), payload hash mismatches, and key lifecycle without restart.

use std::future::Future;
use std::time::{Duration, Instant, SystemTime};

use aws_sdk_s3::presigning::PresigningConfig;
use aws_sdk_s3::primitives::ByteStream;
use http::{HeaderMap, HeaderValue, Method, Uri};
use sluice_sigv4::{
    ChunkSignatureChain, ChunkedEncoder, PayloadMode, SecretKey, SigningParams, sign_request,
};
use sluice_tests::{ACCESS_ID, Sluice, random_secret};

use crate::support::{
    client, client_with, code, get_bytes, http_status, make_bucket, now, sha256_hex,
};

/// Polls `condition` until it holds or 15 s pass: synchronises on an observable state change
/// (the server picking up a key-store edit), never on a fixed delay.
pub async fn eventually<F, Fut>(mut condition: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = Instant::now() + Duration::from_secs(15);
    while Instant::now() < deadline {
        if condition().await {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    false
}

/// Parses `access_id: …` and `secret: …` from `sluice keys create`.
pub fn parse_created_key(stdout: &[u8]) -> (String, String) {
    let text = String::from_utf8_lossy(stdout);
    let field = |name: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(name).map(|v| v.trim().to_owned()))
            .unwrap_or_else(|| panic!("no {name} in {text}"))
    };
    (field("access_id:"), field("secret:"))
}

/// A request signed by Sluice's own signer (whose output the sigv4 crate checks against AWS's
/// published vectors), sent with reqwest. Returns (status, body).
pub async fn send_signed(
    s: &Sluice,
    method: Method,
    path: &str,
    mut headers: HeaderMap,
    payload: PayloadMode,
    body: impl FnOnce(&SigningParams<'_>, sluice_sigv4::Signature) -> Vec<u8>,
) -> (u16, String) {
    let uri: Uri = format!("{}{path}", s.endpoint).parse().unwrap();
    let secret = SecretKey::new(s.secret.clone());
    let date = now();
    let params = crate::support::signing_params(ACCESS_ID, &secret, &date);
    let seed = sign_request(&method, &uri, &mut headers, &payload, &params).unwrap();
    let body = body(&params, seed);
    let resp = reqwest::Client::new()
        .request(method, uri.to_string())
        .headers(headers)
        .body(body)
        .send()
        .await
        .unwrap();
    (resp.status().as_u16(), resp.text().await.unwrap())
}

/// A POST of `body` (an XML document) with its SHA-256 signed.
pub async fn post_signed(s: &Sluice, path: &str, body: Vec<u8>) -> (u16, String) {
    let hash: [u8; 32] =
        sha2::Digest::finalize(<sha2::Sha256 as sha2::Digest>::new_with_prefix(&body)).into();
    send_signed(
        s,
        Method::POST,
        path,
        HeaderMap::new(),
        PayloadMode::Signed(hash),
        |_, _| body,
    )
    .await
}

/// A PUT of `body` with its SHA-256 signed, as SDKs send over plain HTTP.
async fn put_signed(
    s: &Sluice,
    path: &str,
    headers: HeaderMap,
    body: &'static [u8],
) -> (u16, String) {
    let hash: [u8; 32] =
        sha2::Digest::finalize(<sha2::Sha256 as sha2::Digest>::new_with_prefix(body)).into();
    send_signed(
        s,
        Method::PUT,
        path,
        headers,
        PayloadMode::Signed(hash),
        |_, _| body.to_vec(),
    )
    .await
}

/// The `<Code>` of an S3 error body.
pub fn xml_code(body: &str) -> &str {
    body.split("<Code>")
        .nth(1)
        .and_then(|r| r.split("</Code>").next())
        .unwrap_or("<none>")
}

/// A signed aws-chunked body of `data` in `chunk` sized pieces, optionally with one byte of the
/// second chunk flipped after signing.
fn chunked_body(
    params: &SigningParams<'_>,
    seed: sluice_sigv4::Signature,
    data: &[u8],
    chunk: usize,
    tamper: bool,
) -> Vec<u8> {
    let chain = ChunkSignatureChain::new(params.signing_key(), params.date, &params.scope(), seed);
    let mut enc = ChunkedEncoder::new(Some(chain), false);
    let mut out = Vec::new();
    for (i, piece) in data.chunks(chunk).enumerate() {
        let mut framed = enc.chunk(piece);
        if tamper && i == 1 {
            let last_data_byte = framed.len() - 3;
            framed[last_data_byte] ^= 0x01;
        }
        out.extend(framed);
    }
    out.extend(enc.finish(&[]));
    out
}

fn chunked_headers(decoded_len: usize, encoded_len: usize) -> HeaderMap {
    let mut h = HeaderMap::new();
    h.insert("content-encoding", HeaderValue::from_static("aws-chunked"));
    h.insert("x-amz-decoded-content-length", decoded_len.into());
    h.insert("content-length", encoded_len.into());
    h
}

#[tokio::test(flavor = "multi_thread")]
async fn signed_chunked_upload_and_tampered_chunk() {
    let s = Sluice::start();
    let c = client(&s);
    let b = make_bucket(&c, "chunk").await;
    let data: Vec<u8> = (0..200_000u32).map(|i| (i * 7 % 256) as u8).collect();
    // The encoded length does not depend on the signature values, so measure it with a dummy seed.
    let probe = SecretKey::new("x".into());
    let date = now();
    let probe_params = crate::support::signing_params("X", &probe, &date);
    let zero_seed = || sluice_sigv4::Signature::from_hex(&"0".repeat(64)).unwrap();
    let encoded_len = chunked_body(&probe_params, zero_seed(), &data, 65536, false).len();

    let (status, body) = send_signed(
        &s,
        Method::PUT,
        &format!("/{b}/good"),
        chunked_headers(data.len(), encoded_len),
        PayloadMode::StreamingSigned,
        |p, seed| chunked_body(p, seed, &data, 65536, false),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        sha256_hex(&get_bytes(&c, &b, "good").await),
        sha256_hex(&data)
    );

    let (status, body) = send_signed(
        &s,
        Method::PUT,
        &format!("/{b}/bad"),
        chunked_headers(data.len(), encoded_len),
        PayloadMode::StreamingSigned,
        |p, seed| chunked_body(p, seed, &data, 65536, true),
    )
    .await;
    assert_eq!(
        (status, xml_code(&body)),
        (403, "SignatureDoesNotMatch"),
        "{body}"
    );
    let err = c
        .head_object()
        .bucket(&b)
        .key("bad")
        .send()
        .await
        .unwrap_err();
    assert_eq!(
        http_status(&err),
        404,
        "a tampered upload must store nothing"
    );

    // Overwriting an existing key with a tampered body leaves the old version intact.
    let (status, _) = send_signed(
        &s,
        Method::PUT,
        &format!("/{b}/good"),
        chunked_headers(data.len(), encoded_len),
        PayloadMode::StreamingSigned,
        |p, seed| chunked_body(p, seed, &data, 65536, true),
    )
    .await;
    assert_eq!(status, 403);
    assert_eq!(
        sha256_hex(&get_bytes(&c, &b, "good").await),
        sha256_hex(&data)
    );

    // A body shorter than x-amz-decoded-content-length says: IncompleteBody, nothing stored.
    let short = &data[..100_000];
    let (status, body) = send_signed(
        &s,
        Method::PUT,
        &format!("/{b}/short"),
        {
            let len = chunked_body(&probe_params, zero_seed(), short, 65536, false).len();
            chunked_headers(data.len(), len)
        },
        PayloadMode::StreamingSigned,
        |p, seed| chunked_body(p, seed, short, 65536, false),
    )
    .await;
    assert_eq!((status, xml_code(&body)), (400, "IncompleteBody"), "{body}");
    assert_eq!(
        http_status(
            &c.head_object()
                .bucket(&b)
                .key("short")
                .send()
                .await
                .unwrap_err()
        ),
        404
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn payload_hash_mismatch_stores_nothing() {
    let s = Sluice::start();
    let c = client(&s);
    let b = make_bucket(&c, "hash").await;
    let claimed: [u8; 32] = sha2::Digest::finalize(
        <sha2::Sha256 as sha2::Digest>::new_with_prefix(b"what I claim"),
    )
    .into();
    let (status, body) = send_signed(
        &s,
        Method::PUT,
        &format!("/{b}/k"),
        HeaderMap::new(),
        PayloadMode::Signed(claimed),
        |_, _| b"what I send".to_vec(),
    )
    .await;
    assert_eq!(
        (status, xml_code(&body)),
        (400, "XAmzContentSHA256Mismatch"),
        "{body}"
    );
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

    let (status, body) = put_signed(&s, &format!("/{b}/k"), HeaderMap::new(), b"honest").await;
    assert_eq!(status, 200, "{body}");

    // A wrong x-amz-checksum-crc32 header: BadDigest, the old object stays.
    let mut h = HeaderMap::new();
    h.insert("x-amz-checksum-crc32", HeaderValue::from_static("AAAAAA=="));
    let (status, body) = put_signed(&s, &format!("/{b}/k"), h, b"changed").await;
    assert_eq!((status, xml_code(&body)), (400, "BadDigest"), "{body}");
    assert_eq!(get_bytes(&c, &b, "k").await, b"honest");
}

#[tokio::test(flavor = "multi_thread")]
async fn wrong_secret_and_unknown_key() {
    let s = Sluice::start();
    let good = client(&s);
    let b = make_bucket(&good, "auth").await;
    let wrong = client_with(&s, ACCESS_ID, &random_secret());
    let err = wrong.list_buckets().send().await.unwrap_err();
    assert_eq!(
        (code(&err).as_str(), http_status(&err)),
        ("SignatureDoesNotMatch", 403)
    );
    let err = wrong
        .put_object()
        .bucket(&b)
        .key("k")
        .body(ByteStream::from_static(b"x"))
        .send()
        .await
        .unwrap_err();
    assert_eq!(code(&err), "SignatureDoesNotMatch");
    let unknown = client_with(&s, "NOSUCHKEY0000000", &s.secret);
    let err = unknown.list_buckets().send().await.unwrap_err();
    assert_eq!(
        (code(&err).as_str(), http_status(&err)),
        ("InvalidAccessKeyId", 403)
    );
    // The secret never appears in the log, nor does an expected signature in any error.
    assert!(!s.log().contains(&s.secret));

    // Anonymous requests are refused with an S3 XML error.
    let resp = reqwest::get(format!("{}/{b}", s.endpoint)).await.unwrap();
    assert_eq!(resp.status().as_u16(), 403);
    let body = resp.text().await.unwrap();
    assert_eq!(xml_code(&body), "AccessDenied");
    assert!(body.contains("<RequestId>"), "{body}");
}

async fn curl(url: &str) -> (u16, Vec<u8>) {
    let out = tokio::process::Command::new("curl")
        .args([
            "-sS",
            "--max-time",
            "30",
            "-o",
            "-",
            "-w",
            "\n%{http_code}",
            url,
        ])
        .output()
        .await
        .expect("curl is installed");
    let mut body = out.stdout;
    let split = body.iter().rposition(|b| *b == b'\n').unwrap();
    let status = String::from_utf8_lossy(&body[split + 1..]).parse().unwrap();
    body.truncate(split);
    (status, body)
}

#[tokio::test(flavor = "multi_thread")]
async fn presigned_get_with_curl_and_expiry() {
    let s = Sluice::start();
    let c = client(&s);
    let b = make_bucket(&c, "presign").await;
    let data = b"presigned payload \x00\xff".to_vec();
    c.put_object()
        .bucket(&b)
        .key("p q/obj")
        .body(ByteStream::from(data.clone()))
        .send()
        .await
        .unwrap();

    let req = c
        .get_object()
        .bucket(&b)
        .key("p q/obj")
        .presigned(PresigningConfig::expires_in(Duration::from_secs(300)).unwrap())
        .await
        .unwrap();
    let (status, body) = curl(req.uri()).await;
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    assert_eq!(body, data);

    // Tampering with the URL breaks the signature.
    let (status, body) = curl(&req.uri().replace("p%20q/obj", "p%20q/other")).await;
    assert_eq!(
        (status, xml_code(&String::from_utf8_lossy(&body)).to_owned()),
        (403, "SignatureDoesNotMatch".to_owned())
    );

    // Signed two hours ago for one minute: expired.
    let past = SystemTime::now() - Duration::from_secs(7200);
    let cfg = PresigningConfig::builder()
        .start_time(past)
        .expires_in(Duration::from_secs(60))
        .build()
        .unwrap();
    let req = c
        .get_object()
        .bucket(&b)
        .key("p q/obj")
        .presigned(cfg)
        .await
        .unwrap();
    let (status, body) = curl(req.uri()).await;
    let body = String::from_utf8_lossy(&body);
    assert_eq!((status, xml_code(&body)), (403, "AccessDenied"), "{body}");
    assert!(body.contains("Request has expired"), "{body}");

    // More than seven days is refused outright.
    let uri = req
        .uri()
        .replace("X-Amz-Expires=60", "X-Amz-Expires=604801");
    let (status, body) = curl(&uri).await;
    assert_eq!(
        (status, xml_code(&String::from_utf8_lossy(&body)).to_owned()),
        (400, "AuthorizationQueryParametersError".to_owned())
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn key_lifecycle_without_restart() {
    let s = Sluice::start();
    let out = s.keys(&["create", "--tenant", "e2e"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (id, secret) = parse_created_key(&out.stdout);
    assert_eq!(secret.len(), 40);
    let listing = s.keys(&["list"]);
    let listing = String::from_utf8_lossy(&listing.stdout);
    assert!(
        listing.contains(&id) && !listing.contains(&secret),
        "{listing}"
    );
    let stored = std::fs::read_to_string(s.dir.path().join("keys.yaml")).unwrap();
    assert!(
        stored.contains(&id) && !stored.contains(&secret),
        "the secret must be stored encrypted"
    );

    let c = client_with(&s, &id, &secret);
    assert!(
        eventually(|| async { c.list_buckets().send().await.is_ok() }).await,
        "new key never accepted"
    );

    let out = s.keys(&["deactivate", &id, "--tenant", "e2e"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let refused = eventually(|| async {
        matches!(c.list_buckets().send().await, Err(ref e) if code(e) == "InvalidAccessKeyId")
    })
    .await;
    assert!(refused, "deactivated key still accepted");

    // An active key cannot be deleted; an inactive one can, and stays refused.
    let out = s.keys(&["activate", &id, "--tenant", "e2e"]);
    assert!(out.status.success());
    assert!(
        eventually(|| async { c.list_buckets().send().await.is_ok() }).await,
        "reactivated key refused"
    );
    let out = s.keys(&["delete", &id, "--tenant", "e2e"]);
    assert!(!out.status.success(), "deleting an active key must fail");
    assert!(
        s.keys(&["deactivate", &id, "--tenant", "e2e"])
            .status
            .success()
    );
    assert!(s.keys(&["delete", &id, "--tenant", "e2e"]).status.success());
    let refused = eventually(|| async {
        matches!(c.list_buckets().send().await, Err(ref e) if code(e) == "InvalidAccessKeyId")
    })
    .await;
    assert!(refused, "deleted key still accepted");
    // The config's key was never affected.
    client(&s).list_buckets().send().await.unwrap();

    // Ten keys per tenant at most (the config's key counts).
    for _ in 0..9 {
        assert!(s.keys(&["create", "--tenant", "e2e"]).status.success());
    }
    let out = s.keys(&["create", "--tenant", "e2e"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("maximum"));
}

#[tokio::test(flavor = "multi_thread")]
async fn plain_http_accepts_unsigned_bodies_only_when_configured() {
    let s = Sluice::start();
    let c = client(&s);
    let b = make_bucket(&c, "unsigned").await;
    let (status, body) = send_signed(
        &s,
        Method::PUT,
        &format!("/{b}/k"),
        HeaderMap::new(),
        PayloadMode::Unsigned,
        |_, _| b"x".to_vec(),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(get_bytes(&c, &b, "k").await, b"x");
}

#[tokio::test(flavor = "multi_thread")]
async fn plain_http_refuses_unsigned_bodies_by_default() {
    let s = Sluice::start_with(sluice_tests::Options {
        accept_unsigned: false,
        ..Default::default()
    });
    let c = client(&s);
    let b = make_bucket(&c, "unsigned").await;
    // Over plain HTTP the Rust SDK signs in-memory payloads, so those keep working...
    c.put_object()
        .bucket(&b)
        .key("sdk")
        .body(ByteStream::from_static(b"x"))
        .send()
        .await
        .unwrap();
    // ...while an unsigned body is refused,
    let (status, body) = send_signed(
        &s,
        Method::PUT,
        &format!("/{b}/k"),
        HeaderMap::new(),
        PayloadMode::Unsigned,
        |_, _| b"x".to_vec(),
    )
    .await;
    assert_eq!((status, xml_code(&body)), (403, "AccessDenied"), "{body}");
    // and a signed payload is accepted.
    let (status, body) = put_signed(&s, &format!("/{b}/k"), HeaderMap::new(), b"signed").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(get_bytes(&c, &b, "k").await, b"signed");
}

fn trailer_body(
    params: &SigningParams<'_>,
    seed: sluice_sigv4::Signature,
    data: &[u8],
    trailer_value: &str,
    tamper_after_signing: bool,
) -> Vec<u8> {
    let chain = ChunkSignatureChain::new(params.signing_key(), params.date, &params.scope(), seed);
    let mut enc = ChunkedEncoder::new(Some(chain), true);
    let mut out = Vec::new();
    for piece in data.chunks(8192) {
        out.extend(enc.chunk(piece));
    }
    let mut tail = enc.finish(&[("x-amz-checksum-crc32c", trailer_value)]);
    if tamper_after_signing {
        let text = String::from_utf8(tail).unwrap();
        tail = text.replacen(trailer_value, "AAAAAA==", 1).into_bytes();
    }
    out.extend(tail);
    out
}

#[tokio::test(flavor = "multi_thread")]
async fn signed_chunks_with_signed_trailer() {
    let s = Sluice::start();
    let c = client(&s);
    let b = make_bucket(&c, "trailer").await;
    let data: Vec<u8> = (0..50_000u32).map(|i| (i % 13) as u8).collect();
    let mut crc = sluice_sigv4::Checksummer::new(sluice_sigv4::ChecksumAlgorithm::Crc32c);
    crc.update(&data);
    let good = crc.finalize();
    let headers = |len: usize| {
        let mut h = chunked_headers(data.len(), len);
        h.insert(
            "x-amz-trailer",
            HeaderValue::from_static("x-amz-checksum-crc32c"),
        );
        h
    };
    let probe = SecretKey::new("x".into());
    let date = now();
    let probe_params = crate::support::signing_params("X", &probe, &date);
    let zero = || sluice_sigv4::Signature::from_hex(&"0".repeat(64)).unwrap();
    let len = trailer_body(&probe_params, zero(), &data, &good, false).len();

    let (status, body) = send_signed(
        &s,
        Method::PUT,
        &format!("/{b}/ok"),
        headers(len),
        PayloadMode::StreamingSignedTrailer,
        |p, seed| trailer_body(p, seed, &data, &good, false),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(get_bytes(&c, &b, "ok").await, data);

    // A trailer changed after signing breaks the trailer signature.
    let (status, body) = send_signed(
        &s,
        Method::PUT,
        &format!("/{b}/tampered"),
        headers(len),
        PayloadMode::StreamingSignedTrailer,
        |p, seed| trailer_body(p, seed, &data, &good, true),
    )
    .await;
    assert_eq!(
        (status, xml_code(&body)),
        (403, "SignatureDoesNotMatch"),
        "{body}"
    );
    // A correctly signed but wrong checksum is BadDigest; neither stores anything.
    let (status, body) = send_signed(
        &s,
        Method::PUT,
        &format!("/{b}/wrong"),
        headers(len),
        PayloadMode::StreamingSignedTrailer,
        |p, seed| trailer_body(p, seed, &data, "AAAAAA==", false),
    )
    .await;
    assert_eq!((status, xml_code(&body)), (400, "BadDigest"), "{body}");
    for key in ["tampered", "wrong"] {
        assert_eq!(
            http_status(
                &c.head_object()
                    .bucket(&b)
                    .key(key)
                    .send()
                    .await
                    .unwrap_err()
            ),
            404,
            "{key}"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn unsigned_amz_headers_are_refused() {
    let s = Sluice::start();
    let c = client(&s);
    let b = make_bucket(&c, "hdrs").await;
    let url = format!("{}/{b}/k", s.endpoint);
    let empty: [u8; 32] =
        sha2::Digest::finalize(<sha2::Sha256 as sha2::Digest>::new_with_prefix(b"")).into();
    c.put_object()
        .bucket(&b)
        .key("k")
        .body(ByteStream::from_static(b"data"))
        .send()
        .await
        .unwrap();
    // Re-send a signed GET with an x-amz-meta header added after signing.
    let uri: Uri = url.parse().unwrap();
    let secret = SecretKey::new(s.secret.clone());
    let date = now();
    let params = crate::support::signing_params(ACCESS_ID, &secret, &date);
    let mut headers = HeaderMap::new();
    sign_request(
        &Method::GET,
        &uri,
        &mut headers,
        &PayloadMode::Signed(empty),
        &params,
    )
    .unwrap();
    headers.insert("x-amz-meta-injected", HeaderValue::from_static("evil"));
    let resp = reqwest::Client::new()
        .get(&url)
        .headers(headers)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 403);
    let body = resp.text().await.unwrap();
    assert_eq!(xml_code(&body), "AccessDenied", "{body}");
    assert!(
        body.contains("<HeadersNotSigned>x-amz-meta-injected</HeadersNotSigned>"),
        "{body}"
    );
}
