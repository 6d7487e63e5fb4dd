// SPDX-FileCopyrightText: 2026 apiserver-proxy contributors
// SPDX-License-Identifier: Apache-2.0

//! The five iptables rules, pure: what they are, how to find them in `iptables-save` output, and
//! the `iptables-restore` input that makes a ruleset exact.
//!
//! Every rule carries a comment naming the project and the rule's purpose, so that the sidecar
//! recognises what it wrote: a commented rule no longer wanted (the IP or the port changed) is
//! removed, and the same rule without the comment (as the Go original wrote it) is adopted,
//! replaced by the commented form where it stands.

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::net::IpAddr;

/// How every comment the sidecar writes begins.
pub const COMMENT_PREFIX: &str = "apiserver-proxy: ";

/// One rule the sidecar keeps, in the canonical form `iptables-save` prints.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    pub table: &'static str,
    pub chain: &'static str,
    /// The rule after `-A CHAIN`, with its comment, as tokens (a quoted token unquoted).
    pub spec: Vec<String>,
    /// The same rule without the comment, as the Go original wrote it.
    pub bare: Vec<String>,
    /// Why the rule exists, for logs, docs and its comment.
    pub why: &'static str,
}

/// A rule found in a dump, to be deleted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Line {
    pub table: String,
    pub chain: String,
    pub spec: Vec<String>,
}

/// Tokens as `iptables-restore` reads them: quoted when they hold a space or a quote.
fn quoted(spec: &[String]) -> String {
    let quote = |token: &String| {
        if token.is_empty() || token.contains([' ', '"', '\\', '\t']) {
            format!("\"{}\"", token.replace('\\', "\\\\").replace('"', "\\\""))
        } else {
            token.clone()
        }
    };
    spec.iter().map(quote).collect::<Vec<_>>().join(" ")
}

/// Splits an `iptables-save` rule into tokens, unquoting `"..."` (with `\"` and `\\` escapes).
fn tokens(line: &str) -> Vec<String> {
    let mut tokens = Vec::new();
    let mut chars = line.chars().peekable();
    while let Some(&c) = chars.peek() {
        if c.is_whitespace() {
            chars.next();
            continue;
        }
        let mut token = String::new();
        if c == '"' {
            chars.next();
            while let Some(c) = chars.next() {
                match c {
                    '\\' => token.extend(chars.next()),
                    '"' => break,
                    c => token.push(c),
                }
            }
        } else {
            while let Some(&c) = chars.peek() {
                if c.is_whitespace() {
                    break;
                }
                token.push(c);
                chars.next();
            }
        }
        tokens.push(token);
    }
    tokens
}

impl fmt::Display for Rule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "-t {} {} {}", self.table, self.chain, quoted(&self.spec))
    }
}

impl Rule {
    /// The rule as `iptables-save` prints it: `-A CHAIN ...`.
    pub fn saved(&self) -> String {
        format!("-A {} {}", self.chain, quoted(&self.spec))
    }
}

impl fmt::Display for Line {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "-t {} {} {}", self.table, self.chain, quoted(&self.spec))
    }
}

/// Which side of a connection a rule matches the proxy on.
#[derive(Debug, Clone, Copy)]
enum Side {
    /// Packets to the proxy: `-d IP --dport PORT`.
    To,
    /// Packets from the proxy: `-s IP --sport PORT`.
    From,
}

/// One of the five rules, before it is given the proxy's address and port.
struct Template {
    table: &'static str,
    chain: &'static str,
    side: Side,
    target: &'static str,
    why: &'static str,
}

/// The five rules, in the order of the original README.
const TEMPLATES: [Template; 5] = [
    Template {
        table: "raw",
        chain: "PREROUTING",
        side: Side::To,
        target: "NOTRACK",
        why: "incoming connections to the local proxy need no conntrack entry",
    },
    Template {
        table: "raw",
        chain: "OUTPUT",
        side: Side::To,
        target: "NOTRACK",
        why: "connections from this host to the local proxy need no conntrack entry",
    },
    Template {
        table: "raw",
        chain: "OUTPUT",
        side: Side::From,
        target: "NOTRACK",
        why: "replies from the local proxy need no conntrack entry",
    },
    Template {
        table: "filter",
        chain: "INPUT",
        side: Side::To,
        target: "ACCEPT",
        why: "untracked packets to the proxy must not be dropped by INVALID-state rules",
    },
    Template {
        table: "filter",
        chain: "OUTPUT",
        side: Side::From,
        target: "ACCEPT",
        why: "untracked replies from the proxy must not be dropped by INVALID-state rules",
    },
];

