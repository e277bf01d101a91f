//! TLS hardening through the real binary (issue 18 item 4): `Strict-Transport-Security` on
//! every answer over a TLS listener that sets it (upstream answers, denials, fluxgate's own
//! answers, HTTP/1.1 and HTTP/2) and never over plain HTTP; HSTS settings refused with the key
//! named; OCSP responses stapled byte for byte and re-read when their file changes.

use crate::common::*;
use crate::config_check::check;
use crate::transport::{cert, client, tls_config, tls_connect};
use fluxgate::clock::monotonic_now;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use serde_json::json;
use std::io::{Read, Write};
use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

const WEB: &str = "https://web.fluxer.app";
const POLICY: &str = "max-age=31536000; includeSubDomains";

/// One TLS listener with `hsts` (TOML, or empty for none) and one certificate for `a.test`
/// (with `ocsp_response` when given), beside the plain listener.
fn start(hsts: &str, ocsp: Option<&Path>, extra: &str) -> (Upstream, Fluxgate, Vec<u8>) {
    let up = Upstream::start();
    let dir = Arc::new(tempfile::tempdir().unwrap());
    let (c, k, der) = cert(dir.path(), "a", &["a.test"]);
    let ocsp = ocsp.map_or(String::new(), |p| {
        format!(", ocsp_response = \"{}\"", p.display())
    });
    let tls = format!(
        "[[server.tls]]\nlisten = \"127.0.0.1:0\"\n{hsts}\ncertificates = [{{ cert = \"{}\", key = \"{}\"{ocsp} }}]\n",
        c.display(),
        k.display()
    );
    let cfg = tls_config(dir.path(), up.addr, &tls, extra);
    let fg = Fluxgate::start_with(dir, &cfg);
    (up, fg, der)
}

/// `req` over TLS (HTTP/1.1) to `a.test`.
fn over_tls(addr: SocketAddr, root: &[u8], req: &Req) -> Resp {
    let roots: [&[u8]; 1] = [root];
    let mut s = tls_connect(addr, client(&roots, rustls::ALL_VERSIONS, &[]), "a.test").unwrap();
    s.write_all(&req.bytes(addr)).unwrap();
    let mut buf = Vec::new();
    let _ = s.read_to_end(&mut buf);
    parse_response(&buf)
}

/// Every `Strict-Transport-Security` header of an answer.
fn hsts_of(r: &Resp) -> Vec<&str> {
    r.headers
        .iter()
        .filter(|(k, _)| k.eq_ignore_ascii_case("strict-transport-security"))
        .map(|(_, v)| v.as_str())
        .collect()
}

fn preflight() -> Req {
    Req::new("OPTIONS", "/users/@me")
        .header("origin", WEB)
        .header("access-control-request-method", "PATCH")
}

