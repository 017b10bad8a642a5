//! The worked examples of the Amazon S3 API reference, with their published signatures:
//! "Signature Calculations for the Authorization Header: Transferring Payload in a Single Chunk"
//! (GET Object, PUT Object, GET Bucket Lifecycle, GET Bucket (List Objects)),
//! "Authenticating Requests: Using Query Parameters" (presigned GET),
//! "... Transferring Payload in Multiple Chunks" (aws-chunked PUT) and
//! "Signature calculations for trailing headers" (aws-chunked PUT with a CRC32C trailer).
//!
//! All use AKIAIOSFODNN7EXAMPLE / wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY, us-east-1, s3,
//! 20130524T000000Z.

use bytes::BytesMut;
use http::{HeaderMap, HeaderName, HeaderValue, Method, Uri};
use sluice_sigv4::{
    AmzDate, CanonicalSettings, ChecksumAlgorithm, Checksummer, ChunkSignatureChain,
    ChunkedDecoder, ChunkedEncoder, Decoded, EMPTY_SHA256, PayloadHasher, PayloadMode, SecretKey,
    SigV4Error, SigningKey, SigningParams, Verified, parse_auth, presign_url, sign_request, verify,
};

const AKID: &str = "AKIAIOSFODNN7EXAMPLE";
const SECRET: &str = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY";
const T0: i64 = 1_369_353_600; // 20130524T000000Z

fn secret() -> SecretKey {
    SecretKey::new(SECRET.to_owned())
}

fn date() -> AmzDate {
    AmzDate::parse("20130524T000000Z").unwrap()
}

fn key() -> SigningKey {
    SigningKey::derive(&secret(), "20130524", "us-east-1", "s3")
}

fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
    let mut map = HeaderMap::new();
    for (name, value) in pairs {
        map.append(
            HeaderName::from_bytes(name.as_bytes()).unwrap(),
            HeaderValue::from_str(value).unwrap(),
        );
    }
    map
}

fn authorization(signed_headers: &str, signature: &str) -> String {
    format!(
        "AWS4-HMAC-SHA256 Credential={AKID}/20130524/us-east-1/s3/aws4_request,SignedHeaders={signed_headers},Signature={signature}"
    )
}

/// Signs the example with the crate's signer, checks the published signature, then verifies the
/// request as S3 received it (with the published Authorization header).
fn check_example(
    method: Method,
    target: &str,
    pairs: &[(&str, &str)],
    payload: PayloadMode,
    signed_headers: &str,
    signature: &str,
) -> Verified {
    let uri: Uri = target.parse().unwrap();
    let secret = secret();
    let date = date();
    let params = SigningParams {
        access_key_id: AKID,
        secret: &secret,
        session_token: None,
        region: "us-east-1",
        service: "s3",
        date: &date,
        settings: CanonicalSettings::S3,
    };
    let mut signed = headers(pairs);
    let ours = sign_request(&method, &uri, &mut signed, &payload, &params).unwrap();
    assert_eq!(ours.to_hex(), signature, "{method} {target}");
    let ours_header = signed["authorization"].to_str().unwrap();
    assert!(
        ours_header.contains(&format!("SignedHeaders={signed_headers},")),
        "{ours_header}"
    );

    let mut received = headers(pairs);
    received.insert(
        "authorization",
        HeaderValue::from_str(&authorization(signed_headers, signature)).unwrap(),
    );
    let req = parse_auth(&method, &uri, &received).unwrap().unwrap();
    assert_eq!(req.payload, payload);
    let verified = verify(
        &req,
        &method,
        &uri,
        &received,
        &key(),
        T0,
        CanonicalSettings::S3,
    )
    .unwrap_or_else(|e| panic!("{method} {target}: {e:?}"));
    assert_eq!(verified.access_key_id, AKID);
    verified
}

#[test]
fn get_object() {
    check_example(
        Method::GET,
        "/test.txt",
        &[
            ("host", "examplebucket.s3.amazonaws.com"),
            ("range", "bytes=0-9"),
            ("x-amz-content-sha256", EMPTY_SHA256),
            ("x-amz-date", "20130524T000000Z"),
        ],
        PayloadMode::parse(EMPTY_SHA256).unwrap(),
        "host;range;x-amz-content-sha256;x-amz-date",
        "f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41",
    );
}

