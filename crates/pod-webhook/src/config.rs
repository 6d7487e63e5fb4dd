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
    /// Bytes of request bodies held at once, in two pools carved out of it: the arrival pool
    /// (`arrival_budget_bytes`), which bodies take from as their bytes come, without waiting,
    /// and the rest, granted in turn as shares of whole declared bodies to bodies that outgrow
    /// their arrival allowance (or find the arrival pool full): such a request waits for others
    /// to finish (it never fails for it); one larger than the rest takes all of it. Bounds
    /// memory when many large pods arrive together.
    pub body_budget_bytes: usize,
    /// The part of `body_budget_bytes` that bodies take as they arrive, without waiting, up to
    /// `arrival_per_body_bytes` each, so that clients stalling large bodies cannot make
    /// reviews of ordinary size wait; at most half of the body budget (`Limits::body_pools`).
    pub arrival_budget_bytes: usize,
    /// The most one body takes from the arrival pool (at most the pool); a larger one waits
    /// its turn for a share of the rest of the body budget.
    pub arrival_per_body_bytes: usize,
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
        body_budget_bytes: 1024 * 1024,
        arrival_budget_bytes: 256 * 1024,
        arrival_per_body_bytes: 64 * 1024,
        answer_growth_budget_bytes: 1024 * 1024,
        body_fill_timeout: Duration::from_secs(2),
        answer_unbudgeted_bytes: answer_growth_bound(MAX_CONTAINERS, MAX_FQDN_BYTES),
        h2_max_concurrent_streams: 100,
        h2_max_pending_reset_streams: 20,
    };

    /// The body budget split into its arrival pool and the rest: the arrival pool is at most
    /// half of the budget, so bodies that outgrow it always find at least as much beside it,
    /// and a body's allowance is at most the arrival pool; the two add up to the budget.
    pub fn body_pools(&self) -> BodyPools {
        let arrival = self.arrival_budget_bytes.min(self.body_budget_bytes / 2);
        BodyPools {
            arrival,
            per_body: self.arrival_per_body_bytes.min(arrival),
            reserved: self.body_budget_bytes - arrival,
        }
    }
}

/// The sizes of the two pools the body budget is split into (`Limits::body_pools`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BodyPools {
    /// Bytes bodies take as they arrive, without waiting.
    pub arrival: usize,
    /// The most one body takes from `arrival`.
    pub per_body: usize,
    /// Bytes granted in turn as shares of whole declared bodies.
    pub reserved: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits::DEFAULT
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KIB: usize = 1024;

    #[test]
    fn the_body_budget_is_split_into_arrival_and_reserved_pools() {
        // (body budget, arrival, per body) → (arrival, per body, reserved)
        let cases = [
            // The defaults: a quarter arrives, three quarters are reserved.
            (
                (1024 * KIB, 256 * KIB, 64 * KIB),
                (256 * KIB, 64 * KIB, 768 * KIB),
            ),
            // Half and half.
            (
                (1024 * KIB, 512 * KIB, 128 * KIB),
                (512 * KIB, 128 * KIB, 512 * KIB),
            ),
            // An arrival pool over half the budget is cut to half.
            (
                (1024 * KIB, 1024 * KIB, 256 * KIB),
                (512 * KIB, 256 * KIB, 512 * KIB),
            ),
            // A small budget: the allowance is cut to the arrival pool.
            ((4096, 256 * KIB, 64 * KIB), (2048, 2048, 2048)),
            // No arrival pool: every body waits for its share.
            ((1024 * KIB, 0, 128 * KIB), (0, 0, 1024 * KIB)),
            ((1, 512 * KIB, 128 * KIB), (0, 0, 1)),
            ((0, 512 * KIB, 128 * KIB), (0, 0, 0)),
            // Odd sizes: the rest takes the odd byte.
            ((1001, 1000, 10), (500, 10, 501)),
        ];
        for ((body_budget, arrival, per_body), (want_arrival, want_per_body, want_reserved)) in
            cases
        {
            let limits = Limits {
                body_budget_bytes: body_budget,
                arrival_budget_bytes: arrival,
                arrival_per_body_bytes: per_body,
                ..Limits::DEFAULT
            };
            let pools = limits.body_pools();
            assert_eq!(
                pools,
                BodyPools {
                    arrival: want_arrival,
                    per_body: want_per_body,
                    reserved: want_reserved,
                },
                "budget {body_budget}, arrival {arrival}, per body {per_body}"
            );
            assert_eq!(pools.arrival + pools.reserved, body_budget);
        }
    }
}
