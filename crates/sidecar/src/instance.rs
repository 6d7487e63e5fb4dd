// SPDX-FileCopyrightText: 2026 apiserver-proxy contributors
// SPDX-License-Identifier: Apache-2.0

//! Which proxy IPs the running instances on the node keep, so that instances with different
//! `--ip-address` lists live side by side (two DaemonSets during a move to a new proxy IP)
//! without removing each other's addresses and rules.
//!
//! An instance claims every IP it keeps by binding an abstract unix socket named
//! `@apiserver-proxy-sidecar/ip/<ip>` (the IP as `--ip-address` prints it, e.g.
//! `@apiserver-proxy-sidecar/ip/10.96.0.2`) and holds it for its whole life, one-shot runs too.
//! Abstract sockets belong to the network namespace (hostNetwork pods share the node's), need no
//! file, flag or volume, and the kernel releases them when the process ends, however it ends. An
//! IP is kept by another live instance when a socket is bound to its name and it is not this
//! process's: the probe is a `connect`, which changes nothing on either side.
//!
//! A second instance with the same IP cannot bind the name: it keeps the IP all the same, never
//! removes it, and tries to claim it again at every sync, so it takes over once the first stops.
//! An IP nobody claims any more (an earlier self, before a rolling IP change, or a one-shot run
//! for an earlier IP) is stale as before, and its address and rules go.

use std::collections::{BTreeMap, BTreeSet};
use std::io;
use std::net::IpAddr;
use std::os::linux::net::SocketAddrExt;
use std::os::unix::net::{SocketAddr, UnixDatagram};
use std::sync::{Mutex, PoisonError};

use tracing::{debug, info, warn};

/// How every claim's name begins (after the `@` that marks an abstract name).
pub const NAME_PREFIX: &str = "apiserver-proxy-sidecar/ip/";

/// The abstract socket name that claims `ip`, below `prefix` ([`NAME_PREFIX`] but in tests).
pub fn claim_name(prefix: &str, ip: IpAddr) -> String {
    format!("{prefix}{ip}")
}

/// What an attempt to bind a claim's name tells.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Bind {
    /// This process holds the claim now.
    Held,
    /// Another live process holds it.
    Taken,
    /// Binding failed for another reason: nothing is known.
    Failed,
}

/// The meaning of a bind's result.
pub fn bind_outcome<T>(result: &io::Result<T>) -> Bind {
    match result {
        Ok(_) => Bind::Held,
        Err(error) if error.kind() == io::ErrorKind::AddrInUse => Bind::Taken,
        Err(_) => Bind::Failed,
    }
}

/// What a probe of a claim's name tells.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Probe {
    /// A socket is bound to the name: a live process claims the IP.
    Live,
    /// Nothing is bound to it.
    Free,
    /// The probe failed for another reason (no file descriptor left, a security module).
    Unknown,
}

/// The meaning of a `connect` to a claim's name: for a datagram socket the kernel answers
/// `ECONNREFUSED` when nothing is bound to the name, success when something is.
pub fn probe_outcome<T>(result: &io::Result<T>) -> Probe {
    match result {
        Ok(_) => Probe::Live,
        Err(error) if error.kind() == io::ErrorKind::ConnectionRefused => Probe::Free,
        Err(_) => Probe::Unknown,
    }
}

/// Whether `ip` belongs to another live instance: this process does not hold its claim and the
/// probe did not find it free. A probe that tells nothing counts as claimed: leaving a stale
/// address until the next sync costs little, removing a live instance's would cut its traffic.
pub fn kept_elsewhere(held_here: bool, probe: Probe) -> bool {
    !held_here && probe != Probe::Free
}

