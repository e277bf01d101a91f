//! The upstream plan: what the forwarded request is told, decided once by the pipeline's last
//! stage and applied by whichever face forwards it (the proxy today; a forward-auth answer or
//! `fluxgate explain` print the same plan). Applying it is pingora-free, so every strip and
//! inject rule is tested on a plain `HeaderMap`.
//!
//! Order matters and is fixed here: strip everything a client could have forged, then set
//! fluxgate's own values, so nothing the client sent survives under a name fluxgate sets.

use super::cookies::{CookiePolicy, strip_cookies};
use super::headers::{HeaderEdit, strip_untrusted};
use super::table::HeaderNames;
use http::{HeaderName, HeaderValue};

/// What an admitted request's upstream copy gets.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UpstreamPlan {
    /// Headers to set (each replaces any value of that name), applied after stripping:
    /// identity, `X-Forwarded-For`, the assertion, a minted sudo token, `X-Request-Id`.
    pub set: Vec<(HeaderName, HeaderValue)>,
    /// Remove fluxgate's own cookies (session, sudo) from `Cookie`.
    pub strip_own_cookies: bool,
    /// Drop `Expect`: fluxgate already read the body (and answered `100 Continue` itself).
    pub drop_expect: bool,
    /// Remove the client's forwarding headers (`X-Forwarded-*`, `X-Real-IP`, `Forwarded`):
    /// the peer is not a trusted proxy.
    pub strip_forwarded: bool,
    /// Which upstream service the request goes to (index into the configured upstreams).
    pub upstream: usize,
    /// The request target the upstream gets instead of the client's (the route strips a
    /// prefix); `None` forwards the client's byte for byte.
    pub path: Option<String>,
}

impl UpstreamPlan {
    /// The value the plan sets for `name`, if any.
    pub fn get(&self, name: &HeaderName) -> Option<&HeaderValue> {
        self.set.iter().find(|(n, _)| n == name).map(|(_, v)| v)
    }
}

/// Edits `h` by the plan: strip the untrusted headers (every `x-fluxgate-*` and configured
/// identity name in any spelling, and `Connection`-nominated headers), fluxgate's cookies,
/// `Expect`, then set the plan's headers.
pub fn apply(
    h: &mut impl HeaderEdit,
    names: &HeaderNames,
    cookies: &CookiePolicy,
    plan: &UpstreamPlan,
) {
    // SECURITY: stripping comes first, so a client-sent copy of any header fluxgate sets (or
    // could set) never reaches the upstream, whatever this request's identity is.
    strip_untrusted(h, names, plan.strip_forwarded);
    if plan.strip_own_cookies {
        strip_cookies(
            h,
            &[cookies.session_name.as_str(), cookies.sudo_name.as_str()],
        );
    }
    if plan.drop_expect {
        h.remove(&http::header::EXPECT);
    }
    for (name, value) in &plan.set {
        h.insert(name.clone(), value.clone());
    }
}

#[cfg(test)]
#[path = "plan_tests.rs"]
mod tests;
