//! Where keys that find no room in the local table are limited: a count-min sketch per bucket
//! (or lockout) of [`ROWS`] × [`WIDTH`] states. A key owns one slot in each row, chosen by bits
//! of its table key (a SipHash keyed with a per-process random seed, so clients cannot choose
//! which keys share a slot); it is limited only when *all* its slots say so, and every update
//! reaches all of them.
//!
//! Why not one shared state per bucket (as before): a flood of fresh keys then limits everyone
//! outside the table as one client, so ~1.1k failed logins per second with distinct e-mails
//! locked out every account not yet tracked. In the sketch an innocent key is refused only when
//! each of its four slots is full, each filled by other keys.
//!
//! What holds (the tests below pin each one):
//! - Fail closed per key: every slot of a key sees every one of its own requests and failures,
//!   so a key in the overflow is limited at least as strictly as a tracked key (GCRA: each
//!   slot's arrival time is at least the key's own; lockouts: each slot that is not serving a
//!   ban holds all of the key's failures since that slot last started afresh).
//! - The flood is limited in aggregate: every admitted request uses one unit of some slot's
//!   capacity, so the overflow admits at most `ROWS × WIDTH` times one key's allowance (for a
//!   lockout, at most `ROWS × WIDTH × max_failures` attempts until bans start to end).
//! - Bounded memory: `ROWS × WIDTH` states per bucket or lockout that ever overflowed,
//!   allocated on first use ([`Sketch::bytes_per_id`]).
//! - What it cannot do: a flood larger than the sketch's capacity within one window fills
//!   every slot, and then every key in the overflow is refused (fail closed, as before). The
//!   sketch raises the flood needed for that from `max_failures` failures to tens of
//!   thousands; `max_local_keys` sizes the exact table in front of it.
//!
//! Buckets use the conservative update (each slot is raised only to the key's new arrival
//! time, never pushed further), which keeps slots shared by many fresh keys from running
//! ahead; it is exact for GCRA because arrival times only grow. Lockouts' sliding windows
//! forget old entries, where the conservative update would undercount, so they update every
//! slot.

use super::gcra::{Outcome, Rate};
use super::local::Entry;
use super::window::{FailureLog, Reserve};
use crate::clock::Millis;
use std::collections::HashMap;
use std::sync::Mutex;

/// Rows of the sketch: a key is refused only when all its slots (one per row) say so.
pub const ROWS: usize = 4;
const WIDTH_BITS: u32 = 12;
/// Slots per row.
pub const WIDTH: usize = 1 << WIDTH_BITS;

/// The slots of one key, one per row.
pub type Slots<E> = [Option<E>; ROWS];

/// The sketches of one table, by bucket (or lockout) id.
pub struct Sketch<E> {
    by_id: Mutex<HashMap<u32, Box<[Option<E>]>>>,
}

impl<E: Copy> Default for Sketch<E> {
    fn default() -> Self {
        Sketch {
            by_id: Mutex::new(HashMap::new()),
        }
    }
}

/// The slot indexes of `key`: disjoint bit ranges of a keyed hash are independent, and the
/// table's shard choice uses the top bits, which no row uses.
fn slot_indexes(key: u64) -> [usize; ROWS] {
    std::array::from_fn(|r| r * WIDTH + ((key >> (r as u32 * WIDTH_BITS)) as usize & (WIDTH - 1)))
}

impl<E: Copy> Sketch<E> {
    /// Runs `f` on the slots of `key` in the sketch of `id` (copied in and out under one lock).
    pub fn with<R>(&self, id: u32, key: u64, f: impl FnOnce(&mut Slots<E>) -> R) -> R {
        let mut by_id = self.by_id.lock().unwrap_or_else(|p| p.into_inner());
        let all = by_id
            .entry(id)
            .or_insert_with(|| vec![None; ROWS * WIDTH].into_boxed_slice());
        let idx = slot_indexes(key);
        let mut slots = idx.map(|i| all[i]);
        let r = f(&mut slots);
        for (i, s) in idx.into_iter().zip(slots) {
            all[i] = s;
        }
        r
    }

    /// Memory one bucket's (or lockout's) sketch takes once allocated.
    pub fn bytes_per_id() -> usize {
        ROWS * WIDTH * std::mem::size_of::<Option<E>>()
    }
}

/// Takes one request from a bucket for a key in the overflow: allowed when its least loaded
/// slot allows (the estimate, never below the key's own state), and every slot is raised to
/// at least the new arrival time.
pub fn take(rate: Rate, slots: &mut Slots<Entry>, now: Millis) -> Outcome {
    // `None` (a fresh slot) sorts first: a key with a fresh slot has nothing held against it.
    let estimate = slots.iter().map(|s| s.map(|e| e.tat)).min().flatten();
    let (outcome, new) = rate.check(estimate, now);
    if let Some(tat) = new {
        for s in slots.iter_mut() {
            *s = Some(Entry {
                tat: s.map_or(tat, |e| e.tat.max(tat)),
                ban_until: 0,
                limit: rate.limit as u32,
            });
        }
    }
    outcome
}

/// Reserves a lockout attempt for a key in the overflow: a place is taken in every slot that
/// has one, and the attempt is allowed when at least one had. Returns the slots that took a
/// place (bit per row; 0 when refused), to give them back in [`finish`].
pub fn reserve(
    slots: &mut Slots<FailureLog>,
    window_ms: Millis,
    now: Millis,
    max: usize,
) -> (Reserve, u8) {
    let mut taken = 0u8;
    let mut retry_after_ms = i64::MAX;
    let mut banned = true;
    for (r, s) in slots.iter_mut().enumerate() {
        match s
            .get_or_insert_with(|| FailureLog::new(window_ms))
            .reserve(now, max)
        {
            Reserve::Allowed => taken |= 1 << r,
            Reserve::Denied {
                retry_after_ms: wait,
                banned: b,
            } => {
                // The key may try again as soon as any one of its slots would let it.
                retry_after_ms = retry_after_ms.min(wait);
                banned &= b;
            }
        }
    }
    if taken != 0 {
        return (Reserve::Allowed, taken);
    }
    let denied = Reserve::Denied {
        retry_after_ms,
        banned,
    };
    (denied, 0)
}

/// Settles an attempt reserved with [`reserve`]: the places it took are given back, and a
/// failure is logged in every slot of the key that is not already serving a ban.
pub fn finish(
    slots: &mut Slots<FailureLog>,
    taken: u8,
    now: Millis,
    (max, ban_ms): (usize, Millis),
    failed: bool,
) {
    for (r, s) in slots.iter_mut().enumerate() {
        let Some(log) = s.as_mut() else { continue };
        if taken & (1 << r) != 0 {
            log.release(now);
        }
        // A banned slot starts afresh after its ban, like a tracked key after its own.
        if failed && !log.banned(now) {
            log.fail(now, max, ban_ms);
        }
    }
}

#[cfg(test)]
#[path = "overflow_tests.rs"]
mod tests;
