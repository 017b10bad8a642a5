//! Per-request verification cost (with and without a cached signing key) and aws-chunked decoding
//! throughput per MiB of signed 64 KiB chunks.
//!
//! `cargo bench -p sluice-sigv4`

use std::hint::black_box;

use bytes::BytesMut;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use http::{HeaderMap, HeaderValue, Method, Uri};
use sluice_sigv4::{
    AmzDate, CanonicalSettings, ChunkSignatureChain, ChunkedDecoder, ChunkedEncoder,
    CredentialScope, Decoded, SecretKey, Signature, SigningKey, parse_auth, verify,
};

const SECRET: &str = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY";
const T0: i64 = 1_369_353_600;

/// S3's documented GET Object example.
fn get_object() -> (Uri, HeaderMap) {
    let mut h = HeaderMap::new();
    h.insert(
        "host",
        HeaderValue::from_static("examplebucket.s3.amazonaws.com"),
    );
    h.insert("range", HeaderValue::from_static("bytes=0-9"));
    h.insert(
        "x-amz-content-sha256",
        HeaderValue::from_static(sluice_sigv4::EMPTY_SHA256),
    );
    h.insert("x-amz-date", HeaderValue::from_static("20130524T000000Z"));
    h.insert("authorization", HeaderValue::from_static(
        "AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/s3/aws4_request,SignedHeaders=host;range;x-amz-content-sha256;x-amz-date,Signature=f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41",
    ));
    ("/test.txt".parse().unwrap(), h)
}

fn bench_verify(c: &mut Criterion) {
    let (uri, headers) = get_object();
    let secret = SecretKey::new(SECRET.to_owned());
    let cached = SigningKey::derive(&secret, "20130524", "us-east-1", "s3");
    let mut group = c.benchmark_group("verify");
    group.bench_function("cold_key", |b| {
        b.iter(|| {
            let req = parse_auth(&Method::GET, &uri, &headers).unwrap().unwrap();
            let s = &req.scope;
            let key = SigningKey::derive(&secret, &s.date, &s.region, &s.service);
            let v = verify(
                &req,
                &Method::GET,
                &uri,
                &headers,
                &key,
                T0,
                CanonicalSettings::S3,
            );
            black_box(v.unwrap());
        });
    });
    group.bench_function("cached_key", |b| {
        b.iter(|| {
            let req = parse_auth(&Method::GET, &uri, &headers).unwrap().unwrap();
            let v = verify(
                &req,
                &Method::GET,
                &uri,
                &headers,
                &cached,
                T0,
                CanonicalSettings::S3,
            );
            black_box(v.unwrap());
        });
    });
    group.finish();
}

fn bench_chunked(c: &mut Criterion) {
    const MIB: usize = 1 << 20;
    const CHUNK: usize = 64 << 10;
    let secret = SecretKey::new(SECRET.to_owned());
    let scope = CredentialScope {
        date: "20130524".into(),
        region: "us-east-1".into(),
        service: "s3".into(),
    };
    let key = SigningKey::derive(&secret, &scope.date, &scope.region, &scope.service);
    let date = AmzDate::parse("20130524T000000Z").unwrap();
    let seed = Signature::from_hex(&"ab".repeat(32)).unwrap();
    let chain = ChunkSignatureChain::new(key, &date, &scope, seed);

    let data: Vec<u8> = (0..MIB).map(|i| i as u8).collect();
    let mut encoder = ChunkedEncoder::new(Some(chain.clone()), false);
    let mut body = Vec::new();
    for piece in data.chunks(CHUNK) {
        body.extend(encoder.chunk(piece));
    }
    body.extend(encoder.finish(&[]));

    let mut group = c.benchmark_group("chunked_decode");
    group.throughput(Throughput::Bytes(MIB as u64));
    // Fed as a socket would: 16 KiB reads.
    group.bench_function("signed_64KiB_chunks_1MiB", |b| {
        b.iter(|| {
            let mut decoder = ChunkedDecoder::new(Some(chain.clone()), false, 8 << 20);
            let mut input = BytesMut::new();
            let mut decoded = 0;
            for piece in body.chunks(16 << 10) {
                input.extend_from_slice(piece);
                while let Some(event) = decoder.feed(&mut input).unwrap() {
                    match event {
                        Decoded::Data(d) => decoded += d.len(),
                        Decoded::End { .. } => {}
                    }
                }
            }
            assert_eq!(decoded, MIB);
            black_box(decoded);
        });
    });
    group.finish();
}

criterion_group!(benches, bench_verify, bench_chunked);
criterion_main!(benches);
