//! Body adapters. Request bodies are verified as they stream: the payload hash, aws-chunked
//! decoding with its chunk-signature chain, and `x-amz-checksum-*` values (from headers or from
//! trailers). Bytes flow on as soon as they arrive; a failed check turns the end of the stream
//! into an error instead of a clean end, and storage only commits after a clean end. So nothing
//! unverified is ever stored, and no body is ever held in memory whole.

use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use futures_util::{Stream, StreamExt, TryStreamExt};
use http::HeaderMap;
use http_body_util::{BodyExt, Full, StreamBody, combinators::UnsyncBoxBody};
use hyper::body::{Frame, Incoming};
use sha2::{Digest, Sha256};
use sluice_sigv4::{
    ChecksumAlgorithm, Checksummer, ChunkedDecoder, Decoded, PayloadMode, SigV4Error, Verified,
};
use sluice_storage::{LateChecksum, ObjectBody};

use crate::config::BodyPace;
use crate::s3::S3Error;

pub type BoxError = Box<dyn std::error::Error + Send + Sync>;
pub type ResponseBody = UnsyncBoxBody<Bytes, BoxError>;

/// Largest aws-chunked chunk accepted. SDKs send 64 KiB; the decoder streams data anyway, so
/// this only bounds what a hostile client can declare.
const MAX_CHUNK_SIZE: usize = 64 * 1024 * 1024;

pub fn full_body(bytes: impl Into<Bytes>) -> ResponseBody {
    Full::new(bytes.into())
        .map_err(|never| match never {})
        .boxed_unsync()
}

/// A streamed response body. Fused here, where every object body meets hyper: HTTP/2 may poll
/// a body again after it ended, and no backend's stream has to tolerate that itself.
pub fn stream_body(body: ObjectBody) -> ResponseBody {
    StreamBody::new(
        body.fuse()
            .map_ok(Frame::data)
            .map_err(|e| Box::new(e) as BoxError),
    )
    .boxed_unsync()
}

/// Keeps a request body to its [`BodyPace`]: how long the next read may wait.
#[derive(Debug)]
struct Pacer {
    pace: BodyPace,
    /// Time spent waiting for the client so far.
    waited: Duration,
    received: u64,
}

impl Pacer {
    fn new(pace: BodyPace) -> Self {
        Self {
            pace,
            waited: Duration::ZERO,
            received: 0,
        }
    }

    /// How long the next read may wait; zero means the body is already too slow.
    fn next_wait(&self) -> Duration {
        let idle = self.pace.read_timeout;
        if self.pace.min_bytes_per_sec == 0 {
            return idle;
        }
        let earned =
            Duration::from_secs_f64(self.received as f64 / self.pace.min_bytes_per_sec as f64);
        (idle + earned).saturating_sub(self.waited).min(idle)
    }

    fn waited(&mut self, wait: Duration, bytes: usize) {
        self.waited += wait;
        self.received += bytes as u64;
    }
}

/// The request body as the client meant it: decoded and verified while it streams.
#[derive(Debug)]
pub struct RequestBody {
    incoming: Incoming,
    pacer: Pacer,
    payload: Payload,
    checksum: Option<ChecksumCheck>,
    /// Filled with the verified trailer checksum when the body ends cleanly.
    late: Option<LateChecksum>,
    done: bool,
}

#[derive(Debug)]
enum Payload {
    Plain {
        expected_sha256: Option<([u8; 32], Sha256)>,
    },
    Chunked {
        decoder: Box<ChunkedDecoder>,
        buf: BytesMut,
        decoded_len: Option<u64>,
        seen: u64,
    },
}

#[derive(Debug)]
struct ChecksumCheck {
    algorithm: ChecksumAlgorithm,
    /// From the request header; `None` means it is expected in the trailer.
    expected: Option<String>,
    hasher: Checksummer,
}

