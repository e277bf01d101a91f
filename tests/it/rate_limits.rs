//! Rate limits and lockouts through the real binary: Fluxer's 429 format, body and parameter
//! keys, the global per-user bucket, lockouts under concurrency, and the Redis backend.

use crate::common::redis::RedisServer;
use crate::common::*;
use crate::require_redis;
use serde_json::json;
use std::io::{Read, Write};
use std::time::Duration;

const LIMITS: &str = r#"
[rate_limits]
global_limit = 0

[[rate_limits.bucket]]
name = "auth:login"
limit = 3
window = "1m"
key = "ip"

[[rate_limits.bucket]]
name = "by-email"
limit = 2
window = "1m"
key = "body:email"

[[rate_limits.bucket]]
name = "by-code"
limit = 2
window = "1m"
key = "param:code"
scope = "shared"

[[rate_limits.bucket]]
name = "per-user"
limit = 2
window = "1m"
key = "user"

[[rate_limits.lockout]]
name = "login"
key = "body:email"
statuses = [401]
max_failures = 3
find_time = "10m"
ban_time = "10m"

[[route]]
methods = ["POST"]
path = "/auth/login"
auth = "none"
rate_limits = ["auth:login"]

[[route]]
methods = ["POST"]
path = "/auth/email"
auth = "none"
rate_limits = ["by-email"]

[[route]]
methods = ["GET"]
path = "/auth/handoff/:code/status"
auth = "none"
rate_limits = ["by-code"]

[[route]]
path = "/me"
rate_limits = ["per-user"]

[[route]]
methods = ["POST"]
path = "/auth/guess"
auth = "none"
lockout = "login"
"#;

fn assert_429(r: &Resp, scope: &str, bucket: &str) {
    let body = r.denial(429, "RATE_LIMITED");
    assert_eq!(body["global"], false);
    let retry = body["retry_after"]
        .as_f64()
        .expect("retry_after is a number");
    assert!(retry > 0.0, "{body}");
    let secs: u64 = r.header("retry-after").unwrap().parse().unwrap();
    assert!(
        secs >= 1 && secs as f64 >= retry,
        "Retry-After {secs} vs retry_after {retry}"
    );
    assert_eq!(r.header("x-ratelimit-scope"), Some(scope));
    assert_eq!(r.header("x-ratelimit-global"), None);
    assert_eq!(r.header("x-ratelimit-remaining"), Some("0"));
    assert!(r.header("x-ratelimit-limit").is_some());
    assert!(r.header("x-ratelimit-reset").unwrap().contains('.'));
    assert!(r.header("x-ratelimit-reset-after").unwrap().contains('.'));
    let want = &fluxgate::policy::ratelimit::name_hash(bucket);
    assert_eq!(r.header("x-ratelimit-bucket"), Some(want.as_str()));
    assert_eq!(want.len(), 16);
}

fn post_json(path: &str, body: &serde_json::Value) -> Req {
    Req::new("POST", path)
        .header("content-type", "application/json")
        .body(body.to_string().as_bytes())
}

#[test]
fn the_limit_th_request_passes_and_the_next_gets_fluxers_429_without_reaching_the_upstream() {
    let up = Upstream::start();
    let fg = Fluxgate::start(up.addr, LIMITS);
    for _ in 0..3 {
        assert_eq!(fg.send(&Req::new("POST", "/auth/login")).status, 200);
    }
    let r = fg.send(&Req::new("POST", "/v1/auth/login"));
    assert_429(&r, "user", "auth:login");
    assert_eq!(r.header("x-ratelimit-limit"), Some("3"));
    assert_eq!(up.count(), 3);
}

