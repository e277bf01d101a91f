//! The session cache in front of the store (contract §8).
//!
//! - Positive entries live a fixed time from insertion (never extended by reads) and never past
//!   the record's `expires_at`; unknown sids are cached negatively for a short time.
//! - Concurrent misses for one sid make one store read (moka's `try_get_with` coalesces them);
//!   store errors are never cached.
//! - Freshness is judged against the injectable clock, so tests drive it with a manual clock;
//!   moka's own expiry only reclaims memory.
//! - Revocation uses generation counters so a slow read that overlaps a revocation can never
//!   put the revoked session back: every entry remembers the generation at which its load
//!   started, and a revocation stamps the sid's (and user's) stripe with a newer generation.
//!   An entry older than its stripe is stale. Stripes are fixed arrays of atomics, so a cache hit
//!   costs a few atomic loads and no lock.
//! - While invalidations from other instances may be missed (the Redis subscription is down),
//!   no entry is trusted longer than `vouch` after it was read; on reconnect everything is
//!   cleared.
//! - With serve-stale enabled, positive entries read within `stale_grace` can answer when the
//!   store fails; never an entry that was revoked. They wait in a second map (`last_good`), so
//!   the main cache can drop a stale entry and reload it as usual.

use super::record::Session;
use super::store::{SessionStore, StoreError};
use crate::clock::{Millis, SharedClock};
use crate::credential::Sid;
use crate::metrics::Metrics;
use std::hash::{BuildHasher, Hasher};
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::{Duration, Instant};

const STRIPES: usize = 4096;

/// Cache tuning, from `[sessions]`.
#[derive(Debug, Clone, Copy)]
pub struct CacheSettings {
    pub ttl_ms: Millis,
    pub negative_ttl_ms: Millis,
    pub capacity: u64,
    /// Keep positive entries this long past freshness so they can answer while the store is
    /// down (`on_store_error = "serve_stale"`); `None` disables serving stale.
    pub stale_grace_ms: Option<Millis>,
}

/// Trust entries without limit (invalidations are reliable or there is one instance).
const VOUCH_FOREVER: Millis = Millis::MAX;

#[derive(Debug)]
struct Entry {
    session: Option<Arc<Session>>,
    /// Clock time until which the entry may answer.
    fresh_until: Millis,
    /// Clock time when the store read finished.
    loaded_at: Millis,
    /// Generation when the load that produced it started.
    generation: u64,
    /// Stripe of the session's user (positive entries).
    user_stripe: usize,
    /// How long moka keeps it in memory.
    keep: Duration,
}

struct KeepUntil;

impl moka::Expiry<Sid, Arc<Entry>> for KeepUntil {
    fn expire_after_create(&self, _: &Sid, v: &Arc<Entry>, _: Instant) -> Option<Duration> {
        Some(v.keep)
    }
}

/// A user's authorized locations as read from the store.
#[derive(Debug)]
pub struct Locations {
    pub set: std::collections::HashSet<String>,
    fresh_until: Millis,
    generation: u64,
}

/// Sessions by sid, in front of a [`SessionStore`].
pub struct SessionCache {
    cache: moka::future::Cache<Sid, Arc<Entry>>,
    /// Each user's authorized locations (IP authorization), cached like sessions and evicted
    /// with the user's sessions.
    locations: moka::future::Cache<String, Arc<Locations>>,
    /// Last known good positive entries, kept for the stale grace period (serve-stale only).
    /// Separate from `cache` so a stale entry can wait there while `cache` reloads.
    last_good: Option<moka::future::Cache<Sid, Arc<Entry>>>,
    store: Arc<dyn SessionStore>,
    clock: SharedClock,
    metrics: Arc<Metrics>,
    settings: CacheSettings,
    generation: AtomicU64,
    sid_stripes: Box<[AtomicU64]>,
    user_stripes: Box<[AtomicU64]>,
    /// Entries loaded before this generation are stale (a "clear everything").
    cleared_at: AtomicU64,
    /// How long after its read an entry may be trusted (see [`SessionCache::set_vouch`]).
    vouch_ms: AtomicI64,
    hasher: std::hash::RandomState,
}

/// Outcome of a lookup, for metrics.
const HIT: &str = "hit";
const NEGATIVE_HIT: &str = "negative_hit";
const MISS: &str = "miss";
const STALE: &str = "stale";
const STALE_SERVED: &str = "stale_served";

