//! `fluxgate demo`: fluxgate on the embedded store in a temporary directory, in front of a
//! built-in echo upstream, with a demo session and ready-to-paste curl commands.
//! `fluxgate demo --backend`: the same in front of a built-in Fluxer-like API that issues its
//! own tokens, showing login capture (the cookie being set, then used) and logout.

mod api;

use crate::admin::client::AdminClient;
use crate::{app, cli, config};
use http::Method;
use serde_json::json;
use std::net::SocketAddr;
use std::time::Duration;

const DEMO_USER: &str = "1000000000000000001";
use api::{DEMO_EMAIL, DEMO_PASSWORD, DEMO_TOTP, MFA_EMAIL};

/// Runs the demo until Ctrl-C (`backend`: in front of the built-in Fluxer-like API). Returns
/// the exit code.
pub fn run(port: u16, backend: bool) -> i32 {
    let dir = match tempfile::Builder::new().prefix("fluxgate-demo-").tempdir() {
        Ok(d) => d,
        Err(e) => {
            eprintln!("fluxgate demo: cannot create a temporary directory: {e}");
            return cli::EXIT_STARTUP;
        }
    };
    let started = if backend {
        api::start_api()
    } else {
        api::start_echo()
    };
    let upstream = match started {
        Ok(a) => a,
        Err(e) => {
            eprintln!("fluxgate demo: cannot start the built-in upstream: {e}");
            return cli::EXIT_STARTUP;
        }
    };
    // The backend demo's origin check needs the proxy's origin before it listens: pick the
    // free port now (the moment between closing this probe and fluxgate binding it is the
    // demo's only race).
    let port = match (backend, port) {
        (true, 0) => {
            match std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()) {
                Ok(a) => a.port(),
                Err(e) => {
                    eprintln!("fluxgate demo: cannot find a free port: {e}");
                    return cli::EXIT_STARTUP;
                }
            }
        }
        _ => port,
    };
    let admin_secret = match crate::credential::generate(crate::credential::Kind::Oauth2, None) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("fluxgate demo: {e}");
            return cli::EXIT_STARTUP;
        }
    };
    let mut toml = demo_config(port, upstream, dir.path(), &admin_secret);
    if backend {
        toml = backend_config(&toml, port);
    }
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
    let jar = dir.path().join("cookies.txt");
    std::thread::spawn(move || {
        let client = AdminClient {
            addr: bound.admin,
            secret: Some(admin_secret),
        };
        let told = if backend {
            introduce_backend(&client, &bound, upstream, &jar)
        } else {
            introduce(&client, &bound, upstream, &store)
        };
        if let Err(e) = told {
            eprintln!("fluxgate demo: could not start: {e}");
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

/// The backend demo: sessions come from the built-in API; its login routes are captured.
fn backend_config(base: &str, port: u16) -> String {
    let sessions = base
        .split_once("[sessions]")
        .map_or(base.to_string(), |(a, b)| {
            format!(
                "{a}[sessions]\nforward_credential = \"authorization\"{}",
                b.replacen("store = \"embedded\"", "store = \"backend\"", 1)
            )
        });
    format!(
        r#"{sessions}
[login]
strip_token = true

# The demo runs on plain http://127.0.0.1, where browsers and curl drop Secure cookies.
[cookies]
secure = false

[csrf]
allowed_origins = ["http://127.0.0.1:{port}", "http://localhost:{port}"]

[[route]]
name = "login"
methods = ["POST"]
path = "/auth/login"
auth = "none"
role = "login"

[[route]]
name = "login mfa"
methods = ["POST"]
path = "/auth/login/mfa/*"
auth = "none"
role = "login"

[[route]]
name = "logout"
methods = ["POST"]
path = "/auth/logout"
role = "logout"
"#
    )
}

/// Waits for the admin listener, which starts with the proxy.
fn wait_ready(client: &AdminClient) -> Result<(), String> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    rt.block_on(async {
        let mut last = String::new();
        for _ in 0..100 {
            match client.call(Method::GET, "/readyz", None).await {
                Ok((s, _)) if s.is_success() => return Ok(()),
                Ok((s, body)) => last = format!("admin API answered {s}: {body}"),
                Err(e) => last = e,
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Err(last)
    })
}

fn introduce_backend(
    client: &AdminClient,
    bound: &app::Bound,
    upstream: SocketAddr,
    jar: &std::path::Path,
) -> Result<(), String> {
    wait_ready(client)?;
    let p = format!("http://{}", bound.proxy[0]);
    let jar = jar.display();
    let json = "-H 'Content-Type: application/json'";
    println!(
        r#"
fluxgate demo is running in front of an API that issues its own tokens.
  proxy:    {p}
  upstream: {upstream} (built-in Fluxer-like API: /auth/login, /auth/login/mfa/totp,
            /users/@me, /auth/logout; every other path echoes what it received)
  admin:    http://{admin}
  cookies:  {jar}

Accounts: {DEMO_EMAIL} / {DEMO_PASSWORD}; {MFA_EMAIL} / {DEMO_PASSWORD} with TOTP code {DEMO_TOTP}.

Try:
  # 1. Log in as a browser would: the API answers with a token, fluxgate sets it as the
  #    HttpOnly fluxer_session cookie and removes it from the body the page sees.
  curl -si -c {jar} {json} -d '{{"email":"{DEMO_EMAIL}","password":"{DEMO_PASSWORD}"}}' {p}/auth/login

  # 2. Use the cookie: the API (echoing) sees Authorization: flx_... and the identity headers.
  curl -s -b {jar} {p}/users/@me/guilds

  # 3. MFA: the first step passes the API's ticket through and sets no cookie; the code
  #    completes it and sets the cookie (paste both lines together).
  ticket=$(curl -s {json} -d '{{"email":"{MFA_EMAIL}","password":"{DEMO_PASSWORD}"}}' {p}/auth/login | sed -n 's/.*"ticket": *"\([^"]*\)".*/\1/p')
  curl -si {json} -d "{{\"code\":\"{DEMO_TOTP}\",\"ticket\":\"$ticket\"}}" {p}/auth/login/mfa/totp

  # 4. Log out (a cookie-authenticated POST, so from an allowed Origin): the API ends the
  #    session, fluxgate clears the cookie and forgets the token.
  curl -si -b {jar} -c {jar} -X POST -H 'Origin: {p}' {p}/auth/logout

  # 5. The browser has no session any more: 401 with the contract's JSON.
  curl -si -b {jar} {p}/users/@me/guilds

Press Ctrl-C to stop."#,
        admin = bound.admin,
    );
    Ok(())
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
