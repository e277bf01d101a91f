//! TLS (SNI, versions, reload), HTTP/2 over ALPN, WebSockets and TLS to the upstream, through
//! the real binary.

use crate::common::*;
use fluxgate::clock::monotonic_now;
use rustls::pki_types::{CertificateDer, ServerName};
use serde_json::json;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// A self-signed certificate for `names`, written as `<file>.pem` and `<file>.key`.
pub(super) fn cert(dir: &Path, file: &str, names: &[&str]) -> (PathBuf, PathBuf, Vec<u8>) {
    let c =
        rcgen::generate_simple_self_signed(names.iter().map(|s| s.to_string()).collect::<Vec<_>>())
            .unwrap();
    let (cp, kp) = (
        dir.join(format!("{file}.pem")),
        dir.join(format!("{file}.key")),
    );
    std::fs::write(&cp, c.cert.pem()).unwrap();
    std::fs::write(&kp, c.signing_key.serialize_pem()).unwrap();
    (cp, kp, c.cert.der().to_vec())
}

/// A client trusting exactly `roots`, limited to `versions`, offering `alpn`.
pub(super) fn client(
    roots: &[&[u8]],
    versions: &[&'static rustls::SupportedProtocolVersion],
    alpn: &[&[u8]],
) -> Arc<rustls::ClientConfig> {
    let mut store = rustls::RootCertStore::empty();
    for r in roots {
        store.add(CertificateDer::from(r.to_vec())).unwrap();
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut c = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(versions)
        .unwrap()
        .with_root_certificates(store)
        .with_no_client_auth();
    c.alpn_protocols = alpn.iter().map(|a| a.to_vec()).collect();
    Arc::new(c)
}

/// A TLS connection to `addr` as `sni`: the peer's leaf certificate, the negotiated protocol
/// version and ALPN, and the stream.
pub(super) fn tls_connect(
    addr: SocketAddr,
    cfg: Arc<rustls::ClientConfig>,
    sni: &str,
) -> Result<rustls::StreamOwned<rustls::ClientConnection, TcpStream>, String> {
    let conn = rustls::ClientConnection::new(cfg, ServerName::try_from(sni.to_string()).unwrap())
        .map_err(|e| e.to_string())?;
    let tcp = TcpStream::connect(addr).unwrap();
    tcp.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut s = rustls::StreamOwned::new(conn, tcp);
    while s.conn.is_handshaking() {
        s.conn.complete_io(&mut s.sock).map_err(|e| e.to_string())?;
    }
    Ok(s)
}

fn leaf(s: &rustls::StreamOwned<rustls::ClientConnection, TcpStream>) -> Vec<u8> {
    s.conn.peer_certificates().unwrap()[0].to_vec()
}

pub(super) fn tls_config(dir: &Path, up: SocketAddr, tls: &str, extra: &str) -> String {
    base_config(dir, up, extra).replace("[upstream]", &format!("{tls}\n[upstream]"))
}

pub(super) fn https_get(
    s: &mut rustls::StreamOwned<rustls::ClientConnection, TcpStream>,
    path: &str,
    headers: &str,
) -> Resp {
    s.write_all(
        format!("GET {path} HTTP/1.1\r\nHost: a\r\nConnection: close\r\n{headers}\r\n").as_bytes(),
    )
    .unwrap();
    let mut buf = Vec::new();
    let _ = s.read_to_end(&mut buf);
    parse_response(&buf)
}

struct TlsSetup {
    up: Upstream,
    fg: Fluxgate,
    tls: SocketAddr,
    a: Vec<u8>,
    b: Vec<u8>,
    a_paths: (PathBuf, PathBuf),
}

fn tls_setup() -> TlsSetup {
    let up = Upstream::start();
    let dir = Arc::new(tempfile::tempdir().unwrap());
    let (ac, ak, a) = cert(dir.path(), "a", &["a.test"]);
    let (bc, bk, b) = cert(dir.path(), "b", &["b.test", "*.b.test"]);
    let tls = format!(
        "[[server.tls]]\nlisten = \"127.0.0.1:0\"\ncertificates = [{{ cert = \"{}\", key = \"{}\" }}, {{ cert = \"{}\", key = \"{}\" }}]\n",
        ac.display(),
        ak.display(),
        bc.display(),
        bk.display()
    );
    let cfg = tls_config(dir.path(), up.addr, &tls, "");
    let fg = Fluxgate::start_with(dir, &cfg);
    let tls = tls_addr(&fg);
    TlsSetup {
        up,
        fg,
        tls,
        a,
        b,
        a_paths: (ac, ak),
    }
}

/// The TLS listener's address, from the admin API's view of the announce line.
fn tls_addr(fg: &Fluxgate) -> SocketAddr {
    fg.tls[0]
}

#[test]
fn each_certificate_is_served_for_its_sni_name() {
    let t = tls_setup();
    let both: [&[u8]; 2] = [&t.a, &t.b];
    let cfg = client(&both, rustls::ALL_VERSIONS, &[]);
    let s = tls_connect(t.tls, cfg.clone(), "a.test").unwrap();
    assert_eq!(leaf(&s), t.a);
    let mut s = tls_connect(t.tls, cfg.clone(), "api.b.test").unwrap();
    assert_eq!(leaf(&s), t.b);
    let r = https_get(&mut s, "/users/@me", "");
    r.denial(401, "UNAUTHORIZED");
    // A name no certificate covers gets the first (default) one, which the client rejects.
    let only_b: [&[u8]; 1] = [&t.b];
    assert!(tls_connect(t.tls, client(&only_b, rustls::ALL_VERSIONS, &[]), "c.test").is_err());
    assert_eq!(t.up.count(), 0);
}

#[test]
fn tls_1_2_and_1_3_are_both_served() {
    let t = tls_setup();
    let a: [&[u8]; 1] = [&t.a];
    for (v, want) in [
        (&rustls::version::TLS12, rustls::ProtocolVersion::TLSv1_2),
        (&rustls::version::TLS13, rustls::ProtocolVersion::TLSv1_3),
    ] {
        let mut s = tls_connect(t.tls, client(&a, &[v], &[]), "a.test").unwrap();
        assert_eq!(s.conn.protocol_version(), Some(want));
        let (tok, _) =
            t.fg.create_session(json!({"user_id": "42", "kind": "session"}));
        let r = https_get(&mut s, "/users/@me", &format!("Authorization: {tok}\r\n"));
        assert_eq!(r.status, 200, "{}", r.text());
        assert_eq!(t.up.last().get("x-fluxgate-user-id").as_deref(), Some("42"));
    }
}

#[test]
fn a_plain_http_request_on_the_tls_port_is_refused() {
    let t = tls_setup();
    let x = send_raw(t.tls, b"GET /users/@me HTTP/1.1\r\nHost: a\r\n\r\n");
    assert_ne!(x.status, 200);
    assert_eq!(t.up.count(), 0);
}

#[test]
fn certificates_are_reloaded_on_sighup_without_a_restart() {
    let t = tls_setup();
    let dir = tempfile::tempdir().unwrap();
    let (nc, nk, new) = cert(dir.path(), "new", &["a.test"]);
    std::fs::copy(&nc, &t.a_paths.0).unwrap();
    std::fs::copy(&nk, &t.a_paths.1).unwrap();
    t.fg.signal("HUP");
    let roots: [&[u8]; 2] = [&t.a, &new];
    let cfg = client(&roots, rustls::ALL_VERSIONS, &[]);
    let deadline = monotonic_now() + Duration::from_secs(5);
    loop {
        let s = tls_connect(t.tls, cfg.clone(), "a.test").unwrap();
        if leaf(&s) == new {
            break;
        }
        assert!(
            monotonic_now() < deadline,
            "the new certificate was never served"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(
        t.fg.metric("fluxgate_config_reloads_total{result=\"success\",what=\"certificates\"}")
            >= 1.0
    );
    // A broken pair on disk is refused and the working certificate stays.
    std::fs::write(&t.a_paths.1, "not a key").unwrap();
    t.fg.signal("HUP");
    t.fg.wait_log("TLS certificate reload failed");
    let s = tls_connect(t.tls, cfg, "a.test").unwrap();
    assert_eq!(leaf(&s), new);
}

#[test]
fn http2_is_negotiated_by_alpn_and_authenticated_like_http1() {
    let t = tls_setup();
    let (tok, _) =
        t.fg.create_session(json!({"user_id": "77", "kind": "session"}));
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let a: [&[u8]; 1] = [&t.a];
    let cfg = client(&a, rustls::ALL_VERSIONS, &[b"h2", b"http/1.1"]);
    let addr = t.tls;
    let (alpn, statuses) = rt.block_on(async move {
        let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
        let tls = tokio_rustls::TlsConnector::from(cfg)
            .connect(ServerName::try_from("a.test").unwrap(), tcp)
            .await
            .unwrap();
        let alpn = tls.get_ref().1.alpn_protocol().map(|p| p.to_vec());
        let (mut send, conn) = hyper::client::conn::http2::handshake(
            hyper_util::rt::TokioExecutor::new(),
            hyper_util::rt::TokioIo::new(tls),
        )
        .await
        .unwrap();
        tokio::spawn(conn);
        let mut out = Vec::new();
        for auth in [Some(tok.as_str()), None] {
            let mut req = hyper::Request::get("https://a.test/users/@me")
                .header("x-fluxgate-user-id", "spoofed");
            if let Some(a) = auth {
                req = req.header("authorization", a);
            }
            let resp = send
                .send_request(
                    req.body(http_body_util::Empty::<bytes::Bytes>::new())
                        .unwrap(),
                )
                .await
                .unwrap();
            out.push((resp.version(), resp.status().as_u16()));
        }
        (alpn, out)
    });
    assert_eq!(alpn.as_deref(), Some(&b"h2"[..]));
    assert_eq!(statuses[0], (http::Version::HTTP_2, 200));
    assert_eq!(statuses[1], (http::Version::HTTP_2, 401));
    let seen = t.up.last();
    assert_eq!(seen.get("x-fluxgate-user-id").as_deref(), Some("77"));
    // Accepted over TLS, with the HTTP/2 authority as the host.
    assert_eq!(seen.get("x-forwarded-proto").as_deref(), Some("https"));
    assert_eq!(seen.get("x-forwarded-host").as_deref(), Some("a.test"));
    assert_eq!(t.up.count(), 1);
}

/// Each handshake's headers, as received.
type Handshakes = Arc<Mutex<Vec<Vec<(String, String)>>>>;

/// A WebSocket echo upstream that records each handshake's headers.
struct EchoUpstream {
    addr: SocketAddr,
    handshakes: Handshakes,
}

fn echo_upstream() -> EchoUpstream {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    let handshakes: Handshakes = Arc::default();
    let h = handshakes.clone();
    std::thread::spawn(move || {
        for s in l.incoming() {
            let Ok(s) = s else { continue };
            let h = h.clone();
            std::thread::spawn(move || {
                #[allow(clippy::result_large_err, reason = "tungstenite's callback signature")]
                let cb = |req: &tungstenite::handshake::server::Request,
                          resp: tungstenite::handshake::server::Response| {
                    h.lock().unwrap().push(
                        req.headers()
                            .iter()
                            .map(|(k, v)| (k.to_string(), v.to_str().unwrap_or("").to_string()))
                            .collect(),
                    );
                    Ok(resp)
                };
                let Ok(mut ws) = tungstenite::accept_hdr(s, cb) else {
                    return;
                };
                while let Ok(m) = ws.read() {
                    if m.is_text() || m.is_binary() {
                        if ws.send(m).is_err() {
                            return;
                        }
                    } else if m.is_close() {
                        return;
                    }
                }
            });
        }
    });
    EchoUpstream { addr, handshakes }
}

fn ws_connect(
    proxy: SocketAddr,
    headers: &[(&str, &str)],
) -> Result<tungstenite::WebSocket<TcpStream>, tungstenite::Error> {
    use tungstenite::client::IntoClientRequest;
    let mut req = format!("ws://{proxy}/gateway")
        .into_client_request()
        .unwrap();
    for (k, v) in headers {
        req.headers_mut().insert(
            http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
            v.parse().unwrap(),
        );
    }
    let s = TcpStream::connect(proxy).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    tungstenite::client(req, s)
        .map(|(ws, _)| ws)
        .map_err(|e| match e {
            tungstenite::HandshakeError::Failure(e) => e,
            tungstenite::HandshakeError::Interrupted(_) => panic!("interrupted handshake"),
        })
}

fn ws_setup() -> (EchoUpstream, Fluxgate) {
    let up = echo_upstream();
    let fg = Fluxgate::start(
        up.addr,
        "[csrf]\nallowed_origins = [\"https://app.test\"]\n\n[[route]]\npath = \"/gateway\"\nkinds = [\"session\"]\n",
    );
    (up, fg)
}

fn denied_status(e: tungstenite::Error) -> u16 {
    match e {
        tungstenite::Error::Http(r) => r.status().as_u16(),
        other => panic!("expected an HTTP refusal, got {other:?}"),
    }
}

#[test]
fn a_websocket_with_a_session_is_proxied_both_ways_with_identity() {
    let (up, fg) = ws_setup();
    let (tok, _) = fg.create_session(json!({"user_id": "9001", "kind": "session"}));
    let cookie = format!("fluxer_session={tok}");
    let mut ws = ws_connect(
        fg.proxy,
        &[
            ("cookie", &cookie),
            ("origin", "https://app.test"),
            ("x-fluxgate-user-id", "1"),
        ],
    )
    .unwrap();
    for m in ["hello", "second frame"] {
        ws.send(tungstenite::Message::text(m)).unwrap();
        assert_eq!(ws.read().unwrap().into_text().unwrap().as_str(), m);
    }
    ws.close(None).unwrap();
    let hs = up.handshakes.lock().unwrap()[0].clone();
    let get = |n: &str| {
        hs.iter()
            .filter(|(k, _)| k.eq_ignore_ascii_case(n))
            .map(|(_, v)| v.clone())
            .collect::<Vec<_>>()
    };
    assert_eq!(get("x-fluxgate-user-id"), vec!["9001".to_string()]);
    assert!(get("cookie").iter().all(|c| !c.contains(&tok)), "{hs:?}");
    assert_eq!(get("upgrade"), vec!["websocket".to_string()]);
}

#[test]
fn a_websocket_without_a_session_is_refused_before_the_upstream() {
    let (up, fg) = ws_setup();
    assert_eq!(denied_status(ws_connect(fg.proxy, &[]).unwrap_err()), 401);
    assert!(up.handshakes.lock().unwrap().is_empty());
}

#[test]
fn cross_site_websocket_hijacking_with_a_cookie_is_refused() {
    let (up, fg) = ws_setup();
    let (tok, _) = fg.create_session(json!({"user_id": "9001", "kind": "session"}));
    let cookie = format!("fluxer_session={tok}");
    for origin in ["https://evil.example", "null"] {
        let e = ws_connect(fg.proxy, &[("cookie", &cookie), ("origin", origin)]).unwrap_err();
        assert_eq!(denied_status(e), 403, "{origin}");
    }
    let e = ws_connect(fg.proxy, &[("cookie", &cookie)]).unwrap_err();
    assert_eq!(denied_status(e), 403, "no origin");
    assert!(up.handshakes.lock().unwrap().is_empty());
    // A token in Authorization is not ambient; no origin needed.
    let auth = tok.to_string();
    let mut ws = ws_connect(fg.proxy, &[("authorization", &auth)]).unwrap();
    ws.send(tungstenite::Message::text("ok")).unwrap();
    assert_eq!(ws.read().unwrap().into_text().unwrap().as_str(), "ok");
}

/// A hyper HTTPS upstream answering 200 with its certificate for `name`.
fn tls_upstream(dir: &Path, name: &str) -> (SocketAddr, PathBuf, tokio::runtime::Runtime) {
    let (cp, kp, _) = cert(dir, "upstream", &[name]);
    use rustls::pki_types::pem::PemObject;
    let certs = vec![CertificateDer::from_pem_file(&cp).unwrap()];
    let key = rustls::pki_types::PrivateKeyDer::from_pem_file(&kp).unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut sc = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .unwrap();
    sc.alpn_protocols = vec![b"http/1.1".to_vec()];
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(sc));
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let l = rt
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .unwrap();
    let addr = l.local_addr().unwrap();
    rt.spawn(async move {
        loop {
            let Ok((s, _)) = l.accept().await else {
                continue;
            };
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(s).await else {
                    return;
                };
                let svc = hyper::service::service_fn(|_req| async {
                    Ok::<_, std::convert::Infallible>(hyper::Response::new(
                        http_body_util::Full::new(bytes::Bytes::from_static(b"over tls")),
                    ))
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(tls), svc)
                    .await;
            });
        }
    });
    (addr, cp, rt)
}

#[test]
fn tls_to_the_upstream_checks_its_name_against_the_configured_ca() {
    let dir = tempfile::tempdir().unwrap();
    let (addr, ca, _rt) = tls_upstream(dir.path(), "upstream.test");
    let routes = "[[route]]\npath = \"/public\"\nauth = \"none\"\n";
    let start = |name: &str| {
        let d = Arc::new(tempfile::tempdir().unwrap());
        let cfg = base_config(d.path(), addr, routes).replace(
            "read_timeout = \"1s\"\n",
            &format!(
                "read_timeout = \"1s\"\ntls = true\ntls_server_name = \"{name}\"\nca_file = \"{}\"\n",
                ca.display()
            ),
        );
        Fluxgate::start_with(d, &cfg)
    };
    let fg = start("upstream.test");
    let r = fg.send(&Req::get("/public"));
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.text(), "over tls");
    // The certificate does not name what fluxgate expects: never sent in the clear, 502.
    let fg = start("other.test");
    fg.send(&Req::get("/public")).denial(502, "BAD_GATEWAY");
}

#[test]
fn http2_stream_floods_are_capped_by_the_advertised_stream_limit() {
    // Rapid-reset and stream floods depend on a server accepting unbounded concurrent streams;
    // fluxgate advertises `h2_max_concurrent_streams` and enforces it.
    let up = Upstream::start();
    let dir = Arc::new(tempfile::tempdir().unwrap());
    let (ac, ak, a) = cert(dir.path(), "a", &["a.test"]);
    let tls = format!(
        "[[server.tls]]\nlisten = \"127.0.0.1:0\"\ncertificates = [{{ cert = \"{}\", key = \"{}\" }}]\n",
        ac.display(),
        ak.display(),
    );
    let cfg = tls_config(
        dir.path(),
        up.addr,
        &tls,
        "[[route]]\npath = \"/public\"\nauth = \"none\"\n",
    )
    .replace(
        "threads = 1\n",
        "threads = 1\nh2_max_concurrent_streams = 7\nmax_header_bytes = 8192\n",
    );
    let fg = Fluxgate::start_with(dir, &cfg);
    let addr = tls_addr(&fg);
    let roots: [&[u8]; 1] = [&a];
    let cfg = client(&roots, rustls::ALL_VERSIONS, &[b"h2"]);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let (advertised, big_header) = rt.block_on(async move {
        let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
        let tls = tokio_rustls::TlsConnector::from(cfg)
            .connect(ServerName::try_from("a.test").unwrap(), tcp)
            .await
            .unwrap();
        let (send, mut conn) = h2::client::handshake(tls).await.unwrap();
        // Let the server's SETTINGS arrive.
        let mut send = send.ready().await.unwrap();
        let req = http::Request::get("https://a.test/public")
            .body(())
            .unwrap();
        let (resp, _) = send.send_request(req, true).unwrap();
        let drive = async {
            let _ = (&mut conn).await;
        };
        let advertised;
        tokio::select! {
            r = resp => { r.unwrap(); advertised = conn.max_concurrent_send_streams(); }
            _ = drive => panic!("the connection ended"),
        }
        // A header section over the limit is refused, never forwarded.
        let big = http::Request::get("https://a.test/public")
            .header("x-big", "b".repeat(16 * 1024))
            .body(())
            .unwrap();
        let mut send = send.ready().await.unwrap();
        let (resp, _) = send.send_request(big, true).unwrap();
        let outcome = tokio::select! {
            r = resp => r.map(|r| r.status().as_u16()).map_err(|e| e.to_string()),
            _ = async { let _ = (&mut conn).await; } => Err("connection closed".into()),
        };
        (advertised, outcome)
    });
    assert_eq!(advertised, 7);
    assert!(
        !matches!(big_header, Ok(200)),
        "an oversized header section was accepted: {big_header:?}"
    );
    assert_eq!(up.count(), 1);
}

#[test]
fn a_quiet_websocket_outlives_read_timeout_and_is_closed_after_its_idle_timeout() {
    let up = echo_upstream();
    let routes = "[[route]]\npath = \"/gateway\"\nkinds = [\"session\"]\n";
    let start = |idle: Option<&str>| {
        let d = Arc::new(tempfile::tempdir().unwrap());
        let mut cfg = base_config(d.path(), up.addr, routes);
        if let Some(idle) = idle {
            cfg = cfg.replace(
                "read_timeout = \"1s\"\n",
                &format!("read_timeout = \"1s\"\nwebsocket_idle_timeout = \"{idle}\"\n"),
            );
        }
        Fluxgate::start_with(d, &cfg)
    };
    // upstream.read_timeout is 1 s, but a tunnel is not a request waiting for its answer.
    let fg = start(None);
    let (tok, _) = fg.create_session(json!({"user_id": "9002", "kind": "session"}));
    let mut ws = ws_connect(fg.proxy, &[("authorization", &tok)]).unwrap();
    std::thread::sleep(Duration::from_millis(1600));
    ws.send(tungstenite::Message::text("still here")).unwrap();
    assert_eq!(
        ws.read().unwrap().into_text().unwrap().as_str(),
        "still here"
    );

    // With a 1 s idle timeout, a tunnel silent for longer is closed.
    let fg = start(Some("1s"));
    let (tok, _) = fg.create_session(json!({"user_id": "9002", "kind": "session"}));
    let mut ws = ws_connect(fg.proxy, &[("authorization", &tok)]).unwrap();
    ws.send(tungstenite::Message::text("hi")).unwrap();
    assert_eq!(ws.read().unwrap().into_text().unwrap().as_str(), "hi");
    std::thread::sleep(Duration::from_millis(2500));
    let after = ws
        .send(tungstenite::Message::text("too late"))
        .and_then(|_| ws.read());
    assert!(after.is_err(), "the idle tunnel stayed open: {after:?}");
}

fn h2_listener(keys: &str) -> (Upstream, Fluxgate, SocketAddr, Vec<u8>) {
    let up = Upstream::start();
    let dir = Arc::new(tempfile::tempdir().unwrap());
    let (ac, ak, a) = cert(dir.path(), "a", &["a.test"]);
    let tls = format!(
        "[[server.tls]]\nlisten = \"127.0.0.1:0\"\ncertificates = [{{ cert = \"{}\", key = \"{}\" }}]\n",
        ac.display(),
        ak.display(),
    );
    let cfg = tls_config(dir.path(), up.addr, &tls, "")
        .replace("threads = 1\n", &format!("threads = 1\n{keys}\n"));
    let fg = Fluxgate::start_with(dir, &cfg);
    let addr = tls_addr(&fg);
    (up, fg, addr, a)
}

#[test]
fn an_http2_connection_that_never_sends_its_preface_is_cut_off_at_the_head_deadline() {
    let (_up, fg, addr, a) = h2_listener("head_timeout = \"1s\"");
    let roots: [&[u8]; 1] = [&a];
    let mut s = tls_connect(
        addr,
        client(&roots, rustls::ALL_VERSIONS, &[b"h2"]),
        "a.test",
    )
    .unwrap();
    assert_eq!(s.conn.alpn_protocol(), Some(&b"h2"[..]));
    // Say nothing after the handshake.
    let mut buf = [0u8; 64];
    let cut = loop {
        match s.read(&mut buf) {
            Ok(0) => break true,
            Ok(_) => continue,
            Err(e) => {
                break !matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                );
            }
        }
    };
    assert!(cut, "a silent HTTP/2 connection stayed open");
    assert!(fg.metric("fluxgate_connections_closed_total{reason=\"head_timeout\"}") >= 1.0);
}

