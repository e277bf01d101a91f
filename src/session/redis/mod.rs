//! The Redis session store, shared by several fluxgate instances (contract §8).
//!
//! Keys (prefix `fluxgate:` by default): `session:<sid>` holds the JSON record (with a TTL when
//! it expires), `user-sessions:<user_id>` the set of a user's sids. Every revocation made
//! through fluxgate is published on `<prefix>invalidate` so every instance evicts its cache
//! (see `subscriber`). Commands are issued one key at a time (never MULTI across keys) so the
//! same code works on Redis Cluster, where the two keys live in different slots.

pub mod shared;
pub mod subscriber;

use super::invalidation::Invalidation;
use super::locations::{Ticket, pending_key};
use super::record::SessionRecord;
use super::store::{SessionStore, StoreError};
use crate::clock::SharedClock;
use crate::credential::Sid;
use crate::redis_client::{Connections, RedisFailure, RedisSettings};

/// A Redis failure, as the store reports it (its text goes to logs, never to clients).
impl From<RedisFailure> for StoreError {
    fn from(e: RedisFailure) -> StoreError {
        match e {
            RedisFailure::Error(m) => StoreError::Unavailable(m),
            RedisFailure::Timeout => StoreError::Timeout,
        }
    }
}
use async_trait::async_trait;
use redis::AsyncCommands;
use sha2::Digest;
use std::future::Future;
use std::sync::Arc;

/// Sessions in Redis.
#[derive(Clone)]
pub struct RedisStore {
    conns: Arc<Connections>,
    prefix: Arc<str>,
    clock: SharedClock,
    /// Sids whose unreadable record was already logged (bounded), so a bad record is logged
    /// once an hour rather than on every request. Value: when it was last logged.
    warned: Arc<quick_cache::sync::Cache<Sid, i64>>,
}

impl RedisStore {
    /// Prepares the store; connections are made on first use, so Redis may start later.
    pub fn new(conns: Arc<Connections>, clock: SharedClock) -> RedisStore {
        RedisStore {
            prefix: conns.settings().key_prefix.clone().into(),
            conns,
            clock,
            warned: Arc::new(quick_cache::sync::Cache::new(10_000)),
        }
    }

    /// Connects a store to `settings` (no I/O yet): for tests and benches.
    pub fn from_settings(
        settings: RedisSettings,
        clock: SharedClock,
    ) -> Result<RedisStore, String> {
        Ok(Self::new(Arc::new(Connections::new(settings)?), clock))
    }

    fn session_key(&self, sid: &Sid) -> String {
        format!("{}session:{}", self.prefix, sid.encode())
    }

    fn user_key(&self, user: &str) -> String {
        format!("{}user-sessions:{user}", self.prefix)
    }

    /// The pub/sub channel for invalidations.
    pub fn channel(&self) -> String {
        format!("{}invalidate", self.prefix)
    }

    pub fn subscribe_clients(&self) -> &[redis::Client] {
        &self.conns.subscribe_clients
    }

    /// Runs `f` with this thread's connection, bounded by the command timeout. Redis errors
    /// become `StoreError`s; their text goes to logs, never to clients.
    async fn run<T, F, Fut>(&self, f: F) -> Result<T, StoreError>
    where
        F: FnOnce(crate::redis_client::Conn) -> Fut,
        Fut: Future<Output = redis::RedisResult<T>>,
    {
        self.conns.run(f).await.map_err(StoreError::from)
    }

    fn decode(&self, sid: &Sid, bytes: &[u8]) -> Option<SessionRecord> {
        match SessionRecord::decode(bytes) {
            Ok(r) if r.is_expired(self.clock.now_secs()) => None,
            Ok(r) => Some(r),
            Err(e) => {
                let now = self.clock.now_secs();
                if self.warned.get(sid).is_none_or(|at| now - at >= 3600) {
                    self.warned.insert(*sid, now);
                    tracing::warn!(sid = %sid, error = %e, "unreadable session record in Redis; treating it as absent");
                }
                None
            }
        }
    }

    async fn publish(&self, inv: Invalidation) -> Result<(), StoreError> {
        let channel = self.channel();
        let payload = inv.payload();
        self.run(|mut c| async move { c.publish::<_, _, i64>(channel, payload).await })
            .await
            .map(|_| ())
    }
}

