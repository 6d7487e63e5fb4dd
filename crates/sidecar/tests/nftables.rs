// SPDX-FileCopyrightText: 2026 apiserver-proxy contributors
// SPDX-License-Identifier: Apache-2.0

//! The native nftables mode (`--firewall=nftables`) against the real kernel, each test in a
//! network namespace of its own, as root. `nft` is used here only to look and to perturb: the
//! sidecar itself runs no program.

use test_support::netns as support;

use std::time::Duration;

use support::{FOREIGN_NOTRACK, Netns, wait_for};

const IP: &str = "10.96.0.2";
const TABLE: &str = "apiserver-proxy-10.96.0.2";
const NATIVE: [&str; 2] = ["--setup-iptables", "--firewall=nftables"];

/// The notrack rules of `table`, as `nft` prints them (without handles).
fn notrack_rules(ns: &Netns, table: &str) -> Vec<String> {
    let output = ns
        .command("nft")
        .args(["list", "table", "inet", table])
        .output()
        .expect("nft");
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .map(str::trim)
        .filter(|line| line.contains("notrack"))
        .map(|line| line.split(" comment ").next().unwrap_or(line).to_string())
        .collect()
}

fn wanted(ip: &str, port: u16) -> Vec<String> {
    vec![
        format!("ip daddr {ip} tcp dport {port} notrack"),
        format!("ip daddr {ip} tcp dport {port} notrack"),
        format!("ip saddr {ip} tcp sport {port} notrack"),
    ]
}

fn tables(ns: &Netns) -> Vec<String> {
    ns.sh("nft", &["list", "tables"])
        .lines()
        .map(str::to_string)
        .collect()
}

/// The handle of the first rule of `chain` in our table.
fn first_handle(ns: &Netns, chain: &str) -> String {
    let listing = ns.sh("nft", &["-a", "list", "chain", "inet", TABLE, chain]);
    listing
        .lines()
        .find(|line| line.contains("notrack"))
        .and_then(|line| line.rsplit("# handle ").next())
        .map(|handle| handle.trim().to_string())
        .unwrap_or_else(|| panic!("no rule in {chain}:\n{listing}"))
}

#[test]
#[ignore = "needs root: runs in a network namespace of its own"]
fn the_table_heals_after_a_flush_a_deleted_rule_chain_or_table() {
    let ns = Netns::new("nft-heal");
    let sidecar =
        ns.spawn_sidecar(&[&["--ip-address", IP, "--sync-interval=200ms"][..], &NATIVE].concat());
    let exact = || notrack_rules(&ns, TABLE) == wanted(IP, 443);
    sidecar.expect_within(Duration::from_secs(5), exact);

    let perturbations: [(&str, &dyn Fn() -> String); 5] = [
        ("a flushed chain", &|| {
            format!("flush chain inet {TABLE} output")
        }),
        ("one deleted rule", &|| {
            let handle = first_handle(&ns, "output");
            format!("delete rule inet {TABLE} output handle {handle}")
        }),
        ("a deleted chain", &|| {
            format!("flush chain inet {TABLE} prerouting; delete chain inet {TABLE} prerouting")
        }),
        ("the deleted table", &|| {
            format!("delete table inet {TABLE}")
        }),
        ("a flushed ruleset", &|| "flush ruleset".to_string()),
    ];
    // Each perturbation is seen and repaired: one more logged repair of the table each time
    // (the repair can come before `nft` returns, so the broken state is not looked for).
    let repairs = || {
        sidecar
            .log()
            .matches(&format!("rule=\"table inet {TABLE} ("))
            .count()
    };
    for (what, command) in perturbations {
        let before = repairs();
        ns.sh("nft", &[&command()]);
        let healed = wait_for(Duration::from_secs(5), || repairs() > before && exact());
        assert!(healed.is_some(), "{what} not healed:\n{}", sidecar.log());
        eprintln!("{what}: healed within {healed:?}");
    }
    // No iptables rule at all, and no process spawned: the mode never runs a program.
    assert!(ns.rules_with("iptables-nft-save", IP).is_empty());
    assert!(ns.rules_with("iptables-legacy-save", IP).is_empty());
    assert!(
        sidecar.log().contains(&format!("table inet {TABLE}")),
        "the repairs are logged:\n{}",
        sidecar.log()
    );
}

