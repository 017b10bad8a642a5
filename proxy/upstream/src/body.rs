//! Bodies on their way to and from an upstream.
//!
//! Up: the client's body, already decoded and being verified by the front door, is forwarded as
//! it arrives except for its last piece, which is held back until the client's body has ended
//! cleanly: the front door reports a failed last chunk signature, trailing checksum or whole-body
//! SHA-256 only at the end, and an upstream that had received every declared byte would commit.
//! On any failure the stream errs instead, hyper aborts the request, and the upstream sees a body
//! shorter than its `Content-Length`, which it never commits.
//!
//! Down: the upstream's response body, with a limit on how long it may pause, and any break
//! turned into an error item, so a download that dies half-way cuts the client's connection
//! instead of ending like a short object.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use futures_util::{Stream, StreamExt};
use http_body_util::BodyExt;
use hyper::body::{Frame, Incoming};
use sluice_storage::{BodyError, ObjectBody, PutBody, StorageError};
use tokio::sync::Notify;

use crate::client::{BoxError, RequestBody};

/// Where a request body's failure is kept for the caller: hyper only reports that the request
/// broke off, the client's own error is here.
#[derive(Debug, Clone, Default)]
pub struct BodyOutcome {
    error: Arc<Mutex<Option<StorageError>>>,
    /// Notified when the body has been handed over whole (the wait for the answer starts).
    pub sent: Arc<Notify>,
}

impl BodyOutcome {
    pub fn take_error(&self) -> Option<StorageError> {
        self.error.lock().unwrap_or_else(|e| e.into_inner()).take()
    }

    fn fail(&self, err: StorageError) -> BoxError {
        let message = err.to_string();
        *self.error.lock().unwrap_or_else(|e| e.into_inner()) = Some(err);
        message.into()
    }
}

/// The client's body for an upstream request of `len` bytes, its last piece held back until the
/// client's body ended cleanly with exactly `len` bytes (and, given `content_md5`, hashed to it:
/// the front door checks signatures and checksums, the MD5 is checked here as the local store
/// does, so no upstream's own check is relied on).
pub fn held_back(
    body: PutBody,
    len: u64,
    content_md5: Option<[u8; 16]>,
    outcome: BodyOutcome,
) -> impl Stream<Item = Result<Bytes, BoxError>> + Send + 'static {
    use md5::Digest as _;
    struct State {
        body: PutBody,
        held: Option<Bytes>,
        seen: u64,
        len: u64,
        md5: Option<(md5::Md5, [u8; 16])>,
        outcome: BodyOutcome,
        done: bool,
    }
    let state = State {
        body,
        held: None,
        seen: 0,
        len,
        md5: content_md5.map(|expected| (md5::Md5::new(), expected)),
        outcome,
        done: false,
    };
    futures_util::stream::unfold(state, |mut s| async move {
        if s.done {
            return None;
        }
        loop {
            match s.body.next().await {
                Some(Ok(chunk)) if chunk.is_empty() => continue,
                Some(Ok(chunk)) => {
                    s.seen += chunk.len() as u64;
                    if s.seen > s.len {
                        s.done = true;
                        let err = s.outcome.fail(StorageError::IncompleteBody);
                        return Some((Err(err), s));
                    }
                    if let Some((hasher, _)) = &mut s.md5 {
                        hasher.update(&chunk);
                    }
                    if let Some(previous) = s.held.replace(chunk) {
                        return Some((Ok(previous), s));
                    }
                }
                Some(Err(BodyError(err))) => {
                    s.done = true;
                    let err = s.outcome.fail(StorageError::Body(BodyError(err)));
                    return Some((Err(err), s));
                }
                None => {
                    s.done = true;
                    if s.seen != s.len {
                        let err = s.outcome.fail(StorageError::IncompleteBody);
                        return Some((Err(err), s));
                    }
                    if let Some((hasher, expected)) = s.md5.take()
                        && <[u8; 16]>::from(hasher.finalize()) != expected
                    {
                        let err = s.outcome.fail(StorageError::BadDigest);
                        return Some((Err(err), s));
                    }
                    s.outcome.sent.notify_one();
                    return s.held.take().map(|last| (Ok(last), s));
                }
            }
        }
    })
}

