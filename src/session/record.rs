//! The session record (contract §8) and its resolved, header-ready form.
//!
//! Records may be written by backends directly (Redis), so decoding is strict: unknown
//! versions, oversized records and values that could not travel in a header are refused and
//! the session is treated as absent.

use crate::credential::{Kind, Sid};
use http::HeaderValue;
use serde::{Deserialize, Serialize};
use smol_str::SmolStr;
use std::sync::Arc;

/// The only record layout this build understands.
pub const RECORD_VERSION: u32 = 1;
/// Larger records are refused: a session is a few hundred bytes.
pub const MAX_RECORD_BYTES: usize = 16 * 1024;
const MAX_USER_ID_LEN: usize = 64;
const MAX_SCOPES: usize = 64;
const MAX_SCOPE_LEN: usize = 64;

/// A session as stored (JSON), keyed by `sid`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionRecord {
    pub v: u32,
    pub user_id: String,
    pub kind: Kind,
    /// Unix seconds.
    pub created_at: i64,
    /// Unix seconds; `None` never expires.
    pub expires_at: Option<i64>,
    #[serde(default)]
    pub scopes: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_ip: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub has_mfa: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub flags: Option<u64>,
    /// The OAuth2 client the token was issued to (from introspection, or written by a backend).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_id: Option<String>,
}

/// Why stored bytes are not a usable record.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RecordError {
    #[error("record is {0} bytes, over the {MAX_RECORD_BYTES}-byte limit")]
    TooLarge(usize),
    #[error("record is not valid JSON for layout v1: {0}")]
    Json(String),
    #[error("record version {0} is not supported (expected {RECORD_VERSION})")]
    Version(u32),
    #[error("record field {0} is invalid")]
    Field(&'static str),
}

impl SessionRecord {
    /// Decodes and validates stored bytes.
    pub fn decode(bytes: &[u8]) -> Result<SessionRecord, RecordError> {
        if bytes.len() > MAX_RECORD_BYTES {
            return Err(RecordError::TooLarge(bytes.len()));
        }
        let rec: SessionRecord =
            serde_json::from_slice(bytes).map_err(|e| RecordError::Json(e.to_string()))?;
        if rec.v != RECORD_VERSION {
            return Err(RecordError::Version(rec.v));
        }
        rec.validate()?;
        Ok(rec)
    }

    pub fn encode(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("a SessionRecord always serializes")
    }

    /// Checks every field that ends up in a header or a comparison.
    pub fn validate(&self) -> Result<(), RecordError> {
        if !is_user_id(&self.user_id) {
            return Err(RecordError::Field("user_id"));
        }
        if self.scopes.len() > MAX_SCOPES || !self.scopes.iter().all(|s| is_scope(s)) {
            return Err(RecordError::Field("scopes"));
        }
        if let Some(ip) = &self.client_ip
            && ip.parse::<std::net::IpAddr>().is_err()
        {
            return Err(RecordError::Field("client_ip"));
        }
        if self.client_id.as_deref().is_some_and(|c| !is_client_id(c)) {
            return Err(RecordError::Field("client_id"));
        }
        Ok(())
    }

    /// Whether the record is past its expiry at `now_secs`.
    pub fn is_expired(&self, now_secs: i64) -> bool {
        self.expires_at.is_some_and(|e| e <= now_secs)
    }
}

/// A user id: 1–64 characters of `[A-Za-z0-9_-]` (Fluxer's are decimal snowflakes).
pub fn is_user_id(s: &str) -> bool {
    (1..=MAX_USER_ID_LEN).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// An OAuth2 client id: 1–128 visible ASCII characters, no spaces (it becomes a header).
pub fn is_client_id(s: &str) -> bool {
    (1..=128).contains(&s.len()) && s.bytes().all(|b| (0x21..0x7f).contains(&b))
}

/// An OAuth2 scope token (RFC 6749 §3.3 `scope-token`), without spaces, at most 64 bytes.
pub fn is_scope(s: &str) -> bool {
    (1..=MAX_SCOPE_LEN).contains(&s.len())
        && s.bytes()
            .all(|b| b == 0x21 || (0x23..=0x5b).contains(&b) || (0x5d..=0x7e).contains(&b))
}

/// A resolved session, as requests see it. The cache keeps a more compact form
/// (`entry.rs`) and builds this on every hit; header values not kept ready are computed on
/// demand.
#[derive(Debug, Clone)]
pub struct Session {
    pub sid: Sid,
    /// The user id (validated: ASCII letters, digits, '_', '-'), inline up to 23 bytes.
    pub(super) user: SmolStr,
    pub kind: Kind,
    pub has_mfa: Option<bool>,
    /// Unix seconds.
    pub expires_at: Option<i64>,
    /// Where the session was created from, if the record says.
    pub client_ip: Option<std::net::IpAddr>,
    /// Scopes and OAuth2 client, shared by the cache entry (most sessions have neither).
    pub(super) extra: Option<Arc<Extra>>,
    /// Cache bookkeeping (see `cache.rs`).
    pub(crate) meta: CacheMeta,
}

/// The rarely present parts of a session, ready to be header values.
#[derive(Debug)]
pub(crate) struct Extra {
    scopes: Option<Scopes>,
    client_id: Option<HeaderValue>,
}

#[derive(Debug)]
struct Scopes {
    list: Box<[Box<str>]>,
    header: HeaderValue,
}

/// When and how an entry entered the cache.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct CacheMeta {
    pub fresh_until: i64,
    pub loaded_at: i64,
    pub generation: u64,
    pub user_stripe: u32,
}

