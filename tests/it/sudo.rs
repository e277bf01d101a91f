//! Sudo mode, cookie hardening and origin checks through the real binary.

use crate::common::*;
use fluxgate::credential::Sid;
use fluxgate::policy::sudo::{Sudo, SudoSettings};
use serde_json::json;

pub const SECRET: &str = "sudo-shared-secret-0123456789";

pub fn config(extra_sudo: &str) -> String {
    format!(
        r#"
[sudo]
secret = {{ value = "{SECRET}" }}
{extra_sudo}

[csrf]
allowed_origins = ["https://web.fluxer.app"]

[[route]]
methods = ["POST"]
path = "/guilds/:guild_id/delete"
sudo = true

[[route]]
methods = ["POST"]
path = "/auth/sudo"
"#
    )
}

/// What the upstream (Fluxer) would send: a sudo JWT without `sid`, signed with the shared
/// secret.
pub fn upstream_token(user: &str) -> String {
    let now = fluxgate::clock::unix_now().as_secs() as i64;
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &json!({"type": "sudo", "sub": user, "iat": now, "exp": now + 300}),
        &jsonwebtoken::EncodingKey::from_secret(SECRET.as_bytes()).unwrap(),
    )
    .unwrap()
}

pub fn sudo_cookie(r: &Resp) -> Option<String> {
    r.headers
        .iter()
        .filter(|(k, _)| k.eq_ignore_ascii_case("set-cookie"))
        .map(|(_, v)| v.clone())
        .find(|v| v.starts_with("fluxer_sudo_mode=") && !v.starts_with("fluxer_sudo_mode=;"))
}

/// The claims of a sudo JWT signed with the shared secret (expiry not judged).
pub fn claims_of(token: &str) -> serde_json::Value {
    let mut v = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::HS256);
    v.validate_exp = false;
    v.set_required_spec_claims(&["exp"]);
    jsonwebtoken::decode::<serde_json::Value>(
        token,
        &jsonwebtoken::DecodingKey::from_secret(SECRET.as_bytes()).unwrap(),
        &v,
    )
    .unwrap()
    .claims
}

/// A `Set-Cookie`'s `Max-Age`.
pub fn max_age(set_cookie: &str) -> i64 {
    set_cookie
        .split(';')
        .find_map(|a| a.trim().strip_prefix("Max-Age="))
        .and_then(|v| v.parse().ok())
        .expect("a Max-Age")
}

#[test]
fn a_sensitive_route_without_proof_is_403_with_has_mfa() {
    let up = Upstream::start();
    let fg = Fluxgate::start(up.addr, &config(""));
    let (tok, _) = fg.create_session(json!({"user_id": "42", "has_mfa": true}));
    let r = fg.send(&Req::new("POST", "/v1/guilds/1/delete").header("authorization", &tok));
    let body = r.denial(403, "SUDO_MODE_REQUIRED");
    assert_eq!(body["has_mfa"], true);
    assert_eq!(up.count(), 0);
    let (tok2, _) = fg.create_session(json!({"user_id": "43"}));
    let body = fg
        .send(&Req::new("POST", "/guilds/1/delete").header("authorization", &tok2))
        .denial(403, "SUDO_MODE_REQUIRED");
    assert!(
        body.get("has_mfa").is_none(),
        "unknown has_mfa is left out: {body}"
    );
}

