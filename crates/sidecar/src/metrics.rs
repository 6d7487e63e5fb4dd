// SPDX-FileCopyrightText: 2026 apiserver-proxy contributors
// SPDX-License-Identifier: Apache-2.0

//! Prometheus metrics, and the liveness and readiness the endpoint (`endpoint.rs`) reports.

use std::sync::Mutex;
use std::sync::atomic::AtomicU64;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use hyper::StatusCode;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family as Labelled;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use crate::address::Family;
use crate::error_chain;
use crate::step::StepError;

/// What a repair or an error was about.
#[derive(Debug, Clone, Copy, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct KindLabel {
    pub kind: &'static str,
}

/// Every `kind` of `repairs_total`, each exposed at 0 from the start so that `increase()`
/// sees the first one.
pub const REPAIR_KINDS: [&str; 9] = [
    "interface",
    "address",
    "address_in_place",
    "duplicate_address",
    "stale_address",
    "iptables_rule",
    "duplicate_rule",
    "adopted_rule",
    "stale_rule",
];

/// Every `kind` of `errors_total`, each exposed at 0 from the start.
pub const ERROR_KINDS: [&str; 5] = [
    "interface",
    "address",
    "iptables",
    "iptables_lock",
    "nftables",
];

/// Which side `ready` is about.
#[derive(Debug, Clone, Copy, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PartLabel {
    pub part: &'static str,
}

/// The sides of the sidecar, each synced on its own: the addresses, and the rules of each
/// address family.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Part {
    Address,
    Rules(Family),
}

/// How one side last fared.
#[derive(Debug)]
struct PartState {
    part: Part,
    /// Its name in `/readyz` and `/healthz`.
    name: &'static str,
    /// What its sync is called in `/healthz`.
    sync_name: &'static str,
    /// Whether this side runs at all (the rules only with `--setup-iptables`).
    expected: bool,
    /// When its last sync finished, failed or not; the start-up time before that.
    last_completed: Instant,
    /// Whether a sync has finished yet.
    synced: bool,
    last_error: Option<String>,
}

impl Part {
    /// Its `part` label on the `ready` gauge.
    pub fn label(self) -> &'static str {
        match self {
            Part::Address => "address",
            Part::Rules(Family::V4) => "rules_ipv4",
            Part::Rules(Family::V6) => "rules_ipv6",
        }
    }
}

impl PartState {
    /// Whether this side is in place: the verdict of `/readyz`.
    fn ready(&self) -> bool {
        self.synced && self.last_error.is_none()
    }

    fn new(part: Part, expected: bool, name: &'static str, sync_name: &'static str) -> Self {
        PartState {
            part,
            name,
            sync_name,
            expected,
            last_completed: Instant::now(),
            synced: false,
            last_error: None,
        }
    }
}

/// The sidecar's metrics, and the liveness that `/healthz` reports.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    last_success: Gauge<f64, AtomicU64>,
    repairs: Labelled<KindLabel, Counter>,
    errors: Labelled<KindLabel, Counter>,
    conflicts: Counter,
    contested: Gauge,
    overruns: Counter,
    foreign_drops: Gauge,
    ready: Labelled<PartLabel, Gauge>,
    /// The base chains of other tables that drop by policy at the input or output hook.
    foreign_drop_chains: Mutex<Vec<String>>,
    /// A side whose sync has not finished for this long is stuck.
    stale_after: Duration,
    parts: Mutex<Vec<PartState>>,
}

