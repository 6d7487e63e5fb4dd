// SPDX-FileCopyrightText: 2026 apiserver-proxy contributors
// SPDX-License-Identifier: Apache-2.0

//! One connection: the TLS handshake, HTTP/1.1 or HTTP/2, driven to its end by the timeouts
//! its state (`state.rs`) calls for; requests hyper refuses before a handler sees them are
//! counted and logged here.

use std::convert::Infallible;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use hyper::body::Incoming;
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

use super::answer::{Body, ClientCert, Failure, WireSize, failure_response};
use super::handshakes::Place;
use super::routes::{catch_panic, handle};
use super::state::{
    ConnState, Ending, RequestGuard, Timeouts, UNDER_PRESSURE, deadline_passed, evictable_at,
};
use super::*;
use crate::config::Limits;

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

pub(super) async fn serve_connection(
    tcp: TcpStream,
    acceptor: TlsAcceptor,
    shared: Arc<Shared>,
    phase: watch::Receiver<Phase>,
    mut evict: watch::Receiver<u64>,
    place: Place,
) {
    let limits = shared.config.limits.clone();
    let _ = tcp.set_nodelay(true);
    let accept = acceptor.accept(tcp);
    let Some(stream) = handshake(accept, limits.handshake_timeout, &mut evict, &place).await else {
        return;
    };
    drop(place);
    let h2 = stream.get_ref().1.alpn_protocol() == Some(b"h2");
    let client_cert = ClientCert::of(stream.get_ref().1);
    let conn_state = Arc::new(ConnState::new());
    let service = {
        let conn_state = conn_state.clone();
        let shared = shared.clone();
        service_fn(move |mut req: Request<Incoming>| {
            // Counted from the head's arrival, before the handler first runs.
            let size = Arc::new(WireSize::of(&req));
            req.extensions_mut().insert(size.clone());
            req.extensions_mut().insert(client_cert);
            let guard = conn_state.begin(size);
            serve_request(shared.clone(), conn_state.clone(), h2, req, guard)
        })
    };
    let io = TokioIo::new(Watched {
        inner: stream,
        state: conn_state.clone(),
    });
    let watches = Watches {
        phase,
        evict,
        state: &conn_state,
    };
    if h2 {
        serve_h2(io, service, &limits, watches).await;
    } else if let Err(e) = serve_h1(io, service, &limits, watches).await
        && let Some(failure) = refused(&e)
    {
        failure.record(&shared, "-", "-");
    }
}

/// The TLS handshake, within `timeout`; once room is asked for (`evict`), within
/// [`UNDER_PRESSURE`] of its start; given up at once when its slot is wanted (`place`).
/// `None` if it failed, took too long or was given up.
async fn handshake<F, S>(
    accept: F,
    timeout: Duration,
    evict: &mut watch::Receiver<u64>,
    place: &Place,
) -> Option<S>
where
    F: std::future::Future<Output = io::Result<S>>,
{
    let started = tokio::time::Instant::now();
    let mut deadline = started + timeout;
    let mut accept = std::pin::pin!(accept);
    let mut evictable = true;
    loop {
        tokio::select! {
            result = accept.as_mut() => {
                return result
                    .inspect_err(|e| debug!(error = %e, "TLS handshake failed"))
                    .ok();
            }
            () = tokio::time::sleep_until(deadline) => {
                debug!(took = ?started.elapsed(), "TLS handshake not finished in time: closing the connection");
                return None;
            }
            () = place.asked_to_go() => {
                debug!(took = ?started.elapsed(), "the oldest TLS handshake under way, closed to make room");
                return None;
            }
            changed = evict.changed(), if evictable => {
                // Once is enough: a flood of new clients must not wake every handshake for
                // each of them.
                evictable = false;
                if changed.is_ok() {
                    deadline = deadline.min(started + UNDER_PRESSURE);
                }
            }
        }
    }
}

/// A request hyper refused before any handler saw it (it answered it itself: 400 for a
/// malformed head, 431 for one too large or with too many fields), as a failure to count and
/// log; `None` for an error that is not a refused request (a closed or reset connection).
fn refused(error: &hyper::Error) -> Option<Failure> {
    let status = if error.is_parse_too_large() {
        StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE
    } else if error.is_parse() {
        StatusCode::BAD_REQUEST
    } else {
        return None;
    };
    Some(Failure::protocol(status, error.to_string()))
}

type Io = TokioIo<Watched<tokio_rustls::server::TlsStream<TcpStream>>>;

/// What drives a connection besides its own bytes: the server's phase, its calls for room,
/// and the connection's own state.
struct Watches<'a> {
    phase: watch::Receiver<Phase>,
    evict: watch::Receiver<u64>,
    state: &'a ConnState,
}

/// HTTP/2, with the stream and reset limits; no header-read timeout (streams have none).
async fn serve_h2<S>(io: Io, service: S, limits: &Limits, watches: Watches<'_>)
where
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
    if let Err(e) = drive(conn, watches, Phase::Terminating, timeouts).await {
        debug!(error = %e, "HTTP/2 connection ended with an error");
    }
}

/// HTTP/1.1 with keep-alive and our own header-read timeout.
async fn serve_h1<S>(
    io: Io,
    service: S,
    limits: &Limits,
    watches: Watches<'_>,
) -> Result<(), hyper::Error>
where
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
    drive(conn, watches, Phase::Draining, timeouts).await
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
/// for room; a request head not complete in time, an answer that does not move, or a client
/// that does not close when asked ends it at once. Returns how the connection ended.
async fn drive<C>(
    conn: C,
    watches: Watches<'_>,
    close_at: Phase,
    timeouts: Timeouts,
) -> Result<(), C::Error>
where
    C: GracefulConnection,
    C::Error: std::fmt::Display,
{
    let Watches {
        mut phase,
        mut evict,
        state,
    } = watches;
    let mut conn = std::pin::pin!(conn);
    let mut evictable = true;
    // Room was asked for while the connection was idle, but not long enough to close it yet.
    let mut make_room_at: Option<Instant> = None;
    let close = |mut conn: Pin<&mut C>| {
        state.close_asked();
        conn.as_mut().graceful_shutdown();
    };
    loop {
        let at = state.wait(&timeouts).at();
        let at = make_room_at.map_or(at, |room| room.min(at));
        let closing = state.is_closing();
        tokio::select! {
            result = conn.as_mut() => {
                if let Err(e) = &result {
                    debug!(error = %e, "connection ended with an error");
                }
                return result;
            }
            _ = phase.wait_for(|p| *p >= close_at), if !closing => close(conn.as_mut()),
            () = state.changed.notified() => {}
            changed = evict.changed(), if !closing && evictable => {
                if changed.is_err() {
                    // The accept loop is gone: no more room to make.
                    evictable = false;
                } else {
                    make_room_at = evictable_at(state, &timeouts);
                }
            }
            () = tokio::time::sleep_until(tokio::time::Instant::from_std(at)) => {
                match deadline_passed(state, &timeouts) {
                    Some(Ending::AtOnce) => return Ok(()),
                    Some(Ending::Gracefully) => close(conn.as_mut()),
                    None => {}
                }
            }
        }
        if let Some(room) = make_room_at
            && room <= Instant::now()
        {
            make_room_at = None;
            // Still idle since before room was asked for: close it.
            if evictable_at(state, &timeouts).is_some_and(|at| at <= Instant::now()) {
                debug!("closing idle connection to make room for a new client");
                close(conn.as_mut());
            }
        }
    }
}
