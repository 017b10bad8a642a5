//! Target `aws_chunked`: the aws-chunked decoder against a whole-buffer reference decoder
//! written here from the spec, and encode → split → decode round trips with corruption.
//!
//! Spec: <https://docs.aws.amazon.com/AmazonS3/latest/API/sigv4-streaming.html>,
//! <https://docs.aws.amazon.com/AmazonS3/latest/API/sigv4-streaming-trailers.html>.

use bytes::BytesMut;
use rand::rngs::StdRng;
use rand::seq::IndexedRandom;
use rand::{Rng, SeedableRng};
use sluice_sigv4::{
    AmzDate, ChunkSignatureChain, ChunkedDecoder, ChunkedEncoder, CredentialScope, Decoded,
    MAX_CHUNK_LINE_LEN, MAX_TRAILERS, SecretKey, SigV4Error, Signature, SigningKey,
};

use crate::Recipe;

const TRAILER_SIGNATURE: &str = "x-amz-trailer-signature";
const MAX_PAYLOAD: usize = 8192;

/// Trailers as the decoder reports them: lowercase names, trimmed values, in order.
type Trailers = Vec<(String, String)>;

/// The chain every signed input is signed with: a fixed key, scope and seed signature, so a
/// regression file replays exactly.
pub fn test_chain() -> ChunkSignatureChain {
    let scope = CredentialScope {
        date: "20240101".into(),
        region: "us-east-1".into(),
        service: "s3".into(),
    };
    let secret = SecretKey::new("fuzz-secret".to_owned());
    let key = SigningKey::derive(&secret, &scope.date, &scope.region, &scope.service);
    let date = AmzDate::parse("20240101T000000Z").expect("valid date");
    let seed = Signature::from_hex(&"ab".repeat(32)).expect("valid hex");
    ChunkSignatureChain::new(key, &date, &scope, seed)
}

/// Input: a mode byte, then the body or a recipe.
///
/// Mode bit 7 clear: the rest is an aws-chunked body, decoded with bit 0 = signed
/// ([`test_chain`]), bit 1 = trailers expected, bits 2-3 = chunk size limit, bits 4-6 = how the
/// body is split into feeds. The decoder must agree exactly with [`reference_decode`] (same
/// data and trailers, or both refuse), never panic, and never release more bytes than it was
/// given.
///
/// Mode bit 7 set: the rest is a recipe (8 seed bytes, then the payload) for an encode →
/// decode round trip: bit 0 = signed, bit 1 = trailers, bit 2 = flip one byte. The decoded data
/// and trailers must equal what was encoded; a repeated trailer name or more than
/// [`MAX_TRAILERS`] trailers must be refused; a signed stream with one byte changed must be
/// refused or decode to exactly the original.
pub fn aws_chunked(data: &[u8]) {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    if mode & 0x80 == 0 {
        decode_arbitrary(mode, rest);
    } else {
        round_trip(mode, rest);
    }
}

fn decode_arbitrary(mode: u8, body: &[u8]) {
    let signed = mode & 1 != 0;
    let trailer = mode & 2 != 0;
    let max_chunk = [16, 1024, 1 << 20, usize::MAX][usize::from(mode >> 2 & 3)];
    let step = [1, 2, 3, 7, 64, 1000, 4099, usize::MAX][usize::from(mode >> 4 & 7)];
    let decoder = ChunkedDecoder::new(signed.then(test_chain), trailer, max_chunk);
    let (released, outcome) = decode_in_steps(decoder, body, &mut || step);
    assert!(
        released.len() <= body.len(),
        "released {} bytes from a body of {}",
        released.len(),
        body.len()
    );
    let expected = reference_decode(signed.then(test_chain), trailer, max_chunk, body);
    match (&outcome, &expected) {
        (Ok(trailers), Ok((data, want))) => {
            assert_eq!(&released, data, "decoded data differs from the reference");
            assert_eq!(trailers, want, "trailers differ from the reference");
        }
        (Err(_), Err(_)) => {}
        _ => panic!(
            "decoder gave {:?}, reference {:?}",
            outcome.as_ref().map(|t| (crate::show(&released), t)),
            expected.map(|(d, t)| (crate::show(&d), t))
        ),
    }
}

