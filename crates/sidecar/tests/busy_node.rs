// SPDX-FileCopyrightText: 2026 apiserver-proxy contributors
// SPDX-License-Identifier: Apache-2.0

//! The sidecar on a node that is busy or hostile: notification bursts that overrun its socket,
//! another process fighting over the address, iptables binaries that hang, signals while
//! stuck. Each test in a network namespace of its own (as root), bounded in time.

use test_support::netns as support;

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use support::{Netns, path_with, wait_for};

const IP: &str = "10.96.0.2";

fn present(ns: &Netns) -> bool {
    !ns.addresses_of(IP).is_empty()
}

/// `ip -n NS ARGS...`, ignoring failures (the burst races its own deletions).
fn ip(ns: &Netns, args: &[&str]) {
    let _ = Command::new("ip")
        .args(["-n", &ns.name])
        .args(args)
        .output();
}

/// Resident memory of a process in KiB.
fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|value| value.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

/// A burst of notifications that overruns the sidecar's socket while its own request is in
/// flight: three bridges each get 4,000 addresses and are deleted with them in one go, while
/// the proxy address is deleted every 20 ms. After each burst the address must be back within
/// 5 s, and a single deletion after it repaired within 5 s.
#[test]
#[ignore = "needs root: runs in network namespaces (make test runs it)"]
fn notification_bursts_never_stop_the_daemon() {
    let ns = Netns::new("burst");
    ns.sh("ip", &["link", "set", "lo", "up"]);
    let batches: Vec<(PathBuf, PathBuf)> = (1..=3)
        .map(|bridge| {
            let fill = ns.dir().join(format!("fill{bridge}.batch"));
            let kick = ns.dir().join(format!("kick{bridge}.batch"));
            let lines: String = (0..4000)
                .map(|i| {
                    format!(
                        "addr add 1{}.{}.{}.{bridge}/32 dev rtbr{bridge}\n",
                        bridge - 1,
                        50 + i / 256,
                        i % 256
                    )
                })
                .collect();
            std::fs::write(&fill, lines).expect("batch file");
            std::fs::write(
                &kick,
                format!("addr del {IP}/32 dev lo\nlink del rtbr{bridge}\n"),
            )
            .expect("batch file");
            ns.sh(
                "ip",
                &["link", "add", &format!("rtbr{bridge}"), "type", "bridge"],
            );
            ns.sh("ip", &["link", "set", &format!("rtbr{bridge}"), "up"]);
            (fill, kick)
        })
        .collect();
    let mut daemon = ns.spawn_sidecar(&[
        "--ip-address",
        IP,
        "--sync-interval=2s",
        "--metrics-bind-address=127.0.0.1:16910",
    ]);
    daemon.expect_within(Duration::from_secs(5), || present(&ns));
    let mut rss_after_round = Vec::new();
    for round in 1..=3 {
        let end = Instant::now() + Duration::from_secs(6);
        std::thread::scope(|scope| {
            for (bridge, (fill, kick)) in batches.iter().enumerate() {
                let ns = &ns;
                scope.spawn(move || {
                    let name = format!("rtbr{}", bridge + 1);
                    while Instant::now() < end {
                        ip(ns, &["-batch", &fill.to_string_lossy()]);
                        ip(ns, &["-force", "-batch", &kick.to_string_lossy()]);
                        ip(ns, &["link", "add", &name, "type", "bridge"]);
                        ip(ns, &["link", "set", &name, "up"]);
                    }
                });
            }
            while Instant::now() < end {
                ip(&ns, &["addr", "del", &format!("{IP}/32"), "dev", "lo"]);
                std::thread::sleep(Duration::from_millis(20));
            }
        });
        assert!(
            daemon.is_running(),
            "round {round}: exited\n{}",
            daemon.log()
        );
        assert!(
            wait_for(Duration::from_secs(5), || present(&ns)).is_some(),
            "round {round}: the address is not back 5 s after the burst"
        );
        ip(&ns, &["addr", "del", &format!("{IP}/32"), "dev", "lo"]);
        assert!(
            wait_for(Duration::from_secs(5), || present(&ns)).is_some(),
            "round {round}: a deletion after the burst was not repaired within 5 s"
        );
        rss_after_round.push(rss_kib(daemon.child.id()));
    }
    let health = ns.http_get("http://127.0.0.1:16910/healthz");
    assert_eq!(health.as_deref(), Some("ok\n"));
    // Notifications leave flags behind, never a queue (a queue grew by about 5 MB a round),
    // and a sync holds only the addresses that concern it (holding all 12,000 made the
    // resident size swing by a megabyte and more from round to round). Once the first bursts
    // have set the allocator's high-water mark, a further burst costs no memory.
    let high_water = rss_after_round[..2].iter().max().copied().unwrap_or(0);
    let grown = rss_after_round[2].saturating_sub(high_water);
    assert!(
        grown < 1024,
        "RSS grew by {grown} KiB in the third burst over the first two: {rss_after_round:?} KiB"
    );
}

