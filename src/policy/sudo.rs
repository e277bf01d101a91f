//! Sudo mode (contract §6): a short re-authentication window for sensitive routes, proven by an
//! HS256 JWT shared with the upstream (Fluxer's `auth.sudo_mode_secret`), presented in the
//! `fluxer_sudo_mode` cookie or the `X-Fluxer-Sudo-Mode-JWT` header.
//!
//! Signature checking is jsonwebtoken's (HS256 only). Time is judged here, against the
//! injectable clock, with an explicit leeway: `exp` must be in the future and `exp - iat` within
//! the configured lifetime.

use crate::credential::Sid;
use cookie::Cookie;
use http::HeaderMap;
use http::header::COOKIE;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};

/// The header dialect.
pub const SUDO_HEADER: http::HeaderName = http::HeaderName::from_static("x-fluxer-sudo-mode-jwt");
/// Longest token accepted (a sudo JWT is ~250 bytes).
const MAX_TOKEN: usize = 2048;
/// Most proofs looked at in one request (header values and cookies together).
const MAX_PRESENTED: usize = 4;

/// `[sudo]`, validated.
#[derive(Clone)]
pub struct SudoSettings {
    pub secret: Vec<u8>,
    pub lifetime_secs: i64,
    /// At most 5 s.
    pub leeway_secs: i64,
    /// Require `sid` in every token (tokens fluxgate mints always carry it).
    pub bind_to_session: bool,
    /// Forward a freshly minted upstream-format token on admitted sudo requests.
    pub forward_upstream_token: bool,
    /// The upstream's own window: a forwarded token never claims more (Fluxer: 5 minutes).
    pub upstream_lifetime_secs: i64,
    pub cookie_name: String,
    /// The limiter lockout counting wrong in-band proofs per user (`[sudo] proof_*`).
    pub proof_lockout: Option<u32>,
    /// How long a cookie captured from an upstream's proof lasts (`[sudo] capture_window`).
    pub capture_window: CaptureWindow,
}

/// How long the cookie fluxgate sets from an upstream's proof may last. Either way it is
/// measured from the proof's `iat` (the moment the user proved), so echoing a proof back never
/// renews it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum CaptureWindow {
    /// Until the proof's own `exp` (Fluxer: 5 minutes after the user proved).
    #[default]
    Proof,
    /// `lifetime` (15 minutes) after the proof's `iat`: the seed's window.
    Lifetime,
}

/// The times of a verified proof.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Proof {
    pub iat: i64,
    pub exp: i64,
}

/// Why a sudo token was refused; each is a test named after the attack it stops.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    Malformed,
    /// Signature, algorithm or encoding rejected by jsonwebtoken.
    Signature,
    /// `kid`, `jku`, `jwk`, `x5u` or `x5c` in the header: nothing may steer the key.
    KeyHeaders,
    /// Claims missing or not numeric where they must be.
    Claims,
    WrongType,
    OtherUser,
    OtherSession,
    Expired,
    /// `exp - iat` longer than the configured lifetime.
    TooLong,
    /// `iat` later than now (plus the leeway): a proof from the future would stretch the window.
    FromTheFuture,
    /// More than four proofs in one request.
    TooMany,
}

#[derive(Debug, Serialize, Deserialize)]
struct Claims {
    #[serde(rename = "type")]
    typ: String,
    sub: String,
    iat: i64,
    exp: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    sid: Option<String>,
}

/// Verifies and mints sudo tokens.
pub struct Sudo {
    pub settings: SudoSettings,
    decoding: DecodingKey,
    encoding: EncodingKey,
    validation: Validation,
}

impl Sudo {
    pub fn new(settings: SudoSettings) -> Result<Sudo, String> {
        let decoding = DecodingKey::from_secret(&settings.secret).map_err(|e| e.to_string())?;
        let encoding = EncodingKey::from_secret(&settings.secret).map_err(|e| e.to_string())?;
        // SECURITY: HS256 and nothing else: `none`, HS512 and RS256-with-the-secret-as-a-public-
        // key are all refused by the algorithm list.
        let mut validation = Validation::new(Algorithm::HS256);
        // Time is checked against fluxgate's clock below, not the system's.
        validation.validate_exp = false;
        validation.required_spec_claims.clear();
        validation.validate_aud = false;
        Ok(Sudo {
            settings,
            decoding,
            encoding,
            validation,
        })
    }

