//! The session cache in front of the store (contract §8).
//!
//! - Positive entries live a fixed time from insertion (never extended by reads) and never past
//!   the record's `expires_at`; unknown sids are cached negatively for a short time.
//! - Concurrent misses for one sid make one store read (a shared in-flight load, whose result,
//!   success or error, every waiter receives); store errors are never cached.
//! - Freshness is judged against the injectable clock, so tests drive it with a manual clock;
//!   the map itself is bounded by entry count and evicts by S3-FIFO.
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
//! - With a backend resolver ([`SessionCache::with_backend`]), a token the store does not know
//!   is asked of the backend (its own API validates it) under the same rules: one call per
//!   token under concurrency, positive answers for `ttl` and never past the token's `exp`,
//!   "no session" negatively cached, and a failing backend is a store error (never cached,
//!   the request fails closed).

use super::backend::BackendResolver;
use super::entry::Entry;
use super::record::{CacheMeta, RecordError, Session, SessionRecord};
use super::redis::shared::SharedAnswers;
use super::store::{SessionStore, StoreError};
use super::tunnels::Tunnels;
use crate::clock::{Millis, SharedClock};
use crate::credential::{Kind, Sid};
use crate::metrics::Metrics;
use futures_util::FutureExt;
use futures_util::future::{BoxFuture, Shared};
use std::collections::HashMap;
use std::hash::{BuildHasher, Hasher};
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

pub(super) const STRIPES: usize = 4096;

/// Cache tuning, from `[sessions]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
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

type Flight = Shared<BoxFuture<'static, Result<Entry, StoreError>>>;

/// A user's authorized locations as read from the store.
#[derive(Debug)]
pub struct Locations {
    pub set: std::collections::HashSet<String>,
    fresh_until: Millis,
    generation: u64,
}

/// Sessions by sid, in front of a [`SessionStore`].
///
/// The map is quick_cache (S3-FIFO, bounded by entry count) keyed by the sid's 32 bytes, each
/// value a compact `Entry` (`session::entry`) stored inline (no allocation per entry). Chosen over moka, whose
/// per-entry bookkeeping alone measured about 380 bytes here: with it a million cached sessions
/// could not fit even a 300 MB budget.
pub struct SessionCache {
    cache: quick_cache::sync::Cache<Key, Entry>,
    /// Loads in progress, so concurrent misses for one sid share one store read (and its error).
    inflight: Mutex<HashMap<Sid, Flight>>,
    /// Each user's authorized locations (IP authorization), evicted with the user's sessions.
    locations: quick_cache::sync::Cache<String, Arc<Locations>>,
    /// Last known good positive entries, kept for the stale grace period (serve-stale only).
    /// Separate from `cache` so a stale entry can wait here while `cache` reloads.
    last_good: Option<quick_cache::sync::Cache<Key, Entry>>,
    pub(super) store: Arc<dyn SessionStore>,
    /// Asked about tokens the store does not know (`[sessions.backend]`).
    backend: Option<Arc<BackendResolver>>,
    /// Where positive backend answers are shared with other instances (`share`).
    shared: Option<SharedAnswers>,
    clock: SharedClock,
    pub(super) metrics: Arc<Metrics>,
    settings: CacheSettings,
    generation: AtomicU64,
    sid_stripes: Box<[AtomicU64]>,
    user_stripes: Box<[AtomicU64]>,
    /// Entries loaded before this generation are stale (a "clear everything").
    cleared_at: AtomicU64,
    /// How long after its read an entry may be trusted (see [`SessionCache::set_vouch`]).
    vouch_ms: AtomicI64,
    hasher: std::hash::RandomState,
    /// WebSocket tunnels by session and user, closed on revocation.
    tunnels: Arc<Tunnels>,
}

/// The cache key: the whole sid, compared whole, but hashed (by the cache's seeded hasher) from
/// its first 8 bytes only: a sid is a SHA-256 output, and hashing 8 bytes is cheaper on every
/// hit than hashing 32.
#[derive(Clone, Copy, PartialEq, Eq)]
struct Key(Sid);

