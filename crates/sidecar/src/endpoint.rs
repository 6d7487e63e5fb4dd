// SPDX-FileCopyrightText: 2026 apiserver-proxy contributors
// SPDX-License-Identifier: Apache-2.0

//! The `/healthz`, `/readyz` and `/metrics` endpoint (`--metrics-bind-address`). It is there for
//! a probe and a scraper, and may be reachable by every pod on the node: silent or slow clients
//! must never keep a probe from its answer. A connection gets [`HEAD_TIMEOUT`] to send its
//! request head; when every slot is taken, the oldest connection still without a complete head
//! is closed to make room for the newcomer, so a probe, which sends its head at once, is served
//! however many silent connections there are.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::time::Instant;

use common::accept::{self, Policy, WhenFull};
use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, oneshot};

use crate::metrics::Metrics;

/// Connections the endpoint serves at once: a probe and a scraper need a few.
const MAX_CONNECTIONS: usize = 16;

/// Time for a connection's request head to arrive: a probe or a scraper sends it at once.
const HEAD_TIMEOUT: Duration = Duration::from_secs(2);

/// Time for a connection's one request (no keep-alive: probes and scrapes come seconds apart)
/// to arrive and be answered.
const CONNECTION_TIMEOUT: Duration = Duration::from_secs(5);

/// How long a client accepted while every slot is taken waits for one before it is closed.
const ROOM_WAIT: Duration = Duration::from_secs(1);

/// What [`Waiting::evict`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Eviction {
    /// Closed this connection.
    Evicted(u64),
    /// Every connection has sent its head: nothing to close.
    Nobody,
    /// Some connections have not been read yet (their tasks have not run): their heads may be
    /// waiting in their sockets. Try again once they have been.
    NotReadYet,
}

/// One connection without a complete head.
#[derive(Debug)]
struct Unheaded {
    /// Whether everything it sent has been read, and was not a complete head.
    read: bool,
    evict: oneshot::Sender<()>,
}

/// The connections that have not sent a complete request head yet, oldest first: the ones to
/// close when a newcomer needs a slot.
#[derive(Debug, Default)]
pub struct Waiting {
    next: u64,
    by_age: BTreeMap<u64, Unheaded>,
}

impl Waiting {
    /// Registers a new connection; the receiver completes when it is closed to make room.
    pub fn admit(&mut self) -> (u64, oneshot::Receiver<()>) {
        let id = self.next;
        self.next += 1;
        let (evict, evicted) = oneshot::channel();
        self.by_age.insert(id, Unheaded { read: false, evict });
        (id, evicted)
    }

    /// The connection's bytes were all read and made no complete head: it waits for more.
    pub fn read(&mut self, id: u64) {
        if let Some(unheaded) = self.by_age.get_mut(&id) {
            unheaded.read = true;
        }
    }

    /// The connection sent its head (or ended): it is no longer a candidate.
    pub fn done(&mut self, id: u64) {
        self.by_age.remove(&id);
    }

    /// Closes the oldest connection that has been read and still has no head.
    pub fn evict(&mut self) -> Eviction {
        let mut not_read = false;
        let ids: Vec<u64> = self.by_age.keys().copied().collect();
        for id in ids {
            let Some(unheaded) = self.by_age.get(&id) else {
                continue;
            };
            if !unheaded.read {
                not_read = true;
                continue;
            }
            let Some(unheaded) = self.by_age.remove(&id) else {
                continue;
            };
            // A connection that ended already cannot take the signal: try the next one.
            if unheaded.evict.send(()).is_ok() {
                return Eviction::Evicted(id);
            }
        }
        if not_read {
            Eviction::NotReadYet
        } else {
            Eviction::Nobody
        }
    }

    /// How many connections wait for their head.
    pub fn len(&self) -> usize {
        self.by_age.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_age.is_empty()
    }
}

type Shared = Arc<Mutex<Waiting>>;

fn lock(waiting: &Shared) -> std::sync::MutexGuard<'_, Waiting> {
    waiting.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Binds the endpoint; the returned future serves it until dropped.
pub async fn serve(
    address: SocketAddr,
    metrics: Arc<Metrics>,
) -> std::io::Result<impl std::future::Future<Output = ()>> {
    let listener = if address.ip() == IpAddr::V6(Ipv6Addr::UNSPECIFIED) {
        TcpListener::from_std(common::listen::bind_dual_stack(address.port(), 128)?)?
    } else {
        TcpListener::bind(address).await?
    };
    Ok(serve_on(listener, metrics))
}

