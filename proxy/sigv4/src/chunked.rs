//! The aws-chunked body: a push-fed decoder ([`ChunkedDecoder`]), the chunk-signature chain that
//! links every chunk to the request signature ([`ChunkSignatureChain`]) and a small encoder
//! ([`ChunkedEncoder`]) for tests and the upstream client.
//!
//! Wire format, signed (`STREAMING-AWS4-HMAC-SHA256-PAYLOAD[-TRAILER]`):
//! `hex-size;chunk-signature=<64 hex>\r\n<data>\r\n` ... `0;chunk-signature=<64 hex>\r\n`, then
//! `\r\n`, or trailer lines `name:value\r\n` ... `x-amz-trailer-signature:<64 hex>\r\n` `\r\n`.
//! Unsigned (`STREAMING-UNSIGNED-PAYLOAD-TRAILER`): `hex-size\r\n<data>\r\n` ... `0\r\n`, trailer
//! lines, `\r\n`.
//!
//! Specs: <https://docs.aws.amazon.com/AmazonS3/latest/API/sigv4-streaming.html>,
//! <https://docs.aws.amazon.com/AmazonS3/latest/API/sigv4-streaming-trailers.html>.
//!
//! Data is released as it arrives, before its chunk is complete, so the decoder never holds more
//! than one line. A chunk's signature is checked the moment its last byte arrives, before that
//! byte is released; a mismatch is an error and the caller must discard everything it received.
//! Nothing is verified until [`Decoded::End`].

use std::fmt::Write as _;

use bytes::{Bytes, BytesMut};
use sha2::{Digest, Sha256};

use crate::EMPTY_SHA256;
use crate::auth::CredentialScope;
use crate::error::SigV4Error;
use crate::secret::{Signature, SigningKey, sha256};
use crate::time::AmzDate;

/// Longest chunk-header or trailer line accepted, without its CRLF.
pub const MAX_CHUNK_LINE_LEN: usize = 4096;
/// Most trailing headers accepted (not counting `x-amz-trailer-signature`).
pub const MAX_TRAILERS: usize = 32;

const TRAILER_SIGNATURE: &str = "x-amz-trailer-signature";

/// The running state of the signature chain: each chunk's signature covers the previous one,
/// starting from the request (seed) signature, so chunks cannot be dropped, reordered or replayed.
#[derive(Clone, Debug)]
pub struct ChunkSignatureChain {
    key: SigningKey,
    date: String,
    scope: String,
    previous: Signature,
}

impl ChunkSignatureChain {
    /// A chain seeded with the request's signature.
    pub fn new(
        key: SigningKey,
        date: &AmzDate,
        scope: &CredentialScope,
        seed: Signature,
    ) -> ChunkSignatureChain {
        ChunkSignatureChain {
            key,
            date: date.to_string(),
            scope: scope.as_string(),
            previous: seed,
        }
    }

    /// The signature of a chunk whose data hashes to `chunk_sha256`; advances the chain.
    pub fn next_chunk_signature(&mut self, chunk_sha256: [u8; 32]) -> Signature {
        let mut to_sign = String::with_capacity(256);
        let _ = write!(
            to_sign,
            "AWS4-HMAC-SHA256-PAYLOAD\n{}\n{}\n{}\n{EMPTY_SHA256}\n{}",
            self.date,
            self.scope,
            self.previous.to_hex(),
            hex::encode(chunk_sha256)
        );
        self.advance(&to_sign)
    }

    /// The signature of the trailer block whose canonical form hashes to `trailer_sha256`;
    /// advances the chain.
    pub fn next_trailer_signature(&mut self, trailer_sha256: [u8; 32]) -> Signature {
        let mut to_sign = String::with_capacity(256);
        let _ = write!(
            to_sign,
            "AWS4-HMAC-SHA256-TRAILER\n{}\n{}\n{}\n{}",
            self.date,
            self.scope,
            self.previous.to_hex(),
            hex::encode(trailer_sha256)
        );
        self.advance(&to_sign)
    }

