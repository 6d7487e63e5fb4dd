// SPDX-FileCopyrightText: 2026 apiserver-proxy contributors
// SPDX-License-Identifier: Apache-2.0

//! The HTTPS server: accept loop, per-connection limits, routing, and graceful shutdown.

use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::net::{Ipv6Addr, SocketAddr};
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use http_body_util::BodyExt;
use hyper::body::{Body as _, Bytes, Frame, Incoming, SizeHint};
use hyper::header::{self, HeaderValue};
use hyper::server::conn::{http1, http2};
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulConnection;
use socket2::{Domain, Protocol, Socket, Type};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, TryAcquireError, watch};
use tokio_rustls::TlsAcceptor;
use tracing::{Instrument, debug, error, info, warn};

use crate::config::{Config, Listen};
use crate::log_limit::{self, LogLimit, Verdict};
use crate::metrics::Metrics;
use crate::review::{self, Outcome};
use crate::tls::{self, TlsError, TlsStore};

/// The path kube-apiserver calls.
pub const WEBHOOK_PATH: &str = "/webhook/pod-apiserver-env";

/// Failed requests logged at once before the rate applies.
const FAILURE_LOG_BURST: u32 = 50;
/// Failed requests logged per second after the burst.
const FAILURE_LOG_PER_SECOND: u32 = 10;
/// The most of a request path, or of a message quoting a client's input, put in a log line.
const LOGGED_PATH_BYTES: usize = 128;
const LOGGED_MESSAGE_BYTES: usize = 512;

/// Why the server cannot start.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// The certificate files are unusable.
    #[error(transparent)]
    Tls(#[from] TlsError),
    /// The listen address cannot be bound.
    #[error("cannot listen on {addr}")]
    Bind {
        /// The address as given.
        addr: String,
        /// The socket error.
        #[source]
        source: io::Error,
    },
}

/// Where the server is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Phase {
    /// Normal operation.
    Serving,
    /// Shutdown signalled: not ready, HTTP/1 answers carry `Connection: close`, HTTP/2
    /// connections get GOAWAY; new connections are still accepted.
    Terminating,
    /// No more connections accepted; open ones close after their current request.
    Draining,
}

#[derive(Debug)]
struct Shared {
    config: Config,
    metrics: Arc<Metrics>,
    ready: AtomicBool,
    terminating: AtomicBool,
    /// Permits for bytes of request bodies in memory ([`crate::config::Limits::body_budget_bytes`]).
    body_budget: Arc<Semaphore>,
    body_budget_permits: u32,
    /// Failed requests are logged at a bounded rate (and all counted).
    failure_log: LogLimit,
}

/// A bound, not yet serving webhook server.
#[derive(Debug)]
pub struct Webhook {
    listener: TcpListener,
    tls: Arc<TlsStore>,
    shared: Arc<Shared>,
}

async fn bind(listen: &Listen) -> Result<TcpListener, ServerError> {
    let host = listen.host.trim_start_matches('[').trim_end_matches(']');
    let bind_err = |addr: String| move |source| ServerError::Bind { addr, source };
    let ipv6_wildcard = host.parse::<Ipv6Addr>().is_ok_and(|ip| ip.is_unspecified());
    if host.is_empty() || ipv6_wildcard {
        // All addresses (and `::`, as in Go): the IPv6 wildcard with IPv4 mapped in; on a host
        // without IPv6, the IPv4 wildcard alone.
        let all = format!("all addresses, port {}", listen.port);
        let listener = match bind_dual_stack(listen.port) {
            Ok(listener) => listener,
            // Both failures named: on a host without IPv6 the first only says so, and the
            // second is the one that matters.
            Err(dual_stack) => std::net::TcpListener::bind(("0.0.0.0", listen.port)).map_err(
                bind_err(format!("{all}; IPv6 wildcard: {dual_stack}; IPv4 wildcard")),
            )?,
        };
        listener
            .set_nonblocking(true)
            .map_err(bind_err(all.clone()))?;
        TcpListener::from_std(listener).map_err(bind_err(all))
    } else {
        TcpListener::bind((host, listen.port))
            .await
            .map_err(bind_err(format!("{}:{}", listen.host, listen.port)))
    }
}

/// The IPv6 wildcard listening for IPv4 too, whatever `net.ipv6.bindv6only` says (as Go's
/// listeners do, so a hardened node that sets it still reaches the webhook over IPv4).
fn bind_dual_stack(port: u16) -> std::io::Result<std::net::TcpListener> {
    let socket = Socket::new(Domain::IPV6, Type::STREAM, Some(Protocol::TCP))?;
    socket.set_only_v6(false)?;
    socket.set_reuse_address(true)?;
    socket.bind(&SocketAddr::from((Ipv6Addr::UNSPECIFIED, port)).into())?;
    socket.listen(1024)?;
    Ok(socket.into())
}

impl Webhook {
    /// Loads the certificate (a missing or broken one is an error) and binds the listener.
    pub async fn bind(config: Config) -> Result<Self, ServerError> {
        let tls = TlsStore::load(&config.tls, config.tls_min_version, config.enable_http2)?;
        let listener = bind(&config.listen).await?;
        let body_budget_permits = u32::try_from(config.limits.body_budget_bytes)
            .unwrap_or(u32::MAX)
            .clamp(1, u32::try_from(Semaphore::MAX_PERMITS).unwrap_or(u32::MAX));
        Ok(Webhook {
            listener,
            tls: Arc::new(tls),
            shared: Arc::new(Shared {
                config,
                metrics: Arc::new(Metrics::new(WEBHOOK_PATH)),
                ready: AtomicBool::new(false),
                terminating: AtomicBool::new(false),
                body_budget: Arc::new(Semaphore::new(body_budget_permits as usize)),
                body_budget_permits,
                failure_log: LogLimit::new(FAILURE_LOG_BURST, FAILURE_LOG_PER_SECOND),
            }),
        })
    }

