//! Picking an address of an upstream for one attempt: pingora's own load balancer
//! (`pingora-load-balancing`: weighted round robin or ketama consistent hashing, with its HTTP
//! health check deciding which addresses are healthy), plus passive ejection: an address whose
//! connections fail `eject_after` times in a row is left out for `eject_for`, before any
//! health check notices.
//!
//! An upstream with one address and no health check has no balancer at all, so the common
//! single-service setup costs what it did before.

use super::upstream::{Balance, HashKey, HealthCheckSettings, PeerTemplate, UpstreamSettings};
use futures_util::FutureExt;
use pingora::prelude::HttpPeer;
use pingora_load_balancing::health_check::{HealthObserve, HttpHealthCheck};
use pingora_load_balancing::selection::{BackendIter, BackendSelection, Consistent, RoundRobin};
use pingora_load_balancing::{Backend, Backends, LoadBalancer, discovery};
use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::time::Instant;

/// Candidates the balancer offers before giving up on finding an acceptable one.
const MAX_CANDIDATES: usize = 64;

/// One upstream at run time: how to reach its addresses and which one to use next.
pub struct UpstreamPool {
    pub template: PeerTemplate,
    pick: Pick,
    addrs: Box<[AddrState]>,
    /// Ejection deadlines are milliseconds since this instant.
    epoch: Instant,
    /// When the next health check is due (milliseconds since `epoch`).
    next_check_ms: AtomicU64,
    checking: AtomicBool,
}

enum Pick {
    /// One address and no health check.
    Single,
    RoundRobin(LoadBalancer<RoundRobin>),
    Hash(LoadBalancer<Consistent>, HashKey),
}

/// Passive health of one address.
#[derive(Default)]
struct AddrState {
    failures: AtomicU32,
    ejected_until_ms: AtomicU64,
}

/// How one address looks now, for `/metrics` and `/readyz`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AddrHealth {
    pub addr: SocketAddr,
    /// The health check's verdict (true without a health check).
    pub healthy: bool,
    /// Left out after consecutive connect failures.
    pub ejected: bool,
}

impl UpstreamPool {
    pub fn new(settings: UpstreamSettings) -> UpstreamPool {
        let n = settings.addresses.len();
        let pick = match settings.balance {
            _ if n == 1 && settings.health_check.is_none() => Pick::Single,
            Balance::RoundRobin => Pick::RoundRobin(balancer(&settings)),
            Balance::Hash(key) => Pick::Hash(balancer(&settings), key),
        };
        UpstreamPool {
            template: PeerTemplate::new(settings),
            pick,
            addrs: (0..n).map(|_| AddrState::default()).collect(),
            epoch: crate::clock::monotonic_now(),
            next_check_ms: AtomicU64::new(0),
            checking: AtomicBool::new(false),
        }
    }

    pub fn settings(&self) -> &UpstreamSettings {
        &self.template.settings
    }

    /// The peer for address `i`.
    pub(super) fn peer(&self, i: usize, websocket: bool) -> HttpPeer {
        self.template.peer(i, websocket)
    }

    /// Whether the key for consistent hashing is the user.
    pub(super) fn hashes_by_user(&self) -> bool {
        matches!(self.pick, Pick::Hash(_, HashKey::UserId))
    }

    /// An address for the next attempt, none of `tried`: a healthy, not ejected one if there
    /// is one; otherwise any untried one (an address believed down may be back, and trying it
    /// beats refusing outright). `key` is the hash key (ignored by round robin).
    pub(super) fn select(&self, key: &[u8], tried: &[usize], now: Instant) -> Option<usize> {
        match &self.pick {
            Pick::Single => (!tried.contains(&0)).then_some(0),
            Pick::RoundRobin(lb) => self.select_in(lb, key, tried, now),
            Pick::Hash(lb, _) => self.select_in(lb, key, tried, now),
        }
    }

    fn select_in<S>(
        &self,
        lb: &LoadBalancer<S>,
        key: &[u8],
        tried: &[usize],
        now: Instant,
    ) -> Option<usize>
    where
        S: BackendSelection + 'static,
        S::Iter: BackendIter,
    {
        let now_ms = self.ms(now);
        let pass = |usable_only: bool| {
            let b = lb.select_with(key, MAX_CANDIDATES, |b, healthy| {
                self.index(b).is_some_and(|i| {
                    !tried.contains(&i)
                        && (!usable_only || (healthy && !self.addrs[i].ejected(now_ms)))
                })
            })?;
            self.index(&b)
        };
        pass(true).or_else(|| pass(false))
    }

    fn index(&self, b: &Backend) -> Option<usize> {
        let a = b.addr.as_inet()?;
        self.settings().addresses.iter().position(|x| x == a)
    }

    fn ms(&self, now: Instant) -> u64 {
        now.saturating_duration_since(self.epoch).as_millis() as u64
    }

    /// A connection to address `i` failed. Returns true when this failure ejected it.
    pub(super) fn connect_failed(&self, i: usize, now: Instant) -> bool {
        let Some(a) = self.addrs.get(i) else {
            return false;
        };
        let n = a.failures.fetch_add(1, Ordering::Relaxed) + 1;
        if n < self.settings().eject_after || self.addrs.len() < 2 {
            return false;
        }
        a.failures.store(0, Ordering::Relaxed);
        let until = self.ms(now) + self.settings().eject_for.as_millis() as u64;
        a.ejected_until_ms.store(until, Ordering::Relaxed);
        tracing::warn!(
            upstream = %self.settings().name,
            address = %self.settings().addresses[i],
            failures = n,
            eject_for_ms = self.settings().eject_for.as_millis() as u64,
            "upstream address ejected after consecutive connect failures"
        );
        true
    }

