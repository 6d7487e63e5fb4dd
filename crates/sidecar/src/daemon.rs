// SPDX-FileCopyrightText: 2026 apiserver-proxy contributors
// SPDX-License-Identifier: Apache-2.0

//! The daemon: the address and the rules each kept by a loop of their own, so that a hung
//! iptables never delays an address repair, both raced against shutdown.

use std::collections::VecDeque;
use std::future::Future;
use std::time::Duration;

use futures_util::future::join_all;
use tokio::sync::Notify;
use tokio::time::{Instant, MissedTickBehavior};
use tracing::{debug, info, warn};

use crate::cli::{BackendChoice, Config, FirewallChoice};
use crate::error_chain;
use crate::events::{KernelEvents, Need};
use crate::firewall::iptables::READ_TIMEOUT;
use crate::firewall::nftables::{NF_TABLES_LOST, Watch as NfTablesWatch};
use crate::instance::grace_end;
use crate::reconcile::{AddressKeeper, RuleKeeper, Sidecar};
use crate::step::StepError;

/// Why a sync runs when the grace of another IP found unclaimed ends.
const GRACE_ENDED: &str = "the grace of an unclaimed IP ended";

/// The first retry after a failed sync; doubled up to the sync interval.
const FIRST_RETRY: Duration = Duration::from_millis(500);

/// Copies of the address put on other interfaces within [`CONTEST_WINDOW`] that make a
/// tug-of-war with another process.
const CONTEST_THRESHOLD: usize = 3;
const CONTEST_WINDOW: Duration = Duration::from_secs(10);
/// The first pause in a tug-of-war; doubled on every further round up to [`MAX_HOLD`].
const FIRST_HOLD: Duration = Duration::from_secs(1);
const MAX_HOLD: Duration = Duration::from_secs(30);
/// How often a going tug-of-war is reported.
const REPORT_EVERY: Duration = Duration::from_secs(60);
/// How often lost notifications are reported; each loss is counted in the metrics.
const OVERRUN_REPORT_EVERY: Duration = Duration::from_secs(60);

/// How long a healthy daemon can go without finishing a sync of either side: a few intervals,
/// plus the longest pause of a tug-of-war and the longest iptables sync (a read, then the
/// lock wait, a read and a restore under the lock).
pub fn stale_after(config: &Config) -> Duration {
    config.sync_interval * 3 + MAX_HOLD + READ_TIMEOUT + config.xtables_lock_timeout * 3
}

/// Retries after failures, with a doubling delay.
#[derive(Debug)]
struct Retry {
    delay: Duration,
    max: Duration,
    at: Option<Instant>,
}

impl Retry {
    fn new(max: Duration) -> Self {
        Retry {
            delay: FIRST_RETRY.min(max),
            max,
            at: None,
        }
    }

    /// Schedules the next try after a failure; returns its delay.
    fn failed(&mut self, now: Instant) -> Duration {
        let delay = self.delay;
        self.at = Some(now + delay);
        self.delay = (self.delay * 2).min(self.max);
        delay
    }

    fn succeeded(&mut self) {
        self.delay = FIRST_RETRY.min(self.max);
        self.at = None;
    }

    /// Logs a failed sync and schedules its retry, or resets after a success.
    fn after(&mut self, result: Result<(), StepError>) {
        match result {
            Ok(()) => self.succeeded(),
            Err(error) => {
                let retry_in = self.failed(Instant::now());
                warn!(
                    kind = error.kind(),
                    ?retry_in,
                    "sync failed: {}",
                    error_chain(&error)
                );
            }
        }
    }

    async fn due(&self) {
        match self.at {
            Some(at) => tokio::time::sleep_until(at).await,
            None => std::future::pending().await,
        }
    }
}

/// What to do about another copy of the address put on another interface.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Repair at once: no tug-of-war.
    Repair,
    /// A tug-of-war: wait this long first; `report` carries the copies seen since the last
    /// report when it is time to say so again.
    Hold { wait: Duration, report: Option<u32> },
}

