// SPDX-FileCopyrightText: 2026 apiserver-proxy contributors
// SPDX-License-Identifier: Apache-2.0

//! One connection: TLS, HTTP/1.1 or HTTP/2, and the state its timeouts are judged by (idle,
//! header read, body fill, answers that do not drain).

use std::convert::Infallible;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use hyper::body::{Body as _, Incoming};
use hyper::header::{self, HeaderValue};
use hyper::server::conn::{http1, http2};
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulConnection;
use tokio::net::TcpStream;
use tokio::sync::watch;
use tokio_rustls::TlsAcceptor;
use tracing::{debug, error};

use super::routes::{Body, Failure, catch_panic, failure_response, handle};
use super::*;
use crate::config::Limits;

/// Per-connection bookkeeping for the idle and header-read timeouts.
#[derive(Debug)]
pub(super) struct ConnState {
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
    pub(super) fn wrote(&self) {
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
pub(super) struct Answering(pub(super) Arc<ConnState>);

impl Drop for Answering {
    fn drop(&mut self) {
        self.0.answers.fetch_sub(1, Ordering::SeqCst);
    }
}

/// How many bytes an HTTP/1 request took on the wire: its head, as hyper read it, and its body
/// once read to the end with a declared length; `None` while unknown.
#[derive(Debug)]
pub(super) struct WireSize {
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
    pub(super) fn body_read(&self, len: usize) {
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

pub(super) async fn serve_connection(
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
            // Counted from the head's arrival, before the handler first runs.
            let size = Arc::new(WireSize::of(&req));
            req.extensions_mut().insert(size.clone());
            let guard = conn_state.begin(size);
            serve_request(shared.clone(), conn_state.clone(), h2, req, guard)
        })
    };
    let io = TokioIo::new(Watched {
        inner: stream,
        state: conn_state.clone(),
    });
    if h2 {
        serve_h2(io, service, &limits, phase, evict, &conn_state).await;
    } else {
        serve_h1(io, service, &limits, phase, evict, &conn_state).await;
    }
}

type Io = TokioIo<Watched<tokio_rustls::server::TlsStream<TcpStream>>>;

/// HTTP/2, with the stream and reset limits; no header-read timeout (streams have none).
async fn serve_h2<S>(
    io: Io,
    service: S,
    limits: &Limits,
    phase: watch::Receiver<Phase>,
    evict: watch::Receiver<u64>,
    conn_state: &ConnState,
) where
    S: hyper::service::HttpService<Incoming, ResBody = Body> + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let mut builder = http2::Builder::new(TokioExecutor::new());
    builder
        .timer(TokioTimer::new())
        .max_concurrent_streams(limits.h2_max_concurrent_streams)
        .max_pending_accept_reset_streams(limits.h2_max_pending_reset_streams)
        .max_local_error_reset_streams(limits.h2_max_pending_reset_streams)
        .max_header_list_size(u32::try_from(limits.max_header_bytes).unwrap_or(u32::MAX))
        .keep_alive_interval(Duration::from_secs(30))
        .keep_alive_timeout(Duration::from_secs(10));
    let timeouts = Timeouts {
        idle: limits.idle_timeout,
        header: None,
        write: limits.write_timeout,
    };
    let conn = builder.serve_connection(io, service);
    drive(conn, phase, evict, Phase::Terminating, conn_state, timeouts).await;
}

/// HTTP/1.1 with keep-alive and our own header-read timeout.
async fn serve_h1<S>(
    io: Io,
    service: S,
    limits: &Limits,
    phase: watch::Receiver<Phase>,
    evict: watch::Receiver<u64>,
    conn_state: &ConnState,
) where
    S: hyper::service::HttpService<Incoming, ResBody = Body>,
    S::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        // hyper's own header-read timeout also runs while a keep-alive connection waits for
        // its next request; ours (in `drive`) starts at the head's first byte.
        .header_read_timeout(None)
        .max_header_size(limits.max_header_bytes)
        // Reads of up to one TLS record: what a connection waiting for its share of the body
        // budget holds (it reads its first body frame before waiting); 32 KiB put 64 such
        // connections over 15 MiB at peak, with no CPU saved.
        .max_buf_size(16 * 1024)
        .keep_alive(true);
    let timeouts = Timeouts {
        idle: limits.idle_timeout,
        header: Some(limits.header_read_timeout),
        write: limits.write_timeout,
    };
    let conn = builder.serve_connection(io, service);
    drive(conn, phase, evict, Phase::Draining, conn_state, timeouts).await;
}

