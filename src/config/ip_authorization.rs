//! `[ip_authorization]`: who runs the new-location check (`mode`), how a new location is
//! recognised and confirmed (granularity, tickets, the webhook and the Redis stream that announce
//! it), and the route checks that keep fluxgate's ticket flow and the upstream's apart.
//!
//! Delegated or owned, never both: Fluxer runs its own flow on `/auth/authorize-ip` and
//! `/auth/ip-authorization/*`. With `mode = "upstream"` fluxgate has no ticket flow at all (no
//! `ip_authorization = true` route, no endpoint roles), so those paths are proxied like any other
//! and the upstream's `403 IP_AUTHORIZATION_REQUIRED` reaches the client as it was sent. With
//! `mode = "edge"` (the default, today's flow) fluxgate's endpoints must not share a request
//! with any other route, so each request has one owner.

use super::Dur;
use super::file::FileConfig;
use super::secret::SecretSource;
use super::validate::{Errors, choice, p, positive};
use crate::net::cidr::CidrSet;
use crate::policy::ipauth::notify::Webhook;
use crate::policy::ipauth::{Granularity, IpAuthSettings};
use crate::policy::routes::{Pattern, Role, methods_overlap};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default)]
pub struct IpAuthFile {
    /// `"edge"` or `"upstream"`: who runs the new-location check.
    pub mode: String,
    pub granularity: String,
    pub v4_prefix: u8,
    pub v6_prefix: u8,
    pub ticket_ttl: Dur,
    pub resend_after: Dur,
    pub trusted_networks: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub webhook_url: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub webhook_secret: Option<SecretSource>,
    pub webhook_timeout: Dur,
    pub webhook_retries: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub redis_stream: Option<String>,
}

impl Default for IpAuthFile {
    fn default() -> Self {
        IpAuthFile {
            mode: "edge".into(),
            granularity: "network".into(),
            v4_prefix: 24,
            v6_prefix: 48,
            ticket_ttl: Dur::from_secs(900),
            resend_after: Dur::from_secs(30),
            trusted_networks: Vec::new(),
            webhook_url: None,
            webhook_secret: None,
            webhook_timeout: Dur::from_secs(5),
            webhook_retries: 3,
            redis_stream: None,
        }
    }
}

/// `[ip_authorization]`, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IpAuthConfig {
    pub settings: IpAuthSettings,
    pub webhook: Option<Webhook>,
    pub stream: Option<String>,
}

