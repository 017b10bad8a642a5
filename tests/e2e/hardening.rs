//! What a hostile client found at the front door, each checked through the real binary: repeated
//! auth headers and parameters, trailers nobody declared, XML with a field twice, huge ranges,
//! uploads without a length, stalled and trickling bodies, anonymous probes of unimplemented
//! features, oversized header sections, and values that must be spelled exactly.

use std::time::{Duration, Instant};

use aws_sdk_s3::primitives::ByteStream;
use http::{HeaderMap, HeaderValue, Method, Uri};
use sha2::{Digest, Sha256};
use sluice_sigv4::{ChunkedEncoder, PayloadMode, SecretKey, presign_url, sign_request};
use sluice_tests::{ACCESS_ID, Options, Sluice};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::auth::{eventually, send_signed, xml_code};
use crate::support::{client, code, http_status, make_bucket, now};

/// How long any one exchange may take before the test fails.
const EXCHANGE_LIMIT: Duration = Duration::from_secs(20);

/// `headers` plus the SigV4 headers for `method` on `path_and_query` with `payload`.
fn sign(
    s: &Sluice,
    method: &Method,
    path_and_query: &str,
    mut headers: HeaderMap,
    payload: PayloadMode,
) -> HeaderMap {
    let uri: Uri = format!("{}{path_and_query}", s.endpoint).parse().unwrap();
    let secret = SecretKey::new(s.secret.clone());
    let date = now();
    let params = crate::support::signing_params(ACCESS_ID, &secret, &date);
    sign_request(method, &uri, &mut headers, &payload, &params).unwrap();
    headers
}

fn empty_payload() -> PayloadMode {
    PayloadMode::Signed(Sha256::digest(b"").into())
}

/// A response read off a raw connection: status, head and body text.
#[derive(Debug)]
struct Raw {
    status: u16,
    text: String,
}

impl Raw {
    fn code(&self) -> &str {
        xml_code(&self.text)
    }
}

/// Writes `head` (request line and header lines, without the blank line) and `body` on a new
/// connection, exactly as given, asking the server to close afterwards; reads the answer.
async fn raw(s: &Sluice, head: &str, body: &[u8]) -> Raw {
    let mut conn = tokio::net::TcpStream::connect(s.addr).await.unwrap();
    conn.write_all(format!("{head}Connection: close\r\n\r\n").as_bytes())
        .await
        .unwrap();
    conn.write_all(body).await.unwrap();
    read_response(&mut conn).await
}

async fn read_response(conn: &mut tokio::net::TcpStream) -> Raw {
    let mut out = Vec::new();
    tokio::time::timeout(EXCHANGE_LIMIT, conn.read_to_end(&mut out))
        .await
        .expect("the server answered in time")
        .ok();
    let text = String::from_utf8_lossy(&out).into_owned();
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("not an HTTP response: {text:?}"));
    Raw { status, text }
}

/// The request line and headers of a signed request, as raw text.
fn head(method: &Method, path_and_query: &str, headers: &HeaderMap) -> String {
    let mut out = format!("{method} {path_and_query} HTTP/1.1\r\n");
    for (name, value) in headers {
        out += &format!("{name}: {}\r\n", value.to_str().unwrap());
    }
    out
}

async fn put(c: &aws_sdk_s3::Client, bucket: &str, key: &str, data: &'static [u8]) {
    c.put_object()
        .bucket(bucket)
        .key(key)
        .body(ByteStream::from_static(data))
        .send()
        .await
        .unwrap();
}

async fn assert_not_stored(c: &aws_sdk_s3::Client, bucket: &str, key: &str) {
    let err = c
        .head_object()
        .bucket(bucket)
        .key(key)
        .send()
        .await
        .unwrap_err();
    assert_eq!(http_status(&err), 404, "{key} was stored");
}

/// A `Content-MD5` header for an XML document (S3 requires one on some operations).
fn content_md5(doc: &[u8]) -> HeaderMap {
    use base64::Engine as _;
    let md5 = base64::engine::general_purpose::STANDARD.encode(<md5::Md5 as Digest>::digest(doc));
    let mut headers = HeaderMap::new();
    headers.insert("content-md5", HeaderValue::from_str(&md5).unwrap());
    headers
}

