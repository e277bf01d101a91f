//! Reading a small request body before deciding, for routes whose limits are keyed by a body
//! field, and settling lockout attempts once the upstream's answer is known.
//!
//! The body is read into pingora's retry buffer, which pingora then sends upstream as the body,
//! so the upstream receives exactly what the client sent. Bodies of at most 16 KiB are read,
//! whatever their framing (length, chunked, HTTP/2 frames); larger ones are refused on such
//! routes. Routes without body-keyed limits never read ahead.

use super::RequestCtx;
use crate::denial::{Denial, Limit};
use crate::pipeline::BodyNeed;
use bytes::Bytes;
use pingora::prelude::*;
use pingora::proxy::Session;
use std::net::IpAddr;

/// Largest body read before deciding.
pub const MAX_PREREAD: usize = 16 * 1024;

/// What reading ahead gave.
pub enum Preread {
    /// Nothing read: no body, or the route does not need it.
    Skipped,
    /// The whole body.
    Body(Option<Bytes>),
    /// The route needs the body but it is too large to read ahead: refused.
    Refused(Denial),
}

// SECURITY: on a route keyed by a body field, a body that cannot be read ahead would fall back
// to the client IP as its key; a client could then choose that (chunked, oversized) to escape a
// per-account lockout. So chunked and unknown-length bodies are read too, and larger ones are
// refused.
fn too_large() -> Denial {
    Denial::Limit(Limit::BodyTooLarge)
}

/// Reads the body when the route needs it (at most 16 KiB, whatever its framing).
pub async fn preread(session: &mut Session, ctx: &mut RequestCtx, peer: IpAddr) -> Result<Preread> {
    if session.is_body_empty() {
        return Ok(Preread::Skipped);
    }
    // The route is all that matters here; the request id is not read.
    let no_id = http::HeaderValue::from_static("-");
    let need =
        ctx.live
            .pipeline
            .body_needed(&super::facts(session, (peer, None), &no_id, false, None));
    let req = session.req_header();
    let declared = req
        .headers
        .get(http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    match need {
        BodyNeed::No => return Ok(Preread::Skipped),
        BodyNeed::Required if declared.is_some_and(|n| n > MAX_PREREAD) => {
            return Ok(Preread::Refused(too_large()));
        }
        // Only a declared small body is read for a sudo proof: anything else is forwarded as
        // it comes (and carries no proof).
        BodyNeed::IfSmall if declared.is_none_or(|n| n > MAX_PREREAD) => {
            return Ok(Preread::Skipped);
        }
        BodyNeed::Required | BodyNeed::IfSmall => {}
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
            return Ok(Preread::Refused(too_large()));
        }
    }
    ctx.body_preread = true;
    Ok(Preread::Body(session.get_retry_buffer()))
}

/// Settles the request's lockout attempt: a failure if the upstream answered with one of the
/// lockout's statuses, given back otherwise (including when fluxgate itself refused).
pub async fn settle_lockout(ctx: &mut RequestCtx) {
    let Some(r) = ctx.verdict.as_mut().and_then(|v| v.reservation.take()) else {
        return;
    };
    let limits = &ctx.live.pipeline.rules.limits;
    let failed = match (ctx.upstream_status, limits.lockouts.get(r.lockout as usize)) {
        (Some(status), Some(l)) => l.statuses.contains(&status),
        _ => false,
    };
    limits.settle(&r, failed).await;
}
