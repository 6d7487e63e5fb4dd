// SPDX-FileCopyrightText: 2026 apiserver-proxy contributors
// SPDX-License-Identifier: Apache-2.0

//! Prometheus metrics. The request metrics carry the names and labels controller-runtime gives
//! its webhooks' metrics, so dashboards built for controller-runtime webhooks read them.

use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

use crate::mutate::SkipReason;

/// Every `reason` of `request_failures_total`, each exposed at 0 from the start so that
/// `increase()` and `rate()` see the first one. `unauthenticated`: a review without a client
/// certificate where one is required; `protocol`: a request head refused before it reached a
/// path; `other`: a status none of the others stands for.
pub const FAILURE_REASONS: [&str; 11] = [
    "bad_request",
    "unauthenticated",
    "not_found",
    "method_not_allowed",
    "timeout",
    "too_large",
    "unsupported_media_type",
    "unavailable",
    "internal",
    "protocol",
    "other",
];

/// Every status a review can be answered with: the `code` of
/// `controller_runtime_webhook_requests_total`, each exposed at 0 from the start.
pub const REVIEW_CODES: [u16; 9] = [200, 400, 403, 405, 408, 413, 415, 500, 503];

/// Labels of `controller_runtime_webhook_requests_total`.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    webhook: &'static str,
    code: u16,
}

/// Labels of the per-webhook gauge and histogram.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct WebhookLabel {
    webhook: &'static str,
}

/// Labels of the skipped-pods counter.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabel {
    reason: &'static str,
}

/// controller-runtime's webhook request metrics, for one webhook.
#[derive(Debug)]
struct RequestMetrics {
    requests: Family<RequestLabels, Counter>,
    /// The `code="200"` counter, looked up once.
    ok: Counter,
    in_flight: Gauge,
    latency: Histogram,
}

impl RequestMetrics {
    /// Registers the families, with the children of the webhook served at `webhook`.
    fn register(registry: &mut Registry, webhook: &'static str) -> Self {
        let requests = Family::<RequestLabels, Counter>::default();
        registry.register(
            "controller_runtime_webhook_requests",
            "Total number of admission requests by HTTP status code",
            requests.clone(),
        );
        let in_flight = Family::<WebhookLabel, Gauge>::default();
        registry.register(
            "controller_runtime_webhook_requests_in_flight",
            "Current number of admission requests being served",
            in_flight.clone(),
        );
        let latency = Family::<WebhookLabel, Histogram>::new_with_constructor(|| {
            Histogram::new([
                0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
                1.0, 2.5, 5.0, 10.0,
            ])
        });
        registry.register(
            "controller_runtime_webhook_latency_seconds",
            "Histogram of the latency of processing admission requests",
            latency.clone(),
        );
        let label = WebhookLabel { webhook };
        for code in REVIEW_CODES {
            requests
                .get_or_create(&RequestLabels { webhook, code })
                .inc_by(0);
        }
        let ok = requests
            .get_or_create(&RequestLabels { webhook, code: 200 })
            .clone();
        RequestMetrics {
            requests,
            ok,
            in_flight: in_flight.get_or_create(&label).clone(),
            latency: latency.get_or_create(&label).clone(),
        }
    }
}

/// Every metric the webhook exports, and the registry that encodes them.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    webhook: &'static str,
    requests: RequestMetrics,
    /// Pods that got a patch.
    pub pods_mutated: Counter,
    skipped: Family<ReasonLabel, Counter>,
    failures: Family<ReasonLabel, Counter>,
    /// Certificate reloads that took effect.
    pub cert_reloads: Counter,
    /// Certificate changes that could not be loaded.
    pub cert_reload_errors: Counter,
    /// The serving certificate's `notAfter`, in Unix seconds.
    cert_expiry: Gauge,
}

impl Metrics {
    /// Creates the metrics for the webhook served at `webhook` (its path).
    pub fn new(webhook: &'static str) -> Self {
        let mut registry = Registry::default();
        let requests = RequestMetrics::register(&mut registry, webhook);
        let pods_mutated = Counter::default();
        registry.register(
            "apiserver_proxy_pod_webhook_pods_mutated",
            "Pods that got KUBERNETES_SERVICE_HOST added to at least one container",
            pods_mutated.clone(),
        );
        let skipped = Family::<ReasonLabel, Counter>::default();
        for reason in SkipReason::ALL {
            skipped
                .get_or_create(&ReasonLabel {
                    reason: reason.as_str(),
                })
                .inc_by(0);
        }
        registry.register(
            "apiserver_proxy_pod_webhook_pods_skipped",
            "Pod creations left unchanged, by reason (opted_out, nothing_to_do)",
            skipped.clone(),
        );
        let failures = Family::<ReasonLabel, Counter>::default();
        for reason in FAILURE_REASONS {
            failures.get_or_create(&ReasonLabel { reason }).inc_by(0);
        }
        registry.register(
            "apiserver_proxy_pod_webhook_request_failures",
            "Requests on any path answered with an error, by reason (every one, logged or not)",
            failures.clone(),
        );
        let cert_reloads = Counter::default();
        registry.register(
            "apiserver_proxy_pod_webhook_certificate_reloads",
            "Certificate reloads that took effect",
            cert_reloads.clone(),
        );
        let cert_reload_errors = Counter::default();
        registry.register(
            "apiserver_proxy_pod_webhook_certificate_reload_errors",
            "Certificate changes that could not be loaded (the previous certificate stays)",
            cert_reload_errors.clone(),
        );
        let cert_expiry = Gauge::default();
        registry.register(
            "apiserver_proxy_pod_webhook_certificate_expiry_timestamp_seconds",
            "Unix time at which the serving certificate expires (its notAfter), updated on each reload; 0 when it cannot be read from the certificate",
            cert_expiry.clone(),
        );
        registry.register(
            "apiserver_proxy_pod_webhook_log_lines_dropped",
            "Log lines dropped because the log output did not keep up, or failed",
            common::logging::lines_dropped(),
        );
        Metrics {
            registry,
            webhook,
            requests,
            pods_mutated,
            skipped,
            failures,
            cert_reloads,
            cert_reload_errors,
            cert_expiry,
        }
    }

