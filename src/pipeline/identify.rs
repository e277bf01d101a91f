//! Stages 5–7 in detail: reading the credential in the contract's order, resolving it to a
//! session (cache, store, or the backend), and checking it against the route (kinds, scopes,
//! the origin of cookie-authenticated state changes). Internal secrets are checked here too.

use super::{Identity, Pipeline, RequestFacts};
use crate::credential::{self, Extracted, Kind, Sid};
use crate::denial::{Denial, Unauthenticated};
use crate::net::hygiene::Upgrade;
use crate::policy::Policy;
use crate::policy::csrf::is_unsafe;
use crate::policy::internal::SecretRefusal;
use crate::session::{Session, StoreError};
use std::net::IpAddr;

impl Pipeline {
    pub(super) fn internal(
        &self,
        facts: &RequestFacts<'_>,
        client_ip: IpAddr,
    ) -> Result<Identity, Denial> {
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
    pub(super) async fn user<'f>(
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
    ) -> Result<(Session, Option<&'f str>), Denial> {
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
                let mut valid: Option<(Session, &'f str)> = None;
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
    ) -> Result<Option<Session>, Denial> {
        let lookup = self.rt.sessions.resolve_token(kind, token);
        let looked = crate::telemetry::lookup(self.rt.sessions.source(), lookup, |r| match r {
            Ok(Some(_)) => "found",
            Ok(None) => "unknown",
            Err(_) => "error",
        });
        let e: StoreError = match looked.await {
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
