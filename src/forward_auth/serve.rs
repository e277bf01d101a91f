//! HTTP/1.1 for the decision endpoint: a keep-alive loop that parses request heads with
//! `httparse` and writes each answer in one buffer.
//!
//! Why not hyper (which served this endpoint first): a decision is a bodiless request from an
//! edge proxy on a pooled connection, answered with a few headers, and hyper's server machinery
//! (dispatcher, service and body types, response encoder) cost more instructions per decision
//! than the decision itself (callgrind figures in docs/performance.md). What this loop must
//! still get right, and does: keep-alive and pipelined heads, `Connection: close` and HTTP/1.0,
//! a deadline for a head from its first byte and one for an idle connection, a cap on the
//! head's size, and requests with a body (the body is never read: the answer closes the
//! connection, so no unread byte is taken for the next head).

use super::original::Fields;
use super::{Answer, ForwardAuth};
use bytes::BytesMut;
use http::{HeaderName, HeaderValue, Method, StatusCode};
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::Instant;

/// From the first byte of a head to its end.
const HEAD_TIMEOUT: Duration = Duration::from_secs(10);
/// Between requests on a kept-alive connection (nginx's upstream keep-alive default is 60 s).
const IDLE_TIMEOUT: Duration = Duration::from_secs(75);
/// The largest head: the original URI (`max_uri_bytes`) plus the client's headers.
pub(super) const MAX_HEAD: usize = 64 * 1024;
const MAX_HEADERS: usize = 128;

/// A request head, owned, with what the connection needs to know about it.
pub(crate) struct Head {
    pub method: Method,
    pub target: String,
    /// The header fields in wire order (no map: the reader sorts them in one pass).
    pub fields: Fields,
    /// The answer must close the connection: the client asked to, spoke HTTP/1.0, or sent a
    /// body this endpoint does not read.
    pub close: bool,
}

/// What the bytes so far hold.
pub(crate) enum Parsed {
    /// A whole head, taken off the front of the buffer.
    Head(Head),
    Partial,
    /// Not HTTP/1.x, or headers that are not valid: answered 400 and closed.
    Bad,
    TooLarge,
}

/// Parses one head from the front of `buf` and, when it is whole, takes it off. The header
/// values are slices of the head's bytes (shared, not copied).
pub(crate) fn parse(buf: &mut BytesMut) -> Parsed {
    let mut raw = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut raw);
    let len = match req.parse(buf) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) if buf.len() >= MAX_HEAD => return Parsed::TooLarge,
        Ok(httparse::Status::Partial) => return Parsed::Partial,
        Err(httparse::Error::TooManyHeaders) => return Parsed::TooLarge,
        Err(_) => return Parsed::Bad,
    };
    if len > MAX_HEAD {
        return Parsed::TooLarge;
    }
    let (Some(m), Some(path), Some(version)) = (req.method, req.path, req.version) else {
        return Parsed::Bad;
    };
    let Ok(method) = Method::from_bytes(m.as_bytes()) else {
        return Parsed::Bad;
    };
    let target = path.to_owned();
    // Each value's place in the head, to slice it once the head is split off.
    let base = buf.as_ptr() as usize;
    let mut spans = [None::<(u32, u32)>; MAX_HEADERS];
    let mut fields = Vec::with_capacity(req.headers.len());
    let mut close = version == 0;
    for (h, span) in req.headers.iter().zip(spans.iter_mut()) {
        let Ok(name) = HeaderName::from_bytes(h.name.as_bytes()) else {
            return Parsed::Bad;
        };
        let v = h.value;
        if name == http::header::CONNECTION {
            if has_token(v, b"close") {
                close = true;
            } else if version == 0 && has_token(v, b"keep-alive") {
                close = false;
            }
        } else if name == http::header::TRANSFER_ENCODING
            || (name == http::header::CONTENT_LENGTH && v != b"0")
        {
            // The body is never read; closing after the answer keeps it from being taken
            // for the next request's head.
            close = true;
        }
        // httparse's values are slices of the head in `buf` (MAX_HEAD < u32::MAX); a value that
        // is not (no httparse makes one today) is copied instead, never sliced out of bounds.
        let at = (v.as_ptr() as usize).wrapping_sub(base);
        match at.checked_add(v.len()).filter(|end| *end <= len) {
            Some(end) => {
                *span = Some((at as u32, end as u32));
                fields.push((name, HeaderValue::from_static("")));
            }
            None => match HeaderValue::from_bytes(v) {
                Ok(value) => fields.push((name, value)),
                Err(_) => return Parsed::Bad,
            },
        }
    }
    let head = buf.split_to(len).freeze();
    for ((_, value), span) in fields.iter_mut().zip(spans) {
        let Some((from, to)) = span else { continue };
        // Validated as `from_bytes` validates, without the copy.
        match HeaderValue::from_maybe_shared(head.slice(from as usize..to as usize)) {
            Ok(v) => *value = v,
            Err(_) => return Parsed::Bad,
        }
    }
    Parsed::Head(Head {
        method,
        target,
        fields,
        close,
    })
}

fn has_token(v: &[u8], token: &[u8]) -> bool {
    v.split(|b| *b == b',')
        .any(|t| t.trim_ascii().eq_ignore_ascii_case(token))
}

