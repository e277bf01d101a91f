//! One upstream service as configured: its addresses and weights, timeouts, TLS, how requests
//! are spread over the addresses, passive ejection and the active health check; and the
//! pingora peer for one of its addresses.

use pingora::prelude::HttpPeer;
use pingora::protocols::tls::CaType;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpstreamSettings {
    /// `[[upstream]] name` (`"default"` for `[upstream]`): routes refer to it.
    pub name: String,
    pub addresses: Vec<SocketAddr>,
    /// One per address.
    pub weights: Vec<usize>,
    pub balance: Balance,
    pub connect_timeout: Duration,
    pub read_timeout: Duration,
    pub write_timeout: Duration,
    pub idle_timeout: Duration,
    pub websocket_idle_timeout: Duration,
    pub tls: Option<UpstreamTls>,
    /// Further addresses an idempotent request tries after a connect failure.
    pub retries: u32,
    /// Consecutive connect failures that take an address out of rotation…
    pub eject_after: u32,
    /// …for this long.
    pub eject_for: Duration,
    pub health_check: Option<HealthCheckSettings>,
}

/// How requests are spread over an upstream's addresses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Balance {
    /// Weighted round robin.
    RoundRobin,
    /// Consistent hashing (ketama) on a key, so one client keeps its address (sticky
    /// WebSocket gateways) while the set is unchanged.
    Hash(HashKey),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HashKey {
    ClientIp,
    /// The authenticated user (anonymous requests fall back to the client IP).
    UserId,
}

/// `[upstream.health_check]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HealthCheckSettings {
    pub path: String,
    pub interval: Duration,
    pub timeout: Duration,
    pub expected_status: u16,
    /// Consecutive passing checks that bring an address back.
    pub rise: usize,
    /// Consecutive failing checks that take it out.
    pub fall: usize,
    pub host: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpstreamTls {
    /// SNI and the name the certificate must carry.
    pub server_name: String,
    /// CA certificates (DER) to trust instead of the system's.
    pub ca: Option<Vec<Vec<u8>>>,
}

/// How to reach one upstream's addresses: its settings with the CA in pingora's form.
#[derive(Debug, Clone)]
pub struct PeerTemplate {
    pub settings: UpstreamSettings,
    ca: Option<Arc<CaType>>,
}

impl PeerTemplate {
    pub fn new(settings: UpstreamSettings) -> PeerTemplate {
        let ca = settings
            .tls
            .as_ref()
            .and_then(|t| t.ca.as_deref())
            .map(upstream_ca);
        PeerTemplate { settings, ca }
    }

    /// The peer for address `i`; a WebSocket tunnel gets the WebSocket idle timeout.
    pub(super) fn peer(&self, i: usize, websocket: bool) -> HttpPeer {
        let s = &self.settings;
        let read = if websocket {
            s.websocket_idle_timeout
        } else {
            s.read_timeout
        };
        self.peer_with(s.addresses[i], s.connect_timeout, read)
    }

    /// A peer for `addr` with these timeouts and the upstream's TLS settings.
    pub(super) fn peer_with(
        &self,
        addr: SocketAddr,
        connect: Duration,
        read: Duration,
    ) -> HttpPeer {
        let s = &self.settings;
        let (tls, sni) = match &s.tls {
            Some(t) => (true, t.server_name.clone()),
            None => (false, String::new()),
        };
        let mut peer = HttpPeer::new(addr, tls, sni);
        let o = &mut peer.options;
        o.connection_timeout = Some(connect);
        o.read_timeout = Some(read);
        o.write_timeout = Some(s.write_timeout);
        o.idle_timeout = Some(s.idle_timeout);
        o.ca = self.ca.clone();
        peer
    }
}

/// CA certificates (DER, checked when the config was loaded) in pingora's form.
fn upstream_ca(ders: &[Vec<u8>]) -> Arc<CaType> {
    let certs: Vec<pingora::utils::tls::WrappedX509> = ders
        .iter()
        .map(|der| {
            pingora::utils::tls::WrappedX509::new(der.clone(), pingora::utils::tls::parse_x509)
        })
        .collect();
    Arc::from(certs)
}
