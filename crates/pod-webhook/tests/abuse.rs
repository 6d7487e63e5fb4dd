// SPDX-FileCopyrightText: 2026 apiserver-proxy contributors
// SPDX-License-Identifier: Apache-2.0

//! Clients that try to hold the server's shared resources (the body budget, connection slots,
//! memory for answers) get nothing they do not use, and well-formed reviews are still answered
//! within kube-apiserver's deadline. Over real TLS on 127.0.0.1; every loop bounded.

use test_support::webhook as common;

use std::time::{Duration, Instant};

use common::*;
use hyper::StatusCode;
use hyper::body::Bytes;
use pod_webhook::WEBHOOK_PATH;
use pod_webhook::config::Limits;
use pod_webhook::mutate::{MAX_CONTAINERS, MAX_FQDN_BYTES};
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
        took.push(timed_review(client, addr, body, i).await);
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
    let client = certs.http1_client();

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
    let client = certs.http1_client();

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

/// A Pod CREATE review whose `spec.containers` is `n` empty objects.
fn empty_containers_review(n: usize) -> String {
    let mut containers = String::with_capacity(3 * n + 2);
    containers.push('[');
    for i in 0..n {
        containers.push_str(if i == 0 { "{}" } else { ",{}" });
    }
    containers.push(']');
    admission(V1, "many", json!({"spec": {"containers": "CONTAINERS"}}))
        .to_string()
        .replace("\"CONTAINERS\"", &containers)
}

/// 400,000 and 1,000,000 empty containers (1.2 and 3 MB) get a short 400 naming the limit, not
/// a patch of 64 and 161 MB, and the binary's peak memory grows by a small multiple of the
/// body at most.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_empty_containers_get_a_short_refusal() {
    let certs = Certs::new();
    let (server, addr) = certs.spawn(&[], std::process::Stdio::null(), None).await;
    let pid = server.0.id();
    let client = certs.http1_client();
    let base = status_kib(pid, "VmHWM:");
    for n in [400_000, 1_000_000] {
        let body = empty_containers_review(n);
        let body_kib = body.len() as u64 / 1024;
        let reply = tokio::time::timeout(
            Duration::from_secs(30),
            client.once(addr, review_request(body)),
        )
        .await
        .expect("answered within 30 s")
        .expect("review");
        let text = reply.text();
        assert_eq!(
            reply.status,
            StatusCode::BAD_REQUEST,
            "{}",
            text.chars().take(300).collect::<String>()
        );
        assert!(
            text.contains(&format!(
                "spec.containers: more than {MAX_CONTAINERS} entries"
            )),
            "{}",
            text.chars().take(300).collect::<String>()
        );
        assert!(
            reply.body.len() < 1024,
            "answer of {} bytes",
            reply.body.len()
        );
        let peak = status_kib(pid, "VmHWM:");
        eprintln!(
            "{n} empty containers, body {body_kib} KiB: peak RSS {base} KiB before, {peak} KiB after"
        );
        assert!(
            peak <= base + 3 * body_kib + 4096,
            "peak RSS grew from {base} to {peak} KiB for a {body_kib} KiB body"
        );
    }
}

