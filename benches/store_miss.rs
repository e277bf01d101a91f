//! The cost of a session-cache miss: one store read per new sid, nothing more.
//! Run: `cargo bench --bench store_miss` (starts its own redis-server when installed).

#![allow(
    clippy::unwrap_used,
    reason = "bench set-up: a failed unwrap stops the bench run, with its location"
)]

#[path = "../tests/common/redis.rs"]
mod redis_server;

use criterion::{Criterion, criterion_group, criterion_main};
use fluxgate::clock;
use fluxgate::credential::Sid;
use fluxgate::metrics::Metrics;
use fluxgate::redis_client::RedisSettings;
use fluxgate::session::embedded::EmbeddedStore;
use fluxgate::session::redis::RedisStore;
use fluxgate::session::{CacheSettings, SessionCache, SessionStore};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

fn cache(store: Arc<dyn SessionStore>) -> Arc<SessionCache> {
    Arc::new(SessionCache::new(
        store,
        clock::system(),
        Arc::new(Metrics::default()),
        CacheSettings {
            ttl_ms: 30_000,
            negative_ttl_ms: 30_000,
            capacity: 10_000_000,
            stale_grace_ms: None,
        },
    ))
}

fn benches(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let n = AtomicU64::new(0);
    let fresh = || Sid::of(&n.fetch_add(1, Ordering::Relaxed).to_string());

    let dir = tempfile::tempdir().unwrap();
    let embedded = cache(Arc::new(
        EmbeddedStore::open(&dir.path().join("s.redb"), clock::system()).unwrap(),
    ));
    c.bench_function("miss/embedded_unknown_sid", |b| {
        b.to_async(&rt)
            .iter(|| async { embedded.resolve(&fresh()).await.unwrap() })
    });

    // Prints SKIPPED (or fails, with FLUXGATE_REQUIRE_REDIS=1) when redis-server is missing.
    if !redis_server::available() {
        eprintln!("SKIPPED miss/redis");
        return;
    }
    let redis = redis_server::RedisServer::start();
    let store = RedisStore::from_settings(
        RedisSettings {
            urls: vec![redis.url()],
            cluster: false,
            username: None,
            password: None,
            db: 0,
            key_prefix: "bench:".into(),
            command_timeout: Duration::from_secs(1),
            connect_timeout: Duration::from_secs(1),
            tls_ca_pem: None,
        },
        clock::system(),
    )
    .unwrap();
    let redis_cache = cache(Arc::new(store));
    c.bench_function("miss/redis_unknown_sid_get_pttl", |b| {
        b.to_async(&rt)
            .iter(|| async { redis_cache.resolve(&fresh()).await.unwrap() })
    });
    drop(redis);
}

criterion_group!(store_miss, benches);
criterion_main!(store_miss);