    /// The address the listener is bound to.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Serves until `shutdown` completes, then shuts down gracefully: not ready at once, serving
    /// for the shutdown delay, then draining in-flight requests for at most the shutdown timeout.
    pub async fn serve(self, shutdown: impl Future<Output = ()>) -> Result<(), ServerError> {
        let Webhook {
            listener,
            tls,
            shared,
        } = self;
        let config = &shared.config;
        let max_connections = config.limits.max_connections;
        let permits = Arc::new(Semaphore::new(max_connections as usize));
        let (phase_tx, phase_rx) = watch::channel(Phase::Serving);
        let reload = tokio::spawn(tls::watch(
            tls.clone(),
            config.cert_reload_interval,
            shared.metrics.clone(),
        ));
        let summary = tokio::spawn(summarize_suppressed(shared.clone()));
        let addr = listener
            .local_addr()
            .map_or_else(|e| format!("unknown address ({e})"), |a| a.to_string());
        let mut accept = Box::pin(accept_loop(
            listener,
            tls,
            shared.clone(),
            permits.clone(),
            phase_rx,
        ));
        shared.ready.store(true, Ordering::SeqCst);
        info!(%addr, http2 = config.enable_http2, "serving");

        tokio::select! {
            () = &mut accept => {}
            () = shutdown => {}
        }
        shared.ready.store(false, Ordering::SeqCst);
        shared.terminating.store(true, Ordering::SeqCst);
        phase_tx.send_replace(Phase::Terminating);
        info!(delay = ?config.shutdown_delay, "shutting down: not ready, still serving");
        tokio::select! {
            () = &mut accept => {}
            () = tokio::time::sleep(config.shutdown_delay) => {}
        }
        drop(accept);
        phase_tx.send_replace(Phase::Draining);
        let open = max_connections as usize - permits.available_permits();
        info!(connections = open, timeout = ?config.shutdown_timeout, "draining connections");
        let drained = tokio::time::timeout(
            config.shutdown_timeout,
            permits.acquire_many(max_connections),
        )
        .await;
        match drained {
            Ok(_) => info!("all connections closed"),
            Err(_) => warn!(
                connections = max_connections as usize - permits.available_permits(),
                "shutdown timeout reached with connections still open; closing them"
            ),
        }
        reload.abort();
        summary.abort();
        Ok(())
    }
}

async fn accept_loop(
    listener: TcpListener,
    tls: Arc<TlsStore>,
    shared: Arc<Shared>,
    permits: Arc<Semaphore>,
    phase: watch::Receiver<Phase>,
) {
    let (evict_tx, _) = watch::channel(0u64);
    let mut backoff = None;
    loop {
        // Without a free slot, accept anyway: a waiting client is what makes idle connections
        // worth closing.
        let permit = match permits.clone().try_acquire_owned() {
            Ok(permit) => Some(permit),
            Err(TryAcquireError::NoPermits) => None,
            Err(TryAcquireError::Closed) => return,
        };
        let (tcp, peer) = match listener.accept().await {
            Ok(conn) => {
                backoff = None;
                conn
            }
            Err(e) => {
                // Typically out of file descriptors: back off, longer while it lasts, instead
                // of spinning, and warn once per episode.
                let wait = accept_backoff(backoff);
                if backoff.is_none() {
                    warn!(error = %e, "cannot accept connections; retrying with back-off");
                } else {
                    debug!(error = %e, ?wait, "still cannot accept connections");
                }
                backoff = Some(wait);
                tokio::time::sleep(wait).await;
                continue;
            }
        };
        let permit = match permit {
            Some(permit) => permit,
            None => {
                // Every slot is taken: idle connections make room for the new client.
                evict_tx.send_modify(|round| *round += 1);
                let wait = shared.config.limits.handshake_timeout;
                match tokio::time::timeout(wait, permits.clone().acquire_owned()).await {
                    Ok(Ok(permit)) => permit,
                    Ok(Err(_)) => return,
                    Err(_) => {
                        debug!(%peer, "no connection slot freed in time: closing the new connection");
                        continue;
                    }
                }
            }
        };
        let acceptor = TlsAcceptor::from(tls.current());
        let shared = shared.clone();
        let phase = phase.clone();
        // Only calls for room made after it joined concern a connection.
        let evict = evict_tx.subscribe();
        let span = tracing::debug_span!("conn", %peer);
        tokio::spawn(
            async move {
                serve_connection(tcp, acceptor, shared, phase, evict).await;
                drop(permit);
            }
            .instrument(span),
        );
    }
}