/// Every table a node may have beside ours: iptables-nft's (with a drop policy on INPUT),
/// iptables-legacy's, a kube-proxy-like table and a firewalld-like inet table with a drop
/// policy.
fn crowd(ns: &Netns) {
    ns.sh("iptables-nft", &FOREIGN_NOTRACK);
    ns.sh(
        "iptables-nft",
        &[
            "-A",
            "INPUT",
            "-m",
            "conntrack",
            "--ctstate",
            "ESTABLISHED,RELATED",
            "-j",
            "ACCEPT",
        ],
    );
    ns.sh("iptables-nft", &["-A", "INPUT", "-i", "lo", "-j", "ACCEPT"]);
    ns.sh("iptables-nft", &["-P", "INPUT", "DROP"]);
    ns.sh(
        "ip6tables-nft",
        &["-A", "OUTPUT", "-d", "fd00::1", "-j", "ACCEPT"],
    );
    ns.sh(
        "iptables-legacy",
        &["-A", "INPUT", "-s", "192.0.2.7", "-j", "ACCEPT"],
    );
    let script = ns.dir().join("others.nft");
    std::fs::write(
        &script,
        "table ip kube-proxy {\n\
           chain services { ip daddr 10.96.0.1 tcp dport 443 accept; }\n\
           chain filter-input { type filter hook input priority -110; policy accept; jump services; }\n\
         }\n\
         table inet firewalld {\n\
           chain filter_INPUT { type filter hook input priority filter + 10; policy drop; ct state established,related accept; iifname \"lo\" accept; }\n\
         }\n",
    )
    .expect("script");
    ns.sh("nft", &["-f", &script.display().to_string()]);
}

/// What every other component sees of its own rules.
fn others(ns: &Netns) -> Vec<String> {
    // Without the dump's date and the chains' packet counters.
    let without_comments = |text: String| -> String {
        text.lines()
            .filter(|line| !line.starts_with('#'))
            .map(|line| line.split(" [").next().unwrap_or(line))
            .collect::<Vec<_>>()
            .join("\n")
    };
    vec![
        without_comments(ns.sh("iptables-nft-save", &[])),
        without_comments(ns.sh("ip6tables-nft-save", &[])),
        without_comments(ns.sh("iptables-legacy-save", &[])),
        ns.sh("nft", &["list", "table", "ip", "kube-proxy"]),
        ns.sh("nft", &["list", "table", "inet", "firewalld"]),
    ]
}

#[test]
#[ignore = "needs root: runs in a network namespace of its own"]
fn lives_beside_every_other_kind_of_table_and_reports_their_drop_policies() {
    let ns = Netns::new("nft-crowd");
    ns.sh("ip", &["link", "set", "lo", "up"]);
    crowd(&ns);
    let before = others(&ns);
    assert!(
        before[0].contains("-A PREROUTING -d 10.0.0.1/32 -j CT --notrack"),
        "{}",
        before[0]
    );

    let metrics = "--metrics-bind-address=127.0.0.1:16912";
    let mut sidecar =
        ns.spawn_sidecar(&[&["--ip-address", IP, "--cleanup", metrics][..], &NATIVE].concat());
    sidecar.expect_within(Duration::from_secs(5), || {
        notrack_rules(&ns, TABLE) == wanted(IP, 443)
    });
    // Detected and reported: the two base chains that drop by policy at the input hook.
    let reported = || {
        ns.http_get("http://127.0.0.1:16912/readyz")
            .is_some_and(|body| {
                body.starts_with("ready\n")
                    && body.contains("inet firewalld filter_INPUT (input)")
                    && body.contains("ip filter INPUT (input)")
            })
    };
    sidecar.expect_within(Duration::from_secs(5), reported);
    let text = ns
        .http_get("http://127.0.0.1:16912/metrics")
        .expect("metrics");
    assert!(
        text.lines()
            .any(|line| line == "apiserver_proxy_sidecar_foreign_drop_policy_chains 2"),
        "{text}"
    );
    assert!(
        sidecar.log().contains("drop by policy"),
        "logged:\n{}",
        sidecar.log()
    );

    // Nothing of anyone else's changed: iptables-nft-save still lists every iptables rule.
    assert_eq!(others(&ns), before);

    // --cleanup removes our table whole and nothing else.
    let (code, _) = sidecar.terminate();
    assert_eq!(code, Some(0), "{}", sidecar.log());
    assert!(
        !tables(&ns)
            .iter()
            .any(|table| table.contains("apiserver-proxy")),
        "{:?}",
        tables(&ns)
    );
    assert_eq!(others(&ns), before);
}