impl RequestBody {
    pub fn new(
        incoming: Incoming,
        verified: &Verified,
        headers: &HeaderMap,
        pace: BodyPace,
    ) -> Result<Self, S3Error> {
        let payload = match &verified.payload {
            PayloadMode::Signed(hash) => Payload::Plain {
                expected_sha256: Some((*hash, Sha256::new())),
            },
            PayloadMode::Unsigned => Payload::Plain {
                expected_sha256: None,
            },
            mode => {
                let trailer = matches!(
                    mode,
                    PayloadMode::StreamingSignedTrailer | PayloadMode::StreamingUnsignedTrailer
                );
                let decoder =
                    ChunkedDecoder::new(verified.chunk_verifier(), trailer, MAX_CHUNK_SIZE);
                let decoded_len = header_str(headers, "x-amz-decoded-content-length")
                    .map(|v| {
                        v.parse::<u64>().map_err(|_| {
                            S3Error::invalid_argument(
                                "x-amz-decoded-content-length is not a number",
                            )
                        })
                    })
                    .transpose()?;
                Payload::Chunked {
                    decoder: Box::new(decoder),
                    buf: BytesMut::new(),
                    decoded_len,
                    seen: 0,
                }
            }
        };
        let checksum = checksum_check(headers)?;
        let late = checksum
            .as_ref()
            .filter(|c| c.expected.is_none())
            .map(|_| LateChecksum::default());
        Ok(Self {
            incoming,
            pacer: Pacer::new(pace),
            payload,
            checksum,
            late,
            done: false,
        })
    }

    /// The SHA-256 the client signed for the whole body, which the body must match by its end.
    pub fn signed_sha256(&self) -> Option<[u8; 32]> {
        match &self.payload {
            Payload::Plain {
                expected_sha256: Some((hash, _)),
            } => Some(*hash),
            _ => None,
        }
    }

    /// Where the verified trailer checksum will be, if one is expected.
    pub fn late_checksum(&self) -> Option<LateChecksum> {
        self.late.clone()
    }

    /// The size of the decoded body, as the client declared it: `x-amz-decoded-content-length`
    /// for aws-chunked, else `Content-Length` (which hyper has checked). S3 requires one on
    /// every upload: a PUT without either is `411 MissingContentLength`, not an empty object.
    pub fn declared_len(&self, headers: &HeaderMap) -> Option<u64> {
        match &self.payload {
            Payload::Chunked { decoded_len, .. } => *decoded_len,
            Payload::Plain { .. } => {
                header_str(headers, "content-length").and_then(|v| v.parse().ok())
            }
        }
    }

    /// The decoded body; its last item is an error instead of a clean end if any check failed.
    pub fn into_stream(self) -> impl Stream<Item = Result<Bytes, S3Error>> + Send {
        futures_util::stream::unfold(self, |mut body| async move {
            let item = body.next_chunk().await?;
            if item.is_err() {
                body.done = true;
            }
            Some((item, body))
        })
    }

    /// The decoded body for storage: a failed check travels as [`sluice_storage::BodyError`]
    /// holding the `S3Error`, which is answered unchanged.
    pub fn into_put_body(self) -> sluice_storage::PutBody {
        Box::pin(
            self.into_stream()
                .map(|item| item.map_err(|e| sluice_storage::BodyError(Box::new(e)))),
        )
    }

    /// Reads a small body (an XML document) whole, verified, up to `limit` bytes.
    pub async fn collect_bounded(self, limit: usize) -> Result<Bytes, S3Error> {
        let mut out = BytesMut::new();
        let mut stream = std::pin::pin!(self.into_stream());
        while let Some(chunk) = stream.next().await {
            let chunk = chunk?;
            if out.len() + chunk.len() > limit {
                return Err(S3Error::new(
                    http::StatusCode::BAD_REQUEST,
                    "MaxMessageLengthExceeded",
                    "Your request was too big.",
                ));
            }
            out.extend_from_slice(&chunk);
        }
        Ok(out.freeze())
    }

    async fn next_chunk(&mut self) -> Option<Result<Bytes, S3Error>> {
        if self.done {
            return None;
        }
        let result = match &mut self.payload {
            Payload::Plain { .. } => self.next_plain().await,
            Payload::Chunked { .. } => self.next_chunked().await,
        };
        match result {
            Ok(Some(data)) => {
                if let Some(c) = &mut self.checksum {
                    c.hasher.update(&data);
                }
                Some(Ok(data))
            }
            Ok(None) => {
                self.done = true;
                None
            }
            Err(err) => Some(Err(err)),
        }
    }

    async fn read_frame(&mut self) -> Result<Option<Bytes>, S3Error> {
        loop {
            let wait = self.pacer.next_wait();
            let started = Instant::now();
            let frame = tokio::time::timeout(wait, self.incoming.frame()).await;
            let Ok(frame) = frame else {
                return Err(request_timeout());
            };
            let data_len = match &frame {
                Some(Ok(frame)) => frame.data_ref().map_or(0, Bytes::len),
                _ => 0,
            };
            self.pacer.waited(started.elapsed(), data_len);
            match frame {
                None => return Ok(None),
                Some(Ok(frame)) => {
                    if let Ok(data) = frame.into_data() {
                        return Ok(Some(data));
                    }
                }
                Some(Err(err)) => {
                    tracing::debug!(error = %err, "request body ended early");
                    return Err(S3Error::from(SigV4Error::IncompleteBody));
                }
            }
        }
    }

