//! The in-process limiter state: one bounded table of `key hash → state` for every bucket and
//! lockout, in shards behind short mutexes (no lock is ever held across an await).
//!
//! Memory is bounded by `max_keys` entries of 32 bytes (plus the hash table's slack), about
//! 40 MB per million keys. When a shard is full, entries that no longer matter (a full bucket,
//! an expired ban) are swept; live entries are never evicted, so a flood of fresh keys cannot
//! reset a victim's limit or erase its lockout counter. If the sweep frees nothing, new keys
//! share one overflow state per bucket until room appears: a flood is limited as one client,
//! and nobody already tracked loses anything.

use crate::clock::Millis;
use std::collections::HashMap;
use std::hash::{BuildHasher, Hash, Hasher};
use std::sync::Mutex;

const SHARDS: usize = 64;
/// After a sweep that freed nothing, wait this long before sweeping that shard again, so a
/// flood cannot make every request scan a shard.
const SWEEP_BACKOFF_MS: Millis = 100;

/// Stored state of one key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Entry {
    /// GCRA theoretical arrival time, scaled by `limit`.
    pub tat: i64,
    /// Lockouts: banned until this time (0 = not banned).
    pub ban_until: Millis,
    /// The bucket's limit, to tell whether the entry is idle when sweeping.
    pub limit: u32,
}

/// A state the table can hold: small, copied in and out, and able to say when it no longer
/// matters (so a full shard can be swept).
pub trait Stored: Copy {
    fn idle(&self, now: Millis) -> bool;
}

impl Stored for Entry {
    fn idle(&self, now: Millis) -> bool {
        self.tat <= now * self.limit as i64 && self.ban_until <= now
    }
}

impl Stored for super::window::FailureLog {
    fn idle(&self, now: Millis) -> bool {
        super::window::FailureLog::idle(self, now)
    }
}

struct Shard<E> {
    map: HashMap<u64, E>,
    next_sweep: Millis,
}

/// The bounded table (bucket states by default; lockouts keep a [`FailureLog`] per key).
///
/// [`FailureLog`]: super::window::FailureLog
pub struct LocalTable<E: Stored = Entry> {
    shards: Box<[Mutex<Shard<E>>]>,
    per_shard: usize,
    hasher: std::hash::RandomState,
    /// Shared state per bucket (or lockout) for keys that found no room.
    overflow: Mutex<HashMap<u32, E>>,
}

impl<E: Stored> LocalTable<E> {
    pub fn new(max_keys: usize) -> Self {
        let per_shard = (max_keys / SHARDS).max(1);
        LocalTable {
            shards: (0..SHARDS)
                .map(|_| {
                    Mutex::new(Shard {
                        map: HashMap::new(),
                        next_sweep: 0,
                    })
                })
                .collect(),
            per_shard,
            hasher: std::hash::RandomState::new(),
            overflow: Mutex::new(HashMap::new()),
        }
    }

    /// Hashes a bucket id and key bytes into a table key (keyed SipHash: collisions cannot be
    /// chosen by clients).
    pub fn key(&self, bucket: u32, parts: &[&[u8]]) -> u64 {
        let mut h = self.hasher.build_hasher();
        bucket.hash(&mut h);
        for p in parts {
            h.write(p);
            h.write_u8(0xff);
        }
        h.finish()
    }

    /// Runs `f` on the state of `key` (None when absent); `f` may set or clear it.
    pub fn with<R>(
        &self,
        key: u64,
        bucket: u32,
        now: Millis,
        f: impl FnOnce(&mut Option<E>) -> R,
    ) -> R {
        self.with_placed(key, bucket, now, f).0
    }

    /// As [`with`](Self::with), and whether the state was the bucket's shared overflow state.
    pub fn with_placed<R>(
        &self,
        key: u64,
        bucket: u32,
        now: Millis,
        f: impl FnOnce(&mut Option<E>) -> R,
    ) -> (R, bool) {
        let shard = &self.shards[(key >> 58) as usize % SHARDS];
        let mut s = shard.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(e) = s.map.get(&key).copied() {
            let mut slot = Some(e);
            let r = f(&mut slot);
            match slot {
                Some(n) => {
                    s.map.insert(key, n);
                }
                None => {
                    s.map.remove(&key);
                }
            }
            return (r, false);
        }
        if s.map.len() >= self.per_shard && now >= s.next_sweep {
            s.map.retain(|_, e| !e.idle(now));
            if s.map.len() >= self.per_shard {
                s.next_sweep = now + SWEEP_BACKOFF_MS;
            }
        }
        if s.map.len() < self.per_shard {
            let mut slot = None;
            let r = f(&mut slot);
            if let Some(n) = slot {
                s.map.insert(key, n);
            }
            return (r, false);
        }
        drop(s);
        (self.with_overflow(bucket, f), true)
    }

