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

use crate::clock::SharedClock;
use crate::credential::{self, Extracted, Kind, Sid};
use crate::denial::BucketHeaders;
use crate::denial::{BadRequest, Denial, Unauthenticated};
use crate::net::client_ip::ClientIpResolver;
use crate::net::geoip::{GeoInfo, GeoIp};
use crate::net::hygiene::{Head, HygieneRules, Upgrade};
use crate::net::path::check_target;
use crate::policy::csrf::{OriginPolicy, is_unsafe};
use crate::policy::internal::SecretRefusal;
use crate::policy::ipauth::IpAuth;
use crate::policy::network::NetworkRules;
use crate::policy::ratelimit::keys::KeyFacts;
use crate::policy::ratelimit::{Limiter, Reservation, stage};
use crate::policy::sudo::Sudo;
use crate::policy::{AuthMode, InternalSecrets, KindSet, Policy, Role, RouteTable};
use crate::session::{Session, SessionCache, StoreError};
use http::{HeaderMap, Method, Version};
use std::net::IpAddr;
use std::sync::Arc;

/// What the pipeline needs to know about a request.
pub struct RequestFacts<'a> {
    pub method: &'a Method,
    pub version: Version,
    /// The raw request target (`/path?query`), as received.
    pub target: &'a [u8],
    pub headers: &'a HeaderMap,
    /// The TCP peer.
    pub peer: IpAddr,
    /// The request body, when the route needs it (a body-keyed limit) and it was small enough
    /// to read before deciding.
    pub body: Option<&'a [u8]>,
    /// The raw head had a `Content-Length` next to `Transfer-Encoding` (the HTTP layer drops
    /// the length before the pipeline sees the headers).
    pub length_with_chunked: bool,
}

impl RequestFacts<'_> {
    fn head(&self) -> Head<'_> {
        Head {
            method: self.method,
            version: self.version,
            headers: self.headers,
            length_with_chunked: self.length_with_chunked,
        }
    }
}

/// Who the upstream is told the caller is.
#[derive(Debug, Clone)]
pub enum Identity {
    Anonymous,
    User(Arc<Session>),
    /// Index into the configured internal secrets.
    Internal(usize),
}

impl Identity {
    pub fn auth_kind(&self) -> &'static str {
        match self {
            Identity::Anonymous => "anonymous",
            Identity::User(s) => s.kind.as_str(),
            Identity::Internal(_) => "internal",
        }
    }
}

/// A request that may go upstream.
#[derive(Debug, Clone)]
pub struct Admitted {
    pub identity: Identity,
    pub pass_cookies: bool,
    /// Set on logout routes: what to revoke once the upstream accepts.
    pub role: Option<Role>,
    /// `X-RateLimit-*` for the successful response (when configured).
    pub limit_headers: Option<BucketHeaders>,
    /// Until when (Unix seconds) a valid sudo proof that came with the request holds.
    pub sudo_until: Option<i64>,
    /// Country and ASN of the client, for the GeoIP headers (when enabled).
    pub geo: GeoInfo,
    /// A WebSocket handshake (its tunnel gets the WebSocket idle timeouts).
    pub websocket: bool,
}

/// Which route decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RouteId {
    /// Refused before routing (malformed target).
    Unrouted,
    Default,
    Index(usize),
}

/// The pipeline's answer for one request.
#[derive(Debug, Clone)]
pub struct Verdict {
    pub client_ip: IpAddr,
    pub route: RouteId,
    pub outcome: Result<Admitted, Denial>,
    /// A lockout attempt to settle once the outcome is known (also after a denial).
    pub reservation: Option<Reservation>,
}

/// Everything `evaluate` consults, built once from a validated config.
pub struct Pipeline {
    /// Framing, header-size and upgrade rules.
    pub hygiene: HygieneRules,
    pub routes: RouteTable,
    pub client_ip: ClientIpResolver,
    pub sessions: Arc<SessionCache>,
    pub secrets: InternalSecrets,
    /// Kinds accepted at all (`[credentials] accept`).
    pub accept: KindSet,
    pub cookie_name: String,
    /// `Retry-After` on 503 when the store is down.
    pub store_retry_after_secs: u32,
    /// Answer from recently seen sessions when the store fails (opt-in).
    pub serve_stale: bool,
    pub limits: Arc<Limiter>,
    /// Sudo mode, when `[sudo]` has a secret.
    pub sudo: Option<Arc<Sudo>>,
    /// Origins allowed to make cookie-authenticated state changes.
    pub origins: OriginPolicy,
    pub clock: SharedClock,
    pub geo: Arc<GeoIp>,
    /// Inject `X-Fluxgate-Country` and `X-Fluxgate-Asn`.
    pub geo_headers: bool,
    /// `[network]`, for every request.
    pub network: NetworkRules,
    /// `[[network_rule]]` sets that routes refer to.
    pub network_rules: Vec<NetworkRules>,
    pub ip_auth: Arc<IpAuth>,
}

