// SPDX-FileCopyrightText: 2026 apiserver-proxy contributors
// SPDX-License-Identifier: Apache-2.0

//! The native nftables driver (`--firewall=nftables`): the NOTRACK half of the five rules in
//! tables of the sidecar's own, written over netlink (`nftnl`), with no process spawned.
//!
//! One `inet` table per proxy IP, named after the project and the IP
//! (`apiserver-proxy-10.96.0.2`, `apiserver-proxy-fd00__2`: an IPv6 address's colons become
//! underscores, which nft's syntax accepts in a name). A table per IP maps one to one onto the
//! IP claims of `instance.rs`: two instances with different IPs never write the same table, and
//! a table whose IP no live instance claims is stale and removed. Each table holds two chains at
//! priority raw (-300), `prerouting` and `output`, with the three `notrack` rules of
//! `rules.rs`: incoming to the IP:port, locally originated to it, and the replies from it.
//!
//! Every change is one atomic batch: `add table; delete table; add table; add chain …; add rule
//! …`, so the packet path sees the old contents or the new, never a moment without the rules.
//! A sync reads the ruleset's generation id first: unchanged since the last verified state, and
//! the other IPs' tables spared then still spared (their claims probed, see `instance.rs`), it
//! costs that one round trip; otherwise the table is dumped and compared with what is wanted
//! ([`drift`], pure).
//!
//! The ACCEPT half cannot be written from a table of our own: an `accept` here does not overrule
//! a `drop` in another table's base chain, and nft-only expressions in the tables iptables-nft
//! owns would blind every iptables user on the node. Base chains of other tables with a drop
//! policy at the input or output hook are reported instead ([`foreign_drops`]).

use std::net::IpAddr;
use std::sync::Arc;

use netlink_packet_netfilter::nftables::{ChainMessage, TableAttribute, TableMessage};
use tokio::sync::Mutex;

use super::notrack::{delete_table, drift, foreign_drops, ip_of_table, table_name, table_requests};
use super::{Change, ChangeKind, Wanted};
use crate::instance::{Claims, Look};
use crate::nftnl::{
    Family, Folded, NftError, Nftables, Notifications, Request, Transaction, Transactions,
};

/// What one sync decided, from the dumps: the batch to send and what it changes.
#[derive(Debug, Default)]
pub struct Decision {
    pub requests: Vec<Request>,
    pub changes: Vec<Change>,
}

/// The tables to rewrite and the stale ones to delete. `tables` names every inet table;
/// `drifts` holds, for each wanted IP, how its table differs (`None`: it is missing);
/// `elsewhere` the IPs other live instances keep. Only tables of IPs of `family_v4`'s family
/// are this driver's business.
pub fn decide(
    wanted: &Wanted,
    tables: &[String],
    drifts: &[(IpAddr, Option<Vec<String>>)],
    elsewhere: &[IpAddr],
) -> Decision {
    let mut decision = Decision::default();
    let v4 = wanted.ips.first().is_some_and(IpAddr::is_ipv4);
    for (ip, drift) in drifts {
        let detail = match drift {
            None => "missing".to_string(),
            Some(drift) if drift.is_empty() => continue,
            Some(drift) => drift.join("; "),
        };
        decision
            .requests
            .extend(table_requests(*ip, wanted.port, drift.is_none()));
        decision.changes.push(Change {
            kind: ChangeKind::Inserted,
            rule: format!("table inet {} ({detail})", table_name(*ip)),
            why: Some("connections to and from the local proxy need no conntrack entry"),
        });
    }
    for table in tables {
        let Some(ip) = ip_of_table(table) else {
            continue;
        };
        if ip.is_ipv4() != v4 || wanted.ips.contains(&ip) || elsewhere.contains(&ip) {
            continue;
        }
        decision.requests.extend(delete_table(table));
        decision.changes.push(Change {
            kind: ChangeKind::Stale,
            rule: format!("table inet {table}"),
            why: None,
        });
    }
    decision
}

/// The native driver of one address family. Clones share the socket and the last verified
/// generation.
#[derive(Debug, Clone, Default)]
pub struct Native {
    state: Arc<Mutex<State>>,
    /// The base chains of other tables with a drop policy at the input or output hook, as the
    /// last full look found them.
    drops: Arc<std::sync::Mutex<Vec<String>>>,
}

#[derive(Debug, Default)]
struct State {
    nft: Option<Nftables>,
    /// The generation at which the tables were last found exact, with the IPs of the other
    /// tables then and those of them spared (claimed by other live instances, or waiting out
    /// their grace): a claim that goes, or a grace that ends, needs a full look too.
    verified: Option<(u32, Vec<IpAddr>, Vec<IpAddr>)>,
}

impl State {
    /// The socket, opened on first use and again after a failure.
    fn nft(&mut self) -> Result<&mut Nftables, NftError> {
        let nft = match self.nft.take() {
            Some(nft) => nft,
            None => Nftables::open()?,
        };
        Ok(self.nft.insert(nft))
    }
}

