//! The request path, in order. `evaluate` decides, for one request, whether it goes upstream and
//! with which identity. It is pingora-free: the proxy adapter gathers [`RequestFacts`] and acts
//! on the [`Verdict`].
//!
//! The order is a security decision: cheap checks that need no I/O come first, so malformed or
//! unroutable requests never cost a store read; checks that need the session come after it.
//!
//! 1. client IP — the peer, or the forwarding header walked past trusted proxies only (§5);
//!    everything that keys on an address uses this one value.
//! 2. hygiene + path + route — framing and header forms that two servers could read
//!    differently, and the target's ambiguous spellings, are refused before routing (§2), so
//!    the path that picked the policy is the path the upstream acts on.
//! 3. network rules — global, then the route's: allow and deny lists of CIDRs, countries and
//!    ASNs, decided on the resolved client IP before anything else is spent on the request.
//! 4. pre-auth limits — buckets keyed by IP, a path parameter or a body field, then the
//!    route's brute-force lockout: they shield the store and the upstream from floods and
//!    guessing before any lookup is made.
//! 5. credential — read in the contract's order (§1); a malformed credential is refused, never
//!    skipped in favour of the next source.
//! 6. session — cache, then store; a store failure refuses the request (fail closed).
//! 7. access — the route's accepted kinds and OAuth2 scopes; the origin of cookie-authenticated
//!    state changes and WebSocket handshakes.
//! 8. IP authorization — a session used from a location its user never approved is held
//!    until the user approves it.
//! 9. sudo — a valid proof of recent re-authentication, bound to this user (and session),
//!    required on sensitive routes and reported on all.
//! 10. per-user limits — the global per-user bucket, then user-keyed buckets: they need to
//!     know who the caller is.
//! 11. identity — what the upstream will be told, computed once.

mod outcome;
mod runtime;

pub use outcome::{Admitted, Identity, RequestFacts, RouteId, Stage, Verdict, admitted_reason};
pub use runtime::Runtime;

use crate::credential::{self, Extracted, Kind, Sid};
use crate::denial::{BadRequest, Denial, Unauthenticated};
use crate::identity::assertion::Asserter;
use crate::identity::{self, CookiePolicy, HeaderNames, IdentityHeader, Injection, UpstreamPlan};
use crate::net::client_ip::ClientIpResolver;
use crate::net::geoip::GeoInfo;
use crate::net::hygiene::{HygieneRules, Upgrade};
use crate::net::path::check_target;
use crate::policy::csrf::{OriginPolicy, is_unsafe};
use crate::policy::internal::SecretRefusal;
use crate::policy::network::NetworkRules;
use crate::policy::ratelimit::Limiter;
use crate::policy::ratelimit::keys::{KeyFacts, PathParams};
use crate::policy::ratelimit::stage::{self, Passed};
use crate::policy::sudo::Sudo;
use crate::policy::{AuthMode, InternalSecrets, KindSet, Policy, RouteTable};
use crate::session::{Session, StoreError};
use std::net::IpAddr;
use std::sync::Arc;

/// The reloadable rules `evaluate` applies: plain data built from the config, swapped whole
/// on `SIGHUP`.
pub struct Rules {
    /// Framing, header-size and upgrade rules.
    pub hygiene: HygieneRules,
    pub routes: RouteTable,
    pub client_ip: ClientIpResolver,
    pub secrets: InternalSecrets,
    /// Kinds accepted at all (`[credentials] accept`).
    pub accept: KindSet,
    pub cookie_name: String,
    /// `Retry-After` on 503 when the store is down.
    pub store_retry_after_secs: u32,
    /// Answer from recently seen sessions when the store fails (opt-in).
    pub serve_stale: bool,
    /// Send a cookie-authenticated request's session token upstream as `Authorization`
    /// (`[sessions] forward_credential = "authorization"`).
    pub forward_credential: bool,
    /// Buckets and lockouts (kept across reloads unless `[rate_limits]` changed).
    pub limits: Arc<Limiter>,
    /// Sudo mode, when `[sudo]` has a secret.
    pub sudo: Option<Arc<Sudo>>,
    /// Origins allowed to make cookie-authenticated state changes.
    pub origins: OriginPolicy,
    /// Inject `X-Fluxgate-Country` and `X-Fluxgate-Asn`.
    pub geo_headers: bool,
    /// `[network]`, for every request.
    pub network: NetworkRules,
    /// `[[network_rule]]` sets that routes refer to.
    pub network_rules: Vec<NetworkRules>,
    /// The identity header names.
    pub names: HeaderNames,
    /// fluxgate's own cookies: removed from what the upstream sees, attributes for Set-Cookie.
    pub cookies: CookiePolicy,
    /// Signs `X-Fluxgate-Assertion` when configured.
    pub assertion: Option<Arc<Asserter>>,
}

