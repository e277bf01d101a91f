//! The public edge, through the real binary with raw bytes: request hygiene (each test named
//! after the attack it stops), exactly one response per early denial, hop-by-hop headers,
//! head/keep-alive/body deadlines, and the caps on requests per connection and connections per
//! client IP.

use crate::common::*;
use fluxgate::clock::monotonic_now;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

const ROUTES: &str = r#"
[[route]]
path = "/public"
auth = "none"

[[route]]
path = "/public/*"
auth = "none"
"#;

fn setup() -> (Upstream, Fluxgate) {
    let up = Upstream::start();
    let fg = Fluxgate::start(up.addr, ROUTES);
    (up, fg)
}

/// What came back on one connection: everything read, and whether the server closed it
/// within `wait`.
struct Exchange {
    raw: Vec<u8>,
    closed: bool,
}

impl Exchange {
    fn status_lines(&self) -> usize {
        let text = String::from_utf8_lossy(&self.raw);
        text.match_indices("HTTP/1.1 ")
            .filter(|(i, _)| *i == 0 || text[..*i].ends_with('\n'))
            .count()
    }
    fn resp(&self) -> Resp {
        parse_response(&self.raw)
    }
}

/// Writes `bytes`, then reads until the server closes or `wait` passes.
fn exchange(addr: SocketAddr, bytes: &[u8], wait: Duration) -> Exchange {
    let mut s = TcpStream::connect(addr).unwrap();
    s.write_all(bytes).unwrap();
    read_until_closed(&mut s, wait)
}

fn read_until_closed(s: &mut TcpStream, wait: Duration) -> Exchange {
    let deadline = monotonic_now() + wait;
    let mut raw = Vec::new();
    let mut buf = [0u8; 8192];
    loop {
        let left = deadline.saturating_duration_since(monotonic_now());
        if left.is_zero() {
            return Exchange { raw, closed: false };
        }
        s.set_read_timeout(Some(left)).unwrap();
        match s.read(&mut buf) {
            Ok(0) => return Exchange { raw, closed: true },
            Ok(n) => raw.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {
                return Exchange { raw, closed: true };
            }
            Err(_) => return Exchange { raw, closed: false },
        }
    }
}

/// Reads exactly one response (head and Content-Length body) from a kept-alive connection.
fn read_one(s: &mut TcpStream) -> Resp {
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut raw = Vec::new();
    let mut buf = [0u8; 8192];
    loop {
        if let Some(end) = raw.windows(4).position(|w| w == b"\r\n\r\n") {
            let r = parse_response(&raw);
            let len: usize = r
                .header("content-length")
                .and_then(|v| v.parse().ok())
                .unwrap_or(0);
            if raw.len() >= end + 4 + len {
                return r;
            }
        }
        let n = s.read(&mut buf).expect("read a response");
        assert!(n > 0, "closed before a whole response: {raw:?}");
        raw.extend_from_slice(&buf[..n]);
    }
}

/// A refused request: 400, exactly one response, connection closed, nothing forwarded.
fn assert_refused(up: &Upstream, fg: &Fluxgate, what: &str, bytes: &str) -> Resp {
    assert_refused_with(up, fg, what, bytes, 400)
}

/// As [`assert_refused`], with `status`.
fn assert_refused_with(up: &Upstream, fg: &Fluxgate, what: &str, bytes: &str, status: u16) -> Resp {
    up.clear();
    let x = exchange(fg.proxy, bytes.as_bytes(), Duration::from_secs(5));
    let r = x.resp();
    assert_eq!(
        r.status,
        status,
        "{what}: {:?}",
        String::from_utf8_lossy(&x.raw)
    );
    assert_eq!(
        x.status_lines(),
        1,
        "{what}: {:?}",
        String::from_utf8_lossy(&x.raw)
    );
    assert!(x.closed, "{what}: connection left open");
    assert_eq!(
        up.count(),
        0,
        "{what}: reached the upstream: {:?}",
        up.requests()
    );
    r
}

