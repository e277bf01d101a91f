//! `fluxgate demo`: fluxgate on the embedded store in a temporary directory, in front of a
//! built-in echo upstream, with a demo session and ready-to-paste curl commands.

use crate::admin::client::AdminClient;
use crate::{app, cli, config};
use bytes::Bytes;
use http::{Method, Request, Response};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use serde_json::json;
use std::net::SocketAddr;
use std::time::Duration;

const DEMO_USER: &str = "1000000000000000001";

/// Runs the demo until Ctrl-C. Returns the exit code.
pub fn run(port: u16) -> i32 {
    let dir = match tempfile::Builder::new().prefix("fluxgate-demo-").tempdir() {
        Ok(d) => d,
        Err(e) => {
            eprintln!("fluxgate demo: cannot create a temporary directory: {e}");
            return cli::EXIT_STARTUP;
        }
    };
    let upstream = match start_echo() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("fluxgate demo: cannot start the echo upstream: {e}");
            return cli::EXIT_STARTUP;
        }
    };
    let admin_secret = match crate::credential::generate(crate::credential::Kind::Oauth2, None) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("fluxgate demo: {e}");
            return cli::EXIT_STARTUP;
        }
    };
    let toml = demo_config(port, upstream, dir.path(), &admin_secret);
    let cfg = match config::parse(&toml, "demo config") {
        Ok(c) => c,
        Err(e) => {
            eprint!("fluxgate demo: built-in config is invalid (a bug): {e}");
            return cli::EXIT_CONFIG;
        }
    };
    let _log = crate::logging::init(&cfg.boot.logging);
    let built = match app::build(cfg, &app::RunOptions::default()) {
        Ok(b) => b,
        Err(e) => {
            eprintln!("fluxgate demo: cannot start: {e}");
            return cli::EXIT_STARTUP;
        }
    };
    let bound = built.bound.clone();
    let store = dir.path().join("sessions.redb");
    std::thread::spawn(move || {
        let client = AdminClient {
            addr: bound.admin,
            secret: Some(admin_secret),
        };
        match introduce(&client, &bound, upstream, &store) {
            Ok(()) => {}
            Err(e) => eprintln!("fluxgate demo: could not create the demo session: {e}"),
        }
    });
    app::run(built);
    drop(dir);
    println!("fluxgate demo stopped; temporary files removed.");
    0
}

fn demo_config(port: u16, upstream: SocketAddr, dir: &std::path::Path, secret: &str) -> String {
    format!(
        r#"
[server]
listen = ["127.0.0.1:{port}"]
threads = 1
grace_period = "1s"
shutdown_timeout = "1s"
upgrade_socket = "{dir}/upgrade.sock"

[upstream]
addresses = ["{upstream}"]

[sessions]
store = "embedded"
[sessions.embedded]
path = "{dir}/sessions.redb"

[admin]
listen = "127.0.0.1:0"
secret = {{ value = "{secret}" }}

[logging]
format = "pretty"
level = "warn"

[[route]]
name = "public"
methods = ["GET"]
path = "/public"
auth = "none"
"#,
        dir = dir.display()
    )
}

fn introduce(
    client: &AdminClient,
    bound: &app::Bound,
    upstream: SocketAddr,
    store: &std::path::Path,
) -> Result<(), String> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    let token = rt.block_on(async {
        // The admin listener starts with the server; wait for it briefly.
        let mut last = String::new();
        for _ in 0..100 {
            match client
                .call(
                    Method::POST,
                    "/v1/sessions",
                    Some(json!({"user_id": DEMO_USER, "kind": "session", "lifetime": "1d"})),
                )
                .await
            {
                Ok((s, body)) if s.is_success() => {
                    return body["token"]
                        .as_str()
                        .map(str::to_string)
                        .ok_or_else(|| "no token in the answer".to_string());
                }
                Ok((s, body)) => return Err(format!("admin API answered {s}: {body}")),
                Err(e) => last = e,
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Err(last)
    })?;
    let p = format!("http://{}", bound.proxy[0]);
    println!(
        r#"
fluxgate demo is running.
  proxy:    {p}
  upstream: {upstream} (built-in echo: answers with the method, path and headers it received)
  admin:    http://{admin}
  store:    {store}

Demo session for user {DEMO_USER}
  token: {token}

Try:
  # 1. An anonymous request to a public route (X-Fluxgate-Auth-Kind: anonymous):
  curl -s {p}/public

  # 2. An authenticated request: the echo shows the identity headers fluxgate injected.
  curl -s -H 'Authorization: {token}' {p}/users/@me

  # 3. A spoofed identity header is replaced by the real one:
  curl -s -H 'Authorization: {token}' -H 'X-Fluxgate-User-Id: 1' {p}/users/@me

  # 4. No credential on a protected route: 401 with the contract's JSON.
  curl -si {p}/users/@me

Press Ctrl-C to stop."#,
        admin = bound.admin,
        store = store.display(),
    );
    Ok(())
}

/// The echo upstream: answers every request with JSON of its method, path and headers.
pub fn start_echo() -> std::io::Result<SocketAddr> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    listener.set_nonblocking(true)?;
    let addr = listener.local_addr()?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    std::thread::Builder::new()
        .name("demo-echo".into())
        .spawn(move || {
            rt.block_on(async move {
                let Ok(listener) = tokio::net::TcpListener::from_std(listener) else {
                    return;
                };
                loop {
                    let Ok((stream, _)) = listener.accept().await else {
                        continue;
                    };
                    tokio::spawn(async move {
                        let _ = http1::Builder::new()
                            .serve_connection(TokioIo::new(stream), service_fn(echo))
                            .await;
                    });
                }
            })
        })?;
    Ok(addr)
}

async fn echo(req: Request<Incoming>) -> Result<Response<Full<Bytes>>, std::convert::Infallible> {
    let headers: serde_json::Map<String, serde_json::Value> = req
        .headers()
        .iter()
        .map(|(k, v)| (k.to_string(), json!(String::from_utf8_lossy(v.as_bytes()))))
        .collect();
    let body = json!({
        "method": req.method().as_str(),
        "path": req.uri().path_and_query().map(|p| p.as_str()).unwrap_or("/"),
        "headers": headers,
    });
    let body = serde_json::to_string_pretty(&body).unwrap_or_default() + "\n";
    Ok(Response::builder()
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(body)))
        .expect("static parts make a valid response"))
}