/// Takes the whole file: the `asn` and `country` granularities need `[geoip]` databases.
pub(super) fn validate_ip_authorization(f: &FileConfig, e: &mut Errors) -> IpAuthConfig {
    let a = &f.ip_authorization;
    let path = p("ip_authorization");
    let granularity = choice(
        &a.granularity,
        "granularity",
        &[
            ("ip", Granularity::Ip),
            ("network", Granularity::Network),
            ("asn", Granularity::Asn),
            ("country", Granularity::Country),
        ],
        path.key("granularity"),
        e,
    )
    .unwrap_or(Granularity::Network);
    if granularity == Granularity::Asn && f.geoip.asn_db.is_none() {
        e.at(path.key("granularity"), "\"asn\" needs geoip.asn_db");
    }
    if granularity == Granularity::Country && f.geoip.country_db.is_none() {
        e.at(
            path.key("granularity"),
            "\"country\" needs geoip.country_db",
        );
    }
    if !(8..=32).contains(&a.v4_prefix) {
        e.at(path.key("v4_prefix"), "must be between 8 and 32");
    }
    if !(16..=128).contains(&a.v6_prefix) {
        e.at(path.key("v6_prefix"), "must be between 16 and 128");
    }
    positive(a.ticket_ttl, path.key("ticket_ttl"), e);
    let trusted = CidrSet::parse(&a.trusted_networks).unwrap_or_else(|(i, msg)| {
        e.at(path.key("trusted_networks").index(i), msg);
        CidrSet::default()
    });
    let webhook = match (&a.webhook_url, &a.webhook_secret) {
        (None, None) => None,
        (Some(_), None) => {
            e.at(
                path.key("webhook_secret"),
                "a webhook needs a secret to sign its requests",
            );
            None
        }
        (None, Some(_)) => {
            e.at(
                path.key("webhook_url"),
                "webhook_secret is set but webhook_url is not",
            );
            None
        }
        (Some(url), Some(secret)) => {
            let uri = url.parse::<http::Uri>().ok().filter(|u| {
                matches!(u.scheme_str(), Some("http" | "https")) && u.authority().is_some()
            });
            if uri.is_none() {
                e.at(
                    path.key("webhook_url"),
                    format!("{url:?} is not an http(s) URL"),
                );
            }
            let secret = secret
                .resolve()
                .map_err(|m| e.at(path.key("webhook_secret"), m))
                .ok();
            match (uri, secret) {
                (Some(url), Some(secret)) => Some(Webhook {
                    url,
                    secret: secret.expose().as_bytes().to_vec(),
                    timeout: a.webhook_timeout.0,
                    retries: a.webhook_retries.min(10),
                }),
                _ => None,
            }
        }
    };
    if let Some(s) = &a.redis_stream
        && (s.is_empty() || s.bytes().any(|b| b <= b' '))
    {
        e.at(path.key("redis_stream"), "must be a Redis key name");
    }
    IpAuthConfig {
        settings: IpAuthSettings {
            granularity,
            v4_prefix: a.v4_prefix.clamp(8, 32),
            v6_prefix: a.v6_prefix.clamp(16, 128),
            ticket_ttl_secs: a.ticket_ttl.0.as_secs().max(1) as i64,
            resend_after_secs: a.resend_after.0.as_secs() as i64,
            trusted,
        },
        webhook,
        stream: a.redis_stream.clone(),
    }
}

/// Who runs the new-location check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IpAuthMode {
    /// fluxgate: `ip_authorization = true` routes and the endpoint roles (today's flow).
    Edge,
    /// The upstream: fluxgate has no ticket flow and passes the upstream's answers through.
    Upstream,
}

/// The roles of the endpoints fluxgate answers itself in edge mode.
const EDGE_ROLES: &[(&str, Role)] = &[
    ("authorize_ip", Role::AuthorizeIp),
    ("ip_authorization_poll", Role::IpAuthPoll),
    ("ip_authorization_resend", Role::IpAuthResend),
];

/// `ip_authorization.mode`, and the keys that only the edge flow uses.
pub(super) fn validate_mode(f: &FileConfig, e: &mut Errors) -> IpAuthMode {
    let a = &f.ip_authorization;
    let path = p("ip_authorization");
    let modes = [
        ("edge", IpAuthMode::Edge),
        ("upstream", IpAuthMode::Upstream),
    ];
    let mode = choice(&a.mode, "mode", &modes, path.key("mode"), e).unwrap_or(IpAuthMode::Edge);
    if mode == IpAuthMode::Upstream {
        let edge_only = [
            ("webhook_url", a.webhook_url.is_some()),
            ("webhook_secret", a.webhook_secret.is_some()),
            ("redis_stream", a.redis_stream.is_some()),
        ];
        for (key, _) in edge_only.iter().filter(|(_, set)| *set) {
            e.at(
                path.key(key),
                "ip_authorization.mode = \"upstream\" runs no ticket flow at the edge, so nothing is announced: remove this key, or set mode = \"edge\"",
            );
        }
    }
    mode
}

/// The routes against the mode. Upstream mode: no route may hold sessions or answer an
/// endpoint at the edge. Edge mode: an endpoint route must be the only route that can match its
/// requests.
pub(super) fn check_routes(f: &FileConfig, mode: IpAuthMode, e: &mut Errors) {
    match mode {
        IpAuthMode::Upstream => refuse_edge_routes(f, e),
        IpAuthMode::Edge => refuse_shadowed_endpoints(f, e),
    }
}

