//! The Fluxer-like fake (tests/common/fluxer.rs) over raw HTTP, so it is known to behave before
//! anything builds on it; and the backend resolver against it, end to end.

use crate::common::fluxer::{ALICE, BOB, CLIENT_ID, CLIENT_SECRET, Fluxer, OAUTH2_APP};
use crate::common::{Req, Resp};
use fluxgate::clock::{Clock, SystemClock};
use fluxgate::credential::{Kind, is_session_token};
use fluxgate::secret::Secret;
use fluxgate::session::backend::{BackendError, BackendResolver, BackendSettings};
use serde_json::json;
use std::time::Duration;

fn post_json(f: &Fluxer, path: &str, body: serde_json::Value) -> Resp {
    Req::new("POST", path)
        .header("content-type", "application/json")
        .body(body.to_string().as_bytes())
        .send(f.addr)
}

fn me(f: &Fluxer, authorization: &str) -> Resp {
    Req::get("/users/@me")
        .header("authorization", authorization)
        .send(f.addr)
}

fn introspect(f: &Fluxer, token: &str, basic: Option<(&str, &str)>) -> Resp {
    use base64::Engine;
    let mut req = Req::new("POST", "/oauth2/introspect")
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!("token={token}").as_bytes());
    if let Some((id, secret)) = basic {
        let b = base64::engine::general_purpose::STANDARD.encode(format!("{id}:{secret}"));
        req = req.header("authorization", &format!("Basic {b}"));
    }
    req.send(f.addr)
}

fn assert_unauthorized(r: Resp) {
    assert_eq!(r.status, 401, "{}", r.text());
    assert_eq!(r.json()["code"], "UNAUTHORIZED");
}

