// SPDX-FileCopyrightText: 2026 apiserver-proxy contributors
// SPDX-License-Identifier: Apache-2.0

//! Instances side by side: two with different IPs (two DaemonSets during a move to a new proxy
//! IP) never remove each other's addresses or rules, a cleanup job for the old IP leaves the new
//! instance alone, and the new one removes the old IP's state by itself once the old instance is
//! gone, after the grace (10 s) that spares a pod's IP between its init container and its
//! daemon. Each test in a network namespace of its own (as root), where the instances see each
//! other's claims (abstract unix sockets belong to the network namespace).

use test_support::netns as support;

use std::time::{Duration, Instant};

use support::{Daemon, Netns, wait_for};

const OLD: &str = "10.96.0.2";
const NEW: &str = "10.96.0.3";

/// The grace an IP found unclaimed waits out before its state counts as stale (`GRACE` in the
/// sidecar's `instance.rs`).
const GRACE: Duration = Duration::from_secs(10);

/// A daemon keeping `ip` with its rules, syncing every `interval`.
fn daemon(ns: &Netns, ip: &str, interval: &str) -> Daemon {
    ns.spawn_sidecar(&[
        "--ip-address",
        ip,
        "--setup-iptables",
        "--iptables-backend=nft",
        &format!("--sync-interval={interval}"),
    ])
}

/// A namespace with `lo` up and the old instance keeping `OLD`, its rules in place.
fn with_old(test: &str) -> (Netns, Daemon) {
    let ns = Netns::new(test);
    ns.sh("ip", &["link", "set", "lo", "up"]);
    let old = daemon(&ns, OLD, "200ms");
    old.expect_within(Duration::from_secs(10), || complete(&ns, OLD));
    (ns, old)
}

/// [`with_old`] and beside it the new instance keeping `NEW`, syncing every `interval`.
fn old_and_new(test: &str, interval: &str) -> (Netns, Daemon, Daemon) {
    let (ns, old) = with_old(test);
    let new = daemon(&ns, NEW, interval);
    old.expect_within(Duration::from_secs(10), || {
        complete(&ns, OLD) && complete(&ns, NEW)
    });
    (ns, old, new)
}

/// The uninstall job for the old IP: one run with `--cleanup`.
const CLEANUP_OLD: [&str; 6] = [
    "--ip-address",
    OLD,
    "--setup-iptables",
    "--iptables-backend=nft",
    "--daemon=false",
    "--cleanup",
];

/// Whether `ip`'s address is on the node exactly once and its five rules each exactly once,
/// from one dump of every table.
fn complete(ns: &Netns, ip: &str) -> bool {
    complete_in(ns, &ns.sh("iptables-nft-save", &[]), ip)
}

fn complete_in(ns: &Netns, saved: &str, ip: &str) -> bool {
    ns.addresses_of(ip).len() == 1 && rule_copies(saved, ip) == [1; 5]
}

/// How many times each of `ip`'s five rules is in the dump `saved`.
fn rule_copies(saved: &str, ip: &str) -> Vec<usize> {
    support::expected_rules(&format!("{ip}/32"), 443)
        .iter()
        .map(|(_, line)| saved.lines().filter(|saved| saved.trim() == line).count())
        .collect()
}

/// Whether nothing of `ip` is left: no address, no rule.
fn gone(ns: &Netns, ip: &str) -> bool {
    ns.addresses_of(ip).is_empty()
        && ns
            .rules_with("iptables-nft-save", &format!("{ip}/32"))
            .is_empty()
}

