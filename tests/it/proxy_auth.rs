//! End to end through the real binary: credentials, routes, denials, and what the upstream
//! actually receives.

use crate::common::*;
use serde_json::json;

const ROUTES: &str = r#"
[credentials]
accept = ["session", "oauth2", "bot"]

[[internal_secrets]]
name = "gateway-old"
secret = { value = "old-internal-secret-0123" }

[[internal_secrets]]
name = "gateway-new"
secret = { value = "new-internal-secret-0123" }

[[internal_secrets]]
name = "restricted"
secret = { value = "restricted-secret-01234" }
networks = ["10.0.0.0/8"]

[[route]]
path = "/public"
auth = "none"

[[route]]
path = "/session-only"
kinds = ["session"]

[[route]]
path = "/guilds/:id"
scopes = ["guilds"]

[[route]]
path = "/_rpc/*"
auth = "internal"
"#;

fn setup() -> (Upstream, Fluxgate) {
    let up = Upstream::start();
    let fg = Fluxgate::start(up.addr, ROUTES);
    (up, fg)
}

fn session(fg: &Fluxgate) -> (String, String) {
    fg.create_session(json!({"user_id": "1234567890", "kind": "session", "lifetime": "1h"}))
}

#[test]
fn cookie_session_is_admitted_and_the_upstream_sees_identity_not_the_cookie() {
    let (up, fg) = setup();
    let (tok, sid) = session(&fg);
    let r = fg.send(&Req::get("/users/@me").header(
        "cookie",
        &format!("a=1; fluxer_session={tok}; fluxer_sudo_mode=x; b=2"),
    ));
    assert_eq!(r.status, 200, "{}", r.text());
    let seen = up.last();
    assert_eq!(
        seen.get("x-fluxgate-user-id").as_deref(),
        Some("1234567890")
    );
    assert_eq!(seen.get("x-fluxgate-session-id"), Some(sid));
    assert_eq!(seen.get("x-fluxgate-auth-kind").as_deref(), Some("session"));
    assert_eq!(seen.get("cookie").as_deref(), Some("a=1; b=2"));
    assert_eq!(seen.get("x-forwarded-for").as_deref(), Some("127.0.0.1"));
    assert!(seen.get("x-request-id").is_some());
}

#[test]
fn authorization_session_token_with_and_without_bearer_is_admitted() {
    let (up, fg) = setup();
    let (tok, _) = session(&fg);
    for value in [tok.clone(), format!("Bearer {tok}")] {
        let r = fg.send(&Req::get("/users/@me").header("authorization", &value));
        assert_eq!(r.status, 200, "{value}: {}", r.text());
        assert_eq!(
            up.last().get("x-fluxgate-user-id").as_deref(),
            Some("1234567890")
        );
    }
}

#[test]
fn oauth2_bearer_with_scope_is_admitted_and_missing_scope_is_403() {
    let (up, fg) = setup();
    let (good, _) = fg.create_session(
        json!({"user_id": "7", "kind": "oauth2", "scopes": ["identify", "guilds"]}),
    );
    let (weak, _) =
        fg.create_session(json!({"user_id": "7", "kind": "oauth2", "scopes": ["identify"]}));
    let r = fg.send(&Req::get("/guilds/1").header("authorization", &format!("Bearer {good}")));
    assert_eq!(r.status, 200);
    assert_eq!(
        up.last().get("x-fluxgate-scopes").as_deref(),
        Some("identify guilds")
    );
    assert_eq!(
        up.last().get("x-fluxgate-auth-kind").as_deref(),
        Some("oauth2")
    );
    up.clear();
    let r = fg.send(&Req::get("/v1/guilds/1").header("authorization", &format!("Bearer {weak}")));
    let body = r.denial(403, "MISSING_OAUTH_SCOPE");
    assert_eq!(body["required_scope"], "guilds");
    assert_eq!(up.count(), 0);
}

#[test]
fn oauth2_bearer_on_a_session_only_route_is_access_denied() {
    let (up, fg) = setup();
    let (tok, _) =
        fg.create_session(json!({"user_id": "7", "kind": "oauth2", "scopes": ["identify"]}));
    let r = fg.send(&Req::get("/session-only").header("authorization", &format!("Bearer {tok}")));
    r.denial(403, "ACCESS_DENIED");
    assert_eq!(up.count(), 0);
}

#[test]
fn bot_token_is_admitted_as_a_bot() {
    let (up, fg) = setup();
    let (tok, _) = fg.create_session(json!({"user_id": "99", "kind": "bot", "app_id": "555"}));
    assert!(tok.starts_with("555."));
    let r = fg.send(&Req::get("/x").header("authorization", &format!("Bot {tok}")));
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(
        up.last().get("x-fluxgate-auth-kind").as_deref(),
        Some("bot")
    );
}

