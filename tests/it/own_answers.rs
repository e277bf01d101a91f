//! fluxgate's own answers to requests that never reach the pipeline, through the real binary
//! with raw bytes: a request line or header section over its bound, bytes that are not HTTP,
//! `CONNECT`, a head that stalls, and a body too large to read ahead. Each is the contract's
//! JSON (right status and `code`), with `nosniff` and a request id, closes the connection
//! after the whole answer, reaches no upstream, and is counted.

use crate::common::*;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

const ROUTES: &str = r#"
[[rate_limits.bucket]]
name = "by-email"
limit = 100
window = "1m"
key = "body:email"

[[route]]
path = "/public"
auth = "none"

[[route]]
methods = ["POST"]
path = "/auth/email"
auth = "none"
rate_limits = ["by-email"]
"#;

fn setup() -> (Upstream, Fluxgate) {
    let up = Upstream::start();
    let dir = std::sync::Arc::new(tempfile::tempdir().unwrap());
    let cfg = base_config(dir.path(), up.addr, ROUTES).replace(
        "threads = 1\n",
        "threads = 1\nmax_header_bytes = 4096\nmax_headers = 20\nhead_timeout = \"1s\"\n",
    );
    (up, Fluxgate::start_with(dir, &cfg))
}

/// Sends `bytes` while reading (the server answers before it has read them all), until the
/// server closes: the answer, and whether it closed.
fn exchange(fg: &Fluxgate, bytes: &[u8]) -> (Resp, bool) {
    let mut s = TcpStream::connect(fg.proxy).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut w = s.try_clone().unwrap();
    let bytes = bytes.to_vec();
    // A write cut short by the server's close is expected.
    let writer = std::thread::spawn(move || {
        let _ = w.write_all(&bytes);
    });
    let mut raw = Vec::new();
    let mut buf = [0u8; 8192];
    let closed = loop {
        match s.read(&mut buf) {
            Ok(0) => break true,
            Ok(n) => raw.extend_from_slice(&buf[..n]),
            // The server closes with bytes of ours unread (after its lingering drain).
            Err(e) => break e.kind() == std::io::ErrorKind::ConnectionReset,
        }
    };
    let _ = s.shutdown(std::net::Shutdown::Both);
    writer.join().unwrap();
    (parse_response(&raw), closed)
}

/// The contract's denial, with `nosniff` and a request id, on a closed connection.
fn assert_own_answer(fg: &Fluxgate, bytes: &[u8], status: u16, code: &str) -> Resp {
    let (r, closed) = exchange(fg, bytes);
    r.denial(status, code);
    assert_eq!(r.header("x-content-type-options"), Some("nosniff"));
    let id = r.header("x-request-id").expect("a request id");
    assert!(
        (1..=128).contains(&id.len())
            && id
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"._:-".contains(&b)),
        "{id}"
    );
    assert_eq!(
        r.header("content-length")
            .map(|v| v.parse::<usize>().unwrap()),
        Some(r.body.len()),
        "the whole answer arrived"
    );
    assert!(closed, "{code}: the connection was left open");
    r
}

fn denied(fg: &Fluxgate, reason: &str) -> f64 {
    fg.metric(&format!(
        "fluxgate_decisions_total{{outcome=\"denied\",reason=\"{reason}\"}}"
    ))
}

#[test]
fn an_overlong_request_line_is_414_and_never_forwarded() {
    let (up, fg) = setup();
    let line = format!(
        "GET /public?q={} HTTP/1.1\r\nHost: a\r\n\r\n",
        "a".repeat(20 * 1024)
    );
    assert_own_answer(&fg, line.as_bytes(), 414, "URI_TOO_LONG");
    assert_eq!(up.count(), 0);
    assert_eq!(denied(&fg, "request_line_too_long"), 1.0);
    assert!(fg.metric("fluxgate_responses_total{class=\"4xx\"}") >= 1.0);
}

#[test]
fn header_sections_over_the_byte_or_field_bound_are_431_whatever_their_size() {
    let (up, fg) = setup();
    // Over `max_header_bytes`, and far over pingora's own 1 MiB (which it answered with a
    // bare 400): both are the contract's 431.
    for pad in [5_000, 2 * 1024 * 1024] {
        let head = format!(
            "GET /public HTTP/1.1\r\nHost: a\r\nX-Big: {}\r\n\r\n",
            "b".repeat(pad)
        );
        assert_own_answer(&fg, head.as_bytes(), 431, "REQUEST_HEADER_FIELDS_TOO_LARGE");
    }
    let many: String = (0..25).map(|i| format!("X-H{i}: v\r\n")).collect();
    let head = format!("GET /public HTTP/1.1\r\nHost: a\r\n{many}\r\n");
    assert_own_answer(&fg, head.as_bytes(), 431, "REQUEST_HEADER_FIELDS_TOO_LARGE");
    assert_eq!(up.count(), 0);
    assert_eq!(denied(&fg, "headers_too_large"), 2.0);
    assert_eq!(denied(&fg, "too_many_headers"), 1.0);
}

