//! WebSocket tunnels and revocation: each admitted tunnel of a user session is registered,
//! by session and user, with the session cache, which closes the tunnel's connection when the
//! session (or every session of its user) is revoked, here or on another instance (see
//! `session::tunnels`). The registration lives in the request's context, so it ends with the
//! tunnel.

use super::RequestCtx;
use super::edge::Guarded;
use crate::denial::{Denial, Unauthenticated};
use crate::pipeline::{Identity, Verdict};
use crate::session::tunnels::Closer;
use pingora::prelude::*;
use pingora::proxy::Session;
use std::sync::Arc;

/// Registers the tunnel of an admitted WebSocket handshake; a denial when its session was
/// revoked between the decision and now.
pub(super) async fn register(session: &Session, ctx: &mut RequestCtx) -> Result<Option<Denial>> {
    let Some(Verdict { outcome: Ok(a), .. }) = &ctx.verdict else {
        return Ok(None);
    };
    let Identity::User(s) = &a.identity else {
        // Anonymous and internal tunnels have no session to revoke.
        return Ok(None);
    };
    if !a.websocket {
        return Ok(None);
    }
    let Some(state) = Guarded::state_of(session.stream()) else {
        // Every HTTP/1 connection is guarded (`edge`), and WebSockets over HTTP/2 are refused;
        // a tunnel that could not be closed on revocation is not opened.
        return Error::e_explain(InternalError, "a WebSocket on an unguarded connection");
    };
    let pipeline = &ctx.live.pipeline;
    let closer: Arc<dyn Closer> = state.clone();
    // SECURITY: a WebSocket is authorized once, at its handshake; registered here, it is
    // closed when its session or user is revoked instead of outliving the revocation.
    let sessions = &pipeline.rt.sessions;
    let reopened = match sessions.open_tunnel(s, closer) {
        Ok(g) => Ok(Some(g)),
        // Boxed: the rare slow way stays out of every request's filter future.
        Err(closer) => Box::pin(sessions.reopen_tunnel(s, closer)).await,
    };
    let guard = match reopened {
        Ok(g) => g,
        Err(e) => {
            tracing::warn!(error = %e, "session store failed while opening a WebSocket tunnel");
            return Ok(Some(Denial::StoreUnavailable {
                retry_after_secs: pipeline.rules.store_retry_after_secs,
            }));
        }
    };
    match guard {
        Some(g) => {
            ctx.tunnel = Some(g);
            Ok(None)
        }
        None => Ok(Some(Denial::Unauthorized(Unauthenticated::UnknownSession))),
    }
}
