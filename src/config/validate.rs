//! File structs → typed [`Config`]: the order in which the sections are validated, and the
//! helpers they share. Every problem is collected (with its key path) rather than stopping at
//! the first, so an operator fixes a file in one pass. Each section's own rules live in its
//! module (`config/<section>.rs`).

use super::file::FileConfig;
use super::locate::KeyPath;
use super::{BootConfig, Config, ConfigError, LiveConfig, StoreSettings};
use super::{
    admin, assertion, client_ip, cookies, cors, credentials, csrf, edge, forward_auth, geoip,
    identity, internal_secrets, ip_authorization, limits, logging, login, network, redis, rollout,
    routes, sessions, sudo, upstreams,
};
use crate::net::cidr::CidrSet;
use http::HeaderName;
use std::net::SocketAddr;

#[derive(Default)]
pub(super) struct Errors(pub(super) Vec<ConfigError>);

impl Errors {
    pub(super) fn at(&mut self, path: KeyPath, message: impl Into<String>) {
        self.0.push(ConfigError {
            path,
            message: message.into(),
            at_key: false,
        });
    }
}

pub(super) fn p(s: &str) -> KeyPath {
    KeyPath::parse(s)
}

/// Validates a parsed file. Returns every problem found.
pub fn validate(file: FileConfig) -> Result<Config, Vec<ConfigError>> {
    let mut e = Errors::default();
    let server = edge::validate_server(&file.server, &mut e);
    let upstreams = upstreams::validate_upstreams(&file.upstream, &mut e);
    let default_upstream =
        upstreams::default_upstream(file.routing.default.upstream.as_deref(), &upstreams, &mut e);
    let client_ip = client_ip::validate_client_ip(&file.client_ip, &mut e);
    edge::check_proxy_protocol(&file, &mut e);
    let accept = credentials::validate_credentials(&file.credentials, &mut e);
    // The backend's default validation URL is the default upstream's own `/users/@me`.
    let upstream_base =
        upstreams
            .get(default_upstream)
            .and_then(|u| match (&u.tls, u.addresses.first()) {
                (None, Some(a)) => Some(format!("http://{a}")),
                _ => None,
            });
    let (sessions_boot, sessions) =
        sessions::validate_sessions(&file.sessions, upstream_base.as_deref(), &mut e);
    let mut limits = limits::validate_rate_limits(&file.rate_limits, &mut e);
    let geoip = geoip::validate_geoip(&file.geoip, &mut e);
    let (network, named_rules) = network::validate_network(&file, &mut e);
    let ip_auth = ip_authorization::validate_ip_authorization(&file, &mut e);
    // Wrong in-band sudo proofs are counted by a lockout of the limiter, keyed by user.
    let proof_lockout = file.sudo.secret.is_some().then(|| {
        let id = limits.lockouts.len() as u32;
        limits
            .lockouts
            .push(sudo::proof_lockout(&file.sudo, id, &mut e));
        id
    });
    let sudo = sudo::validate_sudo(&file.sudo, proof_lockout, &mut e);
    let sudo_proofs = sudo::validate_proofs(&file.sudo, &mut e);
    let ip_auth_mode = ip_authorization::validate_mode(&file, &mut e);
    let login = login::validate_login(&file.login, &mut e);
    let origins = csrf::validate_csrf(&file.csrf, &mut e);
    let cors = cors::validate_cors(&file.cors, &origins, &mut e);
    let uses_redis = matches!(sessions_boot.store, StoreSettings::Redis { .. })
        || sessions_boot.share
        || limits.on_redis
        || ip_auth.stream.is_some();
    let redis = if uses_redis {
        redis::validate_redis(&file.redis, &mut e)
    } else {
        None
    };
    let cookies = cookies::validate_cookies(&file, &mut e);
    let secrets = internal_secrets::validate_internal_secrets(&file.internal_secrets, &mut e);
    let rollout = rollout::validate_rollout(&file.rollout, &mut e);
    let routes = routes::validate_routes(
        &file,
        &routes::Ctx {
            accept,
            has_secrets: !secrets.secrets.is_empty(),
            has_sudo_secret: file.sudo.secret.is_some(),
            limits: &limits,
            network_rules: &named_rules,
            has_backend: sessions_boot.backend.is_some(),
            sudo_proofs,
            rollout,
            upstreams: &upstreams,
            default_upstream,
        },
        &mut e,
    );
    ip_authorization::check_routes(&file, ip_auth_mode, &mut e);
    let identity = identity::validate_identity(&file.identity, &mut e);
    let assertion = assertion::validate_assertion(&file.identity, &mut e);
    let admin = admin::validate_admin(&file.admin, &mut e);
    let logging = logging::validate_logging(&file.logging, &mut e);
    sudo::validate_sudo_cookie_name(&file, &mut e);
    let (fa_boot, fa_rules) = forward_auth::validate_forward_auth(&file, &mut e);
    forward_auth::check_routes(&file, &mut e);
    let tracing = super::traces::validate_tracing(&file.tracing, &mut e);
    if !e.0.is_empty() {
        return Err(e.0);
    }
    let boot = BootConfig {
        server,
        sessions: sessions_boot,
        redis,
        connection_cap_exempt: client_ip.trusted().clone(),
        geoip,
        ip_auth,
        admin: admin.expect("admin is present when there are no errors"),
        logging,
        forward_auth: fa_boot,
        tracing,
    };
    let live = LiveConfig {
        upstreams,
        client_ip,
        sessions,
        accept,
        cookies,
        sudo,
        cors,
        login,
        geo_headers: file.geoip.headers,
        network,
        network_rules: named_rules.into_iter().map(|(_, r)| r).collect(),
        origins,
        secrets,
        routes: routes.expect("routes are present when there are no errors"),
        limits,
        identity: identity.expect("identity is present when there are no errors"),
        assertion,
        access_log: file.logging.access_log,
        access_log_path: file.logging.access_log_path,
        forward_auth: fa_rules,
    };
    Ok(Config { boot, live, file })
}

