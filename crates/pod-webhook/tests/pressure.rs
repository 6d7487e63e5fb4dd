// SPDX-FileCopyrightText: 2026 apiserver-proxy contributors
// SPDX-License-Identifier: Apache-2.0

//! The server under pressure at the edges of HTTP: clients waiting in the listen backlog,
//! compactly written heads, HTTP/2 clients that ignore GOAWAY, heads hyper refuses, and floods
//! of connections that never finish their TLS handshake. Over real TLS on 127.0.0.1; every loop
//! bounded.

use test_support::webhook as common;

use std::time::{Duration, Instant};

use common::*;
use hyper::StatusCode;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Clients the server has no slot for wait in the listen backlog, 1024 of them for a named
/// host as for the wildcard: 300 connect at once (a backlog of 128 would leave the rest
/// retrying their SYN for a second or more).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_named_host_has_the_long_backlog() {
    let certs = Certs::new();
    let mut cfg = config(certs.dir.path());
    assert_eq!(cfg.listen.host, "127.0.0.1");
    cfg.limits.max_connections = 1;
    let server = Server::start(cfg).await;
    let client = certs.http1_client();
    // The one slot is taken, and the accept loop waits for room for the next client.
    let _held = client.tls(server.addr).await.expect("tls");
    let started = Instant::now();
    let mut waiting = Vec::new();
    for i in 0..300 {
        let tcp = tokio::time::timeout(Duration::from_secs(5), TcpStream::connect(server.addr))
            .await
            .unwrap_or_else(|_| panic!("client {i} not connected within 5 s"))
            .expect("connect");
        waiting.push(tcp);
    }
    let took = started.elapsed();
    assert!(
        took < Duration::from_millis(900),
        "300 connects took {took:?}"
    );
}

/// Reads one `GET /healthz` answer (`ok`) from `tls`.
async fn read_ok(tls: &mut tokio_rustls::client::TlsStream<TcpStream>) {
    let mut answer = Vec::new();
    let mut buf = [0u8; 1024];
    while !answer.ends_with(b"\r\n\r\nok") {
        let n = tokio::time::timeout(Duration::from_secs(5), tls.read(&mut buf))
            .await
            .expect("answer within 5 s")
            .expect("read");
        assert!(n > 0, "closed early: {}", String::from_utf8_lossy(&answer));
        answer.extend_from_slice(&buf[..n]);
    }
}

/// Heads written compactly (`name:value`) are not over-counted: after twenty of them on one
/// connection, a next head sent in the same packet as a request still runs on the header
/// clock (300 ms), not the idle one (8 s).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_next_head_after_compact_heads_gets_the_header_timeout() {
    let certs = Certs::new();
    let server = server_with_short_header_clock(&certs).await;
    let client = certs.http1_client();
    let compact = "GET /healthz HTTP/1.1\r\nhost:localhost\r\nuser-agent:t\r\naccept:*/*\r\n\r\n";
    let mut tls = client.tls(server.addr).await.expect("tls");
    for _ in 0..20 {
        tls.write_all(compact.as_bytes()).await.expect("request");
        read_ok(&mut tls).await;
    }
    let (answer, took) = timed_exchange(
        &mut tls,
        format!("{compact}GET /healthz HTTP/1.1\r\nhost: lo").as_bytes(),
        Duration::from_secs(6),
    )
    .await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(
        took < Duration::from_secs(3),
        "the next head was left for the idle timeout: closed after {took:?}"
    );
}

/// An HTTP/2 client that never acknowledges anything (not the server's SETTINGS, not the
/// PING that comes with GOAWAY) is closed soon after it is asked to go: here when idle for the
/// 1 s idle timeout, then at most the idle timeout again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_http2_client_that_ignores_goaway_is_closed() {
    let certs = Certs::new();
    let mut cfg = config(certs.dir.path());
    cfg.enable_http2 = true;
    cfg.limits.idle_timeout = Duration::from_secs(1);
    let server = Server::start(cfg).await;
    let client = Client::new(&certs.ca.cert_pem(), None, &[b"h2"]);
    let mut silent = Vec::new();
    for _ in 0..5 {
        let mut tls = client.tls(server.addr).await.expect("tls");
        assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
        // The preface and an empty SETTINGS frame, then nothing, ever.
        tls.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x00\x04\x00\x00\x00\x00\x00")
            .await
            .expect("preface");
        tls.flush().await.expect("flush");
        silent.push(tls);
    }
    let started = Instant::now();
    for (i, tls) in silent.iter_mut().enumerate() {
        // Read (never answer) until the server closes.
        let mut buf = [0u8; 4096];
        let closed = tokio::time::timeout(Duration::from_secs(20), async {
            loop {
                match tls.read(&mut buf).await {
                    Ok(0) | Err(_) => break,
                    Ok(_) => {}
                }
            }
        })
        .await;
        assert!(closed.is_ok(), "connection {i} still open after 20 s");
    }
    let took = started.elapsed();
    assert!(took < Duration::from_secs(6), "closed after {took:?}");
    // The server still serves.
    let mut conn = client.connect(server.addr).await.expect("h2 connect");
    let reply = conn.send(get("/healthz")).await.expect("h2 request");
    assert_eq!(reply.status, StatusCode::OK);
}

