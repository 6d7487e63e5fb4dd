// SPDX-FileCopyrightText: 2026 apiserver-proxy contributors
// SPDX-License-Identifier: Apache-2.0

//! One sidecar keeping an IPv4 and an IPv6 address (`--ip-address=V4,V6`), and
//! `--remove-ip-address`, against the real kernel, each test in a network namespace of its own
//! (as root).

use test_support::netns as support;

use std::time::Duration;

use support::{Netns, stderr, wait_for};

const V4: &str = "10.96.0.2";
const V6: &str = "fd00:10:96::2";
const BOTH: &str = "--ip-address=10.96.0.2,fd00:10:96::2";

fn v4_in_place(ns: &Netns) -> bool {
    ns.addresses_of(V4) == ["inet 10.96.0.2/32 scope global lo"]
}

fn v6_in_place(ns: &Netns) -> bool {
    ns.addresses_of(V6) == ["inet6 fd00:10:96::2/128 scope global lo"]
}

/// Whether the five rules of each address are in place once, each with its own tool.
fn rules_in_place(ns: &Netns) -> bool {
    ns.rule_counts("iptables-nft-save", "10.96.0.2/32", 443) == [1; 5]
        && ns.rule_counts("ip6tables-nft-save", "fd00:10:96::2/128", 443) == [1; 5]
}

#[test]
#[ignore = "needs root: runs in network namespaces (make test runs it)"]
fn dual_stack_addresses_and_rules_and_cleanup_removes_both() {
    let ns = Netns::new("dual");
    let mut daemon = ns.spawn_sidecar(&[
        BOTH,
        "--setup-iptables",
        "--iptables-backend=nft",
        "--cleanup",
        "--metrics-bind-address=127.0.0.1:16911",
    ]);
    let in_place = || v4_in_place(&ns) && v6_in_place(&ns) && rules_in_place(&ns);
    daemon.expect_within(Duration::from_secs(5), in_place);
    // Each family's rules with its own tool, and nowhere else.
    assert!(ns.rules_with("iptables-nft-save", V6).is_empty());
    assert!(ns.rules_with("ip6tables-nft-save", V4).is_empty());
    let ready = wait_for(Duration::from_secs(5), || {
        ns.http_get("http://127.0.0.1:16911/readyz").as_deref() == Some("ready\n")
    });
    assert!(ready.is_some(), "{}", daemon.log());
    assert!(daemon.log().contains("starting"), "{}", daemon.log());
    assert!(
        daemon.log().contains("10.96.0.2,fd00:10:96::2"),
        "{}",
        daemon.log()
    );

    let (code, _) = daemon.terminate();
    assert_eq!(code, Some(0), "{}", daemon.log());
    assert!(ns.addresses_of(V4).is_empty(), "{}", daemon.log());
    assert!(ns.addresses_of(V6).is_empty(), "{}", daemon.log());
    assert!(ns.rules_with("iptables-nft-save", V4).is_empty());
    assert!(ns.rules_with("ip6tables-nft-save", V6).is_empty());
    assert!(daemon.log().contains("cleaned up"));
}

#[test]
#[ignore = "needs root: runs in network namespaces (make test runs it)"]
fn a_deleted_address_is_restored_while_the_other_stays() {
    let ns = Netns::new("dualdel");
    let daemon = ns.spawn_sidecar(&[BOTH]);
    assert!(
        wait_for(Duration::from_secs(5), || v4_in_place(&ns)
            && v6_in_place(&ns))
        .is_some(),
        "{}",
        daemon.log()
    );
    for (deleted, other, prefix) in [(V6, V4, "/128"), (V4, V6, "/32")] {
        let before = daemon.log().len();
        ns.sh(
            "ip",
            &["addr", "del", &format!("{deleted}{prefix}"), "dev", "lo"],
        );
        let restored = wait_for(Duration::from_millis(500), || {
            v4_in_place(&ns) && v6_in_place(&ns)
        });
        assert!(restored.is_some(), "{deleted}: {}", daemon.log());
        let log = daemon.log();
        let round = log.get(before..).unwrap_or_default();
        assert!(
            round
                .lines()
                .any(|line| line.contains("restored address") && line.contains(deleted)),
            "{log}"
        );
        // The other address was never touched: never removed, never restored.
        assert!(
            !round
                .lines()
                .any(|line| line.contains(&format!("\"{other}\""))),
            "{other} was touched: {log}"
        );
    }
}

