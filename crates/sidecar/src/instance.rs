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
//!
//! A pod runs the sidecar twice, as a one-shot init container and then as its daemon, and
//! between the two nobody claims its IP. So an IP of another instance found unclaimed is stale
//! at once only at the first sync of a process (a one-shot run, a new pod of a rolling update);
//! later syncs wait until it has been seen unclaimed for [`GRACE`] in a row, and a claim seen in
//! between starts the wait over ([`judge`]). The daemon looks again at such an IP every
//! [`SAMPLE_EVERY`] while it waits ([`Claims::sample`]) and syncs when the wait ends
//! ([`Claims::grace_ends`]).

use std::collections::{BTreeMap, BTreeSet};
use std::io;
use std::net::IpAddr;
use std::os::linux::net::SocketAddrExt;
use std::os::unix::net::{SocketAddr, UnixDatagram};
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use tokio::sync::watch;
use tracing::{debug, info, warn};

/// How long another IP must be seen unclaimed in a row before its address and rules count as
/// stale (but at the first sync of a process). It covers the moment between a pod's init
/// container (`--daemon=false`), which ends, and its daemon, which the kubelet starts next:
/// usually well under a second, a few seconds on a busy node (the image is the same one, already
/// pulled). The cost is the same wait before a migration removes the old IP's state, once the
/// old instance is gone.
pub const GRACE: Duration = Duration::from_secs(10);

/// How often the daemon looks at the claim of an IP that waits out its grace, so that a claim
/// held for a moment in between (an init container's run) is seen and starts the wait over.
pub const SAMPLE_EVERY: Duration = Duration::from_secs(1);

/// The longest time between two sightings of an IP unclaimed for them to count as one spell:
/// a few samples. A longer silence (the IP's state was gone, or nothing looked) may have hidden
/// a claim, so the next sighting starts the wait over.
pub const SPELL_GAP: Duration = Duration::from_secs(3);

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

/// Which sync looks at other IPs' claims, and so how an unclaimed one is judged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Look {
    /// The first sync of a process, or an IP named for removal: unclaimed is stale at once.
    /// A one-shot run for a new IP after one for an old IP removes the old IP's state, and so
    /// does the new pod of a rolling IP change.
    First,
    /// Any later sync: unclaimed is stale once seen so for [`GRACE`] in a row.
    Later,
}

/// A spell of another IP seen unclaimed: since when, and when last.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Unclaimed {
    pub since: Instant,
    pub last: Instant,
}

impl Unclaimed {
    /// When the spell's grace ends.
    pub fn grace_end(&self) -> Instant {
        self.since + GRACE
    }

    /// Whether a sighting at `now` still belongs to this spell.
    fn goes_on(&self, now: Instant) -> bool {
        now.saturating_duration_since(self.last) <= SPELL_GAP
    }

    /// Whether the daemon still waits out this spell's grace at `now`.
    pub fn pending(&self, now: Instant) -> bool {
        self.goes_on(now) && now < self.grace_end()
    }
}

/// The verdict on another IP's claim at one look.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Judged {
    /// Its address and rules are left alone: claimed, or unclaimed for less than the grace.
    pub spared: bool,
    /// The spell of being unclaimed, to remember for the next look.
    pub unclaimed: Option<Unclaimed>,
}

/// Judges another IP (not this instance's own) from its probe at `now`, the spell it was last
/// seen unclaimed in (`seen`) and the kind of look. Claimed (or unknown) ends the spell and
/// spares the IP. Unclaimed goes on with the spell when it was seen so shortly before
/// ([`SPELL_GAP`]), else starts one; at a [`Look::Later`] the IP stays spared until the spell
/// is [`GRACE`] long. A [`Look::First`] never starts a spell: its verdict is final.
pub fn judge(seen: Option<Unclaimed>, probe: Probe, look: Look, now: Instant) -> Judged {
    if probe != Probe::Free {
        return Judged {
            spared: true,
            unclaimed: None,
        };
    }
    match look {
        Look::First => Judged {
            spared: false,
            unclaimed: seen,
        },
        Look::Later => {
            let since = seen
                .filter(|spell| spell.goes_on(now))
                .map_or(now, |spell| spell.since);
            let spell = Unclaimed { since, last: now };
            Judged {
                spared: now < spell.grace_end(),
                unclaimed: Some(spell),
            }
        }
    }
}

