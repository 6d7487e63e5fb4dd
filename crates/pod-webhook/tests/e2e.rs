// SPDX-FileCopyrightText: 2026 apiserver-proxy contributors
// SPDX-License-Identifier: Apache-2.0

//! End to end over real TLS on 127.0.0.1: the server from the library, a rustls + hyper client.

use test_support::webhook as common;

use std::time::Duration;

use common::*;
use http_body_util::Full;
use hyper::body::Bytes;
use hyper::{Method, Request, StatusCode};
use pod_webhook::WEBHOOK_PATH;
use serde_json::{Value, json};

const V1: &str = "admission.k8s.io/v1";
const V1BETA1: &str = "admission.k8s.io/v1beta1";

fn host_env() -> Value {
    json!({"name": "KUBERNETES_SERVICE_HOST", "value": "foo.bar."})
}

/// The README flow with the committed test data: the exact patch of the original.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readme_example_exact_output() {
    let server = Server::start(config(&testdata())).await;
    let ca = std::fs::read_to_string(testdata().join("ca.crt")).expect("ca.crt");
    let body = std::fs::read(testdata().join("admission.json")).expect("admission.json");
    let request: Value = serde_json::from_slice(&body).expect("admission.json is JSON");
    let reply = Client::new(&ca, None, &[b"http/1.1"])
        .once(server.addr, review_request(body))
        .await
        .expect("request");
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(reply.headers["content-type"], "application/json");
    let review = reply.json();
    assert_eq!(review["apiVersion"], V1);
    assert_eq!(review["kind"], "AdmissionReview");
    assert_eq!(review["response"]["uid"], request["request"]["uid"]);
    assert_eq!(review["response"]["allowed"], true);
    assert_eq!(
        decoded_patch(&review),
        Some(json!([
            {"op": "add", "path": "/spec/initContainers/0/env", "value": [host_env()]},
            {"op": "add", "path": "/spec/containers/0/env", "value": [host_env()]},
        ]))
    );
    let mut want = request["request"]["object"].clone();
    want["spec"]["initContainers"][0]["env"] = json!([host_env()]);
    want["spec"]["containers"][0]["env"] = json!([host_env()]);
    assert_eq!(apply(&request["request"]["object"], &review), want);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn v1_and_v1beta1_answer_in_kind() {
    let certs = Certs::new();
    let server = Server::start(config(certs.dir.path())).await;
    let client = certs.http1_client();
    let mut conn = client.connect(server.addr).await.expect("connect");
    let pod = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"},
                     "spec": {"containers": [{"name": "a", "env": [{"name": "X", "value": "1"}]}]}});
    for (version, uid) in [(V1, "uid-v1"), (V1BETA1, "uid-v1beta1")] {
        let reply = conn
            .send(review_request(
                admission(version, uid, pod.clone()).to_string(),
            ))
            .await
            .expect("request");
        assert_eq!(reply.status, StatusCode::OK);
        let review = reply.json();
        assert_eq!(review["apiVersion"], version);
        assert_eq!(review["kind"], "AdmissionReview");
        assert_eq!(review["response"]["uid"], uid);
        assert_eq!(review["response"]["allowed"], true);
        let patched = apply(&pod, &review);
        assert_eq!(
            patched["spec"]["containers"][0]["env"],
            json!([{"name": "X", "value": "1"}, host_env()])
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unchanged_pods_get_no_patch() {
    let certs = Certs::new();
    let server = Server::start(config(certs.dir.path())).await;
    let client = certs.http1_client();
    let mut conn = client.connect(server.addr).await.expect("connect");
    let label = "apiserver-proxy.networking.gardener.cloud/inject";
    let cases = [
        (
            "already set",
            json!({"spec": {"initContainers": [{"name": "i", "env": [{"name": "KUBERNETES_SERVICE_HOST", "value": "x"}]}],
                            "containers": [{"name": "a", "env": [{"name": "KUBERNETES_SERVICE_HOST",
                                "valueFrom": {"fieldRef": {"fieldPath": "status.hostIP"}}}]}]}}),
        ),
        ("no containers", json!({"spec": {}})),
        (
            "opted out (disable)",
            json!({"metadata": {"labels": {label: "disable"}}, "spec": {"containers": [{"name": "a"}]}}),
        ),
        (
            "opted out (false)",
            json!({"metadata": {"labels": {label: "false"}}, "spec": {"containers": [{"name": "a"}]}}),
        ),
    ];
    for (name, pod) in cases {
        let reply = conn
            .send(review_request(admission(V1, "u", pod).to_string()))
            .await
            .expect("request");
        assert_eq!(reply.status, StatusCode::OK, "{name}");
        assert_eq!(
            reply.json(),
            json!({"apiVersion": V1, "kind": "AdmissionReview", "response": {"uid": "u", "allowed": true}}),
            "{name}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn non_pod_and_non_create_are_allowed_unchanged() {
    let certs = Certs::new();
    let server = Server::start(config(certs.dir.path())).await;
    let client = certs.http1_client();
    let mut conn = client.connect(server.addr).await.expect("connect");
    let pod = json!({"spec": {"containers": [{"name": "a"}]}});
    let mut update = admission(V1, "u1", pod.clone());
    update["request"]["operation"] = json!("UPDATE");
    update["request"]["oldObject"] = pod.clone();
    let mut delete = admission(V1BETA1, "u2", Value::Null);
    delete["request"]["operation"] = json!("DELETE");
    let mut deployment = admission(
        V1,
        "u3",
        json!({"spec": {"template": {"spec": {"containers": [{"name": "a"}]}}}}),
    );
    deployment["request"]["kind"] = json!({"group": "apps", "version": "v1", "kind": "Deployment"});
    deployment["request"]["resource"] =
        json!({"group": "apps", "version": "v1", "resource": "deployments"});
    let mut binding = admission(V1, "u4", json!({"target": {"name": "node"}}));
    binding["request"]["kind"]["kind"] = json!("Binding");
    binding["request"]["subResource"] = json!("binding");
    for request in [update, delete, deployment, binding] {
        let reply = conn
            .send(review_request(request.to_string()))
            .await
            .expect("request");
        assert_eq!(reply.status, StatusCode::OK);
        let review = reply.json();
        assert_eq!(review["apiVersion"], request["apiVersion"]);
        assert_eq!(
            review["response"],
            json!({"uid": request["request"]["uid"], "allowed": true})
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn skip_env_from_leaves_those_containers() {
    let certs = Certs::new();
    let mut cfg = config(certs.dir.path());
    cfg.mutate.skip_env_from = true;
    let server = Server::start(cfg).await;
    let client = certs.http1_client();
    let pod = json!({"spec": {"containers": [
        {"name": "a", "envFrom": [{"configMapRef": {"name": "cm"}}]},
        {"name": "b"},
    ]}});
    let reply = client
        .once(
            server.addr,
            review_request(admission(V1, "u", pod.clone()).to_string()),
        )
        .await
        .expect("request");
    let review = reply.json();
    assert_eq!(
        decoded_patch(&review),
        Some(json!([{"op": "add", "path": "/spec/containers/1/env", "value": [host_env()]}]))
    );
}

/// Every kind of bad input gets its status and a message naming the problem, and the server
/// keeps serving afterwards.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_gets_clear_answers() {
    let certs = Certs::new();
    let server = Server::start(config(certs.dir.path())).await;
    let client = certs.http1_client();
    let post = |ct: Option<&str>, body: Vec<u8>| {
        let mut b = Request::builder()
            .method(Method::POST)
            .uri(WEBHOOK_PATH)
            .header("host", "localhost");
        if let Some(ct) = ct {
            b = b.header("content-type", ct);
        }
        b.body(Full::new(Bytes::from(body))).expect("request")
    };
    let json = Some("application/json");
    let cases: Vec<(&str, Request<Full<Bytes>>, StatusCode, &str)> = vec![
        ("malformed JSON", post(json, b"{\"apiVersion\":".to_vec()), StatusCode::BAD_REQUEST, "body is not a valid AdmissionReview: apiVersion: EOF while parsing"),
        ("not an object", post(json, b"\"x\"".to_vec()), StatusCode::BAD_REQUEST, "expected a JSON object"),
        (
            "wrong type",
            post(json, br#"{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"uid":"u","operation":5}}"#.to_vec()),
            StatusCode::BAD_REQUEST,
            "request.operation: invalid type: integer `5`",
        ),
        (
            "wrong pod type",
            post(json, admission(V1, "u", json!({"spec": {"containers": [{"env": {"a": 1}}]}})).to_string().into_bytes()),
            StatusCode::BAD_REQUEST,
            "request.object is not a valid Pod: spec.containers[0].env: invalid type: map",
        ),
        (
            "missing request",
            post(json, br#"{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview"}"#.to_vec()),
            StatusCode::BAD_REQUEST,
            "AdmissionReview has no request",
        ),
        (
            "missing uid",
            post(json, br#"{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"operation":"CREATE"}}"#.to_vec()),
            StatusCode::BAD_REQUEST,
            "request.uid is missing or empty",
        ),
        (
            "unsupported apiVersion",
            post(json, br#"{"apiVersion":"admission.k8s.io/v2","kind":"AdmissionReview","request":{"uid":"u"}}"#.to_vec()),
            StatusCode::BAD_REQUEST,
            "unsupported apiVersion \"admission.k8s.io/v2\"",
        ),
        ("wrong method", get(WEBHOOK_PATH), StatusCode::METHOD_NOT_ALLOWED, "method GET not allowed; use POST"),
        ("unknown path", get("/mutate"), StatusCode::NOT_FOUND, "no handler for path /mutate"),
        ("text body", post(Some("text/plain"), b"{}".to_vec()), StatusCode::UNSUPPORTED_MEDIA_TYPE, "Content-Type \"text/plain\" not supported"),
        ("no content type", post(None, b"{}".to_vec()), StatusCode::UNSUPPORTED_MEDIA_TYPE, "Content-Type missing"),
    ];
    for (name, request, status, message) in cases {
        let reply = client.once(server.addr, request).await.expect(name);
        assert_eq!(reply.status, status, "{name}: {}", reply.text());
        assert!(
            reply.text().contains(message),
            "{name}: {:?} lacks {message:?}",
            reply.text()
        );
        if status == StatusCode::METHOD_NOT_ALLOWED {
            assert_eq!(reply.headers["allow"], "POST");
        }
    }

    // A declared body over 7 MiB is refused before it is sent.
    let mut tls = client.tls(server.addr).await.expect("tls");
    let raw = format!(
        "POST {WEBHOOK_PATH} HTTP/1.1\r\nhost: localhost\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n",
        7 * 1024 * 1024 + 1
    );
    let answer = raw_exchange(&mut tls, raw.as_bytes(), Duration::from_secs(10)).await;
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    assert!(
        answer.contains("body larger than 7340032 bytes"),
        "{answer}"
    );

    // A chunked body (no Content-Length) over the limit is cut off too.
    let mut tls = client.tls(server.addr).await.expect("tls");
    let mut raw = format!(
        "POST {WEBHOOK_PATH} HTTP/1.1\r\nhost: localhost\r\ncontent-type: application/json\r\ntransfer-encoding: chunked\r\n\r\n"
    )
    .into_bytes();
    let chunk = vec![b' '; 1024 * 1024];
    for _ in 0..8 {
        raw.extend_from_slice(format!("{:x}\r\n", chunk.len()).as_bytes());
        raw.extend_from_slice(&chunk);
        raw.extend_from_slice(b"\r\n");
    }
    raw.extend_from_slice(b"0\r\n\r\n");
    let answer = raw_exchange(&mut tls, &raw, Duration::from_secs(10)).await;
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");

    // An oversized header block is refused.
    let mut tls = client.tls(server.addr).await.expect("tls");
    let raw = format!(
        "GET /healthz HTTP/1.1\r\nhost: localhost\r\nx-big: {}\r\n\r\n",
        "a".repeat(64 * 1024)
    );
    let answer = raw_exchange(&mut tls, raw.as_bytes(), Duration::from_secs(10)).await;
    assert!(answer.starts_with("HTTP/1.1 431"), "{answer}");

    // Still serving.
    let reply = client
        .once(server.addr, get("/healthz"))
        .await
        .expect("healthz");
    assert_eq!(reply.status, StatusCode::OK);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_ready_and_metrics() {
    let certs = Certs::new();
    let server = Server::start(config(certs.dir.path())).await;
    let client = certs.http1_client();
    let mut conn = client.connect(server.addr).await.expect("connect");
    for path in ["/healthz", "/readyz"] {
        let reply = conn.send(get(path)).await.expect(path);
        assert_eq!(
            (reply.status, reply.text().as_str()),
            (StatusCode::OK, "ok"),
            "{path}"
        );
    }
    let pod = json!({"spec": {"containers": [{"name": "a"}]}});
    let opted_out = json!({"metadata": {"labels": {"apiserver-proxy.networking.gardener.cloud/inject": "0"}},
                           "spec": {"containers": [{"name": "a"}]}});
    conn.send(review_request(admission(V1, "1", pod.clone()).to_string()))
        .await
        .expect("mutate");
    conn.send(review_request(admission(V1, "2", pod).to_string()))
        .await
        .expect("mutate");
    conn.send(review_request(admission(V1, "3", opted_out).to_string()))
        .await
        .expect("skip");
    conn.send(review_request("{".to_string()))
        .await
        .expect("bad");
    let reply = conn.send(get("/metrics")).await.expect("metrics");
    assert_eq!(reply.status, StatusCode::OK);
    let text = reply.text();
    for line in [
        "controller_runtime_webhook_requests_total{webhook=\"/webhook/pod-apiserver-env\",code=\"200\"} 3",
        "controller_runtime_webhook_requests_total{webhook=\"/webhook/pod-apiserver-env\",code=\"400\"} 1",
        "controller_runtime_webhook_requests_in_flight{webhook=\"/webhook/pod-apiserver-env\"} 0",
        "controller_runtime_webhook_latency_seconds_count{webhook=\"/webhook/pod-apiserver-env\"} 4",
        "apiserver_proxy_pod_webhook_pods_mutated_total 2",
        "apiserver_proxy_pod_webhook_pods_skipped_total{reason=\"opted_out\"} 1",
    ] {
        assert!(text.lines().any(|l| l == line), "{line} missing in\n{text}");
    }
    let reply = conn
        .send(
            Request::builder()
                .method(Method::POST)
                .uri("/healthz")
                .header("host", "localhost")
                .body(Full::new(Bytes::new()))
                .expect("req"),
        )
        .await
        .expect("post healthz");
    assert_eq!(reply.status, StatusCode::METHOD_NOT_ALLOWED);
}

/// Before any request, every labelled counter shows every label value it can take, at 0, so
/// that `increase()` and `rate()` see the first event.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fresh_server_shows_every_label_at_0() {
    let certs = Certs::new();
    let server = Server::start(config(certs.dir.path())).await;
    let reply = certs
        .http1_client()
        .once(server.addr, get("/metrics"))
        .await
        .expect("metrics");
    assert_eq!(reply.status, StatusCode::OK);
    let text = reply.text();
    let mut want = Vec::new();
    for code in [200, 400, 403, 405, 408, 413, 415, 500, 503] {
        want.push(format!(
            "controller_runtime_webhook_requests_total{{webhook=\"/webhook/pod-apiserver-env\",code=\"{code}\"}} 0"
        ));
    }
    for reason in ["opted_out", "nothing_to_do"] {
        want.push(format!(
            "apiserver_proxy_pod_webhook_pods_skipped_total{{reason=\"{reason}\"}} 0"
        ));
    }
    for reason in pod_webhook::metrics::FAILURE_REASONS {
        want.push(format!(
            "apiserver_proxy_pod_webhook_request_failures_total{{reason=\"{reason}\"}} 0"
        ));
    }
    for line in &want {
        assert!(text.lines().any(|l| l == line), "{line} missing in\n{text}");
    }
    // Nothing counted yet: every labelled counter sample is one of those above.
    for line in text.lines().filter(|l| l.contains("_total{")) {
        assert!(want.iter().any(|w| w == line), "unexpected {line}");
    }
}

/// With a client CA, the review path needs a client certificate the CA signed, and the probes
/// and `/metrics` do not: the kubelet's HTTPS probes present none. A certificate of another CA
/// fails the handshake.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mtls_guards_reviews_and_lets_probes_through() {
    let certs = Certs::new();
    // Ready means /readyz answered 200 to a client without a certificate.
    let (_server, addr, log) = certs.spawn_logged(&["--client-ca-name=ca.crt"], None).await;
    let ca = certs.ca.cert_pem();
    let pod = json!({"spec": {"containers": [{"name": "a"}]}});
    let review = || review_request(admission(V1, "u", pod.clone()).to_string());

    let anonymous = Client::new(&ca, None, &[b"http/1.1"]);
    for path in ["/healthz", "/readyz", "/metrics"] {
        let reply = anonymous.once(addr, get(path)).await.expect(path);
        assert_eq!(
            reply.status,
            StatusCode::OK,
            "{path} without a client certificate"
        );
    }
    let refused = anonymous.once(addr, review()).await.expect("an answer");
    assert_eq!(refused.status, StatusCode::FORBIDDEN, "{}", refused.text());
    assert!(
        refused.text().contains("no client certificate"),
        "{}",
        refused.text()
    );

    let good = certs.ca.client("kube-apiserver").expect("client cert");
    let trusted = Client::new(&ca, Some(&good), &[b"http/1.1"]);
    let reply = trusted.once(addr, review()).await.expect("a review");
    assert_eq!(reply.status, StatusCode::OK);
    assert!(decoded_patch(&reply.json()).is_some());
    for path in ["/healthz", "/readyz", "/metrics"] {
        let reply = trusted.once(addr, get(path)).await.expect(path);
        assert_eq!(
            reply.status,
            StatusCode::OK,
            "{path} with a client certificate"
        );
    }

    let stranger = Ca::new("other CA")
        .expect("CA")
        .client("intruder")
        .expect("cert");
    let foreign = Client::new(&ca, Some(&stranger), &[b"http/1.1"]);
    for request in [review(), get("/healthz")] {
        let result = foreign.once(addr, request).await;
        assert!(
            result.is_err(),
            "a certificate of another CA must fail the handshake, got {result:?}"
        );
    }

    let text = anonymous
        .once(addr, get("/metrics"))
        .await
        .expect("metrics")
        .text();
    for line in [
        "apiserver_proxy_pod_webhook_request_failures_total{reason=\"unauthenticated\"} 1",
        "controller_runtime_webhook_requests_total{webhook=\"/webhook/pod-apiserver-env\",code=\"403\"} 1",
        "controller_runtime_webhook_requests_total{webhook=\"/webhook/pod-apiserver-env\",code=\"200\"} 1",
    ] {
        assert!(text.lines().any(|l| l == line), "{line} missing in\n{text}");
    }
    let logged = std::fs::read_to_string(&log).expect("the log");
    assert!(
        logged
            .lines()
            .any(|line| line.contains("\"reason\":\"unauthenticated\"")
                && line.contains("no client certificate")),
        "{logged}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_min_version_13_refuses_12() {
    let certs = Certs::new();
    let mut cfg = config(certs.dir.path());
    cfg.tls_min_version = pod_webhook::config::TlsMinVersion::Tls13;
    let server = Server::start(cfg).await;
    let ca = certs.ca.cert_pem();
    let tls12 = Client::with_versions(&ca, None, &[b"http/1.1"], &[&rustls::version::TLS12]);
    assert!(tls12.once(server.addr, get("/healthz")).await.is_err());
    let tls13 = Client::with_versions(&ca, None, &[b"http/1.1"], &[&rustls::version::TLS13]);
    let reply = tls13
        .once(server.addr, get("/healthz"))
        .await
        .expect("TLS 1.3");
    assert_eq!(reply.status, StatusCode::OK);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http2_only_when_enabled() {
    let certs = Certs::new();
    let ca = certs.ca.cert_pem();
    let pod = json!({"spec": {"containers": [{"name": "a"}]}});

    let server = Server::start(config(certs.dir.path())).await;
    let conn = Client::new(&ca, None, &[b"h2", b"http/1.1"])
        .connect(server.addr)
        .await
        .expect("connect");
    assert_eq!(
        conn.alpn.as_deref(),
        Some(&b"http/1.1"[..]),
        "HTTP/1.1 only by default"
    );
    drop(server);

    let mut cfg = config(certs.dir.path());
    cfg.enable_http2 = true;
    let server = Server::start(cfg).await;
    let client = Client::new(&ca, None, &[b"h2", b"http/1.1"]);
    let conn = client.connect(server.addr).await.expect("connect");
    assert_eq!(conn.alpn.as_deref(), Some(&b"h2"[..]));
    let Sender::H2(sender) = &conn.sender else {
        panic!("expected an HTTP/2 connection");
    };
    // Many concurrent streams on the one connection.
    let mut tasks = Vec::new();
    for i in 0..50 {
        let mut c = Conn {
            sender: Sender::H2(sender.clone()),
            alpn: None,
            peer_cert: Vec::new(),
        };
        let body = admission(V1, &format!("u{i}"), pod.clone()).to_string();
        tasks.push(tokio::spawn(
            async move { c.send(review_request(body)).await },
        ));
    }
    for (i, task) in tasks.into_iter().enumerate() {
        let reply = task.await.expect("task").expect("h2 request");
        assert_eq!(reply.status, StatusCode::OK);
        let review = reply.json();
        assert_eq!(review["response"]["uid"], format!("u{i}"));
        assert!(decoded_patch(&review).is_some());
    }
}

fn cert_der(pem: &Pem) -> Vec<u8> {
    use rustls::pki_types::{CertificateDer, pem::PemObject};
    CertificateDer::from_pem_slice(pem.cert.as_bytes())
        .expect("cert")
        .to_vec()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn certificate_rotation_without_failures() {
    let ca = Ca::new("rotation CA").expect("CA");
    let first = ca.server("first").expect("cert");
    let second = ca.server("second").expect("cert");
    let dir = temp_dir();
    k8s_secret_write(dir.path(), 1, &first);
    let server = Server::start(config(dir.path())).await;
    let addr = server.addr;
    let client = Client::new(&ca.cert_pem(), None, &[b"http/1.1"]);

    // Requests run all along, each on a new connection, until told to stop.
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let mut workers = Vec::new();
    for w in 0..4 {
        let client = client.clone();
        let mut stop = stop_rx.clone();
        workers.push(tokio::spawn(async move {
            let (mut ok, mut failed, mut seen) = (0u32, Vec::new(), Vec::new());
            let mut i = 0;
            while !*stop.borrow_and_update() && i < 5000 {
                i += 1;
                let pod = json!({"spec": {"containers": [{"name": "a"}]}});
                let body = admission(V1, &format!("w{w}-{i}"), pod).to_string();
                let result = async {
                    let mut conn = client.connect(addr).await?;
                    let reply = conn.send(review_request(body)).await?;
                    anyhow::ensure!(reply.status == StatusCode::OK, "status {}", reply.status);
                    Ok(conn.peer_cert)
                }
                .await;
                match result {
                    Ok(cert) => {
                        ok += 1;
                        if !seen.contains(&cert) {
                            seen.push(cert);
                        }
                    }
                    Err(e) => failed.push(e.to_string()),
                }
            }
            (ok, failed, seen)
        }));
    }

    let wait_for_cert = |want: Vec<u8>| {
        let client = client.clone();
        async move {
            for _ in 0..200 {
                if let Ok(conn) = client.connect(addr).await
                    && conn.peer_cert == want
                {
                    return true;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            false
        }
    };
    assert!(
        wait_for_cert(cert_der(&first)).await,
        "serves the first certificate"
    );
    k8s_secret_write(dir.path(), 2, &second);
    assert!(
        wait_for_cert(cert_der(&second)).await,
        "serves the second certificate after the swap"
    );

    // A broken pair (key of another certificate) is refused; the second certificate stays.
    let broken = Pem {
        cert: first.cert.clone(),
        key: second.key.clone(),
    };
    k8s_secret_write(dir.path(), 3, &broken);
    let mut errors_seen = false;
    for _ in 0..100 {
        let mut conn = client.connect(addr).await.expect("still serving");
        let text = conn.send(get("/metrics")).await.expect("metrics").text();
        if text
            .lines()
            .any(|l| l == "apiserver_proxy_pod_webhook_certificate_reload_errors_total 1")
        {
            assert!(
                text.lines()
                    .any(|l| l == "apiserver_proxy_pod_webhook_certificate_reloads_total 1"),
                "{text}"
            );
            errors_seen = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(errors_seen, "the broken pair is counted as a reload error");
    let conn = client.connect(addr).await.expect("still serving");
    assert_eq!(
        conn.peer_cert,
        cert_der(&second),
        "keeps the last good certificate"
    );

    stop_tx.send(true).expect("stop");
    let mut certs_seen = Vec::new();
    let mut total = 0;
    for worker in workers {
        let (ok, failed, seen) = worker.await.expect("worker");
        assert!(
            failed.is_empty(),
            "failed requests during rotation: {failed:?}"
        );
        total += ok;
        for c in seen {
            if !certs_seen.contains(&c) {
                certs_seen.push(c);
            }
        }
    }
    assert!(total > 0);
    assert!(
        certs_seen.contains(&cert_der(&second)),
        "workers saw the new certificate"
    );
}

/// The expiry gauge of a `/metrics` answer.
fn expiry(metrics: &str) -> Option<i64> {
    metrics.lines().find_map(|line| {
        line.strip_prefix("apiserver_proxy_pod_webhook_certificate_expiry_timestamp_seconds ")
            .and_then(|value| value.parse().ok())
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn certificate_expiry_metric_follows_the_certificate() {
    let ca = Ca::new("expiry CA").expect("CA");
    // notAfter 2030-01-01T00:00:00Z, then 2031-06-15T00:00:00Z.
    let first = ca.server_until("first", 2030, 1, 1).expect("cert");
    let second = ca.server_until("second", 2031, 6, 15).expect("cert");
    let dir = temp_dir();
    k8s_secret_write(dir.path(), 1, &first);
    let server = Server::start(config(dir.path())).await;
    let client = Client::new(&ca.cert_pem(), None, &[b"http/1.1"]);
    let scrape = || async {
        let reply = client
            .once(server.addr, get("/metrics"))
            .await
            .expect("metrics");
        let text = reply.text();
        assert!(
            text.lines().any(|line| line
                == "# TYPE apiserver_proxy_pod_webhook_certificate_expiry_timestamp_seconds gauge"),
            "{text}"
        );
        expiry(&text)
    };
    assert_eq!(scrape().await, Some(1_893_456_000));

    k8s_secret_write(dir.path(), 2, &second);
    let mut seen = None;
    for _ in 0..200 {
        seen = scrape().await;
        if seen != Some(1_893_456_000) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(seen, Some(1_939_248_000), "after the rotation");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn graceful_shutdown_finishes_requests_in_flight() {
    let certs = Certs::new();
    let mut cfg = config(certs.dir.path());
    cfg.shutdown_delay = Duration::from_secs(2);
    let mut server = Server::start(cfg).await;
    let addr = server.addr;
    let client = certs.http1_client();

    // A request whose body is only half sent when the signal comes.
    let body = admission(V1, "slow", json!({"spec": {"containers": [{"name": "a"}]}})).to_string();
    let (head, tail) = body.split_at(body.len() / 2);
    let mut slow = client.tls(addr).await.expect("tls");
    let header = format!(
        "POST {WEBHOOK_PATH} HTTP/1.1\r\nhost: localhost\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n",
        body.len()
    );
    use tokio::io::AsyncWriteExt;
    slow.write_all(header.as_bytes()).await.expect("write");
    slow.write_all(head.as_bytes()).await.expect("write");
    slow.flush().await.expect("flush");

    // A keep-alive connection opened before the signal.
    let mut kept = client.connect(addr).await.expect("connect");
    assert_eq!(
        kept.send(get("/readyz")).await.expect("readyz").status,
        StatusCode::OK
    );

    server.signal_shutdown();
    // Not ready, still serving, and telling HTTP/1 clients to go away.
    let mut not_ready = false;
    for _ in 0..50 {
        let mut conn = client
            .connect(addr)
            .await
            .expect("still accepting during the delay");
        let reply = conn.send(get("/readyz")).await.expect("readyz");
        if reply.status == StatusCode::SERVICE_UNAVAILABLE {
            assert_eq!(reply.headers["connection"], "close");
            not_ready = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(not_ready, "readyz turns 503 after the signal");
    let reply = kept
        .send(get("/healthz"))
        .await
        .expect("kept connection still served");
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(reply.headers["connection"], "close");

    // Past the delay the in-flight request still completes.
    tokio::time::sleep(Duration::from_millis(2200)).await;
    let answer = raw_exchange(&mut slow, tail.as_bytes(), Duration::from_secs(10)).await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(answer.contains("\"uid\":\"slow\""), "{answer}");

    server.stop().await.expect("serve returns Ok");
    assert!(client.connect(addr).await.is_err(), "no longer accepting");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_and_idle_clients_are_cut_off() {
    let certs = Certs::new();
    let mut cfg = config(certs.dir.path());
    cfg.limits.handshake_timeout = Duration::from_millis(300);
    cfg.limits.header_read_timeout = Duration::from_millis(300);
    cfg.limits.request_timeout = Duration::from_millis(300);
    cfg.limits.idle_timeout = Duration::from_millis(300);
    cfg.enable_http2 = true;
    let server = Server::start(cfg).await;
    let addr = server.addr;
    let client = certs.http1_client();
    let limit = Duration::from_secs(10);

    // No TLS handshake at all.
    let mut tcp = tokio::net::TcpStream::connect(addr).await.expect("tcp");
    let mut buf = [0u8; 16];
    let read = tokio::time::timeout(limit, tokio::io::AsyncReadExt::read(&mut tcp, &mut buf)).await;
    assert!(
        matches!(read, Ok(Ok(0)) | Ok(Err(_))),
        "handshake timeout closes: {read:?}"
    );

    // A request head that never completes.
    let mut tls = client.tls(addr).await.expect("tls");
    let answer = raw_exchange(&mut tls, b"GET /healthz HTTP/1.1\r\nhost: loc", limit).await;
    assert!(
        answer.is_empty() || answer.starts_with("HTTP/1.1 408"),
        "{answer}"
    );

    // A body that never completes.
    let mut tls = client.tls(addr).await.expect("tls");
    let head = format!(
        "POST {WEBHOOK_PATH} HTTP/1.1\r\nhost: localhost\r\ncontent-type: application/json\r\ncontent-length: 100\r\n\r\n{{"
    );
    let answer = raw_exchange(&mut tls, head.as_bytes(), limit).await;
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");

    // An idle HTTP/1 keep-alive connection.
    let mut tls = client.tls(addr).await.expect("tls");
    let answer = raw_exchange(
        &mut tls,
        b"GET /healthz HTTP/1.1\r\nhost: localhost\r\n\r\n",
        limit,
    )
    .await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");

    // An idle HTTP/2 connection is sent away.
    let h2 = Client::new(&certs.ca.cert_pem(), None, &[b"h2"]);
    let mut conn = h2.connect(addr).await.expect("h2");
    assert_eq!(
        conn.send(get("/healthz")).await.expect("h2 request").status,
        StatusCode::OK
    );
    let Sender::H2(sender) = &mut conn.sender else {
        panic!("h2")
    };
    let mut closed = false;
    for _ in 0..100 {
        if sender.is_closed() {
            closed = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(closed, "idle HTTP/2 connection closed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connection_limit_holds_further_clients_back() {
    let certs = Certs::new();
    let mut cfg = config(certs.dir.path());
    cfg.limits.max_connections = 1;
    let server = Server::start(cfg).await;
    let client = certs.http1_client();
    // The first connection has a request in flight (its body is not complete), so it is not
    // idle and keeps its slot.
    let mut first = client.tls(server.addr).await.expect("first");
    let head = format!(
        "POST {WEBHOOK_PATH} HTTP/1.1\r\nhost: localhost\r\ncontent-type: application/json\r\ncontent-length: 100\r\n\r\n{{"
    );
    tokio::io::AsyncWriteExt::write_all(&mut first, head.as_bytes())
        .await
        .expect("first");
    // Time for the server to read it (before that, the connection is idle).
    tokio::time::sleep(Duration::from_millis(200)).await;
    // The second connection waits: its handshake cannot complete...
    let second = tokio::spawn({
        let client = client.clone();
        let addr = server.addr;
        async move { client.once(addr, get("/healthz")).await }
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        !second.is_finished(),
        "second client must wait while the first holds the slot"
    );
    // ...until the first goes away.
    drop(first);
    let reply = tokio::time::timeout(Duration::from_secs(10), second)
        .await
        .expect("second served after the first left")
        .expect("task")
        .expect("request");
    assert_eq!(reply.status, StatusCode::OK);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_is_bounded_when_a_request_hangs() {
    let certs = Certs::new();
    let mut cfg = config(certs.dir.path());
    cfg.shutdown_delay = Duration::from_millis(100);
    cfg.shutdown_timeout = Duration::from_millis(500);
    cfg.limits.request_timeout = Duration::from_secs(600);
    let mut server = Server::start(cfg).await;
    let client = certs.http1_client();
    // A request whose body never arrives.
    let mut stuck = client.tls(server.addr).await.expect("tls");
    let head = format!(
        "POST {WEBHOOK_PATH} HTTP/1.1\r\nhost: localhost\r\ncontent-type: application/json\r\ncontent-length: 100\r\n\r\n{{"
    );
    use tokio::io::AsyncWriteExt;
    stuck.write_all(head.as_bytes()).await.expect("write");
    stuck.flush().await.expect("flush");
    // Make sure the server has the request before the signal.
    let mut probe = client.connect(server.addr).await.expect("connect");
    let mut in_flight = false;
    for _ in 0..100 {
        let metrics = probe.send(get("/metrics")).await.expect("metrics").text();
        if metrics.contains(
            "controller_runtime_webhook_requests_in_flight{webhook=\"/webhook/pod-apiserver-env\"} 1",
        ) {
            in_flight = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(in_flight, "the stuck request is in flight");
    drop(probe);
    server.signal_shutdown();
    let task = server.task.take().expect("running");
    let result = tokio::time::timeout(Duration::from_secs(10), task)
        .await
        .expect("serve returns once the shutdown timeout has passed")
        .expect("no panic");
    assert!(result.is_ok(), "{result:?}");
}

/// kube-apiserver keeps idle webhook connections for 90 s and POSTs on them again: the
/// header-read timeout must not close a keep-alive connection that waits for its next request,
/// only the (longer) idle timeout may.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_keep_alive_outlives_the_header_timeout() {
    let certs = Certs::new();
    let mut cfg = config(certs.dir.path());
    cfg.limits.header_read_timeout = Duration::from_millis(300);
    cfg.limits.idle_timeout = Duration::from_millis(2000);
    let server = Server::start(cfg).await;
    let client = certs.http1_client();
    let mut conn = client.connect(server.addr).await.expect("connect");
    let pod = json!({"spec": {"containers": [{"name": "a"}]}});
    for i in 0..3 {
        // Idle for well over the header-read timeout between requests.
        tokio::time::sleep(Duration::from_millis(900)).await;
        let reply = conn
            .send(review_request(
                admission(V1, &format!("k{i}"), pod.clone()).to_string(),
            ))
            .await
            .expect("the kept connection is still open");
        assert_eq!(reply.status, StatusCode::OK);
        assert_eq!(reply.json()["response"]["uid"], format!("k{i}"));
    }
    // Past the idle timeout the server closes it.
    let Sender::H1(sender) = &mut conn.sender else {
        panic!("HTTP/1.1 expected")
    };
    let started = std::time::Instant::now();
    while !sender.is_closed() && started.elapsed() < Duration::from_secs(10) {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(sender.is_closed(), "closed after the idle timeout");
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_millis(1500),
        "closed after {waited:?}, before the idle timeout"
    );

    // A head begun but never finished is still cut off after the header-read timeout.
    let mut tls = client.tls(server.addr).await.expect("tls");
    let started = std::time::Instant::now();
    let answer = raw_exchange(
        &mut tls,
        b"POST /webhook/pod-apiserver-env HTTP/1.1\r\nhost: lo",
        Duration::from_secs(10),
    )
    .await;
    assert!(answer.is_empty(), "{answer}");
    assert!(
        started.elapsed() < Duration::from_millis(1500),
        "head cut off after {:?}",
        started.elapsed()
    );
}

/// Bodies beyond the in-memory budget wait their turn instead of failing: with a budget of
/// one small body, many large and small reviews at once all succeed, and so does one larger
/// than the whole budget.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn body_budget_makes_requests_wait_not_fail() {
    let certs = Certs::new();
    let mut cfg = config(certs.dir.path());
    cfg.limits.body_budget_bytes = 4096;
    let server = Server::start(cfg).await;
    let client = certs.http1_client();
    let big = json!({"metadata": {"annotations": {"a": "x".repeat(200_000)}},
                     "spec": {"containers": [{"name": "a"}]}});
    let small = json!({"spec": {"containers": [{"name": "a"}]}});
    let mut tasks = Vec::new();
    for i in 0..32 {
        let client = client.clone();
        let addr = server.addr;
        let pod = if i % 2 == 0 {
            big.clone()
        } else {
            small.clone()
        };
        tasks.push(tokio::spawn(async move {
            let body = admission(V1, &format!("b{i}"), pod).to_string();
            client.once(addr, review_request(body)).await
        }));
    }
    for (i, task) in tasks.into_iter().enumerate() {
        let reply = task.await.expect("task").expect("request");
        assert_eq!(reply.status, StatusCode::OK, "{i}: {}", reply.text());
        assert_eq!(reply.json()["response"]["uid"], format!("b{i}"));
        assert!(decoded_patch(&reply.json()).is_some());
    }
}