/// The names of the `inet` tables on the node.
async fn inet_table_names(nft: &mut Nftables) -> Result<Vec<String>, NftError> {
    Ok(nft
        .tables(Family::Inet)
        .await?
        .iter()
        .filter_map(|(_, table)| name_of(table))
        .collect())
}

fn name_of(table: &TableMessage) -> Option<String> {
    table
        .attributes
        .iter()
        .find_map(|attribute| match attribute {
            TableAttribute::Name(name) => Some(name.clone()),
            _ => None,
        })
}

impl Native {
    pub fn new() -> Native {
        Native::default()
    }

    /// The netlink port id of the driver's socket, once open: the `port` of its transactions.
    pub fn port(&self) -> Option<u32> {
        let state = self.state.try_lock().ok()?;
        state.nft.as_ref()?.port().ok()
    }

    /// The base chains of other tables with a drop policy at the input or output hook, as the
    /// last sync found them.
    pub fn foreign_drops(&self) -> Vec<String> {
        self.drops
            .lock()
            .map(|drops| drops.clone())
            .unwrap_or_default()
    }

    /// Makes the tables of `wanted` exact and removes the stale ones, in one batch; returns
    /// what it changed. With the generation unchanged since the last exact state, this is one
    /// netlink round trip. After the `first` sync of the process, another IP's table is stale
    /// only once the IP has been unclaimed for the grace.
    pub async fn ensure(
        &self,
        wanted: &Wanted,
        first: bool,
        claims: &Claims,
    ) -> Result<Vec<Change>, NftError> {
        let mut state = self.state.lock().await;
        let look = if first { Look::First } else { Look::Later };
        let result = self.ensure_locked(&mut state, wanted, claims, look).await;
        if result.is_err() {
            // A fresh socket next time: a lost answer must not be read as the next one's.
            state.nft = None;
            state.verified = None;
        }
        result
    }

    async fn ensure_locked(
        &self,
        state: &mut State,
        wanted: &Wanted,
        claims: &Claims,
        look: Look,
    ) -> Result<Vec<Change>, NftError> {
        let generation = state.nft()?.generation().await?;
        if let Some((at, others, spared)) = &state.verified
            && *at == generation
            && claims.kept_elsewhere(others.iter().copied(), look) == *spared
        {
            return Ok(Vec::new());
        }
        let nft = state.nft()?;
        let tables = inet_table_names(nft).await?;
        let mut drifts = Vec::new();
        for ip in &wanted.ips {
            let name = table_name(*ip);
            if !tables.contains(&name) {
                drifts.push((*ip, None));
                continue;
            }
            let chains: Vec<ChainMessage> = nft
                .chains(Family::Inet, Some(&name))
                .await?
                .into_iter()
                .map(|(_, chain)| chain)
                .collect();
            let rules = nft.rules(Family::Inet, &name).await?;
            drifts.push((*ip, Some(drift(*ip, wanted.port, &chains, &rules))));
        }
        let others: Vec<IpAddr> = tables
            .iter()
            .filter_map(|table| ip_of_table(table))
            .filter(|ip| !wanted.ips.contains(ip))
            .collect();
        let elsewhere = claims.kept_elsewhere(others.iter().copied(), look);
        let decision = decide(wanted, &tables, &drifts, &elsewhere);
        let drops = foreign_drops(&nft.chains(Family::Unspec, None).await?);
        self.report_drops(drops);
        if decision.requests.is_empty() {
            state.verified = Some((generation, others, elsewhere));
        } else {
            nft.apply(&decision.requests).await?;
            // Verified again at the next sync: something may have changed in between.
            state.verified = None;
        }
        Ok(decision.changes)
    }

    /// Keeps the foreign drop-policy chains for [`Native::foreign_drops`]; the rule loop
    /// reports them (once for both families).
    fn report_drops(&self, drops: Vec<String>) {
        if let Ok(mut last) = self.drops.lock() {
            *last = drops;
        }
    }

    /// Deletes the tables of `wanted` but those another live instance keeps (`claims`, judged
    /// as `look` says), and the stale ones of this family; returns what it removed.
    pub async fn remove(
        &self,
        wanted: &Wanted,
        claims: &Claims,
        look: Look,
    ) -> Result<Vec<Change>, NftError> {
        let mut state = self.state.lock().await;
        let nft = state.nft()?;
        let tables = inet_table_names(nft).await?;
        let v4 = wanted.ips.first().is_some_and(IpAddr::is_ipv4);
        let ours: Vec<IpAddr> = tables
            .iter()
            .filter_map(|table| ip_of_table(table))
            .filter(|ip| ip.is_ipv4() == v4)
            .collect();
        let elsewhere = claims.kept_elsewhere(ours.iter().copied(), look);
        let mut requests = Vec::new();
        let mut changes = Vec::new();
        for ip in ours.into_iter().filter(|ip| !elsewhere.contains(ip)) {
            let name = table_name(ip);
            requests.extend(delete_table(&name));
            changes.push(Change {
                kind: ChangeKind::Removed,
                rule: format!("table inet {name}"),
                why: None,
            });
        }
        if !requests.is_empty() {
            nft.apply(&requests).await?;
        }
        state.verified = None;
        Ok(changes)
    }

