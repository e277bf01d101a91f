//! Operations through the real binary: config reload on SIGHUP (valid and invalid), graceful
//! shutdown draining in-flight requests, and Pingora's graceful upgrade.

use crate::common::*;
use fluxgate::clock::monotonic_now;
use std::sync::Arc;
use std::time::Duration;

const PUBLIC: &str = "[[route]]\npath = \"/public\"\nauth = \"none\"\n";

fn wait_until(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = monotonic_now() + Duration::from_secs(10);
    while !f() {
        assert!(monotonic_now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn sighup_applies_a_valid_config_and_keeps_the_old_one_when_the_new_one_is_invalid() {
    let up = Upstream::start();
    let fg = Fluxgate::start(up.addr, PUBLIC);
    let cfg = std::fs::read_to_string(&fg.config_path).unwrap();
    fg.send(&Req::get("/thing")).denial(401, "UNAUTHORIZED");
    let (tok, _) = fg.create_session(serde_json::json!({"user_id": "5", "kind": "session"}));

    // A new public route and a renamed identity header, applied without a restart.
    let next = format!("{cfg}\n[[route]]\npath = \"/thing\"\nauth = \"none\"\n").replace(
        "[logging]",
        "[identity]\nuser_id_header = \"X-Auth-User\"\n\n[logging]",
    );
    std::fs::write(&fg.config_path, &next).unwrap();
    fg.signal("HUP");
    wait_until("the reload", || {
        fg.metric("fluxgate_config_reloads_total{result=\"success\",what=\"config\"}") == 1.0
    });
    assert_eq!(fg.send(&Req::get("/thing")).status, 200);
    let r = fg.send(&Req::get("/users/@me").header("authorization", &tok));
    assert_eq!(r.status, 200);
    assert_eq!(up.last().get("x-auth-user").as_deref(), Some("5"));
    // Sessions, caches and the store survived the reload.
    // The metric is counted before the log line is written (by the background writer).
    fg.wait_log("configuration reloaded");

    // An invalid file: refused with every problem named, and the config in use stays.
    let broken = next
        .replace("auth = \"none\"\n", "auth = \"sometimes\"\n")
        .replace("[logging]", "[logging]\nnot_a_key = 1");
    std::fs::write(&fg.config_path, &broken).unwrap();
    fg.signal("HUP");
    let log = fg.wait_log("configuration reload refused");
    assert!(log.contains("auth"), "{log}");
    assert!(log.contains("not_a_key"), "{log}");
    assert_eq!(
        fg.metric("fluxgate_config_reloads_total{result=\"failure\",what=\"config\"}"),
        1.0
    );
    assert_eq!(fg.send(&Req::get("/thing")).status, 200);
    assert_eq!(fg.send(&Req::get("/public")).status, 200);
    fg.send(&Req::get("/other")).denial(401, "UNAUTHORIZED");

    // A change to a restart-only section is applied elsewhere and named in the log.
    std::fs::write(
        &fg.config_path,
        next.replace("threads = 1\n", "threads = 2\n"),
    )
    .unwrap();
    fg.signal("HUP");
    fg.wait_log("take effect after a restart");
    assert!(
        fg.stderr().contains(r#""sections":"server""#),
        "{}",
        fg.stderr()
    );
    assert_eq!(fg.send(&Req::get("/thing")).status, 200);
    // A later reload still says so: the change has not taken effect yet.
    std::fs::write(
        &fg.config_path,
        format!(
            "{}\n[[route]]\npath = \"/more\"\nauth = \"none\"\n",
            next.replace("threads = 1\n", "threads = 2\n")
        ),
    )
    .unwrap();
    fg.signal("HUP");
    wait_until("the second restart notice", || {
        fg.stderr().matches("take effect after a restart").count() == 2
    });
    assert_eq!(fg.send(&Req::get("/more")).status, 200);
}

#[test]
fn rotating_an_internal_secret_by_reload_takes_effect_at_once() {
    let up = Upstream::start();
    let secrets = |names: &[(&str, &str)]| -> String {
        names
            .iter()
            .map(|(n, v)| {
                format!("[[internal_secrets]]\nname = \"{n}\"\nsecret = {{ value = \"{v}\" }}\n")
            })
            .collect::<String>()
            + "[[route]]\npath = \"/_rpc/*\"\nauth = \"internal\"\n"
    };
    let fg = Fluxgate::start(up.addr, &secrets(&[("old", "old-internal-secret-0123")]));
    let call = |s: &str| {
        fg.send(&Req::get("/_rpc/x").header("authorization", &format!("Bearer {s}")))
            .status
    };
    assert_eq!(call("old-internal-secret-0123"), 200);
    assert_eq!(call("new-internal-secret-0123"), 401);
    let base = std::fs::read_to_string(&fg.config_path).unwrap();
    let cut = base.find("[[internal_secrets]]").unwrap();
    std::fs::write(
        &fg.config_path,
        format!(
            "{}{}",
            &base[..cut],
            secrets(&[("new", "new-internal-secret-0123")])
        ),
    )
    .unwrap();
    fg.signal("HUP");
    wait_until("the reload", || {
        fg.metric("fluxgate_config_reloads_total{result=\"success\",what=\"config\"}") == 1.0
    });
    assert_eq!(call("new-internal-secret-0123"), 200);
    assert_eq!(call("old-internal-secret-0123"), 401);
}

/// A config with fixed ports (graceful upgrade hands over listeners by address) and a read
/// timeout long enough for the upstream's 3 s `/slow` answers.
fn fixed_port_config(dir: &std::path::Path, up: std::net::SocketAddr) -> String {
    base_config(dir, up, PUBLIC)
        .replace(
            "listen = [\"127.0.0.1:0\"]",
            &format!("listen = [\"127.0.0.1:{}\"]", free_port()),
        )
        .replace(
            "listen = \"127.0.0.1:0\"",
            &format!("listen = \"127.0.0.1:{}\"", free_port()),
        )
        .replace("read_timeout = \"1s\"", "read_timeout = \"10s\"")
        .replace("shutdown_timeout = \"1s\"", "shutdown_timeout = \"5s\"")
}

/// Starts `/slow` (3 s upstream) on a thread; the answer's status arrives on the channel.
fn slow_request(addr: std::net::SocketAddr) -> std::sync::mpsc::Receiver<u16> {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let r = send_raw(
            addr,
            b"GET /public/slow HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n",
        );
        let _ = tx.send(r.status);
    });
    rx
}

#[test]
fn sigterm_drains_in_flight_requests_before_exiting() {
    let up = Upstream::start();
    let dir = Arc::new(tempfile::tempdir().unwrap());
    let cfg = fixed_port_config(dir.path(), up.addr)
        .replace("path = \"/public\"", "path = \"/public/*\"");
    let mut fg = Fluxgate::start_with(dir, &cfg);
    let rx = slow_request(fg.proxy);
    wait_until("the slow request to reach the upstream", || up.count() == 1);
    fg.signal("TERM");
    // The request in flight is answered in full…
    assert_eq!(rx.recv_timeout(Duration::from_secs(10)).unwrap(), 200);
    // …and then the process exits on its own.
    wait_until("exit", || matches!(fg.child.try_wait(), Ok(Some(_))));
}

#[test]
fn a_graceful_upgrade_hands_the_listener_to_the_new_binary_without_dropping_a_request() {
    let up = Upstream::start();
    let dir = Arc::new(tempfile::tempdir().unwrap());
    let cfg = fixed_port_config(dir.path(), up.addr)
        .replace("path = \"/public\"", "path = \"/public/*\"");
    let mut old = Fluxgate::start_with(dir.clone(), &cfg);
    let (tok, _) = old.create_session(serde_json::json!({"user_id": "11", "kind": "session"}));
    let in_flight = slow_request(old.proxy);
    wait_until("the slow request to reach the upstream", || up.count() == 1);

    // The new process waits for the sockets; the old one hands them over on SIGQUIT.
    let old_pid = old.child.id();
    let quit = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(700));
        std::process::Command::new("kill")
            .args(["-QUIT", &old_pid.to_string()])
            .status()
            .unwrap();
    });
    let new = Fluxgate::start_args(dir, &cfg, &["--upgrade"]);
    quit.join().unwrap();
    assert_eq!(new.proxy, old.proxy);

    // The request the old process had in flight completes.
    assert_eq!(
        in_flight.recv_timeout(Duration::from_secs(10)).unwrap(),
        200
    );
    wait_until("the old process to exit", || {
        matches!(old.child.try_wait(), Ok(Some(_)))
    });
    // The new one serves the same port, with the sessions the old one created.
    let r = new.send(&Req::get("/users/@me").header("authorization", &tok));
    assert_eq!(r.status, 200, "{}\n{}", r.text(), new.stderr());
    assert_eq!(up.last().get("x-fluxgate-user-id").as_deref(), Some("11"));
    // The admin port, which the old process held, is served by the new one.
    assert_eq!(get(new.admin, "/livez").unwrap().status, 200);
    new.wait_log("admin listener bound after the upgrade");
}

