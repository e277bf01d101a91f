//! In-band sudo proofs, response side: the upstream's answer to a request that carried a proof
//! in its body is watched (status, and the start of a 400/403 body), and the request's attempt
//! on the per-user proof lockout is settled from it (`policy::sudo_proof` decides).

use super::RequestCtx;
use crate::policy::sudo_proof::proof_failed;
use bytes::{Bytes, BytesMut};
use pingora::http::ResponseHeader;

/// How much of an error body is kept to classify it (Fluxer's are a few hundred bytes).
const KEEP: usize = 4 * 1024;

/// What was seen of the upstream's answer.
#[derive(Debug, Default)]
pub struct Watch {
    /// The body has a content coding fluxgate would have to undo to read it.
    encoded: bool,
    /// The start of a 400/403 body, while it is being watched.
    body: Option<BytesMut>,
}

fn watched(ctx: &RequestCtx) -> bool {
    ctx.verdict
        .as_ref()
        .is_some_and(|v| v.sudo_attempt.is_some())
}

/// On the response head.
pub fn on_response(resp: &ResponseHeader, ctx: &mut RequestCtx) {
    if !watched(ctx) {
        return;
    }
    ctx.sudo_watch.encoded = resp
        .headers
        .get(http::header::CONTENT_ENCODING)
        .is_some_and(|v| !v.as_bytes().eq_ignore_ascii_case(b"identity"));
    if matches!(resp.status.as_u16(), 400 | 403) {
        ctx.sudo_watch.body = Some(BytesMut::new());
    }
}

/// On each body chunk (forwarded untouched).
pub fn on_body(chunk: Option<&Bytes>, ctx: &mut RequestCtx) {
    if let (Some(buf), Some(c)) = (ctx.sudo_watch.body.as_mut(), chunk) {
        let room = KEEP.saturating_sub(buf.len());
        buf.extend_from_slice(&c[..c.len().min(room)]);
    }
}

/// Once the exchange is over: a wrong proof is a failure on the lockout; anything else gives
/// the reserved attempt back (including when the upstream never answered).
pub async fn settle(ctx: &mut RequestCtx) {
    let Some(r) = ctx.verdict.as_mut().and_then(|v| v.sudo_attempt.take()) else {
        return;
    };
    let w = std::mem::take(&mut ctx.sudo_watch);
    let failed = ctx.upstream_status.is_some_and(|status| {
        proof_failed(status, w.encoded, w.body.as_deref().unwrap_or_default())
    });
    ctx.live.pipeline.rules.limits.settle(&r, failed).await;
}
