//! The upgraded tunnels (WebSockets) open on behalf of each session and user, so that a
//! revocation closes them: a tunnel is checked once, at its handshake, and could otherwise
//! outlive its session forever.
//!
//! Event-driven rather than re-checking every tunnel every few seconds: every revocation
//! already reaches [`SessionCache::evict`](super::SessionCache::evict) or `evict_user` on every
//! instance (locally, and through the Redis invalidation channel), so closing there costs
//! nothing while no revocation happens and acts at once when one does. The face registers each
//! tunnel with a [`Closer`] (its connection) and holds the [`TunnelGuard`] for as long as the
//! tunnel runs; dropping the guard forgets the tunnel.

use crate::credential::Sid;
use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

/// Closes one tunnel (the connection it runs on); called at most once, never blocks.
pub trait Closer: Send + Sync {
    fn close(&self);
}

#[derive(Default)]
struct Inner {
    by_id: HashMap<u64, (Sid, String, Arc<dyn Closer>)>,
    by_sid: HashMap<Sid, HashSet<u64>>,
    by_user: HashMap<String, HashSet<u64>>,
}

/// Open tunnels by session and by user.
#[derive(Default)]
pub struct Tunnels {
    inner: Mutex<Inner>,
    next_id: AtomicU64,
}

/// Keeps a tunnel registered; dropped when the tunnel ends.
pub struct TunnelGuard {
    tunnels: Arc<Tunnels>,
    id: u64,
}

impl Drop for TunnelGuard {
    fn drop(&mut self) {
        self.tunnels.forget(self.id);
    }
}

impl Tunnels {
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Registers a tunnel of session `sid` of `user_id`, if `current()` (asked under the
    /// registry's lock) says the session was not revoked meanwhile; `None` otherwise.
    ///
    /// Why under the lock: a revocation marks the session revoked, then closes its tunnels
    /// under this lock. Either this check sees the mark, or the revocation's close comes after
    /// this registration and finds it: a tunnel admitted just before a revocation cannot slip
    /// between the two.
    pub fn open(
        self: &Arc<Self>,
        (sid, user_id): (Sid, &str),
        closer: Arc<dyn Closer>,
        current: impl FnOnce() -> bool,
    ) -> Option<TunnelGuard> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let mut i = self.lock();
        if !current() {
            return None;
        }
        i.by_sid.entry(sid).or_default().insert(id);
        i.by_user.entry(user_id.to_string()).or_default().insert(id);
        i.by_id.insert(id, (sid, user_id.to_string(), closer));
        Some(TunnelGuard {
            tunnels: self.clone(),
            id,
        })
    }

    fn forget(&self, id: u64) {
        let mut i = self.lock();
        if let Some((sid, user, _)) = i.by_id.remove(&id) {
            remove(&mut i.by_sid, &sid, id);
            remove(&mut i.by_user, &user, id);
        }
    }

    /// Closes every tunnel of session `sid`; returns how many.
    pub fn close_session(&self, sid: &Sid) -> usize {
        let ids = self.lock().by_sid.get(sid).cloned().unwrap_or_default();
        self.close(ids)
    }

    /// Closes every tunnel of `user_id`'s sessions; returns how many.
    pub fn close_user(&self, user_id: &str) -> usize {
        let ids = self
            .lock()
            .by_user
            .get(user_id)
            .cloned()
            .unwrap_or_default();
        self.close(ids)
    }

    fn close(&self, ids: HashSet<u64>) -> usize {
        let closers: Vec<_> = {
            let i = self.lock();
            ids.iter()
                .filter_map(|id| i.by_id.get(id).map(|(_, _, c)| c.clone()))
                .collect()
        };
        // Outside the lock: a closer may end its tunnel, whose guard then takes the lock.
        for c in &closers {
            c.close();
        }
        closers.len()
    }

    /// Tunnels registered now (tests and metrics).
    pub fn open_count(&self) -> usize {
        self.lock().by_id.len()
    }
}

fn remove<K: std::hash::Hash + Eq>(m: &mut HashMap<K, HashSet<u64>>, k: &K, id: u64) {
    if let Some(set) = m.get_mut(k) {
        set.remove(&id);
        if set.is_empty() {
            m.remove(k);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;

    #[derive(Default)]
    struct Count(AtomicUsize);
    impl Closer for Count {
        fn close(&self) {
            self.0.fetch_add(1, Ordering::Relaxed);
        }
    }

    #[test]
    fn revoking_a_session_or_its_user_closes_its_tunnels_and_only_those() {
        let t = Arc::new(Tunnels::default());
        let (a, b, c) = (
            Arc::new(Count::default()),
            Arc::new(Count::default()),
            Arc::new(Count::default()),
        );
        let _ga = t.open((Sid::of("a"), "1"), a.clone(), || true);
        let _gb = t.open((Sid::of("b"), "1"), b.clone(), || true);
        let _gc = t.open((Sid::of("c"), "2"), c.clone(), || true);
        assert_eq!(t.close_session(&Sid::of("a")), 1);
        assert_eq!(a.0.load(Ordering::Relaxed), 1);
        assert_eq!(b.0.load(Ordering::Relaxed), 0);
        assert_eq!(t.close_user("1"), 2);
        assert_eq!(b.0.load(Ordering::Relaxed), 1);
        assert_eq!(
            c.0.load(Ordering::Relaxed),
            0,
            "another user's tunnel stays"
        );
    }

    #[test]
    fn a_tunnel_that_ended_is_forgotten() {
        let t = Arc::new(Tunnels::default());
        let a = Arc::new(Count::default());
        drop(t.open((Sid::of("a"), "1"), a.clone(), || true));
        assert!(
            t.open((Sid::of("a"), "1"), a.clone(), || false).is_none(),
            "a session revoked before its tunnel registered is refused"
        );
        assert_eq!(t.open_count(), 0);
        assert_eq!(t.close_user("1"), 0);
        assert_eq!(a.0.load(Ordering::Relaxed), 0);
        assert!(t.lock().by_sid.is_empty() && t.lock().by_user.is_empty());
    }
}