/// Looks `s` up in a closed set of choices. The table is both the match and the error text,
/// so an allowed value is written once: an unknown one is reported as
/// `unknown <what> "x"; use "a", "b" or "c"`. The file keeps these as strings rather than serde
/// enums so that every bad value is reported, where serde would stop at the first.
pub(super) fn choice<T: Copy>(
    s: &str,
    what: &str,
    opts: &[(&str, T)],
    at: KeyPath,
    e: &mut Errors,
) -> Option<T> {
    if let Some(&(_, v)) = opts.iter().find(|(name, _)| *name == s) {
        return Some(v);
    }
    let names: Vec<String> = opts.iter().map(|(name, _)| format!("{name:?}")).collect();
    let listed = match names.split_last() {
        Some((last, rest)) if !rest.is_empty() => format!("{} or {last}", rest.join(", ")),
        _ => names.concat(),
    };
    e.at(at, format!("unknown {what} {s:?}; use {listed}"));
    None
}

pub(super) fn socket(s: &str, path: KeyPath, e: &mut Errors) -> Option<SocketAddr> {
    match s.parse::<SocketAddr>() {
        Ok(a) => Some(a),
        Err(_) => {
            e.at(
                path,
                format!("{s:?} is not an address like \"127.0.0.1:8080\" or \"[::1]:8080\""),
            );
            None
        }
    }
}

pub(super) fn positive(d: super::Dur, path: KeyPath, e: &mut Errors) {
    if d.is_zero() {
        e.at(path, "must be greater than zero");
    }
}

pub(super) fn cidrs(items: &[String], path: KeyPath, e: &mut Errors) -> CidrSet {
    CidrSet::parse(items).unwrap_or_else(|(i, msg)| {
        e.at(path.index(i), msg);
        CidrSet::default()
    })
}

pub(super) fn header_name(s: &str, path: KeyPath, e: &mut Errors) -> Option<HeaderName> {
    match HeaderName::from_bytes(s.as_bytes()) {
        Ok(h) => Some(h),
        Err(_) => {
            e.at(path, format!("{s:?} is not a valid HTTP header name"));
            None
        }
    }
}

pub(super) fn is_cookie_name(s: &str) -> bool {
    s.bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pick(s: &str, opts: &[(&str, u8)]) -> (Option<u8>, Vec<String>) {
        let mut e = Errors::default();
        let got = choice(s, "mode", opts, p("a.b"), &mut e);
        (
            got,
            e.0.into_iter()
                .map(|c| format!("{}: {}", c.path, c.message))
                .collect(),
        )
    }

    #[test]
    fn a_listed_choice_is_taken_without_a_problem() {
        assert_eq!(pick("b", &[("a", 1), ("b", 2)]), (Some(2), vec![]));
    }

    #[test]
    fn an_unknown_choice_lists_every_allowed_value_from_the_table() {
        let three = [("a", 1), ("b", 2), ("c", 3)];
        assert_eq!(
            pick("x", &three),
            (
                None,
                vec![r#"a.b: unknown mode "x"; use "a", "b" or "c""#.to_string()]
            )
        );
        assert_eq!(
            pick("A", &three[..2]).1,
            [r#"a.b: unknown mode "A"; use "a" or "b""#]
        );
        assert_eq!(
            pick("", &three[..1]).1,
            [r#"a.b: unknown mode ""; use "a""#]
        );
    }
}