fn error_lines(s: &Sluice) -> Vec<String> {
    s.log()
        .lines()
        .filter(|l| l.contains("ERROR"))
        .map(str::to_owned)
        .collect()
}

/// A second `Authorization` header after a valid one: a proxy in front may believe either.
#[tokio::test(flavor = "multi_thread")]
async fn repeated_auth_headers_are_refused() {
    let s = Sluice::start();
    let headers = sign(&s, &Method::GET, "/", HeaderMap::new(), empty_payload());
    let valid = head(&Method::GET, "/", &headers);
    assert_eq!(raw(&s, &valid, b"").await.status, 200, "the valid request");
    let bogus = "Authorization: AWS4-HMAC-SHA256 Credential=OTHERKEY/20990101/us-east-1/s3/aws4_request, SignedHeaders=host, Signature=00\r\n";
    let twice = raw(&s, &format!("{valid}{bogus}"), b"").await;
    assert_eq!(
        (twice.status, twice.code()),
        (400, "InvalidArgument"),
        "{}",
        twice.text
    );
    // The same for the headers the signature's meaning depends on.
    let date = headers["x-amz-date"].to_str().unwrap().to_owned();
    let again = raw(&s, &format!("{valid}x-amz-date: {date}\r\n"), b"").await;
    assert_eq!(
        (again.status, again.code()),
        (400, "InvalidArgument"),
        "{}",
        again.text
    );
}

/// Headers Sluice reads one value of may not come twice either (the other copy would be
/// ignored here but may be believed elsewhere).
#[tokio::test(flavor = "multi_thread")]
async fn repeated_single_valued_headers_are_refused() {
    let s = Sluice::start();
    let headers = sign(&s, &Method::GET, "/", HeaderMap::new(), empty_payload());
    let valid = head(&Method::GET, "/", &headers);
    for extra in [
        "Range: bytes=0-1\r\nRange: bytes=5-9\r\n",
        "x-amz-trailer: x-amz-checksum-crc32\r\nx-amz-trailer: x-amz-checksum-sha256\r\n",
    ] {
        let r = raw(&s, &format!("{valid}{extra}"), b"").await;
        assert_eq!(
            (r.status, r.code()),
            (400, "InvalidArgument"),
            "{extra}: {}",
            r.text
        );
    }
}

/// A presigned URL with `X-Amz-Signature` twice, in either spelling, is refused.
#[tokio::test(flavor = "multi_thread")]
async fn repeated_presigned_parameters_are_refused() {
    let s = Sluice::start();
    let c = client(&s);
    let b = make_bucket(&c, "presig").await;
    put(&c, &b, "k", b"data").await;
    let secret = SecretKey::new(s.secret.clone());
    let date = now();
    let params = crate::support::signing_params(ACCESS_ID, &secret, &date);
    let uri: Uri = format!("{}/{b}/k", s.endpoint).parse().unwrap();
    let url = presign_url(
        &Method::GET,
        &uri,
        &HeaderMap::new(),
        300,
        &PayloadMode::Unsigned,
        &params,
    )
    .unwrap();
    let http = reqwest::Client::new();
    let get = |url: String| {
        let http = http.clone();
        async move {
            let resp = http.get(url).send().await.unwrap();
            (resp.status().as_u16(), resp.text().await.unwrap())
        }
    };
    assert_eq!(get(url.clone()).await, (200, "data".to_owned()));
    let sig = url.split("X-Amz-Signature=").nth(1).unwrap().to_owned();
    for doubled in [
        format!("{url}&X-Amz-Signature={sig}"),
        format!("{url}&x-amz-signature={}", "0".repeat(64)),
        url.replace("X-Amz-Expires=300", "X-Amz-Expires=+300"),
        url.replace(&sig, &sig.to_ascii_uppercase()),
    ] {
        let (status, body) = get(doubled.clone()).await;
        assert_eq!(
            (status, xml_code(&body)),
            (400, "AuthorizationQueryParametersError"),
            "{doubled}: {body}"
        );
    }
}

