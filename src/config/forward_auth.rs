//! `[forward_auth]`: the decision endpoint for an existing edge proxy (nginx `auth_request`,
//! Caddy `forward_auth`, Traefik ForwardAuth): where it listens, which peers may speak for the
//! original request, and the headers that carry it. Off unless `listen` is set.
//!
//! Also the route check that needs the whole file: a route whose behaviour depends on the
//! upstream's answer (which the edge never shows fluxgate) is refused in this mode unless the
//! route acknowledges it with `forward_auth_ack = true` (see `docs/forward-auth.md`).

use super::file::FileConfig;
use super::validate::{Errors, cidrs, header_name, p, socket};
use crate::net::cidr::CidrSet;
use crate::net::client_ip::ClientIpResolver;
use http::HeaderName;
use serde::{Deserialize, Serialize};
use std::net::SocketAddr;

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default)]
pub struct ForwardAuthFile {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub listen: Option<String>,
    pub trusted_edges: Vec<String>,
    pub method_headers: Vec<String>,
    pub uri_headers: Vec<String>,
    pub host_header: String,
    pub proto_header: String,
    pub forwarded_for_header: String,
    pub max_uri_bytes: usize,
    /// Envoy `ext_authz` (HTTP service): the original request arrives as the request itself,
    /// its path under this prefix (Envoy's `path_prefix`). Empty: off.
    pub envoy_path_prefix: String,
}

impl Default for ForwardAuthFile {
    fn default() -> Self {
        ForwardAuthFile {
            listen: None,
            trusted_edges: Vec::new(),
            method_headers: vec!["X-Original-Method".into(), "X-Forwarded-Method".into()],
            uri_headers: vec!["X-Original-URI".into(), "X-Forwarded-Uri".into()],
            host_header: "X-Forwarded-Host".into(),
            proto_header: "X-Forwarded-Proto".into(),
            forwarded_for_header: "X-Forwarded-For".into(),
            max_uri_bytes: 8192,
            envoy_path_prefix: String::new(),
        }
    }
}

/// Where the decision endpoint listens (restart to change).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ForwardAuthBoot {
    pub listen: SocketAddr,
}

/// How the decision endpoint reads the original request (reloads with the rules).
#[derive(Debug, Clone)]
pub struct ForwardAuthRules {
    /// Peers whose original-request headers are believed (loopback when none are listed).
    pub trusted_edges: CidrSet,
    /// Names that may carry the original method; exactly one value in all of them.
    pub method_headers: Vec<HeaderName>,
    /// Names that may carry the original URI (origin form); exactly one value in all of them.
    pub uri_headers: Vec<HeaderName>,
    pub host_header: HeaderName,
    pub proto_header: HeaderName,
    /// The client IP: the edge's `forwarded_for_header`, walked from the right past the trusted
    /// edges and `[client_ip] trusted_proxies`.
    pub client_ip: ClientIpResolver,
    pub max_uri_bytes: usize,
    /// Envoy's `path_prefix`, when its form is accepted.
    pub envoy_path_prefix: Option<String>,
}

/// Loopback, the trusted edges when none are listed.
const LOOPBACK: [&str; 2] = ["127.0.0.0/8", "::1/128"];

fn names(list: &[String], key: &str, e: &mut Errors) -> Vec<HeaderName> {
    if list.is_empty() {
        e.at(p(key), "name at least one header");
    }
    list.iter()
        .enumerate()
        .filter_map(|(i, s)| header_name(s, p(key).index(i), e))
        .collect()
}

/// Validates `[forward_auth]`: the listener (none when off) and the reading rules.
pub(super) fn validate_forward_auth(
    file: &FileConfig,
    e: &mut Errors,
) -> (Option<ForwardAuthBoot>, ForwardAuthRules) {
    let f = &file.forward_auth;
    let boot = f
        .listen
        .as_deref()
        .and_then(|l| socket(l, p("forward_auth.listen"), e))
        .map(|listen| ForwardAuthBoot { listen });
    let edges: Vec<String> = if f.trusted_edges.is_empty() {
        LOOPBACK.iter().map(|s| s.to_string()).collect()
    } else {
        f.trusted_edges.clone()
    };
    let trusted_edges = cidrs(&edges, p("forward_auth.trusted_edges"), e);
    // Problems in trusted_proxies are reported by [client_ip] already.
    let hops = [edges, file.client_ip.trusted_proxies.clone()].concat();
    let client_ip = ClientIpResolver::new(
        CidrSet::parse(&hops).unwrap_or_else(|_| trusted_edges.clone()),
        header_name(
            &f.forwarded_for_header,
            p("forward_auth.forwarded_for_header"),
            e,
        )
        .unwrap_or(HeaderName::from_static("x-forwarded-for")),
    );
    let method_headers = names(&f.method_headers, "forward_auth.method_headers", e);
    let uri_headers = names(&f.uri_headers, "forward_auth.uri_headers", e);
    let host_header = header_name(&f.host_header, p("forward_auth.host_header"), e)
        .unwrap_or(HeaderName::from_static("x-forwarded-host"));
    let proto_header = header_name(&f.proto_header, p("forward_auth.proto_header"), e)
        .unwrap_or(HeaderName::from_static("x-forwarded-proto"));
    if !(256..=65_536).contains(&f.max_uri_bytes) {
        e.at(
            p("forward_auth.max_uri_bytes"),
            "must be between 256 and 65536",
        );
    }
    if let Some(dup) = method_headers.iter().find(|m| uri_headers.contains(m)) {
        e.at(
            p("forward_auth.uri_headers"),
            format!("{dup} is also a method header"),
        );
    }
    let envoy = &f.envoy_path_prefix;
    if !envoy.is_empty()
        && (!envoy.starts_with('/')
            || envoy.ends_with('/')
            || !envoy
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"/-_.".contains(&b)))
    {
        e.at(
            p("forward_auth.envoy_path_prefix"),
            "must be a path like \"/ext_authz\" (no trailing '/'), or empty",
        );
    }
    let rules = ForwardAuthRules {
        trusted_edges,
        method_headers,
        uri_headers,
        host_header,
        proto_header,
        client_ip,
        max_uri_bytes: f.max_uri_bytes,
        envoy_path_prefix: (!envoy.is_empty()).then(|| envoy.clone()),
    };
    (boot, rules)
}

