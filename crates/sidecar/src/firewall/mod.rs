// SPDX-FileCopyrightText: 2026 apiserver-proxy contributors
// SPDX-License-Identifier: Apache-2.0

//! The firewall seam: the one face the rule loop (`reconcile.rs`, `teardown.rs`) sees of the
//! rules, whichever way they are written. A [`Driver`] sets the rules up (verifying and
//! repairing them on every later call), tears them down and names itself; each way of doing it
//! lives in a file of its own (`iptables.rs`: `iptables-save` and one atomic
//! `iptables-restore --noflush`). The decisions stay pure and shared (`rules.rs`); what the
//! drivers report back is the same [`Change`] list, logged and counted by the loop.

mod backend;
pub mod iptables;
pub mod nftables;
pub mod notrack;

use std::fmt;
use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

use crate::cli::{BackendChoice, FirewallChoice};
use crate::instance::{Claims, Look};
use netlink_packet_core::Emitable;

use crate::rules::{COMMENT_PREFIX, Plan, wanted_rules};

pub use iptables::{Backend, FirewallError};

/// What the rules of one address family are for: the proxy's addresses of that family and its
/// port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Wanted {
    pub ips: Vec<IpAddr>,
    pub port: u16,
}

/// How the rules are written: the one thing the rule loop holds and calls.
#[derive(Debug, Clone)]
pub enum Driver {
    /// The five rules through the host's `iptables` (nft or legacy backend).
    Iptables(iptables::Firewall),
    /// The three `notrack` rules in nf_tables tables of the sidecar's own, over netlink.
    Nftables(nftables::Native),
}

/// What went wrong with the rules, named by the driver.
#[derive(Debug, thiserror::Error)]
pub enum DriverError {
    #[error("iptables: cannot pick a backend")]
    IptablesBackend(#[source] FirewallError),
    #[error("iptables ({backend})")]
    Iptables {
        backend: Backend,
        #[source]
        source: FirewallError,
    },
    #[error("nftables")]
    Nftables(#[source] crate::nftnl::NftError),
}

impl DriverError {
    /// The metrics label of the error.
    pub fn kind(&self) -> &'static str {
        match self {
            DriverError::Iptables { source, .. } if source.is_lock_busy() => "iptables_lock",
            DriverError::Iptables { .. } | DriverError::IptablesBackend(_) => "iptables",
            DriverError::Nftables(_) => "nftables",
        }
    }
}

/// What kind of change a driver made, for the log and the `repairs_total` label.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChangeKind {
    /// A missing rule written.
    Inserted,
    /// An extra copy of a rule removed.
    Duplicate,
    /// A rule without the ownership comment (as the Go original wrote it) rewritten in place.
    Adopted,
    /// A rule of this sidecar no longer wanted (the IP or port changed) removed.
    Stale,
    /// A rule removed by the teardown.
    Removed,
}

impl ChangeKind {
    /// The `repairs_total` label; `None` for the teardown, which repairs nothing.
    pub fn repair_label(self) -> Option<&'static str> {
        match self {
            ChangeKind::Inserted => Some("iptables_rule"),
            ChangeKind::Duplicate => Some("duplicate_rule"),
            ChangeKind::Adopted => Some("adopted_rule"),
            ChangeKind::Stale => Some("stale_rule"),
            ChangeKind::Removed => None,
        }
    }
}

/// One change a driver made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    pub kind: ChangeKind,
    /// The rule, as the driver's tools show it.
    pub rule: String,
    /// Why the rule exists, for an inserted one.
    pub why: Option<&'static str>,
}

/// The changes a plan carries out, in the order the loop reports them.
pub fn changes_of(plan: &Plan) -> Vec<Change> {
    let lines = |kind, lines: &[crate::rules::Line]| -> Vec<Change> {
        lines
            .iter()
            .map(|line| Change {
                kind,
                rule: line.to_string(),
                why: None,
            })
            .collect()
    };
    let mut changes = lines(ChangeKind::Duplicate, &plan.duplicates);
    changes.extend(plan.adopted.iter().map(|rule| Change {
        kind: ChangeKind::Adopted,
        rule: rule.to_string(),
        why: None,
    }));
    changes.extend(lines(ChangeKind::Stale, &plan.stale));
    changes.extend(plan.insert.iter().map(|rule| Change {
        kind: ChangeKind::Inserted,
        rule: rule.to_string(),
        why: Some(rule.why),
    }));
    changes
}

