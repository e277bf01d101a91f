//! Metric names and handles in one place, exposed through `prometheus-client` on the admin
//! listener.
//!
//! Counting and timing go to lock-free tables keyed by `&'static str` labels from closed sets
//! (`table.rs`: the request path takes no lock and allocates nothing); a scrape reads them
//! into families that the crate encodes (`expose.rs`). No token, IP or path is ever a label:
//! only static strings and route names interned from the config are.

mod exemplar;
mod expose;
mod table;

pub use exemplar::TraceIdHex;
pub use expose::{Family, Format, Series};
pub use table::{Histogram, HistogramSnapshot, LabeledCounter, LabeledHistogram};

use std::sync::atomic::{AtomicU64, Ordering};

/// Every metric fluxgate exports.
#[derive(Default)]
pub struct Metrics {
    /// fluxgate_decisions_total{outcome, reason}
    pub decisions: LabeledCounter,
    /// fluxgate_session_cache_total{result, _}
    pub cache: LabeledCounter,
    /// fluxgate_store_reads_total
    pub store_reads: AtomicU64,
    /// fluxgate_store_errors_total
    pub store_errors: AtomicU64,
    /// fluxgate_upstream_errors_total{kind, _}
    pub upstream_errors: LabeledCounter,
    /// fluxgate_responses_total{class, _}
    pub responses: LabeledCounter,
    /// fluxgate_panics_total
    pub panics: AtomicU64,
    /// fluxgate_revocations_total
    pub revocations: AtomicU64,
    /// fluxgate_invalidations_received_total
    pub invalidations: AtomicU64,
    /// fluxgate_invalidation_subscribed (gauge, 0 or 1)
    pub invalidation_subscribed: AtomicU64,
    /// fluxgate_invalidation_subscriptions_total
    pub invalidation_subscriptions: AtomicU64,
    /// fluxgate_logout_errors_total
    pub logout_errors: AtomicU64,
    /// fluxgate_ip_authorization_total{event}
    pub ip_auth: LabeledCounter,
    /// fluxgate_ip_authorization_notifications_total{result}
    pub notify: LabeledCounter,
    /// fluxgate_connections_closed_total{reason}: connections fluxgate refused or cut.
    pub connections_refused: LabeledCounter,
    /// fluxgate_config_reloads_total{result}: SIGHUP reloads (config and certificates).
    pub reloads: LabeledCounter,
    /// fluxgate_backend_auth_total{result}: tokens asked of the session backend.
    pub backend_auth: LabeledCounter,
    /// fluxgate_backend_auth_duration_seconds{result}: how long the backend took to answer.
    pub backend_latency: LabeledHistogram,
    /// fluxgate_login_capture_total{result}: answers of `login` routes, captured or passed
    /// through (and why).
    pub login_capture: LabeledCounter,
    /// fluxgate_would_deny_total{reason, route}: denials report mode forwarded instead.
    pub would_deny: LabeledCounter,
    /// fluxgate_backend_shared_total{result}: backend answers shared through Redis.
    pub backend_shared: LabeledCounter,
    /// fluxgate_forward_auth_decisions_total{outcome, reason}: the decision endpoint's answers
    /// (`refused` when the edge's description was not accepted).
    pub forward_auth: LabeledCounter,
    /// fluxgate_upstream_retries_total: idempotent requests retried on another address.
    pub upstream_retries: AtomicU64,
    /// fluxgate_upstream_ejections_total: addresses ejected after consecutive connect failures.
    pub upstream_ejections: AtomicU64,
    /// fluxgate_request_duration_seconds{route, decision}: first byte in to response done.
    pub request_duration: LabeledHistogram,
    /// fluxgate_decision_duration_seconds{route, decision}: the share fluxgate adds before the
    /// upstream (request start to the upstream picked, or to the denial).
    pub decision_duration: LabeledHistogram,
    /// fluxgate_upstream_duration_seconds{route}: upstream picked to its response head.
    pub upstream_duration: LabeledHistogram,
    /// fluxgate_store_lookup_duration_seconds{result}: session store reads (cache misses).
    pub store_lookup: LabeledHistogram,
}

