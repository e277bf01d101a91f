//! Sessions validated by the backend, through the real binary, in front of the Fluxer-like
//! fake (which is also the upstream): tokens fluxgate never saw are asked of `/users/@me` or
//! introspected, cached by the same rules as store reads, and a failing backend fails closed.

use crate::common::fluxer::{ALICE, CLIENT_ID, CLIENT_SECRET, Fluxer, OAUTH2_APP};
use crate::common::{Fluxgate, Req};
use std::time::Duration;

fn now() -> i64 {
    fluxgate::clock::system().now_secs()
}

fn backend_config(f: &Fluxer, extra: &str) -> String {
    format!(
        r#"
[sessions]
store = "backend"
cache_ttl = "1s"
negative_ttl = "1s"
[sessions.backend]
introspect_url = "{introspect}"
client_id = "{CLIENT_ID}"
client_secret = {{ value = "{CLIENT_SECRET}" }}
request_timeout = "500ms"
[[route]]
path = "/guilds"
scopes = ["guilds"]
{extra}
"#,
        introspect = f.url("/oauth2/introspect"),
    )
}

fn start(f: &Fluxer, extra: &str) -> Fluxgate {
    Fluxgate::start(f.addr, &backend_config(f, extra))
}

#[test]
fn a_token_the_backend_issued_is_admitted_with_its_identity() {
    let f = Fluxer::start();
    let fg = start(&f, "");
    let token = f.session_token(ALICE.user_id);
    let r = Req::get("/channels/1")
        .header("authorization", &token)
        .send(fg.proxy);
    assert_eq!(r.status, 200, "{}", r.text());
    let seen = f.last();
    assert_eq!(seen.target, "/channels/1");
    assert_eq!(
        seen.get("x-fluxgate-user-id").as_deref(),
        Some(ALICE.user_id)
    );
    assert_eq!(seen.get("x-fluxgate-auth-kind").as_deref(), Some("session"));
    // The client's own Authorization goes through untouched: the API reads it as before.
    assert_eq!(seen.get("authorization").as_deref(), Some(token.as_str()));
    assert_eq!(f.me_calls_for(&token), 1);
    // Cached: a second request asks nobody.
    let r = Req::get("/channels/1")
        .header("authorization", &token)
        .send(fg.proxy);
    assert_eq!(r.status, 200);
    assert_eq!(f.me_calls_for(&token), 1);
    assert!(fg.metric("fluxgate_backend_auth_total{result=\"session\"}") >= 1.0);
}

#[test]
fn an_unknown_token_is_401_and_remembered_negatively() {
    let f = Fluxer::start();
    let fg = start(&f, "");
    let bogus = "flx_000000000000000000000000000000000000";
    for _ in 0..3 {
        Req::get("/x")
            .header("authorization", bogus)
            .send(fg.proxy)
            .denial(401, "UNAUTHORIZED");
    }
    assert_eq!(f.me_calls_for(bogus), 1, "the negative answer is cached");
    assert_eq!(f.calls("/x"), 0, "nothing reached the upstream");
}

#[test]
fn sixty_four_concurrent_requests_with_one_new_token_make_one_backend_call() {
    let f = Fluxer::start();
    // No per-user limit: 64 requests at once from one user are the point here.
    let fg = start(&f, "[rate_limits]\nglobal_limit = 0\n");
    f.set_delay(Duration::from_millis(200));
    let token = f.session_token(ALICE.user_id);
    let proxy = fg.proxy;
    let handles: Vec<_> = (0..64)
        .map(|_| {
            let token = token.clone();
            std::thread::spawn(move || {
                Req::get("/x")
                    .header("authorization", &token)
                    .send(proxy)
                    .status
            })
        })
        .collect();
    for h in handles {
        assert_eq!(h.join().unwrap(), 200);
    }
    assert_eq!(f.me_calls_for(&token), 1);
}

#[test]
fn a_token_revoked_inside_the_backend_stops_working_within_the_cache_ttl() {
    let f = Fluxer::start();
    let fg = start(&f, "");
    let token = f.session_token(ALICE.user_id);
    let ok = |t: &str| {
        Req::get("/x")
            .header("authorization", t)
            .send(fg.proxy)
            .status
    };
    assert_eq!(ok(&token), 200);
    f.revoke(&token);
    // cache_ttl is 1 s: past it, the backend is asked again and says no.
    std::thread::sleep(Duration::from_millis(1200));
    assert_eq!(ok(&token), 401);
}

#[test]
fn a_backend_that_is_down_gets_503_never_200_or_401_and_recovers_without_restart() {
    let f = Fluxer::start();
    let fg = start(&f, "");
    let token = f.session_token(ALICE.user_id);
    f.set_down(true);
    let before = f.calls("/x");
    for _ in 0..3 {
        let r = Req::get("/x")
            .header("authorization", &token)
            .send(fg.proxy);
        r.denial(503, "SERVICE_UNAVAILABLE");
        assert!(r.header("retry-after").is_some());
    }
    assert_eq!(f.calls("/x"), before, "nothing was forwarded");
    // A slow backend is a timeout: also 503.
    f.set_down(false);
    f.set_delay(Duration::from_millis(900));
    Req::get("/x")
        .header("authorization", &token)
        .send(fg.proxy)
        .denial(503, "SERVICE_UNAVAILABLE");
    f.set_delay(Duration::ZERO);
    // Errors are never cached: the next request asks again and is admitted.
    let r = Req::get("/x")
        .header("authorization", &token)
        .send(fg.proxy);
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(fg.metric("fluxgate_backend_auth_total{result=\"status\"}") >= 3.0);
    assert!(fg.metric("fluxgate_backend_auth_total{result=\"timeout\"}") >= 1.0);
}

