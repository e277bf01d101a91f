//! `fluxgate probe`: the health check a container or an orchestrator runs (the distroless image
//! has no shell or curl): `GET /readyz` (or `/livez`) on the admin listener. Exit 0 when it
//! answers 200, 1 when it answers anything else, 69 when nothing answers, 64 for a bad config.

use crate::admin::client::AdminClient;
use crate::cli::{EXIT_CONFIG, EXIT_STARTUP};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::Path;

/// Where to probe: `--admin`, or the config's `admin.listen` (an unspecified address such as
/// `0.0.0.0` is probed on loopback).
fn target(admin: Option<SocketAddr>, config: Option<&Path>) -> Result<SocketAddr, String> {
    if let Some(a) = admin {
        return Ok(a);
    }
    let Some(path) = config else {
        return Err("give --admin ADDR or --config PATH".into());
    };
    let cfg = crate::config::load(path).map_err(|e| e.to_string())?;
    let mut a = cfg.boot.admin.listen;
    if a.ip().is_unspecified() {
        a.set_ip(match a.ip() {
            IpAddr::V4(_) => IpAddr::V4(Ipv4Addr::LOCALHOST),
            IpAddr::V6(_) => IpAddr::V6(Ipv6Addr::LOCALHOST),
        });
    }
    Ok(a)
}

/// Runs the probe; returns the exit code.
pub fn run(admin: Option<SocketAddr>, config: Option<&Path>, live: bool) -> i32 {
    let addr = match target(admin, config) {
        Ok(a) => a,
        Err(e) => {
            eprint!("fluxgate probe: {e}");
            if !e.ends_with('\n') {
                eprintln!();
            }
            return EXIT_CONFIG;
        }
    };
    let path = if live { "/livez" } else { "/readyz" };
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("fluxgate probe: {e}");
            return EXIT_STARTUP;
        }
    };
    let client = AdminClient { addr, secret: None };
    match rt.block_on(client.call(http::Method::GET, path, None)) {
        Ok((status, _)) if status == http::StatusCode::OK => 0,
        Ok((status, body)) => {
            eprintln!("fluxgate probe: {path} at {addr} answered {status}: {body}");
            1
        }
        Err(e) => {
            eprintln!("fluxgate probe: {e}");
            EXIT_STARTUP
        }
    }
}
