//! Cache semantics with a manual clock and an in-memory store whose reads can be counted,
//! delayed and failed.

use super::*;
use crate::clock::ManualClock;
use crate::credential::Kind;
use crate::session::record::SessionRecord;
use crate::session::testing::MemStore;
use std::time::Duration;

const T0: Millis = 1_700_000_000_000;

fn record(user: &str, expires_at: Option<i64>) -> SessionRecord {
    SessionRecord {
        v: 1,
        user_id: user.into(),
        kind: Kind::Session,
        created_at: T0 / 1000,
        expires_at,
        scopes: vec![],
        client_ip: None,
        has_mfa: None,
        flags: None,
        client_id: None,
    }
}

fn setup() -> (Arc<MemStore>, Arc<ManualClock>, Arc<SessionCache>) {
    let store = Arc::new(MemStore::default());
    let clock = ManualClock::new(T0);
    let cache = Arc::new(SessionCache::new(
        store.clone(),
        clock.clone(),
        Arc::new(Metrics::default()),
        CacheSettings {
            ttl_ms: 30_000,
            negative_ttl_ms: 2_000,
            capacity: 1000,
            stale_grace_ms: None,
        },
    ));
    (store, clock, cache)
}

fn reads(s: &MemStore) -> u64 {
    s.reads.load(Ordering::SeqCst)
}

#[tokio::test]
async fn hit_within_ttl_reads_the_store_once() {
    let (store, clock, cache) = setup();
    let sid = Sid::of("a");
    store.records.lock().unwrap().insert(sid, record("1", None));
    assert!(cache.resolve(&sid).await.unwrap().is_some());
    clock.advance_ms(29_999);
    assert!(cache.resolve(&sid).await.unwrap().is_some());
    assert_eq!(reads(&store), 1);
}

#[tokio::test]
async fn ttl_is_fixed_from_insertion_and_not_extended_by_reads() {
    let (store, clock, cache) = setup();
    let sid = Sid::of("a");
    store.records.lock().unwrap().insert(sid, record("1", None));
    cache.resolve(&sid).await.unwrap();
    for _ in 0..5 {
        clock.advance_ms(6_000);
        cache.resolve(&sid).await.unwrap();
    }
    // 30 s after insertion the entry is stale however often it was read.
    assert_eq!(reads(&store), 2);
}

#[tokio::test]
async fn entry_never_outlives_the_session_expiry() {
    let (store, clock, cache) = setup();
    let sid = Sid::of("a");
    let exp = T0 / 1000 + 5;
    store
        .records
        .lock()
        .unwrap()
        .insert(sid, record("1", Some(exp)));
    assert!(cache.resolve(&sid).await.unwrap().is_some());
    clock.advance_ms(4_999);
    assert!(cache.resolve(&sid).await.unwrap().is_some());
    assert_eq!(reads(&store), 1);
    // Past expires_at the cache re-reads; the store says expired records are gone.
    clock.advance_ms(1);
    store.records.lock().unwrap().remove(&sid);
    assert!(cache.resolve(&sid).await.unwrap().is_none());
    assert_eq!(reads(&store), 2);
}

#[tokio::test]
async fn unknown_sids_are_cached_negatively_for_a_short_time() {
    let (store, clock, cache) = setup();
    let sid = Sid::of("nobody");
    assert!(cache.resolve(&sid).await.unwrap().is_none());
    clock.advance_ms(1_999);
    assert!(cache.resolve(&sid).await.unwrap().is_none());
    assert_eq!(reads(&store), 1);
    clock.advance_ms(1);
    assert!(cache.resolve(&sid).await.unwrap().is_none());
    assert_eq!(reads(&store), 2);
}

