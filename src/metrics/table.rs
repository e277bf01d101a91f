//! The lock-free storage behind every metric: counters and histograms keyed by a pair of
//! `&'static str` labels from closed sets (decision reasons, results, route names interned from
//! the config).
//!
//! Why not `prometheus_client::metrics::family::Family`: its `get_or_create` takes a `RwLock`
//! and hashes the label set on every increment, and its `Histogram` takes a `Mutex` per
//! observation. Here a series is found by the labels' addresses in a small open-addressing
//! table, claimed once with a compare-and-swap, and counted with relaxed atomics: the request
//! path takes no lock and allocates nothing. The crate still owns the exposition (see
//! `expose.rs`, a `Collector` over these tables).

use super::exemplar::{self, Exemplar, TraceIdHex};
use std::sync::atomic::{AtomicPtr, AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

/// Series per family: far more than any closed label set (reasons × outcomes, routes ×
/// decisions); a full table drops samples rather than block.
const SLOTS: usize = 512;

/// A family of series of `T`, keyed by one or two `&'static str` label values.
pub struct Labeled<T> {
    slots: Box<[Slot<T>]>,
}

struct Slot<T> {
    a: AtomicPtr<u8>,
    a_len: AtomicUsize,
    b: AtomicPtr<u8>,
    b_len: AtomicUsize,
    value: T,
}

impl<T: Default> Default for Labeled<T> {
    fn default() -> Self {
        let slots = (0..SLOTS)
            .map(|_| Slot {
                a: AtomicPtr::new(std::ptr::null_mut()),
                a_len: AtomicUsize::new(0),
                b: AtomicPtr::new(std::ptr::null_mut()),
                b_len: AtomicUsize::new(0),
                value: T::default(),
            })
            .collect();
        Labeled { slots }
    }
}

impl<T> Labeled<T> {
    /// The series (`a`, `b`), claimed on first use; `None` only when the table is full.
    fn series(&self, a: &'static str, b: &'static str) -> Option<&T> {
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
                        return Some(&slot.value);
                    }
                    Err(_) => continue,
                }
            }
            if std::ptr::eq(key, a.as_ptr())
                && slot.a_len.load(Ordering::Acquire) == a.len()
                && std::ptr::eq(slot.b.load(Ordering::Acquire), b.as_ptr())
                && slot.b_len.load(Ordering::Acquire) == b.len()
            {
                return Some(&slot.value);
            }
        }
        // Table full: a closed label set this large is a bug; drop the sample rather than block.
        None
    }

    /// Every claimed series with its label text. Two slots can hold the same labels (two
    /// threads claiming at once, or equal text at two addresses): callers merge by text.
    fn each(&self) -> impl Iterator<Item = (&'static str, &'static str, &T)> {
        self.slots.iter().filter_map(|slot| {
            let a_len = slot.a_len.load(Ordering::Acquire);
            if a_len == 0 {
                return None;
            }
            let a = slot.a.load(Ordering::Acquire);
            let b = slot.b.load(Ordering::Acquire);
            let b_len = slot.b_len.load(Ordering::Acquire);
            // SAFETY: the pointers and lengths were taken from `&'static str` values in
            // `series`, and a_len is published last, so all four fields are set when a_len is
            // non-zero.
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
            Some((a, b, &slot.value))
        })
    }

    /// Every series' value as `f` reads it, merged (`add`) by label text, sorted by labels.
    fn merged<V>(
        &self,
        f: impl Fn(&T) -> V,
        add: impl Fn(&mut V, V),
    ) -> Vec<(&'static str, &'static str, V)> {
        let mut out: Vec<(&'static str, &'static str, V)> = Vec::new();
        for (a, b, t) in self.each() {
            let v = f(t);
            match out.iter_mut().find(|(x, y, _)| *x == a && *y == b) {
                Some(e) => add(&mut e.2, v),
                None => out.push((a, b, v)),
            }
        }
        out.sort_by(|x, y| (x.0, x.1).cmp(&(y.0, y.1)));
        out
    }
}

/// A counter family with one or two `&'static str` labels (the second `""` when unused).
pub type LabeledCounter = Labeled<AtomicU64>;

