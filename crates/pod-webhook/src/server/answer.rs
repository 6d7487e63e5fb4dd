// SPDX-FileCopyrightText: 2026 apiserver-proxy contributors
// SPDX-License-Identifier: Apache-2.0

//! What the connection (`conn.rs`) and the handlers (`routes.rs`) share, below both: a failed
//! request and how it is counted and logged, the answer's body with the memory it holds, how
//! its writing is watched, and the size a request took on the wire.

use std::convert::Infallible;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Instant;

use hyper::body::{Body as _, Bytes, Frame, Incoming, SizeHint};
use hyper::header::{self, HeaderValue};
use hyper::{Request, Response, StatusCode};
use tokio::sync::Notify;
use tracing::warn;

use crate::log_limit::{self, Verdict};

use super::budget::Share;
use super::{LOGGED_MESSAGE_BYTES, LOGGED_PATH_BYTES, Shared};

/// What the TLS handshake says about the client, on each of its requests (an extension).
/// With a client CA (`--client-ca-name`) every client is asked for a certificate, and one that
/// the CA did not sign fails the handshake; a client may present none, and then only the
/// probes and `/metrics` answer it, never the review path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum ClientCert {
    /// It presented a certificate the client CA verified.
    Verified,
    /// It presented none (or no client CA is configured).
    None,
}

impl ClientCert {
    /// What a finished handshake says.
    pub(super) fn of(tls: &rustls::ServerConnection) -> ClientCert {
        match tls.peer_certificates() {
            Some(chain) if !chain.is_empty() => ClientCert::Verified,
            _ => ClientCert::None,
        }
    }
}

/// A request that cannot be answered, and why.
#[derive(Debug)]
pub(super) struct Failure {
    pub(super) status: StatusCode,
    pub(super) message: String,
    /// The `reason` label it is counted under.
    reason: &'static str,
}

impl Failure {
    pub(super) fn new(status: StatusCode, message: impl Into<String>) -> Self {
        Failure {
            status,
            message: message.into(),
            reason: failure_reason(status),
        }
    }

    /// A request hyper refused before it reached a handler (a malformed or oversized head):
    /// counted under a reason of its own.
    pub(super) fn protocol(status: StatusCode, message: impl Into<String>) -> Self {
        Failure {
            status,
            message: message.into(),
            reason: "protocol",
        }
    }

    /// Counts the failure and logs it, at a bounded rate.
    pub(super) fn record(&self, shared: &Shared, method: &str, path: &str) {
        shared.metrics.request_failed(self.reason);
        if let Verdict::Log { suppressed } = shared.failure_log.check() {
            warn!(
                method = %log_limit::truncate(method, LOGGED_PATH_BYTES),
                path = %log_limit::truncate(path, LOGGED_PATH_BYTES),
                status = self.status.as_u16(),
                reason = self.reason,
                error = %log_limit::truncate(&self.message, LOGGED_MESSAGE_BYTES),
                suppressed,
                "request failed"
            );
        }
    }
}