/// The container limit is the real ceiling: with the longest FQDN `--apiserver-fqdn` accepts,
/// a pod of the most empty init containers and containers (the most patch for the fewest request
/// bytes) gets its patch, which applies; one container more is refused, the message naming the
/// list and the limit. An answer larger than the allowance is refused, here with a smaller
/// allowance than the default.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_container_limit_is_reachable_with_the_longest_fqdn() {
    let certs = Certs::new();
    let mut cfg = config(certs.dir.path());
    let longest = fqdn(MAX_FQDN_BYTES);
    cfg.mutate.apiserver_fqdn = longest.clone();
    let server = Server::start(cfg).await;
    let client = certs.http1_client();

    let pod = empty_containers_pod(MAX_CONTAINERS);
    let body = admission(V1, "most", pod.clone()).to_string();
    let reply = client
        .once(server.addr, review_request(body.clone()))
        .await
        .expect("review");
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    let growth = reply.body.len() - body.len();
    assert!(
        growth <= Limits::DEFAULT.answer_unbudgeted_bytes
            && growth + 1024 > Limits::DEFAULT.answer_unbudgeted_bytes,
        "the answer grew by {growth} bytes; the allowance is {}",
        Limits::DEFAULT.answer_unbudgeted_bytes
    );
    let patched = apply(&pod, &reply.json());
    for list in ["initContainers", "containers"] {
        let containers = patched["spec"][list].as_array().expect("list");
        assert_eq!(containers.len(), MAX_CONTAINERS);
        for container in containers {
            assert_eq!(
                container["env"],
                json!([{"name": "KUBERNETES_SERVICE_HOST", "value": longest}]),
                "{list}"
            );
        }
    }

    for list in ["initContainers", "containers"] {
        let mut pod = empty_containers_pod(MAX_CONTAINERS);
        pod["spec"][list]
            .as_array_mut()
            .expect("list")
            .push(json!({}));
        let reply = client
            .once(
                server.addr,
                review_request(admission(V1, "one-more", pod).to_string()),
            )
            .await
            .expect("review");
        assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{}", reply.text());
        let want = format!(
            "request.object is not a valid Pod: spec.{list}: more than {MAX_CONTAINERS} entries; \
             a pod may have at most {MAX_CONTAINERS} containers and {MAX_CONTAINERS} init containers"
        );
        assert!(reply.text().starts_with(&want), "{}", reply.text());
    }
    server.stop().await.expect("clean stop");

    // A server allowed less than the default refuses the answer, naming the sizes.
    let mut cfg = config(certs.dir.path());
    cfg.mutate.apiserver_fqdn = longest;
    cfg.limits.answer_unbudgeted_bytes = 64 * 1024;
    let server = Server::start(cfg).await;
    let reply = client
        .once(server.addr, review_request(body))
        .await
        .expect("review");
    assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{}", reply.text());
    assert!(
        reply
            .text()
            .contains("more than 65536 bytes larger than the request body")
            && reply.text().contains(&format!(
                "the pod has {} containers to patch",
                2 * MAX_CONTAINERS
            )),
        "{}",
        reply.text()
    );
}

/// A Pod DELETE review whose uid is `len` bytes: its answer (no patch) is about as large.
fn huge_uid_review(len: usize) -> String {
    let mut review = admission(V1, &"u".repeat(len), json!(null));
    review["request"]["operation"] = json!("DELETE");
    review.to_string()
}

/// Clients that post a review with a 6 MiB uid and never read the answer: the answer that does
/// not move within the write timeout closes its connection, so they cannot hold the two slots
/// (or the answers' memory), and a new client is served.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_that_do_not_read_lose_their_connection() {
    let certs = Certs::new();
    let mut cfg = config(certs.dir.path());
    cfg.limits.max_connections = 2;
    cfg.limits.write_timeout = Duration::from_secs(1);
    cfg.limits.body_budget_bytes = 32 << 20;
    let server = Server::start(cfg).await;
    let addr = server.addr;
    let client = certs.http1_client();

    let body = huge_uid_review(6 << 20);
    let request = format!(
        "POST {WEBHOOK_PATH} HTTP/1.1\r\nhost: localhost\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    );
    let mut readers = Vec::new();
    for _ in 0..2 {
        let mut tls = client.tls_small_window(addr, 4096).await.expect("tls");
        tls.write_all(request.as_bytes()).await.expect("request");
        tls.flush().await.expect("flush");
        readers.push(tls);
    }
    // Both slots are taken by clients that do not read; a third is served once they are cut.
    let started = Instant::now();
    let reply = tokio::time::timeout(Duration::from_secs(20), client.once(addr, get("/healthz")))
        .await
        .expect("a new client is served while the others do not read")
        .expect("healthz");
    assert_eq!(reply.status, StatusCode::OK);
    let waited = started.elapsed();
    assert!(waited < Duration::from_secs(6), "served after {waited:?}");
    // The server closed them before the answer was through (reading now would let it move).
    tokio::time::sleep(Duration::from_secs(3)).await;
    for mut tls in readers {
        let started = Instant::now();
        let (got, _) = test_support::read_until_close(&mut tls, Duration::from_secs(10)).await;
        assert!(started.elapsed() < Duration::from_secs(10), "still open");
        assert!(got.len() < body.len(), "the whole answer was sent");
    }
}

