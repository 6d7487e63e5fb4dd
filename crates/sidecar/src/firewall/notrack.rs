// SPDX-FileCopyrightText: 2026 apiserver-proxy contributors
// SPDX-License-Identifier: Apache-2.0

//! The native nftables mode's tables, pure: their names, the chains and the three `notrack`
//! rules of each (the NOTRACK half of `rules.rs`, with the same reasons), the batch that
//! writes one whole, how a dump differs from it, and the base chains of other tables whose
//! drop policy its untracked packets must pass. The driver is `nftables.rs`.

use std::net::IpAddr;

use netlink_packet_core::{NLM_F_APPEND, NLM_F_CREATE};
use netlink_packet_netfilter::nftables::{
    ChainAttribute, ChainMessage, Cmp, DataAttribute, ExpressionAttribute, Expressions, Hook,
    HookNumber, InetHookNumber, ListAttribute, Meta, MetaKey, NfTablesMessage, Operator, Payload,
    Register, RuleAttribute, RuleMessage, TableAttribute, TableMessage,
};

use crate::nftnl::{Family, Request};

/// How every table of the sidecar's is named: this, then the IP.
pub const TABLE_PREFIX: &str = "apiserver-proxy-";
/// The priority of the chains: `raw`, before conntrack (-200) sees a packet.
pub const PRIORITY_RAW: i32 = -300;
/// `NF_ACCEPT` and `NF_DROP`, a base chain's policies.
const POLICY_ACCEPT: u32 = 1;
const POLICY_DROP: u32 = 0;
/// `NFPROTO_IPV4`, `NFPROTO_IPV6` as `meta nfproto` compares them; `IPPROTO_TCP`.
const NFPROTO_IPV4: u8 = 2;
const NFPROTO_IPV6: u8 = 10;
const IPPROTO_TCP: u8 = 6;
/// Payload bases: the network and the transport header.
const BASE_NETWORK: u32 = 1;
const BASE_TRANSPORT: u32 = 2;
/// libnftnl's user data type for a rule's comment, which `nft list` shows.
const UDATA_RULE_COMMENT: u8 = 0;

/// The table of `ip`.
pub fn table_name(ip: IpAddr) -> String {
    format!("{TABLE_PREFIX}{}", ip.to_string().replace(':', "_"))
}

/// The IP a table of the sidecar's is for; `None` for any other table.
pub fn ip_of_table(name: &str) -> Option<IpAddr> {
    name.strip_prefix(TABLE_PREFIX)?
        .replace('_', ":")
        .parse()
        .ok()
}

/// Which side of a connection a rule matches the proxy on (as in `rules.rs`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Side {
    /// `ip daddr IP tcp dport PORT`.
    To,
    /// `ip saddr IP tcp sport PORT`.
    From,
}

/// One of the three `notrack` rules.
struct Notrack {
    chain: &'static str,
    side: Side,
    why: &'static str,
}

/// The chains, by name and hook.
const CHAINS: [(&str, InetHookNumber); 2] = [
    ("prerouting", InetHookNumber::PreRouting),
    ("output", InetHookNumber::LocalOut),
];

/// The NOTRACK half of the five rules, with the same reasons.
const NOTRACK: [Notrack; 3] = [
    Notrack {
        chain: "prerouting",
        side: Side::To,
        why: "incoming connections to the local proxy need no conntrack entry",
    },
    Notrack {
        chain: "output",
        side: Side::To,
        why: "connections from this host to the local proxy need no conntrack entry",
    },
    Notrack {
        chain: "output",
        side: Side::From,
        why: "replies from the local proxy need no conntrack entry",
    },
];

fn expression(expression: Expressions) -> ListAttribute<ExpressionAttribute> {
    expression.into()
}

fn load_meta(key: MetaKey) -> ListAttribute<ExpressionAttribute> {
    // In the order the kernel dumps them, so a dump compares equal.
    expression(Expressions::Meta(vec![
        Meta::Key(key),
        Meta::DestinationRegister(Register::Reg1),
    ]))
}

fn load_payload(base: u32, offset: u32, len: u32) -> ListAttribute<ExpressionAttribute> {
    expression(Expressions::Payload(vec![
        Payload::DestinationRegister(Register::Reg1),
        Payload::Base(base),
        Payload::Offset(offset),
        Payload::Len(len),
    ]))
}

