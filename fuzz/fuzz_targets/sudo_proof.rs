//! Sudo-proof verification (contract §5) with JWT-shaped input signed by the real key (so
//! signatures pass and the claim checks are reached) or a wrong one, or raw bytes.
//!
//! Invariants, against a reference reading of the payload: an accepted proof was signed with
//! the configured key under HS256, names no key (`kid`, `jku`, ...), says `"type": "sudo"`, is
//! for this user and session, spans at most the lifetime with `iat <= exp`, is not expired at
//! `now` (leeway included), and the `exp` returned is the token's.
#![no_main]

use arbitrary::Arbitrary;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use fluxgate::credential::Sid;
use fluxgate::policy::sudo::{Sudo, SudoSettings};
use hmac::digest::KeyInit;
use hmac::{Hmac, Mac};
use libfuzzer_sys::fuzz_target;
use serde_json::{Value, json};
use std::sync::OnceLock;

const SECRET: &[u8] = b"shared-sudo-secret-0123456789";
const NOW: i64 = 1_800_000_000;
const LIFETIME: i64 = 900;
const LEEWAY: i64 = 1;
const USER: &str = "42";

#[derive(Arbitrary, Debug)]
enum Header {
    Hs256,
    Alg(String),
    WithKid,
    Raw(Vec<u8>),
}

#[derive(Arbitrary, Debug)]
enum Num {
    Near(i16),
    Any(i64),
    Text(String),
    Missing,
}

#[derive(Arbitrary, Debug)]
struct Claims {
    typ: Option<String>,
    other_user: bool,
    iat: Num,
    exp: Num,
    /// 0: our sid, 1: another sid, 2: none, 3: not a string.
    sid: u8,
    extra: Option<(String, String)>,
}

#[derive(Arbitrary, Debug)]
enum Input {
    Raw(String),
    Forged {
        header: Header,
        claims: Claims,
        right_key: bool,
        bind: bool,
        now_offset: i16,
    },
}

fn sid() -> Sid {
    Sid::of("flx_abcdefghijklmnopqrstuvwxyz0123456789")
}

fn sudo(bind: bool) -> &'static Sudo {
    static S: OnceLock<[Sudo; 2]> = OnceLock::new();
    let make = |bind| {
        Sudo::new(SudoSettings {
            secret: SECRET.to_vec(),
            lifetime_secs: LIFETIME,
            leeway_secs: LEEWAY,
            bind_to_session: bind,
            forward_upstream_token: false,
            cookie_name: "fluxer_sudo_mode".into(),
            upstream_lifetime_secs: 300,
            proof_lockout: None,
            capture_window: Default::default(),
        })
        .expect("valid sudo settings")
    };
    &S.get_or_init(|| [make(false), make(true)])[bind as usize]
}

fn num(n: &Num) -> Option<Value> {
    match n {
        Num::Near(d) => Some(json!(NOW + *d as i64)),
        Num::Any(x) => Some(json!(x)),
        Num::Text(s) => Some(json!(s)),
        Num::Missing => None,
    }
}

fn forge(header: &Header, c: &Claims, key: &[u8]) -> String {
    let h = match header {
        Header::Hs256 => B64.encode(json!({"alg": "HS256", "typ": "JWT"}).to_string()),
        Header::Alg(a) => B64.encode(json!({"alg": a}).to_string()),
        Header::WithKid => B64.encode(json!({"alg": "HS256", "kid": "k"}).to_string()),
        Header::Raw(b) => B64.encode(b),
    };
    let mut claims = serde_json::Map::new();
    if let Some(t) = &c.typ {
        claims.insert("type".into(), json!(t));
    } else {
        claims.insert("type".into(), json!("sudo"));
    }
    claims.insert("sub".into(), json!(if c.other_user { "43" } else { USER }));
    if let Some(v) = num(&c.iat) {
        claims.insert("iat".into(), v);
    }
    if let Some(v) = num(&c.exp) {
        claims.insert("exp".into(), v);
    }
    match c.sid % 4 {
        0 => drop(claims.insert("sid".into(), json!(sid().encode()))),
        1 => drop(claims.insert("sid".into(), json!(Sid::of("flx_other").encode()))),
        2 => {}
        _ => drop(claims.insert("sid".into(), json!(7))),
    }
    if let Some((k, v)) = &c.extra {
        claims.entry(k.clone()).or_insert(json!(v));
    }
    let p = B64.encode(Value::Object(claims).to_string());
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(key).expect("any key length");
    mac.update(format!("{h}.{p}").as_bytes());
    format!("{h}.{p}.{}", B64.encode(mac.finalize().into_bytes()))
}

/// The reference: what an accepted token must say, read straight from its parts.
fn check_accepted(token: &str, exp_returned: i64, bind: bool, now: i64) {
    let parts: Vec<&str> = token.split('.').collect();
    assert_eq!(parts.len(), 3, "accepted a token that is not three parts");
    let header: Value =
        serde_json::from_slice(&B64.decode(parts[0]).expect("header b64")).expect("header json");
    assert_eq!(header["alg"], "HS256");
    for k in ["kid", "jku", "jwk", "x5u", "x5c"] {
        assert!(
            header.get(k).is_none(),
            "accepted a token naming its key ({k})"
        );
    }
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(SECRET).expect("any key length");
    mac.update(format!("{}.{}", parts[0], parts[1]).as_bytes());
    let sig = B64.decode(parts[2]).expect("signature b64");
    mac.verify_slice(&sig)
        .expect("accepted a token not signed with the key");
    let c: Value =
        serde_json::from_slice(&B64.decode(parts[1]).expect("payload b64")).expect("payload");
    assert_eq!(c["type"], "sudo");
    assert_eq!(c["sub"], USER);
    let (iat, exp) = (
        c["iat"].as_i64().expect("iat"),
        c["exp"].as_i64().expect("exp"),
    );
    assert_eq!(exp, exp_returned);
    assert!(iat <= exp && (exp as i128 - iat as i128) <= LIFETIME as i128);
    assert!(
        exp as i128 + LEEWAY as i128 > now as i128,
        "accepted an expired proof"
    );
    match c.get("sid") {
        Some(s) => assert_eq!(s.as_str(), Some(sid().encode().as_str())),
        None => assert!(!bind, "accepted an unbound proof with bind_to_session"),
    }
}

fuzz_target!(|input: Input| {
    match input {
        Input::Raw(token) => {
            if let Ok(exp) = sudo(false).verify(&token, USER, Some(&sid()), NOW) {
                check_accepted(&token, exp, false, NOW);
            }
        }
        Input::Forged {
            header,
            claims,
            right_key,
            bind,
            now_offset,
        } => {
            let key: &[u8] = if right_key {
                SECRET
            } else {
                b"another-secret-0123456789"
            };
            let token = forge(&header, &claims, key);
            let now = NOW + now_offset as i64;
            if let Ok(exp) = sudo(bind).verify(&token, USER, Some(&sid()), now) {
                assert!(right_key, "accepted a proof signed with another key");
                check_accepted(&token, exp, bind, now);
            }
        }
    }
});