/// What a route relies on that only the upstream's answer can tell, if anything.
fn needs_the_answer(r: &super::file::RouteFile, file: &FileConfig) -> Option<&'static str> {
    let role = r.role.as_deref();
    if let Some(role) = role {
        return Some(match role {
            "login" => "role \"login\" captures the upstream's login answer",
            "logout" | "logout_all" => "a logout role revokes sessions after the upstream's 2xx",
            "authorize_ip" | "ip_authorization_poll" | "ip_authorization_resend" => {
                "an IP-authorization endpoint is answered by fluxgate itself"
            }
            _ => return None,
        });
    }
    if r.lockout.is_some() {
        return Some("a lockout counts failures from the upstream's status");
    }
    let proofs = r.sudo_proofs.as_deref().unwrap_or(&file.sudo.proofs);
    if r.sudo && proofs != "edge" {
        return Some("in-band sudo proofs are settled from the upstream's answer");
    }
    None
}

// SECURITY: in forward-auth mode fluxgate never sees the upstream's answer, so a lockout
// would never count a failure, a logout would never revoke, a login would never be captured.
// A route that relies on that is refused unless the operator says, per route, that they know
// (for example: the edge sends those paths to fluxgate's proxy listener instead).
pub(super) fn check_routes(file: &FileConfig, e: &mut Errors) {
    if file.forward_auth.listen.is_none() {
        return;
    }
    for (i, r) in file.routes.iter().enumerate() {
        if r.forward_auth_ack {
            continue;
        }
        if let Some(why) = needs_the_answer(r, file) {
            e.at(
                p("route").index(i),
                format!(
                    "{why}, which forward-auth mode cannot see; serve this path through the \
                     proxy listener, or set forward_auth_ack = true on the route"
                ),
            );
        }
    }
    if file.routing.default.lockout.is_some() && !file.routing.default.forward_auth_ack {
        e.at(
            p("routing.default.lockout"),
            "a lockout counts failures from the upstream's status, which forward-auth mode \
             cannot see; set forward_auth_ack = true on [routing.default]",
        );
    }
}

#[cfg(test)]
mod tests {
    /// Every problem in `src`, as `path @line:column: message` (empty when valid).
    fn errors(src: &str) -> Vec<String> {
        match super::super::parse(src, "test.toml") {
            Ok(_) => Vec::new(),
            Err(e) => e
                .problems
                .iter()
                .map(|(e, _)| format!("{}: {}", e.path, e.message))
                .collect(),
        }
    }

    const ON: &str = "[forward_auth]\nlisten = \"127.0.0.1:0\"\n";

    #[test]
    fn forward_auth_is_off_by_default_and_the_defaults_validate() {
        assert!(errors("").is_empty());
        assert!(errors(ON).is_empty(), "{:?}", errors(ON));
    }

    #[test]
    fn bad_values_are_reported_with_their_key_paths() {
        let got = errors(
            "[forward_auth]\nlisten = \"nowhere\"\ntrusted_edges = [\"10.0.0.0/33\"]\n\
             method_headers = []\nuri_headers = [\"bad name\"]\nmax_uri_bytes = 10\n",
        );
        for key in [
            "forward_auth.listen",
            "forward_auth.trusted_edges[0]",
            "forward_auth.method_headers",
            "forward_auth.uri_headers[0]",
            "forward_auth.max_uri_bytes",
        ] {
            assert!(
                got.iter().any(|g| g.starts_with(key)),
                "{key} not in {got:?}"
            );
        }
    }

    #[test]
    fn routes_that_need_the_upstreams_answer_are_refused_without_an_ack() {
        let routes = "[[rate_limits.lockout]]\nname = \"l\"\nkey = \"ip\"\nmax_failures = 3\nfind_time = \"1m\"\nban_time = \"1m\"\n\
            [[route]]\nmethods = [\"POST\"]\npath = \"/auth/logout\"\nrole = \"logout\"\n\
            [[route]]\nmethods = [\"POST\"]\npath = \"/auth/login\"\nauth = \"none\"\nlockout = \"l\"\n";
        let got = errors(&format!("{ON}{routes}"));
        assert!(
            got.iter().any(|g| g.starts_with("route[0]")),
            "logout: {got:?}"
        );
        assert!(
            got.iter().any(|g| g.starts_with("route[1]")),
            "lockout: {got:?}"
        );
        // The same routes are fine without forward-auth, or with the ack.
        assert!(errors(routes).is_empty(), "{:?}", errors(routes));
        let acked = routes.replace("[[route]]\n", "[[route]]\nforward_auth_ack = true\n");
        assert!(errors(&format!("{ON}{acked}")).is_empty());
    }
}