    /// The distinct tokens presented with a request, from the header and the cookies.
    pub fn presented<'h>(&self, headers: &'h HeaderMap) -> Result<Vec<&'h str>, Refusal> {
        let mut found: Vec<&str> = Vec::new();
        let mut take = |v: &'h str| -> Result<(), Refusal> {
            if !found.contains(&v) {
                // Bounded: each one costs an HMAC.
                if found.len() == MAX_PRESENTED {
                    return Err(Refusal::TooMany);
                }
                found.push(v);
            }
            Ok(())
        };
        for v in headers.get_all(&SUDO_HEADER) {
            take(v.to_str().map_err(|_| Refusal::Malformed)?)?;
        }
        for h in headers.get_all(COOKIE) {
            let Ok(text) = h.to_str() else { continue };
            if !crate::identity::may_name(text, &self.settings.cookie_name) {
                continue;
            }
            for c in Cookie::split_parse(text).flatten() {
                if c.name() == self.settings.cookie_name
                    && let Some(v) = c.value_raw()
                {
                    take(v)?;
                }
            }
        }
        Ok(found)
    }

    /// The valid proof among those presented (the one expiring first if several are), if any.
    pub fn verify_presented(
        &self,
        headers: &HeaderMap,
        user_id: &str,
        sid: Option<&Sid>,
        now: i64,
    ) -> Option<Proof> {
        // SECURITY: each presented proof is verified on its own, so a cookie planted beside the
        // real one (from a sibling subdomain, or plain garbage) cannot block it; a proof only
        // counts when it is valid for this very user and session.
        self.presented(headers)
            .ok()?
            .into_iter()
            .filter_map(|t| self.verify_proof(t, user_id, sid, now).ok())
            .min_by_key(|p| p.exp)
    }

    /// Verifies `token` for `user_id` and session `sid` at `now`. Returns its `exp`.
    pub fn verify(
        &self,
        token: &str,
        user_id: &str,
        sid: Option<&Sid>,
        now: i64,
    ) -> Result<i64, Refusal> {
        self.verify_proof(token, user_id, sid, now).map(|p| p.exp)
    }

    /// Verifies `token` for `user_id` and session `sid` at `now`. Returns its times.
    pub fn verify_proof(
        &self,
        token: &str,
        user_id: &str,
        sid: Option<&Sid>,
        now: i64,
    ) -> Result<Proof, Refusal> {
        if token.is_empty() || token.len() > MAX_TOKEN {
            return Err(Refusal::Malformed);
        }
        let header = jsonwebtoken::decode_header(token).map_err(|_| Refusal::Malformed)?;
        // SECURITY: the key is configured, never chosen by the token.
        if header.kid.is_some()
            || header.jku.is_some()
            || header.jwk.is_some()
            || header.x5u.is_some()
            || header.x5c.is_some()
        {
            return Err(Refusal::KeyHeaders);
        }
        let data = jsonwebtoken::decode::<Claims>(token, &self.decoding, &self.validation)
            .map_err(|e| match e.kind() {
                jsonwebtoken::errors::ErrorKind::Json(_)
                | jsonwebtoken::errors::ErrorKind::InvalidClaimFormat(_)
                | jsonwebtoken::errors::ErrorKind::MissingRequiredClaim(_) => Refusal::Claims,
                _ => Refusal::Signature,
            })?;
        let c = data.claims;
        if c.typ != "sudo" {
            return Err(Refusal::WrongType);
        }
        // SECURITY: a proof is for one user: another user's token proves nothing here.
        if c.sub != user_id {
            return Err(Refusal::OtherUser);
        }
        // SECURITY: a token bound to a session only works with that session, so a stolen
        // token is useless with another session of the same user.
        match (&c.sid, sid) {
            (Some(claimed), Some(actual)) if *claimed != actual.encode() => {
                return Err(Refusal::OtherSession);
            }
            (Some(_), None) => return Err(Refusal::OtherSession),
            (None, _) if self.settings.bind_to_session => return Err(Refusal::OtherSession),
            _ => {}
        }
        // SECURITY: the window is the configured one, whatever the issuer put in `exp`; checked
        // arithmetic, so extreme claims cannot wrap around into a valid-looking window.
        let length = c.exp.checked_sub(c.iat).ok_or(Refusal::TooLong)?;
        if !(0..=self.settings.lifetime_secs).contains(&length) {
            return Err(Refusal::TooLong);
        }
        // SECURITY: a proof issued in the future would be valid for longer than the lifetime
        // from now (and a captured cookie keeps its `iat`).
        if c.iat > now.saturating_add(self.settings.leeway_secs) {
            return Err(Refusal::FromTheFuture);
        }
        if c.exp.saturating_add(self.settings.leeway_secs) <= now {
            return Err(Refusal::Expired);
        }
        Ok(Proof {
            iat: c.iat,
            exp: c.exp,
        })
    }

    /// Mints a token for `user_id`, bound to `sid`, valid from `now` until `until`.
    pub fn mint(&self, user_id: &str, sid: &Sid, now: i64, until: i64) -> String {
        let claims = Claims {
            typ: "sudo".into(),
            sub: user_id.into(),
            iat: now,
            exp: until,
            sid: Some(sid.encode()),
        };
        jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &self.encoding)
            .expect("HS256 signing with a valid key cannot fail")
    }

    /// The cookie token for a proof the upstream issued: bound to `sid`, proving the same moment
    /// as the proof (`iat`), and expiring per `capture_window`. None once that has passed.
    pub fn capture(
        &self,
        user_id: &str,
        sid: &Sid,
        proof: Proof,
        now: i64,
    ) -> Option<(String, i64)> {
        // SECURITY: the window is measured from when the user proved (the proof's `iat`), never
        // from now, so an upstream that echoes a proof back cannot keep sudo alive forever.
        let until = match self.settings.capture_window {
            CaptureWindow::Proof => proof.exp,
            CaptureWindow::Lifetime => proof.iat.checked_add(self.settings.lifetime_secs)?,
        };
        (until > now).then(|| (self.mint(user_id, sid, proof.iat, until), until))
    }

    /// A token proving a fresh re-authentication now, for the full lifetime.
    pub fn grant(&self, user_id: &str, sid: &Sid, now: i64) -> (String, i64) {
        let until = now.saturating_add(self.settings.lifetime_secs);
        (self.mint(user_id, sid, now, until), until)
    }
}

#[cfg(test)]
#[path = "sudo_tests.rs"]
mod tests;
