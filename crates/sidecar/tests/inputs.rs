// SPDX-FileCopyrightText: 2026 apiserver-proxy contributors
// SPDX-License-Identifier: Apache-2.0

//! Unusual flag values against the real kernel, each test in a network namespace of its own (as
//! root): every one either works like a normal value or is refused at start.

mod support;

use std::process::Output;
use std::time::Duration;

use support::{Netns, wait_for};

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

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
        assert_eq!(code, Some(1), "{ip}: {}", daemon.log());
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
fn link_local_and_class_e_ipv4_work_like_any_address() {
    let ns = node_like("classes");
    // 169.254.20.10: NodeLocal DNSCache's address; 240.0.0.0/4: used by Gardener.
    for (ip, host) in [
        ("169.254.20.10", "169.254.20.10/32"),
        ("240.0.0.1", "240.0.0.1/32"),
        ("100.64.0.10", "100.64.0.10/32"),
    ] {
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
                [format!("inet {host} scope global lo")],
                "{ip}"
            );
            assert_eq!(
                ns.rule_counts("iptables-nft-save", host, 443),
                ones(),
                "{ip}"
            );
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
