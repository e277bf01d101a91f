//! The route table (contract §2): method set + path pattern → policy; first match wins; a
//! default policy covers the rest. Patterns are written without the API version prefix and also
//! match under each configured prefix (`/v1` by default).
//!
//! Matching is a linear scan over pre-split patterns: route lists are short (tens), a scan is a
//! few hundred nanoseconds, and it keeps "first match wins" literally true, which a radix router
//! with its own priority rules would not.

use crate::credential::Kind;
use crate::net::path::{CheckedPath, PathError, Quirks, decode_for_matching};
use http::Method;
use std::borrow::Cow;

/// What a route requires of the caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthMode {
    /// Credential optional: identity injected when valid, anonymous otherwise.
    None,
    /// A valid user credential of an accepted kind.
    Required,
    /// A configured internal shared secret.
    Internal,
}

/// A small set of credential kinds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct KindSet(u8);

impl KindSet {
    pub fn of(kinds: &[Kind]) -> Self {
        KindSet(kinds.iter().fold(0, |m, k| m | Self::bit(*k)))
    }
    fn bit(k: Kind) -> u8 {
        match k {
            Kind::Session => 1,
            Kind::Oauth2 => 2,
            Kind::Bot => 4,
        }
    }
    pub fn contains(self, k: Kind) -> bool {
        self.0 & Self::bit(k) != 0
    }
    pub fn kinds(self) -> impl Iterator<Item = Kind> {
        Kind::ALL.into_iter().filter(move |k| self.contains(*k))
    }
}

/// A route fluxgate treats specially (contract §2 roles).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// `POST /auth/logout`: the session that made the request.
    Logout,
    /// `POST /auth/sessions/logout`: the sids listed in `session_id_hashes`, if they are the
    /// caller's own.
    LogoutAll,
    /// `POST /auth/authorize-ip`, answered by fluxgate (IP authorization).
    AuthorizeIp,
    /// `GET /auth/ip-authorization/poll`, answered by fluxgate.
    IpAuthPoll,
    /// `POST /auth/ip-authorization/resend`, answered by fluxgate.
    IpAuthResend,
    /// `POST /auth/login` and the other endpoints that answer with a new session token:
    /// fluxgate performs the exchange itself and turns the token into the session cookie
    /// (login capture, `policy::login`).
    Login,
}

/// What the route asks of a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    pub auth: AuthMode,
    /// Credential kinds accepted (for `none` and `required`).
    pub kinds: KindSet,
    /// OAuth2 scopes an `oauth2` credential must all carry.
    pub scopes: Vec<String>,
    /// Forward the session and sudo cookies to the upstream instead of removing them.
    pub pass_cookies: bool,
    /// May get a cookie's session token as `Authorization` (when that is on globally).
    pub forward_credential: bool,
    /// A logout route: revoke after the upstream accepts.
    pub role: Option<Role>,
    /// Rate-limit buckets (indexes into the limiter's buckets), in order.
    pub buckets: Vec<u32>,
    /// A brute-force lockout (index into the limiter's lockouts).
    pub lockout: Option<u32>,
    /// A bucket or the lockout is keyed by a JSON body field, so the body is read first.
    pub needs_body: bool,
    /// Sudo mode required.
    pub sudo: bool,
    /// Where a sudo proof may come from (fluxgate's own, or in-band for the upstream).
    pub sudo_proofs: crate::policy::sudo_proof::SudoProofs,
    /// Origin check for cookie-authenticated unsafe methods.
    pub csrf: bool,
    /// A named network rule set (index).
    pub network: Option<u32>,
    /// Check the session's location (IP authorization).
    pub ip_authorization: bool,
    /// Enforce denials, or only report the reportable ones (`policy::rollout`).
    pub rollout: super::rollout::Rollout,
    /// Where the request goes and what the route changes on the way (`policy::forward`).
    pub forward: super::forward::Forward,
    /// Lenient-upstream spellings this route accepts in its paths (`allow_in_path`).
    pub allow_in_path: Quirks,
}

/// One path segment of a pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Seg {
    Lit(String),
    Param(String),
    /// `*` as the last segment: one or more remaining segments.
    Rest,
}

/// A parsed path pattern such as `/guilds/:guild_id/delete`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pattern {
    source: String,
    segs: Vec<Seg>,
}