/// The earliest end of a grace still waited out at `now`, when to sync next.
pub fn next_grace_end<'a>(
    spells: impl IntoIterator<Item = &'a Unclaimed>,
    now: Instant,
) -> Option<Instant> {
    spells
        .into_iter()
        .filter(|spell| spell.pending(now))
        .map(Unclaimed::grace_end)
        .min()
}

/// The claims this process holds, and what it knows and has reported about the others.
#[derive(Debug)]
pub struct Claims {
    prefix: String,
    /// The IPs this instance keeps, in `--ip-address` order.
    ips: Vec<IpAddr>,
    state: Mutex<State>,
    /// The earliest end of a grace waited out, for the daemon's loops to sync then.
    grace_end: watch::Sender<Option<Instant>>,
}

#[derive(Debug, Default)]
struct State {
    /// The bound sockets: closing one releases its claim.
    held: BTreeMap<IpAddr, UnixDatagram>,
    /// IPs of ours another instance claims, already reported.
    reported_taken: BTreeSet<IpAddr>,
    /// IPs whose claim could not be tried, already reported.
    reported_failed: BTreeSet<IpAddr>,
    /// Other IPs, as last reported: kept by a live instance, or waiting out their grace.
    reported: BTreeMap<IpAddr, Report>,
    /// Other IPs seen unclaimed, with their spell.
    unclaimed: BTreeMap<IpAddr, Unclaimed>,
}

