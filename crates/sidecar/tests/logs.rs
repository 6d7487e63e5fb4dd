// SPDX-FileCopyrightText: 2026 apiserver-proxy contributors
// SPDX-License-Identifier: Apache-2.0

//! The sidecar's logs, each test in a network namespace of its own (as root): `RUST_LOG`
//! cannot silence why it stopped, and a filter that selects none of its lines is refused as a
//! usage error.

use test_support::netns as support;

use std::time::Duration;

use support::{Netns, stderr};

const IP: &str = "10.96.0.2";

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