/// Reads an empty client body to its end, so its checks (a trailing checksum, the last chunk's
/// signature, Content-MD5) run before anything is sent.
pub async fn drain_empty(
    mut body: PutBody,
    content_md5: Option<[u8; 16]>,
) -> Result<(), StorageError> {
    use md5::Digest as _;
    while let Some(item) = body.next().await {
        if !item.map_err(StorageError::Body)?.is_empty() {
            return Err(StorageError::IncompleteBody);
        }
    }
    if content_md5.is_some_and(|md5| md5 != <[u8; 16]>::from(md5::Md5::digest(b""))) {
        return Err(StorageError::BadDigest);
    }
    Ok(())
}

/// A stream of body bytes as a request body.
pub fn streamed<S>(stream: S) -> RequestBody
where
    S: Stream<Item = Result<Bytes, BoxError>> + Send + 'static,
{
    UnsyncBoxBody::new(http_body_util::StreamBody::new(
        stream.map(|item| item.map(Frame::data)),
    ))
}

/// Data per signed chunk when Sluice frames a body as a new signed chunk chain.
pub const SIGNED_CHUNK: u64 = 64 * 1024;

/// The length on the wire of `len` bytes framed as signed aws-chunked data in chunks of
/// [`SIGNED_CHUNK`] bytes (each `hex;chunk-signature=<64 hex>\r\n data \r\n`, then the final
/// empty chunk and a blank line).
pub fn signed_chunked_len(len: u64) -> u64 {
    let frame = |n: u64| format!("{n:x}").len() as u64 + 17 + 64 + 2 + n + 2;
    let (full, rest) = (len / SIGNED_CHUNK, len % SIGNED_CHUNK);
    full * frame(SIGNED_CHUNK) + if rest > 0 { frame(rest) } else { 0 } + frame(0)
}

/// Frames `stream` as a new signed chunk chain (`STREAMING-AWS4-HMAC-SHA256-PAYLOAD`) in
/// chunks of [`SIGNED_CHUNK`] bytes: at most one chunk is buffered. The final chunk is written
/// only when `stream` ended cleanly.
pub fn signed_chunks<S>(
    stream: S,
    encoder: sluice_sigv4::ChunkedEncoder,
) -> impl Stream<Item = Result<Bytes, BoxError>> + Send + 'static
where
    S: Stream<Item = Result<Bytes, BoxError>> + Send + 'static,
{
    struct State<S> {
        input: std::pin::Pin<Box<S>>,
        buf: bytes::BytesMut,
        encoder: sluice_sigv4::ChunkedEncoder,
        done: bool,
    }
    let state = State {
        input: Box::pin(stream),
        buf: bytes::BytesMut::new(),
        encoder,
        done: false,
    };
    futures_util::stream::unfold(state, |mut s| async move {
        let chunk = SIGNED_CHUNK as usize;
        loop {
            if s.buf.len() >= chunk {
                let data = s.buf.split_to(chunk);
                return Some((Ok(Bytes::from(s.encoder.chunk(&data))), s));
            }
            if s.done {
                return None;
            }
            match s.input.next().await {
                Some(Ok(data)) => s.buf.extend_from_slice(&data),
                Some(Err(err)) => {
                    s.done = true;
                    return Some((Err(err), s));
                }
                None => {
                    s.done = true;
                    let mut out = s.encoder.chunk(&s.buf);
                    s.buf.clear();
                    out.extend_from_slice(&s.encoder.finish(&[]));
                    return Some((Ok(Bytes::from(out)), s));
                }
            }
        }
    })
}

use http_body_util::combinators::UnsyncBoxBody;

/// A whole body already in memory (an XML document).
pub fn full(bytes: Bytes) -> RequestBody {
    UnsyncBoxBody::new(http_body_util::Full::new(bytes).map_err(|never| match never {}))
}

pub fn empty() -> RequestBody {
    full(Bytes::new())
}

/// An upstream's response body as an object body: pauses longer than `idle` and any break
/// end it with an error naming the backend.
pub fn response_stream(body: Incoming, backend: Arc<str>, idle: Duration) -> ObjectBody {
    Box::pin(ResponseStream {
        body: Some(body),
        backend,
        idle,
        timer: Box::pin(tokio::time::sleep(idle)),
        last: tokio::time::Instant::now(),
        waiting: Joiner::default(),
    })
}

