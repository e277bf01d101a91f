//! The embedded session store: redb, one file on disk, for a single instance.
//!
//! Three tables keep the contract §8 records and the two indexes the operations need:
//! `sessions` (sid → JSON record), `user_sessions` (user id → sids) and `expiry`
//! ((expires_at, sid) → ()), so expired records can be swept without a full scan. Every call
//! runs on tokio's blocking pool because redb's I/O is synchronous.

use super::locations::{Ticket, pending_key};
use super::record::SessionRecord;
use super::store::{SessionStore, StoreError};
use crate::clock::SharedClock;
use crate::credential::Sid;
use async_trait::async_trait;
use redb::{
    Database, MultimapTableDefinition, ReadableDatabase, ReadableMultimapTable, ReadableTable,
    TableDefinition,
};
use std::path::Path;
use std::sync::Arc;

const SESSIONS: TableDefinition<&[u8; 32], &[u8]> = TableDefinition::new("sessions");
const USER_SESSIONS: MultimapTableDefinition<&str, &[u8; 32]> =
    MultimapTableDefinition::new("user_sessions");
const EXPIRY: TableDefinition<(i64, &[u8; 32]), ()> = TableDefinition::new("expiry");
const IP_AUTH: MultimapTableDefinition<&str, &str> = MultimapTableDefinition::new("ip_auth");
const TICKETS: TableDefinition<&str, &[u8]> = TableDefinition::new("ip_auth_tickets");
const TOKENS: TableDefinition<&[u8; 32], &str> = TableDefinition::new("ip_auth_tokens");
const PENDING: TableDefinition<&str, &str> = TableDefinition::new("ip_auth_pending");

/// Sessions in a redb file.
#[derive(Clone)]
pub struct EmbeddedStore {
    db: Arc<Database>,
    clock: SharedClock,
}

fn internal(e: impl std::fmt::Display) -> StoreError {
    StoreError::Internal(e.to_string())
}

impl EmbeddedStore {
    /// Opens (or creates) the store file. Fails if another process holds it.
    pub fn open(path: &Path, clock: SharedClock) -> Result<EmbeddedStore, String> {
        // SECURITY: the records are for this process only (0700 directory, 0600 file).
        super::owner_only::prepare(path)?;
        let db = Database::create(path)
            .map_err(|e| format!("cannot open session store {}: {e}", path.display()))?;
        // Create the tables up front so readers never see "table does not exist".
        let tx = db.begin_write().map_err(|e| e.to_string())?;
        {
            tx.open_table(SESSIONS).map_err(|e| e.to_string())?;
            tx.open_multimap_table(USER_SESSIONS)
                .map_err(|e| e.to_string())?;
            tx.open_table(EXPIRY).map_err(|e| e.to_string())?;
            tx.open_multimap_table(IP_AUTH).map_err(|e| e.to_string())?;
            tx.open_table(TICKETS).map_err(|e| e.to_string())?;
            tx.open_table(TOKENS).map_err(|e| e.to_string())?;
            tx.open_table(PENDING).map_err(|e| e.to_string())?;
        }
        tx.commit().map_err(|e| e.to_string())?;
        Ok(EmbeddedStore {
            db: Arc::new(db),
            clock,
        })
    }

    async fn blocking<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Database, i64) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let db = self.db.clone();
        let now = self.clock.now_secs();
        tokio::task::spawn_blocking(move || f(&db, now))
            .await
            .map_err(internal)?
    }

    /// Deletes every record whose `expires_at` has passed. Returns how many went.
    pub async fn sweep_expired(&self) -> Result<usize, StoreError> {
        self.blocking(|db, now| {
            let tx = db.begin_write().map_err(internal)?;
            let mut n = 0;
            {
                let mut exp = tx.open_table(EXPIRY).map_err(internal)?;
                let mut sessions = tx.open_table(SESSIONS).map_err(internal)?;
                let mut users = tx.open_multimap_table(USER_SESSIONS).map_err(internal)?;
                let due: Vec<(i64, [u8; 32])> = exp
                    .range(..=(now, &[0xffu8; 32]))
                    .map_err(internal)?
                    .filter_map(|r| r.ok())
                    .map(|(k, _)| {
                        let (t, sid) = k.value();
                        (t, *sid)
                    })
                    .collect();
                // Expired IP-authorization tickets, their tokens and pending markers.
                let mut tickets = tx.open_table(TICKETS).map_err(internal)?;
                let dead: Vec<String> = tickets
                    .iter()
                    .map_err(internal)?
                    .filter_map(|r| r.ok())
                    .filter(|(_, v)| Ticket::decode_live(v.value(), now).is_none())
                    .map(|(k, _)| k.value().to_string())
                    .collect();
                for id in &dead {
                    tickets.remove(id.as_str()).map_err(internal)?;
                }
                let mut tokens = tx.open_table(TOKENS).map_err(internal)?;
                tokens
                    .retain(|_, id| !dead.iter().any(|d| d == id))
                    .map_err(internal)?;
                let mut pending = tx.open_table(PENDING).map_err(internal)?;
                pending
                    .retain(|_, id| !dead.iter().any(|d| d == id))
                    .map_err(internal)?;
                drop((tickets, tokens, pending));
                for (t, sid) in due {
                    exp.remove((t, &sid)).map_err(internal)?;
                    let removed = sessions.remove(&sid).map_err(internal)?;
                    if let Some(bytes) = removed
                        && let Ok(rec) = SessionRecord::decode(bytes.value())
                    {
                        users.remove(rec.user_id.as_str(), &sid).map_err(internal)?;
                    }
                    n += 1;
                }
            }
            tx.commit().map_err(internal)?;
            Ok(n)
        })
        .await
    }
}

