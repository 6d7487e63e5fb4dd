// SPDX-FileCopyrightText: 2026 apiserver-proxy contributors
// SPDX-License-Identifier: Apache-2.0

//! The binary itself: flag errors and exit codes, start-up errors naming the file, logs,
//! SIGTERM with a graceful exit 0, and docs/webhook.md's flag table matching `--help`.

use test_support::webhook as common;

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use common::*;
use hyper::StatusCode;
use serde_json::json;
use test_support::KillOnDrop;

const BIN: &str = env!("CARGO_BIN_EXE_apiserver-proxy-pod-webhook");

fn run(args: &[&str]) -> (i32, String) {
    let out = Command::new(BIN)
        .args(args)
        .env("RUST_LOG", "info")
        .output()
        .expect("run the binary");
    let code = out.status.code().expect("exited normally");
    // A JSON log line counts by its message; anything else (usage errors, help) as written.
    let stderr: Vec<String> = String::from_utf8_lossy(&out.stderr)
        .lines()
        .map(|line| {
            serde_json::from_str::<serde_json::Value>(line)
                .ok()
                .and_then(|v| v["msg"].as_str().map(str::to_owned))
                .unwrap_or_else(|| line.to_owned())
        })
        .collect();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        stderr.join("\n")
    );
    (code, text)
}

#[test]
fn bad_flags_exit_2_naming_the_problem() {
    let dir = testdata();
    let dir = dir.to_str().expect("utf-8 path");
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (vec!["--cert-dir", dir], "--apiserver-fqdn <FQDN>"),
        (vec!["--apiserver-fqdn=foo.bar."], "--cert-dir <DIR>"),
        (
            vec!["--apiserver-fqdn=localhost", "--cert-dir", dir],
            "at least two segments",
        ),
        (
            vec!["--apiserver-fqdn=Foo.bar", "--cert-dir", dir],
            "label \"Foo\" must consist of lower case",
        ),
        (
            vec!["--apiserver-fqdn=foo.bar..", "--cert-dir", dir],
            "label \"\" must not be empty",
        ),
        (
            vec![
                "--apiserver-fqdn=foo.bar.",
                "--cert-dir",
                dir,
                "--port=70000",
            ],
            "invalid value '70000' for '--port <PORT>'",
        ),
        (
            vec![
                "--apiserver-fqdn=foo.bar.",
                "--cert-dir",
                dir,
                "--tls-min-version=1.1",
            ],
            "invalid value '1.1' for '--tls-min-version <VERSION>'",
        ),
        (
            vec![
                "--apiserver-fqdn=foo.bar.",
                "--cert-dir",
                dir,
                "--shutdown-delay=5d",
            ],
            "unknown unit \"d\"",
        ),
        (
            vec![
                "--apiserver-fqdn=foo.bar.",
                "--cert-dir",
                dir,
                "--max-connections=0",
            ],
            "--max-connections",
        ),
        // On a host that cannot be bound, so that a value wrongly accepted fails too.
        (
            vec![
                "--apiserver-fqdn=foo.bar.",
                "--cert-dir",
                dir,
                "--host=256.0.0.1",
                "--idle-timeout=0s",
            ],
            "invalid value '0s' for '--idle-timeout <DURATION>': \"0s\" is out of range: must be between 1s and 1440m",
        ),
        // On a host that cannot be bound, so that a value wrongly accepted fails too.
        (
            vec![
                "--apiserver-fqdn=foo.bar.",
                "--cert-dir",
                dir,
                "--host=256.0.0.1",
                "--idle-timeout=9223372036854775807s",
            ],
            "is too large: Go durations end at",
        ),
        // On a host that cannot be bound, so that a value wrongly accepted fails too.
        (
            vec![
                "--apiserver-fqdn=foo.bar.",
                "--cert-dir",
                dir,
                "--host=256.0.0.1",
                "--shutdown-timeout=100000m",
            ],
            "must be between 0s and 60m",
        ),
        // On a host that cannot be bound, so that a value wrongly accepted fails too.
        (
            vec![
                "--apiserver-fqdn=foo.bar.",
                "--cert-dir",
                dir,
                "--host=256.0.0.1",
                "--shutdown-delay=2h",
            ],
            "must be between 0s and 60m",
        ),
        (
            vec![
                "--apiserver-fqdn=foo.bar.",
                "--cert-dir",
                dir,
                "--no-such-flag",
            ],
            "unexpected argument '--no-such-flag'",
        ),
    ];
    for (args, want) in cases {
        let (code, text) = run(&args);
        assert_eq!(code, 2, "{args:?}: {text}");
        assert!(text.contains(want), "{args:?}: {text:?} lacks {want:?}");
    }
    let (code, text) = run(&[
        "--apiserver-fqdn=foo.bar.",
        "--cert-dir",
        dir,
        "--host=256.0.0.1",
        "--port=0",
    ]);
    assert_eq!(code, 1, "{text}");
    assert!(text.contains("cannot listen on 256.0.0.1:0"), "{text}");
}