/// What was last reported about another IP.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Report {
    Kept,
    Pending,
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
            grace_end: watch::Sender::new(None),
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

    /// Of `ips`, those whose addresses and rules are not this instance's to remove, without
    /// repeats: those another live instance keeps and, at a [`Look::Later`], the other IPs
    /// still waiting out their grace.
    pub fn kept_elsewhere(&self, ips: impl IntoIterator<Item = IpAddr>, look: Look) -> Vec<IpAddr> {
        self.kept_elsewhere_at(ips, look, Instant::now())
    }

    fn kept_elsewhere_at(
        &self,
        ips: impl IntoIterator<Item = IpAddr>,
        look: Look,
        now: Instant,
    ) -> Vec<IpAddr> {
        let ips: BTreeSet<IpAddr> = ips.into_iter().collect();
        let mut state = self.state();
        let mut kept = Vec::new();
        for ip in ips {
            if state.held.contains_key(&ip) {
                continue;
            }
            let probe = self.probe(ip);
            let spared = if self.ips.contains(&ip) {
                // One of ours, claimed by another instance with the same IP or by nobody: it is
                // wanted here, never stale.
                kept_elsewhere(false, probe)
            } else {
                Self::note(&mut state, ip, probe, look, now)
            };
            if spared {
                kept.push(ip);
            }
        }
        self.publish(&mut state, now);
        kept
    }

    /// Records the verdict on another IP and reports what changed; returns whether it is spared.
    fn note(state: &mut State, ip: IpAddr, probe: Probe, look: Look, now: Instant) -> bool {
        let judged = judge(state.unclaimed.get(&ip).copied(), probe, look, now);
        match judged.unclaimed {
            Some(spell) => state.unclaimed.insert(ip, spell),
            None => state.unclaimed.remove(&ip),
        };
        let report = match (judged.spared, judged.unclaimed) {
            (false, _) => None,
            (true, None) => Some(Report::Kept),
            (true, Some(_)) => Some(Report::Pending),
        };
        let before = match report {
            Some(report) => state.reported.insert(ip, report),
            None => state.reported.remove(&ip),
        };
        if before == report {
            return judged.spared;
        }
        match report {
            Some(Report::Kept) => {
                info!(%ip, ?probe, "another running instance keeps this IP: its address and rules are left to it");
            }
            Some(Report::Pending) => {
                info!(%ip, grace = ?GRACE,
                      "no running instance claims this IP: its address and rules are left alone for the grace, as its instance may be starting");
            }
            None => {
                info!(%ip, "no running instance claims this IP any more: its address and rules are stale now");
            }
        }
        judged.spared
    }

    /// Forgets the spells that ended and publishes the earliest grace end still waited out.
    fn publish(&self, state: &mut State, now: Instant) {
        state.unclaimed.retain(|_, spell| spell.goes_on(now));
        let end = next_grace_end(state.unclaimed.values(), now);
        self.grace_end.send_if_modified(|published| {
            let changed = *published != end;
            *published = end;
            changed
        });
    }

    /// Looks again at the claim of every other IP waiting out its grace: a claim seen now ends
    /// its wait, a free one goes on with it.
    pub fn sample(&self) {
        let now = Instant::now();
        let mut state = self.state();
        let pending: Vec<IpAddr> = state
            .unclaimed
            .iter()
            .filter(|(_, spell)| spell.pending(now))
            .map(|(ip, _)| *ip)
            .collect();
        for ip in pending {
            let probe = self.probe(ip);
            Self::note(&mut state, ip, probe, Look::Later, now);
        }
        self.publish(&mut state, now);
    }

    /// The earliest grace end waited out, as it changes.
    pub fn grace_ends(&self) -> watch::Receiver<Option<Instant>> {
        self.grace_end.subscribe()
    }

    /// Samples the claims of the IPs waiting out their grace every [`SAMPLE_EVERY`], for as
    /// long as there are any; never returns.
    pub async fn sample_while_pending(&self) {
        let mut ends = self.grace_ends();
        loop {
            let waiting = ends.borrow_and_update().is_some();
            if waiting {
                tokio::time::sleep(SAMPLE_EVERY).await;
                self.sample();
            } else if ends.changed().await.is_err() {
                return std::future::pending().await;
            }
        }
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

/// Completes when the grace `ends` names ends (a sync is due then: what waited may be stale
/// now); pending while none is waited out.
pub async fn grace_end(ends: &mut watch::Receiver<Option<Instant>>) {
    loop {
        let end = *ends.borrow_and_update();
        match end.filter(|end| *end > Instant::now()) {
            Some(end) => {
                tokio::select! {
                    () = tokio::time::sleep_until(end.into()) => return,
                    changed = ends.changed() => {
                        if changed.is_err() {
                            tokio::time::sleep_until(end.into()).await;
                            return;
                        }
                    }
                }
            }
            None => {
                if ends.changed().await.is_err() {
                    return std::future::pending().await;
                }
            }
        }
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
        assert_eq!(second.kept_elsewhere([a, b, c], Look::First), [a]);
        assert_eq!(first.kept_elsewhere([a, b, c], Look::First), [b]);
        second.retry();
        assert!(!second.holds(a), "still held by the first");
        drop(first);
        assert!(
            second.kept_elsewhere([a, c], Look::First).is_empty(),
            "released on close"
        );
        second.retry();
        assert!(second.holds(a), "taken over");
        let third = Claims::with_prefix(&prefix, &[c]);
        assert_eq!(third.kept_elsewhere([a, b, c], Look::First), [a, b]);
    }

    #[test]
    fn another_ip_unclaimed_is_stale_at_once_at_a_first_look_and_after_the_grace_later() {
        let t0 = Instant::now();
        let at = |ms: u64| t0 + Duration::from_millis(ms);
        let spell = |since: u64, last: u64| {
            Some(Unclaimed {
                since: at(since),
                last: at(last),
            })
        };
        let grace = GRACE.as_millis() as u64;
        let gap = SPELL_GAP.as_millis() as u64;
        use Look::{First, Later};
        use Probe::{Free, Live, Unknown};
        // seen before, probe, look, now (ms after t0), spared, remembered afterwards
        let cases = [
            // Claimed, or nothing known: spared, and any spell ends.
            (None, Live, Later, 0, true, None),
            (spell(0, 500), Live, Later, 1000, true, None),
            (spell(0, 500), Unknown, First, 1000, true, None),
            // The first look of a process: stale at once, and no spell starts.
            (None, Free, First, 0, false, None),
            (spell(0, 500), Free, First, 1000, false, spell(0, 500)),
            // Later: a spell starts and waits out the grace.
            (None, Free, Later, 0, true, spell(0, 0)),
            (spell(0, 0), Free, Later, 1000, true, spell(0, 1000)),
            (
                spell(0, grace - 1000),
                Free,
                Later,
                grace - 1,
                true,
                spell(0, grace - 1),
            ),
            // Seen unclaimed in a row for the whole grace: stale.
            (
                spell(0, grace - 1000),
                Free,
                Later,
                grace,
                false,
                spell(0, grace),
            ),
            (
                spell(0, grace),
                Free,
                Later,
                grace + 500,
                false,
                spell(0, grace + 500),
            ),
            // A silence longer than SPELL_GAP may have hidden a claim: the spell starts over.
            (
                spell(0, 1000),
                Free,
                Later,
                1000 + gap + 1,
                true,
                spell(1000 + gap + 1, 1000 + gap + 1),
            ),
            (
                spell(0, grace),
                Free,
                Later,
                grace + gap + 1,
                true,
                spell(grace + gap + 1, grace + gap + 1),
            ),
            (
                spell(0, 1000),
                Free,
                Later,
                1000 + gap,
                true,
                spell(0, 1000 + gap),
            ),
        ];
        for (i, (seen, probe, look, now, spared, unclaimed)) in cases.into_iter().enumerate() {
            let got = judge(seen, probe, look, at(now));
            assert_eq!(
                got,
                Judged { spared, unclaimed },
                "case {i}: {seen:?} {probe:?} {look:?} at {now} ms"
            );
        }
    }

    #[test]
    fn the_next_sync_is_due_at_the_earliest_grace_still_waited_out() {
        let t0 = Instant::now();
        let at = |ms: u64| t0 + Duration::from_millis(ms);
        let spell = |since: u64, last: u64| Unclaimed {
            since: at(since),
            last: at(last),
        };
        let grace = GRACE.as_millis() as u64;
        let gap = SPELL_GAP.as_millis() as u64;
        // spells, now (ms after t0), the next grace end (ms after t0)
        let cases: [(Vec<Unclaimed>, u64, Option<u64>); 6] = [
            (vec![], 0, None),
            (vec![spell(0, 0)], 0, Some(grace)),
            (
                vec![spell(2000, 2000), spell(1000, 2000)],
                2000,
                Some(1000 + grace),
            ),
            // A grace that has ended is no longer waited for; the next one is.
            (
                vec![spell(0, grace - 500), spell(3000, grace - 500)],
                grace,
                Some(3000 + grace),
            ),
            (vec![spell(0, grace - 500)], grace, None),
            // A spell not seen for longer than SPELL_GAP is over.
            (vec![spell(0, 0)], gap + 1, None),
        ];
        for (spells, now, want) in cases {
            assert_eq!(
                next_grace_end(&spells, at(now)),
                want.map(at),
                "{spells:?} at {now} ms"
            );
        }
    }

    #[test]
    fn a_released_claim_spares_another_ip_for_the_grace_and_a_new_claim_starts_it_over() {
        let prefix = prefix("grace");
        let (a, b) = (ip("10.96.0.2"), ip("10.96.0.3"));
        let keeper = Claims::with_prefix(&prefix, &[a]);
        let t0 = Instant::now();
        let at = |secs: u64| t0 + Duration::from_secs(secs);
        let mut ends = keeper.grace_ends();
        // Nobody claims b: stale at once at a first look, spared at a later one.
        assert!(keeper.kept_elsewhere_at([b], Look::First, at(0)).is_empty());
        assert_eq!(
            *ends.borrow_and_update(),
            None,
            "a first look waits for nothing"
        );
        assert_eq!(keeper.kept_elsewhere_at([b], Look::Later, at(0)), [b]);
        assert_eq!(*ends.borrow_and_update(), Some(at(0) + GRACE));
        assert_eq!(keeper.kept_elsewhere_at([b], Look::Later, at(2)), [b]);
        // b's instance starts and claims it: the spell ends.
        let other = Claims::with_prefix(&prefix, &[b]);
        assert_eq!(keeper.kept_elsewhere_at([b], Look::Later, at(3)), [b]);
        assert!(ends.has_changed().unwrap_or(false));
        assert_eq!(*ends.borrow_and_update(), None);
        // It stops: a new spell, with a grace of its own.
        drop(other);
        assert_eq!(keeper.kept_elsewhere_at([b], Look::Later, at(4)), [b]);
        assert_eq!(*ends.borrow_and_update(), Some(at(4) + GRACE));
        // Seen unclaimed every second (as the daemon samples it) until the grace ends.
        let end = at(4) + GRACE;
        for second in 5..GRACE.as_secs() + 4 {
            assert_eq!(keeper.kept_elsewhere_at([b], Look::Later, at(second)), [b]);
        }
        // A silence longer than SPELL_GAP would have started the wait over.
        let silent = Claims::with_prefix(&prefix, &[a]);
        assert_eq!(silent.kept_elsewhere_at([b], Look::Later, at(4)), [b]);
        assert_eq!(silent.kept_elsewhere_at([b], Look::Later, end), [b]);
        assert!(!ends.has_changed().unwrap_or(true));
        assert!(
            keeper.kept_elsewhere_at([b], Look::Later, end).is_empty(),
            "stale once unclaimed for the grace"
        );
        assert_eq!(*ends.borrow_and_update(), None);
    }
}
