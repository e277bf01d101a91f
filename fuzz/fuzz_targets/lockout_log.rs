//! The lockout's failure log (the state the Redis lockout script keeps, mirrored locally)
//! driven by random attempts: reserve, then settle as failed or not, at random times.
//!
//! Invariant, against an exact record of every admitted attempt: when the ban lasts at least
//! the window, no window of `find_time` admits more than `max_failures` attempts that were not
//! settled as successes; and a banned key admits nothing until the ban ends.
#![no_main]

use arbitrary::Arbitrary;
use fluxgate::policy::ratelimit::window::{FailureLog, MAX_FAILURES, Reserve};
use libfuzzer_sys::fuzz_target;
use std::collections::VecDeque;

#[derive(Arbitrary, Debug)]
enum Op {
    /// Advance the clock by this many tenths of a second, then try to reserve.
    Reserve(u8),
    /// Advance, then settle the oldest attempt in flight.
    Finish(u8, bool),
}

#[derive(Arbitrary, Debug)]
struct Input {
    max: u8,
    window_s: u8,
    extra_ban_s: u8,
    ops: Vec<Op>,
}

fuzz_target!(|input: Input| {
    let max = (input.max as usize % MAX_FAILURES) + 1;
    let window = (input.window_s as i64 % 60 + 1) * 1000;
    let ban = window + input.extra_ban_s as i64 * 1000;
    let mut log = FailureLog::new(window);
    let mut now: i64 = 1_700_000_000_000;
    // Times of admitted attempts not settled as successes; those still in flight.
    let mut counted: Vec<i64> = Vec::new();
    let mut in_flight: VecDeque<usize> = VecDeque::new();
    let mut banned_until = 0;
    for op in input.ops.iter().take(64) {
        match *op {
            Op::Reserve(dt) => {
                now += dt as i64 * 100;
                if let Reserve::Allowed = log.reserve(now, max) {
                    assert!(now >= banned_until, "admitted during a ban");
                    in_flight.push_back(counted.len());
                    counted.push(now);
                    let in_window = counted.iter().filter(|t| **t > now - window).count();
                    assert!(
                        in_window <= max,
                        "{in_window} attempts in one window, max {max}"
                    );
                }
            }
            Op::Finish(dt, failed) => {
                now += dt as i64 * 100;
                let Some(i) = in_flight.pop_front() else {
                    continue;
                };
                if !failed {
                    counted[i] = i64::MIN / 2;
                }
                if log.finish(now, max, ban, failed) {
                    banned_until = now + ban;
                }
            }
        }
    }
});
