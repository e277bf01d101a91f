//! `fluxgate explain` through the real binary: the same decisions as the proxy, no network.

use crate::common::{Fluxgate, Upstream, bin};
use serde_json::Value;
use std::process::Command;

const TOKEN: &str = "flx_abcdefghijklmnopqrstuvwxyz0123456789";

const ROUTES: &str = r#"
[sudo]
secret = { value = "sudo-shared-secret-0123456789" }

[[route]]
path = "/public"
auth = "none"

[[route]]
methods = ["POST"]
path = "/guilds/:guild_id/delete"
sudo = true
"#;

fn explain(config: &std::path::Path, args: &[&str]) -> (i32, Value, String) {
    let out = Command::new(bin())
        .args(["explain", "--json", "--config"])
        .arg(config)
        .args(args)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    let json = serde_json::from_str(&stdout).unwrap_or(Value::Null);
    (
        out.status.code().unwrap_or(-1),
        json,
        String::from_utf8_lossy(&out.stderr).to_string(),
    )
}

fn config(extra: &str) -> (tempfile::TempDir, std::path::PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("fluxgate.toml");
    let upstream: std::net::SocketAddr = "127.0.0.1:9".parse().unwrap();
    std::fs::write(
        &path,
        crate::common::base_config(dir.path(), upstream, extra),
    )
    .unwrap();
    (dir, path)
}

fn stage(report: &Value, n: u64) -> &str {
    report["stages"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["stage"] == n)
        .and_then(|s| s["outcome"].as_str())
        .unwrap()
}

fn upstream_header(report: &Value, name: &str) -> Vec<String> {
    report["upstream"]["headers"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|h| h[0] == name)
        .map(|h| h[1].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn an_admitted_request_shows_the_upstream_plan_with_spoofed_identity_replaced() {
    let (_dir, cfg) = config(ROUTES);
    let cookie = format!("Cookie: theme=dark; fluxer_session={TOKEN}");
    let (code, r, err) = explain(
        &cfg,
        &[
            "GET /v1/users/@me",
            "-H",
            "X-Fluxgate-User-Id: 1",
            "-H",
            "x-fluxgate-session-id: forged",
            "-H",
            &cookie,
            "--session",
            "user=42,mfa=true",
        ],
    );
    assert_eq!(code, 0, "{err}");
    assert_eq!(r["decision"], "admitted");
    assert_eq!(r["route"], "default");
    assert_eq!(stage(&r, 11), "admitted");
    assert_eq!(upstream_header(&r, "x-fluxgate-user-id"), ["42"]);
    assert_eq!(upstream_header(&r, "x-fluxgate-auth-kind"), ["session"]);
    assert_eq!(upstream_header(&r, "x-fluxgate-session-id").len(), 1);
    assert_ne!(upstream_header(&r, "x-fluxgate-session-id"), ["forged"]);
    assert_eq!(upstream_header(&r, "cookie"), ["theme=dark"]);
    let removed = r["upstream"]["removed"].as_array().unwrap();
    assert!(removed.iter().any(|h| h == "x-fluxgate-user-id"));
    assert!(removed.iter().any(|h| h == "cookie"));
}

#[test]
fn a_denial_names_its_stage_and_shows_the_exact_response() {
    let (_dir, cfg) = config(ROUTES);
    let auth = format!("Authorization: {TOKEN}");
    let (code, r, err) = explain(
        &cfg,
        &[
            "POST /guilds/1/delete",
            "-H",
            &auth,
            "--session",
            "user=42,mfa=true",
        ],
    );
    assert_eq!(code, 1, "{err}");
    assert_eq!(r["decision"], "denied");
    assert_eq!(r["route"], "POST /guilds/:guild_id/delete");
    assert_eq!(stage(&r, 8), "passed");
    assert_eq!(stage(&r, 9), "refused");
    assert_eq!(stage(&r, 10), "not reached");
    assert_eq!(r["denial"]["status"], 403);
    assert_eq!(r["denial"]["body"]["code"], "SUDO_MODE_REQUIRED");
    assert_eq!(r["denial"]["body"]["has_mfa"], true);

    let (code, r, _) = explain(&cfg, &["GET /a/../public"]);
    assert_eq!(code, 1);
    assert_eq!(stage(&r, 2), "refused");
    assert_eq!(r["denial"]["status"], 400);

    let (code, r, _) = explain(&cfg, &["GET /users/@me"]);
    assert_eq!(code, 1);
    assert_eq!(stage(&r, 5), "refused");
    assert_eq!(r["denial"]["body"]["code"], "UNAUTHORIZED");
}

#[test]
fn sessions_are_looked_up_in_the_configured_store_without_writing_to_it() {
    let up = Upstream::start();
    let fg = Fluxgate::start(up.addr, ROUTES);
    let (token, sid) = fg.create_session(serde_json::json!({"user_id": "777"}));
    let dir = fg.stop();
    let cfg = dir.path().join("fluxgate.toml");
    let store = dir.path().join("sessions.redb");
    let auth = format!("Authorization: {token}");
    let (code, r, err) = explain(&cfg, &["GET /users/@me", "-H", &auth]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(upstream_header(&r, "x-fluxgate-user-id"), ["777"]);
    assert_eq!(upstream_header(&r, "x-fluxgate-session-id"), [sid.as_str()]);
    // An unknown token is refused at the session stage.
    let other = "Authorization: flx_zzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzz";
    let (code, r, _) = explain(&cfg, &["GET /users/@me", "-H", other]);
    assert_eq!(code, 1);
    assert_eq!(stage(&r, 6), "refused");
    // Nothing was created or revoked.
    let rt = tokio::runtime::Runtime::new().unwrap();
    let opened =
        fluxgate::session::embedded::EmbeddedStore::open(&store, fluxgate::clock::system())
            .unwrap();
    use fluxgate::session::SessionStore;
    let listed = rt.block_on(opened.list_user("777")).unwrap();
    assert_eq!(listed.len(), 1, "explain changed the store's sessions");
    assert_eq!(listed[0].0.encode(), sid);
    // No store file at all: nothing is created.
    let (_d2, fresh) = config(ROUTES);
    let (code, _, _) = explain(&fresh, &["GET /users/@me", "-H", &auth]);
    assert_eq!(code, 1);
    assert!(!fresh.with_file_name("sessions.redb").exists());
}

#[test]
fn bad_input_is_refused_with_a_clear_message_and_exit_code() {
    let (_dir, cfg) = config(ROUTES);
    let (code, _, err) = explain(&cfg, &["GET"]);
    assert_eq!(code, 2);
    assert!(
        err.contains("is not a request like 'GET /v1/users/@me'"),
        "{err}"
    );
    let (code, _, err) = explain(&cfg, &["GET /x", "-H", "no colon here"]);
    assert_eq!(code, 2);
    assert!(err.contains("write it as 'Name: value'"), "{err}");
    let (code, _, err) = explain(&cfg, &["GET /x", "--session", "kind=session"]);
    assert_eq!(code, 2);
    assert!(err.contains("needs user=ID"), "{err}");
    let (_d, bad) = config("[sessions]\nstore = \"nope\"\n");
    let (code, _, err) = explain(&bad, &["GET /x"]);
    assert_eq!(code, 64);
    assert!(err.contains("sessions.store"), "{err}");
}