impl LabeledCounter {
    /// Adds one to the series (`a`, `b`).
    pub fn inc(&self, a: &'static str, b: &'static str) {
        if let Some(c) = self.series(a, b) {
            c.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Every (a, b, count), with series that share label text merged.
    pub fn snapshot(&self) -> Vec<(&'static str, &'static str, u64)> {
        self.merged(|c| c.load(Ordering::Relaxed), |x, y| *x += y)
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

/// Upper bounds of every latency histogram, in seconds: 50 µs (a cache hit decided in
/// process) to 10 s (a slow upstream or backend). The same buckets everywhere, so one
/// dashboard query shape fits all of them.
pub const LATENCY_BUCKETS: [f64; 17] = [
    0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
    1.0, 2.5, 5.0, 10.0,
];

/// The same bounds in nanoseconds, for the comparison on the request path.
const BOUNDS_NS: [u64; 17] = {
    let mut out = [0u64; 17];
    let mut i = 0;
    while i < out.len() {
        out[i] = (LATENCY_BUCKETS[i] * 1e9) as u64;
        i += 1;
    }
    out
};

/// A latency histogram with `LATENCY_BUCKETS`, lock-free like the counters.
pub struct Histogram {
    /// Per-bucket (not cumulative) counts; the last is the implicit `+Inf` bucket.
    counts: [AtomicU64; BOUNDS_NS.len() + 1],
    sum_ns: AtomicU64,
    exemplar: exemplar::Slot,
}

impl Default for Histogram {
    fn default() -> Self {
        Histogram {
            counts: std::array::from_fn(|_| AtomicU64::new(0)),
            sum_ns: AtomicU64::new(0),
            exemplar: Default::default(),
        }
    }
}

/// A histogram's state at a scrape: per-bucket counts (the last is `+Inf`) and the sum.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct HistogramSnapshot {
    pub counts: Vec<u64>,
    pub sum_ns: u64,
    /// The latest observation that carried a trace id.
    pub exemplar: Option<Exemplar>,
}

impl HistogramSnapshot {
    /// Observations in all buckets (the `_count` and the `+Inf` bucket).
    pub fn count(&self) -> u64 {
        self.counts.iter().sum()
    }

    fn add(&mut self, other: HistogramSnapshot) {
        for (x, y) in self.counts.iter_mut().zip(other.counts) {
            *x += y;
        }
        self.sum_ns += other.sum_ns;
        self.exemplar = self.exemplar.take().or(other.exemplar);
    }
}

impl Histogram {
    /// Records `d`; with a trace id, also as the series' exemplar.
    pub fn observe(&self, d: Duration, exemplar: Option<&TraceIdHex>) {
        let ns = d.as_nanos().min(u128::from(u64::MAX)) as u64;
        let i = BOUNDS_NS.partition_point(|&b| b < ns);
        self.counts[i].fetch_add(1, Ordering::Relaxed);
        self.sum_ns.fetch_add(ns, Ordering::Relaxed);
        if let Some(id) = exemplar {
            self.exemplar.record(id, ns, i);
        }
    }

    pub fn snapshot(&self) -> HistogramSnapshot {
        HistogramSnapshot {
            counts: self
                .counts
                .iter()
                .map(|c| c.load(Ordering::Relaxed))
                .collect(),
            sum_ns: self.sum_ns.load(Ordering::Relaxed),
            exemplar: self.exemplar.read(),
        }
    }
}

/// A histogram family with one or two `&'static str` labels (the second `""` when unused).
pub type LabeledHistogram = Labeled<Histogram>;

impl LabeledHistogram {
    /// Records `d` in the series (`a`, `b`), with the request's trace id as exemplar when
    /// tracing is on.
    pub fn observe(
        &self,
        a: &'static str,
        b: &'static str,
        d: Duration,
        exemplar: Option<&TraceIdHex>,
    ) {
        if let Some(h) = self.series(a, b) {
            h.observe(d, exemplar);
        }
    }

    /// Every (a, b, histogram), with series that share label text merged.
    pub fn snapshot(&self) -> Vec<(&'static str, &'static str, HistogramSnapshot)> {
        self.merged(Histogram::snapshot, HistogramSnapshot::add)
    }

    /// One series' state (tests).
    pub fn get(&self, a: &str, b: &str) -> HistogramSnapshot {
        self.snapshot()
            .into_iter()
            .find(|(x, y, _)| *x == a && *y == b)
            .map(|(_, _, h)| h)
            .unwrap_or_default()
    }
}