#[test]
fn alice_logs_in_and_her_token_opens_users_me_until_she_logs_out() {
    let f = Fluxer::start();
    let r = post_json(
        &f,
        "/auth/login",
        json!({"email": ALICE.email, "password": ALICE.password}),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    let token = r.json()["token"].as_str().unwrap().to_string();
    assert!(is_session_token(&token), "{token}");
    assert_eq!(r.json()["user_id"], ALICE.user_id);
    let u = me(&f, &token);
    assert_eq!(u.status, 200);
    assert_eq!(u.json()["id"], ALICE.user_id);
    assert_eq!(u.json()["mfa_enabled"], false);
    let out = Req::new("POST", "/auth/logout")
        .header("authorization", &token)
        .send(f.addr);
    assert_eq!(out.status, 204);
    assert_unauthorized(me(&f, &token));
    assert_eq!(f.me_calls_for(&token), 2);
    assert_eq!(f.calls("/users/@me"), 2);
    assert_eq!(f.calls("/auth/login"), 1);
}

#[test]
fn a_wrong_password_gets_no_token() {
    let f = Fluxer::start();
    let r = post_json(
        &f,
        "/auth/login",
        json!({"email": ALICE.email, "password": BOB.password}),
    );
    assert_eq!(r.status, 400);
    assert!(r.json().get("token").is_none());
}

#[test]
fn bob_needs_his_totp_code_and_the_ticket_works_once() {
    let f = Fluxer::start();
    let r = post_json(
        &f,
        "/auth/login",
        json!({"email": BOB.email, "password": BOB.password}),
    );
    assert_eq!(r.status, 200);
    let v = r.json();
    assert_eq!(
        (v["mfa"].clone(), v["totp"].clone()),
        (json!(true), json!(true))
    );
    assert!(v.get("token").is_none());
    let ticket = v["ticket"].as_str().unwrap();
    let totp = |code: &str| {
        post_json(
            &f,
            "/auth/login/mfa/totp",
            json!({"code": code, "ticket": ticket}),
        )
    };
    assert_eq!(totp("000000").status, 400);
    let ok = totp(BOB.totp.unwrap());
    assert_eq!(ok.status, 200);
    let token = ok.json()["token"].as_str().unwrap().to_string();
    assert_eq!(me(&f, &token).json()["mfa_enabled"], true);
    assert_eq!(totp(BOB.totp.unwrap()).status, 400, "a ticket is used once");
}

#[test]
fn introspection_needs_the_client_credentials_and_reports_live_tokens_only() {
    let f = Fluxer::start();
    let now = SystemClock.now_secs();
    let live = f.oauth2_token(ALICE.user_id, "identify guilds", now + 3600);
    let expired = f.oauth2_token(ALICE.user_id, "identify", now - 1);
    assert_eq!(introspect(&f, &live, None).status, 401);
    assert_eq!(
        introspect(&f, &live, Some((CLIENT_ID, "wrong"))).status,
        401
    );
    let v = introspect(&f, &live, Some((CLIENT_ID, CLIENT_SECRET))).json();
    assert_eq!(v["active"], true);
    assert_eq!(v["sub"], ALICE.user_id);
    assert_eq!(v["scope"], "identify guilds");
    assert_eq!(v["client_id"], OAUTH2_APP);
    assert_eq!(v["exp"], now + 3600);
    for dead in [expired.as_str(), "unknown-token"] {
        let v = introspect(&f, dead, Some((CLIENT_ID, CLIENT_SECRET))).json();
        assert_eq!(v, json!({"active": false}));
    }
    f.revoke(&live);
    let v = introspect(&f, &live, Some((CLIENT_ID, CLIENT_SECRET))).json();
    assert_eq!(v, json!({"active": false}));
}

#[test]
fn bearer_and_bot_tokens_open_users_me_and_revoke_closes_them() {
    let f = Fluxer::start();
    let exp = SystemClock.now_secs() + 3600;
    let bearer = f.oauth2_token(BOB.user_id, "identify", exp);
    let bot = f.bot_token("300000000000000001");
    assert_eq!(
        me(&f, &format!("Bearer {bearer}")).json()["id"],
        BOB.user_id
    );
    let b = me(&f, &format!("Bot {bot}")).json();
    assert_eq!(
        (b["id"].clone(), b["bot"].clone()),
        (json!("300000000000000001"), json!(true))
    );
    assert_eq!(f.me_calls_for(&bot), 1);
    f.revoke(&bot);
    assert_unauthorized(me(&f, &format!("Bot {bot}")));
    assert_unauthorized(me(&f, &format!("Bot {bearer}")));
}

#[test]
fn down_answers_503_to_everything_and_delay_holds_every_answer() {
    let f = Fluxer::start();
    let token = f.session_token(ALICE.user_id);
    f.set_down(true);
    assert_eq!(me(&f, &token).status, 503);
    assert_eq!(Req::get("/anything").send(f.addr).status, 503);
    f.set_down(false);
    assert_eq!(me(&f, &token).status, 200);
    f.set_delay(Duration::from_millis(300));
    let t = tokio::time::Instant::now();
    assert_eq!(me(&f, &token).status, 200);
    assert!(
        t.elapsed() >= Duration::from_millis(300),
        "{:?}",
        t.elapsed()
    );
    assert_eq!(f.me_calls_for(&token), 3);
}

#[test]
fn other_paths_echo_the_authorization_header_and_are_recorded() {
    let f = Fluxer::start();
    let r = Req::get("/v1/channels/1/messages?limit=5")
        .header("authorization", "flx_whatever")
        .header("x-fluxgate-user-id", "100000000000000001")
        .send(f.addr);
    assert_eq!(r.status, 200);
    assert_eq!(
        r.json(),
        json!({"path": "/v1/channels/1/messages", "authorization": "flx_whatever"})
    );
    let seen = f.last();
    assert_eq!(seen.target, "/v1/channels/1/messages?limit=5");
    assert_eq!(
        seen.get("x-fluxgate-user-id").as_deref(),
        Some("100000000000000001")
    );
    let anon = Req::get("/health").send(f.addr).json();
    assert_eq!(anon["authorization"], serde_json::Value::Null);
    assert_eq!(f.calls("/health"), 1);
}

#[test]
fn the_backend_resolver_understands_the_fake() {
    let f = Fluxer::start();
    let mut settings = BackendSettings::new(f.url("/users/@me").parse().unwrap());
    settings.introspect_url = Some(f.url("/oauth2/introspect").parse().unwrap());
    settings.client_id = Some(CLIENT_ID.into());
    settings.client_secret = Some(Secret::new(CLIENT_SECRET.into()));
    let now = SystemClock.now_secs();
    let (session, bearer, bot) = (
        f.session_token(BOB.user_id),
        f.oauth2_token(ALICE.user_id, "identify guilds", now + 60),
        f.bot_token("300000000000000001"),
    );
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let r = BackendResolver::new(settings).unwrap();
        let s = r
            .resolve(Kind::Session, &session, now)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(s.record.user_id, BOB.user_id);
        assert_eq!((s.record.has_mfa, s.record.flags), (Some(true), Some(0)));
        let s = r
            .resolve(Kind::Oauth2, &bearer, now)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(s.record.scopes, vec!["identify", "guilds"]);
        assert_eq!(s.record.expires_at, Some(now + 60));
        assert_eq!(s.record.client_id.as_deref(), Some(OAUTH2_APP));
        let s = r.resolve(Kind::Bot, &bot, now).await.unwrap().unwrap();
        assert_eq!(s.record.user_id, "300000000000000001");
        f.revoke(&session);
        assert_eq!(r.resolve(Kind::Session, &session, now).await, Ok(None));
        f.set_down(true);
        let got = r.resolve(Kind::Bot, &bot, now).await;
        assert_eq!(got, Err(BackendError::Status(503)));
    });
    assert_eq!(f.me_calls_for(&session), 2);
}
