//! The asymmetric assertion keys (ES256 on P-256, EdDSA on Ed25519) and the JSON Web Key Set
//! that publishes their public halves, so a backend can verify an assertion without holding a
//! secret that could also mint one.
//!
//! Rotation is a list: the last key whose `sign_from` has passed signs; a key listed with a
//! later `sign_from` is published before it signs (pre-publication), and a key with
//! `publish_until` stays published until then, after its successor took over (the overlap).
//! The list is replaced whole on reload.
//!
//! Parsing and the public-key derivation are jsonwebtoken's (its `rust_crypto` provider parses
//! the PKCS#8 DER with p256 and ed25519-dalek); only the PEM armour is read here, by `pem`.

use jsonwebtoken::jwk::{Jwk, PublicKeyUse, ThumbprintHash};
use jsonwebtoken::{Algorithm, EncodingKey, Header};

/// Where the JWKS is served, on the proxy listener and the admin listener.
pub const JWKS_PATH: &str = "/.well-known/jwks.json";

/// How long a client may cache the JWKS: short, so a key published ahead of its `sign_from`
/// reaches verifiers in minutes.
pub const JWKS_CACHE_CONTROL: &str = "public, max-age=300";

/// The asymmetric algorithms an assertion can be signed with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyAlg {
    /// ECDSA on P-256 with SHA-256.
    Es256,
    /// Ed25519.
    EdDsa,
}

impl KeyAlg {
    pub fn algorithm(self) -> Algorithm {
        match self {
            KeyAlg::Es256 => Algorithm::ES256,
            KeyAlg::EdDsa => Algorithm::EdDSA,
        }
    }

    fn algorithm_name(self) -> &'static str {
        match self {
            KeyAlg::Es256 => "ES256",
            KeyAlg::EdDsa => "EdDSA",
        }
    }

    /// The key a file must hold, as an operator would name it.
    fn key_kind(self) -> &'static str {
        match self {
            KeyAlg::Es256 => "a P-256 (prime256v1) EC private key",
            KeyAlg::EdDsa => "an Ed25519 private key",
        }
    }
}

/// One configured key: its private half for signing, its public half for the JWKS.
pub struct SigningKey {
    /// Carries `alg` and `kid`, built once.
    header: Header,
    key: EncodingKey,
    /// Signs from this Unix time on (`None`: from the start).
    pub sign_from: Option<i64>,
    /// Published until this Unix time (`None`: while listed).
    pub publish_until: Option<i64>,
    /// The public JWK, serialized once at load: the JWKS is built from these strings only.
    public_jwk: String,
}

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SigningKey")
            .field("kid", &self.header.kid)
            .field("alg", &self.header.alg)
            .finish_non_exhaustive()
    }
}

/// Where a key's validity window sits.
#[derive(Debug, Clone, Copy, Default)]
pub struct Window {
    pub sign_from: Option<i64>,
    pub publish_until: Option<i64>,
}

impl SigningKey {
    /// Reads a PKCS#8 PEM private key for `alg`. `kid`: the key id, or `None` for the
    /// RFC 7638 thumbprint of the public key. The error says what is wrong with the file's
    /// content (the caller names the file and the key).
    pub fn from_pem(
        pem_text: &[u8],
        alg: KeyAlg,
        kid: Option<&str>,
        window: Window,
    ) -> Result<SigningKey, String> {
        let pem = pem::parse(pem_text)
            .map_err(|_| "is not a PEM file (expected -----BEGIN PRIVATE KEY-----)".to_string())?;
        if pem.tag() != "PRIVATE KEY" {
            return Err(format!(
                "holds a {:?} block, not a PKCS#8 private key ({} needs {}; \
                 `openssl pkcs8 -topk8 -nocrypt` converts one)",
                pem.tag(),
                alg.algorithm_name(),
                alg.key_kind()
            ));
        }
        Self::from_pkcs8_der(pem.contents(), alg, kid, window)
    }

