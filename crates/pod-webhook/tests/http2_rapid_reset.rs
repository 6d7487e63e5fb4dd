// SPDX-FileCopyrightText: 2026 apiserver-proxy contributors
// SPDX-License-Identifier: Apache-2.0

//! HTTP/2 rapid reset (CVE-2023-44487): a client that opens streams and resets them at once is
//! sent away with GOAWAY once it passes the limit, and the server keeps serving others.

use test_support::webhook as common;

use std::io::ErrorKind;
use std::net::SocketAddr;
use std::time::Duration;

use common::{Certs, Client, Server, V1_POD, config, get};
use hyper::{Method, Request, StatusCode};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rapid_reset_gets_goaway_and_others_are_served() {
    let certs = Certs::new();
    let mut cfg = config(certs.dir.path());
    cfg.enable_http2 = true;
    let server = Server::start(cfg).await;
    let client = Client::new(&certs.ca.cert_pem(), None, &[b"h2"]);

    // Each abusive connection is cut off long before its 2000 resets. The client may still be
    // writing its burst when the server, having sent GOAWAY, closes: it then sees a broken pipe
    // before it reads the GOAWAY (about one run in 30). So up to three connections, and one of
    // them must read the GOAWAY's reason.
    let mut endings = Vec::new();
    for _ in 0..3 {
        let (opened, error) = reset_rapidly(&client, server.addr).await;
        assert!(opened < 2000, "cut off before all 2000 resets ({opened})");
        if error.is_go_away() {
            assert_eq!(
                error.reason(),
                Some(h2::Reason::ENHANCE_YOUR_CALM),
                "{error:?}"
            );
            break;
        }
        let cause = error.get_io().map(std::io::Error::kind);
        assert!(
            matches!(
                cause,
                Some(ErrorKind::BrokenPipe | ErrorKind::ConnectionReset)
            ),
            "GOAWAY with ENHANCE_YOUR_CALM expected, got {error:?} after {opened} streams"
        );
        endings.push(error);
    }
    assert!(
        endings.len() < 3,
        "no connection read the GOAWAY: {endings:?}"
    );

    // Others are still served, over HTTP/2 and HTTP/1.1.
    let mut conn = client.connect(server.addr).await.expect("h2 connect");
    let reply = conn.send(get("/healthz")).await.expect("h2 request");
    assert_eq!(reply.status, StatusCode::OK);
    let reply = conn
        .send(common::review_request(V1_POD.to_string()))
        .await
        .expect("review over h2");
    assert_eq!(reply.status, StatusCode::OK);
    let h1 = certs.http1_client();
    let reply = h1.once(server.addr, get("/healthz")).await.expect("h1");
    assert_eq!(reply.status, StatusCode::OK);
}

/// Opens streams on a new HTTP/2 connection and resets each at once, without waiting for any
/// answer, until the server ends the connection: how many it opened, and how it ended.
async fn reset_rapidly(client: &Client, addr: SocketAddr) -> (u32, h2::Error) {
    let tls = client.tls(addr).await.expect("TLS");
    assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
    let (mut h2, connection) = h2::client::handshake(tls).await.expect("h2 handshake");
    let connection = tokio::spawn(connection);
    let mut opened = 0u32;
    let mut refused = None;
    for _ in 0..2000 {
        let request = Request::builder()
            .method(Method::POST)
            .uri(format!("https://localhost{}", pod_webhook::WEBHOOK_PATH))
            .header("content-type", "application/json")
            .body(())
            .expect("request");
        let ready = tokio::time::timeout(Duration::from_secs(10), h2.clone().ready()).await;
        match ready {
            Ok(Ok(ready)) => h2 = ready,
            Ok(Err(e)) => {
                refused = Some(e);
                break;
            }
            Err(_) => panic!("the client hangs after {opened} streams"),
        }
        match h2.send_request(request, false) {
            Ok((_response, mut stream)) => {
                stream.send_reset(h2::Reason::CANCEL);
                opened += 1;
                // Bursts of 50, each far over the limit of 20; the pauses let the client read
                // the server's GOAWAY instead of writing into a closed socket.
                if opened.is_multiple_of(50) {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
            Err(e) => {
                refused = Some(e);
                break;
            }
        }
    }
    let ended = tokio::time::timeout(Duration::from_secs(10), connection)
        .await
        .expect("the server ends the abusive connection")
        .expect("task");
    let error = refused
        .or(ended.err())
        .expect("the connection ends with an error");
    (opened, error)
}
