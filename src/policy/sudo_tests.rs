//! One test per refused token, named after the attack; and the window's edges.

use super::*;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use hmac::digest::KeyInit;
use hmac::{Hmac, Mac};
use serde_json::json;

const SECRET: &[u8] = b"shared-sudo-secret-0123456789";
const NOW: i64 = 1_800_000_000;

fn sudo(bind: bool) -> Sudo {
    sudo_with(bind, 1)
}

fn sudo_with(bind: bool, leeway_secs: i64) -> Sudo {
    Sudo::new(SudoSettings {
        secret: SECRET.to_vec(),
        lifetime_secs: 900,
        leeway_secs,
        bind_to_session: bind,
        forward_upstream_token: false,
        cookie_name: "fluxer_sudo_mode".into(),
        upstream_lifetime_secs: 300,
        proof_lockout: None,
        capture_window: Default::default(),
    })
    .unwrap()
}

fn sid() -> Sid {
    Sid::of("flx_abcdefghijklmnopqrstuvwxyz0123456789")
}

/// Builds a JWT by hand, so tests can forge whatever an attacker would.
fn forge(header: serde_json::Value, claims: serde_json::Value, key: &[u8]) -> String {
    let h = B64.encode(header.to_string());
    let c = B64.encode(claims.to_string());
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(key).unwrap();
    mac.update(format!("{h}.{c}").as_bytes());
    format!("{h}.{c}.{}", B64.encode(mac.finalize().into_bytes()))
}

fn claims() -> serde_json::Value {
    json!({"type": "sudo", "sub": "42", "iat": NOW, "exp": NOW + 900, "sid": sid().encode()})
}

fn hs256() -> serde_json::Value {
    json!({"alg": "HS256", "typ": "JWT"})
}

fn check(token: &str) -> Result<i64, Refusal> {
    sudo(false).verify(token, "42", Some(&sid()), NOW + 60)
}

#[test]
fn a_valid_token_passes_and_reports_its_expiry() {
    assert_eq!(check(&forge(hs256(), claims(), SECRET)), Ok(NOW + 900));
    let s = sudo(true);
    let (minted, until) = s.grant("42", &sid(), NOW);
    assert_eq!(s.verify(&minted, "42", Some(&sid()), NOW + 10), Ok(until));
}

#[test]
fn valid_at_14_59_refused_at_15_01() {
    // The default leeway (1 s).
    let s = sudo(false);
    let (t, _) = s.grant("42", &sid(), NOW);
    assert!(s.verify(&t, "42", Some(&sid()), NOW + 14 * 60 + 59).is_ok());
    assert_eq!(
        s.verify(&t, "42", Some(&sid()), NOW + 15 * 60 + 1),
        Err(Refusal::Expired)
    );
}

#[test]
fn the_leeway_is_explicit_and_small() {
    let s = sudo_with(false, 5);
    let (t, _) = s.grant("42", &sid(), NOW);
    assert!(s.verify(&t, "42", Some(&sid()), NOW + 900 + 4).is_ok());
    assert_eq!(
        s.verify(&t, "42", Some(&sid()), NOW + 900 + 5),
        Err(Refusal::Expired)
    );
}

#[test]
fn alg_none_is_refused() {
    let h = B64.encode(json!({"alg": "none"}).to_string());
    let c = B64.encode(claims().to_string());
    // jsonwebtoken does not even parse a header naming `none`.
    assert_eq!(check(&format!("{h}.{c}.")), Err(Refusal::Malformed));
}

#[test]
fn hs512_is_refused() {
    let h = B64.encode(json!({"alg": "HS512"}).to_string());
    let c = B64.encode(claims().to_string());
    let mut mac = Hmac::<sha2::Sha512>::new_from_slice(SECRET).unwrap();
    mac.update(format!("{h}.{c}").as_bytes());
    let t = format!("{h}.{c}.{}", B64.encode(mac.finalize().into_bytes()));
    assert_eq!(check(&t), Err(Refusal::Signature));
}

#[test]
fn rs256_signed_with_the_secret_as_a_public_key_is_refused() {
    // The classic key-confusion attack: an HMAC over the token keyed with the "public key".
    let t = forge(json!({"alg": "RS256"}), claims(), SECRET);
    assert_eq!(check(&t), Err(Refusal::Signature));
}