/// How to reach the host's firewall: the flags that pick and bound the driver.
#[derive(Debug, Clone)]
pub struct Settings {
    pub firewall: FirewallChoice,
    pub iptables_backend: BackendChoice,
    pub xtables_lock: PathBuf,
    pub xtables_lock_timeout: Duration,
}

impl Driver {
    /// What the log calls one of this driver's rules.
    pub fn rule_noun(&self) -> &'static str {
        match self {
            Driver::Iptables(_) => "iptables rule",
            Driver::Nftables(_) => "nftables rule",
        }
    }

    /// The driver the flags ask for; with an automatic iptables backend, the one that holds the
    /// host's rules (which reads them: see [`iptables::Firewall::detect_backend`]).
    /// `ip` is an address of the family whose rules the driver keeps.
    pub async fn pick(settings: &Settings, ip: IpAddr) -> Result<Driver, DriverError> {
        if settings.firewall == FirewallChoice::Nftables {
            return Ok(Driver::Nftables(nftables::Native::new()));
        }
        let firewall = |backend| {
            iptables::Firewall::new(
                ip,
                backend,
                settings.xtables_lock.clone(),
                settings.xtables_lock_timeout,
            )
        };
        let firewall = match settings.iptables_backend {
            BackendChoice::Nft => firewall(Backend::Nft),
            BackendChoice::Legacy => firewall(Backend::Legacy),
            BackendChoice::Auto => {
                let (backend, why) = iptables::Firewall::detect_backend(ip)
                    .await
                    .map_err(DriverError::IptablesBackend)?;
                tracing::info!(%backend, found = %why, "picked the iptables backend that holds the host's rules");
                firewall(backend).auto_picked()
            }
        };
        Ok(Driver::Iptables(firewall))
    }

    /// The driver of the other mode (`--firewall`) when it may hold rules of this sidecar,
    /// which go once this mode's are in place: a node switched from iptables to the native
    /// mode or back by a DaemonSet update keeps no copy of the old mode's rules. From the native
    /// mode only iptables-nft is looked at, over netlink (no process is spawned unless a rule
    /// carrying the sidecar's comment is there); iptables-legacy rules cannot be seen without
    /// running iptables, and stay.
    pub async fn other_mode(
        &self,
        settings: &Settings,
        ip: IpAddr,
    ) -> Result<Option<Driver>, crate::nftnl::NftError> {
        match self {
            Driver::Iptables(_) => Ok(Some(Driver::Nftables(nftables::Native::new()))),
            Driver::Nftables(_) => {
                let family = match ip {
                    IpAddr::V4(_) => crate::nftnl::Family::IPv4,
                    IpAddr::V6(_) => crate::nftnl::Family::IPv6,
                };
                let mut nft = crate::nftnl::Nftables::open()?;
                let mut ours = false;
                for table in iptables::TABLES {
                    let rules = match nft.rules(family, table).await {
                        Ok(rules) => rules,
                        // No such table: nothing of ours in it.
                        Err(crate::nftnl::NftError::Refused { .. }) => continue,
                        Err(error) => return Err(error),
                    };
                    // iptables-nft keeps `-m comment` as a compat match whose data holds the
                    // text: look for the sidecar's prefix in the rule's bytes.
                    ours |= rules.iter().any(|rule| {
                        let attributes = rule.attributes.as_slice();
                        let mut bytes = vec![0; attributes.buffer_len()];
                        attributes.emit(&mut bytes);
                        bytes
                            .windows(COMMENT_PREFIX.len())
                            .any(|window| window == COMMENT_PREFIX.as_bytes())
                    });
                }
                Ok(ours.then(|| {
                    Driver::Iptables(iptables::Firewall::new(
                        ip,
                        Backend::Nft,
                        settings.xtables_lock.clone(),
                        settings.xtables_lock_timeout,
                    ))
                }))
            }
        }
    }

    /// Sets up, verifies and repairs the rules of `wanted`; returns what it changed. `first`
    /// is the first call of this process, when changes are likely. The rules of IPs that other
    /// live instances keep (`claims`, see `instance.rs`) are never stale; after the first call,
    /// neither are those of another IP until it has been unclaimed for the grace.
    pub async fn ensure(
        &mut self,
        wanted: &Wanted,
        first: bool,
        claims: &Claims,
    ) -> Result<Vec<Change>, DriverError> {
        match self {
            Driver::Iptables(firewall) => firewall
                .sync(&rules_of(wanted), first, claims)
                .await
                .map(|plan| changes_of(&plan))
                .map_err(|source| DriverError::Iptables {
                    backend: firewall.backend(),
                    source,
                }),
            Driver::Nftables(native) => native
                .ensure(wanted, first, claims)
                .await
                .map_err(DriverError::Nftables),
        }
    }

    /// Removes every rule of `wanted` (and this sidecar's rules no longer wanted), but none
    /// of an IP another live instance keeps (`claims`, judged as `look` says); returns what it
    /// removed.
    pub async fn remove(
        &self,
        wanted: &Wanted,
        claims: &Claims,
        look: Look,
    ) -> Result<Vec<Change>, DriverError> {
        match self {
            Driver::Iptables(firewall) => firewall
                .remove(&rules_of(wanted), claims, look)
                .await
                .map(|plan| {
                    plan.deletions()
                        .iter()
                        .map(|line| Change {
                            kind: ChangeKind::Removed,
                            rule: line.to_string(),
                            why: None,
                        })
                        .collect()
                })
                .map_err(|source| self.error(source)),
            Driver::Nftables(native) => native
                .remove(wanted, claims, look)
                .await
                .map_err(DriverError::Nftables),
        }
    }

    /// Whether an nf_tables transaction (see `nftnl`) may have touched this driver's rules, so
    /// that the rule loop should look at once. The native driver's own transactions do not.
    /// The iptables driver does not say yet: it is looked at every `--sync-interval`.
    pub fn concerns(&self, transaction: &crate::nftnl::Transaction) -> bool {
        match self {
            Driver::Iptables(firewall) => firewall.concerns(transaction),
            Driver::Nftables(native) => nftables::Native::concerns(transaction, native.port()),
        }
    }

    /// Base chains of other tables that drop by policy at the input or output hook, which the
    /// native driver cannot overrule (see `nftables.rs`); none for iptables, whose ACCEPT
    /// rules go into those chains.
    pub fn foreign_drops(&self) -> Vec<String> {
        match self {
            Driver::Iptables(_) => Vec::new(),
            Driver::Nftables(native) => native.foreign_drops(),
        }
    }

    fn error(&self, source: FirewallError) -> DriverError {
        match self {
            Driver::Iptables(firewall) => DriverError::Iptables {
                backend: firewall.backend(),
                source,
            },
            Driver::Nftables(_) => DriverError::IptablesBackend(source),
        }
    }
}

