// SPDX-FileCopyrightText: 2026 apiserver-proxy contributors
// SPDX-License-Identifier: Apache-2.0

//! Unusual flag values against the real kernel, each test in a network namespace of its own (as
//! root): every one either works like a normal value or is refused at start.

use test_support::netns as support;

use std::time::Duration;

use support::{Netns, stderr, wait_for};

fn ones() -> Vec<usize> {
    vec![1; 5]
}

/// A namespace whose lo is up, so it carries 127.0.0.1/8 and ::1 as on a node.
fn node_like(test: &str) -> Netns {
    let ns = Netns::new(test);
    ns.sh("ip", &["link", "set", "lo", "up"]);
    ns
}

/// Every address line of the namespace.
fn all_addresses(ns: &Netns) -> String {
    ns.sh("ip", &["-o", "addr", "show"])
}

#[test]
#[ignore = "needs root: runs in network namespaces (make test runs it)"]
fn addresses_that_cannot_be_global_are_refused_and_nothing_is_touched() {
    let ns = node_like("refuse");
    let before = all_addresses(&ns);
    for ip in [
        "::1",
        "fe80::1",
        "fec0::1",
        "127.0.0.1",
        "127.0.0.53",
        "::102:304",
        "0.1.2.3",
    ] {
        let flag = format!("--ip-address={ip}");
        let mut daemon = ns.spawn_sidecar(&[
            &flag,
            "--cleanup",
            "--setup-iptables",
            "--iptables-backend=nft",
            "--sync-interval=100ms",
        ]);
        let exited = wait_for(Duration::from_secs(5), || !daemon.is_running());
        if exited.is_none() {
            daemon.terminate();
            panic!("{ip} was not refused: {}", daemon.log());
        }
        let code = daemon.child.wait().expect("exit status").code();
        // A value refused before anything starts is a usage error.
        assert_eq!(code, Some(2), "{ip}: {}", daemon.log());
        assert!(
            daemon
                .log()
                .contains(&format!("--ip-address={ip} cannot be used: it is")),
            "{ip}: {}",
            daemon.log()
        );
        assert_eq!(all_addresses(&ns), before, "{ip} changed the addresses");
        for save in ["iptables-nft-save", "ip6tables-nft-save"] {
            assert!(
                ns.rules_with(save, "--dport 443").is_empty(),
                "{ip}: {save}"
            );
        }
    }
    assert!(ns.try_sh("ip", &["route", "get", "127.0.0.53"]));
}

#[test]
#[ignore = "needs root: runs in network namespaces (make test runs it)"]
fn link_local_and_class_e_ipv4_and_documentation_ipv6_work_like_any_address() {
    let ns = node_like("classes");
    // 169.254.20.10: NodeLocal DNSCache's address; 240.0.0.0/4: used by Gardener.
    for (ip, host) in [
        ("169.254.20.10", "169.254.20.10/32"),
        ("240.0.0.1", "240.0.0.1/32"),
        ("100.64.0.10", "100.64.0.10/32"),
        ("2001:db8::1", "2001:db8::1/128"),
    ] {
        let (family, save) = if ip.contains(':') {
            ("inet6", "ip6tables-nft-save")
        } else {
            ("inet", "iptables-nft-save")
        };
        for run in 0..2 {
            let output = ns.sidecar_once(&[
                "--ip-address",
                ip,
                "--setup-iptables",
                "--iptables-backend=nft",
                "--daemon=false",
            ]);
            assert!(output.status.success(), "{ip}: {}", stderr(&output));
            assert_eq!(
                ns.addresses_of(ip),
                [format!("{family} {host} scope global lo")],
                "{ip}"
            );
            assert_eq!(ns.rule_counts(save, host, 443), ones(), "{ip}");
            if run == 1 {
                assert!(
                    !stderr(&output).contains("added") && !stderr(&output).contains("removed"),
                    "{ip}: the second run changed something: {}",
                    stderr(&output)
                );
            }
        }
    }
}

#[test]
#[ignore = "needs root: runs in network namespaces (make test runs it)"]
fn the_same_ip_with_a_shorter_prefix_is_never_touched() {
    let ns = node_like("subnet");
    ns.sh(
        "ip",
        &[
            "link", "add", "eth0", "type", "veth", "peer", "name", "eth1",
        ],
    );
    ns.sh("ip", &["addr", "add", "10.96.0.2/24", "dev", "eth0"]);
    ns.sh("ip", &["addr", "add", "10.96.0.2/8", "dev", "lo"]);
    // Sorted, as the checks below sort what they find.
    let foreign = [
        "inet 10.96.0.2/24 scope global eth0",
        "inet 10.96.0.2/8 scope global lo",
    ];
    let mut daemon = ns.spawn_sidecar(&["--ip-address=10.96.0.2", "--cleanup"]);
    let with_ours = || {
        let mut addresses = ns.addresses_of("10.96.0.2");
        addresses.sort();
        addresses
    };
    let mut want: Vec<String> = foreign.iter().map(|line| line.to_string()).collect();
    want.push("inet 10.96.0.2/32 scope global lo".into());
    want.sort();
    assert!(
        wait_for(Duration::from_secs(5), || with_ours() == want).is_some(),
        "{:?}\n{}",
        with_ours(),
        daemon.log()
    );
    let (code, _) = daemon.terminate();
    assert_eq!(code, Some(0), "{}", daemon.log());
    let mut left = ns.addresses_of("10.96.0.2");
    left.sort();
    assert_eq!(left, foreign, "{}", daemon.log());
}