#[test]
fn request_smuggling_with_content_length_and_transfer_encoding_is_refused() {
    let (up, fg) = setup();
    // A CL.TE / TE.CL desync: each side of a chain would frame the body differently, and the
    // smuggled request would ride on the connection.
    for (what, head) in [
        (
            "CL then TE",
            "Content-Length: 6\r\nTransfer-Encoding: chunked\r\n",
        ),
        (
            "TE then CL",
            "Transfer-Encoding: chunked\r\nContent-Length: 6\r\n",
        ),
    ] {
        let r = assert_refused(
            &up,
            &fg,
            what,
            &format!(
                "POST /public HTTP/1.1\r\nHost: a\r\n{head}\r\n0\r\n\r\nGET /public/smuggled HTTP/1.1\r\nHost: a\r\n\r\n"
            ),
        );
        if !r.body.is_empty() {
            r.denial(400, "BAD_REQUEST");
        }
    }
}

#[test]
fn request_smuggling_with_duplicate_or_malformed_content_length_is_refused() {
    let (up, fg) = setup();
    for (what, head) in [
        (
            "duplicate differing",
            "Content-Length: 3\r\nContent-Length: 4\r\n",
        ),
        (
            "duplicate equal",
            "Content-Length: 4\r\nContent-Length: 4\r\n",
        ),
        ("list", "Content-Length: 4, 4\r\n"),
        ("signed", "Content-Length: +4\r\n"),
        ("hex", "Content-Length: 0x4\r\n"),
        ("not a number", "Content-Length: four\r\n"),
    ] {
        assert_refused(
            &up,
            &fg,
            what,
            &format!("POST /public HTTP/1.1\r\nHost: a\r\n{head}\r\nabcd"),
        );
    }
}

#[test]
fn request_smuggling_with_obfuscated_transfer_encoding_is_refused() {
    let (up, fg) = setup();
    for (what, head) in [
        ("gzip then chunked", "Transfer-Encoding: gzip, chunked\r\n"),
        ("chunked not last", "Transfer-Encoding: chunked, gzip\r\n"),
        (
            "chunked twice",
            "Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n",
        ),
        ("unknown coding", "Transfer-Encoding: xchunked\r\n"),
        ("identity", "Transfer-Encoding: identity\r\n"),
    ] {
        assert_refused(
            &up,
            &fg,
            what,
            &format!("POST /public HTTP/1.1\r\nHost: a\r\n{head}\r\n4\r\nabcd\r\n0\r\n\r\n"),
        );
    }
    // The one accepted form still works.
    up.clear();
    let r = send_raw(
        fg.proxy,
        b"POST /public HTTP/1.1\r\nHost: a\r\nConnection: close\r\nTransfer-Encoding: chunked\r\n\r\n4\r\nabcd\r\n0\r\n\r\n",
    );
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(up.last().body, b"abcd");
}

#[test]
fn underscore_header_names_aliasing_protected_headers_are_refused() {
    let (up, fg) = setup();
    for name in [
        "X_Forwarded_For",
        "x_real_ip",
        "Content_Length",
        "Transfer_Encoding",
        "X_Request_Id",
        "X_Fluxgate_Client_Ip",
    ] {
        let r = assert_refused(
            &up,
            &fg,
            name,
            &format!("GET /public HTTP/1.1\r\nHost: a\r\n{name}: 1.2.3.4\r\n\r\n"),
        );
        r.denial(400, "BAD_REQUEST");
    }
    // An underscore in a harmless name is the client's business.
    up.clear();
    let r = send_raw(
        fg.proxy,
        b"GET /public HTTP/1.1\r\nHost: a\r\nConnection: close\r\nmy_header: 1\r\n\r\n",
    );
    assert_eq!(r.status, 200);
    assert_eq!(up.last().get("my_header").as_deref(), Some("1"));
}

#[test]
fn header_smuggling_by_obs_fold_is_refused() {
    let (up, fg) = setup();
    assert_refused(
        &up,
        &fg,
        "obs-fold",
        "GET /public HTTP/1.1\r\nHost: a\r\nX-Long: first\r\n X-Fluxgate-User-Id: 1\r\n\r\n",
    );
}