#[test]
fn capture_sets_a_bound_cookie_and_the_next_sensitive_request_passes() {
    let up = Upstream::start();
    let fg = Fluxgate::start(up.addr, &config(""));
    let (tok, sid) = fg.create_session(json!({"user_id": "42"}));
    let session_cookie = format!("fluxer_session={tok}");
    let origin = "https://web.fluxer.app";
    let proof = upstream_token("42");
    let r = fg.send(
        &Req::new("POST", "/auth/sudo")
            .header("cookie", &session_cookie)
            .header("origin", origin)
            .header(
                "x-upstream-reply",
                &format!("X-Fluxer-Sudo-Mode-JWT: {proof}"),
            ),
    );
    assert_eq!(r.status, 200);
    let set = sudo_cookie(&r).expect("fluxgate sets the sudo cookie");
    for attr in ["HttpOnly", "Secure", "SameSite=Strict", "Path=/"] {
        assert!(set.contains(attr), "{set} lacks {attr}");
    }
    let value = set
        .split(';')
        .next()
        .unwrap()
        .trim_start_matches("fluxer_sudo_mode=")
        .to_string();
    // The cookie's token is fluxgate's own: bound to this session, ending with the proof.
    let claims = claims_of(&value);
    let upstream = claims_of(&proof);
    assert_eq!(claims["sid"], sid.as_str());
    assert_eq!(claims["sub"], "42");
    assert_eq!(claims["iat"], upstream["iat"]);
    assert_eq!(claims["exp"], upstream["exp"]);
    let max_age = max_age(&set);
    assert!((290..=300).contains(&max_age), "{set}");
    // The next sensitive request, from the browser: both cookies, allowed origin.
    let r = fg.send(
        &Req::new("POST", "/guilds/7/delete")
            .header(
                "cookie",
                &format!("{session_cookie}; fluxer_sudo_mode={value}"),
            )
            .header("origin", origin),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    let seen = up.last();
    let until: i64 = seen.get("x-fluxgate-sudo-until").unwrap().parse().unwrap();
    assert!(until > 1_700_000_000);
    assert_eq!(
        seen.get("cookie"),
        None,
        "fluxgate's cookies are not forwarded"
    );
    // The API gets a proof in its own window (forward_upstream_token is on by default), never
    // lasting longer than the cookie's.
    let forwarded = seen
        .get("x-fluxer-sudo-mode-jwt")
        .expect("a proof for the API");
    let forwarded = claims_of(&forwarded);
    assert_eq!(forwarded["sub"], "42");
    assert!(forwarded["exp"].as_i64() <= claims["exp"].as_i64());
}

#[test]
fn a_proof_for_another_user_is_not_captured() {
    let up = Upstream::start();
    let fg = Fluxgate::start(up.addr, &config(""));
    let (tok, _) = fg.create_session(json!({"user_id": "42"}));
    let r = fg.send(
        &Req::new("POST", "/auth/sudo")
            .header("authorization", &tok)
            .header(
                "x-upstream-reply",
                &format!("X-Fluxer-Sudo-Mode-JWT: {}", upstream_token("43")),
            ),
    );
    assert_eq!(r.status, 200);
    assert_eq!(sudo_cookie(&r), None);
}

#[test]
fn the_header_dialect_and_admin_granted_proofs_work() {
    let up = Upstream::start();
    let fg = Fluxgate::start(up.addr, &config(""));
    let (tok, sid) = fg.create_session(json!({"user_id": "42"}));
    let g = fg.admin("POST", &format!("/v1/sessions/{sid}/sudo"), None);
    assert_eq!(g.status, 200, "{}", g.text());
    let proof = g.json()["token"].as_str().unwrap().to_string();
    let r = fg.send(
        &Req::new("POST", "/guilds/1/delete")
            .header("authorization", &tok)
            .header("x-fluxer-sudo-mode-jwt", &proof),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    // Fluxer's own (unbound) header token works too.
    let r = fg.send(
        &Req::new("POST", "/guilds/1/delete")
            .header("authorization", &tok)
            .header("x-fluxer-sudo-mode-jwt", &upstream_token("42")),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(
        fg.admin(
            "POST",
            &format!("/v1/sessions/{}/sudo", Sid::of("nobody").encode()),
            None
        )
        .status,
        404
    );
}

#[test]
fn cross_user_and_cross_session_proofs_are_refused() {
    let up = Upstream::start();
    let fg = Fluxgate::start(up.addr, &config(""));
    let (mine, _) = fg.create_session(json!({"user_id": "42"}));
    let (_, my_other_sid) = fg.create_session(json!({"user_id": "42"}));
    let (_, their_sid) = fg.create_session(json!({"user_id": "43"}));
    for sid in [their_sid, my_other_sid] {
        let proof = fg
            .admin("POST", &format!("/v1/sessions/{sid}/sudo"), None)
            .json()["token"]
            .as_str()
            .unwrap()
            .to_string();
        let r = fg.send(
            &Req::new("POST", "/guilds/1/delete")
                .header("authorization", &mine)
                .header("x-fluxer-sudo-mode-jwt", &proof),
        );
        r.denial(403, "SUDO_MODE_REQUIRED");
    }
    assert_eq!(up.count(), 0);
}

#[test]
fn bind_to_session_refuses_unbound_upstream_tokens() {
    let up = Upstream::start();
    let fg = Fluxgate::start(up.addr, &config("bind_to_session = true"));
    let (tok, _) = fg.create_session(json!({"user_id": "42"}));
    let r = fg.send(
        &Req::new("POST", "/guilds/1/delete")
            .header("authorization", &tok)
            .header("x-fluxer-sudo-mode-jwt", &upstream_token("42")),
    );
    r.denial(403, "SUDO_MODE_REQUIRED");
}

#[test]
fn with_forwarding_off_the_api_gets_no_sudo_token() {
    let up = Upstream::start();
    let fg = Fluxgate::start(up.addr, &config("forward_upstream_token = false"));
    let (tok, sid) = fg.create_session(json!({"user_id": "42"}));
    let proof = fg
        .admin("POST", &format!("/v1/sessions/{sid}/sudo"), None)
        .json()["token"]
        .as_str()
        .unwrap()
        .to_string();
    let r = fg.send(
        &Req::new("POST", "/guilds/1/delete")
            .header("authorization", &tok)
            .header("cookie", &format!("fluxer_sudo_mode={proof}")),
    );
    assert_eq!(r.status, 200);
    assert_eq!(up.last().get("x-fluxer-sudo-mode-jwt"), None);
}

#[test]
fn a_fresh_token_in_the_upstreams_window_is_forwarded_by_default() {
    let up = Upstream::start();
    let fg = Fluxgate::start(up.addr, &config(""));
    let (tok, sid) = fg.create_session(json!({"user_id": "42"}));
    let proof = fg
        .admin("POST", &format!("/v1/sessions/{sid}/sudo"), None)
        .json()["token"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(
        fg.send(
            &Req::new("POST", "/guilds/1/delete")
                .header("authorization", &tok)
                .header("x-fluxer-sudo-mode-jwt", &proof)
        )
        .status,
        200
    );
    let forwarded = up
        .last()
        .get("x-fluxer-sudo-mode-jwt")
        .expect("a token is forwarded");
    // Checked against the upstream's own 5-minute window, though fluxgate's proof lasts 15.
    let s = Sudo::new(SudoSettings {
        secret: SECRET.as_bytes().to_vec(),
        lifetime_secs: 300,
        leeway_secs: 1,
        bind_to_session: true,
        forward_upstream_token: true,
        cookie_name: "fluxer_sudo_mode".into(),
        upstream_lifetime_secs: 300,
        proof_lockout: None,
        capture_window: Default::default(),
    })
    .unwrap();
    let now = fluxgate::clock::unix_now().as_secs() as i64;
    assert!(
        s.verify(&forwarded, "42", Sid::decode(&sid).as_ref(), now)
            .is_ok()
    );
}

#[test]
fn set_cookies_from_the_upstream_for_our_cookies_are_hardened() {
    let up = Upstream::start();
    let fg = Fluxgate::start(up.addr, &config(""));
    let r = fg.send(
        &Req::get("/gateway")
            .header(
                "authorization",
                &fg.create_session(json!({"user_id": "1"})).0,
            )
            .header(
                "x-upstream-reply",
                "Set-Cookie: fluxer_session=flx_fromupstream; Path=/api; SameSite=None",
            )
            .header("x-upstream-reply", "Set-Cookie: theme=dark"),
    );
    let cookies: Vec<&String> = r
        .headers
        .iter()
        .filter(|(k, _)| k.eq_ignore_ascii_case("set-cookie"))
        .map(|(_, v)| v)
        .collect();
    let s = cookies
        .iter()
        .find(|c| c.starts_with("fluxer_session="))
        .unwrap();
    for attr in ["HttpOnly", "Secure", "SameSite=Lax", "Path=/"] {
        assert!(s.contains(attr), "{s} lacks {attr}");
    }
    assert!(!s.contains("/api") && !s.contains("SameSite=None"), "{s}");
    assert!(
        cookies.iter().any(|c| *c == "theme=dark"),
        "other cookies pass untouched: {cookies:?}"
    );
}

#[test]
fn cookie_authenticated_state_changes_need_an_allowed_origin() {
    let up = Upstream::start();
    let fg = Fluxgate::start(up.addr, &config(""));
    let (tok, _) = fg.create_session(json!({"user_id": "42"}));
    let cookie = format!("fluxer_session={tok}");
    let post = || Req::new("POST", "/channels/1/messages").header("cookie", &cookie);
    assert_eq!(
        fg.send(&post().header("origin", "https://web.fluxer.app"))
            .status,
        200
    );
    assert_eq!(
        fg.send(&post().header("referer", "https://web.fluxer.app/channels/1"))
            .status,
        200
    );
    fg.send(&post().header("origin", "https://evil.example"))
        .denial(403, "INVALID_API_ORIGIN");
    fg.send(&post()).denial(403, "INVALID_API_ORIGIN");
    fg.send(&post().header("origin", "null"))
        .denial(403, "INVALID_API_ORIGIN");
    // Safe methods and header credentials are exempt.
    assert_eq!(
        fg.send(&Req::get("/channels/1/messages").header("cookie", &cookie))
            .status,
        200
    );
    assert_eq!(
        fg.send(&Req::new("POST", "/channels/1/messages").header("authorization", &tok))
            .status,
        200
    );
}

#[test]
fn sessions_sudo_cli_grants_a_proof() {
    let up = Upstream::start();
    let fg = Fluxgate::start(up.addr, &config(""));
    let (tok, sid) = fg.create_session(json!({"user_id": "42"}));
    let out = std::process::Command::new(bin())
        .args([
            "sessions",
            "--admin",
            &fg.admin.to_string(),
            "--secret-env",
            "FG_TEST_SECRET",
            "sudo",
            "--sid",
            &sid,
        ])
        .env("FG_TEST_SECRET", ADMIN_SECRET)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let r = fg.send(
        &Req::new("POST", "/guilds/1/delete")
            .header("authorization", &tok)
            .header("x-fluxer-sudo-mode-jwt", v["token"].as_str().unwrap()),
    );
    assert_eq!(r.status, 200);
}

#[test]
fn rp_id_and_additional_origins_are_allowed_and_look_alikes_are_not() {
    let up = Upstream::start();
    let cfg = config("").replace(
        "allowed_origins = [\"https://web.fluxer.app\"]",
        "allowed_origins = [\"https://web.fluxer.app\"]\nrp_id = \"fluxer.app\"\nadditional_allowed_origins = [\"http://localhost:3000\"]",
    );
    let fg = Fluxgate::start(up.addr, &cfg);
    let (tok, _) = fg.create_session(json!({"user_id": "42"}));
    let cookie = format!("fluxer_session={tok}");
    let post = |origin: &str| {
        fg.send(
            &Req::new("POST", "/channels/1/messages")
                .header("cookie", &cookie)
                .header("origin", origin),
        )
    };
    for ok in [
        "https://fluxer.app",
        "http://localhost:3000",
        "https://web.fluxer.app",
    ] {
        assert_eq!(post(ok).status, 200, "{ok}");
    }
    for bad in [
        "http://fluxer.app",
        "https://evil-fluxer.app",
        "https://fluxer.app.evil.example",
        "https://fluxer.app:8443",
        "http://localhost:3001",
    ] {
        post(bad).denial(403, "INVALID_API_ORIGIN");
    }
}

#[test]
fn check_config_warns_when_the_upstream_would_refuse_what_the_edge_admits() {
    let dir = tempfile::tempdir().unwrap();
    let up: std::net::SocketAddr = "127.0.0.1:9".parse().unwrap();
    let check = |extra: &str| {
        let path = dir.path().join("c.toml");
        std::fs::write(&path, base_config(dir.path(), up, &config(extra))).unwrap();
        let out = std::process::Command::new(bin())
            .arg("check-config")
            .arg(&path)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(0), "{out:?}");
        String::from_utf8_lossy(&out.stderr).to_string()
    };
    let err = check("forward_upstream_token = false");
    let warnings: Vec<&str> = err.lines().filter(|l| l.starts_with("warning:")).collect();
    assert_eq!(warnings.len(), 1, "{err}");
    assert!(warnings[0].contains("sudo-gated at the edge"), "{err}");
    assert!(!check("").contains("warning:"));
    assert!(!check("forward_upstream_token = false\nproofs = \"upstream\"").contains("warning:"));
}