impl Template {
    /// The rule for a proxy on `host` (`ip/prefix`) and `port`.
    fn rule(&self, host: &str, port: &str) -> Rule {
        let (direction, port_match) = match self.side {
            Side::To => ("-d", "--dport"),
            Side::From => ("-s", "--sport"),
        };
        let matches = [direction, host, "-p", "tcp", "-m", "tcp", port_match, port];
        let comment = format!("{COMMENT_PREFIX}{}", self.why);
        let commented = ["-m", "comment", "--comment", &comment, "-j", self.target];
        let to_strings =
            |tokens: &[&[&str]]| tokens.concat().iter().map(|t| t.to_string()).collect();
        Rule {
            table: self.table,
            chain: self.chain,
            spec: to_strings(&[&matches, &commented]),
            bare: to_strings(&[&matches, &["-j", self.target]]),
            why: self.why,
        }
    }
}

/// The five rules for a proxy listening on `ip`:`port`, in the order of the original README.
pub fn wanted_rules(ip: IpAddr, port: u16) -> Vec<Rule> {
    let host = format!("{ip}/{}", crate::netif::full_prefix(ip));
    let port = port.to_string();
    TEMPLATES
        .iter()
        .map(|template| template.rule(&host, &port))
        .collect()
}

/// The rules of an `iptables-save` dump, by table and chain.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Ruleset {
    chains: HashMap<(String, String), Vec<Vec<String>>>,
    rule_count: usize,
    chain_names: Vec<String>,
}

impl Ruleset {
    /// Parses `iptables-save` output; lines it does not understand are ignored.
    pub fn parse(save_output: &str) -> Self {
        let mut ruleset = Ruleset::default();
        let mut table = String::new();
        for line in save_output.lines() {
            if let Some(name) = line.strip_prefix('*') {
                table = name.trim().to_string();
            } else if let Some(chain) = line.strip_prefix(':') {
                if let Some(name) = chain.split_whitespace().next() {
                    ruleset.chain_names.push(name.to_string());
                }
            } else if let Some(rule) = line.strip_prefix("-A ") {
                let mut tokens = tokens(rule).into_iter();
                if let Some(chain) = tokens.next() {
                    ruleset
                        .chains
                        .entry((table.clone(), chain))
                        .or_default()
                        .push(normalize_addresses(tokens.collect()));
                    ruleset.rule_count += 1;
                }
            }
        }
        ruleset
    }

    /// The rules of `rule`'s chain, top first.
    fn chain_of(&self, rule: &Rule) -> &[Vec<String>] {
        self.chains
            .get(&(rule.table.to_string(), rule.chain.to_string()))
            .map_or(&[], Vec::as_slice)
    }

    /// Where the copies of `rule`, with or without its comment, are in its chain (0 is the
    /// top), top first.
    pub fn positions(&self, rule: &Rule) -> Vec<usize> {
        self.chain_of(rule)
            .iter()
            .enumerate()
            .filter(|(_, spec)| **spec == rule.spec || **spec == rule.bare)
            .map(|(at, _)| at)
            .collect()
    }

    /// The rules carrying the sidecar's comment that are none of `wanted`, except those of an
    /// IP in `spared` (kept by another live instance).
    fn stale(&self, wanted: &[Rule], spared: &[IpAddr]) -> Vec<Line> {
        let mut stale = Vec::new();
        for ((table, chain), rules) in &self.chains {
            for spec in rules {
                let wanted = wanted
                    .iter()
                    .any(|rule| rule.table == table && rule.chain == chain && rule.spec == *spec);
                if is_ours(spec) && !wanted && !is_spared(spec, spared) {
                    stale.push(Line {
                        table: table.clone(),
                        chain: chain.clone(),
                        spec: spec.clone(),
                    });
                }
            }
        }
        // A stable order, for the restore input and the log.
        stale.sort_by(|a, b| (&a.table, &a.chain, &a.spec).cmp(&(&b.table, &b.chain, &b.spec)));
        stale
    }

    /// The IPs the rules carrying the sidecar's comment match, without repeats.
    pub fn commented_ips(&self) -> Vec<IpAddr> {
        let mut ips: Vec<IpAddr> = self
            .chains
            .values()
            .flatten()
            .filter(|spec| is_ours(spec))
            .filter_map(|spec| address_of(spec))
            .collect();
        ips.sort();
        ips.dedup();
        ips
    }

    /// Number of rules in every table.
    pub fn rule_count(&self) -> usize {
        self.rule_count
    }