#[tokio::test]
async fn store_errors_are_never_cached() {
    let (store, _clock, cache) = setup();
    let sid = Sid::of("a");
    store.records.lock().unwrap().insert(sid, record("1", None));
    store.fail.store(true, Ordering::SeqCst);
    assert!(cache.resolve(&sid).await.is_err());
    assert!(cache.resolve(&sid).await.is_err());
    store.fail.store(false, Ordering::SeqCst);
    assert!(cache.resolve(&sid).await.unwrap().is_some());
    assert_eq!(reads(&store), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_misses_for_one_sid_make_one_store_read() {
    let (store, _clock, cache) = setup();
    let sid = Sid::of("unknown");
    let gate = Arc::new(tokio::sync::Notify::new());
    *store.gate.lock().unwrap() = Some(gate.clone());
    let tasks: Vec<_> = (0..50)
        .map(|_| {
            let c = cache.clone();
            tokio::spawn(async move { c.resolve(&sid).await })
        })
        .collect();
    store.read_started.notified().await;
    // Give every task time to join the in-flight load before releasing it.
    tokio::time::sleep(Duration::from_millis(100)).await;
    gate.notify_waiters();
    for t in tasks {
        assert!(t.await.unwrap().unwrap().is_none());
    }
    assert_eq!(reads(&store), 1);
}

#[tokio::test]
async fn revoked_session_is_gone_on_the_very_next_lookup() {
    let (store, _clock, cache) = setup();
    let sid = Sid::of("a");
    store.records.lock().unwrap().insert(sid, record("1", None));
    assert!(cache.resolve(&sid).await.unwrap().is_some());
    cache.revoke(&sid).await.unwrap();
    assert!(cache.resolve(&sid).await.unwrap().is_none());
}

#[tokio::test]
async fn revoking_a_user_evicts_all_their_cached_sessions() {
    let (store, _clock, cache) = setup();
    let (a, b, c) = (Sid::of("a"), Sid::of("b"), Sid::of("c"));
    store.records.lock().unwrap().insert(a, record("1", None));
    store.records.lock().unwrap().insert(b, record("1", None));
    store.records.lock().unwrap().insert(c, record("2", None));
    for s in [a, b, c] {
        assert!(cache.resolve(&s).await.unwrap().is_some());
    }
    let removed = cache.revoke_user("1").await.unwrap();
    assert_eq!(removed.len(), 2);
    assert!(cache.resolve(&a).await.unwrap().is_none());
    assert!(cache.resolve(&b).await.unwrap().is_none());
    assert!(cache.resolve(&c).await.unwrap().is_some());
}

#[tokio::test]
async fn remote_user_eviction_without_store_change_forces_a_reread() {
    let (store, _clock, cache) = setup();
    let a = Sid::of("a");
    store.records.lock().unwrap().insert(a, record("1", None));
    cache.resolve(&a).await.unwrap();
    cache.evict_user("1");
    cache.resolve(&a).await.unwrap();
    assert_eq!(reads(&store), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_read_overlapping_a_revocation_does_not_resurrect_the_session() {
    let (store, _clock, cache) = setup();
    let sid = Sid::of("a");
    store.records.lock().unwrap().insert(sid, record("1", None));
    let gate = Arc::new(tokio::sync::Notify::new());
    *store.gate.lock().unwrap() = Some(gate.clone());
    // A read starts and fetches the record...
    let c = cache.clone();
    let slow = tokio::spawn(async move { c.resolve(&sid).await });
    store.read_started.notified().await;
    // ...the session is revoked while that read is still in flight...
    *store.gate.lock().unwrap() = None;
    store.records.lock().unwrap().remove(&sid);
    cache.evict(&sid).await;
    // ...and only then does the slow read complete and insert what it read. `notify_one`
    // (a permit, kept if the reader is not waiting yet): on this two-thread runtime the
    // reader may still be between announcing its read and waiting at the gate, and
    // `notify_waiters` would then leave it waiting forever (seen: 2 hangs in 30 runs).
    gate.notify_one();
    let _ = slow.await.unwrap();
    // The next request must not see the revoked session.
    assert!(cache.resolve(&sid).await.unwrap().is_none());
}

#[tokio::test]
async fn clear_forgets_everything() {
    let (store, _clock, cache) = setup();
    let a = Sid::of("a");
    store.records.lock().unwrap().insert(a, record("1", None));
    cache.resolve(&a).await.unwrap();
    cache.clear();
    cache.resolve(&a).await.unwrap();
    assert_eq!(reads(&store), 2);
}

#[tokio::test]
async fn capacity_is_bounded() {
    let store = Arc::new(MemStore::default());
    let cache = Arc::new(SessionCache::new(
        store.clone(),
        ManualClock::new(T0),
        Arc::new(Metrics::default()),
        CacheSettings {
            ttl_ms: 30_000,
            negative_ttl_ms: 30_000,
            capacity: 100,
            stale_grace_ms: None,
        },
    ));
    for i in 0..1000 {
        cache.resolve(&Sid::of(&i.to_string())).await.unwrap();
    }
    assert!(cache.entry_count() <= 100);
}

fn setup_with(settings: CacheSettings) -> (Arc<MemStore>, Arc<ManualClock>, Arc<SessionCache>) {
    let store = Arc::new(MemStore::default());
    let clock = ManualClock::new(T0);
    let cache = Arc::new(SessionCache::new(
        store.clone(),
        clock.clone(),
        Arc::new(Metrics::default()),
        settings,
    ));
    (store, clock, cache)
}

#[tokio::test]
async fn while_invalidations_may_be_missed_entries_are_trusted_only_for_the_cap() {
    let (store, clock, cache) = setup();
    let sid = Sid::of("a");
    store.records.lock().unwrap().insert(sid, record("1", None));
    cache.set_vouch(Some(1_000));
    cache.resolve(&sid).await.unwrap();
    clock.advance_ms(999);
    cache.resolve(&sid).await.unwrap();
    assert_eq!(reads(&store), 1);
    clock.advance_ms(1);
    cache.resolve(&sid).await.unwrap();
    assert_eq!(reads(&store), 2, "the 30 s TTL must be capped to 1 s");
    // Reliable again: the full TTL applies.
    cache.set_vouch(None);
    clock.advance_ms(20_000);
    cache.resolve(&sid).await.unwrap();
    assert_eq!(reads(&store), 2);
}

fn stale_settings() -> CacheSettings {
    CacheSettings {
        ttl_ms: 30_000,
        negative_ttl_ms: 2_000,
        capacity: 1000,
        stale_grace_ms: Some(300_000),
    }
}

#[tokio::test]
async fn stale_entries_answer_within_the_grace_only_when_enabled() {
    let (store, clock, cache) = setup_with(stale_settings());
    let sid = Sid::of("a");
    store.records.lock().unwrap().insert(sid, record("1", None));
    cache.resolve(&sid).await.unwrap();
    store.fail.store(true, Ordering::SeqCst);
    clock.advance_ms(31_000);
    assert!(cache.resolve(&sid).await.is_err());
    assert!(cache.stale(&sid).await.is_some());
    clock.advance_ms(300_000);
    assert!(cache.stale(&sid).await.is_none(), "past the grace period");
    // Disabled: never.
    let (store, _clock, cache) = setup();
    store.records.lock().unwrap().insert(sid, record("1", None));
    cache.resolve(&sid).await.unwrap();
    assert!(cache.stale(&sid).await.is_none());
}

#[tokio::test]
async fn a_revoked_session_is_never_served_stale() {
    let (store, clock, cache) = setup_with(stale_settings());
    let sid = Sid::of("a");
    store.records.lock().unwrap().insert(sid, record("1", None));
    cache.resolve(&sid).await.unwrap();
    cache.evict_user("1");
    store.fail.store(true, Ordering::SeqCst);
    clock.advance_ms(31_000);
    assert!(cache.stale(&sid).await.is_none());
}

#[tokio::test]
async fn unknown_sessions_are_never_served_stale() {
    let (store, clock, cache) = setup_with(stale_settings());
    let sid = Sid::of("nobody");
    assert!(cache.resolve(&sid).await.unwrap().is_none());
    store.fail.store(true, Ordering::SeqCst);
    clock.advance_ms(3_000);
    assert!(cache.stale(&sid).await.is_none());
}

struct NoClose;
impl crate::session::tunnels::Closer for NoClose {
    fn close(&self) {}
}

/// A tunnel for `sid`, the fast way or, when the cache cannot vouch, after asking the store.
async fn tunnel(cache: &Arc<SessionCache>, s: &Session) -> Option<TunnelGuard> {
    match cache.open_tunnel(s, Arc::new(NoClose)) {
        Ok(g) => Some(g),
        Err(closer) => cache.reopen_tunnel(s, closer).await.unwrap(),
    }
}

use crate::session::record::Session;
use crate::session::tunnels::TunnelGuard;

#[tokio::test]
async fn a_cache_clear_between_decision_and_upgrade_does_not_refuse_the_tunnel() {
    let (store, _clock, cache) = setup();
    let sid = Sid::of("ws");
    store.records.lock().unwrap().insert(sid, record("7", None));
    let s = cache.resolve(&sid).await.unwrap().unwrap();
    // What the Redis subscriber does on (re)subscribing: a precaution, not a revocation.
    cache.clear();
    assert!(!cache.is_current(&s), "the cache alone cannot vouch");
    assert!(tunnel(&cache, &s).await.is_some());
    assert_eq!(cache.tunnels().open_count(), 0, "the guard was dropped");
}

#[tokio::test]
async fn tunnel_of_a_session_revoked_after_its_decision_is_refused() {
    let (store, _clock, cache) = setup();
    let sid = Sid::of("ws");
    store.records.lock().unwrap().insert(sid, record("7", None));
    let s = cache.resolve(&sid).await.unwrap().unwrap();
    store.records.lock().unwrap().remove(&sid);
    cache.evict(&sid).await;
    assert!(tunnel(&cache, &s).await.is_none());
    // The store's word must be about the same user.
    store.records.lock().unwrap().insert(sid, record("8", None));
    assert!(tunnel(&cache, &s).await.is_none(), "another user's record");
}

#[tokio::test]
async fn tunnel_of_a_session_expired_after_its_decision_is_refused() {
    let (store, clock, cache) = setup();
    let sid = Sid::of("ws");
    let exp = T0 / 1000 + 10;
    store
        .records
        .lock()
        .unwrap()
        .insert(sid, record("7", Some(exp)));
    let s = cache.resolve(&sid).await.unwrap().unwrap();
    clock.advance_ms(10_000);
    cache.clear();
    assert!(tunnel(&cache, &s).await.is_none());
}
