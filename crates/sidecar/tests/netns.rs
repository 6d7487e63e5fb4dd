// SPDX-FileCopyrightText: 2026 apiserver-proxy contributors
// SPDX-License-Identifier: Apache-2.0

//! The sidecar against the real kernel, each test in a network namespace of its own (as root).

use test_support::netns as support;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use support::{Netns, sidecar_binary, stderr, wait_for};

const IP: &str = "10.96.0.2";
const HOST: &str = "10.96.0.2/32";
const ONCE: [u8; 5] = [1, 1, 1, 1, 1];

/// Starts the sidecar (nft backend among `args`) and waits until the five rules are in place.
fn start_with_rules(ns: &Netns, args: &[&str]) -> support::Daemon {
    let daemon = ns.spawn_sidecar(args);
    daemon.expect_within(Duration::from_secs(5), || all_rules_in_place(ns));
    daemon
}

/// Whether the five rules are each in place once (nft backend).
fn all_rules_in_place(ns: &Netns) -> bool {
    ns.rule_counts("iptables-nft-save", HOST, 443) == ones()
}

fn ones() -> Vec<usize> {
    ONCE.iter().map(|n| usize::from(*n)).collect()
}

/// The address on `lo` as `ip -o addr show` shows it.
const ON_LO: [&str; 1] = ["inet 10.96.0.2/32 scope global lo"];

/// `--ip-address IP` with the rules through the nft backend, then `extra`.
fn nft<'a>(extra: &[&'a str]) -> Vec<&'a str> {
    let mut args = vec![
        "--ip-address",
        IP,
        "--setup-iptables",
        "--iptables-backend=nft",
    ];
    args.extend_from_slice(extra);
    args
}

#[test]
#[ignore = "needs root: runs in network namespaces (make test runs it)"]
fn adds_the_address_with_full_prefix_and_global_scope_and_is_idempotent() {
    let ns = Netns::new("addr");
    let first = ns.sidecar_ok(&["--ip-address", IP, "--daemon=false"]);
    assert_eq!(ns.addresses_of(IP), ON_LO);
    assert!(first.contains("added address"));

    let second = ns.sidecar_ok(&["--ip-address", IP, "--daemon=false"]);
    assert_eq!(ns.addresses_of(IP), ON_LO);
    assert!(
        !second.contains("added"),
        "second run changed something: {second}"
    );
}

#[test]
#[ignore = "needs root: runs in network namespaces (make test runs it)"]
fn replaces_a_host_scoped_copy_with_a_global_one() {
    let ns = Netns::new("scope");
    ns.sh(
        "ip",
        &["addr", "add", "10.96.0.2/32", "dev", "lo", "scope", "host"],
    );
    ns.sidecar_ok(&["--ip-address", IP, "--daemon=false"]);
    assert_eq!(ns.addresses_of(IP), ON_LO);
}

#[test]
#[ignore = "needs root: runs in network namespaces (make test runs it)"]
fn ipv6_address_and_ip6tables_rules() {
    let ns = Netns::new("ipv6");
    ns.sidecar_ok(&[
        "--ip-address=fd00:10::2",
        "--setup-iptables",
        "--iptables-backend=nft",
        "--daemon=false",
    ]);
    assert_eq!(
        ns.addresses_of("fd00:10::2"),
        ["inet6 fd00:10::2/128 scope global lo"]
    );
    assert_eq!(
        ns.rule_counts("ip6tables-nft-save", "fd00:10::2/128", 443),
        ones()
    );
    assert!(ns.rules_with("iptables-nft-save", "fd00:10::2").is_empty());
}

#[test]
#[ignore = "needs root: runs in network namespaces (make test runs it)"]
fn ipv6_address_is_usable_at_once_without_duplicate_address_detection() {
    let ns = Netns::new("nodad");
    // A link without carrier: duplicate address detection would never finish there.
    ns.veth("proxy0", "proxy1");
    ns.sidecar_ok(&[
        "--ip-address=fd00:10::2",
        "--interface=proxy0",
        "--manage-interface",
        "--daemon=false",
    ]);
    let shown = ns.sh("ip", &["-6", "addr", "show", "dev", "proxy0"]);
    let line = shown
        .lines()
        .find(|line| line.contains("fd00:10::2/128"))
        .unwrap_or_else(|| panic!("address missing: {shown}"));
    assert!(line.contains("scope global"), "{line}");
    assert!(!line.contains("tentative"), "{line}");
    assert!(line.contains("nodad"), "{line}");
}

#[test]
#[ignore = "needs root: runs in network namespaces (make test runs it)"]
fn rules_exactly_once_after_restarts_on_nft() {
    let ns = Netns::new("nft");
    for _ in 0..3 {
        ns.sidecar_ok(&nft(&["--port=6443", "--daemon=false"]));
    }
    assert_eq!(ns.rule_counts("iptables-nft-save", HOST, 6443), ones());
    assert!(ns.rules_with("iptables-legacy-save", IP).is_empty());
}

