//! `sluice-bench`: an S3 load generator with real SigV4 signing on every request.
//!
//! GET or PUT of one object size, N concurrent keep-alive connections, a request count or a
//! duration; reports requests/s, MB/s, latency percentiles, errors, and the server process's
//! CPU seconds and peak RSS read from `/proc` (peak RSS is reset before each run through
//! `/proc/<pid>/clear_refs`, so each scenario reports its own peak).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use clap::{Parser, ValueEnum};
use http::{HeaderMap, Method, Uri};
use sha2::{Digest, Sha256};
use sluice_sigv4::{
    AmzDate, CanonicalSettings, PayloadMode, SecretKey, SigningParams, sign_request,
};

#[derive(Debug, Parser)]
#[command(
    name = "sluice-bench",
    about = "S3 load generator with SigV4 signing per request"
)]
struct Args {
    #[arg(long)]
    endpoint: String,
    #[arg(long)]
    access_id: String,
    #[arg(long, env = "SLUICE_BENCH_SECRET")]
    secret: String,
    #[arg(long, default_value = "us-east-1")]
    region: String,
    #[arg(long, default_value = "bench")]
    bucket: String,
    #[arg(long, value_enum)]
    op: Op,
    /// Object size: bytes, or with a KiB/MiB/GiB suffix.
    #[arg(long, value_parser = parse_size)]
    size: u64,
    #[arg(long, default_value_t = 1)]
    concurrency: usize,
    /// Total requests (default: one per connection for objects of 64 MiB or more, else 10,000).
    #[arg(long)]
    requests: Option<u64>,
    /// Stop after this many seconds even if requests remain.
    #[arg(long, default_value_t = 60)]
    max_seconds: u64,
    /// How PUT bodies are signed: `signed` hashes the body first (two passes over generated data).
    #[arg(long, value_enum, default_value = "unsigned")]
    payload: Payload,
    /// The server's pid, for CPU seconds and peak RSS.
    #[arg(long)]
    server_pid: Option<u32>,
    /// Trust this PEM certificate (for https endpoints).
    #[arg(long)]
    ca: Option<std::path::PathBuf>,
    #[arg(long, value_parser = parse_size, default_value = "8MiB")]
    part_size: u64,
    #[arg(long, default_value_t = 4)]
    part_concurrency: usize,
    #[arg(long, default_value_t = 1_000_000)]
    list_keys: usize,
    /// The target is not an S3 server (e.g. nginx serving the same files): skip the bucket and
    /// object setup. Requests are still signed, so the client does the same work either way.
    #[arg(long)]
    raw: bool,
    /// Skip the setup PUT of the object a GET scenario reads (it exists from an earlier run).
    #[arg(long)]
    no_setup: bool,
    /// Run for this many seconds instead of a request count.
    #[arg(long)]
    duration: Option<u64>,
    /// GETs read a range of this many bytes at a random offset instead of the whole object.
    #[arg(long, value_parser = parse_size)]
    range_bytes: Option<u64>,
    /// Label printed with the result line.
    #[arg(long, default_value = "")]
    label: String,
}

#[derive(Debug, Clone, Copy, ValueEnum, PartialEq, Eq)]
enum Op {
    Get,
    Put,
    /// One multipart upload of `--size` bytes in `--part-size` parts, `--part-concurrency` in flight.
    Multipart,
    /// ListObjectsV2 pages of 1,000 keys at random start points of a bucket filled by
    /// `cargo bench -p sluice-storage --features bench --bench listing` (`--list-keys` keys).
    List,
    /// Open `--concurrency` keep-alive connections, make one GET on each, hold them all idle,
    /// and report the server's memory then.
    Idle,
}

#[derive(Debug, Clone, Copy, ValueEnum, PartialEq, Eq)]
enum Payload {
    Unsigned,
    Signed,
}