#[test]
fn bytes_that_are_not_http_get_the_contracts_400_instead_of_pingoras_bare_one() {
    let (up, fg) = setup();
    // A TLS ClientHello on the plain port, junk, an obs-folded header, HTTP/0.9.
    let mut hello = vec![
        0x16, 0x03, 0x01, 0x00, 0xa5, 0x01, 0x00, 0x00, 0xa1, 0x03, 0x03,
    ];
    hello.extend_from_slice(&[0u8; 64]);
    let cases: [&[u8]; 4] = [
        &hello,
        b"\x00\x01garbage\r\n\r\n",
        b"GET /public HTTP/1.1\r\nHost: a\r\nX-A: 1\r\n X-Fluxgate-User-Id: 1\r\n\r\n",
        b"GET /public\r\n\r\n",
    ];
    for bytes in cases {
        let r = assert_own_answer(&fg, bytes, 400, "BAD_REQUEST");
        assert_eq!(r.header("server"), None, "pingora's own answer: {r:?}");
    }
    assert_eq!(up.count(), 0);
    assert_eq!(denied(&fg, "unparseable_request"), 4.0);
}

#[test]
fn a_connect_tunnel_is_405_in_the_contracts_json_and_never_opened() {
    let (up, fg) = setup();
    let r = assert_own_answer(
        &fg,
        b"CONNECT evil.example:443 HTTP/1.1\r\nHost: evil.example:443\r\n\r\n",
        405,
        "METHOD_NOT_ALLOWED",
    );
    assert!(r.header("allow").is_some_and(|a| a.contains("GET")));
    // Aimed at an open route, a tunnel is still refused before routing.
    let r = assert_own_answer(
        &fg,
        b"CONNECT /public HTTP/1.1\r\nHost: a\r\nX-Request-Id: mine-1\r\n\r\n",
        405,
        "METHOD_NOT_ALLOWED",
    );
    assert_eq!(r.header("x-request-id"), Some("mine-1"));
    assert_eq!(up.count(), 0);
    assert_eq!(denied(&fg, "method_not_allowed"), 2.0);
}

#[test]
fn a_stalled_head_is_answered_408_at_its_deadline_not_dropped() {
    let (up, fg) = setup();
    assert_own_answer(
        &fg,
        b"GET /public HTTP/1.1\r\nHost: a\r\n",
        408,
        "REQUEST_TIMEOUT",
    );
    assert_eq!(up.count(), 0);
    assert_eq!(denied(&fg, "head_timeout"), 1.0);
    assert!(fg.metric("fluxgate_connections_closed_total{reason=\"head_timeout\"}") >= 1.0);
}

#[test]
fn a_body_too_large_to_read_before_deciding_is_413() {
    let (up, fg) = setup();
    let body = format!(
        "{{\"email\":\"x@example.com\",\"pad\":\"{}\"}}",
        "p".repeat(20 * 1024)
    );
    let req = format!(
        "POST /auth/email HTTP/1.1\r\nHost: a\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    let r = assert_own_answer(&fg, req.as_bytes(), 413, "PAYLOAD_TOO_LARGE");
    assert!(r.header("x-request-id").is_some());
    assert_eq!(up.count(), 0);
    // Refused while reading, before a verdict: counted as the proxy counts such refusals.
    assert_eq!(
        fg.metric("fluxgate_decisions_total{outcome=\"failed\",reason=\"body_too_large\"}"),
        1.0
    );
}

#[test]
fn bodies_and_later_heads_on_a_kept_alive_connection_are_not_mistaken_for_heads() {
    let (up, fg) = setup();
    let mut s = TcpStream::connect(fg.proxy).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    // A body over every head bound, with no line break: forwarded.
    let body = "x".repeat(40 * 1024);
    s.write_all(
        format!(
            "POST /public HTTP/1.1\r\nHost: a\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        )
        .as_bytes(),
    )
    .unwrap();
    let first = read_one(&mut s);
    assert_eq!(first.status, 200, "{}", first.text());
    assert_eq!(up.last().body.len(), body.len());
    // The next head on the same connection is bounded on its own.
    let big = format!(
        "GET /public HTTP/1.1\r\nHost: a\r\nX-Big: {}\r\n\r\n",
        "b".repeat(5_000)
    );
    s.write_all(big.as_bytes()).unwrap();
    let second = read_one(&mut s);
    second.denial(431, "REQUEST_HEADER_FIELDS_TOO_LARGE");
    assert_eq!(up.count(), 1);
}

/// Reads one response with a `Content-Length` body from a kept-alive connection.
fn read_one(s: &mut TcpStream) -> Resp {
    let mut raw = Vec::new();
    let mut buf = [0u8; 8192];
    loop {
        let n = s.read(&mut buf).unwrap();
        assert!(n > 0, "closed early: {:?}", String::from_utf8_lossy(&raw));
        raw.extend_from_slice(&buf[..n]);
        let r = parse_response(&raw);
        let want = r.header("content-length").and_then(|v| v.parse().ok());
        if r.status != 0 && want.is_some_and(|w: usize| r.body.len() >= w) {
            return r;
        }
    }
}