/// A piece at least this large (a full TLS record) is passed on as it came, never copied.
const PASS: usize = 16 * 1024;
/// Smaller pieces that arrive together are joined, up to this size: each piece passed on
/// costs a TLS record and a write on the client's side.
const JOIN: usize = 64 * 1024;

/// An upstream's response body. The idle limit costs one timer, re-armed only when it fires
/// (at most once per `idle`), not one per piece of a long download.
struct ResponseStream {
    body: Option<Incoming>,
    backend: Arc<str>,
    idle: Duration,
    timer: std::pin::Pin<Box<tokio::time::Sleep>>,
    /// When the last piece arrived.
    last: tokio::time::Instant,
    /// Pieces received and not passed on yet.
    waiting: Joiner,
}

/// Pieces of a body on their way: large ones pass as they came, small ones that arrive
/// together are joined.
#[derive(Default)]
struct Joiner {
    /// A piece received but not yet passed on, kept as it came (no copy).
    held: Option<Bytes>,
    /// Small pieces received together, joined (less than [`JOIN`] bytes). At most one of
    /// `held` and `joined` holds anything.
    joined: bytes::BytesMut,
}

impl Joiner {
    /// What has arrived and is not passed on yet, if anything.
    fn take(&mut self) -> Option<Bytes> {
        self.held
            .take()
            .or_else(|| (!self.joined.is_empty()).then(|| self.joined.split().freeze()))
    }

    /// Takes in one piece; returns what is to be passed on now.
    fn arrived(&mut self, data: Bytes) -> Option<Bytes> {
        if let Some(held) = self.held.take() {
            if held.len() >= PASS || data.len() >= PASS {
                self.held = Some(data);
                return Some(held);
            }
            self.joined.reserve(JOIN);
            self.joined.extend_from_slice(&held);
        } else if self.joined.is_empty() {
            if data.len() >= PASS {
                return Some(data);
            }
            self.held = Some(data);
            return None;
        } else if data.len() >= PASS {
            self.held = Some(data);
            return Some(self.joined.split().freeze());
        }
        self.joined.extend_from_slice(&data);
        (self.joined.len() + PASS > JOIN).then(|| self.joined.split().freeze())
    }
}

impl Stream for ResponseStream {
    type Item = Result<Bytes, StorageError>;

    fn poll_next(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Self::Item>> {
        use hyper::body::Body as _;
        use std::future::Future as _;
        use std::task::Poll;
        let this = self.get_mut();
        loop {
            let Some(body) = this.body.as_mut() else {
                return Poll::Ready(this.waiting.take().map(Ok));
            };
            match std::pin::Pin::new(body).poll_frame(cx) {
                Poll::Ready(Some(Ok(frame))) => {
                    this.last = tokio::time::Instant::now();
                    if let Ok(data) = frame.into_data()
                        && !data.is_empty()
                        && let Some(out) = this.waiting.arrived(data)
                    {
                        return Poll::Ready(Some(Ok(out)));
                    }
                }
                Poll::Ready(Some(Err(err))) => {
                    this.body = None;
                    this.waiting = Joiner::default();
                    let detail = format!("the download broke off: {err}");
                    return Poll::Ready(Some(Err(broken(&this.backend, &detail))));
                }
                Poll::Ready(None) => {
                    this.body = None;
                    return Poll::Ready(this.waiting.take().map(Ok));
                }
                // Nothing more right now: what has arrived goes on.
                Poll::Pending => {
                    if let Some(out) = this.waiting.take() {
                        return Poll::Ready(Some(Ok(out)));
                    }
                    loop {
                        if this.timer.as_mut().poll(cx).is_pending() {
                            return Poll::Pending;
                        }
                        let deadline = this.last + this.idle;
                        if tokio::time::Instant::now() >= deadline {
                            this.body = None;
                            let err = broken(&this.backend, "the download stalled");
                            return Poll::Ready(Some(Err(err)));
                        }
                        this.timer.as_mut().reset(deadline);
                    }
                }
            }
        }
    }
}

fn broken(backend: &str, detail: &str) -> StorageError {
    // Once a response has started this error can only cut the client off; it is logged here,
    // where the backend is known.
    tracing::error!(backend, detail, "an upstream answer broke off");
    StorageError::Unreachable {
        backend: backend.to_owned(),
        detail: detail.to_owned(),
    }
}

/// Reads a small response body whole (an XML document), at most `limit` bytes.
pub async fn read_small(
    body: Incoming,
    limit: usize,
    backend: &str,
    idle: Duration,
) -> Result<Bytes, StorageError> {
    let mut out = bytes::BytesMut::new();
    let mut stream = response_stream(body, backend.into(), idle);
    while let Some(chunk) = stream.next().await {
        let chunk = chunk?;
        if out.len() + chunk.len() > limit {
            return Err(StorageError::Upstream(Box::new(
                sluice_storage::UpstreamError {
                    backend: backend.to_owned(),
                    status: 502,
                    code: String::new(),
                    message: format!("response document larger than {limit} bytes"),
                },
            )));
        }
        out.extend_from_slice(&chunk);
    }
    Ok(out.freeze())
}

/// A stream that never needs `Unpin` from its caller.
pub fn boxed<S>(stream: S) -> ObjectBody
where
    S: Stream<Item = Result<Bytes, StorageError>> + Send + 'static,
{
    Box::pin(stream)
}

#[cfg(test)]
mod tests {
    use super::{JOIN, Joiner, PASS};
    use bytes::Bytes;

