// SPDX-FileCopyrightText: 2026 apiserver-proxy contributors
// SPDX-License-Identifier: Apache-2.0

//! The binary's logs: `RUST_LOG` cannot silence why it stopped and is refused when it selects
//! none of its lines; `-v=1` to `-v=3` leave out the TLS library's lines per connection; a log
//! output that stops taking lines never holds up a review.

use test_support::webhook as common;

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{ChildStderr, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::*;
use hyper::StatusCode;
use serde_json::json;
use test_support::KillOnDrop;

const BIN: &str = env!("CARGO_BIN_EXE_apiserver-proxy-pod-webhook");

/// The binary on 127.0.0.1 (a free port) with `certs` and `extra` flags; `RUST_LOG` as given
/// (unset for `None`).
fn command(certs: &Certs, extra: &[&str], rust_log: Option<&str>) -> Command {
    let mut command = Command::new(BIN);
    command
        .args(["--apiserver-fqdn=foo.bar.", "--host=127.0.0.1", "--port=0"])
        .arg("--cert-dir")
        .arg(certs.dir.path())
        .args(extra)
        .env_remove("RUST_LOG")
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    if let Some(filter) = rust_log {
        command.env("RUST_LOG", filter);
    }
    command
}

/// Lines of a child's stderr, read by a thread of their own.
fn lines_of(stderr: ChildStderr) -> mpsc::Receiver<String> {
    let (sender, lines) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines() {
            let Ok(line) = line else { break };
            if sender.send(line).is_err() {
                break;
            }
        }
    });
    lines
}

/// Waits up to 30 s for a line containing `needle`; returns the lines read until then.
fn wait_for_line(lines: &mpsc::Receiver<String>, needle: &str) -> Vec<String> {
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut seen = Vec::new();
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match lines.recv_timeout(left) {
            Ok(line) => {
                let found = line.contains(needle);
                seen.push(line);
                if found {
                    return seen;
                }
            }
            Err(error) => panic!("no line with {needle:?} ({error}) in\n{}", seen.join("\n")),
        }
    }
}

/// The address a `serving` line names.
fn serving_addr(lines: &[String]) -> SocketAddr {
    let line = lines.last().expect("a serving line");
    let line: serde_json::Value = serde_json::from_str(line).expect("a JSON line");
    line["addr"]
        .as_str()
        .and_then(|addr| addr.parse().ok())
        .unwrap_or_else(|| panic!("no address in {line}"))
}

fn review() -> String {
    let pod = json!({"spec": {"containers": [{"name": "a"}]}});
    admission("admission.k8s.io/v1", "u", pod).to_string()
}

/// A filter that would show none of the webhook's lines stops the start with the reason, before
/// anything else can fail unseen (here the certificate, which is missing).
#[test]
fn rust_log_that_selects_none_of_its_lines_is_refused() {
    let certs = Certs::new();
    for (filter, problem) in [
        // A typo'd crate, the binary's name for its crate's.
        (
            "pod-webhook=debug",
            "it selects none of this program's lines",
        ),
        (
            "apiserver-proxy-pod-webhook=debug",
            "it selects none of this program's lines",
        ),
        ("rustls=debug", "it selects none of this program's lines"),
        ("nonesuch", "it selects none of this program's lines"),
        ("pod_webhook=off", "it selects none of this program's lines"),
        (",", "it holds no directive"),
        (
            "info,pod_webhook=loud",
            "directive \"pod_webhook=loud\": error parsing level filter",
        ),
    ] {
        let output = command(&certs, &["--cert-name=missing.crt"], Some(filter))
            .output()
            .expect("run the binary");
        let said = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(1), "{filter}: {said}");
        assert!(
            said.contains(&format!("invalid log filter {filter:?}")) && said.contains(problem),
            "{filter}: {said}"
        );
    }
}

#[test]
fn a_failed_start_is_shown_whatever_rust_log_says() {
    let certs = Certs::new();
    // Off, libraries and levels, a trailing comma, an unknown target beside a level.
    for filter in [
        "off",
        "rustls=debug,error",
        "h2=trace,warn",
        "info,",
        "nonesuch=debug,error",
    ] {
        for format in ["json", "text"] {
            let output = command(
                &certs,
                &[
                    "--cert-name=missing.crt",
                    &format!("--logging-format={format}"),
                ],
                Some(filter),
            )
            .output()
            .expect("run the binary");
            let said = String::from_utf8_lossy(&output.stderr);
            assert_eq!(output.status.code(), Some(1), "{filter}: {said}");
            assert!(
                said.contains("cannot start the webhook server: cannot read certificate")
                    && said.contains("missing.crt"),
                "{filter} {format}: {said:?}"
            );
        }
    }
}