impl Pipeline {
    /// Whether the route this request goes to reads the body before deciding (a body-keyed
    /// limit). Cheap; the proxy asks only when the request has a body.
    pub fn body_needed(&self, facts: &RequestFacts<'_>) -> bool {
        // A request refused for its head is refused before its body is read.
        self.hygiene.check(&facts.head()).is_ok()
            && check_target(facts.target).is_ok_and(|p| {
                self.routes
                    .find(facts.method, p.path, p.has_escapes)
                    .route
                    .policy
                    .needs_body
            })
    }

    /// Decides one request.
    pub async fn evaluate(&self, facts: &RequestFacts<'_>) -> Verdict {
        // 1. client IP
        let client_ip = self.client_ip.resolve(facts.peer, facts.headers);
        let refuse = |route, d| Verdict {
            client_ip,
            route,
            outcome: Err(d),
            reservation: None,
        };
        // 2. hygiene + path + route
        let upgrade = match self.hygiene.check(&facts.head()) {
            Ok(u) => u,
            Err(e) => {
                return refuse(
                    RouteId::Unrouted,
                    Denial::BadRequest(BadRequest::Hygiene(e)),
                );
            }
        };
        let checked = match check_target(facts.target) {
            Ok(p) => p,
            Err(e) => return refuse(RouteId::Unrouted, Denial::BadRequest(BadRequest::Path(e))),
        };
        let matched = self
            .routes
            .find(facts.method, checked.path, checked.has_escapes);
        let route = matched.index.map_or(RouteId::Default, RouteId::Index);
        let policy = &matched.route.policy;
        // 3. network rules
        let geo = if self.geo.enabled() {
            self.geo.lookup(client_ip)
        } else {
            GeoInfo::default()
        };
        let route_rules = policy
            .network
            .and_then(|i| self.network_rules.get(i as usize));
        if !self.network.permits(client_ip, &geo)
            || route_rules.is_some_and(|r| !r.permits(client_ip, &geo))
        {
            return refuse(route, Denial::Forbidden);
        }
        let body = facts
            .body
            .filter(|_| policy.needs_body)
            .and_then(|b| serde_json::from_slice::<serde_json::Value>(b).ok());
        let param = |name: &str| {
            matched
                .route
                .pattern
                .as_ref()
                .and_then(|p| p.param(&matched.match_path, name))
        };
        let mut keys = KeyFacts {
            client_ip,
            user: None,
            session: None,
            param: &param,
            body: body.as_ref(),
        };
        // 4. pre-auth limits and lockout
        let mut passed = match stage::pre_auth(&self.limits, policy, &keys).await {
            Ok(p) => p,
            Err(d) => return refuse(route, d),
        };
        // 5–7. credential, session, access
        let outcome = match policy.auth {
            AuthMode::Internal => self.internal(facts, client_ip),
            AuthMode::Required => self.user(facts, policy, upgrade).await,
            AuthMode::None => match self.user(facts, policy, upgrade).await {
                // A store failure is still a failure: fail closed rather than guess.
                Err(d @ Denial::StoreUnavailable { .. }) => Err(d),
                Err(_) => Ok(Identity::Anonymous),
                ok => ok,
            },
        };
        // 8. IP authorization
        let outcome = match outcome {
            Ok(Identity::User(s)) if policy.ip_authorization && s.kind == Kind::Session => {
                let ua = facts
                    .headers
                    .get(http::header::USER_AGENT)
                    .and_then(|v| v.to_str().ok());
                self.ip_auth
                    .check(&s, client_ip, &geo, ua)
                    .await
                    .map(|()| Identity::User(s))
            }
            other => other,
        };
        // 9. sudo
        let mut sudo_until = None;
        let outcome = match outcome {
            Ok(Identity::User(s)) => {
                sudo_until = self.sudo_until(facts, &s);
                // SECURITY: sensitive routes need a fresh re-authentication proof.
                if policy.sudo && sudo_until.is_none() {
                    Err(Denial::SudoModeRequired { has_mfa: s.has_mfa })
                } else {
                    Ok(Identity::User(s))
                }
            }
            other => other,
        };
        // 10. per-user limits
        let outcome = match outcome {
            Ok(identity) => {
                if let Identity::User(s) = &identity {
                    keys.user = Some(s.user_id());
                    keys.session = Some(&s.sid.0);
                }
                stage::per_user(&self.limits, policy, &keys, &mut passed)
                    .await
                    .map(|()| identity)
            }
            Err(d) => Err(d),
        };
        // 11. identity
        Verdict {
            client_ip,
            route,
            outcome: outcome.map(|identity| Admitted {
                identity,
                pass_cookies: policy.pass_cookies,
                role: policy.role,
                limit_headers: passed.headers,
                sudo_until,
                geo: if self.geo_headers {
                    geo
                } else {
                    GeoInfo::default()
                },
                websocket: upgrade == Upgrade::WebSocket,
            }),
            reservation: passed.reservation,
        }
    }

