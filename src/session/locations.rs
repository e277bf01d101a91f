//! IP-authorization state kept in the session store (contract §7): each user's authorized
//! locations, and pending approvals ("tickets") with their one-time approval tokens. Tokens are
//! stored only as SHA-256 digests.

use serde::{Deserialize, Serialize};

/// A pending (or completed) approval of a new location.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ticket {
    pub v: u32,
    /// Public id, returned to the client (poll, resend).
    pub ticket: String,
    pub user_id: String,
    pub location: String,
    pub ip: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub country: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub asn: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_agent: Option<String>,
    pub created_at: i64,
    pub expires_at: i64,
    pub completed: bool,
    /// Unix seconds of the last notification (for resend spacing).
    pub notified_at: i64,
    /// The one resend was used.
    pub resent: bool,
}

impl Ticket {
    pub fn encode(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("a Ticket always serializes")
    }

    /// Decodes stored bytes; anything unreadable or expired is `None`.
    pub fn decode_live(bytes: &[u8], now: i64) -> Option<Ticket> {
        let t: Ticket = serde_json::from_slice(bytes).ok()?;
        (t.v == 1 && t.expires_at > now).then_some(t)
    }

    /// Seconds until the pending-approval key for (user, location) may be reused.
    pub fn ttl(&self, now: i64) -> i64 {
        (self.expires_at - now).max(1)
    }
}

/// Key of the pending ticket for a user's location.
pub fn pending_key(user_id: &str, location: &str) -> String {
    format!("{user_id}\u{0}{location}")
}
