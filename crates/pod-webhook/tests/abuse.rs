// SPDX-FileCopyrightText: 2026 apiserver-proxy contributors
// SPDX-License-Identifier: Apache-2.0

//! Clients that try to hold the server's shared resources (the body budget, connection slots,
//! memory for answers) get nothing they do not use, and well-formed reviews are still answered
//! within kube-apiserver's deadline. Over real TLS on 127.0.0.1; every loop bounded.

mod common;

use std::time::{Duration, Instant};

use common::*;
use hyper::StatusCode;
use pod_webhook::WEBHOOK_PATH;
use serde_json::json;
use tokio::io::AsyncWriteExt;

const V1: &str = "admission.k8s.io/v1";

/// kube-apiserver's `timeoutSeconds` for the webhook, with room to spare on a shared CI box.
const ANSWER_WITHIN: Duration = Duration::from_millis(1500);

/// A head announcing a large body, sent without the body.
fn stalled_head(declared: usize) -> String {
    format!(
        "POST {WEBHOOK_PATH} HTTP/1.1\r\nhost: localhost\r\ncontent-type: application/json\r\ncontent-length: {declared}\r\n\r\n"
    )
}

/// Sends a small and a large review on new connections and returns how long each took.
async fn timed_reviews(client: &Client, addr: std::net::SocketAddr, i: usize) -> Vec<Duration> {
    let large = std::fs::read(testdata().join("admission-large.json")).expect("large fixture");
    let small = admission(
        V1,
        &format!("s{i}"),
        json!({"spec": {"containers": [{"name": "a"}]}}),
    )
    .to_string()
    .into_bytes();
    let mut took = Vec::new();
    for body in [small, large] {
        let started = Instant::now();
        let reply = tokio::time::timeout(
            Duration::from_secs(15),
            client.once(addr, review_request(body)),
        )
        .await
        .unwrap_or_else(|_| panic!("review {i} not answered within 15 s"))
        .expect("review");
        assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
        assert!(
            decoded_patch(&reply.json()).is_some(),
            "review {i} is mutated"
        );
        took.push(started.elapsed());
    }
    took
}

/// Heads that announce a 7 MB body and send none of it, one more every 100 ms, hold none of
/// the body budget: small and ~80 KB reviews are each answered well within 2 s meanwhile.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stalled_bodies_do_not_hold_the_budget() {
    let certs = Certs::new();
    let server = Server::start(config(certs.dir.path())).await;
    let addr = server.addr;
    let client = Client::new(&certs.ca.cert_pem(), None, &[b"http/1.1"]);

    let mut stalled = Vec::new();
    let mut slowest = Duration::ZERO;
    for i in 0..20 {
        let mut tls = client.tls(addr).await.expect("tls");
        tls.write_all(stalled_head(7_000_000).as_bytes())
            .await
            .expect("head");
        tls.flush().await.expect("flush");
        stalled.push(tls);
        tokio::time::sleep(Duration::from_millis(100)).await;
        for took in timed_reviews(&client, addr, i).await {
            assert!(
                took < ANSWER_WITHIN,
                "review {i} took {took:?} with {} stalled bodies",
                i + 1
            );
            slowest = slowest.max(took);
        }
    }
    eprintln!("slowest review with up to 20 stalled bodies: {slowest:?}");
    drop(stalled);
}

/// A body that starts (past the part read without a share of the budget) and then stops holds
/// its share for the fill timeout only: it gets a 408 then, and the reviews queued behind it
/// are answered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_that_stops_loses_its_share() {
    let certs = Certs::new();
    let mut cfg = config(certs.dir.path());
    cfg.limits.body_fill_timeout = Duration::from_millis(500);
    let server = Server::start(cfg).await;
    let addr = server.addr;
    let client = Client::new(&certs.ca.cert_pem(), None, &[b"http/1.1"]);

    let mut tls = client.tls(addr).await.expect("tls");
    let started = Instant::now();
    let mut request = stalled_head(7_000_000).into_bytes();
    request.extend_from_slice(&[b' '; 64 * 1024]);
    let answer = raw_exchange(&mut tls, &request, Duration::from_secs(15)).await;
    let took = started.elapsed();
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(
        answer.contains("body not received within 500ms"),
        "{answer}"
    );
    assert!(took < Duration::from_secs(3), "408 after {took:?}");
    // Reviews go on as before.
    timed_reviews(&client, addr, 0).await;
}
