//! Accept loops and connection tasks. Each connection runs HTTP/1.1 or HTTP/2 (ALPN over TLS,
//! or by preface on plain listeners) under these bounds: header size and header read time (hyper),
//! TLS handshake time, idle time (our `idle` watchdog), and a global connection limit
//! (a semaphore permit held for the connection's life). On shutdown the accept loops stop,
//! every connection is asked to finish its in-flight requests, and the server waits for them
//! up to `limits.shutdown_grace`.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use sluice_plugin_host::types::TlsVersion;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, watch};
use tokio_rustls::TlsAcceptor;
use tokio_util::task::TaskTracker;

use super::idle::{Activity, IdleIo, TrackedBody};
use crate::config::{Limits, ListenerConfig};
use crate::gateway::Gateway;
use crate::pipeline;

/// A bound socket with its TLS setup, ready to serve.
pub struct BoundListener {
    pub listener: TcpListener,
    pub local_addr: SocketAddr,
    tls: Option<TlsAcceptor>,
    accept_unsigned_payload: bool,
}

impl std::fmt::Debug for BoundListener {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BoundListener")
            .field("local_addr", &self.local_addr)
            .field("tls", &self.tls.is_some())
            .finish()
    }
}

impl BoundListener {
    pub fn url(&self) -> String {
        let scheme = if self.tls.is_some() { "https" } else { "http" };
        format!("{scheme}://{}", self.local_addr)
    }
}

pub async fn bind(config: &ListenerConfig) -> Result<BoundListener, String> {
    let tls = match &config.tls {
        Some(files) => Some(TlsAcceptor::from(super::tls::server_config(files)?)),
        None => None,
    };
    let listener = TcpListener::bind(config.bind)
        .await
        .map_err(|e| format!("cannot listen on {}: {e}", config.bind))?;
    let local_addr = listener.local_addr().map_err(|e| e.to_string())?;
    // Over TLS the transport protects an unsigned body; over plain HTTP only a signature does.
    let accept_unsigned_payload = tls.is_some() || config.danger_accept_unsigned_payload;
    Ok(BoundListener {
        listener,
        local_addr,
        tls,
        accept_unsigned_payload,
    })
}

/// Serves until `shutdown` resolves, then drains.
pub async fn serve(
    gateway: Arc<Gateway>,
    listeners: Vec<BoundListener>,
    shutdown: impl Future<Output = ()>,
) {
    let limits = gateway.limits().clone();
    let permits = Arc::new(Semaphore::new(limits.max_connections));
    let tracker = TaskTracker::new();
    let (stop_tx, stop_rx) = watch::channel(false);
    let builder = Arc::new(http_builder(&limits));

    let mut accept_loops = Vec::new();
    for bound in listeners {
        let ctx = AcceptCtx {
            gateway: Arc::clone(&gateway),
            permits: Arc::clone(&permits),
            tracker: tracker.clone(),
            stop: stop_rx.clone(),
            builder: Arc::clone(&builder),
            limits: limits.clone(),
        };
        accept_loops.push(tokio::spawn(accept_loop(bound, ctx)));
    }

    shutdown.await;
    tracing::info!("shutting down: no new connections, draining in-flight requests");
    let _ = stop_tx.send(true);
    for task in accept_loops {
        let _ = task.await;
    }
    tracker.close();
    if tokio::time::timeout(limits.shutdown_grace, tracker.wait())
        .await
        .is_err()
    {
        tracing::warn!(grace = ?limits.shutdown_grace, "connections still open after the shutdown grace period; closing them");
    }
}

fn http_builder(limits: &Limits) -> auto::Builder<TokioExecutor> {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    // hyper's own limits are the backstop (it answers a bare 431): set well above the pipeline's
    // (`max_header_bytes`, `MAX_HEADERS`), so that any request a client could plausibly send is
    // answered with an S3 XML error by the pipeline instead.
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        .max_buf_size((limits.max_header_bytes * 4).max(128 * 1024))
        .max_headers(pipeline::MAX_HEADERS * 2)
        .keep_alive(true);
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_header_list_size((limits.max_header_bytes * 4) as u32)
        .max_concurrent_streams(32);
    builder
}

struct AcceptCtx {
    gateway: Arc<Gateway>,
    permits: Arc<Semaphore>,
    tracker: TaskTracker,
    stop: watch::Receiver<bool>,
    builder: Arc<auto::Builder<TokioExecutor>>,
    limits: Limits,
}

