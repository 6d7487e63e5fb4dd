// SPDX-FileCopyrightText: 2026 apiserver-proxy contributors
// SPDX-License-Identifier: Apache-2.0

//! What an nf_tables notification means to a keeper of rules, and which notifications make
//! one transaction. Pure.

use std::collections::BTreeSet;

use netlink_packet_core::NetlinkPayload;
use netlink_packet_netfilter::nftables::{
    ChainAttribute, ChainMessage, GenAttribute, GenMessage, NfTablesMessage, RuleMessage,
    TableAttribute, TableMessage,
};
use netlink_packet_netfilter::{NetfilterMessage, NetfilterMessageInner};

use super::Family;
use super::wire::{SUBSYS_NFTABLES, messages, parse, rule_names};

/// Whether an object was added or deleted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    New,
    Del,
}

/// One nf_tables notification, reduced to what a keeper of rules acts on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    Table {
        op: Op,
        family: Family,
        table: String,
    },
    Chain {
        op: Op,
        family: Family,
        table: String,
        chain: String,
    },
    Rule {
        op: Op,
        family: Family,
        table: String,
        chain: String,
    },
    /// Another kind of object changed (a set, an element, a stateful object, a flowtable).
    Other { family: Family },
    /// The end of a transaction: every change since the previous one belongs to it.
    /// `port` is the netlink port id of the socket that sent the transaction (0: the kernel),
    /// the sure way to recognise one's own; `pid` is the sending thread's id.
    NewGen {
        id: u32,
        pid: u32,
        process: String,
        port: u32,
    },
    /// The kernel dropped notifications (ENOBUFS): what changed cannot be known.
    Overrun,
    /// A notification that could not be decoded: anything may have changed.
    Undecodable,
}

impl Event {
    /// The table a change touched, when the notification names one.
    pub fn table(&self) -> Option<(Family, &str)> {
        match self {
            Event::Table { family, table, .. }
            | Event::Chain { family, table, .. }
            | Event::Rule { family, table, .. } => Some((*family, table)),
            _ => None,
        }
    }
}

fn table_event(op: Op, family: Family, message: &TableMessage) -> Event {
    let name = message.attributes.iter().find_map(|a| match a {
        TableAttribute::Name(name) => Some(name.clone()),
        _ => None,
    });
    match name {
        Some(table) => Event::Table { op, family, table },
        None => Event::Undecodable,
    }
}

fn chain_event(op: Op, family: Family, message: &ChainMessage) -> Event {
    let mut table = None;
    let mut chain = None;
    for attribute in &message.attributes {
        match attribute {
            ChainAttribute::Table(name) => table = Some(name.clone()),
            ChainAttribute::Name(name) => chain = Some(name.clone()),
            _ => {}
        }
    }
    match (table, chain) {
        (Some(table), Some(chain)) => Event::Chain {
            op,
            family,
            table,
            chain,
        },
        _ => Event::Undecodable,
    }
}

fn rule_event(op: Op, family: Family, message: &RuleMessage) -> Event {
    match rule_names(&message.attributes) {
        (Some(table), Some(chain)) => Event::Rule {
            op,
            family,
            table,
            chain,
        },
        _ => Event::Undecodable,
    }
}

pub(super) fn gen_event(message: &GenMessage, port: u32) -> Event {
    let (mut id, mut pid, mut process) = (None, 0, String::new());
    for attribute in &message.attributes {
        match attribute {
            GenAttribute::Id(value) => id = Some(*value),
            GenAttribute::ProcPid(value) => pid = *value,
            GenAttribute::ProcName(name) => process = name.clone(),
            _ => {}
        }
    }
    match id {
        Some(id) => Event::NewGen {
            id,
            pid,
            process,
            port,
        },
        None => Event::Undecodable,
    }
}

/// The event one nf_tables message stands for.
fn event_of(family: Family, port: u32, message: &NfTablesMessage) -> Event {
    match message {
        NfTablesMessage::NewTable(m) => table_event(Op::New, family, m),
        NfTablesMessage::DeleteTable(m) => table_event(Op::Del, family, m),
        NfTablesMessage::NewChain(m) => chain_event(Op::New, family, m),
        NfTablesMessage::DeleteChain(m) => chain_event(Op::Del, family, m),
        NfTablesMessage::NewRule(m) => rule_event(Op::New, family, m),
        NfTablesMessage::DeleteRule(m) => rule_event(Op::Del, family, m),
        NfTablesMessage::NewGen(m) => gen_event(m, port),
        _ => Event::Other { family },
    }
}

