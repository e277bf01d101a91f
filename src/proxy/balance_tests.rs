//! Address selection without a network: round robin, consistent hashing, retries skipping
//! tried addresses, passive ejection and its expiry.

use super::*;
use std::time::Duration;

fn settings(n: u16, balance: Balance) -> UpstreamSettings {
    UpstreamSettings {
        name: "api".into(),
        addresses: (0..n)
            .map(|i| SocketAddr::from(([127, 0, 0, 1], 4000 + i)))
            .collect(),
        weights: vec![1; n as usize],
        balance,
        connect_timeout: Duration::from_secs(1),
        read_timeout: Duration::from_secs(1),
        write_timeout: Duration::from_secs(1),
        idle_timeout: Duration::from_secs(1),
        websocket_idle_timeout: Duration::from_secs(1),
        tls: None,
        retries: 1,
        eject_after: 2,
        eject_for: Duration::from_secs(10),
        health_check: None,
    }
}

#[test]
fn round_robin_visits_every_address_in_turn() {
    let pool = UpstreamPool::new(settings(3, Balance::RoundRobin));
    let now = crate::clock::monotonic_now();
    let picks: Vec<usize> = (0..6)
        .map(|_| pool.select(b"", &[], now).unwrap())
        .collect();
    for i in 0..3 {
        assert_eq!(picks.iter().filter(|p| **p == i).count(), 2, "{picks:?}");
    }
}

#[test]
fn a_retry_never_picks_an_address_already_tried() {
    let pool = UpstreamPool::new(settings(2, Balance::RoundRobin));
    let now = crate::clock::monotonic_now();
    for _ in 0..20 {
        assert_eq!(pool.select(b"", &[0], now), Some(1));
        assert_eq!(pool.select(b"", &[1], now), Some(0));
    }
    assert_eq!(pool.select(b"", &[0, 1], now), None);
}

#[test]
fn consecutive_connect_failures_eject_an_address_until_eject_for_passes() {
    let pool = UpstreamPool::new(settings(2, Balance::RoundRobin));
    let t0 = crate::clock::monotonic_now();
    assert!(!pool.connect_failed(0, t0));
    // A success in between resets the count: failures must be consecutive.
    pool.connected(0);
    assert!(!pool.connect_failed(0, t0));
    assert!(pool.connect_failed(0, t0));
    let h = pool.health(t0);
    assert!(h[0].ejected && !h[1].ejected);
    for _ in 0..20 {
        assert_eq!(pool.select(b"", &[], t0), Some(1));
    }
    assert!(pool.any_usable(t0));
    let later = t0 + Duration::from_secs(11);
    assert!(!pool.health(later)[0].ejected);
    let picks: Vec<usize> = (0..4)
        .map(|_| pool.select(b"", &[], later).unwrap())
        .collect();
    assert!(picks.contains(&0), "{picks:?}");
}

#[test]
fn with_every_address_ejected_an_untried_one_is_still_tried() {
    let pool = UpstreamPool::new(settings(2, Balance::RoundRobin));
    let t0 = crate::clock::monotonic_now();
    for i in 0..2 {
        pool.connect_failed(i, t0);
        pool.connect_failed(i, t0);
    }
    assert!(!pool.any_usable(t0));
    assert!(pool.select(b"", &[], t0).is_some());
    assert_eq!(pool.select(b"", &[0], t0), Some(1));
}

#[test]
fn a_single_address_is_never_ejected_and_tried_once_per_request() {
    let pool = UpstreamPool::new(settings(1, Balance::RoundRobin));
    let t0 = crate::clock::monotonic_now();
    for _ in 0..5 {
        assert!(!pool.connect_failed(0, t0));
    }
    assert!(pool.any_usable(t0));
    assert_eq!(pool.select(b"", &[], t0), Some(0));
    assert_eq!(pool.select(b"", &[0], t0), None);
}

#[test]
fn consistent_hashing_keeps_a_key_on_one_address() {
    let pool = UpstreamPool::new(settings(4, Balance::Hash(HashKey::UserId)));
    assert!(pool.hashes_by_user());
    let now = crate::clock::monotonic_now();
    let mut seen = std::collections::BTreeSet::new();
    for user in 0..40u32 {
        let key = user.to_string();
        let first = pool.select(key.as_bytes(), &[], now).unwrap();
        for _ in 0..5 {
            assert_eq!(pool.select(key.as_bytes(), &[], now), Some(first));
        }
        seen.insert(first);
    }
    // And different keys spread over the addresses.
    assert!(seen.len() >= 3, "{seen:?}");
}
