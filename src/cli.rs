//! Subcommands: `run`, `check-config`, `demo`, `sessions …`, `explain`, `probe`, `version`.

use crate::admin::client::AdminClient;
use crate::app;
use crate::config;
use clap::{Args, Parser, Subcommand};
use http::Method;
use serde_json::json;
use std::net::SocketAddr;
use std::path::PathBuf;

/// Exit code for an invalid config (EX_USAGE from sysexits.h).
pub const EXIT_CONFIG: i32 = 64;
/// Exit code when the process cannot start for another reason.
pub const EXIT_STARTUP: i32 = 69;

#[derive(Debug, Parser)]
#[command(
    name = "fluxgate",
    version,
    about = "An authentication sidecar for Fluxer-style APIs"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the proxy.
    Run {
        /// Path to the TOML config.
        #[arg(long, short)]
        config: PathBuf,
        /// Take the listening sockets over from the running instance that shares this
        /// config's `server.upgrade_socket`, then send that instance SIGQUIT (graceful upgrade).
        #[arg(long)]
        upgrade: bool,
    },
    /// Validate a config file: print it normalized (secrets redacted), or every problem.
    CheckConfig {
        /// Path to the TOML config.
        path: PathBuf,
    },
    /// Start a self-contained demo: fluxgate, an echo upstream and a demo session.
    Demo {
        /// Port for the proxy (0 picks a free one).
        #[arg(long, default_value_t = 8080)]
        port: u16,
        /// In front of a built-in Fluxer-like API that issues its own tokens (login capture,
        /// sessions validated by the API), instead of an echo upstream with a demo session.
        #[arg(long)]
        backend: bool,
    },
    /// Manage sessions through a running instance's admin API.
    Sessions(SessionsArgs),
    /// Health check for containers and orchestrators: GET /readyz (or /livez) on the admin
    /// listener. Exit 0 when it answers 200, 1 otherwise, 69 when nothing answers.
    Probe {
        /// The admin listener, e.g. 127.0.0.1:9090.
        #[arg(long)]
        admin: Option<std::net::SocketAddr>,
        /// Or read admin.listen from this config (0.0.0.0 is probed on loopback).
        #[arg(long, short)]
        config: Option<PathBuf>,
        /// Liveness (/livez) instead of readiness (/readyz).
        #[arg(long)]
        live: bool,
    },
    /// Decide one request with a config, without a network: the matched route, each stage's
    /// outcome, and the denial or the upstream plan. Exit code 0 when admitted, 1 when
    /// denied, 2 for a bad request line or header, 64 for an invalid config, 69 when the store
    /// cannot be read.
    Explain {
        /// Path to the TOML config.
        #[arg(long, short)]
        config: PathBuf,
        /// The request: 'METHOD TARGET', e.g. 'GET /v1/users/@me'.
        request: String,
        /// A request header, 'Name: value' (repeatable).
        #[arg(short = 'H', long = "header")]
        headers: Vec<String>,
        /// The TCP peer the request comes from.
        #[arg(long, default_value = "127.0.0.1")]
        peer: std::net::IpAddr,
        /// Assume this session for any credential instead of reading the store:
        /// `user=ID[,kind=session|oauth2|bot][,scopes=a b][,mfa=true|false][,ip=ADDR]`.
        #[arg(long)]
        session: Option<String>,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Args)]
pub struct SessionsArgs {
    /// Read the admin address and secret from this config.
    #[arg(long, short, global = true)]
    pub config: Option<PathBuf>,
    /// Admin API address (when no --config is given).
    #[arg(long, global = true, default_value = "127.0.0.1:9090")]
    pub admin: SocketAddr,
    /// Environment variable holding the admin secret (when no --config is given).
    #[arg(long, global = true, default_value = "FLUXGATE_ADMIN_SECRET")]
    pub secret_env: String,
    #[command(subcommand)]
    pub action: SessionAction,
}