    /// As [`SigningKey::from_pem`], from the DER bytes.
    pub fn from_pkcs8_der(
        der: &[u8],
        alg: KeyAlg,
        kid: Option<&str>,
        window: Window,
    ) -> Result<SigningKey, String> {
        let wrong = || {
            format!(
                "is not {} ({} needs one)",
                alg.key_kind(),
                alg.algorithm_name()
            )
        };
        let key = match alg {
            KeyAlg::Es256 => EncodingKey::from_ec_der(der),
            KeyAlg::EdDsa => EncodingKey::from_ed_der(der),
        };
        // Deriving the public key parses the private one for this very curve: a key of
        // another type or curve fails here, at load, not at the first request.
        let mut jwk = Jwk::from_encoding_key(&key, alg.algorithm()).map_err(|_| wrong())?;
        let kid = match kid {
            Some(k) => k.to_string(),
            None => jwk
                .thumbprint(ThumbprintHash::SHA256)
                .map_err(|_| wrong())?,
        };
        jwk.common.key_id = Some(kid.clone());
        jwk.common.public_key_use = Some(PublicKeyUse::Signature);
        let mut header = Header::new(alg.algorithm());
        header.kid = Some(kid);
        let k = SigningKey {
            header,
            key,
            sign_from: window.sign_from,
            publish_until: window.publish_until,
            public_jwk: serde_json::to_string(&jwk).map_err(|_| wrong())?,
        };
        // One signature at load, so a key that parses but cannot sign is refused now.
        k.sign(&serde_json::json!({ "probe": true }))
            .map_err(|_| wrong())?;
        Ok(k)
    }

    pub fn kid(&self) -> &str {
        self.header.kid.as_deref().unwrap_or("")
    }

    /// The public JWK as JSON.
    pub fn public_jwk(&self) -> &str {
        &self.public_jwk
    }

    pub fn sign<T: serde::Serialize>(&self, claims: &T) -> jsonwebtoken::errors::Result<String> {
        jsonwebtoken::encode(&self.header, claims, &self.key)
    }

    fn published_at(&self, now: i64) -> bool {
        self.publish_until.is_none_or(|until| now < until)
    }
}

/// A new private key for `alg`, as PKCS#8 PEM (`generate = true` keys).
pub fn generate_pem(alg: KeyAlg) -> Result<String, String> {
    // The fixed DER before the 32 secret bytes: RFC 8410 for Ed25519; for P-256 an RFC 5915
    // ECPrivateKey (version 1, the scalar, no optional public key: readers derive it) inside
    // RFC 5208's PrivateKeyInfo. Written by hand: the crates that could encode these few bytes
    // (p256's and ed25519-dalek's PKCS#8 encoders) would add features and a random-number
    // adapter for nothing more; the loader below checks the result like any configured key.
    const ED25519: &[u8] = &[
        0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04,
        0x20,
    ];
    const P256: &[u8] = &[
        0x30, 0x41, 0x02, 0x01, 0x00, 0x30, 0x13, 0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02,
        0x01, 0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07, 0x04, 0x27, 0x30, 0x25,
        0x02, 0x01, 0x01, 0x04, 0x20,
    ];
    let prefix = match alg {
        KeyAlg::Es256 => P256,
        KeyAlg::EdDsa => ED25519,
    };
    // A random 256-bit string is a valid P-256 scalar but with probability ~2^-32: bounded
    // retries.
    for _ in 0..4 {
        let mut secret = [0u8; 32];
        getrandom::fill(&mut secret).map_err(|e| format!("the OS random generator failed: {e}"))?;
        let der = [prefix, &secret].concat();
        secret.fill(0);
        if SigningKey::from_pkcs8_der(&der, alg, Some("new"), Window::default()).is_ok() {
            return Ok(pem::encode(&pem::Pem::new("PRIVATE KEY", der)));
        }
    }
    Err("no valid key came out of the random generator".into())
}

/// The configured keys, in rotation order.
#[derive(Debug)]
pub struct KeyRing {
    keys: Vec<SigningKey>,
}

impl KeyRing {
    /// `keys` must not be empty (the config requires one).
    pub fn new(keys: Vec<SigningKey>) -> KeyRing {
        assert!(!keys.is_empty(), "a key ring has at least one key");
        KeyRing { keys }
    }

    /// The key that signs at `now`: the last listed whose `sign_from` has passed; before any
    /// has, the first.
    pub fn signer(&self, now: i64) -> &SigningKey {
        self.keys
            .iter()
            .rev()
            .find(|k| k.sign_from.is_none_or(|from| from <= now))
            .unwrap_or(&self.keys[0])
    }

    /// The JWKS body at `now`: every key still published, the next one included.
    // SECURITY: built from the public JWKs serialized at load, never from a private key type,
    // so no request can reach private key material.
    pub fn jwks(&self, now: i64) -> String {
        let mut body = String::from(r#"{"keys":["#);
        let mut first = true;
        for k in self.keys.iter().filter(|k| k.published_at(now)) {
            if !first {
                body.push(',');
            }
            first = false;
            body.push_str(&k.public_jwk);
        }
        body.push_str("]}");
        body
    }
}

#[cfg(test)]
#[path = "keys_tests.rs"]
mod tests;