    /// Large pieces pass through as they came (the same memory, not a copy); small pieces
    /// that arrive together are joined; nothing is reordered, lost or passed on twice.
    #[test]
    fn pieces_pass_whole_or_joined_in_order() {
        let piece = |len: usize, fill: u8| Bytes::from(vec![fill; len]);
        let big = piece(PASS, 1);
        let mut j = Joiner::default();
        let out = j
            .arrived(big.clone())
            .expect("a large piece goes on at once");
        assert_eq!(out.as_ptr(), big.as_ptr(), "passed on without a copy");
        assert!(j.take().is_none());

        // Small, small, large, then the stream pauses: the two small ones as one, then the
        // large one by itself.
        let mut passed = Vec::new();
        for p in [piece(100, 2), piece(200, 3), piece(PASS + 1, 4)] {
            passed.extend(j.arrived(p));
        }
        passed.extend(j.take());
        let lens: Vec<usize> = passed.iter().map(Bytes::len).collect();
        assert_eq!(lens, [300, PASS + 1]);
        assert_eq!(
            &passed[0][..],
            [[2u8; 100].as_slice(), &[3u8; 200]].concat()
        );

        // Many small pieces in a row: joined up to JOIN, every byte once, in order.
        let mut all = Vec::new();
        let mut expected = Vec::new();
        for i in 0..100u8 {
            let p = piece(1000, i);
            expected.extend_from_slice(&p);
            all.extend(j.arrived(p));
        }
        all.extend(j.take());
        assert!(all.iter().all(|b| b.len() <= JOIN));
        assert!(
            all.len() < 10,
            "joined, not one write per piece: {}",
            all.len()
        );
        assert_eq!(all.concat(), expected);
        assert!(j.take().is_none());
    }

