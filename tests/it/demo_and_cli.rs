//! `fluxgate demo` does what it prints, and `fluxgate sessions …` drives a running instance.

use crate::common::*;
use fluxgate::clock::monotonic_now;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

#[test]
fn demo_starts_prints_working_commands_and_stops_cleanly_on_ctrl_c() {
    let mut child = Command::new(bin())
        .args(["demo", "--port", "0"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let (mut proxy, mut token, mut store) = (None, None, None);
    let mut text = String::new();
    let deadline = monotonic_now() + Duration::from_secs(30);
    loop {
        assert!(
            monotonic_now() < deadline,
            "demo did not finish starting:\n{text}"
        );
        let mut line = String::new();
        if out.read_line(&mut line).unwrap() == 0 {
            panic!("demo exited early:\n{text}");
        }
        text.push_str(&line);
        let l = line.trim();
        if let Some(p) = l.strip_prefix("proxy:") {
            proxy = Some(
                p.trim()
                    .trim_start_matches("http://")
                    .parse::<std::net::SocketAddr>()
                    .unwrap(),
            );
        }
        if let Some(t) = l.strip_prefix("token:") {
            token = Some(t.trim().to_string());
        }
        if let Some(s) = l.strip_prefix("store:") {
            store = Some(std::path::PathBuf::from(s.trim()));
        }
        if l.starts_with("Press Ctrl-C") {
            break;
        }
    }
    let (proxy, token, store) = (proxy.unwrap(), token.unwrap(), store.unwrap());
    assert!(store.exists());
    // The printed commands are the ones a newcomer pastes: run them as printed.
    let commands: Vec<&str> = text
        .lines()
        .map(str::trim)
        .filter(|l| l.starts_with("curl "))
        .collect();
    assert_eq!(commands.len(), 4, "{text}");
    assert!(
        commands.iter().all(|c| c.contains(&proxy.to_string())),
        "{text}"
    );
    let run = |c: &str| {
        let out = Command::new("sh").args(["-c", c]).output().unwrap();
        assert!(out.status.success(), "{c}: {out:?}");
        String::from_utf8_lossy(&out.stdout).to_string()
    };
    assert!(run(commands[0]).contains("\"anonymous\""));
    assert!(run(commands[1]).contains("1000000000000000001"));
    let spoofed = run(commands[2]);
    assert!(
        spoofed.contains("1000000000000000001") && !spoofed.contains("\"1\""),
        "{spoofed}"
    );
    assert!(run(commands[3]).contains("401"));
    // 1. anonymous on a public route
    let r = Req::get("/public").send(proxy);
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["headers"]["x-fluxgate-auth-kind"], "anonymous");
    // 2. authenticated: identity visible in the echo
    let r = Req::get("/users/@me")
        .header("authorization", &token)
        .send(proxy);
    assert_eq!(r.status, 200);
    let h = &r.json()["headers"];
    assert_eq!(h["x-fluxgate-user-id"], "1000000000000000001");
    assert_eq!(h["x-fluxgate-auth-kind"], "session");
    // 3. a spoofed header is replaced
    let r = Req::get("/users/@me")
        .header("authorization", &token)
        .header("X-Fluxgate-User-Id", "1")
        .send(proxy);
    assert_eq!(
        r.json()["headers"]["x-fluxgate-user-id"],
        "1000000000000000001"
    );
    // 4. 401 JSON
    Req::get("/users/@me")
        .send(proxy)
        .denial(401, "UNAUTHORIZED");
    // Ctrl-C stops everything and removes the temporary files.
    assert!(ctrl_c(&mut child).success());
    let mut rest = String::new();
    for l in out.lines() {
        rest.push_str(&l.unwrap());
    }
    assert!(rest.contains("stopped"), "{rest}");
    assert!(!store.exists(), "temporary store left behind");
}

fn cli(fg: &Fluxgate, args: &[&str]) -> (i32, serde_json::Value, String) {
    let out = Command::new(bin())
        .arg("sessions")
        .args([
            "--admin",
            &fg.admin.to_string(),
            "--secret-env",
            "FLUXGATE_TEST_ADMIN_SECRET",
        ])
        .args(args)
        .env("FLUXGATE_TEST_ADMIN_SECRET", ADMIN_SECRET)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    (
        out.status.code().unwrap_or(-1),
        serde_json::from_str(&stdout).unwrap_or(serde_json::Value::Null),
        String::from_utf8_lossy(&out.stderr).into(),
    )
}

#[test]
fn sessions_cli_creates_lists_and_revokes_through_the_admin_api() {
    let up = Upstream::start();
    let fg = Fluxgate::start(up.addr, "");
    let (code, created, err) = cli(
        &fg,
        &[
            "create",
            "--user-id",
            "77",
            "--lifetime",
            "1h",
            "--client-ip",
            "192.0.2.4",
        ],
    );
    assert_eq!(code, 0, "{err}");
    let token = created["token"].as_str().unwrap().to_string();
    let sid = created["sid"].as_str().unwrap().to_string();
    assert!(token.starts_with("flx_") && token.len() == 40);
    assert_eq!(
        fg.send(&Req::get("/x").header("authorization", &token))
            .status,
        200
    );

    let (code, listed, _) = cli(&fg, &["list", "--user-id", "77"]);
    assert_eq!(code, 0);
    assert_eq!(listed["sessions"][0]["sid"], sid.as_str());
    assert_eq!(listed["sessions"][0]["client_ip"], "192.0.2.4");
    assert!(
        !listed.to_string().contains(&token),
        "listing must never show tokens"
    );

    let (code, _, err) = cli(&fg, &["revoke", "--sid", &sid]);
    assert_eq!(code, 0, "{err}");
    fg.send(&Req::get("/x").header("authorization", &token))
        .denial(401, "UNAUTHORIZED");

    let (_, a, _) = cli(&fg, &["create", "--user-id", "77"]);
    let (_, b, _) = cli(
        &fg,
        &[
            "create",
            "--user-id",
            "77",
            "--kind",
            "oauth2",
            "--scopes",
            "identify,guilds",
        ],
    );
    assert_eq!(b["scopes"], serde_json::json!(["identify", "guilds"]));
    let (code, revoked, _) = cli(&fg, &["revoke", "--user-id", "77"]);
    assert_eq!(code, 0);
    assert_eq!(revoked["revoked"], 2);
    for t in [&a["token"], &b["token"]] {
        let r = fg.send(
            &Req::get("/x").header("authorization", &format!("Bearer {}", t.as_str().unwrap())),
        );
        r.denial(401, "UNAUTHORIZED");
    }
}

#[test]
fn sessions_cli_reports_bad_input_and_a_wrong_secret() {
    let up = Upstream::start();
    let fg = Fluxgate::start(up.addr, "");
    let (code, _, err) = cli(&fg, &["create", "--user-id", "bad id!"]);
    assert_eq!(code, 1);
    assert!(err.contains("user_id must be"), "{err}");
    let (code, _, err) = cli(&fg, &["create", "--user-id", "1", "--lifetime", "forever"]);
    assert_eq!(code, 1);
    assert!(err.contains("invalid duration"), "{err}");
    let (code, _, err) = cli(&fg, &["revoke", "--sid", "nope"]);
    assert_eq!(code, 1);
    assert!(err.contains("sid must be"), "{err}");
    let out = Command::new(bin())
        .args([
            "sessions",
            "--admin",
            &fg.admin.to_string(),
            "--secret-env",
            "FLUXGATE_TEST_WRONG",
            "list",
            "--user-id",
            "1",
        ])
        .env("FLUXGATE_TEST_WRONG", "wrong-admin-secret-000")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("401"));
}

