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
fn a_token_in_both_places_that_disagree_is_refused() {
    let s = sudo(false);
    let a = forge(hs256(), claims(), SECRET);
    let (b, _) = s.grant("42", &sid(), NOW);
    let mut h = HeaderMap::new();
    h.insert(SUDO_HEADER, a.parse().unwrap());
    h.insert(COOKIE, format!("fluxer_sudo_mode={b}").parse().unwrap());
    assert_eq!(s.presented(&h), Err(Refusal::Disagree));
    let mut same = HeaderMap::new();
    same.insert(SUDO_HEADER, a.parse().unwrap());
    same.insert(
        COOKIE,
        format!("x=1; fluxer_sudo_mode={a}").parse().unwrap(),
    );
    assert_eq!(s.presented(&same), Ok(Some(a.as_str())));
}

#[test]
fn garbage_never_panics() {
    for t in ["", ".", "..", "a.b.c", "eyJ.eyJ.", &"a".repeat(3000)] {
        assert!(check(t).is_err());
    }
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