/// Serves one connection from `peer` until it closes, errs or times out.
pub(super) async fn connection(mut stream: TcpStream, peer: IpAddr, state: Arc<ForwardAuth>) {
    let mut buf = BytesMut::with_capacity(4096);
    let mut out = Vec::with_capacity(1024);
    let mut date = Date::default();
    let mut timer = Timer::new();
    loop {
        let head = match read_head(&mut stream, &mut buf, &mut timer).await {
            Ok(Some(h)) => h,
            Ok(None) => return,
            Err(status) => {
                let answer = state.unreadable(status);
                encode(&answer, true, false, &mut date, &mut out);
                if stream.write_all(&out).await.is_ok() {
                    linger(&mut stream).await;
                }
                return;
            }
        };
        let answer = state
            .decide(&head.method, &head.target, head.fields, peer)
            .await;
        out.clear();
        encode(
            &answer,
            head.close,
            head.method == Method::HEAD,
            &mut date,
            &mut out,
        );
        if stream.write_all(&out).await.is_err() || head.close {
            return;
        }
        timer.answered();
    }
}

/// Closes after an error answer the way nginx's `lingering_close` does: stop writing, then
/// read and drop what the client is still sending for a moment, so the kernel does not reset
/// the connection over unread bytes and take the answer with it.
async fn linger(stream: &mut TcpStream) {
    let _ = stream.shutdown().await;
    let mut sink = [0u8; 4096];
    let until = tokio::time::Instant::now() + Duration::from_secs(1);
    let mut left = MAX_HEAD;
    while left > 0 {
        match tokio::time::timeout_at(until, stream.read(&mut sink)).await {
            Ok(Ok(n)) if n > 0 => left = left.saturating_sub(n),
            _ => return,
        }
    }
}

/// The connection's one timer for both deadlines. It is armed once and moved only when it
/// fires before the deadline that applies (then re-armed to it) or when a sooner deadline
/// applies (a head that started arriving): a busy kept-alive connection does not register and
/// cancel a timer in the runtime's wheel for every request.
pub(super) struct Timer {
    sleep: Pin<Box<tokio::time::Sleep>>,
    /// Idle time counts from here: the accept, then the end of each answer.
    idle_from: Instant,
}

impl Timer {
    pub(super) fn new() -> Timer {
        let now = Instant::now();
        Timer {
            sleep: Box::pin(tokio::time::sleep_until(now + IDLE_TIMEOUT)),
            idle_from: now,
        }
    }

    /// An answer went out: the idle clock starts again.
    fn answered(&mut self) {
        self.idle_from = Instant::now();
    }
}

/// The next head: `Ok(None)` when the connection closed or idled out between requests,
/// `Err(status)` when the bytes cannot be a head.
pub(super) async fn read_head<S: AsyncRead + Unpin>(
    stream: &mut S,
    buf: &mut BytesMut,
    timer: &mut Timer,
) -> Result<Option<Head>, StatusCode> {
    let mut head_due = None;
    loop {
        if !buf.is_empty() {
            match parse(buf) {
                Parsed::Head(head) => return Ok(Some(head)),
                Parsed::Partial => {}
                Parsed::Bad => return Err(StatusCode::BAD_REQUEST),
                Parsed::TooLarge => return Err(StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE),
            }
        }
        // SECURITY: a head must complete within HEAD_TIMEOUT of its first byte however
        // slowly it trickles in (slowloris); an idle connection is dropped after IDLE_TIMEOUT.
        let due = match (head_due, buf.is_empty()) {
            (Some(d), _) => d,
            (None, true) => timer.idle_from + IDLE_TIMEOUT,
            (None, false) => *head_due.insert(Instant::now() + HEAD_TIMEOUT),
        };
        if timer.sleep.deadline() > due {
            timer.sleep.as_mut().reset(due);
        }
        tokio::select! {
            biased;
            read = stream.read_buf(buf) => match read {
                Ok(0) | Err(_) => return Ok(None),
                Ok(_) => {}
            },
            () = &mut timer.sleep => {
                if Instant::now() < due {
                    // Armed for an earlier deadline that no longer applies.
                    timer.sleep.as_mut().reset(due);
                    continue;
                }
                return if buf.is_empty() {
                    Ok(None)
                } else {
                    Err(StatusCode::REQUEST_TIMEOUT)
                };
            }
        }
    }
}

/// The `Date` header's value, formatted once a second.
#[derive(Default)]
struct Date {
    second: u64,
    text: String,
}

impl Date {
    fn now(&mut self) -> &str {
        let now = crate::clock::unix_now();
        let s = now.as_secs();
        if s != self.second || self.text.is_empty() {
            self.second = s;
            self.text = httpdate::fmt_http_date(std::time::UNIX_EPOCH + now);
        }
        &self.text
    }
}

/// Writes `a` as an HTTP/1.1 response into `out` (a HEAD request's answer without its body).
fn encode(a: &Answer, close: bool, head: bool, date: &mut Date, out: &mut Vec<u8>) {
    out.extend_from_slice(b"HTTP/1.1 ");
    out.extend_from_slice(a.status.as_str().as_bytes());
    out.push(b' ');
    out.extend_from_slice(a.status.canonical_reason().unwrap_or("").as_bytes());
    out.extend_from_slice(b"\r\n");
    for (name, value) in &a.headers {
        out.extend_from_slice(name.as_str().as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"content-length: ");
    out.extend_from_slice(itoa::Buffer::new().format(a.body.len()).as_bytes());
    out.extend_from_slice(b"\r\ndate: ");
    out.extend_from_slice(date.now().as_bytes());
    if close {
        out.extend_from_slice(b"\r\nconnection: close");
    }
    out.extend_from_slice(b"\r\n\r\n");
    if !head {
        out.extend_from_slice(&a.body);
    }
}

#[cfg(test)]
#[path = "serve_tests.rs"]
mod tests;
