//! Exemplars: the trace id of one recent observation per histogram series, so a dashboard can
//! jump from a slow bucket to the trace. Shown in OpenMetrics output only (the 0.0.4 text
//! format has no syntax for them).
//!
//! Kept lock-free like the counts: a seqlock over a few atomics. A writer that finds another
//! writer mid-update skips (an exemplar is a sample, losing one costs nothing); a reader that
//! sees a torn write skips it for this scrape.

use std::sync::atomic::{AtomicU64, Ordering, fence};

/// A W3C trace id as 32 lowercase hex characters (what OpenTelemetry prints).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TraceIdHex([u8; 32]);

impl TraceIdHex {
    /// `s` when it is 32 hex characters and not all zero (the W3C invalid id).
    pub fn parse(s: &str) -> Option<TraceIdHex> {
        let b: [u8; 32] = s.as_bytes().try_into().ok()?;
        if !b.iter().all(u8::is_ascii_hexdigit) || b.iter().all(|c| *c == b'0') {
            return None;
        }
        Some(TraceIdHex(b.map(|c| c.to_ascii_lowercase())))
    }

    /// A trace id's 16 bytes, as hex (None for the all-zero invalid id).
    pub fn from_bytes(id: [u8; 16]) -> Option<TraceIdHex> {
        let mut hex = [0u8; 32];
        hex::encode_to_slice(id, &mut hex).ok()?;
        TraceIdHex::parse(std::str::from_utf8(&hex).ok()?)
    }

    pub fn as_str(&self) -> &str {
        std::str::from_utf8(&self.0).expect("parse admits ASCII hex only")
    }
}

/// The latest exemplar of one series: its trace id, the observed value and its bucket.
#[derive(Default)]
pub(super) struct Slot {
    /// Even: stable; odd: a write is in progress; 0: never written.
    seq: AtomicU64,
    id: [AtomicU64; 4],
    value_ns: AtomicU64,
    bucket: AtomicU64,
}

/// An exemplar read at a scrape.
#[derive(Debug, Clone, PartialEq)]
pub struct Exemplar {
    pub trace_id: TraceIdHex,
    pub value_ns: u64,
    /// Index in the histogram's buckets (the last is `+Inf`).
    pub bucket: usize,
}

impl Slot {
    pub(super) fn record(&self, id: &TraceIdHex, value_ns: u64, bucket: usize) {
        let s = self.seq.load(Ordering::Relaxed);
        if s % 2 == 1
            || self
                .seq
                .compare_exchange(s, s + 1, Ordering::Acquire, Ordering::Relaxed)
                .is_err()
        {
            return;
        }
        for (slot, chunk) in self.id.iter().zip(id.0.chunks_exact(8)) {
            let word = u64::from_le_bytes(chunk.try_into().expect("chunks of 8"));
            slot.store(word, Ordering::Relaxed);
        }
        self.value_ns.store(value_ns, Ordering::Relaxed);
        self.bucket.store(bucket as u64, Ordering::Relaxed);
        self.seq.store(s + 2, Ordering::Release);
    }

    pub(super) fn read(&self) -> Option<Exemplar> {
        let s1 = self.seq.load(Ordering::Acquire);
        if s1 == 0 || s1 % 2 == 1 {
            return None;
        }
        let mut id = [0u8; 32];
        for (chunk, slot) in id.chunks_exact_mut(8).zip(&self.id) {
            chunk.copy_from_slice(&slot.load(Ordering::Relaxed).to_le_bytes());
        }
        let value_ns = self.value_ns.load(Ordering::Relaxed);
        let bucket = self.bucket.load(Ordering::Relaxed) as usize;
        fence(Ordering::Acquire);
        if self.seq.load(Ordering::Relaxed) != s1 {
            return None;
        }
        // Re-checked rather than trusted: a scrape never renders bytes that are not an id.
        let trace_id = TraceIdHex::parse(std::str::from_utf8(&id).ok()?)?;
        Some(Exemplar {
            trace_id,
            value_ns,
            bucket,
        })
    }
}
