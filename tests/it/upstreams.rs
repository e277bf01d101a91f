//! Several upstream services behind one fluxgate, through the real binary: the Fluxer
//! self-host layout (per-route upstreams, prefix stripping checked byte for byte, `set_host`,
//! a WebSocket gateway) and the config's refusals. Balancing, health and reload are in
//! `upstream_balancing.rs`.

use crate::common::{ADMIN_SECRET, Fluxgate, Req, Upstream};
use fluxgate::clock::monotonic_now;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// The top of every config here: listeners, store, admin; the upstreams and routes follow.
pub(crate) fn head(dir: &std::path::Path) -> String {
    format!(
        r#"
[server]
listen = ["127.0.0.1:0"]
threads = 1
grace_period = "1s"
shutdown_timeout = "1s"
upgrade_socket = "{dir}/upgrade.sock"

[sessions.embedded]
path = "{dir}/sessions.redb"

[admin]
listen = "127.0.0.1:0"
secret = {{ value = "{ADMIN_SECRET}" }}

[logging]
format = "json"
level = "info"
"#,
        dir = dir.display()
    )
}

pub(crate) fn start(body: &str) -> Fluxgate {
    let dir = Arc::new(tempfile::tempdir().unwrap());
    let cfg = format!("{}{body}", head(dir.path()));
    Fluxgate::start_with(dir, &cfg)
}