/// The claims this process holds, and what it has reported about the others.
#[derive(Debug)]
pub struct Claims {
    prefix: String,
    /// The IPs this instance keeps, in `--ip-address` order.
    ips: Vec<IpAddr>,
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    /// The bound sockets: closing one releases its claim.
    held: BTreeMap<IpAddr, UnixDatagram>,
    /// IPs of ours another instance claims, already reported.
    reported_taken: BTreeSet<IpAddr>,
    /// IPs whose claim could not be tried, already reported.
    reported_failed: BTreeSet<IpAddr>,
    /// Other IPs found claimed by a live instance, reported when first seen so.
    spared: BTreeSet<IpAddr>,
}

impl Claims {
    /// Claims each of `ips` that no other live instance claims; the rest are tried again by
    /// [`Claims::retry`].
    pub fn take(ips: &[IpAddr]) -> Claims {
        Claims::with_prefix(NAME_PREFIX, ips)
    }

    /// [`Claims::take`] with names below `prefix`.
    pub fn with_prefix(prefix: &str, ips: &[IpAddr]) -> Claims {
        let claims = Claims {
            prefix: prefix.to_string(),
            ips: ips.to_vec(),
            state: Mutex::default(),
        };
        claims.retry();
        claims
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn address(&self, ip: IpAddr) -> io::Result<SocketAddr> {
        SocketAddr::from_abstract_name(claim_name(&self.prefix, ip))
    }

    /// Tries to claim every IP of this instance not yet claimed: cheap once all are held.
    pub fn retry(&self) {
        let mut state = self.state();
        for &ip in &self.ips {
            if state.held.contains_key(&ip) {
                continue;
            }
            let bound = self
                .address(ip)
                .and_then(|address| UnixDatagram::bind_addr(&address));
            let name = claim_name(&self.prefix, ip);
            match (bind_outcome(&bound), bound) {
                (Bind::Held, Ok(socket)) => {
                    if state.reported_taken.remove(&ip) {
                        info!(%ip, claim = %format_args!("@{name}"),
                              "claimed the IP: the other instance that kept it has stopped");
                    } else {
                        debug!(%ip, claim = %format_args!("@{name}"), "claimed the IP");
                    }
                    state.reported_failed.remove(&ip);
                    state.held.insert(ip, socket);
                }
                (Bind::Taken, _) => {
                    if state.reported_taken.insert(ip) {
                        warn!(%ip, claim = %format_args!("@{name}"),
                              "another running instance in this network namespace already keeps this IP: this one keeps it too, and takes the claim over when that one stops");
                    }
                }
                (_, Err(error)) => {
                    if state.reported_failed.insert(ip) {
                        warn!(%ip, claim = %format_args!("@{name}"), %error,
                              "cannot claim the IP; other instances may take its address and rules for stale");
                    }
                }
                (_, Ok(_)) => {}
            }
        }
    }

    /// Whether this process holds the claim of `ip`.
    pub fn holds(&self, ip: IpAddr) -> bool {
        self.state().held.contains_key(&ip)
    }

    /// Of `ips`, those another live instance keeps, without repeats: their addresses and rules
    /// are never this instance's to remove.
    pub fn kept_elsewhere(&self, ips: impl IntoIterator<Item = IpAddr>) -> Vec<IpAddr> {
        let ips: BTreeSet<IpAddr> = ips.into_iter().collect();
        let mut state = self.state();
        let mut kept = Vec::new();
        for ip in ips {
            if state.held.contains_key(&ip) {
                continue;
            }
            let probe = self.probe(ip);
            let elsewhere = kept_elsewhere(false, probe);
            if elsewhere {
                kept.push(ip);
            }
            if self.ips.contains(&ip) {
                continue;
            }
            if elsewhere && state.spared.insert(ip) {
                info!(%ip, ?probe, "another running instance keeps this IP: its address and rules are left to it");
            } else if !elsewhere && state.spared.remove(&ip) {
                info!(%ip, "the instance that kept this IP has stopped: its address and rules are stale now");
            }
        }
        kept
    }

    /// Probes the claim of `ip` with an unbound datagram socket's `connect`.
    fn probe(&self, ip: IpAddr) -> Probe {
        let connected = self.address(ip).and_then(|address| {
            let socket = UnixDatagram::unbound()?;
            socket.connect_addr(&address)
        });
        probe_outcome(&connected)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(text: &str) -> IpAddr {
        text.parse().expect("a test address")
    }

    fn error(kind: io::ErrorKind) -> io::Result<()> {
        Err(io::Error::from(kind))
    }

    #[test]
    fn names_carry_the_ip_as_the_flags_print_it() {
        let cases = [
            ("10.96.0.2", "apiserver-proxy-sidecar/ip/10.96.0.2"),
            ("fd00:0::2", "apiserver-proxy-sidecar/ip/fd00::2"),
            (
                "::ffff:10.0.0.1",
                "apiserver-proxy-sidecar/ip/::ffff:10.0.0.1",
            ),
        ];
        for (text, want) in cases {
            assert_eq!(claim_name(NAME_PREFIX, ip(text)), want, "{text}");
        }
        // Abstract names hold at most 107 bytes: the longest IPv6 text fits.
        let longest = claim_name(NAME_PREFIX, ip("ffff:ffff:ffff:ffff:ffff:ffff:ffff:fffe"));
        assert!(longest.len() < 107, "{longest}");
    }

    #[test]
    fn what_a_bind_and_a_probe_tell() {
        use io::ErrorKind::{AddrInUse, ConnectionRefused, PermissionDenied};
        let binds = [
            (Ok(()), Bind::Held),
            (error(AddrInUse), Bind::Taken),
            (error(PermissionDenied), Bind::Failed),
        ];
        for (result, want) in binds {
            assert_eq!(bind_outcome(&result), want, "{result:?}");
        }
        let probes = [
            (Ok(()), Probe::Live),
            (error(ConnectionRefused), Probe::Free),
            (Err(io::Error::from_raw_os_error(24)), Probe::Unknown),
            (error(PermissionDenied), Probe::Unknown),
        ];
        for (result, want) in probes {
            assert_eq!(probe_outcome(&result), want, "{result:?}");
        }
    }

    #[test]
    fn only_a_claim_held_by_another_live_process_keeps_an_ip_elsewhere() {
        // held here, probe, kept elsewhere
        let cases = [
            (true, Probe::Free, false),
            (true, Probe::Live, false),
            (true, Probe::Unknown, false),
            (false, Probe::Live, true),
            (false, Probe::Free, false),
            (false, Probe::Unknown, true),
        ];
        for (held, probe, want) in cases {
            assert_eq!(kept_elsewhere(held, probe), want, "{held} {probe:?}");
        }
    }

    /// Names of this test process alone, so nothing else on the machine is probed.
    fn prefix(test: &str) -> String {
        format!(
            "apiserver-proxy-sidecar-test/{}/{test}/",
            std::process::id()
        )
    }

    #[test]
    fn a_claim_is_held_for_life_and_taken_over_when_released() {
        let prefix = prefix("takeover");
        let (a, b, c) = (ip("10.96.0.2"), ip("10.96.0.3"), ip("10.96.0.4"));
        let first = Claims::with_prefix(&prefix, &[a]);
        assert!(first.holds(a));
        // A second instance with the same IP and one of its own.
        let second = Claims::with_prefix(&prefix, &[a, b]);
        assert!(!second.holds(a) && second.holds(b));
        assert_eq!(second.kept_elsewhere([a, b, c]), [a]);
        assert_eq!(first.kept_elsewhere([a, b, c]), [b]);
        second.retry();
        assert!(!second.holds(a), "still held by the first");
        drop(first);
        assert!(
            second.kept_elsewhere([a, c]).is_empty(),
            "released on close"
        );
        second.retry();
        assert!(second.holds(a), "taken over");
        let third = Claims::with_prefix(&prefix, &[c]);
        assert_eq!(third.kept_elsewhere([a, b, c]), [a, b]);
    }
}
