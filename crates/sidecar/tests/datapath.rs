// SPDX-FileCopyrightText: 2026 apiserver-proxy contributors
// SPDX-License-Identifier: Apache-2.0

//! The whole node path with real traffic, in three network namespaces built like a cluster:
//!
//! ```text
//!  pod ── veth ── node (hardened: INPUT policy DROP, only ESTABLISHED,RELATED, INVALID dropped)
//!                   │ the sidecar keeps 10.96.0.2 and fd00:10:96::2 on lo, with its rules
//!                   │ haproxy on both :443, passing TLS through by SNI
//!                   └── veth ── apiserver (openssl s_server, certificate for the FQDN)
//! ```
//!
//! A pod completes TLS with SNI = FQDN through the proxy addresses and gets an HTTP answer; the
//! node tracks none of those connections; without the sidecar's rules the hardened node drops
//! them. As root; every namespace is the test's own.

use test_support::netns as support;

use std::path::Path;
use std::time::{Duration, Instant};

use support::{Daemon, Netns, wait_for};

const FQDN: &str = "api.example.test";
const IPV4: &str = "10.96.0.2";
const IPV6: &str = "fd00:10:96::2";

/// How the node keeps the proxy's rules.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Rules {
    None,
    /// The five iptables rules.
    Iptables,
    /// The native nftables mode: the notrack rules in the sidecar's own tables, and the
    /// allowance docs/operations.md asks of the hardened node's firewall.
    Nftables,
}

/// The three namespaces and what runs in them.
struct Cluster {
    pod: Netns,
    node: Netns,
    apiserver: Netns,
    _server: Daemon,
    _proxy: Daemon,
    /// One sidecar keeping both addresses (`--ip-address=IPV4,IPV6`).
    sidecar: Daemon,
}

fn openssl(dir: &Path, args: &[&str]) {
    let status = std::process::Command::new("openssl")
        .current_dir(dir)
        .args(args)
        .stderr(std::process::Stdio::null())
        .status()
        .expect("openssl");
    assert!(status.success(), "openssl {args:?}");
}

/// A CA and a serving certificate for [`FQDN`], in `dir`.
fn certificates(dir: &Path) {
    let ec = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-nodes",
    ];
    openssl(
        dir,
        &[
            &["req", "-x509"][..],
            &ec,
            &[
                "-keyout",
                "ca.key",
                "-out",
                "ca.crt",
                "-days",
                "2",
                "-subj",
                "/CN=test CA",
            ],
        ]
        .concat(),
    );
    openssl(
        dir,
        &[
            &["req"][..],
            &ec,
            &[
                "-keyout",
                "server.key",
                "-out",
                "server.csr",
                "-subj",
                &format!("/CN={FQDN}"),
            ],
        ]
        .concat(),
    );
    std::fs::write(dir.join("san.ext"), format!("subjectAltName=DNS:{FQDN}\n")).expect("ext");
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            "ca.crt",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            "server.crt",
            "-days",
            "2",
            "-extfile",
            "san.ext",
        ],
    );
}

/// Drops everything but replies and loopback, and invalid packets first, as hardened nodes do.
fn harden(node: &Netns) {
    for tool in ["iptables-nft", "ip6tables-nft"] {
        node.sh(tool, &["-P", "INPUT", "DROP"]);
        for rule in [
            "-m conntrack --ctstate INVALID -j DROP",
            "-m conntrack --ctstate ESTABLISHED,RELATED -j ACCEPT",
            "-i lo -j ACCEPT",
        ] {
            let args: Vec<&str> = ["-A", "INPUT"]
                .into_iter()
                .chain(rule.split_whitespace())
                .collect();
            node.sh(tool, &args);
        }
    }
    // Neighbour discovery, which IPv6 cannot do without.
    node.sh(
        "ip6tables-nft",
        &["-A", "INPUT", "-p", "ipv6-icmp", "-j", "ACCEPT"],
    );
}