#[test]
fn an_idle_http2_connection_without_streams_is_closed_after_the_keepalive_timeout() {
    let (_up, _fg, addr, a) = h2_listener("keepalive_timeout = \"1s\"");
    let roots: [&[u8]; 1] = [&a];
    let cfg = client(&roots, rustls::ALL_VERSIONS, &[b"h2"]);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let ended = rt.block_on(async move {
        let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
        let tls = tokio_rustls::TlsConnector::from(cfg)
            .connect(ServerName::try_from("a.test").unwrap(), tcp)
            .await
            .unwrap();
        let (_send, conn) = h2::client::handshake(tls).await.unwrap();
        // The connection future ends when the server closes (GOAWAY or EOF).
        tokio::time::timeout(Duration::from_secs(6), conn)
            .await
            .is_ok()
    });
    assert!(ended, "an idle HTTP/2 connection stayed open");
}

#[test]
fn login_capture_works_for_an_http2_client() {
    // Login capture makes its own exchange: an HTTP/2 request (authority, no Host, no
    // Content-Length framing of its own) must reach the upstream as a well-formed HTTP/1.1 one.
    use crate::common::fluxer::{ALICE, Fluxer};
    let f = Fluxer::start();
    let dir = Arc::new(tempfile::tempdir().unwrap());
    let (ac, ak, a) = cert(dir.path(), "a", &["a.test"]);
    let tls = format!(
        "[[server.tls]]\nlisten = \"127.0.0.1:0\"\ncertificates = [{{ cert = \"{}\", key = \"{}\" }}]\n",
        ac.display(),
        ak.display(),
    );
    let extra = "[[route]]\nmethods = [\"POST\"]\npath = \"/auth/login\"\nauth = \"none\"\nrole = \"login\"\n";
    let cfg = tls_config(dir.path(), f.addr, &tls, extra)
        .replace("[upstream]", "[sessions]\nstore = \"backend\"\n[upstream]");
    let fg = Fluxgate::start_with(dir, &cfg);
    let addr = tls_addr(&fg);
    let roots: [&[u8]; 1] = [&a];
    let cfg = client(&roots, rustls::ALL_VERSIONS, &[b"h2"]);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let body = json!({"email": ALICE.email, "password": ALICE.password}).to_string();
    let (version, status, cookie) = rt.block_on(async move {
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
        let req = hyper::Request::post("https://a.test/auth/login")
            .header("content-type", "application/json")
            .body(http_body_util::Full::new(bytes::Bytes::from(body)))
            .unwrap();
        let resp = send.send_request(req).await.unwrap();
        let cookie = resp
            .headers()
            .get("set-cookie")
            .map(|v| v.to_str().unwrap().to_string());
        (resp.version(), resp.status().as_u16(), cookie)
    });
    assert_eq!((version, status), (http::Version::HTTP_2, 200));
    let cookie = cookie.expect("a session cookie");
    assert!(cookie.starts_with("fluxer_session=flx_"), "{cookie}");
    let seen = f.last();
    assert_eq!(seen.target, "/auth/login");
    assert_eq!(seen.get("host").as_deref(), Some("a.test"));
    let sent: serde_json::Value = serde_json::from_slice(&seen.body).unwrap();
    assert_eq!(sent["email"], ALICE.email);
}