#[test]
#[ignore = "needs root: runs in network namespaces (make test runs it)"]
fn rules_exactly_once_on_legacy_and_auto_follows_the_host() {
    let ns = Netns::new("legacy");
    // A host whose rules live in the legacy backend.
    ns.sh(
        "iptables-legacy",
        &[
            "-t",
            "filter",
            "-A",
            "INPUT",
            "-s",
            "192.0.2.1/32",
            "-j",
            "DROP",
        ],
    );
    for _ in 0..2 {
        let said = ns.sidecar_ok(&["--ip-address", IP, "--setup-iptables", "--daemon=false"]);
        assert!(said.contains("backend=\"legacy\""), "{said}");
    }
    assert_eq!(ns.rule_counts("iptables-legacy-save", HOST, 443), ones());
    assert!(ns.rules_with("iptables-nft-save", IP).is_empty());
}

#[test]
#[ignore = "needs root: runs in network namespaces (make test runs it)"]
fn extra_copies_of_a_rule_are_removed() {
    let ns = Netns::new("dups");
    for _ in 0..3 {
        ns.sh(
            "iptables-nft",
            &[
                "-t", "raw", "-A", "OUTPUT", "-s", HOST, "-p", "tcp", "-m", "tcp", "--sport",
                "443", "-j", "NOTRACK",
            ],
        );
    }
    let said = ns.sidecar_ok(&nft(&["--daemon=false"]));
    assert_eq!(ns.rule_counts("iptables-nft-save", HOST, 443), ones());
    assert_eq!(said.matches("removed duplicate iptables rule").count(), 2);
}

#[test]
#[ignore = "needs root: runs in network namespaces (make test runs it)"]
fn deleted_address_is_restored_by_the_event_path_within_100ms() {
    let ns = Netns::new("event");
    // A long interval: only a kernel event can explain a fast restore.
    let mut daemon = ns.spawn_sidecar(&["--ip-address", IP, "--sync-interval=1h"]);
    daemon.expect_within(Duration::from_secs(5), || ns.addresses_of(IP).len() == 1);
    for _ in 0..5 {
        ns.sh("ip", &["addr", "del", HOST, "dev", "lo"]);
        let took = wait_for(Duration::from_secs(2), || ns.addresses_of(IP).len() == 1);
        let took = took.unwrap_or_else(|| panic!("address not restored: {}", daemon.log()));
        assert!(took < Duration::from_millis(100), "restored after {took:?}");
    }
    assert_eq!(ns.addresses_of(IP), ON_LO);
    daemon.assert_logged("restored address", 5);
    assert!(daemon.is_running());
}

#[test]
#[ignore = "needs root: runs in network namespaces (make test runs it)"]
fn deleted_address_is_restored_by_the_periodic_path() {
    let ns = Netns::new("periodic");
    let mut daemon = ns.spawn_sidecar(&[
        "--ip-address",
        IP,
        "--sync-interval=300ms",
        "--watch-kernel-events=false",
    ]);
    daemon.expect_within(Duration::from_secs(5), || ns.addresses_of(IP).len() == 1);
    ns.sh("ip", &["addr", "del", HOST, "dev", "lo"]);
    daemon.expect_within(Duration::from_secs(3), || ns.addresses_of(IP).len() == 1);
    assert!(daemon.log().contains("periodic sync"));
    assert!(daemon.log().contains("restored address"));
    assert!(daemon.is_running());
}

#[test]
#[ignore = "needs root: runs in network namespaces (make test runs it)"]
fn flushed_rules_are_restored_on_the_next_tick() {
    let ns = Netns::new("flush");
    let mut daemon = start_with_rules(&ns, &nft(&["--sync-interval=300ms"]));
    ns.sh("iptables-nft", &["-t", "raw", "-F"]);
    ns.sh("iptables-nft", &["-t", "filter", "-F", "INPUT"]);
    daemon.expect_within(Duration::from_secs(3), || all_rules_in_place(&ns));
    daemon.assert_logged("restored iptables rule", 4);
    assert!(daemon.is_running());
}

#[test]
#[ignore = "needs root: runs in network namespaces (make test runs it)"]
fn two_instances_at_once_keep_each_rule_once() {
    let ns = Netns::new("two");
    let args = [
        "--ip-address",
        IP,
        "--setup-iptables",
        "--iptables-backend=legacy",
        "--sync-interval=100ms",
    ];
    let mut first = ns.spawn_sidecar(&args);
    let mut second = ns.spawn_sidecar(&args);
    for _ in 0..5 {
        std::thread::sleep(Duration::from_millis(250));
        ns.sh("iptables-legacy", &["-t", "raw", "-F"]);
    }
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(
        ns.rule_counts("iptables-legacy-save", HOST, 443),
        ones(),
        "{}\n{}",
        first.log(),
        second.log()
    );
    assert_eq!(ns.addresses_of(IP).len(), 1);
    assert!(first.is_running() && second.is_running());
}