    async fn next_plain(&mut self) -> Result<Option<Bytes>, S3Error> {
        match self.read_frame().await? {
            Some(data) => {
                if let Payload::Plain {
                    expected_sha256: Some((_, hasher)),
                } = &mut self.payload
                {
                    hasher.update(&data);
                }
                Ok(Some(data))
            }
            None => {
                if let Payload::Plain {
                    expected_sha256: Some((expected, hasher)),
                } = &mut self.payload
                {
                    let actual: [u8; 32] = std::mem::take(hasher).finalize().into();
                    if actual != *expected {
                        return Err(S3Error::new(
                            http::StatusCode::BAD_REQUEST,
                            "XAmzContentSHA256Mismatch",
                            "The provided 'x-amz-content-sha256' header does not match what was computed.",
                        )
                        .with("ClientComputedContentSHA256", hex::encode(expected))
                        .with("S3ComputedContentSHA256", hex::encode(actual)));
                    }
                }
                self.finish_checksum(&[])?;
                Ok(None)
            }
        }
    }

    async fn next_chunked(&mut self) -> Result<Option<Bytes>, S3Error> {
        loop {
            let Payload::Chunked { decoder, buf, .. } = &mut self.payload else {
                unreachable!()
            };
            match decoder.feed(buf)? {
                Some(Decoded::Data(data)) => {
                    if let Payload::Chunked { seen, .. } = &mut self.payload {
                        *seen += data.len() as u64;
                    }
                    return Ok(Some(data));
                }
                Some(Decoded::End { trailers }) => {
                    return self.finish_chunked(&trailers).map(|()| None);
                }
                None => {}
            }
            match self.read_frame().await? {
                Some(data) => {
                    if let Payload::Chunked { buf, .. } = &mut self.payload {
                        buf.extend_from_slice(&data);
                    }
                }
                None => {
                    let Payload::Chunked { decoder, .. } = &mut self.payload else {
                        unreachable!()
                    };
                    return match decoder.finish()? {
                        Some(Decoded::End { trailers }) => {
                            self.finish_chunked(&trailers).map(|()| None)
                        }
                        _ => Err(SigV4Error::IncompleteBody.into()),
                    };
                }
            }
        }
    }

    fn finish_chunked(&mut self, trailers: &[(String, String)]) -> Result<(), S3Error> {
        if let Payload::Chunked {
            decoded_len: Some(expected),
            seen,
            ..
        } = &self.payload
            && expected != seen
        {
            return Err(SigV4Error::IncompleteBody.into());
        }
        self.finish_checksum(trailers)
    }

    fn finish_checksum(&mut self, trailers: &[(String, String)]) -> Result<(), S3Error> {
        // Only the trailer `x-amz-trailer` declared may arrive: anything else would be signed
        // (or not) without ever being checked.
        let declared = self
            .checksum
            .as_ref()
            .filter(|c| c.expected.is_none())
            .map(|c| c.algorithm.header_name());
        if let Some((name, _)) = trailers
            .iter()
            .find(|(name, _)| Some(name.as_str()) != declared)
        {
            return Err(SigV4Error::MalformedTrailer(format!(
                "{name} was not declared in x-amz-trailer"
            ))
            .into());
        }
        let Some(check) = self.checksum.take() else {
            return Ok(());
        };
        let name = check.algorithm.header_name();
        let expected = match check.expected {
            Some(v) => v,
            None => trailers
                .iter()
                .find(|(k, _)| k.eq_ignore_ascii_case(name))
                .map(|(_, v)| v.clone())
                .ok_or_else(|| {
                    S3Error::invalid_request(format!(
                        "The trailer {name} declared in x-amz-trailer is missing."
                    ))
                })?,
        };
        let expected = expected.trim();
        if !check.algorithm.is_valid_value(expected) {
            return Err(invalid_checksum_value(name));
        }
        let actual = check.hasher.finalize();
        if actual != expected {
            return Err(SigV4Error::ChecksumMismatch {
                algorithm: check.algorithm,
            }
            .into());
        }
        if let Some(slot) = &self.late
            && let Ok(mut slot) = slot.lock()
        {
            *slot = Some((name.to_owned(), actual));
        }
        Ok(())
    }
}

