//! Fluxer's in-band sudo through the real binary (contract §6), in front of the Fluxer-like
//! fake: the proof travels in the sensitive request's own body and the upstream verifies it;
//! fluxgate forwards it, captures the upstream's fresh proof, and locks out password guessing.

use crate::common::fluxer::{ALICE, BOB, Fluxer, SUDO_SECRET, sudo_mint};
use crate::common::{Fluxgate, Req, Resp};
use serde_json::json;

fn config(proofs: &str) -> String {
    format!(
        r#"
[sessions]
store = "backend"
cache_ttl = "30s"
[sudo]
secret = {{ value = "{SUDO_SECRET}" }}
proofs = "{proofs}"
[[route]]
methods = ["POST"]
path = "/guilds/:guild_id/delete"
sudo = true
"#
    )
}

/// An error answered by the API itself (not fluxgate's format: no `Cache-Control`).
fn from_api(r: Resp, status: u16, code: &str) -> serde_json::Value {
    assert_eq!(r.status, status, "{}", r.text());
    let v = r.json();
    assert_eq!(v["code"], code, "{v}");
    v
}

fn delete(fg: &Fluxgate, token: &str, guild: u32, body: Option<serde_json::Value>) -> Resp {
    let mut r = Req::new("POST", &format!("/guilds/{guild}/delete")).header("authorization", token);
    if let Some(b) = body {
        r = r
            .header("content-type", "application/json")
            .body(b.to_string().as_bytes());
    }
    r.send(fg.proxy)
}

#[test]
fn a_user_without_mfa_deletes_a_guild_with_the_password_in_the_body() {
    let f = Fluxer::start();
    let fg = Fluxgate::start(f.addr, &config("both"));
    let tok = f.session_token(ALICE.user_id);
    // No proof at all: refused at the edge, in Fluxer's format.
    let r = delete(&fg, &tok, 1, None);
    let body = r.denial(403, "SUDO_MODE_REQUIRED");
    assert_eq!(body["has_mfa"], false);
    assert_eq!(f.calls("/guilds/1/delete"), 0);
    // The password in the body: forwarded, verified by the API, done.
    let r = delete(&fg, &tok, 1, Some(json!({"password": ALICE.password})));
    assert_eq!(r.status, 204, "{}", r.text());
    assert_eq!(f.actions(), 1);
    let seen = f.last();
    let sent: serde_json::Value = serde_json::from_slice(&seen.body).unwrap();
    assert_eq!(
        sent["password"], ALICE.password,
        "the body reaches the API as sent"
    );
}

#[test]
fn a_totp_proof_in_band_is_captured_and_the_next_sensitive_request_needs_none() {
    let f = Fluxer::start();
    let fg = Fluxgate::start(f.addr, &config("both"));
    let tok = f.session_token(BOB.user_id);
    let r = delete(
        &fg,
        &tok,
        1,
        Some(json!({"mfa_method": "totp", "mfa_code": BOB.totp})),
    );
    assert_eq!(r.status, 204, "{}", r.text());
    // The API's fresh proof: passed on to API clients, and kept as the web cookie.
    let upstream_proof = r
        .header("x-fluxer-sudo-mode-jwt")
        .expect("the API's proof")
        .to_string();
    assert!(
        r.headers.iter().any(
            |(k, v)| k.eq_ignore_ascii_case("set-cookie") && v.starts_with("fluxer_sudo_mode=")
        ),
        "{:?}",
        r.headers
    );
    // Next sensitive request with that proof and no body: admitted at the edge, and the API
    // gets a proof in its own window that it accepts.
    let r = Req::new("POST", "/guilds/2/delete")
        .header("authorization", &tok)
        .header("x-fluxer-sudo-mode-jwt", &upstream_proof)
        .send(fg.proxy);
    assert_eq!(r.status, 204, "{}", r.text());
    assert_eq!(f.actions(), 2);
    let forwarded = f
        .last()
        .get("x-fluxer-sudo-mode-jwt")
        .expect("a proof upstream");
    assert_ne!(forwarded, upstream_proof, "fluxgate minted its own");
}

#[test]
fn the_eleventh_wrong_password_in_15_minutes_gets_429_at_the_edge() {
    let f = Fluxer::start();
    let fg = Fluxgate::start(f.addr, &config("both"));
    let tok = f.session_token(ALICE.user_id);
    for i in 0..10 {
        let r = delete(
            &fg,
            &tok,
            1,
            Some(json!({"password": format!("guess {i}")})),
        );
        let body = from_api(r, 400, "INVALID_FORM_BODY");
        assert_eq!(body["errors"][0]["path"], "password");
    }
    assert_eq!(f.calls("/guilds/1/delete"), 10);
    // Locked: even the right password stops at the edge, in Fluxer's 429 format.
    let r = delete(&fg, &tok, 1, Some(json!({"password": ALICE.password})));
    let body = r.denial(429, "RATE_LIMITED");
    assert!(
        body["retry_after"].as_f64().is_some_and(|s| s > 0.0),
        "{body}"
    );
    assert!(r.header("retry-after").is_some());
    assert_eq!(f.calls("/guilds/1/delete"), 10, "the API saw none of it");
    assert_eq!(f.actions(), 0);
}

