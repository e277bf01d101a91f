//! The chaos soak's processes: fluxgate instances (the real binary), a recording upstream that
//! can be killed and brought back on the same port, and what `/proc` says about a process (RSS,
//! open file descriptors). Redis comes from `tests/common/redis.rs`. Shared by the bench
//! (`benches/chaos/main.rs`) and the CI test (`tests/it/chaos.rs`) through `#[path]`, so it
//! depends on nothing else in either.

use bytes::Bytes;
use fluxgate::clock::monotonic_now;
use http_body_util::Full;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

pub const ADMIN_SECRET: &str = "chaos-admin-secret-0123456789";

/// The path prefix the canary sends to: a request with it reaching the upstream is an admission
/// the canary's own count must also have seen.
pub const CANARY_PREFIX: &str = "/canary";

/// A running fluxgate, killed on drop.
pub struct Instance {
    pub child: Child,
    pub proxy: SocketAddr,
    pub admin: SocketAddr,
    pub config_path: PathBuf,
    pub stderr_log: PathBuf,
    _dir: tempfile::TempDir,
}

/// The config both instances start from; `extra` is appended (the reload alternates it).
pub fn config(dir: &std::path::Path, upstream: SocketAddr, redis_url: &str, extra: &str) -> String {
    format!(
        r#"
[server]
listen = ["127.0.0.1:0"]
threads = 1
grace_period = "1s"
shutdown_timeout = "1s"
upgrade_socket = "{dir}/upgrade.sock"

[upstream]
addresses = ["{upstream}"]
connect_timeout = "300ms"
read_timeout = "2s"

[sessions]
store = "redis"

[redis]
urls = ["{redis_url}"]
command_timeout = "300ms"
connect_timeout = "300ms"

[rate_limits]
global_limit = 0

[admin]
listen = "127.0.0.1:0"
secret = {{ value = "{ADMIN_SECRET}" }}

[logging]
format = "json"
level = "warn"
access_log = false
{extra}
"#,
        dir = dir.display()
    )
}