    /// Whether a transaction made by another socket may have touched the tables of this
    /// sidecar, so that a sync should look at once.
    pub fn concerns(transaction: &Transaction, own_port: Option<u32>) -> bool {
        if own_port == Some(transaction.port) {
            return false;
        }
        transaction.unknown
            || transaction.tables.iter().any(|(family, table)| {
                *family == u8::from(Family::Inet) && ip_of_table(table).is_some()
            })
    }
}

/// Why [`Watch::changed`] returned when notifications were lost (ENOBUFS).
pub const NF_TABLES_LOST: &str = "nf_tables notifications lost";

/// The nf_tables notifications a rule loop waits on, folded into transactions.
#[derive(Debug)]
pub struct Watch {
    notifications: Notifications,
    fold: Transactions,
}

impl Watch {
    pub fn subscribe() -> Result<Watch, NftError> {
        Ok(Watch {
            notifications: Notifications::subscribe()?,
            fold: Transactions::default(),
        })
    }

    /// Waits for a transaction that `concerns` says matters, or for lost notifications;
    /// returns why the rules should be looked at. Cancel-safe: a datagram is read whole or not
    /// at all, and the open transaction stays in `self`.
    pub async fn changed(
        &mut self,
        concerns: impl Fn(&Transaction) -> bool,
    ) -> Result<&'static str, NftError> {
        loop {
            for event in self.notifications.next().await? {
                match self.fold.push(event) {
                    Folded::Done(transaction) if concerns(&transaction) => {
                        return Ok("nf_tables change");
                    }
                    Folded::Lost => return Ok(NF_TABLES_LOST),
                    Folded::Done(_) | Folded::Pending => {}
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(text: &str) -> IpAddr {
        text.parse().expect("a test address")
    }

    #[test]
    fn only_drifted_tables_are_rewritten_and_only_unclaimed_ones_are_stale() {
        let wanted = Wanted {
            ips: vec![ip("10.96.0.2"), ip("10.96.0.3")],
            port: 443,
        };
        let tables: Vec<String> = [
            "apiserver-proxy-10.96.0.2",
            "apiserver-proxy-10.96.0.3",
            "apiserver-proxy-10.0.0.1",
            "apiserver-proxy-10.0.0.7",
            "apiserver-proxy-fd00__9",
            "kube-proxy",
        ]
        .map(String::from)
        .into();
        let drifts = vec![
            (ip("10.96.0.2"), Some(vec![])),
            (
                ip("10.96.0.3"),
                Some(vec!["chain output missing".to_string()]),
            ),
        ];
        let decision = decide(&wanted, &tables, &drifts, &[ip("10.0.0.7")]);
        let changes: Vec<(ChangeKind, &str)> = decision
            .changes
            .iter()
            .map(|change| (change.kind, change.rule.as_str()))
            .collect();
        assert_eq!(
            changes,
            [
                (
                    ChangeKind::Inserted,
                    "table inet apiserver-proxy-10.96.0.3 (chain output missing)"
                ),
                (ChangeKind::Stale, "table inet apiserver-proxy-10.0.0.1"),
            ]
        );
        assert_eq!(decision.requests.len(), 8 + 2);
        assert_eq!(
            decision.requests[0].describe(),
            "add table inet apiserver-proxy-10.96.0.3"
        );
        assert_eq!(
            decision.requests[1].describe(),
            "delete table inet apiserver-proxy-10.96.0.3"
        );

        let exact = vec![
            (ip("10.96.0.2"), Some(vec![])),
            (ip("10.96.0.3"), Some(vec![])),
        ];
        assert!(
            decide(&wanted, &tables[..2], &exact, &[])
                .requests
                .is_empty()
        );
        let missing = vec![(ip("10.96.0.2"), None), (ip("10.96.0.3"), Some(vec![]))];
        let decision = decide(&wanted, &tables[1..2], &missing, &[]);
        assert_eq!(
            decision.changes[0].rule,
            "table inet apiserver-proxy-10.96.0.2 (missing)"
        );
    }

    #[test]
    fn only_foreign_changes_to_the_sidecars_tables_concern_it() {
        let transaction = |tables: &[(Family, &str)], unknown: bool, port: u32| Transaction {
            tables: tables
                .iter()
                .map(|(f, t)| (u8::from(*f), t.to_string()))
                .collect(),
            unknown,
            port,
            ..Transaction::default()
        };
        let ours = (Family::Inet, "apiserver-proxy-10.96.0.2");
        let cases = [
            ("a flush of our table", transaction(&[ours], false, 7), true),
            ("our own batch", transaction(&[ours], false, 42), false),
            (
                "iptables-nft's raw table",
                transaction(&[(Family::IPv4, "raw")], false, 7),
                false,
            ),
            ("a set somewhere", transaction(&[], true, 7), true),
            (
                "an ip table of that name",
                transaction(&[(Family::IPv4, ours.1)], false, 7),
                false,
            ),
        ];
        for (case, transaction, concerns) in cases {
            assert_eq!(Native::concerns(&transaction, Some(42)), concerns, "{case}");
        }
    }
}