#[test]
#[ignore = "needs root: runs in network namespaces (make test runs it)"]
fn an_ipv6_subnet_address_on_the_link_is_left_as_it_is() {
    let ns = node_like("subnet6");
    ns.sh("ip", &["-6", "addr", "add", "fd00::10/64", "dev", "lo"]);
    for _ in 0..2 {
        let output = ns.sidecar_once(&["--ip-address=fd00::10", "--daemon=false"]);
        assert!(output.status.success(), "{}", stderr(&output));
        assert_eq!(
            ns.addresses_of("fd00::10"),
            ["inet6 fd00::10/64 scope global lo"],
            "{}",
            stderr(&output)
        );
    }
}

/// The rules of `chain` in `table`, top first, as `save` (e.g. `iptables-nft-save`) prints them.
fn chain(ns: &Netns, save: &str, table: &str, chain: &str) -> Vec<String> {
    let prefix = format!("-A {chain} ");
    ns.sh(save, &["-t", table])
        .lines()
        .filter_map(|line| line.strip_prefix(&prefix))
        .map(str::to_string)
        .collect()
}

const DROP: &str = "-p tcp -m tcp --dport 443 -j DROP";

/// The sidecar's ACCEPT rule for 10.96.0.2:443 in INPUT, as `iptables-save` prints it.
fn accept() -> String {
    let (_, line) = &support::expected_rules("10.96.0.2/32", 443)[3];
    line.trim_start_matches("-A INPUT ").to_string()
}

/// Starts the sidecar on `backend` with a short interval and waits for the five rules.
fn start_with_rules(ns: &Netns, backend: &str) -> support::Daemon {
    let flag = format!("--iptables-backend={backend}");
    let daemon = ns.spawn_sidecar(&[
        "--ip-address=10.96.0.2",
        "--setup-iptables",
        &flag,
        "--sync-interval=100ms",
    ]);
    let save = format!("iptables-{backend}-save");
    let in_place = || ns.rule_counts(&save, "10.96.0.2/32", 443) == ones();
    daemon.expect_within(Duration::from_secs(5), in_place);
    daemon
}

/// Waits until the filter table's INPUT chain of `backend` holds two rules, which must be
/// `wanted`, top first: what is left once the daemon has removed the duplicate of its ACCEPT.
fn expect_input(ns: &Netns, daemon: &support::Daemon, backend: &str, wanted: &[&str; 2]) {
    let save = format!("iptables-{backend}-save");
    let input = || chain(ns, &save, "filter", "INPUT");
    let settled = wait_for(Duration::from_secs(5), || input().len() == 2);
    let log = daemon.log();
    assert!(settled.is_some(), "{backend}: {:?}\n{log}", input());
    assert_eq!(input(), wanted, "{backend}\n{log}");
}

/// How many syncs the daemon has logged (at debug level).
fn syncs(daemon: &support::Daemon) -> usize {
    daemon.log().matches("sync\" why=").count()
}

#[test]
#[ignore = "needs root: runs in network namespaces (make test runs it)"]
fn of_two_copies_of_a_rule_the_one_above_a_drop_stays() {
    for backend in ["nft", "legacy"] {
        let ns = Netns::new(&format!("dupdrop-{backend}"));
        let daemon = start_with_rules(&ns, backend);
        let iptables = format!("iptables-{backend}");
        let save = format!("iptables-{backend}-save");
        // The finding, step by step: a DROP appended, then a copy of our ACCEPT below it.
        ns.sh(
            &iptables,
            &["-A", "INPUT", "-p", "tcp", "--dport", "443", "-j", "DROP"],
        );
        append_a_copy_of_our_accept(&ns, &iptables);
        let input = || chain(&ns, &save, "filter", "INPUT");
        expect_input(&ns, &daemon, backend, &[&accept(), DROP]);
        assert!(
            daemon.log().contains("removed duplicate iptables rule"),
            "{}",
            daemon.log()
        );
        // And it stays so over the next syncs.
        let seen = syncs(&daemon);
        assert!(wait_for(Duration::from_secs(5), || syncs(&daemon) >= seen + 3).is_some());
        assert_eq!(
            input(),
            [accept().as_str(), DROP],
            "{backend}\n{}",
            daemon.log()
        );
        assert_eq!(ns.rule_counts(&save, "10.96.0.2/32", 443), ones());
    }
}

