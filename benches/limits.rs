//! The rate limiter's cost per check: local (target ≤ 300 ns) and Redis (one round trip).
//! Run: `cargo bench --bench limits` (starts its own redis-server when installed).

#![allow(
    clippy::unwrap_used,
    reason = "bench set-up: a failed unwrap stops the bench run, with its location"
)]

#[path = "../tests/common/redis.rs"]
mod redis_server;

use criterion::{Criterion, criterion_group, criterion_main};
use fluxgate::clock;
use fluxgate::policy::ratelimit::gcra::Rate;
use fluxgate::policy::ratelimit::keys::{KeySpec, KeyValue};
use fluxgate::policy::ratelimit::redis::RedisLimiter;
use fluxgate::policy::ratelimit::{Backend, BucketDef, Limiter, LimiterSettings, Scope, name_hash};
use fluxgate::redis_client::{Connections, RedisSettings};
use futures_util::FutureExt;
use std::hint::black_box;
use std::sync::Arc;
use std::time::Duration;

fn bucket() -> BucketDef {
    BucketDef {
        name: "bench".into(),
        id: 0,
        // Generous, so every measured check is allowed and updates state.
        rate: Rate {
            limit: 10_000,
            window_ms: 1_000,
        },
        key: KeySpec::Ip,
        scope: Scope::User,
        name_hash: name_hash("bench"),
    }
}

fn limiter(backend: Backend) -> Limiter {
    Limiter::new(
        vec![bucket()],
        vec![],
        None,
        backend,
        LimiterSettings {
            max_local_keys: 1_000_000,
            headers_on_success: false,
            buckets_fall_back_local: false,
            lockouts_fall_back_local: false,
        },
        clock::system(),
    )
}

fn benches(c: &mut Criterion) {
    let b = bucket();
    let local = limiter(Backend::Local);
    let keys: Vec<KeyValue> = (0..1024u32)
        .map(|i| KeyValue {
            tag: b'i',
            bytes: i.to_be_bytes().to_vec(),
        })
        .collect();
    let mut i = 0usize;
    c.bench_function("limits/local_check", |bench| {
        bench.iter(|| {
            i = (i + 1) % keys.len();
            local
                .check(&b, black_box(&keys[i]))
                .now_or_never()
                .expect("a local check never waits")
                .unwrap()
        })
    });

    // Prints SKIPPED (or fails, with FLUXGATE_REQUIRE_REDIS=1) when redis-server is missing.
    if !redis_server::available() {
        eprintln!("SKIPPED limits/redis_check");
        return;
    }
    let redis = redis_server::RedisServer::start();
    let conns = Connections::new(RedisSettings {
        urls: vec![redis.url()],
        cluster: false,
        username: None,
        password: None,
        db: 0,
        key_prefix: "bench:".into(),
        command_timeout: Duration::from_secs(1),
        connect_timeout: Duration::from_secs(1),
        tls_ca_pem: None,
    })
    .unwrap();
    let shared = limiter(Backend::Redis(RedisLimiter::new(Arc::new(conns))));
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let mut j = 0usize;
    c.bench_function("limits/redis_check_one_round_trip", |bench| {
        bench.to_async(&rt).iter(|| {
            j = (j + 1) % keys.len();
            let k = &keys[j];
            let s = &shared;
            let b = &b;
            async move { s.check(b, k).await.unwrap() }
        })
    });
    drop(redis);
}

criterion_group!(limits, benches);
criterion_main!(limits);