#[test]
fn kid_jku_and_jwk_headers_cannot_steer_the_key() {
    for extra in [
        json!({"alg": "HS256", "kid": "../../dev/null"}),
        json!({"alg": "HS256", "jku": "https://evil.example/jwks.json"}),
        json!({"alg": "HS256", "jwk": {"kty": "oct", "k": "ZXZpbA"}}),
        json!({"alg": "HS256", "x5u": "https://evil.example/cert.pem"}),
    ] {
        let t = forge(extra.clone(), claims(), SECRET);
        assert_eq!(check(&t), Err(Refusal::KeyHeaders), "{extra}");
    }
}

#[test]
fn exp_as_a_string_is_refused() {
    let mut c = claims();
    c["exp"] = json!((NOW + 900).to_string());
    assert_eq!(check(&forge(hs256(), c, SECRET)), Err(Refusal::Claims));
}

#[test]
fn a_token_without_exp_is_refused() {
    let mut c = claims();
    c.as_object_mut().unwrap().remove("exp");
    assert_eq!(check(&forge(hs256(), c, SECRET)), Err(Refusal::Claims));
}

#[test]
fn a_window_longer_than_the_lifetime_is_refused() {
    let mut c = claims();
    c["exp"] = json!(NOW + 901);
    assert_eq!(check(&forge(hs256(), c, SECRET)), Err(Refusal::TooLong));
    let mut c = claims();
    c["exp"] = json!(NOW + 86_400 * 365);
    assert_eq!(check(&forge(hs256(), c, SECRET)), Err(Refusal::TooLong));
}

#[test]
fn a_token_of_another_type_is_refused() {
    let mut c = claims();
    c["type"] = json!("session");
    assert_eq!(check(&forge(hs256(), c, SECRET)), Err(Refusal::WrongType));
}

#[test]
fn another_users_token_is_refused() {
    let mut c = claims();
    c["sub"] = json!("43");
    assert_eq!(check(&forge(hs256(), c, SECRET)), Err(Refusal::OtherUser));
}

#[test]
fn another_sessions_token_is_refused() {
    let mut c = claims();
    c["sid"] = json!(Sid::of("another").encode());
    assert_eq!(
        check(&forge(hs256(), c, SECRET)),
        Err(Refusal::OtherSession)
    );
}

#[test]
fn an_unbound_token_is_refused_when_binding_is_required() {
    let mut c = claims();
    c.as_object_mut().unwrap().remove("sid");
    let t = forge(hs256(), c, SECRET);
    assert!(
        check(&t).is_ok(),
        "accepted without binding (Fluxer's own tokens carry no sid)"
    );
    assert_eq!(
        sudo(true).verify(&t, "42", Some(&sid()), NOW + 60),
        Err(Refusal::OtherSession)
    );
}

#[test]
fn a_flipped_signature_bit_is_refused() {
    let t = forge(hs256(), claims(), SECRET);
    let (head, sig) = t.rsplit_once('.').unwrap();
    let mut raw = B64.decode(sig).unwrap();
    raw[0] ^= 1;
    let flipped = format!("{head}.{}", B64.encode(raw));
    assert_eq!(check(&flipped), Err(Refusal::Signature));
    assert_eq!(
        check(&forge(hs256(), claims(), b"another-secret-000000000")),
        Err(Refusal::Signature)
    );
}

#[test]
fn a_planted_duplicate_sudo_cookie_does_not_block_the_real_proof() {
    // A sibling subdomain can set `fluxer_sudo_mode=garbage` for the parent domain; the
    // browser then sends both cookies. Refusing the pair would lock the user out of sudo.
    let s = sudo(false);
    let (real, until) = s.grant("42", &sid(), NOW);
    let other_user = forge(
        hs256(),
        json!({"type": "sudo", "sub": "666", "iat": NOW, "exp": NOW + 900}),
        SECRET,
    );
    for planted in ["garbage", other_user.as_str()] {
        let mut h = HeaderMap::new();
        h.insert(
            COOKIE,
            format!("fluxer_sudo_mode={planted}; fluxer_sudo_mode={real}")
                .parse()
                .unwrap(),
        );
        let p = s.verify_presented(&h, "42", Some(&sid()), NOW + 1);
        assert_eq!(p.map(|p| p.exp), Some(until), "planted {planted}");
    }
    // Planted proofs alone prove nothing.
    let mut h = HeaderMap::new();
    h.insert(SUDO_HEADER, other_user.parse().unwrap());
    h.insert(COOKIE, "fluxer_sudo_mode=garbage".parse().unwrap());
    assert_eq!(s.verify_presented(&h, "42", Some(&sid()), NOW + 1), None);
}