impl Metrics {
    /// Metrics for a sidecar whose syncs (of the rules of each of `rules` too) finish at least
    /// every `stale_after` while it is healthy. With one family the rules are named as before
    /// dual-stack ("iptables rules"), with both each by its family.
    pub fn new(stale_after: Duration, rules: &[Family]) -> Self {
        let mut registry = Registry::with_prefix("apiserver_proxy_sidecar");
        let last_success = Gauge::<f64, AtomicU64>::default();
        let repairs = Labelled::<KindLabel, Counter>::default();
        let errors = Labelled::<KindLabel, Counter>::default();
        let conflicts = Counter::default();
        let contested = Gauge::default();
        let overruns = Counter::default();
        let foreign_drops = Gauge::default();
        let ready = Labelled::<PartLabel, Gauge>::default();
        for kind in REPAIR_KINDS {
            repairs.get_or_create(&KindLabel { kind }).inc_by(0);
        }
        for kind in ERROR_KINDS {
            errors.get_or_create(&KindLabel { kind }).inc_by(0);
        }
        let parts = parts(rules);
        for part in parts.iter().filter(|part| part.expected) {
            ready
                .get_or_create(&PartLabel {
                    part: part.part.label(),
                })
                .set(0);
        }
        registry.register(
            "ready",
            "1 while this side is in place (address; rules_ipv4, rules_ipv6 with --setup-iptables), 0 otherwise: the verdict of /readyz for each side",
            ready.clone(),
        );
        registry.register(
            "last_successful_sync_timestamp_seconds",
            "Unix time of the last sync that found or left everything in place",
            last_success.clone(),
        );
        registry.register(
            "repairs",
            "Changes made to reach the wanted state, by kind (interface, address, address_in_place, duplicate_address, stale_address, iptables_rule, duplicate_rule, adopted_rule, stale_rule)",
            repairs.clone(),
        );
        registry.register(
            "errors",
            "Failed sync steps, by kind (interface, address, iptables, iptables_lock, nftables)",
            errors.clone(),
        );
        registry.register(
            "address_conflicts",
            "Times another process put the address on another interface",
            conflicts.clone(),
        );
        registry.register(
            "address_contested",
            "1 while the sidecar backs off from another process that keeps moving the address",
            contested.clone(),
        );
        registry.register(
            "kernel_event_overruns",
            "Times kernel notifications were lost to a full socket buffer; each triggers a full resync",
            overruns.clone(),
        );
        registry.register(
            "foreign_drop_policy_chains",
            "Base chains of other nf_tables tables with a drop policy at the input or output hook (native nftables mode): they must accept untracked packets to the proxy",
            foreign_drops.clone(),
        );
        registry.register(
            "log_lines_dropped",
            "Log lines dropped because the log output did not keep up, or failed",
            common::logging::lines_dropped(),
        );
        Metrics {
            registry,
            last_success,
            repairs,
            errors,
            conflicts,
            contested,
            overruns,
            foreign_drops,
            ready,
            foreign_drop_chains: Mutex::new(Vec::new()),
            stale_after,
            parts: Mutex::new(parts),
        }
    }

    pub fn repaired(&self, kind: &'static str) {
        self.repairs.get_or_create(&KindLabel { kind }).inc();
    }

    pub fn address_conflict(&self) {
        self.conflicts.inc();
    }

    pub fn set_contested(&self, contested: bool) {
        self.contested.set(i64::from(contested));
    }

    /// Records the base chains of other tables that drop by policy what the native mode's
    /// untracked packets must pass; logs them when they change.
    pub fn set_foreign_drops(&self, chains: &[String]) {
        self.foreign_drops.set(chains.len() as i64);
        let Ok(mut held) = self.foreign_drop_chains.lock() else {
            return;
        };
        if *held != chains {
            if chains.is_empty() {
                tracing::info!(
                    "no base chain of another table drops by policy at the input or output hook any more"
                );
            } else {
                tracing::warn!(chains = %chains.join(", "),
                    "base chains of other tables drop by policy at the input or output hook: they must accept untracked packets to and from the proxy (ct state untracked), see docs/operations.md");
            }
            *held = chains.to_vec();
        }
    }

    pub fn overrun(&self) {
        self.overruns.inc();
    }

