//! The `SessionStore` trait: what every session store (embedded, Redis) provides.

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
}