#[test]
fn an_answer_of_the_wrong_shape_is_never_trusted() {
    let f = Fluxer::start();
    // The echo path answers 200 JSON without an "id": not a user.
    let extra = format!("validate_url = \"{}\"\n", f.url("/not-a-user"));
    let cfg = backend_config(&f, "").replace(
        "request_timeout = \"500ms\"\n",
        &format!("request_timeout = \"500ms\"\n{extra}"),
    );
    let fg = Fluxgate::start(f.addr, &cfg);
    let token = f.session_token(ALICE.user_id);
    let r = Req::get("/x")
        .header("authorization", &token)
        .send(fg.proxy);
    r.denial(503, "SERVICE_UNAVAILABLE");
    assert_eq!(f.calls("/x"), 0, "nothing was forwarded");
}

#[test]
fn oauth2_tokens_are_introspected_for_activity_scopes_and_expiry() {
    let f = Fluxer::start();
    let fg = start(&f, "");
    let far = now() + 3600;
    let identify = f.oauth2_token(ALICE.user_id, "identify", far);
    let guilds = f.oauth2_token(ALICE.user_id, "identify guilds", far);
    let bearer = |t: &str| format!("Bearer {t}");
    // Missing scope.
    Req::get("/guilds")
        .header("authorization", &bearer(&identify))
        .send(fg.proxy)
        .denial(403, "MISSING_OAUTH_SCOPE");
    let r = Req::get("/guilds")
        .header("authorization", &bearer(&guilds))
        .header("x-fluxgate-client-id", "spoofed-app")
        .send(fg.proxy);
    assert_eq!(r.status, 200, "{}", r.text());
    let seen = f.last();
    assert_eq!(seen.get("x-fluxgate-auth-kind").as_deref(), Some("oauth2"));
    assert_eq!(
        seen.get("x-fluxgate-scopes").as_deref(),
        Some("identify guilds")
    );
    // The application the token was issued to, from introspection's client_id (never the
    // client's own copy of the header).
    assert_eq!(
        seen.all("x-fluxgate-client-id"),
        vec![OAUTH2_APP.to_string()]
    );
    // Inactive.
    Req::get("/x")
        .header("authorization", "Bearer not-a-live-token-0123456789")
        .send(fg.proxy)
        .denial(401, "UNAUTHORIZED");
    // Expiring in 2 s: refused after that even though the cache would keep it longer.
    let soon = f.oauth2_token(ALICE.user_id, "identify", now() + 2);
    let cfg_long = backend_config(&f, "").replace("cache_ttl = \"1s\"", "cache_ttl = \"1h\"");
    let long = Fluxgate::start(f.addr, &cfg_long);
    let status = |t: &str| {
        Req::get("/x")
            .header("authorization", &bearer(t))
            .send(long.proxy)
            .status
    };
    assert_eq!(status(&soon), 200);
    std::thread::sleep(Duration::from_millis(2200));
    assert_eq!(status(&soon), 401);
}

#[test]
fn a_cookie_session_reaches_an_authorization_only_upstream_as_authorization() {
    let f = Fluxer::start();
    let extra = r#"
[[route]]
path = "/no-forward"
forward_credential = false
[[route]]
path = "/cookies-pass"
pass_cookies = true
"#;
    let cfg = backend_config(&f, extra).replace(
        "cache_ttl = \"1s\"",
        "cache_ttl = \"1s\"\nforward_credential = \"authorization\"",
    );
    let fg = Fluxgate::start(f.addr, &cfg);
    let token = f.session_token(ALICE.user_id);
    let cookie = format!("fluxer_session={token}; theme=dark");
    let get = |path: &str| {
        let r = Req::get(path).header("cookie", &cookie).send(fg.proxy);
        assert_eq!(r.status, 200, "{path}: {}", r.text());
        f.last()
    };
    let seen = get("/users/@me/settings");
    assert_eq!(seen.get("authorization").as_deref(), Some(token.as_str()));
    assert_eq!(seen.get("cookie").as_deref(), Some("theme=dark"));
    assert_eq!(
        seen.get("x-fluxgate-user-id").as_deref(),
        Some(ALICE.user_id)
    );
    // A route that opts out, and one that passes the cookies through, get no Authorization.
    assert_eq!(get("/no-forward").get("authorization"), None);
    let passed = get("/cookies-pass");
    assert_eq!(passed.get("authorization"), None);
    assert!(passed.get("cookie").unwrap().contains("fluxer_session="));
    // The client's own Authorization is used (and forwarded) as sent, never replaced.
    let other = f.session_token(ALICE.user_id);
    let r = Req::get("/x")
        .header("authorization", &other)
        .header("cookie", &cookie)
        .send(fg.proxy);
    assert_eq!(r.status, 200);
    assert_eq!(
        f.last().get("authorization").as_deref(),
        Some(other.as_str())
    );
}

#[test]
fn without_credential_forwarding_a_cookie_session_sends_no_authorization() {
    let f = Fluxer::start();
    let fg = start(&f, "");
    let token = f.session_token(ALICE.user_id);
    let r = Req::get("/x")
        .header("cookie", &format!("fluxer_session={token}"))
        .send(fg.proxy);
    assert_eq!(r.status, 200, "{}", r.text());
    let seen = f.last();
    assert_eq!(seen.get("authorization"), None);
    assert_eq!(
        seen.get("x-fluxgate-user-id").as_deref(),
        Some(ALICE.user_id)
    );
}