#[test]
fn put_object() {
    let body = b"Welcome to Amazon S3.";
    let body_hash = "44ce7dd67c959e0d3524ffac1771dfbba87d2b6b4b4e99e42034a8b803f8b072";
    let verified = check_example(
        Method::PUT,
        "/test$file.text",
        &[
            ("host", "examplebucket.s3.amazonaws.com"),
            ("date", "Fri, 24 May 2013 00:00:00 GMT"),
            ("x-amz-date", "20130524T000000Z"),
            ("x-amz-storage-class", "REDUCED_REDUNDANCY"),
            ("x-amz-content-sha256", body_hash),
        ],
        PayloadMode::parse(body_hash).unwrap(),
        "date;host;x-amz-content-sha256;x-amz-date;x-amz-storage-class",
        "98ad721746da40c64f1a55b78f14c238d841ea1380cd77a1b5971af0ece108bd",
    );
    let PayloadMode::Signed(expected) = verified.payload else {
        panic!("{:?}", verified.payload);
    };
    let mut hasher = PayloadHasher::new(expected);
    hasher.update(body);
    hasher.finish().unwrap();
}

#[test]
fn get_bucket_lifecycle() {
    check_example(
        Method::GET,
        "/?lifecycle",
        &[
            ("host", "examplebucket.s3.amazonaws.com"),
            ("x-amz-date", "20130524T000000Z"),
            ("x-amz-content-sha256", EMPTY_SHA256),
        ],
        PayloadMode::parse(EMPTY_SHA256).unwrap(),
        "host;x-amz-content-sha256;x-amz-date",
        "fea454ca298b7da1c68078a5d1bdbfbbe0d65c699e0f91ac7a200a0136783543",
    );
}

#[test]
fn get_bucket_list_objects() {
    check_example(
        Method::GET,
        "/?max-keys=2&prefix=J",
        &[
            ("host", "examplebucket.s3.amazonaws.com"),
            ("x-amz-date", "20130524T000000Z"),
            ("x-amz-content-sha256", EMPTY_SHA256),
        ],
        PayloadMode::parse(EMPTY_SHA256).unwrap(),
        "host;x-amz-content-sha256;x-amz-date",
        "34b48302e7b5fa45bde8084f4b7868a86f0a534bc59db6670ed5711ef69dc6f7",
    );
}

#[test]
fn presigned_get_object() {
    const URL: &str = "https://examplebucket.s3.amazonaws.com/test.txt?X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=AKIAIOSFODNN7EXAMPLE%2F20130524%2Fus-east-1%2Fs3%2Faws4_request&X-Amz-Date=20130524T000000Z&X-Amz-Expires=86400&X-Amz-SignedHeaders=host&X-Amz-Signature=aeeed9bbccd4d02ee5c0109b86d86835f995330da4c265957d157751f604d404";
    let secret = secret();
    let date = date();
    let params = SigningParams {
        access_key_id: AKID,
        secret: &secret,
        session_token: None,
        region: "us-east-1",
        service: "s3",
        date: &date,
        settings: CanonicalSettings::S3,
    };
    let uri: Uri = "https://examplebucket.s3.amazonaws.com/test.txt"
        .parse()
        .unwrap();
    let url = presign_url(
        &Method::GET,
        &uri,
        &HeaderMap::new(),
        86400,
        &PayloadMode::Unsigned,
        &params,
    )
    .unwrap();
    assert_eq!(url, URL);

    let uri: Uri = URL.parse().unwrap();
    let received = headers(&[("host", "examplebucket.s3.amazonaws.com")]);
    let run = |uri: &Uri, now: i64| {
        let req = parse_auth(&Method::GET, uri, &received).unwrap().unwrap();
        verify(
            &req,
            &Method::GET,
            uri,
            &received,
            &key(),
            now,
            CanonicalSettings::S3,
        )
    };
    assert!(run(&uri, T0 + 3600).is_ok());
    assert!(matches!(run(&uri, T0 + 86_400), Err(SigV4Error::Expired)));
    let tampered: Uri = URL.replace("test.txt", "test.txx").parse().unwrap();
    assert!(matches!(
        run(&tampered, T0),
        Err(SigV4Error::SignatureDoesNotMatch { .. })
    ));
}

/// Chunk layout of both streaming examples: 65,536 + 1,024 bytes of `a`, then the final chunk.
const OBJECT_LEN: usize = 66_560;
const CHUNK_LEN: usize = 65_536;

fn streaming_headers(content_sha256: &str) -> Vec<(&'static str, String)> {
    vec![
        ("host", "s3.amazonaws.com".into()),
        ("x-amz-date", "20130524T000000Z".into()),
        ("x-amz-storage-class", "REDUCED_REDUNDANCY".into()),
        ("x-amz-content-sha256", content_sha256.into()),
        ("content-encoding", "aws-chunked".into()),
        ("x-amz-decoded-content-length", OBJECT_LEN.to_string()),
    ]
}

