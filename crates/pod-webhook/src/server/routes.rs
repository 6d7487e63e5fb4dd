// SPDX-FileCopyrightText: 2026 apiserver-proxy contributors
// SPDX-License-Identifier: Apache-2.0

//! Routing and the handlers: `/webhook/pod-apiserver-env` (the body read within its share of
//! the budget, the review, the answer), `/readyz`, `/healthz`, `/metrics`; every failure as a
//! response, counted and logged at a bounded rate.

use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::Instant;

use futures_util::FutureExt as _;
use http_body_util::BodyExt;
use hyper::body::{Bytes, Frame, Incoming};
use hyper::header::{self, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};
use tracing::{debug, error, warn};

use crate::config::Limits;
use crate::log_limit;
use crate::review::{self, Outcome};

use super::answer::{Body, ClientCert, Failure, WireSize, failure_response, response};
use super::budget::{Share, Taken};
use super::*;

pub(super) async fn handle(shared: &Shared, req: Request<Incoming>) -> Response<Body> {
    let method = req.method().clone();
    let path = req.uri().path().to_owned();
    let (result, allow) = match path.as_str() {
        WEBHOOK_PATH => (review_route(shared, req).await, "POST"),
        "/healthz" => (
            get_only(&method).map(|()| text(StatusCode::OK, "ok")),
            "GET, HEAD",
        ),
        "/readyz" => (
            get_only(&method).and_then(|()| readiness(shared)),
            "GET, HEAD",
        ),
        "/metrics" => (
            get_only(&method).and_then(|()| metrics_text(shared)),
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
            failure.record(shared, method.as_str(), &path);
            let mut resp = failure_response(&failure, allow);
            // The rest of the body was never read: close rather than drain it and wait on.
            if matches!(
                failure.status,
                StatusCode::PAYLOAD_TOO_LARGE | StatusCode::REQUEST_TIMEOUT | StatusCode::FORBIDDEN
            ) {
                resp.headers_mut()
                    .insert(header::CONNECTION, HeaderValue::from_static("close"));
            }
            resp
        }
    }
}

/// Says, now and then, how many failed-request lines the rate limit left out.
pub(super) async fn summarize_suppressed(shared: Arc<Shared>) {
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

fn readiness(shared: &Shared) -> Result<Response<Body>, Failure> {
    if shared.ready() {
        Ok(text(StatusCode::OK, "ok"))
    } else {
        Err(Failure::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "not ready: shutting down",
        ))
    }
}