/// The signature must be spelled as it was computed: lowercase hex.
#[tokio::test(flavor = "multi_thread")]
async fn uppercase_signature_is_refused() {
    let s = Sluice::start();
    let mut headers = sign(&s, &Method::GET, "/", HeaderMap::new(), empty_payload());
    let auth = headers["authorization"].to_str().unwrap().to_owned();
    let (prefix, sig) = auth.split_once("Signature=").unwrap();
    let upper = format!("{prefix}Signature={}", sig.to_ascii_uppercase());
    headers.insert("authorization", HeaderValue::from_str(&upper).unwrap());
    let r = raw(&s, &head(&Method::GET, "/", &headers), b"").await;
    assert_eq!(
        (r.status, r.code()),
        (400, "AuthorizationHeaderMalformed"),
        "{}",
        r.text
    );
}

/// An aws-chunked PUT with trailers: `declared` in `x-amz-trailer`, `sent` at the end.
async fn put_with_trailers(s: &Sluice, path: &str, sent: &[(&str, &str)]) -> (u16, String) {
    let data = b"hello trailers";
    let mut enc = ChunkedEncoder::new(None, true);
    let mut body = enc.chunk(data);
    body.extend(enc.finish(sent));
    let mut headers = HeaderMap::new();
    headers.insert("content-encoding", HeaderValue::from_static("aws-chunked"));
    headers.insert("x-amz-decoded-content-length", data.len().into());
    headers.insert("content-length", body.len().into());
    headers.insert(
        "x-amz-trailer",
        HeaderValue::from_static("x-amz-checksum-crc32"),
    );
    send_signed(
        s,
        Method::PUT,
        path,
        headers,
        PayloadMode::StreamingUnsignedTrailer,
        |_, _| body,
    )
    .await
}

#[tokio::test(flavor = "multi_thread")]
async fn repeated_or_undeclared_trailers_are_refused() {
    let s = Sluice::start();
    let c = client(&s);
    let b = make_bucket(&c, "trailers").await;
    let crc = {
        let mut c = sluice_sigv4::Checksummer::new(sluice_sigv4::ChecksumAlgorithm::Crc32);
        c.update(b"hello trailers");
        c.finalize()
    };
    let good = [("x-amz-checksum-crc32", crc.as_str())];
    let (status, body) = put_with_trailers(&s, &format!("/{b}/good"), &good).await;
    assert_eq!(status, 200, "{body}");
    for (key, sent) in [
        (
            "twice",
            vec![
                ("x-amz-checksum-crc32", crc.as_str()),
                ("x-amz-checksum-crc32", crc.as_str()),
            ],
        ),
        (
            "undeclared",
            vec![
                ("x-amz-checksum-crc32", crc.as_str()),
                ("x-amz-meta-smuggled", "yes"),
            ],
        ),
    ] {
        let (status, body) = put_with_trailers(&s, &format!("/{b}/{key}"), &sent).await;
        assert_eq!(
            (status, xml_code(&body)),
            (400, "MalformedTrailerError"),
            "{key}: {body}"
        );
        assert_not_stored(&c, &b, key).await;
    }
}

/// `<Object>` with two `<Key>`s: deleting either would ignore the other, so nothing is deleted.
#[tokio::test(flavor = "multi_thread")]
async fn delete_objects_with_a_key_twice_is_malformed() {
    let s = Sluice::start();
    let c = client(&s);
    let b = make_bucket(&c, "delkeys").await;
    for key in ["one", "two"] {
        put(&c, &b, key, b"x").await;
    }
    let doc = b"<Delete><Object><Key>one</Key><Key>two</Key></Object></Delete>".to_vec();
    let headers = content_md5(&doc);
    let hash: [u8; 32] = Sha256::digest(&doc).into();
    let (status, body) = send_signed(
        &s,
        Method::POST,
        &format!("/{b}?delete"),
        headers,
        PayloadMode::Signed(hash),
        |_, _| doc,
    )
    .await;
    assert_eq!((status, xml_code(&body)), (400, "MalformedXML"), "{body}");
    for key in ["one", "two"] {
        c.head_object().bucket(&b).key(key).send().await.unwrap();
    }
}