impl std::hash::Hash for Key {
    fn hash<H: Hasher>(&self, h: &mut H) {
        h.write_u64(u64::from_le_bytes(
            self.0.0[..8].try_into().expect("a sid has 32 bytes"),
        ));
    }
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
        let capacity = settings.capacity.max(1) as usize;
        SessionCache {
            cache: quick_cache::sync::Cache::new(capacity),
            inflight: Mutex::new(HashMap::new()),
            locations: quick_cache::sync::Cache::new(capacity.min(1 << 20)),
            last_good: settings
                .stale_grace_ms
                .map(|_| quick_cache::sync::Cache::new(capacity)),
            store,
            backend: None,
            shared: None,
            clock,
            metrics,
            settings,
            generation: AtomicU64::new(1),
            sid_stripes: stripes(),
            user_stripes: stripes(),
            cleared_at: AtomicU64::new(0),
            vouch_ms: AtomicI64::new(VOUCH_FOREVER),
            hasher: std::hash::RandomState::new(),
            tunnels: Arc::default(),
        }
    }

    pub fn store(&self) -> &Arc<dyn SessionStore> {
        &self.store
    }

    /// The open WebSocket tunnels, which every eviction closes.
    pub fn tunnels(&self) -> &Arc<Tunnels> {
        &self.tunnels
    }

    /// Asks `backend` about tokens the store does not know.
    pub fn with_backend(mut self, backend: Option<Arc<BackendResolver>>) -> Self {
        self.backend = backend;
        self
    }

    /// Shares positive backend answers through Redis (and reads them before asking).
    pub fn with_shared(mut self, shared: Option<SharedAnswers>) -> Self {
        self.shared = shared;
        self
    }

    /// The live session for `sid`, from the cache or the store.
    pub async fn resolve(self: &Arc<Self>, sid: &Sid) -> Result<Option<Session>, StoreError> {
        self.resolve_with(sid, None).await
    }

    /// Where a token is looked up, for traces: the store, then the backend when configured.
    pub fn source(&self) -> &'static str {
        if self.backend.is_some() {
            "store+backend"
        } else {
            "store"
        }
    }

    /// The live session a presented token of `kind` stands for: from the cache, the store, or
    /// (when configured) the backend.
    pub async fn resolve_token(
        self: &Arc<Self>,
        kind: Kind,
        token: &str,
    ) -> Result<Option<Session>, StoreError> {
        let sid = Sid::of(token);
        let ask = self
            .backend
            .as_ref()
            .map(|_| (kind, Arc::<str>::from(token)));
        self.resolve_with(&sid, ask).await
    }

    async fn resolve_with(
        self: &Arc<Self>,
        sid: &Sid,
        token: Option<(Kind, Arc<str>)>,
    ) -> Result<Option<Session>, StoreError> {
        // A stale entry can only be re-inserted by a load that overlapped a revocation; retrying
        // a couple of times converges, and the last resort is an uncached read.
        for _ in 0..3 {
            let now = self.clock.now_ms();
            if let Some(entry) = self.cache.get(&Key(*sid)) {
                if self.is_fresh(sid, &entry, now) {
                    let label = if entry.is_absent() { NEGATIVE_HIT } else { HIT };
                    self.metrics.cache.inc(label, "");
                    return Ok(entry.session(*sid));
                }
                self.metrics.cache.inc(STALE, "");
            }
            self.metrics.cache.inc(MISS, "");
            let entry = self.load_shared(*sid, token.clone()).await?;
            if self.is_fresh(sid, &entry, self.clock.now_ms()) {
                return Ok(entry.session(*sid));
            }
        }
        Ok(self.load(*sid, token).await?.session(*sid))
    }

    /// Joins the load of `sid` in progress, or starts one (which inserts into the cache).
    async fn load_shared(
        self: &Arc<Self>,
        sid: Sid,
        token: Option<(Kind, Arc<str>)>,
    ) -> Result<Entry, StoreError> {
        let flight = {
            let mut inflight = self.inflight.lock().unwrap_or_else(|p| p.into_inner());
            inflight
                .entry(sid)
                .or_insert_with(|| {
                    let this = self.clone();
                    async move {
                        let r = this.load(sid, token).await;
                        if let Ok(entry) = &r {
                            this.cache.insert(Key(sid), entry.clone());
                        }
                        this.inflight
                            .lock()
                            .unwrap_or_else(|p| p.into_inner())
                            .remove(&sid);
                        r
                    }
                    .boxed()
                    .shared()
                })
                .clone()
        };
        flight.await
    }

    fn is_fresh(&self, sid: &Sid, entry: &Entry, now: Millis) -> bool {
        let m = entry.meta();
        now < m.fresh_until
            && now
                < m.loaded_at
                    .saturating_add(self.vouch_ms.load(Ordering::Acquire))
            && self.not_revoked(sid, &m, entry.is_absent())
    }

    /// No revocation, user-wide eviction or clear happened since the entry's read started.
    /// Whether `s`, as resolved earlier, has not been revoked or evicted since.
    pub fn is_current(&self, s: &Session) -> bool {
        self.not_revoked(&s.sid, &s.meta, false)
    }

    /// `absent`: a negative entry, which no user-wide eviction concerns.
    fn not_revoked(&self, sid: &Sid, m: &CacheMeta, absent: bool) -> bool {
        self.sid_stripes[sid_stripe(sid)].load(Ordering::Acquire) <= m.generation
            && (absent
                || self.user_stripes[m.user_stripe as usize].load(Ordering::Acquire)
                    <= m.generation)
            && self.cleared_at.load(Ordering::Acquire) <= m.generation
    }

    async fn load(&self, sid: Sid, token: Option<(Kind, Arc<str>)>) -> Result<Entry, StoreError> {
        // The generation is read before the store so that any revocation finishing after this
        // point stamps a newer generation than the entry carries.
        let generation = self.generation.load(Ordering::Acquire);
        self.metrics.count_store_read();
        let started = crate::clock::monotonic_now();
        let read = self.store.get(&sid).await;
        let result = match &read {
            Ok(Some(_)) => "found",
            Ok(None) => "absent",
            Err(_) => "error",
        };
        self.metrics
            .store_lookup
            .observe(result, "", started.elapsed(), None);
        let mut record = match read {
            Ok(r) => r,
            Err(e) => {
                self.metrics.store_errors.fetch_add(1, Ordering::Relaxed);
                return Err(e);
            }
        };
        // How long a shared answer has left (a reader never outlives the writer's bound).
        let mut shared_left = None;
        if record.is_none()
            && let (Some(backend), Some((kind, token))) = (&self.backend, token)
        {
            // Boxed: the backend's HTTP exchange is a large future, and inline it would be
            // part of (and copied with) every request's future, hits included.
            (record, shared_left) =
                Box::pin(self.backend_answer(backend, sid, kind, &token, generation)).await?;
        }
        let now = self.clock.now_ms();
        let session = record.and_then(|r| match Session::new(sid, r) {
            Ok(s) => Some(s),
            Err(e) => {
                tracing::warn!(sid = %sid, error = %e, "stored session is unusable; treating it as absent");
                None
            }
        });
        Ok(match session {
            Some(s) => self.found(s, generation, now, shared_left),
            None => Entry::absent(CacheMeta {
                fresh_until: now.saturating_add(self.settings.negative_ttl_ms),
                loaded_at: now,
                generation,
                user_stripe: 0,
            }),
        })
    }

    /// A session read at `generation`, as a cache entry fresh for the TTL (or `cap`, what a
    /// shared answer has left, when shorter; never past its expiry), and remembered as last
    /// good.
    fn found(&self, s: Session, generation: u64, now: Millis, cap: Option<Millis>) -> Entry {
        let ttl = cap.map_or(self.settings.ttl_ms, |l| l.min(self.settings.ttl_ms));
        let ttl_end = now.saturating_add(ttl);
        let meta = CacheMeta {
            fresh_until: match s.expires_at {
                Some(exp) => ttl_end.min(exp.saturating_mul(1000)),
                None => ttl_end,
            },
            loaded_at: now,
            generation,
            user_stripe: self.user_stripe(s.user_id()) as u32,
        };
        let sid = s.sid;
        let entry = Entry::found(s, meta);
        if let Some(last_good) = &self.last_good {
            last_good.insert(Key(sid), entry.clone());
        }
        entry
    }

    /// Caches a session the backend has just issued (login capture) as if the backend had been
    /// asked about its token: fresh for the TTL, and any later revocation wins.
    pub fn prime(&self, token: &str, record: SessionRecord) -> Result<(), RecordError> {
        let sid = Sid::of(token);
        let generation = self.generation.load(Ordering::Acquire);
        let entry = self.found(
            Session::new(sid, record)?,
            generation,
            self.clock.now_ms(),
            None,
        );
        self.cache.insert(Key(sid), entry);
        Ok(())
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
        let now = self.clock.now_ms();
        if let Some(l) = self.locations.get(user_id)
            && now < l.fresh_until
            && self.user_stripes[stripe].load(Ordering::Acquire) <= l.generation
            && self.cleared_at.load(Ordering::Acquire) <= l.generation
        {
            return Ok(l);
        }
        let generation = self.generation.load(Ordering::Acquire);
        self.metrics.count_store_read();
        let set = self.store.locations(user_id).await?.into_iter().collect();
        let l = Arc::new(Locations {
            set,
            fresh_until: self.clock.now_ms().saturating_add(self.settings.ttl_ms),
            generation,
        });
        self.locations.insert(user_id.to_string(), l.clone());
        Ok(l)
    }

    /// Authorizes a location for a user in the store and forgets what is cached about them.
    pub async fn add_location(&self, user_id: &str, location: &str) -> Result<(), StoreError> {
        self.store.add_location(user_id, location).await?;
        self.evict_user(user_id);
        self.locations.remove(user_id);
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
    pub async fn stale(&self, sid: &Sid) -> Option<Session> {
        let grace = self.settings.stale_grace_ms?;
        let e = self.last_good.as_ref()?.get(&Key(*sid))?;
        let m = e.meta();
        let now = self.clock.now_ms();
        let fresh_enough = now < m.loaded_at.saturating_add(grace);
        let not_expired = e.expires_at().is_none_or(|x| x > now.div_euclid(1000));
        if !(fresh_enough && not_expired && self.not_revoked(sid, &m, false)) {
            return None;
        }
        let s = e.session(*sid)?;
        self.metrics.cache.inc(STALE_SERVED, "");
        Some(s)
    }

    /// Forgets `sid` everywhere in this process. Call after the store no longer has it.
    pub async fn evict(&self, sid: &Sid) {
        let g = self.next_generation();
        self.sid_stripes[sid_stripe(sid)].fetch_max(g, Ordering::AcqRel);
        self.cache.remove(&Key(*sid));
        if let Some(last_good) = &self.last_good {
            last_good.remove(&Key(*sid));
        }
        // SECURITY: a revoked session's WebSocket tunnels close now, on every instance that
        // learns of the revocation, instead of running on forever.
        self.tunnels.close_session(sid);
    }

    /// Forgets every cached session of `user_id`.
    pub fn evict_user(&self, user_id: &str) {
        let g = self.next_generation();
        self.user_stripes[self.user_stripe(user_id)].fetch_max(g, Ordering::AcqRel);
        self.tunnels.close_user(user_id);
    }

    /// Forgets everything (e.g. when invalidations may have been missed).
    pub fn clear(&self) {
        let g = self.next_generation();
        self.cleared_at.fetch_max(g, Ordering::AcqRel);
        self.cache.clear();
        self.locations.clear();
        if let Some(last_good) = &self.last_good {
            last_good.clear();
        }
    }

    /// Entries currently held (tests and metrics).
    pub fn entry_count(&self) -> u64 {
        self.cache.len() as u64
    }
}

fn sid_stripe(sid: &Sid) -> usize {
    // Sids are SHA-256 outputs, already uniform.
    u16::from_le_bytes([sid.0[8], sid.0[9]]) as usize % STRIPES
}

#[path = "cache_backend.rs"]
mod backend_answers;
#[path = "cache_tunnel.rs"]
mod tunnel;

#[cfg(test)]
#[path = "cache_tests.rs"]
mod tests;