/// The edge role a route names, if any.
fn edge_role(r: &super::routes::RouteFile) -> Option<&'static str> {
    let role = r.role.as_deref()?;
    EDGE_ROLES
        .iter()
        .find(|(name, _)| *name == role)
        .map(|(name, _)| *name)
}

fn refuse_edge_routes(f: &FileConfig, e: &mut Errors) {
    const WHY: &str =
        "ip_authorization.mode = \"upstream\" leaves the new-location check to the upstream";
    if f.routing.default.ip_authorization {
        e.at(
            p("routing.default").key("ip_authorization"),
            format!("{WHY}: fluxgate holds no session here; remove it, or set mode = \"edge\""),
        );
    }
    for (i, r) in f.routes.iter().enumerate() {
        let at = p("route").index(i);
        if r.ip_authorization {
            e.at(
                at.key("ip_authorization"),
                format!("{WHY}: fluxgate holds no session here; remove it, or set mode = \"edge\""),
            );
        }
        if let Some(role) = edge_role(r) {
            e.at(
                at.key("role"),
                format!("{WHY}: fluxgate answers no {role:?} endpoint; remove the role so the request goes to the upstream's own endpoint, or set mode = \"edge\""),
            );
        }
    }
}

/// A route as far as matching goes: its parsed pattern and methods (`None` when the path or a
/// method is invalid; that is reported by the route's own checks).
fn matcher(r: &super::routes::RouteFile) -> Option<(Pattern, Vec<http::Method>)> {
    let pattern = Pattern::parse(r.path.as_deref()?).ok()?;
    let methods = r
        .methods
        .iter()
        .map(|m| m.parse::<http::Method>().ok())
        .collect::<Option<Vec<_>>>()?;
    Some((pattern, methods))
}

// SECURITY: an endpoint fluxgate answers itself must own every request it matches. A route
// before it would take some of them (the approval never reaches fluxgate); a route after it
// would have had some of them (the upstream's own endpoint never sees them, and the user is
// caught between two ticket systems). The default policy is not a route: it only gets what no
// route matches.
fn refuse_shadowed_endpoints(f: &FileConfig, e: &mut Errors) {
    let prefixes = &f.routing.version_prefixes;
    let matchers: Vec<_> = f.routes.iter().map(matcher).collect();
    for (i, r) in f.routes.iter().enumerate() {
        let (Some(role), Some((pi, mi))) = (edge_role(r), &matchers[i]) else {
            continue;
        };
        for (j, other) in f.routes.iter().enumerate() {
            let Some((pj, mj)) = &matchers[j] else {
                continue;
            };
            // Two endpoints sharing requests are reported once, at the later one.
            if j == i || (j > i && edge_role(other).is_some()) {
                continue;
            }
            if !methods_overlap(mi, mj) || !pi.overlaps(pj, prefixes) {
                continue;
            }
            let which = if j < i {
                "comes first and takes them, so they never reach this endpoint"
            } else {
                "would send them to the upstream, but this endpoint answers them first"
            };
            e.at(
                p("route").index(i).key("path"),
                format!(
                    "the {role:?} endpoint {:?} shares requests with route[{j}] ({}), which {which}; put fluxgate's endpoints under a prefix of their own, e.g. \"/_fluxgate/ip-authorization/...\"",
                    pi.as_str(),
                    describe(other),
                ),
            );
        }
    }
}

/// `"GET /auth/*"`, for messages.
fn describe(r: &super::routes::RouteFile) -> String {
    let m = if r.methods.is_empty() {
        "any method".to_string()
    } else {
        r.methods.join(",")
    };
    format!("{m} {}", r.path.as_deref().unwrap_or_default())
}

#[cfg(test)]
#[path = "ip_authorization_tests.rs"]
mod tests;
