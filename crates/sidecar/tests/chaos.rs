// SPDX-FileCopyrightText: 2026 apiserver-proxy contributors
// SPDX-License-Identifier: Apache-2.0

//! Chaos against a running sidecar, in a network namespace of its own (as root): for
//! `CHAOS_SECONDS` (default 30) another process keeps breaking what the sidecar keeps. Afterwards,
//! within one interval, the state must be exact, and the sidecar must still be running.

use test_support::netns as support;

use std::process::Command;
use std::time::{Duration, Instant};

use support::{Netns, wait_for};

const IP: &str = "10.96.0.2";
const HOST: &str = "10.96.0.2/32";

/// xorshift64: reproducible chaos from a printed seed, without a dependency.
struct Chaos(u64);

impl Chaos {
    fn next(&mut self, below: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % below
    }
}

#[test]
#[ignore = "needs root and runs 30 s: network namespaces (make test runs it)"]
fn sidecar_survives_chaos_and_converges_to_the_exact_state() {
    let seconds: u64 = std::env::var("CHAOS_SECONDS")
        .ok()
        .and_then(|text| text.parse().ok())
        .unwrap_or(30);
    let seed = std::env::var("CHAOS_SEED")
        .ok()
        .and_then(|text| text.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(1, |elapsed| elapsed.as_nanos() as u64 | 1)
        });
    println!("chaos: {seconds} s, CHAOS_SEED={seed}");
    let mut chaos = Chaos(seed);

    let ns = Netns::new("chaos");
    let interval = Duration::from_millis(500);
    let mut daemon = ns.spawn_sidecar(&[
        "--ip-address",
        IP,
        "--setup-iptables",
        "--iptables-backend=nft",
        "--sync-interval=500ms",
        "--xtables-lock-timeout=1s",
    ]);
    let save = |table: &str| ns.sh("iptables-nft-save", &["-t", table]);
    let rule_lines = || {
        let mut lines: Vec<String> = ["raw", "filter"]
            .iter()
            .flat_map(|table| {
                save(table)
                    .lines()
                    .filter(|line| line.starts_with("-A "))
                    .map(str::to_string)
                    .collect::<Vec<_>>()
            })
            .collect();
        lines.sort();
        lines
    };
    let mut expected: Vec<String> = support::expected_rules(HOST, 443)
        .iter()
        .map(|(_, line)| line.clone())
        .collect();
    expected.sort();
    daemon.expect_within(Duration::from_secs(5), || rule_lines() == expected);

    let rss_kib = |pid: u32| {
        std::fs::read_to_string(format!("/proc/{pid}/status"))
            .ok()
            .and_then(|status| {
                let line = status.lines().find(|line| line.starts_with("VmRSS:"))?;
                line.split_whitespace().nth(1)?.parse::<u64>().ok()
            })
            .expect("the sidecar's VmRSS")
    };
    let rss_before = rss_kib(daemon.child.id());
    let mut counts = [0u32; 6];
    let started = Instant::now();
    let mut lock_holders = Vec::new();
    while started.elapsed() < Duration::from_secs(seconds) {
        let action = chaos.next(6) as usize;
        counts[action] += 1;
        match action {
            0 => {
                ns.try_sh("ip", &["addr", "del", HOST, "dev", "lo"]);
            }
            1 => {
                ns.sh("iptables-nft", &["-t", "raw", "-F"]);
            }
            2 => {
                ns.sh("iptables-nft", &["-t", "filter", "-F"]);
            }
            3 => {
                // Duplicate copies of one of the five rules, appended behind the sidecar's back.
                let (table, line) = &support::bare_rules(HOST, 443)[chaos.next(5) as usize];
                let mut args = vec!["-t", table.as_str()];
                args.extend(line.split_whitespace());
                for _ in 0..=chaos.next(3) {
                    ns.sh("iptables-nft", &args);
                }
            }
            4 => {
                ns.sh("ip", &["link", "set", "lo", "down"]);
                std::thread::sleep(Duration::from_millis(chaos.next(50)));
                ns.sh("ip", &["link", "set", "lo", "up"]);
            }
            _ if lock_holders
                .iter_mut()
                .any(|holder: &mut std::process::Child| matches!(holder.try_wait(), Ok(None))) => {}
            _ => {
                // Hold the xtables lock, sometimes longer than the sidecar's 1 s wait bound.
                let hold = format!("{:.2}", 0.2 + chaos.next(1300) as f64 / 1000.0);
                lock_holders.push(
                    Command::new("flock")
                        .arg(ns.lock_path())
                        .args(["sleep", &hold])
                        .spawn()
                        .expect("flock"),
                );
            }
        }
        std::thread::sleep(Duration::from_millis(20 + chaos.next(130)));
        assert!(daemon.is_running(), "the sidecar died: {}", daemon.log());
    }
    for mut holder in lock_holders {
        let _ = holder.wait();
    }
    println!(
        "chaos actions: address deleted {}, raw flushed {}, filter flushed {}, duplicates inserted {}, lo down/up {}, lock held {}",
        counts[0], counts[1], counts[2], counts[3], counts[4], counts[5]
    );

    // One interval (plus the longest retry backoff) later, the state is exact.
    let exact =
        || rule_lines() == expected && ns.addresses_of(IP) == ["inet 10.96.0.2/32 scope global lo"];
    assert!(
        wait_for(interval * 3, exact).is_some(),
        "not converged: rules {:?}, addresses {:?}\n{}",
        rule_lines(),
        ns.addresses_of(IP),
        daemon.log()
    );
    assert!(daemon.is_running(), "the sidecar died: {}", daemon.log());
    let repairs = |what: &str| daemon.log().matches(what).count();
    println!(
        "repairs logged under chaos: address {}, rule {}, duplicate rule {}, interface up {}, lock busy {}",
        repairs("restored address"),
        repairs("restored iptables rule"),
        repairs("removed duplicate iptables rule"),
        repairs("brought interface up"),
        repairs("is held by another program"),
    );

    // Then each kind of breakage once more, alone: the sidecar repairs it and its log names it.
    let (raw_table, raw_line) = &support::bare_rules(HOST, 443)[0];
    let mut duplicate = vec!["-t", raw_table.as_str()];
    duplicate.extend(raw_line.split_whitespace());
    let breakages: [(&str, &str, Vec<&str>); 4] = [
        (
            "restored address",
            "ip",
            vec!["addr", "del", HOST, "dev", "lo"],
        ),
        (
            "restored iptables rule",
            "iptables-nft",
            vec!["-t", "raw", "-F"],
        ),
        ("removed duplicate iptables rule", "iptables-nft", duplicate),
        (
            "brought interface up",
            "ip",
            vec!["link", "set", "lo", "down"],
        ),
    ];
    for (repair, program, args) in &breakages {
        let before = repairs(repair);
        ns.sh(program, args);
        assert!(
            wait_for(interval * 3, || exact() && repairs(repair) > before).is_some(),
            "no {repair:?} after that breakage: {}",
            daemon.log()
        );
    }
    assert!(daemon.is_running(), "the sidecar died: {}", daemon.log());
    let rss_after = rss_kib(daemon.child.id());
    println!("sidecar RSS (debug build): {rss_before} KiB before, {rss_after} KiB after");
    assert!(
        rss_after < rss_before + 1024,
        "RSS grew from {rss_before} KiB to {rss_after} KiB"
    );
    let log = daemon.log();
    assert!(!log.contains("panicked"), "{log}");
}