fn parse_size(text: &str) -> Result<u64, String> {
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (n, unit) = text.split_at(split);
    let n: u64 = n.parse().map_err(|_| format!("bad size {text}"))?;
    let scale = match unit {
        "" | "B" => 1,
        "KiB" => 1 << 10,
        "MiB" => 1 << 20,
        "GiB" => 1 << 30,
        _ => return Err(format!("bad unit in {text}")),
    };
    Ok(n * scale)
}

/// Deterministic object bytes, generated in 1 MiB blocks so any size streams in bounded memory.
fn block(index: u64) -> Bytes {
    let mut out = vec![0u8; 1 << 20];
    let mut x = index.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    for chunk in out.chunks_mut(8) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        chunk.copy_from_slice(&x.to_le_bytes()[..chunk.len()]);
    }
    Bytes::from(out)
}

fn body_stream(
    size: u64,
) -> impl futures_util::Stream<Item = Result<Bytes, std::io::Error>> + Send {
    let blocks = size.div_ceil(1 << 20);
    futures_util::stream::iter((0..blocks).map(move |i| {
        let b = block(i);
        let len = (size - i * (1 << 20)).min(1 << 20) as usize;
        Ok(b.slice(..len))
    }))
}

fn body_sha256(size: u64) -> [u8; 32] {
    let mut h = Sha256::new();
    let blocks = size.div_ceil(1 << 20);
    for i in 0..blocks {
        let len = (size - i * (1 << 20)).min(1 << 20) as usize;
        h.update(&block(i)[..len]);
    }
    h.finalize().into()
}

struct Signer {
    access_id: String,
    secret: SecretKey,
    region: String,
}

impl Signer {
    fn headers(
        &self,
        method: &Method,
        url: &str,
        payload: &PayloadMode,
        extra: &[(&str, String)],
    ) -> HeaderMap {
        let uri: Uri = url.parse().expect("valid url");
        let unix = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap()
            .as_secs() as i64;
        let date = AmzDate::from_unix(unix);
        let params = SigningParams {
            access_key_id: &self.access_id,
            secret: &self.secret,
            session_token: None,
            region: &self.region,
            service: "s3",
            date: &date,
            settings: CanonicalSettings::S3,
        };
        let mut headers = HeaderMap::new();
        for (k, v) in extra {
            headers.insert(
                http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                v.parse().unwrap(),
            );
        }
        sign_request(method, &uri, &mut headers, payload, &params).expect("signing");
        headers
    }
}

const EMPTY: [u8; 32] = [
    0xe3, 0xb0, 0xc4, 0x42, 0x98, 0xfc, 0x1c, 0x14, 0x9a, 0xfb, 0xf4, 0xc8, 0x99, 0x6f, 0xb9, 0x24,
    0x27, 0xae, 0x41, 0xe4, 0x64, 0x9b, 0x93, 0x4c, 0xa4, 0x95, 0x99, 0x1b, 0x78, 0x52, 0xb8, 0x55,
];

/// CPU seconds (user + system) of a process, from /proc/<pid>/stat.
fn cpu_seconds(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    let ticks: f64 = fields.get(11)?.parse::<f64>().ok()? + fields.get(12)?.parse::<f64>().ok()?;
    Some(ticks / 100.0)
}

/// Bytes a process has read through read(2) and friends (files and sockets), from
/// /proc/<pid>/io: for a ranged GET, what the server read from its backend's files.
fn read_bytes(pid: u32) -> Option<u64> {
    let io = std::fs::read_to_string(format!("/proc/{pid}/io")).ok()?;
    io.lines()
        .find_map(|l| l.strip_prefix("rchar:"))?
        .trim()
        .parse()
        .ok()
}

fn peak_rss_mib(pid: u32) -> Option<f64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024.0)
}