/// Per-connection bookkeeping for the idle and header-read timeouts.
#[derive(Debug)]
struct ConnState {
    in_flight: AtomicUsize,
    last_done: Mutex<Instant>,
    /// When the first byte arrived after the connection went idle: a request head has begun.
    head_started: Mutex<Option<Instant>>,
    /// Plaintext bytes read from the connection so far.
    read_total: AtomicU64,
    /// Of those, the bytes the requests done so far are known to have taken (HTTP/1).
    consumed: AtomicU64,
    /// Answers not yet handed to the connection in full.
    answers: AtomicUsize,
    /// When an answer last moved towards the client: handed to the connection, or written.
    write_progress: Mutex<Instant>,
    /// Since when the socket has refused to take bytes, if it does.
    write_blocked: Mutex<Option<Instant>>,
    /// Wakes the connection's driver when a head begins or an answer waits to be written.
    changed: tokio::sync::Notify,
}

/// A connection's timeouts.
#[derive(Debug, Clone, Copy)]
struct Timeouts {
    /// No request, head or answer under way for this long: closed gracefully.
    idle: Duration,
    /// A request head must be complete this long after its first byte (HTTP/1 only).
    header: Option<Duration>,
    /// An answer must move towards the client at least this often.
    write: Duration,
}

/// `duration` after `at`, or as late as can be told apart from never.
fn after(at: Instant, duration: Duration) -> Instant {
    at.checked_add(duration)
        .or_else(|| at.checked_add(Duration::from_secs(100 * 365 * 24 * 3600)))
        .unwrap_or(at)
}

/// What a connection waits for next, and until when.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Wait {
    /// A request is in flight (its own timeout applies); look again at this time.
    Busy(Instant),
    /// A request head has begun and must be complete by then.
    Head(Instant),
    /// Nothing going on; idle from then on.
    Idle(Instant),
    /// An answer waits for the client to read it and must move on by then.
    Write(Instant),
}

impl ConnState {
    fn new() -> Self {
        ConnState {
            in_flight: AtomicUsize::new(0),
            last_done: Mutex::new(Instant::now()),
            head_started: Mutex::new(None),
            read_total: AtomicU64::new(0),
            consumed: AtomicU64::new(0),
            answers: AtomicUsize::new(0),
            write_progress: Mutex::new(Instant::now()),
            write_blocked: Mutex::new(None),
            changed: tokio::sync::Notify::new(),
        }
    }

    /// An answer is ready to be written; it counts until the returned guard is dropped.
    fn answering(self: &Arc<Self>) -> Answering {
        self.wrote();
        if self.answers.fetch_add(1, Ordering::SeqCst) == 0 {
            self.changed.notify_one();
        }
        Answering(self.clone())
    }

    /// Part of an answer moved towards the client.
    fn wrote(&self) {
        *self
            .write_progress
            .lock()
            .unwrap_or_else(|p| p.into_inner()) = Instant::now();
    }

    /// The socket took bytes (`true`) or refused them (`false`).
    fn socket_took(&self, took: bool) {
        let mut blocked = self.write_blocked.lock().unwrap_or_else(|p| p.into_inner());
        match (took, blocked.is_some()) {
            (true, true) => *blocked = None,
            (false, false) => {
                *blocked = Some(Instant::now());
                self.changed.notify_one();
            }
            _ => {}
        }
    }

    /// A request begins; `size` says how many bytes it takes on the wire.
    fn begin(self: &Arc<Self>, size: Arc<WireSize>) -> RequestGuard {
        self.in_flight.fetch_add(1, Ordering::SeqCst);
        *self.head_started.lock().unwrap_or_else(|p| p.into_inner()) = None;
        RequestGuard {
            conn: self.clone(),
            size,
        }
    }

    /// A request is done. Bytes read beyond what it took (a next head sent while it was in
    /// flight, or in the same packet) start the header-read clock: they would otherwise wait
    /// for the idle timeout.
    fn end(&self, size: Option<u64>) {
        let read = self.read_total.load(Ordering::SeqCst);
        let consumed = match size {
            Some(size) => self.consumed.fetch_add(size, Ordering::SeqCst) + size,
            // Unknown (a body not read to its end, or chunked): catch up, and let bytes that
            // come later start the clock as between requests.
            None => {
                self.consumed.store(read, Ordering::SeqCst);
                read
            }
        };
        if read > consumed {
            let mut started = self.head_started.lock().unwrap_or_else(|p| p.into_inner());
            if started.is_none() {
                *started = Some(Instant::now());
                self.changed.notify_one();
            }
        }
    }

    /// Bytes arrived: between requests, that starts the header-read clock.
    fn bytes_read(&self, n: usize) {
        self.read_total.fetch_add(n as u64, Ordering::SeqCst);
        if self.in_flight.load(Ordering::SeqCst) == 0 {
            let mut started = self.head_started.lock().unwrap_or_else(|p| p.into_inner());
            if started.is_none() {
                *started = Some(Instant::now());
                self.changed.notify_one();
            }
        }
    }

    /// The next deadline; `header` is `None` where no header-read timeout applies (HTTP/2).
    fn wait(&self, timeouts: &Timeouts) -> Wait {
        let Timeouts {
            idle,
            header,
            write,
        } = *timeouts;
        let blocked = *self.write_blocked.lock().unwrap_or_else(|p| p.into_inner());
        let answering = (self.answers.load(Ordering::SeqCst) > 0).then(|| {
            *self
                .write_progress
                .lock()
                .unwrap_or_else(|p| p.into_inner())
        });
        if let Some(since) = blocked.into_iter().chain(answering).max() {
            return Wait::Write(after(since, write));
        }
        if self.in_flight.load(Ordering::SeqCst) > 0 {
            return Wait::Busy(after(Instant::now(), idle));
        }
        let started = *self.head_started.lock().unwrap_or_else(|p| p.into_inner());
        match (started, header) {
            (Some(started), Some(header)) => Wait::Head(after(started, header)),
            _ => Wait::Idle(after(
                *self.last_done.lock().unwrap_or_else(|p| p.into_inner()),
                idle,
            )),
        }
    }
}