/// The decision for one request: the reloadable rules and the process-lifetime runtime.
pub struct Pipeline {
    pub rules: Rules,
    pub rt: Runtime,
}

/// What stages 1–4 established, for the stages that follow.
struct Prelude<'a> {
    client_ip: IpAddr,
    policy: &'a Policy,
    upgrade: Upgrade,
    geo: GeoInfo,
    keys: KeyFacts<'a>,
    passed: Passed,
}

impl Pipeline {
    pub fn new(rules: Rules, rt: Runtime) -> Pipeline {
        Pipeline { rules, rt }
    }

    /// Whether the route this request goes to reads the body before deciding (a body-keyed
    /// limit). Cheap; the proxy asks only when the request has a body.
    pub fn body_needed(&self, facts: &RequestFacts<'_>) -> bool {
        // A request refused for its head is refused before its body is read.
        self.rules.hygiene.check(&facts.head()).is_ok()
            && check_target(facts.target).is_ok_and(|p| {
                self.rules
                    .routes
                    .find(facts.method, p.path, p.has_escapes)
                    .route
                    .policy
                    .needs_body
            })
    }

    /// Decides one request: the prelude (stages 1–4) refuses what needs no session, then
    /// `decide` (stages 5–11) admits with a plan or refuses.
    pub async fn evaluate(&self, f: &RequestFacts<'_>) -> Verdict {
        // 1. client IP: everything that keys on an address uses this one value.
        let client_ip = self.rules.client_ip.resolve(f.peer, f.headers);
        // 2. hygiene + path + route: before routing, so the path that picks the policy is
        //    the path the upstream acts on.
        let upgrade = match self.rules.hygiene.check(&f.head()) {
            Ok(u) => u,
            Err(e) => {
                let d = Denial::BadRequest(BadRequest::Hygiene(e));
                return Verdict::refused(client_ip, RouteId::Unrouted, Stage::Route, d);
            }
        };
        let checked = match check_target(f.target) {
            Ok(p) => p,
            Err(e) => {
                let d = Denial::BadRequest(BadRequest::Path(e));
                return Verdict::refused(client_ip, RouteId::Unrouted, Stage::Route, d);
            }
        };
        let matched = self
            .rules
            .routes
            .find(f.method, checked.path, checked.has_escapes);
        let route = matched.index.map_or(RouteId::Default, RouteId::Index);
        let policy = &matched.route.policy;
        let body = f
            .body
            .filter(|_| policy.needs_body)
            .and_then(|b| serde_json::from_slice::<serde_json::Value>(b).ok());
        let mut pre = Prelude {
            client_ip,
            policy,
            upgrade,
            geo: self.geo(client_ip),
            keys: KeyFacts {
                client_ip,
                user: None,
                session: None,
                param: PathParams {
                    pattern: matched.route.pattern.as_ref(),
                    path: &matched.match_path,
                },
                body: body.as_ref(),
            },
            passed: Passed::default(),
        };
        // 3–4. network rules, pre-auth limits.
        if let Err((stage, d)) = self.prelude(&mut pre).await {
            return Verdict::refused(client_ip, route, stage, d);
        }
        let (stage, outcome) = match self.decide(f, &mut pre).await {
            Ok(a) => (Stage::Identity, Ok(a)),
            Err((stage, d)) => (stage, Err(d)),
        };
        Verdict {
            client_ip,
            route,
            stage,
            outcome,
            reservation: pre.passed.reservation,
        }
    }

    fn geo(&self, client_ip: IpAddr) -> GeoInfo {
        if self.rt.geo.enabled() {
            self.rt.geo.lookup(client_ip)
        } else {
            GeoInfo::default()
        }
    }

    /// Stages 3–4: what can be refused before any lookup is spent on the request.
    async fn prelude(&self, pre: &mut Prelude<'_>) -> Result<(), (Stage, Denial)> {
        // 3. network rules: global, then the route's, on the resolved client IP.
        let route_rules = pre
            .policy
            .network
            .and_then(|i| self.rules.network_rules.get(i as usize));
        if !self.rules.network.permits(pre.client_ip, &pre.geo)
            || route_rules.is_some_and(|r| !r.permits(pre.client_ip, &pre.geo))
        {
            return Err((Stage::Network, Denial::Forbidden));
        }
        // 4. pre-auth limits and lockout: they shield the store and the upstream from floods
        //    and guessing before any lookup is made.
        pre.passed = stage::pre_auth(&self.rules.limits, pre.policy, &pre.keys)
            .await
            .map_err(|d| (Stage::PreAuthLimits, d))?;
        Ok(())
    }