#[tokio::main]
async fn main() {
    let args = Args::parse();
    let signer = Arc::new(Signer {
        access_id: args.access_id.clone(),
        secret: SecretKey::new(args.secret.clone()),
        region: args.region.clone(),
    });
    let mut builder = reqwest::Client::builder()
        .pool_max_idle_per_host(args.concurrency)
        .tcp_nodelay(true)
        .http1_only();
    if let Some(ca) = &args.ca {
        let pem = std::fs::read(ca).expect("read CA");
        builder = builder
            .use_rustls_tls()
            .add_root_certificate(reqwest::Certificate::from_pem(&pem).expect("PEM"));
    }
    let client = builder.build().unwrap();
    let base = args.endpoint.trim_end_matches('/').to_owned();

    // Setup: the bucket, and for GETs the object.
    let url = format!("{base}/{}", args.bucket);
    // The object GET scenarios read is named by its size, so an nginx root can hold the same.
    let object_url = format!("{url}/obj-{}", args.size);
    if !args.raw && !args.no_setup {
        let h = signer.headers(&Method::PUT, &url, &PayloadMode::Signed(EMPTY), &[]);
        let _ = client.put(&url).headers(h).send().await;
        if matches!(args.op, Op::Get | Op::Idle) {
            put_object(&client, &signer, &object_url, args.size, Payload::Unsigned)
                .await
                .expect("setup PUT");
        }
    }
    if args.op == Op::Idle {
        idle_connections(&args, &signer, &object_url).await;
        return;
    }
    let requests = match (args.duration, args.requests) {
        (Some(_), _) => u64::MAX,
        (None, Some(n)) => n,
        (None, None) if args.size >= 64 << 20 => args.concurrency as u64,
        (None, None) => 10_000,
    };

    if let Some(pid) = args.server_pid {
        let _ = std::fs::write(format!("/proc/{pid}/clear_refs"), "5");
    }
    let cpu_before = args.server_pid.and_then(cpu_seconds);
    let read_before = args.server_pid.and_then(read_bytes);
    let issued = Arc::new(AtomicU64::new(0));
    let errors = Arc::new(AtomicU64::new(0));
    let deadline = Instant::now() + Duration::from_secs(args.duration.unwrap_or(args.max_seconds));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for worker in 0..args.concurrency {
        let (client, signer, issued, errors, url, object_url) = (
            client.clone(),
            Arc::clone(&signer),
            Arc::clone(&issued),
            Arc::clone(&errors),
            url.clone(),
            object_url.clone(),
        );
        let (op, size, payload, range_bytes) = (args.op, args.size, args.payload, args.range_bytes);
        let (args_part_size, args_part_concurrency, list_keys) =
            (args.part_size, args.part_concurrency, args.list_keys);
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            while issued.fetch_add(1, Ordering::Relaxed) < requests && Instant::now() < deadline {
                let t0 = Instant::now();
                let ok = match op {
                    Op::Get => match range_bytes {
                        None => get_object(&client, &signer, &object_url, size).await,
                        Some(len) => {
                            let n = issued.load(Ordering::Relaxed);
                            let first = n.wrapping_mul(0x9E37_79B9_7F4A_7C15) % (size - len + 1);
                            get_range(&client, &signer, &object_url, first, len).await
                        }
                    },
                    Op::Idle => unreachable!("handled before the load loop"),
                    Op::Multipart => {
                        let (part, parallel) = (args_part_size, args_part_concurrency);
                        multipart_upload(
                            &client,
                            &signer,
                            &format!("{url}/mpu-{worker}"),
                            size,
                            part,
                            parallel,
                        )
                        .await
                    }
                    Op::List => {
                        let n = issued.load(Ordering::Relaxed) as usize;
                        let start = list_key(n.wrapping_mul(7_919_993) % list_keys);
                        list_page(&client, &signer, &url, &start).await
                    }
                    Op::Put => {
                        put_object(
                            &client,
                            &signer,
                            &format!("{url}/put-{worker}"),
                            size,
                            payload,
                        )
                        .await
                    }
                };
                if ok.is_err() {
                    errors.fetch_add(1, Ordering::Relaxed);
                    if let Err(e) = ok {
                        eprintln!("request failed: {e}");
                    }
                }
                latencies.push(t0.elapsed());
            }
            latencies
        }));
    }
    let mut latencies: Vec<Duration> = Vec::new();
    for t in tasks {
        latencies.extend(t.await.unwrap());
    }
    let elapsed = started.elapsed().as_secs_f64();
    latencies.sort();
    let n = latencies.len().max(1);
    let pct = |p: f64| {
        latencies
            .get(((n as f64 * p) as usize).min(n - 1))
            .copied()
            .unwrap_or_default()
            .as_secs_f64()
            * 1000.0
    };
    let done = latencies.len() as f64;
    let mb = done * args.range_bytes.unwrap_or(args.size) as f64 / 1e6;
    let read_per_request = match (read_before, args.server_pid.and_then(read_bytes)) {
        (Some(a), Some(b)) => format!("{:.1}", (b - a) as f64 / done.max(1.0) / 1024.0),
        _ => "-".into(),
    };
    let cpu = match (cpu_before, args.server_pid.and_then(cpu_seconds)) {
        (Some(a), Some(b)) => format!("{:.2}", b - a),
        _ => "-".into(),
    };
    let rss = args
        .server_pid
        .and_then(peak_rss_mib)
        .map(|m| format!("{m:.1}"))
        .unwrap_or_else(|| "-".into());
    println!(
        "{label} op={op:?} size={size} conc={conc} requests={done} errors={err} seconds={elapsed:.2} req_per_s={rps:.1} MB_per_s={mbps:.1} p50_ms={p50:.2} p90_ms={p90:.2} p99_ms={p99:.2} max_ms={max:.2} server_cpu_s={cpu} server_peak_rss_mib={rss} server_read_kib_per_request={read_per_request}",
        label = args.label,
        op = args.op,
        size = args.size,
        conc = args.concurrency,
        err = errors.load(Ordering::Relaxed),
        rps = done / elapsed,
        mbps = mb / elapsed,
        p50 = pct(0.50),
        p90 = pct(0.90),
        p99 = pct(0.99),
        max = latencies.last().copied().unwrap_or_default().as_secs_f64() * 1000.0,
    );
}