    /// A connection to address `i` succeeded: its failures are no longer consecutive.
    pub(super) fn connected(&self, i: usize) {
        if let Some(a) = self.addrs.get(i)
            && a.failures.load(Ordering::Relaxed) != 0
        {
            a.failures.store(0, Ordering::Relaxed);
        }
    }

    /// Every address with its health now.
    pub fn health(&self, now: Instant) -> Vec<AddrHealth> {
        let now_ms = self.ms(now);
        let s = self.settings();
        s.addresses
            .iter()
            .enumerate()
            .map(|(i, addr)| AddrHealth {
                addr: *addr,
                healthy: self.checked_healthy(*addr, s.weights.get(i).copied().unwrap_or(1)),
                ejected: self.addrs[i].ejected(now_ms),
            })
            .collect()
    }

    fn checked_healthy(&self, addr: SocketAddr, weight: usize) -> bool {
        let b = backend(addr, weight);
        match &self.pick {
            Pick::Single => true,
            Pick::RoundRobin(lb) => lb.backends().ready(&b),
            Pick::Hash(lb, _) => lb.backends().ready(&b),
        }
    }

    /// Whether at least one address may take requests.
    pub fn any_usable(&self, now: Instant) -> bool {
        self.health(now).iter().any(|h| h.healthy && !h.ejected)
    }

    /// Whether a health check is configured and due.
    pub fn check_due(&self, now: Instant) -> bool {
        self.settings().health_check.is_some()
            && self.next_check_ms.load(Ordering::Relaxed) <= self.ms(now)
            && !self.checking.load(Ordering::Relaxed)
    }

    /// Checks every address once (unless a check is already running) and schedules the next.
    pub async fn run_check(&self) {
        let Some(hc) = &self.settings().health_check else {
            return;
        };
        if self.checking.swap(true, Ordering::AcqRel) {
            return;
        }
        let backends = match &self.pick {
            Pick::Single => None,
            Pick::RoundRobin(lb) => Some(lb.backends()),
            Pick::Hash(lb, _) => Some(lb.backends()),
        };
        if let Some(b) = backends {
            // In parallel: one slow address must not delay the verdict on the others.
            b.run_health_check(true).await;
        }
        let next = self.ms(crate::clock::monotonic_now()) + hc.interval.as_millis() as u64;
        self.next_check_ms.store(next, Ordering::Relaxed);
        self.checking.store(false, Ordering::Release);
    }
}

impl AddrState {
    fn ejected(&self, now_ms: u64) -> bool {
        self.ejected_until_ms.load(Ordering::Relaxed) > now_ms
    }
}

fn backend(addr: SocketAddr, weight: usize) -> Backend {
    Backend {
        addr: pingora::protocols::l4::socket::SocketAddr::Inet(addr),
        weight,
        ext: Default::default(),
    }
}

/// A balancer over the upstream's addresses, with its health check when configured.
fn balancer<S>(s: &UpstreamSettings) -> LoadBalancer<S>
where
    S: BackendSelection + 'static,
    S::Iter: BackendIter,
{
    let set: BTreeSet<Backend> = s
        .addresses
        .iter()
        .zip(s.weights.iter().chain(std::iter::repeat(&1)))
        .map(|(a, w)| backend(*a, *w))
        .collect();
    let mut backends = Backends::new(discovery::Static::new(set));
    if let Some(hc) = &s.health_check {
        backends.set_health_check(Box::new(http_check(s, hc)));
    }
    let lb = LoadBalancer::from_backends(backends);
    // A static list: discovery answers at once and cannot fail.
    if let Some(Err(e)) = lb.update().now_or_never() {
        tracing::error!(upstream = %s.name, error = %e, "building the upstream's address set failed");
    }
    lb
}

/// pingora's HTTP health check with the upstream's TLS settings and these timeouts.
fn http_check(s: &UpstreamSettings, hc: &HealthCheckSettings) -> HttpHealthCheck {
    let host = match (&hc.host, &s.tls) {
        (Some(h), _) => h.clone(),
        (None, Some(t)) => t.server_name.clone(),
        (None, None) => s
            .addresses
            .first()
            .map(|a| a.to_string())
            .unwrap_or_default(),
    };
    let mut check = HttpHealthCheck::new(&host, s.tls.is_some());
    let template = PeerTemplate::new(s.clone());
    let placeholder = s
        .addresses
        .first()
        .copied()
        .unwrap_or(([127, 0, 0, 1], 1).into());
    check.peer_template = template.peer_with(placeholder, hc.timeout, hc.timeout);
    if let Ok(mut req) = pingora::http::RequestHeader::build("GET", hc.path.as_bytes(), None)
        && req.insert_header(http::header::HOST, &host).is_ok()
    {
        check.req = req;
    }
    check.consecutive_success = hc.rise;
    check.consecutive_failure = hc.fall;
    let expected = hc.expected_status;
    check.validator = Some(Box::new(move |resp| {
        if resp.status.as_u16() == expected {
            Ok(())
        } else {
            pingora::Error::e_explain(
                pingora::ErrorType::CustomCode(
                    "unexpected health check status",
                    resp.status.as_u16(),
                ),
                "health check",
            )
        }
    }));
    check.health_changed_callback = Some(Box::new(Observer(s.name.clone())));
    check
}

/// Says in fluxgate's log when an address changes health.
struct Observer(String);

#[async_trait::async_trait]
impl HealthObserve for Observer {
    async fn observe(&self, target: &Backend, healthy: bool) {
        let address = target.addr.to_string();
        if healthy {
            tracing::info!(upstream = %self.0, %address, "upstream address is healthy");
        } else {
            tracing::warn!(upstream = %self.0, %address, "upstream address failed its health check");
        }
    }
}

#[cfg(test)]
#[path = "balance_tests.rs"]
mod tests;