/// Feeds `body` in pieces of `next_step()` bytes, checking the feed contract as it goes.
/// Returns every data byte released (also before an error) and the trailers or the error.
fn decode_in_steps(
    mut decoder: ChunkedDecoder,
    body: &[u8],
    next_step: &mut dyn FnMut() -> usize,
) -> (Vec<u8>, Result<Trailers, SigV4Error>) {
    let mut released = Vec::new();
    let mut end = None;
    let mut input = BytesMut::new();
    let mut pos = 0;
    while pos < body.len() {
        let n = next_step().clamp(1, body.len() - pos);
        input.extend_from_slice(&body[pos..pos + n]);
        pos += n;
        loop {
            match decoder.feed(&mut input) {
                Ok(Some(Decoded::Data(bytes))) => {
                    assert!(!bytes.is_empty(), "an empty Data event");
                    released.extend_from_slice(&bytes);
                }
                Ok(Some(Decoded::End { trailers })) => {
                    assert!(end.is_none(), "End reported twice");
                    end = Some(trailers);
                }
                Ok(None) => {
                    assert!(
                        input.is_empty(),
                        "Ok(None) must mean all input was consumed"
                    );
                    break;
                }
                Err(e) => return (released, Err(e)),
            }
        }
    }
    let outcome = match decoder.finish() {
        Ok(Some(Decoded::End { trailers })) => {
            assert!(end.is_none(), "End reported by feed and again by finish");
            Ok(trailers)
        }
        Ok(Some(Decoded::Data(_))) => panic!("finish released data"),
        Ok(None) => Ok(end.expect("finish gave Ok(None) before any End")),
        Err(e) => {
            assert!(end.is_none(), "finish failed after End: {e:?}");
            Err(e)
        }
    };
    (released, outcome)
}

/// The next line of `body` from `*pos` without its CRLF: `Err` for a bare LF or a line longer
/// than [`MAX_CHUNK_LINE_LEN`], `Ok(None)` if the body ends inside the line.
fn next_line<'a>(body: &'a [u8], pos: &mut usize) -> Result<Option<&'a [u8]>, Refused> {
    let window_end = body.len().min(*pos + MAX_CHUNK_LINE_LEN + 2);
    match body[*pos..window_end].iter().position(|&b| b == b'\n') {
        Some(i) => {
            let line = &body[*pos..*pos + i + 1];
            *pos += i + 1;
            line.strip_suffix(b"\r\n").map(Some).ok_or(Refused)
        }
        None if body.len() - *pos >= MAX_CHUNK_LINE_LEN + 2 => Err(Refused),
        None => Ok(None),
    }
}

fn parse_hex_size(text: &str) -> Option<u64> {
    if text.is_empty() || text.len() > 16 {
        return None;
    }
    text.bytes().try_fold(0u64, |acc, b| {
        let digit = char::from(b).to_digit(16)?;
        Some(acc << 4 | u64::from(digit))
    })
}

/// The reference refuses the body; why does not matter, only that the decoder refuses too.
#[derive(Debug, PartialEq, Eq)]
pub struct Refused;