/// A labelled counter family: (name, help, label names, table).
type CounterRow<'a> = (
    &'static str,
    &'static str,
    &'static [&'static str],
    &'a LabeledCounter,
);

impl Metrics {
    pub fn count_store_read(&self) {
        self.store_reads.fetch_add(1, Ordering::Relaxed);
    }

    /// Prometheus text exposition format, version 0.0.4, of these metrics alone.
    pub fn render(&self) -> String {
        expose::encode(self.families(), Format::Prometheus)
    }

    /// These metrics and `extra` (read elsewhere at scrape time) as text in `format`.
    pub fn encode(&self, format: Format, extra: Vec<Family>) -> String {
        let mut families = self.families();
        families.extend(extra);
        expose::encode(families, format)
    }

    /// Every family, read now.
    pub fn families(&self) -> Vec<Family> {
        let mut out = vec![Family {
            name: "fluxgate_build_info",
            help: "Build information.",
            labels: &["version"],
            series: Series::Gauge(vec![(vec![env!("CARGO_PKG_VERSION").into()], 1)]),
        }];
        let labelled: [CounterRow<'_>; 13] = [
            (
                "fluxgate_decisions_total",
                "Requests by pipeline decision.",
                &["outcome", "reason"],
                &self.decisions,
            ),
            (
                "fluxgate_forward_auth_decisions_total",
                "Decision endpoint answers by outcome.",
                &["outcome", "reason"],
                &self.forward_auth,
            ),
            (
                "fluxgate_session_cache_total",
                "Session cache lookups by result.",
                &["result"],
                &self.cache,
            ),
            (
                "fluxgate_upstream_errors_total",
                "Failed upstream exchanges by kind.",
                &["kind"],
                &self.upstream_errors,
            ),
            (
                "fluxgate_responses_total",
                "Responses sent by status class.",
                &["class"],
                &self.responses,
            ),
            (
                "fluxgate_ip_authorization_total",
                "IP authorization events (tickets opened, approvals).",
                &["event"],
                &self.ip_auth,
            ),
            (
                "fluxgate_ip_authorization_notifications_total",
                "IP authorization notifications by result.",
                &["result"],
                &self.notify,
            ),
            (
                "fluxgate_connections_closed_total",
                "Client connections refused or closed by the edge limits, by reason.",
                &["reason"],
                &self.connections_refused,
            ),
            (
                "fluxgate_backend_auth_total",
                "Tokens asked of the session backend, by result.",
                &["result"],
                &self.backend_auth,
            ),
            (
                "fluxgate_backend_shared_total",
                "Backend answers shared through Redis: reads (hit, miss, read_error) and writes (written, write_error, undone).",
                &["result"],
                &self.backend_shared,
            ),
            (
                "fluxgate_login_capture_total",
                "Answers of login routes: captured as the session cookie, or passed through and why.",
                &["result"],
                &self.login_capture,
            ),
            (
                "fluxgate_would_deny_total",
                "Requests report mode forwarded that enforcing would have denied, by reason and route.",
                &["reason", "route"],
                &self.would_deny,
            ),
            (
                "fluxgate_config_reloads_total",
                "Configuration and certificate reloads by result and what was reloaded.",
                &["result", "what"],
                &self.reloads,
            ),
        ];
        for (name, help, labels, c) in labelled {
            let series = c
                .snapshot()
                .into_iter()
                .map(|(a, b, n)| (values(labels, a, b), n))
                .collect();
            out.push(Family {
                name,
                help,
                labels,
                series: Series::Counter(series),
            });
        }
        out.extend(self.histograms());
        for (name, help, v) in [
            (
                "fluxgate_store_reads_total",
                "Session store reads (cache misses).",
                &self.store_reads,
            ),
            (
                "fluxgate_store_errors_total",
                "Session store errors.",
                &self.store_errors,
            ),
            (
                "fluxgate_panics_total",
                "Panics caught on the request path.",
                &self.panics,
            ),
            (
                "fluxgate_revocations_total",
                "Sessions revoked through this instance.",
                &self.revocations,
            ),
            (
                "fluxgate_invalidations_received_total",
                "Invalidation messages received from Redis.",
                &self.invalidations,
            ),
            (
                "fluxgate_invalidation_subscriptions_total",
                "Times the invalidation subscription was (re)established.",
                &self.invalidation_subscriptions,
            ),
            (
                "fluxgate_logout_errors_total",
                "Logouts whose revocation failed in the store.",
                &self.logout_errors,
            ),
            (
                "fluxgate_upstream_retries_total",
                "Idempotent requests retried on another upstream address after a connect failure.",
                &self.upstream_retries,
            ),
            (
                "fluxgate_upstream_ejections_total",
                "Upstream addresses ejected after consecutive connect failures.",
                &self.upstream_ejections,
            ),
        ] {
            let n = v.load(Ordering::Relaxed);
            out.push(Family {
                name,
                help,
                labels: &[],
                series: Series::Counter(vec![(vec![], n)]),
            });
        }
        let up = self.invalidation_subscribed.load(Ordering::Relaxed) as i64;
        out.push(Family {
            name: "fluxgate_invalidation_subscribed",
            help: "Whether the Redis invalidation subscription is up.",
            labels: &[],
            series: Series::Gauge(vec![(vec![], up)]),
        });
        out
    }

