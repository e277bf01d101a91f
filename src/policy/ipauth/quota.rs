//! How many new-location tickets one user, and one network, may open per ticket lifetime.
//!
//! Ticket creation runs before the per-user limits (it answers the request), so without a
//! quota of its own one user with `granularity = "ip"` could open a ticket per IPv6 address of
//! a /64: unbounded store growth, an approval mail for each (filling the notifier's queue, so
//! other users' mails were dropped), and a store sweep that grew with it. In process and
//! bounded; with several instances each keeps its own count (a flood is still limited to a
//! small multiple).

use std::collections::HashMap;
use std::hash::{BuildHasher, Hash, Hasher};
use std::net::IpAddr;
use std::sync::Mutex;

/// New tickets per user per ticket lifetime.
pub const PER_USER: u32 = 5;
/// New tickets per network (IPv6 /64, IPv4 address) per ticket lifetime.
pub const PER_NETWORK: u32 = 20;
/// Counters kept at most; when full and none has expired, new tickets are refused (a flood is
/// in progress, and refusing is the closed way to fail).
const MAX_KEYS: usize = 100_000;

/// Fixed-window counters by hashed key.
pub struct TicketQuota {
    window_secs: i64,
    hasher: std::hash::RandomState,
    counts: Mutex<HashMap<u64, (i64, u32)>>,
}

impl TicketQuota {
    pub fn new(window_secs: i64) -> Self {
        TicketQuota {
            window_secs: window_secs.max(1),
            hasher: std::hash::RandomState::new(),
            counts: Mutex::new(HashMap::new()),
        }
    }

    fn key(&self, tag: u8, part: &[u8]) -> u64 {
        let mut h = self.hasher.build_hasher();
        tag.hash(&mut h);
        h.write(part);
        h.finish()
    }

    fn keys(&self, user: &str, ip: IpAddr) -> [(u64, u32); 2] {
        let net = match ip.to_canonical() {
            IpAddr::V4(v4) => v4.octets().to_vec(),
            IpAddr::V6(v6) => v6.octets()[..8].to_vec(),
        };
        [
            (self.key(b'u', user.as_bytes()), PER_USER),
            (self.key(b'n', &net), PER_NETWORK),
        ]
    }

    /// Takes one new ticket for `user` from `ip`; `Err(seconds)` to wait when either the
    /// user's or the network's quota is spent.
    pub fn take(&self, user: &str, ip: IpAddr, now: i64) -> Result<(), i64> {
        let keys = self.keys(user, ip);
        let mut m = self.counts.lock().unwrap_or_else(|p| p.into_inner());
        if m.len() + keys.len() > MAX_KEYS {
            m.retain(|_, (start, _)| now < *start + self.window_secs);
        }
        let mut wait = 0;
        for (k, limit) in keys {
            match m.get(&k) {
                Some(&(start, n)) if now < start + self.window_secs && n >= limit => {
                    wait = wait.max(start + self.window_secs - now);
                }
                None if m.len() + keys.len() > MAX_KEYS => wait = wait.max(1),
                _ => {}
            }
        }
        if wait > 0 {
            return Err(wait);
        }
        for (k, _) in keys {
            let e = m.entry(k).or_insert((now, 0));
            if now >= e.0 + self.window_secs {
                *e = (now, 0);
            }
            e.1 += 1;
        }
        Ok(())
    }

    /// Gives back what `take` took when no new ticket was opened after all (an open one was
    /// reused).
    pub fn give_back(&self, user: &str, ip: IpAddr) {
        let mut m = self.counts.lock().unwrap_or_else(|p| p.into_inner());
        for (k, _) in self.keys(user, ip) {
            if let Some(e) = m.get_mut(&k) {
                e.1 = e.1.saturating_sub(1);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_800_000_000;

    #[test]
    fn one_user_cannot_open_a_ticket_per_address_of_a_64() {
        let q = TicketQuota::new(900);
        let mut opened = 0;
        for i in 0..10_000u32 {
            let ip: IpAddr = format!("2001:db8:1:2::{:x}", i + 1).parse().unwrap();
            if q.take("42", ip, NOW).is_ok() {
                opened += 1;
            }
        }
        assert_eq!(opened, PER_USER);
        // Another user elsewhere is untouched; a window later the user may open again.
        assert!(q.take("43", "198.51.100.7".parse().unwrap(), NOW).is_ok());
        assert!(
            q.take("42", "2001:db8:9::1".parse().unwrap(), NOW + 900)
                .is_ok()
        );
    }

    #[test]
    fn many_accounts_from_one_network_share_its_quota() {
        let q = TicketQuota::new(900);
        let opened = (0..1_000)
            .filter(|u| {
                let ip: IpAddr = format!("2001:db8:1:2::{:x}", u + 1).parse().unwrap();
                q.take(&format!("user{u}"), ip, NOW).is_ok()
            })
            .count();
        assert_eq!(opened as u32, PER_NETWORK);
        assert_eq!(
            q.take("someone", "2001:db8:1:2::ffff".parse().unwrap(), NOW + 10),
            Err(890)
        );
        assert!(
            q.take("someone", "2001:db8:1:3::1".parse().unwrap(), NOW)
                .is_ok()
        );
    }

    #[test]
    fn a_reused_ticket_costs_nothing() {
        let q = TicketQuota::new(900);
        let ip: IpAddr = "192.0.2.1".parse().unwrap();
        for _ in 0..100 {
            q.take("42", ip, NOW).unwrap();
            q.give_back("42", ip);
        }
        assert!(q.take("42", ip, NOW).is_ok());
    }
}
