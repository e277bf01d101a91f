//! The connection edge, around pingora's HTTP app: connections per client address, the
//! deadline for a whole request head, and what the request hooks need from the connection.
//!
//! Pingora's HTTP/1 reader has per-read timeouts only, so a client trickling one byte every few
//! seconds (slowloris) would hold a connection forever. Each plain or TLS HTTP/1 connection is
//! wrapped in [`Guarded`], which notes when the first byte of a request head arrives; the
//! request hooks mark the head complete; a watchdog per connection closes it when a head takes
//! longer than `server.head_timeout`. HTTP/2 connections get the same deadline for their
//! connection preface, then h2's own limits and the HTTP/2 idle timeout.

use crate::metrics::Metrics;
use crate::net::cidr::CidrSet;
use async_trait::async_trait;
use pingora::apps::ServerApp;
use pingora::protocols::l4::socket::SocketAddr as PeerAddr;
use pingora::protocols::{
    ALPN, GetProxyDigest, GetSocketDigest, GetTimingDigest, Peek, Shutdown, Ssl, Stream, UniqueID,
    UniqueIDType,
};
use pingora::server::ShutdownWatch;
use std::collections::HashMap;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
// tokio's clock, so tests can pause it.
use tokio::time::Instant;

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
}

const IDLE: u8 = 0;
const HEAD: u8 = 1;
const BUSY: u8 = 2;

/// Where a connection is in its request cycle.
#[derive(Debug)]
pub struct ConnState {
    phase: AtomicU8,
    /// When the current head started, in ms since `epoch`.
    since_ms: AtomicU64,
    epoch: Instant,
}

impl ConnState {
    fn new() -> ConnState {
        // The first head's clock starts at accept: a connection that never sends is a
        // slowloris too.
        ConnState {
            phase: AtomicU8::new(HEAD),
            since_ms: AtomicU64::new(0),
            epoch: Instant::now(),
        }
    }

    fn now_ms(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64
    }

    /// The head was parsed: the request is being handled.
    pub fn head_complete(&self) {
        self.phase.store(BUSY, Ordering::Release);
    }

    /// The response is done; the connection waits for the next request.
    pub fn request_done(&self) {
        self.phase.store(IDLE, Ordering::Release);
    }

    fn bytes_arrived(&self) {
        if self.phase.load(Ordering::Relaxed) == IDLE {
            self.since_ms.store(self.now_ms(), Ordering::Release);
            let _ = self
                .phase
                .compare_exchange(IDLE, HEAD, Ordering::AcqRel, Ordering::Relaxed);
        }
    }

    /// Resolves when a head has been in progress for longer than `limit`.
    async fn overdue(&self, limit: Duration) {
        let limit_ms = limit.as_millis() as u64;
        loop {
            if self.phase.load(Ordering::Acquire) == HEAD {
                let started = self.since_ms.load(Ordering::Acquire);
                let now = self.now_ms();
                if now >= started + limit_ms {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(started + limit_ms - now)).await;
            } else {
                // A head can only start after this sleep began, so it is looked at again no
                // later than its own deadline.
                tokio::time::sleep(limit).await;
            }
        }
    }
}

/// The HTTP/2 client connection preface (`PRI * HTTP/2.0…`), in bytes.
const H2_PREFACE: usize = 24;

/// A client connection that reports request-head progress to its [`ConnState`].
#[derive(Debug)]
pub struct Guarded {
    inner: Stream,
    state: Arc<ConnState>,
    /// HTTP/2: preface bytes still to come. Once the preface is in, h2's own limits and the
    /// idle timeout take over, and the head deadline no longer applies.
    h2_preface_left: usize,
}

impl Guarded {
    /// The state of the connection a request arrived on, when it is a guarded HTTP/1 one.
    pub fn state_of(stream: Option<&Stream>) -> Option<&Arc<ConnState>> {
        stream
            .and_then(|s| s.as_any().downcast_ref::<Guarded>())
            .map(|g| &g.state)
    }
}

impl AsyncRead for Guarded {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let r = Pin::new(&mut self.inner).poll_read(cx, buf);
        let n = buf.filled().len() - before;
        if matches!(r, Poll::Ready(Ok(()))) && n > 0 {
            if self.h2_preface_left > 0 {
                self.h2_preface_left = self.h2_preface_left.saturating_sub(n);
                if self.h2_preface_left == 0 {
                    self.state.head_complete();
                }
            } else {
                self.state.bytes_arrived();
            }
        }
        r
    }
}

impl AsyncWrite for Guarded {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }
    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

