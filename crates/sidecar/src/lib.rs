// SPDX-FileCopyrightText: 2026 apiserver-proxy contributors
// SPDX-License-Identifier: Apache-2.0

//! apiserver-proxy sidecar: keeps the proxy's IP address on a local interface of the node and,
//! optionally, the iptables rules that let its traffic bypass connection tracking.

pub mod address;
pub mod cli;
pub mod daemon;
pub mod endpoint;
pub mod events;
pub mod firewall;
pub mod instance;
pub mod metrics;
pub mod netif;
pub mod nftnl;
pub mod reconcile;
pub mod rules;
pub mod run;
pub mod step;
pub mod teardown;

/// The version `--version` prints: the build's `APISERVER_PROXY_VERSION`, else the crate's.
pub const VERSION: &str = match option_env!("APISERVER_PROXY_VERSION") {
    Some(version) => version,
    None => env!("CARGO_PKG_VERSION"),
};

pub use common::error_chain;