    /// The framing Sluice writes is what the front door's decoder reads back, chunk signatures
    /// verified, and its length is the one declared up front.
    #[tokio::test]
    async fn signed_chunks_decode_and_match_their_declared_length() {
        use sluice_sigv4::{
            AmzDate, ChunkSignatureChain, ChunkedDecoder, CredentialScope, SecretKey, Signature,
            SigningKey,
        };
        let date = AmzDate::from_unix(1_700_000_000);
        let scope = CredentialScope {
            date: date.date_stamp(),
            region: "us-east-1".into(),
            service: "s3".into(),
        };
        let key = SigningKey::derive(
            &SecretKey::new("secret".into()),
            &date.date_stamp(),
            "us-east-1",
            "s3",
        );
        let seed = Signature::from_hex(&"ab".repeat(32)).unwrap();
        for len in [
            0u64,
            1,
            SIGNED_CHUNK - 1,
            SIGNED_CHUNK,
            3 * SIGNED_CHUNK + 5,
        ] {
            let data: Vec<u8> = (0..len).map(|i| (i % 251) as u8).collect();
            // Uneven pieces, as a client's body arrives.
            let pieces: Vec<Result<Bytes, BoxError>> = data
                .chunks(10_000)
                .map(|c| Ok(Bytes::copy_from_slice(c)))
                .collect();
            let chain = ChunkSignatureChain::new(key.clone(), &date, &scope, seed.clone());
            let encoder = sluice_sigv4::ChunkedEncoder::new(Some(chain), false);
            let (wire, clean) =
                collect(signed_chunks(futures_util::stream::iter(pieces), encoder)).await;
            assert!(clean);
            assert_eq!(wire.len() as u64, signed_chunked_len(len), "len {len}");
            let verifier = ChunkSignatureChain::new(key.clone(), &date, &scope, seed.clone());
            let mut decoder = ChunkedDecoder::new(Some(verifier), false, 1 << 20);
            let mut input = bytes::BytesMut::from(&wire[..]);
            let mut out = Vec::new();
            while let Some(item) = decoder.feed(&mut input).unwrap() {
                if let sluice_sigv4::Decoded::Data(d) = item {
                    out.extend_from_slice(&d);
                }
            }
            assert_eq!(out, data, "len {len}");
        }
    }

    use super::*;

    async fn collect(
        body: impl Stream<Item = Result<Bytes, BoxError>> + Send + 'static,
    ) -> (Vec<u8>, bool) {
        let body = streamed(body);
        let mut body = body;
        let mut out = Vec::new();
        loop {
            match body.frame().await {
                None => return (out, true),
                Some(Err(_)) => return (out, false),
                Some(Ok(f)) => out.extend_from_slice(&f.into_data().unwrap()),
            }
        }
    }

    fn body(items: Vec<Result<&'static str, &'static str>>) -> PutBody {
        Box::pin(futures_util::stream::iter(items.into_iter().map(|i| {
            i.map(|s: &'static str| Bytes::from_static(s.as_bytes()))
                .map_err(|e| BodyError(e.into()))
        })))
    }

    /// The last piece is forwarded only once the body has ended cleanly; a failure at the end
    /// keeps it back, so the upstream never receives every declared byte.
    #[tokio::test]
    async fn last_piece_waits_for_a_clean_end() {
        let ok = BodyOutcome::default();
        let (bytes, clean) = collect(held_back(
            body(vec![Ok("ab"), Ok("cd")]),
            4,
            None,
            ok.clone(),
        ))
        .await;
        assert_eq!((bytes.as_slice(), clean), (&b"abcd"[..], true));
        assert!(ok.take_error().is_none());

        let failed = BodyOutcome::default();
        let (bytes, clean) = collect(held_back(
            body(vec![Ok("ab"), Ok("cd"), Err("trailer checksum mismatch")]),
            4,
            None,
            failed.clone(),
        ))
        .await;
        assert_eq!((bytes.as_slice(), clean), (&b"ab"[..], false));
        assert!(matches!(failed.take_error(), Some(StorageError::Body(_))));

        let short = BodyOutcome::default();
        let (bytes, clean) = collect(held_back(body(vec![Ok("ab")]), 4, None, short.clone())).await;
        assert_eq!((bytes.len(), clean), (0, false));
        assert!(matches!(
            short.take_error(),
            Some(StorageError::IncompleteBody)
        ));

        // A Content-MD5 that does not match keeps the last piece back too.
        use md5::Digest as _;
        let right: [u8; 16] = md5::Md5::digest(b"abcd").into();
        let (_, clean) = collect(held_back(
            body(vec![Ok("ab"), Ok("cd")]),
            4,
            Some(right),
            BodyOutcome::default(),
        ))
        .await;
        assert!(clean);
        let wrong = BodyOutcome::default();
        let (bytes, clean) = collect(held_back(
            body(vec![Ok("ab"), Ok("cd")]),
            4,
            Some([0; 16]),
            wrong.clone(),
        ))
        .await;
        assert_eq!((bytes.as_slice(), clean), (&b"ab"[..], false));
        assert!(matches!(wrong.take_error(), Some(StorageError::BadDigest)));
    }
}