#[test]
#[ignore = "needs root: runs in a network namespace of its own"]
fn a_stale_table_goes_unless_a_running_instance_claims_its_ip() {
    let ns = Netns::new("nft-stale");
    // A dead instance's table, and a live instance's.
    ns.sh(
        "nft",
        &["add table inet apiserver-proxy-10.96.0.9; add chain inet apiserver-proxy-10.96.0.9 c"],
    );
    let live = ns.spawn_sidecar(&[&["--ip-address", "10.96.0.8"][..], &NATIVE].concat());
    live.expect_within(Duration::from_secs(5), || {
        notrack_rules(&ns, "apiserver-proxy-10.96.0.8") == wanted("10.96.0.8", 443)
    });

    // Its first sync removes the dead instance's table at once, and leaves the live one's.
    let mut ours = ns.spawn_sidecar(&[&["--ip-address", IP][..], &NATIVE].concat());
    ours.expect_within(Duration::from_secs(5), || {
        notrack_rules(&ns, TABLE) == wanted(IP, 443)
            && !tables(&ns).contains(&"table inet apiserver-proxy-10.96.0.9".to_string())
    });
    let present = tables(&ns);
    assert!(
        present.contains(&format!("table inet {TABLE}")),
        "{present:?}"
    );
    assert!(
        present.contains(&"table inet apiserver-proxy-10.96.0.8".to_string()),
        "{present:?}"
    );
    assert!(
        !present.contains(&"table inet apiserver-proxy-10.96.0.9".to_string()),
        "{present:?}"
    );
    assert_eq!(
        notrack_rules(&ns, "apiserver-proxy-10.96.0.8"),
        wanted("10.96.0.8", 443)
    );

    // Stopped (no --cleanup), then a one-shot cleanup within the live instance's grace: its
    // own table goes and the live instance's stays.
    ours.stop();
    let output = ns.sidecar_once(
        &[
            &["--ip-address", IP, "--daemon=false", "--cleanup"][..],
            &NATIVE,
        ]
        .concat(),
    );
    assert!(output.status.success(), "{}", support::stderr(&output));
    assert_eq!(tables(&ns), ["table inet apiserver-proxy-10.96.0.8"]);
}

#[test]
#[ignore = "needs root: runs in a network namespace of its own"]
fn dual_stack_gets_a_table_per_ip() {
    let ns = Netns::new("nft-dual");
    let output = ns.sidecar_once(
        &[
            &[
                "--ip-address",
                "10.96.0.2,fd00::2",
                "--port=6443",
                "--daemon=false",
            ][..],
            &NATIVE,
        ]
        .concat(),
    );
    assert!(output.status.success(), "{}", support::stderr(&output));
    assert_eq!(notrack_rules(&ns, TABLE), wanted(IP, 6443));
    let v6: Vec<String> = wanted("fd00::2", 6443)
        .iter()
        .map(|rule| rule.replace("ip ", "ip6 "))
        .collect();
    assert_eq!(notrack_rules(&ns, "apiserver-proxy-fd00__2"), v6);
    let chains = ns.sh("nft", &["list", "table", "inet", TABLE]);
    assert_eq!(
        chains
            .matches("type filter hook prerouting priority raw; policy accept;")
            .count(),
        1,
        "{chains}"
    );
    assert_eq!(
        chains
            .matches("type filter hook output priority raw; policy accept;")
            .count(),
        1,
        "{chains}"
    );
}

#[test]
#[ignore = "needs root: runs in a network namespace of its own"]
fn heals_on_notifications_long_before_the_interval() {
    let ns = Netns::new("nft-events");
    // The default interval is a minute: anything healed within seconds was healed on events.
    let sidecar = ns.spawn_sidecar(&[&["--ip-address", IP][..], &NATIVE].concat());
    let exact = || notrack_rules(&ns, TABLE) == wanted(IP, 443);
    sidecar.expect_within(Duration::from_secs(5), exact);
    let mut heals = Vec::new();
    for round in 0..10 {
        let command = if round % 2 == 0 {
            format!("flush chain inet {TABLE} output")
        } else {
            format!("delete table inet {TABLE}")
        };
        ns.sh("nft", &[&command]);
        let healed = wait_for(Duration::from_secs(5), exact);
        let Some(healed) = healed else {
            panic!("{command}: not healed within 5 s:\n{}", sidecar.log());
        };
        heals.push(healed);
    }
    heals.sort();
    eprintln!(
        "heal after a flush or a deleted table: median {:?}, worst {:?}",
        heals[5], heals[9]
    );
    assert!(heals[9] < Duration::from_secs(5));
    // A change to another table does not wake the sidecar: its log stays quiet.
    let lines = sidecar.log().lines().count();
    ns.sh("nft", &["add table inet other; add chain inet other c"]);
    std::thread::sleep(Duration::from_millis(300));
    let log = sidecar.log();
    assert_eq!(log.lines().count(), lines, "{log}");
}