    /// Signs one chunk of data (empty for the final chunk).
    pub fn sign_chunk(&mut self, data: &[u8]) -> Signature {
        self.next_chunk_signature(sha256(data))
    }

    /// Signs trailers given as (name, value) pairs, in order.
    pub fn sign_trailers(&mut self, trailers: &[(String, String)]) -> Signature {
        self.next_trailer_signature(sha256(canonical_trailers(trailers).as_bytes()))
    }

    /// The most recent signature (the seed before any chunk).
    pub fn previous(&self) -> &Signature {
        &self.previous
    }

    fn advance(&mut self, to_sign: &str) -> Signature {
        let signature = self.key.sign(to_sign.as_bytes());
        self.previous = signature.clone();
        signature
    }
}

/// `name:value\n` per trailer (lowercase name, trimmed value): what the trailer signature covers.
fn canonical_trailers(trailers: &[(String, String)]) -> String {
    trailers
        .iter()
        .map(|(name, value)| format!("{name}:{value}\n"))
        .collect()
}

/// One decoder event.
#[derive(Debug)]
pub enum Decoded {
    /// Decoded body bytes, in order. Not yet trustworthy: see the module docs.
    Data(Bytes),
    /// The body is complete and every signature checked. Trailers are lowercase-named, in order,
    /// without `x-amz-trailer-signature`.
    End { trailers: Vec<(String, String)> },
}

#[derive(Debug)]
enum State {
    ChunkHeader,
    Data(ChunkInProgress),
    /// The CRLF that closes a chunk's data.
    DataEnd,
    /// After the final chunk: trailer lines (if any) up to an empty line.
    Trailers,
    Done,
}

#[derive(Debug)]
struct ChunkInProgress {
    remaining: u64,
    claimed: Option<Signature>,
    hasher: Sha256,
}

/// Decodes an aws-chunked body fed in arbitrary pieces.
#[derive(Debug)]
pub struct ChunkedDecoder {
    chain: Option<ChunkSignatureChain>,
    expect_trailer: bool,
    max_chunk_size: usize,
    state: State,
    /// The current incomplete line; never longer than `MAX_CHUNK_LINE_LEN + 2`.
    line: Vec<u8>,
    trailers: Vec<(String, String)>,
    trailer_signature_checked: bool,
}

impl ChunkedDecoder {
    /// `chain`: `Some` for the signed modes (from [`crate::Verified::chunk_verifier`]), `None` for
    /// `STREAMING-UNSIGNED-PAYLOAD-TRAILER`. `expect_trailer`: the mode has trailers.
    /// `max_chunk_size`: larger declared chunks are rejected.
    pub fn new(
        chain: Option<ChunkSignatureChain>,
        expect_trailer: bool,
        max_chunk_size: usize,
    ) -> ChunkedDecoder {
        ChunkedDecoder {
            chain,
            expect_trailer,
            max_chunk_size,
            state: State::ChunkHeader,
            line: Vec::new(),
            trailers: Vec::new(),
            trailer_signature_checked: false,
        }
    }

    /// Consumes bytes from `input` up to the next event. `Ok(None)`: everything in `input` has been
    /// consumed and more is needed (or the body already ended and `input` was empty).
    pub fn feed(&mut self, input: &mut BytesMut) -> Result<Option<Decoded>, SigV4Error> {
        loop {
            match &mut self.state {
                State::Done if input.is_empty() => return Ok(None),
                State::Done => return Err(malformed("data after the end of the body")),
                State::Data(_) if input.is_empty() => return Ok(None),
                State::Data(chunk) => {
                    let n = usize::try_from(chunk.remaining)
                        .unwrap_or(usize::MAX)
                        .min(input.len());
                    let data = input.split_to(n).freeze();
                    chunk.remaining -= n as u64;
                    if self.chain.is_some() {
                        chunk.hasher.update(&data);
                    }
                    if chunk.remaining == 0 {
                        let claimed = chunk.claimed.take();
                        let digest: [u8; 32] = std::mem::take(&mut chunk.hasher).finalize().into();
                        self.check_chunk_signature(claimed, digest)?;
                        self.state = State::DataEnd;
                    }
                    return Ok(Some(Decoded::Data(data)));
                }
                _ => {
                    let Some(line) = self.take_line(input)? else {
                        return Ok(None);
                    };
                    if let Some(event) = self.on_line(&line)? {
                        return Ok(Some(event));
                    }
                }
            }
        }
    }

