// SPDX-FileCopyrightText: 2026 apiserver-proxy contributors
// SPDX-License-Identifier: Apache-2.0

//! The sidecar's life from start to exit: one sync and out (`--daemon=false`; with `--cleanup`
//! the sync, then the cleanup), or the daemon until the first stop request, then the cleanup
//! (`--cleanup`) until it is done or a second stop request abandons it. Stop requests come through a channel, fed by signal handlers in
//! the binary and by tests directly.

use std::sync::Arc;

use tokio::sync::mpsc;
use tracing::{error, info};

use crate::address;
use crate::cli::Config;
use crate::daemon;
use crate::endpoint;
use crate::events::KernelEvents;
use crate::instance::Claims;
use crate::metrics::Metrics;
use crate::netif::{Netif, NetifError};
use crate::reconcile::Sidecar;
use crate::step::StepErrors;

/// A request to stop, e.g. a signal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stop {
    pub name: &'static str,
    /// The exit code when the stop cuts work short: 128 + the signal's number, as a shell
    /// reports a process the signal killed.
    pub exit_code: u8,
}

impl Stop {
    pub const SIGTERM: Stop = Stop {
        name: "SIGTERM",
        exit_code: 143,
    };
    pub const SIGINT: Stop = Stop {
        name: "SIGINT",
        exit_code: 130,
    };
}

/// How a run ended.
#[derive(Debug)]
pub enum Outcome {
    /// The one-shot run put everything in place, or the daemon stopped (and cleaned up when
    /// asked to).
    Done,
    /// The one-shot run could not put everything in place.
    NotInPlace(StepErrors),
    /// A stop request cut the one-shot run short.
    Interrupted(Stop),
    /// The cleanup failed in part.
    CleanupIncomplete(StepErrors),
    /// A second stop request abandoned the cleanup.
    CleanupAbandoned(Stop),
}

impl Outcome {
    /// The process's exit code.
    pub fn exit_code(&self) -> u8 {
        match self {
            Outcome::Done => 0,
            Outcome::NotInPlace(_) | Outcome::CleanupIncomplete(_) => 1,
            Outcome::Interrupted(stop) | Outcome::CleanupAbandoned(stop) => stop.exit_code,
        }
    }
}

/// What keeps the sidecar from starting at all.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("cannot listen on --metrics-bind-address={address}")]
    Metrics {
        address: std::net::SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("netlink")]
    Netlink(#[source] NetifError),
}

/// Waits for the next stop request; a closed channel never stops anything.
async fn next_stop(stops: &mut mpsc::Receiver<Stop>) -> Stop {
    match stops.recv().await {
        Some(stop) => stop,
        None => std::future::pending().await,
    }
}

/// Runs the sidecar as configured until it is done or stopped.
pub async fn run(config: Config, mut stops: mpsc::Receiver<Stop>) -> Result<Outcome, StartError> {
    let metrics = start_metrics(&config).await?;
    let netif = Netif::connect().map_err(StartError::Netlink)?;
    let events = if config.daemon && config.watch_kernel_events {
        KernelEvents::subscribe(config.ips.clone()).map_err(StartError::Netlink)?
    } else {
        KernelEvents::none()
    };
    announce(&config);
    let (is_daemon, cleanup) = (config.daemon, config.cleanup);
    // Claimed before the first sync and held until the process ends: other instances in this
    // network namespace leave these IPs' addresses and rules alone meanwhile.
    let claims = Arc::new(Claims::take(&config.ips));
    let mut sidecar = Sidecar::new(config, netif, metrics, claims);
    Ok(if is_daemon {
        daemon_until_stopped(&mut sidecar, events, &mut stops, cleanup).await
    } else {
        one_shot(&mut sidecar, &mut stops, cleanup).await
    })
}

/// The metrics, served on `--metrics-bind-address` when it is set.
async fn start_metrics(config: &Config) -> Result<Arc<Metrics>, StartError> {
    let families = if config.setup_iptables {
        address::families(&config.ips)
    } else {
        Vec::new()
    };
    let metrics = Arc::new(Metrics::new(daemon::stale_after(config), &families));
    if let Some(address) = config.metrics_bind_address {
        let server = endpoint::serve(address, metrics.clone())
            .await
            .map_err(|source| StartError::Metrics { address, source })?;
        tokio::spawn(server);
        info!(%address, "serving /healthz and /metrics");
    }
    Ok(metrics)
}

/// Logs the start, with the settings that shape the run.
fn announce(config: &Config) {
    info!(
        ip = %config.ip_list(), interface = config.interface, port = config.port,
        setup_iptables = config.setup_iptables, daemon = config.daemon, cleanup = config.cleanup,
        version = crate::VERSION, "starting"
    );
    if config.daemon {
        daemon::announce(config);
    }
}

