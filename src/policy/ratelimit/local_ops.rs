//! The limiter's decisions on in-process state: a bucket check or a lockout attempt runs on the
//! key's own entry in the bounded table, or, when the table has no room for the key, on its
//! slots in the overflow sketch (`overflow`), and is settled where it was taken.

use super::local::Entry;
use super::redis::Reserved;
use super::window::{self, FailureLog};
use super::{BucketDef, Checked, Limiter, LockoutDef, Reservation, overflow};
use crate::clock::Millis;

impl From<window::Reserve> for Reserved {
    fn from(r: window::Reserve) -> Reserved {
        match r {
            window::Reserve::Allowed => Reserved::Allowed,
            window::Reserve::Denied {
                retry_after_ms,
                banned,
            } => Reserved::Denied {
                retry_after_ms,
                banned,
            },
        }
    }
}

impl Limiter {
    pub(super) fn local_check(&self, b: &BucketDef, key: &super::KeyValue, now: Millis) -> Checked {
        let k = self.local.key(b.id, &[&[key.tag], &key.bytes]);
        let outcome = self
            .local
            .try_with(k, now, |slot| {
                let (o, new) = b.rate.check(slot.map(|e| e.tat), now);
                if let Some(tat) = new {
                    *slot = Some(Entry {
                        tat,
                        ban_until: 0,
                        limit: b.rate.limit as u32,
                    });
                }
                o
            })
            .unwrap_or_else(|| {
                self.local
                    .overflow()
                    .with(b.id, k, |slots| overflow::take(b.rate, slots, now))
            });
        Checked {
            outcome,
            at_ms: now,
        }
    }

    pub(super) fn local_lockout_key(&self, l: &LockoutDef, key: &super::KeyValue) -> u64 {
        // Lockout ids live in their own half of the id space.
        self.local.key(l.id | 1 << 31, &[&[key.tag], &key.bytes])
    }

    /// A reservation on the local table; `Some(slots)` when it was taken in the overflow.
    pub(super) fn local_reserve(
        &self,
        l: &LockoutDef,
        key: &super::KeyValue,
        now: Millis,
    ) -> (Reserved, Option<u8>) {
        let k = self.local_lockout_key(l, key);
        let max = l.rate.limit as usize;
        let window = l.rate.window_ms;
        let tracked = self.lockout_logs.try_with(k, now, |slot| {
            let log = slot.get_or_insert_with(|| FailureLog::new(window));
            log.reserve(now, max).into()
        });
        if let Some(r) = tracked {
            return (r, None);
        }
        // SECURITY: a key the full table cannot track is limited by its own slots in the
        // overflow sketch, never by one state shared with every other untracked key: a flood
        // of failures with fresh keys cannot lock out an account that never failed.
        let (r, taken) = self
            .lockout_logs
            .overflow()
            .with(l.id, k, |slots| overflow::reserve(slots, window, now, max));
        (r.into(), Some(taken))
    }

    pub(super) fn local_finish(&self, l: &LockoutDef, r: &Reservation, failed: bool, now: Millis) {
        let k = self.local_lockout_key(l, &r.key);
        let (max, ban) = (l.rate.limit as usize, l.ban_ms);
        // Settled where it was taken: a key that reserved in the overflow is settled there,
        // even if room has appeared in the table since.
        match r.overflow {
            Some(taken) => self.lockout_logs.overflow().with(l.id, k, |slots| {
                overflow::finish(slots, taken, now, (max, ban), failed)
            }),
            None => {
                self.lockout_logs.try_with(k, now, |slot| {
                    if let Some(log) = slot.as_mut() {
                        log.finish(now, max, ban, failed);
                    }
                });
            }
        }
    }
}
