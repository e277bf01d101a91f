//! The in-process limiter state: one bounded table of `key hash → state` for every bucket and
//! lockout, in shards behind short mutexes (no lock is ever held across an await).
//!
//! Memory is bounded by `max_keys` entries of 32 bytes (plus the hash table's slack), about
//! 40 MB per million keys. When a shard is full, entries that no longer matter (a full bucket,
//! an expired ban) are swept; live entries are never evicted, so a flood of fresh keys cannot
//! reset a victim's limit or erase its lockout counter. If the sweep frees nothing, new keys
//! are limited in the bucket's overflow sketch (see `overflow`) until room appears: the flood
//! is limited in aggregate, a key outside the table is limited only by the slots it shares,
//! and nobody already tracked loses anything.

use super::overflow::Sketch;
use crate::clock::Millis;
use std::collections::HashMap;
use std::hash::{BuildHasher, BuildHasherDefault, Hash, Hasher};
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
    map: HashMap<u64, E, BuildHasherDefault<Prehashed>>,
    next_sweep: Millis,
}

/// The table's keys are already hashes ([`LocalTable::key`], a keyed SipHash that clients
/// cannot steer), so the maps use them as they are instead of hashing them a second time.
/// Written here: it is the few lines below, where a crate would be one more dependency.
#[derive(Default)]
struct Prehashed(u64);

impl Hasher for Prehashed {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        // Only `u64` keys are hashed with it; fold anything else in rather than panic.
        for b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(*b);
        }
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

/// The bounded table (bucket states by default; lockouts keep a [`FailureLog`] per key).
///
/// [`FailureLog`]: super::window::FailureLog
pub struct LocalTable<E: Stored = Entry> {
    shards: Box<[Mutex<Shard<E>>]>,
    per_shard: usize,
    hasher: std::hash::RandomState,
    /// Where keys that found no room are limited.
    overflow: Sketch<E>,
}

impl<E: Stored> LocalTable<E> {
    pub fn new(max_keys: usize) -> Self {
        let per_shard = (max_keys / SHARDS).max(1);
        LocalTable {
            shards: (0..SHARDS)
                .map(|_| {
                    Mutex::new(Shard {
                        map: HashMap::default(),
                        next_sweep: 0,
                    })
                })
                .collect(),
            per_shard,
            hasher: std::hash::RandomState::new(),
            overflow: Sketch::default(),
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

    /// Runs `f` on the state of `key` (None when absent; `f` may set or clear it), or returns
    /// `None` without running `f` when the key is not tracked and there is no room for it
    /// (then the overflow sketch limits it).
    pub fn try_with<R>(
        &self,
        key: u64,
        now: Millis,
        f: impl FnOnce(&mut Option<E>) -> R,
    ) -> Option<R> {
        let shard = &self.shards[(key >> 58) as usize % SHARDS];
        let mut s = shard.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(e) = s.map.get_mut(&key) {
            let mut slot = Some(*e);
            let r = f(&mut slot);
            match slot {
                Some(n) => *e = n,
                None => {
                    s.map.remove(&key);
                }
            }
            return Some(r);
        }
        if s.map.len() >= self.per_shard && now >= s.next_sweep {
            s.map.retain(|_, e| !e.idle(now));
            if s.map.len() >= self.per_shard {
                s.next_sweep = now + SWEEP_BACKOFF_MS;
            }
        }
        if s.map.len() >= self.per_shard {
            return None;
        }
        let mut slot = None;
        let r = f(&mut slot);
        if let Some(n) = slot {
            s.map.insert(key, n);
        }
        Some(r)
    }

    /// The overflow sketches, for keys that found no room.
    pub fn overflow(&self) -> &Sketch<E> {
        &self.overflow
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
        t.try_with(key, now, |slot| {
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
        .unwrap_or_else(|| {
            t.overflow()
                .with(0, key, |s| super::super::overflow::take(rate, s, now))
                .allowed
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
