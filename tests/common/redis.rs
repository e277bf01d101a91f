//! Real `redis-server` processes for tests and benches: on free ports, without persistence,
//! killable and restartable. Where redis-server is missing the calling test is skipped with a
//! visible message, unless FLUXGATE_REQUIRE_REDIS=1 (CI), where it fails.
//!
//! The one helper that starts Redis: the integration tests reach it as `common::redis`, the
//! benches include this file with `#[path = "../tests/common/redis.rs"] mod redis_server;`, so
//! it depends on nothing else in `tests/common`.

#![allow(
    dead_code,
    reason = "shared by the tests and several benches; each uses a part"
)]

use fluxgate::clock::monotonic_now;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// Whether Redis tests can run here. Panics when Redis is required but missing.
pub fn available() -> bool {
    let found = Command::new("redis-server")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !found {
        if std::env::var("FLUXGATE_REQUIRE_REDIS").as_deref() == Ok("1") {
            panic!("redis-server is not installed but FLUXGATE_REQUIRE_REDIS=1");
        }
        eprintln!(
            "SKIPPED: redis-server is not installed (install it, or set FLUXGATE_REQUIRE_REDIS=1 to fail instead)"
        );
    }
    found
}

/// Skips the calling test (visibly) when Redis is unavailable.
#[macro_export]
macro_rules! require_redis {
    () => {
        if !$crate::common::redis::available() {
            return;
        }
    };
}

/// A free loopback port (this file's own, so that benches can include it alone).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}

pub struct RedisServer {
    child: Option<Child>,
    pub port: u16,
    pub dir: tempfile::TempDir,
    args: Vec<String>,
    /// Runs redis-server under this command, e.g. `taskset -c 1` (the e2e bench pins it).
    launcher: Vec<String>,
    /// For TLS servers: the port speaks TLS only.
    pub tls: bool,
}

impl RedisServer {
    /// A plain Redis on a free port.
    pub fn start() -> RedisServer {
        Self::start_with(&[])
    }

    /// With extra `redis-server` arguments.
    pub fn start_with(extra: &[&str]) -> RedisServer {
        Self::start_under(&[], extra)
    }

    /// Started through `launcher` (a command and its arguments, such as `taskset -c 1`; empty
    /// for none), with extra `redis-server` arguments.
    pub fn start_under(launcher: &[String], extra: &[&str]) -> RedisServer {
        Self::start_first_on(free_port(), launcher, extra)
    }

    /// As [`Self::start_under`], trying `port` first (another one if it is taken).
    pub fn start_first_on(port: u16, launcher: &[String], extra: &[&str]) -> RedisServer {
        let dir = tempfile::tempdir().unwrap();
        let mut args: Vec<String> = vec![
            "--port".into(),
            port.to_string(),
            "--bind".into(),
            "127.0.0.1".into(),
            "--save".into(),
            "".into(),
            "--appendonly".into(),
            "no".into(),
            "--dir".into(),
            dir.path().display().to_string(),
        ];
        args.extend(extra.iter().map(|s| s.to_string()));
        let mut s = RedisServer {
            child: None,
            port,
            dir,
            args,
            launcher: launcher.to_vec(),
            tls: false,
        };
        s.first_spawn();
        s
    }

