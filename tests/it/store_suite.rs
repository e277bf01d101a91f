//! One behaviour suite for every `SessionStore`: the same checks run against the embedded store
//! and against a real Redis.

use crate::common::redis::RedisServer;
use fluxgate::clock::{Clock, ManualClock};
use fluxgate::credential::{Kind, Sid};
use fluxgate::redis_client::RedisSettings;
use fluxgate::session::embedded::EmbeddedStore;
use fluxgate::session::redis::RedisStore;
use fluxgate::session::{SessionRecord, SessionStore};
use std::sync::Arc;
use std::time::Duration;

const NOW_MS: i64 = 1_800_000_000_000;

fn rec(user: &str, created_at: i64, expires_at: Option<i64>) -> SessionRecord {
    SessionRecord {
        v: 1,
        user_id: user.into(),
        kind: Kind::Session,
        created_at,
        expires_at,
        scopes: vec!["a".into()],
        client_ip: Some("192.0.2.1".into()),
        has_mfa: Some(true),
        flags: None,
        client_id: None,
    }
}

async fn suite(store: Arc<dyn SessionStore>, clock: Arc<ManualClock>) {
    let now = clock.now_secs();
    let (a, b, c, d) = (Sid::of("a"), Sid::of("b"), Sid::of("c"), Sid::of("d"));

    // Unknown sids are absent; a stored record reads back exactly.
    assert_eq!(store.get(&a).await.unwrap(), None);
    store
        .create(&a, &rec("1", now - 30, Some(now + 3600)))
        .await
        .unwrap();
    assert_eq!(
        store.get(&a).await.unwrap(),
        Some(rec("1", now - 30, Some(now + 3600)))
    );
    store.ping().await.unwrap();

    // Listing is per user, oldest first.
    store.create(&b, &rec("1", now - 60, None)).await.unwrap();
    store.create(&c, &rec("2", now, None)).await.unwrap();
    let listed: Vec<Sid> = store
        .list_user("1")
        .await
        .unwrap()
        .into_iter()
        .map(|(s, _)| s)
        .collect();
    assert_eq!(listed, vec![b, a]);

    // An expired record is never served, however the store keeps time.
    store
        .create(&d, &rec("1", now, Some(now + 5)))
        .await
        .unwrap();
    assert!(store.get(&d).await.unwrap().is_some());
    clock.advance_ms(6_000);
    assert_eq!(store.get(&d).await.unwrap(), None);
    assert_eq!(store.list_user("1").await.unwrap().len(), 2);

    // Revoking one returns its user; a second time finds nothing.
    assert_eq!(store.revoke(&a).await.unwrap().as_deref(), Some("1"));
    assert_eq!(store.revoke(&a).await.unwrap(), None);
    assert_eq!(store.get(&a).await.unwrap(), None);

    // Revoking a user removes all of theirs and nothing else.
    store.create(&a, &rec("1", now, None)).await.unwrap();
    let removed = store.revoke_user("1").await.unwrap();
    assert!(removed.contains(&a) && removed.contains(&b), "{removed:?}");
    assert!(removed.iter().all(|s| [a, b, d].contains(s)), "{removed:?}");
    assert_eq!(store.get(&a).await.unwrap(), None);
    assert_eq!(store.get(&b).await.unwrap(), None);
    assert!(store.list_user("1").await.unwrap().is_empty());
    assert!(store.get(&c).await.unwrap().is_some());

    // Re-creating a sid for another user moves it between users' lists.
    store.create(&c, &rec("3", now, None)).await.unwrap();
    assert_eq!(store.get(&c).await.unwrap().unwrap().user_id, "3");
    assert_eq!(store.list_user("3").await.unwrap().len(), 1);
}

#[tokio::test]
async fn embedded_store_behaves() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(NOW_MS);
    let store = EmbeddedStore::open(&dir.path().join("s.redb"), clock.clone()).unwrap();
    suite(Arc::new(store), clock).await;
}

#[tokio::test]
async fn redis_store_behaves() {
    if !crate::common::redis::available() {
        return;
    }
    let redis = RedisServer::start();
    let clock = ManualClock::new(NOW_MS);
    let settings = RedisSettings {
        urls: vec![redis.url()],
        cluster: false,
        username: None,
        password: None,
        db: 0,
        key_prefix: "suite:".into(),
        command_timeout: Duration::from_secs(1),
        connect_timeout: Duration::from_secs(1),
        tls_ca_pem: None,
    };
    let store = RedisStore::from_settings(settings, clock.clone()).unwrap();
    suite(Arc::new(store), clock).await;
    // The contract's key layout.
    let keys = redis.cli(&["KEYS", "suite:*"]);
    assert!(
        keys.contains(&format!("suite:session:{}", Sid::of("c").encode())),
        "{keys}"
    );
    assert!(keys.contains("suite:user-sessions:3"), "{keys}");
}

#[tokio::test]
async fn redis_store_refuses_quickly_when_redis_is_down() {
    if !crate::common::redis::available() {
        return;
    }
    let port = crate::common::free_port();
    let settings = RedisSettings {
        urls: vec![format!("redis://127.0.0.1:{port}")],
        cluster: false,
        username: None,
        password: None,
        db: 0,
        key_prefix: "x:".into(),
        command_timeout: Duration::from_millis(200),
        connect_timeout: Duration::from_millis(200),
        tls_ca_pem: None,
    };
    let store = RedisStore::from_settings(settings, ManualClock::new(NOW_MS)).unwrap();
    // Bounded by the test harness, not asserted on: the error must come, not hang.
    let r = tokio::time::timeout(Duration::from_secs(10), store.get(&Sid::of("a"))).await;
    assert!(matches!(r, Ok(Err(_))), "expected a store error, got {r:?}");
}