/// Recognises a tug-of-war with another process over the address (two sidecars with the same
/// IP on different interfaces), and backs off instead of spinning with it.
#[derive(Debug, Default)]
pub struct Contest {
    seen: VecDeque<Instant>,
    hold: Option<Duration>,
    last_report: Option<Instant>,
    unreported: u32,
}

impl Contest {
    /// Records a copy of the address that appeared on another interface at `now`.
    pub fn record(&mut self, now: Instant) -> Verdict {
        let contested = self.contested(now);
        if !contested {
            // Not fighting (any more): only the copies of the last window count.
            self.hold = None;
            while self
                .seen
                .front()
                .is_some_and(|at| now.duration_since(*at) > CONTEST_WINDOW)
            {
                self.seen.pop_front();
            }
        }
        self.seen.push_back(now);
        while self.seen.len() > CONTEST_THRESHOLD {
            self.seen.pop_front();
        }
        self.unreported += 1;
        if !contested && self.seen.len() < CONTEST_THRESHOLD {
            return Verdict::Repair;
        }
        let wait = self
            .hold
            .map_or(FIRST_HOLD, |hold| (hold * 2).min(MAX_HOLD));
        self.hold = Some(wait);
        let due = self
            .last_report
            .is_none_or(|at| now.duration_since(at) >= REPORT_EVERY);
        let report = due.then(|| {
            self.last_report = Some(now);
            std::mem::take(&mut self.unreported)
        });
        Verdict::Hold { wait, report }
    }

    /// Whether a tug-of-war is going on: a copy came within a window after the last pause.
    pub fn contested(&self, now: Instant) -> bool {
        match (self.hold, self.seen.back()) {
            (Some(hold), Some(last)) => now.duration_since(*last) <= CONTEST_WINDOW + hold,
            _ => false,
        }
    }
}

/// Runs the daemon until `shutdown` completes: each side syncs at start, every interval and
/// after a failure with backoff; the address also on every kernel notification that touches
/// it or its link; both when the grace of another IP found unclaimed ends (see `instance.rs`).
pub async fn run(sidecar: &mut Sidecar, events: KernelEvents, shutdown: impl Future<Output = ()>) {
    let Sidecar { address, rules } = sidecar;
    let claims = address.claims.clone();
    // One per rules loop: a lost notification resyncs each family.
    let resync_rules: Vec<Notify> = rules.iter().map(|_| Notify::new()).collect();
    // Dropping the loops at shutdown kills a running iptables child and frees the lock; each
    // iptables-restore commit is atomic, so nothing is left half-written.
    tokio::select! {
        biased;
        () = shutdown => {}
        _ = async {
            tokio::join!(
                claims.sample_while_pending(),
                keep_address(address, &events, &resync_rules),
                join_all(
                    rules
                        .iter_mut()
                        .zip(&resync_rules)
                        .map(|(keeper, resync)| keep_rules(keeper, resync)),
                ),
            )
        } => {}
    }
}

fn ticks(every: Duration) -> tokio::time::Interval {
    let mut ticks = tokio::time::interval_at(Instant::now() + every, every);
    ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
    ticks
}

async fn keep_address(keeper: &mut AddressKeeper, events: &KernelEvents, resync_rules: &[Notify]) {
    let mut ticks = ticks(keeper.config.sync_interval);
    let mut retry = Retry::new(keeper.config.sync_interval);
    let mut watch = Watch::new(keeper.config.ips.len());
    let mut grace_ends = keeper.claims.grace_ends();
    let mut why = "initial sync";
    loop {
        debug!(why, "address sync");
        retry.after(keeper.sync().await);
        events.follow_link(keeper.link_index);
        keeper
            .metrics
            .set_contested(watch.contested(Instant::now()));
        let mut hold = None;
        why = loop {
            tokio::select! {
                need = events.next() => {
                    if let Some(why) = watch.on_need(keeper, need, resync_rules, &mut hold) {
                        break why;
                    }
                }
                _ = ticks.tick() => break "periodic sync",
                () = retry.due() => break "retrying the failed sync",
                () = grace_end(&mut grace_ends) => break GRACE_ENDED,
            }
        };
        if let Some(wait) = hold {
            tokio::time::sleep(wait).await;
        }
    }
}

