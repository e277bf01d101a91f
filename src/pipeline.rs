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
//!    Then a CORS preflight from an allowed origin is admitted (answered by fluxgate, or sent
//!    upstream anonymously): it carries no credential by design, and counting it against the
//!    route's limits would charge browser clients twice.
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
//! 11. identity — what the upstream will be told, computed once (`pipeline/plan.rs`).
//!
//! On a route in report mode (`[rollout]`), a denial that is an access decision becomes an
//! anonymous admission carrying the denial it would have been (`pipeline/rollout.rs`; which
//! denials qualify is `policy::rollout`'s closed list).

mod identify;
mod outcome;
mod plan;
mod rollout;
mod runtime;
#[cfg(any(test, feature = "test-util"))]
mod testing;

pub use outcome::{
    Admitted, BodyNeed, Identity, RequestFacts, RouteId, Stage, Verdict, admitted_reason,
};
pub use runtime::Runtime;

use crate::credential::Kind;
use crate::denial::{BadRequest, Denial};
use crate::identity::assertion::Asserter;
use crate::identity::keys::JWKS_PATH;
use crate::identity::{CookiePolicy, HeaderNames};
use crate::net::client_ip::ClientIpResolver;
use crate::net::geoip::GeoInfo;
use crate::net::hygiene::{HygieneRules, Upgrade};
use crate::net::path::check_target;
use crate::policy::cors::{CorsMode, CorsPolicy};
use crate::policy::csrf::OriginPolicy;
use crate::policy::network::NetworkRules;
use crate::policy::ratelimit::Limiter;
use crate::policy::ratelimit::keys::{KeyFacts, PathParams};
use crate::policy::ratelimit::stage::{self, Passed};
use crate::policy::rollout::Rollout;
use crate::policy::sudo::Sudo;
use crate::policy::sudo_proof::{SudoProofs, carries_proof};
use crate::policy::{AuthMode, InternalSecrets, KindSet, Policy, RouteTable};
use crate::session::Session;
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
    /// CORS: allowed cross-origin readers, preflights (`[cors]`).
    pub cors: CorsPolicy,
    /// Login capture on `role = "login"` routes (`[login]`).
    pub login: crate::policy::login::LoginSettings,
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
    /// The route matched under a version prefix (prefix stripping keeps it).
    prefixed: bool,
    upgrade: Upgrade,
    geo: GeoInfo,
    keys: KeyFacts<'a>,
    passed: Passed,
}

impl Pipeline {
    pub fn new(rules: Rules, rt: Runtime) -> Pipeline {
        Pipeline { rules, rt }
    }