impl Instance {
    pub fn start(upstream: SocketAddr, redis_url: &str, extra: &str) -> Instance {
        let dir = tempfile::tempdir().unwrap();
        let config_path = dir.path().join("fluxgate.toml");
        std::fs::write(&config_path, config(dir.path(), upstream, redis_url, extra)).unwrap();
        let stderr_log = dir.path().join("stderr.log");
        let mut child = Command::new(env!("CARGO_BIN_EXE_fluxgate"))
            .args(["run", "--config"])
            .arg(&config_path)
            .stdout(Stdio::piped())
            .stderr(Stdio::from(std::fs::File::create(&stderr_log).unwrap()))
            .spawn()
            .expect("start fluxgate");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let v: serde_json::Value = serde_json::from_str(&line).unwrap_or_else(|_| {
            panic!(
                "fluxgate did not start: {line:?}\n{}",
                std::fs::read_to_string(&stderr_log).unwrap_or_default()
            )
        });
        let proxy: SocketAddr = v["proxy"][0].as_str().unwrap().parse().unwrap();
        let admin: SocketAddr = v["admin"].as_str().unwrap().parse().unwrap();
        let i = Instance {
            child,
            proxy,
            admin,
            config_path,
            stderr_log,
            _dir: dir,
        };
        let deadline = monotonic_now() + Duration::from_secs(20);
        while http(i.admin, "GET", "/livez", &[], "").0 != 200 {
            assert!(monotonic_now() < deadline, "fluxgate never became live");
            std::thread::sleep(Duration::from_millis(20));
        }
        i
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Still running (not exited).
    pub fn alive(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    pub fn signal(&self, sig: &str) {
        Command::new("kill")
            .arg(format!("-{sig}"))
            .arg(self.pid().to_string())
            .status()
            .unwrap();
    }

    /// A management API call with the admin secret: (status, body).
    pub fn admin(&self, method: &str, path: &str, body: &str) -> (u16, String) {
        let auth = format!("Bearer {ADMIN_SECRET}");
        http(
            self.admin,
            method,
            path,
            &[
                ("authorization", auth.as_str()),
                ("content-type", "application/json"),
            ],
            body,
        )
    }

    /// Creates a session for `user`: (token, sid).
    pub fn create_session(&self, user: &str) -> (String, String) {
        let (t, retried) = self.create_session_retrying(user);
        assert_eq!(retried, 0, "the session store was unavailable");
        t
    }

    /// Creates a session for `user`, trying again for up to 5 s while the store answers 503:
    /// ((token, sid), how many 503s came first).
    pub fn create_session_retrying(&self, user: &str) -> ((String, String), u64) {
        let deadline = monotonic_now() + Duration::from_secs(5);
        let mut unavailable = 0;
        loop {
            let (status, body) = self.admin(
                "POST",
                "/v1/sessions",
                &format!(r#"{{"user_id":"{user}","lifetime":"1d"}}"#),
            );
            if status == 503 && monotonic_now() < deadline {
                unavailable += 1;
                std::thread::sleep(Duration::from_millis(20));
                continue;
            }
            assert_eq!(status, 201, "create session: {body}");
            let v: serde_json::Value = serde_json::from_str(&body).unwrap();
            let token = v["token"].as_str().unwrap().into();
            return ((token, v["sid"].as_str().unwrap().into()), unavailable);
        }
    }

    /// The value of one metric series (its exact text before the value), 0 when absent.
    pub fn metric(&self, series: &str) -> f64 {
        let (_, body) = http(self.admin, "GET", "/metrics", &[], "");
        body.lines()
            .find_map(|l| l.strip_prefix(series).and_then(|v| v.trim().parse().ok()))
            .unwrap_or(0.0)
    }

    /// A request to the proxy with an `Authorization` token (or none): its status.
    pub fn get(&self, path: &str, token: Option<&str>) -> u16 {
        let headers: Vec<(&str, &str)> = token.map(|t| ("authorization", t)).into_iter().collect();
        http(self.proxy, "GET", path, &headers, "").0
    }
}

impl Drop for Instance {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One HTTP/1.1 request on a new connection, read to its end: (status, body); status 0 when
/// the connection failed. Bounded: 5 s to read.
pub fn http(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> (u16, String) {
    let Ok(mut s) = TcpStream::connect_timeout(&addr, Duration::from_secs(2)) else {
        return (0, String::new());
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
    let mut req = format!(
        "{method} {path} HTTP/1.1\r\nhost: chaos\r\nconnection: close\r\ncontent-length: {}\r\n",
        body.len()
    );
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    req.push_str(body);
    if s.write_all(req.as_bytes()).is_err() {
        return (0, String::new());
    }
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    let text = String::from_utf8_lossy(&out);
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    (status, body)
}

/// The upstream: answers 200 to everything and counts what reaches it, in this process so the
/// counts outlive its kills. Killing it drops its runtime: the listener and every connection
/// close, as when the process dies.
pub struct Upstream {
    pub addr: SocketAddr,
    /// Requests received, in total and under [`CANARY_PREFIX`] (must stay 0).
    pub hits: Arc<AtomicU64>,
    pub canary_hits: Arc<AtomicU64>,
    rt: Option<tokio::runtime::Runtime>,
}

impl Upstream {
    pub fn start() -> Upstream {
        let mut u = Upstream {
            addr: ([127, 0, 0, 1], 0).into(),
            hits: Arc::default(),
            canary_hits: Arc::default(),
            rt: None,
        };
        u.spawn();
        u
    }

    /// Stops serving: the port refuses connections, open ones are closed.
    pub fn kill(&mut self) {
        if let Some(rt) = self.rt.take() {
            rt.shutdown_background();
        }
    }

    /// Serves again on the same port.
    pub fn restart(&mut self) {
        self.kill();
        self.spawn();
    }

    fn spawn(&mut self) {
        use hyper::server::conn::http1;
        use hyper::service::service_fn;
        use hyper_util::rt::TokioIo;
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let addr = self.addr;
        // SO_REUSEADDR, so that the port is free again at once after a kill (the connections
        // it closed linger in TIME_WAIT).
        let listener = rt.block_on(async {
            let deadline = monotonic_now() + Duration::from_secs(10);
            loop {
                let sock = tokio::net::TcpSocket::new_v4().unwrap();
                sock.set_reuseaddr(true).unwrap();
                match sock.bind(addr).and_then(|()| sock.listen(1024)) {
                    Ok(l) => break l,
                    Err(e) => {
                        assert!(monotonic_now() < deadline, "rebind {addr}: {e}");
                        tokio::time::sleep(Duration::from_millis(20)).await;
                    }
                }
            }
        });
        self.addr = listener.local_addr().unwrap();
        let (hits, canary) = (self.hits.clone(), self.canary_hits.clone());
        rt.spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let _ = stream.set_nodelay(true);
                let (hits, canary) = (hits.clone(), canary.clone());
                tokio::spawn(async move {
                    let svc = service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                        hits.fetch_add(1, Ordering::Relaxed);
                        if req.uri().path().starts_with(CANARY_PREFIX) {
                            canary.fetch_add(1, Ordering::Relaxed);
                        }
                        async {
                            Ok::<_, std::convert::Infallible>(hyper::Response::new(Full::new(
                                Bytes::from_static(b"ok"),
                            )))
                        }
                    });
                    let _ = http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), svc)
                        .await;
                });
            }
        });
        self.rt = Some(rt);
    }
}

impl Drop for Upstream {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Resident set size in bytes, from `/proc/<pid>/statm` (0 when unreadable).
pub fn rss(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/statm"))
        .ok()
        .and_then(|s| s.split_whitespace().nth(1)?.parse::<u64>().ok())
        .unwrap_or(0)
        * 4096
}

/// Open file descriptors, the entries of `/proc/<pid>/fd` (0 when unreadable).
pub fn fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, |d| d.count())
}
