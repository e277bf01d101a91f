//! The lockout's failure log: exactly "`max_failures` failures within `find_time`" (a sliding
//! window over the last failures, like Authelia's regulation), with attempts in flight counted
//! so that concurrent guesses cannot overshoot.
//!
//! Written here rather than taken from a crate: what is needed is a fixed-size, `Copy` state
//! (so the bounded local table can hold it, and the same rules run in the Redis script), with
//! reservations; the sliding-window crates keep unbounded per-key vectors.

use crate::clock::Millis;

/// The most failures a lockout may count (`max_failures`): the log holds this many entries.
pub const MAX_FAILURES: usize = 10;

/// How long an attempt in flight keeps its place if it is never answered (an instance stopped
/// mid-request), at least. Longer than `find_time` on purpose: a request kept alive past
/// `find_time` (a trickled body) must not free its place and let more guesses through.
pub const PENDING_TTL_MS: Millis = 3_600_000;

/// One key's recent attempts: failures and reservations (attempts not yet answered), oldest
/// first, as millisecond offsets from `base`; and the ban, if any.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FailureLog {
    base: Millis,
    ban_until: Millis,
    /// `find_time`, to tell when the state no longer matters.
    window_ms: Millis,
    at: [u32; MAX_FAILURES],
    /// Bit i: entry i is a failure (else a reservation).
    failed: u16,
    len: u8,
}

/// What a reservation got.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reserve {
    Allowed,
    /// Refused for `retry_after_ms`; `banned` when serving a ban (not just full).
    Denied {
        retry_after_ms: i64,
        banned: bool,
    },
}

impl FailureLog {
    pub fn new(window_ms: Millis) -> FailureLog {
        FailureLog {
            base: 0,
            ban_until: 0,
            window_ms,
            at: [0; MAX_FAILURES],
            failed: 0,
            len: 0,
        }
    }

    fn time(&self, i: usize) -> Millis {
        self.base + self.at[i] as Millis
    }

    fn remove(&mut self, i: usize) {
        let n = self.len as usize;
        self.at.copy_within(i + 1..n, i);
        let low = self.failed & ((1u16 << i) - 1);
        let high = (self.failed >> (i + 1)) << i;
        self.failed = low | high;
        self.len -= 1;
    }

    fn is_failure(&self, i: usize) -> bool {
        self.failed & (1 << i) != 0
    }

    /// When entry `i` stops counting: a failure after the window, a reservation after
    /// [`PENDING_TTL_MS`] (or the window, if longer).
    fn expiry(&self, i: usize) -> Millis {
        let ttl = if self.is_failure(i) {
            self.window_ms
        } else {
            self.window_ms.max(PENDING_TTL_MS)
        };
        self.time(i) + ttl
    }

    /// Drops entries that no longer count.
    fn prune(&mut self, now: Millis) {
        let mut i = 0;
        while i < self.len as usize {
            if self.expiry(i) <= now {
                self.remove(i);
            } else {
                i += 1;
            }
        }
    }

    fn push(&mut self, now: Millis, failure: bool) {
        let n = self.len as usize;
        if n == MAX_FAILURES {
            // Full: the oldest entry makes room (only reachable through clock jumps).
            self.remove(0);
        }
        let n = self.len as usize;
        // Times only move forward in the log, even if the clock steps back.
        let now = if n > 0 {
            now.max(self.time(n - 1))
        } else {
            now
        };
        if n == 0 || now - self.base > u32::MAX as Millis / 2 {
            let shift = if n == 0 { now } else { self.time(0) };
            for i in 0..n {
                self.at[i] = (self.time(i) - shift) as u32;
            }
            self.base = shift;
        }
        self.at[n] = (now - self.base) as u32;
        if failure {
            self.failed |= 1 << n;
        } else {
            self.failed &= !(1 << n);
        }
        self.len += 1;
    }

    fn failures(&self) -> usize {
        (self.failed & ((1u16 << self.len) - 1)).count_ones() as usize
    }

