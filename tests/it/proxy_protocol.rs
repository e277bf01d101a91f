//! PROXY protocol listeners through the real binary: a trusted balancer's v1 or v2 header sets
//! the client IP the upstream is told about; anyone else, a lying, truncated or malformed
//! header, and a header that never completes get the connection closed, before HTTP.

use crate::common::*;
use fluxgate::clock::monotonic_now;
use rustls::pki_types::{CertificateDer, ServerName};
use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::time::Duration;

const SIG: &[u8] = b"\r\n\r\n\0\r\nQUIT\n";
const REQUEST: &[u8] = b"GET /public HTTP/1.1\r\nHost: api.test\r\nConnection: close\r\n\r\n";

/// fluxgate with `proxy_protocol = true` on its plain listener, trusting `trusted` (a TOML
/// list body), a public route, and `server` / `extra` added to `[server]` / the end.
fn start(up: &Upstream, trusted: &str, server: &str, extra: &str) -> Fluxgate {
    let dir = Arc::new(tempfile::tempdir().unwrap());
    let extra = format!(
        "[client_ip]\ntrusted_proxies = [{trusted}]\n[[route]]\npath = \"/public\"\nauth = \"none\"\n{extra}"
    );
    let cfg = base_config(dir.path(), up.addr, &extra).replacen(
        "[server]\n",
        &format!("[server]\nproxy_protocol = true\nproxy_protocol_timeout = \"1s\"\n{server}"),
        1,
    );
    Fluxgate::start_with(dir, &cfg)
}

fn v1(src: &str, dst: &str, family: &str) -> Vec<u8> {
    format!("PROXY {family} {src} {dst} 4711 80\r\n").into_bytes()
}

/// A v2 header: `ver_cmd` (0x21 PROXY, 0x20 LOCAL), `fam` (0x11 TCP/IPv4, 0x21 TCP/IPv6), the
/// address block as given, and its announced length.
fn v2(ver_cmd: u8, fam: u8, block: &[u8]) -> Vec<u8> {
    let mut h = SIG.to_vec();
    h.extend([ver_cmd, fam]);
    h.extend((block.len() as u16).to_be_bytes());
    h.extend(block);
    h
}

fn v4_block(src: [u8; 4]) -> Vec<u8> {
    [
        &src[..],
        &[127, 0, 0, 1],
        &4711u16.to_be_bytes(),
        &80u16.to_be_bytes(),
    ]
    .concat()
}

fn v6_block(src: &str) -> Vec<u8> {
    let src: std::net::Ipv6Addr = src.parse().unwrap();
    [
        &src.octets()[..],
        &std::net::Ipv6Addr::LOCALHOST.octets(),
        &4711u16.to_be_bytes(),
        &80u16.to_be_bytes(),
    ]
    .concat()
}

/// A connection to `to` from the loopback address `src` (the whole 127/8 is local on Linux).
fn connect_from(src: &str, to: SocketAddr) -> TcpStream {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let s = rt.block_on(async {
        let sock = tokio::net::TcpSocket::new_v4().unwrap();
        sock.bind(format!("{src}:0").parse().unwrap()).unwrap();
        sock.connect(to).await.unwrap().into_std().unwrap()
    });
    s.set_nonblocking(false).unwrap();
    s.set_nodelay(true).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s
}

/// Writes `segments` one by one (a pause between them, so they leave as separate TCP
/// segments) and reads until the server closes.
fn exchange(mut s: TcpStream, segments: &[&[u8]]) -> Vec<u8> {
    for (i, seg) in segments.iter().enumerate() {
        if i > 0 {
            std::thread::sleep(Duration::from_millis(50));
        }
        if s.write_all(seg).is_err() {
            break;
        }
    }
    let mut buf = Vec::new();
    match s.read_to_end(&mut buf) {
        Ok(_) => {}
        // A close with unread data arrives as a reset.
        Err(e) if e.kind() == ErrorKind::ConnectionReset => {}
        Err(e) => panic!("the connection was neither answered nor closed: {e}"),
    }
    buf
}

/// The client IP the upstream was told, by each of the headers that carry it (contract §4).
fn told_client_ip(up: &Upstream) -> [Option<String>; 3] {
    let seen = up.last();
    [
        seen.get("x-forwarded-for"),
        seen.get("x-real-ip"),
        seen.get("x-fluxgate-client-ip"),
    ]
}

