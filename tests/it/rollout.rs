//! Report-only roll-out through the real binary: a would-be denial reaches the upstream with no
//! identity and is counted and logged; what must stay enforced is refused; the per-route
//! override works both ways; `check-config` warns, `/readyz` reports the mode, and a reload
//! switches it.

use crate::common::*;
use fluxgate::clock::monotonic_now;
use serde_json::json;
use std::process::Command;
use std::time::Duration;

const SECRET: &str = "rollout-internal-secret-0123";

/// Report mode for everything, except one route kept enforced and an internal route.
const REPORT: &str = r#"
[rollout]
mode = "report"

[[internal_secrets]]
name = "gateway"
secret = { value = "rollout-internal-secret-0123" }

[[route]]
name = "rpc"
path = "/_rpc/*"
auth = "internal"

[[route]]
name = "strict"
path = "/strict"
rollout = "enforce"

[[route]]
name = "guilds"
path = "/guilds/:id"
kinds = ["session"]

[[rate_limits.bucket]]
name = "tight"
limit = 1
window = "1h"
key = "ip"

[[route]]
name = "limited"
path = "/limited"
auth = "none"
rate_limits = ["tight"]
"#;

fn wait_until(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = monotonic_now() + Duration::from_secs(10);
    while !f() {
        assert!(monotonic_now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn would_deny(fg: &Fluxgate, reason: &str, route: &str) -> f64 {
    fg.metric(&format!(
        "fluxgate_would_deny_total{{reason=\"{reason}\",route=\"{route}\"}}"
    ))
}

fn readyz(fg: &Fluxgate) -> serde_json::Value {
    get(fg.admin, "/readyz").unwrap().json()
}

#[test]
fn a_request_without_credential_reaches_the_upstream_anonymous_and_is_counted_and_logged() {
    let up = Upstream::start();
    let fg = Fluxgate::start(up.addr, REPORT);
    let r = fg.send(&Req::get("/users/@me").header("x-request-id", "would-deny-1"));
    assert_eq!(r.status, 200, "{}", r.text());
    let seen = up.last();
    assert_eq!(
        seen.get("x-fluxgate-auth-kind").as_deref(),
        Some("anonymous")
    );
    assert_eq!(seen.get("x-fluxgate-user-id"), None);
    assert_eq!(seen.get("x-fluxgate-session-id"), None);
    wait_until("the would-deny counter", || {
        would_deny(&fg, "no_credential", "default") == 1.0
    });
    assert_eq!(
        fg.metric("fluxgate_decisions_total{outcome=\"would_deny\",reason=\"no_credential\"}"),
        1.0
    );
    let lines = |target: &str| -> Vec<serde_json::Value> {
        fg.stderr()
            .lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .filter(|v| v["target"] == target && v["fields"]["request_id"] == "would-deny-1")
            .collect()
    };
    wait_until("the access line", || !lines("fluxgate::access").is_empty());
    let line = &lines("fluxgate::access")[0];
    let info = lines("fluxgate::proxy");
    assert_eq!(info.len(), 1, "{}", fg.stderr());
    assert_eq!(info[0]["level"], "INFO");
    assert_eq!(info[0]["fields"]["reason"], "no_credential");
    assert_eq!(info[0]["fields"]["route"], "default");
    assert_eq!(info[0]["fields"]["stage"], "credential");
    assert_eq!(line["fields"]["decision"], "would_deny");
    assert_eq!(line["fields"]["reason"], "no_credential");
    assert_eq!(line["fields"]["status"], 200);
}

#[test]
fn a_spoofed_identity_header_never_reaches_the_upstream_in_report_mode() {
    let up = Upstream::start();
    let fg = Fluxgate::start(up.addr, REPORT);
    let r = fg.send(
        &Req::get("/users/@me")
            .header("authorization", "flx_unknownUnknownUnknownUnknownUnknown0")
            .header("X-Fluxgate-User-Id", "1")
            .header("x-fluxgate-auth-kind", "session")
            .header("X-Fluxgate-Scopes", "admin"),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    let seen = up.last();
    assert_eq!(seen.get("x-fluxgate-user-id"), None);
    assert_eq!(seen.get("x-fluxgate-scopes"), None);
    assert_eq!(
        seen.get("x-fluxgate-auth-kind").as_deref(),
        Some("anonymous")
    );
    wait_until("the would-deny counter", || {
        would_deny(&fg, "unknown_session", "default") == 1.0
    });
    let log = fg.wait_log("report mode: would deny");
    assert!(
        !log.contains("flx_unknownUnknown"),
        "the token was logged:\n{log}"
    );
}

#[test]
fn a_valid_session_in_report_mode_is_admitted_with_its_identity_and_not_counted() {
    let up = Upstream::start();
    let fg = Fluxgate::start(up.addr, REPORT);
    let (tok, _) = fg.create_session(json!({"user_id": "4242", "kind": "session"}));
    let r = fg.send(&Req::get("/guilds/1").header("authorization", &tok));
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(up.last().get("x-fluxgate-user-id").as_deref(), Some("4242"));
    // An OAuth2 token on a session-only route: the access decision is reported.
    let (oauth, _) =
        fg.create_session(json!({"user_id": "4242", "kind": "oauth2", "scopes": ["identify"]}));
    let r = fg.send(&Req::get("/guilds/1").header("authorization", &format!("Bearer {oauth}")));
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(up.last().get("x-fluxgate-user-id"), None);
    wait_until("the would-deny counter", || {
        would_deny(&fg, "kind_not_accepted", "guilds") == 1.0
    });
    assert_eq!(
        fg.metric("fluxgate_decisions_total{outcome=\"admitted\",reason=\"session\"}"),
        1.0
    );
}

#[test]
fn internal_routes_and_bad_paths_are_still_refused_in_report_mode() {
    let up = Upstream::start();
    let fg = Fluxgate::start(up.addr, REPORT);
    fg.send(&Req::get("/_rpc/x")).denial(401, "UNAUTHORIZED");
    fg.send(&Req::get("/_rpc/x").header("x-fluxer-rpc-auth", "wrong-secret-0123456789"))
        .denial(401, "UNAUTHORIZED");
    for target in ["/a/../users/@me", "/users%2f@me", "/a/./b"] {
        fg.send(&Req::get(target)).denial(400, "BAD_REQUEST");
    }
    assert_eq!(up.count(), 0, "nothing refused reached the upstream");
    let r = fg.send(&Req::get("/_rpc/x").header("x-fluxer-rpc-auth", SECRET));
    assert_eq!(r.status, 200);
    assert_eq!(
        up.last().get("x-fluxgate-service").as_deref(),
        Some("gateway")
    );
}

#[test]
fn a_rate_limit_in_report_mode_is_counted_but_forwarded() {
    let up = Upstream::start();
    let fg = Fluxgate::start(up.addr, REPORT);
    assert_eq!(fg.send(&Req::get("/limited")).status, 200);
    let r = fg.send(&Req::get("/limited"));
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.header("retry-after"), None);
    assert_eq!(up.count(), 2);
    wait_until("the would-deny counter", || {
        would_deny(&fg, "rate_limited", "limited") == 1.0
    });
}

#[test]
fn a_route_can_stay_enforced_under_global_report_mode_and_report_under_global_enforce() {
    let up = Upstream::start();
    let fg = Fluxgate::start(up.addr, REPORT);
    fg.send(&Req::get("/strict")).denial(401, "UNAUTHORIZED");
    assert_eq!(up.count(), 0);
    let ready = readyz(&fg);
    assert_eq!(ready["status"], "ready");
    assert_eq!(ready["rollout"], "mixed", "{ready}");
    assert_eq!(
        ready["report_routes"],
        json!(["guilds", "limited", "default"]),
        "{ready}"
    );
    drop(fg);

    let fg = Fluxgate::start(
        up.addr,
        "[[route]]\nname = \"trial\"\npath = \"/trial\"\nrollout = \"report\"\n",
    );
    assert_eq!(fg.send(&Req::get("/trial")).status, 200);
    fg.send(&Req::get("/other")).denial(401, "UNAUTHORIZED");
    assert_eq!(up.count(), 1);
    assert_eq!(readyz(&fg)["rollout"], "mixed");
}

#[test]
fn check_config_warns_for_every_route_in_report_mode() {
    let dir = tempfile::tempdir().unwrap();
    let up: std::net::SocketAddr = "127.0.0.1:9".parse().unwrap();
    let check = |extra: &str| {
        let path = dir.path().join("c.toml");
        std::fs::write(&path, base_config(dir.path(), up, extra)).unwrap();
        let out = Command::new(bin())
            .arg("check-config")
            .arg(&path)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(0));
        String::from_utf8_lossy(&out.stderr).to_string()
    };
    let err = check(REPORT);
    let warnings: Vec<&str> = err.lines().filter(|l| l.starts_with("warning:")).collect();
    assert_eq!(
        warnings,
        [
            "warning: route \"guilds\" is in report mode: requests it would deny are forwarded without identity, only counted (fluxgate_would_deny_total) and logged",
            "warning: route \"limited\" is in report mode: requests it would deny are forwarded without identity, only counted (fluxgate_would_deny_total) and logged",
            "warning: route \"default\" is in report mode: requests it would deny are forwarded without identity, only counted (fluxgate_would_deny_total) and logged",
        ],
        "{err}"
    );
    assert!(!check("").contains("warning:"));
}

#[test]
fn a_reload_switches_between_enforce_and_report() {
    let up = Upstream::start();
    let fg = Fluxgate::start(up.addr, "");
    fg.send(&Req::get("/x")).denial(401, "UNAUTHORIZED");
    assert_eq!(readyz(&fg)["rollout"], "enforce");
    let cfg = std::fs::read_to_string(&fg.config_path).unwrap();
    let reloads = |n: f64| {
        wait_until("the reload", || {
            fg.metric("fluxgate_config_reloads_total{result=\"success\",what=\"config\"}") == n
        })
    };

    std::fs::write(
        &fg.config_path,
        format!("{cfg}\n[rollout]\nmode = \"report\"\n"),
    )
    .unwrap();
    fg.signal("HUP");
    reloads(1.0);
    assert_eq!(fg.send(&Req::get("/x")).status, 200);
    assert_eq!(
        up.last().get("x-fluxgate-auth-kind").as_deref(),
        Some("anonymous")
    );
    assert_eq!(readyz(&fg)["rollout"], "report");
    fg.wait_log("route \\\"default\\\" is in report mode");

    std::fs::write(&fg.config_path, &cfg).unwrap();
    fg.signal("HUP");
    reloads(2.0);
    fg.send(&Req::get("/x")).denial(401, "UNAUTHORIZED");
    assert_eq!(readyz(&fg)["rollout"], "enforce");
    assert_eq!(up.count(), 1);
}

#[test]
fn explain_says_when_a_denial_would_only_be_reported() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c.toml");
    let up: std::net::SocketAddr = "127.0.0.1:9".parse().unwrap();
    std::fs::write(&path, base_config(dir.path(), up, REPORT)).unwrap();
    let out = Command::new(bin())
        .args(["explain", "--json", "--config"])
        .arg(&path)
        .arg("GET /users/@me")
        .output()
        .unwrap();
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(out.status.code(), Some(1), "{v}");
    assert_eq!(v["decision"], "would_deny", "{v}");
    assert_eq!(v["would_deny"]["status"], 401);
    assert_eq!(v["would_deny"]["reason"], "no_credential");
    assert_eq!(v["auth_kind"], "anonymous");
    assert_eq!(v["stages"][4]["outcome"], "would refuse (report mode)");
    let text = Command::new(bin())
        .args(["explain", "--config"])
        .arg(&path)
        .arg("GET /users/@me")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&text.stdout);
    assert!(
        text.contains("would deny, only reported (route in report mode): 401 no_credential"),
        "{text}"
    );
}