    /// Records a finished sync of one side: its error, if any, and that the side is alive.
    pub fn part_synced(&self, part: Part, error: Option<&StepError>) {
        if let Some(error) = error {
            self.errors
                .get_or_create(&KindLabel { kind: error.kind() })
                .inc();
        }
        let Ok(mut parts) = self.parts.lock() else {
            return;
        };
        let Some(state) = parts.iter_mut().find(|state| state.part == part) else {
            return;
        };
        state.last_completed = Instant::now();
        state.synced = true;
        state.last_error = error.map(|error| error_chain(error));
        if state.expected {
            let label = PartLabel {
                part: state.part.label(),
            };
            self.ready
                .get_or_create(&label)
                .set(i64::from(state.ready()));
        }
        if parts
            .iter()
            .all(|part| !part.expected || part.last_error.is_none())
        {
            let now = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0.0, |elapsed| elapsed.as_secs_f64());
            self.last_success.set(now);
        }
    }

    /// The metrics in the Prometheus text format.
    pub fn encode(&self) -> String {
        let mut text = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut text, &self.registry);
        text
    }

    /// 200 while everything asked for is in place: each side's last sync left it so (a failed
    /// sync names what it could not do); 503 with the list of what is missing otherwise.
    pub(crate) fn readiness(&self) -> (StatusCode, String) {
        let Ok(parts) = self.parts.lock() else {
            return (
                StatusCode::INTERNAL_SERVER_ERROR,
                "state unavailable\n".into(),
            );
        };
        let missing: Vec<String> = parts
            .iter()
            .filter(|part| part.expected)
            .filter_map(|part| match (&part.last_error, part.synced) {
                (Some(error), _) => Some(format!("- {}: {error}", part.name)),
                (None, false) => Some(format!("- {}: not synced yet", part.name)),
                (None, true) => None,
            })
            .collect();
        let drops = self
            .foreign_drop_chains
            .lock()
            .map(|chains| chains.clone())
            .unwrap_or_default();
        if missing.is_empty() && !drops.is_empty() {
            (
                StatusCode::OK,
                format!(
                    "ready\nwarning: these base chains drop by policy; they must accept untracked packets to and from the proxy (ct state untracked): {}\n",
                    drops.join(", ")
                ),
            )
        } else if missing.is_empty() {
            (StatusCode::OK, "ready\n".into())
        } else {
            (
                StatusCode::SERVICE_UNAVAILABLE,
                format!("not ready:\n{}\n", missing.join("\n")),
            )
        }
    }

    /// 200 while every side keeps finishing its syncs (failed ones too: a failing sync is
    /// retried, and a restart would not help it); 503 once one has not for `stale_after`.
    pub(crate) fn health(&self) -> (StatusCode, String) {
        let Ok(parts) = self.parts.lock() else {
            return (
                StatusCode::INTERNAL_SERVER_ERROR,
                "state unavailable\n".into(),
            );
        };
        for part in parts.iter() {
            let name = part.sync_name;
            let since = part.last_completed.elapsed();
            if part.expected && since > self.stale_after {
                return (
                    StatusCode::SERVICE_UNAVAILABLE,
                    format!(
                        "stuck: no {name} sync finished for {}s (limit {}s)\n",
                        since.as_secs(),
                        self.stale_after.as_secs()
                    ),
                );
            }
        }
        let failures: Vec<&str> = parts
            .iter()
            .filter(|part| part.expected)
            .filter_map(|part| part.last_error.as_deref())
            .collect();
        if failures.is_empty() {
            (StatusCode::OK, "ok\n".into())
        } else {
            (
                StatusCode::OK,
                format!(
                    "ok (serving; the last sync failed: {})\n",
                    failures.join("; ")
                ),
            )
        }
    }
}

