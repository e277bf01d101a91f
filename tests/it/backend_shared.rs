//! Backend answers shared through Redis, through the real binary: two fluxgate instances in
//! front of the Fluxer-like fake and one real redis-server. A token asked on one instance is
//! not asked again on the other; revoking through either (admin API, logout, the invalidate
//! channel) reaches both and deletes the shared answer; a Redis failure never admits a token by
//! itself.

use crate::common::fluxer::{ALICE, BOB, Fluxer};
use crate::common::redis::{RedisServer, redis_sessions};
use crate::common::{Fluxgate, Req};
use crate::require_redis;
use fluxgate::clock::monotonic_now;
use fluxgate::credential::Sid;
use std::time::Duration;

/// `store = "redis"` with the backend as fallback; `cache_ttl` is long, so only a shared
/// answer or an invalidation can explain what the second instance does.
fn redis_fallback(f: &Fluxer, redis: &RedisServer, cache_ttl: &str) -> String {
    redis_sessions(
        &redis.url(),
        r#"
[[route]]
methods = ["POST"]
path = "/auth/logout"
role = "logout"
"#,
    )
    .replace(
        "store = \"redis\"\n",
        &format!(
            "store = \"redis\"\ncache_ttl = \"{cache_ttl}\"\n[sessions.backend]\nfallback = true\nrequest_timeout = \"500ms\"\nvalidate_url = \"{}\"\n",
            f.url("/users/@me")
        ),
    )
}

fn eventually(within: Duration, mut f: impl FnMut() -> bool) -> bool {
    let t = monotonic_now();
    while t.elapsed() < within {
        if f() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    false
}

fn subscribed(fg: &Fluxgate) -> bool {
    fg.metric("fluxgate_invalidation_subscribed") == 1.0
}

fn status(fg: &Fluxgate, token: &str) -> u16 {
    fg.send(&Req::get("/x").header("authorization", token))
        .status
}

fn two(f: &Fluxer, redis: &RedisServer, cache_ttl: &str) -> (Fluxgate, Fluxgate) {
    let cfg = redis_fallback(f, redis, cache_ttl);
    let a = Fluxgate::start(f.addr, &cfg);
    let b = Fluxgate::start(f.addr, &cfg);
    assert!(eventually(Duration::from_secs(10), || subscribed(&a) && subscribed(&b)));
    (a, b)
}

fn shared_key(token: &str) -> String {
    format!("fluxgate:bsess:{}", Sid::of(token).encode())
}

#[test]
fn a_token_asked_on_one_instance_is_not_asked_again_on_the_other() {
    require_redis!();
    let redis = RedisServer::start();
    let f = Fluxer::start();
    let (a, b) = two(&f, &redis, "1h");
    let token = f.session_token(ALICE.user_id);
    assert_eq!(status(&a, &token), 200);
    assert_eq!(status(&b, &token), 200);
    assert_eq!(f.me_calls_for(&token), 1, "B used A's shared answer");
    assert_eq!(
        f.last().get("x-fluxgate-user-id").as_deref(),
        Some(ALICE.user_id),
        "B forwarded the identity the backend gave A"
    );
    assert!(b.metric("fluxgate_backend_shared_total{result=\"hit\"}") >= 1.0);
    // Kept under the sid, for cache_ttl at most, and the token itself is nowhere in Redis.
    let pttl: i64 = redis
        .cli(&["PTTL", &shared_key(&token)])
        .trim()
        .parse()
        .unwrap();
    assert!(pttl > 0 && pttl <= 3_600_000, "pttl {pttl}");
    let keys = redis.cli(&["KEYS", "*"]);
    assert!(keys.contains(&shared_key(&token)), "{keys}");
    assert!(!keys.contains(&token), "{keys}");
    for k in keys.lines().filter(|k| k.contains("bsess:")) {
        let v = redis.cli(&["GET", k.trim()]);
        assert!(v.contains(ALICE.user_id) && !v.contains(&token), "{k}: {v}");
    }
}

#[test]
fn negative_answers_are_not_shared() {
    require_redis!();
    let redis = RedisServer::start();
    let f = Fluxer::start();
    let (a, b) = two(&f, &redis, "1h");
    let bogus = "flx_000000000000000000000000000000000042";
    assert_eq!(status(&a, bogus), 401);
    assert_eq!(status(&b, bogus), 401);
    assert_eq!(f.me_calls_for(bogus), 2, "each instance asked once");
    assert_eq!(redis.cli(&["EXISTS", &shared_key(bogus)]).trim(), "0");
}

#[test]
fn revoked_through_the_admin_api_of_one_instance_the_other_refuses_it() {
    require_redis!();
    let redis = RedisServer::start();
    let f = Fluxer::start();
    let (a, b) = two(&f, &redis, "1h");
    let token = f.session_token(ALICE.user_id);
    assert_eq!(status(&a, &token), 200);
    assert_eq!(status(&b, &token), 200);
    // The API revokes the token; fluxgate is told through A's admin API.
    f.revoke(&token);
    let sid = Sid::of(&token).encode();
    let r = a.admin("DELETE", &format!("/v1/sessions/{sid}"), None);
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["user_id"], ALICE.user_id);
    assert_eq!(redis.cli(&["EXISTS", &shared_key(&token)]).trim(), "0");
    assert_eq!(status(&a, &token), 401);
    // cache_ttl is 1h: only the invalidation (and the deleted shared answer) explain this.
    assert!(eventually(Duration::from_secs(5), || status(&b, &token) == 401));
    assert_eq!(b.metric("fluxgate_invalidation_subscriptions_total"), 1.0);
}