async fn get_object(
    client: &reqwest::Client,
    signer: &Signer,
    url: &str,
    size: u64,
) -> Result<(), String> {
    let h = signer.headers(&Method::GET, url, &PayloadMode::Signed(EMPTY), &[]);
    let mut resp = client
        .get(url)
        .headers(h)
        .send()
        .await
        .map_err(|e| e.to_string())?;
    if !resp.status().is_success() {
        return Err(format!(
            "GET {}: {}",
            resp.status(),
            resp.text().await.unwrap_or_default()
        ));
    }
    let mut got = 0u64;
    while let Some(chunk) = resp.chunk().await.map_err(|e| e.to_string())? {
        got += chunk.len() as u64;
    }
    if got != size {
        return Err(format!("GET returned {got} bytes, expected {size}"));
    }
    Ok(())
}

/// GETs `len` bytes of the object from `first`, checking the answer is exactly that range.
async fn get_range(
    client: &reqwest::Client,
    signer: &Signer,
    url: &str,
    first: u64,
    len: u64,
) -> Result<(), String> {
    let h = signer.headers(&Method::GET, url, &PayloadMode::Signed(EMPTY), &[]);
    let resp = client
        .get(url)
        .headers(h)
        .header("range", format!("bytes={first}-{}", first + len - 1))
        .send()
        .await
        .map_err(|e| e.to_string())?;
    if resp.status() != reqwest::StatusCode::PARTIAL_CONTENT {
        return Err(format!("ranged GET: {}", resp.status()));
    }
    let got = resp.bytes().await.map_err(|e| e.to_string())?.len() as u64;
    if got != len {
        return Err(format!("ranged GET returned {got} bytes, expected {len}"));
    }
    Ok(())
}