#[test]
#[ignore = "needs root: runs in network namespaces (make test runs it)"]
fn bad_address_lists_are_usage_errors_naming_the_element() {
    let ns = Netns::new("duallist");
    let cases: &[(&[&str], &str)] = &[
        (
            &["--ip-address=fd00::2,fd00:0::2"],
            "\"fd00:0::2\" is given twice",
        ),
        (&["--ip-address=10.96.0.2,"], "has an empty element"),
        (&["--ip-address=10.96.0.2,,fd00::2"], "has an empty element"),
        (
            &["--ip-address=10.96.0.2,10.96.0.300"],
            "--ip-address=\"10.96.0.300\" is not an IPv4 or IPv6 address",
        ),
        (
            &["--ip-address=10.96.0.2,fe80::1"],
            "--ip-address=fe80::1 cannot be used",
        ),
        (
            &["--ip-address=10.96.0.2", "--remove-ip-address=10.96.0.2"],
            "--remove-ip-address: 10.96.0.2 is also in --ip-address",
        ),
        (
            &["--ip-address=10.96.0.2", "--remove-ip-address=10.96.0.9,"],
            "--remove-ip-address=\"10.96.0.9,\" has an empty element",
        ),
    ];
    for (args, needle) in cases {
        let mut args = args.to_vec();
        args.push("--daemon=false");
        ns.expect_usage_error(&args, needle);
    }
    assert!(
        ns.addresses_of(V4).is_empty(),
        "a rejected run must change nothing"
    );
}

#[test]
#[ignore = "needs root: runs in network namespaces (make test runs it)"]
fn named_addresses_are_removed_from_every_interface_but_not_a_subnet_address() {
    let ns = Netns::new("remove");
    for bridge in ["br-old", "br-net"] {
        ns.sh("ip", &["link", "add", bridge, "type", "bridge"]);
    }
    // The Go original's address under an earlier IP, unmarked, on lo and on a bridge; the same
    // IP as a subnet address elsewhere; and an unmarked address nobody named.
    ns.sh("ip", &["addr", "add", "10.96.0.9/32", "dev", "lo"]);
    ns.sh("ip", &["addr", "add", "10.96.0.9/32", "dev", "br-old"]);
    ns.sh("ip", &["addr", "add", "10.96.0.9/24", "dev", "br-net"]);
    ns.sh("ip", &["addr", "add", "10.96.0.8/32", "dev", "lo"]);
    let output = ns.sidecar_once(&[
        "--ip-address",
        V4,
        "--remove-ip-address=10.96.0.9",
        "--daemon=false",
    ]);
    assert!(output.status.success(), "{}", stderr(&output));
    assert_eq!(
        ns.addresses_of("10.96.0.9"),
        ["inet 10.96.0.9/24 scope global br-net"]
    );
    assert!(v4_in_place(&ns));
    assert_eq!(
        ns.addresses_of("10.96.0.8"),
        ["inet 10.96.0.8/32 scope global lo"]
    );
    let removals = stderr(&output)
        .lines()
        .filter(|line| line.contains("removed an address named by --remove-ip-address"))
        .count();
    assert_eq!(removals, 2, "{}", stderr(&output));

    // Once gone, a rerun has nothing to remove.
    let again = ns.sidecar_once(&[
        "--ip-address",
        V4,
        "--remove-ip-address=10.96.0.9",
        "--daemon=false",
    ]);
    assert!(again.status.success(), "{}", stderr(&again));
    assert!(!stderr(&again).contains("removed"), "{}", stderr(&again));
}