#[test]
fn sessions_cli_reads_the_admin_address_and_secret_from_the_config() {
    let up = Upstream::start();
    let port = free_port();
    let dir = std::sync::Arc::new(tempfile::tempdir().unwrap());
    let cfg = base_config(dir.path(), up.addr, "").replace(
        "listen = \"127.0.0.1:0\"\nsecret",
        &format!("listen = \"127.0.0.1:{port}\"\nsecret"),
    );
    let fg = Fluxgate::start_with(dir, &cfg);
    assert_eq!(fg.admin.port(), port);
    let out = Command::new(bin())
        .args(["sessions", "--config"])
        .arg(&fg.config_path)
        .args(["create", "--user-id", "5"])
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        fg.send(&Req::get("/x").header("authorization", v["token"].as_str().unwrap()))
            .status,
        200
    );
}

#[test]
fn management_api_is_closed_without_an_admin_secret() {
    let up = Upstream::start();
    let dir = std::sync::Arc::new(tempfile::tempdir().unwrap());
    let cfg = base_config(dir.path(), up.addr, "")
        .replace(&format!("secret = {{ value = \"{ADMIN_SECRET}\" }}"), "");
    let fg = Fluxgate::start_with(dir, &cfg);
    let r = fg.admin(
        "POST",
        "/v1/sessions",
        Some(serde_json::json!({"user_id": "1"})),
    );
    assert_eq!(r.status, 403);
    assert!(r.text().contains("admin.secret"));
    assert_eq!(get(fg.admin, "/readyz").unwrap().status, 200);
}

/// Starts `fluxgate demo` with `args`; returns the child, everything it printed up to
/// "Press Ctrl-C", and its stdout for the rest (kept open: the demo prints when it stops).
fn start_demo(
    args: &[&str],
) -> (
    std::process::Child,
    String,
    BufReader<std::process::ChildStdout>,
) {
    let mut child = Command::new(bin())
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let mut text = String::new();
    let deadline = monotonic_now() + Duration::from_secs(30);
    let problem = loop {
        if monotonic_now() >= deadline {
            break "did not finish starting";
        }
        let mut line = String::new();
        if out.read_line(&mut line).unwrap_or(0) == 0 {
            break "exited early";
        }
        text.push_str(&line);
        if line.trim().starts_with("Press Ctrl-C") {
            return (child, text, out);
        }
    };
    let _ = child.kill();
    let _ = child.wait();
    panic!("demo {problem}:\n{text}");
}