#[test]
fn hsts_is_on_every_answer_over_tls_and_replaces_the_upstreams() {
    let cors = format!("[csrf]\nallowed_origins = [\"{WEB}\"]\n");
    let (up, fg, root) = start(
        "hsts = { max_age = \"365d\", include_subdomains = true }",
        None,
        &cors,
    );
    let tls = fg.tls[0];
    let (tok, _) = fg.create_session(json!({"user_id": "42", "kind": "session"}));
    // An upstream answer; the upstream's own (weaker) policy is replaced, not doubled.
    let admitted = Req::get("/users/@me")
        .header("authorization", &tok)
        .header("x-upstream-reply", "Strict-Transport-Security: max-age=0");
    let r = over_tls(tls, &root, &admitted);
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(hsts_of(&r), [POLICY]);
    // A denial.
    let r = over_tls(tls, &root, &Req::get("/users/@me"));
    r.denial(401, "UNAUTHORIZED");
    assert_eq!(hsts_of(&r), [POLICY]);
    // fluxgate's own answer (a preflight answered at the edge).
    let r = over_tls(tls, &root, &preflight());
    assert_eq!(r.status, 204, "{}", r.text());
    assert_eq!(hsts_of(&r), [POLICY]);
    // A failure after admission (the upstream is too slow): 504 from fluxgate.
    let slow = Req::get("/slow").header("authorization", &tok);
    let r = over_tls(tls, &root, &slow);
    assert_eq!(r.status, 504, "{}", r.text());
    assert_eq!(hsts_of(&r), [POLICY]);
    // The edge's own answer to a head it refuses before pingora parses it: 431.
    let oversized = format!(
        "GET /users/@me HTTP/1.1\r\nHost: a.test\r\nX-Big: {}\r\n\r\n",
        "b".repeat(200 * 1024)
    );
    let roots: [&[u8]; 1] = [&root];
    let mut s = tls_connect(tls, client(&roots, rustls::ALL_VERSIONS, &[]), "a.test").unwrap();
    let _ = s.write_all(oversized.as_bytes());
    let mut buf = Vec::new();
    let _ = s.read_to_end(&mut buf);
    let r = parse_response(&buf);
    r.denial(431, "REQUEST_HEADER_FIELDS_TOO_LARGE");
    assert_eq!(hsts_of(&r), [POLICY]);

    // SECURITY: never over plain HTTP, even from the same process and config.
    let mut s = std::net::TcpStream::connect(fg.proxy).unwrap();
    let _ = s.write_all(oversized.as_bytes());
    let mut buf = Vec::new();
    let _ = s.read_to_end(&mut buf);
    let r = parse_response(&buf);
    r.denial(431, "REQUEST_HEADER_FIELDS_TOO_LARGE");
    assert!(hsts_of(&r).is_empty(), "{:?}", r.headers);
    for req in [Req::get("/users/@me"), preflight()] {
        let r = req.send(fg.proxy);
        assert!(r.status == 401 || r.status == 204, "{}", r.status);
        assert!(hsts_of(&r).is_empty(), "{:?}", r.headers);
    }
    let r = Req::get("/users/@me")
        .header("authorization", &tok)
        .send(fg.proxy);
    assert_eq!(r.status, 200);
    assert!(hsts_of(&r).is_empty(), "{:?}", r.headers);
    assert!(up.count() >= 2);
}

#[test]
fn hsts_is_sent_over_http2_too() {
    let (_up, fg, root) = start(
        "hsts = { max_age = \"730d\", include_subdomains = true, preload = true }",
        None,
        "",
    );
    let roots: [&[u8]; 1] = [&root];
    let cfg = client(&roots, rustls::ALL_VERSIONS, &[b"h2"]);
    let addr = fg.tls[0];
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let (version, status, hsts) = rt.block_on(async move {
        let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
        let tls = tokio_rustls::TlsConnector::from(cfg)
            .connect(ServerName::try_from("a.test").unwrap(), tcp)
            .await
            .unwrap();
        let (mut send, conn) = hyper::client::conn::http2::handshake(
            hyper_util::rt::TokioExecutor::new(),
            hyper_util::rt::TokioIo::new(tls),
        )
        .await
        .unwrap();
        tokio::spawn(conn);
        let req = hyper::Request::get("https://a.test/users/@me")
            .body(http_body_util::Empty::<bytes::Bytes>::new())
            .unwrap();
        let resp = send.send_request(req).await.unwrap();
        let hsts: Vec<String> = resp
            .headers()
            .get_all("strict-transport-security")
            .iter()
            .map(|v| v.to_str().unwrap().to_string())
            .collect();
        (resp.version(), resp.status().as_u16(), hsts)
    });
    assert_eq!((version, status), (http::Version::HTTP_2, 401));
    assert_eq!(hsts, ["max-age=63072000; includeSubDomains; preload"]);
}

#[test]
fn a_tls_listener_without_hsts_sends_none_and_passes_the_upstreams() {
    let (_up, fg, root) = start("", None, "");
    let r = over_tls(fg.tls[0], &root, &Req::get("/users/@me"));
    r.denial(401, "UNAUTHORIZED");
    assert!(hsts_of(&r).is_empty(), "{:?}", r.headers);
}

/// A complete config with one TLS listener whose `hsts` and certificate entry are given.
fn config_with(dir: &Path, hsts: &str, cert_extra: &str) -> std::path::PathBuf {
    let (c, k, _) = cert(dir, "a", &["a.test"]);
    let tls = format!(
        "[[server.tls]]\nlisten = \"127.0.0.1:0\"\n{hsts}\ncertificates = [{{ cert = \"{}\", key = \"{}\"{cert_extra} }}]\n",
        c.display(),
        k.display()
    );
    let up: SocketAddr = "127.0.0.1:9".parse().unwrap();
    let path = dir.join("fluxgate.toml");
    std::fs::write(&path, tls_config(dir, up, &tls, "")).unwrap();
    path
}