/// Decodes a whole body at once, following the spec's grammar: chunks of
/// `hex-size[;chunk-signature=<sig>]` CRLF data CRLF, a zero-size chunk, trailer lines
/// `name:value` (each name once, at most [`MAX_TRAILERS`], then the trailer signature when
/// signed), an empty line, and nothing after it. The final CRLF may be missing at the end of
/// the body. Each signature must be the chain's next one, written in lowercase hex.
pub fn reference_decode(
    mut chain: Option<ChunkSignatureChain>,
    expect_trailer: bool,
    max_chunk: usize,
    body: &[u8],
) -> Result<(Vec<u8>, Trailers), Refused> {
    let mut pos = 0;
    let mut data = Vec::new();
    loop {
        let header = next_line(body, &mut pos)?.ok_or(Refused)?;
        let header = std::str::from_utf8(header).map_err(|_| Refused)?;
        let (size_text, extension) = match header.split_once(';') {
            Some((s, e)) => (s, Some(e)),
            None => (header, None),
        };
        let size = parse_hex_size(size_text).ok_or(Refused)?;
        if u128::from(size) > max_chunk as u128 {
            return Err(Refused);
        }
        let size = usize::try_from(size).map_err(|_| Refused)?;
        let chunk = body
            .get(pos..pos.checked_add(size).ok_or(Refused)?)
            .ok_or(Refused)?;
        pos += size;
        if let Some(chain) = &mut chain {
            let expected = format!("chunk-signature={}", chain.sign_chunk(chunk).to_hex());
            if extension != Some(expected.as_str()) {
                return Err(Refused);
            }
        }
        if size == 0 {
            break;
        }
        data.extend_from_slice(chunk);
        if next_line(body, &mut pos)?.ok_or(Refused)? != b"" {
            return Err(Refused);
        }
    }
    let signed_trailer = chain.is_some() && expect_trailer;
    let mut trailers: Trailers = Vec::new();
    let mut signature_seen = false;
    loop {
        let Some(line) = next_line(body, &mut pos)? else {
            let partial = &body[pos..];
            let complete =
                (partial.is_empty() || partial == b"\r") && (signature_seen || !signed_trailer);
            return if complete {
                Ok((data, trailers))
            } else {
                Err(Refused)
            };
        };
        if line.is_empty() {
            if (signed_trailer && !signature_seen) || pos != body.len() {
                return Err(Refused);
            }
            return Ok((data, trailers));
        }
        if !expect_trailer || signature_seen {
            return Err(Refused);
        }
        let line = std::str::from_utf8(line).map_err(|_| Refused)?;
        let (name, value) = line.split_once(':').ok_or(Refused)?;
        let (name, value) = (name.trim().to_ascii_lowercase(), value.trim());
        if name.is_empty() || !name.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(Refused);
        }
        if name == TRAILER_SIGNATURE {
            let chain = chain.as_mut().ok_or(Refused)?;
            if value != chain.sign_trailers(&trailers).to_hex() {
                return Err(Refused);
            }
            signature_seen = true;
        } else {
            // A repeated name has no one meaning: whichever copy a reader took, another reader
            // (a checksum check, a log) might take the other.
            if trailers.len() == MAX_TRAILERS || trailers.iter().any(|(n, _)| *n == name) {
                return Err(Refused);
            }
            trailers.push((name, value.to_owned()));
        }
    }
}

const TRAILER_NAMES: &[&str] = &[
    "x-amz-checksum-crc32",
    "X-Amz-Checksum-CRC32",
    "x-amz-checksum-sha256",
    "x-amz-meta-a",
    "content-md5",
    "x-custom",
];

