//! IP authorization delegated to the upstream (`[ip_authorization] mode = "upstream"`), in front
//! of the Fluxer-like fake running its own new-location flow: the held login's 403 reaches the
//! client as the API sent it, Fluxer's own `/auth/authorize-ip` and poll are proxied, the login
//! completes, fluxgate opens no ticket of its own, and its network rules still apply. And edge
//! mode's refusal of endpoints that share requests with another route, through `check-config`.

use crate::common::fluxer::{ALICE, Fluxer, SentReply};
use crate::common::*;
use serde_json::json;

/// A new place for Alice, and the one she always logs in from.
const NEW_PLACE: &str = "89.160.20.112";
const HOME: &str = "81.2.69.142";
const DENIED_NET_IP: &str = "198.51.100.7";

fn upstream_mode() -> &'static str {
    r#"
[client_ip]
trusted_proxies = ["127.0.0.1"]

[network]
deny_cidrs = ["198.51.100.0/24"]

[ip_authorization]
mode = "upstream"

[[route]]
methods = ["POST"]
path = "/auth/login"
auth = "none"

[[route]]
methods = ["POST"]
path = "/auth/authorize-ip"
auth = "none"

[[route]]
path = "/auth/ip-authorization/*"
auth = "none"
"#
}

fn from(ip: &str, req: Req) -> Req {
    req.header("x-forwarded-for", ip)
}

fn post_json(path: &str, body: serde_json::Value) -> Req {
    Req::new("POST", path)
        .header("content-type", "application/json")
        .body(body.to_string().as_bytes())
}

fn login() -> Req {
    post_json(
        "/auth/login",
        json!({"email": ALICE.email, "password": ALICE.password}),
    )
}