#[test]
fn hsts_settings_browsers_or_the_preload_list_would_refuse_are_refused_with_the_key_named() {
    let dir = tempfile::tempdir().unwrap();
    for (hsts, key, why) in [
        (
            "hsts = { max_age = \"365d\", preload = true }",
            "server.tls[0].hsts.preload",
            "include_subdomains",
        ),
        (
            "hsts = { max_age = \"30d\", include_subdomains = true, preload = true }",
            "server.tls[0].hsts.preload",
            "365d",
        ),
        (
            "hsts = { max_age = \"3650d\" }",
            "server.tls[0].hsts.max_age",
            "730d",
        ),
        (
            "hsts = { max_age = \"1500ms\" }",
            "server.tls[0].hsts.max_age",
            "whole seconds",
        ),
        (
            "hsts = { max_age = \"365d\", include_subdomain = true }",
            "server.tls[0].hsts.include_subdomain",
            "unknown key",
        ),
    ] {
        let (code, _, err) = check(&config_with(dir.path(), hsts, ""));
        assert_ne!(code, 0, "{hsts} was accepted");
        assert!(
            err.lines().any(|l| l.contains(key) && l.contains(why)),
            "{hsts}: no line names {key} with {why:?}:\n{err}"
        );
    }
    // What is valid: the preload list's minimum, and max-age=0 to make browsers forget.
    for hsts in [
        "hsts = { max_age = \"365d\", include_subdomains = true, preload = true }",
        "hsts = { max_age = \"0s\" }",
    ] {
        let (code, _, err) = check(&config_with(dir.path(), hsts, ""));
        assert_eq!(code, 0, "{hsts}: {err}");
    }
}

#[test]
fn an_unreadable_or_empty_ocsp_file_is_refused_with_the_key_named() {
    let dir = tempfile::tempdir().unwrap();
    let empty = dir.path().join("empty.der");
    std::fs::write(&empty, b"").unwrap();
    let pem = dir.path().join("ocsp.pem");
    std::fs::write(&pem, b"-----BEGIN OCSP RESPONSE-----\nMAMKAQA=\n").unwrap();
    let key = "server.tls[0].certificates[0].ocsp_response";
    for (file, why) in [
        (dir.path().join("missing.der"), "cannot read OCSP response"),
        (empty, "is empty"),
        (pem, "not a DER OCSP response"),
    ] {
        let extra = format!(", ocsp_response = \"{}\"", file.display());
        let (code, _, err) = check(&config_with(dir.path(), "", &extra));
        assert_ne!(code, 0, "{} was accepted", file.display());
        assert!(
            err.lines().any(|l| l.contains(key) && l.contains(why)),
            "no line names {key} with {why:?}:\n{err}"
        );
    }
}

/// Accepts any certificate and records the OCSP response stapled to it (signatures are still
/// checked, so the handshake is real).
#[derive(Debug)]
struct StapleRecorder {
    stapled: Mutex<Option<Vec<u8>>>,
    provider: rustls::crypto::CryptoProvider,
}

impl ServerCertVerifier for StapleRecorder {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        *self.stapled.lock().unwrap() = Some(ocsp_response.to_vec());
        Ok(ServerCertVerified::assertion())
    }
    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }
    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }
    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// The OCSP response stapled to a handshake with `version` (empty: none).
fn stapled(addr: SocketAddr, version: &'static rustls::SupportedProtocolVersion) -> Vec<u8> {
    let rec = Arc::new(StapleRecorder {
        stapled: Mutex::new(None),
        provider: rustls::crypto::ring::default_provider(),
    });
    let cfg = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_protocol_versions(&[version])
    .unwrap()
    .dangerous()
    .with_custom_certificate_verifier(rec.clone())
    .with_no_client_auth();
    tls_connect(addr, Arc::new(cfg), "a.test").unwrap();
    let got = rec.stapled.lock().unwrap().take();
    got.expect("the certificate was never verified")
}

/// A DER SEQUENCE of `n` content bytes (an OCSP response's shape; its contents are the CA's).
fn der_blob(n: usize, fill: u8) -> Vec<u8> {
    let mut v = vec![0x30, 0x82, (n >> 8) as u8, n as u8];
    v.extend((0..n).map(|i| fill ^ (i as u8)));
    v
}