/// Offsets past `u64` are offsets: a start beyond the end is 416, an end beyond it reads to it.
#[tokio::test(flavor = "multi_thread")]
async fn huge_range_offsets() {
    let s = Sluice::start();
    let c = client(&s);
    let b = make_bucket(&c, "ranges").await;
    put(&c, &b, "k", b"0123456789").await;
    for range in [
        "bytes=999999999999999999999-",
        "bytes=18446744073709551616-",
    ] {
        let err = c
            .get_object()
            .bucket(&b)
            .key("k")
            .range(range)
            .send()
            .await
            .unwrap_err();
        assert_eq!(
            (http_status(&err), code(&err).as_str()),
            (416, "InvalidRange"),
            "{range}"
        );
    }
    let out = c
        .get_object()
        .bucket(&b)
        .key("k")
        .range("bytes=3-999999999999999999999")
        .send()
        .await
        .unwrap();
    assert_eq!(out.content_range(), Some("bytes 3-9/10"));
    let got = out.body.collect().await.unwrap().into_bytes();
    assert_eq!(&got[..], b"3456789");
}

/// Uploads must declare their length. A PUT with neither `Content-Length` nor aws-chunked
/// framing is 411, not an empty object; a plain HTTP/1.1 chunked upload (S3 takes aws-chunked,
/// which declares its size) is 501 naming the header, as S3 answers. Nothing is stored.
#[tokio::test(flavor = "multi_thread")]
async fn uploads_without_a_declared_length_are_refused() {
    let s = Sluice::start();
    let c = client(&s);
    let b = make_bucket(&c, "nolen").await;
    let path = format!("/{b}/k");
    let headers = sign(
        &s,
        &Method::PUT,
        &path,
        HeaderMap::new(),
        PayloadMode::Unsigned,
    );
    let head = head(&Method::PUT, &path, &headers);
    for (extra, body, status, code) in [
        ("", &b""[..], 411, "MissingContentLength"),
        (
            "Transfer-Encoding: chunked\r\n",
            b"5\r\nhello\r\n0\r\n\r\n",
            501,
            "NotImplemented",
        ),
    ] {
        let r = raw(&s, &format!("{head}{extra}"), body).await;
        assert_eq!((r.status, r.code()), (status, code), "{extra}: {}", r.text);
        assert!(
            status != 501 || r.text.contains("<Header>Transfer-Encoding</Header>"),
            "{}",
            r.text
        );
        assert_not_stored(&c, &b, "k").await;
    }
}

/// Anonymous requests for unimplemented sub-resources are refused as anonymous (403) before
/// anything else, and no client mistake is logged at ERROR.
#[tokio::test(flavor = "multi_thread")]
async fn anonymous_probes_are_denied_first_and_not_logged_as_errors() {
    let s = Sluice::start();
    let c = client(&s);
    let b = make_bucket(&c, "probe").await;
    for sub in ["policy", "acl", "website"] {
        let r = raw(
            &s,
            &format!("GET /{b}?{sub} HTTP/1.1\r\nHost: 127.0.0.1\r\n"),
            b"",
        )
        .await;
        assert_eq!(
            (r.status, r.code()),
            (403, "AccessDenied"),
            "{sub}: {}",
            r.text
        );
    }
    // Signed, the same request is answered NotImplemented: the client's business, not an error.
    let path = format!("/{b}?policy");
    let headers = sign(&s, &Method::GET, &path, HeaderMap::new(), empty_payload());
    let r = raw(&s, &head(&Method::GET, &path, &headers), b"").await;
    assert_eq!((r.status, r.code()), (501, "NotImplemented"), "{}", r.text);
    let bad_sig = raw(
        &s,
        &format!(
            "GET /{b} HTTP/1.1\r\nHost: 127.0.0.1\r\nx-amz-date: 20200101T000000Z\r\nx-amz-content-sha256: UNSIGNED-PAYLOAD\r\nAuthorization: AWS4-HMAC-SHA256 Credential={ACCESS_ID}/20200101/us-east-1/s3/aws4_request, SignedHeaders=host, Signature={}\r\n",
            "a".repeat(64)
        ),
        b"",
    )
    .await;
    assert_eq!(bad_sig.status, 403, "{}", bad_sig.text);
    assert!(eventually(|| async { s.log().matches("sluice::access").count() >= 6 }).await);
    assert_eq!(error_lines(&s), Vec::<String>::new());
}

