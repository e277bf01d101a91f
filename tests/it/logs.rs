//! The access log through the real binary: one structured line per request, in the format the
//! config chooses, whatever the log level; never a credential.

use crate::common::*;
use serde_json::json;

const SECRET: &str = "internal-secret-for-logs-0123";

fn extra(format: &str, level: &str) -> String {
    format!(
        r#"
[[internal_secrets]]
name = "gateway"
secret = {{ value = "{SECRET}" }}

[[route]]
name = "internal-rpc"
path = "/_rpc/*"
auth = "internal"

[[route]]
name = "me"
path = "/users/@me"

[logging]
format = "{format}"
level = "{level}"
"#
    )
}

/// Starts fluxgate with the given log format and level (the base config's [logging] replaced).
fn start(up: &Upstream, format: &str, level: &str) -> Fluxgate {
    start_more(up, format, level, "")
}

/// As [`start`], with `more` config sections.
fn start_more(up: &Upstream, format: &str, level: &str, more: &str) -> Fluxgate {
    let dir = std::sync::Arc::new(tempfile::tempdir().unwrap());
    let base = base_config(dir.path(), up.addr, "");
    let base = base.replace("[logging]\nformat = \"json\"\nlevel = \"info\"\n", more);
    Fluxgate::start_with(dir, &(base + &extra(format, level)))
}

fn access_lines(log: &str) -> Vec<serde_json::Value> {
    log.lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| v["target"] == "fluxgate::access")
        .collect()
}

#[test]
fn json_access_log_has_one_line_per_request_with_every_field_and_no_credentials() {
    let up = Upstream::start();
    let fg = start(&up, "json", "info");
    let (tok, sid) = fg.create_session(json!({"user_id": "77", "lifetime": "1h"}));
    let rid = "log-test-request-1";
    let first = fg.send(
        &Req::get("/users/@me?token=query-secret-xyz&x=1")
            .header(
                "cookie",
                &format!("fluxer_session={tok}; other=keep-me-secret"),
            )
            .header("x-request-id", rid),
    );
    assert_eq!(first.status, 200);
    fg.send(
        &Req::new("POST", "/users/@me")
            .header("authorization", &format!("Bearer {tok}"))
            .body(b"hello"),
    );
    fg.send(&Req::get("/_rpc/x").header("x-fluxer-rpc-auth", SECRET));
    fg.send(&Req::get("/users/@me").header("authorization", "flx_not-a-real-token-but-secret"));
    fg.send(&Req::get("/users/@me").header("x-request-id", "last-one"));

    let log = fg.wait_log("last-one");
    let lines = access_lines(&log);
    assert_eq!(lines.len(), 5, "one access line per request:\n{log}");
    let f = &lines[0]["fields"];
    assert_eq!(f["request_id"], rid);
    assert_eq!(f["method"], "GET");
    assert_eq!(f["route"], "me");
    assert_eq!(f["route_template"], "/users/@me");
    assert_eq!(f["path"], "/users/@me", "the query string is dropped");
    assert_eq!(f["decision"], "admitted");
    assert_eq!(f["reason"], "session");
    assert_eq!(f["status"], 200);
    assert!(f["latency_us"].as_u64().is_some());
    assert!(f["upstream_us"].as_u64().is_some(), "{f}");
    assert_eq!(f["client_ip"], "127.0.0.1");
    assert_eq!(f["user_id"], "77");
    assert_eq!(f["sid_prefix"], &sid[..8]);
    assert_eq!(f["bytes_in"], 0);
    assert_eq!(f["bytes_out"], first.body.len() as u64);
    assert_eq!(lines[1]["fields"]["method"], "POST");
    assert_eq!(lines[1]["fields"]["bytes_in"], 5);
    assert_eq!(lines[2]["fields"]["route"], "internal-rpc");
    assert_eq!(lines[2]["fields"]["route_template"], "/_rpc/*");
    let denied = &lines[3]["fields"];
    assert_eq!(denied["decision"], "denied");
    assert_eq!(denied["status"], 401);
    for absent in ["user_id", "sid_prefix", "upstream_us"] {
        assert!(
            denied.get(absent).is_none(),
            "{absent} in a denied line: {denied}"
        );
    }
    // SECURITY: logs are read by more people than sessions should be; no credential in them,
    // nor the query string (tokens travel there), nor more of the session id than its prefix.
    for needle in [
        tok.as_str(),
        SECRET,
        "flx_not-a-real-token-but-secret",
        "keep-me-secret",
        "query-secret-xyz",
        &sid[..9],
        ADMIN_SECRET,
    ] {
        assert!(!log.contains(needle), "{needle} reached the log:\n{log}");
    }
}