/// Heads hyper refuses before a handler sees them are answered (431 or 400), counted under
/// `reason="protocol"` and logged like any failed request.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_heads_are_counted_and_logged() {
    let certs = Certs::new();
    let (_server, addr, log_path) = certs.spawn_logged(&[], None).await;
    let client = certs.http1_client();
    let fields = |n: usize| -> String { (0..n).map(|i| format!("x-{i}: v\r\n")).collect() };
    let cases = [
        (
            "head over 16 KiB",
            format!(
                "GET /healthz HTTP/1.1\r\nx: {}\r\n\r\n",
                "a".repeat(17 * 1024)
            ),
            "HTTP/1.1 431",
        ),
        (
            "malformed request line",
            "GET /healthz HTTP/1.1 extra\r\n\r\n".to_owned(),
            "HTTP/1.1 400",
        ),
        (
            "Content-Length not a number",
            "POST /webhook/pod-apiserver-env HTTP/1.1\r\nhost: x\r\ncontent-length: abc\r\n\r\n"
                .to_owned(),
            "HTTP/1.1 400",
        ),
        (
            "101 header fields",
            format!("GET /healthz HTTP/1.1\r\n{}\r\n", fields(101)),
            "HTTP/1.1 431",
        ),
    ];
    for (case, request, status) in &cases {
        let mut tls = client.tls(addr).await.expect("tls");
        let answer = raw_exchange(&mut tls, request.as_bytes(), Duration::from_secs(5)).await;
        assert!(answer.starts_with(status), "{case}: {answer}");
    }
    // 100 fields are fine.
    let mut tls = client.tls(addr).await.expect("tls");
    let fine = format!(
        "GET /healthz HTTP/1.1\r\n{}connection: close\r\n\r\n",
        fields(99)
    );
    let answer = raw_exchange(&mut tls, fine.as_bytes(), Duration::from_secs(5)).await;
    assert!(answer.starts_with("HTTP/1.1 200"), "100 fields: {answer}");

    let metrics = client
        .once(addr, get("/metrics"))
        .await
        .expect("metrics")
        .text();
    let want = "apiserver_proxy_pod_webhook_request_failures_total{reason=\"protocol\"} 4";
    assert!(
        metrics.lines().any(|l| l == want),
        "{want} missing in\n{metrics}"
    );
    // Logged within the same rate limit as every failed request.
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let log = std::fs::read_to_string(&log_path).expect("log");
        let refused: Vec<serde_json::Value> = log
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .filter(|l: &serde_json::Value| {
                l["msg"] == "request failed" && l["reason"] == "protocol"
            })
            .collect();
        if refused.len() == cases.len() {
            // In any order: each connection logs as it ends.
            let mut statuses: Vec<u64> = refused
                .iter()
                .filter_map(|l| l["status"].as_u64())
                .collect();
            statuses.sort_unstable();
            assert_eq!(statuses, [400, 400, 431, 431], "{log}");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{} of {} refused heads logged:\n{log}",
            refused.len(),
            cases.len()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// 1,300 TCP connections that never start their TLS handshake, each reopened as soon as the
/// server drops it, against 1,024 slots: the oldest connection still in its handshake goes
/// as soon as a new client is accepted, so reviews are answered within a second meanwhile.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_silent_connects_does_not_lock_reviews_out() {
    const FLOOD: usize = 1300;
    let certs = Certs::new();
    // A process of its own, as deployed: the flood's tasks do not share its runtime.
    let (_server, addr) = certs
        .spawn(
            &["--max-connections=1024"],
            std::process::Stdio::null(),
            None,
        )
        .await;
    let client = certs.http1_client();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut flood = Vec::new();
    for _ in 0..FLOOD {
        let stop = stop.clone();
        flood.push(tokio::spawn(async move {
            let mut reopened = 0u32;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let Ok(Ok(mut tcp)) =
                    tokio::time::timeout(Duration::from_secs(2), TcpStream::connect(addr)).await
                else {
                    continue;
                };
                // Silent until the server lets go (or the test ends).
                let mut byte = [0u8; 1];
                let _ = tokio::time::timeout(Duration::from_secs(15), tcp.read(&mut byte)).await;
                reopened += 1;
            }
            reopened
        }));
    }
    // Let the flood take every slot.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let mut took = Vec::new();
    for i in 0..10 {
        let started = Instant::now();
        let reply = tokio::time::timeout(
            Duration::from_secs(15),
            client.once(addr, review_request(V1_POD.to_string())),
        )
        .await
        .unwrap_or_else(|_| panic!("review {i} not answered within 15 s"))
        .unwrap_or_else(|e| panic!("review {i}: {e:#}"));
        assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
        took.push(started.elapsed());
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let mut reopened = 0;
    for task in flood {
        task.abort();
        reopened += task.await.unwrap_or(0);
    }
    took.sort();
    eprintln!("reviews during a flood of {FLOOD} silent connects: {took:?} ({reopened} reopened)");
    // Before connections in their handshake were made room with, the median was 5.2 s and
    // most reviews failed; while they were only given 0.5 s, up to 0.46 s on an idle machine
    // and 3.4 s on a loaded one. Now the oldest goes at once: under 0.1 s on an idle machine.
    // The second bound leaves room for one review on a loaded 2-core test machine.
    assert!(
        took[took.len() - 2] < Duration::from_secs(1),
        "9 of 10 reviews must be answered within 1 s: {took:?}"
    );
    assert!(
        took[took.len() - 1] < Duration::from_secs(3),
        "slowest answer took {:?}: {took:?}",
        took[took.len() - 1]
    );
}
