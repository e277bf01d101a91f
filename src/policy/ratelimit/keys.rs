//! What a bucket counts by: the client IP (IPv6 by /64), the user, the session, a path
//! parameter, or a field of a small JSON body (trimmed and lower-cased, so `Bob@Example.com `
//! and `bob@example.com` share a bucket). A key that cannot be derived falls back to the IP,
//! never to "no limit".

use crate::policy::routes::Pattern;
use std::net::IpAddr;

/// How a bucket or lockout derives its key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeySpec {
    Ip,
    User,
    Session,
    UserOrIp,
    Param(String),
    Body(String),
}

impl KeySpec {
    /// Parses `ip`, `user`, `session`, `user_or_ip`, `param:<name>` or `body:<field>`.
    pub fn parse(s: &str) -> Result<KeySpec, String> {
        let bad_name =
            |n: &str| n.is_empty() || !n.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
        match s {
            "ip" => Ok(KeySpec::Ip),
            "user" => Ok(KeySpec::User),
            "session" => Ok(KeySpec::Session),
            "user_or_ip" => Ok(KeySpec::UserOrIp),
            _ => {
                if let Some(p) = s.strip_prefix("param:") {
                    return if bad_name(p) {
                        Err(format!(
                            "{s:?}: parameter name must be letters, digits or '_'"
                        ))
                    } else {
                        Ok(KeySpec::Param(p.into()))
                    };
                }
                if let Some(f) = s.strip_prefix("body:") {
                    return if bad_name(f) {
                        Err(format!("{s:?}: body field must be letters, digits or '_'"))
                    } else {
                        Ok(KeySpec::Body(f.into()))
                    };
                }
                Err(format!(
                    "unknown key {s:?}; use ip, user, session, user_or_ip, param:<name> or body:<field>"
                ))
            }
        }
    }

    /// Whether the key is known before the session is resolved (so the check can shield the
    /// store).
    pub fn pre_auth(&self) -> bool {
        matches!(self, KeySpec::Ip | KeySpec::Param(_) | KeySpec::Body(_))
    }

    pub fn needs_body(&self) -> bool {
        matches!(self, KeySpec::Body(_))
    }
}

/// The matched route's path parameters: the pattern and the path it matched.
#[derive(Debug, Clone, Copy, Default)]
pub struct PathParams<'a> {
    pub pattern: Option<&'a Pattern>,
    pub path: &'a str,
}

impl<'a> PathParams<'a> {
    pub fn get(&self, name: &str) -> Option<&'a str> {
        self.pattern.and_then(|p| p.param(self.path, name))
    }
}

/// What the key is derived from.
#[derive(Debug, Clone, Copy)]
pub struct KeyFacts<'a> {
    pub client_ip: IpAddr,
    pub user: Option<&'a str>,
    pub session: Option<&'a [u8]>,
    pub param: PathParams<'a>,
    pub body: Option<&'a serde_json::Value>,
}

/// A derived key: its kind tag and bytes (hashed by the backends, never stored raw).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyValue {
    pub tag: u8,
    pub bytes: Vec<u8>,
}

impl KeyValue {
    fn ip(ip: IpAddr) -> KeyValue {
        // SECURITY: an IPv6 client controls a whole /64; keying on the full address would let
        // it rotate through 2^64 fresh buckets.
        let bytes = match ip.to_canonical() {
            IpAddr::V4(v4) => v4.octets().to_vec(),
            IpAddr::V6(v6) => v6.octets()[..8].to_vec(),
        };
        KeyValue { tag: b'i', bytes }
    }
}

/// Derives the key for `spec`; falls back to the client IP when a user, session or path
/// parameter is missing. A body field never falls back (see `body_key`).
pub fn derive(spec: &KeySpec, f: &KeyFacts<'_>) -> KeyValue {
    let found = match spec {
        KeySpec::Ip => None,
        KeySpec::User | KeySpec::UserOrIp => f.user.map(|u| (b'u', u.as_bytes().to_vec())),
        KeySpec::Session => f.session.map(|s| (b's', s.to_vec())),
        KeySpec::Param(name) => f.param.get(name).map(|v| (b'p', v.as_bytes().to_vec())),
        KeySpec::Body(field) => Some(body_key(f.body, field)),
    };
    match found {
        Some((tag, bytes)) => KeyValue { tag, bytes },
        None => KeyValue::ip(f.client_ip),
    }
}

