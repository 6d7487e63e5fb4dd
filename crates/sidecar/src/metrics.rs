// SPDX-FileCopyrightText: 2026 apiserver-proxy contributors
// SPDX-License-Identifier: Apache-2.0

//! Prometheus metrics and the optional `/healthz` + `/metrics` endpoint.

use std::net::SocketAddr;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use tokio::net::TcpListener;

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

/// Binds the metrics endpoint; the returned future serves it until dropped.
pub async fn serve(
    address: SocketAddr,
    metrics: Arc<Metrics>,
) -> std::io::Result<impl std::future::Future<Output = ()>> {
    let listener = TcpListener::bind(address).await?;
    Ok(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let metrics = metrics.clone();
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |request: Request<Incoming>| {
                    let metrics = metrics.clone();
                    async move { Ok::<_, std::convert::Infallible>(respond(&request, &metrics)) }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .timer(hyper_util::rt::TokioTimer::new())
                    .header_read_timeout(std::time::Duration::from_secs(5))
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
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
