//! The connection edge, around pingora's HTTP app: what a connection goes through before
//! HTTP (its listener, a PROXY protocol header, the TLS handshake: `accept`), connections per
//! client address, the deadline for a whole request head, and what the request hooks need
//! from the connection.
//!
//! Pingora's HTTP/1 reader has per-read timeouts only, so a client trickling one byte every few
//! seconds (slowloris) would hold a connection forever. Each plain or TLS HTTP/1 connection is
//! wrapped in [`Guarded`], which notes when the first byte of a request head arrives; the
//! request hooks mark the head complete; a watchdog per connection closes it when a head takes
//! longer than `server.head_timeout`. HTTP/2 connections get the same deadline for their
//! connection preface, then h2's own limits and the HTTP/2 idle timeout.
//!
//! The per-address cap counts the client as the request hooks will see it: on a PROXY
//! listener, the address the header names (the balancer itself is a trusted proxy, exempt),
//! so one client behind the balancer cannot take every connection either. It is taken before
//! the TLS handshake, so handshakes count too.

mod accept;
mod answer;
mod guarded;
mod scan;

pub use accept::{ListenerKind, Listeners, by_local_addr};
use accept::{Refused, local_addr};
pub use guarded::{ConnState, Guarded};

use crate::metrics::Metrics;
use crate::net::cidr::CidrSet;
use async_trait::async_trait;
use pingora::apps::ServerApp;
use pingora::protocols::l4::socket::SocketAddr as PeerAddr;
use pingora::protocols::{ALPN, Stream};
use pingora::server::ShutdownWatch;
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// What one client connection may cost.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EdgeLimits {
    /// From the first byte of a request (or the connection's start) to the end of its head.
    pub head_timeout: Duration,
    /// Idle time allowed between requests on a kept-alive connection.
    pub keepalive_timeout: Duration,
    /// Longest wait for the next piece of a request body.
    pub body_timeout: Duration,
    /// 0: unlimited.
    pub max_requests_per_connection: u32,
    /// 0: unlimited. Trusted proxies are exempt.
    pub max_connections_per_ip: u32,
    pub max_header_bytes: usize,
    pub max_headers: usize,
    pub h2_max_concurrent_streams: u32,
    /// How long a PROXY protocol header may take to arrive whole.
    pub proxy_protocol_timeout: Duration,
}

/// Open connections per client address (IPv6 per /64: one host usually holds a whole /64).
#[derive(Debug, Default)]
struct PerIp {
    shards: [Mutex<HashMap<IpAddr, u32>>; 16],
}

impl PerIp {
    fn key(ip: IpAddr) -> IpAddr {
        match ip.to_canonical() {
            IpAddr::V6(v6) => {
                let mut o = v6.octets();
                o[8..].fill(0);
                IpAddr::V6(o.into())
            }
            v4 => v4,
        }
    }

    fn shard(&self, key: &IpAddr) -> &Mutex<HashMap<IpAddr, u32>> {
        let h = match key {
            IpAddr::V4(a) => u32::from(*a) as usize,
            IpAddr::V6(a) => a.segments()[3] as usize ^ a.segments()[2] as usize,
        };
        &self.shards[h % 16]
    }

    fn acquire(&self, ip: IpAddr, cap: u32) -> bool {
        let key = Self::key(ip);
        let mut m = self.shard(&key).lock().unwrap_or_else(|e| e.into_inner());
        let n = m.entry(key).or_insert(0);
        if *n >= cap {
            return false;
        }
        *n += 1;
        true
    }

    fn release(&self, ip: IpAddr) {
        let key = Self::key(ip);
        let mut m = self.shard(&key).lock().unwrap_or_else(|e| e.into_inner());
        if let Some(n) = m.get_mut(&key) {
            *n -= 1;
            if *n == 0 {
                m.remove(&key);
            }
        }
    }
}

/// Releases a connection slot when the connection ends.
struct Slot<'a> {
    per_ip: &'a PerIp,
    ip: IpAddr,
}

