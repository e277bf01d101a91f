//! Rate limits and brute-force lockouts, Fluxer-compatible (contract §3).
//!
//! - Buckets: `limit` per `window` by a key (see `keys`), GCRA (see `gcra`), on a local table or
//!   shared through Redis (see `redis`). A route lists its buckets; pre-auth buckets (keyed by
//!   IP, a path parameter or a body field) run before the session is resolved, the global
//!   per-user bucket and user-keyed buckets after it.
//! - Lockouts: count the upstream's failure answers (e.g. 400/401/403) per key; after
//!   `max_failures` within `find_time` (a sliding window, see `window`), answer 429 for
//!   `ban_time` without contacting the upstream. Each attempt reserves a place before it is
//!   forwarded and gives it back if the upstream did not fail it, so 50 concurrent wrong
//!   attempts let at most `max_failures` through.

pub mod gcra;
pub mod keys;
pub mod local;
pub mod redis;
pub mod stage;
pub mod window;

use crate::clock::{Millis, SharedClock};
use gcra::{Outcome, Rate};
use keys::{KeySpec, KeyValue};
use local::{Entry, LocalTable};
use redis::{RedisLimiter, Reserved};
use sha2::{Digest, Sha256};
use window::FailureLog;

/// The `X-RateLimit-Scope` a bucket reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    User,
    Shared,
    Global,
}

impl Scope {
    pub fn as_str(self) -> &'static str {
        match self {
            Scope::User => "user",
            Scope::Shared => "shared",
            Scope::Global => "global",
        }
    }
}

/// A bucket from the config.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BucketDef {
    pub name: String,
    pub id: u32,
    pub rate: Rate,
    pub key: KeySpec,
    pub scope: Scope,
    /// `X-RateLimit-Bucket`: the first 16 hex digits of SHA-256 of the name.
    pub name_hash: String,
}

/// A lockout from the config.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LockoutDef {
    pub name: String,
    pub id: u32,
    pub key: KeySpec,
    pub statuses: Vec<u16>,
    /// `max_failures` per `find_time`.
    pub rate: Rate,
    pub ban_ms: Millis,
    pub name_hash: String,
}

pub fn name_hash(name: &str) -> String {
    hex::encode(&Sha256::digest(name.as_bytes())[..8])
}

/// A bucket's answer, with the time it was computed at (for `X-RateLimit-Reset`).
#[derive(Debug, Clone, Copy)]
pub struct Checked {
    pub outcome: Outcome,
    pub at_ms: Millis,
}

/// A lockout attempt in flight, to settle once the upstream answered.
#[derive(Debug, Clone)]
pub struct Reservation {
    pub lockout: u32,
    pub key: KeyValue,
    on_redis: bool,
    /// Taken in the local table's shared overflow state (the table was full): settled there.
    in_overflow: bool,
}

/// A lockout's answer.
#[derive(Debug, Clone)]
pub enum Attempt {
    Allowed(Reservation),
    Denied { retry_after_ms: i64, at_ms: Millis },
}

/// The limiter store could not be asked and the configured fallback is to refuse.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Unavailable;

/// Where limiter state lives.
pub enum Backend {
    Local,
    Redis(RedisLimiter),
}

pub struct Limiter {
    pub buckets: Vec<BucketDef>,
    pub lockouts: Vec<LockoutDef>,
    /// The global per-user bucket (Fluxer: 50 per second), if enabled.
    pub global: Option<BucketDef>,
    pub headers_on_success: bool,
    backend: Backend,
    local: LocalTable,
    /// Lockouts' failure logs, bounded like `local`.
    lockout_logs: LocalTable<FailureLog>,
    /// On a Redis error: use the local table (true) or refuse (false).
    buckets_fall_back_local: bool,
    lockouts_fall_back_local: bool,
    clock: SharedClock,
}

/// Limiter settings beyond the definitions.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct LimiterSettings {
    pub max_local_keys: usize,
    pub headers_on_success: bool,
    pub buckets_fall_back_local: bool,
    pub lockouts_fall_back_local: bool,
}

impl Limiter {
    pub fn new(
        buckets: Vec<BucketDef>,
        lockouts: Vec<LockoutDef>,
        global: Option<BucketDef>,
        backend: Backend,
        settings: LimiterSettings,
        clock: SharedClock,
    ) -> Self {
        Limiter {
            buckets,
            lockouts,
            global,
            headers_on_success: settings.headers_on_success,
            backend,
            local: LocalTable::new(settings.max_local_keys),
            lockout_logs: LocalTable::new(settings.max_local_keys),
            buckets_fall_back_local: settings.buckets_fall_back_local,
            lockouts_fall_back_local: settings.lockouts_fall_back_local,
            clock,
        }
    }

