//! `Strict-Transport-Security` per TLS listener: which listener a request came in on, and the
//! header its answers carry. Set on every answer over that listener (the upstream's, whose own
//! header it replaces, and fluxgate's denials and own answers); never over plain HTTP, where
//! browsers ignore it anyway (RFC 6797 §8.1) and where it would say nothing true.

use http::HeaderValue;
use pingora::http::ResponseHeader;
use pingora::protocols::l4::socket::SocketAddr as PeerAddr;
use pingora::proxy::Session;
use std::net::SocketAddr;

/// The TLS listeners that send HSTS, by the address they were bound to (port 0 resolved).
#[derive(Debug, Default, Clone)]
pub struct HstsListeners {
    by_addr: Vec<(SocketAddr, HeaderValue)>,
}

impl HstsListeners {
    pub fn new(listeners: impl IntoIterator<Item = (SocketAddr, HeaderValue)>) -> Self {
        HstsListeners {
            by_addr: listeners.into_iter().collect(),
        }
    }

    /// The header for a request on `session`: only over TLS, and only on a listener that sends
    /// one.
    pub fn for_session(&self, session: &Session) -> Option<HeaderValue> {
        if self.by_addr.is_empty() {
            return None;
        }
        let digest = session.digest()?;
        // SECURITY: never over plain HTTP, even on an address a TLS listener shares by
        // wildcard: the header is only ever true of a TLS connection.
        digest.ssl_digest.as_ref()?;
        let local = match digest.socket_digest.as_ref()?.local_addr()? {
            PeerAddr::Inet(a) => *a,
            _ => return None,
        };
        self.lookup(local).cloned()
    }

    /// The header of the listener bound to exactly `local`, else of a wildcard one on its port.
    fn lookup(&self, local: SocketAddr) -> Option<&HeaderValue> {
        super::edge::by_local_addr(&self.by_addr, local)
    }
}

/// Sets the listener's HSTS header on an answer, replacing any the upstream sent.
pub fn apply(resp: &mut ResponseHeader, hsts: Option<&HeaderValue>) -> pingora::Result<()> {
    if let Some(v) = hsts {
        resp.insert_header(http::header::STRICT_TRANSPORT_SECURITY, v.clone())?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listeners_are_matched_exactly_then_by_wildcard() {
        let v = |s: &'static str| HeaderValue::from_static(s);
        let h = HstsListeners::new([
            ("127.0.0.1:8443".parse().unwrap(), v("max-age=1")),
            ("0.0.0.0:9443".parse().unwrap(), v("max-age=2")),
        ]);
        let at = |a: &str| h.lookup(a.parse().unwrap()).cloned();
        assert_eq!(at("127.0.0.1:8443"), Some(v("max-age=1")));
        assert_eq!(at("127.0.0.2:8443"), None);
        assert_eq!(at("10.0.0.1:9443"), Some(v("max-age=2")));
        assert_eq!(at("[::ffff:127.0.0.1]:8443"), Some(v("max-age=1")));
        assert_eq!(at("127.0.0.1:8080"), None);
    }
}