    /// Stages 5–11, for a request that passed the prelude.
    async fn decide(
        &self,
        f: &RequestFacts<'_>,
        pre: &mut Prelude<'_>,
    ) -> Result<Admitted, (Stage, Denial)> {
        let at = |stage| move |d| (stage, d);
        // 5–7. credential, session, access.
        let (identity, cookie_token) = self
            .identify(f, pre)
            .await
            .map_err(|d| (Stage::of_identification(&d), d))?;
        if let Identity::User(s) = &identity {
            // 8. IP authorization: a session used from a location its user never approved.
            self.ip_authorization(f, pre, s)
                .await
                .map_err(at(Stage::IpAuthorization))?;
        }
        // 9. sudo: a proof of recent re-authentication, bound to this user and session.
        let sudo_until = self
            .sudo(f, pre.policy, &identity)
            .map_err(at(Stage::Sudo))?;
        // 10. per-user limits: they need to know who the caller is.
        self.per_user_limits(pre, &identity)
            .await
            .map_err(at(Stage::PerUserLimits))?;
        // 11. identity: what the upstream will be told, computed once.
        Ok(self.admitted(f, pre, identity, sudo_until, cookie_token))
    }

    /// Stages 5–7 by the route's auth mode.
    /// With the identity, the session token when it came from the cookie.
    async fn identify<'f>(
        &self,
        f: &RequestFacts<'f>,
        pre: &Prelude<'_>,
    ) -> Result<(Identity, Option<&'f str>), Denial> {
        match pre.policy.auth {
            AuthMode::Internal => Ok((self.internal(f, pre.client_ip)?, None)),
            AuthMode::Required => self.user(f, pre.policy, pre.upgrade).await,
            AuthMode::None => match self.user(f, pre.policy, pre.upgrade).await {
                // A store failure is still a failure: fail closed rather than guess.
                Err(d @ Denial::StoreUnavailable { .. }) => Err(d),
                Err(_) => Ok((Identity::Anonymous, None)),
                ok => ok,
            },
        }
    }

    /// Stage 8, on routes that enforce it, for session credentials (OAuth2 and bot tokens are
    /// exempt, contract §7).
    async fn ip_authorization(
        &self,
        f: &RequestFacts<'_>,
        pre: &Prelude<'_>,
        s: &Session,
    ) -> Result<(), Denial> {
        if !pre.policy.ip_authorization || s.kind != Kind::Session {
            return Ok(());
        }
        let ua = f
            .headers
            .get(http::header::USER_AGENT)
            .and_then(|v| v.to_str().ok());
        let retry = self.rules.store_retry_after_secs;
        self.rt
            .ip_auth
            .check(s, pre.client_ip, &pre.geo, ua, retry)
            .await
    }

    /// Stage 9: the expiry of a valid sudo proof, when one came with a user's request.
    fn sudo(
        &self,
        f: &RequestFacts<'_>,
        policy: &Policy,
        identity: &Identity,
    ) -> Result<Option<i64>, Denial> {
        let Identity::User(s) = identity else {
            return Ok(None);
        };
        let until = self.sudo_until(f, s);
        // SECURITY: sensitive routes need a fresh re-authentication proof.
        if policy.sudo && until.is_none() {
            return Err(Denial::SudoModeRequired { has_mfa: s.has_mfa });
        }
        Ok(until)
    }

    /// Stage 10: the global per-user bucket, then user-keyed buckets.
    async fn per_user_limits(
        &self,
        pre: &mut Prelude<'_>,
        identity: &Identity,
    ) -> Result<(), Denial> {
        let keys = match identity {
            Identity::User(s) => KeyFacts {
                user: Some(s.user_id()),
                session: Some(&s.sid.0),
                ..pre.keys
            },
            _ => pre.keys,
        };
        stage::per_user(&self.rules.limits, pre.policy, &keys, &mut pre.passed).await
    }

    /// Stage 11: the admitted request and its upstream plan.
    fn admitted(
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
        }
    }

    /// The headers the upstream is told: identity, the assertion over it, an upstream-format
    /// sudo token, the request id; and what to strip.
    fn plan(
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
        let sid_header;
        match identity {
            Identity::Anonymous => {}
            Identity::User(s) => {
                sid_header = s.sid_header();
                inj.user_id = Some(s.user_header());
                inj.session_id = Some(&sid_header);
                inj.scopes = s.scopes_header();
            }
            Identity::Internal(i) => {
                inj.service = Some(&rules.secrets.secrets[*i].name_header);
            }
        }
        let mut set = Vec::with_capacity(10);
        identity::identity_headers(&rules.names, &inj, &mut set);
        let now = self.rt.clock.now_secs();
        if let Some(asserter) = &rules.assertion {
            let target = std::str::from_utf8(f.target).unwrap_or("/");
            let rid = f.request_id.to_str().ok();
            let token = asserter.sign(&inj, f.method.as_str(), target, rid, now);
            if let Ok(v) = http::HeaderValue::from_str(&token) {
                set.push((rules.names[IdentityHeader::Assertion].clone(), v));
            }
        }
        if let (Some(sudo), Some(until), Identity::User(s)) = (&rules.sudo, sudo_until, identity)
            && sudo.settings.forward_upstream_token
        {
            // A fresh proof in the upstream's own format, so an upstream with a shorter
            // window than fluxgate's agrees that this request is in sudo mode.
            let token = sudo.mint(s.user_id(), &s.sid, now, until);
            if let Ok(v) = http::HeaderValue::from_str(&token) {
                set.push((crate::policy::sudo::SUDO_HEADER, v));
            }
        }
        set.push((identity::REQUEST_ID, f.request_id.clone()));
        UpstreamPlan {
            set,
            strip_own_cookies: !pre.policy.pass_cookies,
            drop_expect: f.body_read,
        }
    }

    /// The expiry of a valid sudo proof presented with the request, if any.
    fn sudo_until(&self, f: &RequestFacts<'_>, s: &Session) -> Option<i64> {
        let sudo = self.rules.sudo.as_ref()?;
        let token = sudo.presented(f.headers).ok()??;
        sudo.verify(token, s.user_id(), Some(&s.sid), self.rt.clock.now_secs())
            .ok()
    }

    fn internal(&self, facts: &RequestFacts<'_>, client_ip: IpAddr) -> Result<Identity, Denial> {
        let unauth = |u| Err(Denial::Unauthorized(u));
        match credential::extract_internal(facts.headers) {
            Err(m) => unauth(Unauthenticated::Malformed(m)),
            Ok(None) => unauth(Unauthenticated::SecretMissing),
            Ok(Some(presented)) => match self.rules.secrets.check(presented, client_ip) {
                Ok(s) => Ok(Identity::Internal(
                    self.rules
                        .secrets
                        .secrets
                        .iter()
                        .position(|x| std::ptr::eq(x, s))
                        .expect("the matched secret is one of ours"),
                )),
                Err(SecretRefusal::Wrong) => unauth(Unauthenticated::SecretWrong),
                Err(SecretRefusal::Network) => unauth(Unauthenticated::SecretNetwork),
            },
        }
    }

    /// 5–7: the caller's session, checked against the route's kinds, scopes and origin; and
    /// the token when it came from the session cookie.
    async fn user<'f>(
        &self,
        facts: &RequestFacts<'f>,
        policy: &Policy,
        upgrade: Upgrade,
    ) -> Result<(Identity, Option<&'f str>), Denial> {
        // Sensitive routes never answer from stale data.
        let allow_stale = self.rules.serve_stale && !policy.sudo;
        let (session, cookie_token) = self.authenticate(facts, allow_stale).await?;
        let from_cookie = cookie_token.is_some();
        // SECURITY: a cookie rides along with any request the browser makes, so a state change
        // it authenticates must come from an allowed origin (CSRF). Header credentials are not
        // ambient and are exempt. A WebSocket handshake is a GET, but the socket it opens
        // acts as the user (cross-site WebSocket hijacking), so it is checked too.
        if from_cookie
            && policy.csrf
            && (is_unsafe(facts.method) || upgrade == Upgrade::WebSocket)
            && !self.rules.origins.permits(facts.headers)
        {
            return Err(Denial::InvalidApiOrigin);
        }
        // SECURITY: a valid credential of a kind the route does not accept is refused, so an
        // OAuth2 token cannot reach session-only routes (and so on).
        if !policy.kinds.contains(session.kind) {
            return Err(Denial::AccessDenied);
        }
        // SECURITY: OAuth2 tokens carry only what the user granted; each required scope must be
        // present. Session and bot tokens are not scope-limited.
        if session.kind == Kind::Oauth2
            && let Some(missing) = policy.scopes.iter().find(|s| !session.has_scope(s))
        {
            return Err(Denial::MissingOauthScope {
                required_scope: missing.clone(),
            });
        }
        Ok((Identity::User(session), cookie_token))
    }

    /// The session a request authenticates as, and its token when it came from the cookie.
    async fn authenticate<'f>(
        &self,
        facts: &RequestFacts<'f>,
        allow_stale: bool,
    ) -> Result<(Arc<Session>, Option<&'f str>), Denial> {
        let unauth = |u| Denial::Unauthorized(u);
        match credential::extract(facts.headers, &self.rules.cookie_name) {
            Extracted::Absent => Err(unauth(Unauthenticated::Missing)),
            Extracted::Malformed(m) => Err(unauth(Unauthenticated::Malformed(m))),
            Extracted::Header { kind, token } => {
                if !self.rules.accept.contains(kind) {
                    return Err(unauth(Unauthenticated::KindDisabled));
                }
                let session = self
                    .resolve(kind, token, allow_stale)
                    .await?
                    .ok_or(unauth(Unauthenticated::UnknownSession))?;
                // SECURITY: a token is only good as the kind it was issued as; an OAuth2 sid
                // presented as `flx_…` (or the reverse) is refused.
                if session.kind != kind {
                    return Err(unauth(Unauthenticated::KindMismatch));
                }
                Ok((session, None))
            }
            Extracted::Cookies(candidates) => {
                if !self.rules.accept.contains(Kind::Session) {
                    return Err(unauth(Unauthenticated::KindDisabled));
                }
                // SECURITY: with several session cookies (cookie tossing from a sibling
                // domain), exactly one must be valid; otherwise we cannot know whose it is.
                let mut valid: Option<(Arc<Session>, &'f str)> = None;
                let mut count = 0;
                for token in candidates.as_slice() {
                    if let Some(s) = self.resolve(Kind::Session, token, allow_stale).await?
                        && s.kind == Kind::Session
                    {
                        count += 1;
                        valid = Some((s, *token));
                    }
                }
                match (count, valid) {
                    (1, Some((s, token))) => Ok((s, Some(token))),
                    _ if candidates.as_slice().len() > 1 => {
                        Err(unauth(Unauthenticated::AmbiguousCookies))
                    }
                    _ => Err(unauth(Unauthenticated::UnknownSession)),
                }
            }
        }
    }

    /// The session a presented token of `kind` stands for (cache, store, or the backend).
    async fn resolve(
        &self,
        kind: Kind,
        token: &str,
        allow_stale: bool,
    ) -> Result<Option<Arc<Session>>, Denial> {
        let e: StoreError = match self.rt.sessions.resolve_token(kind, token).await {
            Ok(s) => return Ok(s),
            Err(e) => e,
        };
        // Opt-in degraded mode: a session seen recently (and not revoked) may answer.
        if allow_stale && let Some(s) = self.rt.sessions.stale(&Sid::of(token)).await {
            tracing::debug!(error = %e, "session store failed; serving a recently seen session");
            return Ok(Some(s));
        }
        tracing::warn!(error = %e, "session store failed; refusing the request");
        Err(Denial::StoreUnavailable {
            retry_after_secs: self.rules.store_retry_after_secs,
        })
    }
}

