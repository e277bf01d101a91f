//! Capturing the upstream's sudo proof as the `fluxer_sudo_mode` cookie: the attacks on the
//! window (echoes, error pages, renewals), through the real binary.

use crate::common::*;
use crate::sudo::{SECRET, claims_of, config, max_age, sudo_cookie, upstream_token};
use serde_json::json;

/// A sudo JWT as the upstream would mint it, proven `ago` seconds ago and valid `secs` from then.
fn proof_from(user: &str, ago: i64, secs: i64) -> String {
    let iat = fluxgate::clock::unix_now().as_secs() as i64 - ago;
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &json!({"type": "sudo", "sub": user, "iat": iat, "exp": iat + secs}),
        &jsonwebtoken::EncodingKey::from_secret(SECRET.as_bytes()).unwrap(),
    )
    .unwrap()
}

#[test]
fn an_upstream_echoing_the_forwarded_proof_does_not_renew_sudo() {
    // Fluxer echoes the X-Fluxer-Sudo-Mode-JWT it was sent; fluxgate forwards a fresh one on
    // every admitted sudo request (forward_upstream_token, the default).
    let up = Upstream::start();
    let fg = Fluxgate::start(up.addr, &config(""));
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
            .header("cookie", &format!("fluxer_sudo_mode={proof}"))
            .header("x-upstream-echo", "x-fluxer-sudo-mode-jwt"),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    let forwarded = up.last().get("x-fluxer-sudo-mode-jwt").expect("forwarded");
    assert_eq!(
        r.header("x-fluxer-sudo-mode-jwt"),
        Some(forwarded.as_str()),
        "the upstream echoed what fluxgate forwarded"
    );
    assert_eq!(sudo_cookie(&r), None, "an echo is not a re-authentication");
}

#[test]
fn a_captured_cookie_never_outlasts_the_proof_it_came_from() {
    let up = Upstream::start();
    let fg = Fluxgate::start(up.addr, &config(""));
    let (tok, _) = fg.create_session(json!({"user_id": "42"}));
    // Proven 250 s ago in the upstream's 5-minute window: 50 s left.
    let proof = proof_from("42", 250, 300);
    let r = fg.send(
        &Req::new("POST", "/auth/sudo")
            .header("authorization", &tok)
            .header(
                "x-upstream-reply",
                &format!("X-Fluxer-Sudo-Mode-JWT: {proof}"),
            ),
    );
    assert_eq!(r.status, 200);
    let set = sudo_cookie(&r).expect("captured");
    assert!(max_age(&set) <= 50, "{set}");
    let value = set.split(';').next().unwrap();
    let value = value.trim_start_matches("fluxer_sudo_mode=");
    assert_eq!(claims_of(value)["exp"], claims_of(&proof)["exp"]);
}

#[test]
fn the_lifetime_window_counts_from_when_the_user_proved_not_from_the_echo() {
    let up = Upstream::start();
    let fg = Fluxgate::start(up.addr, &config(r#"capture_window = "lifetime""#));
    let (tok, _) = fg.create_session(json!({"user_id": "42"}));
    let proof = proof_from("42", 250, 300);
    let r = fg.send(
        &Req::new("POST", "/auth/sudo")
            .header("authorization", &tok)
            .header(
                "x-upstream-reply",
                &format!("X-Fluxer-Sudo-Mode-JWT: {proof}"),
            ),
    );
    let set = sudo_cookie(&r).expect("captured");
    // 15 minutes from the proof's iat: 650 s left, not 900.
    assert!((640..=650).contains(&max_age(&set)), "{set}");
}

#[test]
fn a_proof_on_an_error_response_is_not_captured() {
    let up = Upstream::start();
    let fg = Fluxgate::start(up.addr, &config(""));
    let (tok, _) = fg.create_session(json!({"user_id": "42"}));
    for status in ["400", "403", "500"] {
        let r = fg.send(
            &Req::new("POST", "/auth/sudo")
                .header("authorization", &tok)
                .header("x-upstream-status", status)
                .header(
                    "x-upstream-reply",
                    &format!("X-Fluxer-Sudo-Mode-JWT: {}", upstream_token("42")),
                ),
        );
        assert_eq!(r.status.to_string(), status);
        assert_eq!(sudo_cookie(&r), None, "captured from a {status}");
    }
}