fn round_trip(mode: u8, recipe: &[u8]) {
    let mut r = Recipe::new(recipe);
    let seed = u64::from_le_bytes(std::array::from_fn(|_| r.byte()));
    let payload = r.rest();
    let payload = &payload[..payload.len().min(MAX_PAYLOAD)];
    let mut rng = StdRng::seed_from_u64(seed);
    let signed = mode & 1 != 0;
    let with_trailer = mode & 2 != 0;
    let corrupt = mode & 4 != 0;

    let mut trailers: Vec<(String, String)> = Vec::new();
    if with_trailer {
        let count = if rng.random_ratio(1, 20) {
            MAX_TRAILERS + 1
        } else {
            rng.random_range(0..4)
        };
        for i in 0..count {
            let name = if count > 4 {
                format!("x-t{i}")
            } else {
                TRAILER_NAMES.choose(&mut rng).unwrap().to_string()
            };
            let value = ["DUoRhQ==", "a:b", "v", "x y", "=", "\u{e9}"]
                .choose(&mut rng)
                .unwrap()
                .to_string();
            trailers.push((name, value));
        }
    }
    let expected_trailers: Trailers = trailers
        .iter()
        .map(|(n, v)| (n.to_ascii_lowercase(), v.clone()))
        .collect();
    let repeated = expected_trailers
        .iter()
        .enumerate()
        .any(|(i, (n, _))| expected_trailers[..i].iter().any(|(m, _)| m == n));
    let too_many = expected_trailers.len() > MAX_TRAILERS;

    let mut encoder = ChunkedEncoder::new(signed.then(test_chain), with_trailer);
    let mut body = Vec::new();
    let mut rest = payload;
    while !rest.is_empty() {
        let n = rng.random_range(1..=rest.len().min(1500));
        body.extend(encoder.chunk(&rest[..n]));
        rest = &rest[n..];
    }
    let borrowed: Vec<(&str, &str)> = trailers
        .iter()
        .map(|(n, v)| (n.as_str(), v.as_str()))
        .collect();
    body.extend(encoder.finish(&borrowed));
    let mut flipped = None;
    if corrupt && !body.is_empty() {
        let at = rng.random_range(0..body.len());
        let xor = rng.random_range(1..=255u8);
        body[at] ^= xor;
        flipped = Some((at, xor));
    }

    let decoder = ChunkedDecoder::new(signed.then(test_chain), with_trailer, 1 << 20);
    let mut split = || {
        if rng.random_ratio(1, 4) {
            usize::MAX
        } else {
            rng.random_range(1..=80)
        }
    };
    let (released, outcome) = decode_in_steps(decoder, &body, &mut split);
    assert!(released.len() <= body.len());

    // The reference decoder must agree on every body, corrupted or not.
    let reference = reference_decode(signed.then(test_chain), with_trailer, 1 << 20, &body);
    assert_eq!(
        outcome.as_ref().ok().map(|t| (&released, t)),
        reference.as_ref().ok().map(|(d, t)| (d, t)),
        "decoder and reference disagree on {}",
        crate::show(&body)
    );

    match flipped {
        None if repeated => assert!(
            outcome.is_err(),
            "trailer names repeated in {expected_trailers:?} were accepted"
        ),
        None if too_many => assert!(outcome.is_err(), "{} trailers accepted", trailers.len()),
        None => {
            let got = outcome.unwrap_or_else(|e| panic!("valid body refused: {e:?}"));
            assert_eq!(released, payload, "decoded data differs from the payload");
            assert_eq!(got, expected_trailers);
        }
        Some((at, xor)) if signed => {
            if let Ok(got) = outcome {
                assert!(
                    released == payload && got == expected_trailers && !repeated && !too_many,
                    "byte {at} ^ {xor:#x} of a signed body changed what it decodes to"
                );
            }
        }
        Some(_) => {}
    }
}

/// Inputs for [`aws_chunked`]: half recipes for round trips, half encoded bodies (signed or
/// not, with or without trailers, sometimes with a repeated trailer name) for the raw decoder.
pub fn gen_aws_chunked(rng: &mut StdRng) -> Vec<u8> {
    let payload_len = *[0usize, 1, 5, 100, 1000, 3000].choose(rng).unwrap();
    let payload: Vec<u8> = (0..payload_len).map(|_| rng.random()).collect();
    if rng.random_bool(0.5) {
        let mode = 0x80 | rng.random_range(0..8u8);
        let mut out = vec![mode];
        out.extend_from_slice(&rng.random::<u64>().to_le_bytes());
        out.extend_from_slice(&payload);
        return out;
    }
    let signed = rng.random_bool(0.5);
    let trailer = rng.random_bool(0.5);
    let mode = u8::from(signed) | u8::from(trailer) << 1 | rng.random_range(0..32u8) << 2;
    let mode = mode & 0x7f;
    let mut encoder = ChunkedEncoder::new(signed.then(test_chain), trailer);
    let mut body = vec![mode];
    for piece in payload.chunks(rng.random_range(1..=700)) {
        body.extend(encoder.chunk(piece));
    }
    let trailers: &[(&str, &str)] = match rng.random_range(0..4) {
        0 => &[],
        1 => &[("x-amz-checksum-crc32", "DUoRhQ==")],
        2 => &[
            ("x-amz-checksum-crc32", "DUoRhQ=="),
            ("X-Amz-Checksum-Crc32", "AAAAAA=="),
        ],
        _ => &[("x-a", "1"), ("x-b", " 2 ")],
    };
    body.extend(encoder.finish(trailers));
    if rng.random_ratio(1, 4) {
        // The final CRLF is optional at the end of the body; the extra bytes are not.
        let cut = rng.random_range(0..=2);
        body.truncate(body.len() - cut);
    }
    body
}
