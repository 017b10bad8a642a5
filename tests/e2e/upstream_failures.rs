//! Upstream backends failing: refused credentials, a stopped upstream, an upstream killed in the
//! middle of a large download, an upstream that never answers (first-byte timeout, retries only
//! for idempotent requests), and a provider that refuses today's SDK checksum headers and
//! aws-chunked bodies (a Backblaze-B2-like shim in front of s3s-fs).
//!
//! Every upstream here listens on 127.0.0.1; every wait is a bounded poll or a timeout.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use aws_sdk_s3::Client;
use aws_sdk_s3::config::{Credentials, Region};
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{CompletedMultipartUpload, CompletedPart};
use bytes::Bytes;
use futures_util::StreamExt;
use http::{HeaderMap, HeaderValue, Method, Uri};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use sha2::{Digest, Sha256};
use sluice_sigv4::{ChunkSignatureChain, ChunkedEncoder, PayloadMode, SecretKey, sign_request};
use sluice_tests::upstream::Upstream;
use sluice_tests::{ACCESS_ID, Options, REGION, Sluice, random_secret};
use tokio::io::AsyncReadExt;
use tokio::net::TcpListener;

use crate::auth::{eventually, send_signed, xml_code};
use crate::support::{bucket, client, code, get_bytes, http_status, now, signing_params};

const MIB: usize = 1024 * 1024;

// ------------------------------------------------------------------------------------------
// Helpers

/// A route of the `e2e` tenant: buckets starting with `prefix` live on `backend`.
fn route(prefix: &str, backend: &str) -> String {
    format!("      - {{ bucket: \"{prefix}*\", backend: {backend} }}")
}

fn start(backends: &[String], routes: &[String]) -> Sluice {
    Sluice::start_with(Options {
        backends: backends.join("\n"),
        routes: routes.join("\n"),
        ..Options::default()
    })
}

/// A `backends:` entry for an S3 endpoint that is not an [`Upstream`] (a fake, a shim, a port
/// where nothing listens).
fn backend_at(
    name: &str,
    profile: &str,
    endpoint: &str,
    access_key: &str,
    secret_key: &str,
    (first_byte_timeout, idle_timeout): (&str, &str),
) -> String {
    format!(
        "  {name}:\n    type: s3\n    profile: {profile}\n    endpoint: {endpoint}\n    region: us-east-1\n    addressing: path\n    access_key_id: {access_key}\n    secret_access_key: \"{secret_key}\"\n    first_byte_timeout: {first_byte_timeout}\n    idle_timeout: {idle_timeout}\n    connect_timeout: 5s"
    )
}

/// An SDK client for any S3 endpoint (an upstream directly, or the shim).
fn sdk_client(endpoint: &str, access_key: &str, secret_key: &str) -> Client {
    let config = aws_sdk_s3::Config::builder()
        .behavior_version_latest()
        .endpoint_url(endpoint)
        .region(Region::new(REGION))
        .credentials_provider(Credentials::new(
            access_key, secret_key, None, None, "direct",
        ))
        .force_path_style(true)
        .build();
    Client::from_conf(config)
}

/// A request to Sluice signed with the e2e tenant's key, `payload` declaring how the body is
/// covered. Bounded by a 60 s timeout to the response's headers.
async fn signed(
    s: &Sluice,
    method: Method,
    path: &str,
    mut headers: HeaderMap,
    payload: PayloadMode,
    body: reqwest::Body,
) -> reqwest::Response {
    let uri: Uri = format!("{}{path}", s.endpoint).parse().unwrap();
    let secret = SecretKey::new(s.secret.clone());
    let date = now();
    let params = signing_params(ACCESS_ID, &secret, &date);
    sign_request(&method, &uri, &mut headers, &payload, &params).unwrap();
    let send = reqwest::Client::new()
        .request(method, uri.to_string())
        .headers(headers)
        .body(body)
        .send();
    tokio::time::timeout(Duration::from_secs(60), send)
        .await
        .expect("an answer within 60 s")
        .expect("a response")
}

/// A small signed request (`body` hashed into the signature), its answer read whole.
async fn small(s: &Sluice, method: Method, path: &str, body: &[u8]) -> Answer {
    let hash: [u8; 32] = Sha256::digest(body).into();
    let resp = signed(
        s,
        method,
        path,
        HeaderMap::new(),
        PayloadMode::Signed(hash),
        reqwest::Body::from(body.to_vec()),
    )
    .await;
    Answer::read(resp).await
}

/// A response read whole.
#[derive(Debug)]
struct Answer {
    status: u16,
    request_id: String,
    body: String,
}

impl Answer {
    async fn read(resp: reqwest::Response) -> Self {
        let status = resp.status().as_u16();
        let request_id = resp
            .headers()
            .get("x-amz-request-id")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned();
        let body = resp.text().await.unwrap_or_default();
        Self {
            status,
            request_id,
            body,
        }
    }

    /// An S3 XML error with this status and code, carrying the request id of the header.
    fn assert_error(&self, status: u16, code: &str) {
        assert_eq!(
            (self.status, xml_code(&self.body)),
            (status, code),
            "{self:?}"
        );
        assert!(self.body.starts_with("<?xml") || self.body.starts_with("<Error>"));
        assert!(!self.request_id.is_empty(), "no x-amz-request-id: {self:?}");
        assert!(
            self.body
                .contains(&format!("<RequestId>{}</RequestId>", self.request_id)),
            "the body's request id is not the header's: {self:?}"
        );
    }

    /// The body names none of these (backend name, address, keys, the upstream's own code).
    fn assert_mentions_none(&self, secrets: &[&str]) {
        for s in secrets {
            assert!(
                !self.body.contains(s),
                "the client's answer reveals {s:?}: {}",
                self.body
            );
        }
    }
}

