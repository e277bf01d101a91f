//! TLS handshakes at the edge, through the real binary: the per-address connection cap and a
//! deadline apply before TLS, and a failed handshake is a counted client mistake, not a
//! server error.

use crate::common::*;
use fluxgate::clock::monotonic_now;
use rustls::pki_types::{CertificateDer, ServerName};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::time::Duration;

/// fluxgate with one TLS listener for `api.test` and `server` added to `[server]`; the
/// certificate's DER for clients to trust.
fn start_tls(up: &Upstream, server: &str) -> (Fluxgate, Vec<u8>) {
    let dir = Arc::new(tempfile::tempdir().unwrap());
    let c = rcgen::generate_simple_self_signed(vec!["api.test".to_string()]).unwrap();
    let (cert, key) = (dir.path().join("c.pem"), dir.path().join("c.key"));
    std::fs::write(&cert, c.cert.pem()).unwrap();
    std::fs::write(&key, c.signing_key.serialize_pem()).unwrap();
    let extra = format!(
        "[[route]]\npath = \"/public\"\nauth = \"none\"\n[[server.tls]]\nlisten = \"127.0.0.1:0\"\n\
         certificates = [{{ cert = \"{}\", key = \"{}\" }}]\n",
        cert.display(),
        key.display()
    );
    let cfg = base_config(dir.path(), up.addr, &extra).replacen(
        "[server]\n",
        &format!("[server]\n{server}"),
        1,
    );
    (Fluxgate::start_with(dir, &cfg), c.cert.der().to_vec())
}

/// An HTTPS GET of `/public` on a fresh connection: the status.
fn https_status(addr: SocketAddr, cert: &[u8]) -> u16 {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(CertificateDer::from(cert.to_vec())).unwrap();
    let cfg = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    let conn =
        rustls::ClientConnection::new(Arc::new(cfg), ServerName::try_from("api.test").unwrap())
            .unwrap();
    let tcp = TcpStream::connect(addr).unwrap();
    tcp.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut s = rustls::StreamOwned::new(conn, tcp);
    s.write_all(b"GET /public HTTP/1.1\r\nHost: api.test\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut buf = Vec::new();
    let _ = s.read_to_end(&mut buf);
    parse_response(&buf).status
}

/// A connection from the loopback address `src` that never says anything.
fn silent_from(src: &str, to: SocketAddr) -> TcpStream {
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
    s
}

/// Polls a metric until it reaches `want` (at most 10 s); its last value.
fn metric_reaches(fg: &Fluxgate, series: &str, want: f64) -> f64 {
    let deadline = monotonic_now() + Duration::from_secs(10);
    loop {
        let v = fg.metric(series);
        if v >= want || monotonic_now() > deadline {
            return v;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn a_tls_handshake_flood_from_one_ip_is_capped_before_tls_and_does_not_starve_others() {
    let up = Upstream::start();
    // A long head deadline, so that only the cap (not the handshake deadline) can close the
    // flood's connections while the test looks.
    let (fg, cert) = start_tls(&up, "max_connections_per_ip = 2\nhead_timeout = \"60s\"\n");
    let tls = fg.tls[0];
    // 127.0.0.2 opens six connections and never sends a ClientHello.
    let _flood: Vec<TcpStream> = (0..6).map(|_| silent_from("127.0.0.2", tls)).collect();
    let series = "fluxgate_connections_closed_total{reason=\"per_ip_cap\"}";
    assert_eq!(
        metric_reaches(&fg, series, 4.0),
        4.0,
        "all but two handshakes from one address are refused before TLS"
    );
    // Another client completes its handshake and is served.
    assert_eq!(https_status(tls, &cert), 200);
    assert_eq!(up.count(), 1);
}

#[test]
fn a_tls_handshake_that_never_finishes_is_cut_off_at_the_head_deadline() {
    let up = Upstream::start();
    let (fg, _) = start_tls(&up, "head_timeout = \"1s\"\n");
    let mut s = silent_from("127.0.0.1", fg.tls[0]);
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut buf = [0u8; 16];
    assert!(
        matches!(s.read(&mut buf), Ok(0)),
        "the silent connection was closed by the server"
    );
    let series = "fluxgate_connections_closed_total{reason=\"tls_handshake_timeout\"}";
    assert_eq!(metric_reaches(&fg, series, 1.0), 1.0);
}

#[test]
fn a_failed_tls_handshake_is_counted_and_not_logged_as_an_error() {
    let up = Upstream::start();
    let (fg, cert) = start_tls(&up, "");
    // Plain HTTP on the TLS port: rustls answers with an alert and the connection ends.
    let mut s = TcpStream::connect(fg.tls[0]).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(b"GET /public HTTP/1.1\r\nHost: api.test\r\n\r\n")
        .unwrap();
    let mut buf = Vec::new();
    let _ = s.read_to_end(&mut buf);
    assert!(!buf.starts_with(b"HTTP/"), "no HTTP answer without TLS");
    assert_eq!(
        metric_reaches(
            &fg,
            "fluxgate_connections_closed_total{reason=\"tls_handshake_failed\"}",
            1.0
        ),
        1.0
    );
    // A request afterwards is logged (so the log is being written) ...
    assert_eq!(https_status(fg.tls[0], &cert), 200);
    let log = fg.wait_log("fluxgate::access");
    // ... and nothing before it was an ERROR: pingora logged each failed handshake at ERROR.
    let errors: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("\"level\":\"ERROR\""))
        .collect();
    assert!(errors.is_empty(), "{errors:#?}");
}