#[test]
fn email_case_variants_share_a_bucket_and_bodies_reach_the_upstream_intact() {
    let up = Upstream::start();
    let fg = Fluxgate::start(up.addr, LIMITS);
    let a = json!({"email": "Bob@Example.com", "password": "x"});
    let b = json!({"email": "  bob@example.COM", "password": "y"});
    assert_eq!(fg.send(&post_json("/auth/email", &a)).status, 200);
    assert_eq!(up.last().body, a.to_string().as_bytes());
    assert_eq!(fg.send(&post_json("/auth/email", &b)).status, 200);
    assert_429(&fg.send(&post_json("/auth/email", &a)), "user", "by-email");
    // Another address has its own bucket.
    assert_eq!(
        fg.send(&post_json(
            "/auth/email",
            &json!({"email": "eve@example.com"})
        ))
        .status,
        200
    );
}

#[test]
fn missing_or_malformed_bodies_are_limited_by_ip_and_oversized_ones_are_refused() {
    let up = Upstream::start();
    let fg = Fluxgate::start(up.addr, LIMITS);
    // Each falls back to the client IP: together they share one bucket of 2.
    for body in [&b"{}"[..], b"not json"] {
        let r = fg.send(&Req::new("POST", "/auth/email").body(body));
        assert_eq!(r.status, 200);
        assert_eq!(up.last().body, body, "forwarded untouched");
    }
    assert_429(
        &fg.send(&Req::new("POST", "/auth/email").body(b"[]")),
        "user",
        "by-email",
    );
    // A body too large to read ahead cannot pick its own key: refused, never forwarded.
    let big = json!({"email": "x@example.com", "pad": "p".repeat(20 * 1024)}).to_string();
    let fg2 = Fluxgate::start(up.addr, LIMITS);
    up.clear();
    let r = fg2.send(&Req::new("POST", "/auth/email").body(big.as_bytes()));
    r.denial(413, "PAYLOAD_TOO_LARGE");
    assert_eq!(up.count(), 0);
}

fn chunked(path: &str, body: &str, status: &str) -> Vec<u8> {
    format!(
        "POST {path} HTTP/1.1\r\nHost: a\r\nConnection: close\r\nContent-Type: application/json\r\nx-upstream-status: {status}\r\nTransfer-Encoding: chunked\r\n\r\n{:x}\r\n{body}\r\n0\r\n\r\n",
        body.len()
    )
    .into_bytes()
}

#[test]
fn a_chunked_body_cannot_dodge_a_lockout_keyed_by_its_email() {
    // Sent chunked, the body has no Content-Length; it is still read and keyed by the e-mail,
    // so the victim's lockout counts it (it does not fall back to a per-IP count).
    let up = Upstream::start();
    let fg = Fluxgate::start(up.addr, LIMITS);
    let body = r#"{"email":"victim@example.com","password":"guess"}"#;
    for i in 0..3 {
        let r = send_raw(fg.proxy, &chunked("/auth/guess", body, "401"));
        assert_eq!(r.status, 401, "attempt {i}: {}", r.text());
    }
    assert_eq!(up.last().body, body.as_bytes(), "forwarded intact");
    let before = up.count();
    // Banned for the e-mail, however the body is framed.
    send_raw(fg.proxy, &chunked("/auth/guess", body, "200")).denial(429, "RATE_LIMITED");
    fg.send(&post_json(
        "/auth/guess",
        &json!({"email": "victim@example.com"}),
    ))
    .denial(429, "RATE_LIMITED");
    assert_eq!(up.count(), before);
    // A chunked body over 16 KiB is refused rather than keyed by IP.
    let big = json!({"email": "other@example.com", "pad": "p".repeat(20 * 1024)}).to_string();
    send_raw(fg.proxy, &chunked("/auth/guess", &big, "401")).denial(413, "PAYLOAD_TOO_LARGE");
    assert_eq!(up.count(), before);
}

#[test]
fn a_path_parameter_key_counts_per_value() {
    let up = Upstream::start();
    let fg = Fluxgate::start(up.addr, LIMITS);
    for _ in 0..2 {
        assert_eq!(fg.send(&Req::get("/auth/handoff/abc/status")).status, 200);
    }
    assert_429(
        &fg.send(&Req::get("/auth/handoff/abc/status")),
        "shared",
        "by-code",
    );
    assert_eq!(fg.send(&Req::get("/auth/handoff/xyz/status")).status, 200);
}