    /// A limiter with no buckets (tests, benches).
    pub fn none(clock: SharedClock) -> Self {
        Self::new(
            Vec::new(),
            Vec::new(),
            None,
            Backend::Local,
            LimiterSettings {
                max_local_keys: 1024,
                headers_on_success: false,
                buckets_fall_back_local: true,
                lockouts_fall_back_local: false,
            },
            clock,
        )
    }

    pub fn local_table(&self) -> &LocalTable {
        &self.local
    }

    fn local_check(&self, b: &BucketDef, key: &KeyValue, now: Millis) -> Checked {
        let k = self.local.key(b.id, &[&[key.tag], &key.bytes]);
        let outcome = self.local.with(k, b.id, now, |slot| {
            let (o, new) = b.rate.check(slot.map(|e| e.tat), now);
            if let Some(tat) = new {
                *slot = Some(Entry {
                    tat,
                    ban_until: 0,
                    limit: b.rate.limit as u32,
                });
            }
            o
        });
        Checked {
            outcome,
            at_ms: now,
        }
    }

    /// Takes one request from `b` for `key`.
    pub async fn check(&self, b: &BucketDef, key: &KeyValue) -> Result<Checked, Unavailable> {
        let now = self.clock.now_ms();
        let Backend::Redis(r) = &self.backend else {
            return Ok(self.local_check(b, key, now));
        };
        match r.check(&b.name, b.rate, key).await {
            Ok((outcome, at_ms)) => Ok(Checked { outcome, at_ms }),
            Err(e) if self.buckets_fall_back_local => {
                tracing::warn!(error = %e, bucket = %b.name, "rate limiter: Redis failed; using the local limiter");
                Ok(self.local_check(b, key, now))
            }
            Err(e) => {
                tracing::warn!(error = %e, bucket = %b.name, "rate limiter: Redis failed; refusing");
                Err(Unavailable)
            }
        }
    }

    fn local_lockout_key(&self, l: &LockoutDef, key: &KeyValue) -> u64 {
        // Lockout ids live in their own half of the id space.
        self.local.key(l.id | 1 << 31, &[&[key.tag], &key.bytes])
    }

    /// A reservation on the local table, and whether it went to the overflow state.
    fn local_reserve(&self, l: &LockoutDef, key: &KeyValue, now: Millis) -> (Reserved, bool) {
        let k = self.local_lockout_key(l, key);
        let max = l.rate.limit as usize;
        self.lockout_logs.with_placed(k, l.id, now, |slot| {
            let log = slot.get_or_insert_with(|| FailureLog::new(l.rate.window_ms));
            match log.reserve(now, max) {
                window::Reserve::Allowed => Reserved::Allowed,
                window::Reserve::Denied {
                    retry_after_ms,
                    banned,
                } => Reserved::Denied {
                    retry_after_ms,
                    banned,
                },
            }
        })
    }

    fn local_finish(&self, l: &LockoutDef, r: &Reservation, failed: bool, now: Millis) {
        let settle = |slot: &mut Option<FailureLog>| {
            if let Some(log) = slot.as_mut() {
                log.finish(now, l.rate.limit as usize, l.ban_ms, failed);
            }
        };
        // Settled where it was taken: a key that found no room reserved in the overflow state,
        // even if room has appeared since.
        if r.in_overflow {
            self.lockout_logs.with_overflow(l.id, settle)
        } else {
            let k = self.local_lockout_key(l, &r.key);
            self.lockout_logs.with(k, l.id, now, settle)
        }
    }

    /// Reserves one attempt on lockout `l` for `key`.
    pub async fn attempt(&self, l: &LockoutDef, key: &KeyValue) -> Result<Attempt, Unavailable> {
        let now = self.clock.now_ms();
        let ((reserved, in_overflow), on_redis) = match &self.backend {
            Backend::Local => (self.local_reserve(l, key, now), false),
            Backend::Redis(r) => match r.reserve(&l.name, l.rate, key).await {
                Ok(v) => ((v, false), true),
                Err(e) if self.lockouts_fall_back_local => {
                    tracing::warn!(error = %e, lockout = %l.name, "lockout: Redis failed; using the local counter");
                    (self.local_reserve(l, key, now), false)
                }
                Err(e) => {
                    tracing::warn!(error = %e, lockout = %l.name, "lockout: Redis failed; refusing");
                    return Err(Unavailable);
                }
            },
        };
        Ok(match reserved {
            Reserved::Allowed => Attempt::Allowed(Reservation {
                lockout: l.id,
                key: key.clone(),
                on_redis,
                in_overflow,
            }),
            Reserved::Denied { retry_after_ms, .. } => Attempt::Denied {
                retry_after_ms,
                at_ms: now,
            },
        })
    }