/// `-v=1` shows the webhook's own debug lines and not rustls' three per connection; `-v=4`
/// shows those too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_library_lines_need_verbosity_4() {
    let certs = Certs::new();
    let client = certs.http1_client();
    for (v, rustls_lines) in [("-v=1", false), ("-v=3", false), ("-v=4", true)] {
        let mut child = command(&certs, &[v], None).spawn().expect("start");
        let lines = lines_of(child.stderr.take().expect("stderr"));
        let addr = serving_addr(&wait_for_line(&lines, "\"serving\""));
        for _ in 0..3 {
            let reply = client
                .once(addr, review_request(review()))
                .await
                .expect("a review");
            assert_eq!(reply.status, StatusCode::OK);
        }
        let mut seen = wait_for_line(&lines, "pod mutated");
        let _ = child.kill();
        let _ = child.wait();
        // The rest of what it wrote before it was stopped.
        seen.extend(lines.iter());
        let from_rustls = seen
            .iter()
            .filter(|line| line.contains("\"logger\":\"rustls"))
            .count();
        assert_eq!(
            from_rustls > 0,
            rustls_lines,
            "{v}: {from_rustls} rustls lines in\n{}",
            seen.join("\n")
        );
    }
}

/// More reviews than it took to fill the pipe and hold up the reviews when logging wrote in
/// line (about 400 at debug, a line of about 200 bytes each).
const REVIEWS: usize = 1000;

/// With stderr a pipe nobody reads, reviews are answered as ever while lines are dropped and
/// counted; once the pipe is read again, the drop is reported with its count.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_log_output_does_not_hold_up_reviews() {
    let certs = Certs::new();
    let client = certs.http1_client();
    let mut child = KillOnDrop(command(&certs, &[], Some("debug")).spawn().expect("start"));
    let mut stderr = BufReader::new(child.stderr.take().expect("stderr"));
    // Read up to the serving line, then no more until the end.
    let mut serving = Vec::new();
    while !serving
        .last()
        .is_some_and(|line: &String| line.contains("\"serving\""))
    {
        let mut line = String::new();
        assert!(
            stderr.read_line(&mut line).expect("read") > 0,
            "{serving:?}"
        );
        serving.push(line.trim_end().to_string());
    }
    let addr = serving_addr(&serving);

    let mut conn = client.connect(addr).await.expect("connect");
    let mut slowest = Duration::ZERO;
    let mut dropped = 0;
    let mut reviews = 0;
    while reviews < REVIEWS || dropped == 0 {
        reviews += 1;
        assert!(reviews <= 20_000, "no dropped lines counted");
        let started = Instant::now();
        let reply =
            tokio::time::timeout(Duration::from_secs(5), conn.send(review_request(review())))
                .await
                .unwrap_or_else(|_| panic!("review {reviews} took more than 5 s"))
                .expect("a review");
        assert_eq!(reply.status, StatusCode::OK);
        slowest = slowest.max(started.elapsed());
        if reviews >= REVIEWS && reviews % 200 == 0 {
            let metrics = conn.send(get("/metrics")).await.expect("metrics").text();
            dropped = metrics
                .lines()
                .find_map(|line| {
                    line.strip_prefix("apiserver_proxy_pod_webhook_log_lines_dropped_total ")
                })
                .and_then(|count| count.parse::<u64>().ok())
                .expect("the dropped lines counter");
        }
    }
    println!("{reviews} reviews, the slowest took {slowest:?}; {dropped} lines dropped");

    let lines = {
        let (sender, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in stderr.lines() {
                let Ok(line) = line else { break };
                if sender.send(line).is_err() {
                    break;
                }
            }
        });
        lines
    };
    let seen = wait_for_line(&lines, "log lines were dropped");
    let report: serde_json::Value =
        serde_json::from_str(seen.last().expect("the report")).expect("a JSON line");
    assert_eq!(report["level"], "warn", "{report}");
    assert!(report["lines"].as_u64().is_some_and(|n| n > 0), "{report}");
    assert!(
        child.try_wait().expect("wait").is_none(),
        "the webhook died"
    );
}
