//! What the session cache holds for one sid: a compact, fixed-size value with no heap
//! allocation for an ordinary session (a snowflake user id, no scopes, no OAuth2 client).
//!
//! A million cached sessions must fit in 150 MB (issue 17), and with quick_cache's own slot
//! (the 32-byte sid key, its hash table and list links) that leaves about 80 bytes for this
//! value. So the entry is stored inline in the cache, not behind an `Arc`: an `Arc<Session>`
//! per entry cost a malloc'd block of ~190 bytes plus another for the user id. A hit copies
//! out the [`Session`] requests use (by value: no allocation, no shared reference count).
//!
//! Layout (80 bytes, checked by a test): the user id inline (`SmolStr`, ids up to 23 bytes, so
//! every Fluxer snowflake), the rare OAuth2 part (scopes, client id) behind one shared pointer,
//! expiry without an `Option` tag, freshness as a 32-bit offset from the read time, the user's
//! revocation stripe as 16 bits, and the client address as 16 bytes plus flag bits.

use super::record::{CacheMeta, Extra, Session};
use crate::clock::Millis;
use crate::credential::{Kind, Sid};
use smol_str::SmolStr;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::Arc;

/// `expires_at` of a session that never expires.
const NEVER: i64 = i64::MAX;

const ABSENT: u8 = 1;
const MFA_KNOWN: u8 = 1 << 1;
const MFA: u8 = 1 << 2;
const IP_V4: u8 = 1 << 3;
const IP_V6: u8 = 1 << 4;

/// A cached answer for one sid: a session, or "no such session" (negative entry).
#[derive(Debug, Clone)]
pub(super) struct Entry {
    user: SmolStr,
    extra: Option<Arc<Extra>>,
    /// Unix seconds, [`NEVER`] for none.
    expires_at: i64,
    loaded_at: Millis,
    generation: u64,
    /// Fresh until `loaded_at + fresh_for` (ms; negative when the session had expired by the
    /// read). Clamped to ±24 days, where `cache_ttl` is at most an hour: a longer freshness
    /// could only get shorter.
    fresh_for: i32,
    user_stripe: u16,
    ip: [u8; 16],
    kind: Kind,
    flags: u8,
}

// The user stripe is stored in 16 bits.
const _: () = assert!(super::cache::STRIPES <= 1 << 16);

fn fresh_for(m: &CacheMeta) -> i32 {
    let d = m.fresh_until.saturating_sub(m.loaded_at);
    d.clamp(i32::MIN.into(), i32::MAX.into()) as i32
}

impl Entry {
    /// "No such session", remembered until `meta.fresh_until`.
    pub(super) fn absent(meta: CacheMeta) -> Entry {
        Entry {
            user: SmolStr::default(),
            extra: None,
            expires_at: NEVER,
            loaded_at: meta.loaded_at,
            generation: meta.generation,
            fresh_for: fresh_for(&meta),
            user_stripe: 0,
            ip: [0; 16],
            kind: Kind::Session,
            flags: ABSENT,
        }
    }

    /// A session as cached, with its bookkeeping (`meta.user_stripe` must be below
    /// `STRIPES`).
    pub(super) fn found(s: Session, meta: CacheMeta) -> Entry {
        let mut flags = 0;
        match s.has_mfa {
            Some(true) => flags |= MFA_KNOWN | MFA,
            Some(false) => flags |= MFA_KNOWN,
            None => {}
        }
        let mut ip = [0; 16];
        match s.client_ip {
            Some(IpAddr::V4(a)) => {
                flags |= IP_V4;
                ip[..4].copy_from_slice(&a.octets());
            }
            Some(IpAddr::V6(a)) => {
                flags |= IP_V6;
                ip = a.octets();
            }
            None => {}
        }
        Entry {
            user: s.user,
            extra: s.extra,
            expires_at: s.expires_at.unwrap_or(NEVER),
            loaded_at: meta.loaded_at,
            generation: meta.generation,
            fresh_for: fresh_for(&meta),
            user_stripe: meta.user_stripe as u16,
            ip,
            kind: s.kind,
            flags,
        }
    }

    pub(super) fn is_absent(&self) -> bool {
        self.flags & ABSENT != 0
    }

    pub(super) fn meta(&self) -> CacheMeta {
        CacheMeta {
            fresh_until: self.loaded_at.saturating_add(Millis::from(self.fresh_for)),
            loaded_at: self.loaded_at,
            generation: self.generation,
            user_stripe: u32::from(self.user_stripe),
        }
    }

    pub(super) fn expires_at(&self) -> Option<i64> {
        (self.expires_at != NEVER).then_some(self.expires_at)
    }

