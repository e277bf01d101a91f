//! The access line of a request through the proxy: gathered from the context and pingora's
//! session once the answer is sent (`logging` formats and writes it).

use super::{Live, RequestCtx, peer_ip};
use crate::pipeline::RouteId;
use pingora::proxy::Session;

impl Live {
    /// The route's path pattern, for the access log.
    pub(crate) fn route_template(&self, r: RouteId) -> Option<&str> {
        match r {
            RouteId::Index(i) => self.pipeline.rules.routes.routes()[i]
                .pattern
                .as_ref()
                .map(|p| p.as_str()),
            _ => None,
        }
    }
}

/// Writes the request's access line.
pub(super) fn line(
    session: &Session,
    ctx: &RequestCtx,
    decision: &'static str,
    reason: &'static str,
    status: u16,
) {
    let v = ctx.verdict.as_ref();
    let user = v.and_then(|v| v.session());
    let mut hex = [0u8; 32];
    let trace_id = ctx.trace_id().and_then(|t| {
        hex::encode_to_slice(t, &mut hex).ok()?;
        std::str::from_utf8(&hex).ok()
    });
    crate::logging::access(&crate::logging::AccessLine {
        request_id: ctx
            .request_id
            .as_ref()
            .and_then(|v| v.to_str().ok())
            .unwrap_or("-"),
        method: session.req_header().method.as_str(),
        route: v.map_or("-", |v| ctx.live.route_name(v.route)),
        route_template: v.and_then(|v| ctx.live.route_template(v.route)),
        target: ctx
            .live
            .access_log_path
            .then(|| session.req_header().raw_path()),
        decision,
        reason,
        status,
        latency_us: ctx.started.elapsed().as_micros() as u64,
        upstream_us: ctx.attempts.upstream_us(),
        client_ip: v.map_or(peer_ip(session), |v| v.client_ip),
        user_id: user.map(|s| s.user_id()),
        sid: user.map(|s| &s.sid),
        bytes_in: session.body_bytes_read() as u64,
        bytes_out: session.body_bytes_sent() as u64,
        trace_id,
    });
}