/// Over HTTP/2, streams whose answers the client does not take (no flow-control credit)
/// close the connection after the write timeout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http2_streams_that_are_not_read_close_the_connection() {
    let certs = Certs::new();
    let mut cfg = config(certs.dir.path());
    cfg.enable_http2 = true;
    cfg.limits.write_timeout = Duration::from_secs(1);
    cfg.limits.body_budget_bytes = 32 << 20;
    let server = Server::start(cfg).await;
    let client = Client::new(&certs.ca.cert_pem(), None, &[b"h2"]);
    let tls = client.tls(server.addr).await.expect("tls");
    let (mut h2, connection) = h2::client::Builder::new()
        .initial_window_size(16 * 1024)
        .handshake::<_, Bytes>(tls)
        .await
        .expect("h2 handshake");
    let connection = tokio::spawn(connection);
    let body = Bytes::from(huge_uid_review(1 << 20));
    let mut responses = Vec::new();
    for _ in 0..5 {
        h2 = tokio::time::timeout(Duration::from_secs(10), h2.ready())
            .await
            .expect("ready")
            .expect("h2 ready");
        let request = hyper::Request::builder()
            .method(hyper::Method::POST)
            .uri(format!("https://localhost{WEBHOOK_PATH}"))
            .header("content-type", "application/json")
            .header("content-length", body.len())
            .body(())
            .expect("request");
        let (response, mut stream) = h2.send_request(request, false).expect("stream");
        stream.reserve_capacity(body.len());
        stream.send_data(body.clone(), true).expect("body");
        responses.push(response);
    }
    // The answers start (headers arrive) but their bodies are never read.
    let mut unread = Vec::new();
    for response in responses {
        let head = tokio::time::timeout(Duration::from_secs(15), response)
            .await
            .expect("answer headers")
            .expect("answer");
        assert_eq!(head.status(), StatusCode::OK);
        unread.push(head);
    }
    let started = Instant::now();
    let ended = tokio::time::timeout(Duration::from_secs(15), connection).await;
    assert!(
        ended.is_ok(),
        "connection still open after {:?}",
        started.elapsed()
    );
    drop(unread);
}

/// With every slot taken by idle TLS connections, a new client is served at once: idle
/// connections are closed to make room, the one with a request in flight is left alone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_connections_make_room_for_new_clients() {
    let certs = Certs::new();
    let mut cfg = config(certs.dir.path());
    cfg.limits.max_connections = 8;
    let server = Server::start(cfg).await;
    let addr = server.addr;
    let client = certs.http1_client();

    // One connection with a request in flight: all of the body but its last byte.
    let mut busy = client.tls(addr).await.expect("tls");
    let head = format!(
        "POST {WEBHOOK_PATH} HTTP/1.1\r\nhost: localhost\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n",
        V1_POD.len()
    );
    busy.write_all(head.as_bytes()).await.expect("head");
    busy.write_all(&V1_POD.as_bytes()[..V1_POD.len() - 1])
        .await
        .expect("body");
    busy.flush().await.expect("flush");
    // Seven idle ones: some never sent a request, some are kept alive after one.
    let mut idle = Vec::new();
    for i in 0..7 {
        if i % 2 == 0 {
            idle.push(client.tls(addr).await.expect("tls"));
        } else {
            let mut tls = client.tls(addr).await.expect("tls");
            tls.write_all(b"GET /healthz HTTP/1.1\r\nhost: localhost\r\n\r\n")
                .await
                .expect("request");
            idle.push(tls);
        }
    }
    tokio::time::sleep(Duration::from_millis(300)).await;

    for round in 0..3 {
        let started = Instant::now();
        let reply = tokio::time::timeout(
            Duration::from_secs(5),
            client.once(addr, get("/healthz")),
        )
        .await
        .unwrap_or_else(|_| {
            panic!(
                "round {round}: a new client is not served while idle connections hold every slot"
            )
        })
        .expect("healthz");
        assert_eq!(reply.status, StatusCode::OK);
        assert!(
            started.elapsed() < ANSWER_WITHIN,
            "round {round}: served after {:?}",
            started.elapsed()
        );
    }
    // The busy connection kept its slot and its request.
    let answer = raw_exchange(&mut busy, b"}", Duration::from_secs(2)).await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(answer.contains("\"uid\":\"u\""), "{answer}");
    drop(idle);
}

