//! Memory bounds, measured as resident set size (RSS) growth of this process:
//! - the local rate limiter holding a million distinct keys (target ≤ 200 MB);
//! - the session cache holding a million sessions (target ≤ 150 MB), and what a hit costs then
//!   (sids in random order, so mostly CPU-cache misses, as in production);
//! - the session cache full and churning: twice its capacity in distinct sessions, so it
//!   evicts and keeps S3-FIFO's ghost entries (no target: it shows the bound holds).
//!
//! Run: `cargo bench --bench memory`. Under `cargo test` it runs a 10,000-key smoke instead.

#![allow(
    clippy::unwrap_used,
    reason = "bench set-up: a failed unwrap stops the bench run, with its location"
)]

use fluxgate::clock;
use fluxgate::credential::{Kind, Sid};
use fluxgate::metrics::Metrics;
use fluxgate::policy::ratelimit::gcra::Rate;
use fluxgate::policy::ratelimit::keys::{KeySpec, KeyValue};
use fluxgate::policy::ratelimit::{Backend, BucketDef, Limiter, LimiterSettings, Scope, name_hash};
use fluxgate::session::{CacheSettings, SessionCache, SessionRecord, SessionStore, StoreError};
use futures_util::FutureExt;
use std::sync::Arc;

fn rss_bytes() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let pages: u64 = statm
        .split_whitespace()
        .nth(1)
        .and_then(|p| p.parse().ok())
        .unwrap_or(0);
    pages * 4096
}

fn mb(b: u64) -> f64 {
    b as f64 / (1024.0 * 1024.0)
}

/// A local limiter with room for a million keys.
fn local_limiter(
    buckets: Vec<BucketDef>,
    lockouts: Vec<fluxgate::policy::ratelimit::LockoutDef>,
) -> Limiter {
    Limiter::new(
        buckets,
        lockouts,
        None,
        Backend::Local,
        LimiterSettings {
            max_local_keys: 1_000_000,
            headers_on_success: false,
            buckets_fall_back_local: true,
            lockouts_fall_back_local: false,
        },
        clock::system(),
    )
}

fn limiter_keys(n: u32) -> f64 {
    let b = BucketDef {
        name: "flood".into(),
        id: 0,
        rate: Rate {
            limit: 10,
            window_ms: 60_000,
        },
        key: KeySpec::Ip,
        scope: Scope::User,
        name_hash: name_hash("flood"),
    };
    let l = local_limiter(vec![b.clone()], vec![]);
    let before = rss_bytes();
    for i in 0..n {
        let k = KeyValue {
            tag: b'i',
            bytes: i.to_be_bytes().to_vec(),
        };
        l.check(&b, &k).now_or_never().unwrap().unwrap();
    }
    let grew = rss_bytes().saturating_sub(before);
    println!(
        "limiter: {n} distinct keys, {} tracked individually, RSS +{:.1} MB",
        l.local_table().len(),
        mb(grew)
    );
    mb(grew)
}

/// A million distinct keys each with a failed attempt on a lockout (a credential-stuffing run
/// against a million e-mail addresses): every key holds a failure log.
fn lockout_keys(n: u32) -> f64 {
    let def = fluxgate::policy::ratelimit::LockoutDef {
        name: "login".into(),
        id: 0,
        key: KeySpec::Ip,
        statuses: vec![401],
        rate: Rate {
            limit: 5,
            window_ms: 900_000,
        },
        ban_ms: 900_000,
        name_hash: name_hash("login"),
    };
    let l = local_limiter(vec![], vec![def.clone()]);
    let before = rss_bytes();
    for i in 0..n {
        let k = KeyValue {
            tag: b'b',
            bytes: i.to_be_bytes().to_vec(),
        };
        if let fluxgate::policy::ratelimit::Attempt::Allowed(r) =
            l.attempt(&def, &k).now_or_never().unwrap().unwrap()
        {
            l.settle(&r, true).now_or_never().unwrap();
        }
    }
    let grew = rss_bytes().saturating_sub(before);
    println!(
        "lockout: {n} distinct keys with a failure each, RSS +{:.1} MB",
        mb(grew)
    );
    mb(grew)
}

/// Records generated on demand: the bench measures the cache, not a store.
struct Generated {
    now: i64,
}

#[async_trait::async_trait]
impl SessionStore for Generated {
    fn name(&self) -> &'static str {
        "generated"
    }
    async fn get(&self, _: &Sid) -> Result<Option<SessionRecord>, StoreError> {
        Ok(Some(SessionRecord {
            v: 1,
            user_id: format!(
                "{}",
                100_000_000_000_000_000u64 + fastrand::u64(..1_000_000_000)
            ),
            kind: Kind::Session,
            created_at: self.now,
            expires_at: Some(self.now + 86_400),
            scopes: vec![],
            client_ip: Some("198.51.100.7".into()),
            has_mfa: Some(true),
            flags: None,
            client_id: None,
        }))
    }
    async fn create(&self, _: &Sid, _: &SessionRecord) -> Result<(), StoreError> {
        Ok(())
    }
    async fn revoke(&self, _: &Sid) -> Result<Option<String>, StoreError> {
        Ok(None)
    }
    async fn list_user(&self, _: &str) -> Result<Vec<(Sid, SessionRecord)>, StoreError> {
        Ok(vec![])
    }
    async fn revoke_user(&self, _: &str) -> Result<Vec<Sid>, StoreError> {
        Ok(vec![])
    }
    async fn ping(&self) -> Result<(), StoreError> {
        Ok(())
    }
}