    /// Whether a chain of this name exists in any table.
    pub fn has_chain(&self, name: &str) -> bool {
        self.chain_names.iter().any(|chain| chain == name)
    }
}

/// Whether a rule carries the sidecar's comment.
fn is_ours(spec: &[String]) -> bool {
    spec.windows(2)
        .any(|pair| pair[0] == "--comment" && pair[1].starts_with(COMMENT_PREFIX))
}

/// The proxy IP a rule matches (its `-d` or `-s`), if it names one.
fn address_of(spec: &[String]) -> Option<IpAddr> {
    let pair = spec
        .windows(2)
        .find(|pair| matches!(pair[0].as_str(), "-s" | "-d"))?;
    pair[1].split('/').next()?.parse().ok()
}

/// Whether a rule matches an IP another live instance keeps.
fn is_spared(spec: &[String], spared: &[IpAddr]) -> bool {
    address_of(spec).is_some_and(|ip| spared.contains(&ip))
}

/// Rewrites the addresses of `-s`/`-d` in the form [`wanted_rules`] writes them, so a rule is
/// recognised in whatever form iptables prints it (`::1.2.3.4/128` for `::102:304`).
fn normalize_addresses(mut tokens: Vec<String>) -> Vec<String> {
    for at in 1..tokens.len() {
        if matches!(tokens[at - 1].as_str(), "-s" | "-d")
            && let Some(host) = canonical_host(&tokens[at])
        {
            tokens[at] = host;
        }
    }
    tokens
}

/// `ip/prefix` in canonical form, or `None` when the token is not one (a name, a mask).
fn canonical_host(token: &str) -> Option<String> {
    let (ip, prefix) = match token.split_once('/') {
        Some((ip, prefix)) => (ip.parse::<IpAddr>().ok()?, prefix.parse::<u8>().ok()?),
        None => {
            let ip = token.parse::<IpAddr>().ok()?;
            (ip, crate::netif::full_prefix(ip))
        }
    };
    Some(format!("{ip}/{prefix}"))
}

/// What to change so that each wanted rule is present exactly once, with its comment.
///
/// A missing rule is inserted at the top of its chain. A rule in place is never moved: Calico
/// and kube-proxy insert their own rules at position 1 too, and moving ours back on every sync
/// would fight them. Of several copies the one nearest the top is kept, as it is the one that
/// decides; a copy without the comment (the Go original's) is replaced by the commented form
/// where it stands. `-D` by rule removes the first match, so every copy is deleted and the rule
/// put back where the top copy was, all in one atomic `iptables-restore`.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Plan {
    /// Rules missing, inserted at the top of their chain.
    pub insert: Vec<Rule>,
    /// Extra copies removed.
    pub duplicates: Vec<Line>,
    /// Rules whose kept copy lacked the comment, rewritten in place.
    pub adopted: Vec<Rule>,
    /// Commented rules no longer wanted, removed.
    pub stale: Vec<Line>,
    /// Every deletion, in order.
    delete: Vec<Line>,
    /// Rules deleted and put back at this position (1 is the top) of their chain as it is
    /// after the deletions and the rules put back above them.
    reinsert: Vec<(Rule, usize)>,
}

fn line_of(rule: &Rule, spec: &[String]) -> Line {
    Line {
        table: rule.table.to_string(),
        chain: rule.chain.to_string(),
        spec: spec.to_vec(),
    }
}

impl Plan {
    /// Makes every wanted rule present exactly once, keeping the copy nearest the top; removes
    /// stale rules, but never those of an IP in `spared`, kept by another live instance.
    pub fn ensure(current: &Ruleset, wanted: &[Rule], spared: &[IpAddr]) -> Self {
        let mut plan = Plan {
            stale: current.stale(wanted, spared),
            ..Plan::default()
        };
        // Per chain, the positions the plan deletes (stale rules too: a rule put back below
        // one lands higher once it is gone), and the tops of the rules it puts back.
        let mut deleted: HashMap<(String, String), HashSet<usize>> = HashMap::new();
        for line in &plan.stale {
            let key = (line.table.clone(), line.chain.clone());
            let chain = current.chains.get(&key).map_or(&[][..], Vec::as_slice);
            let positions = (0..chain.len()).filter(|at| chain[*at] == line.spec);
            deleted.entry(key).or_default().extend(positions);
        }
        let mut tops: Vec<(&Rule, usize)> = Vec::new();
        for rule in wanted {
            let chain = current.chain_of(rule);
            let positions = current.positions(rule);
            let Some((&top, extra)) = positions.split_first() else {
                plan.insert.push(rule.clone());
                continue;
            };
            let commented = chain[top] == rule.spec;
            if commented && extra.is_empty() {
                continue;
            }
            if !commented {
                plan.adopted.push(rule.clone());
            }
            for &at in extra {
                plan.duplicates.push(line_of(rule, &chain[at]));
            }
            for &at in &positions {
                plan.delete.push(line_of(rule, &chain[at]));
            }
            deleted
                .entry((rule.table.to_string(), rule.chain.to_string()))
                .or_default()
                .extend(&positions);
            tops.push((rule, top));
        }
        plan.delete.extend(plan.stale.iter().cloned());
        // Put back top first: each lands below the rules that stay above it and those already
        // back, as it was.
        tops.sort_by_key(|(_, top)| *top);
        for (i, (rule, top)) in tops.iter().enumerate() {
            let gone = deleted.get(&(rule.table.to_string(), rule.chain.to_string()));
            let staying = (0..*top)
                .filter(|at| !gone.is_some_and(|gone| gone.contains(at)))
                .count();
            let back_above = tops[..i]
                .iter()
                .filter(|(other, _)| other.table == rule.table && other.chain == rule.chain)
                .count();
            plan.reinsert
                .push(((*rule).clone(), 1 + staying + back_above));
        }
        plan
    }

