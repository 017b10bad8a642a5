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
/// client's body ended cleanly with exactly `len` bytes.
pub fn held_back(body: PutBody, len: u64, outcome: BodyOutcome) -> RequestBody {
    struct State {
        body: PutBody,
        held: Option<Bytes>,
        seen: u64,
        len: u64,
        outcome: BodyOutcome,
        done: bool,
    }
    let state = State {
        body,
        held: None,
        seen: 0,
        len,
        outcome,
        done: false,
    };
    let stream = futures_util::stream::unfold(state, |mut s| async move {
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
                    if let Some(previous) = s.held.replace(chunk) {
                        return Some((Ok(Frame::data(previous)), s));
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
                    s.outcome.sent.notify_one();
                    return s.held.take().map(|last| (Ok(Frame::data(last)), s));
                }
            }
        }
    });
    UnsyncBoxBody::new(http_body_util::StreamBody::new(stream))
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
    let stream = futures_util::stream::unfold(Some(body), move |body| {
        let backend = Arc::clone(&backend);
        async move {
            let mut body = body?;
            loop {
                let frame = match tokio::time::timeout(idle, body.frame()).await {
                    Err(_) => {
                        return Some((Err(broken(&backend, "the download stalled")), None));
                    }
                    Ok(None) => return None,
                    Ok(Some(Err(err))) => {
                        return Some((
                            Err(broken(&backend, &format!("the download broke off: {err}"))),
                            None,
                        ));
                    }
                    Ok(Some(Ok(frame))) => frame,
                };
                if let Ok(data) = frame.into_data()
                    && !data.is_empty()
                {
                    return Some((Ok(data), Some(body)));
                }
            }
        }
    });
    Box::pin(stream)
}

fn broken(backend: &str, detail: &str) -> StorageError {
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
    use super::*;

    async fn collect(body: RequestBody) -> (Vec<u8>, bool) {
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
        let (bytes, clean) =
            collect(held_back(body(vec![Ok("ab"), Ok("cd")]), 4, ok.clone())).await;
        assert_eq!((bytes.as_slice(), clean), (&b"abcd"[..], true));
        assert!(ok.take_error().is_none());

        let failed = BodyOutcome::default();
        let (bytes, clean) = collect(held_back(
            body(vec![Ok("ab"), Ok("cd"), Err("trailer checksum mismatch")]),
            4,
            failed.clone(),
        ))
        .await;
        assert_eq!((bytes.as_slice(), clean), (&b"ab"[..], false));
        assert!(matches!(failed.take_error(), Some(StorageError::Body(_))));

        let short = BodyOutcome::default();
        let (bytes, clean) = collect(held_back(body(vec![Ok("ab")]), 4, short.clone())).await;
        assert_eq!((bytes.len(), clean), (0, false));
        assert!(matches!(
            short.take_error(),
            Some(StorageError::IncompleteBody)
        ));
    }
}
