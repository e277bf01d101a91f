//! The cache's way to the backend resolver, and the answers it shares through Redis.
//!
//! - A token the store does not know is looked up in the shared answers first (when `share`
//!   is on), then asked of the backend; a positive answer is shared for `cache_ttl` (never
//!   past the token's `exp`). Negative answers are not shared.
//! - Redis failing while reading a shared answer does not fail the request and never admits
//!   it by itself: the backend, which is the authority, is asked instead (and nothing is
//!   shared). A failed write is counted and logged; the answer still counts.
//! - Revocation order: an instance that evicts must not read the revoked answer from Redis
//!   again. So revoking through fluxgate deletes the shared answer before the store publishes
//!   the invalidation, an instance handling an invalidation evicts, deletes, and evicts again
//!   (a read that started between the two is stale), and a writer whose load overlapped a
//!   revocation deletes what it just wrote.

use super::SessionCache;
use crate::credential::{Kind, Sid};
use crate::session::backend::BackendResolver;
use crate::session::invalidation::Invalidation;
use crate::session::record::SessionRecord;
use crate::session::redis::shared::SharedAnswers;
use crate::session::store::StoreError;
use std::sync::atomic::Ordering;

/// Outcomes counted in `fluxgate_backend_shared_total{result}`.
const SHARED_HIT: &str = "hit";
const SHARED_MISS: &str = "miss";
const SHARED_READ_ERROR: &str = "read_error";
const SHARED_WRITTEN: &str = "written";
const SHARED_WRITE_ERROR: &str = "write_error";
const SHARED_UNDONE: &str = "undone";

type Answer = (Option<SessionRecord>, Option<crate::clock::Millis>);

impl SessionCache {
    /// What the backend says about `token` (from another instance's shared answer when there
    /// is one), and how long a shared answer has left.
    pub(super) async fn backend_answer(
        &self,
        backend: &BackendResolver,
        sid: Sid,
        kind: Kind,
        token: &str,
        generation: u64,
    ) -> Result<Answer, StoreError> {
        if let Some(shared) = &self.shared {
            match shared.get(&sid).await {
                Ok(Some((record, left))) if record.kind == kind => {
                    self.metrics.backend_shared.inc(SHARED_HIT, "");
                    return Ok((Some(record), Some(left)));
                }
                Ok(_) => self.metrics.backend_shared.inc(SHARED_MISS, ""),
                Err(e) => {
                    // SECURITY: a Redis failure is neither a session nor a refusal: the
                    // backend, the authority on its tokens, is asked as if nothing were shared.
                    self.metrics.backend_shared.inc(SHARED_READ_ERROR, "");
                    tracing::warn!(error = %e, "cannot read shared backend answers; asking the backend");
                    let record = self.ask_backend(backend, kind, token).await?;
                    return Ok((record, None));
                }
            }
        }
        let record = self.ask_backend(backend, kind, token).await?;
        if let (Some(shared), Some(r)) = (&self.shared, &record) {
            self.share(shared, sid, r, generation).await;
        }
        Ok((record, None))
    }

    /// Writes a positive answer for the other instances; undoes it when a revocation overlapped
    /// the load (the revoker's delete may have come before this write).
    async fn share(&self, shared: &SharedAnswers, sid: Sid, r: &SessionRecord, generation: u64) {
        let now = self.clock.now_ms();
        let ttl = match r.expires_at {
            Some(exp) => self
                .settings
                .ttl_ms
                .min(exp.saturating_mul(1000).saturating_sub(now)),
            None => self.settings.ttl_ms,
        };
        if let Err(e) = shared.put(&sid, r, ttl).await {
            self.metrics.backend_shared.inc(SHARED_WRITE_ERROR, "");
            tracing::warn!(error = %e, "cannot share a backend answer; other instances will ask the backend themselves");
            return;
        }
        self.metrics.backend_shared.inc(SHARED_WRITTEN, "");
        let revoked = self.sid_stripes[super::sid_stripe(&sid)].load(Ordering::Acquire)
            > generation
            || self.user_stripes[self.user_stripe(&r.user_id)].load(Ordering::Acquire) > generation
            || self.cleared_at.load(Ordering::Acquire) > generation;
        if revoked {
            self.metrics.backend_shared.inc(SHARED_UNDONE, "");
            if let Err(e) = shared.forget(&sid).await {
                tracing::warn!(error = %e, "cannot delete a shared backend answer that a revocation overlapped");
            }
        }
    }

    /// A token the store does not know, as the backend sees it.
    async fn ask_backend(
        &self,
        backend: &BackendResolver,
        kind: Kind,
        token: &str,
    ) -> Result<Option<SessionRecord>, StoreError> {
        let started = crate::clock::monotonic_now();
        let answer = backend.resolve(kind, token, self.clock.now_secs()).await;
        let result = match &answer {
            Ok(Some(_)) => "session",
            Ok(None) => "no_session",
            Err(e) => e.reason(),
        };
        self.metrics.backend_auth.inc(result, "");
        self.metrics
            .backend_latency
            .observe(result, "", started.elapsed(), None);
        match answer {
            Ok(found) => Ok(found.map(|b| b.record)),
            Err(e) => {
                // SECURITY: a backend that cannot answer is not "no session": the request fails
                // closed (503) and nothing is cached. The reason never carries the token.
                tracing::warn!(
                    reason = e.reason(),
                    "session backend failed; refusing the request"
                );
                self.metrics.store_errors.fetch_add(1, Ordering::Relaxed);
                Err(StoreError::Unavailable(format!(
                    "session backend: {}",
                    e.reason()
                )))
            }
        }
    }

    /// Deletes the shared answer for `sid` (none shared: `None`).
    pub(in crate::session) async fn forget_shared(
        &self,
        sid: &Sid,
    ) -> Result<Option<String>, StoreError> {
        match &self.shared {
            Some(s) => s.forget(sid).await,
            None => Ok(None),
        }
    }

    /// Deletes every shared answer of `user_id`.
    pub(in crate::session) async fn forget_shared_user(
        &self,
        user_id: &str,
    ) -> Result<Vec<Sid>, StoreError> {
        match &self.shared {
            Some(s) => s.forget_user(user_id).await,
            None => Ok(Vec::new()),
        }
    }

    /// Applies an invalidation from the `<prefix>invalidate` channel: evicts here and deletes
    /// the shared answers it names, so no instance reads them again.
    pub async fn invalidated(&self, inv: &Invalidation) {
        let evict = || async {
            match inv {
                Invalidation::Session(sid) => self.evict(sid).await,
                Invalidation::User(user) => self.evict_user(user),
            }
        };
        evict().await;
        if self.shared.is_none() {
            return;
        }
        let forgot = match inv {
            Invalidation::Session(sid) => self.forget_shared(sid).await.map(drop),
            Invalidation::User(user) => self.forget_shared_user(user).await.map(drop),
        };
        if let Err(e) = forgot {
            // Other instances delete it too; at worst it lives out its `cache_ttl`.
            tracing::warn!(error = %e, "cannot delete a revoked shared backend answer");
        }
        // A read that started between the first eviction and the delete may hold the answer.
        evict().await;
    }
}
