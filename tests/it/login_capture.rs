//! Login capture (the token-handler pattern, contract §8) through the real binary, in front of
//! the Fluxer-like fake: a browser logs in with its password, gets the session as a hardened
//! cookie, uses it against an API that only reads `Authorization`, and logs out; MFA completes
//! with its ticket; hostile or oversized login answers never become a cookie.

use crate::common::fluxer::{ALICE, BOB, Fluxer};
use crate::common::{Fluxgate, Req, Resp};
use serde_json::json;

const ORIGIN: &str = "https://web.fluxer.app";

fn config(extra: &str) -> String {
    format!(
        r#"
[sessions]
store = "backend"
cache_ttl = "30s"
forward_credential = "authorization"
[csrf]
allowed_origins = ["{ORIGIN}"]
[[route]]
name = "login"
methods = ["POST"]
path = "/auth/login"
auth = "none"
role = "login"
[[route]]
name = "login totp"
methods = ["POST"]
path = "/auth/login/mfa/totp"
auth = "none"
role = "login"
[[route]]
name = "logout"
methods = ["POST"]
path = "/auth/logout"
role = "logout"
{extra}
"#
    )
}

fn post_json(path: &str, body: serde_json::Value) -> Req {
    Req::new("POST", path)
        .header("content-type", "application/json")
        .header("origin", ORIGIN)
        .body(body.to_string().as_bytes())
}

fn login(fg: &Fluxgate, email: &str, password: &str) -> Resp {
    post_json("/auth/login", json!({"email": email, "password": password})).send(fg.proxy)
}

/// The `fluxer_session` Set-Cookie values of a response.
fn session_cookies(r: &Resp) -> Vec<String> {
    r.headers
        .iter()
        .filter(|(k, v)| k.eq_ignore_ascii_case("set-cookie") && v.starts_with("fluxer_session="))
        .map(|(_, v)| v.clone())
        .collect()
}

/// The cookie's value, after checking it is set exactly once with the hardened attributes.
fn hardened_cookie(r: &Resp) -> String {
    let set = session_cookies(r);
    assert_eq!(set.len(), 1, "one session Set-Cookie: {set:?}");
    let c = &set[0];
    for attr in [
        "HttpOnly",
        "Secure",
        "SameSite=Lax",
        "Path=/",
        "Max-Age=2592000",
    ] {
        assert!(c.contains(attr), "{attr} missing from {c}");
    }
    let value = c["fluxer_session=".len()..].split(';').next().unwrap_or("");
    value.to_string()
}

#[test]
fn browser_login_sets_a_hardened_cookie_that_works_until_logout() {
    let f = Fluxer::start();
    let fg = Fluxgate::start(f.addr, &config(""));
    let r = login(&fg, ALICE.email, ALICE.password);
    assert_eq!(r.status, 200, "{}", r.text());
    let token = hardened_cookie(&r);
    // strip_token is off: the body is the API's, token included.
    assert_eq!(r.json()["token"], token.as_str());
    assert_eq!(r.json()["user_id"], ALICE.user_id);
    assert!(fg.metric("fluxgate_login_capture_total{result=\"captured\"}") >= 1.0);

    // The cookie alone opens the API; the API reads Authorization and gets the token there.
    let r = Req::get("/channels/1")
        .header("cookie", &format!("fluxer_session={token}"))
        .send(fg.proxy);
    assert_eq!(r.status, 200, "{}", r.text());
    let seen = f.last();
    assert_eq!(seen.get("authorization").as_deref(), Some(token.as_str()));
    assert_eq!(
        seen.get("x-fluxgate-user-id").as_deref(),
        Some(ALICE.user_id)
    );
    assert!(
        seen.get("cookie").is_none_or(|c| !c.contains(&token)),
        "the session cookie itself is not forwarded"
    );
    assert_eq!(
        f.me_calls_for(&token),
        0,
        "the login primed the cache: no backend call for the first request"
    );

    // Logout: the API ends the session, fluxgate clears the cookie and forgets the token.
    let r = Req::new("POST", "/auth/logout")
        .header("cookie", &format!("fluxer_session={token}"))
        .header("origin", ORIGIN)
        .send(fg.proxy);
    assert_eq!(r.status, 204, "{}", r.text());
    let cleared = session_cookies(&r);
    assert!(
        cleared.iter().any(|c| c.contains("Max-Age=0")),
        "cookie cleared: {cleared:?}"
    );
    Req::get("/channels/1")
        .header("cookie", &format!("fluxer_session={token}"))
        .send(fg.proxy)
        .denial(401, "UNAUTHORIZED");
}

