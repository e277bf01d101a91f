//! The proxy's part in tracing (`telemetry/`): which incoming `traceparent` is believed, the
//! `decision` span around the pipeline, the `traceparent` forwarded upstream, and the end of the
//! request's spans. Every function is one branch when `[tracing]` is off.

use super::RequestCtx;
use crate::pipeline::{Verdict, admitted_reason};
use crate::telemetry::traceparent::{self, TRACEPARENT, TRACESTATE};
use crate::telemetry::{self, RequestTrace, TrustIncoming};
use http::{HeaderMap, HeaderValue};
use pingora::http::RequestHeader;
use pingora::prelude::*;
use pingora::proxy::Session;
use std::net::IpAddr;

/// Starts the request's trace, when tracing is on.
pub(super) fn start(
    session: &Session,
    ctx: &RequestCtx,
    peer: IpAddr,
    request_id: &HeaderValue,
) -> Option<Box<RequestTrace>> {
    telemetry::enabled()?;
    let req = session.req_header();
    let trusted = ctx.live.pipeline.rules.client_ip.trusted().contains(peer);
    begin(&req.headers, req.method.as_str(), request_id, trusted)
}

/// Starts a trace for a request whose head is `headers`, from a peer that is (`trusted`) or
/// is not a trusted proxy; the decision endpoint's peers are its trusted edges.
pub(crate) fn begin(
    headers: &HeaderMap,
    method: &str,
    request_id: &HeaderValue,
    trusted: bool,
) -> Option<Box<RequestTrace>> {
    let t = telemetry::enabled()?;
    // SECURITY: a client's `traceparent` would choose the trace id (joining, or polluting,
    // someone else's trace) and force sampling (making every request of a flood exported);
    // only a peer the operator trusts may continue a trace. Anyone else starts a new one, and
    // its `traceparent` and `tracestate` are replaced or dropped before the upstream (`forward`).
    let believed = match t.trust {
        TrustIncoming::Always => true,
        TrustIncoming::Never => false,
        TrustIncoming::TrustedProxies => trusted,
    };
    let parent = believed.then(|| traceparent::read(headers)).flatten();
    let trace = RequestTrace::start(t, parent, method);
    trace.set_request_id(request_id);
    Some(Box::new(trace))
}

/// Ends the `decision` span `cx` with the verdict's outcome, reason and stage.
pub(crate) fn decided(cx: &opentelemetry::Context, v: &Verdict) {
    let (outcome, reason) = match &v.outcome {
        Ok(a) => match &a.would_deny {
            Some(d) => ("would_deny", d.reason()),
            None => ("admitted", admitted_reason(a)),
        },
        Err(d) => ("denied", d.reason()),
    };
    RequestTrace::decided(cx, outcome, reason, v.stage.name());
}

/// Starts the `upstream` span and forwards the `traceparent` naming it as parent; the
/// incoming `tracestate` goes along only when its `traceparent` was believed.
pub(super) fn forward(ctx: &mut RequestCtx, upstream: &mut RequestHeader) -> Result<()> {
    let Some(t) = ctx.trace.as_mut() else {
        // SECURITY: not tracing, fluxgate passes a well-formed `traceparent` through
        // untouched, but never a malformed one (or several): the upstream's tracer would
        // trust whatever it parses out of it. One lookup, and only for requests that carry
        // the header.
        if upstream.headers.contains_key(TRACEPARENT)
            && traceparent::read(&upstream.headers).is_none()
        {
            upstream.remove_header(TRACEPARENT);
            upstream.remove_header(TRACESTATE);
        }
        return Ok(());
    };
    upstream.insert_header(TRACEPARENT, t.upstream())?;
    if !t.trusted_parent {
        upstream.remove_header(TRACESTATE);
    }
    Ok(())
}

/// Ends the request's spans with its route, decision and status.
pub(super) fn finish(ctx: &mut RequestCtx, decision: &'static str, status: u16) {
    let RequestCtx {
        trace: Some(t),
        verdict,
        live,
        upstream_status,
        ..
    } = ctx
    else {
        return;
    };
    let route = verdict.as_ref().map_or("-", |v| live.route_name(v.route));
    t.finish(route, decision, *upstream_status, status);
}