#[test]
fn internal_secret_right_rotated_wrong_and_from_a_disallowed_network() {
    let (up, fg) = setup();
    for (secret, name) in [
        ("old-internal-secret-0123", "gateway-old"),
        ("new-internal-secret-0123", "gateway-new"),
    ] {
        let r = fg.send(&Req::get("/_rpc/ping").header("x-fluxer-rpc-auth", secret));
        assert_eq!(r.status, 200, "{}", r.text());
        let seen = up.last();
        assert_eq!(seen.get("x-fluxgate-service").as_deref(), Some(name));
        assert_eq!(
            seen.get("x-fluxgate-auth-kind").as_deref(),
            Some("internal")
        );
        assert_eq!(seen.get("x-fluxgate-user-id"), None);
    }
    let r =
        fg.send(&Req::get("/_rpc/ping").header("authorization", "Bearer new-internal-secret-0123"));
    assert_eq!(r.status, 200);
    up.clear();
    let r =
        fg.send(&Req::get("/_rpc/ping").header("x-fluxer-rpc-auth", "wrong-internal-secret-01"));
    r.denial(401, "UNAUTHORIZED");
    // "restricted" is only valid from 10.0.0.0/8; this test connects from 127.0.0.1.
    let r = fg.send(&Req::get("/_rpc/ping").header("x-fluxer-rpc-auth", "restricted-secret-01234"));
    r.denial(401, "UNAUTHORIZED");
    let r = fg.send(&Req::get("/_rpc/ping"));
    r.denial(401, "UNAUTHORIZED");
    assert_eq!(up.count(), 0);
}

#[test]
fn anonymous_requests_pass_on_none_routes_and_are_labelled_anonymous() {
    let (up, fg) = setup();
    let r = fg.send(&Req::get("/public"));
    assert_eq!(r.status, 200);
    assert_eq!(
        up.last().get("x-fluxgate-auth-kind").as_deref(),
        Some("anonymous")
    );
    let r = fg
        .send(&Req::get("/v1/public").header("authorization", &format!("Bearer {UNKNOWN_TOKEN}")));
    assert_eq!(r.status, 200);
    assert_eq!(up.last().get("x-fluxgate-user-id"), None);
}