#[test]
fn mfa_login_passes_the_ticket_through_and_totp_completes_it() {
    let f = Fluxer::start();
    let fg = Fluxgate::start(f.addr, &config(""));
    let r = login(&fg, BOB.email, BOB.password);
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(session_cookies(&r).is_empty(), "no cookie before MFA");
    let answer = r.json();
    assert_eq!(answer["mfa"], true);
    let ticket = answer["ticket"].as_str().expect("ticket").to_string();
    assert!(fg.metric("fluxgate_login_capture_total{result=\"mfa\"}") >= 1.0);

    let r = post_json(
        "/auth/login/mfa/totp",
        json!({"code": BOB.totp, "ticket": ticket}),
    )
    .send(fg.proxy);
    assert_eq!(r.status, 200, "{}", r.text());
    let token = hardened_cookie(&r);
    let r = Req::get("/users/@me/guilds")
        .header("cookie", &format!("fluxer_session={token}"))
        .send(fg.proxy);
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(
        f.last().get("x-fluxgate-user-id").as_deref(),
        Some(BOB.user_id)
    );
}

#[test]
fn strip_token_keeps_the_token_out_of_the_browser() {
    let f = Fluxer::start();
    let fg = Fluxgate::start(f.addr, &config("[login]\nstrip_token = true\n"));
    let r = login(&fg, ALICE.email, ALICE.password);
    assert_eq!(r.status, 200, "{}", r.text());
    let token = hardened_cookie(&r);
    let body = r.json();
    assert!(body.get("token").is_none(), "token stripped: {body}");
    assert_eq!(body["user_id"], ALICE.user_id);
    assert!(!r.text().contains(&token));
    assert_eq!(
        r.header("content-length"),
        Some(r.body.len().to_string().as_str())
    );
}

#[test]
fn wrong_password_passes_through_without_a_cookie() {
    let f = Fluxer::start();
    let fg = Fluxgate::start(f.addr, &config(""));
    let r = login(&fg, ALICE.email, "guess");
    assert_eq!(r.status, 400, "{}", r.text());
    assert_eq!(r.json()["code"], "INVALID_FORM_BODY");
    assert!(session_cookies(&r).is_empty());
    assert!(fg.metric("fluxgate_login_capture_total{result=\"not_success\"}") >= 1.0);
}

#[test]
fn the_upstream_sees_the_login_as_sent_minus_spoofed_identity() {
    let f = Fluxer::start();
    let fg = Fluxgate::start(f.addr, &config(""));
    let body = json!({"email": ALICE.email, "password": ALICE.password});
    let r = post_json("/auth/login?via=web", body.clone())
        .header("x-fluxgate-user-id", "1")
        .header("x-custom", "kept")
        .send(fg.proxy);
    assert_eq!(r.status, 200, "{}", r.text());
    let seen = f.last();
    assert_eq!(seen.target, "/auth/login?via=web");
    assert_eq!(
        seen.get("x-fluxgate-user-id"),
        None,
        "spoofed identity stripped"
    );
    assert_eq!(seen.get("x-custom").as_deref(), Some("kept"));
    let sent: serde_json::Value = serde_json::from_slice(&seen.body).expect("json body");
    assert_eq!(sent, body);
    assert!(r.header("x-request-id").is_some());
}