impl Cluster {
    /// Builds the cluster; one sidecar keeps both proxy addresses, with their rules when
    /// `rules` is set.
    fn new(test: &str, rules: bool) -> Cluster {
        Cluster::with(test, if rules { Rules::Iptables } else { Rules::None })
    }

    fn with(test: &str, rules: Rules) -> Cluster {
        let pod = Netns::new(&format!("{test}-pod"));
        let node = Netns::new(&format!("{test}-node"));
        let apiserver = Netns::new(&format!("{test}-api"));
        for ns in [&pod, &node, &apiserver] {
            ns.sh("ip", &["link", "set", "lo", "up"]);
        }
        node.sh(
            "ip",
            &[
                "link", "add", "vpod", "type", "veth", "peer", "name", "eth0", "netns", &pod.name,
            ],
        );
        node.sh(
            "ip",
            &[
                "link",
                "add",
                "vapi",
                "type",
                "veth",
                "peer",
                "name",
                "eth0",
                "netns",
                &apiserver.name,
            ],
        );
        pod.sh("ip", &["addr", "add", "192.0.2.2/24", "dev", "eth0"]);
        pod.sh(
            "ip",
            &["addr", "add", "2001:db8:1::2/64", "dev", "eth0", "nodad"],
        );
        node.sh("ip", &["addr", "add", "192.0.2.1/24", "dev", "vpod"]);
        node.sh(
            "ip",
            &["addr", "add", "2001:db8:1::1/64", "dev", "vpod", "nodad"],
        );
        node.sh("ip", &["addr", "add", "198.51.100.1/24", "dev", "vapi"]);
        apiserver.sh("ip", &["addr", "add", "198.51.100.2/24", "dev", "eth0"]);
        for (ns, link) in [
            (&pod, "eth0"),
            (&node, "vpod"),
            (&node, "vapi"),
            (&apiserver, "eth0"),
        ] {
            ns.sh("ip", &["link", "set", link, "up"]);
        }
        pod.sh("ip", &["route", "add", "default", "via", "192.0.2.1"]);
        pod.sh(
            "ip",
            &["-6", "route", "add", "default", "via", "2001:db8:1::1"],
        );
        harden(&node);

        certificates(apiserver.dir());
        let mut server = apiserver.command("openssl");
        server.current_dir(apiserver.dir()).args([
            "s_server",
            "-accept",
            "198.51.100.2:6443",
            "-cert",
            "server.crt",
            "-key",
            "server.key",
            "-www",
            "-quiet",
        ]);
        let server = apiserver.spawn_logged(server);

        let mut flags = vec!["--iptables-backend=nft", "--sync-interval=1s"];
        if rules != Rules::None {
            flags.push("--setup-iptables");
        }
        if rules == Rules::Nftables {
            flags.push("--firewall=nftables");
            // What a stateful firewall must allow beside the native mode (docs/operations.md).
            for (tool, ip) in [("iptables-nft", IPV4), ("ip6tables-nft", IPV6)] {
                let allow =
                    "-I INPUT -m conntrack --ctstate UNTRACKED -p tcp --dport 443 -j ACCEPT -d";
                let args: Vec<&str> = allow.split_whitespace().chain([ip]).collect();
                node.sh(tool, &args);
            }
        }
        let both = format!("--ip-address={IPV4},{IPV6}");
        let sidecar = node.spawn_sidecar(&[&[both.as_str()][..], &flags].concat());
        let on_lo = || {
            let lo = node.sh("ip", &["-o", "addr", "show", "dev", "lo"]);
            lo.contains(&format!(" {IPV4}/32 ")) && lo.contains(&format!(" {IPV6}/128 "))
        };
        assert!(
            wait_for(Duration::from_secs(5), on_lo).is_some(),
            "addresses not in place: {}",
            sidecar.log()
        );
        if rules == Rules::Nftables {
            let in_place = || {
                let tables = node.sh("nft", &["list", "tables"]);
                tables.contains("inet apiserver-proxy-10.96.0.2")
                    && tables.contains("inet apiserver-proxy-fd00_10_96__2")
            };
            assert!(
                wait_for(Duration::from_secs(5), in_place).is_some(),
                "tables not in place: {}",
                sidecar.log()
            );
        }
        if rules == Rules::Iptables {
            let in_place = || {
                node.rules_with("iptables-nft-save", IPV4).len() == 5
                    && node.rules_with("ip6tables-nft-save", IPV6).len() == 5
            };
            assert!(
                wait_for(Duration::from_secs(5), in_place).is_some(),
                "rules not in place: {}",
                sidecar.log()
            );
        }

        let config = node.dir().join("haproxy.cfg");
        std::fs::write(
            &config,
            format!(
                "global\n  maxconn 200\ndefaults\n  mode tcp\n  timeout connect 2s\n  timeout client 5s\n  \
                 timeout server 5s\nfrontend proxy\n  bind {IPV4}:443\n  bind [{IPV6}]:443\n  \
                 tcp-request inspect-delay 2s\n  tcp-request content accept if {{ req_ssl_hello_type 1 }}\n  \
                 use_backend apiserver if {{ req_ssl_sni -i {FQDN} }}\nbackend apiserver\n  \
                 server apiserver 198.51.100.2:6443\n"
            ),
        )
        .expect("haproxy.cfg");
        let mut proxy = node.command("haproxy");
        proxy.arg("-db").arg("-f").arg(&config);
        let proxy = node.spawn_logged(proxy);
        let listening = || node.sh("ss", &["-Hltn", "sport = :443"]).lines().count() == 2;
        proxy.expect_within(Duration::from_secs(5), listening);
        // The apiserver is up once it answers the node directly.
        let up = || {
            node.command("openssl")
                .args(["s_client", "-connect", "198.51.100.2:6443"])
                .stdin(std::process::Stdio::null())
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .status()
                .is_ok_and(|status| status.success())
        };
        server.expect_within(Duration::from_secs(5), up);
        Cluster {
            pod,
            node,
            apiserver,
            _server: server,
            _proxy: proxy,
            sidecar,
        }
    }

