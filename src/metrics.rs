//! Metric names and handles in one place, rendered as Prometheus text on the admin listener.
//!
//! Counters are plain atomics. Labelled counters are keyed by `&'static str` labels from closed
//! sets (decision reasons, cache results): a small lock-free table keyed by the label's address
//! means counting on the request path takes no lock and allocates nothing. Written by hand
//! because the common metrics crates take a lock (or hash the label set) per increment.
//! No token, IP or path is ever a label: only these static strings are.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicPtr, AtomicU64, AtomicUsize, Ordering};

const SLOTS: usize = 512;

/// A latency histogram with fixed buckets (seconds), lock-free like the counters.
pub struct Histogram {
    /// Upper bounds in microseconds, ascending; a last, implicit bucket is +Inf.
    bounds_us: &'static [u64],
    counts: Box<[AtomicU64]>,
    sum_us: AtomicU64,
}

impl Histogram {
    pub fn new(bounds_us: &'static [u64]) -> Histogram {
        Histogram {
            bounds_us,
            counts: (0..=bounds_us.len()).map(|_| AtomicU64::new(0)).collect(),
            sum_us: AtomicU64::new(0),
        }
    }

    pub fn observe(&self, d: std::time::Duration) {
        let us = d.as_micros().min(u64::MAX as u128) as u64;
        let i = self.bounds_us.partition_point(|&b| b < us);
        self.counts[i].fetch_add(1, Ordering::Relaxed);
        self.sum_us.fetch_add(us, Ordering::Relaxed);
    }

    fn render(&self, s: &mut String, name: &str, help: &str) {
        let _ = writeln!(
            s,
            "# HELP {name} {help}
# TYPE {name} histogram"
        );
        let mut total = 0;
        for (i, c) in self.counts.iter().enumerate() {
            total += c.load(Ordering::Relaxed);
            let le = match self.bounds_us.get(i) {
                Some(b) => format!("{}", *b as f64 / 1e6),
                None => "+Inf".into(),
            };
            let _ = writeln!(s, "{name}_bucket{{le=\"{le}\"}} {total}");
        }
        let sum = self.sum_us.load(Ordering::Relaxed) as f64 / 1e6;
        let _ = writeln!(s, "{name}_sum {sum}\n{name}_count {total}");
    }
}

/// Buckets for calls to a backend over the network: 1 ms to 2.5 s.
const BACKEND_BUCKETS_US: &[u64] = &[1_000, 5_000, 25_000, 100_000, 500_000, 2_500_000];

/// A counter family with one `&'static str` label pair (outcome, reason).
pub struct LabeledCounter {
    slots: Box<[Slot]>,
}

struct Slot {
    a: AtomicPtr<u8>,
    a_len: AtomicUsize,
    b: AtomicPtr<u8>,
    b_len: AtomicUsize,
    count: AtomicU64,
}

impl Default for LabeledCounter {
    fn default() -> Self {
        let slots = (0..SLOTS)
            .map(|_| Slot {
                a: AtomicPtr::new(std::ptr::null_mut()),
                a_len: AtomicUsize::new(0),
                b: AtomicPtr::new(std::ptr::null_mut()),
                b_len: AtomicUsize::new(0),
                count: AtomicU64::new(0),
            })
            .collect();
        LabeledCounter { slots }
    }
}