impl fmt::Display for Driver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Driver::Iptables(firewall) => write!(f, "iptables ({})", firewall.backend()),
            Driver::Nftables(_) => f.write_str("nftables (native)"),
        }
    }
}

/// The iptables rules of `wanted`: five per address.
fn rules_of(wanted: &Wanted) -> Vec<crate::rules::Rule> {
    wanted
        .ips
        .iter()
        .flat_map(|ip| wanted_rules(*ip, wanted.port))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rules::Ruleset;

    #[test]
    fn a_plan_is_reported_as_changes_in_order() {
        let wanted = Wanted {
            ips: vec![IpAddr::from([10, 96, 0, 2])],
            port: 443,
        };
        let rules = rules_of(&wanted);
        assert_eq!(rules.len(), 5);
        let plan = Plan::ensure(&Ruleset::parse(""), &rules, &[]);
        let changes = changes_of(&plan);
        assert_eq!(changes.len(), 5);
        assert!(
            changes
                .iter()
                .all(|change| change.kind == ChangeKind::Inserted
                    && change.why.is_some()
                    && change.rule.starts_with("-t "))
        );
        let labels: Vec<_> = [
            ChangeKind::Inserted,
            ChangeKind::Duplicate,
            ChangeKind::Adopted,
            ChangeKind::Stale,
            ChangeKind::Removed,
        ]
        .map(ChangeKind::repair_label)
        .into();
        assert_eq!(
            labels,
            [
                Some("iptables_rule"),
                Some("duplicate_rule"),
                Some("adopted_rule"),
                Some("stale_rule"),
                None
            ]
        );
    }

    #[test]
    fn errors_are_labelled_by_what_failed() {
        let busy = DriverError::Iptables {
            backend: Backend::Nft,
            source: FirewallError::LockBusy {
                path: "/run/xtables.lock".into(),
                waited: Duration::from_secs(5),
            },
        };
        assert_eq!(busy.kind(), "iptables_lock");
        let missing = DriverError::IptablesBackend(FirewallError::BinaryMissing {
            binary: "iptables-nft-save".into(),
        });
        assert_eq!(missing.kind(), "iptables");
        assert_eq!(
            crate::error_chain(&missing),
            "iptables: cannot pick a backend: iptables-nft-save not found: install iptables (both the nft and legacy variants)"
        );
    }
}