#[test]
#[ignore = "needs root: runs in network namespaces (make test runs it)"]
fn cleanup_on_sigterm_removes_every_rule_and_the_address() {
    let ns = Netns::new("cleanup");
    let mut daemon = start_with_rules(&ns, &nft(&["--cleanup"]));
    // A copy the sidecar did not make is removed too: every copy goes.
    ns.sh(
        "iptables-nft",
        &[
            "-t", "filter", "-A", "INPUT", "-d", HOST, "-p", "tcp", "-m", "tcp", "--dport", "443",
            "-j", "ACCEPT",
        ],
    );
    daemon.stop();
    assert!(ns.addresses_of(IP).is_empty());
    assert!(ns.rules_with("iptables-nft-save", IP).is_empty());
    assert!(ns.has_link("lo"));
    assert!(daemon.log().contains("cleaned up"));
}

/// A daemon with its rules in place, then a sync stuck on the xtables lock: another program
/// holds the lock for `hold` seconds while a rule goes missing. Returns the daemon and the holder.
fn stuck_on_the_lock(
    ns: &Netns,
    extra: &[&str],
    hold: &str,
) -> (support::Daemon, std::process::Child) {
    let mut args = nft(&["--sync-interval=100ms", "--xtables-lock-timeout=30s"]);
    args.extend_from_slice(extra);
    let daemon = start_with_rules(ns, &args);
    let holder = support::hold_lock(&ns.lock_path(), hold);
    ns.sh("iptables-nft", &["-t", "raw", "-F"]);
    std::thread::sleep(Duration::from_millis(300));
    (daemon, holder)
}

#[test]
#[ignore = "needs root: runs in network namespaces (make test runs it)"]
fn sigterm_during_a_sync_stuck_on_the_lock_still_cleans_up_everything() {
    let ns = Netns::new("underfire");
    let (mut daemon, mut holder) = stuck_on_the_lock(&ns, &["--cleanup"], "1.5");
    let (code, took) = daemon.terminate();
    let _ = holder.wait();
    assert_eq!(code, Some(0), "{}", daemon.log());
    // The cleanup itself needs the lock, so it waits for the holder, not for the stuck sync.
    assert!(
        took < Duration::from_secs(5),
        "exit took {took:?}: the stuck sync was not abandoned"
    );
    assert!(ns.addresses_of(IP).is_empty());
    assert!(
        ns.rules_with("iptables-nft-save", IP).is_empty(),
        "{}",
        daemon.log()
    );
}

#[test]
#[ignore = "needs root: runs in network namespaces (make test runs it)"]
fn sigterm_abandons_a_sync_stuck_on_the_lock() {
    let ns = Netns::new("stuckexit");
    let (mut daemon, mut holder) = stuck_on_the_lock(&ns, &[], "10");
    let (code, took) = daemon.terminate();
    let _ = holder.kill();
    let _ = holder.wait();
    assert_eq!(code, Some(0), "{}", daemon.log());
    assert!(
        took < Duration::from_secs(1),
        "exit took {took:?} while a sync waited for the lock"
    );
}

#[test]
#[ignore = "needs root: runs in network namespaces (make test runs it)"]
fn without_cleanup_everything_stays() {
    let ns = Netns::new("stay");
    let mut daemon = start_with_rules(&ns, &nft(&[]));
    daemon.stop();
    assert_eq!(ns.addresses_of(IP), ON_LO);
    assert!(all_rules_in_place(&ns));
}

#[test]
#[ignore = "needs root: runs in network namespaces (make test runs it)"]
fn a_copy_put_on_another_interface_is_removed_at_once() {
    let ns = Netns::new("moveevent");
    ns.veth("old0", "old1");
    let daemon = ns.spawn_sidecar(&["--ip-address", IP, "--sync-interval=1h"]);
    daemon.expect_within(Duration::from_secs(5), || ns.addresses_of(IP).len() == 1);
    ns.sh("ip", &["addr", "add", HOST, "dev", "old0"]);
    let only_on_lo = || ns.addresses_of(IP) == ON_LO;
    daemon.expect_within(Duration::from_secs(2), only_on_lo);
}

#[test]
#[ignore = "needs root: runs in network namespaces (make test runs it)"]
fn duplicate_on_another_interface_is_removed() {
    let ns = Netns::new("move");
    ns.veth("old0", "old1");
    ns.sh("ip", &["addr", "add", HOST, "dev", "old0"]);
    let said = ns.sidecar_ok(&["--ip-address", IP, "--daemon=false"]);
    assert_eq!(ns.addresses_of(IP), ON_LO);
    assert!(said.contains("removed address from another interface"));
    assert!(ns.has_link("old0"), "the other link itself must stay");
}