/// A stream that tells its connection's [`ConnState`] when bytes arrive.
struct Watched<S> {
    inner: S,
    state: Arc<ConnState>,
}

impl<S: tokio::io::AsyncRead + Unpin> tokio::io::AsyncRead for Watched<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let result = Pin::new(&mut self.inner).poll_read(cx, buf);
        if matches!(result, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.state.bytes_read(buf.filled().len() - before);
        }
        result
    }
}

impl<S: tokio::io::AsyncWrite + Unpin> tokio::io::AsyncWrite for Watched<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let result = Pin::new(&mut self.inner).poll_write(cx, buf);
        self.state.socket_took(!result.is_pending());
        result
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let result = Pin::new(&mut self.inner).poll_flush(cx);
        self.state.socket_took(!result.is_pending());
        result
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let result = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        self.state.socket_took(!result.is_pending());
        result
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

/// Counts an answer as waiting to be written until dropped.
#[derive(Debug)]
struct Answering(Arc<ConnState>);

impl Drop for Answering {
    fn drop(&mut self) {
        self.0.answers.fetch_sub(1, Ordering::SeqCst);
    }
}

/// How many bytes an HTTP/1 request took on the wire: its head, as hyper read it, and its body
/// once read to the end with a declared length; `None` while unknown.
#[derive(Debug)]
struct WireSize {
    head: u64,
    /// The body's length once read to its end; `u64::MAX` until then.
    body: AtomicU64,
}

impl WireSize {
    fn of(req: &Request<Incoming>) -> Self {
        let body = if req.body().is_end_stream() {
            0
        } else {
            u64::MAX
        };
        WireSize {
            head: head_size(req),
            body: AtomicU64::new(body),
        }
    }

    /// The body was read to its end, `len` bytes, framed by Content-Length.
    fn body_read(&self, len: usize) {
        self.body.store(len as u64, Ordering::SeqCst);
    }

    fn total(&self) -> Option<u64> {
        let body = self.body.load(Ordering::SeqCst);
        (body != u64::MAX).then(|| self.head.saturating_add(body))
    }
}

/// The size of a request head as a client writes it: request line, `name: value` lines, blank
/// line. Exact for the canonical form kube-apiserver (Go) and hyper send. Extra whitespace
/// makes a real head longer than this, so bytes seem left over: such a client's kept-alive
/// connection is closed after the header-read timeout instead of the idle timeout, never the
/// other way round.
fn head_size(req: &Request<Incoming>) -> u64 {
    let uri = req
        .uri()
        .path_and_query()
        .map_or_else(|| req.uri().to_string().len(), |p| p.as_str().len());
    let line = req.method().as_str().len() + 1 + uri + 1 + "HTTP/1.1".len() + 2;
    let headers: usize = req
        .headers()
        .iter()
        .map(|(name, value)| name.as_str().len() + 2 + value.len() + 2)
        .sum();
    (line + headers + 2) as u64
}

struct RequestGuard {
    conn: Arc<ConnState>,
    size: Arc<WireSize>,
}

impl Drop for RequestGuard {
    fn drop(&mut self) {
        *self
            .conn
            .last_done
            .lock()
            .unwrap_or_else(|p| p.into_inner()) = Instant::now();
        self.conn.end(self.size.total());
        self.conn.in_flight.fetch_sub(1, Ordering::SeqCst);
    }
}

