//! One core's AES-256-GCM: seal and open of 64 KiB segments (per MiB) with aws-lc-rs (what
//! Sluice ships) and RustCrypto's `aes-gcm`; and a whole encrypted stream both ways, as the
//! storage layer drives it.
//!
//! `cargo bench -p sluice-crypto --bench aead`

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use sluice_crypto::aead::{AwsLc, RustCrypto, SegmentAead};
use sluice_crypto::{DataKey, Layout, StreamDecryptor, StreamEncryptor};

const MIB: usize = 1 << 20;
const SEGMENT: usize = 64 << 10;

fn segments<A: SegmentAead>(c: &mut Criterion, name: &str) {
    let aead = A::new(&[7; 32]);
    let mut group = c.benchmark_group(format!("aes-256-gcm/{name}"));
    group.throughput(Throughput::Bytes(MIB as u64));
    let mut buf = vec![0x5a_u8; MIB + 16 * (MIB / SEGMENT)];
    group.bench_function("seal 1 MiB in 64 KiB segments", |b| {
        b.iter(|| {
            for (i, segment) in buf.chunks_mut(SEGMENT + 16).enumerate() {
                let (text, tag) = segment.split_at_mut(SEGMENT);
                let mut nonce = [0u8; 12];
                nonce[..8].copy_from_slice(&(i as u64).to_be_bytes());
                tag.copy_from_slice(&aead.seal(nonce, black_box(text)));
            }
        })
    });
    // Sealed once; each iteration opens a fresh copy (the copy is timed too, a memcpy of
    // 1 MiB, as the stream decryptor also copies stored bytes into its output).
    let sealed = buf.clone();
    group.bench_function("open 1 MiB in 64 KiB segments", |b| {
        b.iter(|| {
            buf.copy_from_slice(&sealed);
            for (i, segment) in buf.chunks_mut(SEGMENT + 16).enumerate() {
                let mut nonce = [0u8; 12];
                nonce[..8].copy_from_slice(&(i as u64).to_be_bytes());
                aead.open(nonce, black_box(segment)).unwrap();
            }
        })
    });
    group.finish();
}

fn streams(c: &mut Criterion) {
    let key = DataKey::generate();
    let layout = Layout::default();
    let plain = vec![0x42_u8; 8 * MIB];
    let mut group = c.benchmark_group("stream");
    group.throughput(Throughput::Bytes(plain.len() as u64));
    let mut stored = Vec::with_capacity(layout.stored_len(plain.len() as u64) as usize);
    group.bench_function("encrypt 8 MiB in 256 KiB pieces", |b| {
        b.iter(|| {
            stored.clear();
            let mut enc = StreamEncryptor::<AwsLc>::new(&key, layout, 0);
            for piece in plain.chunks(256 << 10) {
                enc.push(piece, &mut stored);
            }
            enc.finish([0; 16], &mut stored);
        })
    });
    let mut out = Vec::with_capacity(plain.len());
    group.bench_function("decrypt 8 MiB in 256 KiB pieces", |b| {
        b.iter(|| {
            out.clear();
            let mut dec =
                StreamDecryptor::<AwsLc>::whole(&key, layout, stored.len() as u64, Some(0))
                    .unwrap();
            for piece in stored.chunks(256 << 10) {
                dec.push(piece, &mut out).unwrap();
            }
            dec.finish().unwrap();
        })
    });
    group.finish();
}

fn aeads(c: &mut Criterion) {
    segments::<AwsLc>(c, "aws-lc-rs");
    segments::<RustCrypto>(c, "rustcrypto aes-gcm");
}

criterion_group!(benches, aeads, streams);
criterion_main!(benches);
