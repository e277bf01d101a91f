//! An in-memory store for tests: reads can be counted, failed and held at a gate.

use super::record::SessionRecord;
use super::store::{SessionStore, StoreError};
use crate::credential::Sid;
use async_trait::async_trait;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

#[derive(Default)]
pub struct MemStore {
    pub records: Mutex<HashMap<Sid, SessionRecord>>,
    pub reads: AtomicU64,
    pub fail: AtomicBool,
    /// When set, `get` reads the record, then waits here before returning it.
    pub gate: Mutex<Option<Arc<tokio::sync::Notify>>>,
    pub read_started: tokio::sync::Notify,
}

#[async_trait]
impl SessionStore for MemStore {
    fn name(&self) -> &'static str {
        "memory"
    }
    async fn get(&self, sid: &Sid) -> Result<Option<SessionRecord>, StoreError> {
        self.reads.fetch_add(1, Ordering::SeqCst);
        if self.fail.load(Ordering::SeqCst) {
            return Err(StoreError::Unavailable("test".into()));
        }
        let rec = self.records.lock().unwrap().get(sid).cloned();
        let gate = self.gate.lock().unwrap().clone();
        if let Some(g) = gate {
            self.read_started.notify_one();
            g.notified().await;
        }
        Ok(rec)
    }
    async fn create(&self, sid: &Sid, r: &SessionRecord) -> Result<(), StoreError> {
        self.records.lock().unwrap().insert(*sid, r.clone());
        Ok(())
    }
    async fn revoke(&self, sid: &Sid) -> Result<Option<String>, StoreError> {
        Ok(self.records.lock().unwrap().remove(sid).map(|r| r.user_id))
    }
    async fn list_user(&self, user: &str) -> Result<Vec<(Sid, SessionRecord)>, StoreError> {
        Ok(self
            .records
            .lock()
            .unwrap()
            .iter()
            .filter(|(_, r)| r.user_id == user)
            .map(|(s, r)| (*s, r.clone()))
            .collect())
    }
    async fn revoke_user(&self, user: &str) -> Result<Vec<Sid>, StoreError> {
        let mut m = self.records.lock().unwrap();
        let sids: Vec<Sid> = m
            .iter()
            .filter(|(_, r)| r.user_id == user)
            .map(|(s, _)| *s)
            .collect();
        for s in &sids {
            m.remove(s);
        }
        Ok(sids)
    }
    async fn ping(&self) -> Result<(), StoreError> {
        Ok(())
    }
}
