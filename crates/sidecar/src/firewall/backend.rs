// SPDX-FileCopyrightText: 2026 apiserver-proxy contributors
// SPDX-License-Identifier: Apache-2.0

//! Which iptables backend holds the host's rules, pure: the choice among the dumps of both,
//! and whether a later dump leaves that choice open again. Tested with the driver in
//! `iptables.rs`.

use std::fmt;

use crate::rules::{Rule, Ruleset};

/// The iptables implementation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Nft,
    Legacy,
}

impl fmt::Display for Backend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Backend::Nft => "nft",
            Backend::Legacy => "legacy",
        })
    }
}

/// Whether a dump leaves the backend choice open: it holds none of `wanted` (with or without
/// the comment), no other rule carrying the sidecar's comment and no kubelet canary chain.
pub fn unconfirmed(current: &Ruleset, wanted: &[Rule]) -> bool {
    let none_of_ours = current.commented_ips().is_empty()
        && wanted.iter().all(|rule| current.positions(rule).is_empty());
    none_of_ours && !has_kubelet_canary(current)
}

/// Whether the dump holds a chain the kubelet creates to tell which backend it uses.
fn has_kubelet_canary(ruleset: &Ruleset) -> bool {
    ruleset.has_chain("KUBE-IPTABLES-HINT") || ruleset.has_chain("KUBE-KUBELET-CANARY")
}

/// Of the backends whose rules could be read (at least one), the one that holds the host's
/// rules: kubelet's canary chains first, then the larger rule count, nft on a tie. Returns it
/// and what was found, for the log.
pub fn choose_backend(found: &[(Backend, Ruleset)]) -> (Backend, String) {
    let score = |ruleset: &Ruleset| (has_kubelet_canary(ruleset), ruleset.rule_count());
    let mut chosen: Option<(Backend, (bool, usize))> = None;
    for (backend, ruleset) in found {
        let candidate = (*backend, score(ruleset));
        // Strictly better only: the earlier (nft) wins a tie.
        if chosen.is_none_or(|(_, best)| candidate.1 > best) {
            chosen = Some(candidate);
        }
    }
    let why = found
        .iter()
        .map(|(backend, ruleset)| {
            let (canary, rules) = score(ruleset);
            let canary = if canary { ", kubelet canary" } else { "" };
            format!("{backend}: {rules} rules{canary}")
        })
        .collect::<Vec<_>>()
        .join("; ");
    (chosen.map_or(Backend::Nft, |(backend, _)| backend), why)
}
