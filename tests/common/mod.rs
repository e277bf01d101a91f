//! Shared harness for integration tests: the real `fluxgate` binary on ephemeral ports, a
//! recording upstream, and a raw HTTP/1.1 client that sends exactly the bytes a test writes.

#![allow(dead_code, reason = "each test module uses a part of the harness")]

pub mod fluxer;
pub mod redis;
pub mod webhook;

use bytes::Bytes;
use fluxgate::clock::monotonic_now;
use http_body_util::{BodyExt, Full};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

pub const ADMIN_SECRET: &str = "test-admin-secret-0123456789";

/// What the upstream received.
#[derive(Debug, Clone)]
pub struct Recorded {
    pub method: String,
    pub target: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Recorded {
    /// All values of a header (names compared case-insensitively).
    pub fn all(&self, name: &str) -> Vec<String> {
        self.headers
            .iter()
            .filter(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.clone())
            .collect()
    }
    pub fn get(&self, name: &str) -> Option<String> {
        let all = self.all(name);
        assert!(
            all.len() <= 1,
            "header {name} appears {} times: {all:?}",
            all.len()
        );
        all.into_iter().next()
    }
    /// Names as received, normalised for comparison: lower case, '_' folded to '-'.
    pub fn folded_names(&self) -> Vec<String> {
        self.headers
            .iter()
            .map(|(k, _)| k.to_ascii_lowercase().replace('_', "-"))
            .collect()
    }
}

/// An HTTP/1.1 server on 127.0.0.1:0, on a runtime of its own (kept alive by the caller), that
/// answers each request with `handle`. The fakes in this folder (upstream, Fluxer) use it.
pub fn serve_http<F, Fut>(handle: F) -> (tokio::runtime::Runtime, SocketAddr)
where
    F: Fn(hyper::Request<hyper::body::Incoming>) -> Fut + Clone + Send + Sync + 'static,
    Fut: std::future::Future<Output = hyper::Response<Full<Bytes>>> + Send + 'static,
{
    serve_http_on("127.0.0.1:0".parse().unwrap(), handle)
}

/// [`serve_http`] on a given address (to restart a server where it was). Dropping the runtime
/// stops it: the listener and every connection close.
pub fn serve_http_on<F, Fut>(addr: SocketAddr, handle: F) -> (tokio::runtime::Runtime, SocketAddr)
where
    F: Fn(hyper::Request<hyper::body::Incoming>) -> Fut + Clone + Send + Sync + 'static,
    Fut: std::future::Future<Output = hyper::Response<Full<Bytes>>> + Send + 'static,
{
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let listener = rt.block_on(tokio::net::TcpListener::bind(addr)).unwrap();
    let addr = listener.local_addr().unwrap();
    rt.spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let handle = handle.clone();
            tokio::spawn(async move {
                let svc = service_fn(move |req| {
                    let reply = handle(req);
                    async move { Ok::<_, std::convert::Infallible>(reply.await) }
                });
                let _ = http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    (rt, addr)
}

/// A hyper upstream that records every request and answers 200 with a small JSON body.
/// `GET /slow…` waits 3 s before answering.
pub struct Upstream {
    pub addr: SocketAddr,
    pub seen: Arc<Mutex<Vec<Recorded>>>,
    _rt: tokio::runtime::Runtime,
}

impl Upstream {
    pub fn start() -> Upstream {
        Self::start_on("127.0.0.1:0".parse().unwrap())
    }

    /// An upstream on `addr` (a stopped one's, to bring it back).
    pub fn start_on(addr: SocketAddr) -> Upstream {
        let seen: Arc<Mutex<Vec<Recorded>>> = Arc::default();
        let s2 = seen.clone();
        let (rt, addr) = serve_http_on(addr, move |req: hyper::Request<hyper::body::Incoming>| {
            let seen = s2.clone();
            async move {
                let (parts, body) = req.into_parts();
                let body = body
                    .collect()
                    .await
                    .map(|b| b.to_bytes())
                    .unwrap_or_default();
                let target = parts
                    .uri
                    .path_and_query()
                    .map(|p| p.to_string())
                    .unwrap_or_default();
                if target.starts_with("/slow") {
                    tokio::time::sleep(Duration::from_secs(3)).await;
                }
                // Tests choose the upstream's answer with this request header.
                let status = parts
                    .headers
                    .get("x-upstream-status")
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.parse::<u16>().ok())
                    .unwrap_or(200);
                // And extra response headers with `x-upstream-reply: Name: value`.
                let replies: Vec<(String, String)> = parts
                    .headers
                    .get_all("x-upstream-reply")
                    .iter()
                    .filter_map(|v| v.to_str().ok())
                    .filter_map(|v| v.split_once(':'))
                    .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
                    .collect();
                // And request headers echoed back under their own name: `x-upstream-echo: Name`.
                let echoes: Vec<(String, String)> = parts
                    .headers
                    .get_all("x-upstream-echo")
                    .iter()
                    .filter_map(|n| n.to_str().ok())
                    .filter_map(|n| {
                        let v = parts.headers.get(n)?.to_str().ok()?;
                        Some((n.to_string(), v.to_string()))
                    })
                    .collect();
                seen.lock().unwrap().push(Recorded {
                    method: parts.method.to_string(),
                    target: target.clone(),
                    headers: parts
                        .headers
                        .iter()
                        .map(|(k, v)| (k.to_string(), String::from_utf8_lossy(v.as_bytes()).into()))
                        .collect(),
                    body: body.to_vec(),
                });
                let mut resp = hyper::Response::builder()
                    .status(status)
                    .header("content-type", "application/json");
                for (k, v) in replies.iter().chain(&echoes) {
                    resp = resp.header(k.as_str(), v.as_str());
                }
                resp.body(Full::new(Bytes::from(format!(
                    "{{\"upstream\":\"ok\",\"target\":{target:?}}}"
                ))))
                .unwrap()
            }
        });
        Upstream {
            addr,
            seen,
            _rt: rt,
        }
    }

    pub fn requests(&self) -> Vec<Recorded> {
        self.seen.lock().unwrap().clone()
    }

    pub fn count(&self) -> usize {
        self.seen.lock().unwrap().len()
    }

    /// The single request received since the last `clear`.
    pub fn last(&self) -> Recorded {
        self.seen
            .lock()
            .unwrap()
            .last()
            .cloned()
            .expect("the upstream received nothing")
    }

    pub fn clear(&self) {
        self.seen.lock().unwrap().clear();
    }
}

/// A free TCP port on loopback (bound, read, released).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The first line a started `fluxgate run` prints on stdout (its announcement of where it
/// listens, one JSON object); the child's stdout is taken.
pub fn first_line(child: &mut Child) -> String {
    let mut line = String::new();
    BufReader::new(child.stdout.take().expect("stdout piped"))
        .read_line(&mut line)
        .unwrap();
    line
}

pub fn bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_fluxgate"))
}

/// A running fluxgate process.
pub struct Fluxgate {
    pub child: Child,
    pub proxy: SocketAddr,
    /// The TLS listeners, in config order.
    pub tls: Vec<SocketAddr>,
    pub admin: SocketAddr,
    /// The forward-auth decision endpoint, when `[forward_auth] listen` is set.
    pub forward_auth: Option<SocketAddr>,
    pub dir: Arc<tempfile::TempDir>,
    pub config_path: PathBuf,
    stderr_log: PathBuf,
}

/// The base config every test starts from; `extra` is appended.
pub fn base_config(dir: &std::path::Path, upstream: SocketAddr, extra: &str) -> String {
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
read_timeout = "1s"

[sessions.embedded]
path = "{dir}/sessions.redb"

[admin]
listen = "127.0.0.1:0"
secret = {{ value = "{ADMIN_SECRET}" }}

[logging]
format = "json"
level = "info"
{extra}
"#,
        dir = dir.display()
    )
}

