// SPDX-FileCopyrightText: 2026 apiserver-proxy contributors
// SPDX-License-Identifier: Apache-2.0

//! The daemon's exit codes on a signal, as `docs/sidecar.md` states them: 0 when it stopped
//! (and cleaned up), 1 when the cleanup is incomplete (the xtables lock held: the address goes,
//! the rules stay), 143 when a second SIGTERM abandons the cleanup. Each test in a network
//! namespace of its own (as root), through the binary and real signals.

use test_support::netns as support;

use std::time::Duration;

use support::{Daemon, Netns};

const IP: &str = "10.96.0.2";

/// A daemon with its rules and `--cleanup`; returns once everything is in place.
fn daemon(ns: &Netns, lock_timeout: &str) -> Daemon {
    ns.sh("ip", &["link", "set", "lo", "up"]);
    let daemon = ns.spawn_sidecar(&[
        "--ip-address",
        IP,
        "--setup-iptables",
        "--iptables-backend=nft",
        "--cleanup",
        &format!("--xtables-lock-timeout={lock_timeout}"),
    ]);
    daemon.expect_within(Duration::from_secs(10), || {
        ns.addresses_of(IP).len() == 1 && rules(ns) == 5
    });
    daemon
}

fn rules(ns: &Netns) -> usize {
    ns.rule_counts("iptables-nft-save", &format!("{IP}/32"), 443)
        .iter()
        .sum()
}

#[test]
#[ignore = "needs root: runs in network namespaces (make test runs it)"]
fn a_clean_stop_exits_0() {
    let ns = Netns::new("exit0");
    let mut daemon = daemon(&ns, "5s");
    let (code, _) = daemon.terminate();
    assert_eq!(code, Some(0), "{}", daemon.log());
    assert!(ns.addresses_of(IP).is_empty() && rules(&ns) == 0);
}

#[test]
#[ignore = "needs root: runs in network namespaces (make test runs it)"]
fn a_cleanup_with_the_lock_held_removes_the_address_keeps_the_rules_and_exits_1() {
    let ns = Netns::new("exit1");
    let mut daemon = daemon(&ns, "300ms");
    let mut holder = support::hold_lock(&ns.lock_path(), "10");
    let (code, _) = daemon.terminate();
    let _ = holder.kill();
    let _ = holder.wait();
    let log = daemon.log();
    assert_eq!(code, Some(1), "{log}");
    assert!(log.contains("cleanup incomplete"), "{log}");
    assert!(log.contains("is held by another program"), "{log}");
    assert!(ns.addresses_of(IP).is_empty(), "{log}");
    assert_eq!(rules(&ns), 5, "{log}");
}

#[test]
#[ignore = "needs root: runs in network namespaces (make test runs it)"]
fn a_second_sigterm_abandons_the_cleanup_with_143() {
    let ns = Netns::new("exit143");
    let mut daemon = daemon(&ns, "20s");
    let mut holder = support::hold_lock(&ns.lock_path(), "30");
    daemon.child.signal("TERM");
    std::thread::sleep(Duration::from_millis(500));
    let (code, took) = daemon.terminate();
    let _ = holder.kill();
    let _ = holder.wait();
    let log = daemon.log();
    assert_eq!(code, Some(143), "{log}");
    assert!(took < Duration::from_secs(2), "{took:?}\n{log}");
    assert!(log.contains("second signal: cleanup abandoned"), "{log}");
}