#[test]
fn user_keyed_buckets_count_per_user_and_the_global_bucket_comes_first() {
    let up = Upstream::start();
    let fg = Fluxgate::start(
        up.addr,
        &LIMITS.replace(
            "global_limit = 0",
            "global_limit = 3\nglobal_window = \"1m\"",
        ),
    );
    let (a, _) = fg.create_session(json!({"user_id": "1"}));
    let (b, _) = fg.create_session(json!({"user_id": "2"}));
    for _ in 0..2 {
        assert_eq!(
            fg.send(&Req::get("/me").header("authorization", &a)).status,
            200
        );
    }
    assert_429(
        &fg.send(&Req::get("/me").header("authorization", &a)),
        "user",
        "per-user",
    );
    assert_eq!(
        fg.send(&Req::get("/me").header("authorization", &b)).status,
        200
    );
    // User 1 has now made 3 authenticated requests: the global per-user bucket refuses first.
    let r = fg.send(&Req::get("/anything").header("authorization", &a));
    let body = r.denial(429, "RATE_LIMITED");
    assert_eq!(body["global"], true);
    assert_eq!(r.header("x-ratelimit-global"), Some("true"));
    assert_eq!(r.header("x-ratelimit-scope"), Some("global"));
}

#[test]
fn successful_responses_carry_bucket_headers_when_configured() {
    let up = Upstream::start();
    let fg = Fluxgate::start(
        up.addr,
        &LIMITS.replace(
            "global_limit = 0",
            "global_limit = 0\nheaders_on_success = true",
        ),
    );
    let r = fg.send(&Req::new("POST", "/auth/login"));
    assert_eq!(r.status, 200);
    assert_eq!(r.header("x-ratelimit-limit"), Some("3"));
    assert_eq!(r.header("x-ratelimit-remaining"), Some("2"));
    assert!(r.header("x-ratelimit-bucket").is_some());
    let fg2 = Fluxgate::start(up.addr, LIMITS);
    assert_eq!(
        fg2.send(&Req::new("POST", "/auth/login"))
            .header("x-ratelimit-limit"),
        None
    );
}

#[test]
fn expect_100_continue_on_a_body_keyed_route_works() {
    let up = Upstream::start();
    let fg = Fluxgate::start(up.addr, LIMITS);
    let body = json!({"email": "c@example.com"}).to_string();
    let mut s = std::net::TcpStream::connect(fg.proxy).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let head = format!(
        "POST /auth/email HTTP/1.1\r\nhost: x\r\ncontent-length: {}\r\nexpect: 100-continue\r\nconnection: close\r\n\r\n",
        body.len()
    );
    s.write_all(head.as_bytes()).unwrap();
    let mut buf = [0u8; 64];
    let n = s.read(&mut buf).unwrap();
    assert!(
        buf[..n].starts_with(b"HTTP/1.1 100"),
        "{:?}",
        String::from_utf8_lossy(&buf[..n])
    );
    s.write_all(body.as_bytes()).unwrap();
    let mut rest = Vec::new();
    let _ = s.read_to_end(&mut rest);
    let r = parse_response(&rest);
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&rest));
    assert_eq!(up.last().body, body.as_bytes());
    assert!(up.last().get("expect").is_none());
}

#[test]
fn a_lockout_bans_after_n_failures_without_asking_the_upstream() {
    let up = Upstream::start();
    let fg = Fluxgate::start(up.addr, LIMITS);
    let guess = |email: &str, status: &str| {
        fg.send(
            &post_json("/auth/guess", &json!({"email": email})).header("x-upstream-status", status),
        )
    };
    // Successes never count.
    for _ in 0..5 {
        assert_eq!(guess("victim@example.com", "200").status, 200);
    }
    for _ in 0..3 {
        assert_eq!(guess("victim@example.com", "401").status, 401);
    }
    let before = up.count();
    let r = guess("VICTIM@example.com", "200");
    let body = r.denial(429, "RATE_LIMITED");
    assert!(body["retry_after"].as_f64().unwrap() > 590.0, "{body}");
    assert_eq!(
        up.count(),
        before,
        "a banned attempt must not reach the upstream"
    );
    // Someone else is not affected.
    assert_eq!(guess("other@example.com", "401").status, 401);
}