#[test]
fn a_flood_of_presented_proofs_is_refused_unverified() {
    let s = sudo(false);
    let cookies: Vec<String> = (0..5).map(|i| format!("fluxer_sudo_mode=t{i}")).collect();
    let mut h = HeaderMap::new();
    h.insert(COOKIE, cookies.join("; ").parse().unwrap());
    assert_eq!(s.presented(&h), Err(Refusal::TooMany));
    // The same value repeated is one proof.
    let mut same = HeaderMap::new();
    same.insert(
        COOKIE,
        "fluxer_sudo_mode=a; fluxer_sudo_mode=a".parse().unwrap(),
    );
    same.insert(SUDO_HEADER, "a".parse().unwrap());
    assert_eq!(s.presented(&same), Ok(vec!["a"]));
}

#[test]
fn a_proof_issued_in_the_future_is_refused() {
    // iat an hour ahead, exp 15 minutes after it: would give sudo for 75 minutes from now.
    let c = json!({"type": "sudo", "sub": "42", "iat": NOW + 3600, "exp": NOW + 4500});
    assert_eq!(
        sudo(false).verify(&forge(hs256(), c, SECRET), "42", None, NOW),
        Err(Refusal::FromTheFuture)
    );
    // Within the leeway is fine.
    let c = json!({"type": "sudo", "sub": "42", "iat": NOW + 1, "exp": NOW + 600});
    assert!(
        sudo(false)
            .verify(&forge(hs256(), c, SECRET), "42", None, NOW)
            .is_ok()
    );
}

#[test]
fn extreme_claims_cannot_wrap_into_a_valid_window() {
    for (iat, exp) in [
        (i64::MIN, i64::MAX),
        (-1, i64::MAX),
        (i64::MAX, i64::MIN),
        (NOW, i64::MAX),
        (i64::MIN, NOW + 60),
    ] {
        let c = json!({"type": "sudo", "sub": "42", "iat": iat, "exp": exp});
        assert!(
            sudo(false)
                .verify(&forge(hs256(), c, SECRET), "42", None, NOW)
                .is_err(),
            "iat {iat}, exp {exp}"
        );
    }
}

#[test]
fn garbage_never_panics() {
    for t in ["", ".", "..", "a.b.c", "eyJ.eyJ.", &"a".repeat(3000)] {
        assert!(check(t).is_err());
    }
}

/// Verifies `t` at `now` and captures it as the cookie's token, as the response side does.
fn recapture(s: &Sudo, t: &str, now: i64) -> Option<(String, i64)> {
    let proof = s.verify_proof(t, "42", Some(&sid()), now).ok()?;
    s.capture("42", &sid(), proof, now)
}

#[test]
fn an_echoed_proof_never_renews_the_sudo_window() {
    let s = sudo(false);
    // Fluxer's proof: 5 minutes from when the user proved.
    let mut c = claims();
    c["exp"] = json!(NOW + 300);
    let upstream = forge(hs256(), c, SECRET);
    let (cookie, until) = recapture(&s, &upstream, NOW + 290).expect("captured");
    assert_eq!(until, NOW + 300, "the cookie ends with the proof");
    // The cookie's token echoed back just before it ends, again and again: no later end.
    let (again, until) = recapture(&s, &cookie, NOW + 299).expect("still valid");
    assert_eq!(until, NOW + 300);
    assert_eq!(
        recapture(&s, &again, NOW + 302),
        None,
        "over with the proof"
    );
}

#[test]
fn the_lifetime_window_is_measured_from_when_the_user_proved() {
    let mut settings = sudo(false).settings;
    settings.capture_window = CaptureWindow::Lifetime;
    let s = Sudo::new(settings).unwrap();
    let mut c = claims();
    c["exp"] = json!(NOW + 300);
    let (cookie, until) = recapture(&s, &forge(hs256(), c, SECRET), NOW + 10).expect("captured");
    assert_eq!(
        until,
        NOW + 900,
        "the seed's 15 minutes, from the proof's iat"
    );
    let (_, until) = recapture(&s, &cookie, NOW + 800).expect("still valid");
    assert_eq!(until, NOW + 900, "an echo is not a new re-authentication");
}

/// Regression (issue 18, checked arithmetic): `iat = i64::MIN` wrapped `exp - iat` into a
/// negative span that passed the lifetime check in release builds (and panicked in debug).
#[test]
fn a_proof_with_a_far_past_iat_cannot_wrap_its_window_short() {
    let far_past = json!({"type": "sudo", "sub": "42", "iat": i64::MIN, "exp": NOW + 900,
        "sid": sid().encode()});
    assert_eq!(
        check(&forge(hs256(), far_past, SECRET)),
        Err(Refusal::TooLong)
    );
}