fn equals(value: Vec<u8>) -> ListAttribute<ExpressionAttribute> {
    expression(Expressions::Cmp(vec![
        Cmp::SourceRegister(Register::Reg1),
        Cmp::Op(Operator::Equal),
        Cmp::Data(DataAttribute::Value(value)),
    ]))
}

/// The expressions of `ip daddr IP tcp dport PORT notrack` (or saddr/sport) in an inet table.
fn rule_expressions(ip: IpAddr, port: u16, side: Side) -> Vec<ListAttribute<ExpressionAttribute>> {
    let (nfproto, address, offset) = match (ip, side) {
        (IpAddr::V4(ip), Side::To) => (NFPROTO_IPV4, ip.octets().to_vec(), 16),
        (IpAddr::V4(ip), Side::From) => (NFPROTO_IPV4, ip.octets().to_vec(), 12),
        (IpAddr::V6(ip), Side::To) => (NFPROTO_IPV6, ip.octets().to_vec(), 24),
        (IpAddr::V6(ip), Side::From) => (NFPROTO_IPV6, ip.octets().to_vec(), 8),
    };
    let port_offset = match side {
        Side::To => 2,
        Side::From => 0,
    };
    let address_len = address.len() as u32;
    vec![
        load_meta(MetaKey::Nfproto),
        equals(vec![nfproto]),
        load_meta(MetaKey::L4Proto),
        equals(vec![IPPROTO_TCP]),
        load_payload(BASE_NETWORK, offset, address_len),
        equals(address),
        load_payload(BASE_TRANSPORT, port_offset, 2),
        equals(port.to_be_bytes().to_vec()),
        ListAttribute::Element(vec![ExpressionAttribute::Name("notrack".into())]),
    ]
}

/// A rule as nft would print it, for logs.
fn rule_text(ip: IpAddr, port: u16, side: Side) -> String {
    let family = if ip.is_ipv4() { "ip" } else { "ip6" };
    match side {
        Side::To => format!("{family} daddr {ip} tcp dport {port} notrack"),
        Side::From => format!("{family} saddr {ip} tcp sport {port} notrack"),
    }
}

/// A comment as libnftnl stores it in a rule's user data: type, length, text and its NUL.
fn comment(text: &str) -> Vec<u8> {
    let text = &text.as_bytes()[..text.len().min(254)];
    let mut data = vec![UDATA_RULE_COMMENT, text.len() as u8 + 1];
    data.extend_from_slice(text);
    data.push(0);
    data
}

fn request(flags: u16, message: NfTablesMessage) -> Request {
    Request {
        family: Family::Inet,
        flags,
        message,
    }
}

fn table_message(name: &str) -> TableMessage {
    TableMessage {
        attributes: vec![TableAttribute::Name(name.to_string())],
    }
}

/// The requests that delete the table `name`, whether it exists or not: adding an existing
/// table changes nothing, so the delete always finds it.
pub fn delete_table(name: &str) -> [Request; 2] {
    [
        request(NLM_F_CREATE, NfTablesMessage::NewTable(table_message(name))),
        request(0, NfTablesMessage::DeleteTable(table_message(name))),
    ]
}

/// The requests that make the table of `ip` exactly what is wanted, whatever it held; when it
/// was found `missing`, without deleting it first. (Closing a netlink socket waits for the
/// kernel to free what its transactions deleted, an RCU grace period: 10-20 ms, which a
/// one-shot run on a fresh node need not pay.)
pub fn table_requests(ip: IpAddr, port: u16, missing: bool) -> Vec<Request> {
    let name = table_name(ip);
    let mut requests = if missing {
        Vec::new()
    } else {
        delete_table(&name).to_vec()
    };
    requests.push(request(
        NLM_F_CREATE,
        NfTablesMessage::NewTable(table_message(&name)),
    ));
    for (chain, hook) in CHAINS {
        requests.push(request(
            NLM_F_CREATE,
            NfTablesMessage::NewChain(ChainMessage {
                attributes: vec![
                    ChainAttribute::Table(name.clone()),
                    ChainAttribute::Name(chain.to_string()),
                    ChainAttribute::Hook(vec![
                        Hook::Number(HookNumber::Inet(hook)),
                        Hook::Priority(PRIORITY_RAW as u32),
                    ]),
                    ChainAttribute::Policy(POLICY_ACCEPT),
                    ChainAttribute::Type("filter".into()),
                ],
            }),
        ));
    }
    for rule in &NOTRACK {
        requests.push(request(
            NLM_F_CREATE | NLM_F_APPEND,
            NfTablesMessage::NewRule(RuleMessage {
                attributes: vec![
                    RuleAttribute::Table(name.clone()),
                    RuleAttribute::Chain(rule.chain.to_string()),
                    RuleAttribute::Expressions(rule_expressions(ip, port, rule.side)),
                    RuleAttribute::UserData(comment(&format!(
                        "{}{}",
                        crate::rules::COMMENT_PREFIX,
                        rule.why
                    ))),
                ],
            }),
        ));
    }
    requests
}