fn session_cache(capacity: u64) -> (Arc<SessionCache>, tokio::runtime::Runtime) {
    let clock = clock::system();
    let store = Arc::new(Generated {
        now: clock.now_secs(),
    });
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let cache = Arc::new(SessionCache::new(
        store,
        clock,
        Arc::new(Metrics::default()),
        CacheSettings {
            ttl_ms: 3_600_000,
            negative_ttl_ms: 2_000,
            capacity,
            stale_grace_ms: None,
        },
    ));
    (cache, rt)
}

fn sid(i: u32) -> Sid {
    Sid::of(&format!("flx_{i:036}"))
}

fn cached_sessions(n: u32) -> f64 {
    let (cache, rt) = session_cache(n as u64 + 1);
    let before = rss_bytes();
    rt.block_on(async {
        for i in 0..n {
            assert!(cache.resolve(&sid(i)).await.unwrap().is_some());
        }
    });
    let held = cache.entry_count();
    let grew = rss_bytes().saturating_sub(before);
    println!(
        "session cache: {held} sessions cached, RSS +{:.1} MB ({} bytes a session)",
        mb(grew),
        grew / u64::from(n)
    );
    // Hits in random order over the full cache: the sids are hashed first, so only the
    // lookups are timed.
    let mut order: Vec<u32> = (0..n).collect();
    fastrand::shuffle(&mut order);
    let sids: Vec<Sid> = order.into_iter().map(sid).collect();
    let started = clock::monotonic_now();
    for s in &sids {
        let hit = cache.resolve(s).now_or_never().unwrap().unwrap();
        assert!(std::hint::black_box(hit).is_some());
    }
    println!(
        "session cache: a hit among {held} entries, random order: {:.0} ns",
        started.elapsed().as_nanos() as f64 / f64::from(n)
    );
    mb(grew)
}

/// A full cache that keeps evicting: `2 × n` distinct sessions through a cache of `n`.
fn churning_sessions(n: u32) -> f64 {
    let (cache, rt) = session_cache(u64::from(n));
    let before = rss_bytes();
    rt.block_on(async {
        for i in 0..2 * n {
            assert!(cache.resolve(&sid(i)).await.unwrap().is_some());
        }
    });
    let grew = rss_bytes().saturating_sub(before);
    println!(
        "session cache: capacity {n}, {} distinct sessions read, {} held, RSS +{:.1} MB",
        2 * n,
        cache.entry_count(),
        mb(grew)
    );
    mb(grew)
}

/// Set in the child process that runs one scenario.
const ONLY: &str = "FLUXGATE_MEMORY_BENCH_ONLY";
/// The line a child reports its figure on.
const RESULT: &str = "result-mb ";

fn scenario(name: &str, n: u32) -> f64 {
    match name {
        "limiter" => limiter_keys(n),
        "lockout" => lockout_keys(n),
        "sessions" => cached_sessions(n),
        "churn" => churning_sessions(n),
        _ => panic!("unknown scenario {name}"),
    }
}

/// Runs a scenario in a fresh process of this bench, so memory one scenario freed (which the
/// allocator keeps) cannot hide the growth of the next.
fn in_child(name: &str) -> f64 {
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .args(std::env::args().skip(1))
        .env(ONLY, name)
        .output()
        .unwrap();
    assert!(out.status.success(), "{name}: {out:?}");
    let mut figure = None;
    for line in String::from_utf8(out.stdout).unwrap().lines() {
        match line.strip_prefix(RESULT) {
            Some(v) => figure = v.parse().ok(),
            None => println!("{line}"),
        }
    }
    figure.unwrap()
}

fn main() {
    let full = std::env::args().any(|a| a == "--bench");
    let n = if full { 1_000_000 } else { 10_000 };
    if let Ok(name) = std::env::var(ONLY) {
        println!("{RESULT}{}", scenario(&name, n));
        return;
    }
    let l = in_child("limiter");
    let lo = in_child("lockout");
    let s = in_child("sessions");
    in_child("churn");
    if full {
        println!(
            "targets: limiter ≤ 200 MB ({}), lockouts ≤ 200 MB ({}), session cache ≤ 150 MB ({})",
            if l <= 200.0 { "met" } else { "MISSED" },
            if lo <= 200.0 { "met" } else { "MISSED" },
            if s <= 150.0 { "met" } else { "MISSED" }
        );
    }
}