#[test]
fn successful_in_band_proofs_do_not_count_against_the_lockout() {
    let f = Fluxer::start();
    let fg = Fluxgate::start(
        f.addr,
        &config("both").replace(
            "proofs = \"both\"",
            "proofs = \"both\"\nproof_max_failures = 2",
        ),
    );
    let tok = f.session_token(ALICE.user_id);
    for guild in 0..5 {
        let r = delete(&fg, &tok, guild, Some(json!({"password": ALICE.password})));
        assert_eq!(r.status, 204, "{}", r.text());
    }
    assert_eq!(f.actions(), 5);
}

#[test]
fn a_proof_that_cannot_be_read_before_deciding_is_no_proof() {
    let f = Fluxer::start();
    let fg = Fluxgate::start(f.addr, &config("both"));
    let tok = f.session_token(ALICE.user_id);
    // Over 16 KiB: not read, so it carries no proof; not JSON: no proof either.
    let pad = "x".repeat(17 * 1024);
    delete(
        &fg,
        &tok,
        1,
        Some(json!({"password": ALICE.password, "pad": pad})),
    )
    .denial(403, "SUDO_MODE_REQUIRED");
    let r = Req::new("POST", "/guilds/1/delete")
        .header("authorization", &tok)
        .header("content-type", "application/json")
        .body(b"password=correct+horse")
        .send(fg.proxy);
    r.denial(403, "SUDO_MODE_REQUIRED");
    assert_eq!(f.calls("/guilds/1/delete"), 0);
}

#[test]
fn with_edge_proofs_only_a_body_proof_is_not_enough() {
    let f = Fluxer::start();
    let fg = Fluxgate::start(f.addr, &config("edge"));
    let tok = f.session_token(ALICE.user_id);
    delete(&fg, &tok, 1, Some(json!({"password": ALICE.password})))
        .denial(403, "SUDO_MODE_REQUIRED");
    assert_eq!(f.calls("/guilds/1/delete"), 0);
    // An API-minted proof in the header works at the edge.
    let r = Req::new("POST", "/guilds/1/delete")
        .header("authorization", &tok)
        .header("x-fluxer-sudo-mode-jwt", &sudo_mint(ALICE.user_id, 300))
        .send(fg.proxy);
    assert_eq!(r.status, 204, "{}", r.text());
}

#[test]
fn in_upstream_mode_the_api_decides_and_fluxgate_still_counts_wrong_proofs() {
    let f = Fluxer::start();
    let fg = Fluxgate::start(
        f.addr,
        &config("upstream").replace(
            "proofs = \"upstream\"",
            "proofs = \"upstream\"\nproof_max_failures = 2",
        ),
    );
    let tok = f.session_token(ALICE.user_id);
    // No proof: the API's own 403 passes through.
    from_api(delete(&fg, &tok, 1, None), 403, "SUDO_MODE_REQUIRED");
    assert_eq!(f.calls("/guilds/1/delete"), 1);
    for _ in 0..2 {
        let r = delete(&fg, &tok, 1, Some(json!({"password": "wrong"})));
        from_api(r, 400, "INVALID_FORM_BODY");
    }
    delete(&fg, &tok, 1, Some(json!({"password": "wrong"}))).denial(429, "RATE_LIMITED");
    assert_eq!(f.calls("/guilds/1/delete"), 3);
}

#[test]
fn hostile_bodies_are_forwarded_untouched_or_refused_never_read_two_ways() {
    let f = Fluxer::start();
    let fg = Fluxgate::start(f.addr, &config("both"));
    let tok = f.session_token(ALICE.user_id);
    let send = |body: &[u8]| {
        Req::new("POST", "/guilds/1/delete")
            .header("authorization", &tok)
            .header("content-type", "application/json")
            .body(body)
            .send(fg.proxy)
    };
    // Deep nesting, invalid UTF-8: not a proof; refused at the edge with the contract's JSON.
    let deep = format!("{}{}", "[".repeat(500), "]".repeat(500));
    send(deep.as_bytes()).denial(403, "SUDO_MODE_REQUIRED");
    send(b"{\"password\": \"\xff\xfe\"}").denial(403, "SUDO_MODE_REQUIRED");
    assert_eq!(f.calls("/guilds/1/delete"), 0);
    // Duplicate keys: fluxgate and the API read the same (last) value, and the bytes the API
    // gets are the client's own.
    let dup = format!(
        "{{\"password\": \"wrong\", \"password\": \"{}\"}}",
        ALICE.password
    );
    let r = send(dup.as_bytes());
    assert_eq!(r.status, 204, "{}", r.text());
    assert_eq!(f.last().body, dup.as_bytes());
    // A huge (but under 16 KiB) password is forwarded as it is, and counted as a failure.
    let huge = json!({"password": "p".repeat(15 * 1024)}).to_string();
    let r = send(huge.as_bytes());
    assert_eq!(r.status, 400, "{}", r.text());
    assert_eq!(f.last().body, huge.as_bytes());
}