#[test]
fn missing_credential_gets_401_json_with_www_authenticate() {
    let (up, fg) = setup();
    let r = fg.send(&Req::get("/users/@me"));
    r.denial(401, "UNAUTHORIZED");
    assert_eq!(
        r.header("www-authenticate"),
        Some(r#"Bearer realm="fluxgate""#)
    );
    assert_eq!(up.count(), 0);
}

#[test]
fn spoofed_identity_headers_in_every_spelling_are_replaced() {
    let (up, fg) = setup();
    let (tok, _) = session(&fg);
    let r = fg.send(
        &Req::get("/users/@me")
            .header("authorization", &tok)
            .header("X-Fluxgate-User-Id", "1")
            .header("x-fluxgate-user-id", "2")
            .header("X-FLUXGATE-user-ID", "4")
            .header("X-Fluxgate-Service", "admin")
            .header("X-Fluxgate-Made-Up", "5")
            .header("X-Forwarded-For", "6.6.6.6"),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    let seen = up.last();
    assert_eq!(seen.all("x-fluxgate-user-id"), vec!["1234567890"]);
    let folded = seen.folded_names();
    assert_eq!(
        folded.iter().filter(|n| *n == "x-fluxgate-user-id").count(),
        1,
        "{folded:?}"
    );
    assert!(!folded.contains(&"x-fluxgate-service".to_string()));
    assert!(!folded.contains(&"x-fluxgate-made-up".to_string()));
    assert_eq!(seen.all("x-forwarded-for"), vec!["127.0.0.1"]);
}

#[test]
fn spoofed_identity_on_an_anonymous_route_is_stripped_too() {
    let (up, fg) = setup();
    let r = fg.send(&Req::get("/public").header("X-Fluxgate-User-Id", "1"));
    assert_eq!(r.status, 200);
    assert_eq!(up.last().get("x-fluxgate-user-id"), None);
}

#[test]
fn underscore_spellings_of_identity_headers_are_refused_not_forwarded() {
    // `X_Fluxgate_User_Id` is `X-Fluxgate-User-Id` to CGI-style upstreams: refused outright
    // (400, connection closed) on every kind of route, whatever else the request carries.
    let (up, fg) = setup();
    let (tok, _) = session(&fg);
    for (path, name) in [
        ("/public", "x_fluxgate_user_id"),
        ("/users/@me", "X_Fluxgate_User_Id"),
        ("/users/@me", "x-FLUXGATE_user-ID"),
    ] {
        let r = fg.send(
            &Req::get(path)
                .header("authorization", &tok)
                .header(name, "1"),
        );
        r.denial(400, "BAD_REQUEST");
        assert_eq!(r.header("connection"), Some("close"));
    }
    assert_eq!(up.count(), 0);
}

#[test]
fn connection_nominated_identity_header_cannot_remove_the_injected_one() {
    let (up, fg) = setup();
    let (tok, _) = session(&fg);
    let r = fg.send(
        &Req::get("/users/@me")
            .header("authorization", &tok)
            .header("connection", "x-fluxgate-user-id, x-custom")
            .header("x-custom", "hop"),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    let seen = up.last();
    assert_eq!(
        seen.get("x-fluxgate-user-id").as_deref(),
        Some("1234567890")
    );
    assert_eq!(seen.get("x-custom"), None);
}

#[test]
fn duplicate_session_cookies_with_two_valid_values_are_refused() {
    let (up, fg) = setup();
    let (a, _) = session(&fg);
    let (b, _) = session(&fg);
    let r = fg.send(
        &Req::get("/users/@me")
            .header("cookie", &format!("fluxer_session={a}; fluxer_session={b}")),
    );
    r.denial(401, "UNAUTHORIZED");
    // One valid and one unknown: the valid one is used.
    let r = fg.send(&Req::get("/users/@me").header(
        "cookie",
        &format!("fluxer_session={UNKNOWN_TOKEN}; fluxer_session={a}"),
    ));
    assert_eq!(r.status, 200);
    // More than three: refused without trying.
    let four = format!("fluxer_session={a}; ").repeat(4);
    let r = fg.send(&Req::get("/users/@me").header("cookie", &four));
    r.denial(401, "UNAUTHORIZED");
    assert_eq!(up.count(), 1);
}

#[test]
fn over_long_and_malformed_credentials_are_401_and_never_fall_back_to_the_cookie() {
    let (up, fg) = setup();
    let (tok, _) = session(&fg);
    let cookie = format!("fluxer_session={tok}");
    let long = format!("Bearer {}", "a".repeat(600));
    for auth in [
        long.as_str(),
        "Basic dXNlcjpwYXNz",
        "Bearer",
        "Bearer  two-spaces",
        "flx_short",
        "Bearer flx_short",
        "Bearer a\"b",
        "Bot not-a-bot-token",
    ] {
        let r = fg.send(
            &Req::get("/users/@me")
                .header("authorization", auth)
                .header("cookie", &cookie),
        );
        r.denial(401, "UNAUTHORIZED");
    }
    let r = fg.send(&Req::get("/users/@me").header_bytes("authorization", b"Bearer \xff\xfe"));
    r.denial(401, "UNAUTHORIZED");
    let r = fg.send(&Req::get("/users/@me").header("cookie", "fluxer_session=garbage"));
    r.denial(401, "UNAUTHORIZED");
    assert_eq!(up.count(), 0);
}

#[test]
fn each_ambiguous_path_form_is_400_and_nothing_is_forwarded() {
    let (up, fg) = setup();
    let (tok, _) = session(&fg);
    for target in [
        "/public/%2e%2e/session-only",
        "/public%2fx",
        "/public%2Fx",
        "/public%5cx",
        "/public%00",
        "/public/..",
        "/public/./x",
        "/public\\x",
        "//public",
        "/public%zz",
        "*",
    ] {
        let r = fg.send(&Req::get(target).header("authorization", &tok));
        r.denial(400, "BAD_REQUEST");
    }
    // Absolute-form (its authority agreeing with Host, or the HTTP parser refuses it first).
    let absolute = format!("http://{}/public", fg.proxy);
    fg.send(&Req::get(&absolute)).denial(400, "BAD_REQUEST");
    // Authority-form.
    fg.send(&Req::get(&fg.proxy.to_string()))
        .denial(400, "BAD_REQUEST");
    // A target whose authority disagrees with Host is refused by the HTTP parser itself
    // (a bare 400 without our JSON body; see docs/contract.md), and never forwarded.
    assert_eq!(fg.send(&Req::get("http://example.com/public")).status, 400);
    assert_eq!(up.count(), 0, "{:?}", up.requests());
}

#[test]
fn the_path_matched_is_the_path_forwarded() {
    let (up, fg) = setup();
    let r = fg.send(&Req::get("/public?q=%2f..%2f"));
    assert_eq!(r.status, 200);
    assert_eq!(up.last().target, "/public?q=%2f..%2f");
}

#[test]
fn percent_encoded_spelling_of_a_protected_path_gets_its_policy() {
    // /%70ublic decodes to /public, but the point is the reverse: an encoded spelling of a
    // protected path must not fall through to a weaker policy. /session-only is stricter than
    // the default (required), so check it is still refused for an OAuth2 token.
    let (up, fg) = setup();
    let (tok, _) = fg.create_session(json!({"user_id": "7", "kind": "oauth2"}));
    let r = fg.send(&Req::get("/session%2Donly").header("authorization", &format!("Bearer {tok}")));
    r.denial(403, "ACCESS_DENIED");
    assert_eq!(up.count(), 0);
}

#[test]
fn revocation_through_the_admin_api_takes_effect_on_the_next_request() {
    let (up, fg) = setup();
    let (tok, sid) = session(&fg);
    let auth = format!("Bearer {tok}");
    assert_eq!(
        fg.send(&Req::get("/x").header("authorization", &auth))
            .status,
        200
    );
    let r = fg.admin("DELETE", &format!("/v1/sessions/{sid}"), None);
    assert_eq!(r.status, 200, "{}", r.text());
    fg.send(&Req::get("/x").header("authorization", &auth))
        .denial(401, "UNAUTHORIZED");
    assert_eq!(up.count(), 1);
}

#[test]
fn revoking_all_sessions_of_a_user_logs_them_out_everywhere() {
    let (_up, fg) = setup();
    let (a, _) = session(&fg);
    let (b, _) = session(&fg);
    for t in [&a, &b] {
        assert_eq!(
            fg.send(&Req::get("/x").header("authorization", t)).status,
            200
        );
    }
    let list = fg
        .admin("GET", "/v1/users/1234567890/sessions", None)
        .json();
    assert_eq!(list["sessions"].as_array().unwrap().len(), 2);
    let r = fg.admin("DELETE", "/v1/users/1234567890/sessions", None);
    assert_eq!(r.json()["revoked"], 2);
    for t in [&a, &b] {
        fg.send(&Req::get("/x").header("authorization", t))
            .denial(401, "UNAUTHORIZED");
    }
}

#[test]
fn sessions_survive_a_proxy_restart() {
    let up = Upstream::start();
    let fg = Fluxgate::start(up.addr, ROUTES);
    let (tok, _) = session(&fg);
    let cfg = std::fs::read_to_string(&fg.config_path).unwrap();
    let dir = fg.stop();
    let fg = Fluxgate::start_with(dir, &cfg);
    let r = fg.send(&Req::get("/x").header("authorization", &tok));
    assert_eq!(r.status, 200, "{}", r.text());
}

#[test]
fn fifty_concurrent_requests_with_one_unknown_token_make_one_store_read() {
    let (up, fg) = setup();
    let before = fg.metric("fluxgate_store_reads_total");
    let addr = fg.proxy;
    let threads: Vec<_> = (0..50)
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
    assert_eq!(fg.metric("fluxgate_store_reads_total") - before, 1.0);
    assert_eq!(up.count(), 0);
}

#[test]
fn upstream_refused_is_502_json_and_slow_is_504_json() {
    let up = Upstream::start();
    // Point fluxgate at a port nobody listens on.
    let dead = format!("127.0.0.1:{}", free_port());
    let dir = std::sync::Arc::new(tempfile::tempdir().unwrap());
    let cfg = base_config(dir.path(), up.addr, ROUTES).replace(&up.addr.to_string(), &dead);
    let fg = Fluxgate::start_with(dir, &cfg);
    let r = fg.send(&Req::get("/public"));
    let body = r.denial(502, "BAD_GATEWAY");
    assert!(
        !body.to_string().contains("refused"),
        "internal error text leaked: {body}"
    );
    drop(fg);
    let fg = Fluxgate::start(up.addr, ROUTES);
    let r = fg.send(&Req::get("/slow/public"));
    // /slow/public is not /public: default policy, so authenticate.
    r.denial(401, "UNAUTHORIZED");
    let (tok, _) = session(&fg);
    let r = fg.send(&Req::get("/slow").header("authorization", &tok));
    r.denial(504, "GATEWAY_TIMEOUT");
}

#[test]
fn denials_keep_the_connection_alive() {
    use std::io::{Read, Write};
    let (_up, fg) = setup();
    let mut s = std::net::TcpStream::connect(fg.proxy).unwrap();
    s.set_read_timeout(Some(std::time::Duration::from_secs(5)))
        .unwrap();
    let one = format!("GET /users/@me HTTP/1.1\r\nhost: {}\r\n\r\n", fg.proxy);
    for round in 0..3 {
        s.write_all(one.as_bytes()).unwrap();
        let mut got = Vec::new();
        let mut buf = [0u8; 4096];
        while !got.ends_with(b"}") {
            let n = s.read(&mut buf).unwrap();
            assert!(
                n > 0,
                "connection closed in round {round} after {} bytes",
                got.len()
            );
            got.extend_from_slice(&buf[..n]);
        }
        let r = parse_response(&got);
        r.denial(401, "UNAUTHORIZED");
        assert_ne!(r.header("connection"), Some("close"));
    }
}

#[test]
fn metrics_count_decisions_by_outcome_and_reason_without_tokens() {
    let (_up, fg) = setup();
    let (tok, _) = session(&fg);
    fg.send(&Req::get("/x").header("authorization", &tok));
    fg.send(&Req::get("/x"));
    let m = get(fg.admin, "/metrics").unwrap().text();
    assert!(
        m.contains(r#"fluxgate_decisions_total{outcome="admitted",reason="session"} 1"#),
        "{m}"
    );
    assert!(
        m.contains(r#"fluxgate_decisions_total{outcome="denied",reason="no_credential"} 1"#),
        "{m}"
    );
    assert!(!m.contains(&tok));
    assert!(!m.contains("127.0.0.1"));
}

#[test]
fn sane_request_ids_are_kept_and_insane_ones_replaced_on_both_sides() {
    let (up, fg) = setup();
    let r = fg.send(&Req::get("/public").header("x-request-id", "trace-abc.123"));
    assert_eq!(r.header("x-request-id"), Some("trace-abc.123"));
    assert_eq!(
        up.last().get("x-request-id").as_deref(),
        Some("trace-abc.123")
    );
    let r = fg.send(&Req::get("/public").header("x-request-id", "<script>"));
    let id = r.header("x-request-id").unwrap().to_string();
    assert_eq!(id.len(), 32);
    assert_eq!(up.last().get("x-request-id"), Some(id));
    let r = fg.send(&Req::get("/users/@me").header("x-request-id", "denied-1"));
    assert_eq!(r.header("x-request-id"), Some("denied-1"));
}

#[test]
fn a_forged_assertion_is_replaced_by_one_signed_for_this_request() {
    let up = Upstream::start();
    let secret = "assertion-secret-0123456789abcdef";
    let fg = Fluxgate::start(
        up.addr,
        &format!(
            "{ROUTES}\n[identity]\nassertion_secret = {{ value = \"{secret}\" }}\nassertion_ttl = \"30s\"\n"
        ),
    );
    let (tok, sid) = session(&fg);
    let r = fg.send(
        &Req::new("PATCH", "/users/@me?x=1")
            .header("authorization", &tok)
            .header("x-request-id", "rid-assert-1")
            .header("X-Fluxgate-Assertion", "forged.by.client"),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    let seen = up.last();
    let all = seen.all("x-fluxgate-assertion");
    assert_eq!(all.len(), 1, "{all:?}");
    let mut v = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::HS256);
    v.set_issuer(&["fluxgate"]);
    v.set_required_spec_claims(&["exp", "iat", "iss"]);
    let claims = jsonwebtoken::decode::<serde_json::Value>(
        &all[0],
        &jsonwebtoken::DecodingKey::from_secret(secret.as_bytes()).unwrap(),
        &v,
    )
    .expect("the assertion verifies with the configured secret")
    .claims;
    assert_eq!(claims["sub"], "1234567890");
    assert_eq!(claims["sid"], sid.as_str());
    assert_eq!(claims["kind"], "session");
    assert_eq!(claims["method"], "PATCH");
    assert_eq!(claims["path"], "/users/@me?x=1");
    assert_eq!(claims["request_id"], "rid-assert-1");
    assert_eq!(claims["client_ip"], "127.0.0.1");
    assert_eq!(
        claims["exp"].as_i64().unwrap() - claims["iat"].as_i64().unwrap(),
        30
    );
    // Without a secret configured, a client's assertion is stripped and none is added.
    let (up2, fg2) = setup();
    let (tok2, _) = session(&fg2);
    fg2.send(
        &Req::get("/users/@me")
            .header("authorization", &tok2)
            .header("X-Fluxgate-Assertion", "forged.by.client"),
    );
    assert!(up2.last().all("x-fluxgate-assertion").is_empty());
}