    /// Call at the end of the body. Returns `End` if the body is complete or only lacks the final
    /// empty line (some clients omit it), `Ok(None)` if `End` was already returned, and
    /// [`SigV4Error::IncompleteBody`] otherwise.
    pub fn finish(&mut self) -> Result<Option<Decoded>, SigV4Error> {
        match self.state {
            State::Done => Ok(None),
            State::Trailers
                if (self.line.is_empty() || self.line == b"\r")
                    && !self.missing_trailer_signature() =>
            {
                self.line.clear();
                self.end_of_trailers().map(Some)
            }
            _ => Err(SigV4Error::IncompleteBody),
        }
    }

    /// Moves bytes into `self.line` up to and including `\n`; returns the line without its CRLF.
    fn take_line(&mut self, input: &mut BytesMut) -> Result<Option<Vec<u8>>, SigV4Error> {
        let room = MAX_CHUNK_LINE_LEN + 2 - self.line.len();
        let window = &input[..input.len().min(room)];
        let Some(newline) = window.iter().position(|&b| b == b'\n') else {
            if input.len() >= room {
                return Err(malformed("line too long"));
            }
            self.line.extend_from_slice(&input.split_to(input.len()));
            return Ok(None);
        };
        self.line.extend_from_slice(&input.split_to(newline + 1));
        let mut line = std::mem::take(&mut self.line);
        if !line.ends_with(b"\r\n") {
            return Err(malformed("line not terminated by CRLF"));
        }
        line.truncate(line.len() - 2);
        Ok(Some(line))
    }

    fn on_line(&mut self, line: &[u8]) -> Result<Option<Decoded>, SigV4Error> {
        match self.state {
            State::ChunkHeader => {
                self.on_chunk_header(line)?;
                Ok(None)
            }
            State::DataEnd if line.is_empty() => {
                self.state = State::ChunkHeader;
                Ok(None)
            }
            State::DataEnd => Err(malformed("chunk data longer than its declared size")),
            State::Trailers if line.is_empty() => {
                if self.missing_trailer_signature() {
                    return Err(malformed("x-amz-trailer-signature is missing"));
                }
                self.end_of_trailers().map(Some)
            }
            State::Trailers => {
                self.on_trailer_line(line)?;
                Ok(None)
            }
            State::Data(_) | State::Done => Err(malformed("internal state error")),
        }
    }

    fn on_chunk_header(&mut self, line: &[u8]) -> Result<(), SigV4Error> {
        let line = std::str::from_utf8(line).map_err(|_| malformed("chunk header is not ASCII"))?;
        let (size_hex, extensions) = match line.split_once(';') {
            Some((size, ext)) => (size, Some(ext)),
            None => (line, None),
        };
        let size = parse_chunk_size(size_hex)?;
        if size > self.max_chunk_size as u64 {
            return Err(malformed(&format!(
                "chunk of {size} bytes exceeds the limit of {}",
                self.max_chunk_size
            )));
        }
        // Unsigned bodies may carry extensions of their own; they are ignored.
        let claimed = match &self.chain {
            None => None,
            Some(_) => Some(
                extensions
                    .and_then(|ext| ext.strip_prefix("chunk-signature="))
                    .and_then(Signature::from_hex)
                    .ok_or_else(|| malformed("chunk header lacks a valid chunk-signature"))?,
            ),
        };
        if size == 0 {
            let digest = sha256(b"");
            self.check_chunk_signature(claimed, digest)?;
            self.state = State::Trailers;
        } else {
            self.state = State::Data(ChunkInProgress {
                remaining: size,
                claimed,
                hasher: Sha256::new(),
            });
        }
        Ok(())
    }