#[test]
#[ignore = "needs root: runs in network namespaces (make test runs it)"]
fn stale_addresses_across_families_and_processes() {
    let ns = Netns::new("dualstale");
    let once = |list: &str| {
        let output = ns.sidecar_once(&[&format!("--ip-address={list}"), "--daemon=false"]);
        assert!(output.status.success(), "{list}: {}", stderr(&output));
    };
    once("10.96.0.2,fd00::2");
    // One process keeping both: an earlier IP of either family is stale.
    once("10.96.0.3,fd00::3");
    assert!(ns.addresses_of("10.96.0.2").is_empty());
    assert!(ns.addresses_of("fd00::2").is_empty());
    // A process keeping IPv4 alone leaves IPv6 to whoever keeps it, as two processes, one
    // per family, would.
    once("10.96.0.4");
    assert!(ns.addresses_of("10.96.0.3").is_empty());
    assert_eq!(
        ns.addresses_of("fd00::3"),
        ["inet6 fd00::3/128 scope global lo"]
    );
    once("fd00::4");
    assert_eq!(
        ns.addresses_of("10.96.0.4"),
        ["inet 10.96.0.4/32 scope global lo"]
    );
    assert!(ns.addresses_of("fd00::3").is_empty());
}

/// A dual-stack sidecar on `lo` and an IPv6-only one putting the same IPv6 address on a
/// bridge: the tug-of-war is over that address alone, reported with it; the IPv4 address is
/// neither fought over nor left by the sidecar keeping IPv6 alone.
#[test]
#[ignore = "needs root: runs in network namespaces (make test runs it)"]
fn a_tug_of_war_over_one_address_is_reported_with_that_address() {
    let ns = Netns::new("dualtug");
    ns.sh("ip", &["link", "set", "lo", "up"]);
    ns.sh("ip", &["link", "add", "apxbr", "type", "bridge"]);
    let dual = ns.spawn_sidecar(&[BOTH]);
    let v6_only = ns.spawn_sidecar(&[&format!("--ip-address={V6}"), "--interface=apxbr"]);
    std::thread::sleep(Duration::from_secs(6));
    let log = dual.log();
    let warnings: Vec<&str> = log
        .lines()
        .filter(|line| line.contains("keeps putting the address on another interface"))
        .collect();
    let other_log = v6_only.log();
    let warned_v6 = warnings.iter().any(|line| line.contains(V6));
    assert!(warned_v6, "{log}\n{other_log}");
    assert!(warnings.iter().all(|line| !line.contains(V4)), "{log}");
    let v4_repairs = log
        .lines()
        .filter(|line| line.contains("restored address") && line.contains(V4))
        .count();
    assert_eq!(v4_repairs, 0, "{log}");
    assert!(v4_in_place(&ns), "{log}");
    assert!(!other_log.contains(V4), "{other_log}");
}

/// Without CAP_NET_ADMIN neither address can be added: the one-shot run names each, once.
#[test]
#[ignore = "needs root: runs in network namespaces (make test runs it)"]
fn every_address_that_cannot_be_added_is_named_once() {
    let ns = Netns::new("dualnocap");
    ns.sh("ip", &["link", "set", "lo", "up"]);
    let output = ns
        .sidecar_without_net_admin()
        .args([BOTH, "--daemon=false"])
        .output()
        .expect("run setpriv");
    let err = stderr(&output);
    assert_eq!(output.status.code(), Some(1), "{err}");
    assert!(err.contains("not everything is in place"), "{err}");
    let failure = err
        .lines()
        .find(|line| line.contains("not everything is in place"))
        .unwrap_or_default();
    for ip in [V4, V6] {
        assert_eq!(
            failure
                .matches(&format!("add {ip} to interface lo"))
                .count(),
            1,
            "{err}"
        );
    }
    assert!(ns.addresses_of(V4).is_empty() && ns.addresses_of(V6).is_empty());
}