/// Two sidecars with the same IP on different interfaces: each would take the address back
/// from the other at once, thousands of times a second. They must notice, back off and say so.
#[test]
#[ignore = "needs root: runs in network namespaces (make test runs it)"]
fn a_tug_of_war_over_the_address_backs_off() {
    let ns = Netns::new("tugofwar");
    ns.sh("ip", &["link", "set", "lo", "up"]);
    ns.sh("ip", &["link", "add", "apxbr", "type", "bridge"]);
    let on_lo = ns.spawn_sidecar(&["--ip-address", IP, "--metrics-bind-address=127.0.0.1:16911"]);
    let on_bridge = ns.spawn_sidecar(&["--ip-address", IP, "--interface=apxbr"]);
    std::thread::sleep(Duration::from_secs(6));
    let metrics = ns
        .http_get("http://127.0.0.1:16911/metrics")
        .unwrap_or_default();
    for daemon in [&on_lo, &on_bridge] {
        let log = daemon.log();
        let repairs = log.matches("restored address").count()
            + log
                .matches("removed address from another interface")
                .count();
        assert!(
            repairs < 60,
            "{repairs} repairs in 6 s: the sidecars fight without backing off"
        );
    }
    let warned = [&on_lo, &on_bridge].iter().any(|daemon| {
        daemon
            .log()
            .contains("keeps putting the address on another interface")
    });
    assert!(warned, "{}\n{}", on_lo.log(), on_bridge.log());
    let conflicts = metrics
        .lines()
        .find_map(|line| line.strip_prefix("apiserver_proxy_sidecar_address_conflicts_total "))
        .and_then(|value| value.trim().parse::<u64>().ok());
    assert!(conflicts.is_some_and(|n| n >= 3), "{metrics}");
}

/// A directory of stand-ins for iptables binaries: each name either runs the real binary or
/// hangs. Put first in PATH.
fn fake_iptables(ns: &Netns, hung: &[&str], real: &[&str]) -> PathBuf {
    let scripts: Vec<_> = hung
        .iter()
        .map(|&name| (name, "#!/bin/sh\nexec sleep 60\n".to_string()))
        .collect();
    ns.stand_ins(&scripts, real)
}

/// The sidecar with `args` and a [`fake_iptables`] directory first in its PATH.
fn sidecar_with_fakes(ns: &Netns, hung: &[&str], real: &[&str], args: &[&str]) -> Command {
    let bin = fake_iptables(ns, hung, real);
    let mut command = ns.sidecar(args);
    command.env("PATH", path_with(&bin));
    command
}

/// The children of a process.
fn children(pid: u32) -> Vec<String> {
    std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children"))
        .unwrap_or_default()
        .split_whitespace()
        .map(str::to_string)
        .collect()
}

#[test]
#[ignore = "needs root: runs in network namespaces (make test runs it)"]
fn a_hung_iptables_save_never_delays_an_address_repair() {
    let ns = Netns::new("hungsave");
    let command = sidecar_with_fakes(
        &ns,
        &["iptables-nft-save"],
        &[],
        &[
            "--ip-address",
            IP,
            "--setup-iptables",
            "--iptables-backend=nft",
            "--sync-interval=1s",
        ],
    );
    let mut daemon = ns.spawn_logged(command);
    daemon.expect_within(Duration::from_secs(5), || present(&ns));
    // The rules side is now stuck in its first iptables-nft-save.
    std::thread::sleep(Duration::from_millis(300));
    ns.sh("ip", &["addr", "del", &format!("{IP}/32"), "dev", "lo"]);
    let took = wait_for(Duration::from_secs(5), || present(&ns));
    daemon.terminate();
    assert!(
        took.is_some_and(|took| took < Duration::from_secs(1)),
        "repair took {took:?} while iptables-nft-save hung\n{}",
        daemon.log()
    );
}