    /// Whether the body is read before deciding: always for a body-keyed limit (refused when
    /// too large), and when small for an in-band sudo proof on a sudo route without an edge
    /// proof. Cheap; the proxy asks only when the request has a body.
    pub fn body_needed(&self, facts: &RequestFacts<'_>) -> BodyNeed {
        // A request refused for its head is refused before its body is read.
        if self.rules.hygiene.check(&facts.head()).is_err() {
            return BodyNeed::No;
        }
        let Ok(p) = check_target(facts.target) else {
            return BodyNeed::No;
        };
        let policy = &self
            .rules
            .routes
            .find(facts.method, p.path, p.has_escapes)
            .route
            .policy;
        if policy.needs_body {
            return BodyNeed::Required;
        }
        let edge_proof = self
            .rules
            .sudo
            .as_ref()
            .is_some_and(|s| !matches!(s.presented(facts.headers), Ok(p) if p.is_empty()));
        if policy.sudo && policy.sudo_proofs != SudoProofs::Edge && !edge_proof {
            return BodyNeed::IfSmall;
        }
        BodyNeed::No
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
                let d = Denial::from(e);
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
        if let Some(jwks) = self.jwks(f, checked.path, client_ip) {
            return jwks;
        }
        let matched = match self.rules.routes.find_checked(f.method, &checked) {
            Ok(m) => m,
            Err(e) => {
                let d = Denial::BadRequest(BadRequest::Path(e));
                return Verdict::refused(client_ip, RouteId::Unrouted, Stage::Route, d);
            }
        };
        let route = matched.index.map_or(RouteId::Default, RouteId::Index);
        let policy = &matched.route.policy;
        // The proxy reads the body only when `body_needed` says so.
        let body = f
            .body
            .and_then(|b| serde_json::from_slice::<serde_json::Value>(b).ok());
        let mut pre = Prelude {
            client_ip,
            policy,
            prefixed: matched.prefixed,
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
        // 3–4. network rules (and CORS preflights), pre-auth limits; then 5–11.
        let decided = match self.prelude(f, &mut pre).await {
            Ok(Some(preflight)) => Ok(preflight),
            Ok(None) => self.decide(f, &mut pre).await,
            Err(refused) => Err(refused),
        };
        let (stage, outcome) = match decided {
            Ok(a) => (Stage::Identity, Ok(a)),
            // A route in report mode forwards an access decision's denial anonymously.
            Err((stage, d)) => (stage, self.refuse_or_report(f, &mut pre, d)),
        };
        Verdict {
            client_ip,
            route,
            stage,
            outcome,
            reservation: pre.passed.reservation,
            sudo_attempt: pre.passed.sudo_attempt,
        }
    }

    fn geo(&self, client_ip: IpAddr) -> GeoInfo {
        if self.rt.geo.enabled() {
            self.rt.geo.lookup(client_ip)
        } else {
            GeoInfo::default()
        }
    }

    /// Stages 3–4: what can be refused before any lookup is spent on the request; a CORS
    /// preflight from an allowed origin is admitted between them.
    async fn prelude(
        &self,
        f: &RequestFacts<'_>,
        pre: &mut Prelude<'_>,
    ) -> Result<Option<Admitted>, (Stage, Denial)> {
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
        if let Some(preflight) = self.preflight(f, pre) {
            return Ok(Some(preflight));
        }
        // 4. pre-auth limits and lockout: they shield the store and the upstream from floods
        //    and guessing before any lookup is made.
        pre.passed = stage::pre_auth(&self.rules.limits, pre.policy, &pre.keys)
            .await
            .map_err(|d| (Stage::PreAuthLimits, d))?;
        Ok(None)
    }

    /// A CORS preflight from an allowed origin, admitted anonymously: answered by fluxgate
    /// (`mode = "edge"`) or forwarded with no identity (`"upstream"`).
    // SECURITY: a preflight carries no credential, so it is never given an identity; one from
    // a foreign origin is an ordinary request and meets every rule (a foreign page learns
    // nothing from a preflight that a simple request would not tell it).
    fn preflight(&self, f: &RequestFacts<'_>, pre: &Prelude<'_>) -> Option<Admitted> {
        let cors = &self.rules.cors;
        if !CorsPolicy::is_preflight(f.method, f.headers)
            || cors.allowed_origin(f.headers).is_none()
        {
            return None;
        }
        Some(Admitted {
            preflight: cors.mode == CorsMode::Edge,
            ..Admitted::anonymous(self.plan(f, pre, &Identity::Anonymous, None))
        })
    }

    /// A request for the published assertion keys, answered by fluxgate before routing: the
    /// keys are public, a backend needs them whatever the routes say, and no route may send
    /// the path upstream while fluxgate publishes keys there.
    // SECURITY: admitted with no identity and nothing forwarded; what is served is the public
    // JWKS alone (`identity::keys`).
    fn jwks(&self, f: &RequestFacts<'_>, path: &str, client_ip: IpAddr) -> Option<Verdict> {
        if path != JWKS_PATH
            || !matches!(*f.method, http::Method::GET | http::Method::HEAD)
            || self.rules.assertion.as_ref()?.keys().is_none()
        {
            return None;
        }
        Some(Verdict {
            client_ip,
            route: RouteId::Unrouted,
            stage: Stage::Route,
            outcome: Ok(Admitted {
                jwks: true,
                ..Admitted::anonymous(Default::default())
            }),
            reservation: None,
            sudo_attempt: None,
        })
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
        // 9. sudo: a proof of recent re-authentication, bound to this user and session; or
        //    one in the body, for the upstream to verify.
        let (sudo_until, in_band) = self.sudo(f, pre, &identity).map_err(at(Stage::Sudo))?;
        // 10. per-user limits: they need to know who the caller is.
        self.per_user_limits(pre, &identity)
            .await
            .map_err(at(Stage::PerUserLimits))?;
        if in_band {
            // 9, settled last: a forwarded in-band proof takes one attempt on the per-user
            // proof lockout, so no later refusal leaves it reserved.
            self.sudo_attempt(pre, &identity)
                .await
                .map_err(at(Stage::Sudo))?;
        }
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
        if pre.policy.rollout == Rollout::Report {
            return self.ip_authorization_reported(pre, s, retry).await;
        }
        self.rt
            .ip_auth
            .check(s, pre.client_ip, &pre.geo, ua, retry)
            .await
    }

    /// Stage 9: the expiry of a valid sudo proof, when one came with a user's request.
    /// With the valid edge proof's expiry, and whether an in-band proof goes upstream.
    fn sudo(
        &self,
        f: &RequestFacts<'_>,
        pre: &Prelude<'_>,
        identity: &Identity,
    ) -> Result<(Option<i64>, bool), Denial> {
        let Identity::User(s) = identity else {
            return Ok((None, false));
        };
        let until = self.sudo_until(f, s);
        let policy = pre.policy;
        if !policy.sudo || until.is_some() {
            return Ok((until, false));
        }
        let in_band = pre.keys.body.is_some_and(carries_proof);
        // SECURITY: sensitive routes need a fresh re-authentication proof: fluxgate's own, or
        // (where the route allows it) one in the body that the upstream verifies, watched by a
        // per-user lockout.
        match policy.sudo_proofs {
            SudoProofs::Edge => Err(Denial::SudoModeRequired { has_mfa: s.has_mfa }),
            SudoProofs::Both if !in_band => Err(Denial::SudoModeRequired { has_mfa: s.has_mfa }),
            SudoProofs::Both | SudoProofs::Upstream => Ok((None, in_band)),
        }
    }

    /// An in-band proof's attempt on the per-user proof lockout (429 once it is locked).
    async fn sudo_attempt(&self, pre: &mut Prelude<'_>, identity: &Identity) -> Result<(), Denial> {
        let (Some(lockout), Identity::User(s)) = (
            self.rules
                .sudo
                .as_ref()
                .and_then(|s| s.settings.proof_lockout),
            identity,
        ) else {
            return Ok(());
        };
        let keys = KeyFacts {
            user: Some(s.user_id()),
            session: Some(&s.sid.0),
            ..pre.keys
        };
        stage::sudo_attempt(&self.rules.limits, lockout, &keys, &mut pre.passed).await
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

    /// The expiry of a valid sudo proof presented with the request, if any.
    fn sudo_until(&self, f: &RequestFacts<'_>, s: &Session) -> Option<i64> {
        let sudo = self.rules.sudo.as_ref()?;
        let now = self.rt.clock.now_secs();
        sudo.verify_presented(f.headers, s.user_id(), Some(&s.sid), now)
            .map(|p| p.exp)
    }
}

#[cfg(test)]
#[path = "pipeline_tests.rs"]
mod tests;
