//! Stage 11 in detail: what the upstream will be told, computed once for an admitted request:
//! the identity headers, the assertion over them, an upstream-format sudo token, the request
//! id, the forwarding headers fluxgate owns, a cookie's token as `Authorization` where the
//! route allows it, and what to strip.

use super::{Admitted, Identity, Pipeline, Prelude, RequestFacts};
use crate::identity::{self, IdentityHeader, Injection, UpstreamPlan};
use crate::net::geoip::GeoInfo;
use crate::net::hygiene::Upgrade;

impl Pipeline {
    /// Stage 11: the admitted request and its upstream plan.
    pub(super) fn admitted(
        &self,
        f: &RequestFacts<'_>,
        pre: &mut Prelude<'_>,
        identity: Identity,
        sudo_until: Option<i64>,
        cookie_token: Option<&str>,
    ) -> Admitted {
        let mut plan = self.plan(f, pre, &identity, sudo_until);
        // SECURITY: only a session token that came in the cookie is forwarded, to an upstream
        // that reads credentials from Authorization alone; never an internal secret, never
        // over a client's own Authorization (a cookie is only read when there is none), and
        // not to routes that pass the cookies through or opt out.
        if let Some(token) = cookie_token
            && self.rules.forward_credential
            && pre.policy.forward_credential
            && !pre.policy.pass_cookies
            && let Ok(v) = http::HeaderValue::from_str(token)
        {
            plan.set.push((http::header::AUTHORIZATION, v));
        }
        Admitted {
            identity,
            role: pre.policy.role,
            limit_headers: pre.passed.headers.take(),
            websocket: pre.upgrade == Upgrade::WebSocket,
            plan,
            would_deny: None,
            preflight: false,
            jwks: false,
        }
    }

    /// The headers the upstream is told: identity, the assertion over it, an upstream-format
    /// sudo token, the request id; and what to strip.
    pub(super) fn plan(
        &self,
        f: &RequestFacts<'_>,
        pre: &Prelude<'_>,
        identity: &Identity,
        sudo_until: Option<i64>,
    ) -> UpstreamPlan {
        let rules = &self.rules;
        let geo = if rules.geo_headers {
            pre.geo
        } else {
            GeoInfo::default()
        };
        let mut inj = Injection {
            auth_kind: identity.auth_kind(),
            client_ip: Some(pre.client_ip),
            sudo_until,
            country: geo.country_str(),
            asn: geo.asn,
            ..Default::default()
        };
        let (sid_header, user_header);
        match identity {
            Identity::Anonymous => {}
            Identity::User(s) => {
                sid_header = s.sid_header();
                user_header = s.user_header();
                inj.user_id = Some(&user_header);
                inj.session_id = Some(&sid_header);
                inj.scopes = s.scopes_header();
                inj.client_id = s.client_id_header();
            }
            Identity::Internal(i) => {
                inj.service = Some(&rules.secrets.secrets[*i].name_header);
            }
        }
        let mut set = Vec::with_capacity(10);
        identity::identity_headers(&rules.names, &inj, &mut set);
        let now = self.rt.clock.now_secs();
        // The route's rewrite: the upstream (and the assertion) see the stripped target.
        let target = std::str::from_utf8(f.target).unwrap_or("/");
        let forward = &pre.policy.forward;
        let path = forward.rewrite(target, pre.prefixed);
        if let Some(host) = &forward.set_host {
            set.push((http::header::HOST, host.clone()));
        }
        if let Some(asserter) = &rules.assertion {
            // The assertion binds what the upstream sees: the rewritten path and Host.
            let host = match &forward.set_host {
                Some(h) => h.to_str().ok(),
                None => f
                    .headers
                    .get(http::header::HOST)
                    .and_then(|h| h.to_str().ok())
                    .or(f.authority),
            };
            let target = identity::assertion::Target {
                method: f.method.as_str(),
                path: path.as_deref().unwrap_or(target),
                host,
            };
            let rid = f.request_id.to_str().ok();
            let token = asserter.sign(&inj, target, rid, now);
            if let Ok(v) = http::HeaderValue::from_str(&token) {
                set.push((rules.names[IdentityHeader::Assertion].clone(), v));
            }
        }
        if let (Some(sudo), Some(until), Identity::User(s)) = (&rules.sudo, sudo_until, identity)
            && sudo.settings.forward_upstream_token
        {
            // A fresh proof in the upstream's own format and window, so an upstream with a
            // shorter window than fluxgate's agrees that this request is in sudo mode.
            let until = until.min(now + sudo.settings.upstream_lifetime_secs);
            let token = sudo.mint(s.user_id(), &s.sid, now, until);
            if let Ok(v) = http::HeaderValue::from_str(&token) {
                set.push((crate::policy::sudo::SUDO_HEADER, v));
            }
        }
        set.push((identity::REQUEST_ID, f.request_id.clone()));
        // The scheme and host the client used: fluxgate's own, unless a trusted proxy in front
        // of it already said (its values are kept; an untrusted client's are stripped).
        let trusted_peer = rules.client_ip.trusted().contains(f.peer);
        if !(trusted_peer && f.headers.contains_key(&identity::X_FORWARDED_PROTO)) {
            let proto = if f.tls { "https" } else { "http" };
            set.push((
                identity::X_FORWARDED_PROTO,
                http::HeaderValue::from_static(proto),
            ));
        }
        if !(trusted_peer && f.headers.contains_key(&identity::X_FORWARDED_HOST)) {
            let host = match f.headers.get(http::header::HOST) {
                Some(h) => Some(h.clone()),
                None => f
                    .authority
                    .and_then(|a| http::HeaderValue::from_str(a).ok()),
            };
            if let Some(host) = host {
                set.push((identity::X_FORWARDED_HOST, host));
            }
        }
        UpstreamPlan {
            set,
            strip_own_cookies: !pre.policy.pass_cookies,
            drop_expect: f.body_read,
            strip_forwarded: !trusted_peer,
            upstream: forward.upstream,
            path,
        }
    }
}
