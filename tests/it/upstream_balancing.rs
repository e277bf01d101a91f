//! Replicas of one service behind fluxgate, through the real binary: a replica killed under
//! load is ejected by its health check and comes back, `/readyz` names an upstream with no
//! healthy address, refused connections are retried (idempotent requests only) and eject the
//! address, consistent hashing keeps a user on one replica, and a reload swaps the set while a
//! request in flight finishes on the old one.

use crate::common::{Fluxgate, Req, Upstream, free_port, get};
use crate::upstreams::{head, start, wait_until};
use fluxgate::clock::monotonic_now;
use serde_json::json;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

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