fn streaming_seed(pairs: &[(&'static str, String)], signed_headers: &str, seed: &str) -> Verified {
    let pairs: Vec<(&str, &str)> = pairs.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let content_sha256 = pairs
        .iter()
        .find(|(k, _)| *k == "x-amz-content-sha256")
        .unwrap()
        .1;
    check_example(
        Method::PUT,
        "/examplebucket/chunkObject.txt",
        &pairs,
        PayloadMode::parse(content_sha256).unwrap(),
        signed_headers,
        seed,
    )
}

fn documented_body(chunk_signatures: [&str; 3], trailer: &str) -> Vec<u8> {
    let mut body = Vec::new();
    body.extend_from_slice(format!("10000;chunk-signature={}\r\n", chunk_signatures[0]).as_bytes());
    body.extend(std::iter::repeat_n(b'a', CHUNK_LEN));
    body.extend_from_slice(
        format!("\r\n400;chunk-signature={}\r\n", chunk_signatures[1]).as_bytes(),
    );
    body.extend(std::iter::repeat_n(b'a', OBJECT_LEN - CHUNK_LEN));
    body.extend_from_slice(format!("\r\n0;chunk-signature={}\r\n", chunk_signatures[2]).as_bytes());
    body.extend_from_slice(trailer.as_bytes());
    body.extend_from_slice(b"\r\n");
    body
}

/// Decoded data and trailers.
type Body = (Vec<u8>, Vec<(String, String)>);

/// Splits `body` at the given cut points and decodes it.
fn decode_split(
    chain: ChunkSignatureChain,
    expect_trailer: bool,
    body: &[u8],
    cuts: &[usize],
) -> Result<Body, SigV4Error> {
    let mut decoder = ChunkedDecoder::new(Some(chain), expect_trailer, 1 << 20);
    let mut data = Vec::new();
    let mut input = BytesMut::new();
    let mut start = 0;
    for &cut in cuts.iter().chain(std::iter::once(&body.len())) {
        input.extend_from_slice(&body[start..cut]);
        start = cut;
        while let Some(event) = decoder.feed(&mut input)? {
            match event {
                Decoded::Data(bytes) => data.extend_from_slice(&bytes),
                Decoded::End { trailers } => {
                    assert!(input.is_empty() && start == body.len());
                    return Ok((data, trailers));
                }
            }
        }
    }
    match decoder.finish()? {
        Some(Decoded::End { trailers }) => Ok((data, trailers)),
        other => panic!("{other:?}"),
    }
}

/// Deterministic pseudo-random cut points (xorshift64), sorted.
fn random_cuts(len: usize, count: usize, mut seed: u64) -> Vec<usize> {
    let mut cuts: Vec<usize> = (0..count)
        .map(|_| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            (seed % len as u64) as usize
        })
        .collect();
    cuts.sort_unstable();
    cuts
}

fn decodes_everywhere(
    chain: &ChunkSignatureChain,
    expect_trailer: bool,
    body: &[u8],
) -> Vec<(String, String)> {
    let one_byte_at_a_time: Vec<usize> = (1..body.len()).collect();
    let mut splits = vec![Vec::new(), one_byte_at_a_time];
    splits.extend((1..=20).map(|seed| random_cuts(body.len(), 1 + seed as usize * 3, seed)));
    // Cuts right around every CRLF and header boundary.
    splits.push(
        (0..body.len())
            .filter(|&i| body[i] == b'\r' || body[i] == b'\n')
            .collect(),
    );
    let mut trailers = None;
    for cuts in &splits {
        let (data, t) = decode_split(chain.clone(), expect_trailer, body, cuts).unwrap();
        assert_eq!(data.len(), OBJECT_LEN);
        assert!(data.iter().all(|&b| b == b'a'));
        trailers = Some(t);
    }
    trailers.unwrap()
}

fn assert_tampering_detected(chain: &ChunkSignatureChain, expect_trailer: bool, body: &[u8]) {
    // One byte of data in each chunk.
    for pos in [100, CHUNK_LEN + 200] {
        let mut bad = body.to_vec();
        bad[pos] = b'b';
        assert!(matches!(
            decode_split(
                chain.clone(),
                expect_trailer,
                &bad,
                &random_cuts(bad.len(), 9, pos as u64)
            ),
            Err(SigV4Error::ChunkSignatureMismatch)
        ));
    }
    // One digit of each chunk signature.
    let text = body.to_vec();
    for (i, _) in text
        .windows(16)
        .enumerate()
        .filter(|(_, w)| w == b"chunk-signature=")
    {
        let mut bad = text.clone();
        let digit = &mut bad[i + 16];
        *digit = if *digit == b'0' { b'1' } else { b'0' };
        assert!(matches!(
            decode_split(chain.clone(), expect_trailer, &bad, &[]),
            Err(SigV4Error::ChunkSignatureMismatch)
        ));
    }
}

#[test]
fn chunked_upload() {
    const SEED: &str = "4f232c4386841ef735655705268965c44a0e4690baa4adea153f7db9fa80a0a9";
    const CHUNKS: [&str; 3] = [
        "ad80c730a21e5b8d04586a2213dd63b9a0e99e0e2307b0ade35a65485a288648",
        "0055627c9e194cb4542bae2aa5492e3c1575bbb81b612b7d234b86a503ef5497",
        "b6c6ea8a5354eaf15b3cb7646744f4275b71ea724fed81ceb9323e279d449df9",
    ];
    let mut pairs = streaming_headers("STREAMING-AWS4-HMAC-SHA256-PAYLOAD");
    pairs.push(("content-length", "66824".into()));
    let verified = streaming_seed(
        &pairs,
        "content-encoding;content-length;host;x-amz-content-sha256;x-amz-date;x-amz-decoded-content-length;x-amz-storage-class",
        SEED,
    );
    let chain = verified
        .chunk_verifier()
        .expect("signed streaming has a chain");

    let body = documented_body(CHUNKS, "");
    assert_eq!(body.len(), 66_824, "the documented Content-Length");

    // The encoder, seeded with the documented seed, writes exactly the documented body.
    let mut encoder = ChunkedEncoder::new(Some(chain.clone()), false);
    let mut encoded = encoder.chunk(&[b'a'; CHUNK_LEN]);
    encoded.extend(encoder.chunk(&[b'a'; OBJECT_LEN - CHUNK_LEN]));
    encoded.extend(encoder.finish(&[]));
    assert!(
        encoded == body,
        "encoder output differs from the documented body"
    );

    assert!(decodes_everywhere(&chain, false, &body).is_empty());
    assert_tampering_detected(&chain, false, &body);
}

#[test]
fn chunked_upload_with_signed_trailer() {
    const SEED: &str = "106e2a8a18243abcf37539882f36619c00e2dfc72633413f02d3b74544bfeb8e";
    const CHUNKS: [&str; 3] = [
        "b474d8862b1487a5145d686f57f013e54db672cee1c953b3010fb58501ef5aa2",
        "1c1344b170168f8e65b41376b44b20fe354e373826ccbbe2c1d40a8cae51e5c7",
        "2ca2aba2005185cf7159c6277faf83795951dd77a3a99e6e65d5c9f85863f992",
    ];
    const TRAILER: &str = "x-amz-checksum-crc32c:sOO8/Q==\r\nx-amz-trailer-signature:d81f82fc3505edab99d459891051a732e8730629a2e4a59689829ca17fe2e435\r\n";
    // The page's Authorization header lists content-length and not x-amz-trailer, but its seed
    // signature is over x-amz-trailer and without content-length (the published signature is
    // what clients and S3 agree on; other implementations reconstruct it the same way).
    let mut pairs = streaming_headers("STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER");
    pairs.push(("x-amz-trailer", "x-amz-checksum-crc32c".into()));
    let verified = streaming_seed(
        &pairs,
        "content-encoding;host;x-amz-content-sha256;x-amz-date;x-amz-decoded-content-length;x-amz-storage-class;x-amz-trailer",
        SEED,
    );
    assert!(verified.payload.has_trailer());
    let chain = verified
        .chunk_verifier()
        .expect("signed streaming has a chain");

    let body = documented_body(CHUNKS, TRAILER);
    let mut encoder = ChunkedEncoder::new(Some(chain.clone()), true);
    let mut encoded = encoder.chunk(&[b'a'; CHUNK_LEN]);
    encoded.extend(encoder.chunk(&[b'a'; OBJECT_LEN - CHUNK_LEN]));
    encoded.extend(encoder.finish(&[("x-amz-checksum-crc32c", "sOO8/Q==")]));
    assert!(
        encoded == body,
        "encoder output differs from the documented body"
    );

    let trailers = decodes_everywhere(&chain, true, &body);
    assert_eq!(
        trailers,
        [("x-amz-checksum-crc32c".to_owned(), "sOO8/Q==".to_owned())]
    );
    // The documented checksum is the CRC32C of the documented object.
    let algorithm = ChecksumAlgorithm::from_header_name(&trailers[0].0).unwrap();
    let mut checksum = Checksummer::new(algorithm);
    checksum.update(&[b'a'; OBJECT_LEN]);
    checksum.verify(&trailers[0].1).unwrap();

    assert_tampering_detected(&chain, true, &body);
    let forged = String::from_utf8(body.clone())
        .unwrap()
        .replace("sOO8/Q==", "sOO8/Q=A");
    assert!(matches!(
        decode_split(chain.clone(), true, forged.as_bytes(), &[]),
        Err(SigV4Error::ChunkSignatureMismatch)
    ));
}