#[test]
#[ignore = "needs root: runs in network namespaces (make test runs it)"]
fn a_rule_inserted_above_ours_stays_above_it() {
    let ns = Netns::new("above");
    let daemon = start_with_rules(&ns, "nft");
    // As Calico and kube-proxy do: their own rules at position 1.
    let foreign = "-s 192.0.2.1/32 -j ACCEPT";
    for table_chain in [
        ["filter", "INPUT"],
        ["raw", "PREROUTING"],
        ["raw", "OUTPUT"],
    ] {
        let [table, chain_name] = table_chain;
        ns.sh(
            "iptables-nft",
            &[
                "-t",
                table,
                "-I",
                chain_name,
                "1",
                "-s",
                "192.0.2.1/32",
                "-j",
                "ACCEPT",
            ],
        );
    }
    let before = daemon.log();
    let seen = syncs(&daemon);
    daemon.expect_within(Duration::from_secs(5), || syncs(&daemon) >= seen + 5);
    assert_eq!(
        chain(&ns, "iptables-nft-save", "filter", "INPUT"),
        [foreign, accept().as_str()]
    );
    assert_eq!(
        chain(&ns, "iptables-nft-save", "raw", "PREROUTING")[0],
        foreign
    );
    assert_eq!(chain(&ns, "iptables-nft-save", "raw", "OUTPUT")[0], foreign);
    assert_eq!(
        ns.rule_counts("iptables-nft-save", "10.96.0.2/32", 443),
        ones()
    );
    let after = daemon.log();
    let new_lines = &after[before.len()..];
    assert!(
        !new_lines.contains("iptables rule"),
        "the rules were changed after the foreign rules came: {new_lines}"
    );
}

/// Starts the sidecar as a daemon and expects it to refuse its flags at once: exit code 2 and
/// `needle` in its log. A daemon still running after 5 s accepted them.
fn expect_refused(ns: &Netns, args: &[&str], needle: &str) {
    let mut daemon = ns.spawn_sidecar(args);
    if wait_for(Duration::from_secs(5), || !daemon.is_running()).is_none() {
        daemon.terminate();
        panic!("{args:?} was accepted: {}", daemon.log());
    }
    let code = daemon.child.wait().expect("exit status").code();
    assert_eq!(code, Some(2), "{args:?}: {}", daemon.log());
    assert!(daemon.log().contains(needle), "{args:?}: {}", daemon.log());
}

#[test]
#[ignore = "needs root: runs in network namespaces (make test runs it)"]
fn out_of_bounds_durations_and_expanding_interface_names_are_refused_with_the_bound() {
    let ns = node_like("bounds");
    let links_before = ns.sh("ip", &["-o", "link", "show"]);
    let cases: &[(&str, &str)] = &[
        (
            "--sync-interval=1ns",
            "invalid value '1ns' for '--sync-interval <DURATION>': duration \"1ns\" is below the minimum of 100ms",
        ),
        ("--sync-interval=25h", "is above the maximum of 24h"),
        // Exactly 2^63 ns, one past Go's longest duration.
        ("--sync-interval=9223372036854775808ns", "is too large"),
        ("--sync-interval=2562047h47m16.854775808s", "is too large"),
        (
            "--xtables-lock-timeout=1ns",
            "'--xtables-lock-timeout <DURATION>': duration \"1ns\" is below the minimum of 100ms",
        ),
        (
            "--xtables-lock-timeout=9223372036854775807ns",
            "is above the maximum of 5m",
        ),
        (
            "--interface=a%d",
            "--interface=\"a%d\" is not a valid interface name: it contains '%'",
        ),
        ("--interface=proxy%d", "it contains '%'"),
        ("--interface=là", "it contains the byte 0xa0"),
    ];
    for (flag, needle) in cases {
        expect_refused(
            &ns,
            &["--ip-address=10.96.0.2", "--setup-iptables", flag],
            needle,
        );
    }
    assert_eq!(ns.sh("ip", &["-o", "link", "show"]), links_before);
    assert!(ns.addresses_of("10.96.0.2").is_empty());
}

#[test]
#[ignore = "needs root: runs in network namespaces (make test runs it)"]
fn a_duplicate_below_foreign_rules_keeps_the_place_of_the_top_copy() {
    for backend in ["nft", "legacy"] {
        let ns = Netns::new(&format!("dupbelow-{backend}"));
        let daemon = start_with_rules(&ns, backend);
        let iptables = format!("iptables-{backend}");
        let foreign = "-s 192.0.2.1/32 -j ACCEPT";
        ns.sh(
            &iptables,
            &["-I", "INPUT", "1", "-s", "192.0.2.1/32", "-j", "ACCEPT"],
        );
        append_a_copy_of_our_accept(&ns, &iptables);
        // Our copy goes back to position 2 of a chain that has one rule left: the end.
        expect_input(&ns, &daemon, backend, &[foreign, &accept()]);
    }
}

/// Appends, at the end of INPUT, a copy of the sidecar's ACCEPT rule for 10.96.0.2:443 as the
/// Go original wrote it (without a comment).
fn append_a_copy_of_our_accept(ns: &Netns, iptables: &str) {
    ns.sh(
        iptables,
        &[
            "-A",
            "INPUT",
            "-p",
            "tcp",
            "-d",
            "10.96.0.2",
            "--dport",
            "443",
            "-j",
            "ACCEPT",
        ],
    );
}
