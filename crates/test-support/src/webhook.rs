// SPDX-FileCopyrightText: 2026 apiserver-proxy contributors
// SPDX-License-Identifier: Apache-2.0

//! The webhook's tests: certificates in a private directory, the server on 127.0.0.1 with a
//! free port, and a real TLS client (rustls + hyper) to talk to it.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper::client::conn::{http1, http2};
use hyper::{HeaderMap, Method, Request, StatusCode};
use hyper_util::rt::{TokioExecutor, TokioIo};
use pod_webhook::config::{Config, Limits, Listen, TlsFiles, TlsMinVersion};
use pod_webhook::mutate::MutateOptions;
use pod_webhook::{ServerError, WEBHOOK_PATH, Webhook};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, pem::PemObject};
use serde_json::Value;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

pub use crate::certs::{Ca, Pem};
use crate::{KillOnDrop, cargo_bin, read_until_close};
pub use tempfile::TempDir;

/// The repository's committed test data.
pub fn testdata() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../testdata")
}

/// A fresh CA with a server certificate written as `tls.crt`/`tls.key` (and `ca.crt`).
#[derive(Debug)]
pub struct Certs {
    pub ca: Ca,
    pub server: Pem,
    pub dir: TempDir,
}

impl Certs {
    #[expect(
        clippy::new_without_default,
        reason = "every call makes a new CA and key pair, not a default value"
    )]
    pub fn new() -> Certs {
        let ca = Ca::new("test CA").expect("CA");
        let server = ca.server("localhost").expect("server cert");
        let dir = temp_dir();
        std::fs::write(dir.path().join("tls.crt"), &server.cert).expect("write cert");
        std::fs::write(dir.path().join("tls.key"), &server.key).expect("write key");
        std::fs::write(dir.path().join("ca.crt"), ca.cert_pem()).expect("write ca");
        Certs { ca, server, dir }
    }

    /// An HTTP/1.1 client trusting the CA, without a client certificate.
    pub fn http1_client(&self) -> Client {
        Client::new(&self.ca.cert_pem(), None, &[b"http/1.1"])
    }

    /// The webhook binary serving these certificates, as [`spawn_binary`] starts it.
    pub async fn spawn(
        &self,
        extra: &[&str],
        log: std::process::Stdio,
        max_fds: Option<u32>,
    ) -> (KillOnDrop, SocketAddr) {
        spawn_binary(self.dir.path(), &self.ca.cert_pem(), extra, log, max_fds).await
    }

    /// [`Certs::spawn`] with its stderr in `server.log` beside the certificates; returns the
    /// process, its address and the log's path.
    pub async fn spawn_logged(
        &self,
        extra: &[&str],
        max_fds: Option<u32>,
    ) -> (KillOnDrop, SocketAddr, PathBuf) {
        let log_path = self.dir.path().join("server.log");
        let log = std::fs::File::create(&log_path).expect("log file");
        let (server, addr) = self.spawn(extra, log.into(), max_fds).await;
        (server, addr, log_path)
    }
}

/// A directory removed when dropped.
pub fn temp_dir() -> TempDir {
    tempfile::Builder::new()
        .prefix("pod-webhook-test-")
        .tempdir()
        .expect("temporary directory")
}

/// The configuration tests start from: 127.0.0.1, a free port, quick reloads and shutdown.
pub fn config(cert_dir: &Path) -> Config {
    Config {
        mutate: MutateOptions {
            apiserver_fqdn: "foo.bar.".into(),
            skip_env_from: false,
        },
        listen: Listen {
            host: "127.0.0.1".into(),
            port: 0,
        },
        tls: TlsFiles {
            cert: cert_dir.join("tls.crt"),
            key: cert_dir.join("tls.key"),
            client_ca: None,
        },
        tls_min_version: TlsMinVersion::Tls12,
        enable_http2: false,
        limits: Limits::default(),
        shutdown_delay: Duration::from_millis(100),
        shutdown_timeout: Duration::from_secs(5),
        cert_reload_interval: Duration::from_millis(100),
    }
}

