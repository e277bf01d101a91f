//! Request latencies for the metrics, from timestamps the request already takes: its start
//! (`RequestCtx::started`), the first upstream address picked and the upstream's response head
//! (`attempt::Attempts`, shared with the access log), and one read when the request is done.
//!
//! Labels are the route's name from the config (interned at load, never the raw path) and the
//! decision outcome: closed sets, so the series are bounded. The trace id, when the request is
//! traced, rides along as the histograms' exemplar.

use super::{FluxgateProxy, RequestCtx};
use crate::metrics::TraceIdHex;

/// The request is done; `decision` is its outcome label.
pub(super) fn done(proxy: &FluxgateProxy, ctx: &RequestCtx, decision: &'static str) {
    let total = ctx.started.elapsed();
    let route = ctx
        .verdict
        .as_ref()
        .map_or("-", |v| ctx.live.route_label(v.route));
    let (picked, upstream) = ctx.attempts.timings();
    // Admitted: until the upstream was picked; denied or failed before it: the whole request.
    let before_upstream = picked.map_or(total, |at| at.saturating_duration_since(ctx.started));
    let trace = ctx.exemplar_id().and_then(TraceIdHex::from_bytes);
    let (m, ex) = (&proxy.metrics, trace.as_ref());
    m.request_duration.observe(route, decision, total, ex);
    m.decision_duration
        .observe(route, decision, before_upstream, ex);
    if let Some(d) = upstream {
        m.upstream_duration.observe(route, "", d, ex);
    }
}