#[test]
fn hostile_login_answers_never_become_a_cookie() {
    let f = Fluxer::start();
    let fg = Fluxgate::start(f.addr, &config(""));
    let good = "flx_abcdefghijklmnopqrstuvwxyz0123456789";
    let cases: Vec<(&str, Vec<u8>)> = vec![
        // A token that would carry its own cookie attributes.
        (
            "bad_token",
            json!({"token": format!("{good}; Domain=evil.example"), "user_id": "1"})
                .to_string()
                .into_bytes(),
        ),
        // A user id that would break the identity header.
        (
            "bad_user_id",
            json!({"token": good, "user_id": "1\r\nX-Fluxgate-User-Id: 2"})
                .to_string()
                .into_bytes(),
        ),
        // Wrong types.
        (
            "bad_user_id",
            json!({"token": good, "user_id": {"id": 1}})
                .to_string()
                .into_bytes(),
        ),
    ];
    for (reason, body) in cases {
        f.set_login_reply(Some((200, "application/json", body.clone())));
        let r = login(&fg, ALICE.email, ALICE.password);
        assert_eq!(r.status, 200);
        assert!(session_cookies(&r).is_empty(), "{reason}: no cookie");
        assert_eq!(r.body, body, "{reason}: passed through untouched");
        let series = format!("fluxgate_login_capture_total{{result=\"{reason}\"}}");
        assert!(fg.metric(&series) >= 1.0, "{series}");
    }
    // Not JSON.
    f.set_login_reply(Some((
        200,
        "text/plain",
        format!("token={good}").into_bytes(),
    )));
    let r = login(&fg, ALICE.email, ALICE.password);
    assert!(session_cookies(&r).is_empty());
    assert!(fg.metric("fluxgate_login_capture_total{result=\"not_json\"}") >= 1.0);
    // Over the bound: passed through whole, as it came, and not captured.
    let pad = "x".repeat(100 * 1024);
    let huge = json!({"token": good, "user_id": "1", "pad": pad})
        .to_string()
        .into_bytes();
    f.set_login_reply(Some((200, "application/json", huge.clone())));
    let r = login(&fg, ALICE.email, ALICE.password);
    assert_eq!(r.status, 200);
    assert!(session_cookies(&r).is_empty());
    assert_eq!(r.body.len(), huge.len(), "the whole answer arrives");
    assert_eq!(r.body, huge);
    assert!(fg.metric("fluxgate_login_capture_total{result=\"too_large\"}") >= 1.0);
    // The good token was never primed: it is nobody's session.
    Req::get("/channels/1")
        .header("cookie", &format!("fluxer_session={good}"))
        .send(fg.proxy)
        .denial(401, "UNAUTHORIZED");
}

#[test]
fn login_with_the_upstream_down_is_502_in_the_contracts_json() {
    let f = Fluxer::start();
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        l.local_addr().expect("addr")
    };
    let cfg = config(&format!(
        "[sessions.backend]\nvalidate_url = \"{}\"\n",
        f.url("/users/@me")
    ));
    let fg = Fluxgate::start(closed, &cfg);
    login(&fg, ALICE.email, ALICE.password).denial(502, "BAD_GATEWAY");
}

#[test]
fn password_guessing_on_a_captured_login_route_is_locked_out_at_the_edge() {
    // The login exchange is fluxgate's own, so the lockout must still learn the upstream's
    // answer from it.
    let f = Fluxer::start();
    let cfg = config("")
        .replace(
            "role = \"login\"\n[[route]]\nname = \"login totp\"",
            "role = \"login\"\nlockout = \"login\"\n[[route]]\nname = \"login totp\"",
        )
        .replace(
            "[csrf]",
            "[[rate_limits.lockout]]\nname = \"login\"\nkey = \"body:email\"\nstatuses = [400]\nmax_failures = 3\nfind_time = \"10m\"\nban_time = \"10m\"\n[csrf]",
        );
    assert!(cfg.contains("lockout = \"login\""), "{cfg}");
    let fg = Fluxgate::start(f.addr, &cfg);
    for _ in 0..3 {
        assert_eq!(login(&fg, ALICE.email, "guess").status, 400);
    }
    let r = login(&fg, ALICE.email, ALICE.password);
    assert_eq!(r.status, 429, "{}", r.text());
    assert!(session_cookies(&r).is_empty());
    assert_eq!(
        f.calls("/auth/login"),
        3,
        "the fourth attempt never reached the API"
    );
}