impl SessionCache {
    pub fn new(
        store: Arc<dyn SessionStore>,
        clock: SharedClock,
        metrics: Arc<Metrics>,
        settings: CacheSettings,
    ) -> Self {
        let stripes = || (0..STRIPES).map(|_| AtomicU64::new(0)).collect();
        SessionCache {
            cache: moka::future::Cache::builder()
                .max_capacity(settings.capacity)
                .expire_after(KeepUntil)
                .build(),
            locations: moka::future::Cache::builder()
                .max_capacity(settings.capacity)
                .time_to_live(Duration::from_millis(settings.ttl_ms.max(1) as u64))
                .build(),
            last_good: settings.stale_grace_ms.map(|g| {
                moka::future::Cache::builder()
                    .max_capacity(settings.capacity)
                    .time_to_live(Duration::from_millis(g.max(1) as u64))
                    .build()
            }),
            store,
            clock,
            metrics,
            settings,
            generation: AtomicU64::new(1),
            sid_stripes: stripes(),
            user_stripes: stripes(),
            cleared_at: AtomicU64::new(0),
            vouch_ms: AtomicI64::new(VOUCH_FOREVER),
            hasher: std::hash::RandomState::new(),
        }
    }

    pub fn store(&self) -> &Arc<dyn SessionStore> {
        &self.store
    }

    /// The live session for `sid`, from the cache or the store.
    pub async fn resolve(&self, sid: &Sid) -> Result<Option<Arc<Session>>, StoreError> {
        // A stale entry can only be re-inserted by a load that overlapped a revocation; retrying
        // a couple of times converges, and the last resort is an uncached read.
        for _ in 0..3 {
            let now = self.clock.now_ms();
            if let Some(e) = self.cache.get(sid).await {
                if self.is_fresh(sid, &e, now) {
                    let label = if e.session.is_some() {
                        HIT
                    } else {
                        NEGATIVE_HIT
                    };
                    self.metrics.cache.inc(label, "");
                    return Ok(e.session.clone());
                }
                self.metrics.cache.inc(STALE, "");
                self.cache.invalidate(sid).await;
            }
            self.metrics.cache.inc(MISS, "");
            let e = self
                .cache
                .try_get_with(*sid, self.load(*sid))
                .await
                .map_err(|e| (*e).clone())?;
            if self.is_fresh(sid, &e, self.clock.now_ms()) {
                return Ok(e.session.clone());
            }
        }
        Ok(self.load(*sid).await?.session.clone())
    }

    fn is_fresh(&self, sid: &Sid, e: &Entry, now: Millis) -> bool {
        now < e.fresh_until
            && now
                < e.loaded_at
                    .saturating_add(self.vouch_ms.load(Ordering::Acquire))
            && self.not_revoked(sid, e)
    }

    /// No revocation, user-wide eviction or clear happened since the entry's read started.
    fn not_revoked(&self, sid: &Sid, e: &Entry) -> bool {
        self.sid_stripes[sid_stripe(sid)].load(Ordering::Acquire) <= e.generation
            && (e.session.is_none()
                || self.user_stripes[e.user_stripe].load(Ordering::Acquire) <= e.generation)
            && self.cleared_at.load(Ordering::Acquire) <= e.generation
    }

    async fn load(&self, sid: Sid) -> Result<Arc<Entry>, StoreError> {
        // The generation is read before the store so that any revocation finishing after this
        // point stamps a newer generation than the entry carries.
        let generation = self.generation.load(Ordering::Acquire);
        self.metrics.count_store_read();
        let record = match self.store.get(&sid).await {
            Ok(r) => r,
            Err(e) => {
                self.metrics.store_errors.fetch_add(1, Ordering::Relaxed);
                return Err(e);
            }
        };
        let now = self.clock.now_ms();
        let session = record.and_then(|r| match Session::new(sid, r) {
            Ok(s) => Some(Arc::new(s)),
            Err(e) => {
                tracing::warn!(sid = %sid, error = %e, "stored session is unusable; treating it as absent");
                None
            }
        });
        let fresh_until = match &session {
            Some(s) => {
                let ttl_end = now.saturating_add(self.settings.ttl_ms);
                match s.record.expires_at {
                    Some(exp) => ttl_end.min(exp.saturating_mul(1000)),
                    None => ttl_end,
                }
            }
            None => now.saturating_add(self.settings.negative_ttl_ms),
        };
        let user_stripe = session
            .as_ref()
            .map(|s| self.user_stripe(&s.record.user_id))
            .unwrap_or(0);
        let keep = Duration::from_millis(fresh_until.saturating_sub(now).max(1) as u64);
        let entry = Arc::new(Entry {
            session,
            fresh_until,
            loaded_at: now,
            generation,
            user_stripe,
            keep,
        });
        if let (Some(last_good), Some(_)) = (&self.last_good, &entry.session) {
            last_good.insert(sid, entry.clone()).await;
        }
        Ok(entry)
    }

    fn next_generation(&self) -> u64 {
        self.generation.fetch_add(1, Ordering::AcqRel) + 1
    }

    fn user_stripe(&self, user_id: &str) -> usize {
        let mut h = self.hasher.build_hasher();
        h.write(user_id.as_bytes());
        (h.finish() as usize) % STRIPES
    }