/// `deploy/container.toml`, the file the Docker image runs.
fn container_config() -> String {
    std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/container.toml"),
    )
    .unwrap()
}

#[test]
fn the_container_config_checks_and_names_a_missing_or_placeholder_secret() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/container.toml");
    let check = |secret: Option<&str>| {
        let mut c = std::process::Command::new(bin());
        c.arg("check-config")
            .arg(&path)
            .env_remove("FLUXGATE_ADMIN_SECRET");
        if let Some(s) = secret {
            c.env("FLUXGATE_ADMIN_SECRET", s);
        }
        let out = c.output().unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).to_string(),
            String::from_utf8_lossy(&out.stderr).to_string(),
        )
    };
    let (code, normalized, err) = check(Some("6f1c0b9e4a7d2e8f5c3b1a0d9e8f7c6b"));
    assert_eq!(code, Some(0), "{err}");
    assert!(normalized.contains("0.0.0.0:8080"), "{normalized}");
    let (code, _, err) = check(None);
    assert_eq!(code, Some(64));
    assert!(
        err.contains("admin.secret") && err.contains("FLUXGATE_ADMIN_SECRET"),
        "{err}"
    );
    let (code, _, err) = check(Some("REPLACE-with-output-of-openssl-rand-hex-32"));
    assert_eq!(code, Some(64));
    assert!(err.contains("placeholder"), "{err}");
}