async fn serve_connection(
    tcp: TcpStream,
    acceptor: TlsAcceptor,
    shared: Arc<Shared>,
    phase: watch::Receiver<Phase>,
    evict: watch::Receiver<u64>,
) {
    let limits = shared.config.limits.clone();
    let _ = tcp.set_nodelay(true);
    let stream = match tokio::time::timeout(limits.handshake_timeout, acceptor.accept(tcp)).await {
        Ok(Ok(stream)) => stream,
        Ok(Err(e)) => {
            debug!(error = %e, "TLS handshake failed");
            return;
        }
        Err(_) => {
            debug!("TLS handshake timed out");
            return;
        }
    };
    let h2 = stream.get_ref().1.alpn_protocol() == Some(b"h2");
    let conn_state = Arc::new(ConnState::new());
    let service = {
        let conn_state = conn_state.clone();
        service_fn(move |mut req: Request<Incoming>| {
            let size = Arc::new(WireSize::of(&req));
            req.extensions_mut().insert(size.clone());
            let guard = conn_state.begin(size);
            let shared = shared.clone();
            let conn_state = conn_state.clone();
            async move {
                // Beyond the review's own guard: whatever panics while handling a request
                // becomes a 500 instead of a dropped connection.
                let mut resp = match CatchPanic(Box::pin(handle(&shared, req))).await {
                    Ok(resp) => resp,
                    Err(what) => {
                        error!(panic = %what, "panic while handling a request");
                        failure_response(
                            &Failure::new(
                                StatusCode::INTERNAL_SERVER_ERROR,
                                "internal error while handling the request",
                            ),
                            "",
                        )
                    }
                };
                if !h2 && shared.terminating.load(Ordering::Relaxed) {
                    resp.headers_mut()
                        .insert(header::CONNECTION, HeaderValue::from_static("close"));
                }
                resp.body_mut().answering = Some(conn_state.answering());
                drop(guard);
                Ok::<_, Infallible>(resp)
            }
        })
    };
    let io = TokioIo::new(Watched {
        inner: stream,
        state: conn_state.clone(),
    });
    if h2 {
        let mut builder = http2::Builder::new(TokioExecutor::new());
        builder
            .timer(TokioTimer::new())
            .max_concurrent_streams(limits.h2_max_concurrent_streams)
            .max_pending_accept_reset_streams(limits.h2_max_pending_reset_streams)
            .max_local_error_reset_streams(limits.h2_max_pending_reset_streams)
            .max_header_list_size(u32::try_from(limits.max_header_bytes).unwrap_or(u32::MAX))
            .keep_alive_interval(Duration::from_secs(30))
            .keep_alive_timeout(Duration::from_secs(10));
        let conn = builder.serve_connection(io, service);
        drive(
            conn,
            phase,
            evict,
            Phase::Terminating,
            &conn_state,
            Timeouts {
                idle: limits.idle_timeout,
                header: None,
                write: limits.write_timeout,
            },
        )
        .await;
    } else {
        let mut builder = http1::Builder::new();
        builder
            .timer(TokioTimer::new())
            // hyper's own header-read timeout also runs while a keep-alive connection waits
            // for its next request; ours (in `drive`) starts at the head's first byte.
            .header_read_timeout(None)
            .max_header_size(limits.max_header_bytes)
            // Reads of up to two TLS records: cheap on CPU for large pods, small on memory.
            .max_buf_size(32 * 1024)
            .keep_alive(true);
        let conn = builder.serve_connection(io, service);
        drive(
            conn,
            phase,
            evict,
            Phase::Draining,
            &conn_state,
            Timeouts {
                idle: limits.idle_timeout,
                header: Some(limits.header_read_timeout),
                write: limits.write_timeout,
            },
        )
        .await;
    }
}

/// Runs a connection to its end, asking it to close gracefully when the server reaches
/// `close_at`, when it has been idle for the idle timeout, or when it is idle and `evict` asks
/// for room; a request head not complete in time, or an answer that does not move, ends it at
/// once.
async fn drive<C>(
    conn: C,
    mut phase: watch::Receiver<Phase>,
    mut evict: watch::Receiver<u64>,
    close_at: Phase,
    state: &ConnState,
    timeouts: Timeouts,
) where
    C: GracefulConnection,
    C::Error: std::fmt::Display,
{
    let mut conn = std::pin::pin!(conn);
    let mut closing = false;
    let mut evictable = true;
    loop {
        let wait = state.wait(&timeouts);
        let (Wait::Busy(at) | Wait::Head(at) | Wait::Idle(at) | Wait::Write(at)) = wait;
        let deadline = tokio::time::Instant::from_std(at);
        // Once closing gracefully only an unfinished head or answer still needs a deadline.
        let armed = !closing || matches!(wait, Wait::Head(_) | Wait::Write(_));
        tokio::select! {
            result = conn.as_mut() => {
                if let Err(e) = result {
                    debug!(error = %e, "connection ended with an error");
                }
                return;
            }
            _ = phase.wait_for(|p| *p >= close_at), if !closing => {
                closing = true;
                conn.as_mut().graceful_shutdown();
            }
            () = state.changed.notified() => {}
            changed = evict.changed(), if !closing && evictable => {
                if changed.is_err() {
                    // The accept loop is gone: no more room to make.
                    evictable = false;
                } else if matches!(state.wait(&timeouts), Wait::Idle(_)) {
                    debug!("closing idle connection to make room for a new client");
                    closing = true;
                    conn.as_mut().graceful_shutdown();
                }
            }
            () = tokio::time::sleep_until(deadline), if armed => {
                match state.wait(&timeouts) {
                    Wait::Head(at) if at <= Instant::now() => {
                        debug!("request head not received in time: closing the connection");
                        return;
                    }
                    Wait::Write(at) if at <= Instant::now() => {
                        debug!(timeout = ?timeouts.write, "answer not read by the client in time: closing the connection");
                        return;
                    }
                    Wait::Idle(at) if at <= Instant::now() && !closing => {
                        debug!("closing idle connection");
                        closing = true;
                        conn.as_mut().graceful_shutdown();
                    }
                    _ => {}
                }
            }
        }
    }
}

/// A request that cannot be answered, and why.
#[derive(Debug)]
struct Failure {
    status: StatusCode,
    message: String,
}

impl Failure {
    fn new(status: StatusCode, message: impl Into<String>) -> Self {
        Failure {
            status,
            message: message.into(),
        }
    }
}

/// The most bytes handed to hyper at once: a client that does not read holds the rest back
/// here rather than in hyper's or h2's buffers.
const CHUNK: usize = 16 * 1024;

/// A response body: the whole answer in memory, handed out in slices, holding the request's
/// share of the memory budget until it has been sent (or the connection is gone).
#[derive(Debug, Default)]
struct Body {
    rest: Bytes,
    share: Option<OwnedSemaphorePermit>,
    answering: Option<Answering>,
}