    fn histograms(&self) -> Vec<Family> {
        let rows: [(
            &'static str,
            &'static str,
            &'static [&'static str],
            &LabeledHistogram,
        ); 5] = [
            (
                "fluxgate_request_duration_seconds",
                "Requests from their first byte to the response done, by route and decision.",
                &["route", "decision"],
                &self.request_duration,
            ),
            (
                "fluxgate_decision_duration_seconds",
                "The time fluxgate adds before the upstream: request start to the upstream picked, or to the denial.",
                &["route", "decision"],
                &self.decision_duration,
            ),
            (
                "fluxgate_upstream_duration_seconds",
                "Upstream response time: the upstream picked to its response head, retries included.",
                &["route"],
                &self.upstream_duration,
            ),
            (
                "fluxgate_store_lookup_duration_seconds",
                "Session store reads (cache misses) by result.",
                &["result"],
                &self.store_lookup,
            ),
            (
                "fluxgate_backend_auth_duration_seconds",
                "How long the session backend took to answer, by result.",
                &["result"],
                &self.backend_latency,
            ),
        ];
        rows.into_iter()
            .map(|(name, help, labels, h)| {
                let series = h
                    .snapshot()
                    .into_iter()
                    .map(|(a, b, s)| (values(labels, a, b), s))
                    .collect();
                Family {
                    name,
                    help,
                    labels,
                    series: Series::Histogram(series),
                }
            })
            .collect()
    }
}

/// The label values of a one- or two-label series.
fn values(labels: &[&str], a: &str, b: &str) -> Vec<String> {
    [a, b]
        .into_iter()
        .take(labels.len())
        .map(str::to_owned)
        .collect()
}

/// A route name as a `&'static str` label: each distinct name is leaked once (route names come
/// from the config, so there are as many as were ever configured), and later calls return the
/// same string. Called when a config is loaded, never on the request path.
pub fn route_label(name: &str) -> &'static str {
    static NAMES: std::sync::Mutex<Vec<&'static str>> = std::sync::Mutex::new(Vec::new());
    let mut names = NAMES.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(n) = names.iter().find(|n| **n == name) {
        return n;
    }
    let leaked: &'static str = Box::leak(name.to_owned().into_boxed_str());
    names.push(leaked);
    leaked
}

#[cfg(test)]
#[path = "metrics_tests.rs"]
mod tests;