/// A server whose header-read timeout (300 ms) is far below its idle timeout (8 s), so a test
/// can tell which of the two closed a connection.
pub async fn server_with_short_header_clock(certs: &Certs) -> Server {
    let mut cfg = config(certs.dir.path());
    cfg.limits.header_read_timeout = Duration::from_millis(300);
    cfg.limits.idle_timeout = Duration::from_secs(8);
    Server::start(cfg).await
}

/// A running server.
#[derive(Debug)]
pub struct Server {
    pub addr: SocketAddr,
    shutdown: Option<oneshot::Sender<()>>,
    pub task: Option<JoinHandle<Result<(), ServerError>>>,
}

impl Server {
    pub async fn start(config: Config) -> Server {
        let webhook = Webhook::bind(config).await.expect("server starts");
        let addr = webhook.local_addr().expect("bound");
        let (tx, rx) = oneshot::channel::<()>();
        let task = tokio::spawn(webhook.serve(async move {
            let _ = rx.await;
        }));
        Server {
            addr,
            shutdown: Some(tx),
            task: Some(task),
        }
    }

    /// Signals shutdown (like SIGTERM) without waiting.
    pub fn signal_shutdown(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }

    /// Signals shutdown and waits for `serve` to return.
    pub async fn stop(mut self) -> Result<(), ServerError> {
        self.signal_shutdown();
        let task = self.task.take().expect("running");
        tokio::time::timeout(Duration::from_secs(20), task)
            .await
            .expect("server stops")
            .expect("server task does not panic")
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(task) = &self.task {
            task.abort();
        }
    }
}

/// A TLS client trusting one CA, optionally with a client certificate.
#[derive(Clone, Debug)]
pub struct Client {
    config: Arc<rustls::ClientConfig>,
}

fn ring() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

impl Client {
    pub fn new(ca_pem: &str, identity: Option<&Pem>, alpn: &[&[u8]]) -> Client {
        Client::with_versions(ca_pem, identity, alpn, rustls::DEFAULT_VERSIONS)
    }

    pub fn with_versions(
        ca_pem: &str,
        identity: Option<&Pem>,
        alpn: &[&[u8]],
        versions: &[&'static rustls::SupportedProtocolVersion],
    ) -> Client {
        let mut roots = rustls::RootCertStore::empty();
        for cert in CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
            roots.add(cert.expect("CA PEM")).expect("CA cert");
        }
        let builder = rustls::ClientConfig::builder_with_provider(ring())
            .with_protocol_versions(versions)
            .expect("versions")
            .with_root_certificates(roots);
        let mut config = match identity {
            Some(id) => {
                let chain = CertificateDer::pem_slice_iter(id.cert.as_bytes())
                    .collect::<Result<Vec<_>, _>>()
                    .expect("client cert");
                let key = PrivateKeyDer::from_pem_slice(id.key.as_bytes()).expect("client key");
                builder
                    .with_client_auth_cert(chain, key)
                    .expect("client auth")
            }
            None => builder.with_no_client_auth(),
        };
        config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
        Client {
            config: Arc::new(config),
        }
    }

    /// Connects and completes the TLS handshake.
    pub async fn tls(&self, addr: SocketAddr) -> std::io::Result<TlsStream<TcpStream>> {
        self.tls_on(TcpStream::connect(addr).await?).await
    }

    /// Connects with a receive buffer of about `bytes` (a client that reads slowly, or not at
    /// all, soon stops taking data) and completes the TLS handshake.
    pub async fn tls_small_window(
        &self,
        addr: SocketAddr,
        bytes: u32,
    ) -> std::io::Result<TlsStream<TcpStream>> {
        let socket = tokio::net::TcpSocket::new_v4()?;
        socket.set_recv_buffer_size(bytes)?;
        self.tls_on(socket.connect(addr).await?).await
    }

