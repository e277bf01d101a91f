//! The cost of a session-cache miss: one store read per new sid, nothing more.
//! Run: `cargo bench --bench store_miss` (starts its own redis-server when installed).

#![allow(
    clippy::unwrap_used,
    reason = "bench set-up: a failed unwrap stops the bench run, with its location"
)]

use criterion::{Criterion, criterion_group, criterion_main};
use fluxgate::clock;
use fluxgate::credential::Sid;
use fluxgate::metrics::Metrics;
use fluxgate::redis_client::RedisSettings;
use fluxgate::session::embedded::EmbeddedStore;
use fluxgate::session::redis::RedisStore;
use fluxgate::session::{CacheSettings, SessionCache, SessionStore};
use std::process::{Child, Command, Stdio};
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

struct Redis(Child, u16);

impl Drop for Redis {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start_redis() -> Option<Redis> {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .ok()?
        .local_addr()
        .ok()?
        .port();
    let child = Command::new("redis-server")
        .args([
            "--port",
            &port.to_string(),
            "--save",
            "",
            "--appendonly",
            "no",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .ok()?;
    for _ in 0..200 {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return Some(Redis(child, port));
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    None
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

    let Some(redis) = start_redis() else {
        eprintln!("SKIPPED miss/redis: redis-server is not installed");
        return;
    };
    let store = RedisStore::from_settings(
        RedisSettings {
            urls: vec![format!("redis://127.0.0.1:{}", redis.1)],
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
