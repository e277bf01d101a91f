//! Verifying fluxgate's `X-Fluxgate-Assertion` in a Rust backend, with the keys fluxgate
//! publishes at `/.well-known/jwks.json` (docs/assertions.md).
//!
//! ```text
//! curl -s http://fluxgate.internal:8080/.well-known/jwks.json > jwks.json
//! cargo run --example verify_assertion -- jwks.json "$ASSERTION" api.example.com
//! ```
//!
//! A backend keeps the JWKS in memory, refreshes it every few minutes (fluxgate sends
//! `Cache-Control: max-age=300`), and fetches it again at once when an assertion names a `kid`
//! it does not know: a key is published before it signs, so a fresh copy always has it.
//! tests/it/assertion_jwks.rs runs `verify` below against a live fluxgate.

use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, DecodingKey, Validation, decode, decode_header};
use serde::Deserialize;

/// The claims a backend usually reads (docs/assertions.md lists them all).
#[derive(Debug, Deserialize)]
pub struct Assertion {
    /// "session", "oauth2", "bot", "internal" or "anonymous".
    pub kind: String,
    /// The user, for user credentials.
    pub sub: Option<String>,
    pub method: String,
    /// The request target as forwarded (path and query).
    pub path: String,
    /// The `Host` the client asked for.
    pub host: Option<String>,
    /// Unique per assertion: remember it for `exp - iat` seconds to refuse a replay.
    pub jti: String,
    pub exp: i64,
}

/// Verifies `token` with the key its header names. `host`: the host this backend serves;
/// an assertion made for a request to another host is refused.
pub fn verify(jwks: &JwkSet, token: &str, host: &str) -> Result<Assertion, String> {
    let header = decode_header(token).map_err(|e| format!("not a JWT: {e}"))?;
    // Only the asymmetric algorithms: never let the token choose HS256 (or "none").
    if !matches!(header.alg, Algorithm::ES256 | Algorithm::EdDSA) {
        return Err(format!("unexpected algorithm {:?}", header.alg));
    }
    let kid = header.kid.ok_or("the assertion names no kid")?;
    let jwk = jwks
        .find(&kid)
        .ok_or_else(|| format!("unknown kid {kid:?}: fetch the JWKS again"))?;
    let key = DecodingKey::from_jwk(jwk).map_err(|e| format!("bad JWK {kid:?}: {e}"))?;
    let mut v = Validation::new(header.alg);
    v.set_issuer(&["fluxgate"]);
    v.set_required_spec_claims(&["exp", "iat", "iss"]);
    v.leeway = 5;
    let a = decode::<Assertion>(token, &key, &v)
        .map_err(|e| format!("invalid assertion: {e}"))?
        .claims;
    if a.host.as_deref() != Some(host) {
        return Err(format!("assertion for host {:?}, not {host:?}", a.host));
    }
    Ok(a)
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let [_, jwks_file, token, host] = args.as_slice() else {
        eprintln!("usage: verify_assertion <jwks.json> <assertion> <host>");
        std::process::exit(2);
    };
    let text = std::fs::read_to_string(jwks_file).expect("read the JWKS file");
    let jwks: JwkSet = serde_json::from_str(&text).expect("a JWKS");
    match verify(&jwks, token, host) {
        Ok(a) => println!("{a:?}"),
        Err(e) => {
            eprintln!("refused: {e}");
            std::process::exit(1);
        }
    }
}
