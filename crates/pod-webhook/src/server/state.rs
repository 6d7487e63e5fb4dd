// SPDX-FileCopyrightText: 2026 apiserver-proxy contributors
// SPDX-License-Identifier: Apache-2.0

//! A connection's state and the decisions its timeouts make: idle, request head begun, request
//! in flight, answer waiting for the client, asked to close.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::Notify;
use tracing::debug;

use super::answer::{Answering, WireSize, Writes};

/// A connection asked to close that is idle for this long (or its idle timeout, if shorter)
/// is closed at once: an HTTP/2 client that never acknowledges the GOAWAY's PING would
/// otherwise keep it for good.
pub(super) const CLOSE_GRACE: Duration = Duration::from_secs(5);

/// While room is wanted for new clients, a connection gets this long to finish its TLS
/// handshake, and, idle after a request, to send its next one before it is closed to make
/// room. A step takes a few round trips; a flood of connections that never take it frees its
/// slots this fast.
pub(super) const UNDER_PRESSURE: Duration = Duration::from_millis(500);

/// While room is wanted, a client that finished its handshake gets this long to send its first
/// request: a busy server may take a moment to read it, and closing a connection the client
/// has just written its request on fails that request.
pub(super) const FIRST_REQUEST_UNDER_PRESSURE: Duration = Duration::from_secs(2);

/// Per-connection bookkeeping for the idle and header-read timeouts.
#[derive(Debug)]
pub(super) struct ConnState {
    in_flight: AtomicUsize,
    last_done: Mutex<Instant>,
    /// When the first byte arrived after the connection went idle: a request head has begun.
    head_started: Mutex<Option<Instant>>,
    /// Plaintext bytes read from the connection so far.
    read_total: AtomicU64,
    /// Of those, the fewest bytes the requests done so far can have taken (HTTP/1).
    consumed: AtomicU64,
    /// How many more bytes than `consumed` those requests took if written canonically.
    slack: AtomicU64,
    /// Answers waiting to be written, and when one last moved.
    pub(super) writes: Arc<Writes>,
    /// Since when the socket has refused to take bytes, if it does.
    write_blocked: Mutex<Option<Instant>>,
    /// When the connection was asked to close, if it was.
    closing: Mutex<Option<Instant>>,
    /// Wakes the connection's driver when a head begins or an answer waits to be written.
    pub(super) changed: Arc<Notify>,
}

/// A connection's timeouts.
#[derive(Debug, Clone, Copy)]
pub(super) struct Timeouts {
    /// No request, head or answer under way for this long: closed gracefully.
    pub(super) idle: Duration,
    /// A request head must be complete this long after its first byte (HTTP/1 only).
    pub(super) header: Option<Duration>,
    /// An answer must move towards the client at least this often.
    pub(super) write: Duration,
}

/// `duration` after `at`, or as late as can be told apart from never.
pub(super) fn after(at: Instant, duration: Duration) -> Instant {
    at.checked_add(duration)
        .or_else(|| at.checked_add(Duration::from_secs(100 * 365 * 24 * 3600)))
        .unwrap_or(at)
}

/// What a connection waits for next, and until when.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Wait {
    /// A request is in flight (its own timeout applies); look again at this time.
    Busy(Instant),
    /// A request head has begun and must be complete by then.
    Head(Instant),
    /// Nothing going on; idle from then on.
    Idle(Instant),
    /// An answer waits for the client to read it and must move on by then.
    Write(Instant),
    /// Asked to close, nothing going on, and the client has not closed by then.
    Closing(Instant),
}

impl Wait {
    pub(super) fn at(self) -> Instant {
        let (Wait::Busy(at)
        | Wait::Head(at)
        | Wait::Idle(at)
        | Wait::Write(at)
        | Wait::Closing(at)) = self;
        at
    }
}

impl ConnState {
    pub(super) fn new() -> Self {
        let changed = Arc::new(Notify::new());
        ConnState {
            in_flight: AtomicUsize::new(0),
            last_done: Mutex::new(Instant::now()),
            head_started: Mutex::new(None),
            read_total: AtomicU64::new(0),
            consumed: AtomicU64::new(0),
            slack: AtomicU64::new(0),
            writes: Arc::new(Writes::new(changed.clone())),
            write_blocked: Mutex::new(None),
            closing: Mutex::new(None),
            changed,
        }
    }

    /// An answer is ready to be written; it counts until the returned guard is dropped.
    pub(super) fn answering(&self) -> Answering {
        self.writes.answering()
    }