#[test]
fn revoking_a_user_on_one_instance_deletes_every_shared_answer_of_theirs() {
    require_redis!();
    let redis = RedisServer::start();
    let f = Fluxer::start();
    let (a, b) = two(&f, &redis, "1h");
    let t1 = f.session_token(BOB.user_id);
    let t2 = f.session_token(BOB.user_id);
    let other = f.session_token(ALICE.user_id);
    for t in [&t1, &t2, &other] {
        assert_eq!(status(&a, t), 200);
        assert_eq!(status(&b, t), 200);
    }
    f.revoke(&t1);
    f.revoke(&t2);
    let r = a.admin(
        "DELETE",
        &format!("/v1/users/{}/sessions", BOB.user_id),
        None,
    );
    assert_eq!(r.json()["revoked"], 2, "{}", r.text());
    for t in [&t1, &t2] {
        assert!(eventually(Duration::from_secs(5), || status(&b, t) == 401));
        assert_eq!(redis.cli(&["EXISTS", &shared_key(t)]).trim(), "0");
    }
    assert_eq!(status(&b, &other), 200, "another user is untouched");
    assert_eq!(f.me_calls_for(&other), 1);
}

#[test]
fn a_logout_on_one_instance_is_refused_on_the_other() {
    require_redis!();
    let redis = RedisServer::start();
    let f = Fluxer::start();
    let (a, b) = two(&f, &redis, "1h");
    let token = f.session_token(ALICE.user_id);
    assert_eq!(status(&b, &token), 200);
    let out = a.send(&Req::new("POST", "/auth/logout").header("authorization", &token));
    assert_eq!(out.status, 204, "{}", out.text());
    assert!(eventually(Duration::from_secs(5), || status(&b, &token) == 401));
}

#[test]
fn an_invalidation_published_by_the_backend_deletes_the_shared_answer() {
    require_redis!();
    let redis = RedisServer::start();
    let f = Fluxer::start();
    let (a, b) = two(&f, &redis, "1h");
    let token = f.session_token(ALICE.user_id);
    assert_eq!(status(&a, &token), 200);
    assert_eq!(status(&b, &token), 200);
    f.revoke(&token);
    let msg = format!("session:{}", Sid::of(&token).encode());
    redis.cli(&["PUBLISH", "fluxgate:invalidate", &msg]);
    assert!(eventually(Duration::from_secs(5), || {
        redis.cli(&["EXISTS", &shared_key(&token)]).trim() == "0"
    }));
    assert!(eventually(Duration::from_secs(5), || status(&a, &token)
        == 401
        && status(&b, &token) == 401));
}

#[test]
fn a_shared_answer_is_trusted_only_for_what_is_left_of_its_ttl() {
    require_redis!();
    let redis = RedisServer::start();
    let f = Fluxer::start();
    let (a, b) = two(&f, &redis, "2s");
    let token = f.session_token(ALICE.user_id);
    assert_eq!(status(&a, &token), 200);
    std::thread::sleep(Duration::from_millis(1500));
    // B reads the answer with about 0.5 s left and must not keep it for a full 2 s.
    assert_eq!(status(&b, &token), 200);
    assert_eq!(f.me_calls_for(&token), 1);
    f.revoke(&token);
    std::thread::sleep(Duration::from_millis(800));
    assert_eq!(
        status(&b, &token),
        401,
        "refused 2 s after the backend's answer"
    );
}

#[test]
fn with_redis_down_the_redis_store_fails_closed() {
    require_redis!();
    let mut redis = RedisServer::start();
    let f = Fluxer::start();
    let (a, _b) = two(&f, &redis, "2s");
    let token = f.session_token(ALICE.user_id);
    redis.kill9();
    a.send(&Req::get("/x").header("authorization", &token))
        .denial(503, "SERVICE_UNAVAILABLE");
    assert_eq!(f.me_calls_for(&token), 0, "the store failed first");
}

#[test]
fn with_the_backend_store_and_redis_down_the_backend_is_asked_instead() {
    require_redis!();
    let mut redis = RedisServer::start();
    let f = Fluxer::start();
    let cfg = format!(
        r#"
[sessions]
store = "backend"
cache_ttl = "1h"
[sessions.backend]
share = true
request_timeout = "500ms"
validate_url = "{}"
[redis]
urls = ["{}"]
command_timeout = "300ms"
connect_timeout = "300ms"
"#,
        f.url("/users/@me"),
        redis.url()
    );
    let a = Fluxgate::start(f.addr, &cfg);
    let b = Fluxgate::start(f.addr, &cfg);
    let token = f.session_token(ALICE.user_id);
    assert_eq!(status(&a, &token), 200);
    assert_eq!(status(&b, &token), 200);
    assert_eq!(
        f.me_calls_for(&token),
        1,
        "shared with store = \"backend\" too"
    );
    redis.kill9();
    // A new token on both: Redis cannot answer, the backend does (once per instance).
    let fresh = f.session_token(ALICE.user_id);
    assert_eq!(status(&a, &fresh), 200);
    assert_eq!(status(&b, &fresh), 200);
    assert_eq!(f.me_calls_for(&fresh), 2);
    // And a token the backend refuses is refused: Redis being down admits nothing.
    f.revoke(&fresh);
    let revoked_new = f.session_token(BOB.user_id);
    f.revoke(&revoked_new);
    assert_eq!(status(&a, &revoked_new), 401);
    assert!(a.metric("fluxgate_backend_shared_total{result=\"read_error\"}") >= 2.0);
}