fn metrics_text(shared: &Shared) -> Result<Response<Body>, Failure> {
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

async fn review_route(shared: &Shared, req: Request<Incoming>) -> Result<Response<Body>, Failure> {
    let started = Instant::now();
    let metrics = &shared.metrics;
    let _in_flight = metrics.in_flight();
    if let Err(refused) = authenticated(shared, &req) {
        metrics.observe(refused.status.as_u16(), started.elapsed());
        return Err(refused);
    }
    let timeout = shared.config.limits.request_timeout;
    let reviewed = catch_panic(review_request(shared, req))
        .map(|caught| caught.unwrap_or_else(|what| Err(review_panicked(&what))));
    let result = match tokio::time::timeout(timeout, reviewed).await {
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

/// With a client CA, a review needs a client certificate the CA verified (during the
/// handshake); the probes and `/metrics` do not.
fn authenticated(shared: &Shared, req: &Request<Incoming>) -> Result<(), Failure> {
    let required = shared.config.tls.client_ca.is_some();
    if !required || req.extensions().get::<ClientCert>() == Some(&ClientCert::Verified) {
        return Ok(());
    }
    Err(Failure::new(
        StatusCode::FORBIDDEN,
        format!(
            "no client certificate: {WEBHOOK_PATH} answers only clients with a certificate \
             signed by the client CA (--client-ca-name)"
        ),
    ))
}

async fn review_request(
    shared: &Shared,
    req: Request<Incoming>,
) -> Result<Response<Body>, Failure> {
    let limits = &shared.config.limits;
    let declared = check_head(&req, limits.max_body_bytes)?;
    let wire_size = req.extensions().get::<Arc<WireSize>>().cloned();
    let (body, mut share) = read_body(shared, req.into_body(), declared).await?;
    if let (Some(size), Some(len)) = (&wire_size, declared)
        && len == body.len() as u64
    {
        size.body_read(body.len());
    }

    // What the answer may need beyond the body's share, before it is built.
    share
        .before_answer(&shared.budget, limits.answer_unbudgeted_bytes)
        .await
        .map_err(|e| Failure::new(StatusCode::SERVICE_UNAVAILABLE, e.to_string()))?;
    let answer = review::review(&body, &shared.config.mutate).map_err(|e| {
        let status = if e.is_client_error() {
            StatusCode::BAD_REQUEST
        } else {
            StatusCode::INTERNAL_SERVER_ERROR
        };
        Failure::new(status, e.to_string())
    })?;
    check_answer_size(&answer, body.len(), limits.answer_unbudgeted_bytes)?;
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
    share.answer_built(answer.body.len());
    let mut resp = response(StatusCode::OK, "application/json", answer.body);
    resp.body_mut().share = share;
    Ok(resp)
}

/// A review must be POSTed as JSON with a body within `max_body_bytes`; returns its declared
/// length.
fn check_head(req: &Request<Incoming>, max_body_bytes: usize) -> Result<Option<u64>, Failure> {
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
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|len| len > max_body_bytes as u64) {
        return Err(too_large(max_body_bytes));
    }
    Ok(declared)
}

fn too_large(max_body_bytes: usize) -> Failure {
    Failure::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        format!("body larger than {max_body_bytes} bytes"),
    )
}

/// Reads the body, taking its bytes into the memory budget as they arrive (`budget.rs`): a
/// head announcing a large body and sending little holds only what it sent. A body declared
/// larger than its arrival allowance (or of no declared length) must arrive within the fill
/// timeout of its first bytes, and again of its reservation once granted. Returns the body and its share, which the answer keeps (resized to the answer).
async fn read_body(
    shared: &Shared,
    mut incoming: Incoming,
    declared: Option<u64>,
) -> Result<(Vec<u8>, Share), Failure> {
    let limits = &shared.config.limits;
    let mut body = Vec::new();
    let mut share = Share::default();
    let mut fill_deadline = None;
    while let Some(frame) = next_frame(&mut incoming, fill_deadline, limits).await? {
        let Ok(data) = frame.into_data() else {
            continue;
        };
        let len = body.len() + data.len();
        if len > limits.max_body_bytes {
            return Err(too_large(limits.max_body_bytes));
        }
        let taken = share
            .body_grew(&shared.budget, len, declared)
            .await
            .map_err(|e| Failure::new(StatusCode::SERVICE_UNAVAILABLE, e.to_string()))?;
        // A body that will need a reservation must come on quickly; one within its arrival
        // allowance holds only what it sent, and has the request timeout.
        let will_reserve = shared.budget.will_reserve(declared);
        if taken == Taken::Reserved || (will_reserve && fill_deadline.is_none()) {
            fill_deadline = Some(tokio::time::Instant::now() + limits.body_fill_timeout);
        }
        if taken == Taken::Reserved {
            // One buffer sized by Content-Length (kube-apiserver sends it): one copy, no list
            // of chunks to join afterwards.
            body.reserve_exact(
                declared
                    .map_or(0, |d| usize::try_from(d).unwrap_or(usize::MAX))
                    .min(limits.max_body_bytes)
                    .saturating_sub(body.len()),
            );
        } else {
            // Only what arrived, as it is accounted.
            body.reserve_exact(data.len());
        }
        body.extend_from_slice(&data);
    }
    Ok((body, share))
}

/// The body's next frame (`None` at its end); once its first bytes are here, only until
/// `fill_deadline`.
async fn next_frame(
    incoming: &mut Incoming,
    fill_deadline: Option<tokio::time::Instant>,
    limits: &Limits,
) -> Result<Option<Frame<Bytes>>, Failure> {
    let frame = match fill_deadline {
        None => incoming.frame().await,
        Some(at) => tokio::time::timeout_at(at, incoming.frame())
            .await
            .map_err(|_| {
                Failure::new(
                    StatusCode::REQUEST_TIMEOUT,
                    format!(
                        "body not received within {:?} of its first bytes or of its share of \
                         the memory budget",
                        limits.body_fill_timeout
                    ),
                )
            })?,
    };
    frame
        .transpose()
        .map_err(|e| Failure::new(StatusCode::BAD_REQUEST, format!("cannot read body: {e}")))
}

/// The answer must fit in the memory the request already holds: its body (freed once
/// reviewed; at least its share of the budget), plus `unbudgeted` bytes.
fn check_answer_size(
    answer: &review::Answer,
    body_len: usize,
    unbudgeted: usize,
) -> Result<(), Failure> {
    let may_hold = body_len.saturating_add(unbudgeted);
    if answer.body.len() <= may_hold {
        return Ok(());
    }
    Err(Failure::new(
        StatusCode::BAD_REQUEST,
        format!(
            "the answer would be {} bytes, more than {unbudgeted} bytes larger than the request \
             body; the pod has {} containers to patch",
            answer.body.len(),
            match answer.outcome {
                Outcome::Mutated { containers } => containers,
                _ => 0,
            }
        ),
    ))
}

fn panic_message(panic: Box<dyn std::any::Any + Send>) -> String {
    panic
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "unknown panic".into())
}

/// Runs `future`, returning the message of a panic in it instead of unwinding: one bad request
/// never takes a connection, let alone the server, down.
pub(super) async fn catch_panic<F: Future>(future: F) -> Result<F::Output, String> {
    AssertUnwindSafe(future)
        .catch_unwind()
        .await
        .map_err(panic_message)
}

/// A review that panicked: logged, and answered with a 500 that is counted like any other
/// failure.
fn review_panicked(what: &str) -> Failure {
    error!(panic = %what, "panic while reviewing a request");
    Failure::new(
        StatusCode::INTERNAL_SERVER_ERROR,
        "internal error while reviewing the request",
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn panic_becomes_500() {
        let failure = catch_panic(async { panic!("boom") })
            .await
            .map_err(|what| review_panicked(&what))
            .expect_err("must fail");
        assert_eq!(failure.status, StatusCode::INTERNAL_SERVER_ERROR);
        let fine = catch_panic(async { 7 })
            .await
            .map_err(|what| review_panicked(&what));
        assert_eq!(fine.ok().map(|v: u8| v + 1), Some(8));
    }

    #[tokio::test]
    async fn panic_in_a_handler_future_is_caught() {
        let caught: Result<(), String> = catch_panic(async {
            tokio::task::yield_now().await;
            panic!("handler bug");
        })
        .await;
        assert_eq!(caught, Err("handler bug".to_owned()));
        let fine = catch_panic(async { 5 }).await;
        assert_eq!(fine, Ok(5));
        let formatted: Result<(), String> = catch_panic(async { panic!("bug {}", 42) }).await;
        assert_eq!(formatted, Err("bug 42".to_owned()));
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
