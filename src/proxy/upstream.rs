//! The upstream side: which address, with which timeouts, over TLS or not.

use pingora::prelude::HttpPeer;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

/// Upstream connection settings.
#[derive(Debug, Clone)]
pub struct UpstreamPool {
    pub addresses: Vec<SocketAddr>,
    pub connect_timeout: Duration,
    pub read_timeout: Duration,
    pub write_timeout: Duration,
    pub idle_timeout: Duration,
    /// How long a WebSocket tunnel may stay silent in either direction.
    pub websocket_idle_timeout: Duration,
    /// TLS to the upstream: the SNI (and name checked), and the CA certificates to trust.
    pub tls: Option<(String, Option<Arc<pingora::protocols::tls::CaType>>)>,
}

impl UpstreamPool {
    /// The peer for address `i`; a WebSocket tunnel gets the WebSocket idle timeout.
    pub(super) fn peer(&self, i: usize, websocket: bool) -> HttpPeer {
        let (tls, sni) = match &self.tls {
            Some((name, _)) => (true, name.clone()),
            None => (false, String::new()),
        };
        let mut peer = HttpPeer::new(self.addresses[i], tls, sni);
        let o = &mut peer.options;
        o.connection_timeout = Some(self.connect_timeout);
        o.read_timeout = Some(if websocket {
            self.websocket_idle_timeout
        } else {
            self.read_timeout
        });
        o.write_timeout = Some(self.write_timeout);
        o.idle_timeout = Some(self.idle_timeout);
        if let Some((_, Some(ca))) = &self.tls {
            o.ca = Some(ca.clone());
        }
        peer
    }
}

/// CA certificates (DER, checked when the config was loaded) in pingora's form.
pub fn upstream_ca(ders: &[Vec<u8>]) -> Arc<pingora::protocols::tls::CaType> {
    let certs: Vec<pingora::utils::tls::WrappedX509> = ders
        .iter()
        .map(|der| {
            pingora::utils::tls::WrappedX509::new(der.clone(), pingora::utils::tls::parse_x509)
        })
        .collect();
    Arc::from(certs)
}
