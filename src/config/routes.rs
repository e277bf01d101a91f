//! `[routing]` and `[[route]]`: the file form of the route table (version prefixes, the
//! default policy and each route), and its validation: patterns, methods and each route's
//! policy.

use super::credentials::kinds;
use super::file::FileConfig;
use super::limits::LimitsConfig;
use super::locate::KeyPath;
use super::validate::{Errors, choice, p};
use crate::credential::Kind;
use crate::policy::Role;
use crate::policy::rollout::Rollout;
use crate::policy::routes::{AuthMode, KindSet, Pattern, Policy, Route, RouteTable};
use http::Method;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default)]
pub struct RoutingFile {
    pub version_prefixes: Vec<String>,
    /// Match literal path segments in any case, for an upstream that does.
    pub case_insensitive_paths: bool,
    pub default: RouteFile,
}

impl Default for RoutingFile {
    fn default() -> Self {
        RoutingFile {
            version_prefixes: vec!["/v1".into()],
            case_insensitive_paths: false,
            default: RouteFile::default(),
        }
    }
}

/// A route: method set + path pattern and its rules. `[routing.default]` has the same shape
/// without `methods` and `path`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default)]
pub struct RouteFile {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub methods: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    pub auth: String,
    /// `None` means the globally accepted kinds.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kinds: Option<Vec<String>>,
    pub scopes: Vec<String>,
    pub pass_cookies: bool,
    pub forward_credential: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub role: Option<String>,
    pub sudo: bool,
    pub csrf: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub network: Option<String>,
    pub ip_authorization: bool,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub rate_limits: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lockout: Option<String>,
    /// `None`: `[rollout] mode`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rollout: Option<String>,
    /// `None`: `[sudo] proofs`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sudo_proofs: Option<String>,
    /// Forward-auth mode cannot see the upstream's answer, and this route relies on it: the
    /// operator knows (`config/forward_auth.rs`).
    pub forward_auth_ack: bool,
    /// `None`: the default upstream (`[routing.default] upstream`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub upstream: Option<String>,
    /// Leading literal segments of `path` the upstream does not see.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub strip_prefix: Option<String>,
    /// `None`: the client's `Host` goes upstream.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub set_host: Option<String>,
    /// Lenient-upstream spellings the route accepts (`semicolons`, `double_encoding`…).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub allow_in_path: Vec<String>,
}

impl Default for RouteFile {
    fn default() -> Self {
        RouteFile {
            name: None,
            methods: Vec::new(),
            path: None,
            auth: "required".into(),
            kinds: None,
            scopes: Vec::new(),
            pass_cookies: false,
            forward_credential: true,
            role: None,
            sudo: false,
            csrf: true,
            network: None,
            ip_authorization: false,
            rate_limits: Vec::new(),
            lockout: None,
            rollout: None,
            sudo_proofs: None,
            forward_auth_ack: false,
            upstream: None,
            strip_prefix: None,
            set_host: None,
            allow_in_path: Vec::new(),
        }
    }
}

const AUTH_MODES: &[(&str, AuthMode)] = &[
    ("none", AuthMode::None),
    ("required", AuthMode::Required),
    ("internal", AuthMode::Internal),
];

const ROLES: &[(&str, Role)] = &[
    ("logout", Role::Logout),
    ("logout_all", Role::LogoutAll),
    ("authorize_ip", Role::AuthorizeIp),
    ("ip_authorization_poll", Role::IpAuthPoll),
    ("ip_authorization_resend", Role::IpAuthResend),
    ("login", Role::Login),
];

/// What every route's policy is checked against.
pub(super) struct Ctx<'a> {
    pub accept: KindSet,
    pub has_secrets: bool,
    pub has_sudo_secret: bool,
    pub limits: &'a LimitsConfig,
    pub network_rules: &'a [(String, crate::policy::network::NetworkRules)],
    /// A backend session source is configured (`[sessions.backend]`), so tokens the upstream
    /// issues at login can be resolved later.
    pub has_backend: bool,
    /// `[rollout] mode`, for routes without their own.
    pub rollout: Rollout,
    /// `[sudo] proofs`, for routes that do not say `sudo_proofs`.
    pub sudo_proofs: crate::policy::sudo_proof::SudoProofs,
    /// The upstreams routes name.
    pub upstreams: &'a [crate::proxy::UpstreamSettings],
    /// Where routes without `upstream` go.
    pub default_upstream: usize,
}

