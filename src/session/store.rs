//! The `SessionStore` trait: what every session store (embedded, Redis) provides.

use super::locations::Ticket;
use super::record::SessionRecord;
use crate::credential::Sid;
use async_trait::async_trait;

/// A store failure. Never shown to clients; the request fails closed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum StoreError {
    #[error("session store unavailable: {0}")]
    Unavailable(String),
    #[error("session store timed out")]
    Timeout,
    #[error("session store internal error: {0}")]
    Internal(String),
}

/// Persistent sessions keyed by `sid`.
///
/// `get` never returns an expired record. Revocations return what they removed so callers can
/// evict caches everywhere.
#[async_trait]
pub trait SessionStore: Send + Sync + 'static {
    /// Short name for logs and metrics (`embedded`, `redis`).
    fn name(&self) -> &'static str;

    /// The live record for `sid`, or `None` if there is none (or it expired, or is unreadable).
    async fn get(&self, sid: &Sid) -> Result<Option<SessionRecord>, StoreError>;

    /// Stores a new session.
    async fn create(&self, sid: &Sid, record: &SessionRecord) -> Result<(), StoreError>;

    /// Removes one session; returns its user id if it existed.
    async fn revoke(&self, sid: &Sid) -> Result<Option<String>, StoreError>;

    /// The live sessions of a user.
    async fn list_user(&self, user_id: &str) -> Result<Vec<(Sid, SessionRecord)>, StoreError>;

    /// Removes every session of a user; returns the removed sids.
    async fn revoke_user(&self, user_id: &str) -> Result<Vec<Sid>, StoreError>;

    /// Whether the store answers (readiness).
    async fn ping(&self) -> Result<(), StoreError>;

    /// The locations a user has authorized (contract §7).
    async fn locations(&self, _user_id: &str) -> Result<Vec<String>, StoreError> {
        Err(unsupported())
    }

    /// Authorizes a location for a user (and tells every instance, where there are several).
    async fn add_location(&self, _user_id: &str, _location: &str) -> Result<(), StoreError> {
        Err(unsupported())
    }

    /// Stores a new pending ticket and its approval token's digest, unless a live ticket for
    /// the same user and location exists: then that one is returned unchanged.
    async fn open_ticket(&self, _t: &Ticket, _token_hash: &[u8; 32]) -> Result<Ticket, StoreError> {
        Err(unsupported())
    }

    /// A live ticket by id.
    async fn ticket(&self, _id: &str) -> Result<Option<Ticket>, StoreError> {
        Err(unsupported())
    }

    /// Rewrites a ticket (completed, resent), keeping its expiry.
    async fn save_ticket(&self, _t: &Ticket) -> Result<(), StoreError> {
        Err(unsupported())
    }

    /// Adds another approval token for a live ticket (a resend).
    async fn add_token(&self, _token_hash: &[u8; 32], _t: &Ticket) -> Result<(), StoreError> {
        Err(unsupported())
    }

    /// Consumes an approval token: the first call returns its live ticket, later calls none.
    async fn consume_token(&self, _token_hash: &[u8; 32]) -> Result<Option<Ticket>, StoreError> {
        Err(unsupported())
    }
}

fn unsupported() -> StoreError {
    StoreError::Internal("this store does not keep IP authorizations".into())
}
