// SPDX-FileCopyrightText: 2026 apiserver-proxy contributors
// SPDX-License-Identifier: Apache-2.0

//! The best-effort teardown at exit (`--cleanup`): every step is tried, what is already gone
//! counts as removed, and every failure is reported.

use tracing::info;

use crate::address::{self, Found};
use crate::instance::Look;
use crate::netif::{AddressEntry, Link};
use crate::reconcile::{AddressKeeper, RuleKeeper, Sidecar};
use crate::step::{StepError, StepErrors};

impl Sidecar {
    /// Removes what the sidecar keeps: every copy of the rules, the address, and the interface
    /// when it is a dummy link this sidecar owns. Tries every step; what is gone counts as done.
    /// What another live instance keeps (the same IP, claimed by it) is left to it and reported.
    pub async fn teardown(&mut self) -> Result<(), StepErrors> {
        // A claim the other instance held until now is taken over: then it is ours to remove.
        self.address.claims.retry();
        let mut errors = Vec::new();
        for keeper in &mut self.rules {
            errors.extend(keeper.teardown().await);
        }
        errors.extend(self.address.teardown().await);
        if errors.is_empty() {
            Ok(())
        } else {
            Err(StepErrors(errors))
        }
    }
}

impl RuleKeeper {
    /// Removes every copy of the rules; reports what failed.
    pub async fn teardown(&mut self) -> Vec<StepError> {
        let mut errors = Vec::new();
        match self.pick_driver().await.map(|_| self.driver.as_ref()) {
            Ok(None) => {}
            Err(error) => errors.push(error),
            // Another IP's rules are left alone while it waits out its grace: at exit a daemon
            // cannot tell a pod between its init container and its daemon from a stale IP.
            Ok(Some(driver)) => {
                match driver.remove(&self.wanted, &self.claims, Look::Later).await {
                    Ok(changes) => {
                        let noun = driver.rule_noun();
                        for change in changes {
                            info!(rule = %change.rule, "removed {noun}");
                        }
                    }
                    Err(error) => errors.push(error.into()),
                }
            }
        }
        errors
    }
}

impl AddressKeeper {
    /// Removes the address, and the interface when it is a dummy link this sidecar owns;
    /// reports what failed.
    pub async fn teardown(&mut self) -> Vec<StepError> {
        let link = match self.netif.link_by_name(&self.config.interface).await {
            Ok(Some(link)) => link,
            Ok(None) => return Vec::new(),
            Err(error) => return vec![self.interface_error(error)],
        };
        let mut errors = self.remove_addresses(&link).await;
        errors.extend(self.delete_owned_link(&link).await);
        errors
    }

    /// Removes every copy of the addresses on `link`, but those another live instance keeps;
    /// reports what failed, and what was left to another instance.
    async fn remove_addresses(&self, link: &Link) -> Vec<StepError> {
        let ours = |entry: &AddressEntry| self.config.ips.contains(&entry.ip);
        let every = match self.netif.addresses(ours).await {
            Ok(every) => every,
            Err(error) => return vec![StepError::Address(error)],
        };
        // Our own IPs: claimed by another instance with the same IP, or ours to remove.
        let elsewhere = self
            .claims
            .kept_elsewhere(self.config.ips.iter().copied(), Look::First);
        let mut errors: Vec<StepError> = elsewhere
            .iter()
            .map(|ip| StepError::KeptElsewhere { ip: *ip })
            .collect();
        for ip in self.config.ips.iter().filter(|ip| !elsewhere.contains(ip)) {
            let copies: Vec<_> = every.iter().filter(|entry| entry.ip == *ip).collect();
            let found: Vec<Found> = copies.iter().map(|entry| Found::from(*entry)).collect();
            let ours = address::teardown(*ip, link.index, &found);
            for copy in ours.iter().filter_map(|at| copies.get(*at)) {
                match self.netif.delete_address(copy).await {
                    Ok(()) => info!(%ip, interface = link.name, "removed address"),
                    Err(error) => errors.push(StepError::Address(error)),
                }
            }
        }
        errors
    }

    /// Deletes `link` when [`deletes_link`] says so; reports the failure.
    async fn delete_owned_link(&self, link: &Link) -> Option<StepError> {
        let created = self
            .created_link
            .as_ref()
            .is_some_and(|created| created.index == link.index);
        if !deletes_link(link, created, self.config.manage_interface) {
            return None;
        }
        match self.netif.delete_link(link).await {
            Ok(()) => {
                info!(interface = link.name, "deleted dummy interface");
                None
            }
            Err(error) => Some(self.interface_error(error)),
        }
    }
}

/// Whether the teardown deletes the link: a dummy link this process `created`, or any dummy
/// link under `--manage-interface`; never lo, nor an interface someone else set up.
fn deletes_link(link: &Link, created: bool, manage_interface: bool) -> bool {
    let managed = manage_interface && link.is_dummy;
    (created || managed) && !link.is_loopback
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_dummy_link_the_sidecar_owns_is_deleted() {
        let link = |is_dummy, is_loopback| Link {
            index: 7,
            name: "apiproxy0".into(),
            is_dummy,
            is_loopback,
            up: true,
        };
        // dummy, lo, created by this process, --manage-interface, deleted
        let cases = [
            (true, false, true, false, true),
            (true, false, false, true, true),
            (true, false, false, false, false),
            (false, false, false, true, false),
            (false, false, true, false, true),
            (false, true, true, true, false),
            (false, true, false, true, false),
        ];
        for (dummy, lo, created, manage, want) in cases {
            assert_eq!(
                deletes_link(&link(dummy, lo), created, manage),
                want,
                "dummy {dummy}, lo {lo}, created {created}, --manage-interface {manage}"
            );
        }
    }
}
