// SPDX-FileCopyrightText: 2026 apiserver-proxy contributors
// SPDX-License-Identifier: Apache-2.0

//! The IPv6 proxy address: a copy made preferred again is deprecated again at once, not at the
//! next sync; with IPv6 disabled the error names the sysctl. Each test in a network namespace of
//! its own (as root).

use test_support::netns as support;

use std::time::Duration;

use support::Netns;

const V6: &str = "fd00::2";

/// `ip -6 addr show dev lo`'s line for the proxy address, if it is there.
fn line_of(ns: &Netns) -> Option<String> {
    ns.sh("ip", &["-6", "-o", "addr", "show", "dev", "lo"])
        .lines()
        .find(|line| line.contains(&format!("{V6}/128")))
        .map(str::to_string)
}

fn deprecated(ns: &Netns) -> bool {
    line_of(ns).is_some_and(|line| line.contains("deprecated"))
}

#[test]
#[ignore = "needs root: runs in network namespaces (make test runs it)"]
fn an_address_made_preferred_again_is_deprecated_again_at_once() {
    let ns = Netns::new("repreferred");
    ns.sh("ip", &["link", "set", "lo", "up"]);
    // The periodic sync is an hour away: only the notification can bring the repair.
    let daemon = ns.spawn_sidecar(&["--ip-address", V6, "--sync-interval=1h"]);
    daemon.expect_within(Duration::from_secs(10), || deprecated(&ns));
    for round in 0..3 {
        // Only the lifetimes change: the address stays where it is.
        ns.sh(
            "ip",
            &[
                "-6",
                "addr",
                "change",
                &format!("{V6}/128"),
                "dev",
                "lo",
                "preferred_lft",
                "forever",
            ],
        );
        let took = daemon.expect_within(Duration::from_secs(2), || deprecated(&ns));
        eprintln!("round {round}: deprecated again after {took:?}");
    }
    let log = daemon.log();
    assert!(
        log.matches("deprecated the address in place").count() >= 3,
        "{log}"
    );
}

#[test]
#[ignore = "needs root: runs in network namespaces (make test runs it)"]
fn with_ipv6_disabled_the_error_names_the_sysctl() {
    let ns = Netns::new("noipv6");
    ns.sh("ip", &["link", "set", "lo", "up"]);
    // In the test's own namespace: the sysctls of net.ipv6 are per network namespace.
    ns.sh("sysctl", &["-qw", "net.ipv6.conf.all.disable_ipv6=1"]);
    ns.sh("sysctl", &["-qw", "net.ipv6.conf.lo.disable_ipv6=1"]);
    let output = ns.sidecar_once(&["--ip-address", V6, "--daemon=false"]);
    let err = support::stderr(&output);
    assert_eq!(output.status.code(), Some(1), "{err}");
    assert!(
        err.contains("add fd00::2 to interface lo: Permission denied (os error 13) (IPv6 is disabled in this network namespace: set the sysctls net.ipv6.conf.all.disable_ipv6"),
        "{err}"
    );
}
