//! Revocation: the store forgets a session (or every session of a user), and this process
//! evicts it from its caches and closes its WebSocket tunnels (other instances do the same on
//! the invalidation message the store publishes).

use super::SessionCache;
use super::store::StoreError;
use crate::credential::Sid;
use std::sync::atomic::Ordering;

impl SessionCache {
    /// Revokes one session in the store and evicts it here.
    pub async fn revoke(&self, sid: &Sid) -> Result<Option<String>, StoreError> {
        // The shared backend answer goes first: the store's revocation tells every instance to
        // evict, and an instance that evicts must not find the answer in Redis again.
        let shared = self.forget_shared(sid).await?;
        let user = self.store.revoke(sid).await?.or(shared);
        self.evict(sid).await;
        if user.is_some() {
            self.metrics.revocations.fetch_add(1, Ordering::Relaxed);
        }
        Ok(user)
    }

    /// Revokes every session of a user in the store and evicts them here.
    pub async fn revoke_user(&self, user_id: &str) -> Result<Vec<Sid>, StoreError> {
        let mut sids = self.forget_shared_user(user_id).await?;
        for sid in self.store.revoke_user(user_id).await? {
            if !sids.contains(&sid) {
                sids.push(sid);
            }
        }
        self.evict_user(user_id);
        for sid in &sids {
            self.evict(sid).await;
        }
        self.metrics
            .revocations
            .fetch_add(sids.len() as u64, Ordering::Relaxed);
        Ok(sids)
    }
}