    /// The socket took bytes (`true`) or refused them (`false`).
    pub(super) fn socket_took(&self, took: bool) {
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

    /// The connection has been asked to close (once; later calls keep the first time).
    pub(super) fn close_asked(&self) {
        let mut closing = self.closing.lock().unwrap_or_else(|p| p.into_inner());
        closing.get_or_insert_with(Instant::now);
    }

    /// Whether the connection has been asked to close.
    pub(super) fn is_closing(&self) -> bool {
        self.closing
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .is_some()
    }

    /// A request begins; `size` says how many bytes it takes on the wire.
    pub(super) fn begin(self: &Arc<Self>, size: Arc<WireSize>) -> RequestGuard {
        self.in_flight.fetch_add(1, Ordering::SeqCst);
        *self.head_started.lock().unwrap_or_else(|p| p.into_inner()) = None;
        RequestGuard {
            conn: self.clone(),
            size,
        }
    }

    /// A request is done. Bytes read beyond what it took (a next head sent while it was in
    /// flight, or in the same packet) start the header-read clock: they would otherwise wait
    /// for the idle timeout. What it took is known within bounds (`name:value` or `name:
    /// value`): bytes beyond the compact form count as a next head only past what the
    /// canonical form would have taken, so neither form is taken for the other.
    fn end(&self, bounds: Option<(u64, u64)>) {
        let read = self.read_total.load(Ordering::SeqCst);
        let next_head = match bounds {
            Some((least, slack)) => {
                let consumed = self.consumed.fetch_add(least, Ordering::SeqCst) + least;
                let slack = self.slack.fetch_add(slack, Ordering::SeqCst) + slack;
                let beyond = read > consumed.saturating_add(slack);
                if !beyond {
                    // Everything read was the requests': the bounds start afresh from here.
                    self.consumed.store(read.max(consumed), Ordering::SeqCst);
                    self.slack.store(0, Ordering::SeqCst);
                }
                beyond
            }
            // Unknown (a body not read to its end, or chunked): catch up, and let bytes that
            // come later start the clock as between requests.
            None => {
                self.consumed.store(read, Ordering::SeqCst);
                self.slack.store(0, Ordering::SeqCst);
                false
            }
        };
        if next_head {
            let mut started = self.head_started.lock().unwrap_or_else(|p| p.into_inner());
            if started.is_none() {
                *started = Some(Instant::now());
                self.changed.notify_one();
            }
        }
    }

    /// Bytes arrived: between requests, that starts the header-read clock.
    pub(super) fn bytes_read(&self, n: usize) {
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
    pub(super) fn wait(&self, timeouts: &Timeouts) -> Wait {
        let Timeouts {
            idle,
            header,
            write,
        } = *timeouts;
        let blocked = *self.write_blocked.lock().unwrap_or_else(|p| p.into_inner());
        let answering = self.writes.waiting_since();
        if let Some(since) = blocked.into_iter().chain(answering).max() {
            return Wait::Write(after(since, write));
        }
        if self.in_flight.load(Ordering::SeqCst) > 0 {
            return Wait::Busy(after(Instant::now(), idle));
        }
        let started = *self.head_started.lock().unwrap_or_else(|p| p.into_inner());
        if let (Some(started), Some(header)) = (started, header) {
            return Wait::Head(after(started, header));
        }
        let last_done = *self.last_done.lock().unwrap_or_else(|p| p.into_inner());
        match *self.closing.lock().unwrap_or_else(|p| p.into_inner()) {
            Some(asked) => Wait::Closing(after(last_done.max(asked), idle.min(CLOSE_GRACE))),
            None => Wait::Idle(after(last_done, idle)),
        }
    }
}

/// When an idle connection may be closed to make room: `None` if it is not idle (a request,
/// head or answer is under way, or it is already closing), else once it has been idle for
/// [`UNDER_PRESSURE`], or [`FIRST_REQUEST_UNDER_PRESSURE`] if it has sent nothing yet.
pub(super) fn evictable_at(state: &ConnState, timeouts: &Timeouts) -> Option<Instant> {
    match state.wait(timeouts) {
        Wait::Idle(_) => {
            let since = *state.last_done.lock().unwrap_or_else(|p| p.into_inner());
            let fresh = state.read_total.load(Ordering::SeqCst) == 0;
            Some(after(
                since,
                if fresh {
                    FIRST_REQUEST_UNDER_PRESSURE
                } else {
                    UNDER_PRESSURE
                },
            ))
        }
        _ => None,
    }
}

/// A request in flight, until dropped.
pub(super) struct RequestGuard {
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
        self.conn.end(self.size.bounds());
        self.conn.in_flight.fetch_sub(1, Ordering::SeqCst);
    }
}

/// How a connection whose deadline passed ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Ending {
    /// Closed now: a request head or an answer is stuck half-way, or a client asked to close
    /// did not.
    AtOnce,
    /// Asked to close after what is in flight: it was idle.
    Gracefully,
}

