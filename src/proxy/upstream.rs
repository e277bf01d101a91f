//! The upstream side: which address, with which timeouts, over TLS or not.

use pingora::prelude::HttpPeer;
use pingora::protocols::tls::CaType;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

#[derive(Debug, Clone)]
pub struct UpstreamSettings {
    pub addresses: Vec<SocketAddr>,
    pub connect_timeout: Duration,
    pub read_timeout: Duration,
    pub write_timeout: Duration,
    pub idle_timeout: Duration,
    pub websocket_idle_timeout: Duration,
    pub tls: Option<UpstreamTls>,
}

#[derive(Debug, Clone)]
pub struct UpstreamTls {
    /// SNI and the name the certificate must carry.
    pub server_name: String,
    /// CA certificates (DER) to trust instead of the system's.
    pub ca: Option<Vec<Vec<u8>>>,
}

/// The validated `[upstream]` settings, with the CA certificates in pingora's form.
#[derive(Debug, Clone)]
pub struct UpstreamPool {
    pub settings: UpstreamSettings,
    ca: Option<Arc<CaType>>,
}

impl UpstreamPool {
    pub fn new(settings: UpstreamSettings) -> UpstreamPool {
        let ca = settings
            .tls
            .as_ref()
            .and_then(|t| t.ca.as_deref())
            .map(upstream_ca);
        UpstreamPool { settings, ca }
    }

    /// The peer for address `i`; a WebSocket tunnel gets the WebSocket idle timeout.
    pub(super) fn peer(&self, i: usize, websocket: bool) -> HttpPeer {
        let s = &self.settings;
        let (tls, sni) = match &s.tls {
            Some(t) => (true, t.server_name.clone()),
            None => (false, String::new()),
        };
        let mut peer = HttpPeer::new(s.addresses[i], tls, sni);
        let o = &mut peer.options;
        o.connection_timeout = Some(s.connect_timeout);
        o.read_timeout = Some(if websocket {
            s.websocket_idle_timeout
        } else {
            s.read_timeout
        });
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
