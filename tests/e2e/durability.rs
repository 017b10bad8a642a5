//! Durability end to end: SIGKILL at arbitrary points of a mixed workload (PUTs, multipart
//! completions, copies, deletes) never loses an acknowledged write nor exposes a partial one;
//! concurrent writers of one key leave exactly one complete version and readers never see a
//! torn object; a full disk answers a clear 5xx, leaves nothing behind and keeps serving reads.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use aws_sdk_s3::Client;
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{CompletedMultipartUpload, CompletedPart};
use sha2::{Digest, Sha256};
use sluice_tests::{Options, Sluice};
use tokio::sync::Notify;

use crate::support::{client, code, http_status, make_bucket};

const MIB: usize = 1024 * 1024;

/// A client that never retries, so a request cut by the kill fails instead of reaching the
/// restarted server on its old port.
fn one_shot_client(s: &Sluice) -> Client {
    let conf = client(s)
        .config()
        .to_builder()
        .retry_config(aws_sdk_s3::config::retry::RetryConfig::disabled())
        .build();
    Client::from_conf(conf)
}

fn body(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

fn sha(data: &[u8]) -> String {
    hex::encode(Sha256::digest(data))
}

/// What a key may hold: its last acknowledged state, or the state its in-flight op was writing.
#[derive(Default, Clone)]
struct KeyState {
    acked: Option<String>,
    in_flight: Option<Option<String>>,
}

/// One worker: owns its keys, runs one op at a time, stops at the first failure.
async fn worker(
    c: Client,
    bucket: String,
    id: usize,
    round: usize,
    states: Arc<std::sync::Mutex<HashMap<String, KeyState>>>,
    acked: Arc<AtomicUsize>,
    progress: Arc<Notify>,
) {
    let keys: Vec<String> = (0..3).map(|k| format!("w{id}-k{k}")).collect();
    for step in 0u64.. {
        let seed = (round as u64) << 40 | (id as u64) << 20 | step;
        let key = keys[(seed % 3) as usize].clone();
        let op = seed.wrapping_mul(2_654_435_761) % 10;
        let (target, result): (Option<String>, Result<(), String>) = match op {
            0..=4 => {
                let data = body(seed, (seed as usize * 7919) % (2 * MIB));
                let target = Some(sha(&data));
                set_in_flight(&states, &key, target.clone());
                let r = c
                    .put_object()
                    .bucket(&bucket)
                    .key(&key)
                    .body(ByteStream::from(data))
                    .send()
                    .await;
                (target, r.map(|_| ()).map_err(|e| format!("{e:?}")))
            }
            5 => {
                let parts = [body(seed, 5 * MIB), body(seed + 1, 1000)];
                let target = Some(sha(&parts.concat()));
                set_in_flight(&states, &key, target.clone());
                (target, multipart(&c, &bucket, &key, &parts).await)
            }
            6 | 7 => {
                let source = keys[((seed + 1) % 3) as usize].clone();
                let source_state = states
                    .lock()
                    .unwrap()
                    .get(&source)
                    .and_then(|s| s.acked.clone());
                if source_state.is_none() {
                    continue;
                }
                set_in_flight(&states, &key, source_state.clone());
                let r = c
                    .copy_object()
                    .bucket(&bucket)
                    .key(&key)
                    .copy_source(format!("{bucket}/{source}"))
                    .send()
                    .await;
                (source_state, r.map(|_| ()).map_err(|e| format!("{e:?}")))
            }
            _ => {
                set_in_flight(&states, &key, None);
                let r = c.delete_object().bucket(&bucket).key(&key).send().await;
                (None, r.map(|_| ()).map_err(|e| format!("{e:?}")))
            }
        };
        if result.is_err() {
            return; // The server is gone; the in-flight state stays recorded.
        }
        let mut guard = states.lock().unwrap();
        let state = guard.entry(key).or_default();
        state.acked = target;
        state.in_flight = None;
        drop(guard);
        acked.fetch_add(1, Ordering::SeqCst);
        progress.notify_waiters();
    }
}

fn set_in_flight(
    states: &std::sync::Mutex<HashMap<String, KeyState>>,
    key: &str,
    target: Option<String>,
) {
    states
        .lock()
        .unwrap()
        .entry(key.to_owned())
        .or_default()
        .in_flight = Some(target);
}

async fn multipart(c: &Client, bucket: &str, key: &str, parts: &[Vec<u8>]) -> Result<(), String> {
    let err = |e: &dyn std::fmt::Debug| format!("{e:?}");
    let up = c
        .create_multipart_upload()
        .bucket(bucket)
        .key(key)
        .send()
        .await
        .map_err(|e| err(&e))?;
    let id = up.upload_id().unwrap_or_default().to_owned();
    let mut done = Vec::new();
    for (i, data) in parts.iter().enumerate() {
        let n = i as i32 + 1;
        let out = c
            .upload_part()
            .bucket(bucket)
            .key(key)
            .upload_id(&id)
            .part_number(n)
            .body(ByteStream::from(data.clone()))
            .send()
            .await
            .map_err(|e| err(&e))?;
        done.push(
            CompletedPart::builder()
                .part_number(n)
                .e_tag(out.e_tag().unwrap_or_default())
                .build(),
        );
    }
    let list = CompletedMultipartUpload::builder()
        .set_parts(Some(done))
        .build();
    c.complete_multipart_upload()
        .bucket(bucket)
        .key(key)
        .upload_id(&id)
        .multipart_upload(list)
        .send()
        .await
        .map_err(|e| err(&e))?;
    Ok(())
}

fn count_files(dir: &std::path::Path) -> usize {
    std::fs::read_dir(dir)
        .map(|rd| {
            rd.flatten()
                .map(|e| {
                    if e.path().is_dir() {
                        count_files(&e.path())
                    } else {
                        1
                    }
                })
                .sum()
        })
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread")]
async fn sigkill_at_random_points_loses_nothing_acknowledged() {
    let mut s = Sluice::start();
    let bucket = make_bucket(&client(&s), "crash").await;
    let states: Arc<std::sync::Mutex<HashMap<String, KeyState>>> = Default::default();
    for round in 0..4 {
        let c = one_shot_client(&s);
        let acked = Arc::new(AtomicUsize::new(0));
        let progress = Arc::new(Notify::new());
        let tasks: Vec<_> = (0..4)
            .map(|id| {
                tokio::spawn(worker(
                    c.clone(),
                    bucket.clone(),
                    id,
                    round,
                    Arc::clone(&states),
                    Arc::clone(&acked),
                    Arc::clone(&progress),
                ))
            })
            .collect();
        // Kill after a random number of acknowledged operations: a random point in the workload.
        let threshold = 3 + rand::random::<u64>() as usize % 25;
        while acked.load(Ordering::SeqCst) < threshold {
            let notified = progress.notified();
            if acked.load(Ordering::SeqCst) >= threshold {
                break;
            }
            tokio::time::timeout(std::time::Duration::from_secs(60), notified)
                .await
                .expect("workload stalled");
        }
        s.crash_and_restart();
        for t in tasks {
            t.await.unwrap();
        }

        // Every key holds its acknowledged state or what its interrupted op was writing.
        let c = one_shot_client(&s);
        let snapshot = states.lock().unwrap().clone();
        let mut objects = 0;
        for (key, state) in &snapshot {
            let got = match c.get_object().bucket(&bucket).key(key).send().await {
                Ok(out) => Some(sha(&out.body.collect().await.unwrap().into_bytes())),
                Err(e) if http_status(&e) == 404 => None,
                Err(e) => panic!("{key}: {e:?}"),
            };
            let mut allowed = vec![state.acked.clone()];
            if let Some(t) = &state.in_flight {
                allowed.push(t.clone());
            }
            assert!(
                allowed.contains(&got),
                "round {round}, key {key}: got {got:?}, allowed {allowed:?}"
            );
            objects += usize::from(got.is_some());
            // Settle the state to what survived, for the next round.
            let mut guard = states.lock().unwrap();
            let entry = guard.get_mut(key).unwrap();
            entry.acked = got;
            entry.in_flight = None;
        }
        // Nothing half-written is left behind: no temp files, and exactly the blobs that the
        // surviving objects (and any unfinished uploads' parts) need.
        assert_eq!(
            count_files(&s.data_dir().join("tmp")),
            0,
            "round {round}: temp files left"
        );
        let listed = c.list_objects_v2().bucket(&bucket).send().await.unwrap();
        assert_eq!(listed.contents().len(), objects);
        let needed: usize = listed
            .contents()
            .iter()
            .map(|o| {
                o.e_tag()
                    .unwrap()
                    .trim_matches('"')
                    .split_once('-')
                    .map_or(1, |(_, n)| n.parse().unwrap())
            })
            .sum();
        let mut part_blobs = 0;
        let uploads = c
            .list_multipart_uploads()
            .bucket(&bucket)
            .send()
            .await
            .unwrap();
        for u in uploads.uploads() {
            part_blobs += c
                .list_parts()
                .bucket(&bucket)
                .key(u.key().unwrap())
                .upload_id(u.upload_id().unwrap())
                .send()
                .await
                .unwrap()
                .parts()
                .len();
        }
        assert_eq!(
            count_files(&s.data_dir().join("blobs")),
            needed + part_blobs,
            "round {round}: orphaned or missing blobs"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn concurrent_writers_and_readers_never_see_a_torn_object() {
    let s = Sluice::start();
    let c = client(&s);
    let bucket = make_bucket(&c, "race").await;
    let versions: Vec<Vec<u8>> = (0..12).map(|i| body(1000 + i, MIB + i as usize)).collect();
    let valid: std::collections::HashSet<String> = versions.iter().map(|v| sha(v)).collect();
    let writers_done = Arc::new(AtomicUsize::new(0));
    let mut writers = Vec::new();
    for chunk in versions.chunks(2) {
        let (c, bucket, chunk, done) = (
            c.clone(),
            bucket.clone(),
            chunk.to_vec(),
            Arc::clone(&writers_done),
        );
        writers.push(tokio::spawn(async move {
            for data in chunk {
                c.put_object()
                    .bucket(&bucket)
                    .key("contended")
                    .body(ByteStream::from(data))
                    .send()
                    .await
                    .unwrap();
            }
            done.fetch_add(1, Ordering::SeqCst);
        }));
    }
    let mut readers = Vec::new();
    for _ in 0..3 {
        let (c, bucket, valid, done) = (
            c.clone(),
            bucket.clone(),
            valid.clone(),
            Arc::clone(&writers_done),
        );
        readers.push(tokio::spawn(async move {
            let mut reads = 0;
            while done.load(Ordering::SeqCst) < 6 || reads == 0 {
                match c.get_object().bucket(&bucket).key("contended").send().await {
                    Ok(out) => {
                        let data = out.body.collect().await.unwrap().into_bytes();
                        assert!(
                            valid.contains(&sha(&data)),
                            "a reader saw bytes no writer wrote"
                        );
                        reads += 1;
                    }
                    Err(e) => assert_eq!(http_status(&e), 404, "{e:?}"),
                }
            }
            reads
        }));
    }
    for w in writers {
        w.await.unwrap();
    }
    for r in readers {
        assert!(r.await.unwrap() > 0);
    }
    let final_bytes = c
        .get_object()
        .bucket(&bucket)
        .key("contended")
        .send()
        .await
        .unwrap()
        .body
        .collect()
        .await
        .unwrap()
        .into_bytes();
    assert!(valid.contains(&sha(&final_bytes)));
    assert_eq!(
        count_files(&s.data_dir().join("blobs")),
        1,
        "exactly one version remains"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn full_disk_answers_5xx_leaves_nothing_and_keeps_serving() {
    let s = Sluice::start_with(Options {
        tmpfs_data: Some("24m"),
        ..Default::default()
    });
    let c = client(&s);
    let bucket = make_bucket(&c, "full").await;
    let mut stored = Vec::new();
    let mut failure = None;
    for i in 0..8 {
        let data = body(i, 6 * MIB);
        match c
            .put_object()
            .bucket(&bucket)
            .key(format!("obj{i}"))
            .body(ByteStream::from(data.clone()))
            .send()
            .await
        {
            Ok(_) => stored.push((format!("obj{i}"), sha(&data))),
            Err(e) => {
                failure = Some((http_status(&e), code(&e), format!("obj{i}")));
                break;
            }
        }
    }
    let (status, error_code, failed_key) = failure.expect("a 24 MiB disk cannot hold 48 MiB");
    assert_eq!((status, error_code.as_str()), (507, "InsufficientStorage"));
    assert!(!stored.is_empty());
    assert_eq!(
        count_files(&s.data_dir().join("tmp")),
        0,
        "no temporary file leaked"
    );
    let err = c
        .head_object()
        .bucket(&bucket)
        .key(&failed_key)
        .send()
        .await
        .unwrap_err();
    assert_eq!(http_status(&err), 404, "{err:?}");
    // Reads keep working, intact.
    for (key, want) in &stored {
        let got = c
            .get_object()
            .bucket(&bucket)
            .key(key)
            .send()
            .await
            .unwrap()
            .body
            .collect()
            .await
            .unwrap()
            .into_bytes();
        assert_eq!(&sha(&got), want, "{key}");
    }
    assert_eq!(
        c.list_objects_v2()
            .bucket(&bucket)
            .send()
            .await
            .unwrap()
            .contents()
            .len(),
        stored.len()
    );
    // Freeing space makes writes work again.
    c.delete_object()
        .bucket(&bucket)
        .key(&stored[0].0)
        .send()
        .await
        .unwrap();
    c.put_object()
        .bucket(&bucket)
        .key("after")
        .body(ByteStream::from(body(99, MIB)))
        .send()
        .await
        .unwrap();
}

/// The blob files under the data directory (there is one per single-part object).
fn blob_files(s: &Sluice) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for shard in std::fs::read_dir(s.data_dir().join("blobs"))
        .unwrap()
        .flatten()
    {
        out.extend(
            std::fs::read_dir(shard.path())
                .unwrap()
                .flatten()
                .map(|f| f.path()),
        );
    }
    out
}

#[tokio::test(flavor = "multi_thread")]
async fn bit_rot_is_answered_with_an_error_not_served() {
    let s = Sluice::start();
    let c = client(&s);
    let bucket = make_bucket(&c, "rot").await;
    let small = body(7, 1000);
    c.put_object()
        .bucket(&bucket)
        .key("small")
        .body(ByteStream::from(small.clone()))
        .send()
        .await
        .unwrap();
    let blob = blob_files(&s).pop().unwrap();
    let mut bytes = std::fs::read(&blob).unwrap();
    bytes[10] ^= 0x80;
    std::fs::write(&blob, &bytes).unwrap();
    let err = c
        .get_object()
        .bucket(&bucket)
        .key("small")
        .send()
        .await
        .unwrap_err();
    assert_eq!(
        (code(&err).as_str(), http_status(&err)),
        ("InternalError", 500)
    );
    assert!(s.log().contains("integrity check"), "corruption is logged");

    // Corruption deep inside a large object: the body is cut off, never completed as intact.
    let large = body(8, 3 * MIB);
    c.put_object()
        .bucket(&bucket)
        .key("large")
        .body(ByteStream::from(large.clone()))
        .send()
        .await
        .unwrap();
    let blob = blob_files(&s)
        .into_iter()
        .find(|p| std::fs::metadata(p).unwrap().len() > MIB as u64)
        .unwrap();
    let mut bytes = std::fs::read(&blob).unwrap();
    bytes[2 * MIB + 5] ^= 0x01;
    std::fs::write(&blob, &bytes).unwrap();
    let out = c
        .get_object()
        .bucket(&bucket)
        .key("large")
        .send()
        .await
        .unwrap();
    assert!(
        out.body.collect().await.is_err(),
        "a corrupt body must not complete"
    );
    // Ranges that avoid the damaged block still read intact.
    let head = c
        .get_object()
        .bucket(&bucket)
        .key("large")
        .range("bytes=0-1048575")
        .send()
        .await
        .unwrap();
    assert_eq!(
        head.body.collect().await.unwrap().into_bytes().as_ref(),
        &large[..MIB]
    );
}