/// Polls `cond` every 20 ms for up to `secs`; panics with `what` when it never holds.
pub(crate) fn wait_until(secs: u64, what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = monotonic_now() + Duration::from_secs(secs);
    while monotonic_now() < deadline {
        if cond() {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    panic!("timed out waiting for: {what}");
}

/// A WebSocket echo upstream that records each handshake's request target.
struct Gateway {
    addr: SocketAddr,
    targets: Arc<Mutex<Vec<String>>>,
}

fn gateway() -> Gateway {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    let targets: Arc<Mutex<Vec<String>>> = Arc::default();
    let t = targets.clone();
    std::thread::spawn(move || {
        for s in l.incoming() {
            let Ok(s) = s else { continue };
            let t = t.clone();
            std::thread::spawn(move || {
                #[allow(clippy::result_large_err, reason = "tungstenite's callback signature")]
                let cb = |req: &tungstenite::handshake::server::Request,
                          resp: tungstenite::handshake::server::Response| {
                    t.lock().unwrap().push(req.uri().to_string());
                    Ok(resp)
                };
                let Ok(mut ws) = tungstenite::accept_hdr(s, cb) else {
                    return;
                };
                while let Ok(m) = ws.read() {
                    if (m.is_text() || m.is_binary()) && ws.send(m).is_err() {
                        return;
                    }
                }
            });
        }
    });
    Gateway { addr, targets }
}

/// The five services of a Fluxer self-host.
struct Layout {
    api: Upstream,
    gateway: Gateway,
    media: Upstream,
    admin: Upstream,
    web: Upstream,
}

fn layout_config(l: &Layout) -> String {
    format!(
        r#"
[[upstream]]
name = "api"
addresses = ["{api}"]

[[upstream]]
name = "gateway"
addresses = ["{gateway}"]

[[upstream]]
name = "media"
addresses = ["{media}"]

[[upstream]]
name = "admin"
addresses = ["{admin}"]

[[upstream]]
name = "web"
addresses = ["{web}"]

[routing.default]
upstream = "web"
auth = "none"

[[route]]
path = "/api/*"
upstream = "api"
strip_prefix = "/api"
auth = "none"

[[route]]
path = "/gateway"
upstream = "gateway"
auth = "none"

[[route]]
path = "/media/*"
upstream = "media"
strip_prefix = "/media"
set_host = "media.internal"
auth = "none"
allow_in_path = ["encoded_controls"]

[[route]]
path = "/admin"
upstream = "admin"
auth = "none"

[[route]]
path = "/admin/*"
upstream = "admin"
auth = "none"
"#,
        api = l.api.addr,
        gateway = l.gateway.addr,
        media = l.media.addr,
        admin = l.admin.addr,
        web = l.web.addr,
    )
}

/// Sends `target` and returns the single target the named service received for it, checking
/// that no other service received anything.
fn routed(fg: &Fluxgate, l: &Layout, target: &str) -> (&'static str, String) {
    for u in [&l.api, &l.media, &l.admin, &l.web] {
        u.clear();
    }
    let r = fg.send(&Req::get(target));
    assert_eq!(r.status, 200, "{target}: {}", r.text());
    let got: Vec<(&'static str, String)> = [
        ("api", &l.api),
        ("media", &l.media),
        ("admin", &l.admin),
        ("web", &l.web),
    ]
    .into_iter()
    .flat_map(|(n, u)| u.requests().into_iter().map(move |r| (n, r.target)))
    .collect();
    assert_eq!(got.len(), 1, "{target} reached {got:?}");
    got.into_iter().next().unwrap()
}

#[test]
fn the_fluxer_self_host_layout_sends_each_prefix_to_its_service_stripped_byte_for_byte() {
    let l = Layout {
        api: Upstream::start(),
        gateway: gateway(),
        media: Upstream::start(),
        admin: Upstream::start(),
        web: Upstream::start(),
    };
    let fg = start(&layout_config(&l));
    for (sent, service, seen) in [
        ("/api/v1/users/@me", "api", "/v1/users/@me"),
        (
            "/api/v1/channels/1/messages?limit=50&q=%41b",
            "api",
            "/v1/channels/1/messages?limit=50&q=%41b",
        ),
        // Matched under the version prefix: the version stays, the prefix goes.
        ("/v1/api/users/@me", "api", "/v1/users/@me"),
        // An encoded spelling of the prefix is the same route; the upstream gets the rest as sent.
        ("/%61pi/v1/x%41", "api", "/v1/x%41"),
        (
            "/media/attachments/1/2/a%20b.png",
            "media",
            "/attachments/1/2/a%20b.png",
        ),
        ("/admin", "admin", "/admin"),
        ("/admin/users/5", "admin", "/admin/users/5"),
        // Not under the prefix: the web app, unchanged.
        ("/apix/y", "web", "/apix/y"),
        ("/api", "web", "/api"),
        ("/", "web", "/"),
        ("/channels/@me", "web", "/channels/@me"),
    ] {
        assert_eq!(routed(&fg, &l, sent), (service, seen.to_string()), "{sent}");
    }
    // set_host: the media service sees its own name; the client's Host is still told.
    l.media.clear();
    fg.send(&Req::get("/media/x.png"));
    let m = l.media.last();
    assert_eq!(m.get("host").as_deref(), Some("media.internal"));
    assert_eq!(m.get("x-forwarded-host"), Some(fg.proxy.to_string()));
    // Without set_host the client's Host goes through.
    l.api.clear();
    fg.send(&Req::get("/api/v1/x"));
    assert_eq!(l.api.last().get("host"), Some(fg.proxy.to_string()));
    // The gateway is a WebSocket, proxied both ways.
    let (mut ws, _) = tungstenite::connect(format!("ws://{}/gateway", fg.proxy)).unwrap();
    ws.send(tungstenite::Message::text("hello")).unwrap();
    assert_eq!(ws.read().unwrap().into_text().unwrap().as_str(), "hello");
    ws.close(None).unwrap();
    assert_eq!(
        *l.gateway.targets.lock().unwrap(),
        vec!["/gateway".to_string()]
    );
}

#[test]
fn path_tricks_on_a_stripped_route_are_refused_before_any_service() {
    let l = Layout {
        api: Upstream::start(),
        gateway: gateway(),
        media: Upstream::start(),
        admin: Upstream::start(),
        web: Upstream::start(),
    };
    let fg = start(&layout_config(&l));
    for target in [
        "/api/../admin",
        "/api/%2e%2e/admin",
        "/api//admin",
        "/api%2fadmin",
    ] {
        let r = fg.send(&Req::get(target));
        assert_eq!(r.status, 400, "{target}: {}", r.text());
    }
    let total: usize = [&l.api, &l.media, &l.admin, &l.web]
        .iter()
        .map(|u| u.count())
        .sum();
    assert_eq!(total, 0);
}

#[test]
fn check_config_names_the_key_and_line_of_each_upstream_mistake() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.toml");
    std::fs::write(
        &path,
        "[[upstream]]\nname = \"api\"\naddresses = []\n\n[routing.default]\nupstream = \"api\"\n\n[[route]]\npath = \"/x/*\"\nupstream = \"nope\"\nstrip_prefix = \"x\"\n",
    )
    .unwrap();
    let out = std::process::Command::new(crate::common::bin())
        .arg("check-config")
        .arg(&path)
        .output()
        .unwrap();
    assert_ne!(out.status.code(), Some(0));
    let text =
        String::from_utf8_lossy(&out.stderr).to_string() + &String::from_utf8_lossy(&out.stdout);
    for want in [
        "upstream[0].addresses (line 3",
        "route[0].upstream (line 10",
        "route[0].strip_prefix (line 11",
    ] {
        assert!(text.contains(want), "missing {want:?} in:\n{text}");
    }
}

#[test]
fn the_guides_several_services_layout_passes_check_config_without_warnings() {
    let guide = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/guide.md"),
    )
    .unwrap();
    let block = guide
        .split("## Several services behind one fluxgate")
        .nth(1)
        .and_then(|s| s.split("```toml\n").nth(1))
        .and_then(|b| b.split("```").next())
        .expect("a ```toml block in the guide's several-services section");
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("layout.toml");
    std::fs::write(
        &path,
        format!(
            "[sessions.embedded]\npath = \"{}/s.redb\"\n[admin]\nlisten = \"127.0.0.1:0\"\n{block}",
            dir.path().display()
        ),
    )
    .unwrap();
    let out = std::process::Command::new(crate::common::bin())
        .arg("check-config")
        .arg(&path)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(!err.contains("no route sends requests"), "{err}");
}
