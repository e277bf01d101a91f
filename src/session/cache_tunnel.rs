//! Opening a WebSocket tunnel for a session the request resolved a moment before.
//!
//! [`SessionCache::is_current`] is cheap and conservative: it says no whenever anything that
//! *might* concern the session happened since it was read (a revocation in the same stripe,
//! a user-wide eviction of a user hashed alike, or a whole-cache clear, which the Redis
//! subscriber does each time it (re)subscribes). Refusing the handshake on that alone turned
//! a harmless clear into a spurious 401 (seen in `tests/it/websocket_revocation.rs` under a
//! loaded suite, when the first subscription landed between the decision and the upgrade).
//! So when it says no, the store is asked again, as of now, and the tunnel opens only if the
//! session is still there for the same user and nothing concerning it happened since that
//! second read.

use super::SessionCache;
use crate::session::record::{CacheMeta, Session};
use crate::session::store::StoreError;
use crate::session::tunnels::{Closer, TunnelGuard};
use std::sync::Arc;
use std::sync::atomic::Ordering;

impl SessionCache {
    /// Registers a tunnel of `s` if [`is_current`](Self::is_current) vouches for it; else
    /// `Err(closer)`, for [`reopen_tunnel`](Self::reopen_tunnel).
    pub fn open_tunnel(
        &self,
        s: &Session,
        closer: Arc<dyn Closer>,
    ) -> Result<TunnelGuard, Arc<dyn Closer>> {
        self.tunnels
            .open((s.sid, s.user_id()), closer.clone(), || self.is_current(s))
            .ok_or(closer)
    }

    /// Registers a tunnel of `s` after asking the store again (the slow way, when
    /// [`open_tunnel`](Self::open_tunnel) could not vouch): `Ok(None)` when the session was
    /// revoked (or has expired) since it was resolved.
    pub async fn reopen_tunnel(
        &self,
        s: &Session,
        closer: Arc<dyn Closer>,
    ) -> Result<Option<TunnelGuard>, StoreError> {
        let key = (s.sid, s.user_id());
        // Read before the store, as `load` does: a revocation finishing after this point
        // stamps a newer generation, which the check under the tunnels' lock sees.
        let generation = self.generation.load(Ordering::Acquire);
        self.metrics.count_store_read();
        let Some(record) = self.store.get(&s.sid).await? else {
            // Revoked (or a backend session, which only its token could ask about again):
            // fail closed.
            return Ok(None);
        };
        // SECURITY: a tunnel outlives its handshake, so a session revoked between the
        // decision and the upgrade must not get one; only the store's word as of now, for
        // the same user and unexpired, overrides the cache's doubt.
        if record.user_id != s.user_id() || record.is_expired(self.clock.now_secs()) {
            return Ok(None);
        }
        let meta = CacheMeta {
            generation,
            ..s.meta
        };
        Ok(self
            .tunnels
            .open(key, closer, || self.not_revoked(&s.sid, &meta, false)))
    }
}