/// A chain as a dump shows it: name, hook, priority, type and policy.
#[derive(Debug, Clone, PartialEq, Eq)]
struct ChainShape {
    name: String,
    hook: Option<HookNumber>,
    priority: Option<u32>,
    kind: Option<String>,
    policy: Option<u32>,
}

fn chain_shape(chain: &ChainMessage) -> (Option<String>, ChainShape) {
    let mut table = None;
    let mut shape = ChainShape {
        name: String::new(),
        hook: None,
        priority: None,
        kind: None,
        policy: None,
    };
    for attribute in &chain.attributes {
        match attribute {
            ChainAttribute::Table(name) => table = Some(name.clone()),
            ChainAttribute::Name(name) => shape.name = name.clone(),
            ChainAttribute::Type(kind) => shape.kind = Some(kind.clone()),
            ChainAttribute::Policy(policy) => shape.policy = Some(*policy),
            ChainAttribute::Hook(hooks) => {
                for hook in hooks {
                    match hook {
                        Hook::Number(number) => shape.hook = Some(*number),
                        Hook::Priority(priority) => shape.priority = Some(*priority),
                        _ => {}
                    }
                }
            }
            _ => {}
        }
    }
    (table, shape)
}

/// How the dumped chains and rules of the table of `ip` differ from what is wanted: one line
/// per difference, none when the table is exact. `chains` and `rules` are the table's own.
pub fn drift(ip: IpAddr, port: u16, chains: &[ChainMessage], rules: &[RuleMessage]) -> Vec<String> {
    let mut differences = Vec::new();
    let shapes: Vec<ChainShape> = chains.iter().map(|chain| chain_shape(chain).1).collect();
    for (name, hook) in CHAINS {
        let wanted = ChainShape {
            name: name.to_string(),
            hook: Some(HookNumber::Inet(hook)),
            priority: Some(PRIORITY_RAW as u32),
            kind: Some("filter".into()),
            policy: Some(POLICY_ACCEPT),
        };
        match shapes.iter().find(|shape| shape.name == name) {
            None => differences.push(format!("chain {name} missing")),
            Some(shape) if *shape != wanted => {
                differences.push(format!(
                    "chain {name} is not a filter chain at priority raw accepting"
                ));
            }
            Some(_) => {}
        }
    }
    for shape in &shapes {
        if !CHAINS.iter().any(|(name, _)| *name == shape.name) {
            differences.push(format!("chain {} not ours", shape.name));
        }
    }
    for (chain, _) in CHAINS {
        let found: Vec<&Vec<ListAttribute<ExpressionAttribute>>> = rules
            .iter()
            .filter(|rule| {
                rule.attributes
                    .contains(&RuleAttribute::Chain(chain.to_string()))
            })
            .filter_map(|rule| {
                rule.attributes
                    .iter()
                    .find_map(|attribute| match attribute {
                        RuleAttribute::Expressions(expressions) => Some(expressions),
                        _ => None,
                    })
            })
            .collect();
        let wanted: Vec<(Side, Vec<ListAttribute<ExpressionAttribute>>)> = NOTRACK
            .iter()
            .filter(|rule| rule.chain == chain)
            .map(|rule| (rule.side, rule_expressions(ip, port, rule.side)))
            .collect();
        for (side, expressions) in &wanted {
            match found.iter().filter(|found| **found == expressions).count() {
                1 => {}
                0 => differences.push(format!(
                    "rule {} missing in {chain}",
                    rule_text(ip, port, *side)
                )),
                n => differences.push(format!(
                    "rule {} {n} times in {chain}",
                    rule_text(ip, port, *side)
                )),
            }
        }
        let foreign = found
            .iter()
            .filter(|found| !wanted.iter().any(|(_, expressions)| expressions == **found))
            .count();
        if foreign > 0 {
            differences.push(format!("{foreign} rule(s) in {chain} not ours"));
        }
    }
    differences
}

