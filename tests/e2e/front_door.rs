//! The front door: TLS 1.2/1.3 with HTTP/1.1 and HTTP/2, virtual-hosted addressing, header
//! limits, graceful shutdown, and `sluice check`.

use std::time::Duration;

use aws_sdk_s3::primitives::ByteStream;
use http::{HeaderMap, Method, Uri};
use sha2::{Digest, Sha256};
use sluice_sigv4::{PayloadMode, SecretKey, sign_request};
use sluice_tests::{ACCESS_ID, Options, Sluice, bin};

use crate::support::{client, make_bucket};

fn signed_headers(s: &Sluice, method: &Method, url: &str) -> HeaderMap {
    let uri: Uri = url.parse().unwrap();
    let secret = SecretKey::new(s.secret.clone());
    let date = crate::support::now();
    let params = crate::support::signing_params(ACCESS_ID, &secret, &date);
    let mut headers = HeaderMap::new();
    let empty: [u8; 32] = Sha256::digest(b"").into();
    sign_request(
        method,
        &uri,
        &mut headers,
        &PayloadMode::Signed(empty),
        &params,
    )
    .unwrap();
    headers
}

fn tls_client(s: &Sluice, max_tls12: bool, http1_only: bool) -> reqwest::Client {
    let cert = reqwest::Certificate::from_pem(&std::fs::read(s.cert_path()).unwrap()).unwrap();
    let mut b = reqwest::Client::builder()
        .use_rustls_tls()
        .add_root_certificate(cert)
        .tls_built_in_root_certs(false);
    if max_tls12 {
        b = b.max_tls_version(reqwest::tls::Version::TLS_1_2);
    }
    if http1_only {
        b = b.http1_only();
    }
    b.build().unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn tls_serves_http1_and_http2_on_tls12_and_tls13() {
    let s = Sluice::start_with(Options {
        tls: true,
        ..Default::default()
    });
    assert!(s.endpoint.starts_with("https://"));
    let url = format!("https://localhost:{}/", s.addr.port());
    for (tls12, http1, want) in [
        (false, false, http::Version::HTTP_2),
        (false, true, http::Version::HTTP_11),
        (true, false, http::Version::HTTP_2),
    ] {
        let resp = tls_client(&s, tls12, http1)
            .get(&url)
            .headers(signed_headers(&s, &Method::GET, &url))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.version(), want);
        assert_eq!(resp.status().as_u16(), 200, "{:?}", resp.text().await);
    }
    // TLS 1.1 and 1.0 are refused at the handshake.
    for (flag, ok) in [
        ("-tls1_1", false),
        ("-tls1", false),
        ("-tls1_2", true),
        ("-tls1_3", true),
    ] {
        let out = tokio::process::Command::new("openssl")
            .args([
                "s_client",
                "-connect",
                &s.addr.to_string(),
                flag,
                "-servername",
                "localhost",
            ])
            .stdin(std::process::Stdio::null())
            .output()
            .await
            .expect("openssl is installed");
        let text = String::from_utf8_lossy(&out.stdout);
        let negotiated = text.contains("Cipher is") && !text.contains("Cipher is (NONE)");
        assert_eq!(negotiated, ok, "{flag}: {text}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn virtual_hosted_style_addressing() {
    let s = Sluice::start();
    let c = client(&s);
    let b = make_bucket(&c, "vhost").await;
    c.put_object()
        .bucket(&b)
        .key("dir/k")
        .body(ByteStream::from_static(b"virtual"))
        .send()
        .await
        .unwrap();
    let host = format!("{b}.s3.localhost");
    let url = format!("http://{host}:{}/dir/k", s.addr.port());
    let client = reqwest::Client::builder()
        .resolve(&host, s.addr)
        .build()
        .unwrap();
    let resp = client
        .get(&url)
        .headers(signed_headers(&s, &Method::GET, &url))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    assert_eq!(resp.bytes().await.unwrap().as_ref(), b"virtual");
}

#[tokio::test(flavor = "multi_thread")]
async fn oversized_headers_get_an_s3_error() {
    let s = Sluice::start();
    let url = format!("{}/", s.endpoint);
    let resp = reqwest::Client::new()
        .get(&url)
        .header("x-amz-meta-big", "a".repeat(20 * 1024))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 400);
    let body = resp.text().await.unwrap();
    assert!(
        body.contains("<Code>RequestHeaderSectionTooLarge</Code>"),
        "{body}"
    );
    // Far beyond the limit, the connection-level bound answers before any parsing.
    let resp = reqwest::Client::new()
        .get(&url)
        .header("x-amz-meta-big", "a".repeat(200 * 1024))
        .send()
        .await;
    assert!(resp.map(|r| r.status().is_client_error()).unwrap_or(true));
    // The server is still healthy.
    client(&s).list_buckets().send().await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn sigterm_drains_in_flight_downloads() {
    let mut s = Sluice::start();
    let c = client(&s);
    let b = make_bucket(&c, "drain").await;
    let data: Vec<u8> = (0..(48u32 << 20)).map(|i| (i >> 8) as u8).collect();
    let want = hex::encode(Sha256::digest(&data));
    c.put_object()
        .bucket(&b)
        .key("big")
        .body(ByteStream::from(data))
        .send()
        .await
        .unwrap();

    let url = format!("{}/{b}/big", s.endpoint);
    let mut resp = reqwest::Client::new()
        .get(&url)
        .headers(signed_headers(&s, &Method::GET, &url))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    let mut hasher = Sha256::new();
    let first = resp.chunk().await.unwrap().unwrap();
    hasher.update(&first);

    // SIGTERM while the body is mid-flight: new connections stop being accepted...
    std::process::Command::new("kill")
        .arg("-TERM")
        .arg(s.pid().to_string())
        .status()
        .unwrap();
    let addr = s.addr;
    let mut refused = false;
    for _ in 0..200 {
        if tokio::net::TcpStream::connect(addr).await.is_err() {
            refused = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert!(refused, "listener still accepting after SIGTERM");
    // ...and the in-flight download completes intact.
    while let Some(chunk) = resp.chunk().await.unwrap() {
        hasher.update(&chunk);
    }
    assert_eq!(hex::encode(hasher.finalize()), want);
    let status = s.stop().expect("exit status");
    assert!(status.success(), "{status:?}: {}", s.log());
}

#[test]
fn check_reports_every_error_with_its_place() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.yaml");
    std::fs::write(
        &path,
        concat!(
            "listeners:\n  - bind: 127.0.0.1:0\n    danger_plain_http: true\n",
            "backends:\n  local: { type: local, path: data }\n",
            "tenants:\n  - name: a\n    routes: [{ bucket: \"*\", backend: local }]\n",
            "  - name: b\n    keys:\n      - access_id: BADKEY0000000000\n        secret: \"not base64 at all!\"\n",
            "    routes: [{ bucket: \"*\", backend: missing }]\n",
        ),
    )
    .unwrap();
    let out = std::process::Command::new(bin())
        .args(["check", "--config"])
        .arg(&path)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("tenants[1].keys[0].secret: not valid base64"),
        "{err}"
    );
    assert!(
        err.contains("tenants[1].routes[0].backend: no backend named \"missing\""),
        "{err}"
    );
    assert!(
        !err.contains("not base64 at all"),
        "secrets must not be echoed: {err}"
    );

    let good = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../config/local.yaml");
    let out = std::process::Command::new(bin())
        .args(["check", "--config"])
        .arg(&good)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Over TLS the SDK sends what current SDKs send by default: an unsigned aws-chunked body with
/// a trailing CRC32 (STREAMING-UNSIGNED-PAYLOAD-TRAILER).
#[tokio::test(flavor = "multi_thread")]
async fn sdk_over_tls_with_default_trailing_checksums() {
    let s = Sluice::start_with(Options {
        tls: true,
        ..Default::default()
    });
    let c = crate::support::tls_client(&s);
    let b = make_bucket(&c, "tlssdk").await;
    let data: Vec<u8> = (0..(9u32 << 20))
        .map(|i| (i.wrapping_mul(31) >> 3) as u8)
        .collect();
    let put = c
        .put_object()
        .bucket(&b)
        .key("obj")
        .body(ByteStream::from(data.clone()))
        .send()
        .await
        .unwrap();
    assert!(
        put.checksum_crc32().is_some(),
        "the SDK sent and Sluice verified a CRC32 trailer"
    );
    let out = c
        .get_object()
        .bucket(&b)
        .key("obj")
        .checksum_mode(aws_sdk_s3::types::ChecksumMode::Enabled)
        .send()
        .await
        .unwrap();
    assert_eq!(out.checksum_crc32(), put.checksum_crc32());
    let got = out.body.collect().await.unwrap().into_bytes();
    assert_eq!(
        hex::encode(Sha256::digest(&got)),
        hex::encode(Sha256::digest(&data))
    );
    let log = s.log();
    assert!(
        log.contains("op=\"PutObject\"") || log.contains("PutObject"),
        "access log names the operation"
    );
}

/// Reads until the server closes the connection; returns what it sent. Bounded by `limit`.
async fn read_until_closed(stream: &mut tokio::net::TcpStream, limit: Duration) -> Option<Vec<u8>> {
    use tokio::io::AsyncReadExt;
    let mut out = Vec::new();
    tokio::time::timeout(limit, async {
        let mut buf = [0u8; 4096];
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => out.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await
    .ok()
    .map(|()| out)
}

#[tokio::test(flavor = "multi_thread")]
async fn idle_and_slow_header_connections_are_closed() {
    use tokio::io::AsyncWriteExt;
    let s = Sluice::start_with(Options {
        limits: "  idle_timeout: 1s\n  header_read_timeout: 1s".into(),
        ..Default::default()
    });
    // An idle connection that never sends anything is closed by the server.
    let mut idle = tokio::net::TcpStream::connect(s.addr).await.unwrap();
    assert!(
        read_until_closed(&mut idle, Duration::from_secs(15))
            .await
            .is_some(),
        "idle connection never closed"
    );
    // A client that starts a request head and stalls (slowloris) is cut off too.
    let mut slow = tokio::net::TcpStream::connect(s.addr).await.unwrap();
    slow.write_all(b"GET / HTTP/1.1\r\nHost: localhost\r\nX-Slow: ")
        .await
        .unwrap();
    assert!(
        read_until_closed(&mut slow, Duration::from_secs(15))
            .await
            .is_some(),
        "stalled request head never cut off"
    );
    // The server is still serving.
    client(&s).list_buckets().send().await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn connection_limit_queues_extra_connections() {
    use tokio::io::AsyncWriteExt;
    let s = Sluice::start_with(Options {
        limits: "  max_connections: 2".into(),
        ..Default::default()
    });
    let first = tokio::net::TcpStream::connect(s.addr).await.unwrap();
    let second = tokio::net::TcpStream::connect(s.addr).await.unwrap();
    // Make sure both are accepted (served) before opening the third: a request on each answers.
    let mut held = Vec::new();
    for mut conn in [first, second] {
        conn.write_all(b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n")
            .await
            .unwrap();
        let mut buf = [0u8; 512];
        let n = tokio::time::timeout(
            Duration::from_secs(10),
            tokio::io::AsyncReadExt::read(&mut conn, &mut buf),
        )
        .await
        .unwrap()
        .unwrap();
        assert!(
            buf[..n].starts_with(b"HTTP/1.1 403"),
            "{}",
            String::from_utf8_lossy(&buf[..n])
        );
        held.push(conn);
    }
    // A third connection is not served while two are open...
    let mut third = tokio::net::TcpStream::connect(s.addr).await.unwrap();
    third
        .write_all(b"GET / HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut buf = [0u8; 512];
    let early = tokio::time::timeout(
        Duration::from_millis(500),
        tokio::io::AsyncReadExt::read(&mut third, &mut buf),
    )
    .await;
    assert!(
        early.is_err(),
        "third connection served beyond max_connections"
    );
    // ...and is served as soon as one closes.
    drop(held.pop());
    let answer = read_until_closed(&mut third, Duration::from_secs(10))
        .await
        .expect("third connection served after a slot freed");
    assert!(
        answer.starts_with(b"HTTP/1.1 403"),
        "{}",
        String::from_utf8_lossy(&answer)
    );
}

/// Empty and small objects over HTTP/2 (a body that ends at once must end cleanly).
#[tokio::test(flavor = "multi_thread")]
async fn empty_objects_over_http2() {
    let s = Sluice::start_with(Options {
        tls: true,
        ..Default::default()
    });
    let c = crate::support::tls_client(&s);
    let b = make_bucket(&c, "h2empty").await;
    for (key, data) in [("empty", Vec::new()), ("small", b"tiny".to_vec())] {
        c.put_object()
            .bucket(&b)
            .key(key)
            .body(ByteStream::from(data.clone()))
            .send()
            .await
            .unwrap();
        let url = format!("https://localhost:{}/{b}/{key}", s.addr.port());
        for _ in 0..3 {
            let resp = tls_client(&s, false, false)
                .get(&url)
                .headers(signed_headers(&s, &Method::GET, &url))
                .send()
                .await
                .unwrap();
            assert_eq!(resp.version(), http::Version::HTTP_2);
            assert_eq!(resp.status().as_u16(), 200);
            assert_eq!(
                resp.bytes().await.unwrap().as_ref(),
                data.as_slice(),
                "{key}"
            );
        }
    }
    assert!(!s.log().contains("panicked"), "{}", s.log());
}

/// Signed headers for a PUT of `len` bytes sent as `UNSIGNED-PAYLOAD`.
fn unsigned_put_headers(s: &Sluice, uri: &Uri, len: u64) -> HeaderMap {
    let secret = SecretKey::new(s.secret.clone());
    let date = crate::support::now();
    let params = crate::support::signing_params(ACCESS_ID, &secret, &date);
    let mut headers = HeaderMap::new();
    headers.insert(http::header::CONTENT_LENGTH, len.into());
    sign_request(
        &Method::PUT,
        uri,
        &mut headers,
        &PayloadMode::Unsigned,
        &params,
    )
    .unwrap();
    headers
}

/// Waits until the server has written `n` bytes of an upload into `tmp/`.
async fn upload_reached(s: &Sluice, n: u64) -> bool {
    let tmp = s.data_dir().join("tmp");
    crate::auth::eventually(|| async {
        std::fs::read_dir(&tmp)
            .unwrap()
            .any(|e| e.unwrap().metadata().unwrap().len() >= n)
    })
    .await
}

/// The access log line of the upload of `partial`, once written; then checks that nothing of
/// it is stored or left in `tmp/`.
async fn abandoned_upload_line(s: &Sluice, c: &aws_sdk_s3::Client, bucket: &str) -> String {
    let line = || {
        s.log()
            .lines()
            .find(|l| l.contains("sluice::access") && l.contains("/partial"))
            .map(str::to_owned)
    };
    assert!(
        crate::auth::eventually(|| async { line().is_some() }).await,
        "no access log line for the abandoned upload:\n{}",
        s.log()
    );
    let err = c
        .head_object()
        .bucket(bucket)
        .key("partial")
        .send()
        .await
        .unwrap_err();
    assert_eq!(crate::support::http_status(&err), 404);
    let tmp = s.data_dir().join("tmp");
    let empty = || async { std::fs::read_dir(&tmp).unwrap().next().is_none() };
    assert!(
        crate::auth::eventually(empty).await,
        "the partial body was left in tmp/"
    );
    line().unwrap()
}

/// HTTP/1: a client that closes the connection mid-body ends the body short: the upload fails
/// as an incomplete body (400 in the log), nothing is stored.
#[tokio::test(flavor = "multi_thread")]
async fn http1_client_gone_mid_upload_stores_nothing() {
    use tokio::io::AsyncWriteExt;
    let s = Sluice::start();
    let c = client(&s);
    let b = make_bucket(&c, "gone").await;
    let uri: Uri = format!("{}/{b}/partial", s.endpoint).parse().unwrap();
    let mut head = format!("PUT {} HTTP/1.1\r\n", uri.path());
    for (name, value) in &unsigned_put_headers(&s, &uri, 1 << 20) {
        head += &format!("{name}: {}\r\n", value.to_str().unwrap());
    }
    head += "\r\n";
    // 64 KiB of the promised 1 MiB; once the server has written them, the client goes away.
    let mut conn = tokio::net::TcpStream::connect(s.addr).await.unwrap();
    conn.write_all(head.as_bytes()).await.unwrap();
    conn.write_all(&[7u8; 65536]).await.unwrap();
    assert!(
        upload_reached(&s, 65536).await,
        "upload never started:\n{}",
        s.log()
    );
    drop(conn);
    let line = abandoned_upload_line(&s, &c, &b).await;
    assert!(
        line.contains("op=\"PutObject\"") && line.contains("status=400"),
        "{line}"
    );
}

/// HTTP/2: a client that cancels its upload (RST_STREAM) ends that stream's body with an
/// error: the upload fails (400 in the log) and nothing is stored.
#[tokio::test(flavor = "multi_thread")]
async fn http2_upload_cancelled_stores_nothing() {
    let s = Sluice::start_with(Options {
        tls: true,
        ..Default::default()
    });
    let c = crate::support::tls_client(&s);
    let b = make_bucket(&c, "cancel").await;
    let url = format!("https://localhost:{}/{b}/partial", s.addr.port());
    let headers = unsigned_put_headers(&s, &url.parse().unwrap(), 1 << 20);
    let (give_up, gave_up) = tokio::sync::oneshot::channel::<()>();
    let first = futures_util::stream::once(async { Ok(bytes::Bytes::from(vec![7u8; 65536])) });
    let then_fail = futures_util::stream::once(async {
        let _ = gave_up.await;
        Err(std::io::Error::other("client gives up"))
    });
    let body = reqwest::Body::wrap_stream(futures_util::StreamExt::chain(first, then_fail));
    let request = tls_client(&s, false, false)
        .put(&url)
        .headers(headers)
        .body(body)
        .send();
    let upload = tokio::spawn(request);
    assert!(
        upload_reached(&s, 65536).await,
        "upload never started:\n{}",
        s.log()
    );
    give_up.send(()).unwrap();
    assert!(
        upload.await.unwrap().is_err(),
        "a cancelled upload cannot succeed"
    );
    let line = abandoned_upload_line(&s, &c, &b).await;
    assert!(
        line.contains("op=\"PutObject\"") && line.contains("tenant=\"e2e\""),
        "{line}"
    );
    assert!(line.contains("status=400"), "{line}");
}