#[test]
fn backend_demo_logs_in_with_a_cookie_uses_it_and_logs_out_as_printed() {
    let (mut child, text, stdout) = start_demo(&["demo", "--backend", "--port", "0"]);
    // The printed commands, run as a newcomer pastes them (the MFA pair in one shell).
    let commands: Vec<&str> = text
        .lines()
        .map(str::trim)
        .filter(|l| l.starts_with("curl ") || l.starts_with("ticket="))
        .collect();
    assert_eq!(commands.len(), 6, "{text}");
    let run = |c: &str| {
        let out = Command::new("sh").args(["-c", c]).output().unwrap();
        assert!(out.status.success(), "{c}: {out:?}");
        String::from_utf8_lossy(&out.stdout).to_string()
    };
    // 1. Login: the cookie is set, HttpOnly, and the page never sees the token.
    let login = run(commands[0]);
    let cookie = login
        .lines()
        .find(|l| {
            l.to_ascii_lowercase()
                .starts_with("set-cookie: fluxer_session=flx_")
        })
        .unwrap_or_else(|| panic!("no session cookie:\n{login}"));
    assert!(cookie.contains("HttpOnly"), "{cookie}");
    let token = cookie["set-cookie: fluxer_session=".len()..]
        .split(';')
        .next()
        .unwrap()
        .to_string();
    let body = login.split("\r\n\r\n").nth(1).unwrap_or("");
    assert!(
        !body.contains(&token),
        "token stripped from the body: {body}"
    );
    assert!(body.contains("1000000000000000002"), "{body}");
    // 2. The cookie reaches the API as Authorization, with the identity headers.
    let used: serde_json::Value = serde_json::from_str(&run(commands[1])).unwrap();
    assert_eq!(used["headers"]["authorization"], token.as_str());
    assert_eq!(used["headers"]["x-fluxgate-user-id"], "1000000000000000002");
    // 3. MFA: ticket first, then the code sets the cookie.
    let mfa = run(&format!("{}\n{}", commands[2], commands[3]));
    assert!(mfa.starts_with("HTTP/1.1 200"), "{mfa}");
    assert!(
        mfa.to_ascii_lowercase()
            .contains("set-cookie: fluxer_session=flx_"),
        "{mfa}"
    );
    // 4. Logout clears the cookie; 5. then 401.
    let out = run(commands[4]);
    assert!(out.starts_with("HTTP/1.1 204"), "{out}");
    assert!(out.contains("fluxer_session=; "), "{out}");
    let after = run(commands[5]);
    assert!(after.starts_with("HTTP/1.1 401"), "{after}");
    assert!(after.contains("\"UNAUTHORIZED\""), "{after}");
    // The old token was revoked in the API and forgotten by fluxgate, not only dropped by curl.
    let proxy: std::net::SocketAddr = text
        .lines()
        .find_map(|l| l.trim().strip_prefix("proxy:"))
        .unwrap()
        .trim()
        .trim_start_matches("http://")
        .parse()
        .unwrap();
    Req::get("/users/@me/guilds")
        .header("cookie", &format!("fluxer_session={token}"))
        .send(proxy)
        .denial(401, "UNAUTHORIZED");
    // Ctrl-C stops it and removes its temporary files (the cookie jar among them).
    assert!(ctrl_c(&mut child).success());
    let rest: String = stdout.lines().map(|l| l.unwrap()).collect();
    assert!(rest.contains("stopped"), "{rest}");
    let jar = text
        .lines()
        .find_map(|l| l.trim().strip_prefix("cookies:"))
        .unwrap()
        .trim();
    assert!(
        !std::path::Path::new(jar).exists(),
        "cookie jar left behind"
    );
}

/// Sends the demo Ctrl-C and waits (at most 10 s) for it to exit.
fn ctrl_c(child: &mut std::process::Child) -> std::process::ExitStatus {
    Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    let deadline = monotonic_now() + Duration::from_secs(10);
    loop {
        if let Some(s) = child.try_wait().unwrap() {
            return s;
        }
        assert!(monotonic_now() < deadline, "demo did not stop on Ctrl-C");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn probe_answers_for_a_running_instance_and_fails_for_a_dead_one() {
    let up = Upstream::start();
    let fg = Fluxgate::start(up.addr, "");
    let probe = |args: &[&str]| {
        Command::new(bin())
            .arg("probe")
            .args(args)
            .output()
            .unwrap()
            .status
            .code()
    };
    let admin = fg.admin.to_string();
    assert_eq!(probe(&["--admin", &admin]), Some(0));
    assert_eq!(probe(&["--admin", &admin, "--live"]), Some(0));
    // The address from a config, as the container's HEALTHCHECK reads it.
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("c.toml");
    std::fs::write(&cfg, format!("[admin]\nlisten = \"{admin}\"\n")).unwrap();
    assert_eq!(probe(&["--config", cfg.to_str().unwrap()]), Some(0));
    // Nothing listening: 69; no address at all: 64.
    let closed = free_port().to_string();
    assert_eq!(
        probe(&["--admin", &format!("127.0.0.1:{closed}")]),
        Some(69)
    );
    assert_eq!(probe(&[]), Some(64));
}
