//! One client connection's progress through its request heads ([`ConnState`]), and the
//! stream wrapper that reports it ([`Guarded`]) while passing everything else through to
//! pingora's stream. On HTTP/1 the wrapper also answers heads that never reach the request
//! hooks (`answer`).

use super::answer::{Answer, Bounds, replacement};
use super::scan::HeadScan;
use crate::denial::{Denial, Limit};
use async_trait::async_trait;
use futures_util::task::AtomicWaker;
use pingora::protocols::{
    ALPN, GetProxyDigest, GetSocketDigest, GetTimingDigest, Peek, Shutdown, Ssl, Stream, UniqueID,
    UniqueIDType,
};
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU64, Ordering};
use std::task::{Context, Poll, ready};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
// tokio's clock, so tests can pause it.
use tokio::time::Instant;

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
    /// The session of a tunnel on this connection was revoked: nothing more passes, and the
    /// connection closes (see [`ConnState::revoked`]).
    revoked: AtomicBool,
    /// The head went past its deadline: the next read answers 408 (HTTP/1).
    expired: AtomicBool,
    /// The HTTP/1 reader, woken when the head expires.
    reader: AtomicWaker,
    /// The edge's own answer was written and the connection drained: it ends here.
    answered: AtomicBool,
    /// The edge's watch on the connection (`Edge::process_new`), woken when `revoked` or
    /// `answered` is set. One waker and two flags rather than a `Notify` each: the watch is
    /// polled every time the connection's task wakes, and a `Notify` costs a lock per poll.
    edge: AtomicWaker,
}

impl ConnState {
    pub(super) fn new() -> ConnState {
        // The first head's clock starts at accept: a connection that never sends is a
        // slowloris too.
        ConnState {
            phase: AtomicU8::new(HEAD),
            since_ms: AtomicU64::new(0),
            epoch: Instant::now(),
            revoked: AtomicBool::new(false),
            expired: AtomicBool::new(false),
            reader: AtomicWaker::new(),
            answered: AtomicBool::new(false),
            edge: AtomicWaker::new(),
        }
    }

    /// Ready once `flag` is set; else the edge's task is woken when it is. Only the edge's
    /// task waits on these (one waker).
    fn watch(&self, cx: &mut Context<'_>, flag: &AtomicBool) -> Poll<()> {
        if flag.load(Ordering::Acquire) {
            return Poll::Ready(());
        }
        self.edge.register(cx.waker());
        // Set between the first look and the registration: seen here, not lost.
        if flag.load(Ordering::Acquire) {
            Poll::Ready(())
        } else {
            Poll::Pending
        }
    }

    /// Resolves once the edge has answered a head itself and the connection can be dropped.
    pub(super) async fn answered(&self) {
        std::future::poll_fn(|cx| self.watch(cx, &self.answered)).await
    }

    /// The head is overdue: the HTTP/1 reader answers 408 and ends the connection.
    pub(super) fn expire(&self) {
        self.expired.store(true, Ordering::Release);
        self.reader.wake();
    }

    fn in_head(&self) -> bool {
        self.phase.load(Ordering::Acquire) == HEAD
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

    /// True when these bytes start a new head.
    fn bytes_arrived(&self) -> bool {
        if self.phase.load(Ordering::Relaxed) == IDLE {
            self.since_ms.store(self.now_ms(), Ordering::Release);
            return self
                .phase
                .compare_exchange(IDLE, HEAD, Ordering::AcqRel, Ordering::Relaxed)
                .is_ok();
        }
        false
    }

    fn is_revoked(&self) -> bool {
        self.revoked.load(Ordering::Acquire)
    }

    /// Resolves once a tunnel's session on this connection has been revoked.
    pub(super) async fn revoked(&self) {
        std::future::poll_fn(|cx| self.watch(cx, &self.revoked)).await
    }

    /// Resolves when a head has been in progress for longer than `limit`.
    pub(super) async fn overdue(&self, limit: Duration) {
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

impl crate::session::tunnels::Closer for ConnState {
    fn close(&self) {
        self.revoked.store(true, Ordering::Release);
        self.edge.wake();
    }
}

/// What a read or write gets once the connection's tunnel was revoked.
fn revoked_error() -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::ConnectionAborted, "session revoked")
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
    /// HTTP/1: the current head's scan, and what the edge answers with (None on HTTP/2).
    h1: Option<(HeadScan, Arc<Bounds>)>,
    /// The edge's own answer, once it is answering: then nothing else is read or written.
    answer: Option<Answer>,
    /// The listener's `Strict-Transport-Security`, for that answer (TLS listeners only).
    hsts: Option<http::HeaderValue>,
}

impl Guarded {
    /// Wraps a connection that starts with an HTTP/2 preface when `h2` (negotiated by ALPN).
    pub(super) fn new(
        inner: Stream,
        state: Arc<ConnState>,
        h2: bool,
        bounds: Arc<Bounds>,
        hsts: Option<http::HeaderValue>,
    ) -> Guarded {
        Guarded {
            inner,
            state,
            h2_preface_left: if h2 { H2_PREFACE } else { 0 },
            h1: (!h2).then(|| (HeadScan::default(), bounds)),
            answer: None,
            hsts,
        }
    }