#[test]
fn a_port_in_use_on_all_addresses_is_named() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("bind a port");
    let port = taken.local_addr().expect("address").port();
    let dir = testdata();
    let (code, text) = run(&[
        "--apiserver-fqdn=foo.bar.",
        "--cert-dir",
        dir.to_str().expect("utf-8 path"),
        &format!("--port={port}"),
    ]);
    assert_eq!(code, 1, "{text}");
    let want = format!(
        "cannot listen on all addresses, port {port}; IPv6 wildcard: Address already in use"
    );
    assert!(text.contains(&want), "{text:?} lacks {want:?}");
    assert!(
        text.contains("IPv4 wildcard: Address already in use"),
        "{text}"
    );
}

#[test]
fn bad_certificate_files_exit_1_naming_the_file() {
    let certs = Certs::new();
    let dir = certs.dir.path();
    let other = certs.ca.server("other").expect("cert");
    std::fs::write(dir.join("other.key"), &other.key).expect("write");
    std::fs::write(dir.join("garbage.crt"), "not a certificate\n").expect("write");
    std::fs::write(dir.join("cut.crt"), "-----BEGIN CERTIFICATE-----\nMIIB\n").expect("write");
    let d = dir.to_str().expect("utf-8");
    let base = [
        "--apiserver-fqdn=foo.bar.",
        "--cert-dir",
        d,
        "--host=127.0.0.1",
        "--port=0",
    ];
    let cases: Vec<(Vec<&str>, String)> = vec![
        (
            vec!["--cert-name=missing.crt"],
            format!("cannot read certificate {d}/missing.crt: No such file"),
        ),
        (
            vec!["--key-name=missing.key"],
            format!("cannot read key {d}/missing.key"),
        ),
        (
            vec!["--cert-name=garbage.crt"],
            format!("certificate {d}/garbage.crt holds no certificate"),
        ),
        (
            vec!["--cert-name=cut.crt"],
            format!(
                "certificate {d}/cut.crt is not valid PEM: its \"CERTIFICATE\" section has no END line"
            ),
        ),
        (
            vec!["--key-name=tls.crt"],
            format!("key {d}/tls.crt holds no private key"),
        ),
        (
            vec!["--key-name=other.key"],
            format!("cannot use certificate {d}/tls.crt with key {d}/other.key"),
        ),
        (
            vec!["--client-ca-name=nope.crt"],
            format!("cannot read client CA {d}/nope.crt"),
        ),
        (
            vec!["--client-ca-name=garbage.crt"],
            format!("client CA {d}/garbage.crt holds no certificate"),
        ),
    ];
    for (extra, want) in cases {
        let args: Vec<&str> = base.iter().copied().chain(extra.iter().copied()).collect();
        let (code, text) = run(&args);
        assert_eq!(code, 1, "{extra:?}: {text}");
        assert!(text.contains(&want), "{extra:?}: {text:?} lacks {want:?}");
    }
}

#[test]
fn help_exits_0_and_matches_the_readme() {
    let (code, help) = run(&["--help"]);
    assert_eq!(code, 0);
    let readme = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/webhook.md"),
    )
    .expect("docs/webhook.md");
    assert!(
        readme.contains(help.trim_end()),
        "docs/webhook.md's flag table differs from --help; put this in it:\n{help}"
    );
}

/// A running binary whose stderr is collected line by line.
struct Process {
    child: KillOnDrop,
    lines: mpsc::Receiver<String>,
    log: Vec<String>,
}

impl Process {
    fn start(args: &[&str]) -> Process {
        let mut child = Command::new(BIN)
            .args(args)
            .env("RUST_LOG", "debug")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start the binary");
        let stderr = child.stderr.take().expect("stderr");
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Process {
            child: KillOnDrop(child),
            lines,
            log: Vec::new(),
        }
    }

    /// Waits for a log line containing `needle` and returns it.
    fn wait_for(&mut self, needle: &str) -> String {
        loop {
            match self.lines.recv_timeout(Duration::from_secs(20)) {
                Ok(line) => {
                    self.log.push(line.clone());
                    if line.contains(needle) {
                        return line;
                    }
                }
                Err(e) => panic!(
                    "no log line with {needle:?} ({e}); log so far:\n{}",
                    self.log.join("\n")
                ),
            }
        }
    }

    fn signal(&self, name: &str) {
        self.child.signal(name);
    }
}