/// Out of file descriptors (clients holding every one the process may open): the accept loop
/// backs off and says so once, and the certificate check is not taken for a broken certificate
/// (no reload error logged or counted).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn running_out_of_descriptors_is_not_a_bad_certificate() {
    let certs = Certs::new();
    let (server, addr, log_path) = certs.spawn_logged(&[], Some(40)).await;
    let mut held = Vec::new();
    for _ in 0..60 {
        if let Ok(Ok(tcp)) =
            tokio::time::timeout(Duration::from_secs(2), tokio::net::TcpStream::connect(addr)).await
        {
            held.push(tcp);
        }
    }
    // Several certificate checks (one a second) while no descriptor is free.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let open = std::fs::read_dir(format!("/proc/{}/fd", server.0.id()))
        .map(|d| d.count())
        .unwrap_or(0);
    assert!(
        open >= 38,
        "the server is not out of descriptors ({open} open)"
    );
    drop(held);
    tokio::time::sleep(Duration::from_millis(500)).await;

    let client = certs.http1_client();
    let mut metrics = String::new();
    for _ in 0..40 {
        if let Ok(reply) = client.once(addr, get("/metrics")).await {
            metrics = reply.text();
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        metrics
            .lines()
            .any(|l| l == "apiserver_proxy_pod_webhook_certificate_reload_errors_total 0"),
        "{metrics}"
    );
    let log = std::fs::read_to_string(&log_path).expect("log");
    assert!(!log.contains("cannot reload the TLS certificate"), "{log}");
    assert!(
        log.contains("cannot check the certificate files for changes; retrying"),
        "{log}"
    );
    let accept_warnings = log.matches("cannot accept connections").count();
    assert!(
        (1..=3).contains(&accept_warnings),
        "{accept_warnings} accept warnings:\n{log}"
    );
}

/// A client whose every request fails (a 404 on a 10 KB path, 2,000 times) gets each counted
/// in the metrics, but the log takes a burst and then a bounded rate of short lines.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_requests_are_counted_and_logged_at_a_bounded_rate() {
    const REQUESTS: usize = 2000;
    let certs = Certs::new();
    let (_server, addr, log_path) = certs.spawn_logged(&[], None).await;
    let client = certs.http1_client();
    let path = format!("/{}", "p".repeat(10_000));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..4 {
        let client = client.clone();
        let path = path.clone();
        tasks.push(tokio::spawn(async move {
            let mut conn = client.connect(addr).await.expect("connect");
            for _ in 0..REQUESTS / 4 {
                let reply = conn.send(get(&path)).await.expect("request");
                assert_eq!(reply.status, StatusCode::NOT_FOUND);
            }
        }));
    }
    for task in tasks {
        tokio::time::timeout(Duration::from_secs(50), task)
            .await
            .expect("requests done within 50 s")
            .expect("task");
    }
    let elapsed = started.elapsed();
    let log = std::fs::read_to_string(&log_path).expect("log");
    let lines = log.matches("request failed").count();
    let allowed = 50 + 10 * (elapsed.as_secs() as usize + 1);
    eprintln!(
        "{REQUESTS} failed requests in {elapsed:?}: {lines} log lines, {} bytes of log",
        log.len()
    );
    let metrics = client
        .once(addr, get("/metrics"))
        .await
        .expect("metrics")
        .text();
    let want = format!(
        "apiserver_proxy_pod_webhook_request_failures_total{{reason=\"not_found\"}} {REQUESTS}"
    );
    assert!(
        metrics.lines().any(|l| l == want),
        "{want} missing in\n{metrics}"
    );

    assert!(
        (50..=allowed).contains(&lines),
        "{lines} lines logged for {REQUESTS} failures in {elapsed:?}"
    );
    assert!(
        log.lines().all(|l| l.len() < 2048),
        "a log line quotes the whole path"
    );
    assert!(
        log.lines().any(|l| {
            serde_json::from_str::<serde_json::Value>(l)
                .ok()
                .and_then(|line| line["suppressed"].as_u64())
                .is_some_and(|n| n > 0)
        }),
        "no line says how many were left out"
    );
}

/// A second request head begun while the first request is in flight (here in the same
/// packet) is cut off by the header-read timeout, not left for the idle timeout; a kept-alive
/// connection with nothing pending still waits for the idle timeout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_next_head_sent_during_a_request_gets_the_header_timeout() {
    let certs = Certs::new();
    let server = server_with_short_header_clock(&certs).await;
    let client = certs.http1_client();
    let first = format!(
        "POST {WEBHOOK_PATH} HTTP/1.1\r\nhost: localhost\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{V1_POD}",
        V1_POD.len()
    );
    for (case, second, cut) in [
        (
            "partial next head",
            "GET /healthz HTTP/1.1\r\nhost: lo",
            true,
        ),
        ("nothing more", "", false),
    ] {
        let mut tls = client.tls(server.addr).await.expect("tls");
        let (answer, took) = timed_exchange(
            &mut tls,
            format!("{first}{second}").as_bytes(),
            Duration::from_secs(4),
        )
        .await;
        assert!(answer.starts_with("HTTP/1.1 200"), "{case}: {answer}");
        if cut {
            assert!(
                took < Duration::from_secs(2),
                "{case}: closed after {took:?}"
            );
        } else {
            assert!(
                took >= Duration::from_secs(4),
                "{case}: closed after {took:?}"
            );
        }
    }
}
