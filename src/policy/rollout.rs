//! Report-only roll-out (`[rollout] mode`, per route `rollout`): putting fluxgate in front of a
//! live API without refusing anyone yet. On a route in report mode every decision is still made;
//! a *reportable* denial is counted (`fluxgate_would_deny_total{reason,route}`) and logged, and
//! the request goes upstream as an anonymous one: with every client-sent identity header and
//! fluxgate's cookies stripped, and no identity of its own. Envoy RBAC's shadow rules are the
//! precedent.
//!
//! What stays enforced in report mode, and why (contract §3a):
//! - requests refused before routing (client IP, hygiene, path): a malformed request is read
//!   differently by two servers, and forwarding it is the risk itself;
//! - internal-secret routes and routes fluxgate answers itself (IP authorization endpoints):
//!   they are never reported, whatever the mode;
//! - failures that are not access decisions: the session store or the shared limiter being
//!   unreachable (fail closed), internal errors.

use super::routes::{AuthMode, Role, RouteTable};
use crate::denial::{Denial, Unauthenticated};

/// Whether a route's denials are enforced or only reported.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Rollout {
    #[default]
    Enforce,
    Report,
}

impl Rollout {
    pub fn as_str(self) -> &'static str {
        match self {
            Rollout::Enforce => "enforce",
            Rollout::Report => "report",
        }
    }
}

/// Whether a route with `auth` and `role` may be put in report mode at all: internal-secret
/// routes and the endpoints fluxgate answers itself are always enforced.
pub fn reportable_route(auth: AuthMode, role: Option<Role>) -> bool {
    auth != AuthMode::Internal
        && !matches!(
            role,
            Some(Role::AuthorizeIp | Role::IpAuthPoll | Role::IpAuthResend)
        )
}

/// Whether `d` is an access decision that report mode may turn into a would-deny.
// SECURITY: the list is closed and exhaustive (no `_` arm): a new denial is enforced in report
// mode until someone decides otherwise here. Malformed requests, internal-secret failures and
// unavailable dependencies are never forwarded.
pub fn reportable(d: &Denial) -> bool {
    match d {
        Denial::Unauthorized(u) => match u {
            Unauthenticated::Missing
            | Unauthenticated::Malformed(_)
            | Unauthenticated::UnknownSession
            | Unauthenticated::KindMismatch
            | Unauthenticated::KindDisabled
            | Unauthenticated::AmbiguousCookies => true,
            Unauthenticated::SecretMissing
            | Unauthenticated::SecretWrong
            | Unauthenticated::SecretNetwork => false,
        },
        Denial::AccessDenied
        | Denial::MissingOauthScope { .. }
        | Denial::SudoModeRequired { .. }
        | Denial::InvalidApiOrigin
        | Denial::IpAuthorizationRequired { .. }
        | Denial::Forbidden
        | Denial::RateLimited(_) => true,
        Denial::BadRequest(_)
        | Denial::Limit(_)
        | Denial::MethodNotAllowed
        | Denial::StoreUnavailable { .. }
        | Denial::LimiterUnavailable
        | Denial::BadGateway
        | Denial::GatewayTimeout
        | Denial::Internal => false,
    }
}

/// The roll-out state of a route table, for `/readyz`: `"enforce"` when no route reports,
/// `"report"` when every route that can report does, `"mixed"` otherwise; and the names of the
/// routes in report mode (`"default"` for the default policy).
pub fn summary(table: &RouteTable) -> (&'static str, Vec<String>) {
    let all = table
        .routes()
        .iter()
        .chain(std::iter::once(table.default_route()));
    let mut eligible = 0;
    let mut names = Vec::new();
    for r in all {
        if reportable_route(r.policy.auth, r.policy.role) {
            eligible += 1;
        }
        if r.policy.rollout == Rollout::Report {
            names.push(r.name.clone());
        }
    }
    let mode = match names.len() {
        0 => "enforce",
        n if n == eligible => "report",
        _ => "mixed",
    };
    (mode, names)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::denial::{BadRequest, RateLimited};
    use crate::policy::ratelimit::Scope;

    #[test]
    fn access_decisions_are_reportable() {
        for d in [
            Denial::Unauthorized(Unauthenticated::Missing),
            Denial::Unauthorized(Unauthenticated::UnknownSession),
            Denial::AccessDenied,
            Denial::MissingOauthScope {
                required_scope: "guilds".into(),
            },
            Denial::SudoModeRequired { has_mfa: None },
            Denial::InvalidApiOrigin,
            Denial::Forbidden,
            Denial::RateLimited(RateLimited {
                retry_after_ms: 1000,
                scope: Scope::User,
                global: false,
                bucket: None,
                lockout: true,
            }),
        ] {
            assert!(reportable(&d), "{d:?}");
        }
    }

    #[test]
    fn internal_secret_failures_are_never_reported() {
        for u in [
            Unauthenticated::SecretMissing,
            Unauthenticated::SecretWrong,
            Unauthenticated::SecretNetwork,
        ] {
            assert!(!reportable(&Denial::Unauthorized(u)), "{u:?}");
        }
    }

    #[test]
    fn malformed_requests_and_unavailable_dependencies_are_never_reported() {
        for d in [
            Denial::BadRequest(BadRequest::Unparseable),
            Denial::StoreUnavailable {
                retry_after_secs: 1,
            },
            Denial::LimiterUnavailable,
            Denial::Internal,
        ] {
            assert!(!reportable(&d), "{d:?}");
        }
    }

    #[test]
    fn internal_routes_and_fluxgate_answered_endpoints_cannot_report() {
        assert!(!reportable_route(AuthMode::Internal, None));
        assert!(!reportable_route(AuthMode::None, Some(Role::AuthorizeIp)));
        assert!(!reportable_route(AuthMode::None, Some(Role::IpAuthPoll)));
        assert!(reportable_route(AuthMode::Required, Some(Role::Logout)));
        assert!(reportable_route(AuthMode::None, None));
    }
}