    /// Completes the TLS handshake on a connected socket.
    async fn tls_on(&self, tcp: TcpStream) -> std::io::Result<TlsStream<TcpStream>> {
        let name = ServerName::try_from("localhost").expect("name");
        TlsConnector::from(self.config.clone())
            .connect(name, tcp)
            .await
    }

    /// Connects, and speaks HTTP/2 if the server chose it, HTTP/1.1 otherwise.
    pub async fn connect(&self, addr: SocketAddr) -> anyhow::Result<Conn> {
        let tls = self.tls(addr).await?;
        let (_, session) = tls.get_ref();
        let alpn = session.alpn_protocol().map(|p| p.to_vec());
        let peer_cert = session
            .peer_certificates()
            .and_then(|c| c.first())
            .map(|c| c.to_vec())
            .unwrap_or_default();
        let io = TokioIo::new(tls);
        let sender = if alpn.as_deref() == Some(b"h2") {
            let (sender, conn) = http2::handshake(TokioExecutor::new(), io).await?;
            tokio::spawn(conn);
            Sender::H2(sender)
        } else {
            let (sender, conn) = http1::handshake(io).await?;
            tokio::spawn(conn);
            Sender::H1(sender)
        };
        Ok(Conn {
            sender,
            alpn,
            peer_cert,
        })
    }

    /// One request on a new connection.
    pub async fn once(&self, addr: SocketAddr, req: Request<Full<Bytes>>) -> anyhow::Result<Reply> {
        self.connect(addr).await?.send(req).await
    }
}

#[derive(Debug)]
pub enum Sender {
    H1(http1::SendRequest<Full<Bytes>>),
    H2(http2::SendRequest<Full<Bytes>>),
}

/// An open HTTP connection.
#[derive(Debug)]
pub struct Conn {
    pub sender: Sender,
    pub alpn: Option<Vec<u8>>,
    pub peer_cert: Vec<u8>,
}

/// A whole response.
#[derive(Debug)]
pub struct Reply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Reply {
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "response is not JSON ({e}): {}",
                String::from_utf8_lossy(&self.body)
            )
        })
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

impl Conn {
    pub async fn send(&mut self, req: Request<Full<Bytes>>) -> anyhow::Result<Reply> {
        let resp = match &mut self.sender {
            Sender::H1(s) => {
                s.ready().await?;
                s.send_request(req).await?
            }
            Sender::H2(s) => {
                s.ready().await?;
                s.send_request(req).await?
            }
        };
        let (parts, body) = resp.into_parts();
        let body = body.collect().await?.to_bytes();
        Ok(Reply {
            status: parts.status,
            headers: parts.headers,
            body,
        })
    }
}

/// A small Pod CREATE review (uid `u`, one container), as JSON text.
pub const V1_POD: &str = r#"{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"uid":"u","kind":{"group":"","version":"v1","kind":"Pod"},"resource":{"group":"","version":"v1","resource":"pods"},"operation":"CREATE","object":{"spec":{"containers":[{"name":"a"}]}}}}"#;

/// A POST of `body` to the webhook path with a JSON content type.
pub fn review_request(body: impl Into<Bytes>) -> Request<Full<Bytes>> {
    Request::builder()
        .method(Method::POST)
        .uri(format!("{WEBHOOK_PATH}?timeout=2s"))
        .header("host", "localhost")
        .header("content-type", "application/json")
        .header("accept", "application/json")
        .body(Full::new(body.into()))
        .expect("request")
}

/// A GET of `path`.
pub fn get(path: &str) -> Request<Full<Bytes>> {
    Request::builder()
        .uri(path)
        .header("host", "localhost")
        .body(Full::new(Bytes::new()))
        .expect("request")
}