    fn check_chunk_signature(
        &mut self,
        claimed: Option<Signature>,
        chunk_sha256: [u8; 32],
    ) -> Result<(), SigV4Error> {
        match (&mut self.chain, claimed) {
            (Some(chain), Some(claimed)) => {
                if chain.next_chunk_signature(chunk_sha256).ct_eq(&claimed) {
                    Ok(())
                } else {
                    Err(SigV4Error::ChunkSignatureMismatch)
                }
            }
            (None, _) => Ok(()),
            (Some(_), None) => Err(malformed("chunk header lacks a chunk-signature")),
        }
    }

    fn on_trailer_line(&mut self, line: &[u8]) -> Result<(), SigV4Error> {
        if !self.expect_trailer {
            return Err(malformed(
                "trailing headers in a body declared without them",
            ));
        }
        if self.trailer_signature_checked {
            return Err(malformed("trailing header after x-amz-trailer-signature"));
        }
        let line = std::str::from_utf8(line).map_err(|_| malformed("trailer is not UTF-8"))?;
        let (name, value) = line
            .split_once(':')
            .ok_or_else(|| malformed("trailer line without ':'"))?;
        let name = name.trim().to_ascii_lowercase();
        let value = value.trim();
        if name.is_empty() || !name.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(malformed("invalid trailer name"));
        }
        if name != TRAILER_SIGNATURE {
            if self.trailers.len() == MAX_TRAILERS {
                return Err(malformed("too many trailing headers"));
            }
            if self.trailers.iter().any(|(seen, _)| *seen == name) {
                return Err(SigV4Error::MalformedTrailer(format!(
                    "{name} appears twice"
                )));
            }
            self.trailers.push((name, value.to_owned()));
            return Ok(());
        }
        let Some(chain) = &mut self.chain else {
            return Err(malformed("x-amz-trailer-signature in an unsigned body"));
        };
        let claimed = Signature::from_hex(value)
            .ok_or_else(|| malformed("x-amz-trailer-signature is not 64 hex digits"))?;
        if !chain.sign_trailers(&self.trailers).ct_eq(&claimed) {
            return Err(SigV4Error::ChunkSignatureMismatch);
        }
        self.trailer_signature_checked = true;
        Ok(())
    }

    fn missing_trailer_signature(&self) -> bool {
        self.chain.is_some() && self.expect_trailer && !self.trailer_signature_checked
    }

    fn end_of_trailers(&mut self) -> Result<Decoded, SigV4Error> {
        self.state = State::Done;
        Ok(Decoded::End {
            trailers: std::mem::take(&mut self.trailers),
        })
    }
}

fn parse_chunk_size(size_hex: &str) -> Result<u64, SigV4Error> {
    let valid = !size_hex.is_empty()
        && size_hex.len() <= 16
        && size_hex.bytes().all(|b| b.is_ascii_hexdigit());
    valid
        .then(|| u64::from_str_radix(size_hex, 16).ok())
        .flatten()
        .ok_or_else(|| malformed(&format!("invalid chunk size {size_hex:?}")))
}

fn malformed(reason: &str) -> SigV4Error {
    SigV4Error::MalformedChunk(reason.to_owned())
}

/// Produces an aws-chunked body: signed when given a chain (seeded with the request signature
/// returned by [`crate::sign_request`]), unsigned otherwise.
#[derive(Debug)]
pub struct ChunkedEncoder {
    chain: Option<ChunkSignatureChain>,
    with_trailer: bool,
}