impl Pattern {
    /// Parses a pattern; the error says what is wrong with it.
    pub fn parse(s: &str) -> Result<Pattern, String> {
        if !s.starts_with('/') {
            return Err(format!("path pattern {s:?} must start with '/'"));
        }
        let body = s.strip_prefix('/').unwrap_or(s);
        let body = body.strip_suffix('/').unwrap_or(body);
        let mut segs = Vec::new();
        let parts: Vec<&str> = if body.is_empty() {
            Vec::new()
        } else {
            body.split('/').collect()
        };
        for (i, part) in parts.iter().enumerate() {
            let seg = if *part == "*" {
                if i + 1 != parts.len() {
                    return Err(format!("in {s:?}: '*' may only be the last segment"));
                }
                Seg::Rest
            } else if let Some(name) = part.strip_prefix(':') {
                if name.is_empty() || !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
                {
                    return Err(format!(
                        "in {s:?}: parameter {part:?} needs a name of letters, digits or '_'"
                    ));
                }
                Seg::Param(name.to_string())
            } else {
                if part.is_empty() || *part == "." || *part == ".." {
                    return Err(format!(
                        "in {s:?}: empty, '.' and '..' segments never match"
                    ));
                }
                if part
                    .bytes()
                    .any(|b| b <= 0x20 || b >= 0x7f || b"%?#\\*".contains(&b))
                {
                    return Err(format!(
                        "in {s:?}: segment {part:?} has a character that cannot appear in a checked path"
                    ));
                }
                Seg::Lit(part.to_string())
            };
            segs.push(seg);
        }
        Ok(Pattern {
            source: s.to_string(),
            segs,
        })
    }

    pub fn as_str(&self) -> &str {
        &self.source
    }

    /// How many leading segments `prefix` (`/a/b`) removes, when they are literal segments
    /// this pattern starts with (so every path the route matches begins with them).
    pub fn literal_prefix(&self, prefix: &str) -> Option<usize> {
        let body = prefix.strip_prefix('/')?;
        let parts: Vec<&str> = body.split('/').collect();
        let literal =
            |(i, p): (usize, &&str)| matches!(self.segs.get(i), Some(Seg::Lit(l)) if l == *p);
        (!body.is_empty() && parts.iter().enumerate().all(literal)).then_some(parts.len())
    }

    /// Whether the pattern has a `:name` parameter.
    pub fn has_param(&self, name: &str) -> bool {
        self.segs
            .iter()
            .any(|s| matches!(s, Seg::Param(n) if n == name))
    }

    /// Whether `path` (checked, decoded for matching, without query) matches; with `fold`,
    /// literal segments match in any ASCII case.
    fn matches(&self, path: &str, fold: bool) -> bool {
        self.walk(path, fold, |_, _| {})
    }

    /// Walks `path` against the pattern, reporting each parameter.
    fn walk<'p>(&self, path: &'p str, fold: bool, mut on_param: impl FnMut(&str, &'p str)) -> bool {
        let body = path.strip_prefix('/').unwrap_or(path);
        // One trailing slash names the same resource (most routers agree), so it matches too.
        let body = body.strip_suffix('/').unwrap_or(body);
        let mut parts = body.split('/').filter(|_| !body.is_empty());
        for seg in &self.segs {
            match seg {
                Seg::Rest => return parts.next().is_some(),
                Seg::Lit(l) => {
                    let same = |p: &str| {
                        if fold {
                            p.eq_ignore_ascii_case(l)
                        } else {
                            p == l
                        }
                    };
                    if !parts.next().is_some_and(same) {
                        return false;
                    }
                }
                Seg::Param(name) => match parts.next() {
                    Some(v) => on_param(name, v),
                    None => return false,
                },
            }
        }
        parts.next().is_none()
    }

    /// The value of `:name` in `path`, if the pattern matches and has that parameter. Case is
    /// ignored: the path was matched to this route already, with or without folding.
    pub fn param<'p>(&self, path: &'p str, name: &str) -> Option<&'p str> {
        let mut found = None;
        if self.walk(path, true, |n, v| {
            if n == name {
                found = Some(v);
            }
        }) {
            found
        } else {
            None
        }
    }
}

/// One configured route.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    /// Name for logs and metrics (the operator's, or "METHODS /pattern").
    pub name: String,
    /// Allowed methods; empty means any. A route that allows GET also matches HEAD, since
    /// servers commonly answer HEAD with their GET handler.
    pub methods: Vec<Method>,
    pub pattern: Option<Pattern>,
    pub policy: Policy,
}

impl Route {
    fn method_matches(&self, m: &Method) -> bool {
        self.methods.is_empty()
            || self.methods.iter().any(|x| x == m)
            || (m == Method::HEAD && self.methods.contains(&Method::GET))
    }
}

/// The routes in file order, the default policy and the version prefixes.
#[derive(Debug, Clone)]
pub struct RouteTable {
    routes: Vec<Route>,
    default: Route,
    prefixes: Vec<String>,
    /// `routing.case_insensitive_paths`: literal segments and prefixes match in any case.
    fold_case: bool,
}