    /// Records when the serving certificate expires (0 when it cannot be read from it).
    pub fn set_certificate_expiry(&self, not_after: Option<i64>) {
        self.cert_expiry.set(not_after.unwrap_or(0));
    }

    /// Counts a request as in flight until the guard is dropped.
    pub fn in_flight(&self) -> InFlight {
        self.requests.in_flight.inc();
        InFlight(self.requests.in_flight.clone())
    }

    /// Records a finished admission request.
    pub fn observe(&self, code: u16, elapsed: Duration) {
        if code == 200 {
            self.requests.ok.inc();
        } else {
            self.requests
                .requests
                .get_or_create(&RequestLabels {
                    webhook: self.webhook,
                    code,
                })
                .inc();
        }
        self.requests.latency.observe(elapsed.as_secs_f64());
    }

    /// Counts a pod creation left unchanged.
    pub fn pod_skipped(&self, reason: &'static str) {
        self.skipped.get_or_create(&ReasonLabel { reason }).inc();
    }

    /// Counts a request answered with an error.
    pub fn request_failed(&self, reason: &'static str) {
        self.failures.get_or_create(&ReasonLabel { reason }).inc();
    }

    /// The metrics in the OpenMetrics text format.
    pub fn encode(&self) -> Result<String, std::fmt::Error> {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry)?;
        Ok(out)
    }
}

/// Decrements the in-flight gauge when dropped.
#[derive(Debug)]
pub struct InFlight(Gauge);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.dec();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn controller_runtime_names() {
        let m = Metrics::new("/webhook/pod-apiserver-env");
        {
            let _g = m.in_flight();
            m.observe(200, Duration::from_millis(1));
        }
        m.pod_skipped("opted_out");
        m.pods_mutated.inc();
        m.request_failed("not_found");
        let text = m.encode().expect("encodes");
        for line in [
            "controller_runtime_webhook_requests_total{webhook=\"/webhook/pod-apiserver-env\",code=\"200\"} 1",
            "controller_runtime_webhook_requests_in_flight{webhook=\"/webhook/pod-apiserver-env\"} 0",
            "controller_runtime_webhook_latency_seconds_count{webhook=\"/webhook/pod-apiserver-env\"} 1",
            "apiserver_proxy_pod_webhook_pods_mutated_total 1",
            "apiserver_proxy_pod_webhook_pods_skipped_total{reason=\"opted_out\"} 1",
            "apiserver_proxy_pod_webhook_request_failures_total{reason=\"not_found\"} 1",
            "apiserver_proxy_pod_webhook_certificate_reloads_total 0",
            "apiserver_proxy_pod_webhook_certificate_reload_errors_total 0",
            "# TYPE apiserver_proxy_pod_webhook_log_lines_dropped counter",
            "apiserver_proxy_pod_webhook_log_lines_dropped_total 0",
            "# TYPE apiserver_proxy_pod_webhook_certificate_expiry_timestamp_seconds gauge",
            "apiserver_proxy_pod_webhook_certificate_expiry_timestamp_seconds 0",
        ] {
            assert!(text.lines().any(|l| l == line), "{line} missing in\n{text}");
        }
    }

    #[test]
    fn every_labelled_family_shows_every_known_label_at_0() {
        let text = Metrics::new("/w").encode().expect("encodes");
        let mut want: Vec<String> = REVIEW_CODES
            .iter()
            .map(|code| {
                format!(
                    "controller_runtime_webhook_requests_total{{webhook=\"/w\",code=\"{code}\"}} 0"
                )
            })
            .collect();
        want.extend(SkipReason::ALL.iter().map(|reason| {
            format!(
                "apiserver_proxy_pod_webhook_pods_skipped_total{{reason=\"{}\"}} 0",
                reason.as_str()
            )
        }));
        want.extend(FAILURE_REASONS.iter().map(|reason| {
            format!("apiserver_proxy_pod_webhook_request_failures_total{{reason=\"{reason}\"}} 0")
        }));
        want.push("controller_runtime_webhook_requests_in_flight{webhook=\"/w\"} 0".to_string());
        want.push("controller_runtime_webhook_latency_seconds_count{webhook=\"/w\"} 0".to_string());
        for line in &want {
            assert!(text.lines().any(|l| l == line), "{line} missing in\n{text}");
        }
    }

    #[test]
    fn certificate_expiry_as_a_gauge() {
        let m = Metrics::new("/w");
        for (not_after, want) in [
            (Some(1_798_848_000), "1798848000"),
            (Some(2_524_608_000), "2524608000"),
            (None, "0"),
        ] {
            m.set_certificate_expiry(not_after);
            let text = m.encode().expect("encodes");
            let line =
                format!("apiserver_proxy_pod_webhook_certificate_expiry_timestamp_seconds {want}");
            assert!(text.lines().any(|l| l == line), "{line} missing in\n{text}");
        }
    }
}