#[test]
#[ignore = "needs root: runs in network namespaces (make test runs it)"]
fn manage_interface_brings_a_link_up_and_cleanup_never_deletes_a_non_dummy_link() {
    let ns = Netns::new("manage");
    ns.veth("proxy0", "proxy1");
    let mut daemon = ns.spawn_sidecar(&[
        "--ip-address",
        IP,
        "--interface=proxy0",
        "--manage-interface",
        "--cleanup",
    ]);
    let up = || {
        ns.sh("ip", &["-o", "link", "show", "dev", "proxy0"])
            .contains(",UP")
    };
    assert!(
        wait_for(Duration::from_secs(5), || up()
            && ns.addresses_of(IP).len() == 1)
        .is_some(),
        "{}",
        daemon.log()
    );
    assert_eq!(
        ns.addresses_of(IP),
        ["inet 10.96.0.2/32 scope global proxy0"]
    );
    // Taken down behind its back: brought up again at once.
    ns.sh("ip", &["link", "set", "proxy0", "down"]);
    daemon.expect_within(Duration::from_secs(2), up);
    daemon.stop();
    assert!(ns.addresses_of(IP).is_empty());
    assert!(
        ns.has_link("proxy0"),
        "a veth is never deleted: {}",
        daemon.log()
    );
}

#[test]
#[ignore = "needs root: runs in network namespaces (make test runs it)"]
fn unmanaged_link_that_is_down_is_left_down() {
    let ns = Netns::new("down");
    ns.veth("proxy0", "proxy1");
    // The address is kept there, as the Go original did, but the run is not a success:
    // nothing reaches the proxy through a link that is down.
    let output = ns.sidecar_once(&["--ip-address", IP, "--interface=proxy0", "--daemon=false"]);
    let err = stderr(&output);
    assert_eq!(output.status.code(), Some(1), "{err}");
    assert!(
        err.contains("not everything is in place: interface proxy0 is down: the address is on it but unreachable"),
        "{err}"
    );
    assert_eq!(ns.addresses_of(IP).len(), 1, "{err}");
    assert!(
        !ns.sh("ip", &["-o", "link", "show", "dev", "proxy0"])
            .contains(",UP")
    );
}

#[test]
#[ignore = "needs root: runs in network namespaces (make test runs it)"]
fn a_link_left_down_is_not_ready_until_it_comes_up() {
    let ns = Netns::new("downready");
    ns.sh("ip", &["link", "set", "lo", "up"]);
    ns.veth("proxy0", "proxy1");
    let daemon = ns.spawn_sidecar(&[
        "--ip-address",
        IP,
        "--interface=proxy0",
        "--sync-interval=1h",
        "--metrics-bind-address=127.0.0.1:16912",
    ]);
    let readyz = || {
        ns.command("curl")
            .args(["-sS", "--max-time", "2", "http://127.0.0.1:16912/readyz"])
            .output()
            .map(|output| String::from_utf8_lossy(&output.stdout).into_owned())
            .unwrap_or_default()
    };
    daemon.expect_within(Duration::from_secs(5), || {
        readyz().contains("- address: interface proxy0 is down")
    });
    assert!(
        ns.http_get("http://127.0.0.1:16912/metrics")
            .is_some_and(|body| body.contains("apiserver_proxy_sidecar_ready{part=\"address\"} 0")),
    );
    // Brought up by someone else: ready at once (the link's notification), not at the next
    // sync an hour away.
    ns.sh("ip", &["link", "set", "proxy1", "up"]);
    ns.sh("ip", &["link", "set", "proxy0", "up"]);
    daemon.expect_within(Duration::from_secs(5), || readyz() == "ready\n");
    assert_eq!(ns.addresses_of(IP).len(), 1);
}

/// A missing interface is created as a dummy link where the kernel has dummy support
/// (CONFIG_DUMMY). Where it has not, the sidecar must say so clearly and exit 1.
#[test]
#[ignore = "needs root: runs in network namespaces (make test runs it)"]
fn missing_interface_becomes_a_dummy_link_or_a_clear_error() {
    let ns = Netns::new("dummy");
    let kernel_has_dummy = ns.try_sh("ip", &["link", "add", "probe0", "type", "dummy"]);
    if kernel_has_dummy {
        ns.sh("ip", &["link", "del", "probe0"]);
        let mut daemon = ns.spawn_sidecar(&[
            "--ip-address",
            IP,
            "--interface=apiserver-proxy",
            "--cleanup",
        ]);
        daemon.expect_within(Duration::from_secs(5), || ns.addresses_of(IP).len() == 1);
        let link = ns.sh(
            "ip",
            &["-d", "-o", "link", "show", "dev", "apiserver-proxy"],
        );
        assert!(link.contains("dummy") && link.contains(",UP"), "{link}");
        assert_eq!(
            ns.addresses_of(IP),
            ["inet 10.96.0.2/32 scope global apiserver-proxy"]
        );
        daemon.stop();
        assert!(
            !ns.has_link("apiserver-proxy"),
            "created dummy link must be deleted on cleanup"
        );
    } else {
        let output = ns.sidecar_once(&[
            "--ip-address",
            IP,
            "--interface=apiserver-proxy",
            "--daemon=false",
        ]);
        assert_eq!(output.status.code(), Some(1));
        let err = stderr(&output);
        assert!(
            err.contains("create dummy interface apiserver-proxy"),
            "{err}"
        );
        assert!(err.contains("CONFIG_DUMMY"), "{err}");
        assert!(!ns.has_link("apiserver-proxy"));
    }
}