fn all(ip: &str) -> [Option<String>; 3] {
    [Some(ip.into()), Some(ip.into()), Some(ip.into())]
}

fn closed(fg: &Fluxgate, reason: &str) -> f64 {
    fg.metric(&format!(
        "fluxgate_connections_closed_total{{reason=\"{reason}\"}}"
    ))
}

/// Polls `closed(reason)` until it reaches `want` (at most 10 s): the server counts a close
/// after the client may already have seen it.
fn closed_soon(fg: &Fluxgate, reason: &str, want: f64) -> f64 {
    let deadline = monotonic_now() + Duration::from_secs(10);
    loop {
        let v = closed(fg, reason);
        if v >= want || monotonic_now() > deadline {
            return v;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn proxy_v1_from_a_trusted_balancer_sets_the_client_ip() {
    let up = Upstream::start();
    let fg = start(&up, "\"127.0.0.1/32\"", "", "");
    // Header and request in one write: the bytes after the header are HTTP and not lost.
    let one_write = [v1("198.51.100.7", "127.0.0.1", "TCP4"), REQUEST.to_vec()].concat();
    let r = parse_response(&exchange(
        connect_from("127.0.0.1", fg.proxy),
        &[&one_write],
    ));
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(told_client_ip(&up), all("198.51.100.7"));
    fg.wait_log("\"client_ip\":\"198.51.100.7\"");
    // The client behind the balancer is not trusted: its own forwarding header is its word.
    let spoofed = [
        v1("198.51.100.7", "127.0.0.1", "TCP4"),
        b"GET /public HTTP/1.1\r\nHost: a\r\nX-Forwarded-For: 6.6.6.6\r\nConnection: close\r\n\r\n"
            .to_vec(),
    ]
    .concat();
    let r = parse_response(&exchange(connect_from("127.0.0.1", fg.proxy), &[&spoofed]));
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(told_client_ip(&up), all("198.51.100.7"));
}

#[test]
fn proxy_v2_from_a_trusted_balancer_sets_the_client_ip_even_split_over_segments() {
    let up = Upstream::start();
    let fg = start(&up, "\"127.0.0.1/32\"", "", "");
    let h = v2(0x21, 0x21, &v6_block("2001:db8::7"));
    // The header in three segments (cut inside the signature and inside the addresses), then
    // the request.
    let r = parse_response(&exchange(
        connect_from("127.0.0.1", fg.proxy),
        &[&h[..5], &h[5..30], &h[30..], REQUEST],
    ));
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(told_client_ip(&up), all("2001:db8::7"));
    // v1, split too.
    let h = v1("203.0.113.9", "127.0.0.1", "TCP4");
    let r = parse_response(&exchange(
        connect_from("127.0.0.1", fg.proxy),
        &[&h[..9], &h[9..20], &[&h[20..], REQUEST].concat()],
    ));
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(told_client_ip(&up), all("203.0.113.9"));
    // v2 over IPv4 with header and request in one write.
    let one = [v2(0x21, 0x11, &v4_block([192, 0, 2, 44])), REQUEST.to_vec()].concat();
    let r = parse_response(&exchange(connect_from("127.0.0.1", fg.proxy), &[&one]));
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(told_client_ip(&up), all("192.0.2.44"));
}

#[test]
fn local_health_checks_and_unknown_families_keep_the_balancers_address() {
    let up = Upstream::start();
    let fg = start(&up, "\"127.0.0.1/32\"", "", "");
    for header in [
        // v2 LOCAL (with addresses, which must be ignored), v2 UNSPEC, v1 UNKNOWN.
        v2(0x20, 0x11, &v4_block([198, 51, 100, 7])),
        v2(0x21, 0x00, &[]),
        b"PROXY UNKNOWN\r\n".to_vec(),
    ] {
        let r = parse_response(&exchange(
            connect_from("127.0.0.1", fg.proxy),
            &[&[header, REQUEST.to_vec()].concat()],
        ));
        assert_eq!(r.status, 200, "{}", r.text());
        assert_eq!(told_client_ip(&up), all("127.0.0.1"));
    }
}

#[test]
fn a_proxy_header_from_an_untrusted_peer_is_closed_and_never_sets_the_client_ip() {
    let up = Upstream::start();
    // 127.0.0.1 is the balancer; the attacker connects from 127.0.0.2.
    let fg = start(&up, "\"127.0.0.1/32\"", "", "");
    let spoof = [v1("198.51.100.7", "127.0.0.1", "TCP4"), REQUEST.to_vec()].concat();
    let got = exchange(connect_from("127.0.0.2", fg.proxy), &[&spoof]);
    assert!(
        got.is_empty(),
        "answered: {}",
        String::from_utf8_lossy(&got)
    );
    // Without a header too: a PROXY listener serves trusted proxies only.
    assert!(exchange(connect_from("127.0.0.2", fg.proxy), &[REQUEST]).is_empty());
    assert_eq!(up.count(), 0, "nothing reached the upstream");
    assert_eq!(closed_soon(&fg, "proxy_protocol_untrusted", 2.0), 2.0);
}

#[test]
fn lying_truncated_and_malformed_proxy_headers_are_closed() {
    let up = Upstream::start();
    let fg = start(&up, "\"127.0.0.1/32\"", "", "");
    let truncated = v2(0x21, 0x11, &v4_block([198, 51, 100, 7]));
    let before = closed(&fg, "proxy_protocol_malformed");
    let cases: Vec<(&str, Vec<u8>)> = vec![
        // The family says IPv4, the addresses are IPv6 (and the other way round).
        (
            "v1 TCP4 with IPv6",
            v1("2001:db8::7", "2001:db8::1", "TCP4"),
        ),
        ("v1 TCP6 with IPv4", v1("198.51.100.7", "127.0.0.1", "TCP6")),
        // The family says IPv6, the block is IPv4-sized.
        ("v2 IPv6 with IPv4 block", {
            let mut h = v2(0x21, 0x21, &v4_block([198, 51, 100, 7]));
            h[15] = 12;
            h
        }),
        ("v1 garbage", b"PROXY TCP4 198.51.100.7 oops\r\n".to_vec()),
        ("no header at all", Vec::new()),
    ];
    for (what, header) in &cases {
        let got = exchange(
            connect_from("127.0.0.1", fg.proxy),
            &[&[header.as_slice(), REQUEST].concat()],
        );
        assert!(
            got.is_empty(),
            "{what}: answered {}",
            String::from_utf8_lossy(&got)
        );
    }
    // Truncated: half a header, then the balancer hangs up.
    let mut s = connect_from("127.0.0.1", fg.proxy);
    s.write_all(&truncated[..truncated.len() - 5]).unwrap();
    s.shutdown(std::net::Shutdown::Write).unwrap();
    let mut got = Vec::new();
    let _ = s.read_to_end(&mut got);
    assert!(got.is_empty());
    assert_eq!(up.count(), 0, "nothing reached the upstream");
    let want = before + cases.len() as f64 + 1.0;
    assert_eq!(closed_soon(&fg, "proxy_protocol_malformed", want), want);
    // A balancer's TCP health check (connect, hang up) is counted apart.
    let missing = closed(&fg, "proxy_protocol_missing");
    let mut s = connect_from("127.0.0.1", fg.proxy);
    s.shutdown(std::net::Shutdown::Write).unwrap();
    assert!(matches!(s.read(&mut [0u8; 8]), Ok(0)));
    assert_eq!(
        closed_soon(&fg, "proxy_protocol_missing", missing + 1.0),
        missing + 1.0
    );
}

#[test]
fn a_proxy_header_that_never_completes_is_cut_off_at_its_deadline() {
    let up = Upstream::start();
    let fg = start(&up, "\"127.0.0.1/32\"", "", "");
    let mut s = connect_from("127.0.0.1", fg.proxy);
    s.write_all(b"PROXY TCP4 198.51.100.7 ").unwrap();
    // proxy_protocol_timeout is 1 s; the read below waits at most 10 s.
    let started = monotonic_now();
    let mut buf = [0u8; 64];
    let closed_by_server = match s.read(&mut buf) {
        Ok(0) => true,
        Err(e) => e.kind() == ErrorKind::ConnectionReset,
        Ok(_) => false,
    };
    assert!(closed_by_server, "still open after {:?}", started.elapsed());
    assert_eq!(closed_soon(&fg, "proxy_protocol_timeout", 1.0), 1.0);
    assert_eq!(up.count(), 0);
}

/// Sends a header and a kept-alive request and reads its response; the connection stays open.
fn kept_alive(fg: &Fluxgate, src: &str) -> (TcpStream, u16) {
    let mut s = connect_from("127.0.0.1", fg.proxy);
    let req = b"GET /public HTTP/1.1\r\nHost: a\r\n\r\n";
    s.write_all(&[v1(src, "127.0.0.1", "TCP4"), req.to_vec()].concat())
        .unwrap();
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let deadline = monotonic_now() + Duration::from_secs(10);
    while monotonic_now() < deadline {
        match s.read(&mut chunk) {
            Ok(0) | Err(_) => break,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
        let text = String::from_utf8_lossy(&buf);
        if let Some((head, body)) = text.split_once("\r\n\r\n") {
            let len = head
                .lines()
                .find_map(|l| {
                    l.to_ascii_lowercase()
                        .strip_prefix("content-length:")
                        .map(|v| v.trim().parse::<usize>().unwrap())
                })
                .unwrap_or(0);
            if body.len() >= len {
                break;
            }
        }
    }
    let status = parse_response(&buf).status;
    (s, status)
}

#[test]
fn the_per_ip_connection_cap_counts_the_client_behind_the_balancer() {
    let up = Upstream::start();
    let fg = start(&up, "\"127.0.0.1/32\"", "max_connections_per_ip = 2\n", "");
    // Two kept-alive connections for one client hold its two slots (the balancer itself is
    // trusted, so exempt).
    let (_a, sa) = kept_alive(&fg, "198.51.100.7");
    let (_b, sb) = kept_alive(&fg, "198.51.100.7");
    assert_eq!((sa, sb), (200, 200));
    let third = [v1("198.51.100.7", "127.0.0.1", "TCP4"), REQUEST.to_vec()].concat();
    assert!(exchange(connect_from("127.0.0.1", fg.proxy), &[&third]).is_empty());
    assert_eq!(closed_soon(&fg, "per_ip_cap", 1.0), 1.0);
    // Another client behind the same balancer is served.
    let other = [v1("198.51.100.8", "127.0.0.1", "TCP4"), REQUEST.to_vec()].concat();
    let r = parse_response(&exchange(connect_from("127.0.0.1", fg.proxy), &[&other]));
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(told_client_ip(&up), all("198.51.100.8"));
}

#[test]
fn proxy_v2_before_the_tls_handshake_sets_the_client_ip() {
    let up = Upstream::start();
    let dir = tempfile::tempdir().unwrap();
    let c = rcgen::generate_simple_self_signed(vec!["api.test".to_string()]).unwrap();
    let (cert, key) = (dir.path().join("c.pem"), dir.path().join("c.key"));
    std::fs::write(&cert, c.cert.pem()).unwrap();
    std::fs::write(&key, c.signing_key.serialize_pem()).unwrap();
    let tls = format!(
        "[[server.tls]]\nlisten = \"127.0.0.1:0\"\nproxy_protocol = true\ncertificates = [{{ cert = \"{}\", key = \"{}\" }}]\n",
        cert.display(),
        key.display()
    );
    // Last in the file: `[[server.tls]]` may follow any table.
    let fg = start(&up, "\"127.0.0.1/32\"", "", &tls);
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(CertificateDer::from(c.cert.der().to_vec()))
        .unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let cfg = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let conn =
        rustls::ClientConnection::new(Arc::new(cfg), ServerName::try_from("api.test").unwrap())
            .unwrap();
    let mut tcp = connect_from("127.0.0.1", fg.tls[0]);
    tcp.write_all(&v2(0x21, 0x11, &v4_block([198, 51, 100, 7])))
        .unwrap();
    let mut s = rustls::StreamOwned::new(conn, tcp);
    s.write_all(REQUEST).unwrap();
    let mut buf = Vec::new();
    let _ = s.read_to_end(&mut buf);
    let r = parse_response(&buf);
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(told_client_ip(&up), all("198.51.100.7"));
    // Without the header, the handshake never starts: the ClientHello is not a PROXY header.
    let conn = rustls::ClientConnection::new(
        Arc::new(
            rustls::ClientConfig::builder_with_provider(Arc::new(
                rustls::crypto::ring::default_provider(),
            ))
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(rustls::RootCertStore::empty())
            .with_no_client_auth(),
        ),
        ServerName::try_from("api.test").unwrap(),
    )
    .unwrap();
    let before = closed(&fg, "proxy_protocol_malformed");
    let mut s = rustls::StreamOwned::new(conn, connect_from("127.0.0.1", fg.tls[0]));
    assert!(s.write_all(REQUEST).is_err());
    assert_eq!(
        closed_soon(&fg, "proxy_protocol_malformed", before + 1.0),
        before + 1.0
    );
}
