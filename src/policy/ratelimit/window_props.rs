//! Property tests (issue 18): lockout counting against an exact record of every attempt.
//! Attempts are reserved, then settled as failed or not, at random times; the log must never
//! admit more than `max` unsettled-or-failed attempts within `find_time` (with a ban at least
//! as long as the window), never admit during a ban, and ban exactly when the `max`-th failure
//! within the window is settled.

use super::{FailureLog, MAX_FAILURES, Reserve};
use crate::clock::Millis;
use proptest::prelude::*;
use std::collections::VecDeque;

#[derive(Debug, Clone)]
enum Op {
    Reserve(Millis),
    Finish(Millis, bool),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        (0i64..3_000).prop_map(Op::Reserve),
        (0i64..3_000, any::<bool>()).prop_map(|(d, f)| Op::Finish(d, f)),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1024))]

    #[test]
    fn lockout_admits_at_most_max_attempts_per_window_and_bans_on_the_max_th_failure(
        max in 1usize..=MAX_FAILURES,
        window_s in 1i64..=30,
        extra_ban_s in 0i64..30,
        ops in prop::collection::vec(op(), 1..120),
    ) {
        let window = window_s * 1000;
        let ban = window + extra_ban_s * 1000;
        let mut log = FailureLog::new(window);
        let mut now: Millis = 1_700_000_000_000;
        // The reference: when each counted attempt was admitted, which are in flight, when
        // each failure was settled, and the ban.
        let mut counted: Vec<Millis> = Vec::new();
        let mut in_flight: VecDeque<usize> = VecDeque::new();
        let mut failures: Vec<Millis> = Vec::new();
        let mut banned_until = 0;
        for op in ops {
            match op {
                Op::Reserve(d) => {
                    now += d;
                    let live_failures = failures.iter().filter(|t| **t + window > now).count();
                    let expect = now >= banned_until && live_failures + in_flight.len() < max;
                    let got = log.reserve(now, max);
                    prop_assert_eq!(got == Reserve::Allowed, expect, "at +{}", now);
                    if let Reserve::Denied { retry_after_ms, banned } = got {
                        prop_assert!(retry_after_ms >= 1);
                        prop_assert_eq!(banned, now < banned_until);
                    } else {
                        in_flight.push_back(counted.len());
                        counted.push(now);
                        let n = counted.iter().filter(|t| **t + window > now).count();
                        prop_assert!(n <= max, "{} attempts in one window, max {}", n, max);
                    }
                }
                Op::Finish(d, failed) => {
                    now += d;
                    let Some(i) = in_flight.pop_front() else { continue };
                    if !failed {
                        counted[i] = Millis::MIN / 2;
                    }
                    let banned = log.finish(now, max, ban, failed);
                    if failed {
                        failures.push(now);
                    }
                    let live = failures.iter().filter(|t| **t + window > now).count();
                    prop_assert_eq!(banned, failed && live >= max);
                    if banned {
                        banned_until = now + ban;
                        // The ban replaces the count and forgets attempts in flight.
                        failures.clear();
                        in_flight.clear();
                    }
                    let (pending, held) = log.counts();
                    prop_assert_eq!((pending, held), (in_flight.len(), live.min(max) * usize::from(!banned)));
                }
            }
        }
    }
}