    /// Removes every copy of every wanted rule, with or without its comment, and every other
    /// rule carrying the sidecar's comment; never a rule of an IP in `spared`, kept by another
    /// live instance (one with the same IP too).
    pub fn remove(current: &Ruleset, wanted: &[Rule], spared: &[IpAddr]) -> Self {
        let mut plan = Plan::default();
        for rule in wanted.iter().filter(|rule| !is_spared(&rule.spec, spared)) {
            let chain = current.chain_of(rule);
            for at in current.positions(rule) {
                plan.delete.push(line_of(rule, &chain[at]));
            }
        }
        plan.stale = current.stale(wanted, spared);
        plan.delete.extend(plan.stale.iter().cloned());
        plan
    }

    /// Every rule the plan deletes (for a teardown, everything it removes).
    pub fn deletions(&self) -> &[Line] {
        &self.delete
    }

    pub fn is_empty(&self) -> bool {
        self.insert.is_empty() && self.delete.is_empty()
    }

    /// The `iptables-restore --noflush` input that carries the plan out atomically per table.
    pub fn restore_input(&self) -> String {
        let mut tables: Vec<&str> = Vec::new();
        let deleted = self.delete.iter().map(|line| line.table.as_str());
        let inserted = self.insert.iter().map(|rule| rule.table);
        for table in deleted.chain(inserted) {
            if !tables.contains(&table) {
                tables.push(table);
            }
        }
        let mut input = String::new();
        for table in tables {
            input.push_str(&format!("*{table}\n"));
            for line in self.delete.iter().filter(|line| line.table == table) {
                input.push_str(&format!("-D {} {}\n", line.chain, quoted(&line.spec)));
            }
            for (rule, position) in self.reinsert.iter().filter(|(rule, _)| rule.table == table) {
                input.push_str(&format!(
                    "-I {} {position} {}\n",
                    rule.chain,
                    quoted(&rule.spec)
                ));
            }
            for rule in self.insert.iter().filter(|rule| rule.table == table) {
                input.push_str(&format!("-I {} 1 {}\n", rule.chain, quoted(&rule.spec)));
            }
            input.push_str("COMMIT\n");
        }
        input
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const V4_SAVE: &str = "\
# Generated by iptables-save v1.8.9 on Sat Nov 28 16:21:25 2026
*raw
:PREROUTING ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
-A PREROUTING -d 10.96.0.2/32 -p tcp -m tcp --dport 443 -j NOTRACK
-A OUTPUT -d 10.96.0.2/32 -p tcp -m tcp --dport 443 -j NOTRACK
-A OUTPUT -s 10.96.0.2/32 -p tcp -m tcp --sport 443 -j NOTRACK
-A OUTPUT -s 10.96.0.2/32 -p tcp -m tcp --sport 443 -j NOTRACK
COMMIT
*filter
:INPUT ACCEPT [0:0]
:FORWARD ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
:KUBE-FIREWALL - [0:0]
-A INPUT -d 10.96.0.3/32 -p tcp -m tcp --dport 443 -j ACCEPT
-A OUTPUT -s 10.96.0.2/32 -p tcp -m tcp --sport 443 -j ACCEPT
-A OUTPUT -s 10.96.0.2/32 -p tcp -m tcp --sport 443 -m comment --comment \"x y\" -j ACCEPT
COMMIT
";

    #[test]
    fn the_five_rules_of_the_original_each_with_its_comment() {
        let rules: Vec<String> = wanted_rules(IpAddr::from([10, 96, 0, 2]), 443)
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(
            rules,
            [
                "-t raw PREROUTING -d 10.96.0.2/32 -p tcp -m tcp --dport 443 -m comment --comment \"apiserver-proxy: incoming connections to the local proxy need no conntrack entry\" -j NOTRACK",
                "-t raw OUTPUT -d 10.96.0.2/32 -p tcp -m tcp --dport 443 -m comment --comment \"apiserver-proxy: connections from this host to the local proxy need no conntrack entry\" -j NOTRACK",
                "-t raw OUTPUT -s 10.96.0.2/32 -p tcp -m tcp --sport 443 -m comment --comment \"apiserver-proxy: replies from the local proxy need no conntrack entry\" -j NOTRACK",
                "-t filter INPUT -d 10.96.0.2/32 -p tcp -m tcp --dport 443 -m comment --comment \"apiserver-proxy: untracked packets to the proxy must not be dropped by INVALID-state rules\" -j ACCEPT",
                "-t filter OUTPUT -s 10.96.0.2/32 -p tcp -m tcp --sport 443 -m comment --comment \"apiserver-proxy: untracked replies from the proxy must not be dropped by INVALID-state rules\" -j ACCEPT",
            ]
        );
        let bare: Vec<String> = wanted_rules(IpAddr::from([10, 96, 0, 2]), 443)
            .iter()
            .map(|rule| rule.bare.join(" "))
            .collect();
        assert_eq!(
            bare[0],
            "-d 10.96.0.2/32 -p tcp -m tcp --dport 443 -j NOTRACK"
        );
    }

    #[test]
    fn ipv6_rules_use_a_full_length_prefix() {
        let rules = wanted_rules("fd00::10".parse().unwrap(), 6443);
        assert_eq!(rules.len(), 5);
        assert!(rules.iter().all(|rule| rule.spec[1] == "fd00::10/128"));
        assert!(rules.iter().all(|rule| rule.spec[7] == "6443"));
    }

    #[test]
    fn counts_copies_in_a_save_dump() {
        let current = Ruleset::parse(V4_SAVE);
        let counts: Vec<usize> = wanted_rules(IpAddr::from([10, 96, 0, 2]), 443)
            .iter()
            .map(|rule| current.positions(rule).len())
            .collect();
        assert_eq!(counts, [1, 1, 2, 0, 1]);
        assert_eq!(current.rule_count(), 7);
        assert!(current.has_chain("KUBE-FIREWALL"));
        assert!(!current.has_chain("KUBE-KUBELET-CANARY"));
    }

    #[test]
    fn ensure_adopts_the_bare_copies_and_deletes_extra_ones() {
        let wanted = wanted_rules(IpAddr::from([10, 96, 0, 2]), 443);
        let plan = Plan::ensure(&Ruleset::parse(V4_SAVE), &wanted, &[]);
        assert_eq!(plan.insert, [wanted[3].clone()]);
        assert_eq!(plan.duplicates.len(), 1);
        assert_eq!(plan.duplicates[0].spec, wanted[2].bare);
        // Every rule in place was written by the Go original, without a comment.
        assert_eq!(
            plan.adopted,
            [
                wanted[0].clone(),
                wanted[1].clone(),
                wanted[2].clone(),
                wanted[4].clone()
            ]
        );
        assert!(plan.stale.is_empty());
        let input = plan.restore_input();
        assert!(
            input.starts_with(
                "*raw\n-D PREROUTING -d 10.96.0.2/32 -p tcp -m tcp --dport 443 -j NOTRACK\n"
            ),
            "{input}"
        );
        assert!(input.contains(&format!("-I PREROUTING 1 {}\n", quoted(&wanted[0].spec))));
        assert!(input.contains(&format!("-I INPUT 1 {}\n", quoted(&wanted[3].spec))));
        assert_eq!(input.matches("COMMIT").count(), 2);
    }

    #[test]
    fn ensure_on_an_empty_host_inserts_all_five() {
        let wanted = wanted_rules(IpAddr::from([10, 96, 0, 2]), 443);
        let plan = Plan::ensure(&Ruleset::parse(""), &wanted, &[]);
        assert_eq!(plan.insert, wanted);
        assert!(plan.deletions().is_empty());
        let input = plan.restore_input();
        assert!(input.starts_with("*raw\n-I PREROUTING 1 -d 10.96.0.2/32"));
        assert_eq!(input.matches("COMMIT").count(), 2);
    }

    /// An `iptables-save` dump holding exactly `rules`.
    fn dump(rules: &[Rule]) -> String {
        rules
            .iter()
            .map(|rule| {
                format!(
                    "*{}\n-A {} {}\nCOMMIT\n",
                    rule.table,
                    rule.chain,
                    quoted(&rule.spec)
                )
            })
            .collect()
    }

    #[test]
    fn steady_state_plans_nothing() {
        let wanted = wanted_rules(IpAddr::from([10, 96, 0, 2]), 443);
        let plan = Plan::ensure(&Ruleset::parse(&dump(&wanted)), &wanted, &[]);
        assert!(plan.is_empty(), "{plan:?}");
        assert_eq!(plan.restore_input(), "");
    }

    #[test]
    fn commented_rules_no_longer_wanted_are_removed_and_foreign_ones_kept() {
        let old = wanted_rules(IpAddr::from([10, 96, 0, 9]), 443);
        let old_port = wanted_rules(IpAddr::from([10, 96, 0, 2]), 6443);
        let wanted = wanted_rules(IpAddr::from([10, 96, 0, 2]), 443);
        let foreign = "*filter\n-A INPUT -s 192.0.2.1/32 -m comment --comment \"kube-proxy: x y\" -j ACCEPT\n\
                       -A INPUT -s 192.0.2.2/32 -m comment --comment apiserver-proxy -j ACCEPT\nCOMMIT\n";
        let save = format!(
            "{}{}{}{foreign}",
            dump(&old),
            dump(&old_port),
            dump(&wanted)
        );
        let plan = Plan::ensure(&Ruleset::parse(&save), &wanted, &[]);
        assert!(plan.insert.is_empty() && plan.adopted.is_empty() && plan.duplicates.is_empty());
        assert_eq!(plan.stale.len(), 10, "{plan:?}");
        assert!(
            plan.stale
                .iter()
                .all(|line| !line.spec.contains(&"10.96.0.2/32".to_string())
                    || line.spec.contains(&"6443".to_string()))
        );
        // Teardown removes ours, current and stale, and nothing foreign.
        let plan = Plan::remove(&Ruleset::parse(&save), &wanted, &[]);
        assert_eq!(plan.deletions().len(), 15);
        let input = plan.restore_input();
        assert!(!input.contains("192.0.2."), "{input}");
    }

    #[test]
    fn a_rule_put_back_below_a_stale_one_lands_where_it_stood() {
        let wanted = wanted_rules(IpAddr::from([10, 96, 0, 2]), 443);
        let old = wanted_rules(IpAddr::from([10, 96, 0, 9]), 443);
        let foreign = "-s 192.0.2.1/32 -j ACCEPT".to_string();
        // The Go original's rule below a commented one of an earlier IP, and a foreign one.
        let cases = [
            (
                vec![quoted(&old[3].spec), wanted[3].bare.join(" ")],
                vec![quoted(&wanted[3].spec)],
            ),
            (
                vec![
                    foreign.clone(),
                    quoted(&old[3].spec),
                    wanted[3].bare.join(" "),
                    foreign.clone(),
                ],
                vec![foreign.clone(), quoted(&wanted[3].spec), foreign.clone()],
            ),
        ];
        for (rules, want) in cases {
            let save: String = rules
                .iter()
                .map(|rule| format!("-A INPUT {rule}\n"))
                .collect();
            let plan = Plan::ensure(
                &Ruleset::parse(&format!("*filter\n{save}COMMIT\n")),
                &wanted[3..4],
                &[],
            );
            let mut chains = HashMap::from([("INPUT".to_string(), rules.clone())]);
            let input = plan.restore_input();
            restore(&mut chains, &input);
            assert_eq!(chains["INPUT"], want, "{input}");
        }
    }

    #[test]
    fn rules_of_an_ip_another_live_instance_keeps_are_never_stale_nor_removed() {
        let ip = |text: &str| -> IpAddr { text.parse().expect("a test address") };
        let ours = wanted_rules(ip("10.96.0.2"), 443);
        let theirs = wanted_rules(ip("10.96.0.3"), 443);
        let gone = wanted_rules(ip("10.96.0.4"), 443);
        let v6 = wanted_rules(ip("fd00::3"), 443);
        let save = [&ours, &theirs, &gone, &v6]
            .map(|rules| dump(rules))
            .concat();
        let current = Ruleset::parse(&save);
        assert_eq!(
            current.commented_ips(),
            ["10.96.0.2", "10.96.0.3", "10.96.0.4", "fd00::3"].map(ip)
        );
        let lines_of = |lines: &[Line]| -> Vec<String> {
            let mut hosts: Vec<String> = lines.iter().map(|line| line.spec[1].clone()).collect();
            hosts.dedup();
            hosts
        };
        // the IPs other live instances keep, the stale rules' hosts, the teardown's hosts
        let cases: &[(&[&str], &[&str], &[&str])] = &[
            (
                &[],
                &["10.96.0.3/32", "10.96.0.4/32", "fd00::3/128"],
                &[
                    "10.96.0.2/32",
                    "10.96.0.3/32",
                    "10.96.0.4/32",
                    "fd00::3/128",
                ],
            ),
            (
                &["10.96.0.3", "fd00::3"],
                &["10.96.0.4/32"],
                &["10.96.0.2/32", "10.96.0.4/32"],
            ),
            // Our own IP kept by another instance too: ensured, but never torn down.
            (
                &["10.96.0.2", "10.96.0.3", "10.96.0.4", "fd00::3"],
                &[],
                &[],
            ),
        ];
        for (spared, want_stale, want_removed) in cases {
            let spared: Vec<IpAddr> = spared.iter().map(|text| ip(text)).collect();
            let plan = Plan::ensure(&current, &ours, &spared);
            assert!(
                plan.insert.is_empty() && plan.adopted.is_empty(),
                "{plan:?}"
            );
            let mut stale = lines_of(&plan.stale);
            stale.sort();
            stale.dedup();
            assert_eq!(stale, *want_stale, "{spared:?}");
            let mut removed = lines_of(Plan::remove(&current, &ours, &spared).deletions());
            removed.sort();
            removed.dedup();
            assert_eq!(removed, *want_removed, "{spared:?}");
        }
    }

    #[test]
    fn tokens_round_trip_through_quoting() {
        let cases: &[(&str, &[&str])] = &[
            ("-j ACCEPT", &["-j", "ACCEPT"]),
            ("--comment \"a b\" -j X", &["--comment", "a b", "-j", "X"]),
            (
                "--comment \"say \\\"hi\\\"\" -j X",
                &["--comment", "say \"hi\"", "-j", "X"],
            ),
            ("--comment \"back\\\\slash\"", &["--comment", "back\\slash"]),
            ("--comment \"\"", &["--comment", ""]),
            ("  -p   tcp  ", &["-p", "tcp"]),
        ];
        for (line, want) in cases {
            let got = tokens(line);
            assert_eq!(got, *want, "{line}");
            assert_eq!(tokens(&quoted(&got)), got, "{line}");
        }
    }

    #[test]
    fn addresses_match_in_every_printed_form() {
        let cases: &[(&str, &str)] = &[
            ("::102:304", "::1.2.3.4/128"),
            ("fd00::10", "fd00::10/128"),
            ("fd00::10", "fd00:0:0:0:0:0:0:10/128"),
            ("fd00::10", "FD00::0010/128"),
            ("fd00::10", "fd00::10"),
            ("2001:db8::1:0:0:1", "2001:db8:0:0:1::1/128"),
            ("10.96.0.2", "10.96.0.2/32"),
            ("10.96.0.2", "10.96.0.2"),
        ];
        for (ip, printed) in cases {
            let wanted = wanted_rules(ip.parse().expect("test address"), 443);
            let save = format!(
                "*filter\n-A INPUT -d {printed} -p tcp -m tcp --dport 443 -j ACCEPT\n\
                 -A OUTPUT -s {printed} -p tcp -m tcp --sport 443 -j ACCEPT\nCOMMIT\n"
            );
            let current = Ruleset::parse(&save);
            let counts: Vec<usize> = wanted
                .iter()
                .map(|rule| current.positions(rule).len())
                .collect();
            assert_eq!(counts, [0, 0, 0, 1, 1], "{ip} printed as {printed}");
        }
    }

    #[test]
    fn other_hosts_and_prefixes_do_not_match() {
        let wanted = wanted_rules(IpAddr::from([10, 96, 0, 2]), 443);
        for printed in [
            "10.96.0.3/32",
            "10.96.0.2/24",
            "10.96.0.0/255.255.0.255",
            "node-a",
        ] {
            let save = format!(
                "*filter\n-A INPUT -d {printed} -p tcp -m tcp --dport 443 -j ACCEPT\nCOMMIT\n"
            );
            assert_eq!(
                Ruleset::parse(&save).positions(&wanted[3]).len(),
                0,
                "{printed}"
            );
        }
    }

    /// Carries out `iptables-restore --noflush` input on chains the way iptables does: `-D`
    /// with a rule removes its first match, `-I CHAIN N` inserts at position N.
    fn restore(chains: &mut HashMap<String, Vec<String>>, input: &str) {
        for line in input.lines() {
            let mut words = line.splitn(3, ' ');
            let (Some(op), Some(chain), Some(rest)) = (words.next(), words.next(), words.next())
            else {
                continue;
            };
            let rules = chains.entry(chain.to_string()).or_default();
            match op {
                "-D" => {
                    let at = rules.iter().position(|rule| rule == rest);
                    rules.remove(at.expect("-D of a rule that is not there"));
                }
                "-I" => {
                    let (position, rule) = rest.split_once(' ').expect("-I N RULE");
                    let position: usize = position.parse().expect("a position");
                    assert!(position >= 1 && position <= rules.len() + 1, "{line}");
                    rules.insert(position - 1, rule.to_string());
                }
                _ => {}
            }
        }
    }

    #[test]
    fn of_several_copies_the_one_nearest_the_top_stays_where_it_is() {
        let wanted = wanted_rules(IpAddr::from([10, 96, 0, 2]), 443);
        let spec = |at: usize| quoted(&wanted[at].spec);
        let (d_out, s_out) = (spec(1), spec(2));
        let (accept, drop) = (spec(3), "-p tcp -m tcp --dport 443 -j DROP".to_string());
        let bare_accept = wanted[3].bare.join(" ");
        let foreign = "-s 192.0.2.1/32 -j ACCEPT".to_string();
        // (table, chain, rules top first, expected after the sync)
        let cases: Vec<(&str, &str, Vec<&String>, Vec<&String>)> = vec![
            // The Go original's rule below a foreign one: the commented form takes its place.
            (
                "filter",
                "INPUT",
                vec![&foreign, &bare_accept, &drop],
                vec![&foreign, &accept, &drop],
            ),
            // Of a bare copy above and a commented one below, the place of the top one wins.
            (
                "filter",
                "INPUT",
                vec![&bare_accept, &drop, &accept],
                vec![&accept, &drop],
            ),
            // The finding: a DROP appended, then a second ACCEPT below it.
            (
                "filter",
                "INPUT",
                vec![&accept, &drop, &accept],
                vec![&accept, &drop],
            ),
            (
                "filter",
                "INPUT",
                vec![&drop, &accept, &accept],
                vec![&drop, &accept],
            ),
            (
                "filter",
                "INPUT",
                vec![&foreign, &accept, &drop, &accept, &foreign, &accept],
                vec![&foreign, &accept, &drop, &foreign],
            ),
            // Two of ours in one chain, interleaved with their copies.
            (
                "raw",
                "OUTPUT",
                vec![&s_out, &d_out, &s_out, &d_out],
                vec![&s_out, &d_out],
            ),
            (
                "raw",
                "OUTPUT",
                vec![&s_out, &s_out, &foreign, &d_out, &s_out, &d_out],
                vec![&s_out, &foreign, &d_out],
            ),
            (
                "raw",
                "OUTPUT",
                vec![&foreign, &d_out, &s_out],
                vec![&foreign, &d_out, &s_out],
            ),
        ];
        for (table, chain, rules, want) in cases {
            let save: String = rules
                .iter()
                .map(|rule| format!("-A {chain} {rule}\n"))
                .collect();
            let plan = Plan::ensure(
                &Ruleset::parse(&format!("*{table}\n{save}COMMIT\n")),
                &wanted,
                &[],
            );
            let mut chains = HashMap::from([(
                chain.to_string(),
                rules.iter().map(|r| r.to_string()).collect(),
            )]);
            let input = plan.restore_input();
            // Only the table at hand: the rules missing from the others are inserted there.
            let ours = input
                .split("COMMIT")
                .find(|part| part.contains(&format!("*{table}")));
            restore(&mut chains, ours.unwrap_or(""));
            let got: Vec<&str> = chains[chain].iter().map(String::as_str).collect();
            let want: Vec<&str> = want.iter().map(|rule| rule.as_str()).collect();
            // Missing rules of the chain are inserted at the top; compare below them.
            assert_eq!(&got[got.len() - want.len()..], want, "{rules:?}\n{input}");
        }
    }

    #[test]
    fn remove_deletes_every_copy() {
        let wanted = wanted_rules(IpAddr::from([10, 96, 0, 2]), 443);
        let plan = Plan::remove(&Ruleset::parse(V4_SAVE), &wanted, &[]);
        assert!(plan.insert.is_empty());
        assert_eq!(plan.deletions().len(), 5);
        assert!(Plan::remove(&Ruleset::parse(""), &wanted, &[]).is_empty());
    }
}
