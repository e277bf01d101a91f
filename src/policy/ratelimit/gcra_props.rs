//! Property tests (issue 18): the bucket against an exact simulation of what it promises,
//! "`limit` requests at once, one more every `window / limit`" (a token bucket counted in
//! integer units: one request costs `window` units, the bucket refills `limit` units per ms).

use super::{Rate, ceil_div};
use crate::clock::Millis;
use proptest::prelude::*;

const T0: Millis = 1_800_000_000_000;

/// The exact token bucket: full at first, `level` in units of 1/window of a request.
struct Bucket {
    level: i64,
    at: Millis,
}

impl Bucket {
    fn take(&mut self, r: Rate, now: Millis) -> bool {
        let cap = r.limit * r.window_ms;
        self.level = (self.level + (now - self.at) * r.limit).min(cap);
        self.at = now;
        if self.level >= r.window_ms {
            self.level -= r.window_ms;
            true
        } else {
            false
        }
    }
}

fn rate() -> impl Strategy<Value = Rate> {
    (1i64..=50, 1i64..=120_000).prop_map(|(limit, window_ms)| Rate { limit, window_ms })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1024))]

    /// Every decision equals the simulation's; so no interval of `d` ms ever admits more than
    /// `limit + d * limit / window` requests (the burst plus what refilled meanwhile), which
    /// the test checks directly as well.
    #[test]
    fn the_bucket_admits_exactly_what_a_token_bucket_would(
        r in rate(),
        gaps in prop::collection::vec(0i64..5_000, 1..200),
    ) {
        let mut tat = None;
        let mut sim = Bucket { level: r.limit * r.window_ms, at: T0 };
        let mut now = T0;
        let mut admitted: Vec<Millis> = Vec::new();
        for g in gaps {
            now += g;
            let (o, new) = r.check(tat, now);
            if new.is_some() {
                tat = new;
            }
            prop_assert_eq!(o.allowed, sim.take(r, now), "at +{}ms", now - T0);
            if o.allowed {
                admitted.push(now);
                for (i, start) in admitted.iter().enumerate() {
                    let n = (admitted.len() - i) as i64;
                    let bound = r.limit + (now - start) * r.limit / r.window_ms;
                    prop_assert!(n <= bound, "{} admitted in {} ms", n, now - start);
                }
            }
        }
    }

    /// `Retry-After` is exact: denied one ms before it, allowed at it.
    #[test]
    fn retry_after_is_exact(r in rate(), burst in 1usize..120, gap in 0i64..1_000) {
        let mut tat = None;
        let mut now = T0;
        for _ in 0..burst {
            now += gap;
            let (o, new) = r.check(tat, now);
            if new.is_some() {
                tat = new;
            }
            if !o.allowed {
                prop_assert!(o.retry_after_ms >= 1);
                prop_assert!(!r.check(tat, now + o.retry_after_ms - 1).0.allowed);
                prop_assert!(r.check(tat, now + o.retry_after_ms).0.allowed);
                prop_assert_eq!(o.reset_after_ms, ceil_div(tat.unwrap_or(0) - now * r.limit, r.limit));
            }
        }
    }
}