/// One route's policy (or the default's): each part is checked on its own, and every problem
/// is reported.
fn policy(
    r: &RouteFile,
    ctx: &Ctx<'_>,
    pattern: Option<&Pattern>,
    path: &KeyPath,
    e: &mut Errors,
) -> Policy {
    let (auth, kinds) = auth_and_kinds(r, ctx, path, e);
    scopes(r, kinds, path, e);
    let role = role(r, auth, path, e);
    let limits = limit_refs(r, ctx.limits, pattern, path, e);
    let network = network_ref(r, ctx, path, e);
    cross_checks(r, ctx, auth, role, path, e);
    let rollout =
        super::rollout::route_rollout(r.rollout.as_deref(), ctx.rollout, (auth, role), path, e);
    let forward = forward(r, ctx, pattern, path, e);
    Policy {
        auth,
        kinds,
        scopes: r.scopes.clone(),
        pass_cookies: r.pass_cookies,
        forward_credential: r.forward_credential,
        role,
        buckets: limits.buckets,
        lockout: limits.lockout,
        // A login route's body is read first: fluxgate sends it upstream itself (login capture).
        needs_body: limits.needs_body || role == Some(Role::Login),
        sudo: r.sudo,
        sudo_proofs: r
            .sudo_proofs
            .as_deref()
            .and_then(|s| {
                let at = path.key("sudo_proofs");
                choice(s, "sudo proofs", super::sudo::PROOFS, at, e)
            })
            .unwrap_or(ctx.sudo_proofs),
        csrf: r.csrf,
        network,
        ip_authorization: r.ip_authorization,
        rollout,
        forward,
        allow_in_path: super::path_quirks::allow_in_path(&r.allow_in_path, path, e),
    }
}

/// `auth` and `kinds`: who the route admits at all. Without `kinds`, the globally accepted ones.
fn auth_and_kinds(
    r: &RouteFile,
    ctx: &Ctx<'_>,
    path: &KeyPath,
    e: &mut Errors,
) -> (AuthMode, KindSet) {
    let auth =
        choice(&r.auth, "auth mode", AUTH_MODES, path.key("auth"), e).unwrap_or(AuthMode::Required);
    if auth == AuthMode::Internal && !ctx.has_secrets {
        e.at(
            path.key("auth"),
            "\"internal\" needs at least one [[internal_secrets]] entry",
        );
    }
    let kinds = match &r.kinds {
        Some(list) => listed_kinds(list, auth, ctx.accept, path, e),
        None => ctx.accept,
    };
    if auth == AuthMode::Internal && r.kinds.is_some() {
        e.at(
            path.key("kinds"),
            "internal routes take the shared secret; kinds do not apply",
        );
    }
    (auth, kinds)
}

/// A route's own `kinds`: each must be accepted globally, and a required route needs one.
fn listed_kinds(
    list: &[String],
    auth: AuthMode,
    accept: KindSet,
    path: &KeyPath,
    e: &mut Errors,
) -> KindSet {
    let k = kinds(list, path.key("kinds"), e);
    for kind in k.kinds() {
        if !accept.contains(kind) {
            e.at(
                path.key("kinds"),
                format!("\"{kind}\" is not in credentials.accept, so it could never be used here"),
            );
        }
    }
    if list.is_empty() && auth == AuthMode::Required {
        e.at(
            path.key("kinds"),
            "an empty list would refuse every credential",
        );
    }
    k
}

/// `scopes`: valid OAuth2 scopes, on a route that accepts OAuth2 credentials.
fn scopes(r: &RouteFile, kinds: KindSet, path: &KeyPath, e: &mut Errors) {
    for (i, s) in r.scopes.iter().enumerate() {
        if !crate::session::record::is_scope(s) {
            e.at(
                path.key("scopes").index(i),
                format!("{s:?} is not a valid OAuth2 scope"),
            );
        }
    }
    if !r.scopes.is_empty() && !kinds.contains(Kind::Oauth2) {
        e.at(
            path.key("scopes"),
            "scopes only apply to oauth2 credentials, which this route does not accept",
        );
    }
}

/// `role`: what fluxgate does specially on the route. A logout needs a session to revoke.
fn role(r: &RouteFile, auth: AuthMode, path: &KeyPath, e: &mut Errors) -> Option<Role> {
    let role = r
        .role
        .as_deref()
        .and_then(|s| choice(s, "role", ROLES, path.key("role"), e));
    if matches!(role, Some(Role::Logout | Role::LogoutAll)) && auth != AuthMode::Required {
        e.at(
            path.key("role"),
            "logout routes need auth = \"required\": there must be a session to revoke",
        );
    }
    role
}

/// `network`: the index of a defined `[[network_rule]]`.
fn network_ref(r: &RouteFile, ctx: &Ctx<'_>, path: &KeyPath, e: &mut Errors) -> Option<u32> {
    let name = r.network.as_ref()?;
    match ctx.network_rules.iter().position(|(n, _)| n == name) {
        Some(i) => Some(i as u32),
        None => {
            e.at(
                path.key("network"),
                format!("no [[network_rule]] is named {name:?}"),
            );
            None
        }
    }
}

