//! Response-side cookie work: every `Set-Cookie` for the session or sudo cookie leaves with the
//! configured attributes, and a sudo proof the upstream issued (`X-Fluxer-Sudo-Mode-JWT`) is
//! re-issued as the `fluxer_sudo_mode` cookie, bound to the session, on 2xx answers only, never
//! for a proof fluxgate forwarded itself, and never outlasting the proof.

use super::{Live, RequestCtx};
use crate::pipeline::{Identity, Verdict};
use crate::policy::sudo::SUDO_HEADER;
use http::HeaderValue;
use pingora::http::ResponseHeader;

pub fn on_response(resp: &mut ResponseHeader, ctx: &RequestCtx) {
    harden(&ctx.live, resp);
    capture_sudo(&ctx.live, resp, ctx);
}

fn harden(proxy: &Live, resp: &mut ResponseHeader) {
    let set: Vec<HeaderValue> = resp
        .headers
        .get_all(http::header::SET_COOKIE)
        .iter()
        .cloned()
        .collect();
    if !set.iter().any(|v| {
        v.to_str()
            .is_ok_and(|s| proxy.pipeline.rules.cookies.owns(s))
    }) {
        return;
    }
    resp.remove_header(&http::header::SET_COOKIE);
    for v in set {
        let out = match v.to_str() {
            Ok(s) if proxy.pipeline.rules.cookies.owns(s) => proxy.pipeline.rules.cookies.harden(s),
            _ => Some(v),
        };
        // A Set-Cookie for our cookies that cannot be parsed is dropped, not passed on weak.
        if let Some(out) = out {
            let _ = resp.append_header(http::header::SET_COOKIE, out);
        }
    }
}

fn capture_sudo(proxy: &Live, resp: &mut ResponseHeader, ctx: &RequestCtx) {
    let Some(sudo) = &proxy.pipeline.rules.sudo else {
        return;
    };
    // SECURITY: only a successful answer vouches for a re-authentication; an error page that
    // carries (or echoes) a proof does not.
    if !resp.status.is_success() {
        return;
    }
    let Some(token) = resp
        .headers
        .get(&SUDO_HEADER)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
    else {
        return;
    };
    let Some(Verdict { outcome: Ok(a), .. }) = &ctx.verdict else {
        return;
    };
    let Identity::User(s) = &a.identity else {
        return;
    };
    // SECURITY: the proof fluxgate forwarded with this request, echoed back, proves nothing new.
    if a.plan
        .set
        .iter()
        .any(|(n, v)| *n == SUDO_HEADER && v.as_bytes() == token.as_bytes())
    {
        return;
    }
    let now = proxy.pipeline.rt.clock.now_secs();
    // The upstream's proof must be valid for this user (and, if it names one, this session);
    // fluxgate then issues its own, bound to the session, never outlasting the proof.
    match sudo.verify_proof(&token, s.user_id(), Some(&s.sid), now) {
        Ok(proof) => {
            let Some((bound, until)) = sudo.capture(s.user_id(), &s.sid, proof, now) else {
                return;
            };
            let cookie = proxy.pipeline.rules.cookies.set_cookie(
                &sudo.settings.cookie_name,
                &bound,
                until - now,
            );
            let _ = resp.append_header(http::header::SET_COOKIE, cookie);
        }
        Err(r) => {
            tracing::warn!(refusal = ?r, "upstream sent a sudo proof fluxgate cannot verify; no cookie set")
        }
    }
}