impl hyper::body::Body for Body {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        let this = self.get_mut();
        if this.rest.is_empty() {
            this.share = None;
            this.answering = None;
            return Poll::Ready(None);
        }
        let chunk = this.rest.split_to(this.rest.len().min(CHUNK));
        if let Some(Answering(conn)) = &this.answering {
            conn.wrote();
        }
        if this.rest.is_empty() {
            this.share = None;
            this.answering = None;
        }
        Poll::Ready(Some(Ok(Frame::data(chunk))))
    }

    fn is_end_stream(&self) -> bool {
        self.rest.is_empty()
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(self.rest.len() as u64)
    }
}

fn response(
    status: StatusCode,
    content_type: &'static str,
    body: impl Into<Bytes>,
) -> Response<Body> {
    let mut resp = Response::new(Body {
        rest: body.into(),
        share: None,
        answering: None,
    });
    *resp.status_mut() = status;
    resp.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    resp
}

fn failure_response(failure: &Failure, allow: &'static str) -> Response<Body> {
    let mut resp = response(
        failure.status,
        "text/plain; charset=utf-8",
        format!("{}\n", failure.message),
    );
    if failure.status == StatusCode::METHOD_NOT_ALLOWED {
        resp.headers_mut()
            .insert(header::ALLOW, HeaderValue::from_static(allow));
    }
    resp
}

async fn handle(shared: &Shared, req: Request<Incoming>) -> Response<Body> {
    let method = req.method().clone();
    let path = req.uri().path().to_owned();
    let (result, allow) = match path.as_str() {
        WEBHOOK_PATH => (webhook(shared, req).await, "POST"),
        "/healthz" => (
            get_only(&method).map(|()| text(StatusCode::OK, "ok")),
            "GET, HEAD",
        ),
        "/readyz" => (get_only(&method).and_then(|()| readyz(shared)), "GET, HEAD"),
        "/metrics" => (
            get_only(&method).and_then(|()| metrics(shared)),
            "GET, HEAD",
        ),
        _ => (
            Err(Failure::new(
                StatusCode::NOT_FOUND,
                format!("no handler for path {path}; the webhook is at {WEBHOOK_PATH}"),
            )),
            "",
        ),
    };
    match result {
        Ok(resp) => resp,
        Err(failure) => {
            shared
                .metrics
                .request_failed(failure_reason(failure.status));
            if let Verdict::Log { suppressed } = shared.failure_log.check() {
                warn!(
                    %method,
                    path = %log_limit::truncate(&path, LOGGED_PATH_BYTES),
                    status = failure.status.as_u16(),
                    error = %log_limit::truncate(&failure.message, LOGGED_MESSAGE_BYTES),
                    suppressed,
                    "request failed"
                );
            }
            let mut resp = failure_response(&failure, allow);
            // The rest of the body was never read: close rather than drain it and wait on.
            if matches!(
                failure.status,
                StatusCode::PAYLOAD_TOO_LARGE | StatusCode::REQUEST_TIMEOUT
            ) {
                resp.headers_mut()
                    .insert(header::CONNECTION, HeaderValue::from_static("close"));
            }
            resp
        }
    }
}

/// The `reason` label of a failed request.
fn failure_reason(status: StatusCode) -> &'static str {
    match status {
        StatusCode::BAD_REQUEST => "bad_request",
        StatusCode::NOT_FOUND => "not_found",
        StatusCode::METHOD_NOT_ALLOWED => "method_not_allowed",
        StatusCode::REQUEST_TIMEOUT => "timeout",
        StatusCode::PAYLOAD_TOO_LARGE => "too_large",
        StatusCode::UNSUPPORTED_MEDIA_TYPE => "unsupported_media_type",
        StatusCode::SERVICE_UNAVAILABLE => "unavailable",
        StatusCode::INTERNAL_SERVER_ERROR => "internal",
        _ => "other",
    }
}

/// Says, now and then, how many failed-request lines the rate limit left out.
async fn summarize_suppressed(shared: Arc<Shared>) {
    let mut ticker = tokio::time::interval(log_limit::SUMMARY_EVERY);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    ticker.tick().await;
    loop {
        ticker.tick().await;
        let suppressed = shared.failure_log.take_suppressed();
        if suppressed > 0 {
            warn!(
                suppressed,
                every = ?log_limit::SUMMARY_EVERY,
                "failed requests not logged (rate limit); all are counted in apiserver_proxy_pod_webhook_request_failures_total"
            );
        }
    }
}

fn text(status: StatusCode, body: &'static str) -> Response<Body> {
    response(status, "text/plain; charset=utf-8", body)
}

fn get_only(method: &Method) -> Result<(), Failure> {
    if method == Method::GET || method == Method::HEAD {
        Ok(())
    } else {
        Err(Failure::new(
            StatusCode::METHOD_NOT_ALLOWED,
            format!("method {method} not allowed; use GET"),
        ))
    }
}

fn readyz(shared: &Shared) -> Result<Response<Body>, Failure> {
    if shared.ready.load(Ordering::SeqCst) {
        Ok(text(StatusCode::OK, "ok"))
    } else {
        Err(Failure::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "not ready: shutting down",
        ))
    }
}

fn metrics(shared: &Shared) -> Result<Response<Body>, Failure> {
    let body = shared.metrics.encode().map_err(|e| {
        Failure::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("cannot encode metrics: {e}"),
        )
    })?;
    Ok(response(
        StatusCode::OK,
        "application/openmetrics-text; version=1.0.0; charset=utf-8",
        body,
    ))
}

