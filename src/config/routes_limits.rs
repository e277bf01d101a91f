//! A route's `rate_limits` and `lockout`: each names a defined bucket or lockout whose key the
//! route can derive.

use super::RouteFile;
use crate::config::limits::LimitsConfig;
use crate::config::locate::KeyPath;
use crate::config::validate::Errors;
use crate::policy::ratelimit::keys::KeySpec;
use crate::policy::routes::Pattern;

/// The buckets and lockout a route names, resolved to their ids.
pub(super) struct LimitRefs {
    pub(super) buckets: Vec<u32>,
    pub(super) lockout: Option<u32>,
    /// A key reads a field of the request body.
    pub(super) needs_body: bool,
}

/// `rate_limits` and `lockout`: each names a defined bucket or lockout, whose key this route
/// can derive.
pub(super) fn limit_refs(
    r: &RouteFile,
    limits: &LimitsConfig,
    pattern: Option<&Pattern>,
    path: &KeyPath,
    e: &mut Errors,
) -> LimitRefs {
    let mut out = LimitRefs {
        buckets: Vec::new(),
        lockout: None,
        needs_body: false,
    };
    for (i, name) in r.rate_limits.iter().enumerate() {
        let at = path.key("rate_limits").index(i);
        match limits.buckets.iter().find(|b| &b.name == name) {
            Some(b) => {
                out.needs_body |= key_ref(&b.key, pattern, at, e);
                out.buckets.push(b.id);
            }
            None => e.at(at, format!("no [[rate_limits.bucket]] is named {name:?}")),
        }
    }
    if let Some(name) = &r.lockout {
        let at = path.key("lockout");
        match limits.lockouts.iter().find(|l| &l.name == name) {
            Some(l) => {
                out.needs_body |= key_ref(&l.key, pattern, at, e);
                out.lockout = Some(l.id);
            }
            None => e.at(at, format!("no [[rate_limits.lockout]] is named {name:?}")),
        }
    }
    out
}

/// A bucket's or lockout's key, as used on this route: a path parameter must be in the
/// route's path. Returns whether the key reads the body.
fn key_ref(k: &KeySpec, pattern: Option<&Pattern>, at: KeyPath, e: &mut Errors) -> bool {
    if let KeySpec::Param(name) = k
        && !pattern.is_some_and(|pt| pt.has_param(name))
    {
        e.at(
            at,
            format!("is keyed by path parameter {name:?}, which this route's path does not have"),
        );
    }
    k.needs_body()
}
