//! The Redis store end to end: several instances sharing sessions, revocation everywhere, a
//! Redis outage, sessions written by a backend, and what is documented about expiry and bad
//! records. Every test starts its own redis-server.

use crate::common::redis::{RedisServer, redis_sessions};
use crate::common::*;
use crate::require_redis;
use fluxgate::clock::monotonic_now;
use serde_json::json;
use std::time::Duration;

fn start(up: &Upstream, redis: &RedisServer, extra: &str) -> Fluxgate {
    Fluxgate::start(up.addr, &redis_sessions(&redis.url(), extra))
}

/// Polls until `f` holds or `within` passes; returns how long it took.
fn eventually(within: Duration, mut f: impl FnMut() -> bool) -> Option<Duration> {
    let t = monotonic_now();
    while t.elapsed() < within {
        if f() {
            return Some(t.elapsed());
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    None
}

/// Waits (at most 10 s) for `/readyz` to answer 200 again after Redis came back.
fn wait_ready_again(fg: &Fluxgate) {
    let ready = eventually(Duration::from_secs(10), || {
        get(fg.admin, "/readyz")
            .map(|r| r.status == 200)
            .unwrap_or(false)
    });
    assert!(ready.is_some(), "readyz never recovered");
}

fn subscribed(fg: &Fluxgate) -> bool {
    fg.metric("fluxgate_invalidation_subscribed") == 1.0
}

#[test]
fn two_instances_share_sessions_and_a_revocation_on_one_reaches_the_other() {
    require_redis!();
    let redis = RedisServer::start();
    let up = Upstream::start();
    // A long cache TTL: only the pub/sub invalidation can explain B forgetting the session.
    let long = redis_sessions(&redis.url(), "")
        .replace("[sessions]\n", "[sessions]\ncache_ttl = \"1h\"\n");
    let a = Fluxgate::start(up.addr, &long);
    let b = Fluxgate::start(up.addr, &long);
    assert!(eventually(Duration::from_secs(10), || subscribed(&a) && subscribed(&b)).is_some());
    let (tok, sid) = a.create_session(json!({"user_id": "500", "lifetime": "1h"}));
    let req = Req::get("/x").header("authorization", &tok);
    assert_eq!(a.send(&req).status, 200);
    assert_eq!(b.send(&req).status, 200, "B reads the session A created");
    assert_eq!(
        a.admin("DELETE", &format!("/v1/sessions/{sid}"), None)
            .status,
        200
    );
    a.send(&req).denial(401, "UNAUTHORIZED");
    let took = eventually(Duration::from_secs(5), || b.send(&req).status == 401)
        .expect("B never refused the revoked session");
    // The subscription stayed up the whole time (a reconnect would clear the cache and could
    // explain the refusal by itself).
    assert_eq!(b.metric("fluxgate_invalidation_subscriptions_total"), 1.0);
    eprintln!("revocation reached the other instance after {took:?} (includes one request)");
}

#[test]
fn logout_everywhere_on_one_instance_logs_out_on_all() {
    require_redis!();
    let redis = RedisServer::start();
    let up = Upstream::start();
    let long = redis_sessions(&redis.url(), "")
        .replace("[sessions]\n", "[sessions]\ncache_ttl = \"1h\"\n");
    let a = Fluxgate::start(up.addr, &long);
    let b = Fluxgate::start(up.addr, &long);
    assert!(eventually(Duration::from_secs(10), || subscribed(&a) && subscribed(&b)).is_some());
    let (t1, _) = a.create_session(json!({"user_id": "501"}));
    let (t2, _) = a.create_session(json!({"user_id": "501"}));
    for t in [&t1, &t2] {
        assert_eq!(
            b.send(&Req::get("/x").header("authorization", t)).status,
            200
        );
    }
    let r = a.admin("DELETE", "/v1/users/501/sessions", None);
    assert_eq!(r.json()["revoked"], 2);
    for t in [&t1, &t2] {
        let req = Req::get("/x").header("authorization", t);
        assert!(eventually(Duration::from_secs(5), || b.send(&req).status == 401).is_some());
    }
}

#[test]
fn kill_dash_nine_of_redis_gives_only_503s_then_recovers_without_restarting_fluxgate() {
    require_redis!();
    let mut redis = RedisServer::start();
    let up = Upstream::start();
    let fg = start(&up, &redis, "");
    let (revoked, sid) = fg.create_session(json!({"user_id": "502"}));
    assert_eq!(
        fg.admin("DELETE", &format!("/v1/sessions/{sid}"), None)
            .status,
        200
    );
    redis.kill9();
    let mut seen = std::collections::BTreeMap::new();
    for i in 0..10 {
        // A fresh unknown token each time (no negative cache can answer) and the revoked one.
        let unknown = format!("flx_{:036}", i);
        for tok in [unknown.as_str(), revoked.as_str()] {
            let r = fg.send(&Req::get("/x").header("authorization", tok));
            *seen.entry(r.status).or_insert(0) += 1;
            if r.status == 503 {
                let body = r.denial(503, "SERVICE_UNAVAILABLE");
                assert!(r.header("retry-after").is_some());
                assert!(
                    !body.to_string().to_lowercase().contains("redis"),
                    "internal error text leaked: {body}"
                );
            }
        }
    }
    assert_eq!(
        seen.keys().copied().collect::<Vec<_>>(),
        vec![503],
        "statuses during the outage: {seen:?}"
    );
    assert_eq!(get(fg.admin, "/readyz").unwrap().status, 503);
    assert_eq!(up.count(), 0);
    redis.restart();
    // Redis came back empty (no persistence): a new session works, without restarting fluxgate.
    wait_ready_again(&fg);
    let (tok, _) = fg.create_session(json!({"user_id": "502"}));
    assert_eq!(
        fg.send(&Req::get("/x").header("authorization", &tok))
            .status,
        200
    );
    fg.send(&Req::get("/x").header("authorization", &revoked))
        .denial(401, "UNAUTHORIZED");
}

#[test]
fn serve_stale_answers_recent_sessions_during_an_outage_and_nothing_else() {
    require_redis!();
    let mut redis = RedisServer::start();
    let up = Upstream::start();
    let fg = Fluxgate::start(
        up.addr,
        &redis_sessions(&redis.url(), "").replace(
            "[sessions]\n",
            "[sessions]\ncache_ttl = \"1s\"\nnegative_ttl = \"1s\"\non_store_error = \"serve_stale\"\nstale_grace = \"5m\"\n",
        ),
    );
    let (tok, _) = fg.create_session(json!({"user_id": "503"}));
    assert_eq!(
        fg.send(&Req::get("/x").header("authorization", &tok))
            .status,
        200
    );
    redis.kill9();
    std::thread::sleep(Duration::from_millis(1100)); // past the cache TTL: only stale can answer
    assert_eq!(
        fg.send(&Req::get("/x").header("authorization", &tok))
            .status,
        200
    );
    fg.send(&Req::get("/x").header("authorization", UNKNOWN_TOKEN))
        .denial(503, "SERVICE_UNAVAILABLE");
    assert!(fg.metric("fluxgate_session_cache_total{result=\"stale_served\"}") >= 1.0);
}

#[test]
fn a_session_written_by_a_backend_with_raw_redis_commands_is_accepted_and_deleting_it_is_honoured()
{
    require_redis!();
    let redis = RedisServer::start();
    let up = Upstream::start();
    let fg = start(&up, &redis, "");
    assert!(eventually(Duration::from_secs(10), || subscribed(&fg)).is_some());
    let token = "flx_backendWrittenToken0000000000000000a";
    let sid = fluxgate::credential::Sid::of(token).encode();
    let record = r#"{"v":1,"user_id":"900","kind":"session","created_at":1767225600,"expires_at":null,"scopes":[]}"#;
    assert_eq!(
        redis
            .cli(&["SET", &format!("fluxgate:session:{sid}"), record])
            .trim(),
        "OK"
    );
    redis.cli(&["SADD", "fluxgate:user-sessions:900", &sid]);
    let req = Req::get("/x").header("authorization", token);
    assert_eq!(fg.send(&req).status, 200);
    assert_eq!(up.last().get("x-fluxgate-user-id").as_deref(), Some("900"));
    // The backend deletes it and publishes the invalidation, as docs/redis.md describes.
    redis.cli(&["DEL", &format!("fluxgate:session:{sid}")]);
    redis.cli(&["PUBLISH", "fluxgate:invalidate", &format!("session:{sid}")]);
    assert!(eventually(Duration::from_secs(5), || fg.send(&req).status == 401).is_some());
}

#[test]
fn a_backend_session_that_expires_by_key_ttl_alone_is_not_served_from_the_cache() {
    // The record says nothing about expiry; the key's TTL is the only bound. The cache (30 s
    // TTL by default) must not outlive it.
    require_redis!();
    let redis = RedisServer::start();
    let up = Upstream::start();
    let fg = start(&up, &redis, "");
    let token = "flx_backendWrittenToken0000000000000000b";
    let sid = fluxgate::credential::Sid::of(token).encode();
    let record = r#"{"v":1,"user_id":"901","kind":"session","created_at":1767225600,"expires_at":null,"scopes":[]}"#;
    redis.cli(&[
        "SET",
        &format!("fluxgate:session:{sid}"),
        record,
        "PX",
        "2500",
    ]);
    let req = Req::get("/x").header("authorization", token);
    assert_eq!(fg.send(&req).status, 200);
    std::thread::sleep(Duration::from_millis(2600));
    assert_eq!(
        redis
            .cli(&["EXISTS", &format!("fluxgate:session:{sid}")])
            .trim(),
        "0"
    );
    fg.send(&req).denial(401, "UNAUTHORIZED");
}

#[test]
fn expired_and_evicted_keys_give_401_not_503() {
    require_redis!();
    let redis = RedisServer::start();
    let up = Upstream::start();
    let fg = Fluxgate::start(
        up.addr,
        &redis_sessions(&redis.url(), "").replace(
            "[sessions]\n",
            "[sessions]\ncache_ttl = \"200ms\"\nnegative_ttl = \"100ms\"\n",
        ),
    );
    // 3 s, not less: on a loaded suite a shorter session could expire before it is read.
    let (tok, sid) = fg.create_session(json!({"user_id": "504", "lifetime": "3s"}));
    let ttl: i64 = redis
        .cli(&["TTL", &format!("fluxgate:session:{sid}")])
        .trim()
        .parse()
        .unwrap();
    assert!(
        (1..=3).contains(&ttl),
        "the key carries the session's expiry as a TTL: {ttl}"
    );
    let req = Req::get("/x").header("authorization", &tok);
    assert_eq!(fg.send(&req).status, 200);
    assert!(eventually(Duration::from_secs(10), || fg.send(&req).status == 401).is_some());
    let (tok2, sid2) = fg.create_session(json!({"user_id": "504"}));
    redis.cli(&["DEL", &format!("fluxgate:session:{sid2}")]);
    let req2 = Req::get("/x").header("authorization", &tok2);
    assert!(eventually(Duration::from_secs(5), || fg.send(&req2).status == 401).is_some());
}

#[test]
fn corrupt_unknown_version_and_oversized_records_are_401_and_logged_once() {
    require_redis!();
    let redis = RedisServer::start();
    let up = Upstream::start();
    let fg = start(&up, &redis, "");
    let cases = [
        ("flx_corruptRecord00000000000000000000000", "{not json".to_string()),
        ("flx_futureVersion00000000000000000000000", r#"{"v":2,"user_id":"1","kind":"session","created_at":1,"expires_at":null}"#.to_string()),
        ("flx_oversizedRecord000000000000000000000", format!(r#"{{"v":1,"user_id":"1","kind":"session","created_at":1,"expires_at":null,"scopes":[],"pad":"{}"}}"#, "x".repeat(20_000))),
        ("flx_injectedUserId0000000000000000000000", r#"{"v":1,"user_id":"1\r\nX-Evil: 1","kind":"session","created_at":1,"expires_at":null}"#.to_string()),
    ];
    for (tok, rec) in &cases {
        let sid = fluxgate::credential::Sid::of(tok).encode();
        redis.cli(&["SET", &format!("fluxgate:session:{sid}"), rec]);
        for _ in 0..3 {
            fg.send(&Req::get("/x").header("authorization", tok))
                .denial(401, "UNAUTHORIZED");
        }
    }
    assert_eq!(up.count(), 0);
    // Logs are written in order by a background thread: once the last case is there, every
    // line before it is too.
    let last = fluxgate::credential::Sid::of(cases[3].0).encode();
    fg.wait_log(&last);
    std::thread::sleep(Duration::from_millis(100));
    let log = fg.stderr();
    for (tok, _) in &cases {
        let sid = fluxgate::credential::Sid::of(tok).encode();
        assert_eq!(
            log.matches(&sid).count(),
            1,
            "expected one log line for {sid}:\n{log}"
        );
        assert!(!log.contains(tok), "a token reached the log");
    }
}

#[test]
fn sixty_four_concurrent_requests_with_one_unknown_token_make_exactly_one_get() {
    require_redis!();
    let redis = RedisServer::start();
    let up = Upstream::start();
    let fg = start(&up, &redis, "");
    let before = redis.calls("get");
    let addr = fg.proxy;
    let threads: Vec<_> = (0..64)
        .map(|_| {
            std::thread::spawn(move || {
                Req::get("/x")
                    .header("authorization", UNKNOWN_TOKEN)
                    .send(addr)
                    .status
            })
        })
        .collect();
    for t in threads {
        assert_eq!(t.join().unwrap(), 401);
    }
    assert_eq!(redis.calls("get") - before, 1);
}

#[test]
fn after_redis_recovers_concurrent_misses_for_one_session_still_make_one_read() {
    // No stampede on recovery: 64 clients retrying with one session make one store read.
    require_redis!();
    let mut redis = RedisServer::start();
    let up = Upstream::start();
    let fg = start(&up, &redis, "");
    redis.kill9();
    fg.send(&Req::get("/x").header("authorization", UNKNOWN_TOKEN))
        .denial(503, "SERVICE_UNAVAILABLE");
    redis.restart();
    wait_ready_again(&fg);
    // Once the invalidation subscription is back (its return clears the cache, by design). At
    // least the second: on a loaded machine a missed PING can make it resubscribe once more.
    assert!(
        eventually(Duration::from_secs(10), || {
            subscribed(&fg) && fg.metric("fluxgate_invalidation_subscriptions_total") >= 2.0
        })
        .is_some()
    );
    let token = "flx_backendWrittenToken0000000000000000c";
    let sid = fluxgate::credential::Sid::of(token).encode();
    let record = r#"{"v":1,"user_id":"902","kind":"session","created_at":1767225600,"expires_at":null,"scopes":[]}"#;
    redis.cli(&["SET", &format!("fluxgate:session:{sid}"), record]);
    let before = redis.calls("get");
    let addr = fg.proxy;
    let threads: Vec<_> = (0..64)
        .map(|_| {
            std::thread::spawn(move || {
                Req::get("/x")
                    .header("authorization", token)
                    .send(addr)
                    .status
            })
        })
        .collect();
    // Admitted, or over the global per-user limit (50/s), which is checked after the session
    // was resolved: either way the session was read.
    let statuses: Vec<u16> = threads.into_iter().map(|t| t.join().unwrap()).collect();
    assert!(
        statuses.iter().all(|s| [200, 429].contains(s)),
        "{statuses:?}"
    );
    assert!(statuses.contains(&200));
    assert_eq!(redis.calls("get") - before, 1);
}

#[test]
fn acl_user_password_and_db_index_are_used() {
    require_redis!();
    let redis = RedisServer::start();
    redis.cli(&[
        "ACL",
        "SETUSER",
        "fluxgate",
        "on",
        ">fg-password-1234",
        "~*",
        "&*",
        "+@all",
    ]);
    redis.cli(&["ACL", "SETUSER", "default", "off"]);
    let up = Upstream::start();
    let extra = "username = \"fluxgate\"\npassword = { value = \"fg-password-1234\" }\ndb = 3\n";
    let fg = start(&up, &redis, extra);
    let (tok, sid) = fg.create_session(json!({"user_id": "505"}));
    assert_eq!(
        fg.send(&Req::get("/x").header("authorization", &tok))
            .status,
        200
    );
    let key = format!("fluxgate:session:{sid}");
    let in_db3 = std::process::Command::new("redis-cli")
        .args([
            "-p",
            &redis.port.to_string(),
            "--user",
            "fluxgate",
            "--pass",
            "fg-password-1234",
            "-n",
            "3",
            "EXISTS",
            &key,
        ])
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&in_db3.stdout).trim(), "1");
}

#[test]
fn a_wrong_redis_password_fails_closed() {
    require_redis!();
    let redis = RedisServer::start_with(&["--requirepass", "the-right-password"]);
    let up = Upstream::start();
    let fg = start(
        &up,
        &redis,
        "password = { value = \"the-wrong-password\" }\n",
    );
    fg.send(&Req::get("/x").header("authorization", UNKNOWN_TOKEN))
        .denial(503, "SERVICE_UNAVAILABLE");
    assert_eq!(get(fg.admin, "/readyz").unwrap().status, 503);
}

#[test]
fn while_the_subscription_is_down_cached_sessions_are_trusted_only_for_the_cap() {
    require_redis!();
    let redis = RedisServer::start();
    // fluxgate's user may read and write keys but not subscribe, so its subscription never
    // comes up and the cap stays in force.
    redis.cli(&[
        "ACL",
        "SETUSER",
        "nosub",
        "on",
        ">nosub-password-1",
        "~*",
        "resetchannels",
        "+@all",
        "-subscribe",
        "-psubscribe",
        "-ssubscribe",
    ]);
    let up = Upstream::start();
    let extra = "username = \"nosub\"\npassword = { value = \"nosub-password-1\" }\n";
    let fg = Fluxgate::start(
        up.addr,
        &redis_sessions(&redis.url(), extra).replace(
            "[sessions]\n",
            "[sessions]\ncache_ttl = \"1h\"\nttl_while_disconnected = \"500ms\"\n",
        ),
    );
    let (tok, sid) = fg.create_session(json!({"user_id": "506"}));
    let req = Req::get("/x").header("authorization", &tok);
    assert_eq!(fg.send(&req).status, 200);
    assert_eq!(fg.metric("fluxgate_invalidation_subscribed"), 0.0);
    // Deleted behind fluxgate's back, without any invalidation message.
    redis.cli(&["DEL", &format!("fluxgate:session:{sid}")]);
    let took = eventually(Duration::from_secs(5), || fg.send(&req).status == 401)
        .expect("the capped TTL never expired the cached session");
    eprintln!(
        "unsubscribed instance noticed the deletion after {took:?} (cap 500ms, cache_ttl 1h)"
    );
}

#[test]
fn the_cache_is_cleared_when_the_subscription_comes_back() {
    require_redis!();
    let redis = RedisServer::start();
    let up = Upstream::start();
    let fg = Fluxgate::start(
        up.addr,
        &redis_sessions(&redis.url(), "")
            .replace("[sessions]\n", "[sessions]\ncache_ttl = \"1h\"\n"),
    );
    assert!(eventually(Duration::from_secs(10), || subscribed(&fg)).is_some());
    // Stable: no reconnect (and so no clearing) happens by itself.
    std::thread::sleep(Duration::from_millis(2500));
    assert_eq!(fg.metric("fluxgate_invalidation_subscriptions_total"), 1.0);
    let (tok, sid) = fg.create_session(json!({"user_id": "507"}));
    let req = Req::get("/x").header("authorization", &tok);
    assert_eq!(fg.send(&req).status, 200);
    // A revocation fluxgate could not have heard about...
    redis.cli(&["DEL", &format!("fluxgate:session:{sid}")]);
    assert_eq!(
        fg.send(&req).status,
        200,
        "still cached (1h TTL), as expected"
    );
    // ...then the subscription drops and comes back: the cache must not be trusted.
    redis.cli(&["CLIENT", "KILL", "TYPE", "pubsub"]);
    assert!(eventually(Duration::from_secs(10), || fg.send(&req).status == 401).is_some());
    assert!(eventually(Duration::from_secs(10), || subscribed(&fg)).is_some());
    assert_eq!(fg.metric("fluxgate_invalidation_subscriptions_total"), 2.0);
}

#[test]
fn rediss_with_a_private_ca_works() {
    require_redis!();
    let dir = tempfile::tempdir().unwrap();
    let ca =
        rcgen::generate_simple_self_signed(vec!["localhost".into(), "127.0.0.1".into()]).unwrap();
    let cert = dir.path().join("cert.pem");
    let key = dir.path().join("key.pem");
    std::fs::write(&cert, ca.cert.pem()).unwrap();
    std::fs::write(&key, ca.signing_key.serialize_pem()).unwrap();
    let redis = RedisServer::start_tls(&cert, &key, &cert);
    let up = Upstream::start();
    let url = format!("rediss://127.0.0.1:{}", redis.port);
    let fg = Fluxgate::start(
        up.addr,
        &redis_sessions(&url, &format!("tls_ca_file = \"{}\"\n", cert.display())),
    );
    let (tok, _) = fg.create_session(json!({"user_id": "508"}));
    assert_eq!(
        fg.send(&Req::get("/x").header("authorization", &tok))
            .status,
        200
    );
    assert!(eventually(Duration::from_secs(10), || subscribed(&fg)).is_some());
    // Without the CA, the server's certificate is not trusted: fail closed.
    let fg2 = Fluxgate::start(up.addr, &redis_sessions(&url, ""));
    fg2.send(&Req::get("/x").header("authorization", &tok))
        .denial(503, "SERVICE_UNAVAILABLE");
}

#[test]
fn serve_stale_never_answers_on_sudo_routes() {
    require_redis!();
    let mut redis = RedisServer::start();
    let up = Upstream::start();
    let extra = "[sudo]\nsecret = { value = \"sudo-shared-secret-0123456789\" }\n\n[[route]]\nmethods = [\"POST\"]\npath = \"/guilds/:id/delete\"\nsudo = true\n";
    let cfg = format!(
        "{}{extra}",
        redis_sessions(&redis.url(), "").replace(
            "[sessions]\n",
            "[sessions]\ncache_ttl = \"1s\"\nnegative_ttl = \"1s\"\non_store_error = \"serve_stale\"\nstale_grace = \"5m\"\n",
        )
    );
    let fg = Fluxgate::start(up.addr, &cfg);
    let (tok, sid) = fg.create_session(json!({"user_id": "509"}));
    let proof = fg
        .admin("POST", &format!("/v1/sessions/{sid}/sudo"), None)
        .json()["token"]
        .as_str()
        .unwrap()
        .to_string();
    let sensitive = Req::new("POST", "/guilds/1/delete")
        .header("authorization", &tok)
        .header("x-fluxer-sudo-mode-jwt", &proof);
    assert_eq!(fg.send(&sensitive).status, 200);
    redis.kill9();
    std::thread::sleep(Duration::from_millis(1100));
    assert_eq!(
        fg.send(&Req::get("/x").header("authorization", &tok))
            .status,
        200,
        "stale on an ordinary route"
    );
    fg.send(&sensitive).denial(503, "SERVICE_UNAVAILABLE");
}

#[test]
fn an_instance_idle_through_a_redis_restart_answers_its_first_requests() {
    // Every worker's connection went dead with the old server; the first command on each
    // learns it only by failing. That must not become a 503 for a valid session.
    require_redis!();
    let mut redis = RedisServer::start();
    let up = Upstream::start();
    let fg = start(&up, &redis, "");
    // Open each worker's Redis connection (a fresh connection each lands on any worker).
    for i in 0..16 {
        let r = fg.send(&Req::get("/x").header("authorization", &format!("flx_{i:036}")));
        assert_eq!(r.status, 401);
    }
    redis.restart();
    wait_ready_again(&fg);
    let record = r#"{"v":1,"user_id":"903","kind":"session","created_at":1767225600,"expires_at":null,"scopes":[]}"#;
    let mut statuses = std::collections::BTreeMap::new();
    for i in 0..16 {
        let token = format!("flx_restartedToken{i:022}");
        let sid = fluxgate::credential::Sid::of(&token).encode();
        redis.cli(&["SET", &format!("fluxgate:session:{sid}"), record]);
        let r = fg.send(&Req::get("/x").header("authorization", &token));
        *statuses.entry(r.status).or_insert(0) += 1;
    }
    assert_eq!(
        statuses.keys().copied().collect::<Vec<_>>(),
        vec![200],
        "first requests after the restart: {statuses:?}"
    );
}

/// The harness's own port race: `free_port` releases a port that another test's server may
/// take before redis-server binds it. The first start then moves to another port instead of
/// failing (or hanging on a PING to whoever took the port).
#[test]
fn the_test_redis_moves_off_a_port_taken_before_it_started() {
    crate::require_redis!();
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let busy = taken.local_addr().unwrap().port();
    let r = RedisServer::start_first_on(busy, &[], &[]);
    assert_ne!(r.port, busy);
    assert_eq!(r.cli(&["PING"]).trim(), "PONG");
}
