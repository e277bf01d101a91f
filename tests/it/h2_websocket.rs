//! WebSockets over HTTP/2 (RFC 8441 extended CONNECT), through the real binary with the `h2`
//! client over TLS: fluxgate does not advertise `SETTINGS_ENABLE_CONNECT_PROTOCOL`, so clients
//! open their WebSockets over HTTP/1.1; an extended CONNECT sent anyway is reset
//! (`PROTOCOL_ERROR`, as RFC 8441 §3 requires), reaches no upstream, and the connection's
//! other streams carry on; a plain `CONNECT` is 405 in the contract's JSON. Why:
//! docs/contract.md §2, "WebSockets".

use crate::common::*;
use rustls::pki_types::{CertificateDer, ServerName};
use std::sync::Arc;

const ROUTES: &str = r#"
[[route]]
path = "/public"
auth = "none"
"#;

/// fluxgate with one HTTP/2-capable TLS listener for `a.test`, and the certificate to trust.
fn start_tls(up: &Upstream) -> (Fluxgate, Vec<u8>) {
    let dir = Arc::new(tempfile::tempdir().unwrap());
    let c = rcgen::generate_simple_self_signed(vec!["a.test".to_string()]).unwrap();
    let (cp, kp) = (dir.path().join("a.pem"), dir.path().join("a.key"));
    std::fs::write(&cp, c.cert.pem()).unwrap();
    std::fs::write(&kp, c.signing_key.serialize_pem()).unwrap();
    let tls = format!(
        "[[server.tls]]\nlisten = \"127.0.0.1:0\"\ncertificates = [{{ cert = \"{}\", key = \"{}\" }}]\n",
        cp.display(),
        kp.display(),
    );
    let cfg = base_config(dir.path(), up.addr, ROUTES)
        .replace("[upstream]", &format!("{tls}\n[upstream]"));
    (Fluxgate::start_with(dir, &cfg), c.cert.der().to_vec())
}

fn connector(root: &[u8]) -> tokio_rustls::TlsConnector {
    let mut store = rustls::RootCertStore::empty();
    store.add(CertificateDer::from(root.to_vec())).unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut c = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(store)
        .with_no_client_auth();
    c.alpn_protocols = vec![b"h2".to_vec()];
    tokio_rustls::TlsConnector::from(Arc::new(c))
}

/// What an HTTP/2 client saw: whether extended CONNECT was advertised, how the extended
/// CONNECT ended, and the statuses of plain GETs before and after it.
struct Seen {
    advertised: bool,
    extended_connect: Result<u16, Option<h2::Reason>>,
    /// A plain CONNECT (a tunnel to another host): status and body.
    plain_connect: Result<(u16, String), Option<h2::Reason>>,
    before: u16,
    after: u16,
}

async fn try_h2_websocket(addr: std::net::SocketAddr, root: Vec<u8>) -> Seen {
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let tls = connector(&root)
        .connect(ServerName::try_from("a.test").unwrap(), tcp)
        .await
        .unwrap();
    assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
    let (send, conn) = h2::client::handshake(tls).await.unwrap();
    // The connection is driven in the background; each request waits for its own answer.
    let driver = tokio::spawn(async move {
        let _ = conn.await;
    });
    let get = |send: h2::client::SendRequest<bytes::Bytes>| async move {
        let mut send = send.ready().await.unwrap();
        let req = http::Request::get("https://a.test/public")
            .body(())
            .unwrap();
        let (resp, _) = send.send_request(req, true).unwrap();
        (resp.await.unwrap().status().as_u16(), send)
    };
    // The first answer comes after the server's SETTINGS.
    let (before, send) = get(send).await;
    let advertised = send.is_extended_connect_protocol_enabled();
    let mut ready = send.clone().ready().await.unwrap();
    let ws = http::Request::builder()
        .method(http::Method::CONNECT)
        .uri("https://a.test/public")
        .extension(h2::ext::Protocol::from_static("websocket"))
        .header("sec-websocket-version", "13")
        .body(())
        .unwrap();
    let (resp, _body) = ready.send_request(ws, false).unwrap();
    let extended_connect = match resp.await {
        Ok(r) => Ok(r.status().as_u16()),
        Err(e) => Err(e.reason()),
    };
    let mut ready = send.clone().ready().await.unwrap();
    let tunnel = http::Request::builder()
        .method(http::Method::CONNECT)
        .uri("evil.example:443")
        .body(())
        .unwrap();
    let (resp, _body) = ready.send_request(tunnel, false).unwrap();
    let plain_connect = match resp.await {
        Ok(r) => {
            let status = r.status().as_u16();
            let mut body = r.into_body();
            let mut text = Vec::new();
            while let Some(Ok(chunk)) = body.data().await {
                text.extend_from_slice(&chunk);
            }
            Ok((status, String::from_utf8_lossy(&text).into_owned()))
        }
        Err(e) => Err(e.reason()),
    };
    let (after, _) = get(send).await;
    driver.abort();
    Seen {
        advertised,
        extended_connect,
        plain_connect,
        before,
        after,
    }
}

#[test]
fn a_websocket_over_http2_is_refused_with_a_stream_reset_and_never_forwarded() {
    let up = Upstream::start();
    let (fg, root) = start_tls(&up);
    let addr = fg.tls[0];
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let seen = rt.block_on(try_h2_websocket(addr, root));
    // Not advertised: browsers open their WebSockets over HTTP/1.1 instead.
    assert!(
        !seen.advertised,
        "SETTINGS_ENABLE_CONNECT_PROTOCOL advertised"
    );
    // Sent anyway: the stream is reset as malformed, before any hook or upstream.
    assert_eq!(
        seen.extended_connect,
        Err(Some(h2::Reason::PROTOCOL_ERROR)),
        "an extended CONNECT was answered"
    );
    // A plain CONNECT reaches the pipeline and is refused in the contract's JSON.
    let (status, body) = seen.plain_connect.expect("an answer to a plain CONNECT");
    assert_eq!(status, 405);
    let body: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(body["code"], "METHOD_NOT_ALLOWED");
    // The connection's other streams are unaffected.
    assert_eq!((seen.before, seen.after), (200, 200));
    assert_eq!(up.count(), 2, "only the two GETs reached the upstream");
}
