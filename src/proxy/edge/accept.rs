//! What happens to a TCP connection before HTTP: which listener it came in on, the PROXY
//! protocol header when that listener expects one, and the TLS handshake.
//!
//! Why here rather than in pingora's listeners: pingora 0.9 reads nothing before TLS except
//! through a `PreTlsProcess` callback, which applies to every TLS endpoint of a service and to
//! no plain one, runs before any per-address limit, and has each refusal logged at ERROR. So
//! every listener is a plain TCP listener to pingora, and the edge does the rest in
//! `ServerApp::process_new`: it finds the listener by the connection's local address, reads
//! the PROXY header from pingora's L4 stream (handing the bytes after it back with `rewind`),
//! replaces the socket digest's peer address with the header's source, so that
//! `session.client_addr()` (and with it the client-IP resolution, the forwarded headers and
//! the logs) sees the real client, and then runs the listener's TLS handshake with pingora's
//! own acceptor, exactly as pingora's listener would have.

use crate::net::proxy_protocol::{self, MAX_HEADER, Parsed};
use pingora::listeners::tls::Acceptor;
use pingora::protocols::l4::socket::SocketAddr as PeerAddr;
use pingora::protocols::l4::stream::Stream as L4Stream;
use pingora::protocols::{GetSocketDigest, SocketDigest, Stream};
use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::AsyncReadExt;

/// What a listener expects of its connections.
pub struct ListenerKind {
    /// A PROXY protocol header comes first (from a trusted proxy only).
    pub proxy_protocol: bool,
    /// TLS, after the PROXY header if there is one.
    pub tls: Option<Arc<Acceptor>>,
    /// `Strict-Transport-Security` on the edge's own answers (TLS listeners with `hsts` only).
    pub hsts: Option<http::HeaderValue>,
}

/// The listeners of the proxy service, by the address they were bound to.
#[derive(Default)]
pub struct Listeners {
    by_addr: Vec<(SocketAddr, ListenerKind)>,
}

impl Listeners {
    /// `addr` must be the bound address (port 0 resolved): connections are matched by it.
    pub fn add(&mut self, addr: SocketAddr, kind: ListenerKind) {
        self.by_addr.push((addr, kind));
    }

    /// The listener a connection with this local address was accepted on: the one bound to
    /// exactly that address, else a wildcard one (`0.0.0.0`, `[::]`) on its port.
    pub fn lookup(&self, local: SocketAddr) -> Option<&ListenerKind> {
        by_local_addr(&self.by_addr, local)
    }
}

/// The entry of the listener a connection with local address `local` came in on: the one bound
/// to exactly that address, else a wildcard one (`0.0.0.0`, `[::]`) on its port.
pub fn by_local_addr<T>(listeners: &[(SocketAddr, T)], local: SocketAddr) -> Option<&T> {
    let ip = local.ip().to_canonical();
    let same_port = || listeners.iter().filter(|(a, _)| a.port() == local.port());
    same_port()
        .find(|(a, _)| a.ip().to_canonical() == ip)
        .or_else(|| same_port().find(|(a, _)| a.ip().is_unspecified()))
        .map(|(_, k)| k)
}

/// The local address of an accepted connection.
pub fn local_addr(stream: &Stream) -> Option<SocketAddr> {
    match stream.get_socket_digest()?.local_addr()? {
        PeerAddr::Inet(a) => Some(*a),
        _ => None,
    }
}

/// Why a connection was closed before HTTP, as the `reason` of
/// `fluxgate_connections_closed_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// The client's address is at `server.max_connections_per_ip`.
    PerIpCap,
    /// A PROXY listener was reached by a peer outside `client_ip.trusted_proxies`.
    ProxyUntrusted,
    /// The PROXY header did not arrive whole within `server.proxy_protocol_timeout`.
    ProxyTimeout,
    /// The PROXY header was malformed, or the connection ended before it was whole.
    ProxyMalformed,
    /// The connection ended before its first byte (a TCP health check).
    ProxyMissing,
    /// The TLS handshake failed.
    TlsFailed,
    /// The TLS handshake did not finish in time.
    TlsTimeout,
    /// Not a TCP connection on a known listener (pingora handed us something unexpected).
    Unexpected,
}

impl Refused {
    pub fn reason(self) -> &'static str {
        match self {
            Refused::PerIpCap => "per_ip_cap",
            Refused::ProxyUntrusted => "proxy_protocol_untrusted",
            Refused::ProxyTimeout => "proxy_protocol_timeout",
            Refused::ProxyMalformed => "proxy_protocol_malformed",
            Refused::ProxyMissing => "proxy_protocol_missing",
            Refused::TlsFailed => "tls_handshake_failed",
            Refused::TlsTimeout => "tls_handshake_timeout",
            Refused::Unexpected => "unexpected_stream",
        }
    }
}

