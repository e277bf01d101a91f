//! `X-Fluxgate-Assertion` (contract §4): the identity fluxgate injected, plus the method, path
//! and a short validity, as an HS256 JWT. A backend that verifies it knows the identity headers
//! came from fluxgate for this very request, even if something between fluxgate and the backend
//! could add headers. Off unless `[identity] assertion_secret` is set.

use super::Injection;
use crate::secret::Secret;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde::Serialize;

/// The issuer every assertion names.
pub const ISSUER: &str = "fluxgate";

/// Signs assertions with the configured secret.
pub struct Asserter {
    key: EncodingKey,
    ttl_secs: i64,
}

impl std::fmt::Debug for Asserter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Asserter")
            .field("ttl_secs", &self.ttl_secs)
            .finish_non_exhaustive()
    }
}

/// The claims, named like the headers they repeat.
#[derive(Serialize)]
struct Claims<'a> {
    iss: &'static str,
    /// `X-Fluxgate-Auth-Kind`.
    kind: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    sub: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    sid: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    scopes: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    client_id: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    service: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    client_ip: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    sudo_until: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    country: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    asn: Option<u32>,
    method: &'a str,
    path: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    request_id: Option<&'a str>,
    iat: i64,
    exp: i64,
}

impl Asserter {
    pub fn new(secret: &Secret, ttl_secs: i64) -> Asserter {
        Asserter {
            key: EncodingKey::from_secret(secret.expose().as_bytes())
                .expect("an HMAC key of any length is valid"),
            ttl_secs,
        }
    }

    /// The assertion for an admitted request. `path` is the request target as forwarded
    /// (path and query).
    pub fn sign(
        &self,
        id: &Injection<'_>,
        method: &str,
        path: &str,
        request_id: Option<&str>,
        now: i64,
    ) -> String {
        fn s(v: Option<&http::HeaderValue>) -> Option<&str> {
            v.and_then(|v| v.to_str().ok())
        }
        let claims = Claims {
            iss: ISSUER,
            kind: id.auth_kind,
            sub: s(id.user_id),
            sid: s(id.session_id),
            scopes: s(id.scopes),
            client_id: s(id.client_id),
            service: s(id.service),
            client_ip: id.client_ip.map(|ip| ip.to_string()),
            sudo_until: id.sudo_until,
            country: id.country,
            asn: id.asn,
            method,
            path,
            request_id,
            iat: now,
            exp: now + self.ttl_secs,
        };
        jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &self.key)
            .expect("HS256 signing with a valid key cannot fail")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use jsonwebtoken::{DecodingKey, Validation};

    #[test]
    fn an_assertion_verifies_with_the_secret_and_carries_the_identity() {
        let secret = Secret::new("assertion-secret-0123456789abcdef".into());
        let a = Asserter::new(&secret, 60);
        let user = http::HeaderValue::from_static("42");
        let id = Injection {
            auth_kind: "session",
            user_id: Some(&user),
            client_ip: Some("198.51.100.7".parse().unwrap()),
            ..Default::default()
        };
        let now = 1_900_000_000;
        let tok = a.sign(&id, "POST", "/guilds/1/delete?x=1", Some("rid-1"), now);
        let mut v = Validation::new(Algorithm::HS256);
        v.validate_exp = false;
        v.set_issuer(&[ISSUER]);
        let claims = jsonwebtoken::decode::<serde_json::Value>(
            &tok,
            &DecodingKey::from_secret(secret.expose().as_bytes()).unwrap(),
            &v,
        )
        .unwrap()
        .claims;
        assert_eq!(claims["sub"], "42");
        assert_eq!(claims["kind"], "session");
        assert_eq!(claims["client_ip"], "198.51.100.7");
        assert_eq!(claims["method"], "POST");
        assert_eq!(claims["path"], "/guilds/1/delete?x=1");
        assert_eq!(claims["exp"], now + 60);
        assert!(claims.get("sid").is_none());
        // Another secret does not verify it.
        assert!(
            jsonwebtoken::decode::<serde_json::Value>(
                &tok,
                &DecodingKey::from_secret(b"another-secret-0123456789abcdefgh").unwrap(),
                &v,
            )
            .is_err()
        );
    }
}