/// The `reason` label of a failed request, by its status.
fn failure_reason(status: StatusCode) -> &'static str {
    match status {
        StatusCode::BAD_REQUEST => "bad_request",
        StatusCode::FORBIDDEN => "unauthenticated",
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

/// The most bytes handed to hyper at once: a client that does not read holds the rest back
/// here rather than in hyper's or h2's buffers.
const CHUNK: usize = 16 * 1024;

/// A response body: the whole answer in memory, handed out in slices, holding its share of
/// the memory budget until it has been sent (or the connection is gone).
#[derive(Debug, Default)]
pub(super) struct Body {
    rest: Bytes,
    pub(super) share: Share,
    pub(super) answering: Option<Answering>,
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
            this.share = Share::default();
            this.answering = None;
            return Poll::Ready(None);
        }
        let chunk = this.rest.split_to(this.rest.len().min(CHUNK));
        if let Some(Answering(writes)) = &this.answering {
            writes.wrote();
        }
        if this.rest.is_empty() {
            this.share = Share::default();
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

pub(super) fn response(
    status: StatusCode,
    content_type: &'static str,
    body: impl Into<Bytes>,
) -> Response<Body> {
    let mut resp = Response::new(Body {
        rest: body.into(),
        share: Share::default(),
        answering: None,
    });
    *resp.status_mut() = status;
    resp.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    resp
}

pub(super) fn failure_response(failure: &Failure, allow: &'static str) -> Response<Body> {
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

/// How a connection watches its answers being written: how many wait, and when one last moved.
#[derive(Debug)]
pub(super) struct Writes {
    answers: AtomicUsize,
    progress: Mutex<Instant>,
    /// Wakes the connection's driver when an answer begins to wait.
    changed: Arc<Notify>,
}

impl Writes {
    pub(super) fn new(changed: Arc<Notify>) -> Self {
        Writes {
            answers: AtomicUsize::new(0),
            progress: Mutex::new(Instant::now()),
            changed,
        }
    }

    /// An answer is ready to be written; it counts until the returned guard is dropped.
    pub(super) fn answering(self: &Arc<Self>) -> Answering {
        self.wrote();
        if self.answers.fetch_add(1, Ordering::SeqCst) == 0 {
            self.changed.notify_one();
        }
        Answering(self.clone())
    }

    /// Part of an answer moved towards the client.
    pub(super) fn wrote(&self) {
        *self.progress.lock().unwrap_or_else(|p| p.into_inner()) = Instant::now();
    }

    /// When an answer waiting to be written last moved; `None` if none waits.
    pub(super) fn waiting_since(&self) -> Option<Instant> {
        (self.answers.load(Ordering::SeqCst) > 0)
            .then(|| *self.progress.lock().unwrap_or_else(|p| p.into_inner()))
    }
}

/// Counts an answer as waiting to be written until dropped.
#[derive(Debug)]
pub(super) struct Answering(Arc<Writes>);

impl Drop for Answering {
    fn drop(&mut self) {
        self.0.answers.fetch_sub(1, Ordering::SeqCst);
    }
}

/// How many bytes an HTTP/1 request took on the wire, within bounds: its head, as hyper read
/// it, and its body once read to the end with a declared length.
#[derive(Debug)]
pub(super) struct WireSize {
    /// The head written as compactly as HTTP allows (`name:value`, bare line feeds).
    head_min: u64,
    /// The head as kube-apiserver (Go) and hyper write it (`name: value`, CRLF).
    head_canonical: u64,
    /// The body's length once read to its end; `u64::MAX` until then.
    body: AtomicU64,
}

impl WireSize {
    pub(super) fn of(req: &Request<Incoming>) -> Self {
        let body = if req.body().is_end_stream() {
            0
        } else {
            u64::MAX
        };
        let (head_min, head_canonical) = head_size(req);
        WireSize {
            head_min,
            head_canonical,
            body: AtomicU64::new(body),
        }
    }

    #[cfg(test)]
    pub(super) fn known(head_min: u64, head_canonical: u64, body: u64) -> Self {
        WireSize {
            head_min,
            head_canonical,
            body: AtomicU64::new(body),
        }
    }

    /// The body was read to its end, `len` bytes, framed by Content-Length.
    pub(super) fn body_read(&self, len: usize) {
        self.body.store(len as u64, Ordering::SeqCst);
    }

    /// The fewest bytes the request can have taken, and how many more it takes when written
    /// canonically; `None` while its body's length is unknown.
    pub(super) fn bounds(&self) -> Option<(u64, u64)> {
        let body = self.body.load(Ordering::SeqCst);
        (body != u64::MAX).then(|| {
            (
                self.head_min.saturating_add(body),
                self.head_canonical.saturating_sub(self.head_min),
            )
        })
    }
}

/// The size of a request head, written as compactly as HTTP allows (request line, `name:value`
/// lines and the blank line, each ended by a bare line feed) and as Go and hyper write it
/// (`name: value`, CRLF). Extra whitespace makes a real head longer than either.
fn head_size(req: &Request<Incoming>) -> (u64, u64) {
    let uri = req
        .uri()
        .path_and_query()
        .map_or_else(|| req.uri().to_string().len(), |p| p.as_str().len());
    let line = req.method().as_str().len() + 1 + uri + 1 + "HTTP/1.1".len();
    let fields: usize = req
        .headers()
        .iter()
        .map(|(name, value)| name.as_str().len() + 1 + value.len())
        .sum();
    let lines = 1 + req.headers().len() + 1;
    let min = line + fields + lines;
    // Canonical: a space after each colon, and CR before each line feed.
    let canonical = min + req.headers().len() + lines;
    (min as u64, canonical as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failure_reasons() {
        for (status, reason) in [
            (StatusCode::BAD_REQUEST, "bad_request"),
            (StatusCode::FORBIDDEN, "unauthenticated"),
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
            assert_eq!(Failure::new(status, "x").reason, reason);
        }
        let refused = Failure::protocol(StatusCode::BAD_REQUEST, "invalid header");
        assert_eq!(refused.reason, "protocol");
    }

    /// Every reason a failure can be counted under is one the metric shows from the start,
    /// and every status a review can fail with has a reason of its own.
    #[test]
    fn every_failure_reason_is_a_known_one() {
        use crate::metrics::{FAILURE_REASONS, REVIEW_CODES};
        for code in 100..600 {
            let status = StatusCode::from_u16(code).expect("a status");
            let reason = Failure::new(status, "x").reason;
            assert!(FAILURE_REASONS.contains(&reason), "{status}: {reason}");
        }
        let refused = Failure::protocol(StatusCode::BAD_REQUEST, "x");
        assert!(FAILURE_REASONS.contains(&refused.reason));
        for code in REVIEW_CODES.into_iter().filter(|code| *code != 200) {
            let status = StatusCode::from_u16(code).expect("a status");
            assert_ne!(failure_reason(status), "other", "{status}");
        }
    }
}