    /// The expiry of a valid sudo proof presented with the request, if any.
    fn sudo_until(&self, facts: &RequestFacts<'_>, s: &Session) -> Option<i64> {
        let sudo = self.sudo.as_ref()?;
        let token = sudo.presented(facts.headers).ok()??;
        sudo.verify(token, s.user_id(), Some(&s.sid), self.clock.now_secs())
            .ok()
    }

    fn internal(&self, facts: &RequestFacts<'_>, client_ip: IpAddr) -> Result<Identity, Denial> {
        let unauth = |u| Err(Denial::Unauthorized(u));
        match credential::extract_internal(facts.headers) {
            Err(m) => unauth(Unauthenticated::Malformed(m)),
            Ok(None) => unauth(Unauthenticated::SecretMissing),
            Ok(Some(presented)) => match self.secrets.check(presented, client_ip) {
                Ok(s) => Ok(Identity::Internal(
                    self.secrets
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

    async fn user(
        &self,
        facts: &RequestFacts<'_>,
        policy: &Policy,
        upgrade: Upgrade,
    ) -> Result<Identity, Denial> {
        // Sensitive routes never answer from stale data.
        let allow_stale = self.serve_stale && !policy.sudo;
        let (session, from_cookie) = self.authenticate(facts, allow_stale).await?;
        // SECURITY: a cookie rides along with any request the browser makes, so a state change
        // it authenticates must come from an allowed origin (CSRF). Header credentials are not
        // ambient and are exempt. A WebSocket handshake is a GET, but the socket it opens
        // acts as the user (cross-site WebSocket hijacking), so it is checked too.
        if from_cookie
            && policy.csrf
            && (is_unsafe(facts.method) || upgrade == Upgrade::WebSocket)
            && !self.origins.permits(facts.headers)
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
        Ok(Identity::User(session))
    }

    /// The session a request authenticates as, and whether it came from the cookie.
    async fn authenticate(
        &self,
        facts: &RequestFacts<'_>,
        allow_stale: bool,
    ) -> Result<(Arc<Session>, bool), Denial> {
        let unauth = |u| Denial::Unauthorized(u);
        match credential::extract(facts.headers, &self.cookie_name) {
            Extracted::Absent => Err(unauth(Unauthenticated::Missing)),
            Extracted::Malformed(m) => Err(unauth(Unauthenticated::Malformed(m))),
            Extracted::Header { kind, token } => {
                if !self.accept.contains(kind) {
                    return Err(unauth(Unauthenticated::KindDisabled));
                }
                let session = self
                    .resolve(&Sid::of(token), allow_stale)
                    .await?
                    .ok_or(unauth(Unauthenticated::UnknownSession))?;
                // SECURITY: a token is only good as the kind it was issued as; an OAuth2 sid
                // presented as `flx_…` (or the reverse) is refused.
                if session.kind != kind {
                    return Err(unauth(Unauthenticated::KindMismatch));
                }
                Ok((session, false))
            }
            Extracted::Cookies(candidates) => {
                if !self.accept.contains(Kind::Session) {
                    return Err(unauth(Unauthenticated::KindDisabled));
                }
                // SECURITY: with several session cookies (cookie tossing from a sibling
                // domain), exactly one must be valid; otherwise we cannot know whose it is.
                let mut valid: Option<Arc<Session>> = None;
                let mut count = 0;
                for token in candidates.as_slice() {
                    if let Some(s) = self.resolve(&Sid::of(token), allow_stale).await?
                        && s.kind == Kind::Session
                    {
                        count += 1;
                        valid = Some(s);
                    }
                }
                match (count, valid) {
                    (1, Some(s)) => Ok((s, true)),
                    _ if candidates.as_slice().len() > 1 => {
                        Err(unauth(Unauthenticated::AmbiguousCookies))
                    }
                    _ => Err(unauth(Unauthenticated::UnknownSession)),
                }
            }
        }
    }

    async fn resolve(&self, sid: &Sid, allow_stale: bool) -> Result<Option<Arc<Session>>, Denial> {
        let e: StoreError = match self.sessions.resolve(sid).await {
            Ok(s) => return Ok(s),
            Err(e) => e,
        };
        // Opt-in degraded mode: a session seen recently (and not revoked) may answer.
        if allow_stale && let Some(s) = self.sessions.stale(sid).await {
            tracing::debug!(error = %e, "session store failed; serving a recently seen session");
            return Ok(Some(s));
        }
        tracing::warn!(error = %e, "session store failed; refusing the request");
        Err(Denial::StoreUnavailable {
            retry_after_secs: self.store_retry_after_secs,
        })
    }
}

/// The metric/log reason of an admitted request.
pub fn admitted_reason(a: &Admitted) -> &'static str {
    a.identity.auth_kind()
}

#[cfg(test)]
#[path = "pipeline_tests.rs"]
mod tests;