#[test]
fn the_ocsp_response_file_is_stapled_byte_for_byte_and_reread_when_it_changes() {
    let files = tempfile::tempdir().unwrap();
    let ocsp = files.path().join("a.ocsp.der");
    let first = der_blob(1500, 0x5a);
    std::fs::write(&ocsp, &first).unwrap();
    let (_up, fg, _root) = start("", Some(&ocsp), "");
    let addr = fg.tls[0];
    for v in [&rustls::version::TLS12, &rustls::version::TLS13] {
        assert_eq!(stapled(addr, v), first, "{v:?}");
    }
    // The operator's cron writes a fresh response: it is stapled after the next check.
    let second = der_blob(1700, 0xa5);
    let tmp = files.path().join("a.ocsp.der.tmp");
    std::fs::write(&tmp, &second).unwrap();
    std::fs::rename(&tmp, &ocsp).unwrap();
    fg.signal("HUP");
    let deadline = monotonic_now() + Duration::from_secs(10);
    while stapled(addr, &rustls::version::TLS13) != second {
        assert!(
            monotonic_now() < deadline,
            "the new OCSP response was never stapled"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn a_certificate_without_an_ocsp_file_staples_nothing() {
    let (_up, fg, _root) = start("", None, "");
    assert!(stapled(fg.tls[0], &rustls::version::TLS13).is_empty());
}

/// The suite a client negotiates when it prefers the suites in `order` (weakest first).
fn negotiated(
    addr: SocketAddr,
    root: &[u8],
    version: &'static rustls::SupportedProtocolVersion,
    order: Vec<rustls::SupportedCipherSuite>,
) -> rustls::CipherSuite {
    let mut store = rustls::RootCertStore::empty();
    store.add(CertificateDer::from(root.to_vec())).unwrap();
    let provider = rustls::crypto::CryptoProvider {
        cipher_suites: order,
        ..rustls::crypto::ring::default_provider()
    };
    let cfg = rustls::ClientConfig::builder_with_provider(Arc::new(provider))
        .with_protocol_versions(&[version])
        .unwrap()
        .with_root_certificates(store)
        .with_no_client_auth();
    let s = tls_connect(addr, Arc::new(cfg), "a.test").unwrap();
    s.conn.negotiated_cipher_suite().unwrap().suite()
}

#[test]
fn a_client_cannot_steer_the_handshake_to_a_weaker_suite_than_the_servers_choice() {
    use rustls::crypto::ring::cipher_suite as cs;
    let (_up, fg, root) = start("", None, "");
    let addr = fg.tls[0];
    let tls12 = vec![
        cs::TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
        cs::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
        cs::TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
    ];
    assert_eq!(
        negotiated(addr, &root, &rustls::version::TLS12, tls12),
        rustls::CipherSuite::TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384
    );
    let tls13 = vec![
        cs::TLS13_CHACHA20_POLY1305_SHA256,
        cs::TLS13_AES_128_GCM_SHA256,
        cs::TLS13_AES_256_GCM_SHA384,
    ];
    assert_eq!(
        negotiated(addr, &root, &rustls::version::TLS13, tls13),
        rustls::CipherSuite::TLS13_AES_256_GCM_SHA384
    );
}

/// Clients that send an IP address as SNI (wrk, some libraries) make rustls warn once per
/// handshake; at the default level that would let anyone write a log line per connection.
#[test]
fn a_client_sending_an_ip_as_sni_cannot_write_a_log_line_per_connection() {
    let (_up, fg, _der) = start("", None, "");
    for _ in 0..3 {
        let out = std::process::Command::new("openssl")
            .args(["s_client", "-connect"])
            .arg(fg.tls[0].to_string())
            .args(["-servername", "127.0.0.1"])
            .stdin(std::process::Stdio::null())
            .output()
            .expect("openssl s_client");
        assert!(
            String::from_utf8_lossy(&out.stdout).contains("BEGIN CERTIFICATE"),
            "the handshake completed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    // A later line, as a barrier: the log is written in order.
    fg.send(&Req::get("/public").header("x-request-id", "after-the-handshakes"));
    let log = fg.wait_log("after-the-handshakes");
    assert!(!log.contains("Illegal SNI"), "{log}");
}