/// Every sample of `fluxgate_ip_authorization_total` and `…_notifications_total`, summed; the
/// families must be exported, so a renamed metric cannot pass as zero.
fn edge_tickets(g: &Fluxgate) -> f64 {
    let text = get(g.admin, "/metrics").unwrap().text();
    assert!(
        text.contains("# TYPE fluxgate_ip_authorization_total counter")
            && text.contains("# TYPE fluxgate_ip_authorization_notifications_total counter"),
        "the metric family is exported:\n{text}"
    );
    text.lines()
        .filter(|l| l.starts_with("fluxgate_ip_authorization_"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// The client's answer is the API's: status, body bytes and every header the API set, with
/// nothing added but the request id and the framing of the client's own connection (the test
/// client asks for `connection: close`; hyper writes `date` and `content-length`).
fn assert_untouched(got: &Resp, sent: &SentReply) {
    assert_eq!(got.status, sent.status);
    assert_eq!(got.body, sent.body.as_ref(), "body byte for byte");
    for (k, v) in &sent.headers {
        let all: Vec<&str> = got
            .headers
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case(k))
            .map(|(_, v)| v.as_str())
            .collect();
        assert_eq!(all, [v.as_str()], "header {k}");
    }
    for (k, v) in &got.headers {
        let own = sent.headers.iter().any(|(n, _)| n.eq_ignore_ascii_case(k));
        match k.to_ascii_lowercase().as_str() {
            _ if own => {}
            "content-length" => assert_eq!(v, &sent.body.len().to_string()),
            "connection" => assert_eq!(v, "close"),
            "date" | "x-request-id" => {}
            other => panic!("fluxgate added {other}: {v}"),
        }
    }
}

#[test]
fn a_new_location_login_completes_through_the_upstreams_own_ticket_flow() {
    let f = Fluxer::start();
    f.set_ip_authorization(true);
    f.allow_ip(ALICE.user_id, HOME);
    let g = Fluxgate::start(f.addr, upstream_mode());

    // From home: no ticket.
    let r = g.send(&from(HOME, login()));
    assert_eq!(r.status, 200, "{}", r.text());

    // From a new place: the API holds the login, and its 403 reaches the client untouched.
    let r = g.send(&from(NEW_PLACE, login()));
    let sent = f.replies().pop().unwrap();
    assert_eq!(r.status, 403, "{}", r.text());
    assert_untouched(&r, &sent);
    let held = r.json();
    assert_eq!(held["code"], "IP_AUTHORIZATION_REQUIRED");
    assert_eq!(held["email"], ALICE.email);
    assert_eq!(held["resend_available_in"], 30);
    assert!(
        held.get("ip_authorization_required").is_none(),
        "not fluxgate's denial: {held}"
    );
    let ticket = held["ticket"].as_str().unwrap().to_string();
    assert_eq!(f.last().get("x-forwarded-for").as_deref(), Some(NEW_PLACE));
    assert_eq!(f.last().get("x-real-ip").as_deref(), Some(NEW_PLACE));

    // Fluxer's own poll and resend are proxied to it.
    let poll = Req::get(&format!("/auth/ip-authorization/poll?ticket={ticket}"));
    let r = g.send(&from(NEW_PLACE, poll.clone()));
    assert_eq!((r.status, r.json()), (200, json!({"completed": false})));
    let r = g.send(&from(
        NEW_PLACE,
        post_json(
            "/v1/auth/ip-authorization/resend",
            json!({"ticket": ticket}),
        ),
    ));
    assert_eq!(r.status, 204, "{}", r.text());
    assert_eq!(f.ip_emails(), 2);

    // The link in the e-mail, opened anywhere, approves the place that logged in.
    let token = f.emailed_ip_token(ALICE.email).unwrap();
    let r = g.send(&from(
        HOME,
        post_json("/auth/authorize-ip", json!({"token": token})),
    ));
    assert_eq!(r.status, 204, "{}", r.text());
    assert_eq!(f.calls("/auth/authorize-ip"), 1);

    // The poll completes the held login with a session token the API accepts.
    let r = g.send(&from(NEW_PLACE, poll));
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["completed"], true);
    let session = r.json()["token"].as_str().unwrap().to_string();
    let me = Req::get("/users/@me")
        .header("authorization", &session)
        .send(f.addr);
    assert_eq!(me.json()["id"], ALICE.user_id);

    // And the next login from the new place goes straight through.
    let r = g.send(&from(NEW_PLACE, login()));
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(r.json()["token"].as_str().unwrap().starts_with("flx_"));

    // fluxgate ran no ticket flow of its own.
    assert_eq!(edge_tickets(&g), 0.0);
}

#[test]
fn network_rules_still_apply_in_upstream_mode() {
    let f = Fluxer::start();
    f.set_ip_authorization(true);
    let g = Fluxgate::start(f.addr, upstream_mode());
    let r = g.send(&from(DENIED_NET_IP, login()));
    r.denial(403, "FORBIDDEN");
    let r = g.send(&from(
        DENIED_NET_IP,
        post_json("/auth/authorize-ip", json!({"token": "x"})),
    ));
    r.denial(403, "FORBIDDEN");
    assert_eq!(f.requests().len(), 0, "nothing reached the API");
    assert_eq!(f.ip_emails(), 0);
}

#[test]
fn upstream_mode_refuses_an_edge_endpoint_at_startup_naming_the_mode() {
    let dir = std::sync::Arc::new(tempfile::tempdir().unwrap());
    let cfg = base_config(
        dir.path(),
        "127.0.0.1:9".parse().unwrap(),
        "[ip_authorization]\nmode = \"upstream\"\n\n[[route]]\nmethods = [\"POST\"]\npath = \"/auth/authorize-ip\"\nauth = \"none\"\nrole = \"authorize_ip\"\n",
    );
    let (code, err) = check_config(dir.path(), &cfg);
    assert_eq!(code, 64, "{err}");
    assert!(
        err.contains("route[0].role (line ")
            && err.contains("ip_authorization.mode = \"upstream\""),
        "{err}"
    );
}

#[test]
fn edge_mode_refuses_endpoints_that_share_requests_with_another_route() {
    let dir = std::sync::Arc::new(tempfile::tempdir().unwrap());
    let cfg = base_config(
        dir.path(),
        "127.0.0.1:9".parse().unwrap(),
        r#"
[[route]]
path = "/auth/*"
auth = "none"

[[route]]
methods = ["POST"]
path = "/auth/authorize-ip"
auth = "none"
role = "authorize_ip"

[[route]]
methods = ["GET"]
path = "/auth/ip-authorization/poll"
auth = "none"
role = "ip_authorization_poll"

[[route]]
methods = ["POST"]
path = "/_fluxgate/ip-authorization/resend"
auth = "none"
role = "ip_authorization_resend"
"#,
    );
    let (code, err) = check_config(dir.path(), &cfg);
    assert_eq!(code, 64, "{err}");
    for (i, role) in [(1, "authorize_ip"), (2, "ip_authorization_poll")] {
        assert!(
            err.contains(&format!("route[{i}].path (line "))
                && err.contains(&format!("the {role:?} endpoint")),
            "route[{i}] in:\n{err}"
        );
    }
    assert!(
        !err.contains("route[3]"),
        "the prefixed endpoint is fine:\n{err}"
    );
}

/// `fluxgate check-config` on `cfg`: exit code and stderr.
fn check_config(dir: &std::path::Path, cfg: &str) -> (i32, String) {
    let path = dir.join("fluxgate.toml");
    std::fs::write(&path, cfg).unwrap();
    let out = std::process::Command::new(bin())
        .arg("check-config")
        .arg(&path)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).into(),
    )
}

