// SPDX-FileCopyrightText: 2026 apiserver-proxy contributors
// SPDX-License-Identifier: Apache-2.0

//! The sidecar's logs, each test in a network namespace of its own (as root): a log output
//! that stops taking lines (a pipe nobody reads: a stuck log shipper) never stops the sidecar;
//! `RUST_LOG` cannot silence why it stopped, and a filter that selects none of its lines is
//! refused as a usage error.

use test_support::netns as support;

use std::io::{BufRead, BufReader};
use std::process::Stdio;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use support::{Netns, stderr, wait_for};
use test_support::KillOnDrop;

const IP: &str = "10.96.0.2";
const HOST: &str = "10.96.0.2/32";
const METRICS: &str = "127.0.0.1:16914";

/// More repairs than it took to fill the pipe and block the daemon when logging wrote in line
/// (about 600 at `-v` debug); then more until lines are dropped, at most `MAX_REPAIRS`.
const REPAIRS: usize = 1000;
const MAX_REPAIRS: usize = 4000;

#[test]
#[ignore = "needs root: runs in a network namespace (make test runs it)"]
fn a_stalled_log_output_blocks_neither_repairs_nor_probes() {
    let ns = Netns::new("stalled-log");
    let mut command = ns.sidecar(&[
        "--ip-address",
        IP,
        "--sync-interval=1m",
        &format!("--metrics-bind-address={METRICS}"),
    ]);
    let mut child = KillOnDrop(
        command
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start the sidecar"),
    );
    // Nobody reads the pipe until the end.
    let stderr = child.stderr.take().expect("stderr");
    let get = |path: &str| ns.http_get(&format!("http://{METRICS}{path}"));
    let in_place = || ns.addresses_of(IP).len() == 1;
    assert!(
        wait_for(Duration::from_secs(10), in_place).is_some(),
        "the address never came"
    );

    let started = Instant::now();
    let mut slowest = Duration::ZERO;
    let mut dropped = None;
    let mut repairs = 0;
    while repairs < REPAIRS || dropped.is_none_or(|count| count == 0) {
        repairs += 1;
        assert!(
            repairs <= MAX_REPAIRS,
            "no dropped lines counted after {MAX_REPAIRS} repairs"
        );
        ns.sh("ip", &["addr", "del", HOST, "dev", "lo"]);
        // Generous: the machine may be loaded; a blocked daemon never restores it at all.
        let took = wait_for(Duration::from_secs(5), in_place)
            .unwrap_or_else(|| panic!("repair {repairs}: the address was not restored in 5 s"));
        slowest = slowest.max(took);
        if repairs % 50 == 0 {
            assert_eq!(
                get("/healthz").as_deref(),
                Some("ok\n"),
                "repair {repairs}: /healthz does not answer"
            );
            dropped = dropped_lines(&get("/metrics").unwrap_or_default());
        }
    }
    println!(
        "{repairs} repairs in {:?}, the slowest took {slowest:?}; {dropped:?} lines dropped",
        started.elapsed()
    );

    // The output moves again: the drop is reported with its count.
    let (lines, received) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines() {
            let Ok(line) = line else { break };
            if lines.send(line).is_err() {
                break;
            }
        }
    });
    let deadline = Instant::now() + Duration::from_secs(30);
    let report = loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match received.recv_timeout(left) {
            Ok(line) if line.contains("log lines were dropped") => break line,
            Ok(_) => {}
            Err(error) => panic!("no report of the dropped lines ({error})"),
        }
    };
    let reported: u64 = report
        .split_whitespace()
        .find_map(|field| field.strip_prefix("lines="))
        .and_then(|count| count.parse().ok())
        .unwrap_or_else(|| panic!("no count in {report}"));
    assert!(reported > 0, "{report}");
    assert!(report.starts_with('W'), "a warning: {report}");
    assert!(
        child.try_wait().expect("wait").is_none(),
        "the sidecar died"
    );
}

/// `apiserver_proxy_sidecar_log_lines_dropped_total` in a `/metrics` answer.
fn dropped_lines(metrics: &str) -> Option<u64> {
    metrics.lines().find_map(|line| {
        line.strip_prefix("apiserver_proxy_sidecar_log_lines_dropped_total ")
            .and_then(|count| count.parse().ok())
    })
}

#[test]
#[ignore = "needs root: runs in a network namespace (make test runs it)"]
fn rust_log_that_selects_none_of_its_lines_is_refused() {
    let ns = Netns::new("rust-log");
    for (filter, problem) in [
        // The binary's name for its crate's.
        (
            "apiserver-proxy-sidecar=debug",
            "it selects none of this program's lines",
        ),
        ("sidecar-x=debug", "it selects none of this program's lines"),
        (
            "netlink_proto=debug",
            "it selects none of this program's lines",
        ),
        ("sidecar=off", "it selects none of this program's lines"),
        (",", "it holds no directive"),
        (
            "info,sidecar=loud",
            "directive \"sidecar=loud\": error parsing level filter",
        ),
    ] {
        let output = ns
            .sidecar(&["--ip-address", IP, "--daemon=false"])
            .env("RUST_LOG", filter)
            .output()
            .expect("run the sidecar");
        let said = stderr(&output);
        // A bad value, found before anything is touched: a usage error.
        assert_eq!(output.status.code(), Some(2), "{filter}: {said}");
        assert!(
            said.contains(&format!("invalid log filter {filter:?}")) && said.contains(problem),
            "{filter}: {said}"
        );
        assert!(ns.addresses_of(IP).is_empty(), "{filter}: it went on");
    }
}

#[test]
#[ignore = "needs root: runs in a network namespace (make test runs it)"]
fn the_reason_it_stopped_is_shown_whatever_rust_log_says() {
    let ns = Netns::new("rust-log-off");
    // A first sidecar holds the port: the second cannot start.
    let metrics = "--metrics-bind-address=127.0.0.1:16915";
    let first = ns.spawn_sidecar(&["--ip-address", IP, metrics]);
    first.expect_within(Duration::from_secs(10), || {
        ns.http_get("http://127.0.0.1:16915/healthz").is_some()
    });
    for (filter, format) in [
        ("off", "text"),
        ("off", "json"),
        ("netlink_proto=debug,warn", "text"),
        // A trailing comma, an unknown target beside a level: neither silences anything.
        ("info,", "text"),
        ("nonesuch=debug,error", "json"),
    ] {
        let output = ns
            .sidecar(&[
                "--ip-address",
                IP,
                "--daemon=false",
                metrics,
                &format!("--logging-format={format}"),
            ])
            .env("RUST_LOG", filter)
            .output()
            .expect("run the sidecar");
        let said = stderr(&output);
        assert_eq!(output.status.code(), Some(1), "{filter}: {said}");
        assert!(
            said.contains("cannot listen on --metrics-bind-address=127.0.0.1:16915"),
            "{filter} {format}: {said:?}"
        );
    }
}
