// SPDX-FileCopyrightText: 2026 apiserver-proxy contributors
// SPDX-License-Identifier: Apache-2.0

//! The five iptables rules, pure: what they are, how to find them in `iptables-save` output, and
//! the `iptables-restore` input that makes a ruleset exact.

use std::collections::HashMap;
use std::fmt;
use std::net::IpAddr;

/// One rule the sidecar keeps, in the canonical form `iptables-save` prints.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    pub table: &'static str,
    pub chain: &'static str,
    /// The rule after `-A CHAIN`, as whitespace-separated tokens.
    pub spec: Vec<String>,
    /// Why the rule exists, for logs and docs.
    pub why: &'static str,
}

impl fmt::Display for Rule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "-t {} {} {}",
            self.table,
            self.chain,
            self.spec.join(" ")
        )
    }
}

/// The five rules for a proxy listening on `ip`:`port`, in the order of the original README.
pub fn wanted_rules(ip: IpAddr, port: u16) -> Vec<Rule> {
    let host = match ip {
        IpAddr::V4(_) => format!("{ip}/32"),
        IpAddr::V6(_) => format!("{ip}/128"),
    };
    let rule = |table, chain, direction: &str, port_match: &str, target: &str, why| Rule {
        table,
        chain,
        spec: [
            direction,
            &host,
            "-p",
            "tcp",
            "-m",
            "tcp",
            port_match,
            &port.to_string(),
            "-j",
            target,
        ]
        .iter()
        .map(|token| token.to_string())
        .collect(),
        why,
    };
    vec![
        rule(
            "raw",
            "PREROUTING",
            "-d",
            "--dport",
            "NOTRACK",
            "incoming connections to the local proxy need no conntrack entry",
        ),
        rule(
            "raw",
            "OUTPUT",
            "-d",
            "--dport",
            "NOTRACK",
            "connections from this host to the local proxy need no conntrack entry",
        ),
        rule(
            "raw",
            "OUTPUT",
            "-s",
            "--sport",
            "NOTRACK",
            "the proxy's replies need no conntrack entry",
        ),
        rule(
            "filter",
            "INPUT",
            "-d",
            "--dport",
            "ACCEPT",
            "untracked packets to the proxy must not be dropped by INVALID-state rules",
        ),
        rule(
            "filter",
            "OUTPUT",
            "-s",
            "--sport",
            "ACCEPT",
            "untracked replies from the proxy must not be dropped by INVALID-state rules",
        ),
    ]
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
                let mut tokens = rule.split_whitespace().map(str::to_string);
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

    /// Where the copies of `rule` are in its chain (0 is the top), top first.
    pub fn positions(&self, rule: &Rule) -> Vec<usize> {
        self.chain_of(rule)
            .iter()
            .enumerate()
            .filter(|(_, spec)| **spec == rule.spec)
            .map(|(at, _)| at)
            .collect()
    }

    /// How many copies of `rule` the dump holds.
    pub fn count(&self, rule: &Rule) -> usize {
        self.positions(rule).len()
    }

    /// How many rules above position `at` of `rule`'s chain stay when the copies of the wanted
    /// rules below their top copy are deleted.
    fn staying_above(&self, rule: &Rule, at: usize, wanted: &[Rule]) -> usize {
        let chain = self.chain_of(rule);
        let is_extra_copy = |position: usize, spec: &Vec<String>| {
            wanted.iter().any(|other| {
                other.table == rule.table
                    && other.chain == rule.chain
                    && other.spec == *spec
                    && chain.iter().position(|top| top == spec) < Some(position)
            })
        };
        chain
            .iter()
            .take(at)
            .enumerate()
            .filter(|(position, spec)| !is_extra_copy(*position, spec))
            .count()
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

/// What to change so that each wanted rule is present the right number of times.
///
/// A missing rule is inserted at the top of its chain. A rule in place is never moved: Calico
/// and kube-proxy insert their own rules at position 1 too, and moving ours back on every sync
/// would fight them. Of several copies the one nearest the top is kept, as it is the one that
/// decides: `-D` by rule removes the first match, so every copy is deleted and the top one put
/// back where it was, all in one atomic `iptables-restore`.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Plan {
    /// Rules to insert at the top of their chain.
    pub insert: Vec<Rule>,
    /// Copies to remove, one entry per copy.
    pub delete: Vec<Rule>,
    /// Rules with extra copies: deleted too, and put back at this position (1 is the top) of
    /// their chain as it is after the plan, which is where their top copy was.
    reinsert: Vec<(Rule, usize)>,
}

impl Plan {
    /// Makes every wanted rule present exactly once, keeping the copy nearest the top.
    pub fn ensure(current: &Ruleset, wanted: &[Rule]) -> Self {
        let mut plan = Plan::default();
        for rule in wanted {
            match current.positions(rule).as_slice() {
                [] => plan.insert.push(rule.clone()),
                [_] => {}
                [top, extra @ ..] => {
                    plan.delete
                        .extend(std::iter::repeat_n(rule.clone(), extra.len()));
                    let position = 1 + current.staying_above(rule, *top, wanted);
                    plan.reinsert.push((rule.clone(), position));
                }
            }
        }
        // Put back top first: each lands below those already back, as it was.
        plan.reinsert.sort_by_key(|(_, position)| *position);
        plan
    }

    /// Removes every copy of every wanted rule.
    pub fn remove(current: &Ruleset, wanted: &[Rule]) -> Self {
        let mut plan = Plan::default();
        for rule in wanted {
            plan.delete
                .extend(std::iter::repeat_n(rule.clone(), current.count(rule)));
        }
        plan
    }

    pub fn is_empty(&self) -> bool {
        self.insert.is_empty() && self.delete.is_empty()
    }

    /// The `iptables-restore --noflush` input that carries the plan out atomically per table.
    pub fn restore_input(&self) -> String {
        let reinsert = || self.reinsert.iter().map(|(rule, _)| rule);
        let mut tables: Vec<&str> = Vec::new();
        for rule in self.delete.iter().chain(reinsert()).chain(&self.insert) {
            if !tables.contains(&rule.table) {
                tables.push(rule.table);
            }
        }
        let mut input = String::new();
        for table in tables {
            input.push_str(&format!("*{table}\n"));
            for rule in self.delete.iter().chain(reinsert()) {
                if rule.table == table {
                    input.push_str(&format!("-D {} {}\n", rule.chain, rule.spec.join(" ")));
                }
            }
            for (rule, position) in &self.reinsert {
                if rule.table == table {
                    input.push_str(&format!(
                        "-I {} {position} {}\n",
                        rule.chain,
                        rule.spec.join(" ")
                    ));
                }
            }
            for rule in self.insert.iter().filter(|rule| rule.table == table) {
                input.push_str(&format!("-I {} 1 {}\n", rule.chain, rule.spec.join(" ")));
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
    fn the_five_rules_of_the_original() {
        let rules: Vec<String> = wanted_rules(IpAddr::from([10, 96, 0, 2]), 443)
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(
            rules,
            [
                "-t raw PREROUTING -d 10.96.0.2/32 -p tcp -m tcp --dport 443 -j NOTRACK",
                "-t raw OUTPUT -d 10.96.0.2/32 -p tcp -m tcp --dport 443 -j NOTRACK",
                "-t raw OUTPUT -s 10.96.0.2/32 -p tcp -m tcp --sport 443 -j NOTRACK",
                "-t filter INPUT -d 10.96.0.2/32 -p tcp -m tcp --dport 443 -j ACCEPT",
                "-t filter OUTPUT -s 10.96.0.2/32 -p tcp -m tcp --sport 443 -j ACCEPT",
            ]
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
            .map(|rule| current.count(rule))
            .collect();
        assert_eq!(counts, [1, 1, 2, 0, 1]);
        assert_eq!(current.rule_count(), 7);
        assert!(current.has_chain("KUBE-FIREWALL"));
        assert!(!current.has_chain("KUBE-KUBELET-CANARY"));
    }

    #[test]
    fn ensure_inserts_missing_and_deletes_extra_copies() {
        let wanted = wanted_rules(IpAddr::from([10, 96, 0, 2]), 443);
        let plan = Plan::ensure(&Ruleset::parse(V4_SAVE), &wanted);
        assert_eq!(plan.insert, [wanted[3].clone()]);
        assert_eq!(plan.delete, [wanted[2].clone()]);
        assert_eq!(
            plan.restore_input(),
            "*raw\n-D OUTPUT -s 10.96.0.2/32 -p tcp -m tcp --sport 443 -j NOTRACK\n\
             -D OUTPUT -s 10.96.0.2/32 -p tcp -m tcp --sport 443 -j NOTRACK\n\
             -I OUTPUT 2 -s 10.96.0.2/32 -p tcp -m tcp --sport 443 -j NOTRACK\nCOMMIT\n\
             *filter\n-I INPUT 1 -d 10.96.0.2/32 -p tcp -m tcp --dport 443 -j ACCEPT\nCOMMIT\n"
        );
    }

    #[test]
    fn ensure_on_an_empty_host_inserts_all_five() {
        let wanted = wanted_rules(IpAddr::from([10, 96, 0, 2]), 443);
        let plan = Plan::ensure(&Ruleset::parse(""), &wanted);
        assert_eq!(plan.insert, wanted);
        assert!(plan.delete.is_empty());
        let input = plan.restore_input();
        assert!(input.starts_with("*raw\n-I PREROUTING 1 -d 10.96.0.2/32"));
        assert_eq!(input.matches("COMMIT").count(), 2);
    }

    #[test]
    fn steady_state_plans_nothing() {
        let wanted = wanted_rules(IpAddr::from([10, 96, 0, 2]), 443);
        let save: String = wanted
            .iter()
            .map(|rule| {
                format!(
                    "*{}\n-A {} {}\nCOMMIT\n",
                    rule.table,
                    rule.chain,
                    rule.spec.join(" ")
                )
            })
            .collect();
        let plan = Plan::ensure(&Ruleset::parse(&save), &wanted);
        assert!(plan.is_empty());
        assert_eq!(plan.restore_input(), "");
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
            let counts: Vec<usize> = wanted.iter().map(|rule| current.count(rule)).collect();
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
            assert_eq!(Ruleset::parse(&save).count(&wanted[3]), 0, "{printed}");
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
        let spec = |at: usize| wanted[at].spec.join(" ");
        let (d_out, s_out) = (spec(1), spec(2));
        let (accept, drop) = (spec(3), "-p tcp -m tcp --dport 443 -j DROP".to_string());
        let foreign = "-s 192.0.2.1/32 -j ACCEPT".to_string();
        // (table, chain, rules top first, expected after the sync)
        let cases: Vec<(&str, &str, Vec<&String>, Vec<&String>)> = vec![
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
        let plan = Plan::remove(&Ruleset::parse(V4_SAVE), &wanted);
        assert!(plan.insert.is_empty());
        assert_eq!(plan.delete.len(), 5);
        assert!(Plan::remove(&Ruleset::parse(""), &wanted).is_empty());
    }
}
