use super::*;
use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{DecodingKey, Validation};

const ES_A: &[u8] = include_bytes!("../../tests/fixtures/assertion/es256-a.pem");
const ES_B: &[u8] = include_bytes!("../../tests/fixtures/assertion/es256-b.pem");
const ED_A: &[u8] = include_bytes!("../../tests/fixtures/assertion/ed25519-a.pem");

fn key(pem: &[u8], alg: KeyAlg, kid: Option<&str>, window: Window) -> SigningKey {
    SigningKey::from_pem(pem, alg, kid, window).expect("a valid test key")
}

fn claims_with(ring: &KeyRing, token: &str, now: i64) -> serde_json::Value {
    let jwks: JwkSet = serde_json::from_str(&ring.jwks(now)).unwrap();
    let header = jsonwebtoken::decode_header(token).unwrap();
    let jwk = jwks
        .find(header.kid.as_deref().unwrap())
        .expect("published");
    let mut v = Validation::new(header.alg);
    v.validate_exp = false;
    v.required_spec_claims.clear();
    jsonwebtoken::decode::<serde_json::Value>(token, &DecodingKey::from_jwk(jwk).unwrap(), &v)
        .unwrap()
        .claims
}

#[test]
fn es256_and_eddsa_tokens_verify_with_the_published_jwk() {
    for (pem, alg) in [(ES_A, KeyAlg::Es256), (ED_A, KeyAlg::EdDsa)] {
        let ring = KeyRing::new(vec![key(pem, alg, None, Window::default())]);
        let tok = ring
            .signer(0)
            .sign(&serde_json::json!({"sub": "42"}))
            .unwrap();
        assert_eq!(claims_with(&ring, &tok, 0)["sub"], "42", "{alg:?}");
        let header = jsonwebtoken::decode_header(&tok).unwrap();
        assert_eq!(header.alg, alg.algorithm());
        // The default kid is the RFC 7638 thumbprint: SHA-256, base64url without padding.
        let kid = header.kid.unwrap();
        assert_eq!(kid.len(), 43, "{kid}");
        assert_eq!(kid, ring.signer(0).kid());
    }
}

#[test]
fn the_jwks_names_only_public_members() {
    // SECURITY: the served set must not carry the private scalar (`d`), whatever the type.
    let ring = KeyRing::new(vec![
        key(ES_A, KeyAlg::Es256, Some("ec"), Window::default()),
        key(ED_A, KeyAlg::EdDsa, Some("ed"), Window::default()),
    ]);
    let v: serde_json::Value = serde_json::from_str(&ring.jwks(0)).unwrap();
    let keys = v["keys"].as_array().unwrap();
    let members = |k: &serde_json::Value| {
        let mut m: Vec<String> = k.as_object().unwrap().keys().cloned().collect();
        m.sort();
        m
    };
    assert_eq!(
        members(&keys[0]),
        ["alg", "crv", "kid", "kty", "use", "x", "y"]
    );
    assert_eq!(keys[0]["kty"], "EC");
    assert_eq!(keys[0]["crv"], "P-256");
    assert_eq!(keys[0]["alg"], "ES256");
    assert_eq!(keys[0]["use"], "sig");
    assert_eq!(members(&keys[1]), ["alg", "crv", "kid", "kty", "use", "x"]);
    assert_eq!(keys[1]["kty"], "OKP");
    assert_eq!(keys[1]["crv"], "Ed25519");
    assert_eq!(keys[1]["alg"], "EdDSA");
}

#[test]
fn the_last_key_whose_sign_from_passed_signs_and_retired_keys_leave_the_jwks() {
    let at = |sign_from, publish_until| Window {
        sign_from,
        publish_until,
    };
    let ring = KeyRing::new(vec![
        key(ES_A, KeyAlg::Es256, Some("a"), at(None, Some(2_000))),
        key(ES_B, KeyAlg::Es256, Some("b"), at(Some(1_000), None)),
    ]);
    // Before b's time: a signs, b is already published.
    assert_eq!(ring.signer(999).kid(), "a");
    assert!(ring.jwks(999).contains(r#""kid":"b""#));
    // From b's time: b signs, a is still published for the overlap.
    assert_eq!(ring.signer(1_000).kid(), "b");
    assert!(ring.jwks(1_500).contains(r#""kid":"a""#));
    // After a's publish_until: a is gone.
    let later = ring.jwks(2_000);
    assert!(!later.contains(r#""kid":"a""#), "{later}");
    assert!(later.contains(r#""kid":"b""#));
    // Before any sign_from passed, the first key signs.
    let future = KeyRing::new(vec![key(ES_A, KeyAlg::Es256, Some("f"), at(Some(5), None))]);
    assert_eq!(future.signer(0).kid(), "f");
}

#[test]
fn a_key_of_the_wrong_type_or_form_is_refused_with_the_reason() {
    let err =
        |pem: &[u8], alg| SigningKey::from_pem(pem, alg, None, Window::default()).unwrap_err();
    assert!(err(ED_A, KeyAlg::Es256).contains("not a P-256"));
    assert!(err(ES_A, KeyAlg::EdDsa).contains("not an Ed25519"));
    let p384 = include_bytes!("../../tests/fixtures/assertion/p384.pem");
    assert!(err(p384, KeyAlg::Es256).contains("not a P-256"));
    let sec1 = include_bytes!("../../tests/fixtures/assertion/sec1-p256.pem");
    assert!(err(sec1, KeyAlg::Es256).contains("pkcs8 -topk8"));
    assert!(err(b"not a pem", KeyAlg::EdDsa).contains("not a PEM file"));
}

#[test]
fn the_default_kid_is_the_rfc_7638_thumbprint() {
    // Computed here from the published members, in the RFC's order, with no library's help.
    use base64::Engine;
    use sha2::Digest;
    for (pem, alg) in [(ES_A, KeyAlg::Es256), (ED_A, KeyAlg::EdDsa)] {
        let k = key(pem, alg, None, Window::default());
        let jwk: serde_json::Value = serde_json::from_str(k.public_jwk()).unwrap();
        let canonical = match alg {
            KeyAlg::Es256 => format!(
                r#"{{"crv":"P-256","kty":"EC","x":{},"y":{}}}"#,
                jwk["x"], jwk["y"]
            ),
            KeyAlg::EdDsa => format!(r#"{{"crv":"Ed25519","kty":"OKP","x":{}}}"#, jwk["x"]),
        };
        let digest = sha2::Sha256::digest(canonical.as_bytes());
        let expected = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(digest);
        assert_eq!(k.kid(), expected, "{alg:?}");
        assert_eq!(jwk["kid"], expected);
    }
}

#[test]
fn generated_keys_load_as_their_algorithm_and_differ() {
    for alg in [KeyAlg::Es256, KeyAlg::EdDsa] {
        let one = generate_pem(alg).unwrap();
        let two = generate_pem(alg).unwrap();
        assert_ne!(one, two);
        let k = SigningKey::from_pem(one.as_bytes(), alg, None, Window::default()).unwrap();
        let other = match alg {
            KeyAlg::Es256 => KeyAlg::EdDsa,
            KeyAlg::EdDsa => KeyAlg::Es256,
        };
        assert!(SigningKey::from_pem(one.as_bytes(), other, None, Window::default()).is_err());
        let ring = KeyRing::new(vec![k]);
        let tok = ring
            .signer(0)
            .sign(&serde_json::json!({"sub": "7"}))
            .unwrap();
        assert_eq!(claims_with(&ring, &tok, 0)["sub"], "7");
    }
}