/// Header sections past Sluice's limits get an S3 XML error, not hyper's bare 431.
#[tokio::test(flavor = "multi_thread")]
async fn oversized_header_sections_get_s3_errors() {
    let s = Sluice::start();
    let many: String = (0..250).map(|i| format!("x-filler-{i}: {i}\r\n")).collect();
    let long = format!("x-long: {}\r\n", "a".repeat(64 * 1024));
    for extra in [many, long] {
        let r = raw(
            &s,
            &format!("GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n{extra}"),
            b"",
        )
        .await;
        assert_eq!(
            (r.status, r.code()),
            (400, "RequestHeaderSectionTooLarge"),
            "{}",
            &r.text[..r.text.len().min(400)]
        );
        assert!(r.text.contains("application/xml"), "{}", r.text);
    }
}

/// The same over HTTP/2, where hyper's limit is the HPACK header list size.
#[tokio::test(flavor = "multi_thread")]
async fn oversized_header_sections_get_s3_errors_over_http2() {
    let s = Sluice::start_with(Options {
        tls: true,
        ..Default::default()
    });
    let cert = reqwest::Certificate::from_pem(&std::fs::read(s.cert_path()).unwrap()).unwrap();
    let http2 = reqwest::Client::builder()
        .use_rustls_tls()
        .add_root_certificate(cert)
        .tls_built_in_root_certs(false)
        .http2_prior_knowledge()
        .build()
        .unwrap();
    let url = format!("https://localhost:{}/", s.addr.port());
    for (count, len) in [(250, 4), (1, 20 * 1024)] {
        let mut req = http2.get(&url);
        for i in 0..count {
            req = req.header(format!("x-filler-{i}"), "v".repeat(len));
        }
        let resp = req.send().await.unwrap();
        assert_eq!(resp.version(), http::Version::HTTP_2);
        let status = resp.status().as_u16();
        let body = resp.text().await.unwrap();
        assert_eq!(
            (status, xml_code(&body)),
            (400, "RequestHeaderSectionTooLarge"),
            "{body}"
        );
    }
}

/// HTTP rules: HTTP/1.1 needs exactly one Host; `Expect` means only `100-continue`.
#[tokio::test(flavor = "multi_thread")]
async fn host_and_expect_rules() {
    let s = Sluice::start();
    let headers = sign(&s, &Method::GET, "/", HeaderMap::new(), empty_payload());
    let signed = head(&Method::GET, "/", &headers);
    let without_host: String = signed
        .lines()
        .filter(|l| !l.starts_with("host:"))
        .map(|l| format!("{l}\r\n"))
        .collect();
    let r = raw(&s, &without_host, b"").await;
    assert_eq!(r.status, 400, "{}", r.text);
    let r = raw(&s, &format!("{signed}Host: 127.0.0.1\r\n"), b"").await;
    assert_eq!(r.status, 400, "{}", r.text);
    let r = raw(&s, &format!("{signed}Expect: something-else\r\n"), b"").await;
    assert_eq!(
        (r.status, r.code()),
        (417, "ExpectationFailed"),
        "{}",
        r.text
    );
    let r = raw(&s, &format!("{signed}Expect: 100-continue\r\n"), b"").await;
    assert_eq!(r.status, 200, "{}", r.text);
}

/// A request without a body may not sign one.
#[tokio::test(flavor = "multi_thread")]
async fn bodiless_request_must_sign_the_empty_body() {
    let s = Sluice::start();
    for (payload, want) in [
        (PayloadMode::StreamingSigned, "InvalidRequest"),
        (PayloadMode::StreamingUnsignedTrailer, "InvalidRequest"),
        (
            PayloadMode::Signed(Sha256::digest(b"not empty").into()),
            "XAmzContentSHA256Mismatch",
        ),
    ] {
        let headers = sign(&s, &Method::GET, "/", HeaderMap::new(), payload);
        let r = raw(&s, &head(&Method::GET, "/", &headers), b"").await;
        assert_eq!((r.status, r.code()), (400, want), "{payload:?}: {}", r.text);
    }
}