#[test]
#[ignore = "needs root: runs in network namespaces (make test runs it)"]
fn one_shot_exit_codes() {
    let ns = Netns::new("exit");
    let cases: &[(&[&str], &str)] = &[
        (
            &["--ip-address=10.96.0.300", "--daemon=false"],
            "--ip-address=\"10.96.0.300\" is not an IPv4 or IPv6 address",
        ),
        (&["--daemon=false"], "--ip-address is required"),
        (
            &[
                "--ip-address",
                IP,
                "--interface=interface-name-16",
                "--daemon=false",
            ],
            "at most 15",
        ),
        (
            &["--ip-address", IP, "--port=70000", "--daemon=false"],
            "--port=\"70000\"",
        ),
        (
            &["--ip-address", IP, "--sync-interval=0s"],
            "must be greater than zero",
        ),
        (&["--ip-address", IP, "--daemon=perhaps"], "invalid boolean"),
        (&["--ip-address", IP, "--bogus"], "--bogus"),
    ];
    // Usage errors: exit code 2 with the usage hint, as pflag.
    for (args, needle) in cases {
        ns.expect_usage_error(args, needle);
    }
    assert!(
        ns.addresses_of(IP).is_empty(),
        "a rejected run must change nothing"
    );
}

#[test]
#[ignore = "needs root: runs in network namespaces (make test runs it)"]
fn one_shot_without_cap_net_admin_fails_clearly() {
    let ns = Netns::new("nocap");
    let output = ns
        .sidecar_without_net_admin()
        .args(nft(&["--daemon=false"]))
        .arg(format!("--xtables-lock={}", ns.lock_path().display()))
        .output()
        .expect("run setpriv");
    assert_eq!(output.status.code(), Some(1), "{}", stderr(&output));
    let err = stderr(&output);
    assert!(err.contains("CAP_NET_ADMIN"), "{err}");
    assert!(err.contains("not everything is in place"), "{err}");
    assert!(ns.addresses_of(IP).is_empty());
}

#[test]
#[ignore = "needs root: runs in network namespaces (make test runs it)"]
fn missing_iptables_binaries_are_named() {
    let ns = Netns::new("nobin");
    let output = ns
        .sidecar(&[
            "--ip-address",
            IP,
            "--setup-iptables",
            "--iptables-backend=legacy",
            "--daemon=false",
        ])
        .env("PATH", ns.dir())
        .output()
        .expect("run");
    assert_eq!(output.status.code(), Some(1), "{}", stderr(&output));
    assert!(
        stderr(&output).contains("iptables-legacy-save not found: install iptables"),
        "{}",
        stderr(&output)
    );
    let auto = ns
        .sidecar(&["--ip-address", IP, "--setup-iptables", "--daemon=false"])
        .env("PATH", ns.dir())
        .output()
        .expect("run");
    assert_eq!(auto.status.code(), Some(1), "{}", stderr(&auto));
    assert!(
        stderr(&auto).contains("-save not found: install iptables"),
        "{}",
        stderr(&auto)
    );
}

