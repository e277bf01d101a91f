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
    let dir = std::sync::Arc::new(tempfile::tempdir().unwrap());
    let base = base_config(dir.path(), up.addr, "");
    let base = base.replace("[logging]\nformat = \"json\"\nlevel = \"info\"\n", "");
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
    let (tok, _sid) = fg.create_session(json!({"user_id": "77", "lifetime": "1h"}));
    let rid = "log-test-request-1";
    fg.send(
        &Req::get("/users/@me")
            .header(
                "cookie",
                &format!("fluxer_session={tok}; other=keep-me-secret"),
            )
            .header("x-request-id", rid),
    );
    fg.send(&Req::get("/users/@me").header("authorization", &format!("Bearer {tok}")));
    fg.send(&Req::get("/_rpc/x").header("x-fluxer-rpc-auth", SECRET));
    fg.send(&Req::get("/users/@me").header("authorization", "flx_not-a-real-token-but-secret"));
    fg.send(&Req::get("/users/@me").header("x-request-id", "last-one"));

    let log = fg.wait_log("last-one");
    let lines = access_lines(&log);
    assert_eq!(lines.len(), 5, "one access line per request:\n{log}");
    let first = &lines[0]["fields"];
    assert_eq!(first["request_id"], rid);
    assert_eq!(first["method"], "GET");
    assert_eq!(first["route"], "me");
    assert_eq!(first["decision"], "admitted");
    assert_eq!(first["reason"], "session");
    assert_eq!(first["status"], 200);
    assert!(first["latency_us"].as_u64().is_some());
    assert_eq!(first["client_ip"], "127.0.0.1");
    assert_eq!(lines[2]["fields"]["route"], "internal-rpc");
    assert_eq!(lines[3]["fields"]["decision"], "denied");
    assert_eq!(lines[3]["fields"]["status"], 401);
    // SECURITY: logs are read by more people than sessions should be; no credential in them.
    for needle in [
        tok.as_str(),
        SECRET,
        "flx_not-a-real-token-but-secret",
        "keep-me-secret",
        ADMIN_SECRET,
    ] {
        assert!(!log.contains(needle), "{needle} reached the log:\n{log}");
    }
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
    ] {
        assert!(line.contains(field), "{field} missing from {line}");
    }
}
