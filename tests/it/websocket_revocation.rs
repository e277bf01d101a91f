//! WebSockets outlive revocation no more (issue 18): a tunnel is authorized once, at its
//! handshake, so revoking its session (one session, every session of the user, on this
//! instance or through Redis on another) must close it, and no frame sent after the
//! revocation may reach the upstream.

use crate::common::redis::{RedisServer, redis_sessions};
use crate::common::*;
use crate::require_redis;
use fluxgate::clock::monotonic_now;
use serde_json::json;
use std::net::{SocketAddr, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::Duration;

const ROUTE: &str = "[[route]]\npath = \"/gateway\"\nkinds = [\"session\"]\n";

/// A WebSocket echo upstream that records every frame it receives and every tunnel's end.
#[derive(Clone, Default)]
struct Recording {
    frames: Arc<Mutex<Vec<String>>>,
    ended: Arc<Mutex<usize>>,
}

fn echo_upstream() -> (SocketAddr, Recording) {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    let rec = Recording::default();
    let r = rec.clone();
    std::thread::spawn(move || {
        for s in l.incoming() {
            let Ok(s) = s else { continue };
            let r = r.clone();
            std::thread::spawn(move || {
                if let Ok(mut ws) = tungstenite::accept(s) {
                    while let Ok(m) = ws.read() {
                        if m.is_close() {
                            break;
                        }
                        if let Ok(t) = m.to_text() {
                            r.frames.lock().unwrap().push(t.to_string());
                        }
                        if ws.send(m).is_err() {
                            break;
                        }
                    }
                }
                *r.ended.lock().unwrap() += 1;
            });
        }
    });
    (addr, rec)
}

type Ws = tungstenite::WebSocket<TcpStream>;

fn connect(proxy: SocketAddr, token: &str) -> Ws {
    use tungstenite::client::IntoClientRequest;
    let mut req = format!("ws://{proxy}/gateway")
        .into_client_request()
        .unwrap();
    let auth = format!("Bearer {token}");
    req.headers_mut()
        .insert("authorization", auth.parse().unwrap());
    let s = TcpStream::connect(proxy).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    match tungstenite::client(req, s) {
        Ok((ws, _)) => ws,
        Err(e) => panic!("WebSocket handshake failed: {e}"),
    }
}

fn echo(ws: &mut Ws, text: &str) {
    ws.send(tungstenite::Message::text(text)).unwrap();
    assert_eq!(ws.read().unwrap().into_text().unwrap().as_str(), text);
}

/// Sends a frame after the revocation and waits (10 s at most) for the socket to end; the
/// frame must never come back.
fn assert_closed(ws: &mut Ws) {
    let _ = ws.send(tungstenite::Message::text("after revocation"));
    assert_closed_unprompted(ws);
}

/// The tunnel ends without anything sent on it after the revocation (read timeout: 10 s).
fn assert_closed_unprompted(ws: &mut Ws) {
    let started = monotonic_now();
    loop {
        match ws.read() {
            Ok(tungstenite::Message::Text(t)) => panic!("the tunnel still echoes: {t}"),
            Ok(m) if m.is_close() => {}
            Ok(_) => {}
            Err(tungstenite::Error::Io(e)) if e.kind() == std::io::ErrorKind::WouldBlock => {
                panic!(
                    "the tunnel is still open {:?} after the revocation",
                    started.elapsed()
                )
            }
            Err(_) => return,
        }
    }
}

/// Waits (5 s at most) until the upstream saw `n` tunnels end.
fn wait_ended(rec: &Recording, n: usize) {
    let deadline = monotonic_now() + Duration::from_secs(5);
    while *rec.ended.lock().unwrap() < n {
        assert!(
            monotonic_now() < deadline,
            "the upstream side of the tunnel stayed open"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn a_websocket_of_a_revoked_session_is_closed_and_later_frames_never_reach_the_upstream() {
    let (up, rec) = echo_upstream();
    let fg = Fluxgate::start(up, ROUTE);
    let (tok, sid) = fg.create_session(json!({"user_id": "9001", "kind": "session"}));
    let mut ws = connect(fg.proxy, &tok);
    echo(&mut ws, "before");
    assert_eq!(
        fg.admin("DELETE", &format!("/v1/sessions/{sid}"), None)
            .status,
        200
    );
    assert_closed(&mut ws);
    wait_ended(&rec, 1);
    assert_eq!(*rec.frames.lock().unwrap(), vec!["before".to_string()]);
    assert_revoked_count(&fg, 1.0);
    // The token no longer opens a tunnel.
    use tungstenite::client::IntoClientRequest;
    let mut req = format!("ws://{}/gateway", fg.proxy)
        .into_client_request()
        .unwrap();
    req.headers_mut()
        .insert("authorization", format!("Bearer {tok}").parse().unwrap());
    let s = TcpStream::connect(fg.proxy).unwrap();
    assert!(tungstenite::client(req, s).is_err());
}

#[test]
fn an_idle_websocket_of_a_revoked_session_is_cut_without_waiting_for_a_frame() {
    // SECURITY: a revoked session's tunnel that nobody writes to must still end at once, both
    // ways: the revocation itself wakes the connection (`ConnState::close`), not the next frame.
    let (up, rec) = echo_upstream();
    let fg = Fluxgate::start(up, ROUTE);
    let (tok, sid) = fg.create_session(json!({"user_id": "9003", "kind": "session"}));
    let mut ws = connect(fg.proxy, &tok);
    echo(&mut ws, "before");
    // Well inside the connection's other timers (the head deadline re-polls the watch too).
    ws.get_mut()
        .set_read_timeout(Some(Duration::from_secs(3)))
        .unwrap();
    assert_eq!(
        fg.admin("DELETE", &format!("/v1/sessions/{sid}"), None)
            .status,
        200
    );
    assert_closed_unprompted(&mut ws);
    wait_ended(&rec, 1);
    assert_revoked_count(&fg, 1.0);
}

#[test]
fn revoking_every_session_of_a_user_closes_all_their_websockets_and_no_one_elses() {
    let (up, rec) = echo_upstream();
    let fg = Fluxgate::start(up, ROUTE);
    let (a, _) = fg.create_session(json!({"user_id": "9001", "kind": "session"}));
    let (b, _) = fg.create_session(json!({"user_id": "9001", "kind": "session"}));
    let (other, _) = fg.create_session(json!({"user_id": "9002", "kind": "session"}));
    let (mut wa, mut wb, mut wo) = (
        connect(fg.proxy, &a),
        connect(fg.proxy, &b),
        connect(fg.proxy, &other),
    );
    echo(&mut wa, "a");
    echo(&mut wb, "b");
    echo(&mut wo, "other");
    let r = fg.admin("DELETE", "/v1/users/9001/sessions", None);
    assert!(r.status == 200 || r.status == 204, "{}", r.status);
    assert_closed(&mut wa);
    assert_closed(&mut wb);
    wait_ended(&rec, 2);
    echo(&mut wo, "still here");
    let frames = rec.frames.lock().unwrap().clone();
    assert!(
        !frames.iter().any(|f| f == "after revocation"),
        "{frames:?}"
    );
}

#[test]
fn a_revocation_on_another_instance_closes_the_websocket_through_redis() {
    require_redis!();
    let redis = RedisServer::start();
    let (up, rec) = echo_upstream();
    let a = Fluxgate::start(up, &redis_sessions(&redis.url(), ROUTE));
    let b = Fluxgate::start(up, &redis_sessions(&redis.url(), ROUTE));
    let deadline = monotonic_now() + Duration::from_secs(10);
    while a.metric("fluxgate_invalidation_subscribed") < 1.0 {
        assert!(
            monotonic_now() < deadline,
            "instance A never subscribed to invalidations"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let (tok, sid) = b.create_session(json!({"user_id": "9001", "kind": "session"}));
    let mut ws = connect(a.proxy, &tok);
    echo(&mut ws, "before");
    assert_eq!(
        b.admin("DELETE", &format!("/v1/sessions/{sid}"), None)
            .status,
        200
    );
    // A learns of it through the invalidation channel: the socket ends within the bound.
    let started = monotonic_now();
    loop {
        match ws.read() {
            Ok(tungstenite::Message::Text(t)) => panic!("unexpected frame {t}"),
            Ok(_) => {}
            Err(tungstenite::Error::Io(e)) if e.kind() == std::io::ErrorKind::WouldBlock => {
                panic!(
                    "still open {:?} after the revocation on B",
                    started.elapsed()
                )
            }
            Err(_) => break,
        }
    }
    wait_ended(&rec, 1);
    assert_eq!(*rec.frames.lock().unwrap(), vec!["before".to_string()]);
    assert_revoked_count(&a, 1.0);
}

/// The tunnels closed by revocation, as counted (the count follows the close by moments; the
/// bound is generous because the whole suite runs at once on two cores).
fn assert_revoked_count(fg: &Fluxgate, want: f64) {
    let series = "fluxgate_connections_closed_total{reason=\"session_revoked\"}";
    let deadline = monotonic_now() + Duration::from_secs(20);
    while fg.metric(series) < want && monotonic_now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(fg.metric(series), want);
}