impl ChunkedEncoder {
    /// `with_trailer` selects the `-TRAILER` modes (a signed trailer block even when empty).
    pub fn new(chain: Option<ChunkSignatureChain>, with_trailer: bool) -> ChunkedEncoder {
        ChunkedEncoder {
            chain,
            with_trailer,
        }
    }

    /// One data chunk with its framing. Empty `data` yields nothing: the empty chunk is the
    /// terminator, written by [`Self::finish`].
    pub fn chunk(&mut self, data: &[u8]) -> Vec<u8> {
        if data.is_empty() {
            return Vec::new();
        }
        let mut out = self.chunk_header(data);
        out.extend_from_slice(data);
        out.extend_from_slice(b"\r\n");
        out
    }

    /// The final empty chunk, the trailers (only in a `-TRAILER` mode) and the closing CRLF.
    pub fn finish(&mut self, trailers: &[(&str, &str)]) -> Vec<u8> {
        let mut out = self.chunk_header(b"");
        if self.with_trailer {
            let trailers: Vec<(String, String)> = trailers
                .iter()
                .map(|(n, v)| (n.to_ascii_lowercase(), v.trim().to_owned()))
                .collect();
            for (name, value) in &trailers {
                out.extend_from_slice(format!("{name}:{value}\r\n").as_bytes());
            }
            if let Some(chain) = &mut self.chain {
                let signature = chain.sign_trailers(&trailers);
                out.extend_from_slice(
                    format!("{TRAILER_SIGNATURE}:{}\r\n", signature.to_hex()).as_bytes(),
                );
            }
        }
        out.extend_from_slice(b"\r\n");
        out
    }

