//! Property tests (issue 18 item 2): the Redis limiter and the local one agree. The same random
//! sequences of bucket checks and lockout steps run against a real redis-server (the Lua
//! scripts of `policy/ratelimit/redis.rs`) and against the local arithmetic (`gcra.rs`,
//! `window.rs`), and every answer must be the same. Buckets are compared exactly: the script
//! returns Redis's own clock, which the local check is given. Lockout scripts do not return
//! their clock, so lockouts run with windows and bans far longer than a test case, where the
//! time of a step cannot change a decision; only `Retry-After` may differ, by the milliseconds
//! the case took.

use crate::common::redis::RedisServer;
use fluxgate::policy::ratelimit::gcra::Rate;
use fluxgate::policy::ratelimit::keys::KeyValue;
use fluxgate::policy::ratelimit::redis::{RedisLimiter, Reserved};
use fluxgate::policy::ratelimit::window::{FailureLog, Reserve};
use fluxgate::redis_client::{Connections, RedisSettings};
use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

fn limiter(redis: &RedisServer, prefix: &str) -> RedisLimiter {
    let conns = Connections::new(RedisSettings {
        urls: vec![redis.url()],
        cluster: false,
        username: None,
        password: None,
        db: 0,
        key_prefix: prefix.into(),
        command_timeout: Duration::from_secs(2),
        connect_timeout: Duration::from_secs(2),
        tls_ca_pem: None,
    })
    .expect("redis settings");
    RedisLimiter::new(Arc::new(conns))
}

fn key(i: u8) -> KeyValue {
    KeyValue {
        tag: b'u',
        bytes: vec![b'k', i],
    }
}

/// One bucket step: which of three keys, and how long to wait before it (mostly none, so
/// buckets fill; sometimes a few ms, so they refill part way within the short windows).
fn bucket_steps() -> impl Strategy<Value = Vec<(u8, u64)>> {
    prop::collection::vec((0u8..3, prop_oneof![8 => Just(0u64), 2 => 1u64..6]), 1..60)
}

#[test]
fn redis_and_local_buckets_agree_on_every_decision() {
    if !crate::common::redis::available() {
        return;
    }
    let redis = RedisServer::start();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let mut runner = TestRunner::new(Config {
        cases: 96,
        ..Config::default()
    });
    let case = std::cell::Cell::new(0u32);
    runner
        .run(
            &((1i64..=12, 5i64..=400), bucket_steps()),
            |((limit, window_ms), steps)| {
                case.set(case.get() + 1);
                let rate = Rate { limit, window_ms };
                let redis_limiter = limiter(&redis, &format!("agree{}:", case.get()));
                let mut local: HashMap<u8, Option<i64>> = HashMap::new();
                rt.block_on(async {
                    for (i, (k, wait_ms)) in steps.iter().enumerate() {
                        if *wait_ms > 0 {
                            tokio::time::sleep(Duration::from_millis(*wait_ms)).await;
                        }
                        let (remote, now) = redis_limiter
                            .check("b", rate, &key(*k))
                            .await
                            .expect("redis check");
                        let tat = local.entry(*k).or_default();
                        let (expected, new) = rate.check(*tat, now);
                        if new.is_some() {
                            *tat = new;
                        }
                        prop_assert_eq!(
                            remote,
                            expected,
                            "step {} (key {}) of {:?} at redis time {}",
                            i,
                            k,
                            rate,
                            now
                        );
                    }
                    Ok(())
                })
            },
        )
        .unwrap();
}

/// One lockout step: which of two keys, and whether the attempt fails.
#[derive(Debug, Clone, Copy)]
struct Attempt {
    key: u8,
    failed: bool,
    /// Settled at once, or left in flight until the end of the case.
    settle: bool,
}

fn attempts() -> impl Strategy<Value = Vec<Attempt>> {
    prop::collection::vec(
        (
            0u8..2,
            any::<bool>(),
            prop_oneof![4 => Just(true), 1 => Just(false)],
        )
            .prop_map(|(key, failed, settle)| Attempt {
                key,
                failed,
                settle,
            }),
        1..40,
    )
}

#[test]
fn redis_and_local_lockouts_agree_on_every_decision() {
    if !crate::common::redis::available() {
        return;
    }
    let redis = RedisServer::start();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let mut runner = TestRunner::new(Config {
        cases: 96,
        ..Config::default()
    });
    // An hour's window and ban: no step of a case can age out of either.
    const WINDOW_MS: i64 = 3_600_000;
    const BAN_MS: i64 = 7_200_000;
    let case = std::cell::Cell::new(0u32);
    runner
        .run(&(1usize..=10, attempts()), |(max, steps)| {
            case.set(case.get() + 1);
            let rate = Rate {
                limit: max as i64,
                window_ms: WINDOW_MS,
            };
            let redis_limiter = limiter(&redis, &format!("lockagree{}:", case.get()));
            let started = fluxgate::clock::monotonic_now();
            // The local clock stands still: within the window and the ban, time cannot matter.
            let now = 1_800_000_000_000;
            let mut local: HashMap<u8, FailureLog> = HashMap::new();
            rt.block_on(async {
                for (i, a) in steps.iter().enumerate() {
                    let log = local
                        .entry(a.key)
                        .or_insert_with(|| FailureLog::new(WINDOW_MS));
                    let expected = log.reserve(now, max);
                    let remote = redis_limiter
                        .reserve("l", rate, &key(a.key))
                        .await
                        .expect("redis reserve");
                    let slack = started.elapsed().as_millis() as i64 + 1;
                    match (expected, remote) {
                        (Reserve::Allowed, Reserved::Allowed) => {}
                        (
                            Reserve::Denied {
                                retry_after_ms: l,
                                banned: lb,
                            },
                            Reserved::Denied {
                                retry_after_ms: r,
                                banned: rb,
                            },
                        ) => {
                            prop_assert_eq!(lb, rb, "step {}: banned", i);
                            prop_assert!(
                                (l - r).abs() <= slack,
                                "step {}: retry after {} locally, {} on redis",
                                i,
                                l,
                                r
                            );
                        }
                        (l, r) => {
                            prop_assert!(
                                false,
                                "step {} ({:?}, max {}): local {:?}, redis {:?}",
                                i,
                                a,
                                max,
                                l,
                                r
                            );
                        }
                    }
                    if expected == Reserve::Allowed && a.settle {
                        let banned_here = log.finish(now, max, BAN_MS, a.failed);
                        redis_limiter
                            .finish("l", rate, BAN_MS, &key(a.key), a.failed)
                            .await
                            .expect("redis finish");
                        // The next reservation shows whether Redis banned too.
                        if banned_here {
                            let r = redis_limiter
                                .reserve("l", rate, &key(a.key))
                                .await
                                .expect("redis reserve");
                            prop_assert!(
                                matches!(r, Reserved::Denied { banned: true, .. }),
                                "step {}: banned locally, redis answered {:?}",
                                i,
                                r
                            );
                            prop_assert!(log.banned(now));
                        }
                    }
                }
                Ok(())
            })
        })
        .unwrap();
}