    /// The session for requests (`None` for a negative entry). Takes the entry (a copy out of
    /// the cache) so the user id and the shared part move instead of being cloned again.
    pub(super) fn session(self, sid: Sid) -> Option<Session> {
        if self.is_absent() {
            return None;
        }
        let client_ip = if self.flags & IP_V4 != 0 {
            let [a, b, c, d, ..] = self.ip;
            Some(IpAddr::V4(Ipv4Addr::new(a, b, c, d)))
        } else if self.flags & IP_V6 != 0 {
            Some(IpAddr::V6(Ipv6Addr::from(self.ip)))
        } else {
            None
        };
        let (meta, expires_at) = (self.meta(), self.expires_at());
        Some(Session {
            sid,
            user: self.user,
            kind: self.kind,
            has_mfa: (self.flags & MFA_KNOWN != 0).then_some(self.flags & MFA != 0),
            expires_at,
            client_ip,
            extra: self.extra,
            meta,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::session::record::SessionRecord;

    fn rec(user: &str) -> SessionRecord {
        SessionRecord {
            v: 1,
            user_id: user.into(),
            kind: Kind::Oauth2,
            created_at: 1_700_000_000,
            expires_at: Some(1_800_000_000),
            scopes: vec!["identify".into(), "email".into()],
            client_ip: Some("2001:db8::7".into()),
            has_mfa: Some(false),
            flags: None,
            client_id: Some("app-1".into()),
        }
    }

    const META: CacheMeta = CacheMeta {
        fresh_until: 1_700_000_030_000,
        loaded_at: 1_700_000_000_000,
        generation: 7,
        user_stripe: 4095,
    };

    #[test]
    fn a_cache_entry_is_80_bytes_with_no_allocation_for_a_snowflake_session() {
        // 1M × (80 + quick_cache's slot) must stay under the 150 MB budget.
        assert_eq!(std::mem::size_of::<Entry>(), 80);
        let mut r = rec("1234567890123456789");
        r.scopes.clear();
        r.client_id = None;
        let e = Entry::found(Session::new(Sid::of("t"), r).unwrap(), META);
        assert!(!e.user.is_heap_allocated() && e.extra.is_none());
    }

    #[test]
    fn every_field_survives_the_round_trip() {
        let sid = Sid::of("t");
        for (user, ip, mfa, exp) in [
            (
                "1234567890123456789",
                Some("2001:db8::7"),
                Some(false),
                Some(1),
            ),
            ("x".repeat(64).as_str(), Some("192.0.2.1"), Some(true), None),
            ("42", None, None, Some(i64::MIN)),
        ] {
            let mut r = rec(user);
            r.client_ip = ip.map(Into::into);
            r.has_mfa = mfa;
            r.expires_at = exp;
            let want = Session::new(sid, r.clone()).unwrap();
            let e = Entry::found(Session::new(sid, r).unwrap(), META);
            let got = e.session(sid).unwrap();
            assert_eq!(got.sid, sid);
            assert_eq!(got.user_id(), want.user_id());
            assert_eq!(got.user_header(), want.user_header());
            assert_eq!(got.kind, want.kind);
            assert_eq!(got.has_mfa, want.has_mfa);
            assert_eq!(got.expires_at, want.expires_at);
            assert_eq!(got.client_ip, want.client_ip);
            assert_eq!(got.scopes_header(), want.scopes_header());
            assert_eq!(got.client_id_header(), want.client_id_header());
            assert!(got.has_scope("email") && !got.has_scope("guilds"));
            let m = got.meta;
            assert_eq!(
                (m.fresh_until, m.loaded_at, m.generation, m.user_stripe),
                (META.fresh_until, META.loaded_at, 7, 4095)
            );
        }
    }

    #[test]
    fn freshness_is_never_lengthened_by_packing() {
        let past = CacheMeta {
            fresh_until: META.loaded_at - 5,
            ..META
        };
        assert_eq!(Entry::absent(past).meta().fresh_until, META.loaded_at - 5);
        let long_past = CacheMeta {
            fresh_until: i64::MIN,
            ..META
        };
        assert!(Entry::absent(long_past).meta().fresh_until < META.loaded_at);
        let far = CacheMeta {
            fresh_until: i64::MAX,
            ..META
        };
        let m = Entry::absent(far).meta();
        assert!(m.fresh_until > META.loaded_at && m.fresh_until < i64::MAX);
        assert!(
            Entry::absent(META).is_absent() && Entry::absent(META).session(Sid::of("t")).is_none()
        );
    }
}