    fn chunk_header(&mut self, data: &[u8]) -> Vec<u8> {
        let mut header = format!("{:x}", data.len());
        if let Some(chain) = &mut self.chain {
            let _ = write!(
                header,
                ";chunk-signature={}",
                chain.sign_chunk(data).to_hex()
            );
        }
        header.push_str("\r\n");
        let mut out = Vec::with_capacity(header.len() + data.len() + 2);
        out.extend_from_slice(header.as_bytes());
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::secret::SecretKey;

    fn chain() -> ChunkSignatureChain {
        let secret = SecretKey::new("secret".to_owned());
        let scope = CredentialScope {
            date: "20240101".into(),
            region: "us-east-1".into(),
            service: "s3".into(),
        };
        let key = SigningKey::derive(&secret, &scope.date, &scope.region, &scope.service);
        let date = AmzDate::parse("20240101T000000Z").unwrap();
        let seed = Signature::from_hex(&"ab".repeat(32)).unwrap();
        ChunkSignatureChain::new(key, &date, &scope, seed)
    }

    /// Decoded data and trailers.
    type Body = (Vec<u8>, Vec<(String, String)>);

    /// Feeds `body` in pieces of `step` bytes; returns the data and trailers, or the first error.
    fn decode(mut decoder: ChunkedDecoder, body: &[u8], step: usize) -> Result<Body, SigV4Error> {
        let mut data = Vec::new();
        let mut end = None;
        let mut input = BytesMut::new();
        for piece in body.chunks(step.max(1)) {
            input.extend_from_slice(piece);
            while let Some(event) = decoder.feed(&mut input)? {
                match event {
                    Decoded::Data(bytes) => data.extend_from_slice(&bytes),
                    Decoded::End { trailers } => end = Some(trailers),
                }
            }
            assert!(
                input.is_empty(),
                "Ok(None) must mean all input was consumed"
            );
        }
        match (end, decoder.finish()?) {
            (Some(trailers), None) | (None, Some(Decoded::End { trailers })) => {
                Ok((data, trailers))
            }
            other => panic!("finish gave {other:?}"),
        }
    }

    fn signed_body(with_trailer: bool, trailers: &[(&str, &str)]) -> Vec<u8> {
        let mut enc = ChunkedEncoder::new(Some(chain()), with_trailer);
        let mut body = enc.chunk(b"hello ");
        body.extend(enc.chunk(b"world"));
        body.extend(enc.finish(trailers));
        body
    }

    #[test]
    fn signed_round_trip_every_split() {
        let body = signed_body(false, &[]);
        for step in [1, 2, 3, 7, 64, body.len()] {
            let (data, trailers) = decode(
                ChunkedDecoder::new(Some(chain()), false, 1 << 20),
                &body,
                step,
            )
            .unwrap();
            assert_eq!(data, b"hello world");
            assert!(trailers.is_empty());
        }
    }

    #[test]
    fn signed_trailer_round_trip_and_tampering() {
        let body = signed_body(true, &[("x-amz-checksum-crc32", "DUoRhQ==")]);
        let (data, trailers) =
            decode(ChunkedDecoder::new(Some(chain()), true, 1 << 20), &body, 5).unwrap();
        assert_eq!(data, b"hello world");
        assert_eq!(
            trailers,
            [("x-amz-checksum-crc32".to_owned(), "DUoRhQ==".to_owned())]
        );

        let text = String::from_utf8(body.clone()).unwrap();
        let tampered = text.replace("DUoRhQ==", "DUoRhR==");
        assert!(matches!(
            decode(
                ChunkedDecoder::new(Some(chain()), true, 1 << 20),
                tampered.as_bytes(),
                5
            ),
            Err(SigV4Error::ChunkSignatureMismatch)
        ));
        let unsigned = text.replace(
            &text[text.find("x-amz-trailer-signature").unwrap()..text.len() - 2],
            "",
        );
        assert!(matches!(
            decode(
                ChunkedDecoder::new(Some(chain()), true, 1 << 20),
                unsigned.as_bytes(),
                5
            ),
            Err(SigV4Error::MalformedChunk(_))
        ));
    }

    #[test]
    fn tampered_data_is_caught_before_the_chunk_completes() {
        let mut body = signed_body(false, &[]);
        let pos = body.windows(5).position(|w| w == b"world").unwrap();
        body[pos] = b'W';
        let mut decoder = ChunkedDecoder::new(Some(chain()), false, 1 << 20);
        let mut input = BytesMut::from(&body[..]);
        let mut released = Vec::new();
        let err = loop {
            match decoder.feed(&mut input) {
                Ok(Some(Decoded::Data(d))) => released.extend_from_slice(&d),
                Ok(other) => panic!("{other:?}"),
                Err(e) => break e,
            }
        };
        assert!(matches!(err, SigV4Error::ChunkSignatureMismatch));
        assert_eq!(
            released, b"hello ",
            "the bad chunk's bytes are never released"
        );
    }

    #[test]
    fn unsigned_trailer_mode_with_crc32() {
        let mut enc = ChunkedEncoder::new(None, true);
        let mut body = enc.chunk(b"hello world");
        body.extend(enc.finish(&[("x-amz-checksum-crc32", "DUoRhQ==")]));
        assert_eq!(
            body,
            b"b\r\nhello world\r\n0\r\nx-amz-checksum-crc32:DUoRhQ==\r\n\r\n"
        );
        for step in [1, 4, body.len()] {
            let (data, trailers) =
                decode(ChunkedDecoder::new(None, true, 1024), &body, step).unwrap();
            assert_eq!(data, b"hello world");
            assert_eq!(trailers[0].1, "DUoRhQ==");
        }
        // Extensions are ignored without signatures; the final CRLF may be missing at EOF.
        let lax = b"b;foo=bar\r\nhello world\r\n0\r\nX-Amz-Checksum-Crc32: DUoRhQ==\r\n";
        let (data, trailers) = decode(ChunkedDecoder::new(None, true, 1024), lax, 3).unwrap();
        assert_eq!(data, b"hello world");
        assert_eq!(
            trailers,
            [("x-amz-checksum-crc32".to_owned(), "DUoRhQ==".to_owned())]
        );
    }

    #[test]
    fn truncated_bodies_are_incomplete() {
        let body = signed_body(true, &[("x-amz-checksum-crc32", "DUoRhQ==")]);
        // Every proper prefix except "all but the final CRLF" (or its last byte) is incomplete.
        for cut in 0..body.len() - 2 {
            let result = decode(
                ChunkedDecoder::new(Some(chain()), true, 1 << 20),
                &body[..cut],
                7,
            );
            assert!(
                matches!(result, Err(SigV4Error::IncompleteBody)),
                "cut at {cut}: {result:?}"
            );
        }
        for cut in [body.len() - 2, body.len() - 1] {
            assert!(
                decode(
                    ChunkedDecoder::new(Some(chain()), true, 1 << 20),
                    &body[..cut],
                    7
                )
                .is_ok()
            );
        }
    }

    #[test]
    fn bounds_and_framing_errors() {
        let expect_malformed = |decoder: ChunkedDecoder, body: &[u8]| {
            let result = decode(decoder, body, 1000);
            assert!(
                matches!(result, Err(SigV4Error::MalformedChunk(_))),
                "{result:?}"
            );
        };
        // A header line that never ends is cut off at the bound, not buffered.
        let long = vec![b'1'; MAX_CHUNK_LINE_LEN + 10];
        expect_malformed(ChunkedDecoder::new(None, true, 1024), &long);
        let mut long_ext = b"5;".to_vec();
        long_ext.extend(vec![b'x'; MAX_CHUNK_LINE_LEN]);
        long_ext.extend_from_slice(b"\r\nhello\r\n");
        expect_malformed(ChunkedDecoder::new(None, true, 1024), &long_ext);
        // Too many trailers.
        let mut many = b"0\r\n".to_vec();
        for i in 0..=MAX_TRAILERS {
            many.extend_from_slice(format!("x-t{i}:v\r\n").as_bytes());
        }
        many.extend_from_slice(b"\r\n");
        expect_malformed(ChunkedDecoder::new(None, true, 1024), &many);
        // Chunk larger than allowed, bad sizes, missing CRLF after data, bare LF.
        expect_malformed(
            ChunkedDecoder::new(None, true, 4),
            b"5\r\nhello\r\n0\r\n\r\n",
        );
        expect_malformed(ChunkedDecoder::new(None, true, 64), b"zz\r\n");
        expect_malformed(ChunkedDecoder::new(None, true, 64), b"\r\n");
        expect_malformed(
            ChunkedDecoder::new(None, true, 64),
            b"11111111111111111\r\n",
        );
        expect_malformed(
            ChunkedDecoder::new(None, true, 64),
            b"5\r\nhelloX\r\n0\r\n\r\n",
        );
        expect_malformed(
            ChunkedDecoder::new(None, true, 64),
            b"5\nhello\r\n0\r\n\r\n",
        );
        // Signed mode requires a signature on every chunk.
        expect_malformed(
            ChunkedDecoder::new(Some(chain()), false, 64),
            b"5\r\nhello\r\n",
        );
        // Trailers where none were declared; trailer signature in an unsigned body.
        expect_malformed(ChunkedDecoder::new(None, false, 64), b"0\r\nx-a:b\r\n\r\n");
        let sig = format!("0\r\nx-amz-trailer-signature:{}\r\n\r\n", "ab".repeat(32));
        expect_malformed(ChunkedDecoder::new(None, true, 64), sig.as_bytes());
        // Bytes after the end.
        expect_malformed(ChunkedDecoder::new(None, true, 64), b"0\r\n\r\nextra");
    }

    #[test]
    fn end_is_reported_once() {
        let mut decoder = ChunkedDecoder::new(None, true, 64);
        let mut input = BytesMut::from(&b"0\r\n\r\n"[..]);
        assert!(matches!(
            decoder.feed(&mut input),
            Ok(Some(Decoded::End { .. }))
        ));
        assert!(matches!(decoder.feed(&mut input), Ok(None)));
        assert!(matches!(decoder.finish(), Ok(None)));
    }
}