/// Serves the endpoint on `listener` until dropped.
pub fn serve_on(
    listener: TcpListener,
    metrics: Arc<Metrics>,
) -> impl std::future::Future<Output = ()> {
    let waiting: Shared = Arc::default();
    let make_room = {
        let waiting = waiting.clone();
        Box::new(move || {
            tokio::spawn(make_room(waiting.clone()));
        })
    };
    let policy = Policy {
        when_full: WhenFull::MakeRoom {
            make_room,
            wait: ROOM_WAIT,
        },
        failing: "metrics endpoint cannot accept a connection",
    };
    let permits = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    accept::run(listener, permits, policy, move |stream, _, permit| {
        let (metrics, waiting) = (metrics.clone(), waiting.clone());
        let (id, evicted) = lock(&waiting).admit();
        tokio::spawn(async move {
            let _permit = permit;
            let headed = waiting.clone();
            let service = hyper::service::service_fn(move |request: Request<Incoming>| {
                lock(&headed).done(id);
                let metrics = metrics.clone();
                async move { Ok::<_, std::convert::Infallible>(respond(&request, &metrics)) }
            });
            let connection = hyper::server::conn::http1::Builder::new()
                .timer(hyper_util::rt::TokioTimer::new())
                .header_read_timeout(HEAD_TIMEOUT)
                .keep_alive(false)
                .serve_connection(TokioIo::new(stream), service);
            // Once a poll read everything there was without a complete head (a complete one
            // calls the service within that poll), the client is waiting to send more.
            let mut connection = std::pin::pin!(connection);
            let mut first = true;
            let serving = std::future::poll_fn(|context| {
                let poll = connection.as_mut().poll(context);
                if std::mem::take(&mut first) && poll.is_pending() {
                    lock(&waiting).read(id);
                }
                poll
            });
            tokio::select! {
                _ = tokio::time::timeout(CONNECTION_TIMEOUT, serving) => {}
                Ok(()) = evicted => {}
            }
            lock(&waiting).done(id);
        });
    })
}

/// Closes the oldest connection that waits for more of its head, once the connections not
/// read yet have been; gives up after [`ROOM_WAIT`], as the newcomer does.
async fn make_room(waiting: Shared) {
    let deadline = Instant::now() + ROOM_WAIT;
    while Instant::now() < deadline {
        let eviction = lock(&waiting).evict();
        match eviction {
            Eviction::NotReadYet => tokio::time::sleep(Duration::from_millis(1)).await,
            Eviction::Evicted(_) | Eviction::Nobody => return,
        }
    }
}

fn respond(request: &Request<Incoming>, metrics: &Metrics) -> Response<Full<Bytes>> {
    let (status, content_type, body) = match request.uri().path() {
        "/healthz" => {
            let (status, body) = metrics.health();
            (status, "text/plain", body)
        }
        "/readyz" => {
            let (status, body) = metrics.readiness();
            (status, "text/plain", body)
        }
        "/metrics" => (
            StatusCode::OK,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
            metrics.encode(),
        ),
        _ => (
            StatusCode::NOT_FOUND,
            "text/plain",
            "not found\n".to_string(),
        ),
    };
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    if let Ok(value) = content_type.parse() {
        response
            .headers_mut()
            .insert(hyper::header::CONTENT_TYPE, value);
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_oldest_connection_read_without_a_head_makes_room() {
        let mut waiting = Waiting::default();
        let mut signals: Vec<_> = (0..5).map(|_| waiting.admit()).collect();
        assert_eq!(waiting.len(), 5);
        // 1 sent its head; 0 ended without one (its receiver dropped); 2, 3 and 4 are not read
        // yet: their heads may be in their sockets.
        waiting.done(1);
        drop(signals.remove(0));
        waiting.read(0);
        assert_eq!(waiting.evict(), Eviction::NotReadYet);
        waiting.read(3);
        assert_eq!(waiting.evict(), Eviction::Evicted(3));
        assert_eq!(waiting.evict(), Eviction::NotReadYet);
        waiting.read(4);
        waiting.read(2);
        assert_eq!(waiting.evict(), Eviction::Evicted(2));
        waiting.done(4);
        assert_eq!(waiting.evict(), Eviction::Nobody);
        assert!(waiting.is_empty());
        // Those evicted got the signal; the one that sent its head did not.
        let [
            (one, mut headed),
            (two, mut second),
            (three, mut first),
            (four, mut last),
        ] = <[_; 4]>::try_from(signals).expect("four left");
        assert_eq!((one, two, three, four), (1, 2, 3, 4));
        assert!(first.try_recv().is_ok() && second.try_recv().is_ok());
        assert!(headed.try_recv().is_err() && last.try_recv().is_err());
        // Ids keep growing: a newcomer is always the youngest.
        assert_eq!(waiting.admit().0, 5);
    }
}