/// What the client asked to be checked: an `x-amz-checksum-*` header, or one named in
/// `x-amz-trailer` that will arrive at the end of an aws-chunked body.
fn checksum_check(headers: &HeaderMap) -> Result<Option<ChecksumCheck>, S3Error> {
    let mut found = None;
    for (name, value) in headers {
        if let Some(algorithm) = ChecksumAlgorithm::from_header_name(name.as_str()) {
            if found.is_some() {
                return Err(S3Error::invalid_request(
                    "Expecting a single x-amz-checksum- header.",
                ));
            }
            let value = value
                .to_str()
                .ok()
                .filter(|v| algorithm.is_valid_value(v))
                .ok_or_else(|| invalid_checksum_value(name.as_str()))?;
            found = Some(ChecksumCheck {
                algorithm,
                expected: Some(value.to_owned()),
                hasher: Checksummer::new(algorithm),
            });
        }
    }
    if let Some(trailer) = header_str(headers, "x-amz-trailer") {
        let name = trailer.trim().to_ascii_lowercase();
        let algorithm = ChecksumAlgorithm::from_header_name(&name)
            .ok_or_else(|| S3Error::invalid_request(format!("Unsupported trailer {name}.")))?;
        if found.is_some() {
            return Err(S3Error::invalid_request(
                "Expecting a single x-amz-checksum- header.",
            ));
        }
        found = Some(ChecksumCheck {
            algorithm,
            expected: None,
            hasher: Checksummer::new(algorithm),
        });
    }
    // The SDK names the algorithm it used; it must be a real one, and the one whose checksum
    // the request carries.
    if let Some(value) = header_str(headers, "x-amz-sdk-checksum-algorithm") {
        let named = ChecksumAlgorithm::from_name(value.trim())
            .ok_or_else(|| invalid_checksum_value("x-amz-sdk-checksum-algorithm"))?;
        if found.as_ref().map(|c| c.algorithm) != Some(named) {
            return Err(S3Error::invalid_request(format!(
                "x-amz-sdk-checksum-algorithm specified, but no corresponding {} or x-amz-trailer header was found.",
                named.header_name()
            )));
        }
    }
    Ok(found)
}

fn request_timeout() -> S3Error {
    S3Error::new(
        http::StatusCode::BAD_REQUEST,
        "RequestTimeout",
        "Your socket connection to the server was not read from or written to within the timeout period. Idle connections will be closed.",
    )
}

fn invalid_checksum_value(header: &str) -> S3Error {
    S3Error::invalid_request(format!("Value for {header} header is invalid."))
}

pub fn header_str<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    const SEC: Duration = Duration::from_secs(1);

    fn pacer(read_timeout_secs: u32, min_bytes_per_sec: u64) -> Pacer {
        Pacer::new(BodyPace {
            read_timeout: read_timeout_secs * SEC,
            min_bytes_per_sec,
        })
    }

    #[test]
    fn a_stall_waits_the_read_timeout_at_most() {
        let mut p = pacer(20, 0);
        assert_eq!(p.next_wait(), 20 * SEC);
        p.waited(19 * SEC, 1);
        assert_eq!(
            p.next_wait(),
            20 * SEC,
            "without a rate, each byte restarts the wait"
        );
        let mut p = pacer(20, 1024);
        p.waited(SEC, 10 << 20);
        assert_eq!(p.next_wait(), 20 * SEC, "credit never stretches one wait");
    }

    /// One byte every 5 s against 1 KiB/s: cut once the 20 s grace and the few ms those bytes
    /// earned are spent.
    #[test]
    fn a_trickle_runs_out_of_time() {
        let mut p = pacer(20, 1024);
        let mut elapsed = Duration::ZERO;
        while p.next_wait() >= 5 * SEC {
            p.waited(5 * SEC, 1);
            elapsed += 5 * SEC;
        }
        assert_eq!(elapsed, 20 * SEC);
        assert!(
            p.next_wait() < 10 * Duration::from_millis(1),
            "{:?}",
            p.next_wait()
        );
    }

    /// A body that keeps up with the minimum rate is never cut, however long it takes.
    #[test]
    fn a_steady_slow_body_is_not_cut() {
        let mut p = pacer(20, 1024);
        for _ in 0..100_000 {
            p.waited(SEC, 1024);
            assert!(p.next_wait() >= 19 * SEC);
        }
    }
}