impl Drop for Slot<'_> {
    fn drop(&mut self) {
        self.per_ip.release(self.ip);
    }
}

/// pingora's HTTP app, with the edge limits in front.
pub struct Edge<A> {
    inner: Arc<A>,
    limits: EdgeLimits,
    /// `client_ip.trusted_proxies`: exempt from the per-address cap (they carry many clients
    /// each), and the only peers whose PROXY headers are read.
    trusted: CidrSet,
    listeners: Listeners,
    per_ip: PerIp,
    metrics: Arc<Metrics>,
    /// What HTTP/1 connections answer with themselves (shared by all of them).
    bounds: Arc<answer::Bounds>,
}

/// A connection ready for HTTP: its stream, its per-address slot, and the listener's
/// `Strict-Transport-Security` value for the edge's own answers.
type Ready<'a> = (Stream, Option<Slot<'a>>, Option<http::HeaderValue>);

/// How long pingora gets to let the edge answer 408 and close, once a head is overdue (the
/// answer's own lingering close takes at most a second).
const OVERDUE_GRACE: Duration = Duration::from_secs(3);

/// How a connection's HTTP handling ended.
enum End {
    Served(Option<Stream>),
    Revoked,
    /// The edge answered a head itself (`answer`); the connection ends.
    Answered,
    Overdue,
}

impl<A> Edge<A> {
    pub fn new(
        inner: A,
        limits: EdgeLimits,
        trusted: CidrSet,
        listeners: Listeners,
        metrics: Arc<Metrics>,
    ) -> Self {
        let bounds = Arc::new(answer::Bounds {
            max_header_bytes: limits.max_header_bytes,
            max_headers: limits.max_headers,
            metrics: metrics.clone(),
        });
        Edge {
            inner: Arc::new(inner),
            limits,
            trusted,
            listeners,
            per_ip: PerIp::default(),
            metrics,
            bounds,
        }
    }

    /// A slot for one more connection from `ip` (none needed for trusted proxies or without a
    /// cap), or a refusal when `ip` is at its cap.
    fn admit(&self, ip: Option<IpAddr>) -> Result<Option<Slot<'_>>, Refused> {
        let cap = self.limits.max_connections_per_ip;
        match ip {
            Some(ip) if cap > 0 && !self.trusted.contains(ip) => {
                // SECURITY: one address cannot hold every connection (connection floods,
                // slowloris, handshake floods from one host); others keep being served.
                if !self.per_ip.acquire(ip, cap) {
                    return Err(Refused::PerIpCap);
                }
                Ok(Some(Slot {
                    per_ip: &self.per_ip,
                    ip,
                }))
            }
            _ => Ok(None),
        }
    }

    /// Everything before HTTP: the PROXY header, the per-address slot, the TLS handshake.
    /// Returns the stream HTTP is spoken on, the slot it holds and the listener's HSTS header.
    async fn before_http(&self, stream: Stream) -> Result<Ready<'_>, Refused> {
        let local = local_addr(&stream);
        let Some(kind) = local.and_then(|a| self.listeners.lookup(a)) else {
            // Every listener is registered with its bound address; this is a bug, not a client.
            tracing::warn!(?local, "a connection on an unknown listener was closed");
            return Err(Refused::Unexpected);
        };
        let mut client = peer_ip(&stream);
        if !kind.proxy_protocol && kind.tls.is_none() {
            return Ok((stream, self.admit(client)?, None));
        }
        let mut l4 = accept::into_l4(stream)?;
        if kind.proxy_protocol {
            // SECURITY: only a trusted proxy may say who the client is; anyone else reaching
            // a PROXY listener is closed at once, before a byte is read.
            if !client.is_some_and(|ip| self.trusted.contains(ip)) {
                return Err(Refused::ProxyUntrusted);
            }
            let limit = self.limits.proxy_protocol_timeout;
            if let Some(source) = accept::read_proxy_header(&mut l4, limit).await? {
                client = Some(source.ip());
            }
        }
        let slot = self.admit(client)?;
        let stream = match &kind.tls {
            // The handshake gets the head deadline: the first request is due within it anyway.
            Some(tls) => accept::tls_handshake(tls, l4, self.limits.head_timeout).await?,
            None => Box::new(l4),
        };
        Ok((stream, slot, kind.hsts.clone()))
    }
}