#[test]
#[ignore = "needs root: runs in network namespaces (make test runs it)"]
fn daemon_keeps_retrying_until_iptables_appears() {
    let ns = Netns::new("retrybin");
    ns.sh("ip", &["link", "set", "lo", "up"]);
    let bin = ns.dir().join("bin");
    std::fs::create_dir(&bin).expect("bin dir");
    let mut command = ns.sidecar(&[
        "--ip-address",
        IP,
        "--setup-iptables",
        "--sync-interval=500ms",
        "--metrics-bind-address=127.0.0.1:16913",
    ]);
    command.env("PATH", &bin);
    let mut daemon = ns.spawn_logged(command);
    let log_path = daemon.log.clone();
    let log = || std::fs::read_to_string(&log_path).unwrap_or_default();
    let failed_twice = || log().matches("sync failed").count() >= 2;
    assert!(
        wait_for(Duration::from_secs(5), failed_twice).is_some(),
        "{}",
        log()
    );
    assert!(
        log().contains("-save not found: install iptables"),
        "{}",
        log()
    );
    assert!(daemon.is_running(), "the daemon died: {}", log());
    assert_eq!(
        ns.addresses_of(IP).len(),
        1,
        "the address does not wait for iptables"
    );
    // Not ready, and /readyz says what is missing; alive all the same.
    let readyz = || {
        ns.http_get("http://127.0.0.1:16913/readyz")
            .unwrap_or_default()
    };
    let not_ready = readyz();
    assert!(
        not_ready.starts_with("not ready:\n- iptables rules: ")
            && not_ready.contains("-save not found")
            && !not_ready.contains("- address"),
        "{not_ready}"
    );
    assert!(
        ns.http_get("http://127.0.0.1:16913/healthz")
            .is_some_and(|body| body.starts_with("ok"))
    );
    // The binaries appear (e.g. a fixed image): the next retry picks a backend and writes.
    for tool in [
        "iptables-nft-save",
        "iptables-nft-restore",
        "iptables-legacy-save",
        "iptables-legacy-restore",
    ] {
        std::os::unix::fs::symlink(support::which(tool), bin.join(tool)).expect("symlink");
    }
    assert!(
        wait_for(Duration::from_secs(5), || all_rules_in_place(&ns)).is_some(),
        "{}",
        log()
    );
    assert!(
        wait_for(Duration::from_secs(5), || readyz() == "ready\n").is_some(),
        "{}",
        readyz()
    );
    assert!(daemon.is_running(), "the daemon died: {}", log());
}

#[test]
#[ignore = "needs root: runs in network namespaces (make test runs it)"]
fn daemon_without_cap_net_admin_keeps_retrying() {
    let ns = Netns::new("retrycap");
    let mut command = ns.sidecar_without_net_admin();
    command
        .args(nft(&["--sync-interval=300ms"]))
        .arg(format!("--xtables-lock={}", ns.lock_path().display()));
    let mut daemon = ns.spawn_logged(command);
    let log_path = daemon.log.clone();
    let log = || std::fs::read_to_string(&log_path).unwrap_or_default();
    let failed_thrice = || log().matches("sync failed").count() >= 3;
    assert!(
        wait_for(Duration::from_secs(5), failed_thrice).is_some(),
        "{}",
        log()
    );
    assert!(log().contains("CAP_NET_ADMIN"), "{}", log());
    assert!(daemon.is_running(), "the daemon died: {}", log());
    daemon.stop();
}

#[test]
#[ignore = "needs root: runs in network namespaces (make test runs it)"]
fn busy_xtables_lock_is_a_bounded_wait_and_a_clear_error() {
    let ns = Netns::new("lock");
    let lock = ns.lock_path();
    std::fs::write(&lock, "").expect("lock file");
    let mut holder = support::hold_lock(&lock, "5");
    let output = ns.sidecar_once(&nft(&["--daemon=false", "--xtables-lock-timeout=300ms"]));
    let _ = holder.kill();
    let _ = holder.wait();
    assert_eq!(output.status.code(), Some(1), "{}", stderr(&output));
    let err = stderr(&output);
    assert!(err.contains("is held by another program"), "{err}");
    // The address does not depend on the lock and is in place all the same.
    assert_eq!(ns.addresses_of(IP).len(), 1);
}

/// In steady state a tick reads the nf_tables generation only: no process, no change to any address or link.
#[test]
#[ignore = "needs root: runs in network namespaces (make test runs it)"]
fn steady_state_ticks_only_read() {
    let ns = Netns::new("steady");
    let mut daemon = start_with_rules(&ns, &nft(&["--sync-interval=100ms"]));
    let tick = "\"iptables sync\" why=\"periodic sync\"";
    // Past the first periodic checks, which may still verify the sidecar's own first write
    // (later on a loaded machine than a fixed pause allows for).
    daemon.expect_within(Duration::from_secs(10), || {
        daemon.log().matches(tick).count() >= 3
    });

    // Watch one second of steady state: every program it runs, every kernel change it makes.
    let trace = ns.dir().join("spawn.trace");
    // Process creations by any of its threads, seen from the sidecar's side: following the
    // children (strace -f) can leave a vfork child stopped when strace detaches.
    let threads = std::fs::read_dir(format!("/proc/{}/task", daemon.child.id()))
        .expect("the sidecar's threads")
        .filter_map(|task| Some(task.ok()?.file_name().to_string_lossy().into_owned()));
    let mut tracer = Command::new("strace")
        .args(["-qq", "-e", "trace=clone,clone3,fork,vfork", "-o"])
        .arg(&trace)
        .args(threads.flat_map(|thread| ["-p".to_string(), thread]))
        .spawn()
        .expect("strace (install the strace package)");
    let mut monitor = ns
        .command("ip")
        .args(["monitor", "address", "link"])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("ip monitor");
    let ticks_before = daemon.log().matches(tick).count();
    std::thread::sleep(Duration::from_millis(1000));
    let ticks = daemon.log().matches(tick).count() - ticks_before;
    let _ = monitor.kill();
    let monitored = monitor.wait_with_output().expect("ip monitor output");
    // SIGINT makes strace detach and leave the sidecar running.
    let _ = Command::new("kill")
        .args(["-INT", &tracer.id().to_string()])
        .status();
    let _ = tracer.wait();
    assert!(daemon.is_running(), "the sidecar must survive being traced");

    let traced = std::fs::read_to_string(&trace).expect("strace wrote its trace");
    let spawned = traced
        .lines()
        .filter(|line| !line.contains("CLONE_THREAD") && line.contains(") = "))
        .filter(|line| !line.trim_end().ends_with("= -1") && !line.contains("= -1 "))
        .count();
    assert!(ticks >= 5, "expected about 10 ticks, saw {ticks}");
    // The nf_tables generation is unchanged since the rules were found exact: no process.
    assert_eq!(spawned, 0, "{traced}");
    assert!(
        monitored.stdout.is_empty(),
        "steady state changed the kernel: {}",
        String::from_utf8_lossy(&monitored.stdout)
    );
}