/// Checksum headers: an unknown algorithm name or a value that cannot be a checksum is a bad
/// request (InvalidRequest), not a mismatch (BadDigest).
#[tokio::test(flavor = "multi_thread")]
async fn checksum_headers_must_be_well_formed() {
    let s = Sluice::start();
    let c = client(&s);
    let b = make_bucket(&c, "cksum").await;
    let body: &'static [u8] = b"payload";
    for (name, value, key) in [
        ("x-amz-sdk-checksum-algorithm", "EVIL", "evil"),
        ("x-amz-checksum-crc32", "garbage!", "garbage"),
        ("x-amz-checksum-crc32", "AAAAAAAAAAA=", "long"),
    ] {
        let mut headers = HeaderMap::new();
        headers.insert(name, HeaderValue::from_static(value));
        let (status, text) = send_signed(
            &s,
            Method::PUT,
            &format!("/{b}/{key}"),
            headers,
            PayloadMode::Signed(Sha256::digest(body).into()),
            |_, _| body.to_vec(),
        )
        .await;
        assert_eq!(
            (status, xml_code(&text)),
            (400, "InvalidRequest"),
            "{name}: {value}: {text}"
        );
    }
}

/// Tag keys starting `aws:` are reserved, in the header and in the document.
#[tokio::test(flavor = "multi_thread")]
async fn reserved_tag_keys_are_refused() {
    let s = Sluice::start();
    let c = client(&s);
    let b = make_bucket(&c, "tags").await;
    let err = c
        .put_object()
        .bucket(&b)
        .key("k")
        .tagging("aws:owner=me")
        .body(ByteStream::from_static(b"x"))
        .send()
        .await
        .unwrap_err();
    assert_eq!(code(&err), "InvalidTag");
    put(&c, &b, "k", b"x").await;
    let tag = aws_sdk_s3::types::Tag::builder()
        .key("AWS:owner")
        .value("me")
        .build()
        .unwrap();
    let err = c
        .put_object_tagging()
        .bucket(&b)
        .key("k")
        .tagging(
            aws_sdk_s3::types::Tagging::builder()
                .tag_set(tag)
                .build()
                .unwrap(),
        )
        .send()
        .await
        .unwrap_err();
    assert_eq!(code(&err), "InvalidTag");
}

/// CopyObject has no ranges; it must not silently copy the whole source instead.
#[tokio::test(flavor = "multi_thread")]
async fn copy_object_refuses_a_source_range() {
    let s = Sluice::start();
    let c = client(&s);
    let b = make_bucket(&c, "copyrange").await;
    put(&c, &b, "src", b"0123456789").await;
    let mut headers = HeaderMap::new();
    headers.insert(
        "x-amz-copy-source",
        HeaderValue::from_str(&format!("/{b}/src")).unwrap(),
    );
    headers.insert(
        "x-amz-copy-source-range",
        HeaderValue::from_static("bytes=0-3"),
    );
    let (status, text) = send_signed(
        &s,
        Method::PUT,
        &format!("/{b}/dst"),
        headers,
        empty_payload(),
        |_, _| Vec::new(),
    )
    .await;
    assert_eq!(
        (status, xml_code(&text)),
        (400, "InvalidArgument"),
        "{text}"
    );
    assert_not_stored(&c, &b, "dst").await;
}