#[test]
fn decision_endpoint_lines_carry_the_original_path_and_user_but_never_the_query() {
    let up = Upstream::start();
    let fg = start_more(
        &up,
        "json",
        "info",
        "[forward_auth]\nlisten = \"127.0.0.1:0\"\n",
    );
    let (tok, sid) = fg.create_session(json!({"user_id": "42", "lifetime": "1h"}));
    let r = Req::get("/")
        .header("X-Original-Method", "GET")
        .header("X-Original-URI", "/users/@me?code=oauth-code-secret")
        .header("X-Request-Id", "fa-log-1")
        .header("Authorization", &format!("Bearer {tok}"))
        .send(fg.forward_auth.unwrap());
    assert_eq!(r.status, 200, "{}", r.text());
    let log = fg.wait_log("fa-log-1");
    let lines = access_lines(&log);
    let f = &lines.last().expect("an access line")["fields"];
    assert_eq!(f["request_id"], "fa-log-1");
    assert_eq!(f["path"], "/users/@me");
    assert_eq!(f["route_template"], "/users/@me");
    assert_eq!(f["user_id"], "42");
    assert_eq!(f["sid_prefix"], &sid[..8]);
    assert!(f.get("upstream_us").is_none(), "{f}");
    // SECURITY: the original URI's query (OAuth2 codes, tokens) is not logged.
    assert!(!log.contains("oauth-code-secret"), "{log}");
    assert!(!log.contains(&tok), "{log}");
}

#[test]
fn access_log_stays_on_when_the_level_is_warn() {
    let up = Upstream::start();
    let fg = start(&up, "json", "warn");
    fg.send(&Req::get("/users/@me").header("x-request-id", "quiet-level"));
    let log = fg.wait_log("quiet-level");
    assert_eq!(access_lines(&log).len(), 1);
}

#[test]
fn logfmt_access_lines_carry_the_same_fields() {
    let up = Upstream::start();
    let fg = start(&up, "logfmt", "info");
    fg.send(&Req::get("/users/@me").header("x-request-id", "logfmt-1"));
    let log = fg.wait_log("request_id=logfmt-1");
    let line = log
        .lines()
        .find(|l| l.contains("request_id=logfmt-1"))
        .unwrap();
    for field in [
        "target=fluxgate::access",
        "method=GET",
        "route=me",
        "decision=denied",
        "reason=no_credential",
        "status=401",
        "latency_us=",
        "client_ip=127.0.0.1",
        "path=/users/@me ",
        "route_template=/users/@me ",
        "bytes_in=0 bytes_out=",
    ] {
        assert!(line.contains(field), "{field} missing from {line}");
    }
}

/// Access lines are written in batches (every 20 ms): the lines of the requests answered just
/// before a shutdown are still written, each whole, in the order of the requests.
#[test]
fn the_last_batch_of_access_lines_is_written_at_shutdown() {
    let up = Upstream::start();
    let fg = start(&up, "json", "warn");
    for i in 0..50 {
        let r = fg.send(&Req::get("/users/@me").header("x-request-id", &format!("last-{i:02}")));
        assert_eq!(r.status, 401);
    }
    // At once, inside the batch's 20 ms.
    let dir = fg.dir.clone();
    let log_of = |d: &std::path::Path| {
        std::fs::read_dir(d)
            .unwrap()
            .filter_map(|e| e.ok())
            .filter(|e| e.file_name().to_string_lossy().starts_with("stderr-"))
            .map(|e| std::fs::read_to_string(e.path()).unwrap())
            .collect::<String>()
    };
    let _ = fg.stop();
    let ids: Vec<String> = access_lines(&log_of(dir.path()))
        .iter()
        .map(|v| v["fields"]["request_id"].as_str().unwrap().to_string())
        .collect();
    let want: Vec<String> = (0..50).map(|i| format!("last-{i:02}")).collect();
    assert_eq!(ids, want);
}

/// An application that puts secrets in path segments (`/reset/<token>`) can keep them out of
/// the log: with `access_log_path = false` lines carry the route's template, never the path,
/// on the proxy and on the decision endpoint alike.
#[test]
fn access_log_path_off_keeps_path_segments_out_of_the_log() {
    let up = Upstream::start();
    let dir = std::sync::Arc::new(tempfile::tempdir().unwrap());
    let base = base_config(dir.path(), up.addr, "").replace(
        "level = \"info\"\n",
        "level = \"info\"\naccess_log_path = false\n",
    );
    let cfg = base
        + r#"
[forward_auth]
listen = "127.0.0.1:0"

[[route]]
name = "reset"
path = "/reset/:token"
auth = "none"
"#;
    let fg = Fluxgate::start_with(dir, &cfg);
    let r = fg.send(&Req::get("/reset/secret-token-in-the-path").header("x-request-id", "p-1"));
    assert_eq!(r.status, 200);
    let r = Req::get("/auth")
        .header("x-original-method", "GET")
        .header("x-original-uri", "/reset/another-secret-token")
        .header("x-request-id", "p-2")
        .send(fg.forward_auth.unwrap());
    assert_eq!(r.status, 200, "{}", r.text());
    let log = fg.wait_log("p-2");
    let lines = access_lines(&log);
    assert_eq!(lines.len(), 2, "{log}");
    for l in &lines {
        let f = &l["fields"];
        assert_eq!(f["route_template"], "/reset/:token", "{l}");
        assert!(f.get("path").is_none(), "{l}");
    }
    assert!(!log.contains("secret-token"), "{log}");
}