/// The base chains of other tables that drop by policy what reaches the input or output hook,
/// as `family table chain (hook)`: untracked packets to and from the proxy pass there only if
/// those tables accept them.
pub fn foreign_drops(chains: &[(Family, ChainMessage)]) -> Vec<String> {
    let mut drops: Vec<String> = chains
        .iter()
        .filter(|(family, _)| matches!(family, Family::IPv4 | Family::IPv6 | Family::Inet))
        .filter_map(|(family, chain)| {
            let (table, shape) = chain_shape(chain);
            let table = table?;
            let hook = match shape.hook? {
                HookNumber::Inet(InetHookNumber::LocalIn) => "input",
                HookNumber::Inet(InetHookNumber::LocalOut) => "output",
                _ => return None,
            };
            let ours = ip_of_table(&table).is_some();
            (shape.policy == Some(POLICY_DROP) && !ours).then(|| {
                format!(
                    "{} {table} {} ({hook})",
                    crate::nftnl::family_name(*family),
                    shape.name
                )
            })
        })
        .collect();
    drops.sort();
    drops.dedup();
    drops
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(text: &str) -> IpAddr {
        text.parse().expect("a test address")
    }

    /// The chains and rules a batch of [`table_requests`] writes, as a dump returns them.
    fn written(ip: IpAddr, port: u16) -> (Vec<ChainMessage>, Vec<RuleMessage>) {
        let mut chains = Vec::new();
        let mut rules = Vec::new();
        for request in table_requests(ip, port, false) {
            match request.message {
                NfTablesMessage::NewChain(chain) => chains.push(chain),
                NfTablesMessage::NewRule(rule) => rules.push(rule),
                _ => {}
            }
        }
        (chains, rules)
    }

    #[test]
    fn a_table_is_named_after_its_ip_and_read_back() {
        let cases = [
            ("10.96.0.2", "apiserver-proxy-10.96.0.2"),
            ("fd00::2", "apiserver-proxy-fd00__2"),
            ("fd00:0:0::10:96:0:2", "apiserver-proxy-fd00::10:96:0:2"),
            ("::ffff:10.0.0.1", "apiserver-proxy-__ffff_10.0.0.1"),
        ];
        for (address, name) in cases {
            let name = name.replace("fd00::10:96:0:2", "fd00__10_96_0_2");
            assert_eq!(table_name(ip(address)), name, "{address}");
            assert_eq!(ip_of_table(&name), Some(ip(address)), "{name}");
        }
        for other in [
            "filter",
            "kube-proxy",
            "apiserver-proxy",
            "apiserver-proxy-x",
            "apiserver-proxy-10.96.0.2.1",
        ] {
            assert_eq!(ip_of_table(other), None, "{other}");
        }
    }

    #[test]
    fn the_batch_replaces_the_whole_table_at_once() {
        let fresh: Vec<String> = table_requests(ip("10.96.0.2"), 443, true)
            .iter()
            .map(Request::describe)
            .collect();
        assert_eq!(fresh[0], "add table inet apiserver-proxy-10.96.0.2");
        assert_eq!(fresh.len(), 6, "no delete for a missing table: {fresh:?}");
        let described: Vec<String> = table_requests(ip("10.96.0.2"), 443, false)
            .iter()
            .map(Request::describe)
            .collect();
        let table = "inet apiserver-proxy-10.96.0.2";
        assert_eq!(
            described,
            [
                format!("add table {table}"),
                format!("delete table {table}"),
                format!("add table {table}"),
                format!("add chain {table} prerouting"),
                format!("add chain {table} output"),
                format!("add rule {table} prerouting"),
                format!("add rule {table} output"),
                format!("add rule {table} output"),
            ]
        );
    }

    #[test]
    fn what_was_written_compares_exact_and_every_drift_is_named() {
        let proxy = ip("10.96.0.2");
        let (chains, rules) = written(proxy, 443);
        assert_eq!(drift(proxy, 443, &chains, &rules), Vec::<String>::new());
        let (chains6, rules6) = written(ip("fd00::2"), 443);
        assert_eq!(
            drift(ip("fd00::2"), 443, &chains6, &rules6),
            Vec::<String>::new()
        );

        let without = |index: usize| {
            let mut rules = rules.clone();
            rules.remove(index);
            rules
        };
        let mut doubled = rules.clone();
        doubled.push(rules[0].clone());
        let mut foreign = rules.clone();
        foreign.push(RuleMessage {
            attributes: vec![
                RuleAttribute::Chain("output".into()),
                RuleAttribute::Expressions(rule_expressions(ip("10.0.0.9"), 443, Side::To)),
            ],
        });
        let mut low_priority = chains.clone();
        if let Some(ChainAttribute::Hook(hooks)) = low_priority[0].attributes.get_mut(2) {
            hooks[1] = Hook::Priority(0);
        }
        let mut dropping = chains.clone();
        dropping[1].attributes[3] = ChainAttribute::Policy(POLICY_DROP);
        /// A case: its name, the chains and rules dumped, the differences wanted.
        type Case<'a> = (&'a str, Vec<ChainMessage>, Vec<RuleMessage>, Vec<&'a str>);
        let cases: Vec<Case> = vec![
            (
                "flushed",
                chains.clone(),
                vec![],
                vec![
                    "rule ip daddr 10.96.0.2 tcp dport 443 notrack missing in prerouting",
                    "rule ip daddr 10.96.0.2 tcp dport 443 notrack missing in output",
                    "rule ip saddr 10.96.0.2 tcp sport 443 notrack missing in output",
                ],
            ),
            (
                "one rule deleted",
                chains.clone(),
                without(2),
                vec!["rule ip saddr 10.96.0.2 tcp sport 443 notrack missing in output"],
            ),
            (
                "a chain deleted",
                chains[1..].to_vec(),
                rules[1..].to_vec(),
                vec![
                    "chain prerouting missing",
                    "rule ip daddr 10.96.0.2 tcp dport 443 notrack missing in prerouting",
                ],
            ),
            (
                "a rule twice",
                chains.clone(),
                doubled,
                vec!["rule ip daddr 10.96.0.2 tcp dport 443 notrack 2 times in prerouting"],
            ),
            (
                "a rule not ours",
                chains.clone(),
                foreign,
                vec!["1 rule(s) in output not ours"],
            ),
            (
                "a chain moved",
                low_priority,
                rules.clone(),
                vec!["chain prerouting is not a filter chain at priority raw accepting"],
            ),
            (
                "a chain dropping",
                dropping,
                rules.clone(),
                vec!["chain output is not a filter chain at priority raw accepting"],
            ),
        ];
        for (case, chains, rules, wanted) in cases {
            assert_eq!(drift(proxy, 443, &chains, &rules), wanted, "{case}");
        }
        // Another port is another rule: three missing, and the old ones are not ours.
        assert_eq!(drift(proxy, 6443, &chains, &rules).len(), 3 + 2);
    }

    fn base_chain(table: &str, name: &str, hook: InetHookNumber, policy: u32) -> ChainMessage {
        ChainMessage {
            attributes: vec![
                ChainAttribute::Table(table.into()),
                ChainAttribute::Name(name.into()),
                ChainAttribute::Hook(vec![
                    Hook::Number(HookNumber::Inet(hook)),
                    Hook::Priority(0),
                ]),
                ChainAttribute::Policy(policy),
            ],
        }
    }

    #[test]
    fn drop_policies_of_other_tables_at_input_or_output_are_found() {
        use InetHookNumber::{Forward, LocalIn, LocalOut, PreRouting};
        let chains = vec![
            (
                Family::Inet,
                base_chain("firewalld", "filter_INPUT", LocalIn, POLICY_DROP),
            ),
            (
                Family::IPv4,
                base_chain("filter", "OUTPUT", LocalOut, POLICY_DROP),
            ),
            (
                Family::IPv4,
                base_chain("filter", "INPUT", LocalIn, POLICY_ACCEPT),
            ),
            (
                Family::IPv6,
                base_chain("filter", "FORWARD", Forward, POLICY_DROP),
            ),
            (
                Family::Inet,
                base_chain("guard", "pre", PreRouting, POLICY_DROP),
            ),
            (Family::Bridge, base_chain("br", "in", LocalIn, POLICY_DROP)),
            (
                Family::Inet,
                base_chain("apiserver-proxy-10.96.0.2", "output", LocalOut, POLICY_DROP),
            ),
            (
                Family::Inet,
                ChainMessage {
                    attributes: vec![
                        ChainAttribute::Table("kube-proxy".into()),
                        ChainAttribute::Name("services".into()),
                    ],
                },
            ),
        ];
        assert_eq!(
            foreign_drops(&chains),
            [
                "inet firewalld filter_INPUT (input)",
                "ip filter OUTPUT (output)"
            ]
        );
    }
}
