//! GCRA (the generic cell rate algorithm), written once and used by both backends: the local
//! table calls these functions, and the Redis script is a line-for-line copy (see `redis.rs`).
//!
//! Written by hand rather than taken from `governor` because the same arithmetic must run
//! inside a Redis script, and governor keeps its state in its own in-process store.
//!
//! A bucket allows `limit` requests at once and refills one every `window / limit`. To keep
//! that exact with integers, all times are scaled by `limit`: one emission interval is then
//! exactly `window` scaled units, and the burst tolerance `(limit - 1) * window`.

use crate::clock::Millis;

/// A bucket's shape.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rate {
    pub limit: i64,
    pub window_ms: i64,
}

/// The outcome of one check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Outcome {
    pub allowed: bool,
    /// Requests still allowed right now after this one.
    pub remaining: i64,
    /// When denied: milliseconds until one request would be allowed (exact, rounded up).
    pub retry_after_ms: i64,
    /// Milliseconds until the bucket is full again.
    pub reset_after_ms: i64,
}

impl Rate {
    fn tau(self) -> i64 {
        (self.limit - 1) * self.window_ms
    }

    /// Checks one request at `now` against the stored theoretical arrival time (scaled), and
    /// returns the outcome and the state to store (unchanged when denied).
    pub fn check(self, tat: Option<i64>, now: Millis) -> (Outcome, Option<i64>) {
        let now_s = now * self.limit;
        let tat = tat.map_or(now_s, |t| t.max(now_s));
        if tat - now_s > self.tau() {
            let wait = tat - self.tau() - now_s;
            return (
                Outcome {
                    allowed: false,
                    remaining: 0,
                    retry_after_ms: ceil_div(wait, self.limit),
                    reset_after_ms: ceil_div(tat - now_s, self.limit),
                },
                None,
            );
        }
        let new = tat + self.window_ms;
        (
            Outcome {
                allowed: true,
                remaining: (now_s + self.limit * self.window_ms - new) / self.window_ms,
                retry_after_ms: 0,
                reset_after_ms: ceil_div(new - now_s, self.limit),
            },
            Some(new),
        )
    }

    /// Gives back one request taken by `check` (a lockout attempt that did not fail).
    pub fn refund(self, tat: i64) -> i64 {
        tat - self.window_ms
    }

    /// Whether a stored state no longer matters at `now` (the bucket is full again), so the
    /// entry can be dropped without changing any decision.
    pub fn is_idle(self, tat: i64, now: Millis) -> bool {
        tat <= now * self.limit
    }

    /// Whether the next request at `now` would be denied.
    pub fn exhausted(self, tat: i64, now: Millis) -> bool {
        tat - now * self.limit > self.tau()
    }
}

fn ceil_div(a: i64, b: i64) -> i64 {
    (a + b - 1).div_euclid(b)
}

#[cfg(test)]
mod tests {
    use super::*;

    const T0: Millis = 1_800_000_000_000;

    fn run(rate: Rate, times: &[Millis]) -> Vec<Outcome> {
        let mut tat = None;
        times
            .iter()
            .map(|t| {
                let (o, new) = rate.check(tat, *t);
                if new.is_some() {
                    tat = new;
                }
                o
            })
            .collect()
    }

    #[test]
    fn the_limit_th_request_passes_and_the_next_fails_with_an_exact_retry_after() {
        let r = Rate {
            limit: 10,
            window_ms: 10_000,
        };
        let out = run(r, &[T0; 11]);
        for (i, o) in out[..10].iter().enumerate() {
            assert!(o.allowed, "request {} should pass", i + 1);
            assert_eq!(o.remaining, 9 - i as i64);
        }
        assert!(!out[10].allowed);
        assert_eq!(out[10].retry_after_ms, 1_000);
        assert_eq!(out[10].reset_after_ms, 10_000);
    }

    #[test]
    fn capacity_refills_as_the_window_slides() {
        let r = Rate {
            limit: 5,
            window_ms: 60_000,
        };
        let mut t = vec![T0; 5];
        // One interval (12 s) later exactly one more is allowed; a millisecond earlier, none.
        t.push(T0 + 11_999);
        t.push(T0 + 12_000);
        t.push(T0 + 12_000);
        let out = run(r, &t);
        assert!(out[..5].iter().all(|o| o.allowed));
        assert!(!out[5].allowed);
        assert_eq!(out[5].retry_after_ms, 1);
        assert!(out[6].allowed);
        assert!(!out[7].allowed);
        assert_eq!(out[7].retry_after_ms, 12_000);
        // After a whole window of silence the full burst is back.
        let mut tat = None;
        for tm in &t {
            if let (_, Some(n)) = r.check(tat, *tm) {
                tat = Some(n);
            }
        }
        let after = T0 + 12_000 + 60_000;
        assert!(r.is_idle(tat.unwrap(), after));
    }

    #[test]
    fn uneven_intervals_stay_exact() {
        // 3 per 10 s: an interval is 3333.3 ms; the scaled arithmetic never rounds it.
        let r = Rate {
            limit: 3,
            window_ms: 10_000,
        };
        let out = run(r, &[T0, T0, T0, T0]);
        assert!(!out[3].allowed);
        assert_eq!(out[3].retry_after_ms, 3_334); // 3333.33 rounded up
        let out = run(r, &[T0, T0, T0, T0 + 3_333, T0 + 3_334]);
        assert!(!out[3].allowed);
        assert!(out[4].allowed);
    }

    #[test]
    fn refund_gives_back_exactly_one_request() {
        let r = Rate {
            limit: 2,
            window_ms: 1_000,
        };
        let (_, a) = r.check(None, T0);
        let (_, b) = r.check(a, T0);
        assert!(r.exhausted(b.unwrap(), T0));
        let back = r.refund(b.unwrap());
        assert!(!r.exhausted(back, T0));
        assert!(r.check(Some(back), T0).0.allowed);
    }
}

#[cfg(test)]
#[path = "gcra_props.rs"]
mod props;