#[async_trait]
impl SessionStore for RedisStore {
    fn name(&self) -> &'static str {
        "redis"
    }

    async fn get(&self, sid: &Sid) -> Result<Option<SessionRecord>, StoreError> {
        let key = &self.session_key(sid);
        // The key's own TTL too, in the same round trip: a backend may expire a session with
        // the key's TTL alone (or sooner than `expires_at`), and the cache must not serve it
        // past that.
        let (bytes, pttl): (Option<Vec<u8>>, i64) = self
            .conns
            .run_retry(
                |mut c| async move { redis::pipe().get(key).pttl(key).query_async(&mut c).await },
            )
            .await
            .map_err(StoreError::from)?;
        let Some(mut record) = bytes.and_then(|b| self.decode(sid, &b)) else {
            return Ok(None);
        };
        if pttl >= 0 {
            let key_expiry = self.clock.now_secs() + pttl / 1000;
            record.expires_at = Some(record.expires_at.map_or(key_expiry, |e| e.min(key_expiry)));
        }
        Ok(Some(record))
    }

    async fn create(&self, sid: &Sid, record: &SessionRecord) -> Result<(), StoreError> {
        let key = self.session_key(sid);
        let user_key = self.user_key(&record.user_id);
        let json = record.encode();
        let sid_s = sid.encode();
        let expires = record.expires_at;
        self.run(|mut c| async move {
            let mut set = redis::cmd("SET");
            set.arg(&key).arg(json);
            if let Some(t) = expires {
                set.arg("EXAT").arg(t);
            }
            set.query_async::<()>(&mut c).await?;
            c.sadd::<_, _, i64>(&user_key, sid_s).await?;
            Ok(())
        })
        .await
    }

    async fn revoke(&self, sid: &Sid) -> Result<Option<String>, StoreError> {
        let key = self.session_key(sid);
        let bytes: Option<Vec<u8>> = {
            let key = key.clone();
            self.run(|mut c| async move { c.get(key).await }).await?
        };
        let user = bytes
            .as_deref()
            .and_then(|b| SessionRecord::decode(b).ok())
            .map(|r| r.user_id);
        let deleted: i64 = self.run(|mut c| async move { c.del(key).await }).await?;
        if let Some(u) = &user {
            let user_key = self.user_key(u);
            let sid_s = sid.encode();
            self.run(|mut c| async move { c.srem::<_, _, i64>(user_key, sid_s).await })
                .await?;
        }
        self.publish(Invalidation::Session(*sid)).await?;
        Ok(if deleted > 0 {
            user.or_else(|| Some(String::new()))
        } else {
            None
        })
    }

    async fn list_user(&self, user_id: &str) -> Result<Vec<(Sid, SessionRecord)>, StoreError> {
        let user_key = self.user_key(user_id);
        let members: Vec<String> = {
            let k = user_key.clone();
            self.run(|mut c| async move { c.smembers(k).await }).await?
        };
        let mut out = Vec::new();
        let mut gone = Vec::new();
        for m in members {
            let Some(sid) = Sid::decode(&m) else {
                gone.push(m);
                continue;
            };
            let key = self.session_key(&sid);
            let bytes: Option<Vec<u8>> = self.run(|mut c| async move { c.get(key).await }).await?;
            match bytes.and_then(|b| self.decode(&sid, &b)) {
                Some(r) if r.user_id == user_id => out.push((sid, r)),
                _ => gone.push(m),
            }
        }
        if !gone.is_empty() {
            // Expired or deleted sessions leave their sid in the set; tidy up on the way.
            self.run(|mut c| async move { c.srem::<_, _, i64>(user_key, gone).await })
                .await?;
        }
        out.sort_by_key(|(_, r)| r.created_at);
        Ok(out)
    }

    async fn revoke_user(&self, user_id: &str) -> Result<Vec<Sid>, StoreError> {
        let user_key = self.user_key(user_id);
        let members: Vec<String> = {
            let k = user_key.clone();
            self.run(|mut c| async move { c.smembers(k).await }).await?
        };
        let sids: Vec<Sid> = members.iter().filter_map(|m| Sid::decode(m)).collect();
        for sid in &sids {
            let key = self.session_key(sid);
            self.run(|mut c| async move { c.del::<_, i64>(key).await })
                .await?;
        }
        self.run(|mut c| async move { c.del::<_, i64>(user_key).await })
            .await?;
        self.publish(Invalidation::User(user_id.to_string()))
            .await?;
        Ok(sids)
    }

    async fn ping(&self) -> Result<(), StoreError> {
        self.run(|mut c| async move { redis::cmd("PING").query_async::<String>(&mut c).await })
            .await
            .map(|_| ())
    }

    async fn locations(&self, user_id: &str) -> Result<Vec<String>, StoreError> {
        let k = format!("{}ip-auth:{user_id}", self.prefix);
        self.run(|mut c| async move { c.smembers(k).await }).await
    }

    async fn add_location(&self, user_id: &str, location: &str) -> Result<(), StoreError> {
        let k = format!("{}ip-auth:{user_id}", self.prefix);
        let loc = location.to_string();
        self.run(|mut c| async move { c.sadd::<_, _, i64>(k, loc).await })
            .await?;
        // Every instance drops what it cached about this user (sessions and locations).
        self.publish(Invalidation::User(user_id.to_string())).await
    }

    async fn open_ticket(&self, t: &Ticket, token_hash: &[u8; 32]) -> Result<Ticket, StoreError> {
        let now = self.clock.now_secs();
        let ttl = t.ttl(now);
        let pending = format!(
            "{}ip-auth-pending:{}",
            self.prefix,
            hex::encode(sha2::Sha256::digest(
                pending_key(&t.user_id, &t.location).as_bytes()
            ))
        );
        let claimed: bool = {
            let (pending, id) = (pending.clone(), t.ticket.clone());
            self.run(|mut c| async move {
                redis::cmd("SET")
                    .arg(pending)
                    .arg(id)
                    .arg("NX")
                    .arg("EX")
                    .arg(ttl)
                    .query_async::<Option<String>>(&mut c)
                    .await
                    .map(|r| r.is_some())
            })
            .await?
        };
        if !claimed {
            let existing: Option<String> = self
                .run(|mut c| async move { c.get(pending).await })
                .await?;
            if let Some(id) = existing
                && let Some(live) = self.ticket(&id).await?
                && !live.completed
            {
                return Ok(live);
            }
        }
        let tk = format!("{}ip-auth-ticket:{}", self.prefix, t.ticket);
        let tok = format!("{}ip-auth-token:{}", self.prefix, hex::encode(token_hash));
        let (json, id) = (t.encode(), t.ticket.clone());
        self.run(|mut c| async move {
            c.set_ex::<_, _, ()>(tk, json, ttl as u64).await?;
            c.set_ex::<_, _, ()>(tok, id, ttl as u64).await
        })
        .await?;
        Ok(t.clone())
    }

    async fn ticket(&self, id: &str) -> Result<Option<Ticket>, StoreError> {
        let k = format!("{}ip-auth-ticket:{id}", self.prefix);
        let bytes: Option<Vec<u8>> = self.run(|mut c| async move { c.get(k).await }).await?;
        Ok(bytes.and_then(|b| Ticket::decode_live(&b, self.clock.now_secs())))
    }

    async fn save_ticket(&self, t: &Ticket) -> Result<(), StoreError> {
        let k = format!("{}ip-auth-ticket:{}", self.prefix, t.ticket);
        let json = t.encode();
        let ttl = t.ttl(self.clock.now_secs()) as u64;
        self.run(|mut c| async move { c.set_ex::<_, _, ()>(k, json, ttl).await })
            .await
    }

    async fn add_token(&self, token_hash: &[u8; 32], t: &Ticket) -> Result<(), StoreError> {
        let tok = format!("{}ip-auth-token:{}", self.prefix, hex::encode(token_hash));
        let (id, ttl) = (t.ticket.clone(), t.ttl(self.clock.now_secs()) as u64);
        self.run(|mut c| async move { c.set_ex::<_, _, ()>(tok, id, ttl).await })
            .await
    }

    async fn consume_token(&self, token_hash: &[u8; 32]) -> Result<Option<Ticket>, StoreError> {
        let tok = format!("{}ip-auth-token:{}", self.prefix, hex::encode(token_hash));
        // GETDEL: read and delete in one atomic command, so a token works once.
        let id: Option<String> = self
            .run(|mut c| async move { redis::cmd("GETDEL").arg(tok).query_async(&mut c).await })
            .await?;
        match id {
            Some(id) => self.ticket(&id).await,
            None => Ok(None),
        }
    }
}
