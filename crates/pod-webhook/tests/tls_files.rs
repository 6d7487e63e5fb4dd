// SPDX-FileCopyrightText: 2026 apiserver-proxy contributors
// SPDX-License-Identifier: Apache-2.0

//! The binary and what stands at its certificate's path: a FIFO or a huge file is refused with
//! an error naming it, at start (exit 1) and at a reload (counted, logged, the last good
//! certificate kept), and neither holds up a later rotation or the exit on SIGTERM.

use test_support::webhook as common;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use hyper::StatusCode;
use rustls::pki_types::{CertificateDer, pem::PemObject};
use serde_json::json;

const BIN: &str = env!("CARGO_BIN_EXE_apiserver-proxy-pod-webhook");

fn der(pem: &Pem) -> Vec<u8> {
    CertificateDer::from_pem_slice(pem.cert.as_bytes())
        .expect("a certificate")
        .to_vec()
}

fn mkfifo(path: &Path) {
    let _ = std::fs::remove_file(path);
    let made = Command::new("mkfifo")
        .arg(path)
        .status()
        .expect("run mkfifo");
    assert!(made.success(), "mkfifo {}", path.display());
}

/// A counter's value in a `/metrics` answer.
fn counter(metrics: &str, name: &str) -> Option<u64> {
    metrics.lines().find_map(|line| {
        line.strip_prefix(name)
            .and_then(|rest| rest.strip_prefix(' '))
            .and_then(|value| value.parse().ok())
    })
}

/// Polls `/metrics` (a new connection each time) for up to 15 s until `name` is `want`.
async fn wait_for_counter(client: &Client, addr: std::net::SocketAddr, name: &str, want: u64) {
    let mut last = String::new();
    for _ in 0..300 {
        if let Ok(reply) = client.once(addr, get("/metrics")).await {
            last = reply.text();
            if counter(&last, name) == Some(want) {
                return;
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("{name} never reached {want}:\n{last}");
}

/// A review and the probes are answered, with the certificate `serving`.
/// Puts a FIFO nobody writes in place of `cert` and waits until its reload is the `errors`th
/// refused.
async fn fifo_refused(client: &Client, addr: std::net::SocketAddr, cert: &Path, errors: u64) {
    mkfifo(cert);
    wait_for_counter(
        client,
        addr,
        "apiserver_proxy_pod_webhook_certificate_reload_errors_total",
        errors,
    )
    .await;
}

async fn serves(client: &Client, addr: std::net::SocketAddr, serving: &[u8]) {
    let mut conn = client.connect(addr).await.expect("connect");
    assert_eq!(conn.peer_cert, serving, "the certificate in use");
    for path in ["/healthz", "/readyz"] {
        let reply = conn.send(get(path)).await.expect(path);
        assert_eq!(reply.status, StatusCode::OK, "{path}");
    }
    let pod = json!({"spec": {"containers": [{"name": "a"}]}});
    let reply = conn
        .send(review_request(
            admission("admission.k8s.io/v1", "u", pod).to_string(),
        ))
        .await
        .expect("a review");
    assert_eq!(reply.status, StatusCode::OK);
    assert!(decoded_patch(&reply.json()).is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fifo_at_the_certificate_is_a_reload_error_and_holds_nothing_up() {
    let certs = Certs::new();
    let client = certs.http1_client();
    let (mut server, addr, log) = certs.spawn_logged(&["--shutdown-delay=0s"], None).await;
    let cert = certs.dir.path().join("tls.crt");
    let key = certs.dir.path().join("tls.key");
    let first = der(&certs.server);
    serves(&client, addr, &first).await;

    // A FIFO nobody writes in place of the certificate: refused, counted, logged.
    fifo_refused(&client, addr, &cert, 1).await;
    let logged = std::fs::read_to_string(&log).expect("the log");
    let want = format!(
        "certificate {} is not a regular file but a FIFO: only regular files are read",
        cert.display()
    );
    assert!(logged.contains(&want), "{want} missing in\n{logged}");
    serves(&client, addr, &first).await;

    // A good rotation afterwards is loaded.
    let second = certs.ca.server("second").expect("a certificate");
    std::fs::remove_file(&cert).expect("remove the FIFO");
    std::fs::write(&key, &second.key).expect("write the key");
    std::fs::write(&cert, &second.cert).expect("write the certificate");
    wait_for_counter(
        &client,
        addr,
        "apiserver_proxy_pod_webhook_certificate_reloads_total",
        1,
    )
    .await;
    serves(&client, addr, &der(&second)).await;

    // A FIFO again, then SIGTERM: the exit waits for no reload.
    fifo_refused(&client, addr, &cert, 2).await;
    let asked = Instant::now();
    server.signal("TERM");
    let status = loop {
        if let Some(status) = server.try_wait().expect("wait") {
            break status;
        }
        assert!(
            asked.elapsed() < Duration::from_secs(10),
            "still running 10 s after SIGTERM"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(
        status.code(),
        Some(0),
        "{}",
        std::fs::read_to_string(&log).unwrap_or_default()
    );
    println!("exited {:?} after SIGTERM", asked.elapsed());
}

/// The binary with `cert` at `--cert-name`, expected to refuse to start: its stderr.
fn refused_start(certs: &Certs, cert_name: &str) -> String {
    let started = Instant::now();
    let output = Command::new(BIN)
        .args(["--apiserver-fqdn=foo.bar.", "--host=127.0.0.1", "--port=0"])
        .arg("--cert-dir")
        .arg(certs.dir.path())
        .arg(format!("--cert-name={cert_name}"))
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .output()
        .expect("run the binary");
    let said = String::from_utf8_lossy(&output.stderr).into_owned();
    assert_eq!(output.status.code(), Some(1), "{cert_name}: {said}");
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "{cert_name}: took {:?}",
        started.elapsed()
    );
    said
}

#[test]
fn a_fifo_or_a_huge_file_at_start_is_a_clear_error() {
    let certs = Certs::new();
    let fifo = certs.dir.path().join("fifo.crt");
    mkfifo(&fifo);
    let said = refused_start(&certs, "fifo.crt");
    let want = format!(
        "cannot start the webhook server: certificate {} is not a regular file but a FIFO: only \
         regular files are read",
        fifo.display()
    );
    assert!(said.contains(&want), "{want} missing in {said}");

    let huge = certs.dir.path().join("huge.crt");
    let mut pem = certs.server.cert.clone().into_bytes();
    pem.resize(50_000_000, b'\n');
    std::fs::write(&huge, pem).expect("a 50 MB certificate");
    let said = refused_start(&certs, "huge.crt");
    let want = format!(
        "cannot start the webhook server: certificate {} is too large: 50000000 bytes, at most \
         1048576 are read",
        huge.display()
    );
    assert!(said.contains(&want), "{want} missing in {said}");
}
