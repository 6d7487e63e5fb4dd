// SPDX-FileCopyrightText: 2026 apiserver-proxy contributors
// SPDX-License-Identifier: Apache-2.0

//! Bringing the node to the wanted state: the address side and the iptables side, each kept on
//! its own so that neither ever waits for the other (the loops are in `daemon.rs`, the cleanup
//! in `teardown.rs`).

use std::net::IpAddr;
use std::sync::Arc;

use tracing::{info, warn};

use crate::address::{self, Family, Found};
use crate::cli::Config;
use crate::error_chain;
use crate::firewall::{ChangeKind, Driver, Settings, Wanted};
use crate::instance::{Claims, Look};
use crate::metrics::{Metrics, Part};
use crate::netif::{AddressEntry, Link, Netif, NetifError};
use crate::step::{StepError, StepErrors, one_or_several};

/// The sidecar's state between syncs: the address side and the iptables side.
#[derive(Debug)]
pub struct Sidecar {
    pub address: AddressKeeper,
    /// One per address family in `--ip-address`, IPv4 first.
    pub rules: Vec<RuleKeeper>,
}

/// Keeps the address on its interface.
#[derive(Debug)]
pub struct AddressKeeper {
    pub(crate) config: Config,
    pub(crate) netif: Netif,
    pub(crate) metrics: Arc<Metrics>,
    /// The IPs this instance claims, and which other live instances keep.
    pub(crate) claims: Arc<Claims>,
    /// The dummy link this process created, deleted again by `--cleanup`.
    pub(crate) created_link: Option<Link>,
    /// The link index the address was last put on, to recognise its events.
    pub(crate) link_index: Option<u32>,
    /// Whether the kernel keeps the sidecar's address mark, as far as is known.
    marks: Marks,
    /// Whether the first sync has run (later changes are logged as restores).
    started: bool,
}

/// What is known of the kernel's address marks.
#[derive(Debug, Default)]
struct Marks {
    /// The addresses added with the mark: if a copy lacks it after that, the kernel keeps none.
    attempted: Vec<IpAddr>,
    reported_unsupported: bool,
}

/// Keeps the rules of each address of one family, through the firewall driver.
#[derive(Debug)]
pub struct RuleKeeper {
    pub(crate) config: Config,
    pub(crate) family: Family,
    /// An address of that family, which picks the iptables binaries.
    pub(crate) ip: IpAddr,
    /// The driver, picked on first use.
    pub(crate) driver: Option<Driver>,
    pub(crate) wanted: Wanted,
    pub(crate) metrics: Arc<Metrics>,
    /// The IPs this instance claims, and which other live instances keep.
    pub(crate) claims: Arc<Claims>,
    /// Whether the first sync has run (later changes are logged as restores).
    started: bool,
    /// Whether the other `--firewall` mode's rules of this sidecar were removed (or tried).
    other_mode_cleared: bool,
}

impl Sidecar {
    /// Prepares a sidecar that keeps the IPs of `claims` (see `instance.rs`). Nothing touches
    /// the kernel's network state before the first sync.
    pub fn new(config: Config, netif: Netif, metrics: Arc<Metrics>, claims: Arc<Claims>) -> Self {
        let rules = address::families(&config.ips)
            .into_iter()
            .filter_map(|family| {
                let of_family = config.ips.iter().filter(|ip| Family::of(**ip) == family);
                let ip = *of_family.clone().next()?;
                Some(RuleKeeper {
                    family,
                    ip,
                    wanted: Wanted {
                        ips: of_family.copied().collect(),
                        port: config.port,
                    },
                    config: config.clone(),
                    driver: None,
                    metrics: metrics.clone(),
                    claims: claims.clone(),
                    started: false,
                    other_mode_cleared: false,
                })
            })
            .collect();
        Sidecar {
            rules,
            address: AddressKeeper {
                config,
                netif,
                metrics,
                claims,
                created_link: None,
                link_index: None,
                marks: Marks::default(),
                started: false,
            },
        }
    }

