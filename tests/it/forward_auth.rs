//! Forward-auth mode through real nginx (`auth_request`), configured by the shipped
//! `deploy/forward-auth/nginx.conf`, in front of the recording upstream; and the decision
//! endpoint asked directly the way Traefik and Caddy ask it.

use crate::common::{Fluxgate, Req, Upstream, free_port};
use serde_json::json;
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

const ROUTES: &str = r#"
[forward_auth]
listen = "127.0.0.1:0"

[[rate_limits.bucket]]
name = "tight"
limit = 1
window = "1m"
key = "ip"

[[route]]
methods = ["GET"]
path = "/public"
auth = "none"

[[route]]
methods = ["GET"]
path = "/limited"
auth = "none"
rate_limits = ["tight"]
"#;

/// nginx started from the shipped recipe; stopped on drop.
struct Nginx {
    child: Child,
    addr: SocketAddr,
    _dir: tempfile::TempDir,
}

impl Drop for Nginx {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn nginx_bin() -> Option<&'static str> {
    ["/usr/sbin/nginx", "/usr/bin/nginx"]
        .into_iter()
        .find(|p| Path::new(p).exists())
}

/// Renders `deploy/forward-auth/nginx.conf` with the test's addresses and starts nginx.
/// Missing nginx fails the test: this is the integration the feature promises.
fn nginx(upstream: SocketAddr, fluxgate: SocketAddr) -> Nginx {
    let bin = nginx_bin().expect("nginx is not installed (scripts/prereqs test installs it)");
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let recipe = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/forward-auth/nginx.conf"),
    )
    .unwrap()
    .replace("__LISTEN__", &format!("127.0.0.1:{port}"))
    .replace("__UPSTREAM__", &upstream.to_string())
    .replace("__FLUXGATE__", &fluxgate.to_string());
    std::fs::write(dir.path().join("fluxgate.conf"), recipe).unwrap();
    let d = dir.path().display();
    std::fs::write(
        dir.path().join("nginx.conf"),
        format!(
            "master_process off;\nworker_processes 1;\nerror_log {d}/error.log warn;\npid {d}/nginx.pid;\n\
             events {{ worker_connections 256; }}\n\
             http {{ access_log off; client_body_temp_path {d}/body; proxy_temp_path {d}/proxy;\n\
             fastcgi_temp_path {d}/fcgi; uwsgi_temp_path {d}/uwsgi; scgi_temp_path {d}/scgi;\n\
             include {d}/fluxgate.conf; }}\n"
        ),
    )
    .unwrap();
    let child = Command::new(bin)
        .arg("-p")
        .arg(dir.path())
        .arg("-c")
        .arg(dir.path().join("nginx.conf"))
        .args(["-g", "daemon off;"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let addr: SocketAddr = ([127, 0, 0, 1], port).into();
    let deadline = fluxgate::clock::monotonic_now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(addr).is_err() {
        assert!(
            fluxgate::clock::monotonic_now() < deadline,
            "nginx did not start: {}",
            std::fs::read_to_string(dir.path().join("error.log")).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    Nginx {
        child,
        addr,
        _dir: dir,
    }
}

fn setup(extra: &str) -> (Upstream, Fluxgate, Nginx) {
    let up = Upstream::start();
    let fg = Fluxgate::start(up.addr, &format!("{ROUTES}{extra}"));
    let nx = nginx(up.addr, fg.forward_auth.expect("forward-auth listener"));
    (up, fg, nx)
}

#[test]
fn identity_reaches_the_upstream_through_nginx_and_a_spoofed_user_id_never_does() {
    let (up, fg, nx) = setup("");
    let (token, sid) =
        fg.create_session(json!({"user_id": "1234567890", "kind": "session", "lifetime": "1h"}));
    let r = Req::get("/me?x=1")
        .header("Authorization", &format!("Bearer {token}"))
        .header("X-Fluxgate-User-Id", "1")
        .header("X-Fluxgate-Scopes", "admin")
        .header("X-Forwarded-Uri", "/public")
        .send(nx.addr);
    assert_eq!(r.status, 200, "{}", r.text());
    let seen = up.last();
    // SECURITY: the session has no scopes, so fluxgate's answer to nginx has no scopes header
    // at all; the recipe's proxy_set_header still drops the client's copy.
    assert_eq!(seen.get("x-fluxgate-scopes"), None);
    assert_eq!(seen.target, "/me?x=1");
    assert_eq!(
        seen.get("x-fluxgate-user-id").as_deref(),
        Some("1234567890")
    );
    assert_eq!(seen.get("x-fluxgate-session-id"), Some(sid));
    assert_eq!(seen.get("x-fluxgate-auth-kind").as_deref(), Some("session"));
    assert_eq!(
        seen.get("x-fluxgate-client-ip").as_deref(),
        Some("127.0.0.1")
    );
    assert_eq!(seen.get("x-forwarded-for").as_deref(), Some("127.0.0.1"));
    assert!(seen.get("x-request-id").is_some());
    // The client's own Authorization still reaches the API.
    assert_eq!(seen.get("authorization"), Some(format!("Bearer {token}")));

    // Anonymous on a public route: the client's copy is removed, not passed on.
    let r = Req::get("/public")
        .header("X-Fluxgate-User-Id", "1")
        .send(nx.addr);
    assert_eq!(r.status, 200);
    let seen = up.last();
    assert_eq!(seen.get("x-fluxgate-user-id"), None);
    assert_eq!(
        seen.get("x-fluxgate-auth-kind").as_deref(),
        Some("anonymous")
    );
}

#[test]
fn a_denial_reaches_the_client_with_fluxgates_status_and_json_and_nothing_is_forwarded() {
    let (up, fg, nx) = setup("");
    let r = Req::get("/me")
        .header("X-Fluxgate-User-Id", "1")
        .send(nx.addr);
    r.denial(401, "UNAUTHORIZED");
    // One decision per request: the error page writes the answer it already has.
    assert_eq!(
        fg.metric(
            r#"fluxgate_forward_auth_decisions_total{outcome="denied",reason="no_credential"}"#
        ),
        1.0
    );
    assert!(r.header("x-fluxgate-denial-body").is_none());
    assert_eq!(
        r.header("www-authenticate"),
        Some(r#"Bearer realm="fluxgate""#)
    );
    let r = Req::get("/me")
        .header(
            "Authorization",
            "Bearer flx_notavalidtokennotavalidtokennotava",
        )
        .send(nx.addr);
    r.denial(401, "UNAUTHORIZED");
    assert_eq!(up.count(), 0, "a denied request reached the upstream");
}

#[test]
fn a_rate_limited_request_gets_429_with_retry_after_through_nginx() {
    let (up, _fg, nx) = setup("");
    assert_eq!(Req::get("/limited").send(nx.addr).status, 200);
    assert_eq!(up.count(), 1);
    let r = Req::get("/limited").send(nx.addr);
    let body = r.denial(429, "RATE_LIMITED");
    assert!(body["retry_after"].as_f64().is_some(), "{body}");
    let retry: u64 = r.header("retry-after").unwrap().parse().unwrap();
    assert!(retry >= 1);
    assert_eq!(up.count(), 1, "a limited request reached the upstream");
}

#[test]
fn forwarded_method_and_uri_from_an_untrusted_peer_are_refused_and_counted() {
    let up = Upstream::start();
    let fg = Fluxgate::start(
        up.addr,
        &ROUTES.replace(
            "listen = \"127.0.0.1:0\"",
            "listen = \"127.0.0.1:0\"\ntrusted_edges = [\"192.0.2.0/24\"]",
        ),
    );
    let r = Req::get("/")
        .header("X-Original-Method", "GET")
        .header("X-Original-URI", "/public")
        .send(fg.forward_auth.unwrap());
    r.denial(400, "BAD_REQUEST");
    assert_eq!(
        fg.metric(
            r#"fluxgate_forward_auth_decisions_total{outcome="refused",reason="untrusted_edge"}"#
        ),
        1.0
    );
}

#[test]
fn a_missing_duplicated_absolute_or_dot_segment_original_uri_is_refused() {
    let (_up, fg, _nx) = setup("");
    let fa = fg.forward_auth.unwrap();
    let ask = |uri: Option<&str>, extra: Option<(&str, &str)>| {
        let mut r = Req::get("/").header("X-Original-Method", "GET");
        if let Some(u) = uri {
            r = r.header("X-Original-URI", u);
        }
        if let Some((k, v)) = extra {
            r = r.header(k, v);
        }
        r.send(fa)
    };
    ask(None, None).denial(400, "BAD_REQUEST");
    ask(Some("/public"), Some(("X-Forwarded-Uri", "/me"))).denial(400, "BAD_REQUEST");
    ask(Some("http://evil.example/public"), None).denial(400, "BAD_REQUEST");
    ask(Some("/public/../me"), None).denial(400, "BAD_REQUEST");
    ask(Some("/public%2f..%2fme"), None).denial(400, "BAD_REQUEST");
    assert_eq!(ask(Some("/public"), None).status, 200);
}

#[test]
fn traefik_and_caddy_headers_are_understood_and_answered_with_the_plan() {
    let (_up, fg, _nx) = setup("");
    let (token, _) = fg.create_session(json!({"user_id": "42", "kind": "session"}));
    // What Traefik's ForwardAuth (and Caddy's forward_auth) send: the original request in
    // X-Forwarded-*, the client's headers as they came.
    let r = Req::get("/ignored")
        .header("X-Forwarded-Method", "GET")
        .header("X-Forwarded-Uri", "/me")
        .header("X-Forwarded-Proto", "https")
        .header("X-Forwarded-Host", "api.example")
        .header("X-Forwarded-For", "203.0.113.5")
        .header("Authorization", &format!("Bearer {token}"))
        .send(fg.forward_auth.unwrap());
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.header("x-fluxgate-user-id"), Some("42"));
    assert_eq!(r.header("x-fluxgate-client-ip"), Some("203.0.113.5"));
    assert_eq!(r.header("x-forwarded-for"), Some("203.0.113.5"));
    assert_eq!(r.header("x-forwarded-proto"), Some("https"));
    assert_eq!(r.header("x-forwarded-host"), Some("api.example"));
    // Every identity header is named, empty where it does not apply: Caddy's copy_headers and
    // Envoy would otherwise invent a value or keep the client's.
    assert_eq!(r.header("x-fluxgate-scopes"), Some(""));
    assert_eq!(r.header("x-fluxgate-assertion"), Some(""));
    assert!(r.text().is_empty());
    // nginx's convention (X-Original-URI) gets only the headers that apply: nginx treats a
    // missing header as empty, and the answer stays short.
    let r = Req::get("/")
        .header("X-Original-Method", "GET")
        .header("X-Original-URI", "/me")
        .header("Authorization", &format!("Bearer {token}"))
        .send(fg.forward_auth.unwrap());
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.header("x-fluxgate-user-id"), Some("42"));
    assert_eq!(r.header("x-fluxgate-scopes"), None);
    assert_eq!(r.header("x-fluxgate-assertion"), None);
    let r = Req::get("/")
        .header("X-Forwarded-Method", "GET")
        .header("X-Forwarded-Uri", "/me")
        .send(fg.forward_auth.unwrap());
    r.denial(401, "UNAUTHORIZED");
    assert_eq!(
        fg.metric(
            r#"fluxgate_forward_auth_decisions_total{outcome="denied",reason="no_credential"}"#
        ),
        1.0
    );
}

/// Caddy started from the shipped `deploy/forward-auth/Caddyfile`; stopped on drop.
struct Caddy {
    child: Child,
    addr: SocketAddr,
    _dir: tempfile::TempDir,
}

impl Drop for Caddy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Missing Caddy fails the test: this is the integration the feature promises.
fn caddy(upstream: SocketAddr, fluxgate: SocketAddr) -> Caddy {
    let bin = ["/usr/bin/caddy", "/usr/local/bin/caddy"]
        .into_iter()
        .find(|p| Path::new(p).exists())
        .expect("caddy is not installed (scripts/prereqs test installs it)");
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let recipe = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/forward-auth/Caddyfile"),
    )
    .unwrap()
    .replace("__LISTEN__", &format!("127.0.0.1:{port}"))
    .replace("__UPSTREAM__", &upstream.to_string())
    .replace("__FLUXGATE__", &fluxgate.to_string());
    let file = dir.path().join("Caddyfile");
    std::fs::write(&file, recipe).unwrap();
    let log = std::fs::File::create(dir.path().join("caddy.log")).unwrap();
    let child = Command::new(bin)
        .args(["run", "--adapter", "caddyfile", "--config"])
        .arg(&file)
        .env("HOME", dir.path())
        .env("XDG_DATA_HOME", dir.path())
        .env("XDG_CONFIG_HOME", dir.path())
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .unwrap();
    let addr: SocketAddr = ([127, 0, 0, 1], port).into();
    let deadline = fluxgate::clock::monotonic_now() + Duration::from_secs(15);
    while std::net::TcpStream::connect(addr).is_err() {
        assert!(
            fluxgate::clock::monotonic_now() < deadline,
            "caddy did not start: {}",
            std::fs::read_to_string(dir.path().join("caddy.log")).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    Caddy {
        child,
        addr,
        _dir: dir,
    }
}

#[test]
fn through_real_caddy_identity_arrives_spoofing_does_not_and_denials_keep_fluxgates_json() {
    let up = Upstream::start();
    let fg = Fluxgate::start(up.addr, ROUTES);
    let cd = caddy(up.addr, fg.forward_auth.expect("forward-auth listener"));
    let (token, _) = fg.create_session(json!({"user_id": "77", "kind": "session"}));
    let r = Req::get("/me?x=1")
        .header("Authorization", &token)
        .header("X-Fluxgate-User-Id", "1")
        .send(cd.addr);
    assert_eq!(r.status, 200, "{}", r.text());
    let seen = up.last();
    assert_eq!(seen.target, "/me?x=1");
    assert_eq!(seen.all("x-fluxgate-user-id"), vec!["77".to_string()]);
    assert_eq!(seen.get("x-fluxgate-auth-kind").as_deref(), Some("session"));
    // Anonymous on a public route: the client's copy is gone; Caddy passes fluxgate's empty
    // value on as an empty header, never a user id.
    let r = Req::get("/public")
        .header("X-Fluxgate-User-Id", "1")
        .send(cd.addr);
    assert_eq!(r.status, 200, "{}", r.text());
    let seen = up.last();
    assert!(
        seen.all("x-fluxgate-user-id").iter().all(|v| v.is_empty()),
        "{:?}",
        seen.all("x-fluxgate-user-id")
    );
    assert_eq!(
        seen.get("x-fluxgate-auth-kind").as_deref(),
        Some("anonymous")
    );
    let before = up.count();
    // An underscore spelling (read as the real header by CGI-style servers) is refused.
    Req::get("/me")
        .header("Authorization", &token)
        .header("X_Fluxgate_User_Id", "1")
        .send(cd.addr)
        .denial(400, "BAD_REQUEST");
    // Denials pass through Caddy as fluxgate wrote them, and nothing is forwarded.
    let r = Req::get("/me").send(cd.addr);
    r.denial(401, "UNAUTHORIZED");
    assert_eq!(
        r.header("www-authenticate"),
        Some(r#"Bearer realm="fluxgate""#)
    );
    assert_eq!(Req::get("/limited").send(cd.addr).status, 200);
    let r = Req::get("/limited").send(cd.addr);
    r.denial(429, "RATE_LIMITED");
    assert!(r.header("retry-after").is_some());
    assert_eq!(
        up.count(),
        before + 1,
        "only the admitted /limited reached the upstream"
    );
}

#[test]
fn envoy_ext_authz_requests_are_decided_by_their_own_method_and_path() {
    let up = Upstream::start();
    let fg = Fluxgate::start(
        up.addr,
        &ROUTES.replace(
            "listen = \"127.0.0.1:0\"",
            "listen = \"127.0.0.1:0\"\nenvoy_path_prefix = \"/ext_authz\"",
        ),
    );
    let fa = fg.forward_auth.unwrap();
    let (token, _) = fg.create_session(json!({"user_id": "88", "kind": "session"}));
    // What Envoy's HTTP ext_authz service sends: the original method and path under
    // path_prefix, the client's headers, its own X-Forwarded-For and -Proto.
    let r = Req::new("DELETE", "/ext_authz/me?x=1")
        .header("Authorization", &token)
        .header("X-Forwarded-For", "198.51.100.9")
        .header("X-Forwarded-Proto", "https")
        .send(fa);
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.header("x-fluxgate-user-id"), Some("88"));
    assert_eq!(r.header("x-fluxgate-client-ip"), Some("198.51.100.9"));
    Req::new("GET", "/ext_authz/me")
        .send(fa)
        .denial(401, "UNAUTHORIZED");
    assert_eq!(Req::get("/ext_authz/public").send(fa).status, 200);
    // Outside the prefix: no original request at all.
    Req::get("/public").send(fa).denial(400, "BAD_REQUEST");
    assert_eq!(up.count(), 0, "the decision endpoint never proxies");
}

/// Reads from `s` until the peer closes or `secs` pass; returns what arrived.
fn read_all_within(s: &mut std::net::TcpStream, secs: u64) -> String {
    use std::io::Read;
    s.set_read_timeout(Some(Duration::from_secs(secs))).unwrap();
    let mut out = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        match s.read(&mut chunk) {
            Ok(0) | Err(_) => break,
            Ok(n) => out.extend_from_slice(&chunk[..n]),
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[test]
fn pipelined_decisions_are_answered_in_order_on_one_connection() {
    use std::io::Write;
    let (_up, fg, _nx) = setup("");
    let mut s = std::net::TcpStream::connect(fg.forward_auth.unwrap()).unwrap();
    let ask = |uri: &str, last: bool| {
        format!(
            "GET /_auth HTTP/1.1\r\nHost: fa\r\nX-Original-Method: GET\r\nX-Original-URI: {uri}\r\n{}\r\n",
            if last { "Connection: close\r\n" } else { "" }
        )
    };
    // Three heads in one write: public (200), private without a credential (401), public.
    let all = format!(
        "{}{}{}",
        ask("/public", false),
        ask("/me", false),
        ask("/public", true)
    );
    s.write_all(all.as_bytes()).unwrap();
    let out = read_all_within(&mut s, 10);
    let statuses: Vec<&str> = out
        .match_indices("HTTP/1.1 ")
        .map(|(i, _)| &out[i + 9..i + 12])
        .collect();
    assert_eq!(statuses, ["200", "401", "200"], "{out}");
    assert!(out.contains("\"code\":\"UNAUTHORIZED\""), "{out}");
}

#[test]
fn a_head_smuggled_in_a_body_is_never_decided() {
    use std::io::Write;
    let (_up, fg, _nx) = setup("");
    let mut s = std::net::TcpStream::connect(fg.forward_auth.unwrap()).unwrap();
    // SECURITY: the body is never read, so the connection closes after the first answer
    // instead of reading the body's bytes as a second (public-looking) request.
    let smuggled =
        "GET /_auth HTTP/1.1\r\nX-Original-Method: GET\r\nX-Original-URI: /public\r\n\r\n";
    let first = format!(
        "POST /_auth HTTP/1.1\r\nX-Original-Method: GET\r\nX-Original-URI: /me\r\nContent-Length: {}\r\n\r\n{smuggled}",
        smuggled.len()
    );
    s.write_all(first.as_bytes()).unwrap();
    let out = read_all_within(&mut s, 10);
    assert_eq!(out.matches("HTTP/1.1 ").count(), 1, "{out}");
    assert!(out.starts_with("HTTP/1.1 401"), "{out}");
    assert!(out.contains("connection: close"), "{out}");
}

#[test]
fn an_oversized_or_broken_head_gets_the_contracts_json_and_is_counted() {
    use std::io::Write;
    let (_up, fg, _nx) = setup("");
    let fa = fg.forward_auth.unwrap();
    let mut s = std::net::TcpStream::connect(fa).unwrap();
    let big = format!(
        "GET /_auth HTTP/1.1\r\nX-Original-Method: GET\r\nX-Original-URI: /public\r\nX-Pad: {}\r\n\r\n",
        "a".repeat(70 * 1024)
    );
    let _ = s.write_all(big.as_bytes());
    let out = read_all_within(&mut s, 10);
    assert!(
        out.starts_with("HTTP/1.1 431"),
        "{}",
        &out[..out.len().min(300)]
    );
    assert!(
        out.contains("\"code\":\"REQUEST_HEADER_FIELDS_TOO_LARGE\""),
        "{out}"
    );

    let mut s = std::net::TcpStream::connect(fa).unwrap();
    s.write_all(b"GET /_auth HTTP/1.1\r\nBad Header: x\r\n\r\n")
        .unwrap();
    let out = read_all_within(&mut s, 10);
    assert!(out.starts_with("HTTP/1.1 400"), "{out}");
    assert!(out.contains("\"code\":\"BAD_REQUEST\""), "{out}");
    assert_eq!(
        fg.metric(
            r#"fluxgate_forward_auth_decisions_total{outcome="refused",reason="head_too_large"}"#
        ),
        1.0
    );
    assert_eq!(
        fg.metric(
            r#"fluxgate_forward_auth_decisions_total{outcome="refused",reason="unparseable_request"}"#
        ),
        1.0
    );
}