#[derive(Debug, Subcommand)]
pub enum SessionAction {
    /// Create a session and print its token (shown once) and sid.
    Create {
        #[arg(long)]
        user_id: String,
        /// session, oauth2 or bot.
        #[arg(long, default_value = "session")]
        kind: String,
        /// Comma-separated OAuth2 scopes.
        #[arg(long, value_delimiter = ',')]
        scopes: Vec<String>,
        /// How long it lives, e.g. 30d (default: until revoked).
        #[arg(long)]
        lifetime: Option<String>,
        /// The IP the session was created from.
        #[arg(long)]
        client_ip: Option<String>,
        /// Application id (bot tokens).
        #[arg(long)]
        app_id: Option<String>,
    },
    /// List a user's sessions.
    List {
        #[arg(long)]
        user_id: String,
    },
    /// Grant sudo mode to a session whose re-authentication was verified elsewhere; prints a
    /// token for the fluxer_sudo_mode cookie or X-Fluxer-Sudo-Mode-JWT header.
    Sudo {
        // A sid is URL-safe base64 and may start with '-'.
        #[arg(long, allow_hyphen_values = true)]
        sid: String,
    },
    /// Revoke one session (--sid) or all of a user's (--user-id).
    Revoke {
        #[arg(
            long,
            conflicts_with = "user_id",
            required_unless_present = "user_id",
            allow_hyphen_values = true
        )]
        sid: Option<String>,
        #[arg(long)]
        user_id: Option<String>,
    },
}

/// Runs a parsed command line; returns the process exit code.
pub fn dispatch(cli: Cli) -> i32 {
    match cli.command {
        Command::Run { config, upgrade } => run(&config, upgrade),
        Command::CheckConfig { path } => check_config(&path),
        Command::Demo { port, backend } => crate::demo::run(port, backend),
        Command::Sessions(args) => sessions(args),
        Command::Probe {
            admin,
            config,
            live,
        } => crate::probe::run(admin, config.as_deref(), live),
        Command::Explain {
            config,
            request,
            headers,
            peer,
            session,
            json,
        } => explain(
            crate::explain::Request {
                config,
                line: request,
                headers,
                peer,
                session,
            },
            json,
        ),
    }
}

fn explain(req: crate::explain::Request, json: bool) -> i32 {
    use crate::explain::ExplainError;
    match crate::explain::explain(&req) {
        Ok(report) => {
            if json {
                println!("{report:#}");
            } else {
                print!("{}", crate::explain::render_text(&report));
            }
            if report["decision"] == "admitted" {
                0
            } else {
                1
            }
        }
        Err(e) => {
            eprintln!("fluxgate explain: {e}");
            match e {
                ExplainError::Config(_) => EXIT_CONFIG,
                ExplainError::Input(_) => 2,
                ExplainError::Store(_) => EXIT_STARTUP,
            }
        }
    }
}

fn run(path: &std::path::Path, upgrade: bool) -> i32 {
    let (cfg, generated) = match config::load_generating(path) {
        Ok(c) => c,
        Err(e) => {
            eprint!("{e}");
            eprintln!("fluxgate: refusing to start with an invalid config");
            return EXIT_CONFIG;
        }
    };
    let _log = crate::logging::init(&cfg.boot.logging);
    for file in generated {
        tracing::info!(file = %file.display(), "generated a new assertion key");
    }
    for w in cfg.warnings() {
        tracing::warn!("{w}");
    }
    let opts = app::RunOptions {
        source: Some(path.to_path_buf()),
        upgrade,
    };
    let built = match app::build(cfg, &opts) {
        Ok(b) => b,
        Err(e) => {
            eprintln!("fluxgate: cannot start: {e}");
            return EXIT_STARTUP;
        }
    };
    announce(&built.bound);
    app::run(built);
    0
}

/// One machine-readable line on stdout saying where the instance listens.
pub fn announce(b: &app::Bound) {
    println!(
        "{}",
        json!({"event": "listening", "proxy": b.proxy, "tls": b.tls, "admin": b.admin, "forward_auth": b.forward_auth})
    );
}

