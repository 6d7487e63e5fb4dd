// SPDX-FileCopyrightText: 2026 apiserver-proxy contributors
// SPDX-License-Identifier: Apache-2.0

//! The HTTPS server: the listener (`listen.rs`), each connection (`conn.rs`) with the state
//! its timeouts judge (`state.rs`), routing and the handlers (`routes.rs`), what the last two
//! share (`answer.rs`: a failure, an answer and its size), and here the accept loop and
//! graceful shutdown. Dependencies run one way: conn → routes → answer, conn → state → answer.

mod answer;
mod budget;
mod conn;
mod handshakes;
mod listen;
mod routes;
mod state;

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use common::accept::{self, Policy, WhenFull};
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, watch};
use tokio_rustls::TlsAcceptor;
use tracing::{Instrument, info, warn};

use crate::config::Config;
use crate::log_limit::LogLimit;
use crate::metrics::Metrics;
use crate::tls::{self, TlsError, TlsStore};

use budget::Budget;
use conn::serve_connection;
use handshakes::Handshakes;
use listen::bind;
use routes::summarize_suppressed;

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
    /// Where the server is in its life; connections watch it to know when to close.
    phase: watch::Sender<Phase>,
    /// The memory request bodies and answers may hold.
    budget: Budget,
    /// Failed requests are logged at a bounded rate (and all counted).
    failure_log: LogLimit,
}

impl Shared {
    /// Ready for new requests: not shutting down.
    fn ready(&self) -> bool {
        *self.phase.borrow() == Phase::Serving
    }

    /// Shutdown has been signalled: answers ask their clients to close.
    fn terminating(&self) -> bool {
        *self.phase.borrow() >= Phase::Terminating
    }
}

/// A bound, not yet serving webhook server.
#[derive(Debug)]
pub struct Webhook {
    listener: TcpListener,
    tls: Arc<TlsStore>,
    shared: Arc<Shared>,
}

impl Webhook {
    /// Loads the certificate (a missing or broken one is an error) and binds the listener.
    pub async fn bind(config: Config) -> Result<Self, ServerError> {
        let tls = TlsStore::load(&config.tls, config.tls_min_version, config.enable_http2)?;
        let metrics = Metrics::new(WEBHOOK_PATH);
        tls::record_expiry(&tls, &metrics);
        let listener = bind(&config.listen).await?;
        let limits = &config.limits;
        let pools = limits.body_pools();
        let budget = Budget::new(
            pools.arrival,
            pools.per_body,
            pools.reserved,
            limits.answer_growth_budget_bytes,
        );
        Ok(Webhook {
            listener,
            tls: Arc::new(tls),
            shared: Arc::new(Shared {
                config,
                metrics: Arc::new(metrics),
                phase: watch::Sender::new(Phase::Serving),
                budget,
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
        let reload = tokio::spawn(tls::watch(
            tls.clone(),
            config.cert_reload_interval,
            shared.metrics.clone(),
        ));
        let summary = tokio::spawn(summarize_suppressed(shared.clone()));
        let addr = listener
            .local_addr()
            .map_or_else(|e| format!("unknown address ({e})"), |a| a.to_string());
        let mut accept = Box::pin(accept_loop(listener, tls, shared.clone(), permits.clone()));
        info!(%addr, http2 = config.enable_http2, "serving");

        tokio::select! {
            () = &mut accept => {}
            () = shutdown => {}
        }
        shared.phase.send_replace(Phase::Terminating);
        info!(delay = ?config.shutdown_delay, "shutting down: not ready, still serving");
        tokio::select! {
            () = &mut accept => {}
            () = tokio::time::sleep(config.shutdown_delay) => {}
        }
        drop(accept);
        shared.phase.send_replace(Phase::Draining);
        drain(&permits, max_connections, config.shutdown_timeout).await;
        reload.abort();
        summary.abort();
        Ok(())
    }
}

/// Waits up to `timeout` for the open connections to close: every one holds one of the
/// `max_connections` permits.
async fn drain(permits: &Semaphore, max_connections: u32, timeout: Duration) {
    let open = || max_connections as usize - permits.available_permits();
    info!(connections = open(), ?timeout, "draining connections");
    match tokio::time::timeout(timeout, permits.acquire_many(max_connections)).await {
        Ok(_) => info!("all connections closed"),
        Err(_) => warn!(
            connections = open(),
            "shutdown timeout reached with connections still open; closing them"
        ),
    }
}

async fn accept_loop(
    listener: TcpListener,
    tls: Arc<TlsStore>,
    shared: Arc<Shared>,
    permits: Arc<Semaphore>,
) {
    // Counts calls for room; a connection watches those made after it joined.
    let evict = Arc::new(watch::Sender::new(0u64));
    let handshakes = Arc::new(Handshakes::default());
    let policy = Policy {
        // Without a free slot, accept anyway: a waiting client is what makes idle connections
        // worth closing, and idle connections make room for it.
        when_full: WhenFull::MakeRoom {
            // The oldest handshake goes first; only without one past its grace are the
            // others asked to hurry (idle connections to close, handshakes to end sooner).
            make_room: Box::new({
                let evict = evict.clone();
                let handshakes = handshakes.clone();
                move || {
                    if !handshakes.evict_oldest(std::time::Instant::now()) {
                        evict.send_modify(|round| *round += 1);
                    }
                }
            }),
            wait: shared.config.limits.handshake_timeout,
        },
        failing: "cannot accept connections; retrying with back-off",
    };
    accept::run(listener, permits, policy, move |tcp, peer, permit| {
        let acceptor = TlsAcceptor::from(tls.current());
        let shared = shared.clone();
        let phase = shared.phase.subscribe();
        let evict = evict.subscribe();
        let place = handshakes.join();
        let span = tracing::debug_span!("conn", %peer);
        tokio::spawn(
            async move {
                serve_connection(tcp, acceptor, shared, phase, evict, place).await;
                drop(permit);
            }
            .instrument(span),
        );
    })
    .await;
}
