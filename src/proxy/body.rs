//! Reading a small request body before deciding, for routes whose limits are keyed by a body
//! field, and settling lockout attempts once the upstream's answer is known.
//!
//! The body is read into pingora's retry buffer, which pingora then sends upstream as the body,
//! so the upstream receives exactly what the client sent. Only bodies with a `Content-Length`
//! of at most 16 KiB are read; anything else is forwarded as it streams, and its limits fall
//! back to the client IP.

use super::RequestCtx;
use bytes::Bytes;
use pingora::prelude::*;
use pingora::proxy::Session;
use std::net::IpAddr;

/// Largest body read before deciding.
pub const MAX_PREREAD: usize = 16 * 1024;

fn small_body_len(session: &Session) -> Option<usize> {
    let h = &session.req_header().headers;
    if h.contains_key(http::header::TRANSFER_ENCODING) {
        return None;
    }
    h.get(http::header::CONTENT_LENGTH)?
        .to_str()
        .ok()?
        .parse::<usize>()
        .ok()
        .filter(|n| (1..=MAX_PREREAD).contains(n))
}

/// Reads the body when the route needs it and it is small; `None` otherwise.
pub async fn preread(
    session: &mut Session,
    ctx: &mut RequestCtx,
    peer: IpAddr,
) -> Result<Option<Bytes>> {
    if small_body_len(session).is_none() {
        return Ok(None);
    }
    let needed = ctx
        .live
        .pipeline
        .body_needed(&super::facts(session, peer, None));
    let req = session.req_header();
    if !needed {
        return Ok(None);
    }
    let expects_continue = req
        .headers
        .get(http::header::EXPECT)
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"100-continue"));
    if expects_continue {
        session.write_continue_response().await?;
    }
    session.enable_retry_buffering();
    let mut read = 0usize;
    while let Some(chunk) = session.read_request_body().await? {
        read += chunk.len();
        if read > MAX_PREREAD {
            return Error::e_explain(
                InvalidHTTPHeader,
                "request body longer than its Content-Length",
            );
        }
    }
    ctx.body_preread = true;
    Ok(session.get_retry_buffer())
}

/// Settles the request's lockout attempt: a failure if the upstream answered with one of the
/// lockout's statuses, given back otherwise (including when fluxgate itself refused).
pub async fn settle_lockout(ctx: &mut RequestCtx) {
    let Some(r) = ctx.verdict.as_mut().and_then(|v| v.reservation.take()) else {
        return;
    };
    let limits = &ctx.live.pipeline.limits;
    let failed = match (ctx.upstream_status, limits.lockouts.get(r.lockout as usize)) {
        (Some(status), Some(l)) => l.statuses.contains(&status),
        _ => false,
    };
    limits.settle(&r, failed).await;
}
