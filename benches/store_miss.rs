//! The cost of a session-cache miss: one store read per new sid, nothing more; and with the
//! backend resolver, one call to the backend's `/users/@me` (an in-process hyper server on
//! loopback) per new token.
//! Run: `cargo bench --bench store_miss` (starts its own redis-server when installed).

#![allow(
    clippy::unwrap_used,
    reason = "bench set-up: a failed unwrap stops the bench run, with its location"
)]

#[path = "../tests/common/redis.rs"]
mod redis_server;

use criterion::{Criterion, criterion_group, criterion_main};
use fluxgate::clock;
use fluxgate::credential::{Kind, Sid};
use fluxgate::metrics::Metrics;
use fluxgate::redis_client::RedisSettings;
use fluxgate::session::backend::{BackendResolver, BackendSettings};
use fluxgate::session::embedded::EmbeddedStore;
use fluxgate::session::redis::RedisStore;
use fluxgate::session::{CacheSettings, SessionCache, SessionStore};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// A backend answering every `GET /users/@me` with a user, on its own runtime.
fn users_me() -> (tokio::runtime::Runtime, std::net::SocketAddr) {
    use http_body_util::Full;
    use hyper::service::service_fn;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let listener = rt
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .unwrap();
    let addr = listener.local_addr().unwrap();
    rt.spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            tokio::spawn(async move {
                let svc = service_fn(|_req| async {
                    let body = r#"{"id":"123456789012345678","mfa_enabled":true,"flags":0}"#;
                    Ok::<_, std::convert::Infallible>(
                        hyper::Response::builder()
                            .header("content-type", "application/json")
                            .body(Full::new(bytes::Bytes::from_static(body.as_bytes())))
                            .unwrap(),
                    )
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    (rt, addr)
}

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

    // A token the store does not know, validated by the backend: one loopback HTTP call.
    let (_backend_rt, backend) = users_me();
    let resolver = BackendResolver::new(BackendSettings::new(
        format!("http://{backend}/users/@me").parse().unwrap(),
    ))
    .unwrap();
    let dir2 = tempfile::tempdir().unwrap();
    let with_backend = Arc::new(
        Arc::into_inner(cache(Arc::new(
            EmbeddedStore::open(&dir2.path().join("s.redb"), clock::system()).unwrap(),
        )))
        .unwrap()
        .with_backend(Some(Arc::new(resolver))),
    );
    let token = || format!("flx_{:036}", n.fetch_add(1, Ordering::Relaxed));
    c.bench_function("miss/backend_users_me", |b| {
        b.to_async(&rt).iter(|| async {
            let s = with_backend
                .resolve_token(Kind::Session, &token())
                .await
                .unwrap();
            assert!(s.is_some());
        })
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