    /// One whole sync: every step runs, whatever failed before it.
    pub async fn sync(&mut self) -> Result<(), StepErrors> {
        let mut errors: Vec<StepError> = self.address.sync().await.err().into_iter().collect();
        for keeper in &mut self.rules {
            errors.extend(keeper.sync().await.err());
        }
        if errors.is_empty() {
            Ok(())
        } else {
            Err(StepErrors(errors))
        }
    }
}

impl AddressKeeper {
    /// [`AddressKeeper::sync_address`], counted in the metrics.
    pub async fn sync(&mut self) -> Result<(), StepError> {
        let result = self.sync_address().await;
        self.started = true;
        self.metrics
            .part_synced(Part::Address, result.as_ref().err());
        result
    }

    pub(crate) fn interface_error(&self, source: NetifError) -> StepError {
        StepError::Interface {
            interface: self.config.interface.clone(),
            source,
        }
    }

    fn verb(&self) -> &'static str {
        if self.started { "restored" } else { "added" }
    }

    /// Makes sure the interface exists (and is up when it is ours) and carries the address
    /// exactly once. In steady state this only reads.
    pub async fn sync_address(&mut self) -> Result<(), StepError> {
        self.claims.retry();
        let link = self.find_or_create_link().await?;
        let down = self.keep_link_up(&link).await?;
        self.link_index = Some(link.index);
        let (wanted, remove) = (&self.config.ips, &self.config.remove_ips);
        let concerned =
            |entry: &AddressEntry| address::concerns(&Found::from(entry), wanted, remove);
        let every = self.netif.addresses(concerned).await;
        let every = every.map_err(StepError::Address)?;
        self.remove_unwanted(&every).await?;
        // Every address is tried, whatever failed before it, and every failure reported.
        let mut errors = Vec::new();
        for ip in self.config.ips.clone() {
            if let Err(error) = self.sync_one(&link, ip, &every).await {
                errors.push(error);
            }
        }
        // The address is kept on a link left down, as the Go original did, but nothing can
        // reach it there: not in place.
        if down {
            errors.push(StepError::InterfaceDown {
                interface: self.config.interface.clone(),
            });
        }
        one_or_several(errors)
    }

    /// The interface, created as a dummy link when there is none.
    async fn find_or_create_link(&mut self) -> Result<Link, StepError> {
        let interface = &self.config.interface;
        let found = self.netif.link_by_name(interface).await;
        if let Some(link) = found.map_err(|e| self.interface_error(e))? {
            return Ok(link);
        }
        let created = self.netif.create_dummy(interface).await;
        let link = created.map_err(|e| self.interface_error(e))?;
        info!(interface, index = link.index, "created dummy interface");
        self.metrics.repaired("interface");
        self.created_link = Some(link.clone());
        Ok(link)
    }

    /// Carries out [`link_step`] for the interface; returns whether it stays down.
    async fn keep_link_up(&mut self, link: &Link) -> Result<bool, StepError> {
        let ours = self
            .created_link
            .as_ref()
            .is_some_and(|created| created.index == link.index);
        let interface = &self.config.interface;
        match link_step(link, ours || self.config.manage_interface) {
            LinkStep::Up => Ok(false),
            LinkStep::BringUp => {
                let up = self.netif.set_up(link).await;
                up.map_err(|e| self.interface_error(e))?;
                info!(interface, "brought interface up");
                self.metrics.repaired("interface");
                Ok(false)
            }
            LinkStep::LeaveDown => Ok(true),
        }
    }

    /// Removes the addresses this sidecar added under an earlier IP and those named by
    /// `--remove-ip-address`, from the dump `every`; never those of an IP another live
    /// instance keeps. After the first sync, an earlier IP's address goes only once its IP has
    /// been unclaimed for the grace (see `instance.rs`); a named one goes at once.
    async fn remove_unwanted(&mut self, every: &[AddressEntry]) -> Result<(), StepError> {
        let all: Vec<Found> = every.iter().map(Found::from).collect();
        let (ips, remove) = (&self.config.ips, &self.config.remove_ips);
        let look = if self.started {
            Look::Later
        } else {
            Look::First
        };
        // Only the IPs that would go are asked about.
        let ips_at = |positions: Vec<usize>| {
            positions
                .into_iter()
                .filter_map(|at| all.get(at))
                .map(|found| found.ip)
                .collect::<Vec<IpAddr>>()
        };
        let earlier = self
            .claims
            .kept_elsewhere(ips_at(address::stale(ips, &all, &[])), look);
        let named = self.claims.kept_elsewhere(
            ips_at(address::named_for_removal(remove, &all, &[])),
            Look::First,
        );
        let removals = [
            (
                address::stale(ips, &all, &earlier),
                "removed an address this sidecar added earlier, no longer wanted",
            ),
            (
                address::named_for_removal(remove, &all, &named),
                "removed an address named by --remove-ip-address",
            ),
        ];
        for (positions, why) in removals {
            for entry in positions.iter().filter_map(|at| every.get(*at)) {
                self.netif
                    .delete_address(entry)
                    .await
                    .map_err(StepError::Address)?;
                info!(ip = %entry.ip, index = entry.index, prefix = entry.prefix_len, "{why}");
                self.metrics.repaired("stale_address");
            }
        }
        Ok(())
    }

    /// Puts `ip` on `link` exactly once, from the dump `every` read at the start of the sync.
    async fn sync_one(
        &mut self,
        link: &Link,
        ip: IpAddr,
        every: &[AddressEntry],
    ) -> Result<(), StepError> {
        let copies: Vec<&AddressEntry> = every.iter().filter(|entry| entry.ip == ip).collect();
        let found: Vec<Found> = copies.iter().map(|entry| Found::from(*entry)).collect();
        let plan = address::plan(ip, link.index, &found);
        for copy in plan.delete.iter().filter_map(|at| copies.get(*at)) {
            // The kernel does not change the scope of an existing address: delete and re-add.
            self.netif
                .delete_address(copy)
                .await
                .map_err(StepError::Address)?;
            info!(%ip, index = copy.index, prefix = copy.prefix_len, scope = ?copy.scope,
                  "removed address from another interface, or with a wrong scope");
            self.metrics.repaired("duplicate_address");
        }
        let change = address::change(&plan, self.marks.attempted.contains(&ip));
        if change.marks_unsupported && !self.marks.reported_unsupported {
            warn!(
                %ip,
                "the kernel keeps no address protocol (Linux 5.18 and later do): an address this sidecar added under an earlier IP cannot be recognised; name it with --remove-ip-address"
            );
            self.marks.reported_unsupported = true;
        }
        self.apply_change(link, ip, change).await
    }

    /// Carries out an [`address::Change`]: one add, or one re-add in place, or nothing.
    async fn apply_change(
        &mut self,
        link: &Link,
        ip: IpAddr,
        change: address::Change,
    ) -> Result<(), StepError> {
        if !change.writes() {
            return Ok(());
        }
        self.netif
            .add_address(link, ip)
            .await
            .map_err(StepError::Address)?;
        if !self.marks.attempted.contains(&ip) {
            self.marks.attempted.push(ip);
        }
        let interface = &self.config.interface;
        if change.add {
            info!(%ip, interface, "{} address", self.verb());
            self.metrics.repaired("address");
            return Ok(());
        }
        if change.deprecate {
            info!(%ip, interface, "deprecated the address in place: never a source address");
        }
        if change.mark {
            info!(%ip, interface, "marked the address in place as this sidecar's");
        }
        self.metrics.repaired("address_in_place");
        Ok(())
    }
}