/// What the address loop remembers of the notifications between syncs.
#[derive(Debug)]
struct Watch {
    /// One per address: each tug-of-war is recognised, paced and reported on its own.
    contests: Vec<Contest>,
    overruns: Overruns,
}

impl Watch {
    fn new(addresses: usize) -> Self {
        Watch {
            contests: (0..addresses).map(|_| Contest::default()).collect(),
            overruns: Overruns::default(),
        }
    }

    fn contested(&self, now: Instant) -> bool {
        self.contests.iter().any(|contest| contest.contested(now))
    }

    /// Acts on what the notifications ask for; returns why to sync now, if they ask for a
    /// sync. A tug-of-war raises `hold`, the pause before that sync.
    fn on_need(
        &mut self,
        keeper: &AddressKeeper,
        need: Need,
        resync_rules: &[Notify],
        hold: &mut Option<Duration>,
    ) -> Option<&'static str> {
        if need.resync() {
            keeper.metrics.overrun();
            if let Some(lost) = self.overruns.record(Instant::now()) {
                warn!(
                    lost,
                    "kernel notifications were lost (socket buffer full): resyncing everything"
                );
            }
            for resync in resync_rules {
                resync.notify_one();
            }
            return Some("notifications lost");
        }
        for position in need.foreign_copies() {
            *hold = (*hold).max(self.on_foreign_copy(keeper, position));
        }
        need.address().then_some("kernel notification")
    }

    /// Records a copy of the address at `position` put on another interface; returns the
    /// pause before repairing it, in a tug-of-war.
    fn on_foreign_copy(&mut self, keeper: &AddressKeeper, position: usize) -> Option<Duration> {
        let (Some(contest), Some(ip)) = (
            self.contests.get_mut(position),
            keeper.config.ips.get(position),
        ) else {
            return None;
        };
        keeper.metrics.address_conflict();
        let Verdict::Hold { wait, report } = contest.record(Instant::now()) else {
            return None;
        };
        keeper.metrics.set_contested(true);
        if let Some(copies) = report {
            warn!(%ip, copies, pause = ?wait,
                  "another process keeps putting the address on another interface; backing off");
        }
        Some(wait)
    }
}

/// Paces the reports of lost notifications: each loss is counted, a report comes at most every
/// [`OVERRUN_REPORT_EVERY`].
#[derive(Debug, Default)]
struct Overruns {
    unreported: u32,
    last_report: Option<Instant>,
}

impl Overruns {
    /// Records a loss at `now`; returns the losses to report, when it is time to.
    fn record(&mut self, now: Instant) -> Option<u32> {
        self.unreported += 1;
        let due = self
            .last_report
            .is_none_or(|at| now.duration_since(at) >= OVERRUN_REPORT_EVERY);
        due.then(|| {
            self.last_report = Some(now);
            std::mem::take(&mut self.unreported)
        })
    }
}