#[test]
#[ignore = "needs root: runs in network namespaces (make test runs it)"]
fn two_instances_with_different_ips_keep_both_complete() {
    let (ns, old, new) = old_and_new("coexist", "200ms");
    // Every sync of each would remove the other's state as stale: 25 syncs each.
    let started = Instant::now();
    let mut samples = 0;
    while started.elapsed() < Duration::from_secs(5) {
        let saved = ns.sh("iptables-nft-save", &[]);
        for ip in [OLD, NEW] {
            assert!(
                complete_in(&ns, &saved, ip),
                "{ip} incomplete after {:?}: {:?} {:?}\n{saved}\nold:\n{}\nnew:\n{}",
                started.elapsed(),
                ns.addresses_of(ip),
                rule_copies(&saved, ip),
                old.log(),
                new.log()
            );
        }
        samples += 1;
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(samples >= 10, "only {samples} samples");
    for log in [old.log(), new.log()] {
        assert!(!log.contains("removed an address"), "{log}");
        assert!(!log.contains("no longer wanted"), "{log}");
        assert!(!log.contains("restored"), "{log}");
        assert!(
            log.contains("another running instance keeps this IP"),
            "{log}"
        );
    }
}

#[test]
#[ignore = "needs root: runs in network namespaces (make test runs it)"]
fn a_cleanup_job_for_the_old_ip_leaves_the_new_instance_alone() {
    // The new instance syncs rarely: whatever the job removed of its state would stay missing.
    let (ns, mut old, new) = old_and_new("cleanupjob", "1h");
    // The old DaemonSet is deleted, its state left behind; then the uninstall job runs.
    old.stop();
    let log = ns.sidecar_ok(&CLEANUP_OLD);
    assert!(gone(&ns, OLD), "{log}");
    assert!(
        complete(&ns, NEW),
        "the job removed the new instance's state:\n{log}"
    );
    // And the new instance never had to repair anything.
    std::thread::sleep(Duration::from_millis(300));
    assert!(complete(&ns, NEW));
    let new_log = new.log();
    assert!(!new_log.contains("restored"), "{new_log}");
}

#[test]
#[ignore = "needs root: runs in network namespaces (make test runs it)"]
fn the_new_instance_removes_the_old_ips_state_once_the_old_one_stops() {
    // The new instance syncs every 3 s: it finds the old IP unclaimed at its next sync, and the
    // sync at the end of the grace, not a later periodic one, removes the old IP's state (the
    // grace, 10 s, is no multiple of the interval: no periodic sync falls on its end).
    let (ns, mut old, new) = old_and_new("migrate", "3s");
    std::thread::sleep(Duration::from_secs(1));
    assert!(complete(&ns, OLD), "{}", new.log());
    // The old instance goes (no --cleanup): its claim goes with it, so its state is stale once
    // the grace has passed.
    old.stop();
    let stopped = Instant::now();
    new.expect_within(GRACE + Duration::from_secs(10), || gone(&ns, OLD));
    let took = stopped.elapsed();
    assert!(
        took >= GRACE && took < GRACE + Duration::from_secs(5),
        "removed after {took:?}\n{}",
        new.log()
    );
    assert!(complete(&ns, NEW));
    for line in [
        "no running instance claims this IP any more",
        "the grace of an unclaimed IP ended",
        "removed an address this sidecar added earlier",
        "removed iptables rule no longer wanted",
    ] {
        new.expect_within(Duration::from_secs(5), || new.log().contains(line));
    }
}

#[test]
#[ignore = "needs root: runs in network namespaces (make test runs it)"]
fn an_instance_with_the_same_ip_never_tears_down_what_a_live_one_keeps() {
    let (ns, mut first) = with_old("sameip");
    // A second instance with the same IP cannot claim it: its cleanup leaves it and says so.
    let second = ns.sidecar_once(&CLEANUP_OLD);
    let log = support::stderr(&second);
    assert_eq!(second.status.code(), Some(1), "{log}");
    assert!(
        log.contains("10.96.0.2 is kept by another running instance in this network namespace"),
        "{log}"
    );
    assert!(complete(&ns, OLD), "{log}");
    // Once the first is gone, the claim is free: the same job removes everything.
    first.stop();
    let again = ns.sidecar_ok(&CLEANUP_OLD);
    assert!(gone(&ns, OLD), "{again}");
}

#[test]
#[ignore = "needs root: runs in network namespaces (make test runs it)"]
fn a_second_instance_with_the_same_ip_takes_the_claim_over() {
    let (ns, mut first) = with_old("takeover");
    let second = daemon(&ns, OLD, "200ms");
    second.expect_within(Duration::from_secs(10), || {
        second.log().contains("already keeps this IP")
    });
    first.stop();
    second.expect_within(Duration::from_secs(10), || {
        second.log().contains("claimed the IP: the other instance")
    });
    // Now a third instance with another IP leaves it alone.
    let third = daemon(&ns, NEW, "200ms");
    third.expect_within(Duration::from_secs(10), || complete(&ns, NEW));
    let waited = wait_for(Duration::from_secs(1), || !complete(&ns, OLD));
    assert!(waited.is_none(), "{}", third.log());
}

/// Whether `ip`'s address is on the node once and its native table holds the three rules.
fn complete_native(ns: &Netns, ip: &str) -> bool {
    let output = ns
        .command("nft")
        .args(["list", "table", "inet", &format!("apiserver-proxy-{ip}")])
        .output()
        .expect("nft");
    let listed = String::from_utf8_lossy(&output.stdout);
    let rules = listed
        .lines()
        .filter(|line| line.contains("notrack"))
        .count();
    ns.addresses_of(ip).len() == 1 && rules == 3
}

/// A live instance for `OLD` syncing every second, and a pod for `NEW` starting beside it: its
/// one-shot init container sets everything up and ends, its daemon starts a few seconds later.
/// Nobody claims `NEW` in between, yet its state stays, through several of the old instance's
/// syncs and for good once the daemon runs.
fn a_pod_between_its_init_container_and_its_daemon(
    test: &str,
    firewall: &[&str],
    complete: fn(&Netns, &str) -> bool,
) {
    let ns = Netns::new(test);
    ns.sh("ip", &["link", "set", "lo", "up"]);
    let with = |ip: &str, more: &[&str]| -> Vec<String> {
        ["--ip-address", ip]
            .iter()
            .chain(firewall)
            .chain(more)
            .map(|arg| arg.to_string())
            .collect()
    };
    fn args(list: &[String]) -> Vec<&str> {
        list.iter().map(String::as_str).collect()
    }
    let old_args = with(OLD, &["--sync-interval=1s"]);
    let old = ns.spawn_sidecar(&args(&old_args));
    old.expect_within(Duration::from_secs(10), || complete(&ns, OLD));

    let init = ns.sidecar_ok(&args(&with(NEW, &["--daemon=false"])));
    let ended = Instant::now();
    assert!(complete(&ns, NEW), "{init}");
    let hold = |until: Instant| {
        while Instant::now() < until {
            assert!(
                complete(&ns, NEW) && complete(&ns, OLD),
                "{:?} after the init container: NEW {:?}, OLD {:?}\nold:\n{}",
                ended.elapsed(),
                ns.addresses_of(NEW),
                ns.addresses_of(OLD),
                old.log()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    };
    // Nobody claims NEW now: the old instance, syncing every second, sees it so and leaves it.
    hold(ended + Duration::from_secs(4));
    old.expect_within(Duration::from_secs(1), || {
        old.log().contains("no running instance claims this IP")
    });
    // The pod's daemon starts: NEW is claimed again, and stays in place for good (checked
    // until well past the grace that began when the init container ended).
    let daemon = ns.spawn_sidecar(&args(&with(NEW, &["--sync-interval=1s"])));
    hold(ended + GRACE + Duration::from_secs(4));
    let log = old.log();
    assert!(!log.contains("stale now"), "{log}");
    assert!(!log.contains("removed"), "{log}");
    let log = daemon.log();
    assert!(!log.contains("restored"), "{log}");
}

#[test]
#[ignore = "needs root: runs in network namespaces (make test runs it)"]
fn a_pods_ip_between_its_init_container_and_its_daemon_is_left_alone() {
    a_pod_between_its_init_container_and_its_daemon(
        "initgap",
        &["--setup-iptables", "--iptables-backend=nft"],
        complete,
    );
}

#[test]
#[ignore = "needs root: runs in network namespaces (make test runs it)"]
fn a_pods_native_table_between_its_init_container_and_its_daemon_is_left_alone() {
    a_pod_between_its_init_container_and_its_daemon(
        "initgapnft",
        &["--setup-iptables", "--firewall=nftables"],
        complete_native,
    );
}

#[test]
#[ignore = "needs root: runs in network namespaces (make test runs it)"]
fn the_new_native_instance_removes_the_old_ips_table_once_the_old_one_stops() {
    let ns = Netns::new("migratenft");
    ns.sh("ip", &["link", "set", "lo", "up"]);
    let native = |ip| {
        ns.spawn_sidecar(&[
            "--ip-address",
            ip,
            "--setup-iptables",
            "--firewall=nftables",
            "--sync-interval=3s",
        ])
    };
    let mut old = native(OLD);
    old.expect_within(Duration::from_secs(10), || complete_native(&ns, OLD));
    let new = native(NEW);
    new.expect_within(Duration::from_secs(10), || {
        complete_native(&ns, NEW) && complete_native(&ns, OLD)
    });
    // Nothing changes in the ruleset when the old instance stops: the new one finds the old
    // IP unclaimed all the same, and deletes its table when the grace ends.
    old.stop();
    let stopped = Instant::now();
    let table = format!("table inet apiserver-proxy-{OLD}");
    new.expect_within(GRACE + Duration::from_secs(10), || {
        !ns.sh("nft", &["list", "tables"]).contains(&table) && ns.addresses_of(OLD).is_empty()
    });
    let took = stopped.elapsed();
    assert!(
        took >= GRACE && took < GRACE + Duration::from_secs(5),
        "removed after {took:?}\n{}",
        new.log()
    );
    assert!(complete_native(&ns, NEW), "{}", new.log());
}