async fn accept_loop(bound: BoundListener, mut ctx: AcceptCtx) {
    let tls = bound.tls;
    let accept_unsigned_payload = bound.accept_unsigned_payload;
    loop {
        let permit = tokio::select! {
            p = Arc::clone(&ctx.permits).acquire_owned() => p.expect("semaphore never closed"),
            _ = ctx.stop.changed() => return,
        };
        let (stream, peer) = tokio::select! {
            r = bound.listener.accept() => match r {
                Ok(accepted) => accepted,
                Err(err) => {
                    // EMFILE and friends: back off briefly instead of spinning.
                    tracing::warn!(error = %err, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = ctx.stop.changed() => return,
        };
        let _ = stream.set_nodelay(true);
        let conn = Conn {
            gateway: Arc::clone(&ctx.gateway),
            builder: Arc::clone(&ctx.builder),
            stop: ctx.stop.clone(),
            limits: ctx.limits.clone(),
            tls: tls.clone(),
            peer,
            accept_unsigned_payload,
        };
        ctx.tracker.spawn(async move {
            conn.run(stream).await;
            drop(permit);
        });
    }
}

struct Conn {
    gateway: Arc<Gateway>,
    builder: Arc<auto::Builder<TokioExecutor>>,
    stop: watch::Receiver<bool>,
    limits: Limits,
    tls: Option<TlsAcceptor>,
    peer: SocketAddr,
    accept_unsigned_payload: bool,
}

/// The most TLS data a connection holds encrypted and not yet written.
const SEND_BUFFER: usize = 256 * 1024;

impl Conn {
    async fn run(self, stream: TcpStream) {
        let activity = Activity::new();
        match self.tls.clone() {
            Some(acceptor) => {
                let handshake = acceptor.accept(IdleIo::new(stream, activity.clone()));
                match tokio::time::timeout(self.limits.header_read_timeout, handshake).await {
                    Ok(Ok(mut tls)) => {
                        // Up to 256 KiB of a response encrypted per write (rustls' default,
                        // 64 KiB, means four times the writes for a large download).
                        tls.get_mut().1.set_buffer_limit(Some(SEND_BUFFER));
                        let version = match tls.get_ref().1.protocol_version() {
                            Some(rustls::ProtocolVersion::TLSv1_2) => TlsVersion::Tls12,
                            _ => TlsVersion::Tls13,
                        };
                        self.serve_io(tls, activity, Some(version)).await
                    }
                    Ok(Err(err)) => {
                        tracing::debug!(peer = %self.peer, error = %err, "TLS handshake failed")
                    }
                    Err(_) => tracing::debug!(peer = %self.peer, "TLS handshake timed out"),
                }
            }
            None => {
                self.serve_io(IdleIo::new(stream, activity.clone()), activity, None)
                    .await
            }
        }
    }

    async fn serve_io<I>(mut self, io: I, activity: Activity, tls: Option<TlsVersion>)
    where
        I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    {
        let gateway = Arc::clone(&self.gateway);
        let peer = self.peer;
        let info = pipeline::ConnInfo {
            peer,
            tls,
            accept_unsigned_payload: self.accept_unsigned_payload,
        };
        let requests = activity.clone();
        let service = service_fn(move |req| {
            let gateway = Arc::clone(&gateway);
            let in_flight = requests.request_started();
            async move {
                let response = pipeline::handle(gateway, req, info).await;
                Ok::<_, Infallible>(response.map(|body| TrackedBody::new(body, in_flight)))
            }
        });
        let conn = self
            .builder
            .serve_connection_with_upgrades(TokioIo::new(io), service);
        tokio::pin!(conn);
        let idle_timeout = self.limits.idle_timeout;
        let mut idle_check =
            tokio::time::interval((idle_timeout / 4).max(Duration::from_millis(100)));
        // Once asked to close, a connection gets this long to finish; then it is dropped, so a
        // stalled request cannot hold its connection permit for ever.
        let mut hard_deadline: Option<tokio::time::Instant> = None;
        loop {
            let deadline = hard_deadline.unwrap_or_else(tokio::time::Instant::now);
            tokio::select! {
                result = conn.as_mut() => {
                    if let Err(err) = result {
                        tracing::debug!(peer = %peer, error = %err, "connection ended with an error");
                    }
                    return;
                }
                _ = self.stop.changed(), if hard_deadline.is_none() => {
                    conn.as_mut().graceful_shutdown();
                    hard_deadline = Some(tokio::time::Instant::now() + self.limits.shutdown_grace);
                }
                _ = idle_check.tick(), if hard_deadline.is_none() => {
                    if activity.is_idle(idle_timeout) {
                        tracing::debug!(peer = %peer, "closing idle connection");
                        conn.as_mut().graceful_shutdown();
                        hard_deadline = Some(tokio::time::Instant::now() + idle_timeout);
                    }
                }
                _ = tokio::time::sleep_until(deadline), if hard_deadline.is_some() => {
                    tracing::debug!(peer = %peer, "connection did not finish in time; closing it");
                    return;
                }
            }
        }
    }
}
