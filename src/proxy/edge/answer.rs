//! fluxgate's own answers to HTTP/1 request heads that never reach the request hooks, in the
//! contract's JSON like every other denial.
//!
//! Pingora 0.9 answers such heads itself, with a bare body and none of the contract's headers:
//! a `400` for anything its parser refuses (bytes that are not HTTP, a head over 1 MiB, more
//! than 256 fields) and a `405` for `CONNECT`; and it has no answer at all for a head that
//! stalls (the edge closes those). So the edge's stream wrapper ([`super::Guarded`]) does three
//! things while a head is arriving, before pingora has parsed it:
//!
//! - [`HeadScan`](super::scan::HeadScan) watches the head's bytes as pingora reads them and, past a bound, answers
//!   itself: 414 for a request line over [`MAX_REQUEST_LINE`](super::scan::MAX_REQUEST_LINE), 431 for a header section over
//!   `server.max_header_bytes` or with more than `server.max_headers` fields. Pingora never
//!   sees those bytes, so it never buffers more than the bounds (not its own 1 MiB).
//! - [`replacement`] recognises pingora's own bare `400` (written while the head was still
//!   unparsed) and writes the contract's answer instead; likewise its `405` for `CONNECT`,
//!   should that refusal ever be pingora's again (fluxgate lets `CONNECT` through to the
//!   pipeline, which refuses it in JSON on HTTP/2 too: `app/listeners.rs`).
//! - A head past `server.head_timeout` gets 408 (the edge's watchdog marks the connection).
//!
//! Each answer is written in full, the write side shut, and what the client still sends read
//! and dropped for a moment ([`Answer`], a lingering close as in `forward_auth/serve.rs`), so
//! the kernel does not reset the connection over unread bytes and take the answer with it.
//!
//! Why bytes and not a second parser in front of pingora: the scan only counts bytes and line
//! breaks of heads pingora reads anyway; re-parsing every head (and re-framing bodies to find
//! the next one) would double pingora's work on every request.

use crate::denial::{BadRequest, Denial};
use crate::metrics::Metrics;
use bytes::{Buf, Bytes};
use pingora::protocols::Stream;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// How long a closing connection keeps draining what the client still sends.
const LINGER: Duration = Duration::from_secs(1);

/// How much a closing connection drains at most.
const LINGER_BYTES: usize = 64 * 1024;

/// What the edge answers with, and where it counts its answers.
pub struct Bounds {
    pub max_header_bytes: usize,
    pub max_headers: usize,
    pub metrics: Arc<Metrics>,
}

impl std::fmt::Debug for Bounds {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Bounds")
            .field("max_header_bytes", &self.max_header_bytes)
            .field("max_headers", &self.max_headers)
            .finish_non_exhaustive()
    }
}

/// The contract's answer in place of pingora's own, for a response pingora starts writing
/// before the head reached the hooks: its bare `400` (unparseable head) or `405` (`CONNECT`).
pub fn replacement(written: &[u8]) -> Option<Denial> {
    let status = written.strip_prefix(b"HTTP/1.")?.get(2..5)?;
    match status {
        b"400" => Some(Denial::BadRequest(BadRequest::Unparseable)),
        b"405" => Some(Denial::MethodNotAllowed),
        _ => None,
    }
}