    /// Takes a place for an attempt about to be forwarded.
    pub fn reserve(&mut self, now: Millis, max: usize) -> Reserve {
        if self.ban_until > now {
            return Reserve::Denied {
                retry_after_ms: self.ban_until - now,
                banned: true,
            };
        }
        self.prune(now);
        if self.len as usize >= max.min(MAX_FAILURES) {
            // Failures and attempts in flight fill the window: the oldest frees a place.
            let next = (0..self.len as usize)
                .map(|i| self.expiry(i))
                .min()
                .unwrap_or(now);
            return Reserve::Denied {
                retry_after_ms: (next - now).max(1),
                banned: false,
            };
        }
        self.push(now, false);
        Reserve::Allowed
    }

    /// Settles a reserved attempt: a failure is logged (and bans the key once `max` failures
    /// fall within the window); anything else gives the place back. Returns whether it banned.
    pub fn finish(&mut self, now: Millis, max: usize, ban_ms: Millis, failed: bool) -> bool {
        self.release(now);
        failed && self.fail(now, max, ban_ms)
    }

    /// Gives back the place of one attempt in flight (any: they are interchangeable).
    pub fn release(&mut self, now: Millis) {
        self.prune(now);
        if let Some(i) = (0..self.len as usize).find(|&i| !self.is_failure(i)) {
            self.remove(i);
        }
    }

    /// Logs one failure (and bans once `max` failures fall within the window). Returns
    /// whether it banned.
    pub fn fail(&mut self, now: Millis, max: usize, ban_ms: Millis) -> bool {
        self.prune(now);
        self.push(now, true);
        if self.failures() >= max.min(MAX_FAILURES) {
            self.ban_until = now + ban_ms;
            // The ban replaces the count: after it, the key starts afresh.
            self.len = 0;
            self.failed = 0;
            return true;
        }
        false
    }

    /// Attempts in flight and failures held (tests).
    #[cfg(test)]
    pub fn counts(&self) -> (usize, usize) {
        let failures = self.failures();
        (self.len as usize - failures, failures)
    }

    /// Serving a ban at `now`.
    pub fn banned(&self, now: Millis) -> bool {
        self.ban_until > now
    }