/// An AdmissionReview for `object` (a Pod CREATE unless changed by the caller).
pub fn admission(api_version: &str, uid: &str, object: Value) -> Value {
    serde_json::json!({
        "apiVersion": api_version,
        "kind": "AdmissionReview",
        "request": {
            "uid": uid,
            "kind": {"group": "", "version": "v1", "kind": "Pod"},
            "resource": {"group": "", "version": "v1", "resource": "pods"},
            "operation": "CREATE",
            "namespace": "default",
            "object": object,
        }
    })
}

/// A valid FQDN of exactly `len` bytes (at least 4), trailing dot included: labels of up to 63
/// `a`s, at least two of them. `fqdn(254)` is the longest `--apiserver-fqdn` accepts.
pub fn fqdn(len: usize) -> String {
    assert!(len >= 4, "an FQDN with a trailing dot has at least 4 bytes");
    let mut name = String::with_capacity(len);
    // The characters before the trailing dot.
    let mut left = len - 1;
    while left > 0 {
        if !name.is_empty() {
            name.push('.');
            left -= 1;
        }
        // Leave either nothing or room for a dot and one more character, and make a second
        // label.
        let mut take = left.min(63);
        if name.is_empty() {
            take = take.min(left - 2);
        }
        if left - take == 1 {
            take -= 1;
        }
        name.extend(std::iter::repeat_n('a', take));
        left -= take;
    }
    name.push('.');
    name
}

/// A Pod of `containers` init containers and `containers` containers, each an empty object:
/// the most patch for the fewest request bytes.
pub fn empty_containers_pod(containers: usize) -> Value {
    let empty = vec![serde_json::json!({}); containers];
    serde_json::json!({"spec": {"initContainers": empty, "containers": empty}})
}

/// The decoded JSON Patch of a response, if it has one.
pub fn decoded_patch(review: &Value) -> Option<Value> {
    let response = &review["response"];
    let patch = response.get("patch")?.as_str().expect("patch is a string");
    assert_eq!(response["patchType"], "JSONPatch");
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(patch)
        .expect("patch is base64");
    Some(serde_json::from_slice(&bytes).expect("patch is JSON"))
}

/// Applies the response's patch (if any) to `object`.
pub fn apply(object: &Value, review: &Value) -> Value {
    let mut out = object.clone();
    if let Some(patch) = decoded_patch(review) {
        let patch: json_patch::Patch = serde_json::from_value(patch).expect("valid JSON Patch");
        json_patch::patch(&mut out, &patch).expect("patch applies");
    }
    out
}

/// Writes raw bytes on a TLS connection while reading, until the server closes it or `limit`
/// passes. The server may answer and close before all is written (413): write errors are
/// ignored, the answer is what counts. Returns the answer and whether the server closed the
/// connection in time.
pub async fn exchange(
    stream: &mut TlsStream<TcpStream>,
    request: &[u8],
    limit: Duration,
) -> (Vec<u8>, bool) {
    let (mut reader, mut writer) = tokio::io::split(stream);
    let write = async {
        if writer.write_all(request).await.is_ok() {
            let _ = writer.flush().await;
        }
    };
    let ((), answer) = tokio::join!(write, read_until_close(&mut reader, limit));
    answer
}

/// [`exchange`], with the answer as text.
pub async fn raw_exchange(
    stream: &mut TlsStream<TcpStream>,
    request: &[u8],
    limit: Duration,
) -> String {
    let (answer, _) = exchange(stream, request, limit).await;
    String::from_utf8_lossy(&answer).into_owned()
}

/// [`raw_exchange`], and how long it took.
pub async fn timed_exchange(
    stream: &mut TlsStream<TcpStream>,
    request: &[u8],
    limit: Duration,
) -> (String, Duration) {
    let started = std::time::Instant::now();
    let answer = raw_exchange(stream, request, limit).await;
    (answer, started.elapsed())
}