    /// Settles an attempt: `failed` when the upstream answered with one of the lockout's
    /// statuses; otherwise the reserved failure is given back.
    pub async fn settle(&self, r: &Reservation, failed: bool) {
        let Some(l) = self.lockouts.get(r.lockout as usize) else {
            return;
        };
        let now = self.clock.now_ms();
        match (&self.backend, r.on_redis) {
            (Backend::Redis(redis), true) => {
                if let Err(e) = redis
                    .finish(&l.name, l.rate, l.ban_ms, &r.key, failed)
                    .await
                {
                    tracing::warn!(error = %e, lockout = %l.name, "lockout: could not record the attempt in Redis");
                }
            }
            _ => self.local_finish(l, r, failed, now),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::ManualClock;

    fn lockout() -> LockoutDef {
        LockoutDef {
            name: "login".into(),
            id: 0,
            key: KeySpec::Ip,
            statuses: vec![401],
            rate: Rate {
                limit: 3,
                window_ms: 600_000,
            },
            ban_ms: 900_000,
            name_hash: name_hash("login"),
        }
    }

    fn limiter(clock: SharedClock) -> Limiter {
        let mut l = Limiter::none(clock);
        l.lockouts = vec![lockout()];
        l
    }

    fn key(s: &str) -> KeyValue {
        KeyValue {
            tag: b'b',
            bytes: s.as_bytes().to_vec(),
        }
    }

    #[tokio::test]
    async fn three_failures_ban_for_the_ban_time_and_successes_are_refunded() {
        let clock = ManualClock::new(1_800_000_000_000);
        let l = limiter(clock.clone());
        let def = lockout();
        // Successful attempts never count.
        for _ in 0..10 {
            let Attempt::Allowed(r) = l.attempt(&def, &key("a")).await.unwrap() else {
                panic!()
            };
            l.settle(&r, false).await;
        }
        for _ in 0..3 {
            let Attempt::Allowed(r) = l.attempt(&def, &key("a")).await.unwrap() else {
                panic!()
            };
            l.settle(&r, true).await;
        }
        let Attempt::Denied { retry_after_ms, .. } = l.attempt(&def, &key("a")).await.unwrap()
        else {
            panic!("the fourth attempt must be refused")
        };
        assert_eq!(retry_after_ms, 900_000);
        // Another key is untouched; the ban ends after ban_time.
        assert!(matches!(
            l.attempt(&def, &key("b")).await.unwrap(),
            Attempt::Allowed(_)
        ));
        clock.advance_ms(900_000);
        assert!(matches!(
            l.attempt(&def, &key("a")).await.unwrap(),
            Attempt::Allowed(_)
        ));
    }

    #[tokio::test]
    async fn a_reservation_taken_in_the_overflow_state_is_settled_there() {
        // A full table (64 keys, one per shard) sends new keys to the shared overflow state.
        // If room appears before such an attempt is answered, its failure must still be
        // recorded, and its place given back, where the attempt was counted.
        let clock = ManualClock::new(1_800_000_000_000);
        let def = lockout();
        let l = Limiter::new(
            Vec::new(),
            vec![def.clone()],
            None,
            Backend::Local,
            LimiterSettings {
                max_local_keys: 64,
                ..Default::default()
            },
            clock.clone(),
        );
        let mut own = Vec::new();
        let mut in_overflow = None;
        for i in 0..10_000 {
            if let Attempt::Allowed(r) = l.attempt(&def, &key(&format!("k{i}"))).await.unwrap() {
                if r.in_overflow {
                    in_overflow = Some(r);
                    break;
                }
                own.push(r);
            }
        }
        let x = in_overflow.expect("the table fills up");
        for r in &own {
            l.settle(r, false).await;
        }
        clock.advance_ms(1_000);
        l.settle(&x, true).await;
        let o = l
            .lockout_logs
            .overflow_state(def.id)
            .expect("overflow state");
        assert_eq!(
            o.counts(),
            (0, 1),
            "(in flight, failures) in the overflow state"
        );
    }

    #[tokio::test]
    async fn concurrent_attempts_beyond_the_limit_are_refused_before_any_answer() {
        let clock = ManualClock::new(1_800_000_000_000);
        let l = limiter(clock);
        let def = lockout();
        let mut allowed = 0;
        for _ in 0..50 {
            if let Attempt::Allowed(_) = l.attempt(&def, &key("a")).await.unwrap() {
                allowed += 1;
            }
        }
        assert_eq!(allowed, 3);
    }
}
