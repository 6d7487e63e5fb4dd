// SPDX-FileCopyrightText: 2026 apiserver-proxy contributors
// SPDX-License-Identifier: Apache-2.0

//! Prometheus metrics and the optional `/healthz` + `/metrics` endpoint.

use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use socket2::{Domain, Protocol, Socket, Type};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tracing::warn;

/// What a repair or an error was about.
#[derive(Debug, Clone, Copy, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct KindLabel {
    pub kind: &'static str,
}

/// The sidecar's metrics.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    last_success: Gauge<f64, AtomicU64>,
    repairs: Family<KindLabel, Counter>,
    errors: Family<KindLabel, Counter>,
    last_error: Mutex<Option<String>>,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("apiserver_proxy_sidecar");
        let last_success = Gauge::<f64, AtomicU64>::default();
        let repairs = Family::<KindLabel, Counter>::default();
        let errors = Family::<KindLabel, Counter>::default();
        registry.register(
            "last_successful_sync_timestamp_seconds",
            "Unix time of the last sync that found or left everything in place",
            last_success.clone(),
        );
        registry.register(
            "repairs",
            "Changes made to reach the wanted state, by kind (interface, address, duplicate_address, iptables_rule, duplicate_rule)",
            repairs.clone(),
        );
        registry.register(
            "errors",
            "Failed sync steps, by kind (interface, address, iptables, iptables_lock)",
            errors.clone(),
        );
        Metrics {
            registry,
            last_success,
            repairs,
            errors,
            last_error: Mutex::new(None),
        }
    }
}

impl Metrics {
    pub fn repaired(&self, kind: &'static str) {
        self.repairs.get_or_create(&KindLabel { kind }).inc();
    }

    pub fn failed(&self, kind: &'static str, error: &str) {
        self.errors.get_or_create(&KindLabel { kind }).inc();
        if let Ok(mut last) = self.last_error.lock() {
            *last = Some(format!("{kind}: {error}"));
        }
    }

    pub fn synced(&self) {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0.0, |elapsed| elapsed.as_secs_f64());
        self.last_success.set(now);
        if let Ok(mut last) = self.last_error.lock() {
            *last = None;
        }
    }

    /// Count of repairs of one kind, for tests and logs.
    pub fn repairs_of(&self, kind: &'static str) -> u64 {
        self.repairs.get_or_create(&KindLabel { kind }).get()
    }

    /// The metrics in the Prometheus text format.
    pub fn encode(&self) -> String {
        let mut text = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut text, &self.registry);
        text
    }

    fn health(&self) -> String {
        match self.last_error.lock().ok().and_then(|last| last.clone()) {
            None => "ok\n".to_string(),
            Some(error) => format!("ok (serving; the last sync failed: {error})\n"),
        }
    }
}

/// Connections the endpoint serves at once: it is there for a probe and a scraper, so a few
/// suffice. Further clients wait to be accepted.
const MAX_CONNECTIONS: usize = 16;

/// Time for a connection's one request (no keep-alive: probes and scrapes come seconds apart)
/// to arrive and be answered; a client that connects and stays silent is cut off after it.
const CONNECTION_TIMEOUT: Duration = Duration::from_secs(5);

/// `[::]:PORT`, listening for IPv4 too whatever `net.ipv6.bindv6only` says, as Go does.
fn bind_dual_stack(address: SocketAddr) -> std::io::Result<std::net::TcpListener> {
    let socket = Socket::new(Domain::IPV6, Type::STREAM, Some(Protocol::TCP))?;
    socket.set_only_v6(false)?;
    socket.set_reuse_address(true)?;
    socket.set_nonblocking(true)?;
    socket.bind(&address.into())?;
    socket.listen(128)?;
    Ok(socket.into())
}

/// Binds the metrics endpoint; the returned future serves it until dropped.
pub async fn serve(
    address: SocketAddr,
    metrics: Arc<Metrics>,
) -> std::io::Result<impl std::future::Future<Output = ()>> {
    let listener = if address.ip() == IpAddr::V6(Ipv6Addr::UNSPECIFIED) {
        TcpListener::from_std(bind_dual_stack(address)?)?
    } else {
        TcpListener::bind(address).await?
    };
    let permits = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    Ok(async move {
        loop {
            let Ok(permit) = permits.clone().acquire_owned().await else {
                return;
            };
            let stream = match listener.accept().await {
                Ok((stream, _)) => stream,
                Err(error) => {
                    // Typically out of file descriptors: back off instead of spinning.
                    warn!(%error, "metrics endpoint cannot accept a connection");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            };
            let metrics = metrics.clone();
            tokio::spawn(async move {
                let _permit = permit;
                let service = hyper::service::service_fn(move |request: Request<Incoming>| {
                    let metrics = metrics.clone();
                    async move { Ok::<_, std::convert::Infallible>(respond(&request, &metrics)) }
                });
                let connection = hyper::server::conn::http1::Builder::new()
                    .timer(hyper_util::rt::TokioTimer::new())
                    .header_read_timeout(CONNECTION_TIMEOUT)
                    .keep_alive(false)
                    .serve_connection(TokioIo::new(stream), service);
                let _ = tokio::time::timeout(CONNECTION_TIMEOUT, connection).await;
            });
        }
    })
}

fn respond(request: &Request<Incoming>, metrics: &Metrics) -> Response<Full<Bytes>> {
    let (status, content_type, body) = match request.uri().path() {
        "/healthz" => (StatusCode::OK, "text/plain", metrics.health()),
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
