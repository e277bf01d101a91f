//! Logout glue: capture the `POST /auth/sessions/logout` body while it is forwarded, and once
//! the upstream answers 2xx, revoke and clear cookies (see `policy::logout`). When the store
//! cannot revoke, the client gets 503 and keeps its cookies instead of a logout that did not
//! happen.

use super::{FluxgateProxy, RequestCtx};
use crate::denial::Denial;
use crate::pipeline::{Identity, Verdict};
use crate::policy::Role;
use crate::policy::logout::{MAX_LOGOUT_BODY, parse_body, revoke_listed};
use bytes::{Bytes, BytesMut};
use pingora::http::ResponseHeader;
use pingora::proxy::Session;
use std::sync::atomic::Ordering;

/// The captured request body of a `logout_all` route.
#[derive(Debug, Default)]
pub enum Capture {
    #[default]
    Off,
    Reading(BytesMut),
    Complete(Bytes),
    /// Over the limit (or announced as such): not buffered, revokes nothing.
    TooLarge,
}

/// Starts capturing if the admitted route is a `logout_all` route.
pub fn start(session: &Session, ctx: &mut RequestCtx) {
    let Some(Verdict { outcome: Ok(a), .. }) = &ctx.verdict else {
        return;
    };
    if a.role != Some(Role::LogoutAll) {
        return;
    }
    let announced = session
        .req_header()
        .headers
        .get(http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    ctx.capture = match announced {
        Some(n) if n > MAX_LOGOUT_BODY => Capture::TooLarge,
        _ => Capture::Reading(BytesMut::new()),
    };
}

/// Copies a body chunk into the capture (the chunk itself is forwarded untouched).
pub fn on_body(ctx: &mut RequestCtx, chunk: Option<&Bytes>, end: bool) {
    if let Capture::Reading(buf) = &mut ctx.capture {
        if let Some(c) = chunk {
            if buf.len() + c.len() > MAX_LOGOUT_BODY {
                ctx.capture = Capture::TooLarge;
                return;
            }
            buf.extend_from_slice(c);
        }
        if end {
            let done = std::mem::take(buf).freeze();
            ctx.capture = Capture::Complete(done);
        }
    }
}

/// After a 2xx from the upstream on a logout route: revoke, and clear cookies when the
/// caller's own session went. `Err` when the store could not revoke: the upstream's answer must
/// not reach the client, which gets `ctx.failure` (503) instead.
pub async fn on_response(
    proxy: &FluxgateProxy,
    resp: &mut ResponseHeader,
    ctx: &mut RequestCtx,
) -> Result<(), ()> {
    let unavailable = Denial::StoreUnavailable {
        retry_after_secs: ctx.live.pipeline.rules.store_retry_after_secs,
    };
    // SECURITY: a logout whose revocation failed must not look done (2xx, cookies cleared)
    // while the token stays valid: the client keeps its cookie and can try again.
    let failed = |ctx: &mut RequestCtx| {
        proxy.metrics.logout_errors.fetch_add(1, Ordering::Relaxed);
        ctx.failure = Some(unavailable);
        Err(())
    };
    let Some(Verdict { outcome: Ok(a), .. }) = &ctx.verdict else {
        return Ok(());
    };
    let (Some(role), Identity::User(session)) = (a.role, &a.identity) else {
        return Ok(());
    };
    if !resp.status.is_success() {
        return Ok(());
    }
    let cache = ctx.live.pipeline.rt.sessions.clone();
    let session = session.clone();
    let clear = match role {
        Role::AuthorizeIp | Role::IpAuthPoll | Role::IpAuthResend | Role::Login => return Ok(()),
        Role::Logout => match cache.revoke(&session.sid).await {
            Ok(_) => true,
            Err(e) => {
                tracing::error!(error = %e, "logout: could not revoke the session; answered 503");
                return failed(ctx);
            }
        },
        Role::LogoutAll => {
            let body = match std::mem::take(&mut ctx.capture) {
                Capture::Complete(b) => b,
                Capture::TooLarge => {
                    tracing::warn!(
                        "logout: body over {MAX_LOGOUT_BODY} bytes was forwarded untouched; nothing revoked"
                    );
                    return Ok(());
                }
                Capture::Reading(_) | Capture::Off => {
                    tracing::warn!(
                        "logout: the upstream answered before the body was complete; nothing revoked"
                    );
                    return Ok(());
                }
            };
            let sids = match parse_body(&body) {
                Ok(s) => s,
                Err(e) => {
                    tracing::warn!(error = %e, "logout: malformed body was forwarded untouched; nothing revoked");
                    return Ok(());
                }
            };
            match revoke_listed(&cache, session.user_id(), &session.sid, &sids).await {
                Ok(r) => {
                    tracing::info!(revoked = r.count, "logout: revoked listed sessions");
                    r.includes_caller
                }
                Err(e) => {
                    tracing::error!(error = %e, "logout: could not revoke the listed sessions; answered 503");
                    return failed(ctx);
                }
            }
        }
    };
    if clear {
        for v in ctx.live.pipeline.rules.cookies.clear_both() {
            let _ = resp.append_header("set-cookie", v);
        }
    }
    Ok(())
}