/// The HTTP/1.1 bytes of `denial`'s answer, closing the connection.
fn render(denial: &Denial, hsts: Option<&http::HeaderValue>) -> Bytes {
    let r = denial.to_response();
    let mut out = Vec::with_capacity(256 + r.body.len());
    let reason = r.status.canonical_reason().unwrap_or("");
    out.extend_from_slice(format!("HTTP/1.1 {} {reason}\r\n", r.status.as_u16()).as_bytes());
    for (k, v) in &r.headers {
        out.extend_from_slice(k.as_str().as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(v.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    if let Some(v) = hsts {
        out.extend_from_slice(b"strict-transport-security: ");
        out.extend_from_slice(v.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    let id = crate::identity::request_id(&http::HeaderMap::new());
    out.extend_from_slice(b"x-request-id: ");
    out.extend_from_slice(id.as_bytes());
    let date = httpdate::fmt_http_date(std::time::UNIX_EPOCH + crate::clock::unix_now());
    out.extend_from_slice(format!("\r\ndate: {date}\r\n").as_bytes());
    out.extend_from_slice(format!("content-length: {}\r\n", r.body.len()).as_bytes());
    out.extend_from_slice(b"connection: close\r\n\r\n");
    out.extend_from_slice(&r.body);
    Bytes::from(out)
}

#[derive(Debug)]
enum Stage {
    Write,
    Shutdown,
    Linger,
    Done,
}

/// One answer being written, then the connection's lingering close.
#[derive(Debug)]
pub struct Answer {
    out: Bytes,
    stage: Stage,
    linger: Pin<Box<tokio::time::Sleep>>,
    drained: usize,
}

impl Answer {
    /// Starts answering with `denial`, and counts it.
    pub fn new(denial: &Denial, b: &Bounds, hsts: Option<&http::HeaderValue>) -> Answer {
        let status = denial.status().as_u16();
        b.metrics.decisions.inc("denied", denial.reason());
        b.metrics
            .responses
            .inc(crate::proxy::respond::status_class(status), "");
        tracing::debug!(status, reason = denial.reason(), "the edge answered a head");
        Answer {
            out: render(denial, hsts),
            stage: Stage::Write,
            linger: Box::pin(tokio::time::sleep(LINGER)),
            drained: 0,
        }
    }

    /// Drives the answer on `io`; ready once the connection may be dropped.
    pub fn poll(&mut self, io: &mut Stream, cx: &mut Context<'_>) -> Poll<()> {
        loop {
            match self.stage {
                Stage::Write => {
                    while !self.out.is_empty() {
                        match ready!(Pin::new(&mut *io).poll_write(cx, &self.out)) {
                            Ok(n) if n > 0 => self.out.advance(n),
                            _ => {
                                self.stage = Stage::Done;
                                return Poll::Ready(());
                            }
                        }
                    }
                    let _ = ready!(Pin::new(&mut *io).poll_flush(cx));
                    self.stage = Stage::Shutdown;
                }
                Stage::Shutdown => {
                    let _ = ready!(Pin::new(&mut *io).poll_shutdown(cx));
                    self.linger
                        .as_mut()
                        .reset(tokio::time::Instant::now() + LINGER);
                    self.stage = Stage::Linger;
                }
                Stage::Linger => {
                    if self.linger.as_mut().poll(cx).is_ready() {
                        self.stage = Stage::Done;
                        continue;
                    }
                    let mut sink = [0u8; 4096];
                    let mut rb = ReadBuf::new(&mut sink);
                    match ready!(Pin::new(&mut *io).poll_read(cx, &mut rb)) {
                        Ok(()) if !rb.filled().is_empty() && self.drained < LINGER_BYTES => {
                            self.drained += rb.filled().len();
                        }
                        _ => self.stage = Stage::Done,
                    }
                }
                Stage::Done => return Poll::Ready(()),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pingoras_bare_400_and_405_are_replaced_and_nothing_else() {
        let r = |s: &[u8]| replacement(s).map(|d| d.status().as_u16());
        assert_eq!(r(b"HTTP/1.1 400 Bad Request\r\n"), Some(400));
        assert_eq!(r(b"HTTP/1.1 405 Method Not Allowed\r\n"), Some(405));
        assert_eq!(r(b"HTTP/1.1 200 OK\r\n"), None);
        assert_eq!(r(b"HTTP/1.1 4"), None);
        assert_eq!(r(b"\x00\x00\x12\x04"), None);
    }

    #[test]
    fn an_answer_is_the_contracts_json_with_nosniff_and_an_id() {
        let out = render(&Denial::Limit(crate::denial::Limit::HeadersTooLarge), None);
        let text = std::str::from_utf8(&out).unwrap();
        assert!(text.starts_with("HTTP/1.1 431 Request Header Fields Too Large\r\n"));
        assert!(text.contains("\r\nx-content-type-options: nosniff\r\n"));
        assert!(text.contains("\r\nx-request-id: "));
        assert!(text.contains("\r\nconnection: close\r\n"));
        let (_, body) = text.split_once("\r\n\r\n").unwrap();
        let v: serde_json::Value = serde_json::from_str(body).unwrap();
        assert_eq!(v["code"], "REQUEST_HEADER_FIELDS_TOO_LARGE");
    }
}