/// The route a request matched and the path it matched with (prefix removed, decoded).
#[derive(Debug, Clone)]
pub struct Matched<'t, 'p> {
    pub route: &'t Route,
    /// Index in the table (None for the default route), for cheap metric labels.
    pub index: Option<usize>,
    pub match_path: Cow<'p, str>,
    /// Matched under a version prefix (`/v1/...` for a pattern written without it).
    pub prefixed: bool,
}

impl RouteTable {
    pub fn new(routes: Vec<Route>, default: Policy, prefixes: Vec<String>) -> Self {
        RouteTable {
            routes,
            default: Route {
                name: "default".into(),
                methods: Vec::new(),
                pattern: None,
                policy: default,
            },
            prefixes,
            fold_case: false,
        }
    }

    /// Matches literal segments and prefixes in any ASCII case, for an upstream that does.
    pub fn case_insensitive(mut self, fold: bool) -> Self {
        self.fold_case = fold;
        self
    }

    pub fn routes(&self) -> &[Route] {
        &self.routes
    }

    pub fn default_route(&self) -> &Route {
        &self.default
    }

    /// Finds the first route matching `method` and the checked `path`.
    pub fn find<'t, 'p>(
        &'t self,
        method: &Method,
        path: &'p str,
        has_escapes: bool,
    ) -> Matched<'t, 'p> {
        let decoded: Cow<'p, str> = if has_escapes {
            Cow::Owned(decode_for_matching(path))
        } else {
            Cow::Borrowed(path)
        };
        let unprefixed = self.strip_prefix(&decoded);
        for (i, r) in self.routes.iter().enumerate() {
            if !r.method_matches(method) {
                continue;
            }
            let Some(p) = &r.pattern else { continue };
            let fold = self.fold_case;
            if p.matches(&decoded, fold) || unprefixed.is_some_and(|u| p.matches(u, fold)) {
                let (match_path, prefixed) = match unprefixed {
                    Some(u) if !p.matches(&decoded, fold) => (Cow::Owned(u.to_string()), true),
                    _ => (decoded.clone(), false),
                };
                return Matched {
                    route: r,
                    index: Some(i),
                    match_path,
                    prefixed,
                };
            }
        }
        Matched {
            route: &self.default,
            index: None,
            match_path: decoded.clone(),
            prefixed: false,
        }
    }

    /// Finds the route for a checked path and holds it to the route's `allow_in_path`: a
    /// lenient-upstream spelling the route does not allow is refused, and so is a `;params`
    /// spelling that, stripped as such an upstream strips it, would pick another route.
    pub fn find_checked<'t, 'p>(
        &'t self,
        method: &Method,
        c: &CheckedPath<'p>,
    ) -> Result<Matched<'t, 'p>, PathError> {
        let m = self.find(method, c.path, c.has_escapes);
        // SECURITY: `;`, double encoding, non-UTF-8 and encoded whitespace make a lenient
        // upstream act on another path than the one matched; refused unless the route allows.
        if let Some(e) = c.quirks.refused(m.route.policy.allow_in_path) {
            return Err(e);
        }
        // SECURITY: even where `;` is allowed, `/users/@me/delete;x` must not reach a handler
        // (read without `;x`) under another route's policy.
        if c.quirks.contains(Quirks::SEMICOLON) {
            let bare = without_params(c.path);
            if self.find(method, &bare, c.has_escapes).index != m.index {
                return Err(PathError::Semicolon);
            }
        }
        Ok(m)
    }

    fn strip_prefix<'a>(&self, path: &'a str) -> Option<&'a str> {
        self.prefixes.iter().find_map(|pre| {
            let rest = match path.get(..pre.len()) {
                Some(head) if self.fold_case && head.eq_ignore_ascii_case(pre) => {
                    &path[pre.len()..]
                }
                _ => path.strip_prefix(pre.as_str())?,
            };
            if rest.is_empty() {
                Some("/")
            } else if rest.starts_with('/') {
                Some(rest)
            } else {
                None
            }
        })
    }
}

/// `path` with each segment's `;params` (`;` or `%3b`, any case) removed: what an upstream that
/// strips path parameters acts on.
fn without_params(path: &str) -> String {
    path.split('/')
        .map(|seg| {
            let cut = seg.find(';').unwrap_or(seg.len());
            let lower = seg.to_ascii_lowercase();
            let cut = lower.find("%3b").map_or(cut, |at| at.min(cut));
            &seg[..cut]
        })
        .collect::<Vec<_>>()
        .join("/")
}

#[path = "routes_overlap.rs"]
mod overlap;
pub use overlap::methods_overlap;

#[cfg(test)]
#[path = "routes_tests.rs"]
mod tests;