/// What a passed deadline calls for, looked at again now: something may have happened since
/// it was set (`None`: nothing to do).
pub(super) fn deadline_passed(state: &ConnState, timeouts: &Timeouts) -> Option<Ending> {
    let wait = state.wait(timeouts);
    if wait.at() > Instant::now() {
        return None;
    }
    match wait {
        Wait::Head(_) => {
            debug!("request head not received in time: closing the connection");
            Some(Ending::AtOnce)
        }
        Wait::Write(_) => {
            debug!(timeout = ?timeouts.write, "answer not read by the client in time: closing the connection");
            Some(Ending::AtOnce)
        }
        Wait::Idle(_) => {
            debug!("closing idle connection");
            Some(Ending::Gracefully)
        }
        Wait::Closing(_) => {
            debug!("asked to close, the client has not: closing the connection");
            Some(Ending::AtOnce)
        }
        Wait::Busy(_) => None,
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
        state.begin(Arc::new(WireSize::known(head, head, body)))
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
        state.writes.wrote();
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
        assert_eq!(deadline_passed(&state, &none), Some(Ending::Gracefully));
        // Not idle for long yet: nothing.
        assert_eq!(deadline_passed(&state, &long(None)), None);

        state.bytes_read(1);
        assert_eq!(deadline_passed(&state, &none), Some(Ending::AtOnce));
        let guard = request(&state, 1, 0);
        assert_eq!(deadline_passed(&state, &none), None, "busy");
        let answering = state.answering();
        assert_eq!(deadline_passed(&state, &none), Some(Ending::AtOnce));
        drop((guard, answering));
    }

    #[test]
    fn a_connection_asked_to_close_is_closed_within_the_grace() {
        let state = Arc::new(ConnState::new());
        let timeouts = long(None);
        let asked = Instant::now();
        state.close_asked();
        assert!(state.is_closing());
        // Idle and asked to close: the grace, not the idle timeout, bounds it.
        let Wait::Closing(at) = state.wait(&timeouts) else {
            panic!("{:?}", state.wait(&timeouts));
        };
        assert!(at >= after(asked, CLOSE_GRACE) && at <= after(Instant::now(), CLOSE_GRACE));
        // A shorter idle timeout is the bound instead.
        let short = Timeouts {
            idle: Duration::from_millis(10),
            ..timeouts
        };
        let Wait::Closing(at) = state.wait(&short) else {
            panic!("{:?}", state.wait(&short));
        };
        assert!(at <= after(Instant::now(), short.idle));
        // A request in flight keeps its own timeout.
        let guard = request(&state, 1, 0);
        assert!(matches!(state.wait(&timeouts), Wait::Busy(_)));
        drop(guard);
        std::thread::sleep(Duration::from_millis(20));
        assert_eq!(deadline_passed(&state, &short), Some(Ending::AtOnce));
        // Asking again does not push the bound.
        state.close_asked();
        assert_eq!(deadline_passed(&state, &short), Some(Ending::AtOnce));
    }

    #[tokio::test]
    async fn a_compact_head_leaves_a_next_head_on_the_header_clock() {
        let timeouts = long(Some(5 * SECOND));
        for (case, least, canonical, read, next_head) in [
            // `name: value` with CRLF, nothing more.
            ("canonical, alone", 90, 100, 100, false),
            // `name:value`: shorter than canonical, nothing more.
            ("compact, alone", 90, 100, 90, false),
            // A compact head and 30 bytes of the next in the same packet.
            ("compact, then a next head", 90, 100, 120, true),
            ("canonical, then a next head", 90, 100, 130, true),
        ] {
            let state = Arc::new(ConnState::new());
            let guard = state.begin(Arc::new(WireSize::known(least, canonical, 0)));
            state.bytes_read(read);
            drop(guard);
            let wait = state.wait(&timeouts);
            assert_eq!(matches!(wait, Wait::Head(_)), next_head, "{case}: {wait:?}");
        }
        // Many canonical requests on one kept-alive connection do not add up to a head.
        let state = Arc::new(ConnState::new());
        for _ in 0..50 {
            let guard = state.begin(Arc::new(WireSize::known(90, 100, 0)));
            state.bytes_read(100);
            drop(guard);
            assert!(matches!(state.wait(&timeouts), Wait::Idle(_)));
        }
    }

    #[test]
    fn an_idle_connection_makes_room_once_idle_for_a_moment() {
        let state = Arc::new(ConnState::new());
        let timeouts = long(Some(5 * SECOND));
        let opened = Instant::now();
        let at = evictable_at(&state, &timeouts).expect("idle");
        assert!(at >= after(opened, FIRST_REQUEST_UNDER_PRESSURE) - Duration::from_millis(5));
        assert!(at <= after(Instant::now(), FIRST_REQUEST_UNDER_PRESSURE));
        // Not while a head, a request or an answer is under way, nor once closing.
        state.bytes_read(1);
        assert_eq!(evictable_at(&state, &timeouts), None, "head");
        let guard = request(&state, 1, 0);
        assert_eq!(evictable_at(&state, &timeouts), None, "request");
        let answering = state.answering();
        drop(guard);
        assert_eq!(evictable_at(&state, &timeouts), None, "answer");
        drop(answering);
        let done = Instant::now();
        let at = evictable_at(&state, &timeouts).expect("idle again");
        assert!(at >= after(done, UNDER_PRESSURE) - Duration::from_millis(5));
        state.close_asked();
        assert_eq!(evictable_at(&state, &timeouts), None, "closing");
    }

    #[test]
    fn the_latest_representable_deadline_stands_for_never() {
        let now = Instant::now();
        assert_eq!(after(now, SECOND), now + SECOND);
        assert!(after(now, Duration::MAX) > now + 50 * 365 * 24 * 3600 * SECOND);
    }
}