/// The sides of a sidecar keeping the rules of `rules`; without any (no `--setup-iptables`),
/// an IPv4 rules side that is never expected, so `/healthz` and `/readyz` read as before.
fn parts(rules: &[Family]) -> Vec<PartState> {
    let mut parts = vec![PartState::new(Part::Address, true, "address", "address")];
    match rules {
        [] => parts.push(PartState::new(
            Part::Rules(Family::V4),
            false,
            "iptables rules",
            "iptables",
        )),
        [family] => parts.push(PartState::new(
            Part::Rules(*family),
            true,
            "iptables rules",
            "iptables",
        )),
        families => {
            for family in families {
                let (name, sync_name) = match family {
                    Family::V4 => ("iptables rules (IPv4)", "iptables (IPv4)"),
                    Family::V6 => ("iptables rules (IPv6)", "ip6tables"),
                };
                parts.push(PartState::new(Part::Rules(*family), true, name, sync_name));
            }
        }
    }
    parts
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::firewall::{DriverError, FirewallError};

    #[test]
    fn encodes_every_metric_as_openmetrics_text() {
        let metrics = Metrics::new(Duration::from_secs(60), &[Family::V4]);
        let text = metrics.encode();
        for line in [
            "# TYPE apiserver_proxy_sidecar_last_successful_sync_timestamp_seconds gauge",
            "apiserver_proxy_sidecar_last_successful_sync_timestamp_seconds 0.0",
            "# TYPE apiserver_proxy_sidecar_address_conflicts counter",
            "apiserver_proxy_sidecar_address_conflicts_total 0",
            "apiserver_proxy_sidecar_address_contested 0",
            "apiserver_proxy_sidecar_kernel_event_overruns_total 0",
            "# TYPE apiserver_proxy_sidecar_log_lines_dropped counter",
            "apiserver_proxy_sidecar_log_lines_dropped_total 0",
        ] {
            assert!(text.lines().any(|l| l == line), "{line} missing in\n{text}");
        }
        // Every labelled family shows every known label at 0 from the start.
        for kind in REPAIR_KINDS {
            let line = format!("apiserver_proxy_sidecar_repairs_total{{kind=\"{kind}\"}} 0");
            assert!(text.lines().any(|l| l == line), "{line} missing in\n{text}");
        }
        for kind in ERROR_KINDS {
            let line = format!("apiserver_proxy_sidecar_errors_total{{kind=\"{kind}\"}} 0");
            assert!(text.lines().any(|l| l == line), "{line} missing in\n{text}");
        }
        assert!(
            text.lines()
                .any(|l| l == "apiserver_proxy_sidecar_ready{part=\"address\"} 0"),
            "{text}"
        );
        assert!(
            text.lines()
                .any(|l| l == "apiserver_proxy_sidecar_ready{part=\"rules_ipv4\"} 0"),
            "{text}"
        );
        assert!(!text.contains("{part=\"rules_ipv6\"}"), "{text}");

        metrics.repaired("address");
        metrics.repaired("address");
        metrics.repaired("iptables_rule");
        metrics.address_conflict();
        metrics.set_contested(true);
        metrics.overrun();
        let text = metrics.encode();
        for line in [
            "# TYPE apiserver_proxy_sidecar_repairs counter",
            "apiserver_proxy_sidecar_repairs_total{kind=\"address\"} 2",
            "apiserver_proxy_sidecar_repairs_total{kind=\"iptables_rule\"} 1",
            "apiserver_proxy_sidecar_address_conflicts_total 1",
            "apiserver_proxy_sidecar_address_contested 1",
            "apiserver_proxy_sidecar_kernel_event_overruns_total 1",
        ] {
            assert!(text.lines().any(|l| l == line), "{line} missing in\n{text}");
        }
        metrics.set_contested(false);
        assert!(
            metrics
                .encode()
                .lines()
                .any(|l| l == "apiserver_proxy_sidecar_address_contested 0")
        );
        assert_eq!(text.lines().last(), Some("# EOF"), "{text}");
        assert!(
            text.lines()
                .all(|l| l.starts_with("# ") || l.starts_with("apiserver_proxy_sidecar_")),
            "{text}"
        );
    }

    #[test]
    fn the_ready_gauge_follows_readyz_for_each_side() {
        let ready = |metrics: &Metrics, part: &str| -> Option<String> {
            let prefix = format!("apiserver_proxy_sidecar_ready{{part=\"{part}\"}} ");
            metrics
                .encode()
                .lines()
                .find_map(|line| line.strip_prefix(&prefix).map(str::to_string))
        };
        let metrics = Metrics::new(Duration::from_secs(60), &[Family::V4, Family::V6]);
        for part in ["address", "rules_ipv4", "rules_ipv6"] {
            assert_eq!(ready(&metrics, part).as_deref(), Some("0"), "{part}");
        }
        let error = StepError::Address(crate::netif::NetifError {
            action: "add 10.96.0.2 to interface lo".into(),
            cause: std::io::Error::from_raw_os_error(1),
        });
        metrics.part_synced(Part::Address, None);
        metrics.part_synced(Part::Rules(Family::V4), None);
        assert_eq!(ready(&metrics, "address").as_deref(), Some("1"));
        assert_eq!(ready(&metrics, "rules_ipv4").as_deref(), Some("1"));
        assert_eq!(ready(&metrics, "rules_ipv6").as_deref(), Some("0"));
        metrics.part_synced(Part::Rules(Family::V6), None);
        assert_eq!(metrics.readiness().0, StatusCode::OK);
        assert_eq!(ready(&metrics, "rules_ipv6").as_deref(), Some("1"));
        metrics.part_synced(Part::Address, Some(&error));
        assert_eq!(metrics.readiness().0, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(ready(&metrics, "address").as_deref(), Some("0"));
        assert!(
            metrics
                .encode()
                .contains("apiserver_proxy_sidecar_errors_total{kind=\"address\"} 1")
        );
        // Without --setup-iptables only the address is a side.
        let metrics = Metrics::new(Duration::from_secs(60), &[]);
        assert!(ready(&metrics, "rules_ipv4").is_none());
        metrics.part_synced(Part::Rules(Family::V4), None);
        assert!(ready(&metrics, "rules_ipv4").is_none());
    }

    #[test]
    fn every_label_in_use_is_a_known_kind() {
        use crate::firewall::ChangeKind;
        let changes = [
            ChangeKind::Inserted,
            ChangeKind::Duplicate,
            ChangeKind::Adopted,
            ChangeKind::Stale,
            ChangeKind::Removed,
        ];
        for label in changes.into_iter().filter_map(ChangeKind::repair_label) {
            assert!(REPAIR_KINDS.contains(&label), "{label}");
        }
        let netif = || crate::netif::NetifError {
            action: "x".into(),
            cause: std::io::Error::from_raw_os_error(1),
        };
        let errors = [
            StepError::Address(netif()),
            StepError::Interface {
                interface: "lo".into(),
                source: netif(),
            },
            StepError::Firewall(crate::firewall::DriverError::IptablesBackend(
                crate::firewall::FirewallError::BinaryMissing {
                    binary: "iptables-nft-save".into(),
                },
            )),
        ];
        for error in errors {
            assert!(ERROR_KINDS.contains(&error.kind()), "{}", error.kind());
        }
    }

    #[test]
    fn health_fails_only_when_an_expected_side_stops_finishing_syncs() {
        let stale = Duration::from_millis(40);
        let metrics = Metrics::new(stale, &[]);
        assert_eq!(metrics.health(), (StatusCode::OK, "ok\n".to_string()));
        std::thread::sleep(stale * 2);
        // The rules side is not expected: only the address side counts.
        metrics.part_synced(Part::Address, None);
        assert_eq!(metrics.health().0, StatusCode::OK);
        std::thread::sleep(stale * 2);
        let (status, body) = metrics.health();
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        assert!(
            body.starts_with("stuck: no address sync finished for"),
            "{body}"
        );

        let metrics = Metrics::new(stale, &[Family::V4]);
        std::thread::sleep(stale * 2);
        metrics.part_synced(Part::Address, None);
        let (status, body) = metrics.health();
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        assert!(body.contains("no iptables sync"), "{body}");
    }

    #[test]
    fn ready_only_while_every_expected_side_is_in_place() {
        let metrics = Metrics::new(Duration::from_secs(60), &[Family::V4]);
        let (status, body) = metrics.readiness();
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(
            body,
            "not ready:\n- address: not synced yet\n- iptables rules: not synced yet\n"
        );
        metrics.part_synced(Part::Address, None);
        let error =
            StepError::Firewall(DriverError::IptablesBackend(FirewallError::BinaryMissing {
                binary: "iptables-nft-save".into(),
            }));
        metrics.part_synced(Part::Rules(Family::V4), Some(&error));
        let (status, body) = metrics.readiness();
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        assert!(
            body.starts_with("not ready:\n- iptables rules: iptables: cannot pick a backend: iptables-nft-save not found"),
            "{body}"
        );
        metrics.part_synced(Part::Rules(Family::V4), None);
        assert_eq!(metrics.readiness(), (StatusCode::OK, "ready\n".to_string()));
        // Without --setup-iptables, only the address counts.
        let metrics = Metrics::new(Duration::from_secs(60), &[]);
        metrics.part_synced(Part::Address, None);
        assert_eq!(metrics.readiness().0, StatusCode::OK);
    }

    #[test]
    fn a_failed_sync_is_reported_but_healthy_and_counted() {
        let metrics = Metrics::new(Duration::from_secs(60), &[Family::V4]);
        let error = StepError::Address(crate::netif::NetifError {
            action: "add 10.96.0.2 to interface lo".into(),
            cause: std::io::Error::from_raw_os_error(1),
        });
        metrics.part_synced(Part::Address, Some(&error));
        metrics.part_synced(Part::Rules(Family::V4), None);
        let (status, body) = metrics.health();
        assert_eq!(status, StatusCode::OK);
        assert!(
            body.starts_with("ok (serving; the last sync failed: address: add 10.96.0.2"),
            "{body}"
        );
        assert!(
            metrics
                .encode()
                .contains("apiserver_proxy_sidecar_errors_total{kind=\"address\"} 1")
        );
        // Once both sides succeed, the success time is set and the failure forgotten.
        metrics.part_synced(Part::Address, None);
        assert_eq!(metrics.health().1, "ok\n");
        assert!(
            !metrics
                .encode()
                .contains("last_successful_sync_timestamp_seconds 0.0")
        );
    }

    #[test]
    fn dual_stack_names_each_family() {
        let metrics = Metrics::new(Duration::from_secs(60), &[Family::V4, Family::V6]);
        metrics.part_synced(Part::Address, None);
        metrics.part_synced(Part::Rules(Family::V4), None);
        assert_eq!(
            metrics.readiness(),
            (
                StatusCode::SERVICE_UNAVAILABLE,
                "not ready:\n- iptables rules (IPv6): not synced yet\n".to_string()
            )
        );
        let error =
            StepError::Firewall(DriverError::IptablesBackend(FirewallError::BinaryMissing {
                binary: "ip6tables-nft-save".into(),
            }));
        metrics.part_synced(Part::Rules(Family::V6), Some(&error));
        let (status, body) = metrics.readiness();
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        assert!(
            body.starts_with("not ready:\n- iptables rules (IPv6): iptables: cannot pick a backend: ip6tables-nft-save not found"),
            "{body}"
        );
        metrics.part_synced(Part::Rules(Family::V6), None);
        assert_eq!(metrics.readiness(), (StatusCode::OK, "ready\n".to_string()));

        let stale = Duration::from_millis(40);
        let metrics = Metrics::new(stale, &[Family::V4, Family::V6]);
        std::thread::sleep(stale * 2);
        metrics.part_synced(Part::Address, None);
        metrics.part_synced(Part::Rules(Family::V4), None);
        let (status, body) = metrics.health();
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        assert!(
            body.starts_with("stuck: no ip6tables sync finished"),
            "{body}"
        );
    }
}