#[test]
fn header_floods_over_the_size_or_count_limit_are_refused() {
    let up = Upstream::start();
    let fg = start_with_server_keys(&up, "max_header_bytes = 4096\nmax_headers = 20");
    let big = "a".repeat(5000);
    let r = assert_refused_with(
        &up,
        &fg,
        "oversized section",
        &format!("GET /public HTTP/1.1\r\nHost: a\r\nX-Big: {big}\r\n\r\n"),
        431,
    );
    r.denial(431, "REQUEST_HEADER_FIELDS_TOO_LARGE");
    let many: String = (0..25).map(|i| format!("X-H{i}: v\r\n")).collect();
    let r = assert_refused_with(
        &up,
        &fg,
        "too many headers",
        &format!("GET /public HTTP/1.1\r\nHost: a\r\n{many}\r\n"),
        431,
    );
    r.denial(431, "REQUEST_HEADER_FIELDS_TOO_LARGE");
    // Just under both limits passes.
    let some: String = (0..15).map(|i| format!("X-H{i}: v\r\n")).collect();
    let r = send_raw(
        fg.proxy,
        format!("GET /public HTTP/1.1\r\nHost: a\r\nConnection: close\r\n{some}\r\n").as_bytes(),
    );
    assert_eq!(r.status, 200, "{}", r.text());
}

#[test]
fn request_targets_that_are_not_origin_form_are_refused() {
    let (up, fg) = setup();
    for (what, line) in [
        ("absolute-form", "GET http://evil.example/public HTTP/1.1"),
        ("asterisk-form", "OPTIONS * HTTP/1.1"),
        ("authority-form", "CONNECT evil.example:443 HTTP/1.1"),
        ("no slash", "GET public HTTP/1.1"),
    ] {
        up.clear();
        let x = exchange(
            fg.proxy,
            format!("{line}\r\nHost: a\r\n\r\n").as_bytes(),
            Duration::from_secs(5),
        );
        let r = x.resp();
        assert!(
            r.status == 400 || r.status == 405,
            "{what}: {:?}",
            String::from_utf8_lossy(&x.raw)
        );
        assert_eq!(x.status_lines(), 1, "{what}");
        assert!(x.closed, "{what}: connection left open");
        assert_eq!(up.count(), 0, "{what}");
    }
}

#[test]
fn h2c_upgrade_smuggling_is_refused() {
    // `Upgrade: h2c` through a proxy that passes it on lets a client talk HTTP/2 straight to the
    // upstream, past every rule (the h2c smuggling attack).
    let (up, fg) = setup();
    for (what, head) in [
        (
            "h2c",
            "Connection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABkAAQAAP__\r\n",
        ),
        (
            "other protocol",
            "Connection: Upgrade\r\nUpgrade: foo/1\r\n",
        ),
        (
            "websocket on POST",
            "Connection: Upgrade\r\nUpgrade: websocket\r\n",
        ),
    ] {
        let method = if what == "websocket on POST" {
            "POST"
        } else {
            "GET"
        };
        let r = assert_refused(
            &up,
            &fg,
            what,
            &format!("{method} /public HTTP/1.1\r\nHost: a\r\n{head}Content-Length: 0\r\n\r\n"),
        );
        r.denial(400, "BAD_REQUEST");
    }
}

