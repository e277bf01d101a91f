//! The injectable clock. Every expiry, TTL and window in fluxgate reads time from here, so tests
//! can drive time with a [`ManualClock`] instead of sleeping.
//!
//! This is also the only file that reads the host's clocks (`clippy.toml` bans
//! `Instant::now` and `SystemTime::now` everywhere else). Code that needs real time rather than
//! decision time (a latency measurement, a startup retry deadline, a log line's timestamp, a
//! test waiting for a process) calls [`monotonic_now`] or [`unix_now`], so every read of the
//! host clock can be found from here.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Wall-clock time in milliseconds since the Unix epoch.
pub type Millis = i64;

/// A source of wall-clock time.
pub trait Clock: Send + Sync + 'static {
    /// Milliseconds since the Unix epoch.
    fn now_ms(&self) -> Millis;

    /// Whole seconds since the Unix epoch.
    fn now_secs(&self) -> i64 {
        self.now_ms().div_euclid(1000)
    }
}

/// Shared handle to the process clock.
pub type SharedClock = Arc<dyn Clock>;

/// The real clock.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_ms(&self) -> Millis {
        unix_now().as_millis() as Millis
    }
}

/// The host's wall clock, as time since the Unix epoch. Not for decisions (use a [`Clock`]):
/// for timestamps that must agree with other hosts, such as log lines and webhook signatures.
#[allow(
    clippy::disallowed_methods,
    reason = "the one sanctioned read of the wall clock"
)]
pub fn unix_now() -> Duration {
    // A clock set before 1970 is a broken host; treat it as the epoch rather than panic.
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
}

/// The host's monotonic clock. Not for decisions (use a [`Clock`]): for measuring how long
/// something took, and for deadlines on real waits (retrying a file lock at startup, tests
/// waiting for a process).
#[allow(
    clippy::disallowed_methods,
    reason = "the one sanctioned read of the monotonic clock"
)]
pub fn monotonic_now() -> Instant {
    Instant::now()
}

/// A clock that only moves when told to. Used by tests.
#[derive(Debug)]
pub struct ManualClock {
    now: AtomicI64,
}

impl ManualClock {
    pub fn new(start_ms: Millis) -> Arc<Self> {
        Arc::new(Self {
            now: AtomicI64::new(start_ms),
        })
    }

    pub fn advance_ms(&self, ms: i64) {
        self.now.fetch_add(ms, Ordering::SeqCst);
    }

    pub fn set_ms(&self, ms: Millis) {
        self.now.store(ms, Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now_ms(&self) -> Millis {
        self.now.load(Ordering::SeqCst)
    }
}

/// The process clock.
pub fn system() -> SharedClock {
    Arc::new(SystemClock)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manual_clock_moves_only_when_told() {
        let c = ManualClock::new(1_000);
        assert_eq!(c.now_ms(), 1_000);
        assert_eq!(c.now_secs(), 1);
        c.advance_ms(1_500);
        assert_eq!(c.now_ms(), 2_500);
        assert_eq!(c.now_secs(), 2);
    }

    #[test]
    fn system_clock_is_after_2024() {
        assert!(SystemClock.now_secs() > 1_700_000_000);
    }
}
