// SPDX-FileCopyrightText: 2026 apiserver-proxy contributors
// SPDX-License-Identifier: Apache-2.0

//! The probe endpoint under silent clients: however many connect and send nothing (and come
//! back when closed), every probe is answered within a second. The endpoint runs in this
//! process on a loopback port, as the sidecar runs it (one runtime thread).

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use sidecar::address::Family;
use sidecar::endpoint;
use sidecar::metrics::Metrics;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// A silent client: connects, sends nothing, and connects again whenever it is closed.
async fn silent(addr: SocketAddr, stop: Arc<AtomicBool>) {
    while !stop.load(Ordering::Relaxed) {
        let Ok(mut stream) = TcpStream::connect(addr).await else {
            tokio::time::sleep(Duration::from_millis(10)).await;
            continue;
        };
        let mut byte = [0u8; 1];
        // Until the server closes it (or the test ends).
        let _ = tokio::time::timeout(Duration::from_secs(30), stream.read(&mut byte)).await;
    }
}

/// One probe: `GET /healthz`, the whole answer; the time it took.
async fn probe(addr: SocketAddr) -> Result<Duration, String> {
    let started = Instant::now();
    let mut stream = TcpStream::connect(addr).await.map_err(|e| e.to_string())?;
    stream
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: node\r\n\r\n")
        .await
        .map_err(|e| e.to_string())?;
    let mut answer = Vec::new();
    stream
        .read_to_end(&mut answer)
        .await
        .map_err(|e| e.to_string())?;
    let answer = String::from_utf8_lossy(&answer);
    if !answer.starts_with("HTTP/1.1 200 OK") {
        return Err(format!("answer: {answer}"));
    }
    Ok(started.elapsed())
}

#[tokio::test]
async fn every_probe_is_answered_within_a_second_beside_100_silent_clients() {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("address");
    let metrics = Arc::new(Metrics::new(Duration::from_secs(60), &[Family::V4]));
    tokio::spawn(endpoint::serve_on(listener, metrics));
    let stop = Arc::new(AtomicBool::new(false));
    let clients: Vec<_> = (0..100)
        .map(|_| tokio::spawn(silent(addr, stop.clone())))
        .collect();
    // Let them all connect and fill every slot.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut times = Vec::new();
    for _ in 0..30 {
        let time = tokio::time::timeout(Duration::from_secs(5), probe(addr))
            .await
            .unwrap_or_else(|_| Err("no answer within 5 s".into()));
        times.push(time);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    stop.store(true, Ordering::Relaxed);
    for client in clients {
        client.abort();
    }
    let slowest = times
        .iter()
        .map(|time| time.clone().unwrap_or(Duration::MAX))
        .max()
        .unwrap_or_default();
    assert!(
        times.iter().all(|time| time.is_ok()) && slowest < Duration::from_secs(1),
        "{times:?}"
    );
    eprintln!("30 probes beside 100 silent clients: slowest {slowest:?}");
}