async fn keep_rules(keeper: &mut RuleKeeper, resync: &Notify) {
    if !keeper.config.setup_iptables {
        return;
    }
    let mut ticks = ticks(keeper.config.sync_interval);
    let mut retry = Retry::new(keeper.config.sync_interval);
    let mut watch = watch_nf_tables(&keeper.config);
    let mut pace = Pace::default();
    let mut grace_ends = keeper.claims.grace_ends();
    let mut why = "initial sync";
    loop {
        debug!(why, "iptables sync");
        retry.after(keeper.sync().await);
        let driver = keeper.driver.as_ref();
        let changed = async {
            match watch.as_mut() {
                Some(watch) => {
                    watch
                        .changed(|transaction| driver.is_some_and(|d| d.concerns(transaction)))
                        .await
                }
                None => std::future::pending().await,
            }
        };
        why = tokio::select! {
            _ = ticks.tick() => "periodic sync",
            () = retry.due() => "retrying the failed sync",
            () = resync.notified() => "notifications lost",
            () = grace_end(&mut grace_ends) => GRACE_ENDED,
            changed = changed => match changed {
                Ok(why) => {
                    if why == NF_TABLES_LOST {
                        // As for the address: counted, and the sync below is a full one.
                        keeper.metrics.overrun();
                    }
                    let wait = pace.next(Instant::now());
                    if !wait.is_zero() {
                        tokio::time::sleep(wait).await;
                    }
                    why
                }
                Err(error) => {
                    warn!(error = %error_chain(&error),
                          "nf_tables notifications failed; the rules are checked every --sync-interval");
                    watch = None;
                    "nf_tables notifications failed"
                }
            },
        };
    }
}

/// The first pause between re-checks on notifications that keep coming, doubled up to
/// [`PACE_MAX`]; a notification [`PACE_QUIET`] or longer after the last re-check is acted on
/// at once again.
const PACE_FIRST: Duration = Duration::from_millis(20);
const PACE_MAX: Duration = Duration::from_secs(1);
const PACE_QUIET: Duration = Duration::from_millis(250);

/// Paces the re-checks that nf_tables notifications ask for: the first after a quiet spell runs
/// at once (a flushed rule heals in milliseconds); while they keep coming (another agent
/// rewriting its rules thousands of times a second), each waits a gap that doubles up to a
/// second, so a burst costs about a re-check a second, not one per transaction.
#[derive(Debug, Default)]
struct Pace {
    gap: Duration,
    last: Option<Instant>,
}

impl Pace {
    /// How long to wait before the re-check a notification at `now` asks for.
    fn next(&mut self, now: Instant) -> Duration {
        let wait = match self.last {
            Some(last) if now.saturating_duration_since(last) <= PACE_QUIET => {
                self.gap = (self.gap * 2).clamp(PACE_FIRST, PACE_MAX);
                (last + self.gap).saturating_duration_since(now)
            }
            _ => {
                self.gap = Duration::ZERO;
                Duration::ZERO
            }
        };
        self.last = Some(now + wait);
        wait
    }
}

/// The nf_tables notifications the rules heal on (with `--watch-kernel-events`): the native
/// mode's, and the iptables mode's unless its backend is legacy, which sends none (it is
/// polled every `--sync-interval`); none when the subscription fails (logged: the interval
/// still heals).
fn watch_nf_tables(config: &Config) -> Option<NfTablesWatch> {
    let legacy = config.firewall == FirewallChoice::Iptables
        && config.iptables_backend == BackendChoice::Legacy;
    if legacy || !config.watch_kernel_events {
        return None;
    }
    NfTablesWatch::subscribe()
        .inspect_err(|error| {
            warn!(error = %error_chain(error),
                  "cannot subscribe to nf_tables notifications; the rules are checked every --sync-interval");
        })
        .ok()
}