#[cfg(any(test, feature = "test-util"))]
impl Pipeline {
    /// A pipeline around `routes` with every other rule at its default (no limits, no sudo,
    /// default identity names and cookies), for tests and benches; adjust `rules` as needed.
    pub fn for_test(routes: RouteTable, rt: Runtime) -> Pipeline {
        let rules = Rules {
            hygiene: HygieneRules {
                max_header_bytes: 32 * 1024,
                max_headers: 100,
                protected: vec![],
            },
            routes,
            client_ip: ClientIpResolver::new(
                Default::default(),
                http::HeaderName::from_static("x-forwarded-for"),
            ),
            secrets: InternalSecrets { secrets: vec![] },
            accept: KindSet::of(&[Kind::Session, Kind::Oauth2]),
            cookie_name: "fluxer_session".into(),
            store_retry_after_secs: 1,
            serve_stale: false,
            forward_credential: false,
            limits: Arc::new(Limiter::none(rt.clock.clone())),
            sudo: None,
            origins: OriginPolicy::default(),
            geo_headers: false,
            network: NetworkRules::default(),
            network_rules: vec![],
            names: HeaderNames::defaults(),
            cookies: CookiePolicy {
                secure: true,
                domain: None,
                session_name: "fluxer_session".into(),
                session_same_site: crate::identity::SameSite::Lax,
                sudo_name: "fluxer_sudo_mode".into(),
                sudo_same_site: crate::identity::SameSite::Strict,
            },
            assertion: None,
        };
        Pipeline::new(rules, rt)
    }
}

#[cfg(test)]
#[path = "pipeline_tests.rs"]
mod tests;