#[test]
fn hop_by_hop_headers_are_never_forwarded() {
    let (up, fg) = setup();
    let r = send_raw(
        fg.proxy,
        b"GET /public HTTP/1.1\r\nHost: a\r\nConnection: keep-alive, X-Secret-Hop\r\nX-Secret-Hop: 1\r\nKeep-Alive: timeout=5\r\nTE: trailers\r\nProxy-Authorization: Basic Zm9vOmJhcg==\r\nProxy-Connection: keep-alive\r\nTrailer: X-T\r\nX-Kept: yes\r\n\r\nGET /public HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(r.status, 200);
    let seen = &up.requests()[0];
    for h in [
        "connection",
        "x-secret-hop",
        "keep-alive",
        "te",
        "proxy-authorization",
        "proxy-connection",
        "trailer",
        "upgrade",
    ] {
        assert!(
            seen.all(h).is_empty(),
            "{h} was forwarded: {:?}",
            seen.headers
        );
    }
    assert_eq!(seen.get("x-kept").as_deref(), Some("yes"));
}

#[test]
fn an_early_denial_with_expect_continue_gets_exactly_one_response() {
    // A client that waits for `100 Continue` must get the denial instead, and the body it then
    // sends (or not) must never be read as a second request.
    let (up, fg) = setup();
    let mut s = TcpStream::connect(fg.proxy).unwrap();
    s.write_all(
        b"POST /users/@me HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\nContent-Length: 37\r\n\r\n",
    )
    .unwrap();
    let first = read_one(&mut s);
    first.denial(401, "UNAUTHORIZED");
    // The body, which happens to look like a request.
    let _ = s.write_all(b"GET /public/smuggled HTTP/1.1\r\nX: y\r\n\r\n");
    let _ = s.shutdown(std::net::Shutdown::Write);
    let rest = read_until_closed(&mut s, Duration::from_secs(5));
    assert_eq!(
        rest.status_lines(),
        0,
        "{:?}",
        String::from_utf8_lossy(&rest.raw)
    );
    assert_eq!(up.count(), 0);
}

#[test]
fn an_early_denial_with_a_body_gets_exactly_one_response() {
    let (up, fg) = setup();
    for body in [
        "{\"a\":1}",
        "GET /public/smuggled HTTP/1.1\r\nHost: a\r\n\r\n",
    ] {
        up.clear();
        let x = exchange(
            fg.proxy,
            format!(
                "POST /users/@me HTTP/1.1\r\nHost: a\r\nContent-Length: {}\r\n\r\n{body}GET /public/next HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n",
                body.len()
            )
            .as_bytes(),
            Duration::from_secs(5),
        );
        let text = String::from_utf8_lossy(&x.raw).to_string();
        // The denial, then (if the connection was kept) the real next request; never the body.
        assert!(text.starts_with("HTTP/1.1 401"), "{text}");
        assert!(x.status_lines() <= 2, "{text}");
        let targets: Vec<String> = up.requests().iter().map(|r| r.target.clone()).collect();
        assert!(
            targets.iter().all(|t| t == "/public/next"),
            "the body was read as a request: {targets:?}"
        );
        assert_eq!(x.status_lines(), 1 + targets.len(), "{text}");
    }
}

fn start_with_server_keys(up: &Upstream, keys: &str) -> Fluxgate {
    let dir = std::sync::Arc::new(tempfile::tempdir().unwrap());
    let cfg = base_config(dir.path(), up.addr, ROUTES)
        .replace("threads = 1\n", &format!("threads = 1\n{keys}\n"));
    Fluxgate::start_with(dir, &cfg)
}

#[test]
fn slowloris_trickling_a_head_is_cut_off_at_the_head_deadline() {
    let up = Upstream::start();
    let fg = start_with_server_keys(&up, "head_timeout = \"1s\"");
    let mut slow = TcpStream::connect(fg.proxy).unwrap();
    slow.write_all(b"GET /public HTTP/1.1\r\nHost: a\r\n")
        .unwrap();
    let started = monotonic_now();
    let mut cut = false;
    // One header byte every 100 ms: each read resets an idle timer, never the head deadline.
    while started.elapsed() < Duration::from_secs(6) {
        std::thread::sleep(Duration::from_millis(100));
        if slow.write_all(b"X").is_err() {
            cut = true;
            break;
        }
        let mut b = [0u8; 64];
        slow.set_nonblocking(true).unwrap();
        match slow.read(&mut b) {
            Ok(_) => {
                cut = true;
                break;
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(_) => {
                cut = true;
                break;
            }
        }
        slow.set_nonblocking(false).unwrap();
    }
    assert!(cut, "a head trickled for 6 s was never cut off");
    // Meanwhile, honest clients are served.
    let r = send_raw(
        fg.proxy,
        b"GET /public HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(r.status, 200);
    assert!(fg.metric("fluxgate_connections_closed_total{reason=\"head_timeout\"}") >= 1.0);
}

#[test]
fn idle_keep_alive_connections_are_closed_after_the_idle_timeout() {
    let up = Upstream::start();
    let fg = start_with_server_keys(&up, "keepalive_timeout = \"1s\"");
    let mut s = TcpStream::connect(fg.proxy).unwrap();
    s.write_all(b"GET /public HTTP/1.1\r\nHost: a\r\n\r\n")
        .unwrap();
    assert_eq!(read_one(&mut s).status, 200);
    let rest = read_until_closed(&mut s, Duration::from_secs(6));
    assert!(rest.closed, "an idle keep-alive connection stayed open");
    assert!(rest.raw.is_empty());
}

#[test]
fn a_stalled_request_body_is_cut_off_at_the_body_timeout() {
    let up = Upstream::start();
    let fg = start_with_server_keys(&up, "body_timeout = \"1s\"");
    let mut s = TcpStream::connect(fg.proxy).unwrap();
    s.write_all(b"POST /public HTTP/1.1\r\nHost: a\r\nContent-Length: 100\r\n\r\nonly ten b")
        .unwrap();
    let x = read_until_closed(&mut s, Duration::from_secs(8));
    assert!(x.closed, "a stalled body held the connection");
}

#[test]
fn a_connection_serves_at_most_max_requests_per_connection() {
    let up = Upstream::start();
    let fg = start_with_server_keys(&up, "max_requests_per_connection = 3");
    let mut s = TcpStream::connect(fg.proxy).unwrap();
    for i in 1..=3 {
        s.write_all(b"GET /public HTTP/1.1\r\nHost: a\r\n\r\n")
            .unwrap();
        let r = read_one(&mut s);
        assert_eq!(r.status, 200, "request {i}");
        if i == 3 {
            assert_eq!(r.header("connection"), Some("close"), "request {i}");
        }
    }
    let _ = s.write_all(b"GET /public HTTP/1.1\r\nHost: a\r\n\r\n");
    let rest = read_until_closed(&mut s, Duration::from_secs(5));
    assert!(rest.closed);
    assert_eq!(rest.status_lines(), 0);
    assert_eq!(up.count(), 3);
}

#[test]
fn a_connection_flood_from_one_ip_cannot_starve_others() {
    let up = Upstream::start();
    let fg = start_with_server_keys(&up, "max_connections_per_ip = 2");
    let mut held: Vec<TcpStream> = (0..2)
        .map(|_| {
            let mut s = TcpStream::connect(fg.proxy).unwrap();
            s.write_all(b"GET /public HTTP/1.1\r\nHost: a\r\n\r\n")
                .unwrap();
            assert_eq!(read_one(&mut s).status, 200);
            s
        })
        .collect();
    // The third from the same address is closed without an answer.
    let x = exchange(
        fg.proxy,
        b"GET /public HTTP/1.1\r\nHost: a\r\n\r\n",
        Duration::from_secs(5),
    );
    assert!(
        x.closed && x.raw.is_empty(),
        "{:?}",
        String::from_utf8_lossy(&x.raw)
    );
    // The refusal is counted after the socket closes: allow the counter a moment.
    let counted = || fg.metric("fluxgate_connections_closed_total{reason=\"per_ip_cap\"}");
    let t = fluxgate::clock::monotonic_now();
    while counted() < 1.0 && t.elapsed() < Duration::from_secs(3) {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(counted() >= 1.0);
    // Closing one frees a slot.
    held.pop();
    std::thread::sleep(Duration::from_millis(200));
    let r = send_raw(
        fg.proxy,
        b"GET /public HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(r.status, 200);
    drop(held);
}