#[test]
fn the_images_start_command_serves_with_the_container_config() {
    // The image runs `fluxgate run --config /etc/fluxgate/config.toml` on this file; here its
    // ports become loopback port 0 and the store a temporary directory, nothing else changes.
    let up = Upstream::start();
    let dir = tempfile::tempdir().unwrap();
    let cfg = container_config()
        .replace("\"0.0.0.0:8080\"", "\"127.0.0.1:0\"")
        .replace("\"0.0.0.0:9090\"", "\"127.0.0.1:0\"")
        .replace("127.0.0.1:3000", &up.addr.to_string())
        .replace(
            "/var/lib/fluxgate/sessions.redb",
            &dir.path().join("sessions.redb").display().to_string(),
        );
    let cfg = cfg.replacen(
        "[server]\n",
        &format!(
            "[server]\nupgrade_socket = \"{}/upgrade.sock\"\n",
            dir.path().display()
        ),
        1,
    );
    let path = dir.path().join("config.toml");
    std::fs::write(&path, cfg).unwrap();
    let mut child = std::process::Command::new(bin())
        .args(["run", "--config"])
        .arg(&path)
        .env("FLUXGATE_ADMIN_SECRET", "6f1c0b9e4a7d2e8f5c3b1a0d9e8f7c6b")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let started: Result<serde_json::Value, _> = serde_json::from_str(&first_line(&mut child));
    let checks = || {
        let v = started
            .as_ref()
            .expect("the container config did not start");
        let proxy: std::net::SocketAddr = v["proxy"][0].as_str().unwrap().parse().unwrap();
        let admin = v["admin"].as_str().unwrap().to_string();
        wait_until("the proxy accepts connections", || {
            std::net::TcpStream::connect(proxy).is_ok()
        });
        Req::get("/users/@me")
            .send(proxy)
            .denial(401, "UNAUTHORIZED");
        assert_eq!(up.count(), 0);
        let probe = std::process::Command::new(bin())
            .args(["probe", "--admin", &admin])
            .status()
            .unwrap();
        assert!(probe.success());
    };
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(checks));
    let _ = child.kill();
    let _ = child.wait();
    if let Err(e) = result {
        std::panic::resume_unwind(e);
    }
}

/// An instance announces its `:0` listeners' ports before pingora binds them. Another process
/// starting at the same moment (another instance, a test's backend) must not be able to take
/// such a port in between: the announced address would then answer for someone else (a CI
/// run's login went to another instance's admin API and got its 404).
#[test]
fn a_port_zero_listener_cannot_be_taken_between_its_announcement_and_its_bind() {
    let up = Upstream::start();
    for _ in 0..5 {
        let dir = Arc::new(tempfile::tempdir().unwrap());
        let cfg = base_config(dir.path(), up.addr, PUBLIC);
        let path = dir.path().join("fluxgate.toml");
        std::fs::write(&path, cfg).unwrap();
        let mut child = std::process::Command::new(bin())
            .args(["run", "--config"])
            .arg(&path)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let v: serde_json::Value = serde_json::from_str(&first_line(&mut child)).unwrap();
        let proxy: std::net::SocketAddr = v["proxy"][0].as_str().unwrap().parse().unwrap();
        // At once, as a racing process would: the port is already taken, reserved or bound.
        let taken = std::net::TcpListener::bind(proxy);
        let _ = child.kill();
        let _ = child.wait();
        assert!(
            taken.is_err(),
            "another process bound the announced port {proxy} before the instance did"
        );
    }
    // And the reservation does not stop the instance from serving there.
    let fg = Fluxgate::start(up.addr, PUBLIC);
    assert_eq!(fg.send(&Req::get("/public")).status, 200);
    assert_eq!(up.last().target, "/public");
}