/// Three failures spread over 2.2 s of a 3 s window: a sliding window bans at the third,
/// where a leaky bucket draining one per second never would.
fn spread_failures_within_find_time_ban(fg: &Fluxgate, up: &Upstream) {
    let guess = |status: &str| {
        fg.send(
            &post_json("/auth/slow-guess", &json!({"email": "spread@example.com"}))
                .header("x-upstream-status", status),
        )
    };
    for i in 0..3 {
        if i > 0 {
            std::thread::sleep(std::time::Duration::from_millis(1100));
        }
        assert_eq!(guess("401").status, 401, "failure {i}");
    }
    let before = up.count();
    let body = guess("200").denial(429, "RATE_LIMITED");
    assert!(body["retry_after"].as_f64().unwrap() > 4.0, "{body}");
    assert_eq!(up.count(), before);
}

const SPREAD: &str = r#"
[[rate_limits.lockout]]
name = "spread"
key = "body:email"
statuses = [401]
max_failures = 3
find_time = "3s"
ban_time = "5s"

[[route]]
methods = ["POST"]
path = "/auth/slow-guess"
auth = "none"
lockout = "spread"
"#;

#[test]
fn failures_spread_within_find_time_ban_locally() {
    let up = Upstream::start();
    let fg = Fluxgate::start(up.addr, &format!("{LIMITS}{SPREAD}"));
    spread_failures_within_find_time_ban(&fg, &up);
}

#[test]
fn failures_spread_within_find_time_ban_on_redis() {
    require_redis!();
    let redis = RedisServer::start();
    let up = Upstream::start();
    let fg = Fluxgate::start(
        up.addr,
        &format!("{}{SPREAD}", redis_limits(&redis.url(), "")),
    );
    spread_failures_within_find_time_ban(&fg, &up);
}

#[test]
fn fifty_concurrent_wrong_attempts_let_at_most_n_reach_the_upstream() {
    let up = Upstream::start();
    let fg = Fluxgate::start(up.addr, LIMITS);
    let addr = fg.proxy;
    let threads: Vec<_> = (0..50)
        .map(|_| {
            std::thread::spawn(move || {
                post_json("/auth/guess", &json!({"email": "victim@example.com"}))
                    .header("x-upstream-status", "401")
                    .send(addr)
                    .status
            })
        })
        .collect();
    let statuses: Vec<u16> = threads.into_iter().map(|t| t.join().unwrap()).collect();
    let reached = up.count();
    assert!(reached <= 3, "{reached} attempts reached the upstream");
    assert_eq!(statuses.iter().filter(|s| **s == 401).count(), reached);
    assert_eq!(statuses.iter().filter(|s| **s == 429).count(), 50 - reached);
}

fn redis_limits(url: &str, extra: &str) -> String {
    format!("{LIMITS}\n[redis]\nurls = [\"{url}\"]\ncommand_timeout = \"300ms\"\nconnect_timeout = \"300ms\"\n").replace(
        "[rate_limits]\nglobal_limit = 0",
        &format!("[rate_limits]\nglobal_limit = 0\nbackend = \"redis\"\n{extra}"),
    )
}