impl Fluxgate {
    /// Starts fluxgate with `base_config(…) + extra`.
    pub fn start(upstream: SocketAddr, extra: &str) -> Fluxgate {
        let dir = Arc::new(tempfile::tempdir().unwrap());
        let cfg = base_config(dir.path(), upstream, extra);
        Self::start_with(dir, &cfg)
    }

    /// Starts fluxgate with a complete config text in `dir`.
    pub fn start_with(dir: Arc<tempfile::TempDir>, cfg: &str) -> Fluxgate {
        Self::start_args(dir, cfg, &[])
    }

    /// Starts `fluxgate run --config <dir>/fluxgate.toml <args…>` with `cfg` written there.
    pub fn start_args(dir: Arc<tempfile::TempDir>, cfg: &str, args: &[&str]) -> Fluxgate {
        let config_path = dir.path().join("fluxgate.toml");
        std::fs::write(&config_path, cfg).unwrap();
        let stderr_log = dir.path().join(format!("stderr-{}.log", free_port()));
        let mut child = Command::new(bin())
            .args(["run", "--config"])
            .arg(&config_path)
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::from(std::fs::File::create(&stderr_log).unwrap()))
            .spawn()
            .expect("start fluxgate");
        let line = first_line(&mut child);
        let v: serde_json::Value = serde_json::from_str(&line).unwrap_or_else(|_| {
            panic!(
                "fluxgate did not start: {line:?}\n{}",
                std::fs::read_to_string(&stderr_log).unwrap_or_default()
            )
        });
        let proxy: SocketAddr = v["proxy"][0].as_str().unwrap().parse().unwrap();
        let admin: SocketAddr = v["admin"].as_str().unwrap().parse().unwrap();
        let tls = v["tls"]
            .as_array()
            .map(|a| a.iter().filter_map(|t| t.as_str()?.parse().ok()).collect())
            .unwrap_or_default();
        let forward_auth = v["forward_auth"].as_str().map(|a| a.parse().unwrap());
        let f = Fluxgate {
            child,
            proxy,
            tls,
            admin,
            forward_auth,
            dir,
            config_path,
            stderr_log,
        };
        f.wait_ready();
        f
    }

    fn wait_ready(&self) {
        let deadline = monotonic_now() + Duration::from_secs(20);
        while monotonic_now() < deadline {
            if TcpStream::connect(self.proxy).is_ok()
                && get(self.admin, "/livez")
                    .map(|r| r.status == 200)
                    .unwrap_or(false)
            {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("fluxgate did not become ready:\n{}", self.stderr());
    }

    pub fn stderr(&self) -> String {
        std::fs::read_to_string(&self.stderr_log).unwrap_or_default()
    }

    /// The log once it contains `needle` (logs are written by a background thread), or a panic
    /// with the log after 5 s.
    pub fn wait_log(&self, needle: &str) -> String {
        let deadline = monotonic_now() + Duration::from_secs(5);
        loop {
            let log = self.stderr();
            if log.contains(needle) {
                return log;
            }
            if monotonic_now() > deadline {
                panic!("the log never said {needle:?}:\n{log}");
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Stops with SIGINT and waits for the process to exit.
    pub fn stop(mut self) -> Arc<tempfile::TempDir> {
        self.signal("INT");
        let deadline = monotonic_now() + Duration::from_secs(10);
        while monotonic_now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return self.dir.clone();
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("fluxgate did not stop on SIGINT");
    }

    pub fn signal(&self, sig: &str) {
        Command::new("kill")
            .arg(format!("-{sig}"))
            .arg(self.child.id().to_string())
            .status()
            .unwrap();
    }

    /// A request to the proxy.
    pub fn send(&self, req: &Req) -> Resp {
        req.send(self.proxy)
    }

    /// A management API call with the admin secret.
    pub fn admin(&self, method: &str, path: &str, body: Option<serde_json::Value>) -> Resp {
        let mut r =
            Req::new(method, path).header("authorization", &format!("Bearer {ADMIN_SECRET}"));
        if let Some(b) = body {
            r = r
                .header("content-type", "application/json")
                .body(b.to_string().as_bytes());
        }
        r.send(self.admin)
    }

    /// Creates a session through the admin API; returns (token, sid).
    pub fn create_session(&self, body: serde_json::Value) -> (String, String) {
        let r = self.admin("POST", "/v1/sessions", Some(body));
        assert_eq!(r.status, 201, "create session: {}", r.text());
        let v = r.json();
        (
            v["token"].as_str().unwrap().into(),
            v["sid"].as_str().unwrap().into(),
        )
    }

    /// The value of a metric line (exact series text before the value).
    pub fn metric(&self, series: &str) -> f64 {
        let body = get(self.admin, "/metrics").unwrap().text();
        body.lines()
            .find_map(|l| l.strip_prefix(series).and_then(|v| v.trim().parse().ok()))
            .unwrap_or(0.0)
    }
}

impl Drop for Fluxgate {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A request written byte for byte.
#[derive(Clone)]
pub struct Req {
    method: String,
    target: String,
    headers: Vec<(String, Vec<u8>)>,
    body: Vec<u8>,
}

impl Req {
    pub fn new(method: &str, target: &str) -> Req {
        Req {
            method: method.into(),
            target: target.into(),
            headers: Vec::new(),
            body: Vec::new(),
        }
    }
    pub fn get(target: &str) -> Req {
        Req::new("GET", target)
    }
    pub fn header(mut self, k: &str, v: &str) -> Req {
        self.headers.push((k.into(), v.as_bytes().to_vec()));
        self
    }
    pub fn header_bytes(mut self, k: &str, v: &[u8]) -> Req {
        self.headers.push((k.into(), v.to_vec()));
        self
    }
    pub fn body(mut self, b: &[u8]) -> Req {
        self.body = b.to_vec();
        self
    }
    pub fn bytes(&self, host: SocketAddr) -> Vec<u8> {
        let mut out = format!(
            "{} {} HTTP/1.1\r\nhost: {host}\r\nconnection: close\r\n",
            self.method, self.target
        )
        .into_bytes();
        for (k, v) in &self.headers {
            out.extend_from_slice(k.as_bytes());
            out.extend_from_slice(b": ");
            out.extend_from_slice(v);
            out.extend_from_slice(b"\r\n");
        }
        if !self.body.is_empty() {
            out.extend_from_slice(format!("content-length: {}\r\n", self.body.len()).as_bytes());
        }
        out.extend_from_slice(b"\r\n");
        out.extend_from_slice(&self.body);
        out
    }
    pub fn send(&self, addr: SocketAddr) -> Resp {
        send_raw(addr, &self.bytes(addr))
    }
}

pub fn get(addr: SocketAddr, path: &str) -> std::io::Result<Resp> {
    let mut s = TcpStream::connect(addr)?;
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    s.write_all(&Req::get(path).bytes(addr))?;
    let mut buf = Vec::new();
    s.read_to_end(&mut buf)?;
    Ok(parse_response(&buf))
}

/// Sends raw bytes and reads the whole answer (the connection is closed by the request).
pub fn send_raw(addr: SocketAddr, bytes: &[u8]) -> Resp {
    let mut s = TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(15))).unwrap();
    s.write_all(bytes).unwrap();
    let mut buf = Vec::new();
    let _ = s.read_to_end(&mut buf);
    parse_response(&buf)
}

#[derive(Debug, Clone)]
pub struct Resp {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Resp {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into()
    }
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {:?}", self.text()))
    }
    /// Asserts the contract's denial shape and returns the body.
    pub fn denial(&self, status: u16, code: &str) -> serde_json::Value {
        assert_eq!(self.status, status, "body: {}", self.text());
        assert_eq!(self.header("content-type"), Some("application/json"));
        assert_eq!(self.header("cache-control"), Some("no-store"));
        assert_eq!(self.header("x-content-type-options"), Some("nosniff"));
        let v = self.json();
        assert_eq!(v["code"], code, "{v}");
        assert!(v["message"].is_string(), "{v}");
        v
    }
}

pub fn parse_response(buf: &[u8]) -> Resp {
    let mut headers = [httparse::EMPTY_HEADER; 64];
    let mut r = httparse::Response::new(&mut headers);
    let n = match r.parse(buf) {
        Ok(httparse::Status::Complete(n)) => n,
        _ => {
            return Resp {
                status: 0,
                headers: vec![],
                body: buf.to_vec(),
            };
        }
    };
    let headers: Vec<(String, String)> = r
        .headers
        .iter()
        .map(|h| (h.name.to_string(), String::from_utf8_lossy(h.value).into()))
        .collect();
    let status = r.code.unwrap_or(0);
    let rest = &buf[n..];
    let chunked = headers
        .iter()
        .any(|(k, v)| k.eq_ignore_ascii_case("transfer-encoding") && v.contains("chunked"));
    let body = if chunked {
        dechunk(rest)
    } else {
        rest.to_vec()
    };
    Resp {
        status,
        headers,
        body,
    }
}

fn dechunk(mut b: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(pos) = b.windows(2).position(|w| w == b"\r\n") {
        let size = usize::from_str_radix(std::str::from_utf8(&b[..pos]).unwrap_or("0").trim(), 16)
            .unwrap_or(0);
        b = &b[pos + 2..];
        if size == 0 || b.len() < size {
            break;
        }
        out.extend_from_slice(&b[..size]);
        b = &b[(size + 2).min(b.len())..];
    }
    out
}

/// A syntactically valid session token that no store knows.
pub const UNKNOWN_TOKEN: &str = "flx_000000000000000000000000000000000000";
