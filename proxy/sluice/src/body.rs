//! Body adapters. Request bodies are verified as they stream: the payload hash, aws-chunked
//! decoding with its chunk-signature chain, and `x-amz-checksum-*` values (from headers or from
//! trailers). Bytes flow on as soon as they arrive; a failed check turns the end of the stream
//! into an error instead of a clean end, and storage only commits after a clean end. So nothing
//! unverified is ever stored, and no body is ever held in memory whole.

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

/// The request body as the client meant it: decoded and verified while it streams.
#[derive(Debug)]
pub struct RequestBody {
    incoming: Incoming,
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
            payload,
            checksum,
            late,
            done: false,
        })
    }

    /// Where the verified trailer checksum will be, if one is expected.
    pub fn late_checksum(&self) -> Option<LateChecksum> {
        self.late.clone()
    }

    /// The size of the decoded body, when the client declared it.
    pub fn declared_len(&self, headers: &HeaderMap) -> Option<u64> {
        match &self.payload {
            Payload::Chunked { decoded_len, .. } => *decoded_len,
            // hyper knows the exact length from Content-Length, or that a request without one
            // (and without Transfer-Encoding) has an empty body.
            Payload::Plain { .. } => header_str(headers, "content-length")
                .and_then(|v| v.parse().ok())
                .or_else(|| http_body::Body::size_hint(&self.incoming).exact()),
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
            match self.incoming.frame().await {
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
        let actual = check.hasher.finalize();
        if actual != expected.trim() {
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
                .map_err(|_| S3Error::invalid_request("Invalid checksum header value."))?;
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
    Ok(found)
}

pub fn header_str<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}
