//! ListObjectsV2 page latency on a bucket of 1,000,000 keys (local backend, no HTTP).
//!
//! `cargo bench -p sluice-storage --features bench --bench listing [-- DATA_DIR [KEYS]]`
//!
//! Keys look like `dir0042/sub7/file-0001234.txt` (1,000 top-level prefixes). Reported: the
//! time to fill, then p50/p99/max of 1,000-key pages started at random points, of pages with
//! delimiter `/` at the top level and inside a prefix, and of a full paginated walk.

use std::time::{Duration, Instant};

use sluice_storage::{Backend, BucketName, ListRequest, LocalBackend, TenantId};

fn key(i: usize) -> String {
    format!("dir{:04}/sub{}/file-{i:07}.txt", i % 1000, i % 7)
}

fn report(name: &str, mut samples: Vec<Duration>) {
    samples.sort();
    let pct = |p: f64| {
        samples[((samples.len() as f64 * p) as usize).min(samples.len() - 1)].as_secs_f64() * 1000.0
    };
    println!(
        "{name:<40} n={:<5} p50={:>7.3} ms  p99={:>7.3} ms  max={:>7.3} ms",
        samples.len(),
        pct(0.5),
        pct(0.99),
        pct(1.0)
    );
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--"))
        .collect();
    let temp = tempfile::tempdir().unwrap();
    let dir = args
        .first()
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| temp.path().to_path_buf());
    let total: usize = args
        .get(1)
        .and_then(|n| n.parse().ok())
        .unwrap_or(1_000_000);
    let backend = LocalBackend::open(&dir).await.unwrap();
    let tenant = TenantId::parse("bench").unwrap();
    let bucket = BucketName::parse("million").unwrap();
    let list = |req: ListRequest| backend.list_objects(&tenant, &bucket, req);

    if backend.head_bucket(&tenant, &bucket).await.is_err() {
        backend.create_bucket(&tenant, &bucket).await.unwrap();
        let started = Instant::now();
        let mut keys: Vec<String> = (0..total).map(key).collect();
        keys.sort();
        for batch in keys.chunks(100_000) {
            backend
                .bench_load(&tenant, &bucket, batch.to_vec())
                .await
                .unwrap();
        }
        println!(
            "filled {total} keys in {:.1} s",
            started.elapsed().as_secs_f64()
        );
    }

    let page = |start_after: Option<String>, prefix: &str, delimiter: Option<&str>| ListRequest {
        prefix: prefix.to_owned(),
        delimiter: delimiter.map(str::to_owned),
        start_after,
        max_keys: 1000,
        ..Default::default()
    };
    let mut random = Vec::new();
    for i in 0..300 {
        let start = key((i * 7_919_993) % total);
        let t = Instant::now();
        let p = list(page(Some(start), "", None)).await.unwrap();
        random.push(t.elapsed());
        assert!(p.objects.len() == 1000 || p.next_token.is_none());
    }
    report("page of 1000 at a random start-after", random);

    let mut top = Vec::new();
    for _ in 0..50 {
        let t = Instant::now();
        let p = list(page(None, "", Some("/"))).await.unwrap();
        top.push(t.elapsed());
        assert_eq!(p.common_prefixes.len(), 1000.min(total));
    }
    report("delimiter '/' at the top (1000 prefixes)", top);

    let mut inner = Vec::new();
    for i in 0..100 {
        let prefix = format!("dir{:04}/", i * 7 % 1000);
        let t = Instant::now();
        let p = list(page(None, &prefix, Some("/"))).await.unwrap();
        inner.push(t.elapsed());
        assert!(!p.common_prefixes.is_empty());
    }
    report("delimiter '/' inside a prefix", inner);

    let t = Instant::now();
    let (mut token, mut pages, mut seen) = (None, 0, 0);
    loop {
        let p = list(ListRequest {
            continuation: token,
            ..page(None, "", None)
        })
        .await
        .unwrap();
        pages += 1;
        seen += p.objects.len();
        match p.next_token {
            Some(next) => token = Some(next),
            None => break,
        }
    }
    assert_eq!(seen, total);
    println!(
        "full walk: {pages} pages, {seen} keys in {:.2} s ({:.3} ms/page)",
        t.elapsed().as_secs_f64(),
        t.elapsed().as_secs_f64() * 1000.0 / pages as f64
    );
}
