//! The processes a run starts: the upstream, fluxgate instances, nginx (Redis comes from the
//! tests' helper, `tests/common/redis.rs`). Each is stopped when its handle drops, so a run
//! leaves nothing behind.

use fluxgate::clock::monotonic_now;
use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

pub fn have(cmd: &str) -> bool {
    Command::new("sh")
        .args([
            "-c",
            &format!("command -v {cmd} || test -x /usr/sbin/{cmd}"),
        ])
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// `taskset -c <cpu>` when there is more than one CPU to pin to; nothing otherwise.
pub fn pin_prefix(cpu: usize) -> Vec<String> {
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    if cpus > 1 && have("taskset") {
        vec!["taskset".into(), "-c".into(), (cpu % cpus).to_string()]
    } else {
        Vec::new()
    }
}

/// `program`, pinned to `cpu` by [`pin_prefix`].
pub fn pinned(cpu: usize, program: &Path) -> Command {
    match pin_prefix(cpu).split_first() {
        Some((taskset, args)) => {
            let mut c = Command::new(taskset);
            c.args(args).arg(program);
            c
        }
        None => Command::new(program),
    }
}

pub fn wait_port(addr: SocketAddr) {
    let deadline = monotonic_now() + Duration::from_secs(20);
    while TcpStream::connect(addr).is_err() {
        assert!(monotonic_now() < deadline, "{addr} never came up");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A child process killed on drop.
pub struct Proc {
    pub child: Child,
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Proc {
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Resident set size in bytes (Linux).
    pub fn rss(&self) -> u64 {
        std::fs::read_to_string(format!("/proc/{}/statm", self.pid()))
            .ok()
            .and_then(|s| {
                s.split_whitespace()
                    .nth(1)
                    .and_then(|p| p.parse::<u64>().ok())
            })
            .unwrap_or(0)
            * 4096
    }
}

/// User + system CPU seconds a process (all its threads) has used so far, from
/// `/proc/<pid>/stat`; 0 when it cannot be read.
pub fn cpu_secs(pid: u32) -> f64 {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return 0.0;
    };
    // Fields after the command name (which may hold spaces) end with ')': utime and stime are
    // fields 14 and 15 of the whole line, 12 and 13 after it.
    let after = stat.rsplit_once(')').map_or("", |(_, a)| a);
    let ticks: u64 = after
        .split_whitespace()
        .skip(11)
        .take(2)
        .filter_map(|t| t.parse::<u64>().ok())
        .sum();
    ticks as f64 / clock_ticks()
}

/// The kernel's clock ticks per second (`getconf CLK_TCK`; 100 on Linux).
fn clock_ticks() -> f64 {
    static TICKS: std::sync::OnceLock<f64> = std::sync::OnceLock::new();
    *TICKS.get_or_init(|| {
        Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse().ok())
            .unwrap_or(100.0)
    })
}

/// The upstream: this same binary re-executed with `--upstream <port>`.
pub fn upstream(cpu: usize) -> (Proc, SocketAddr) {
    let port = free_port();
    let exe = std::env::current_exe().unwrap();
    let child = pinned(cpu, &exe)
        .args(["--upstream", &port.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let addr: SocketAddr = ([127, 0, 0, 1], port).into();
    wait_port(addr);
    (Proc { child }, addr)
}

/// Row (p)'s bare Pingora: this same binary re-executed with `--bare-pingora <port> <upstream>`.
pub fn bare_pingora(cpu: usize, upstream: SocketAddr) -> (Proc, SocketAddr) {
    let port = free_port();
    let exe = std::env::current_exe().unwrap();
    let child = pinned(cpu, &exe)
        .args(["--bare-pingora", &port.to_string(), &upstream.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let addr: SocketAddr = ([127, 0, 0, 1], port).into();
    wait_port(addr);
    (Proc { child }, addr)
}

/// Serves `200 ok` as fast as it can, on one thread (the `--upstream` mode).
pub fn serve_upstream(port: u16) {
    use http_body_util::Full;
    use hyper::server::conn::http1;
    use hyper::service::service_fn;
    use hyper_util::rt::TokioIo;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async move {
        let l = tokio::net::TcpListener::bind(("127.0.0.1", port))
            .await
            .unwrap();
        loop {
            let Ok((s, _)) = l.accept().await else {
                continue;
            };
            let _ = s.set_nodelay(true);
            tokio::spawn(async move {
                let svc = service_fn(|req: hyper::Request<hyper::body::Incoming>| async move {
                    Ok::<_, std::convert::Infallible>(hyper::Response::new(Full::new(
                        match req.uri().path() {
                            "/users/@me" => users_me(&req),
                            _ => bytes::Bytes::from_static(b"ok"),
                        },
                    )))
                });
                let _ = http1::Builder::new()
                    .serve_connection(TokioIo::new(s), svc)
                    .await;
            });
        }
    });
}

/// Row (h)'s "who am I": every `flx_<digits>` token is a session of the user `<digits>`
/// (leading zeros dropped), as a backend that looked it up would answer.
fn users_me(req: &hyper::Request<hyper::body::Incoming>) -> bytes::Bytes {
    let token = req
        .headers()
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let digits = token.trim_start_matches("flx_").trim_start_matches('0');
    let id = if digits.is_empty() { "0" } else { digits };
    bytes::Bytes::from(format!(r#"{{"id":"{id}","mfa_enabled":false,"flags":0}}"#))
}

/// A running fluxgate with its addresses.
pub struct Fluxgate {
    pub proc: Proc,
    pub proxy: SocketAddr,
    pub admin: SocketAddr,
    /// The forward-auth decision endpoint, when `[forward_auth] listen` is set.
    pub forward_auth: Option<SocketAddr>,
    /// The first `[[server.tls]]` listener, when there is one.
    pub tls: Option<SocketAddr>,
    _dir: tempfile::TempDir,
}

pub const ADMIN_SECRET: &str = "bench-admin-secret-0123456789";

pub fn fluxgate(bin: &Path, cpu: usize, name: &str, extra: &str) -> Fluxgate {
    fluxgate_with_log(bin, cpu, name, extra, false)
}

/// As [`fluxgate`]; with `access_log`, the access log is on (JSON) and stderr goes to a file
/// in the instance's directory.
pub fn fluxgate_with_log(
    bin: &Path,
    cpu: usize,
    name: &str,
    extra: &str,
    access_log: bool,
) -> Fluxgate {
    let dir = tempfile::tempdir().unwrap();
    let cfg = format!(
        r#"
[server]
listen = ["127.0.0.1:0"]
threads = 1
grace_period = "1s"
shutdown_timeout = "1s"
upgrade_socket = "{d}/upgrade.sock"

[sessions.embedded]
path = "{d}/sessions.redb"

[admin]
listen = "127.0.0.1:0"
secret = {{ value = "{ADMIN_SECRET}" }}

[logging]
level = "warn"
access_log = {access_log}
{extra}
"#,
        d = dir.path().display()
    );
    let path = dir.path().join("fluxgate.toml");
    std::fs::write(&path, cfg).unwrap();
    let mut child = pinned(cpu, bin)
        .args(["run", "--config"])
        .arg(&path)
        .stdout(Stdio::piped())
        .stderr(if access_log {
            Stdio::from(std::fs::File::create(dir.path().join("stderr.log")).unwrap())
        } else {
            Stdio::inherit()
        })
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let v: serde_json::Value = serde_json::from_str(&line)
        .unwrap_or_else(|_| panic!("fluxgate ({name}) did not start: {line}"));
    let proxy: SocketAddr = v["proxy"][0].as_str().unwrap().parse().unwrap();
    let admin: SocketAddr = v["admin"].as_str().unwrap().parse().unwrap();
    let forward_auth: Option<SocketAddr> = v["forward_auth"].as_str().and_then(|a| a.parse().ok());
    let tls: Option<SocketAddr> = v["tls"][0].as_str().and_then(|a| a.parse().ok());
    wait_port(proxy);
    wait_port(admin);
    Fluxgate {
        proc: Proc { child },
        proxy,
        admin,
        forward_auth,
        tls,
        _dir: dir,
    }
}

impl Fluxgate {
    /// Creates a session through the admin API; returns its token.
    pub fn session(&self, user: &str) -> String {
        let body = format!(r#"{{"user_id":"{user}","lifetime":"1d"}}"#);
        let req = format!(
            "POST /v1/sessions HTTP/1.1\r\nhost: x\r\nauthorization: Bearer {ADMIN_SECRET}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
            body.len()
        );
        let mut s = TcpStream::connect(self.admin).unwrap();
        s.write_all(req.as_bytes()).unwrap();
        let mut out = String::new();
        std::io::Read::read_to_string(&mut s, &mut out).unwrap();
        let json = &out[out.find("\r\n\r\n").unwrap() + 4..];
        let v: serde_json::Value = serde_json::from_str(json).unwrap();
        v["token"].as_str().unwrap().to_string()
    }
}

/// Writes `n` valid sessions straight into Redis (the backend's way), through `redis-cli --pipe`.
pub fn seed_sessions(port: u16, n: usize) -> Vec<String> {
    use sha2::{Digest, Sha256};
    let mut tokens = Vec::with_capacity(n);
    let mut pipe = Vec::new();
    for i in 0..n {
        let t = format!("flx_{i:036}");
        let sid = base64::Engine::encode(
            &base64::engine::general_purpose::URL_SAFE_NO_PAD,
            Sha256::digest(t.as_bytes()),
        );
        let key = format!("fluxgate:session:{sid}");
        let val = format!(
            r#"{{"v":1,"user_id":"{}","kind":"session","created_at":1,"expires_at":null,"scopes":[]}}"#,
            1000 + i
        );
        pipe.extend_from_slice(
            format!(
                "*3\r\n$3\r\nSET\r\n${}\r\n{key}\r\n${}\r\n{val}\r\n",
                key.len(),
                val.len()
            )
            .as_bytes(),
        );
        tokens.push(t);
    }
    let mut c = Command::new("redis-cli")
        .args(["-p", &port.to_string(), "--pipe"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    c.stdin.take().unwrap().write_all(&pipe).unwrap();
    assert!(c.wait().unwrap().success());
    tokens
}

/// nginx `auth_request` in front of the upstream, asking a second nginx that answers 200:
/// the best case of the forward-auth pattern.
pub struct Nginx {
    front: Proc,
    auth: Option<Proc>,
    pub addr: SocketAddr,
    _dir: tempfile::TempDir,
}

impl Nginx {
    /// The processes: the stub's (when there is one), then the front's.
    pub fn pids(&self) -> Vec<u32> {
        self.auth
            .iter()
            .chain([&self.front])
            .map(|p| p.pid())
            .collect()
    }
}

/// nginx with `auth_request`, asking `decider` (fluxgate's forward-auth endpoint, copying its
/// user id header upstream) or, when `None`, a second nginx that answers 200 (the best case of
/// any forward-auth service).
pub fn nginx(cpu: usize, upstream: SocketAddr, decider: Option<SocketAddr>) -> Nginx {
    nginx_tls(cpu, upstream, decider, None)
}

/// As [`nginx`]; with `tls` (certificate and key files), the front terminates TLS 1.3.
pub fn nginx_tls(
    cpu: usize,
    upstream: SocketAddr,
    decider: Option<SocketAddr>,
    tls: Option<(&Path, &Path)>,
) -> Nginx {
    let dir = tempfile::tempdir().unwrap();
    let front_port = free_port();
    let auth_addr = decider.unwrap_or_else(|| ([127, 0, 0, 1], free_port()).into());
    let auth_port = auth_addr.port();
    let common = |d: &Path| {
        format!(
            "master_process off;\nworker_processes 1;\nerror_log {d}/error.log warn;\npid {d}/nginx.pid;\nevents {{ worker_connections 4096; }}\n",
            d = d.display()
        )
    };
    let tmp = |d: &Path| {
        format!(
            "client_body_temp_path {d}/body; proxy_temp_path {d}/proxy; fastcgi_temp_path {d}/fcgi; uwsgi_temp_path {d}/uwsgi; scgi_temp_path {d}/scgi;",
            d = d.display()
        )
    };
    let auth_dir = dir.path().join("auth");
    let front_dir = dir.path().join("front");
    std::fs::create_dir_all(&auth_dir).unwrap();
    std::fs::create_dir_all(&front_dir).unwrap();
    std::fs::write(
        auth_dir.join("nginx.conf"),
        format!(
            "{}http {{ access_log off; {} keepalive_requests 1000000;\n server {{ listen 127.0.0.1:{auth_port}; location / {{ return 200; }} }} }}\n",
            common(&auth_dir),
            tmp(&auth_dir)
        ),
    )
    .unwrap();
    std::fs::write(
        front_dir.join("nginx.conf"),
        format!(
            r#"{}http {{
  access_log off; {} keepalive_requests 1000000;
  upstream app {{ server {upstream}; keepalive 64; }}
  upstream auth {{ server {auth_addr}; keepalive 64; }}
  server {{
    listen 127.0.0.1:{front_port}{ssl};
    location / {{
      auth_request /_auth;
      auth_request_set $fluxgate_user $upstream_http_x_fluxgate_user_id;
      proxy_set_header X-Fluxgate-User-Id $fluxgate_user;
      proxy_pass http://app;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
    }}
    location = /_auth {{
      internal;
      proxy_pass http://auth;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_pass_request_body off;
      proxy_set_header Content-Length "";
      proxy_set_header X-Original-Method $request_method;
      proxy_set_header X-Original-URI $request_uri;
    }}
  }}
}}
"#,
            common(&front_dir),
            tmp(&front_dir),
            ssl = match tls {
                Some((cert, key)) => format!(
                    " ssl;\n    ssl_certificate {};\n    ssl_certificate_key {};\n    ssl_protocols TLSv1.3",
                    cert.display(),
                    key.display()
                ),
                None => String::new(),
            },
        ),
    )
    .unwrap();
    let auth = decider.is_none().then(|| start_nginx(cpu, &auth_dir));
    let front = start_nginx(cpu, &front_dir);
    wait_port(([127, 0, 0, 1], auth_port).into());
    let addr: SocketAddr = ([127, 0, 0, 1], front_port).into();
    wait_port(addr);
    Nginx {
        front,
        auth,
        addr,
        _dir: dir,
    }
}

/// `nginx -p dir -c dir/nginx.conf`, in the foreground, pinned to `cpu`.
fn start_nginx(cpu: usize, d: &Path) -> Proc {
    let bin = if Path::new("/usr/sbin/nginx").exists() {
        PathBuf::from("/usr/sbin/nginx")
    } else {
        PathBuf::from("nginx")
    };
    let child = pinned(cpu, &bin)
        .arg("-p")
        .arg(d)
        .arg("-c")
        .arg(d.join("nginx.conf"))
        .args(["-g", "daemon off;"])
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    Proc { child }
}

/// The upstream as a real server would be: nginx answering `200 ok` to everything, one
/// worker (`--upstream-kind nginx`, the default for the published table).
pub fn nginx_upstream(cpu: usize) -> (Proc, tempfile::TempDir, SocketAddr) {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let d = dir.path();
    std::fs::write(
        d.join("nginx.conf"),
        format!(
            "master_process off;\nworker_processes 1;\nerror_log {d}/error.log warn;\npid {d}/nginx.pid;\nevents {{ worker_connections 4096; }}\nhttp {{ access_log off; client_body_temp_path {d}/body; proxy_temp_path {d}/proxy; fastcgi_temp_path {d}/fcgi; uwsgi_temp_path {d}/uwsgi; scgi_temp_path {d}/scgi; keepalive_requests 1000000;\n server {{ listen 127.0.0.1:{port}; default_type text/plain; location / {{ return 200 \"ok\"; }} }} }}\n",
            d = d.display()
        ),
    )
    .unwrap();
    let proc = start_nginx(cpu, d);
    let addr: SocketAddr = ([127, 0, 0, 1], port).into();
    wait_port(addr);
    (proc, dir, addr)
}

/// A self-signed ECDSA P-256 certificate for `127.0.0.1` (rcgen's default key type), as PEM
/// files `cert.pem` and `key.pem` in `dir`.
pub fn p256_cert(dir: &Path) -> (PathBuf, PathBuf) {
    let c = rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_string()]).unwrap();
    let (cp, kp) = (dir.join("cert.pem"), dir.join("key.pem"));
    std::fs::write(&cp, c.cert.pem()).unwrap();
    std::fs::write(&kp, c.signing_key.serialize_pem()).unwrap();
    (cp, kp)
}