#[test]
#[ignore = "needs root: runs in network namespaces (make test runs it)"]
fn metrics_and_health_endpoint() {
    let ns = Netns::new("metrics");
    let mut daemon = ns.spawn_sidecar(&nft(&[
        "--sync-interval=200ms",
        "--metrics-bind-address=127.0.0.1:16910",
    ]));
    let get = |path: &str| ns.http_get(&format!("http://127.0.0.1:16910{path}"));
    assert!(
        wait_for(Duration::from_secs(5), || get("/healthz")
            .is_some_and(|body| body == "ok\n"))
        .is_some(),
        "{}",
        daemon.log()
    );
    // /healthz answers from the start; the damage below must come after the first sync.
    assert!(
        wait_for(Duration::from_secs(5), || all_rules_in_place(&ns)
            && ns.addresses_of(IP).len() == 1)
        .is_some(),
        "{}",
        daemon.log()
    );
    ns.sh("iptables-nft", &["-t", "raw", "-F"]);
    ns.sh("ip", &["addr", "del", HOST, "dev", "lo"]);
    let repaired = || {
        get("/metrics").is_some_and(|body| {
            body.contains("apiserver_proxy_sidecar_repairs_total{kind=\"iptables_rule\"} 8")
                && body.contains("apiserver_proxy_sidecar_repairs_total{kind=\"address\"} 2")
        })
    };
    assert!(
        wait_for(Duration::from_secs(3), repaired).is_some(),
        "{:?}\n{}",
        get("/metrics"),
        daemon.log()
    );
    let body = get("/metrics").unwrap_or_default();
    assert!(
        body.contains(
            "# TYPE apiserver_proxy_sidecar_last_successful_sync_timestamp_seconds gauge"
        ),
        "{body}"
    );
    assert!(
        !body.contains("apiserver_proxy_sidecar_last_successful_sync_timestamp_seconds 0.0"),
        "{body}"
    );
    assert!(get("/nothing").is_some_and(|body| body.contains("not found")));
    assert!(daemon.is_running());
}

/// `[::]:PORT` serves IPv4 too, as in Go, even where the node sets `net.ipv6.bindv6only=1`.
#[test]
#[ignore = "needs root: runs in network namespaces (make test runs it)"]
fn metrics_on_the_ipv6_wildcard_serve_ipv4_too() {
    let ns = Netns::new("metrics-v6only");
    ns.sh("ip", &["link", "set", "lo", "up"]);
    ns.sh("sh", &["-c", "echo 1 > /proc/sys/net/ipv6/bindv6only"]);
    assert_eq!(ns.sh("cat", &["/proc/sys/net/ipv6/bindv6only"]).trim(), "1");
    let mut daemon = ns.spawn_sidecar(&["--ip-address", IP, "--metrics-bind-address=[::]:16912"]);
    let healthy = |url: &str| ns.http_get(url).is_some_and(|body| body == "ok\n");
    for url in [
        "http://127.0.0.1:16912/healthz",
        "http://[::1]:16912/healthz",
    ] {
        assert!(
            wait_for(Duration::from_secs(5), || healthy(url)).is_some(),
            "{url} does not answer\n{}",
            daemon.log()
        );
    }
    assert!(daemon.is_running());
}