    /// A TLS-only Redis with the given certificate files.
    pub fn start_tls(cert: &Path, key: &Path, ca: &Path) -> RedisServer {
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let args: Vec<String> = [
            "--port",
            "0",
            "--tls-port",
            &port.to_string(),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--tls-cert-file",
            &cert.display().to_string(),
            "--tls-key-file",
            &key.display().to_string(),
            "--tls-ca-cert-file",
            &ca.display().to_string(),
            "--tls-auth-clients",
            "no",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        let mut s = RedisServer {
            child: None,
            port,
            dir,
            args,
            launcher: Vec::new(),
            tls: true,
        };
        s.first_spawn();
        s
    }

    /// The first start: when another process took the free port between `free_port` and
    /// redis-server's bind (other tests start servers on port 0 all the time), it starts again
    /// on another port instead of failing the test.
    fn first_spawn(&mut self) {
        for _ in 0..4 {
            if self.try_spawn() {
                return;
            }
            let old = self.port.to_string();
            self.port = free_port();
            let port_flag = if self.tls { "--tls-port" } else { "--port" };
            let at = self
                .args
                .iter()
                .position(|a| a == port_flag)
                .expect("the port argument");
            assert_eq!(self.args[at + 1], old);
            self.args[at + 1] = self.port.to_string();
        }
        self.spawn();
    }

    /// Starts the server; false when it exited at once because its port was taken.
    fn try_spawn(&mut self) -> bool {
        self.start_child();
        let deadline = monotonic_now() + Duration::from_secs(2);
        while monotonic_now() < deadline {
            if let Some(c) = self.child.as_mut()
                && c.try_wait().ok().flatten().is_some()
            {
                let log =
                    std::fs::read_to_string(self.dir.path().join("redis.log")).unwrap_or_default();
                if log.contains("in use") {
                    self.child = None;
                    return false;
                }
                break;
            }
            if self.ready() {
                return true;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        self.wait_ready();
        true
    }

    fn spawn(&mut self) {
        self.start_child();
        self.wait_ready();
    }

    fn start_child(&mut self) {
        let log = std::fs::File::create(self.dir.path().join("redis.log")).unwrap();
        let mut cmd = match self.launcher.split_first() {
            Some((program, args)) => {
                let mut c = Command::new(program);
                c.args(args).arg("redis-server");
                c
            }
            None => Command::new("redis-server"),
        };
        let child = cmd
            .args(&self.args)
            .stdout(Stdio::from(log.try_clone().unwrap()))
            .stderr(Stdio::from(log))
            .spawn()
            .expect("start redis-server");
        self.child = Some(child);
    }

    /// Answering on its port (to PING, for a plain server). Bounded in time: whatever else
    /// may listen on the port must not hang the caller.
    fn ready(&self) -> bool {
        use std::io::{Read, Write};
        let Ok(mut c) = std::net::TcpStream::connect(("127.0.0.1", self.port)) else {
            return false;
        };
        if self.tls {
            return true;
        }
        let _ = c.set_read_timeout(Some(Duration::from_millis(500)));
        let mut buf = [0u8; 64];
        c.write_all(b"PING\r\n").is_ok()
            && c.read(&mut buf).is_ok_and(|n| {
                let got = &buf[..n];
                got.starts_with(b"+PONG") || got.starts_with(b"-NOAUTH")
            })
    }

    fn wait_ready(&self) {
        let deadline = monotonic_now() + Duration::from_secs(10);
        while monotonic_now() < deadline {
            if self.ready() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!(
            "redis-server did not start:\n{}",
            std::fs::read_to_string(self.dir.path().join("redis.log")).unwrap_or_default()
        );
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Runs `redis-cli` against this server; returns its stdout.
    pub fn cli(&self, args: &[&str]) -> String {
        let out = Command::new("redis-cli")
            .args(["-p", &self.port.to_string()])
            .args(args)
            .output()
            .expect("run redis-cli");
        String::from_utf8_lossy(&out.stdout).into()
    }

    /// `kill -9`: the server vanishes without closing anything gracefully.
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Starts again on the same port (empty: no persistence).
    pub fn restart(&mut self) {
        self.kill9();
        self.spawn();
    }

    /// Calls of one command since start (from INFO commandstats).
    pub fn calls(&self, cmd: &str) -> u64 {
        let info = self.cli(&["INFO", "commandstats"]);
        info.lines()
            .find_map(|l| {
                l.strip_prefix(&format!("cmdstat_{cmd}:calls="))
                    .and_then(|rest| rest.split(',').next())
                    .and_then(|n| n.parse().ok())
            })
            .unwrap_or(0)
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// The `[sessions]` config for a Redis store at `url` (appended to the base config).
pub fn redis_sessions(url: &str, extra: &str) -> String {
    format!(
        r#"
[sessions]
store = "redis"
[redis]
urls = ["{url}"]
command_timeout = "300ms"
connect_timeout = "300ms"
{extra}
"#
    )
}