/// The events in one datagram read from the notification group. Messages of other netfilter
/// subsystems are skipped.
pub fn decode(datagram: &[u8]) -> Vec<Event> {
    let mut events = Vec::new();
    for message in messages(datagram) {
        let Ok(message) = message else {
            events.push(Event::Undecodable);
            break;
        };
        // The subsystem is the high byte of the type: look before decoding the rest.
        let subsystem = message
            .get(4..6)
            .map(|t| u16::from_ne_bytes([t[0], t[1]]) >> 8);
        if subsystem != Some(SUBSYS_NFTABLES) {
            continue;
        }
        let parsed = parse(message).map(|m| (m.header.port_number, m.payload));
        events.push(match parsed {
            Some((
                port,
                NetlinkPayload::InnerMessage(NetfilterMessage {
                    header,
                    inner: NetfilterMessageInner::NfTables(inner),
                    ..
                }),
            )) => event_of(header.family, port, &inner),
            _ => Event::Undecodable,
        });
    }
    events
}

/// One nf_tables transaction as the notifications tell it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Transaction {
    /// The ruleset's generation after it.
    pub generation: u32,
    /// The thread that made it, its process's name, and the netlink port id of its socket.
    pub pid: u32,
    pub process: String,
    pub port: u32,
    /// The tables it touched (family, name).
    pub tables: BTreeSet<(u8, String)>,
    /// Whether it touched something no notification named (or more tables than are kept).
    pub unknown: bool,
}

impl Transaction {
    /// Whether the transaction touched `table` of `family`, or possibly did.
    pub fn touches(&self, family: Family, table: &str) -> bool {
        self.unknown || self.tables.contains(&(u8::from(family), table.to_string()))
    }
}

/// The most tables one transaction remembers; past it the transaction counts as touching all.
const MAX_TABLES: usize = 64;

/// Folds events into transactions. Memory is bounded: a transaction keeps at most
/// [`MAX_TABLES`] names.
#[derive(Debug, Default)]
pub struct Transactions {
    open: Transaction,
}

/// What one event completes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Folded {
    /// The event belongs to a transaction still open.
    Pending,
    /// A transaction ended.
    Done(Transaction),
    /// Notifications were lost: everything must be read again.
    Lost,
}