async fn put_object(
    client: &reqwest::Client,
    signer: &Signer,
    url: &str,
    size: u64,
    payload: Payload,
) -> Result<(), String> {
    let mode = match payload {
        Payload::Unsigned => PayloadMode::Unsigned,
        Payload::Signed => PayloadMode::Signed(body_sha256(size)),
    };
    let h = signer.headers(
        &Method::PUT,
        url,
        &mode,
        &[("content-length", size.to_string())],
    );
    let body = reqwest::Body::wrap_stream(body_stream(size));
    let resp = client
        .put(url)
        .headers(h)
        .body(body)
        .send()
        .await
        .map_err(|e| e.to_string())?;
    if !resp.status().is_success() {
        return Err(format!(
            "PUT {}: {}",
            resp.status(),
            resp.text().await.unwrap_or_default()
        ));
    }
    Ok(())
}

/// The keys of the listing benchmark's bucket (must match `proxy/storage/benches/listing.rs`).
fn list_key(i: usize) -> String {
    format!("dir{:04}/sub{}/file-{i:07}.txt", i % 1000, i % 7)
}

async fn list_page(
    client: &reqwest::Client,
    signer: &Signer,
    bucket_url: &str,
    start_after: &str,
) -> Result<(), String> {
    let encoded: String = start_after
        .bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect();
    let url = format!("{bucket_url}?list-type=2&max-keys=1000&start-after={encoded}");
    let h = signer.headers(&Method::GET, &url, &PayloadMode::Signed(EMPTY), &[]);
    let resp = client
        .get(&url)
        .headers(h)
        .send()
        .await
        .map_err(|e| e.to_string())?;
    let status = resp.status();
    let text = resp.text().await.map_err(|e| e.to_string())?;
    if !status.is_success() || !text.contains("<Key>") {
        return Err(format!("list {status}: {}", &text[..text.len().min(300)]));
    }
    Ok(())
}

async fn multipart_upload(
    client: &reqwest::Client,
    signer: &Signer,
    url: &str,
    size: u64,
    part_size: u64,
    parallel: usize,
) -> Result<(), String> {
    use futures_util::StreamExt;
    let create = format!("{url}?uploads");
    let h = signer.headers(&Method::POST, &create, &PayloadMode::Signed(EMPTY), &[]);
    let resp = client
        .post(&create)
        .headers(h)
        .send()
        .await
        .map_err(|e| e.to_string())?;
    let text = resp.text().await.map_err(|e| e.to_string())?;
    let upload_id = text
        .split("<UploadId>")
        .nth(1)
        .and_then(|r| r.split("</UploadId>").next())
        .ok_or_else(|| format!("no UploadId in {text}"))?
        .to_owned();
    let parts = size.div_ceil(part_size);
    let results: Vec<Result<(u64, String), String>> = futures_util::stream::iter(0..parts)
        .map(|i| {
            let upload_id = upload_id.clone();
            async move {
                let len = part_size.min(size - i * part_size);
                let part_url = format!("{url}?partNumber={}&uploadId={upload_id}", i + 1);
                let h = signer.headers(
                    &Method::PUT,
                    &part_url,
                    &PayloadMode::Unsigned,
                    &[("content-length", len.to_string())],
                );
                let body = reqwest::Body::wrap_stream(body_stream(len));
                let resp = client
                    .put(&part_url)
                    .headers(h)
                    .body(body)
                    .send()
                    .await
                    .map_err(|e| e.to_string())?;
                if !resp.status().is_success() {
                    return Err(format!("part {}: {}", i + 1, resp.status()));
                }
                let etag = resp
                    .headers()
                    .get("etag")
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or_default()
                    .to_owned();
                Ok((i + 1, etag))
            }
        })
        .buffer_unordered(parallel)
        .collect()
        .await;
    let mut done = results.into_iter().collect::<Result<Vec<_>, _>>()?;
    done.sort();
    let xml: String = done
        .iter()
        .map(|(n, e)| format!("<Part><PartNumber>{n}</PartNumber><ETag>{e}</ETag></Part>"))
        .collect();
    let xml = format!("<CompleteMultipartUpload>{xml}</CompleteMultipartUpload>");
    let complete = format!("{url}?uploadId={upload_id}");
    let hash: [u8; 32] = Sha256::digest(xml.as_bytes()).into();
    let h = signer.headers(&Method::POST, &complete, &PayloadMode::Signed(hash), &[]);
    let resp = client
        .post(&complete)
        .headers(h)
        .body(xml)
        .send()
        .await
        .map_err(|e| e.to_string())?;
    let status = resp.status();
    let text = resp.text().await.unwrap_or_default();
    if !status.is_success() || !text.contains("CompleteMultipartUploadResult") {
        return Err(format!("complete {status}: {text}"));
    }
    Ok(())
}