/// The concrete L4 stream behind a plain TCP listener's connection.
pub fn into_l4(stream: Stream) -> Result<L4Stream, Refused> {
    stream
        .into_any()
        .downcast::<L4Stream>()
        .map(|b| *b)
        .map_err(|_| Refused::Unexpected)
}

/// Reads the PROXY header within `limit`. The client's address, when the header names one,
/// becomes the connection's peer address; bytes after the header stay in the stream.
pub async fn read_proxy_header(
    l4: &mut L4Stream,
    limit: Duration,
) -> Result<Option<SocketAddr>, Refused> {
    let (len, source, buf) = tokio::time::timeout(limit, read_until_header(l4))
        .await
        .map_err(|_| Refused::ProxyTimeout)??;
    // What came with the header belongs to what follows it (HTTP, or TLS).
    l4.rewind(&buf[len..]);
    if let Some(src) = source {
        set_peer(l4, src);
    }
    Ok(source)
}

/// Reads until `buf` starts with a whole header: its length, its source, and all bytes read.
async fn read_until_header(
    l4: &mut L4Stream,
) -> Result<(usize, Option<SocketAddr>, Vec<u8>), Refused> {
    let mut buf = Vec::with_capacity(256);
    let mut chunk = [0u8; 512];
    loop {
        match proxy_protocol::parse(&buf) {
            Ok(Parsed::Header { len, source }) => return Ok((len, source, buf)),
            Ok(Parsed::Incomplete) => {}
            Err(e) => {
                tracing::debug!(error = %e, "PROXY protocol header refused");
                return Err(Refused::ProxyMalformed);
            }
        }
        // Never buffer more than a header can be (parse refuses past MAX_HEADER).
        let room = (MAX_HEADER + 1 - buf.len()).min(chunk.len());
        match l4.read(&mut chunk[..room]).await {
            // A balancer's plain TCP health check connects and hangs up without a byte.
            Ok(0) if buf.is_empty() => return Err(Refused::ProxyMissing),
            Ok(0) | Err(_) => {
                tracing::debug!("connection ended inside its PROXY protocol header");
                return Err(Refused::ProxyMalformed);
            }
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
}

/// The connection's peer address, as every later reader of the socket digest sees it.
fn set_peer(l4: &mut L4Stream, source: SocketAddr) {
    let digest = SocketDigest::from_raw_fd(l4.as_raw_fd());
    // A fresh digest: its cells are empty, so these cannot fail. The local address stays the
    // socket's own (read lazily from the descriptor).
    let _ = digest.peer_addr.set(Some(PeerAddr::Inet(source)));
    l4.set_socket_digest(digest);
}

/// The listener's TLS handshake, bounded by `limit`.
pub async fn tls_handshake(
    acceptor: &Acceptor,
    l4: L4Stream,
    limit: Duration,
) -> Result<Stream, Refused> {
    match tokio::time::timeout(limit, acceptor.tls_handshake(l4)).await {
        Ok(Ok(tls)) => Ok(Box::new(tls)),
        Ok(Err(e)) => {
            // A client's failed handshake (scanners, old clients, wrong port) is not a server
            // error: counted, and logged at debug only.
            tracing::debug!(error = %e, "TLS handshake failed");
            Err(Refused::TlsFailed)
        }
        Err(_) => {
            tracing::debug!("TLS handshake timed out");
            Err(Refused::TlsTimeout)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kind(pp: bool) -> ListenerKind {
        ListenerKind {
            proxy_protocol: pp,
            tls: None,
            hsts: None,
        }
    }

    #[test]
    fn connections_are_matched_to_their_listener_exactly_then_by_wildcard() {
        let mut l = Listeners::default();
        l.add("127.0.0.1:8080".parse().unwrap(), kind(false));
        l.add("0.0.0.0:8081".parse().unwrap(), kind(true));
        l.add("[::]:8082".parse().unwrap(), kind(true));
        let pp = |a: &str| l.lookup(a.parse().unwrap()).map(|k| k.proxy_protocol);
        assert_eq!(pp("127.0.0.1:8080"), Some(false));
        assert_eq!(pp("127.0.0.2:8080"), None);
        assert_eq!(pp("10.1.2.3:8081"), Some(true));
        assert_eq!(pp("[::ffff:10.1.2.3]:8082"), Some(true));
        assert_eq!(pp("127.0.0.1:9999"), None);
    }
}