/// A `kB` field of `/proc/<pid>/status` (`VmRSS:`, `VmHWM:`), in KiB.
pub fn status_kib(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("server status");
    status
        .lines()
        .find_map(|l| {
            l.strip_prefix(field)?
                .trim()
                .strip_suffix("kB")?
                .trim()
                .parse()
                .ok()
        })
        .unwrap_or_else(|| panic!("{field} missing in /proc/{pid}/status"))
}

/// A port free on 127.0.0.1 a moment ago.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port()
}

/// The webhook binary serving the certificate in `cert_dir` on 127.0.0.1 (a free port) with
/// `extra` flags, logging to `log`, with at most `max_fds` open file descriptors if given (by
/// `prlimit`); returned once `/readyz` answers 200 to a client trusting `ca_pem`.
pub async fn spawn_binary(
    cert_dir: &Path,
    ca_pem: &str,
    extra: &[&str],
    log: std::process::Stdio,
    max_fds: Option<u32>,
) -> (KillOnDrop, SocketAddr) {
    let port = free_port();
    let bin = cargo_bin("apiserver-proxy-pod-webhook");
    let mut command = match max_fds {
        Some(n) => {
            let mut prlimit = std::process::Command::new("prlimit");
            prlimit.arg(format!("--nofile={n}:{n}")).arg("--").arg(bin);
            prlimit
        }
        None => std::process::Command::new(bin),
    };
    let child = command
        .args(["--apiserver-fqdn=foo.bar.", "--host=127.0.0.1"])
        .arg(format!("--port={port}"))
        .arg("--cert-dir")
        .arg(cert_dir)
        .args(extra)
        .env("RUST_LOG", "warn")
        .stdout(std::process::Stdio::null())
        .stderr(log)
        .spawn()
        .expect("start the webhook");
    let child = KillOnDrop(child);
    let addr: SocketAddr = ([127, 0, 0, 1], port).into();
    let client = Client::new(ca_pem, None, &[b"http/1.1"]);
    for _ in 0..400 {
        if let Ok(reply) = client.once(addr, get("/readyz")).await
            && reply.status == StatusCode::OK
        {
            return (child, addr);
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("the webhook did not come up on {addr}");
}

/// Sends review `body` (number `i`) on a new connection and checks that it is answered within
/// 15 s with 200 and a patch; returns how long it took.
pub async fn timed_review(
    client: &Client,
    addr: SocketAddr,
    body: impl Into<Bytes>,
    i: usize,
) -> Duration {
    let started = std::time::Instant::now();
    let reply = tokio::time::timeout(
        Duration::from_secs(15),
        client.once(addr, review_request(body)),
    )
    .await
    .unwrap_or_else(|_| panic!("review {i} not answered within 15 s"))
    .unwrap_or_else(|e| panic!("review {i}: {e:#}"));
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    assert!(
        decoded_patch(&reply.json()).is_some(),
        "review {i} is mutated"
    );
    started.elapsed()
}

/// Replaces the certificate the way the kubelet updates a mounted Secret: files are symlinks
/// into `..data`, itself a symlink swapped atomically to a new timestamped directory.
pub fn k8s_secret_write(dir: &std::path::Path, generation: u32, pem: &Pem) {
    let data = dir.join(format!("..gen{generation}"));
    std::fs::create_dir_all(&data).expect("data dir");
    std::fs::write(data.join("tls.crt"), &pem.cert).expect("cert");
    std::fs::write(data.join("tls.key"), &pem.key).expect("key");
    let tmp = dir.join("..data_tmp");
    let _ = std::fs::remove_file(&tmp);
    std::os::unix::fs::symlink(format!("..gen{generation}"), &tmp).expect("symlink");
    std::fs::rename(&tmp, dir.join("..data")).expect("swap");
    for name in ["tls.crt", "tls.key"] {
        let link = dir.join(name);
        if std::fs::symlink_metadata(&link).is_err() {
            std::os::unix::fs::symlink(format!("..data/{name}"), &link).expect("link");
        }
    }
}