/// Opens `--concurrency` plain-HTTP keep-alive connections, makes one GET on each, and with all
/// of them idle reports the server's resident memory (current and peak).
async fn idle_connections(args: &Args, signer: &Signer, object_url: &str) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let uri: Uri = object_url.parse().expect("object url");
    let authority = uri.authority().expect("authority").to_string();
    let path = uri.path().to_owned();
    if let Some(pid) = args.server_pid {
        let _ = std::fs::write(format!("/proc/{pid}/clear_refs"), "5");
    }
    let started = Instant::now();
    let mut held = Vec::with_capacity(args.concurrency);
    let mut errors = 0u64;
    for _ in 0..args.concurrency {
        let headers = signer.headers(&Method::GET, object_url, &PayloadMode::Signed(EMPTY), &[]);
        let mut request = format!("GET {path} HTTP/1.1\r\nhost: {authority}\r\n");
        for (k, v) in &headers {
            if k != http::header::HOST {
                request.push_str(&format!("{k}: {}\r\n", v.to_str().unwrap_or_default()));
            }
        }
        request.push_str("\r\n");
        let Ok(mut stream) = tokio::net::TcpStream::connect(&authority).await else {
            errors += 1;
            continue;
        };
        if stream.write_all(request.as_bytes()).await.is_err() {
            errors += 1;
            continue;
        }
        // Read the head, then exactly Content-Length bytes of body, leaving the connection idle.
        let mut buf = Vec::new();
        let mut chunk = [0u8; 8192];
        let complete = loop {
            let Ok(n) = stream.read(&mut chunk).await else {
                break false;
            };
            if n == 0 {
                break false;
            }
            buf.extend_from_slice(&chunk[..n]);
            if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
                let len: usize = head
                    .lines()
                    .find_map(|l| {
                        l.strip_prefix("content-length:")
                            .map(|v| v.trim().parse().unwrap_or(0))
                    })
                    .unwrap_or(0);
                if head.starts_with("http/1.1 200") && buf.len() >= end + 4 + len {
                    break true;
                }
                if !head.starts_with("http/1.1 200") {
                    break false;
                }
            }
        };
        if complete {
            held.push(stream);
        } else {
            errors += 1;
        }
    }
    let rss = |field: &str| {
        args.server_pid
            .and_then(|pid| std::fs::read_to_string(format!("/proc/{pid}/status")).ok())
            .and_then(|s| {
                s.lines()
                    .find(|l| l.starts_with(field))
                    .and_then(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok())
            })
            .map(|kib| format!("{:.1}", kib / 1024.0))
            .unwrap_or_else(|| "-".into())
    };
    println!(
        "{label} op=Idle size={size} conc={conc} requests={n} errors={errors} seconds={secs:.2} server_rss_mib={now} server_peak_rss_mib={peak}",
        label = args.label,
        size = args.size,
        conc = args.concurrency,
        n = held.len(),
        secs = started.elapsed().as_secs_f64(),
        now = rss("VmRSS:"),
        peak = rss("VmHWM:"),
    );
    drop(held);
}
