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
mod local_ops;
pub mod overflow;
pub mod redis;
pub mod stage;
pub mod window;

use crate::clock::{Millis, SharedClock};
use gcra::{Outcome, Rate};
use keys::{KeySpec, KeyValue};
use local::LocalTable;
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
    /// Taken in the local overflow sketch (the table was full): the slots that took a place,
    /// where it is settled.
    overflow: Option<u8>,
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

    /// Takes one request from `b` for `key`.
    pub async fn check(&self, b: &BucketDef, key: &KeyValue) -> Result<Checked, Unavailable> {
        let now = self.clock.now_ms();
        let Backend::Redis(r) = &self.backend else {
            return Ok(self.local_check(b, key, now));
        };
        // Boxed, here and below: a Redis round trip's future is large, and inline it would be
        // part of (and copied with) every request's future, on the local limiter too.
        match Box::pin(r.check(&b.name, b.rate, key)).await {
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

    /// Reserves one attempt on lockout `l` for `key`.
    pub async fn attempt(&self, l: &LockoutDef, key: &KeyValue) -> Result<Attempt, Unavailable> {
        let now = self.clock.now_ms();
        let ((reserved, overflow), on_redis) = match &self.backend {
            Backend::Local => (self.local_reserve(l, key, now), false),
            Backend::Redis(r) => match Box::pin(r.reserve(&l.name, l.rate, key)).await {
                Ok(v) => ((v, None), true),
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
                overflow,
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
#[path = "limiter_tests.rs"]
mod tests;