    /// Starts the edge's own answer (HTTP/1 only).
    fn answer_with(&mut self, denial: &Denial) {
        if let Some((_, bounds)) = &self.h1 {
            self.answer = Some(Answer::new(denial, bounds, self.hsts.as_ref()));
        }
    }

    /// Drives the edge's answer, if it is answering; ready once it is done.
    fn poll_answer(&mut self, cx: &mut Context<'_>) -> Poll<bool> {
        match &mut self.answer {
            Some(a) => a.poll(&mut self.inner, cx).map(|()| true),
            None => Poll::Ready(false),
        }
    }

    /// Reads the next bytes on HTTP/1: scanned while a head arrives, and answered by the
    /// edge when the head goes over a bound or past its deadline.
    fn poll_read_h1(
        &mut self,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        self.state.reader.register(cx.waker());
        if self.answer.is_none() && self.state.expired.load(Ordering::Acquire) {
            // SECURITY: a head past its deadline is answered and the connection closed
            // (slowloris), with the contract's 408 rather than a silent close.
            self.answer_with(&Denial::Limit(Limit::HeadTimeout));
        }
        if self.answer.is_some() {
            return self.answered(cx);
        }
        let before = buf.filled().len();
        ready!(Pin::new(&mut self.inner).poll_read(cx, buf))?;
        let Some((scan, bounds)) = &mut self.h1 else {
            return Poll::Ready(Ok(()));
        };
        if buf.filled().len() == before {
            return Poll::Ready(Ok(()));
        }
        if self.state.bytes_arrived() {
            *scan = HeadScan::default();
        }
        if !self.state.in_head() {
            return Poll::Ready(Ok(()));
        }
        let Some(limit) = scan.feed(&buf.filled()[before..], bounds) else {
            return Poll::Ready(Ok(()));
        };
        // Pingora never sees the head that went over: the edge answers instead.
        buf.set_filled(before);
        self.answer_with(&Denial::Limit(limit));
        self.answered(cx)
    }

    /// Drives the edge's answer; once it is done, the edge drops the connection (`answered`)
    /// while pingora's read stays pending, so pingora does not log a failed read as an error.
    fn answered(&mut self, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        ready!(self.poll_answer(cx));
        // The flag stays set until the edge looks.
        self.state.answered.store(true, Ordering::Release);
        self.state.edge.wake();
        Poll::Pending
    }

    /// Whether pingora is starting its own answer to a head that never reached the hooks,
    /// which the edge replaces (HTTP/1 only).
    fn replaces(&mut self, written: &[u8]) -> bool {
        if self.answer.is_some() {
            return true;
        }
        if self.h1.is_none() || !self.state.in_head() {
            return false;
        }
        match replacement(written) {
            Some(d) => {
                self.answer_with(&d);
                true
            }
            None => false,
        }
    }

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
        // SECURITY: once its session is revoked, no further byte of a tunnel is read, so no
        // frame sent after the revocation can reach the upstream.
        if self.state.is_revoked() {
            return Poll::Ready(Err(revoked_error()));
        }
        if self.h1.is_some() {
            return self.poll_read_h1(cx, buf);
        }
        let before = buf.filled().len();
        let r = Pin::new(&mut self.inner).poll_read(cx, buf);
        let n = buf.filled().len() - before;
        if matches!(r, Poll::Ready(Ok(()))) && n > 0 && self.h2_preface_left > 0 {
            self.h2_preface_left = self.h2_preface_left.saturating_sub(n);
            if self.h2_preface_left == 0 {
                self.state.head_complete();
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
        if self.state.is_revoked() {
            return Poll::Ready(Err(revoked_error()));
        }
        if self.replaces(buf) {
            // Pingora's own bytes are dropped; the edge's answer goes out instead.
            ready!(self.poll_answer(cx));
            return Poll::Ready(Ok(buf.len()));
        }
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        if ready!(self.poll_answer(cx)) {
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut self.inner).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        if ready!(self.poll_answer(cx)) {
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        if self.state.is_revoked() {
            return Poll::Ready(Err(revoked_error()));
        }
        let first = bufs
            .iter()
            .find(|b| !b.is_empty())
            .map_or(&[][..], |b| &b[..]);
        if self.replaces(first) {
            ready!(self.poll_answer(cx));
            return Poll::Ready(Ok(bufs.iter().map(|b| b.len()).sum()));
        }
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }
    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

#[async_trait]
impl Shutdown for Guarded {
    async fn shutdown(&mut self) {
        if std::future::poll_fn(|cx| self.poll_answer(cx)).await {
            return;
        }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_head_in_progress_past_its_deadline_is_overdue_and_idle_time_is_not() {
        let s = ConnState::new();
        s.head_complete();
        // Busy and idle phases never fire.
        let quiet =
            tokio::time::timeout(Duration::from_secs(30), s.overdue(Duration::from_secs(5)));
        s.request_done();
        assert!(quiet.await.is_err());
        assert!(s.bytes_arrived());
        let t0 = tokio::time::Instant::now();
        tokio::time::timeout(Duration::from_secs(30), s.overdue(Duration::from_secs(5)))
            .await
            .expect("an unfinished head is overdue");
        assert!(t0.elapsed() <= Duration::from_secs(6));
    }
}