/// Whether a Content-Type header value is JSON (`application/json`, any parameters).
fn is_json(value: &HeaderValue) -> bool {
    value
        .to_str()
        .ok()
        .and_then(|v| v.split(';').next())
        .is_some_and(|media| media.trim().eq_ignore_ascii_case("application/json"))
}

async fn webhook(shared: &Shared, req: Request<Incoming>) -> Result<Response<Body>, Failure> {
    let started = Instant::now();
    let metrics = &shared.metrics;
    let _in_flight = metrics.in_flight();
    let timeout = shared.config.limits.request_timeout;
    let result = match tokio::time::timeout(timeout, answer(shared, req)).await {
        Ok(result) => result,
        Err(_) => Err(Failure::new(
            StatusCode::REQUEST_TIMEOUT,
            format!("request not received and answered within {timeout:?}"),
        )),
    };
    let status = match &result {
        Ok(resp) => resp.status(),
        Err(f) => f.status,
    };
    metrics.observe(status.as_u16(), started.elapsed());
    result
}

async fn answer(shared: &Shared, req: Request<Incoming>) -> Result<Response<Body>, Failure> {
    let limits = &shared.config.limits;
    if req.method() != Method::POST {
        return Err(Failure::new(
            StatusCode::METHOD_NOT_ALLOWED,
            format!("method {} not allowed; use POST", req.method()),
        ));
    }
    match req.headers().get(header::CONTENT_TYPE) {
        Some(v) if is_json(v) => {}
        Some(v) => {
            return Err(Failure::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                format!(
                    "Content-Type {:?} not supported; use application/json",
                    String::from_utf8_lossy(v.as_bytes())
                ),
            ));
        }
        None => {
            return Err(Failure::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "Content-Type missing; use application/json",
            ));
        }
    }
    let too_large = || {
        Failure::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("body larger than {} bytes", limits.max_body_bytes),
        )
    };
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|len| len > limits.max_body_bytes as u64) {
        return Err(too_large());
    }
    let wire_size = req.extensions().get::<Arc<WireSize>>().cloned();
    let mut incoming = req.into_body();
    // One buffer, allocated once: now for a small body, with its share for a larger one.
    let mut body = Vec::with_capacity(
        declared
            .filter(|&len| len <= limits.body_unbudgeted_bytes as u64)
            .map_or(0, |len| len as usize),
    );
    // The share of the body budget, taken only once the body's bytes begin to arrive, so that
    // a head announcing a large body and sending nothing holds none of it; from then on the
    // rest must arrive within the fill timeout. Held until the answer is sent.
    let mut budget = None;
    let mut fill_deadline = None;
    loop {
        let frame = match fill_deadline {
            None => incoming.frame().await,
            Some(at) => tokio::time::timeout_at(at, incoming.frame())
                .await
                .map_err(|_| {
                    Failure::new(
                        StatusCode::REQUEST_TIMEOUT,
                        format!(
                            "body not received within {:?} of getting its share of the memory budget",
                            limits.body_fill_timeout
                        ),
                    )
                })?,
        };
        let Some(frame) = frame else { break };
        let frame = frame
            .map_err(|e| Failure::new(StatusCode::BAD_REQUEST, format!("cannot read body: {e}")))?;
        let Ok(data) = frame.into_data() else {
            continue;
        };
        let len = body.len() + data.len();
        if len > limits.max_body_bytes {
            return Err(too_large());
        }
        // A body that will pass the unbudgeted size takes its share as soon as its first bytes
        // are here: not before (a head alone holds nothing), not later (unbudgeted bytes held by
        // many connections at once would add up).
        let needs_share = declared.is_none_or(|d| d > limits.body_unbudgeted_bytes as u64)
            || len > limits.body_unbudgeted_bytes;
        if budget.is_none() && needs_share {
            let permits = budget_permits(declared, shared.body_budget_permits);
            budget = Some(
                shared
                    .body_budget
                    .clone()
                    .acquire_many_owned(permits)
                    .await
                    // Never closed; should it ever be, refuse rather than read unbounded.
                    .map_err(|_| {
                        Failure::new(StatusCode::SERVICE_UNAVAILABLE, "body budget closed")
                    })?,
            );
            fill_deadline = Some(tokio::time::Instant::now() + limits.body_fill_timeout);
            // One buffer sized by Content-Length (kube-apiserver sends it): one copy, no list
            // of chunks to join afterwards.
            body.reserve(
                declared
                    .map_or(0, |d| d as usize)
                    .min(1 << 20)
                    .saturating_sub(body.len()),
            );
        }
        body.extend_from_slice(&data);
    }
    if let (Some(size), Some(len)) = (&wire_size, declared)
        && len == body.len() as u64
    {
        size.body_read(body.len());
    }

    let answer = guarded(|| review::review(&body, &shared.config.mutate))?
        .map_err(|e| Failure::new(StatusCode::BAD_REQUEST, e.to_string()))?;
    // The answer must fit in the memory the request already holds, its body (freed once
    // reviewed; at least its share of the budget), plus the unbudgeted answer size.
    let may_hold = body.len().saturating_add(limits.answer_unbudgeted_bytes);
    if answer.body.len() > may_hold {
        return Err(Failure::new(
            StatusCode::BAD_REQUEST,
            format!(
                "the answer would be {} bytes, more than {} bytes larger than the request body; \
                 the pod has {} containers to patch",
                answer.body.len(),
                limits.answer_unbudgeted_bytes,
                match answer.outcome {
                    Outcome::Mutated { containers } => containers,
                    _ => 0,
                }
            ),
        ));
    }
    match &answer.outcome {
        Outcome::Mutated { containers } => {
            shared.metrics.pods_mutated.inc();
            debug!(uid = %log_limit::truncate(&answer.uid, LOGGED_PATH_BYTES), containers, "pod mutated");
        }
        Outcome::Skipped(reason) => {
            shared.metrics.pod_skipped(reason.as_str());
            debug!(uid = %log_limit::truncate(&answer.uid, LOGGED_PATH_BYTES), reason = reason.as_str(), "pod left unchanged");
        }
        Outcome::NotApplicable => {}
    }
    drop(body);
    let mut resp = response(StatusCode::OK, "application/json", answer.body);
    resp.body_mut().share = budget;
    Ok(resp)
}

