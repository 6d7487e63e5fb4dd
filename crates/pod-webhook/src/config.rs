// SPDX-FileCopyrightText: 2026 apiserver-proxy contributors
// SPDX-License-Identifier: Apache-2.0

//! The server's configuration, built from the flags (or directly by tests).

use std::path::PathBuf;
use std::time::Duration;

use crate::mutate::{MAX_CONTAINERS, MAX_FQDN_BYTES, MutateOptions};
use crate::review::answer_growth_bound;

/// Everything the server needs to run.
#[derive(Debug, Clone)]
pub struct Config {
    /// What to add to pods.
    pub mutate: MutateOptions,
    /// Where to listen.
    pub listen: Listen,
    /// The certificate files.
    pub tls: TlsFiles,
    /// The lowest TLS version accepted.
    pub tls_min_version: TlsMinVersion,
    /// Offer HTTP/2 by ALPN.
    pub enable_http2: bool,
    /// Limits against slow, idle or abusive clients.
    pub limits: Limits,
    /// After the shutdown signal: how long to keep serving (not ready) before draining.
    pub shutdown_delay: Duration,
    /// How long in-flight requests get to finish once draining starts.
    pub shutdown_timeout: Duration,
    /// How often the certificate files are checked for changes.
    pub cert_reload_interval: Duration,
}

/// The listen address.
#[derive(Debug, Clone)]
pub struct Listen {
    /// Host name or address; empty for all addresses.
    pub host: String,
    /// TCP port; 0 picks a free one.
    pub port: u16,
}

impl Config {
    /// How often the certificate files are checked for changes, unless a test wants it
    /// quicker.
    pub const CERT_RELOAD_INTERVAL: Duration = Duration::from_secs(1);
}

/// The lowest TLS version the server accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TlsMinVersion {
    /// TLS 1.2 and 1.3.
    Tls12,
    /// TLS 1.3 only.
    Tls13,
}

/// Paths of the PEM files.
#[derive(Debug, Clone)]
pub struct TlsFiles {
    /// Server certificate chain, leaf first.
    pub cert: PathBuf,
    /// Server private key.
    pub key: PathBuf,
    /// CA that client certificates must chain to; `None` asks for no client certificate.
    pub client_ca: Option<PathBuf>,
}

/// Limits on what a client may hold or send.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Connections served at once; each may hold up to 64 KiB of TLS and HTTP buffers.
    pub max_connections: u32,
    /// Time for the TLS handshake.
    pub handshake_timeout: Duration,
    /// HTTP/1: time to receive a complete request head, counted from its first byte.
    pub header_read_timeout: Duration,
    /// A connection with no request in flight, and no request head begun, for this long is
    /// closed (HTTP/1 and HTTP/2). Longer than kube-apiserver's 90 s idle keep-alive, so the
    /// client, not the server, ends idle connections: a server closing one just as the client
    /// sends a POST on it fails that admission request.
    pub idle_timeout: Duration,
    /// An answer that does not move towards the client for this long (the client does not
    /// read it) closes its connection, freeing the answer and the connection's slot.
    pub write_timeout: Duration,
    /// Time to read a request body and answer.
    pub request_timeout: Duration,
    /// Largest request head (HTTP/1 read buffer; HTTP/2 header list).
    pub max_header_bytes: usize,
    /// Largest request body.
    pub max_body_bytes: usize,
    /// Bytes of request bodies held as they arrive, across all requests: a body takes its
    /// bytes from here as they come, without waiting, up to `arrival_per_body_bytes`.
    pub arrival_budget_bytes: usize,
    /// The most one body takes from `arrival_budget_bytes`; a larger one (or one that finds it
    /// full) waits its turn for a share of `body_budget_bytes`.
    pub arrival_per_body_bytes: usize,
    /// Shares of whole declared bodies, in bytes, granted in turn to bodies that outgrow their
    /// arrival allowance: a request that would pass it waits for others to finish (it never
    /// fails for it); one larger than the whole budget takes all of it. Bounds memory when
    /// many large pods arrive together.
    pub body_budget_bytes: usize,
    /// What answers may hold beyond their requests' shares, in bytes: each review waits here
    /// for `answer_unbudgeted_bytes` before its answer is built, and keeps what the answer
    /// needs.
    pub answer_growth_budget_bytes: usize,
    /// Once a body has its share of the budget, time for the rest of it to arrive: a client
    /// that stops sending cannot hold the share for long.
    pub body_fill_timeout: Duration,
    /// How much larger than its request's body an answer may be; a larger one is refused
    /// (400). The default is the most a pod within the container limit can need, with the
    /// longest FQDN, so it refuses no pod the container limit lets through.
    pub answer_unbudgeted_bytes: usize,
    /// HTTP/2: streams open at once on one connection.
    pub h2_max_concurrent_streams: u32,
    /// HTTP/2: streams reset by the client before being handled (rapid reset, CVE-2023-44487).
    pub h2_max_pending_reset_streams: usize,
}

impl Limits {
    /// The limits the server runs with unless told otherwise; the flags' defaults come from
    /// here.
    pub const DEFAULT: Limits = Limits {
        // Each connection may hold up to 64 KiB of TLS and HTTP buffers: 256 of them, the
        // body pools and the largest body with its answer stay within three quarters of the
        // 64 MiB the Deployment allows (docs/webhook.md, "Memory").
        max_connections: 256,
        handshake_timeout: Duration::from_secs(10),
        header_read_timeout: Duration::from_secs(10),
        idle_timeout: Duration::from_secs(120),
        request_timeout: Duration::from_secs(10),
        write_timeout: Duration::from_secs(10),
        max_header_bytes: 16 * 1024,
        max_body_bytes: 7 * 1024 * 1024,
        arrival_budget_bytes: 1024 * 1024,
        arrival_per_body_bytes: 256 * 1024,
        body_budget_bytes: 1024 * 1024,
        answer_growth_budget_bytes: 1024 * 1024,
        body_fill_timeout: Duration::from_secs(2),
        answer_unbudgeted_bytes: answer_growth_bound(MAX_CONTAINERS, MAX_FQDN_BYTES),
        h2_max_concurrent_streams: 100,
        h2_max_pending_reset_streams: 20,
    };
}

impl Default for Limits {
    fn default() -> Self {
        Limits::DEFAULT
    }
}
