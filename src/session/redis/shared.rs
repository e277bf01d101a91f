//! Backend answers shared through Redis, so N fluxgate instances make one backend call per
//! token and `cache_ttl`, not N (`[sessions.backend] share`, contract §8).
//!
//! - Keys (prefix `fluxgate:` by default) are apart from fluxgate's own sessions:
//!   `bsess:<sid>` holds the record the backend vouched for, `bsess-user:<user_id>` the sids
//!   shared for a user (so revoking a user finds them). The sid is the token's SHA-256; the
//!   token itself is never written.
//! - An entry lives `cache_ttl` from the backend's answer (`PX`), never past the token's `exp`,
//!   and a reader caches it only for what is left of that life: the staleness bound for a token
//!   revoked inside the backend stays `cache_ttl` after the answer, however many instances
//!   read it. An entry without an expiry is not trusted.
//! - Only positive answers are shared: a negative one would let anyone fill Redis with keys
//!   for made-up tokens.
//! - One key per command (never MULTI across keys), so it works on Redis Cluster too.

use crate::clock::{Millis, SharedClock};
use crate::credential::Sid;
use crate::redis_client::Connections;
use crate::session::record::SessionRecord;
use crate::session::store::StoreError;
use redis::AsyncCommands;
use std::future::Future;
use std::sync::Arc;

/// Backend answers in Redis. Cheap to clone.
#[derive(Clone)]
pub struct SharedAnswers {
    conns: Arc<Connections>,
    prefix: Arc<str>,
    clock: SharedClock,
}

impl SharedAnswers {
    /// No I/O yet: connections are made on first use.
    pub fn new(conns: Arc<Connections>, clock: SharedClock) -> SharedAnswers {
        SharedAnswers {
            prefix: conns.settings().key_prefix.clone().into(),
            conns,
            clock,
        }
    }

    fn key(&self, sid: &Sid) -> String {
        format!("{}bsess:{}", self.prefix, sid.encode())
    }

    fn user_key(&self, user: &str) -> String {
        format!("{}bsess-user:{user}", self.prefix)
    }

    async fn run<T, F, Fut>(&self, f: F) -> Result<T, StoreError>
    where
        F: FnOnce(crate::redis_client::Conn) -> Fut,
        Fut: Future<Output = redis::RedisResult<T>>,
    {
        self.conns.run(f).await.map_err(StoreError::from)
    }

    /// The shared answer for `sid` and how many milliseconds it has left, if any.
    pub async fn get(&self, sid: &Sid) -> Result<Option<(SessionRecord, Millis)>, StoreError> {
        let key = &self.key(sid);
        let (bytes, pttl): (Option<Vec<u8>>, i64) = self
            .conns
            .run_retry(
                |mut c| async move { redis::pipe().get(key).pttl(key).query_async(&mut c).await },
            )
            .await
            .map_err(StoreError::from)?;
        // SECURITY: an entry without an expiry (or an unreadable one) was not written by us as
        // we write them; it is ignored and the backend is asked, never trusted without a bound.
        let Some(bytes) = bytes.filter(|_| pttl > 0) else {
            return Ok(None);
        };
        match SessionRecord::decode(&bytes) {
            Ok(r) if !r.is_expired(self.clock.now_secs()) => Ok(Some((r, pttl))),
            Ok(_) => Ok(None),
            Err(e) => {
                tracing::warn!(sid = %sid, error = %e, "unreadable shared backend answer; asking the backend");
                Ok(None)
            }
        }
    }

    /// Shares a positive answer for `ttl_ms` (the caller caps it at the token's `exp`).
    pub async fn put(
        &self,
        sid: &Sid,
        record: &SessionRecord,
        ttl_ms: Millis,
    ) -> Result<(), StoreError> {
        if ttl_ms <= 0 {
            return Ok(());
        }
        let (key, user_key) = (self.key(sid), self.user_key(&record.user_id));
        let (json, sid_s) = (record.encode(), sid.encode());
        self.run(|mut c| async move {
            c.pset_ex::<_, _, ()>(&key, json, ttl_ms as u64).await?;
            c.sadd::<_, _, i64>(&user_key, sid_s).await?;
            // Every entry in the set lives at most `ttl_ms` from now: so may the set, unless a
            // later entry extends it.
            let left: i64 = c.pttl(&user_key).await?;
            if left < ttl_ms {
                c.pexpire::<_, ()>(&user_key, ttl_ms).await?;
            }
            Ok(())
        })
        .await
    }

    /// Deletes the shared answer for `sid`; returns its user id if there was one.
    pub async fn forget(&self, sid: &Sid) -> Result<Option<String>, StoreError> {
        let key = self.key(sid);
        let bytes: Option<Vec<u8>> = {
            let key = key.clone();
            self.run(|mut c| async move { c.get(key).await }).await?
        };
        let deleted: i64 = self.run(|mut c| async move { c.del(key).await }).await?;
        let user = bytes
            .as_deref()
            .and_then(|b| SessionRecord::decode(b).ok())
            .map(|r| r.user_id);
        if let Some(u) = &user {
            let (user_key, sid_s) = (self.user_key(u), sid.encode());
            self.run(|mut c| async move { c.srem::<_, _, i64>(user_key, sid_s).await })
                .await?;
        }
        Ok(user.filter(|_| deleted > 0))
    }

    /// Deletes every shared answer of `user_id`; returns their sids.
    pub async fn forget_user(&self, user_id: &str) -> Result<Vec<Sid>, StoreError> {
        let user_key = self.user_key(user_id);
        let members: Vec<String> = {
            let k = user_key.clone();
            self.run(|mut c| async move { c.smembers(k).await }).await?
        };
        let mut gone = Vec::new();
        for sid in members.iter().filter_map(|m| Sid::decode(m)) {
            let key = self.key(&sid);
            let n: i64 = self.run(|mut c| async move { c.del(key).await }).await?;
            if n > 0 {
                gone.push(sid);
            }
        }
        self.run(|mut c| async move { c.del::<_, i64>(user_key).await })
            .await?;
        Ok(gone)
    }
}