    /// Runs `f` on the bucket's shared overflow state (where keys that found no room live).
    pub fn with_overflow<R>(&self, bucket: u32, f: impl FnOnce(&mut Option<E>) -> R) -> R {
        let mut o = self.overflow.lock().unwrap_or_else(|p| p.into_inner());
        let mut slot = o.get(&bucket).copied();
        let r = f(&mut slot);
        match slot {
            Some(n) => o.insert(bucket, n),
            None => o.remove(&bucket),
        };
        r
    }

    /// The bucket's overflow state (tests).
    #[cfg(test)]
    pub fn overflow_state(&self, bucket: u32) -> Option<E> {
        self.overflow
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&bucket)
            .copied()
    }

    /// Entries held (tests and metrics).
    pub fn len(&self) -> usize {
        self.shards
            .iter()
            .map(|s| s.lock().unwrap_or_else(|p| p.into_inner()).map.len())
            .sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Upper bound of the memory the table can hold, in bytes.
    pub fn max_bytes(&self) -> usize {
        // hashbrown keeps up to 8/7 slots per entry, each key + value + one control byte.
        let slot = std::mem::size_of::<(u64, E)>() + 1;
        SHARDS * (self.per_shard * 8 / 7 + 16).next_power_of_two() * slot
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::ratelimit::gcra::Rate;

    const T0: Millis = 1_800_000_000_000;

    fn take(t: &LocalTable, rate: Rate, key: u64, now: Millis) -> bool {
        t.with(key, 0, now, |slot| {
            let (o, new) = rate.check(slot.map(|e| e.tat), now);
            if let Some(n) = new {
                *slot = Some(Entry {
                    tat: n,
                    ban_until: 0,
                    limit: rate.limit as u32,
                });
            }
            o.allowed
        })
    }

    #[test]
    fn a_flood_of_fresh_keys_neither_evicts_nor_resets_a_victim() {
        let t = LocalTable::new(64 * 100);
        let rate = Rate {
            limit: 3,
            window_ms: 60_000,
        };
        let victim = t.key(0, &[b"victim"]);
        for _ in 0..3 {
            assert!(take(&t, rate, victim, T0));
        }
        assert!(!take(&t, rate, victim, T0));
        // A million fresh keys, all within the window so none of them is idle.
        for i in 0..1_000_000u32 {
            take(&t, rate, t.key(0, &[&i.to_le_bytes()]), T0 + 1);
        }
        assert!(
            t.len() <= 64 * 100,
            "table grew past its bound: {}",
            t.len()
        );
        assert!(
            !take(&t, rate, victim, T0 + 2),
            "the victim's limit was reset"
        );
    }

    #[test]
    fn idle_entries_are_swept_to_make_room() {
        let t = LocalTable::new(64);
        let rate = Rate {
            limit: 1,
            window_ms: 1_000,
        };
        for i in 0..10_000u32 {
            take(&t, rate, t.key(0, &[&i.to_le_bytes()]), T0);
        }
        // A window later every entry is idle: new keys get their own state again.
        let k = t.key(0, &[b"new"]);
        assert!(take(&t, rate, k, T0 + 5_000));
        assert!(
            !take(&t, rate, k, T0 + 5_000),
            "tracked individually, so limited"
        );
    }

    #[test]
    fn a_million_keys_fit_in_the_memory_bound() {
        let t: LocalTable = LocalTable::new(1_000_000);
        assert!(
            t.max_bytes() <= 200 * 1024 * 1024,
            "{} bytes",
            t.max_bytes()
        );
        let t: LocalTable<super::super::window::FailureLog> = LocalTable::new(1_000_000);
        assert!(
            t.max_bytes() <= 200 * 1024 * 1024,
            "lockouts: {} bytes",
            t.max_bytes()
        );
    }
}
