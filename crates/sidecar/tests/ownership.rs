// SPDX-FileCopyrightText: 2026 apiserver-proxy contributors
// SPDX-License-Identifier: Apache-2.0

//! What the sidecar owns, and nothing else: its rules carry a comment; the Go original's rules
//! (the same, without the comment) are adopted where they stand; commented rules left from an
//! earlier IP or port are removed; nobody else's rules are touched. Each test in a network
//! namespace of its own (as root).

use test_support::netns as support;

use support::Netns;

const IP: &str = "10.96.0.2";

/// The sidecar's rules in place of `ip`:`port`: how many with the comment, how many bare.
fn counts(ns: &Netns, ip: &str, port: u16) -> (usize, usize) {
    let host = format!("{ip}/32");
    let commented = ns
        .rule_counts("iptables-nft-save", &host, port)
        .iter()
        .sum();
    let bare_lines = support::bare_rules(&host, port);
    let saved = ns.sh("iptables-nft-save", &[]);
    let bare = bare_lines
        .iter()
        .map(|(_, line)| saved.lines().filter(|saved| saved.trim() == line).count())
        .sum();
    (commented, bare)
}

fn once(ns: &Netns, ip: &str, port: &str) {
    let output = ns.sidecar_once(&[
        "--ip-address",
        ip,
        "--port",
        port,
        "--setup-iptables",
        "--iptables-backend=nft",
        "--daemon=false",
    ]);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
}

/// Writes rules with `iptables-nft-restore --noflush`.
fn restore(ns: &Netns, input: &str) {
    let mut child = ns
        .command("iptables-nft-restore")
        .arg("--noflush")
        .stdin(std::process::Stdio::piped())
        .spawn()
        .expect("iptables-nft-restore");
    use std::io::Write;
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(input.as_bytes())
        .expect("write");
    assert!(child.wait().expect("wait").success(), "{input}");
}

#[test]
#[ignore = "needs root: runs in network namespaces (make test runs it)"]
fn rules_the_go_original_wrote_are_adopted_where_they_stand() {
    let ns = Netns::new("adopt");
    let foreign = "-A INPUT -s 192.0.2.1/32 -j ACCEPT";
    let bare = support::bare_rules(&format!("{IP}/32"), 443);
    let mut input = String::new();
    for table in ["raw", "filter"] {
        input.push_str(&format!("*{table}\n"));
        if table == "filter" {
            input.push_str(&format!("{foreign}\n"));
        }
        for (_, line) in bare.iter().filter(|(t, _)| t == table) {
            input.push_str(&format!("{line}\n"));
        }
        input.push_str("COMMIT\n");
    }
    restore(&ns, &input);
    assert_eq!(counts(&ns, IP, 443), (0, 5));

    once(&ns, IP, "443");
    assert_eq!(counts(&ns, IP, 443), (5, 0));
    // Where the bare rule stood: below the foreign rule, not moved to the top.
    let input_chain: Vec<String> = ns
        .sh("iptables-nft-save", &["-t", "filter"])
        .lines()
        .filter(|line| line.starts_with("-A INPUT "))
        .map(str::to_string)
        .collect();
    let (_, ours) = &support::expected_rules(&format!("{IP}/32"), 443)[3];
    assert_eq!(input_chain, [foreign.to_string(), ours.clone()]);
}

#[test]
#[ignore = "needs root: runs in network namespaces (make test runs it)"]
fn rules_left_from_an_earlier_ip_or_port_are_removed_and_nobody_elses() {
    let ns = Netns::new("stale");
    let foreign = "-A INPUT -s 192.0.2.1/32 -m comment --comment \"kube-proxy: x\" -j ACCEPT";
    restore(&ns, &format!("*filter\n{foreign}\nCOMMIT\n"));
    once(&ns, "10.96.0.9", "443");
    assert_eq!(counts(&ns, "10.96.0.9", 443), (5, 0));

    // The advertised IP changed: the old rules go in the same sync that writes the new ones.
    once(&ns, IP, "443");
    assert_eq!(counts(&ns, "10.96.0.9", 443), (0, 0));
    assert_eq!(counts(&ns, IP, 443), (5, 0));

    // So do those of an earlier port.
    once(&ns, IP, "6443");
    assert_eq!(counts(&ns, IP, 443), (0, 0));
    assert_eq!(counts(&ns, IP, 6443), (5, 0));

    let saved = ns.sh("iptables-nft-save", &["-t", "filter"]);
    assert!(saved.lines().any(|line| line == foreign), "{saved}");
}

#[test]
#[ignore = "needs root: runs in network namespaces (make test runs it)"]
fn an_address_added_under_an_earlier_ip_is_removed_and_nobody_elses() {
    let ns = Netns::new("oldip");
    ns.sh("ip", &["link", "set", "lo", "up"]);
    // Another program's address, and one the Go original added under an earlier IP: unmarked.
    ns.sh("ip", &["addr", "add", "10.96.0.8/32", "dev", "lo"]);
    let output = ns.sidecar_once(&["--ip-address=10.96.0.9", "--daemon=false"]);
    assert!(output.status.success());
    assert_eq!(ns.addresses_of("10.96.0.9").len(), 1);

    // The advertised IP changes: the sidecar's own earlier address goes.
    let output = ns.sidecar_once(&["--ip-address", IP, "--daemon=false"]);
    let log = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{log}");
    assert!(ns.addresses_of("10.96.0.9").is_empty(), "{log}");
    assert!(
        log.contains("removed an address this sidecar added earlier"),
        "{log}"
    );
    assert_eq!(ns.addresses_of(IP).len(), 1);
    assert_eq!(ns.addresses_of("10.96.0.8").len(), 1, "not the sidecar's");
}

#[test]
#[ignore = "needs root: runs in network namespaces (make test runs it)"]
fn the_go_originals_address_is_marked_in_place_once() {
    let ns = Netns::new("markgo");
    ns.sh("ip", &["link", "set", "lo", "up"]);
    ns.sh("ip", &["addr", "add", &format!("{IP}/32"), "dev", "lo"]);
    let mut daemon = ns.spawn_sidecar(&["--ip-address", IP, "--sync-interval=100ms"]);
    std::thread::sleep(std::time::Duration::from_millis(600));
    let (code, _) = daemon.terminate();
    let log = daemon.log();
    assert_eq!(code, Some(0), "{log}");
    // Marked once (the kernel keeps the mark: no further attempt, no warning), never removed.
    assert_eq!(
        log.matches("marked the address in place").count(),
        1,
        "{log}"
    );
    assert!(!log.contains("keeps no address protocol"), "{log}");
    assert!(
        !log.contains("restored address") && !log.contains("added address"),
        "{log}"
    );
    assert_eq!(ns.addresses_of(IP).len(), 1);
}