impl Transactions {
    pub fn push(&mut self, event: Event) -> Folded {
        match event {
            Event::NewGen {
                id,
                pid,
                process,
                port,
            } => {
                let mut done = std::mem::take(&mut self.open);
                done.generation = id;
                done.pid = pid;
                done.process = process;
                done.port = port;
                Folded::Done(done)
            }
            Event::Overrun => {
                self.open = Transaction::default();
                Folded::Lost
            }
            Event::Other { .. } | Event::Undecodable => {
                self.open.unknown = true;
                Folded::Pending
            }
            change => {
                if let Some((family, table)) = change.table() {
                    let key = (u8::from(family), table.to_string());
                    if self.open.tables.len() < MAX_TABLES || self.open.tables.contains(&key) {
                        self.open.tables.insert(key);
                    } else {
                        self.open.unknown = true;
                    }
                }
                Folded::Pending
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use netlink_packet_core::NLM_F_REQUEST;
    use netlink_packet_netfilter::nftables::{
        ChainAttribute, ChainMessage, GenAttribute, GenMessage, NfTablesMessage, RuleAttribute,
        RuleMessage, SetAttribute, SetMessage, TableAttribute, TableMessage,
    };

    use super::*;
    use crate::nftnl::wire::{append, framed};

    fn datagram(messages: &[(Family, NfTablesMessage)]) -> Vec<u8> {
        let mut bytes = Vec::new();
        for (sequence, (family, message)) in (0..).zip(messages) {
            let message = framed(*family, 0, NLM_F_REQUEST, sequence, message.clone());
            append(&mut bytes, &message);
        }
        bytes
    }

    fn table(name: &str) -> TableMessage {
        TableMessage {
            attributes: vec![TableAttribute::Name(name.into())],
        }
    }

    fn chain(table: &str, name: &str) -> ChainMessage {
        ChainMessage {
            attributes: vec![
                ChainAttribute::Table(table.into()),
                ChainAttribute::Name(name.into()),
            ],
        }
    }

    fn rule(table: &str, chain: &str) -> RuleMessage {
        RuleMessage {
            attributes: vec![
                RuleAttribute::Table(table.into()),
                RuleAttribute::Chain(chain.into()),
                RuleAttribute::Handle(7),
            ],
        }
    }

    fn generation(id: u32, pid: u32, process: &str) -> GenMessage {
        GenMessage {
            attributes: vec![
                GenAttribute::Id(id),
                GenAttribute::ProcPid(pid),
                GenAttribute::ProcName(process.into()),
            ],
        }
    }

    fn new_table(family: Family, name: &str) -> Event {
        Event::Table {
            op: Op::New,
            family,
            table: name.into(),
        }
    }

    #[test]
    fn each_kind_of_notification_decodes_to_its_event() {
        let cases: Vec<(&str, Family, NfTablesMessage, Event)> = vec![
            (
                "new table",
                Family::Inet,
                NfTablesMessage::NewTable(table("apiserver-proxy")),
                new_table(Family::Inet, "apiserver-proxy"),
            ),
            (
                "deleted table",
                Family::IPv4,
                NfTablesMessage::DeleteTable(table("raw")),
                Event::Table {
                    op: Op::Del,
                    family: Family::IPv4,
                    table: "raw".into(),
                },
            ),
            (
                "flushed chain's deletion",
                Family::IPv4,
                NfTablesMessage::DeleteChain(chain("raw", "PREROUTING")),
                Event::Chain {
                    op: Op::Del,
                    family: Family::IPv4,
                    table: "raw".into(),
                    chain: "PREROUTING".into(),
                },
            ),
            (
                "new rule",
                Family::IPv6,
                NfTablesMessage::NewRule(rule("filter", "INPUT")),
                Event::Rule {
                    op: Op::New,
                    family: Family::IPv6,
                    table: "filter".into(),
                    chain: "INPUT".into(),
                },
            ),
            (
                "deleted rule",
                Family::IPv4,
                NfTablesMessage::DeleteRule(rule("filter", "OUTPUT")),
                Event::Rule {
                    op: Op::Del,
                    family: Family::IPv4,
                    table: "filter".into(),
                    chain: "OUTPUT".into(),
                },
            ),
            (
                "end of a transaction",
                Family::Unspec,
                NfTablesMessage::NewGen(generation(42, 1234, "iptables-nft")),
                Event::NewGen {
                    id: 42,
                    pid: 1234,
                    process: "iptables-nft".into(),
                    port: 0,
                },
            ),
            (
                "a set is another kind of object",
                Family::Inet,
                NfTablesMessage::NewSet(SetMessage {
                    attributes: vec![SetAttribute::Table("t".into())],
                }),
                Event::Other {
                    family: Family::Inet,
                },
            ),
            (
                "a rule without its table cannot be placed",
                Family::IPv4,
                NfTablesMessage::NewRule(RuleMessage {
                    attributes: vec![RuleAttribute::Chain("INPUT".into())],
                }),
                Event::Undecodable,
            ),
            (
                "a generation without its id",
                Family::Unspec,
                NfTablesMessage::NewGen(GenMessage {
                    attributes: vec![GenAttribute::ProcPid(1)],
                }),
                Event::Undecodable,
            ),
        ];
        for (case, family, message, wanted) in cases {
            assert_eq!(
                decode(&datagram(&[(family, message)])),
                vec![wanted],
                "{case}"
            );
        }
    }

    #[test]
    fn a_datagram_of_several_messages_keeps_their_order() {
        let mut bytes = datagram(&[
            (Family::Inet, NfTablesMessage::NewTable(table("a"))),
            (Family::IPv4, NfTablesMessage::NewTable(table("b"))),
            (
                Family::Unspec,
                NfTablesMessage::NewGen(generation(9, 1, "nft")),
            ),
        ]);
        // The sender's port id, as the kernel puts it in the last message's header.
        let last = bytes.len()
            - datagram(&[(
                Family::Unspec,
                NfTablesMessage::NewGen(generation(9, 1, "nft")),
            )])
            .len();
        bytes[last + 12..last + 16].copy_from_slice(&4242u32.to_ne_bytes());
        assert_eq!(
            decode(&bytes),
            vec![
                new_table(Family::Inet, "a"),
                new_table(Family::IPv4, "b"),
                Event::NewGen {
                    id: 9,
                    pid: 1,
                    process: "nft".into(),
                    port: 4242,
                },
            ]
        );
    }

    #[test]
    fn other_subsystems_are_skipped_and_damage_is_reported() {
        let mut bytes = datagram(&[(Family::Inet, NfTablesMessage::NewTable(table("a")))]);
        // The same message as a conntrack one (subsystem 1): not ours to read.
        let mut conntrack = bytes.clone();
        conntrack[5] = 1;
        assert_eq!(decode(&conntrack), vec![]);
        // A truncated tail after a good message.
        let whole = bytes.len();
        bytes.extend_from_slice(&bytes.clone()[..whole / 2]);
        assert_eq!(
            decode(&bytes),
            vec![new_table(Family::Inet, "a"), Event::Undecodable]
        );
        // Garbage that claims to be an nf_tables message.
        let mut garbage = datagram(&[(Family::Inet, NfTablesMessage::NewTable(table("a")))]);
        garbage.truncate(20);
        garbage[0] = 20;
        garbage[16..20].copy_from_slice(&[0xff, 0xff, 0xff, 0xff]);
        assert_eq!(decode(&garbage), vec![Event::Undecodable]);
    }

    fn gen_of(id: u32) -> Event {
        Event::NewGen {
            id,
            pid: 77,
            process: "iptables-nft-re".into(),
            port: 9,
        }
    }

    #[test]
    fn transactions_gather_the_tables_their_changes_touched() {
        let raw = Event::Rule {
            op: Op::Del,
            family: Family::IPv4,
            table: "raw".into(),
            chain: "PREROUTING".into(),
        };
        let mut transactions = Transactions::default();
        assert_eq!(transactions.push(raw.clone()), Folded::Pending);
        assert_eq!(transactions.push(raw), Folded::Pending);
        assert_eq!(
            transactions.push(new_table(Family::Inet, "kube-proxy")),
            Folded::Pending
        );
        let Folded::Done(done) = transactions.push(gen_of(5)) else {
            panic!("a generation ends the transaction");
        };
        assert_eq!((done.generation, done.pid, done.port), (5, 77, 9));
        assert_eq!(done.process, "iptables-nft-re");
        assert!(done.touches(Family::IPv4, "raw"));
        assert!(done.touches(Family::Inet, "kube-proxy"));
        assert!(!done.touches(Family::IPv6, "raw"));
        assert!(!done.touches(Family::IPv4, "filter"));
        assert!(!done.unknown);

        // The next transaction starts empty.
        let Folded::Done(empty) = transactions.push(gen_of(6)) else {
            panic!("a generation ends the transaction");
        };
        assert!(empty.tables.is_empty() && !empty.unknown);
    }

    #[test]
    fn what_cannot_be_named_touches_everything_and_an_overrun_loses_the_open_one() {
        let cases: Vec<(&str, Vec<Event>, bool)> = vec![
            (
                "a set",
                vec![Event::Other {
                    family: Family::Inet,
                }],
                true,
            ),
            ("undecodable", vec![Event::Undecodable], true),
            (
                "more tables than kept",
                (0..=MAX_TABLES)
                    .map(|n| new_table(Family::Inet, &format!("t{n}")))
                    .collect(),
                true,
            ),
            (
                "as many tables as kept",
                (0..MAX_TABLES)
                    .map(|n| new_table(Family::Inet, &format!("t{n}")))
                    .collect(),
                false,
            ),
        ];
        for (case, events, unknown) in cases {
            let mut transactions = Transactions::default();
            for event in events {
                assert_eq!(transactions.push(event), Folded::Pending, "{case}");
            }
            let Folded::Done(done) = transactions.push(gen_of(1)) else {
                panic!("{case}: a generation ends the transaction");
            };
            assert_eq!(done.unknown, unknown, "{case}");
            assert_eq!(done.touches(Family::IPv4, "raw"), unknown, "{case}");
        }

        let mut transactions = Transactions::default();
        transactions.push(Event::Undecodable);
        assert_eq!(transactions.push(Event::Overrun), Folded::Lost);
        let Folded::Done(after) = transactions.push(gen_of(2)) else {
            panic!("a generation ends the transaction");
        };
        assert!(!after.unknown, "the overrun discarded the open transaction");
    }
}