/// CORS header names are echoed into responses: CR or LF in one would split them.
#[tokio::test(flavor = "multi_thread")]
async fn cors_rules_with_control_characters_are_refused() {
    let s = Sluice::start();
    let c = client(&s);
    let b = make_bucket(&c, "corsctl").await;
    for field in [
        "<AllowedHeader>x-ok&#13;&#10;Set-Cookie: a=b</AllowedHeader>",
        "<ExposeHeader>x-a&#10;x-b</ExposeHeader>",
        "<AllowedHeader>x y</AllowedHeader>",
    ] {
        let doc = format!(
            "<CORSConfiguration><CORSRule><AllowedOrigin>*</AllowedOrigin><AllowedMethod>GET</AllowedMethod>{field}</CORSRule></CORSConfiguration>"
        )
        .into_bytes();
        let headers = content_md5(&doc);
        let (status, text) = send_signed(
            &s,
            Method::PUT,
            &format!("/{b}?cors"),
            headers,
            PayloadMode::Signed(Sha256::digest(&doc).into()),
            |_, _| doc,
        )
        .await;
        assert_eq!(
            (status, xml_code(&text)),
            (400, "InvalidRequest"),
            "{field}: {text}"
        );
    }
    let err = c.get_bucket_cors().bucket(&b).send().await.unwrap_err();
    assert_eq!(http_status(&err), 404, "no rule was stored");
}

/// The head of an unsigned-payload PUT of `len` bytes to `path`.
fn upload_head(s: &Sluice, path: &str, len: u64) -> String {
    let mut headers = HeaderMap::new();
    headers.insert(http::header::CONTENT_LENGTH, len.into());
    let headers = sign(s, &Method::PUT, path, headers, PayloadMode::Unsigned);
    head(&Method::PUT, path, &headers)
}

/// A server with `limits`, and a connection that has sent the head of a 1 MiB upload to `key`;
/// the body is the test's business. Returns the server, a client, the bucket, the request path.
async fn upload_started(
    limits: &str,
    key: &str,
) -> (
    Sluice,
    aws_sdk_s3::Client,
    String,
    String,
    tokio::net::TcpStream,
) {
    let s = Sluice::start_with(Options {
        limits: limits.into(),
        ..Default::default()
    });
    let c = client(&s);
    let b = make_bucket(&c, "slowbody").await;
    let path = format!("/{b}/{key}");
    let mut conn = tokio::net::TcpStream::connect(s.addr).await.unwrap();
    conn.write_all(format!("{}\r\n", upload_head(&s, &path, 1 << 20)).as_bytes())
        .await
        .unwrap();
    (s, c, b, path, conn)
}

/// The access log line for `path`, once written.
async fn access_line(s: &Sluice, path: &str) -> String {
    let line = || {
        s.log()
            .lines()
            .find(|l| l.contains("sluice::access") && l.contains(path))
            .map(str::to_owned)
    };
    assert!(
        eventually(|| async { line().is_some() }).await,
        "{}",
        s.log()
    );
    line().unwrap()
}

/// A body that stops arriving is answered `400 RequestTimeout` after `body_read_timeout`, the
/// connection closed, nothing stored, and the log says 400 (Sluice ended it, not the client).
#[tokio::test(flavor = "multi_thread")]
async fn stalled_body_is_cut_with_request_timeout() {
    let (s, c, b, path, mut conn) = upload_started("  body_read_timeout: 1s", "stalled").await;
    conn.write_all(&[7u8; 65536]).await.unwrap();
    let started = Instant::now();
    let r = read_response(&mut conn).await;
    assert_eq!((r.status, r.code()), (400, "RequestTimeout"), "{}", r.text);
    assert!(started.elapsed() < EXCHANGE_LIMIT);
    assert!(access_line(&s, &path).await.contains("status=400"));
    assert_not_stored(&c, &b, "stalled").await;
}