/// Sluice's log lines that carry `request_id`, once at least one of them contains `needle`
/// (the log is written by another process: polled, bounded).
async fn log_lines_of(s: &Sluice, request_id: &str, needle: &str) -> Vec<String> {
    let found = eventually(|| {
        let log = s.log();
        async move {
            log.lines()
                .any(|l| l.contains(request_id) && l.contains(needle))
        }
    })
    .await;
    let log = s.log();
    assert!(
        found,
        "no log line with request id {request_id} containing {needle:?}:\n{log}"
    );
    log.lines()
        .filter(|l| l.contains(request_id))
        .map(str::to_owned)
        .collect()
}

/// `len` bytes of deterministic noise from `seed` (splitmix64).
fn noise(len: usize, seed: u64) -> Vec<u8> {
    let mut state = seed;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        out.extend_from_slice(&(z ^ (z >> 31)).to_le_bytes());
    }
    out.truncate(len);
    out
}

/// Block `i` (1 MiB) of the large object: shared noise stamped with `i` every 4 KiB, so a
/// block in the wrong place or repeated is caught.
fn block(i: u64) -> Bytes {
    static NOISE: OnceLock<Vec<u8>> = OnceLock::new();
    let mut v = NOISE.get_or_init(|| noise(MIB, 0x0510_01CE)).clone();
    for at in (0..MIB).step_by(4096) {
        v[at..at + 8].copy_from_slice(&i.to_le_bytes());
    }
    Bytes::from(v)
}

/// Checks a byte stream against the blocks of the large object, piece by piece.
struct Expected {
    pos: usize,
    current: Option<(usize, Bytes)>,
}

impl Expected {
    fn new() -> Self {
        Self {
            pos: 0,
            current: None,
        }
    }

    fn check(&mut self, mut piece: &[u8]) {
        while !piece.is_empty() {
            let index = self.pos / MIB;
            if self.current.as_ref().is_none_or(|(i, _)| *i != index) {
                self.current = Some((index, block(index as u64)));
            }
            let (_, data) = self.current.as_ref().unwrap();
            let offset = self.pos % MIB;
            let n = piece.len().min(MIB - offset);
            assert!(
                piece[..n] == data[offset..offset + n],
                "downloaded bytes differ from the object at offset {}",
                self.pos
            );
            self.pos += n;
            piece = &piece[n..];
        }
    }
}

// ------------------------------------------------------------------------------------------
// 1. Wrong upstream credentials

/// A backend configured with a wrong secret: every request the upstream refuses becomes
/// `502 BadGateway` for the client, with no upstream details; the log names the backend.
async fn refused_credentials(up: Upstream, what: Wrong) {
    let name = "refusingstore";
    let (wrong, yaml) = match what {
        Wrong::Secret => {
            let secret = random_secret();
            let yaml = up
                .backend_yaml(name, "generic")
                .replace(&up.secret_key, &secret);
            (secret, yaml)
        }
        Wrong::AccessKey => {
            let key = "NOSUCHKEY0000000000Q".to_owned();
            let yaml = up
                .backend_yaml(name, "generic")
                .replace(&up.access_key, &key);
            (key, yaml)
        }
    };
    assert!(yaml.contains(&wrong));
    let s = start(&[yaml], &[route("creds-", name)]);
    let b = bucket("creds");
    let address = up.endpoint.trim_start_matches("http://");
    let reveals = [
        name,
        address,
        "127.0.0.1",
        up.access_key.as_str(),
        up.secret_key.as_str(),
        wrong.as_str(),
        "SignatureDoesNotMatch",
        "InvalidAccessKeyId",
        "signature",
        "signed up",
        "Access Key",
    ];

    for (method, path, body) in [
        (Method::PUT, format!("/{b}"), &b""[..]),
        (Method::GET, format!("/{b}/some/key"), b""),
        (
            Method::PUT,
            format!("/{b}/some/key"),
            b"a body Sluice streams on",
        ),
        (Method::GET, format!("/{b}?list-type=2"), b""),
    ] {
        let answer = small(&s, method.clone(), &path, body).await;
        answer.assert_error(502, "BadGateway");
        answer.assert_mentions_none(&reveals);
        let lines = log_lines_of(&s, &answer.request_id, "refused Sluice's credentials").await;
        assert!(
            lines
                .iter()
                .any(|l| l.contains(&format!("backend {name} refused Sluice's credentials"))),
            "{method} {path}: the log does not name the backend: {lines:#?}"
        );
    }
    // The operator's ERROR line about the backend itself (not only the request's).
    let log = s.log();
    assert!(
        log.lines()
            .any(|l| l.contains("ERROR") && l.contains(name) && l.contains("credentials")),
        "{log}"
    );
    for secret in [&up.secret_key, &s.secret] {
        assert!(!log.contains(secret.as_str()), "a secret is in the log");
    }
    if matches!(what, Wrong::Secret) {
        assert!(!log.contains(&wrong), "the wrong secret is in the log");
    }
}

#[derive(Debug, Clone, Copy)]
enum Wrong {
    Secret,
    AccessKey,
}