    /// From the pod: TLS with SNI = FQDN to `ip`:443, verifying the apiserver's certificate;
    /// the HTTP status, or `None` when no answer came within `limit`.
    fn get(&self, ip: &str, limit: Duration) -> Option<String> {
        let target = if ip.contains(':') {
            format!("[{ip}]")
        } else {
            ip.to_string()
        };
        let output = self
            .pod
            .command("curl")
            .args(["-sS", "-o", "/dev/null", "-w", "%{http_code}", "--max-time"])
            .arg(format!("{:.3}", limit.as_secs_f64()))
            .arg("--cacert")
            .arg(self.node_ca())
            .arg("--resolve")
            .arg(format!("{FQDN}:443:{target}"))
            .arg(format!("https://{FQDN}/"))
            .output()
            .ok()?;
        output
            .status
            .success()
            .then(|| String::from_utf8_lossy(&output.stdout).into_owned())
    }

    fn node_ca(&self) -> std::path::PathBuf {
        self.apiserver.dir().join("ca.crt")
    }

    /// The node's conntrack entries for connections to `ip`:443.
    fn tracked(&self, ip: &str) -> usize {
        let family = if ip.contains(':') { "ipv6" } else { "ipv4" };
        let output = self
            .node
            .command("conntrack")
            .args(["-L", "-f", family, "-p", "tcp", "-d", ip, "--dport", "443"])
            .output()
            .expect("conntrack");
        String::from_utf8_lossy(&output.stdout).lines().count()
    }

    /// Pods reach the apiserver three times through each proxy IP, and none of those
    /// connections is tracked.
    #[track_caller]
    fn assert_reached_untracked(&self) {
        for ip in [IPV4, IPV6] {
            for _ in 0..3 {
                assert_eq!(
                    self.get(ip, Duration::from_secs(3)).as_deref(),
                    Some("200"),
                    "through {ip}\n{}",
                    self.sidecar.log()
                );
            }
            assert_eq!(self.tracked(ip), 0, "connections to {ip}:443 were tracked");
        }
    }