/// Silent clients cannot hold the metrics endpoint, whether they never send a request or go
/// quiet after one: each connection gets 2 s for its request head, and when every slot is
/// taken the oldest connection without a head makes room, so a probe is answered at once.
#[test]
#[ignore = "needs root: runs in network namespaces (make test runs it)"]
fn metrics_endpoint_cuts_off_silent_clients() {
    let ns = Netns::new("metrics-idle");
    let mut daemon =
        ns.spawn_sidecar(&["--ip-address", IP, "--metrics-bind-address=127.0.0.1:16911"]);
    let healthy = || {
        ns.http_get("http://127.0.0.1:16911/healthz")
            .is_some_and(|body| body == "ok\n")
    };
    daemon.expect_within(Duration::from_secs(5), healthy);
    // Clients held open by a shell: first 10 that send one keep-alive request and then
    // nothing, then 20 that never send a request, more than the endpoint serves at once.
    let mut silent = ns
        .command("bash")
        .args([
            "-c",
            "for i in $(seq 30); do
                 exec {fd}<>/dev/tcp/127.0.0.1/16911 || exit 1
                 if [ $i -le 10 ]; then
                     printf 'GET /healthz HTTP/1.1\\r\\nHost: x\\r\\n\\r\\n' >&$fd
                 fi
             done
             echo connected; exec sleep 60",
        ])
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawn bash");
    let mut line = String::new();
    BufReader::new(silent.stdout.take().expect("stdout"))
        .read_line(&mut line)
        .expect("read from bash");
    assert_eq!(line, "connected\n");
    // The 10 requests are answered and their connections closed; the 20 silent clients are
    // all accepted (the oldest closed to make room when slots run out), none left waiting in
    // the listener's accept queue (its Recv-Q), and a probe is answered within a second.
    let queued = || {
        ns.sh("ss", &["-Hlnt", "( sport = :16911 )"])
            .split_whitespace()
            .nth(1)
            .map(str::to_owned)
    };
    let started = Instant::now();
    let probed = healthy();
    let probe_time = started.elapsed();
    let capped = wait_for(Duration::from_secs(2), || queued().as_deref() == Some("0"));

    let answered = wait_for(Duration::from_secs(15), healthy);
    // The server closed every silent connection: the clients' ends wait in CLOSE-WAIT.
    let closed_by_server = || {
        ns.sh("ss", &["-Htn", "state", "close-wait", "( dport = :16911 )"])
            .lines()
            .count()
    };
    let all_closed = wait_for(Duration::from_secs(15), || closed_by_server() == 30);
    let _ = silent.kill();
    let _ = silent.wait();
    assert!(capped.is_some(), "accept queue {:?}, not empty", queued());
    assert!(
        probed && probe_time < Duration::from_secs(1),
        "healthz took {probe_time:?} ({probed})\n{}",
        daemon.log()
    );
    assert!(answered.is_some(), "healthz starved\n{}", daemon.log());
    assert!(
        all_closed.is_some(),
        "{} of 30 idle connections closed by the server",
        closed_by_server()
    );
    assert!(daemon.is_running());
}

#[test]
#[ignore = "needs root: runs in network namespaces (make test runs it)"]
fn log_file_receives_the_logs() {
    let ns = Netns::new("logfile");
    let log = ns.dir().join("sidecar.log");
    let said = ns.sidecar_ok(&[
        "--ip-address",
        IP,
        "--daemon=false",
        "--logtostderr=false",
        &format!("--log_file={}", log.display()),
        "--v=2",
    ]);
    let written = std::fs::read_to_string(&log).expect("log file");
    assert!(written.contains("added address"), "{written}");
    assert!(!said.contains("added address"), "logs went to stderr too");
    let bad = ns.sidecar_once(&[
        "--ip-address",
        IP,
        "--daemon=false",
        "--logtostderr=false",
        "--log_file=/nonexistent/dir/x.log",
    ]);
    assert_eq!(bad.status.code(), Some(1));
    assert!(
        stderr(&bad).contains("cannot open log file /nonexistent/dir/x.log"),
        "{}",
        stderr(&bad)
    );
}

#[test]
#[ignore = "needs root: runs in network namespaces (make test runs it)"]
fn version_and_help() {
    let version = Command::new(sidecar_binary())
        .arg("--version")
        .output()
        .expect("run");
    assert!(version.status.success());
    assert!(String::from_utf8_lossy(&version.stdout).starts_with("apiserver-proxy-sidecar "));
    let help = Command::new(sidecar_binary())
        .arg("--help")
        .output()
        .expect("run");
    assert!(help.status.success());
    let help = String::from_utf8_lossy(&help.stdout);
    for flag in [
        "--ip-address",
        "--interface",
        "--port",
        "--setup-iptables",
        "--sync-interval",
        "--daemon",
        "--cleanup",
        "--manage-interface",
        "--iptables-backend",
        "--v",
        "--log_file",
        "--vmodule",
    ] {
        assert!(help.contains(flag), "--help lacks {flag}");
    }
    assert!(
        help.contains("[default: 1m0s]")
            && help.contains("[default: lo]")
            && help.contains("[default: 443]")
    );
}