/// What a sync does about the state of its interface.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum LinkStep {
    /// It is up: nothing to do.
    Up,
    /// Bring it up.
    BringUp,
    /// Leave it down: the address is kept on it, but the sync reports it as not in place.
    LeaveDown,
}

/// Whether to bring the link up: when the sidecar may manage it (`managed`: it created the
/// link, or `--manage-interface`) or it is lo, whose being down breaks every local connection.
/// Otherwise a down link is left alone (and reported).
fn link_step(link: &Link, managed: bool) -> LinkStep {
    if link.up {
        LinkStep::Up
    } else if managed || link.is_loopback {
        LinkStep::BringUp
    } else {
        LinkStep::LeaveDown
    }
}

impl RuleKeeper {
    /// [`RuleKeeper::sync_rules`], counted in the metrics.
    pub async fn sync(&mut self) -> Result<(), StepError> {
        let result = self.sync_rules().await;
        self.started = true;
        if self.config.setup_iptables {
            self.metrics
                .part_synced(Part::Rules(self.family), result.as_ref().err());
        }
        result
    }

    fn verb(&self) -> &'static str {
        if self.started { "restored" } else { "added" }
    }

    /// Picks the firewall driver on first use (and again after a failed pick, so a host that
    /// gets its iptables binaries later is served without a restart). Returns whether there is
    /// one: none without `--setup-iptables`.
    pub(crate) async fn pick_driver(&mut self) -> Result<bool, StepError> {
        if !self.config.setup_iptables {
            return Ok(false);
        }
        if self.driver.is_none() {
            self.driver = Some(Driver::pick(&self.settings(), self.ip).await?);
        }
        Ok(true)
    }

    fn settings(&self) -> Settings {
        Settings {
            firewall: self.config.firewall,
            iptables_backend: self.config.iptables_backend,
            xtables_lock: self.config.xtables_lock.clone(),
            xtables_lock_timeout: self.config.xtables_lock_timeout,
        }
    }

    /// Makes each of the five rules present exactly once. In steady state this is one
    /// `iptables-save`.
    pub async fn sync_rules(&mut self) -> Result<(), StepError> {
        self.pick_driver().await?;
        let Some(driver) = self.driver.as_mut() else {
            return Ok(());
        };
        self.claims.retry();
        let changes = driver
            .ensure(&self.wanted, !self.started, &self.claims)
            .await?;
        self.metrics.set_foreign_drops(&driver.foreign_drops());
        let noun = driver.rule_noun();
        let verb = self.verb();
        for change in &changes {
            let rule = &change.rule;
            match change.kind {
                ChangeKind::Duplicate => info!(%rule, "removed duplicate {noun}"),
                ChangeKind::Adopted => {
                    info!(%rule, "adopted {noun}: comment added in place");
                }
                ChangeKind::Stale => info!(%rule, "removed {noun} no longer wanted"),
                ChangeKind::Inserted => info!(%rule, why = change.why, "{verb} {noun}"),
                ChangeKind::Removed => info!(%rule, "removed {noun}"),
            }
            if let Some(label) = change.kind.repair_label() {
                self.metrics.repaired(label);
            }
        }
        if !self.other_mode_cleared {
            self.other_mode_cleared = true;
            self.clear_other_mode().await;
        }
        Ok(())
    }

    /// Once this mode's rules are in place: removes those of the other `--firewall` mode, as
    /// a node switched between the modes left them. Best effort: a failure is logged.
    async fn clear_other_mode(&self) {
        let Some(driver) = &self.driver else {
            return;
        };
        let other = match driver.other_mode(&self.settings(), self.ip).await {
            Ok(Some(other)) => other,
            Ok(None) => return,
            Err(error) => {
                warn!(error = %error_chain(&error), "cannot look for the other --firewall mode's rules");
                return;
            }
        };
        // Part of the first sync: another IP's rules found unclaimed go at once, as there.
        match other.remove(&self.wanted, &self.claims, Look::First).await {
            Ok(changes) => {
                for change in changes {
                    info!(rule = %change.rule, mode = %other, "removed the other --firewall mode's rule");
                }
            }
            Err(error) => {
                warn!(error = %error_chain(&error), "cannot remove the other --firewall mode's rules");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_down_link_is_brought_up_only_when_managed_or_lo() {
        let link = |up, is_loopback| Link {
            index: 7,
            name: "eth9".into(),
            is_dummy: false,
            is_loopback,
            up,
        };
        use LinkStep::{BringUp, LeaveDown, Up};
        // up, lo, managed, step
        let cases = [
            (true, false, false, Up),
            (true, false, true, Up),
            (true, true, false, Up),
            (false, false, true, BringUp),
            (false, true, false, BringUp),
            (false, true, true, BringUp),
            (false, false, false, LeaveDown),
        ];
        for (up, lo, managed, want) in cases {
            assert_eq!(
                link_step(&link(up, lo), managed),
                want,
                "up {up}, lo {lo}, managed {managed}"
            );
        }
    }
}