fn check_config(path: &std::path::Path) -> i32 {
    match config::load(path) {
        Ok(c) => {
            // On stderr, so stdout stays the normalized config alone.
            for w in c.warnings() {
                eprintln!("warning: {w}");
            }
            print!("{}", c.normalized());
            0
        }
        Err(e) => {
            eprint!("{e}");
            EXIT_CONFIG
        }
    }
}

fn sessions(args: SessionsArgs) -> i32 {
    let client = match admin_client(&args) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("fluxgate: {e}");
            return EXIT_CONFIG;
        }
    };
    let (method, path, body) = match &args.action {
        SessionAction::Create {
            user_id,
            kind,
            scopes,
            lifetime,
            client_ip,
            app_id,
        } => (
            Method::POST,
            "/v1/sessions".to_string(),
            Some(json!({
                "user_id": user_id, "kind": kind, "scopes": scopes, "lifetime": lifetime,
                "client_ip": client_ip, "app_id": app_id,
            })),
        ),
        SessionAction::Sudo { sid } => (Method::POST, format!("/v1/sessions/{sid}/sudo"), None),
        SessionAction::List { user_id } => {
            (Method::GET, format!("/v1/users/{user_id}/sessions"), None)
        }
        SessionAction::Revoke { sid: Some(sid), .. } => {
            (Method::DELETE, format!("/v1/sessions/{sid}"), None)
        }
        SessionAction::Revoke {
            user_id: Some(u), ..
        } => (Method::DELETE, format!("/v1/users/{u}/sessions"), None),
        SessionAction::Revoke { .. } => {
            eprintln!("fluxgate: give --sid or --user-id");
            return EXIT_CONFIG;
        }
    };
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("fluxgate: {e}");
            return EXIT_STARTUP;
        }
    };
    match rt.block_on(client.call(method, &path, body)) {
        Ok((status, json)) => {
            let pretty = serde_json::to_string_pretty(&json).unwrap_or_default();
            if status.is_success() {
                println!("{pretty}");
                0
            } else {
                eprintln!("fluxgate: the admin API answered {status}: {pretty}");
                1
            }
        }
        Err(e) => {
            eprintln!("fluxgate: {e}");
            EXIT_STARTUP
        }
    }
}

fn admin_client(args: &SessionsArgs) -> Result<AdminClient, String> {
    if let Some(path) = &args.config {
        let cfg = config::load(path).map_err(|e| e.to_string())?;
        let mut addr = cfg.boot.admin.listen;
        if addr.port() == 0 {
            return Err(format!(
                "{}: admin.listen uses port 0, so its port is only known to the running process; pass --admin ADDRESS",
                path.display()
            ));
        }
        if addr.ip().is_unspecified() {
            addr.set_ip(std::net::Ipv4Addr::LOCALHOST.into());
        }
        return Ok(AdminClient {
            addr,
            secret: cfg.boot.admin.secret.map(|s| s.expose().to_string()),
        });
    }
    Ok(AdminClient {
        addr: args.admin,
        secret: std::env::var(&args.secret_env).ok(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[test]
    fn a_sid_starting_with_a_dash_is_a_value_not_an_option() {
        for action in ["revoke", "sudo"] {
            let cli = Cli::try_parse_from(["fluxgate", "sessions", action, "--sid", "-kQx_9"])
                .unwrap_or_else(|e| panic!("{action}: {e}"));
            let Command::Sessions(args) = cli.command else {
                panic!("{action}: not a sessions command")
            };
            let sid = match args.action {
                SessionAction::Revoke { sid, .. } => sid,
                SessionAction::Sudo { sid } => Some(sid),
                other => panic!("{action}: parsed as {other:?}"),
            };
            assert_eq!(sid.as_deref(), Some("-kQx_9"), "{action}");
        }
    }
}