/// Keys that only make sense with a particular `auth`, and sudo's secret.
fn cross_checks(
    r: &RouteFile,
    ctx: &Ctx<'_>,
    auth: AuthMode,
    role: Option<Role>,
    path: &KeyPath,
    e: &mut Errors,
) {
    if r.ip_authorization && auth != AuthMode::Required {
        e.at(
            path.key("ip_authorization"),
            "needs auth = \"required\": it checks a session's location",
        );
    }
    if role == Some(Role::Login) {
        if auth != AuthMode::None {
            e.at(
                path.key("role"),
                "login routes are public: set auth = \"none\"",
            );
        }
        if !ctx.has_backend {
            e.at(
                path.key("role"),
                "login capture needs a backend session source ([sessions] store = \"backend\", or [sessions.backend] fallback = true): the tokens the upstream issues are only known to it",
            );
        }
    }
    if matches!(
        role,
        Some(Role::AuthorizeIp | Role::IpAuthPoll | Role::IpAuthResend)
    ) && auth != AuthMode::None
    {
        e.at(
            path.key("role"),
            "IP authorization endpoints are public: set auth = \"none\"",
        );
    }
    if r.sudo && auth != AuthMode::Required {
        e.at(
            path.key("sudo"),
            "sudo mode needs auth = \"required\": it proves a re-authenticated user",
        );
    }
    if r.sudo && !ctx.has_sudo_secret {
        e.at(
            path.key("sudo"),
            "sudo routes need [sudo] secret (the secret shared with the upstream)",
        );
    }
}

pub(super) fn validate_routes(f: &FileConfig, ctx: &Ctx<'_>, e: &mut Errors) -> Option<RouteTable> {
    let prefixes = version_prefixes(&f.routing.version_prefixes, e);
    let default = default_policy(&f.routing.default, ctx, e);
    let routes = f
        .routes
        .iter()
        .enumerate()
        .filter_map(|(i, r)| route(r, ctx, &p("route").index(i), e))
        .collect();
    let table = RouteTable::new(routes, default, prefixes);
    Some(table.case_insensitive(f.routing.case_insensitive_paths))
}

/// `routing.version_prefixes`: each one path segment, like `/v1`.
fn version_prefixes(list: &[String], e: &mut Errors) -> Vec<String> {
    let mut prefixes = Vec::new();
    for (i, pre) in list.iter().enumerate() {
        let ok = pre.len() > 1
            && pre.starts_with('/')
            && !pre.ends_with('/')
            && pre[1..]
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b));
        if ok {
            prefixes.push(pre.clone());
        } else {
            e.at(
                p("routing.version_prefixes").index(i),
                format!("{pre:?} must look like \"/v1\": one segment, no trailing '/'"),
            );
        }
    }
    prefixes
}

/// `[routing.default]`: a policy for every request no route matches.
fn default_policy(d: &RouteFile, ctx: &Ctx<'_>, e: &mut Errors) -> Policy {
    let dpath = p("routing.default");
    if d.path.is_some()
        || !d.methods.is_empty()
        || d.name.is_some()
        || d.role.is_some()
        || d.strip_prefix.is_some()
    {
        e.at(
            dpath.clone(),
            "the default policy takes no name, methods, path, role or strip_prefix",
        );
    }
    policy(d, ctx, None, &dpath, e)
}

/// One `[[route]]`; `None` when its path is missing or invalid.
fn route(r: &RouteFile, ctx: &Ctx<'_>, path: &KeyPath, e: &mut Errors) -> Option<Route> {
    let pattern = match &r.path {
        None => {
            e.at(path.clone(), "needs a `path`");
            None
        }
        Some(s) => Pattern::parse(s)
            .map_err(|msg| e.at(path.key("path"), msg))
            .ok(),
    };
    let methods = methods(&r.methods, path, e);
    let policy = policy(r, ctx, pattern.as_ref(), path, e);
    let pattern = pattern?;
    let name = r.name.clone().unwrap_or_else(|| {
        let m = if r.methods.is_empty() {
            "ANY".to_string()
        } else {
            r.methods.join(",")
        };
        format!("{m} {}", pattern.as_str())
    });
    Some(Route {
        name,
        methods,
        pattern: Some(pattern),
        policy,
    })
}

/// `methods`: HTTP methods, written in upper case.
fn methods(list: &[String], path: &KeyPath, e: &mut Errors) -> Vec<Method> {
    let mut methods = Vec::new();
    for (j, m) in list.iter().enumerate() {
        let valid = !m.is_empty() && m.bytes().all(|b| b.is_ascii_uppercase());
        match Method::from_bytes(m.as_bytes()) {
            Ok(method) if valid => methods.push(method),
            _ => e.at(
                path.key("methods").index(j),
                format!("{m:?} is not an HTTP method in upper case (e.g. \"GET\")"),
            ),
        }
    }
    methods
}

#[path = "routes_forward.rs"]
mod forward;
use forward::forward;

#[path = "routes_limits.rs"]
mod limit_refs;
use limit_refs::limit_refs;

#[cfg(test)]
#[path = "routes_tests.rs"]
mod tests;
