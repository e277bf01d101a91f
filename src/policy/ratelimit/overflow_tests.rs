//! The sketch's own rules, slot by slot (the floods themselves are in `limiter_tests.rs`).

use super::*;

const T0: Millis = 1_800_000_000_000;
const RATE: Rate = Rate {
    limit: 3,
    window_ms: 60_000,
};

#[test]
fn a_key_is_limited_only_when_all_its_slots_are_full() {
    let mut slots: Slots<Entry> = [None; ROWS];
    for _ in 0..3 {
        assert!(take(RATE, &mut slots, T0).allowed);
    }
    assert!(!take(RATE, &mut slots, T0).allowed, "the key's own limit");
    // Another key sharing three of the four slots still has its own fourth.
    let mut shared = slots;
    shared[3] = None;
    assert!(take(RATE, &mut shared, T0).allowed);
}

#[test]
fn the_conservative_update_never_pushes_a_slot_past_the_keys_new_arrival_time() {
    // Many fresh keys sharing one slot each raise it to one interval, not one interval each.
    let mut shared: Option<Entry> = None;
    for _ in 0..100 {
        let mut slots: Slots<Entry> = [shared, None, None, None];
        assert!(take(RATE, &mut slots, T0).allowed);
        shared = slots[0];
    }
    let mut slots: Slots<Entry> = [shared, shared, shared, shared];
    assert!(
        take(RATE, &mut slots, T0).allowed,
        "four slots each touched by a hundred fresh keys still allow a fresh key"
    );
}

#[test]
fn a_lockout_key_is_refused_only_when_every_slot_is_full_and_its_failures_reach_each() {
    let (max, ban) = (3, 900_000);
    let mut slots: Slots<FailureLog> = [None; ROWS];
    for _ in 0..3 {
        let (r, taken) = reserve(&mut slots, 600_000, T0, max);
        assert_eq!((r, taken), (Reserve::Allowed, 0b1111));
        finish(&mut slots, taken, T0, (max, ban), true);
    }
    let (r, taken) = reserve(&mut slots, 600_000, T0 + 1, max);
    assert_eq!(taken, 0);
    assert_eq!(
        r,
        Reserve::Denied {
            retry_after_ms: ban - 1,
            banned: true
        }
    );
    // One slot free: the attempt goes ahead, takes a place only there, and gives it back.
    slots[2] = None;
    let (r, taken) = reserve(&mut slots, 600_000, T0 + 1, max);
    assert_eq!((r, taken), (Reserve::Allowed, 0b0100));
    finish(&mut slots, taken, T0 + 1, (max, ban), false);
    assert_eq!(slots[2].map(|l| l.counts()), Some((0, 0)));
}

#[test]
fn slots_are_one_per_row_and_spread_by_the_keys_bits() {
    let idx = slot_indexes(0x0123_4567_89ab_cdef);
    for (r, i) in idx.iter().enumerate() {
        assert!((r * WIDTH..(r + 1) * WIDTH).contains(i), "row {r}: {i}");
    }
    assert_ne!(slot_indexes(1), slot_indexes(1 << 12));
    assert!(Sketch::<FailureLog>::bytes_per_id() <= 2 << 20);
}