#[test]
fn fifty_concurrent_wrong_attempts_across_two_instances_on_redis_let_at_most_n_through() {
    // The same brute force, spread over two instances that share the lockout in Redis.
    require_redis!();
    let redis = RedisServer::start();
    let up = Upstream::start();
    let a = Fluxgate::start(up.addr, &redis_limits(&redis.url(), ""));
    let b = Fluxgate::start(up.addr, &redis_limits(&redis.url(), ""));
    let addrs = [a.proxy, b.proxy];
    let threads: Vec<_> = (0..50)
        .map(|i| {
            let addr = addrs[i % 2];
            std::thread::spawn(move || {
                post_json("/auth/guess", &json!({"email": "Victim@Example.com "}))
                    .header("x-upstream-status", "401")
                    .send(addr)
                    .status
            })
        })
        .collect();
    let statuses: Vec<u16> = threads.into_iter().map(|t| t.join().unwrap()).collect();
    let reached = up.count();
    assert!(reached <= 3, "{reached} attempts reached the upstream");
    assert!(
        reached >= 1,
        "no attempt reached the upstream: {statuses:?}"
    );
    assert_eq!(statuses.iter().filter(|s| **s == 401).count(), reached);
    assert_eq!(statuses.iter().filter(|s| **s == 429).count(), 50 - reached);
}

#[test]
fn two_instances_sharing_a_redis_limiter_enforce_the_combined_count() {
    require_redis!();
    let redis = RedisServer::start();
    let up = Upstream::start();
    let a = Fluxgate::start(up.addr, &redis_limits(&redis.url(), ""));
    let b = Fluxgate::start(up.addr, &redis_limits(&redis.url(), ""));
    assert_eq!(a.send(&Req::new("POST", "/auth/login")).status, 200);
    assert_eq!(b.send(&Req::new("POST", "/auth/login")).status, 200);
    assert_eq!(a.send(&Req::new("POST", "/auth/login")).status, 200);
    assert_429(
        &b.send(&Req::new("POST", "/auth/login")),
        "user",
        "auth:login",
    );
    assert_429(
        &a.send(&Req::new("POST", "/auth/login")),
        "user",
        "auth:login",
    );
    // The lockout is shared too.
    for fg in [&a, &b, &a] {
        let r = fg.send(
            &post_json("/auth/guess", &json!({"email": "v@example.com"}))
                .header("x-upstream-status", "401"),
        );
        assert_eq!(r.status, 401);
    }
    b.send(&post_json(
        "/auth/guess",
        &json!({"email": "v@example.com"}),
    ))
    .denial(429, "RATE_LIMITED");
    let keys = redis.cli(&["KEYS", "fluxgate:*"]);
    assert!(
        keys.contains("fluxgate:rl:auth:login:") && keys.contains("fluxgate:lo:login:"),
        "{keys}"
    );
    assert!(
        !keys.contains("example.com"),
        "no e-mail may be stored in clear: {keys}"
    );
}

#[test]
fn redis_down_uses_the_configured_fallbacks_and_recovers() {
    require_redis!();
    let mut redis = RedisServer::start();
    let up = Upstream::start();
    let fg = Fluxgate::start(up.addr, &redis_limits(&redis.url(), ""));
    assert_eq!(fg.send(&Req::new("POST", "/auth/login")).status, 200);
    redis.kill9();
    // Buckets fall back to local counters (default on_error = "local"): still limited.
    let statuses: Vec<u16> = (0..4)
        .map(|_| fg.send(&Req::new("POST", "/auth/login")).status)
        .collect();
    assert_eq!(statuses, vec![200, 200, 200, 429]);
    // Lockouts refuse (default lockout_on_error = "deny").
    fg.send(&post_json(
        "/auth/guess",
        &json!({"email": "v@example.com"}),
    ))
    .denial(503, "SERVICE_UNAVAILABLE");
    redis.restart();
    let mut ok = false;
    for _ in 0..100 {
        if fg
            .send(&post_json(
                "/auth/guess",
                &json!({"email": "v@example.com"}),
            ))
            .status
            == 200
        {
            ok = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(ok, "the lockout never came back with Redis");
}

#[test]
fn deny_fallback_refuses_buckets_while_redis_is_down() {
    require_redis!();
    let mut redis = RedisServer::start();
    let up = Upstream::start();
    let fg = Fluxgate::start(
        up.addr,
        &redis_limits(&redis.url(), "on_error = \"deny\"\n"),
    );
    redis.kill9();
    fg.send(&Req::new("POST", "/auth/login"))
        .denial(503, "SERVICE_UNAVAILABLE");
}