/// A body trickling a byte at a time stays under the minimum rate and is cut too, although
/// no single wait reaches `body_read_timeout`.
#[tokio::test(flavor = "multi_thread")]
async fn trickling_body_is_cut_by_the_minimum_rate() {
    let limits = "  body_read_timeout: 2s\n  body_min_bytes_per_sec: 1KiB";
    let (s, c, b, path, conn) = upload_started(limits, "trickled").await;
    let (mut reader, mut writer) = conn.into_split();
    // The client's behaviour under test: one byte every 250 ms (4 B/s), until the server answers.
    let trickle = tokio::spawn(async move {
        for _ in 0..200 {
            if writer.write_all(b"x").await.is_err() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    });
    let mut out = Vec::new();
    tokio::time::timeout(EXCHANGE_LIMIT, reader.read_to_end(&mut out))
        .await
        .expect("the trickle was never cut")
        .ok();
    trickle.abort();
    let text = String::from_utf8_lossy(&out);
    assert!(text.starts_with("HTTP/1.1 400"), "{text}");
    assert!(text.contains("<Code>RequestTimeout</Code>"), "{text}");
    assert!(access_line(&s, &path).await.contains("status=400"));
    assert_not_stored(&c, &b, "trickled").await;
}

/// The audit's case: a key store edited to hold one access id twice, the second record
/// `inactive` (a revocation by hand). The running server refuses the file, names the id at
/// ERROR, refuses that key whichever record was meant, and keeps every other key.
#[tokio::test(flavor = "multi_thread")]
async fn key_store_with_a_duplicate_id_refuses_that_key() {
    use std::os::unix::fs::PermissionsExt as _;
    let s = Sluice::start();
    let created = |s: &Sluice| {
        let out = s.keys(&["create", "--tenant", "e2e"]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        crate::auth::parse_created_key(&out.stdout)
    };
    let (kept_id, kept_secret) = created(&s);
    let (revoked_id, revoked_secret) = created(&s);
    let kept = crate::support::client_with(&s, &kept_id, &kept_secret);
    let revoked = crate::support::client_with(&s, &revoked_id, &revoked_secret);
    for c in [&kept, &revoked] {
        assert!(eventually(|| async { c.list_buckets().send().await.is_ok() }).await);
    }

    let path = s.dir.path().join("keys.yaml");
    let mode = std::fs::metadata(&path).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600, "{mode:o}");
    let text = std::fs::read_to_string(&path).unwrap();
    let start = text.find(&format!("- access_id: {revoked_id}")).unwrap();
    let end = text[start + 1..]
        .find("\n- ")
        .map_or(text.len(), |i| start + 1 + i + 1);
    let twin = text[start..end].replace("state: active", "state: inactive");
    std::fs::write(&path, format!("{}\n{twin}", text.trim_end())).unwrap();

    let refused = || async {
        matches!(revoked.list_buckets().send().await, Err(ref e) if code(e) == "InvalidAccessKeyId")
    };
    assert!(
        eventually(refused).await,
        "the key kept working:\n{}",
        s.log()
    );
    assert!(
        s.log()
            .lines()
            .any(|l| l.contains("ERROR") && l.contains("key store") && l.contains(&revoked_id)),
        "{}",
        s.log()
    );
    kept.list_buckets().send().await.unwrap();
}

/// ListObjectsV2 with `start-after` inside a common prefix: S3 returns a common prefix only if
/// it sorts after `start-after`, so `a/` is not listed again after `a/b/`.
#[tokio::test(flavor = "multi_thread")]
async fn start_after_inside_a_common_prefix_skips_it() {
    let s = Sluice::start();
    let c = client(&s);
    let b = make_bucket(&c, "startafter").await;
    for key in ["a/b/c", "a/c", "b"] {
        put(&c, &b, key, b"x").await;
    }
    for start_after in ["a/b/", "a/b", "a/", "a/b/c"] {
        let out = c
            .list_objects_v2()
            .bucket(&b)
            .delimiter("/")
            .start_after(start_after)
            .send()
            .await
            .unwrap();
        let prefixes: Vec<_> = out
            .common_prefixes()
            .iter()
            .filter_map(|p| p.prefix())
            .collect();
        let keys: Vec<_> = out.contents().iter().filter_map(|o| o.key()).collect();
        assert_eq!((keys, prefixes), (vec!["b"], vec![]), "{start_after}");
    }
    let out = c
        .list_objects_v2()
        .bucket(&b)
        .delimiter("/")
        .start_after("a")
        .send()
        .await
        .unwrap();
    let prefixes: Vec<_> = out
        .common_prefixes()
        .iter()
        .filter_map(|p| p.prefix())
        .collect();
    assert_eq!(prefixes, ["a/"]);
}