impl LabeledCounter {
    /// Adds one to the series (`a`, `b`).
    pub fn inc(&self, a: &'static str, b: &'static str) {
        let start = (a.as_ptr() as usize).wrapping_mul(31) ^ (b.as_ptr() as usize);
        let start = (start >> 3) % SLOTS;
        for i in 0..SLOTS {
            let slot = &self.slots[(start + i) % SLOTS];
            let key = slot.a.load(Ordering::Acquire);
            if key.is_null() {
                // Claim the empty slot; if another thread won it, look at what it holds.
                match slot.a.compare_exchange(
                    std::ptr::null_mut(),
                    a.as_ptr() as *mut u8,
                    Ordering::AcqRel,
                    Ordering::Acquire,
                ) {
                    Ok(_) => {
                        slot.b.store(b.as_ptr() as *mut u8, Ordering::Release);
                        slot.b_len.store(b.len(), Ordering::Release);
                        slot.a_len.store(a.len(), Ordering::Release);
                        slot.count.fetch_add(1, Ordering::Relaxed);
                        return;
                    }
                    Err(_) => continue,
                }
            }
            if std::ptr::eq(key, a.as_ptr())
                && slot.a_len.load(Ordering::Acquire) == a.len()
                && std::ptr::eq(slot.b.load(Ordering::Acquire), b.as_ptr())
                && slot.b_len.load(Ordering::Acquire) == b.len()
            {
                slot.count.fetch_add(1, Ordering::Relaxed);
                return;
            }
        }
        // Table full: a closed label set this large is a bug; drop the sample rather than block.
    }

    /// Every (a, b, count), with series that share label text merged.
    pub fn snapshot(&self) -> Vec<(&'static str, &'static str, u64)> {
        let mut out: Vec<(&'static str, &'static str, u64)> = Vec::new();
        for slot in self.slots.iter() {
            let a_len = slot.a_len.load(Ordering::Acquire);
            if a_len == 0 {
                continue;
            }
            let a = slot.a.load(Ordering::Acquire);
            let b = slot.b.load(Ordering::Acquire);
            let b_len = slot.b_len.load(Ordering::Acquire);
            // SAFETY: the pointers and lengths were taken from `&'static str` values in `inc`,
            // and a_len is published last, so all four fields are set when a_len is non-zero.
            #[allow(
                unsafe_code,
                reason = "the crate's one unsafe block (Cargo.toml [lints.rust])"
            )]
            let (a, b) = unsafe {
                (
                    std::str::from_utf8_unchecked(std::slice::from_raw_parts(a, a_len)),
                    std::str::from_utf8_unchecked(std::slice::from_raw_parts(b, b_len)),
                )
            };
            let n = slot.count.load(Ordering::Relaxed);
            match out.iter_mut().find(|(x, y, _)| *x == a && *y == b) {
                Some(e) => e.2 += n,
                None => out.push((a, b, n)),
            }
        }
        out.sort();
        out
    }

    /// Current count of one series (tests and readiness).
    pub fn get(&self, a: &str, b: &str) -> u64 {
        self.snapshot()
            .into_iter()
            .filter(|(x, y, _)| *x == a && *y == b)
            .map(|(_, _, n)| n)
            .sum()
    }
}

/// Every metric fluxgate exports.
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
    /// fluxgate_backend_auth_duration_seconds: how long the backend took to answer.
    pub backend_latency: Histogram,
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
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics {
            decisions: Default::default(),
            cache: Default::default(),
            store_reads: Default::default(),
            store_errors: Default::default(),
            upstream_errors: Default::default(),
            responses: Default::default(),
            panics: Default::default(),
            revocations: Default::default(),
            invalidations: Default::default(),
            invalidation_subscribed: Default::default(),
            invalidation_subscriptions: Default::default(),
            logout_errors: Default::default(),
            ip_auth: Default::default(),
            notify: Default::default(),
            connections_refused: Default::default(),
            reloads: Default::default(),
            backend_auth: Default::default(),
            backend_latency: Histogram::new(BACKEND_BUCKETS_US),
            login_capture: Default::default(),
            would_deny: Default::default(),
            backend_shared: Default::default(),
            forward_auth: Default::default(),
            upstream_retries: Default::default(),
            upstream_ejections: Default::default(),
        }
    }
}

impl Metrics {
    pub fn count_store_read(&self) {
        self.store_reads.fetch_add(1, Ordering::Relaxed);
    }