impl Session {
    pub fn new(sid: Sid, record: SessionRecord) -> Result<Session, RecordError> {
        record.validate()?;
        let scopes = if record.scopes.is_empty() {
            None
        } else {
            let header = HeaderValue::from_str(&record.scopes.join(" "))
                .map_err(|_| RecordError::Field("scopes"))?;
            Some(Scopes {
                list: record
                    .scopes
                    .into_iter()
                    .map(String::into_boxed_str)
                    .collect(),
                header,
            })
        };
        let client_id = match record.client_id.as_deref() {
            Some(c) => Some(HeaderValue::from_str(c).map_err(|_| RecordError::Field("client_id"))?),
            None => None,
        };
        let extra = (scopes.is_some() || client_id.is_some())
            .then(|| Arc::new(Extra { scopes, client_id }));
        Ok(Session {
            sid,
            user: SmolStr::new(&record.user_id),
            kind: record.kind,
            has_mfa: record.has_mfa,
            expires_at: record.expires_at,
            client_ip: record.client_ip.as_deref().and_then(|ip| ip.parse().ok()),
            extra,
            meta: CacheMeta::default(),
        })
    }

    pub fn user_id(&self) -> &str {
        &self.user
    }

    /// `X-Fluxgate-User-Id` (computed, not stored, to keep the cache small).
    pub fn user_header(&self) -> HeaderValue {
        HeaderValue::from_str(&self.user).expect("a validated user id is a valid header value")
    }

    /// `X-Fluxgate-Session-Id`: the sid in its 43-character form (computed, not stored, to keep
    /// the cache small).
    pub fn sid_header(&self) -> HeaderValue {
        HeaderValue::from_maybe_shared(bytes::Bytes::from(self.sid.encode()))
            .expect("base64url is a valid header value")
    }

    /// The OAuth2 client the token was issued to, when known.
    pub fn client_id_header(&self) -> Option<&HeaderValue> {
        self.extra.as_ref()?.client_id.as_ref()
    }

    /// Space-separated scopes, when there are any.
    pub fn scopes_header(&self) -> Option<&HeaderValue> {
        Some(&self.extra.as_ref()?.scopes.as_ref()?.header)
    }

    pub fn has_scope(&self, scope: &str) -> bool {
        self.extra
            .as_ref()
            .and_then(|e| e.scopes.as_ref())
            .is_some_and(|s| s.list.iter().any(|x| &**x == scope))
    }

    /// Whether the session is past its expiry at `now_secs`.
    pub fn is_expired(&self, now_secs: i64) -> bool {
        self.expires_at.is_some_and(|e| e <= now_secs)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec() -> SessionRecord {
        SessionRecord {
            v: 1,
            user_id: "123456789012345678".into(),
            kind: Kind::Session,
            created_at: 1_700_000_000,
            expires_at: Some(1_800_000_000),
            scopes: vec![],
            client_ip: None,
            has_mfa: Some(true),
            flags: None,
            client_id: None,
        }
    }

    #[test]
    fn round_trips_through_json() {
        let r = rec();
        assert_eq!(SessionRecord::decode(&r.encode()).unwrap(), r);
    }

    #[test]
    fn accepts_the_documented_minimal_record() {
        let raw = br#"{"v":1,"user_id":"42","kind":"oauth2","created_at":1,"expires_at":null,"scopes":["identify","guilds"]}"#;
        let r = SessionRecord::decode(raw).unwrap();
        assert_eq!(r.kind, Kind::Oauth2);
        assert_eq!(r.scopes, vec!["identify", "guilds"]);
    }

    #[test]
    fn unknown_version_and_corrupt_bytes_are_refused() {
        let mut r = rec();
        r.v = 2;
        assert_eq!(
            SessionRecord::decode(&serde_json::to_vec(&r).unwrap()),
            Err(RecordError::Version(2))
        );
        assert!(matches!(
            SessionRecord::decode(b"{not json"),
            Err(RecordError::Json(_))
        ));
        assert!(matches!(
            SessionRecord::decode(&vec![b' '; MAX_RECORD_BYTES + 1]),
            Err(RecordError::TooLarge(_))
        ));
    }

    #[test]
    fn header_injection_through_the_user_id_is_refused() {
        let mut r = rec();
        r.user_id = "1\r\nX-Fluxgate-User-Id: 2".into();
        assert_eq!(r.validate(), Err(RecordError::Field("user_id")));
        let mut r = rec();
        r.scopes = vec!["a b".into()];
        assert_eq!(r.validate(), Err(RecordError::Field("scopes")));
    }

    #[test]
    fn expiry_is_inclusive_of_the_expiry_second() {
        let r = rec();
        assert!(!r.is_expired(1_799_999_999));
        assert!(r.is_expired(1_800_000_000));
    }

    #[test]
    fn session_keeps_its_headers_ready() {
        let mut r = rec();
        r.scopes = vec!["identify".into(), "email".into()];
        r.client_ip = Some("192.0.2.1".into());
        let s = Session::new(Sid::of("t"), r).unwrap();
        assert_eq!(s.user_header(), "123456789012345678");
        assert_eq!(s.user_id(), "123456789012345678");
        assert_eq!(s.scopes_header().unwrap(), "identify email");
        assert!(s.has_scope("email") && !s.has_scope("guilds"));
        assert_eq!(s.sid_header().to_str().unwrap(), Sid::of("t").encode());
        assert_eq!(s.client_ip, Some("192.0.2.1".parse().unwrap()));
    }
}
