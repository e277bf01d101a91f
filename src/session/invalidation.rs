//! Invalidation messages on the `<prefix>invalidate` channel (contract §8): `session:<sid>`
//! evicts one session, `user:<user_id>` every session of a user. Backends may publish them too.

use crate::credential::Sid;
use crate::session::record::is_user_id;

/// One invalidation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Invalidation {
    Session(Sid),
    User(String),
}

impl Invalidation {
    /// Parses a message payload; anything else is `None` (and ignored by subscribers).
    pub fn parse(payload: &[u8]) -> Option<Invalidation> {
        let s = std::str::from_utf8(payload).ok()?.trim();
        if let Some(sid) = s.strip_prefix("session:") {
            return Sid::decode(sid).map(Invalidation::Session);
        }
        let user = s.strip_prefix("user:")?;
        is_user_id(user).then(|| Invalidation::User(user.to_string()))
    }

    /// The payload to publish.
    pub fn payload(&self) -> String {
        match self {
            Invalidation::Session(sid) => format!("session:{}", sid.encode()),
            Invalidation::User(u) => format!("user:{u}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_refuses_garbage() {
        let s = Invalidation::Session(Sid::of("t"));
        assert_eq!(Invalidation::parse(s.payload().as_bytes()), Some(s));
        let u = Invalidation::User("42".into());
        assert_eq!(Invalidation::parse(b"user:42"), Some(u));
        for bad in [
            &b"session:short"[..],
            b"user:",
            b"user:a b",
            b"flush",
            b"\xff",
        ] {
            assert_eq!(Invalidation::parse(bad), None);
        }
    }
}
