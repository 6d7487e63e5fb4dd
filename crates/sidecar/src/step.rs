// SPDX-FileCopyrightText: 2026 apiserver-proxy contributors
// SPDX-License-Identifier: Apache-2.0

//! What a failed step of a sync or teardown is: the vocabulary the loops that run the steps
//! (`reconcile.rs`, `teardown.rs`, `daemon.rs`) and the metrics that count them share.

use std::net::IpAddr;

use crate::error_chain;
use crate::firewall::DriverError;
use crate::netif::NetifError;

/// A failed step of a sync or teardown.
#[derive(Debug, thiserror::Error)]
pub enum StepError {
    #[error("interface {interface}")]
    Interface {
        interface: String,
        #[source]
        source: NetifError,
    },
    #[error("address")]
    Address(#[source] NetifError),
    /// The interface is down and not the sidecar's to bring up: the address is on it, but
    /// unreachable.
    #[error(
        "interface {interface} is down: the address is on it but unreachable (bring the interface up, or let the sidecar do it with --manage-interface)"
    )]
    InterfaceDown { interface: String },
    /// The teardown leaves an IP alone that another live instance keeps too.
    #[error(
        "{ip} is kept by another running instance in this network namespace: its address and rules are left to it"
    )]
    KeptElsewhere { ip: IpAddr },
    /// The rules: named by the firewall driver that failed.
    #[error(transparent)]
    Firewall(#[from] DriverError),
    /// Several addresses of `--ip-address` failed, each named by its own error.
    #[error("{}", .0.iter().map(|e| error_chain(e)).collect::<Vec<_>>().join("; "))]
    Several(Vec<StepError>),
}

impl StepError {
    /// The metrics label of the error.
    pub fn kind(&self) -> &'static str {
        match self {
            StepError::Interface { .. } | StepError::InterfaceDown { .. } => "interface",
            StepError::Address(_) | StepError::KeptElsewhere { .. } => "address",
            StepError::Firewall(error) => error.kind(),
            StepError::Several(errors) => errors.first().map_or("address", StepError::kind),
        }
    }
}

/// Every step that failed, so one failure never hides another.
#[derive(Debug, thiserror::Error)]
#[error("{}", .0.iter().map(|e| error_chain(e)).collect::<Vec<_>>().join("; "))]
pub struct StepErrors(pub Vec<StepError>);

/// The failures of one step: `Ok` for none, the error itself for one.
pub(crate) fn one_or_several(mut errors: Vec<StepError>) -> Result<(), StepError> {
    match errors.len() {
        0 => Ok(()),
        1 => Err(errors.remove(0)),
        _ => Err(StepError::Several(errors)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn address_error(ip: &str) -> StepError {
        StepError::Address(NetifError {
            action: format!("add {ip} to interface lo"),
            cause: std::io::Error::from_raw_os_error(1),
        })
    }

    #[test]
    fn every_failed_address_is_named_once() {
        assert!(one_or_several(Vec::new()).is_ok());
        let one = one_or_several(vec![address_error("10.96.0.2")]).expect_err("one error");
        assert!(matches!(one, StepError::Address(_)));
        assert!(
            error_chain(&one).starts_with("address: add 10.96.0.2 to interface lo: "),
            "{}",
            error_chain(&one)
        );
        let both = one_or_several(vec![address_error("10.96.0.2"), address_error("fd00::2")])
            .expect_err("two errors");
        assert_eq!(both.kind(), "address");
        let shown = error_chain(&both);
        assert_eq!(shown.matches("10.96.0.2").count(), 1, "{shown}");
        assert_eq!(shown.matches("fd00::2").count(), 1, "{shown}");
        assert_eq!(shown.matches("; address: add ").count(), 1, "{shown}");
    }
}