    /// A user's authorized locations, from the cache or the store.
    pub async fn locations(&self, user_id: &str) -> Result<Arc<Locations>, StoreError> {
        let stripe = self.user_stripe(user_id);
        let fresh = |l: &Locations, now: Millis| {
            now < l.fresh_until
                && self.user_stripes[stripe].load(Ordering::Acquire) <= l.generation
                && self.cleared_at.load(Ordering::Acquire) <= l.generation
        };
        for _ in 0..3 {
            if let Some(l) = self.locations.get(user_id).await {
                if fresh(&l, self.clock.now_ms()) {
                    return Ok(l);
                }
                self.locations.invalidate(user_id).await;
            }
            let load = async {
                let generation = self.generation.load(Ordering::Acquire);
                self.metrics.count_store_read();
                let set = self.store.locations(user_id).await?.into_iter().collect();
                Ok::<_, StoreError>(Arc::new(Locations {
                    set,
                    fresh_until: self.clock.now_ms().saturating_add(self.settings.ttl_ms),
                    generation,
                }))
            };
            let l = self
                .locations
                .try_get_with(user_id.to_string(), load)
                .await
                .map_err(|e| (*e).clone())?;
            if fresh(&l, self.clock.now_ms()) {
                return Ok(l);
            }
        }
        let set = self.store.locations(user_id).await?.into_iter().collect();
        Ok(Arc::new(Locations {
            set,
            fresh_until: 0,
            generation: 0,
        }))
    }

    /// Authorizes a location for a user in the store and forgets what is cached about them.
    pub async fn add_location(&self, user_id: &str, location: &str) -> Result<(), StoreError> {
        self.store.add_location(user_id, location).await?;
        self.evict_user(user_id);
        self.locations.invalidate(user_id).await;
        Ok(())
    }

    /// Limits how long after its read any entry is trusted: `Some(ms)` while invalidations may
    /// be missed, `None` once they are reliable again.
    pub fn set_vouch(&self, ms: Option<Millis>) {
        self.vouch_ms
            .store(ms.unwrap_or(VOUCH_FOREVER), Ordering::Release);
    }

    /// A positive entry read within the stale grace period, for answering while the store is
    /// down. Never a revoked session, never when serve-stale is off.
    pub async fn stale(&self, sid: &Sid) -> Option<Arc<Session>> {
        let grace = self.settings.stale_grace_ms?;
        let e = self.last_good.as_ref()?.get(sid).await?;
        let session = e.session.clone()?;
        let now = self.clock.now_ms();
        let fresh_enough = now < e.loaded_at.saturating_add(grace);
        let not_expired = !session.record.is_expired(now.div_euclid(1000));
        (fresh_enough && not_expired && self.not_revoked(sid, &e)).then(|| {
            self.metrics.cache.inc(STALE_SERVED, "");
            session
        })
    }

    /// Forgets `sid` everywhere in this process. Call after the store no longer has it.
    pub async fn evict(&self, sid: &Sid) {
        let g = self.next_generation();
        self.sid_stripes[sid_stripe(sid)].fetch_max(g, Ordering::AcqRel);
        self.cache.invalidate(sid).await;
        if let Some(last_good) = &self.last_good {
            last_good.invalidate(sid).await;
        }
    }

    /// Forgets every cached session of `user_id`.
    pub fn evict_user(&self, user_id: &str) {
        let g = self.next_generation();
        self.user_stripes[self.user_stripe(user_id)].fetch_max(g, Ordering::AcqRel);
    }

    /// Forgets everything (e.g. when invalidations may have been missed).
    pub fn clear(&self) {
        let g = self.next_generation();
        self.cleared_at.fetch_max(g, Ordering::AcqRel);
        self.cache.invalidate_all();
        if let Some(last_good) = &self.last_good {
            last_good.invalidate_all();
        }
    }

    /// Revokes one session in the store and evicts it here.
    pub async fn revoke(&self, sid: &Sid) -> Result<Option<String>, StoreError> {
        let user = self.store.revoke(sid).await?;
        self.evict(sid).await;
        if user.is_some() {
            self.metrics.revocations.fetch_add(1, Ordering::Relaxed);
        }
        Ok(user)
    }

    /// Revokes every session of a user in the store and evicts them here.
    pub async fn revoke_user(&self, user_id: &str) -> Result<Vec<Sid>, StoreError> {
        let sids = self.store.revoke_user(user_id).await?;
        self.evict_user(user_id);
        for sid in &sids {
            self.evict(sid).await;
        }
        self.metrics
            .revocations
            .fetch_add(sids.len() as u64, Ordering::Relaxed);
        Ok(sids)
    }

    /// Entries currently held (approximate; for tests and metrics).
    pub async fn entry_count(&self) -> u64 {
        self.cache.run_pending_tasks().await;
        self.cache.entry_count()
    }
}

fn sid_stripe(sid: &Sid) -> usize {
    // Sids are SHA-256 outputs, already uniform.
    u16::from_le_bytes([sid.0[0], sid.0[1]]) as usize % STRIPES
}

#[cfg(test)]
#[path = "cache_tests.rs"]
mod tests;