/// Logs the start of the daemon's loops.
pub fn announce(config: &Config) {
    info!(
        stale_after = ?stale_after(config),
        "daemon running; /healthz fails when no sync finishes within stale_after"
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn notifications_that_keep_coming_are_paced_and_a_quiet_second_resets() {
        let start = Instant::now();
        let ms = |ms| Duration::from_millis(ms);
        let mut pace = Pace::default();
        // milliseconds after the start of each notification, the wait before its re-check
        let cases = [
            (0, 0),
            (5, 15),
            (25, 35),
            (65, 75),
            (150, 150),
            (310, 310),
            (630, 630),
            // The gap is capped at a second.
            (1270, 990),
            (2270, 990),
            (3400, 860),
            // Quiet for longer than PACE_QUIET after the last re-check: at once again, and the
            // gaps start over.
            (4600, 0),
            (4601, 19),
        ];
        for (at, wait) in cases {
            assert_eq!(pace.next(start + ms(at)), ms(wait), "at {at} ms");
        }
    }

    #[test]
    fn retry_doubles_up_to_the_interval_and_resets() {
        let now = Instant::now();
        let mut retry = Retry::new(Duration::from_secs(3));
        let delays: Vec<Duration> = (0..5).map(|_| retry.failed(now)).collect();
        let ms = |ms| Duration::from_millis(ms);
        assert_eq!(delays, [ms(500), ms(1000), ms(2000), ms(3000), ms(3000)]);
        assert_eq!(retry.at, Some(now + ms(3000)));
        retry.succeeded();
        assert_eq!(retry.at, None);
        assert_eq!(retry.failed(now), ms(500));
        // An interval shorter than the first retry caps it.
        assert_eq!(Retry::new(ms(200)).failed(now), ms(200));
    }

    /// (seconds after the start, expected verdict) for successive foreign copies.
    fn run(steps: &[(u64, Verdict)]) {
        let start = Instant::now();
        let mut contest = Contest::default();
        for (i, (at, want)) in steps.iter().enumerate() {
            let got = contest.record(start + Duration::from_secs(*at));
            assert_eq!(got, *want, "step {i} at {at}s");
        }
    }

    fn hold(secs: u64, report: Option<u32>) -> Verdict {
        Verdict::Hold {
            wait: Duration::from_secs(secs),
            report,
        }
    }

    #[test]
    fn a_single_move_is_repaired_at_once() {
        run(&[
            (0, Verdict::Repair),
            (30, Verdict::Repair),
            (60, Verdict::Repair),
        ]);
    }

    #[test]
    fn a_tug_of_war_backs_off_doubling_and_reports_once_a_minute() {
        run(&[
            (0, Verdict::Repair),
            (0, Verdict::Repair),
            (0, hold(1, Some(3))),
            (1, hold(2, None)),
            (3, hold(4, None)),
            (7, hold(8, None)),
            (15, hold(16, None)),
            (31, hold(30, None)),
            (61, hold(30, Some(6))),
            // Quiet for longer than a window after the last pause: over.
            (102, Verdict::Repair),
        ]);
        // Continuous fighting: the pause stays at the cap and a report comes every minute
        // with the copies seen since the last one.
        let start = Instant::now();
        let mut contest = Contest::default();
        let mut reports = Vec::new();
        for second in 0..130u64 {
            if let Verdict::Hold {
                wait,
                report: Some(copies),
            } = contest.record(start + Duration::from_secs(second))
            {
                reports.push((second, copies, wait));
            }
        }
        assert_eq!(
            reports,
            [
                (2, 3, Duration::from_secs(1)),
                (62, 60, MAX_HOLD),
                (122, 60, MAX_HOLD)
            ]
        );
    }

    #[test]
    fn lost_notifications_are_reported_once_a_minute_with_their_count() {
        let start = Instant::now();
        let mut overruns = Overruns::default();
        // seconds after the start, the count reported
        let cases = [
            (0, Some(1)),
            (1, None),
            (59, None),
            (60, Some(3)),
            (61, None),
            (200, Some(2)),
            (200, None),
        ];
        for (at, want) in cases {
            let got = overruns.record(start + Duration::from_secs(at));
            assert_eq!(got, want, "at {at}s");
        }
    }

    #[test]
    fn a_quiet_window_ends_the_contest() {
        let start = Instant::now();
        let mut contest = Contest::default();
        for _ in 0..3 {
            contest.record(start);
        }
        assert!(contest.contested(start + Duration::from_secs(5)));
        assert!(!contest.contested(start + Duration::from_secs(12)));
        assert!(!Contest::default().contested(start));
        // After a quiet window the next fight starts again from the first pause.
        let later = start + Duration::from_secs(40);
        assert_eq!(contest.record(later), Verdict::Repair);
        assert_eq!(contest.record(later), Verdict::Repair);
        assert!(matches!(
            contest.record(later),
            Verdict::Hold { wait, .. } if wait == FIRST_HOLD
        ));
    }
}