    /// Nothing left worth keeping (for sweeping the local table).
    pub fn idle(&self, now: Millis) -> bool {
        self.ban_until <= now && (0..self.len as usize).all(|i| self.expiry(i) <= now)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T0: Millis = 1_800_000_000_000;
    const MIN: Millis = 60_000;

    fn attempt(log: &mut FailureLog, now: Millis, failed: bool) -> Option<bool> {
        match log.reserve(now, 5) {
            Reserve::Allowed => Some(log.finish(now, 5, 15 * MIN, failed)),
            Reserve::Denied { .. } => None,
        }
    }

    #[test]
    fn five_failures_spread_within_the_window_ban_even_at_the_average_rate() {
        // One failure every 3 minutes is 5 per 15 minutes: the fifth lands 12 minutes after
        // the first, inside the window, and bans. (A leaky bucket would never ban this.)
        let mut log = FailureLog::new(15 * MIN);
        for i in 0..4 {
            assert_eq!(attempt(&mut log, T0 + i * 3 * MIN, true), Some(false));
        }
        assert_eq!(attempt(&mut log, T0 + 12 * MIN, true), Some(true));
        let Reserve::Denied {
            retry_after_ms,
            banned,
        } = log.reserve(T0 + 13 * MIN, 5)
        else {
            panic!("banned")
        };
        assert!(banned);
        assert_eq!(retry_after_ms, 14 * MIN);
        // After the ban the key starts afresh.
        assert_eq!(attempt(&mut log, T0 + 27 * MIN, true), Some(false));
    }

    #[test]
    fn failures_that_slide_out_of_the_window_stop_counting() {
        let mut log = FailureLog::new(15 * MIN);
        for i in 0..4 {
            assert_eq!(attempt(&mut log, T0 + i * MIN, true), Some(false));
        }
        // 15 minutes after the first, it no longer counts: this is the 4th within the window
        // (1, 2, 3, 15), not the 5th.
        assert_eq!(attempt(&mut log, T0 + 15 * MIN, true), Some(false));
        // ...and the next is the 5th within the window (1, 2, 3, 15, 15.5).
        assert_eq!(attempt(&mut log, T0 + 15 * MIN + MIN / 2, true), Some(true));
    }

    #[test]
    fn successes_give_their_place_back_and_never_count() {
        let mut log = FailureLog::new(15 * MIN);
        for i in 0..100 {
            assert_eq!(attempt(&mut log, T0 + i, false), Some(false));
        }
        for i in 0..4 {
            assert_eq!(attempt(&mut log, T0 + 100 + i, true), Some(false));
        }
        assert_eq!(attempt(&mut log, T0 + 200, false), Some(false));
        assert_eq!(attempt(&mut log, T0 + 201, true), Some(true));
    }

    #[test]
    fn concurrent_reservations_cannot_exceed_the_remaining_failures() {
        let mut log = FailureLog::new(15 * MIN);
        assert_eq!(attempt(&mut log, T0, true), Some(false));
        assert_eq!(attempt(&mut log, T0, true), Some(false));
        let allowed = (0..50)
            .filter(|_| log.reserve(T0 + 1, 5) == Reserve::Allowed)
            .count();
        assert_eq!(allowed, 3);
        // All three fail: the last one bans.
        assert!(!log.finish(T0 + 2, 5, 15 * MIN, true));
        assert!(!log.finish(T0 + 2, 5, 15 * MIN, true));
        assert!(log.finish(T0 + 2, 5, 15 * MIN, true));
    }

    #[test]
    fn an_attempt_kept_in_flight_past_find_time_keeps_its_place() {
        // Five attempts held open (bodies trickled) past the 1-minute window must not free
        // their places for five more.
        let mut log = FailureLog::new(MIN);
        for _ in 0..5 {
            assert_eq!(log.reserve(T0, 5), Reserve::Allowed);
        }
        let Reserve::Denied {
            retry_after_ms,
            banned,
        } = log.reserve(T0 + 2 * MIN, 5)
        else {
            panic!("the places are still held")
        };
        assert!(!banned);
        assert_eq!(retry_after_ms, PENDING_TTL_MS - 2 * MIN);
        // Answered late, as failures: the fifth bans.
        for i in 0..4 {
            assert!(!log.finish(T0 + 3 * MIN, 5, 15 * MIN, true), "failure {i}");
        }
        assert!(log.finish(T0 + 3 * MIN, 5, 15 * MIN, true));
    }

    #[test]
    fn a_reservation_never_answered_expires_after_an_hour() {
        let mut log = FailureLog::new(MIN);
        for _ in 0..5 {
            assert_eq!(log.reserve(T0, 5), Reserve::Allowed);
        }
        assert!(matches!(
            log.reserve(T0 + 30 * MIN, 5),
            Reserve::Denied { banned: false, .. }
        ));
        assert!(!log.idle(T0 + 30 * MIN));
        assert_eq!(log.reserve(T0 + PENDING_TTL_MS, 5), Reserve::Allowed);
        assert!(log.idle(T0 + 2 * PENDING_TTL_MS));
    }

    #[test]
    fn offsets_survive_a_week_of_steady_failures() {
        let mut log = FailureLog::new(10 * MIN);
        let mut now = T0;
        for _ in 0..20_000 {
            // One failure every 9 minutes: at most 2 in any 10 minutes, never 5.
            assert_eq!(attempt(&mut log, now, true), Some(false));
            now += 9 * MIN;
        }
        assert!(now - T0 > 100 * 24 * 60 * MIN);
    }
}

#[cfg(test)]
#[path = "window_props.rs"]
mod props;