    /// Prometheus text exposition format, version 0.0.4.
    pub fn render(&self) -> String {
        let mut s = String::with_capacity(4096);
        let _ = writeln!(
            s,
            "# HELP fluxgate_build_info Build information.\n# TYPE fluxgate_build_info gauge\nfluxgate_build_info{{version=\"{}\"}} 1",
            env!("CARGO_PKG_VERSION")
        );
        family(
            &mut s,
            "fluxgate_decisions_total",
            "Requests by pipeline decision.",
            ("outcome", "reason"),
            &self.decisions,
        );
        family(
            &mut s,
            "fluxgate_forward_auth_decisions_total",
            "Decision endpoint answers by outcome.",
            ("outcome", "reason"),
            &self.forward_auth,
        );
        family(
            &mut s,
            "fluxgate_session_cache_total",
            "Session cache lookups by result.",
            ("result", ""),
            &self.cache,
        );
        family(
            &mut s,
            "fluxgate_upstream_errors_total",
            "Failed upstream exchanges by kind.",
            ("kind", ""),
            &self.upstream_errors,
        );
        family(
            &mut s,
            "fluxgate_responses_total",
            "Responses sent by status class.",
            ("class", ""),
            &self.responses,
        );
        family(
            &mut s,
            "fluxgate_ip_authorization_total",
            "IP authorization events (tickets opened, approvals).",
            ("event", ""),
            &self.ip_auth,
        );
        family(
            &mut s,
            "fluxgate_ip_authorization_notifications_total",
            "IP authorization notifications by result.",
            ("result", ""),
            &self.notify,
        );
        family(
            &mut s,
            "fluxgate_connections_closed_total",
            "Client connections refused or closed by the edge limits, by reason.",
            ("reason", ""),
            &self.connections_refused,
        );
        family(
            &mut s,
            "fluxgate_backend_auth_total",
            "Tokens asked of the session backend, by result.",
            ("result", ""),
            &self.backend_auth,
        );
        family(
            &mut s,
            "fluxgate_backend_shared_total",
            "Backend answers shared through Redis: reads (hit, miss, read_error) and writes (written, write_error, undone).",
            ("result", ""),
            &self.backend_shared,
        );
        self.backend_latency.render(
            &mut s,
            "fluxgate_backend_auth_duration_seconds",
            "How long the session backend took to answer.",
        );
        family(
            &mut s,
            "fluxgate_login_capture_total",
            "Answers of login routes: captured as the session cookie, or passed through and why.",
            ("result", ""),
            &self.login_capture,
        );
        family(
            &mut s,
            "fluxgate_would_deny_total",
            "Requests report mode forwarded that enforcing would have denied, by reason and route.",
            ("reason", "route"),
            &self.would_deny,
        );
        family(
            &mut s,
            "fluxgate_config_reloads_total",
            "Configuration and certificate reloads by result and what was reloaded.",
            ("result", "what"),
            &self.reloads,
        );
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
            let _ = writeln!(
                s,
                "# HELP {name} {help}\n# TYPE {name} counter\n{name} {}",
                v.load(Ordering::Relaxed)
            );
        }
        let _ = writeln!(
            s,
            "# HELP fluxgate_invalidation_subscribed Whether the Redis invalidation subscription is up.\n# TYPE fluxgate_invalidation_subscribed gauge\nfluxgate_invalidation_subscribed {}",
            self.invalidation_subscribed.load(Ordering::Relaxed)
        );
        s
    }
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

/// A label value in the exposition format: `\`, `"` and newlines escaped (route names are
/// operator text).
pub(crate) fn escaped(v: &str) -> std::borrow::Cow<'_, str> {
    if !v.contains(['\\', '"', '\n']) {
        return v.into();
    }
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
        .into()
}

fn family(s: &mut String, name: &str, help: &str, labels: (&str, &str), c: &LabeledCounter) {
    let _ = writeln!(s, "# HELP {name} {help}\n# TYPE {name} counter");
    for (a, b, n) in c.snapshot() {
        let (a, b) = (escaped(a), escaped(b));
        if labels.1.is_empty() {
            let _ = writeln!(s, "{name}{{{}=\"{a}\"}} {n}", labels.0);
        } else {
            let _ = writeln!(s, "{name}{{{}=\"{a}\",{}=\"{b}\"}} {n}", labels.0, labels.1);
        }
    }
}

#[cfg(test)]
#[path = "metrics_tests.rs"]
mod tests;