#[async_trait]
impl Shutdown for Guarded {
    async fn shutdown(&mut self) {
        self.inner.shutdown().await
    }
}

impl UniqueID for Guarded {
    fn id(&self) -> UniqueIDType {
        self.inner.id()
    }
}

impl Ssl for Guarded {
    fn get_ssl(&self) -> Option<&pingora::protocols::tls::TlsRef> {
        self.inner.get_ssl()
    }
    fn get_ssl_digest(&self) -> Option<Arc<pingora::protocols::tls::SslDigest>> {
        self.inner.get_ssl_digest()
    }
    fn selected_alpn_proto(&self) -> Option<ALPN> {
        self.inner.selected_alpn_proto()
    }
}

impl GetTimingDigest for Guarded {
    fn get_timing_digest(&self) -> Vec<Option<pingora::protocols::TimingDigest>> {
        self.inner.get_timing_digest()
    }
    fn get_read_pending_time(&self) -> Duration {
        self.inner.get_read_pending_time()
    }
    fn get_write_pending_time(&self) -> Duration {
        self.inner.get_write_pending_time()
    }
}

impl GetProxyDigest for Guarded {
    fn get_proxy_digest(&self) -> Option<Arc<pingora::protocols::raw_connect::ProxyDigest>> {
        self.inner.get_proxy_digest()
    }
    fn set_proxy_digest(&mut self, d: pingora::protocols::raw_connect::ProxyDigest) {
        self.inner.set_proxy_digest(d)
    }
}

impl GetSocketDigest for Guarded {
    fn get_socket_digest(&self) -> Option<Arc<pingora::protocols::SocketDigest>> {
        self.inner.get_socket_digest()
    }
    fn set_socket_digest(&mut self, d: pingora::protocols::SocketDigest) {
        self.inner.set_socket_digest(d)
    }
}

#[async_trait]
impl Peek for Guarded {
    async fn try_peek(&mut self, buf: &mut [u8]) -> std::io::Result<bool> {
        self.inner.try_peek(buf).await
    }
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
    /// Peers exempt from the per-address cap (trusted proxies carry many clients each).
    exempt: CidrSet,
    per_ip: PerIp,
    metrics: Arc<Metrics>,
}

impl<A> Edge<A> {
    pub fn new(inner: A, limits: EdgeLimits, exempt: CidrSet, metrics: Arc<Metrics>) -> Self {
        Edge {
            inner: Arc::new(inner),
            limits,
            exempt,
            per_ip: PerIp::default(),
            metrics,
        }
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
        let cap = self.limits.max_connections_per_ip;
        let _slot = match peer_ip(&stream) {
            Some(ip) if cap > 0 && !self.exempt.contains(ip) => {
                // SECURITY: one address cannot hold every connection (connection floods,
                // slowloris from one host); others keep being served.
                if !self.per_ip.acquire(ip, cap) {
                    self.metrics.connections_refused.inc("per_ip_cap", "");
                    return None;
                }
                Some(Slot {
                    per_ip: &self.per_ip,
                    ip,
                })
            }
            _ => None,
        };
        // HTTP/2 connections are guarded until their preface is in (a client that completes
        // TLS and then sends nothing); after it, the h2 idle timeout closes connections without
        // streams.
        let h2 = matches!(stream.selected_alpn_proto(), Some(ALPN::H2));
        let state = Arc::new(ConnState::new());
        let guarded: Stream = Box::new(Guarded {
            inner: stream,
            state: state.clone(),
            h2_preface_left: if h2 { H2_PREFACE } else { 0 },
        });
        tokio::select! {
            r = self.inner.process_new(guarded, shutdown) => r,
            // SECURITY: a request head must arrive whole within the deadline (slowloris).
            () = state.overdue(self.limits.head_timeout) => {
                self.metrics.connections_refused.inc("head_timeout", "");
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

    #[tokio::test(start_paused = true)]
    async fn a_head_in_progress_past_its_deadline_is_overdue_and_idle_time_is_not() {
        let s = ConnState::new();
        s.head_complete();
        // Busy and idle phases never fire.
        let quiet =
            tokio::time::timeout(Duration::from_secs(30), s.overdue(Duration::from_secs(5)));
        s.request_done();
        assert!(quiet.await.is_err());
        s.bytes_arrived();
        let t0 = tokio::time::Instant::now();
        tokio::time::timeout(Duration::from_secs(30), s.overdue(Duration::from_secs(5)))
            .await
            .expect("an unfinished head is overdue");
        assert!(t0.elapsed() <= Duration::from_secs(6));
    }
}