/// Removes one session and its index entries inside an open write transaction.
fn remove_in(tx: &redb::WriteTransaction, sid: &[u8; 32]) -> Result<Option<String>, StoreError> {
    let mut sessions = tx.open_table(SESSIONS).map_err(internal)?;
    let Some(bytes) = sessions.remove(sid).map_err(internal)? else {
        return Ok(None);
    };
    let rec = SessionRecord::decode(bytes.value()).ok();
    drop(bytes);
    if let Some(rec) = &rec {
        let mut users = tx.open_multimap_table(USER_SESSIONS).map_err(internal)?;
        users.remove(rec.user_id.as_str(), sid).map_err(internal)?;
        if let Some(exp) = rec.expires_at {
            let mut e = tx.open_table(EXPIRY).map_err(internal)?;
            e.remove((exp, sid)).map_err(internal)?;
        }
    }
    Ok(rec.map(|r| r.user_id))
}

#[async_trait]
impl SessionStore for EmbeddedStore {
    fn name(&self) -> &'static str {
        "embedded"
    }

    async fn get(&self, sid: &Sid) -> Result<Option<SessionRecord>, StoreError> {
        let key = sid.0;
        self.blocking(move |db, now| {
            let tx = db.begin_read().map_err(internal)?;
            let t = tx.open_table(SESSIONS).map_err(internal)?;
            let Some(v) = t.get(&key).map_err(internal)? else {
                return Ok(None);
            };
            match SessionRecord::decode(v.value()) {
                // SECURITY: an expired record is never served, even before the sweep removes it.
                Ok(r) if r.is_expired(now) => Ok(None),
                Ok(r) => Ok(Some(r)),
                Err(e) => {
                    tracing::warn!(sid = %Sid(key), error = %e, "unreadable session record");
                    Ok(None)
                }
            }
        })
        .await
    }

    async fn create(&self, sid: &Sid, record: &SessionRecord) -> Result<(), StoreError> {
        let key = sid.0;
        let rec = record.clone();
        self.blocking(move |db, _| {
            let tx = db.begin_write().map_err(internal)?;
            // Replacing a sid must not leave the old record's index entries behind.
            remove_in(&tx, &key)?;
            {
                let mut t = tx.open_table(SESSIONS).map_err(internal)?;
                t.insert(&key, rec.encode().as_slice()).map_err(internal)?;
                let mut u = tx.open_multimap_table(USER_SESSIONS).map_err(internal)?;
                u.insert(rec.user_id.as_str(), &key).map_err(internal)?;
                if let Some(exp) = rec.expires_at {
                    let mut e = tx.open_table(EXPIRY).map_err(internal)?;
                    e.insert((exp, &key), ()).map_err(internal)?;
                }
            }
            tx.commit().map_err(internal)
        })
        .await
    }

    async fn revoke(&self, sid: &Sid) -> Result<Option<String>, StoreError> {
        let key = sid.0;
        self.blocking(move |db, _| {
            let tx = db.begin_write().map_err(internal)?;
            let user = remove_in(&tx, &key)?;
            tx.commit().map_err(internal)?;
            Ok(user)
        })
        .await
    }

    async fn list_user(&self, user_id: &str) -> Result<Vec<(Sid, SessionRecord)>, StoreError> {
        let user = user_id.to_string();
        self.blocking(move |db, now| {
            let tx = db.begin_read().map_err(internal)?;
            let users = tx.open_multimap_table(USER_SESSIONS).map_err(internal)?;
            let sessions = tx.open_table(SESSIONS).map_err(internal)?;
            let mut out = Vec::new();
            for sid in users.get(user.as_str()).map_err(internal)? {
                let sid = *sid.map_err(internal)?.value();
                if let Some(v) = sessions.get(&sid).map_err(internal)?
                    && let Ok(r) = SessionRecord::decode(v.value())
                    && !r.is_expired(now)
                {
                    out.push((Sid(sid), r));
                }
            }
            out.sort_by_key(|(_, r)| r.created_at);
            Ok(out)
        })
        .await
    }

    async fn revoke_user(&self, user_id: &str) -> Result<Vec<Sid>, StoreError> {
        let user = user_id.to_string();
        self.blocking(move |db, _| {
            let tx = db.begin_write().map_err(internal)?;
            let sids: Vec<[u8; 32]> = {
                let users = tx.open_multimap_table(USER_SESSIONS).map_err(internal)?;
                let iter = users.get(user.as_str()).map_err(internal)?;
                iter.filter_map(|s| s.ok().map(|s| *s.value())).collect()
            };
            for sid in &sids {
                remove_in(&tx, sid)?;
            }
            tx.commit().map_err(internal)?;
            Ok(sids.into_iter().map(Sid).collect())
        })
        .await
    }

    async fn ping(&self) -> Result<(), StoreError> {
        self.blocking(|db, _| {
            db.begin_read().map_err(internal)?;
            Ok(())
        })
        .await
    }

    async fn locations(&self, user_id: &str) -> Result<Vec<String>, StoreError> {
        let user = user_id.to_string();
        self.blocking(move |db, _| {
            let tx = db.begin_read().map_err(internal)?;
            let t = tx.open_multimap_table(IP_AUTH).map_err(internal)?;
            let mut out = Vec::new();
            for l in t.get(user.as_str()).map_err(internal)? {
                out.push(l.map_err(internal)?.value().to_string());
            }
            Ok(out)
        })
        .await
    }

    async fn add_location(&self, user_id: &str, location: &str) -> Result<(), StoreError> {
        let (user, loc) = (user_id.to_string(), location.to_string());
        self.blocking(move |db, _| {
            let tx = db.begin_write().map_err(internal)?;
            tx.open_multimap_table(IP_AUTH)
                .map_err(internal)?
                .insert(user.as_str(), loc.as_str())
                .map_err(internal)?;
            tx.commit().map_err(internal)
        })
        .await
    }

    async fn open_ticket(&self, t: &Ticket, token_hash: &[u8; 32]) -> Result<Ticket, StoreError> {
        let (t, token_hash) = (t.clone(), *token_hash);
        self.blocking(move |db, now| {
            let tx = db.begin_write().map_err(internal)?;
            let live = {
                let mut pending = tx.open_table(PENDING).map_err(internal)?;
                let tickets = tx.open_table(TICKETS).map_err(internal)?;
                let key = pending_key(&t.user_id, &t.location);
                let existing = pending
                    .get(key.as_str())
                    .map_err(internal)?
                    .map(|v| v.value().to_string());
                let existing = match existing {
                    Some(id) => tickets
                        .get(id.as_str())
                        .map_err(internal)?
                        .and_then(|v| Ticket::decode_live(v.value(), now))
                        .filter(|x| !x.completed),
                    None => None,
                };
                if existing.is_none() {
                    pending
                        .insert(key.as_str(), t.ticket.as_str())
                        .map_err(internal)?;
                }
                existing
            };
            let out = match live {
                Some(x) => x,
                None => {
                    tx.open_table(TICKETS)
                        .map_err(internal)?
                        .insert(t.ticket.as_str(), t.encode().as_slice())
                        .map_err(internal)?;
                    tx.open_table(TOKENS)
                        .map_err(internal)?
                        .insert(&token_hash, t.ticket.as_str())
                        .map_err(internal)?;
                    t
                }
            };
            tx.commit().map_err(internal)?;
            Ok(out)
        })
        .await
    }

    async fn ticket(&self, id: &str) -> Result<Option<Ticket>, StoreError> {
        let id = id.to_string();
        self.blocking(move |db, now| {
            let tx = db.begin_read().map_err(internal)?;
            let t = tx.open_table(TICKETS).map_err(internal)?;
            Ok(t.get(id.as_str())
                .map_err(internal)?
                .and_then(|v| Ticket::decode_live(v.value(), now)))
        })
        .await
    }

    async fn save_ticket(&self, t: &Ticket) -> Result<(), StoreError> {
        let t = t.clone();
        self.blocking(move |db, _| {
            let tx = db.begin_write().map_err(internal)?;
            tx.open_table(TICKETS)
                .map_err(internal)?
                .insert(t.ticket.as_str(), t.encode().as_slice())
                .map_err(internal)?;
            if t.completed {
                tx.open_table(PENDING)
                    .map_err(internal)?
                    .remove(pending_key(&t.user_id, &t.location).as_str())
                    .map_err(internal)?;
            }
            tx.commit().map_err(internal)
        })
        .await
    }

    async fn add_token(&self, token_hash: &[u8; 32], t: &Ticket) -> Result<(), StoreError> {
        let (h, id) = (*token_hash, t.ticket.clone());
        self.blocking(move |db, _| {
            let tx = db.begin_write().map_err(internal)?;
            tx.open_table(TOKENS)
                .map_err(internal)?
                .insert(&h, id.as_str())
                .map_err(internal)?;
            tx.commit().map_err(internal)
        })
        .await
    }

    async fn consume_token(&self, token_hash: &[u8; 32]) -> Result<Option<Ticket>, StoreError> {
        let h = *token_hash;
        self.blocking(move |db, now| {
            let tx = db.begin_write().map_err(internal)?;
            // Removed in the same write transaction that reads it: one use only.
            let id = tx
                .open_table(TOKENS)
                .map_err(internal)?
                .remove(&h)
                .map_err(internal)?
                .map(|v| v.value().to_string());
            let t = match id {
                Some(id) => tx
                    .open_table(TICKETS)
                    .map_err(internal)?
                    .get(id.as_str())
                    .map_err(internal)?
                    .and_then(|v| Ticket::decode_live(v.value(), now)),
                None => None,
            };
            tx.commit().map_err(internal)?;
            Ok(t)
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::ManualClock;
    use crate::credential::Kind;

    fn rec(user: &str, expires_at: Option<i64>) -> SessionRecord {
        SessionRecord {
            v: 1,
            user_id: user.into(),
            kind: Kind::Session,
            created_at: 1_000,
            expires_at,
            scopes: vec!["a".into()],
            client_ip: Some("192.0.2.1".into()),
            has_mfa: Some(false),
            flags: None,
            client_id: None,
        }
    }

    #[tokio::test]
    async fn records_survive_reopening_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.redb");
        let clock = ManualClock::new(1_000_000);
        let sid = Sid::of("tok");
        {
            let s = EmbeddedStore::open(&path, clock.clone()).unwrap();
            s.create(&sid, &rec("7", None)).await.unwrap();
        }
        let s = EmbeddedStore::open(&path, clock).unwrap();
        assert_eq!(s.get(&sid).await.unwrap(), Some(rec("7", None)));
    }

    #[tokio::test]
    async fn expired_records_are_never_served_and_are_swept() {
        let dir = tempfile::tempdir().unwrap();
        let clock = ManualClock::new(1_000_000);
        let s = EmbeddedStore::open(&dir.path().join("s.redb"), clock.clone()).unwrap();
        let (a, b) = (Sid::of("a"), Sid::of("b"));
        s.create(&a, &rec("7", Some(1_010))).await.unwrap();
        s.create(&b, &rec("7", Some(2_000))).await.unwrap();
        clock.set_ms(1_010_000);
        assert_eq!(s.get(&a).await.unwrap(), None);
        assert!(s.get(&b).await.unwrap().is_some());
        assert_eq!(s.sweep_expired().await.unwrap(), 1);
        assert_eq!(s.list_user("7").await.unwrap().len(), 1);
        assert_eq!(s.sweep_expired().await.unwrap(), 0);
    }

    #[tokio::test]
    async fn list_and_revoke_by_user() {
        let dir = tempfile::tempdir().unwrap();
        let s = EmbeddedStore::open(&dir.path().join("s.redb"), ManualClock::new(0)).unwrap();
        for t in ["a", "b", "c"] {
            s.create(&Sid::of(t), &rec("7", None)).await.unwrap();
        }
        s.create(&Sid::of("d"), &rec("8", None)).await.unwrap();
        assert_eq!(s.list_user("7").await.unwrap().len(), 3);
        assert_eq!(s.revoke(&Sid::of("a")).await.unwrap(), Some("7".into()));
        assert_eq!(s.revoke(&Sid::of("a")).await.unwrap(), None);
        assert_eq!(s.revoke_user("7").await.unwrap().len(), 2);
        assert!(s.list_user("7").await.unwrap().is_empty());
        assert!(s.get(&Sid::of("d")).await.unwrap().is_some());
    }

    #[tokio::test]
    async fn second_open_of_the_same_file_fails_clearly() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.redb");
        let _first = EmbeddedStore::open(&path, ManualClock::new(0)).unwrap();
        let err = EmbeddedStore::open(&path, ManualClock::new(0))
            .err()
            .unwrap();
        assert!(err.contains("cannot open session store"), "{err}");
    }
}