    /// The node's conntrack entries for its own connections to the apiserver.
    fn tracked_to_the_apiserver(&self) -> usize {
        let output = self
            .node
            .command("conntrack")
            .args(["-L", "-p", "tcp", "-d", "198.51.100.2", "--dport", "6443"])
            .output()
            .expect("conntrack");
        String::from_utf8_lossy(&output.stdout).lines().count()
    }
}

#[test]
#[ignore = "needs root: runs in network namespaces (make test runs it)"]
fn pods_reach_the_apiserver_through_the_proxy_untracked_over_ipv4_and_ipv6() {
    let cluster = Cluster::new("dpok", true);
    cluster.assert_reached_untracked();
    // The proxy's own connections to the apiserver are tracked as usual: conntrack works, it
    // is the sidecar's rules that keep the pods' connections out of it.
    assert!(cluster.tracked_to_the_apiserver() >= 6);
}

#[test]
#[ignore = "needs root: runs in network namespaces (make test runs it)"]
fn in_the_native_nftables_mode_too_the_proxys_traffic_is_untracked() {
    let cluster = Cluster::with("dpnft", Rules::Nftables);
    cluster.assert_reached_untracked();
    assert!(cluster.tracked_to_the_apiserver() >= 6);
    // No iptables rule of the sidecar's: only the allowance the node's firewall was given.
    for (tool, ip) in [("iptables-nft-save", IPV4), ("ip6tables-nft-save", IPV6)] {
        assert_eq!(cluster.node.rules_with(tool, ip).len(), 1, "{tool}");
    }
}

#[test]
#[ignore = "needs root: runs in network namespaces (make test runs it)"]
fn without_the_rules_the_hardened_node_drops_the_pods_connections() {
    let cluster = Cluster::new("dpctl", false);
    for ip in [IPV4, IPV6] {
        assert_eq!(
            cluster.get(ip, Duration::from_secs(1)),
            None,
            "through {ip}"
        );
    }
}

/// Clients connect in a loop while the address is deleted: how long until new connections
/// succeed again.
#[test]
#[ignore = "needs root: runs in network namespaces (make test runs it)"]
fn connections_succeed_again_right_after_the_address_is_deleted() {
    let cluster = Cluster::new("dpheal", true);
    let mut outages = Vec::new();
    for _ in 0..5 {
        assert_eq!(
            cluster.get(IPV4, Duration::from_secs(3)).as_deref(),
            Some("200")
        );
        let deleted = Instant::now();
        cluster
            .node
            .sh("ip", &["addr", "del", &format!("{IPV4}/32"), "dev", "lo"]);
        let serving = wait_for(Duration::from_secs(5), || {
            cluster.get(IPV4, Duration::from_millis(500)).as_deref() == Some("200")
        });
        assert!(serving.is_some(), "not serving 5 s after the deletion");
        outages.push(deleted.elapsed());
    }
    outages.sort();
    eprintln!(
        "new connections through the proxy succeed again after: median {:?}, worst {:?} (5 deletions)",
        outages[2], outages[4]
    );
    assert!(outages[4] < Duration::from_secs(1), "{outages:?}");
}

/// The source address the node picks for its own traffic to `destination`.
fn source_for(node: &Netns, destination: &str) -> String {
    let route = node.sh("ip", &["route", "get", destination]);
    let mut words = route.split_whitespace();
    words.find(|word| *word == "src");
    words.next().unwrap_or_default().to_string()
}