#[test]
#[ignore = "needs root: runs in network namespaces (make test runs it)"]
fn a_hung_iptables_restore_is_killed_and_the_lock_freed_within_the_bound() {
    let ns = Netns::new("hungrestore");
    let command = sidecar_with_fakes(
        &ns,
        &["iptables-nft-restore"],
        &["iptables-nft-save"],
        &[
            "--ip-address",
            IP,
            "--setup-iptables",
            "--iptables-backend=nft",
            "--xtables-lock-timeout=1s",
        ],
    );
    let mut daemon = ns.spawn_logged(command);
    let lock = ns.lock_path();
    let lock_free = || {
        Command::new("flock")
            .args(["-n"])
            .arg(&lock)
            .arg("true")
            .status()
            .is_ok_and(|status| status.success())
    };
    let held = wait_for(Duration::from_secs(5), || !lock_free());
    assert!(held.is_some(), "the sidecar never took the lock");
    let freed = wait_for(Duration::from_secs(10), lock_free);
    let restores_left = wait_for(Duration::from_millis(500), || {
        children(daemon.pid()).is_empty()
    });
    daemon.terminate();
    let daemon_log = daemon.log();
    assert!(
        freed.is_some_and(|freed| freed < Duration::from_millis(1500)),
        "the lock was held for {freed:?} by a hung iptables-nft-restore (bound 1s)\n{daemon_log}"
    );
    assert!(
        restores_left.is_some(),
        "the hung child was not killed\n{daemon_log}"
    );
    assert!(
        daemon_log.contains("iptables-nft-restore did not finish within 1s and was killed"),
        "{daemon_log}"
    );
}

#[test]
#[ignore = "needs root: runs in network namespaces (make test runs it)"]
fn a_hung_backend_probe_is_named_and_no_backend_is_guessed() {
    let ns = Netns::new("hungprobe");
    let mut command = sidecar_with_fakes(
        &ns,
        &["iptables-nft-save"],
        &["iptables-legacy-save"],
        &["--ip-address", IP, "--setup-iptables", "--daemon=false"],
    );
    let started = Instant::now();
    let output = command.output().expect("sidecar");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("iptables-nft-save did not finish within 10s and was killed"),
        "{stderr}"
    );
    assert!(started.elapsed() < Duration::from_secs(15));
    assert!(
        ns.rules_with("iptables-legacy-save", IP).is_empty(),
        "rules were put into the backend that answered, not the one the host may use"
    );
}

#[test]
#[ignore = "needs root: runs in network namespaces (make test runs it)"]
fn a_one_shot_run_stops_at_once_on_sigterm() {
    let ns = Netns::new("oneshotterm");
    let mut holder = support::hold_lock(&ns.lock_path(), "30");
    let mut one_shot = ns.spawn_sidecar(&[
        "--ip-address",
        IP,
        "--setup-iptables",
        "--iptables-backend=nft",
        "--daemon=false",
        "--xtables-lock-timeout=20s",
    ]);
    std::thread::sleep(Duration::from_millis(700));
    let (code, took) = one_shot.terminate();
    let _ = holder.kill();
    let _ = holder.wait();
    let daemon_log = one_shot.log();
    assert!(
        took < Duration::from_secs(1),
        "exit took {took:?} after SIGTERM\n{daemon_log}"
    );
    assert_eq!(code, Some(143), "{daemon_log}");
    assert!(daemon_log.contains("stopped before everything was in place"));
}

/// The request socket joins no multicast group, so the changes a cleanup makes come back to
/// nobody: no "unsolicited message" warnings at exit.
#[test]
#[ignore = "needs root: runs in network namespaces (make test runs it)"]
fn cleanup_exits_without_warnings() {
    let ns = Netns::new("quietexit");
    let mut daemon = ns.spawn_sidecar(&[
        "--ip-address",
        IP,
        "--setup-iptables",
        "--iptables-backend=nft",
        "--cleanup",
    ]);
    assert!(wait_for(Duration::from_secs(5), || present(&ns)).is_some());
    std::thread::sleep(Duration::from_millis(200));
    let (code, _) = daemon.terminate();
    let log = daemon.log();
    assert_eq!(code, Some(0), "{log}");
    assert!(log.contains("cleaned up"), "{log}");
    let warnings: Vec<&str> = log
        .lines()
        .filter(|line| line.starts_with(['W', 'E']))
        .collect();
    assert!(warnings.is_empty(), "{warnings:#?}");
}