/// One request: routed and handled, a panic turned into a 500, the answer tied to the
/// connection's write watch (so an answer that does not drain closes the connection).
async fn serve_request(
    shared: Arc<Shared>,
    conn_state: Arc<ConnState>,
    h2: bool,
    req: Request<Incoming>,
    guard: RequestGuard,
) -> Result<Response<Body>, Infallible> {
    // Beyond the review's own catch: whatever panics while handling a request becomes a 500
    // instead of a dropped connection.
    let mut resp = match catch_panic(handle(&shared, req)).await {
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
    if !h2 && shared.terminating() {
        resp.headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
    resp.body_mut().answering = Some(conn_state.answering());
    drop(guard);
    Ok(resp)
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
                match deadline_passed(state, &timeouts, closing) {
                    Some(Ending::AtOnce) => return,
                    Some(Ending::Gracefully) => {
                        closing = true;
                        conn.as_mut().graceful_shutdown();
                    }
                    None => {}
                }
            }
        }
    }
}

/// How a connection whose deadline passed ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ending {
    /// Closed now: a request head or an answer is stuck half-way.
    AtOnce,
    /// Asked to close after what is in flight: it was idle.
    Gracefully,
}

/// What a passed deadline calls for, looked at again now: something may have happened since
/// it was set (`None`: nothing to do).
fn deadline_passed(state: &ConnState, timeouts: &Timeouts, closing: bool) -> Option<Ending> {
    match state.wait(timeouts) {
        Wait::Head(at) if at <= Instant::now() => {
            debug!("request head not received in time: closing the connection");
            Some(Ending::AtOnce)
        }
        Wait::Write(at) if at <= Instant::now() => {
            debug!(timeout = ?timeouts.write, "answer not read by the client in time: closing the connection");
            Some(Ending::AtOnce)
        }
        Wait::Idle(at) if at <= Instant::now() && !closing => {
            debug!("closing idle connection");
            Some(Ending::Gracefully)
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECOND: Duration = Duration::from_secs(1);

    /// Timeouts long enough that nothing expires while a test looks.
    fn long(header: Option<Duration>) -> Timeouts {
        Timeouts {
            idle: 100 * SECOND,
            header,
            write: 10 * SECOND,
        }
    }

    /// A request of `head` and `body` bytes, as hyper would have read it.
    fn request(state: &Arc<ConnState>, head: u64, body: u64) -> RequestGuard {
        state.begin(Arc::new(WireSize {
            head,
            body: AtomicU64::new(body),
        }))
    }

    /// Whether `notified` completes at once: a change was signalled to the driver.
    async fn signalled(state: &ConnState) -> bool {
        tokio::time::timeout(Duration::from_millis(50), state.changed.notified())
            .await
            .is_ok()
    }

    #[tokio::test]
    async fn idle_until_a_head_begins_then_the_header_clock_runs() {
        let state = Arc::new(ConnState::new());
        let timeouts = long(Some(5 * SECOND));
        let opened = Instant::now();
        let Wait::Idle(at) = state.wait(&timeouts) else {
            panic!("a new connection is idle: {:?}", state.wait(&timeouts));
        };
        assert!(
            at >= opened + timeouts.idle - SECOND && at <= after(Instant::now(), timeouts.idle)
        );
        assert!(!signalled(&state).await);

        state.bytes_read(10);
        assert!(signalled(&state).await, "a head beginning wakes the driver");
        let Wait::Head(at) = state.wait(&timeouts) else {
            panic!(
                "bytes between requests start a head: {:?}",
                state.wait(&timeouts)
            );
        };
        assert!(at <= after(Instant::now(), 5 * SECOND));
        // More bytes of the same head do not restart its clock.
        state.bytes_read(10);
        assert_eq!(state.wait(&timeouts), Wait::Head(at));
        // HTTP/2 has no header-read timeout: the connection stays idle.
        assert!(matches!(state.wait(&long(None)), Wait::Idle(_)));
    }

    #[test]
    fn busy_while_a_request_is_in_flight_then_idle_again() {
        let state = Arc::new(ConnState::new());
        let timeouts = long(Some(5 * SECOND));
        state.bytes_read(150);
        let guard = request(&state, 100, 50);
        assert!(matches!(state.wait(&timeouts), Wait::Busy(_)));
        // Bytes while in flight (a body) start no head.
        state.bytes_read(0);
        assert!(matches!(state.wait(&timeouts), Wait::Busy(_)));
        let before_end = Instant::now();
        drop(guard);
        // Everything read was the request's: idle, counted from its end.
        let Wait::Idle(at) = state.wait(&timeouts) else {
            panic!("{:?}", state.wait(&timeouts));
        };
        assert!(at >= after(before_end, timeouts.idle));
    }

    #[tokio::test]
    async fn bytes_beyond_a_finished_request_start_the_next_head() {
        let state = Arc::new(ConnState::new());
        let timeouts = long(Some(5 * SECOND));
        let guard = request(&state, 100, 50);
        // The request and the first bytes of the next one, in one read.
        state.bytes_read(150 + 20);
        assert!(matches!(state.wait(&timeouts), Wait::Busy(_)));
        drop(guard);
        assert!(signalled(&state).await);
        assert!(matches!(state.wait(&timeouts), Wait::Head(_)));

        // A body of unknown size: what was read counts as the request's.
        let state = Arc::new(ConnState::new());
        let guard = request(&state, 100, u64::MAX);
        state.bytes_read(500);
        drop(guard);
        assert!(matches!(state.wait(&timeouts), Wait::Idle(_)));
    }

    #[tokio::test]
    async fn an_answer_must_keep_moving() {
        let state = Arc::new(ConnState::new());
        let timeouts = long(Some(5 * SECOND));
        let guard = request(&state, 100, 0);
        let answering = state.answering();
        assert!(
            signalled(&state).await,
            "an answer waiting wakes the driver"
        );
        drop(guard);
        let Wait::Write(first) = state.wait(&timeouts) else {
            panic!("{:?}", state.wait(&timeouts));
        };
        std::thread::sleep(Duration::from_millis(5));
        state.wrote();
        let Wait::Write(moved) = state.wait(&timeouts) else {
            panic!("{:?}", state.wait(&timeouts));
        };
        assert!(moved > first, "progress pushes the write deadline");
        drop(answering);
        assert!(matches!(state.wait(&timeouts), Wait::Idle(_)));

        // A socket that refuses bytes holds the connection to the write timeout too.
        state.socket_took(false);
        assert!(signalled(&state).await);
        assert!(matches!(state.wait(&timeouts), Wait::Write(_)));
        state.socket_took(true);
        assert!(matches!(state.wait(&timeouts), Wait::Idle(_)));
    }

    #[test]
    fn a_passed_deadline_ends_the_connection_as_its_wait_says() {
        let none = Timeouts {
            idle: Duration::ZERO,
            header: Some(Duration::ZERO),
            write: Duration::ZERO,
        };
        let state = Arc::new(ConnState::new());
        assert_eq!(
            deadline_passed(&state, &none, false),
            Some(Ending::Gracefully)
        );
        // Already closing: an idle connection needs nothing more.
        assert_eq!(deadline_passed(&state, &none, true), None);
        // Not idle for long yet: nothing.
        assert_eq!(deadline_passed(&state, &long(None), false), None);

        state.bytes_read(1);
        assert_eq!(deadline_passed(&state, &none, true), Some(Ending::AtOnce));
        let guard = request(&state, 1, 0);
        assert_eq!(deadline_passed(&state, &none, false), None, "busy");
        let answering = state.answering();
        assert_eq!(deadline_passed(&state, &none, false), Some(Ending::AtOnce));
        drop((guard, answering));
    }

    #[test]
    fn the_latest_representable_deadline_stands_for_never() {
        let now = Instant::now();
        assert_eq!(after(now, SECOND), now + SECOND);
        assert!(after(now, Duration::MAX) > now + 50 * 365 * 24 * 3600 * SECOND);
    }
}