/// The binary serving on 127.0.0.1 (a free port) with `certs`, plus `extra` flags; returns it
/// once it logs that it serves, with the address it logged.
fn serve_on_loopback(certs: &Certs, extra: &[&str]) -> (Process, SocketAddr) {
    let dir = certs.dir.path().to_str().expect("utf-8").to_owned();
    let mut args = vec![
        "--apiserver-fqdn=foo.bar.",
        "--cert-dir",
        &dir,
        "--host=127.0.0.1",
        "--port=0",
    ];
    args.extend_from_slice(extra);
    let mut process = Process::start(&args);
    let line = process.wait_for("serving");
    let line: serde_json::Value = serde_json::from_str(&line).expect("a JSON log line");
    let addr: SocketAddr = line["addr"]
        .as_str()
        .expect("address in the log")
        .parse()
        .expect("socket address");
    (process, addr)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_drains_and_exits_0() {
    let certs = Certs::new();
    let (mut process, addr) =
        serve_on_loopback(&certs, &["--shutdown-delay=300ms", "--shutdown-timeout=5s"]);

    let client = certs.http1_client();
    let mut conn = client.connect(addr).await.expect("connect");
    let pod = json!({"spec": {"containers": [{"name": "a"}]}});
    let reply = conn
        .send(review_request(
            admission("admission.k8s.io/v1", "u", pod).to_string(),
        ))
        .await
        .expect("request");
    assert_eq!(reply.status, StatusCode::OK);
    process.wait_for("pod mutated");
    let reply = conn.send(get("/nope")).await.expect("request");
    assert_eq!(reply.status, StatusCode::NOT_FOUND);
    let warn = process.wait_for("request failed");
    assert!(
        warn.contains(r#""level":"warn""#) && warn.contains(r#""status":404"#),
        "{warn}"
    );

    process.signal("TERM");
    process.wait_for("SIGTERM received");
    process.wait_for("shutting down: not ready");
    let reply = conn
        .send(get("/readyz"))
        .await
        .expect("served while terminating");
    assert_eq!(reply.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(reply.headers["connection"], "close");
    process.wait_for("all connections closed");
    let status = process.child.wait().expect("exits");
    assert_eq!(status.code(), Some(0));
}

#[test]
fn second_signal_exits_at_once() {
    let certs = Certs::new();
    let (mut process, _) = serve_on_loopback(&certs, &["--shutdown-delay=10m"]);
    process.signal("TERM");
    process.wait_for("shutting down: not ready");
    process.signal("INT");
    process.wait_for("second signal");
    let status = process.child.wait().expect("exits");
    assert_eq!(status.code(), Some(1));
}

/// Without `--host`, or with `--host=::` (as in Go), the webhook answers on IPv4 and IPv6 even
/// where the node sets `net.ipv6.bindv6only=1`. Runs in a network namespace of its own (needs
/// root), where that sysctl is set without touching the host's; curl is the client.
#[test]
#[ignore = "needs root: runs in a network namespace (make test runs it)"]
fn all_addresses_means_ipv4_and_ipv6_even_with_bindv6only() {
    for host in ["", "::", "[::]"] {
        assert_eq!(
            answers_in_a_bindv6only_namespace(host),
            ["bindv6only=1", "ipv4=ok", "ipv6=ok"],
            "--host={host:?}"
        );
    }
}

/// Runs the webhook with `--host=HOST` in a fresh network namespace with bindv6only=1 and
/// returns what `/healthz` answered on 127.0.0.1 and ::1.
fn answers_in_a_bindv6only_namespace(host: &str) -> Vec<String> {
    let script = r#"
        ip link set lo up || exit 2
        echo 1 > /proc/sys/net/ipv6/bindv6only || exit 2
        "$BIN" --apiserver-fqdn=foo.bar. --cert-dir "$CERTS" --host="$HOST" --port=9443 >/dev/null 2>&1 &
        pid=$!
        trap 'kill -KILL $pid' EXIT
        for _ in $(seq 200); do
            curl -sk -o /dev/null https://127.0.0.1:9443/healthz && break
            curl -sk -o /dev/null 'https://[::1]:9443/healthz' && break
            sleep 0.05
        done
        echo "bindv6only=$(cat /proc/sys/net/ipv6/bindv6only)"
        echo "ipv4=$(curl -sk https://127.0.0.1:9443/healthz)"
        echo "ipv6=$(curl -sk 'https://[::1]:9443/healthz')"
    "#;
    let out = Command::new("unshare")
        .args(["--net", "sh", "-c", script])
        .env("BIN", BIN)
        .env("CERTS", testdata())
        .env("HOST", host)
        .output()
        .expect("run unshare (util-linux)");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "cannot set up a network namespace (this test needs root, iproute2 and curl): {}{}",
        text,
        String::from_utf8_lossy(&out.stderr)
    );
    text.lines().map(str::to_owned).collect()
}