/// How long to wait after a failed accept, given the previous wait in this run of failures:
/// from 10 ms, doubling, up to 1 s.
fn accept_backoff(previous: Option<Duration>) -> Duration {
    previous.map_or(Duration::from_millis(10), |wait| {
        (wait * 2).min(Duration::from_secs(1))
    })
}

/// The share of the body budget a body takes: its declared length, or the whole budget for a
/// body of unknown length (kube-apiserver always declares it); at most the whole budget.
fn budget_permits(declared: Option<u64>, budget: u32) -> u32 {
    let want = declared.map_or(u64::MAX, |len| len.max(1));
    u32::try_from(want).unwrap_or(u32::MAX).min(budget)
}

fn panic_message(panic: Box<dyn std::any::Any + Send>) -> String {
    panic
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "unknown panic".into())
}

/// A future whose panic is caught and returned as its message.
struct CatchPanic<F>(Pin<Box<F>>);

impl<F: Future> Future for CatchPanic<F> {
    type Output = Result<F::Output, String>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let inner = self.get_mut().0.as_mut();
        match std::panic::catch_unwind(AssertUnwindSafe(|| inner.poll(cx))) {
            Ok(Poll::Pending) => Poll::Pending,
            Ok(Poll::Ready(out)) => Poll::Ready(Ok(out)),
            Err(panic) => Poll::Ready(Err(panic_message(panic))),
        }
    }
}

/// Runs `f`, turning a panic into a 500 so one bad request never takes the server down.
fn guarded<T>(f: impl FnOnce() -> T) -> Result<T, Failure> {
    std::panic::catch_unwind(AssertUnwindSafe(f)).map_err(|panic| {
        let what = panic_message(panic);
        error!(panic = %what, "panic while reviewing a request");
        Failure::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal error while reviewing the request",
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn panic_becomes_500() {
        let failure = guarded(|| -> u8 { panic!("boom") }).expect_err("must fail");
        assert_eq!(failure.status, StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(guarded(|| 7).ok().map(|v| v + 1), Some(8));
    }

    #[tokio::test]
    async fn panic_in_a_handler_future_is_caught() {
        let caught: Result<(), String> = CatchPanic(Box::pin(async {
            tokio::task::yield_now().await;
            panic!("handler bug");
        }))
        .await;
        assert_eq!(caught, Err("handler bug".to_owned()));
        let fine = CatchPanic(Box::pin(async { 5 })).await;
        assert_eq!(fine, Ok(5));
    }

    #[test]
    fn failure_reasons() {
        for (status, reason) in [
            (StatusCode::BAD_REQUEST, "bad_request"),
            (StatusCode::NOT_FOUND, "not_found"),
            (StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed"),
            (StatusCode::REQUEST_TIMEOUT, "timeout"),
            (StatusCode::PAYLOAD_TOO_LARGE, "too_large"),
            (StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type"),
            (StatusCode::SERVICE_UNAVAILABLE, "unavailable"),
            (StatusCode::INTERNAL_SERVER_ERROR, "internal"),
            (StatusCode::IM_A_TEAPOT, "other"),
        ] {
            assert_eq!(failure_reason(status), reason, "{status}");
        }
    }

    #[test]
    fn accept_backs_off() {
        let ms = Duration::from_millis;
        for (previous, want) in [
            (None, ms(10)),
            (Some(ms(10)), ms(20)),
            (Some(ms(640)), ms(1000)),
            (Some(ms(1000)), ms(1000)),
        ] {
            assert_eq!(accept_backoff(previous), want, "{previous:?}");
        }
    }

    #[test]
    fn budget_share() {
        let budget = 1 << 20;
        for (declared, want) in [
            (Some(0), 1),
            (Some(80_000), 80_000),
            (Some(1 << 20), budget),
            (Some(7_000_000), budget),
            (Some(u64::MAX), budget),
            (None, budget),
        ] {
            assert_eq!(budget_permits(declared, budget), want, "{declared:?}");
        }
    }

    #[test]
    fn json_content_types() {
        for ok in [
            "application/json",
            "application/json; charset=utf-8",
            "Application/JSON",
        ] {
            assert!(is_json(&HeaderValue::from_static(ok)), "{ok}");
        }
        for bad in [
            "text/plain",
            "application/jsonx",
            "application/x-www-form-urlencoded",
            "",
        ] {
            assert!(!is_json(&HeaderValue::from_static(bad)), "{bad}");
        }
    }
}