#[test]
fn with_login_capture_the_held_login_passes_untouched_and_the_poll_sets_the_session_cookie() {
    // Fluxer's poll finishes the held login with a token, so it is a login-capture route too
    // (config.toml.example): the 403 goes through the capture's exchange, not the proxy path.
    let f = Fluxer::start();
    f.set_ip_authorization(true);
    let capture = r#"
[sessions]
store = "backend"
forward_credential = "authorization"

[client_ip]
trusted_proxies = ["127.0.0.1"]

[ip_authorization]
mode = "upstream"

[[route]]
methods = ["POST"]
path = "/auth/login"
auth = "none"
role = "login"

[[route]]
methods = ["POST"]
path = "/auth/authorize-ip"
auth = "none"

[[route]]
methods = ["GET"]
path = "/auth/ip-authorization/poll"
auth = "none"
role = "login"

[[route]]
methods = ["GET"]
path = "/users/@me"
"#;
    let g = Fluxgate::start(f.addr, capture);
    let r = g.send(&from(NEW_PLACE, login()));
    assert_eq!(r.status, 403, "{}", r.text());
    assert_untouched(&r, &f.replies().pop().unwrap());
    let ticket = r.json()["ticket"].as_str().unwrap().to_string();

    let token = f.emailed_ip_token(ALICE.email).unwrap();
    let r = g.send(&from(
        NEW_PLACE,
        post_json("/auth/authorize-ip", json!({"token": token})),
    ));
    assert_eq!(r.status, 204, "{}", r.text());
    let r = g.send(&from(
        NEW_PLACE,
        Req::get(&format!("/auth/ip-authorization/poll?ticket={ticket}")),
    ));
    assert_eq!(r.status, 200, "{}", r.text());
    let cookie = r
        .headers
        .iter()
        .find(|(k, v)| k.eq_ignore_ascii_case("set-cookie") && v.starts_with("fluxer_session="))
        .map(|(_, v)| v.split(';').next().unwrap().to_string())
        .expect("the poll's token became the session cookie");
    let me = g.send(&from(
        NEW_PLACE,
        Req::get("/users/@me").header("cookie", &cookie),
    ));
    assert_eq!(me.status, 200, "{}", me.text());
    assert_eq!(me.json()["id"], ALICE.user_id);
    assert_eq!(edge_tickets(&g), 0.0);
}
