// SPDX-FileCopyrightText: 2026 apiserver-proxy contributors
// SPDX-License-Identifier: Apache-2.0

//! The nf_tables netlink module against the real kernel: each test runs itself again inside a
//! network namespace of its own (as root), where `nft` and `iptables-nft` make the changes the
//! sockets must see.

use std::process::Command;
use std::time::Duration;

use netlink_packet_core::NLM_F_CREATE;
use netlink_packet_netfilter::nftables::{
    ChainAttribute, ChainMessage, NfTablesMessage, TableAttribute, TableMessage,
};
use sidecar::nftnl::{Event, Family, Folded, NftError, Nftables, Notifications, Op, Request};
use sidecar::nftnl::{Transaction, Transactions};
use test_support::netns::{FOREIGN_NOTRACK, block_on};

/// Set in the copy of the test that runs inside the namespace.
const INSIDE: &str = "SIDECAR_NFTNL_TEST_INSIDE";

/// Runs `body` inside a fresh namespace: this process re-runs the one test there.
fn in_namespace(test: &str, body: impl FnOnce()) {
    test_support::netns::in_namespace(test, INSIDE, |_| body());
}

fn run(program: &str, args: &[&str]) {
    let output = Command::new(program).args(args).output().expect(program);
    assert!(
        output.status.success(),
        "{program} {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

/// Reads notifications until a transaction ends, 5 s at most.
async fn next_transaction(
    notifications: &mut Notifications,
    fold: &mut Transactions,
) -> Transaction {
    let read = async {
        loop {
            for event in notifications.next().await.expect("notifications") {
                match fold.push(event) {
                    Folded::Done(transaction) => return transaction,
                    Folded::Lost => panic!("no overrun expected here"),
                    Folded::Pending => {}
                }
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(5), read)
        .await
        .expect("a transaction within 5 s")
}

fn table(name: &str) -> Request {
    Request {
        family: Family::Inet,
        flags: NLM_F_CREATE,
        message: NfTablesMessage::NewTable(TableMessage {
            attributes: vec![TableAttribute::Name(name.into())],
        }),
    }
}

fn chain(table: &str, name: &str) -> Request {
    Request {
        family: Family::Inet,
        flags: NLM_F_CREATE,
        message: NfTablesMessage::NewChain(ChainMessage {
            attributes: vec![
                ChainAttribute::Table(table.into()),
                ChainAttribute::Name(name.into()),
            ],
        }),
    }
}

#[test]
#[ignore = "needs root: runs in a network namespace of its own"]
fn notifications_name_every_change_and_the_generation_counts_them() {
    in_namespace(
        "notifications_name_every_change_and_the_generation_counts_them",
        || {
            block_on(async {
                let mut nft = Nftables::open().expect("socket");
                let mut notifications = Notifications::subscribe().expect("subscribe");
                let mut fold = Transactions::default();
                let before = nft.generation().await.expect("generation");

                run("nft", &["add table inet other; add chain inet other c"]);
                let by_nft = next_transaction(&mut notifications, &mut fold).await;
                assert!(by_nft.touches(Family::Inet, "other"), "{by_nft:?}");
                assert!(!by_nft.unknown, "{by_nft:?}");
                assert_eq!(by_nft.process, "nft");
                assert_ne!(by_nft.port, nft.port().expect("port"));

                run("iptables-nft", &FOREIGN_NOTRACK);
                let by_iptables = next_transaction(&mut notifications, &mut fold).await;
                assert!(by_iptables.touches(Family::IPv4, "raw"), "{by_iptables:?}");
                assert!(!by_iptables.touches(Family::IPv6, "raw"), "{by_iptables:?}");
                assert_eq!(nft.rules(Family::IPv4, "raw").await.expect("dump").len(), 1);

                let after = nft.generation().await.expect("generation");
                assert_eq!(after, by_iptables.generation);
                assert!(after.wrapping_sub(before) >= 2, "{before} then {after}");

                // Our own batch is seen too, with our socket's port id.
                nft.apply(&[table("ours"), chain("ours", "c")])
                    .await
                    .expect("batch");
                let ours = next_transaction(&mut notifications, &mut fold).await;
                assert_eq!(ours.port, nft.port().expect("port"));
                assert!(ours.touches(Family::Inet, "ours"));
            })
        },
    );
}

#[test]
#[ignore = "needs root: runs in a network namespace of its own"]
fn a_batch_is_all_or_nothing_and_names_the_refused_request() {
    in_namespace(
        "a_batch_is_all_or_nothing_and_names_the_refused_request",
        || {
            block_on(async {
                let mut nft = Nftables::open().expect("socket");
                nft.apply(&[table("t"), chain("t", "a"), chain("t", "b")])
                    .await
                    .expect("batch");
                let tables = nft.tables(Family::Unspec).await.expect("dump");
                let names: Vec<(Family, Option<String>)> = tables
                    .iter()
                    .map(|(family, table)| {
                        let name = table.attributes.iter().find_map(|a| match a {
                            TableAttribute::Name(name) => Some(name.clone()),
                            _ => None,
                        });
                        (*family, name)
                    })
                    .collect();
                assert_eq!(names, [(Family::Inet, Some("t".to_string()))]);
                assert_eq!(
                    nft.chains(Family::Inet, Some("t"))
                        .await
                        .expect("dump")
                        .len(),
                    2
                );
                assert_eq!(
                    nft.chains(Family::Unspec, Some("none"))
                        .await
                        .expect("dump")
                        .len(),
                    0
                );

                // The second request refers to a table that does not exist: nothing is applied.
                let generation = nft.generation().await.expect("generation");
                let error = nft
                    .apply(&[table("u"), chain("missing", "c"), chain("u", "c")])
                    .await
                    .expect_err("a chain in a missing table");
                let NftError::Batch(refusals) = &error else {
                    panic!("a batch error: {error}");
                };
                assert_eq!(refusals.len(), 1, "{error}");
                assert_eq!(refusals[0].index, Some(1), "{error}");
                assert_eq!(refusals[0].what, "add chain inet missing c");
                assert_eq!(refusals[0].error.raw_os_error(), Some(2), "ENOENT: {error}");
                assert_eq!(nft.generation().await.expect("generation"), generation);
                assert!(
                    nft.chains(Family::Inet, Some("u"))
                        .await
                        .expect("dump")
                        .is_empty()
                );
                assert_eq!(nft.tables(Family::Inet).await.expect("dump").len(), 1);
            })
        },
    );
}

#[test]
#[ignore = "needs root: runs in a network namespace of its own"]
fn an_overrun_is_reported_as_such() {
    in_namespace("an_overrun_is_reported_as_such", || {
        block_on(async {
            let mut notifications = Notifications::subscribe().expect("subscribe");
            // One transaction of 20,000 rules: more notifications than the buffer holds.
            let mut script = String::from("add table inet burst\nadd chain inet burst c\n");
            for port in 0..20_000 {
                script.push_str(&format!(
                    "add rule inet burst c tcp dport {} accept\n",
                    port + 1
                ));
            }
            let path = std::env::temp_dir().join(format!("nftnl-burst-{}.nft", std::process::id()));
            std::fs::write(&path, script).expect("script");
            run("nft", &["-f", path.to_str().expect("utf-8 path")]);
            let _ = std::fs::remove_file(&path);
            let mut seen = 0;
            let overrun = tokio::time::timeout(Duration::from_secs(10), async {
                loop {
                    let events = notifications.next().await.expect("notifications");
                    seen += events.len();
                    if events.contains(&Event::Overrun) {
                        return;
                    }
                }
            })
            .await;
            assert!(overrun.is_ok(), "no overrun after {seen} events");
            // Read what is still queued, until nothing comes for 200 ms.
            while let Ok(events) =
                tokio::time::timeout(Duration::from_millis(200), notifications.next()).await
            {
                events.expect("notifications");
            }
            // The socket goes on after the overrun.
            run("nft", &["add table inet after"]);
            let found = tokio::time::timeout(Duration::from_secs(5), async {
                loop {
                    let events = notifications.next().await.expect("notifications");
                    if events.iter().any(|e| matches!(e, Event::Table { op: Op::New, table, .. } if table == "after")) {
                        return;
                    }
                }
            })
            .await;
            assert!(found.is_ok(), "the socket reads on after an overrun");
        })
    });
}

/// The resident set of `pid`, in KiB.
fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("status");
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|value| value.trim().trim_end_matches(" kB").trim().parse().ok())
        .expect("VmRSS")
}

#[test]
#[ignore = "needs root: runs in a network namespace of its own"]
fn a_burst_of_foreign_transactions_neither_hangs_the_native_mode_nor_grows_it() {
    in_namespace(
        "a_burst_of_foreign_transactions_neither_hangs_the_native_mode_nor_grows_it",
        || {
            let mut sidecar = test_support::KillOnDrop(
                Command::new(test_support::netns::sidecar_binary())
                    .args([
                        "--ip-address=10.96.0.2",
                        "--setup-iptables",
                        "--firewall=nftables",
                    ])
                    .stderr(std::process::Stdio::null())
                    .spawn()
                    .expect("sidecar"),
            );
            let pid = sidecar.0.id();
            let ours = "apiserver-proxy-10.96.0.2";
            let exact = || {
                Command::new("nft")
                    .args(["list", "table", "inet", ours])
                    .output()
                    .is_ok_and(|o| {
                        String::from_utf8_lossy(&o.stdout)
                            .matches("notrack")
                            .count()
                            == 3
                    })
            };
            assert!(test_support::netns::wait_for(Duration::from_secs(5), exact).is_some());
            block_on(async {
                let mut nft = Nftables::open().expect("socket");
                let mut rss = Vec::new();
                // Three rounds of 3 s, each as many one-table transactions as the socket takes.
                for _ in 0..3 {
                    let until = std::time::Instant::now() + Duration::from_secs(3);
                    let mut count = 0u32;
                    while std::time::Instant::now() < until {
                        let name = format!("burst{}", count % 50);
                        nft.apply(&[table(&name)]).await.expect("add");
                        let delete = Request {
                            family: Family::Inet,
                            flags: 0,
                            message: NfTablesMessage::DeleteTable(TableMessage {
                                attributes: vec![TableAttribute::Name(name)],
                            }),
                        };
                        nft.apply(&[delete]).await.expect("delete");
                        count += 2;
                    }
                    rss.push(rss_kib(pid));
                    eprintln!(
                        "{count} transactions in 3 s; sidecar RSS {} KiB",
                        rss_kib(pid)
                    );
                    assert!(count > 1000, "only {count} transactions in 3 s");
                }
                assert!(
                    sidecar.0.try_wait().expect("wait").is_none(),
                    "the sidecar died"
                );
                // Memory: the third round's no more than 1 MiB above the first two's highest.
                let high = rss[0].max(rss[1]);
                assert!(rss[2] <= high + 1024, "RSS grew: {rss:?}");
            });
            // And it still heals at once.
            run("nft", &[&format!("flush chain inet {ours} output")]);
            assert!(
                test_support::netns::wait_for(Duration::from_secs(2), exact).is_some(),
                "not healed within 2 s after the burst"
            );
        },
    );
}
