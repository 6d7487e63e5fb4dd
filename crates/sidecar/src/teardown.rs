// SPDX-FileCopyrightText: 2026 apiserver-proxy contributors
// SPDX-License-Identifier: Apache-2.0

//! The best-effort teardown at exit (`--cleanup`): every step is tried, what is already gone
//! counts as removed, and every failure is reported.

use tracing::info;

use crate::address::{self, Found};
use crate::reconcile::{AddressKeeper, RuleKeeper, Sidecar, StepError, StepErrors};

impl Sidecar {
    /// Removes what the sidecar keeps: every copy of the rules, the address, and the interface
    /// when it is a dummy link this sidecar owns. Tries every step; what is gone counts as done.
    pub async fn teardown(&mut self) -> Result<(), StepErrors> {
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
        match self.firewall().await {
            Ok(None) => {}
            Err(error) => errors.push(error),
            Ok(Some(firewall)) => match firewall.remove(&self.wanted).await {
                Ok(plan) => {
                    for rule in plan.deletions() {
                        info!(%rule, "removed iptables rule");
                    }
                }
                Err(source) => errors.push(StepError::Iptables {
                    backend: firewall.backend(),
                    source,
                }),
            },
        }
        errors
    }
}

impl AddressKeeper {
    /// Removes the address, and the interface when it is a dummy link this sidecar owns;
    /// reports what failed.
    pub async fn teardown(&mut self) -> Vec<StepError> {
        let mut errors = Vec::new();
        let link = match self.netif.link_by_name(&self.config.interface).await {
            Ok(link) => link,
            Err(error) => {
                errors.push(self.interface_error(error));
                None
            }
        };
        if let Some(link) = &link {
            match self.netif.addresses().await {
                Ok(every) => {
                    for ip in &self.config.ips {
                        let copies: Vec<_> = every.iter().filter(|entry| entry.ip == *ip).collect();
                        let found: Vec<Found> =
                            copies.iter().map(|entry| Found::from(*entry)).collect();
                        let ours = address::teardown(*ip, link.index, &found);
                        for copy in ours.iter().filter_map(|at| copies.get(*at)) {
                            match self.netif.delete_address(copy).await {
                                Ok(()) => info!(%ip, interface = link.name, "removed address"),
                                Err(error) => errors.push(StepError::Address(error)),
                            }
                        }
                    }
                }
                Err(error) => errors.push(StepError::Address(error)),
            }
            let created = self
                .created_link
                .as_ref()
                .is_some_and(|created| created.index == link.index);
            let managed = self.config.manage_interface && link.is_dummy;
            if (created || managed) && !link.is_loopback {
                match self.netif.delete_link(link).await {
                    Ok(()) => info!(interface = link.name, "deleted dummy interface"),
                    Err(error) => errors.push(self.interface_error(error)),
                }
            }
        }
        errors
    }
}