/// The key of a body field: its value, trimmed and lower-cased, when it is a non-empty string;
/// otherwise one key shared by every such request.
// SECURITY: falling back to the client IP turned a per-account lockout into a per-IP one for
// anyone who left the field out or sent it as a number, array or object (which a lenient
// upstream may still coerce to the account): rotating addresses then bought unlimited guesses.
// Sharing one key instead means such requests are limited together, never less.
fn body_key(body: Option<&serde_json::Value>, field: &str) -> (u8, Vec<u8>) {
    match body.and_then(|b| b.get(field)).and_then(|v| v.as_str()) {
        Some(v) if !v.trim().is_empty() => (b'b', v.trim().to_lowercase().into_bytes()),
        _ => (b'm', Vec::new()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pattern() -> &'static Pattern {
        static P: std::sync::OnceLock<Pattern> = std::sync::OnceLock::new();
        P.get_or_init(|| Pattern::parse("/invites/:code").unwrap())
    }

    fn facts<'a>(body: Option<&'a serde_json::Value>, user: Option<&'a str>) -> KeyFacts<'a> {
        KeyFacts {
            client_ip: "2001:db8:1:2:3:4:5:6".parse().unwrap(),
            user,
            session: None,
            param: PathParams {
                pattern: Some(pattern()),
                path: "/invites/abc",
            },
            body,
        }
    }

    #[test]
    fn ipv6_clients_are_keyed_by_their_64() {
        let a = derive(&KeySpec::Ip, &facts(None, None));
        let mut f = facts(None, None);
        f.client_ip = "2001:db8:1:2:ffff:ffff:ffff:ffff".parse().unwrap();
        assert_eq!(a, derive(&KeySpec::Ip, &f));
        f.client_ip = "2001:db8:1:3::1".parse().unwrap();
        assert_ne!(a, derive(&KeySpec::Ip, &f));
        f.client_ip = "::ffff:192.0.2.1".parse().unwrap();
        assert_eq!(derive(&KeySpec::Ip, &f).bytes, vec![192, 0, 2, 1]);
    }

    #[test]
    fn email_case_variants_share_one_key() {
        let a = serde_json::json!({"email": "  Bob@Example.COM "});
        let b = serde_json::json!({"email": "bob@example.com"});
        let spec = KeySpec::Body("email".into());
        assert_eq!(
            derive(&spec, &facts(Some(&a), None)),
            derive(&spec, &facts(Some(&b), None))
        );
    }

    #[test]
    fn missing_sources_fall_back_to_the_ip_never_to_no_limit() {
        let ip = derive(&KeySpec::Ip, &facts(None, None));
        assert_eq!(derive(&KeySpec::User, &facts(None, None)), ip);
        assert_eq!(
            derive(&KeySpec::Param("nope".into()), &facts(None, None)),
            ip
        );
        assert_ne!(derive(&KeySpec::UserOrIp, &facts(None, Some("42"))), ip);
        assert_ne!(
            derive(&KeySpec::Param("code".into()), &facts(None, None)),
            ip
        );
    }

    #[test]
    fn a_missing_or_non_string_body_field_cannot_escape_the_account_lockout_by_rotating_ips() {
        // Before: each of these was keyed by the client's address, so an attacker rotating
        // addresses got a fresh lockout per address for the same account.
        let spec = KeySpec::Body("email".into());
        let shared = derive(&spec, &facts(None, None));
        let bodies = [
            serde_json::json!({}),
            serde_json::json!({"email": null}),
            serde_json::json!({"email": 5}),
            serde_json::json!({"email": ["victim@example.com"]}),
            serde_json::json!({"email": {"$ne": ""}}),
            serde_json::json!({"email": "  "}),
        ];
        for body in &bodies {
            assert_eq!(derive(&spec, &facts(Some(body), None)), shared, "{body}");
            let mut other_ip = facts(Some(body), None);
            other_ip.client_ip = "198.51.100.9".parse().unwrap();
            assert_eq!(
                derive(&spec, &other_ip),
                shared,
                "{body} from another address"
            );
        }
        assert_ne!(shared, derive(&KeySpec::Ip, &facts(None, None)));
        let real = serde_json::json!({"email": "victim@example.com"});
        assert_ne!(derive(&spec, &facts(Some(&real), None)), shared);
    }

    #[test]
    fn key_specs_parse_and_refuse_typos() {
        assert_eq!(
            KeySpec::parse("body:email").unwrap(),
            KeySpec::Body("email".into())
        );
        assert_eq!(
            KeySpec::parse("param:guild_id").unwrap(),
            KeySpec::Param("guild_id".into())
        );
        assert!(KeySpec::parse("ipp").is_err());
        assert!(KeySpec::parse("body:").is_err());
        assert!(KeySpec::parse("body:a.b").is_err());
    }
}