/// `--daemon=false`: one sync, then the cleanup with `--cleanup`.
async fn one_shot(
    sidecar: &mut Sidecar,
    stops: &mut mpsc::Receiver<Stop>,
    cleanup: bool,
) -> Outcome {
    // An init container must stop promptly: a stop abandons the sync (which kills a running
    // iptables child and frees the lock).
    let synced = tokio::select! {
        result = sidecar.sync() => result,
        stop = next_stop(stops) => {
            error!(signal = stop.name, "stopped before everything was in place");
            return Outcome::Interrupted(stop);
        }
    };
    if synced.is_ok() {
        info!("everything is in place");
    }
    // --cleanup with --daemon=false: set up, then tear down at exit, as one-shot "remove the
    // address" jobs expect; the teardown runs even when the set-up failed in part.
    let torn_down = if cleanup {
        Some(cleanup_until_stopped(sidecar, stops).await)
    } else {
        None
    };
    one_shot_outcome(synced, torn_down)
}

/// How a one-shot run ended, from its sync and its cleanup (`None` without `--cleanup`): an
/// abandoned cleanup first (the exit code a signal gives), then a sync that failed.
fn one_shot_outcome(synced: Result<(), StepErrors>, torn_down: Option<Outcome>) -> Outcome {
    match (synced, torn_down) {
        (_, Some(Outcome::CleanupAbandoned(stop))) => Outcome::CleanupAbandoned(stop),
        (Err(errors), _) => Outcome::NotInPlace(errors),
        (Ok(()), Some(outcome)) => outcome,
        (Ok(()), None) => Outcome::Done,
    }
}

/// The daemon until the first stop request, then the cleanup with `--cleanup`.
async fn daemon_until_stopped(
    sidecar: &mut Sidecar,
    events: KernelEvents,
    stops: &mut mpsc::Receiver<Stop>,
    cleanup: bool,
) -> Outcome {
    let mut stopped_by = None;
    daemon::run(sidecar, events, async {
        stopped_by = Some(next_stop(stops).await);
    })
    .await;
    info!(
        signal = stopped_by.map(|stop| stop.name),
        cleanup, "stopping"
    );
    if !cleanup {
        return Outcome::Done;
    }
    cleanup_until_stopped(sidecar, stops).await
}

/// The cleanup, until it is done or a stop request abandons it.
async fn cleanup_until_stopped(sidecar: &mut Sidecar, stops: &mut mpsc::Receiver<Stop>) -> Outcome {
    tokio::select! {
        result = sidecar.teardown() => match result {
            Ok(()) => {
                info!("cleaned up");
                Outcome::Done
            }
            Err(errors) => Outcome::CleanupIncomplete(errors),
        },
        stop = next_stop(stops) => {
            error!(signal = stop.name, "second signal: cleanup abandoned");
            Outcome::CleanupAbandoned(stop)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::step::StepError;

    fn failed() -> Result<(), StepErrors> {
        Err(StepErrors(vec![StepError::Several(Vec::new())]))
    }

    #[test]
    fn a_one_shot_run_ends_with_its_worst_part() {
        let stop = Stop::SIGTERM;
        let incomplete = || Outcome::CleanupIncomplete(StepErrors(Vec::new()));
        // name, the sync, the cleanup, the exit code
        type Case = (&'static str, Result<(), StepErrors>, Option<Outcome>, u8);
        let cases: Vec<Case> = vec![
            ("in place", Ok(()), None, 0),
            ("not in place", failed(), None, 1),
            ("in place, cleaned up", Ok(()), Some(Outcome::Done), 0),
            ("not in place, cleaned up", failed(), Some(Outcome::Done), 1),
            (
                "in place, cleanup incomplete",
                Ok(()),
                Some(incomplete()),
                1,
            ),
            (
                "in place, cleanup abandoned",
                Ok(()),
                Some(Outcome::CleanupAbandoned(stop)),
                143,
            ),
            (
                "not in place, cleanup abandoned",
                failed(),
                Some(Outcome::CleanupAbandoned(stop)),
                143,
            ),
        ];
        for (name, synced, torn_down, code) in cases {
            let outcome = one_shot_outcome(synced, torn_down);
            assert_eq!(outcome.exit_code(), code, "{name}: {outcome:?}");
        }
        assert!(matches!(
            one_shot_outcome(failed(), Some(incomplete())),
            Outcome::NotInPlace(_)
        ));
    }
}