fn peer_ip(stream: &Stream) -> Option<IpAddr> {
    let digest = stream.get_socket_digest()?;
    match digest.peer_addr()? {
        PeerAddr::Inet(a) => Some(a.ip()),
        _ => None,
    }
}

#[async_trait]
impl<A: ServerApp + Send + Sync + 'static> ServerApp for Edge<A> {
    async fn process_new(
        self: &Arc<Self>,
        stream: Stream,
        shutdown: &ShutdownWatch,
    ) -> Option<Stream> {
        // Boxed: the TLS handshake's future is large (8 KB), and inline it would be part of
        // (and copied with) this connection's future for its whole life.
        let (stream, _slot, hsts) = match Box::pin(self.before_http(stream)).await {
            Ok(s) => s,
            Err(refused) => {
                self.metrics.connections_refused.inc(refused.reason(), "");
                return None;
            }
        };
        // HTTP/2 connections are guarded until their preface is in (a client that completes
        // TLS and then sends nothing); after it, the h2 idle timeout closes connections without
        // streams.
        let h2 = matches!(stream.selected_alpn_proto(), Some(ALPN::H2));
        let state = Arc::new(ConnState::new());
        let guarded: Stream = Box::new(Guarded::new(
            stream,
            state.clone(),
            h2,
            self.bounds.clone(),
            hsts,
        ));
        let served = self.inner.process_new(guarded, shutdown);
        tokio::pin!(served);
        let end = tokio::select! {
            // Revocation first: a revoked tunnel also makes its reads fail (`Guarded`), and the
            // connection must be counted as cut by the revocation, not as ended by that error.
            biased;
            // SECURITY: a WebSocket tunnel whose session was revoked is cut at once, both
            // ways (dropping the connection's future closes the client and upstream sockets).
            () = state.revoked() => End::Revoked,
            r = &mut served => End::Served(r),
            () = state.answered() => End::Answered,
            // SECURITY: a request head must arrive whole within the deadline (slowloris).
            () = state.overdue(self.limits.head_timeout) => End::Overdue,
        };
        match end {
            End::Served(r) => r,
            End::Answered => None,
            End::Revoked => {
                self.metrics.connections_refused.inc("session_revoked", "");
                None
            }
            End::Overdue => {
                self.metrics.connections_refused.inc("head_timeout", "");
                if h2 {
                    return None;
                }
                // The HTTP/1 reader answers 408 and ends; bounded, in case pingora is not
                // reading (then the connection is dropped as before).
                state.expire();
                let answered = async {
                    tokio::select! {
                        _ = &mut served => {}
                        () = state.answered() => {}
                    }
                };
                let _ = tokio::time::timeout(OVERDUE_GRACE, answered).await;
                None
            }
        }
    }

    async fn cleanup(&self) {
        self.inner.cleanup().await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ipv6_hosts_are_counted_per_64() {
        let p = PerIp::default();
        assert!(p.acquire("2001:db8::1".parse().unwrap(), 2));
        assert!(p.acquire("2001:db8::ffff".parse().unwrap(), 2));
        assert!(!p.acquire("2001:db8::2:3".parse().unwrap(), 2));
        assert!(p.acquire("2001:db8:0:1::1".parse().unwrap(), 2));
        p.release("2001:db8::1".parse().unwrap());
        assert!(p.acquire("2001:db8::7".parse().unwrap(), 2));
        assert!(p.acquire("192.0.2.1".parse().unwrap(), 1));
        assert!(!p.acquire("::ffff:192.0.2.1".parse().unwrap(), 1));
        p.release("192.0.2.1".parse().unwrap());
        let v4: IpAddr = "192.0.2.1".parse().unwrap();
        assert!(
            !p.shard(&v4).lock().unwrap().contains_key(&v4),
            "a released address is forgotten"
        );
    }
}
