// SPDX-FileCopyrightText: 2026 apiserver-proxy contributors
// SPDX-License-Identifier: Apache-2.0

//! `apiserver-proxy-pod-webhook`: a mutating admission webhook that adds
//! `KUBERNETES_SERVICE_HOST=<apiserver FQDN>` to every container of every new pod.
//!
//! - [`mutate`] and [`review`] are pure: AdmissionReview bytes in, AdmissionReview bytes out.
//! - [`tls`] loads and hot-reloads the certificate, [`server`] serves over HTTPS with limits and
//!   graceful shutdown, [`metrics`] exports controller-runtime compatible metrics.

pub mod cli;
pub mod config;
pub mod log_limit;
pub mod metrics;
pub mod mutate;
pub mod review;
pub mod server;
pub mod tls;

pub use config::Config;
pub use server::{ServerError, WEBHOOK_PATH, Webhook};

/// Formats an error with its chain of causes, `outer: inner: innermost`: the one formatter
/// both binaries use.
pub use common::error_chain;

/// The version `--version` prints: the build's `APISERVER_PROXY_VERSION`, else the crate's.
pub const VERSION: &str = match option_env!("APISERVER_PROXY_VERSION") {
    Some(version) => version,
    None => env!("CARGO_PKG_VERSION"),
};