/// The node's own traffic (kubelet probing a pod, say) through a device without an address of
/// its own, as CNI plugins' host-side veths are: which address does the kernel pick as source?
#[test]
#[ignore = "needs root: runs in network namespaces (make test runs it)"]
fn the_proxy_address_as_a_source_of_the_nodes_own_traffic() {
    let mut cluster = Cluster::new("dpsrc", true);
    let (node, pod) = (&cluster.node, &cluster.pod);
    node.sh(
        "ip",
        &[
            "link", "add", "vbare", "type", "veth", "peer", "name", "eth1", "netns", &pod.name,
        ],
    );
    pod.sh("ip", &["addr", "add", "203.0.113.2/32", "dev", "eth1"]);
    pod.sh(
        "ip",
        &["addr", "add", "fd00:10:244::2/128", "dev", "eth1", "nodad"],
    );
    pod.sh("ip", &["link", "set", "eth1", "up"]);
    node.sh("ip", &["link", "set", "vbare", "up"]);
    node.sh("ip", &["route", "add", "203.0.113.2/32", "dev", "vbare"]);
    node.sh(
        "ip",
        &["-6", "route", "add", "fd00:10:244::2/128", "dev", "vbare"],
    );

    // IPv6: the sidecar's address is deprecated (preferred lifetime 0), so the node's own
    // address is picked although the proxy's shares the longer prefix with the pod's.
    assert!(
        node.sh("ip", &["-6", "addr", "show", "dev", "lo"])
            .contains("deprecated"),
        "{}",
        node.sh("ip", &["-6", "addr", "show", "dev", "lo"])
    );
    assert_eq!(source_for(node, "fd00:10:244::2"), "2001:db8:1::1");
    // Made preferred again by hand, it would be the source; the kernel's notification about it
    // makes the sidecar deprecate it again at once (checked on its own in ipv6.rs).
    node.sh(
        "ip",
        &[
            "addr",
            "change",
            &format!("{IPV6}/128"),
            "dev",
            "lo",
            "preferred_lft",
            "forever",
            "nodad",
        ],
    );
    let fixed = wait_for(Duration::from_secs(5), || {
        source_for(node, "fd00:10:244::2") != IPV6
    });
    assert!(fixed.is_some(), "{}", cluster.sidecar.log());
    assert!(
        cluster
            .sidecar
            .log()
            .contains("deprecated the address in place")
    );
    assert_eq!(
        cluster.get(IPV6, Duration::from_secs(3)).as_deref(),
        Some("200")
    );

    // IPv4 has no such state: on lo, the first interface of every namespace, the proxy address
    // is picked before any other interface's.
    assert_eq!(source_for(node, "203.0.113.2"), IPV4);
    eprintln!(
        "IPv4 on lo: the node's traffic to a pod behind an address-less veth leaves from {IPV4}"
    );

    // On a dedicated link, created after the node's own interfaces, it is not. The sidecar,
    // restarted with that link, moves both addresses there.
    cluster.sidecar.terminate();
    node.sh("ip", &["link", "add", "apxproxy", "type", "bridge"]);
    node.sh("ip", &["link", "set", "apxproxy", "up"]);
    cluster.sidecar = node.spawn_sidecar(&[
        &format!("--ip-address={IPV4},{IPV6}"),
        "--interface=apxproxy",
        "--setup-iptables",
        "--iptables-backend=nft",
    ]);
    let moved = wait_for(Duration::from_secs(5), || {
        let on_link = node.sh("ip", &["-o", "addr", "show", "dev", "apxproxy"]);
        let on_lo = node.sh("ip", &["-o", "addr", "show", "dev", "lo"]);
        on_link.contains(IPV4) && on_link.contains(IPV6) && !on_lo.contains("10.96.0.2/32")
    });
    assert!(moved.is_some(), "{}", cluster.sidecar.log());
    assert_eq!(source_for(node, "203.0.113.2"), "192.0.2.1");
    eprintln!("IPv4 on a dedicated link: it leaves from the node's own 192.0.2.1");
    for ip in [IPV4, IPV6] {
        assert_eq!(
            cluster.get(ip, Duration::from_secs(3)).as_deref(),
            Some("200"),
            "through {ip} on apxproxy\n{}",
            cluster.sidecar.log()
        );
    }
}
