//! Several upstream services behind one fluxgate, through the real binary: the Fluxer
//! self-host layout (per-route upstreams, prefix stripping checked byte for byte, `set_host`,
//! a WebSocket gateway), load balancing over replicas with health checks, passive ejection and
//! retries, consistent hashing, and reloading the upstream set.

use crate::common::{ADMIN_SECRET, Fluxgate, Req, Upstream, free_port, get};
use fluxgate::clock::monotonic_now;
use serde_json::json;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// The top of every config here: listeners, store, admin; the upstreams and routes follow.
fn head(dir: &std::path::Path) -> String {
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

fn start(body: &str) -> Fluxgate {
    let dir = Arc::new(tempfile::tempdir().unwrap());
    let cfg = format!("{}{body}", head(dir.path()));
    Fluxgate::start_with(dir, &cfg)
}

/// Polls `cond` every 20 ms for up to `secs`; panics with `what` when it never holds.
fn wait_until(secs: u64, what: &str, mut cond: impl FnMut() -> bool) {
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

/// Requests sent in a loop from another thread, each with the time it started.
struct Load {
    stop: Arc<AtomicBool>,
    results: Arc<Mutex<Vec<(std::time::Instant, u16)>>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Load {
    fn start(proxy: SocketAddr) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let results: Arc<Mutex<Vec<(std::time::Instant, u16)>>> = Arc::default();
        let (s, r) = (stop.clone(), results.clone());
        let thread = std::thread::spawn(move || {
            // Bounded: the test stops it, and it gives up after 60 s regardless.
            let deadline = monotonic_now() + Duration::from_secs(60);
            while !s.load(Ordering::Relaxed) && monotonic_now() < deadline {
                let t = monotonic_now();
                let status = Req::get("/load").send(proxy).status;
                r.lock().unwrap().push((t, status));
                std::thread::sleep(Duration::from_millis(5));
            }
        });
        Load {
            stop,
            results,
            thread: Some(thread),
        }
    }

    fn finish(mut self) -> Vec<(std::time::Instant, u16)> {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            t.join().unwrap();
        }
        self.results.lock().unwrap().clone()
    }
}

fn metric_with(fg: &Fluxgate, series: &str) -> Option<f64> {
    let body = get(fg.admin, "/metrics").unwrap().text();
    body.lines()
        .find_map(|l| l.strip_prefix(series).and_then(|v| v.trim().parse().ok()))
}

#[test]
fn a_killed_replica_is_ejected_by_its_health_check_no_request_fails_and_it_comes_back() {
    let a = Upstream::start();
    let b = Upstream::start();
    let a_addr = a.addr;
    let fg = start(&format!(
        r#"
[upstream]
addresses = ["{a}", "{b}"]
read_timeout = "2s"
eject_after = 100

[upstream.health_check]
path = "/healthz"
interval = "200ms"
timeout = "200ms"
rise = 2
fall = 1

[routing.default]
auth = "none"
"#,
        a = a.addr,
        b = b.addr
    ));
    // By position in `addresses`: a is replica 0.
    let healthy = |replica: usize| {
        metric_with(
            &fg,
            &format!("fluxgate_upstream_healthy{{upstream=\"default\",replica=\"{replica}\"}}"),
        )
    };
    wait_until(10, "both replicas checked healthy", || {
        a.requests().iter().any(|r| r.target == "/healthz") && healthy(0) == Some(1.0)
    });
    let load = Load::start(fg.proxy);
    wait_until(10, "load reaches both replicas", || {
        a.requests().iter().any(|r| r.target == "/load")
            && b.requests().iter().any(|r| r.target == "/load")
    });
    drop(a);
    wait_until(10, "the health check ejects the killed replica", || {
        healthy(0) == Some(0.0)
    });
    let ejected_at = monotonic_now();
    let readyz = get(fg.admin, "/readyz").unwrap();
    assert_eq!(
        readyz.status,
        200,
        "one replica is enough: {}",
        readyz.text()
    );
    let b_before = b.requests().iter().filter(|r| r.target == "/load").count();
    wait_until(10, "load continues on the other replica", || {
        b.requests().iter().filter(|r| r.target == "/load").count() >= b_before + 20
    });
    // Back on the same address: the health check lets it in again after `rise` passes.
    let a = Upstream::start_on(a_addr);
    wait_until(10, "the restarted replica is healthy again", || {
        healthy(0) == Some(1.0)
    });
    wait_until(10, "the restarted replica gets requests again", || {
        a.requests().iter().any(|r| r.target == "/load")
    });
    let results = load.finish();
    let after: Vec<u16> = results
        .iter()
        .filter(|(t, _)| *t >= ejected_at)
        .map(|(_, s)| *s)
        .collect();
    assert!(after.len() >= 20, "too little load: {}", after.len());
    assert!(
        after.iter().all(|s| *s == 200),
        "requests failed after the ejection: {after:?}"
    );
}

#[test]
fn an_upstream_with_no_healthy_address_makes_readyz_fail_and_names_it() {
    let web = Upstream::start();
    let api = Upstream::start();
    let api_addr = api.addr;
    let fg = start(&format!(
        r#"
[[upstream]]
name = "web"
addresses = ["{web}"]

[[upstream]]
name = "api"
addresses = ["{api}"]

[upstream.health_check]
path = "/healthz"
interval = "200ms"
timeout = "200ms"
rise = 1
fall = 1

[routing.default]
upstream = "web"
auth = "none"

[[route]]
path = "/api/*"
upstream = "api"
auth = "none"
"#,
        web = web.addr,
        api = api.addr
    ));
    wait_until(10, "ready", || {
        get(fg.admin, "/readyz").unwrap().status == 200
    });
    drop(api);
    wait_until(10, "readyz reports the api upstream", || {
        let r = get(fg.admin, "/readyz").unwrap();
        r.status == 503 && r.json()["upstreams_down"] == json!(["api"])
    });
    assert_eq!(
        metric_with(&fg, "fluxgate_upstream_usable_addresses{upstream=\"api\"}"),
        Some(0.0)
    );
    // The other service is unaffected.
    assert_eq!(fg.send(&Req::get("/x")).status, 200);
    let _api = Upstream::start_on(api_addr);
    wait_until(10, "ready again", || {
        get(fg.admin, "/readyz").unwrap().status == 200
    });
}

#[test]
fn a_refused_connection_is_retried_for_gets_but_not_posts_and_ejects_the_address() {
    let live = Upstream::start();
    let dead: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let cfg = |eject_after: u32| {
        format!(
            "[upstream]\naddresses = [\"{dead}\", \"{live}\"]\neject_after = {eject_after}\n\n[routing.default]\nauth = \"none\"\n",
            live = live.addr
        )
    };
    // Never ejected: every other request meets the dead address first.
    let fg = start(&cfg(100));
    for _ in 0..6 {
        assert_eq!(fg.send(&Req::get("/g")).status, 200);
    }
    let posts: Vec<u16> = (0..6)
        .map(|_| fg.send(&Req::new("POST", "/p").body(b"{}")).status)
        .collect();
    assert!(posts.contains(&502) && posts.contains(&200), "{posts:?}");
    assert!(fg.metric("fluxgate_upstream_retries_total") >= 3.0);
    assert_eq!(
        live.requests().iter().filter(|r| r.target == "/g").count(),
        6
    );
    drop(fg);
    // Ejected after two failures in a row: then even POSTs only meet the live address.
    let fg = start(&cfg(2));
    for _ in 0..6 {
        assert_eq!(fg.send(&Req::get("/g")).status, 200);
    }
    assert_eq!(fg.metric("fluxgate_upstream_ejections_total"), 1.0);
    assert_eq!(
        metric_with(
            &fg,
            "fluxgate_upstream_ejected{upstream=\"default\",replica=\"0\"}"
        ),
        Some(1.0)
    );
    for _ in 0..6 {
        assert_eq!(fg.send(&Req::new("POST", "/p").body(b"{}")).status, 200);
    }
}

#[test]
fn consistent_hashing_keeps_each_user_on_one_replica() {
    let replicas = [Upstream::start(), Upstream::start(), Upstream::start()];
    let fg = start(&format!(
        r#"
[upstream]
addresses = ["{}", "{}", "{}"]
balance = "consistent_hash"
hash_key = "user_id"

[routing.default]
auth = "required"
"#,
        replicas[0].addr, replicas[1].addr, replicas[2].addr
    ));
    let users: Vec<String> = (0..12).map(|i| format!("{}", 1000 + i)).collect();
    for u in &users {
        let (tok, _) = fg.create_session(json!({"user_id": u, "kind": "session"}));
        for _ in 0..4 {
            let r = fg.send(&Req::get("/x").header("authorization", &format!("Bearer {tok}")));
            assert_eq!(r.status, 200, "{}", r.text());
        }
    }
    let mut used = 0;
    for u in &users {
        let on: Vec<usize> = replicas
            .iter()
            .map(|r| {
                r.requests()
                    .iter()
                    .filter(|q| q.get("x-fluxgate-user-id").as_deref() == Some(u))
                    .count()
            })
            .collect();
        assert_eq!(on.iter().sum::<usize>(), 4, "{u}: {on:?}");
        assert_eq!(
            on.iter().filter(|n| **n > 0).count(),
            1,
            "user {u} moved: {on:?}"
        );
    }
    for r in &replicas {
        used += usize::from(r.count() > 0);
    }
    assert!(used >= 2, "every user landed on one replica");
}

/// An upstream that notes each request's target on arrival and answers `/slow…` after 2 s.
fn arrivals() -> (tokio::runtime::Runtime, SocketAddr, Arc<Mutex<Vec<String>>>) {
    let seen: Arc<Mutex<Vec<String>>> = Arc::default();
    let s = seen.clone();
    let (rt, addr) =
        crate::common::serve_http(move |req: hyper::Request<hyper::body::Incoming>| {
            let s = s.clone();
            async move {
                let target = req.uri().to_string();
                s.lock().unwrap().push(target.clone());
                if target.starts_with("/slow") {
                    tokio::time::sleep(Duration::from_secs(2)).await;
                }
                hyper::Response::new(http_body_util::Full::new(bytes::Bytes::from(target)))
            }
        });
    (rt, addr, seen)
}

#[test]
fn a_reload_swaps_the_upstream_set_and_a_request_in_flight_finishes_on_the_old_one() {
    let (_old_rt, old, old_seen) = arrivals();
    let new = Upstream::start();
    let cfg = |a: SocketAddr| {
        format!(
            "[upstream]\naddresses = [\"{a}\"]\nread_timeout = \"10s\"\n\n[routing.default]\nauth = \"none\"\n"
        )
    };
    let fg = start(&cfg(old));
    let proxy = fg.proxy;
    let slow = std::thread::spawn(move || Req::get("/slow-in-flight").send(proxy));
    wait_until(5, "the slow request reached the old upstream", || {
        old_seen
            .lock()
            .unwrap()
            .iter()
            .any(|t| t == "/slow-in-flight")
    });
    std::fs::write(
        &fg.config_path,
        format!("{}{}", head(fg.dir.path()), cfg(new.addr)),
    )
    .unwrap();
    fg.signal("HUP");
    fg.wait_log("configuration reloaded");
    assert_eq!(fg.send(&Req::get("/after")).status, 200);
    assert_eq!(new.last().target, "/after");
    // The request that started under the old set finishes there, answered by it.
    let r = slow.join().unwrap();
    assert_eq!((r.status, r.text().as_str()), (200, "/slow-in-flight"));
    assert!(new.requests().iter().all(|q| q.target != "/slow-in-flight"));
    assert!(!old_seen.lock().unwrap().iter().any(|t| t == "/after"));
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
fn the_readmes_several_services_layout_passes_check_config_without_warnings() {
    let readme =
        std::fs::read_to_string(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md"))
            .unwrap();
    let block = readme
        .split("## Several services behind one fluxgate")
        .nth(1)
        .and_then(|s| s.split("```toml\n").nth(1))
        .and_then(|b| b.split("```").next())
        .expect("a ```toml block in the README's several-services section");
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