#[tokio::test(flavor = "multi_thread")]
async fn wrong_upstream_secret_s3s_fs_is_a_bad_gateway() {
    refused_credentials(Upstream::s3s_fs(), Wrong::Secret).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn wrong_upstream_secret_moto_is_a_bad_gateway() {
    refused_credentials(Upstream::moto(), Wrong::Secret).await;
}

/// moto refuses an access key it does not know with `InvalidAccessKeyId`.
#[tokio::test(flavor = "multi_thread")]
async fn unknown_upstream_key_moto_is_a_bad_gateway() {
    refused_credentials(Upstream::moto(), Wrong::AccessKey).await;
}

/// s3s-fs refuses an access key it does not know with `403 NotSignedUp` ("Your account is not
/// signed up"), an S3 error code that also means "these credentials are no good here".
#[tokio::test(flavor = "multi_thread")]
async fn unknown_upstream_key_s3s_fs_is_a_bad_gateway() {
    refused_credentials(Upstream::s3s_fs(), Wrong::AccessKey).await;
}

// ------------------------------------------------------------------------------------------
// 2. A stopped upstream

#[tokio::test(flavor = "multi_thread")]
async fn stopped_upstream_is_service_unavailable() {
    let mut up = Upstream::s3s_fs();
    // A port where nothing listens: bound, then released.
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let s = start(
        &[
            up.backend_yaml("stoppedstore", "generic"),
            backend_at(
                "deafstore",
                "generic",
                &format!("http://{closed}"),
                &up.access_key,
                &up.secret_key,
                ("20s", "20s"),
            ),
        ],
        &[route("dead-", "stoppedstore"), route("void-", "deafstore")],
    );
    let c = client(&s);
    // While it runs, the upstream works (and Sluice keeps a pooled connection to it).
    let dead = bucket("dead");
    c.create_bucket().bucket(&dead).send().await.unwrap();
    c.put_object()
        .bucket(&dead)
        .key("k")
        .body(ByteStream::from_static(b"before"))
        .send()
        .await
        .unwrap();
    assert_eq!(get_bytes(&c, &dead, "k").await, b"before");
    let stopped_address = up.endpoint.trim_start_matches("http://").to_owned();
    up.kill();

    let void = bucket("void");
    let closed_address = closed.to_string();
    for (b, backend, address) in [
        (&dead, "stoppedstore", &stopped_address),
        (&void, "deafstore", &closed_address),
    ] {
        for (method, path, body) in [
            (Method::GET, format!("/{b}/k"), &b""[..]),
            (Method::PUT, format!("/{b}/k2"), b"after"),
            (Method::GET, format!("/{b}?list-type=2"), b""),
            (Method::DELETE, format!("/{b}/k"), b""),
        ] {
            let started = Instant::now();
            let answer = small(&s, method.clone(), &path, body).await;
            assert!(
                started.elapsed() < Duration::from_secs(15),
                "{method} {path} took {:?}",
                started.elapsed()
            );
            answer.assert_error(503, "ServiceUnavailable");
            answer.assert_mentions_none(&[backend, address, "127.0.0.1", "refused", "connect"]);
            let lines = log_lines_of(&s, &answer.request_id, "ServiceUnavailable").await;
            assert!(
                lines
                    .iter()
                    .any(|l| l.contains(&format!("backend {backend} unreachable"))),
                "{method} {path}: the log does not name the backend: {lines:#?}"
            );
        }
    }
    assert!(!s.log().contains(&up.secret_key));
}

// ------------------------------------------------------------------------------------------
// 3. An upstream killed in the middle of a download

#[tokio::test(flavor = "multi_thread")]
async fn upstream_killed_mid_download_cuts_the_client_off() {
    const BLOCKS: usize = 256;
    const TOTAL: usize = BLOCKS * MIB;
    let mut up = Upstream::s3s_fs();
    let s = start(
        &[up.backend_yaml("bigstore", "generic")],
        &[route("big-", "bigstore")],
    );
    let c = client(&s);
    let b = bucket("big");
    c.create_bucket().bucket(&b).send().await.unwrap();

    // 256 MiB streamed up, generated block by block (never whole in memory).
    let mut headers = HeaderMap::new();
    headers.insert("content-length", TOTAL.into());
    let body = reqwest::Body::wrap_stream(
        futures_util::stream::iter(0..BLOCKS as u64).map(|i| Ok::<_, std::io::Error>(block(i))),
    );
    let started = Instant::now();
    let put = signed(
        &s,
        Method::PUT,
        &format!("/{b}/big"),
        headers,
        PayloadMode::Unsigned,
        body,
    )
    .await;
    let put = Answer::read(put).await;
    assert_eq!(put.status, 200, "{put:?}");
    eprintln!("256 MiB upload took {:?}", started.elapsed());
    let head = c.head_object().bucket(&b).key("big").send().await.unwrap();
    assert_eq!(head.content_length(), Some(TOTAL as i64));

    // The download: read a few MiB, kill the upstream, read on.
    let mut resp = signed(
        &s,
        Method::GET,
        &format!("/{b}/big"),
        HeaderMap::new(),
        PayloadMode::Signed(Sha256::digest(b"").into()),
        reqwest::Body::from(Vec::new()),
    )
    .await;
    assert_eq!(resp.status().as_u16(), 200);
    assert_eq!(resp.content_length(), Some(TOTAL as u64));
    let mut expected = Expected::new();
    let before_kill = 8 * MIB;
    let outcome = tokio::time::timeout(Duration::from_secs(120), async {
        let mut killed = false;
        loop {
            if !killed && expected.pos >= before_kill {
                up.kill();
                killed = true;
            }
            match resp.chunk().await {
                Ok(Some(piece)) => expected.check(&piece),
                Ok(None) => return Ok(()),
                Err(err) => return Err(err),
            }
        }
    })
    .await
    .expect("the download ends (cut or complete) within 120 s");
    let received = expected.pos;
    eprintln!("received {received} of {TOTAL} bytes before the download ended: {outcome:?}");
    assert!(
        received < TOTAL,
        "all {TOTAL} bytes arrived although the upstream was killed after {before_kill}"
    );
    assert!(
        outcome.is_err(),
        "the download ended cleanly after {received} of {TOTAL} bytes: a truncated object \
         must end with an error, never a clean end"
    );

    // Sluice is still up and serves the next requests normally.
    let local = bucket("after");
    c.create_bucket().bucket(&local).send().await.unwrap();
    c.put_object()
        .bucket(&local)
        .key("k")
        .body(ByteStream::from_static(b"still here"))
        .send()
        .await
        .unwrap();
    assert_eq!(get_bytes(&c, &local, "k").await, b"still here");
    let answer = small(&s, Method::GET, &format!("/{b}/big"), b"").await;
    answer.assert_error(503, "ServiceUnavailable");
}

// ------------------------------------------------------------------------------------------
// 4. An upstream that never answers: first-byte timeout, retries only when idempotent

/// One request as the silent upstream saw it.
#[derive(Debug, Clone)]
struct Seen {
    line: String,
    body_bytes: usize,
}

/// A TCP server that reads requests and never answers.
struct Silent {
    addr: SocketAddr,
    seen: Arc<Mutex<Vec<Seen>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Silent {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Silent {
    async fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let seen: Arc<Mutex<Vec<Seen>>> = Arc::default();
        let record = Arc::clone(&seen);
        let task = tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                let record = Arc::clone(&record);
                tokio::spawn(async move {
                    let mut head = Vec::new();
                    let mut index = None;
                    let mut buf = vec![0u8; 64 * 1024];
                    // Reads until Sluice gives up and closes the connection.
                    while let Ok(n) = stream.read(&mut buf).await {
                        if n == 0 {
                            break;
                        }
                        let mut seen = record.lock().unwrap();
                        match index {
                            Some(i) => {
                                let entry: &mut Seen = &mut seen[i];
                                entry.body_bytes += n;
                            }
                            None => {
                                head.extend_from_slice(&buf[..n]);
                                if let Some(end) = head.windows(4).position(|w| w == b"\r\n\r\n") {
                                    let text = String::from_utf8_lossy(&head[..end]);
                                    seen.push(Seen {
                                        line: text.lines().next().unwrap_or_default().to_owned(),
                                        body_bytes: head.len() - end - 4,
                                    });
                                    index = Some(seen.len() - 1);
                                }
                            }
                        }
                    }
                });
            }
        });
        Self { addr, seen, task }
    }

    /// The requests seen whose request line starts with `prefix` (`"GET /b/k "`).
    fn requests(&self, prefix: &str) -> Vec<Seen> {
        self.seen
            .lock()
            .unwrap()
            .iter()
            .filter(|s| s.line.starts_with(prefix))
            .cloned()
            .collect()
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn first_byte_timeout_retries_idempotent_requests_only() {
    let fake = Silent::start().await;
    let s = start(
        &[backend_at(
            "silentstore",
            "generic",
            &format!("http://{}", fake.addr),
            "FAKEKEY0001",
            &random_secret(),
            ("1s", "20s"),
        )],
        &[route("mute-", "silentstore")],
    );
    let b = bucket("mute");

    // A GET: 503 after the first-byte timeout, tried at most 3 times.
    let started = Instant::now();
    let answer = small(&s, Method::GET, &format!("/{b}/k"), b"").await;
    let took = started.elapsed();
    answer.assert_error(503, "ServiceUnavailable");
    answer.assert_mentions_none(&["silentstore", &fake.addr.to_string(), "within"]);
    let gets = fake.requests(&format!("GET /{b}/k "));
    eprintln!("GET: {} attempts, answered after {took:?}", gets.len());
    assert!(
        (1..=3).contains(&gets.len()),
        "GET sent {} times: {gets:#?}",
        gets.len()
    );
    assert!(
        took >= Duration::from_secs(gets.len() as u64),
        "503 after {took:?}, before {} first-byte timeouts of 1 s passed",
        gets.len()
    );
    assert!(took < Duration::from_secs(15), "503 only after {took:?}");
    log_lines_of(&s, &answer.request_id, "backend silentstore unreachable").await;

    // A PUT with a body: sent once, whole, never repeated.
    let data = noise(100_000, 4);
    let started = Instant::now();
    let answer = small(&s, Method::PUT, &format!("/{b}/put"), &data).await;
    let took = started.elapsed();
    answer.assert_error(503, "ServiceUnavailable");
    assert!(
        (Duration::from_secs(1)..Duration::from_secs(15)).contains(&took),
        "PUT answered after {took:?}"
    );
    let puts = fake.requests(&format!("PUT /{b}/put "));
    assert_eq!(puts.len(), 1, "a PUT with a body was repeated: {puts:#?}");
    // The whole body reached the upstream (the timer starts once it was handed over).
    let whole = eventually(|| {
        let puts = fake.requests(&format!("PUT /{b}/put "));
        async move { puts[0].body_bytes == 100_000 }
    })
    .await;
    assert!(whole, "{:#?}", fake.requests(&format!("PUT /{b}/put ")));

    // A POST (CreateMultipartUpload): not idempotent, sent once.
    let answer = small(&s, Method::POST, &format!("/{b}/mpu?uploads"), b"").await;
    answer.assert_error(503, "ServiceUnavailable");
    let posts = fake.requests(&format!("POST /{b}/mpu?uploads"));
    assert_eq!(posts.len(), 1, "a POST was repeated: {posts:#?}");
}

/// What the scripted upstream does with one request.
#[derive(Debug, Clone, Copy)]
enum Act {
    /// Closes the connection without a word.
    HangUp,
    /// Answers with an S3 error document.
    Error(u16, &'static str),
    /// Answers 200 with `len` bytes of [`scripted_bytes`].
    Object(usize),
    /// Declares `len` bytes, sends the first `sent`, then closes the connection.
    CutAfter { len: usize, sent: usize },
    /// Declares `len` bytes, sends the first `sent`, then keeps the connection open, silent.
    StallAfter { len: usize, sent: usize },
}

/// The bytes of the scripted upstream's objects.
fn scripted_bytes(len: usize) -> Vec<u8> {
    noise(len, 7)
}

/// An HTTP/1.1 server that reads each request (head and `Content-Length` body) and does what
/// the next act of its script says; with the script used up, it answers 500 InternalError.
struct Scripted {
    endpoint: String,
    script: Arc<Mutex<std::collections::VecDeque<Act>>>,
    seen: Arc<Mutex<Vec<String>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Scripted {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Scripted {
    async fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let endpoint = format!("http://{}", listener.local_addr().unwrap());
        let script: Arc<Mutex<std::collections::VecDeque<Act>>> = Arc::default();
        let seen: Arc<Mutex<Vec<String>>> = Arc::default();
        let (sc, se) = (Arc::clone(&script), Arc::clone(&seen));
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                tokio::spawn(Self::serve(stream, Arc::clone(&sc), Arc::clone(&se)));
            }
        });
        Self {
            endpoint,
            script,
            seen,
            task,
        }
    }

    /// Queues acts for the next requests.
    fn then(&self, acts: &[Act]) {
        self.script.lock().unwrap().extend(acts.iter().copied());
    }

    fn acts_left(&self) -> usize {
        self.script.lock().unwrap().len()
    }

    /// How many requests had a request line starting with `prefix` (`"GET /b/k "`).
    fn count(&self, prefix: &str) -> usize {
        self.seen
            .lock()
            .unwrap()
            .iter()
            .filter(|l| l.starts_with(prefix))
            .count()
    }

    async fn serve(
        mut stream: tokio::net::TcpStream,
        script: Arc<Mutex<std::collections::VecDeque<Act>>>,
        seen: Arc<Mutex<Vec<String>>>,
    ) {
        use tokio::io::AsyncWriteExt;
        let mut buf = Vec::new();
        let mut chunk = vec![0u8; 64 * 1024];
        loop {
            let end = loop {
                if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                    break end;
                }
                match stream.read(&mut chunk).await {
                    Ok(0) | Err(_) => return,
                    Ok(n) => buf.extend_from_slice(&chunk[..n]),
                }
            };
            let head = String::from_utf8_lossy(&buf[..end]).into_owned();
            buf.drain(..end + 4);
            let length: usize = head
                .lines()
                .filter_map(|l| l.split_once(':'))
                .find(|(name, _)| name.trim().eq_ignore_ascii_case("content-length"))
                .and_then(|(_, v)| v.trim().parse().ok())
                .unwrap_or(0);
            while buf.len() < length {
                match stream.read(&mut chunk).await {
                    Ok(0) | Err(_) => return,
                    Ok(n) => buf.extend_from_slice(&chunk[..n]),
                }
            }
            buf.drain(..length);
            let line = head.lines().next().unwrap_or_default().to_owned();
            let is_head = line.starts_with("HEAD ");
            seen.lock().unwrap().push(line);
            let act = script
                .lock()
                .unwrap()
                .pop_front()
                .unwrap_or(Act::Error(500, "InternalError"));
            let answer = |status: u16, len: usize, kind: &str| {
                format!(
                    "HTTP/1.1 {status} {}\r\ncontent-length: {len}\r\ncontent-type: {kind}\r\netag: \"0123456789abcdef0123456789abcdef\"\r\nlast-modified: Tue, 01 Dec 2026 00:00:00 GMT\r\n\r\n",
                    http::StatusCode::from_u16(status)
                        .ok()
                        .and_then(|s| s.canonical_reason())
                        .unwrap_or("Whatever")
                )
            };
            let (head_bytes, body, then_close, then_stall) = match act {
                Act::HangUp => return,
                Act::Error(status, code) => {
                    let doc = format!(
                        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>{code}</Code><Message>scripted {code}</Message></Error>"
                    );
                    (
                        answer(status, doc.len(), "application/xml"),
                        doc.into_bytes(),
                        false,
                        false,
                    )
                }
                Act::Object(len) => (
                    answer(200, len, "application/octet-stream"),
                    scripted_bytes(len),
                    false,
                    false,
                ),
                Act::CutAfter { len, sent } => (
                    answer(200, len, "application/octet-stream"),
                    scripted_bytes(sent),
                    true,
                    false,
                ),
                Act::StallAfter { len, sent } => (
                    answer(200, len, "application/octet-stream"),
                    scripted_bytes(sent),
                    false,
                    true,
                ),
            };
            if stream.write_all(head_bytes.as_bytes()).await.is_err() {
                return;
            }
            if !is_head && stream.write_all(&body).await.is_err() {
                return;
            }
            let _ = stream.flush().await;
            if then_close {
                return;
            }
            if then_stall {
                // Silent until Sluice gives up and closes.
                while let Ok(n) = stream.read(&mut chunk).await {
                    if n == 0 {
                        return;
                    }
                }
                return;
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn only_idempotent_requests_are_retried() {
    let fake = Scripted::start().await;
    let s = start(
        &[backend_at(
            "flakystore",
            "generic",
            &fake.endpoint,
            "FAKEKEY0001",
            &random_secret(),
            ("5s", "5s"),
        )],
        &[route("flaky-", "flakystore")],
    );
    let b = bucket("flaky");

    // A GET: a hang-up, then a 503, then the object: the client sees only the object.
    fake.then(&[
        Act::HangUp,
        Act::Error(503, "SlowDown"),
        Act::Object(100_000),
    ]);
    let resp = signed(
        &s,
        Method::GET,
        &format!("/{b}/k"),
        HeaderMap::new(),
        PayloadMode::Signed(Sha256::digest(b"").into()),
        reqwest::Body::from(Vec::new()),
    )
    .await;
    assert_eq!(resp.status().as_u16(), 200);
    let body = resp.bytes().await.unwrap();
    assert!(body[..] == scripted_bytes(100_000)[..], "GET body differs");
    assert_eq!(fake.count(&format!("GET /{b}/k ")), 3);

    // Three hang-ups: three attempts, then 503 (the fourth act is never asked for).
    fake.then(&[Act::HangUp, Act::HangUp, Act::HangUp, Act::Object(5)]);
    let answer = small(&s, Method::GET, &format!("/{b}/k"), b"").await;
    answer.assert_error(503, "ServiceUnavailable");
    assert_eq!(fake.count(&format!("GET /{b}/k ")), 6);
    assert_eq!(fake.acts_left(), 1);
    fake.script.lock().unwrap().clear();

    // A DELETE is idempotent: retried after a hang-up.
    fake.then(&[Act::HangUp, Act::Object(0)]);
    let answer = small(&s, Method::DELETE, &format!("/{b}/k"), b"").await;
    assert_eq!(answer.status, 204, "{answer:?}");
    assert_eq!(fake.count(&format!("DELETE /{b}/k ")), 2);

    // A PUT streaming the client's body: never sent twice, whatever the upstream did.
    for act in [Act::Error(503, "SlowDown"), Act::HangUp] {
        let before = fake.count(&format!("PUT /{b}/p "));
        fake.then(&[act, Act::Object(0)]);
        let answer = small(&s, Method::PUT, &format!("/{b}/p"), &noise(50_000, 5)).await;
        let code = if matches!(act, Act::HangUp) {
            "ServiceUnavailable"
        } else {
            "SlowDown"
        };
        answer.assert_error(503, code);
        assert_eq!(
            fake.count(&format!("PUT /{b}/p ")),
            before + 1,
            "{act:?}: a PUT with a body was repeated"
        );
        assert_eq!(fake.acts_left(), 1);
        fake.script.lock().unwrap().clear();
    }

    // A POST (CreateMultipartUpload) is not idempotent: never repeated.
    fake.then(&[Act::HangUp, Act::Object(0)]);
    let answer = small(&s, Method::POST, &format!("/{b}/m?uploads"), b"").await;
    answer.assert_error(503, "ServiceUnavailable");
    assert_eq!(fake.count(&format!("POST /{b}/m?uploads")), 1);
    assert_eq!(fake.acts_left(), 1);
}

/// Reads a streamed response to its end: the bytes and whether it ended with an error.
async fn read_to_end(mut resp: reqwest::Response, limit: Duration) -> (Vec<u8>, bool) {
    let mut out = Vec::new();
    let failed = tokio::time::timeout(limit, async {
        loop {
            match resp.chunk().await {
                Ok(Some(piece)) => out.extend_from_slice(&piece),
                Ok(None) => return false,
                Err(_) => return true,
            }
        }
    })
    .await
    .expect("the download ends (cut or complete) in time");
    (out, failed)
}

/// An upstream body that breaks off, or stops moving, after the answer started: the client's
/// download ends with an error (never like a short object), and is not retried.
async fn broken_download(act: Act, sent: usize) -> (Sluice, Scripted, String) {
    let fake = Scripted::start().await;
    let s = start(
        &[backend_at(
            "brokenstore",
            "generic",
            &fake.endpoint,
            "FAKEKEY0001",
            &random_secret(),
            ("5s", "1s"),
        )],
        &[route("torn-", "brokenstore")],
    );
    let b = bucket("torn");
    fake.then(&[act, Act::Object(10)]);
    let started = Instant::now();
    let resp = signed(
        &s,
        Method::GET,
        &format!("/{b}/k"),
        HeaderMap::new(),
        PayloadMode::Signed(Sha256::digest(b"").into()),
        reqwest::Body::from(Vec::new()),
    )
    .await;
    assert_eq!(resp.status().as_u16(), 200);
    assert_eq!(resp.content_length(), Some(4 * MIB as u64));
    let request_id = resp
        .headers()
        .get("x-amz-request-id")
        .unwrap()
        .to_str()
        .unwrap()
        .to_owned();
    let (bytes, failed) = read_to_end(resp, Duration::from_secs(30)).await;
    assert!(
        failed,
        "{act:?}: the download ended cleanly after {} of {} bytes",
        bytes.len(),
        4 * MIB
    );
    assert!(bytes.len() <= sent, "{act:?}: {} bytes", bytes.len());
    assert!(bytes[..] == scripted_bytes(bytes.len())[..]);
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "{act:?}: cut after {:?}",
        started.elapsed()
    );
    assert_eq!(
        fake.count(&format!("GET /{b}/k ")),
        1,
        "{act:?}: the GET was sent again after its answer had started"
    );
    // Sluice goes on serving.
    let c = client(&s);
    let local = bucket("local");
    c.create_bucket().bucket(&local).send().await.unwrap();
    (s, fake, request_id)
}

#[tokio::test(flavor = "multi_thread")]
async fn upstream_body_cut_or_stalled_is_an_error_for_the_client() {
    for act in [
        Act::CutAfter {
            len: 4 * MIB,
            sent: MIB,
        },
        Act::StallAfter {
            len: 4 * MIB,
            sent: MIB,
        },
    ] {
        broken_download(act, MIB).await;
    }
}

/// The operator learns that a download broke off because of an upstream, and which one.
#[tokio::test(flavor = "multi_thread")]
async fn broken_download_is_logged_with_its_backend() {
    let act = Act::CutAfter {
        len: 4 * MIB,
        sent: MIB,
    };
    let (s, _fake, request_id) = broken_download(act, MIB).await;
    let named = eventually(|| {
        let log = s.log();
        async move { log.contains("brokenstore") }
    })
    .await;
    assert!(
        named,
        "nothing in the log names the backend that broke request {request_id}'s download:\n{}",
        s.log()
    );
}

// ------------------------------------------------------------------------------------------
// 5. A provider refusing checksum headers and aws-chunked bodies (as Backblaze B2 does)

type ShimBody = BoxBody<Bytes, hyper::Error>;
type ShimClient = hyper_util::client::legacy::Client<
    hyper_util::client::legacy::connect::HttpConnector,
    Incoming,
>;

/// An HTTP proxy in front of s3s-fs that answers `400 InvalidArgument` to any request carrying
/// what B2 refuses (x-amz-checksum-*, x-amz-sdk-checksum-algorithm, x-amz-trailer, aws-chunked,
/// a `STREAMING-` payload) and forwards anything else unchanged, Host header included.
struct Shim {
    endpoint: String,
    /// What each refused request carried.
    refused: Arc<Mutex<Vec<String>>>,
    forwarded: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Shim {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Why B2 would refuse a request with these headers, if it would.
fn b2_refusal(headers: &HeaderMap) -> Option<String> {
    for (name, value) in headers {
        let name = name.as_str();
        let value = value.to_str().unwrap_or_default();
        if name.starts_with("x-amz-checksum-")
            || name == "x-amz-sdk-checksum-algorithm"
            || name == "x-amz-trailer"
            || (name == "content-encoding" && value.to_ascii_lowercase().contains("aws-chunked"))
            || (name == "x-amz-content-sha256" && value.starts_with("STREAMING-"))
        {
            return Some(format!("{name}: {value}"));
        }
    }
    None
}

async fn shim_handle(
    req: hyper::Request<Incoming>,
    target: SocketAddr,
    client: ShimClient,
    refused: Arc<Mutex<Vec<String>>>,
    forwarded: Arc<AtomicUsize>,
) -> Result<hyper::Response<ShimBody>, Infallible> {
    let full = |status: u16, text: String| {
        hyper::Response::builder()
            .status(status)
            .header("content-type", "application/xml")
            .body(Full::new(Bytes::from(text)).map_err(|n| match n {}).boxed())
            .unwrap()
    };
    if let Some(why) = b2_refusal(req.headers()) {
        let (parts, body) = req.into_parts();
        refused
            .lock()
            .unwrap()
            .push(format!("{} {}: {why}", parts.method, parts.uri));
        // Read the body first, so the client sees the answer rather than a reset.
        let _ = body.collect().await;
        let header = why.split(':').next().unwrap_or_default().to_owned();
        return Ok(full(
            400,
            format!(
                "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>InvalidArgument</Code><Message>Unsupported header '{header}' received for this API call.</Message></Error>"
            ),
        ));
    }
    forwarded.fetch_add(1, Ordering::SeqCst);
    let (mut parts, body) = req.into_parts();
    let path = parts
        .uri
        .path_and_query()
        .map_or("/", |p| p.as_str())
        .to_owned();
    parts.uri = format!("http://{target}{path}").parse().unwrap();
    match client
        .request(hyper::Request::from_parts(parts, body))
        .await
    {
        Ok(resp) => Ok(resp.map(BodyExt::boxed)),
        Err(err) => Ok(full(502, format!("shim: {err}"))),
    }
}

impl Shim {
    async fn start(upstream: &Upstream) -> Self {
        let target: SocketAddr = upstream
            .endpoint
            .trim_start_matches("http://")
            .parse()
            .unwrap();
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let endpoint = format!("http://{}", listener.local_addr().unwrap());
        let refused: Arc<Mutex<Vec<String>>> = Arc::default();
        let forwarded: Arc<AtomicUsize> = Arc::default();
        let client: ShimClient =
            hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
                .build_http();
        let (r, f) = (Arc::clone(&refused), Arc::clone(&forwarded));
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let (client, r, f) = (client.clone(), Arc::clone(&r), Arc::clone(&f));
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(move |req| {
                        shim_handle(req, target, client.clone(), Arc::clone(&r), Arc::clone(&f))
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        Self {
            endpoint,
            refused,
            forwarded,
            task,
        }
    }

    fn refused(&self) -> Vec<String> {
        self.refused.lock().unwrap().clone()
    }
}

/// A signed aws-chunked body (`STREAMING-AWS4-HMAC-SHA256-PAYLOAD`) of `data` in 64 KiB chunks.
fn signed_chunks(
    params: &sluice_sigv4::SigningParams<'_>,
    seed: sluice_sigv4::Signature,
    data: &[u8],
) -> Vec<u8> {
    let chain = ChunkSignatureChain::new(params.signing_key(), params.date, &params.scope(), seed);
    let mut enc = ChunkedEncoder::new(Some(chain), false);
    let mut out = Vec::new();
    for piece in data.chunks(64 * 1024) {
        out.extend(enc.chunk(piece));
    }
    out.extend(enc.finish(&[]));
    out
}

fn sha256_of(data: &[u8]) -> String {
    hex::encode(Sha256::digest(data))
}

#[tokio::test(flavor = "multi_thread")]
async fn b2_like_upstream_gets_only_what_it_accepts() {
    let up = Upstream::s3s_fs();
    let shim = Shim::start(&up).await;
    let files = tempfile::tempdir().unwrap();

    // (a) Negative control: today's SDK, straight at the shim, is refused.
    let direct = sdk_client(&shim.endpoint, &up.access_key, &up.secret_key);
    let control = bucket("ctl");
    direct
        .create_bucket()
        .bucket(&control)
        .send()
        .await
        .unwrap();
    assert_eq!(
        shim.refused(),
        Vec::<String>::new(),
        "bucket creation refused"
    );
    let err = direct
        .put_object()
        .bucket(&control)
        .key("mem")
        .body(ByteStream::from(noise(1000, 1)))
        .send()
        .await
        .unwrap_err();
    assert_eq!(
        (code(&err).as_str(), http_status(&err)),
        ("InvalidArgument", 400)
    );
    let file = files.path().join("control");
    std::fs::write(&file, noise(300_000, 2)).unwrap();
    let err = direct
        .put_object()
        .bucket(&control)
        .key("file")
        .body(ByteStream::from_path(&file).await.unwrap())
        .send()
        .await
        .unwrap_err();
    assert_eq!(
        (code(&err).as_str(), http_status(&err)),
        ("InvalidArgument", 400)
    );
    let upload = direct
        .create_multipart_upload()
        .bucket(&control)
        .key("mpu")
        .send()
        .await
        .unwrap();
    let err = direct
        .upload_part()
        .bucket(&control)
        .key("mpu")
        .upload_id(upload.upload_id().unwrap())
        .part_number(1)
        .body(ByteStream::from(noise(1000, 3)))
        .send()
        .await
        .unwrap_err();
    assert_eq!(
        (code(&err).as_str(), http_status(&err)),
        ("InvalidArgument", 400)
    );
    let refused_directly = shim.refused();
    eprintln!("refused from the SDK directly: {refused_directly:#?}");
    assert_eq!(refused_directly.len(), 3, "{refused_directly:#?}");

    // (b) Through Sluice, profile b2: the same uploads succeed, and the shim refuses nothing.
    let backend = backend_at(
        "b2store",
        "b2",
        &shim.endpoint,
        &up.access_key,
        &up.secret_key,
        ("20s", "20s"),
    );
    let s = start(&[backend], &[route("bb-", "b2store")]);
    let c = client(&s);
    let b = bucket("bb");
    c.create_bucket().bucket(&b).send().await.unwrap();
    let forwarded_before = shim.forwarded.load(Ordering::SeqCst);
    let mut objects: Vec<(&str, Vec<u8>)> = Vec::new();

    // The SDK's defaults: an in-memory body (x-amz-checksum-crc32 header) ...
    let mem = noise(MIB, 10);
    c.put_object()
        .bucket(&b)
        .key("sdk-memory")
        .body(ByteStream::from(mem.clone()))
        .send()
        .await
        .unwrap();
    objects.push(("sdk-memory", mem));
    // ... and a file body (aws-chunked with a trailing CRC32).
    let data = noise(3 * MIB + 17, 11);
    let file = files.path().join("upload");
    std::fs::write(&file, &data).unwrap();
    c.put_object()
        .bucket(&b)
        .key("sdk-file")
        .body(ByteStream::from_path(&file).await.unwrap())
        .send()
        .await
        .unwrap();
    objects.push(("sdk-file", data));

    // A raw STREAMING-AWS4-HMAC-SHA256-PAYLOAD upload.
    let data = noise(200_000, 12);
    let probe = SecretKey::new("x".into());
    let date = now();
    let probe_params = signing_params("X", &probe, &date);
    let zero = sluice_sigv4::Signature::from_hex(&"0".repeat(64)).unwrap();
    let encoded_len = signed_chunks(&probe_params, zero, &data).len();
    let mut headers = HeaderMap::new();
    headers.insert("content-encoding", HeaderValue::from_static("aws-chunked"));
    headers.insert("x-amz-decoded-content-length", data.len().into());
    headers.insert("content-length", encoded_len.into());
    let (status, body) = send_signed(
        &s,
        Method::PUT,
        &format!("/{b}/raw-chunked"),
        headers,
        PayloadMode::StreamingSigned,
        |p, seed| signed_chunks(p, seed, &data),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    objects.push(("raw-chunked", data));

    // A multipart upload with the SDK's defaults (a 5 MiB part from memory, the last from a file).
    let part1 = noise(5 * MIB, 13);
    let part2 = noise(MIB + 5, 14);
    let part_file = files.path().join("part2");
    std::fs::write(&part_file, &part2).unwrap();
    let created = c
        .create_multipart_upload()
        .bucket(&b)
        .key("multipart")
        .send()
        .await
        .unwrap();
    let id = created.upload_id().unwrap();
    let mut parts = Vec::new();
    for (n, body) in [
        (1, ByteStream::from(part1.clone())),
        (2, ByteStream::from_path(&part_file).await.unwrap()),
    ] {
        let out = c
            .upload_part()
            .bucket(&b)
            .key("multipart")
            .upload_id(id)
            .part_number(n)
            .body(body)
            .send()
            .await
            .unwrap();
        parts.push(
            CompletedPart::builder()
                .part_number(n)
                .e_tag(out.e_tag().unwrap())
                .build(),
        );
    }
    c.complete_multipart_upload()
        .bucket(&b)
        .key("multipart")
        .upload_id(id)
        .multipart_upload(
            CompletedMultipartUpload::builder()
                .set_parts(Some(parts))
                .build(),
        )
        .send()
        .await
        .unwrap();
    objects.push(("multipart", [part1, part2].concat()));

    // Every object reads back equal, through Sluice and on the upstream itself.
    let upstream = sdk_client(&up.endpoint, &up.access_key, &up.secret_key);
    for (key, data) in &objects {
        assert_eq!(
            sha256_of(&get_bytes(&c, &b, key).await),
            sha256_of(data),
            "{key} through Sluice"
        );
        assert_eq!(
            sha256_of(&get_bytes(&upstream, &b, key).await),
            sha256_of(data),
            "{key} on the upstream"
        );
    }
    let refused = shim.refused();
    assert_eq!(
        refused[refused_directly.len()..],
        [] as [String; 0],
        "Sluice sent the b2 upstream what B2 refuses"
    );
    assert!(shim.forwarded.load(Ordering::SeqCst) >= forwarded_before + objects.len());
}

/// What `payload_signing: chunks` puts on the wire is a signed chunk chain, and only that: the
/// refusing shim (which turns away every `STREAMING-` payload) names it as the reason. (That the
/// chain verifies is `upstream::signed_chunk_chains_reach_a_verifying_upstream`.)
#[tokio::test(flavor = "multi_thread")]
async fn chunk_signing_puts_a_signed_chain_on_the_wire() {
    let up = Upstream::s3s_fs();
    let shim = Shim::start(&up).await;
    let sluice = start(
        &[format!(
            "{}\n    payload_signing: chunks",
            backend_at(
                "chained",
                "b2",
                &shim.endpoint,
                &up.access_key,
                &up.secret_key,
                ("20s", "20s")
            )
            .replace("profile: b2", "profile: minio")
        )],
        &[route("chain-", "chained")],
    );
    let c = client(&sluice);
    c.create_bucket().bucket("chain-b").send().await.unwrap();
    assert_eq!(shim.refused(), Vec::<String>::new());
    // An unsigned body with no checksum (nothing else for the shim to refuse): the body the
    // client did not sign a hash of goes upstream as a signed chunk chain, which the shim
    // turns away as B2 would.
    let mut headers = HeaderMap::new();
    headers.insert("content-length", "70000".parse().unwrap());
    let (status, body) = send_signed(
        &sluice,
        Method::PUT,
        "/chain-b/k",
        headers,
        PayloadMode::Unsigned,
        |_, _| noise(70_000, 3),
    )
    .await;
    assert_eq!(status, 400, "{body}");
    let refused = shim.refused();
    assert_eq!(refused.len(), 1, "{refused:?}");
    assert!(
        refused[0].contains("STREAMING-AWS4-HMAC-SHA256-PAYLOAD")
            || refused[0].contains("content-encoding: aws-chunked"),
        "{refused:?}"
    );
}
