//! The spans of one request: `request` (the root, or a child of a trusted incoming parent),
//! `decision` (the pipeline's verdict, an error on denial), `session.lookup` (made inside the
//! pipeline, see [`super::lookup`]) and `upstream` (the forwarded exchange, whose span the
//! upstream's `traceparent` names as parent). Faces drive it; it knows no pingora.
//!
//! An unsampled request (most of them at a low `sample_ratio`) keeps only its `request` span,
//! which the SDK does not record: no child span, no attribute, no exemplar. It still has a
//! trace id (for the access log) and forwards a `traceparent` with the sampled flag off, so
//! the upstream's tracer makes the same choice.

use super::Tracing;
use super::traceparent::{self, Parent};
use http::HeaderValue;
use opentelemetry::trace::{Span as _, SpanKind, Status, TraceContextExt, Tracer};
use opentelemetry::{Context, KeyValue};

pub struct RequestTrace {
    tracing: &'static Tracing,
    /// Holds the `request` span.
    cx: Context,
    /// The `upstream` span of the current attempt.
    upstream: Option<Context>,
    /// The incoming parent was believed: its `tracestate` is forwarded.
    pub trusted_parent: bool,
    /// The sampler kept this trace: its spans are recorded and exported.
    sampled: bool,
}

impl RequestTrace {
    /// Starts the `request` span: a child of `parent` when the peer is believed, the root of a
    /// new trace otherwise.
    pub fn start(tracing: &'static Tracing, parent: Option<Parent>, method: &str) -> Self {
        let parent_cx = match parent {
            Some(p) => Context::new().with_remote_span_context(p.span_context()),
            None => Context::new(),
        };
        // The sampler reads no attribute of ours, so they are set after it decided, and only
        // on a span that records them.
        let span = tracing
            .tracer
            .span_builder("request")
            .with_kind(SpanKind::Server)
            .start_with_context(&tracing.tracer, &parent_cx);
        let sampled = span.span_context().is_sampled();
        let cx = parent_cx.with_span(span);
        if sampled {
            cx.span()
                .set_attribute(KeyValue::new("http.request.method", method.to_string()));
        }
        RequestTrace {
            tracing,
            cx,
            upstream: None,
            trusted_parent: parent.is_some(),
            sampled,
        }
    }

    /// The trace id (for logs: the upstream's log lines carry it too, sampled or not).
    pub fn trace_id(&self) -> [u8; 16] {
        self.cx.span().span_context().trace_id().to_bytes()
    }

    /// The trace id for an exemplar: only a sampled trace can be looked up.
    pub fn exemplar_id(&self) -> Option<[u8; 16]> {
        self.sampled.then(|| self.trace_id())
    }

    /// The request id, for finding the trace from a log line.
    pub fn set_request_id(&self, id: &HeaderValue) {
        if !self.sampled {
            return;
        }
        if let Ok(id) = id.to_str() {
            self.cx
                .span()
                .set_attribute(KeyValue::new("fluxgate.request_id", id.to_string()));
        }
    }

    /// Starts the `decision` span of a sampled request; the pipeline runs with the returned
    /// context current, so the lookups it makes are its children.
    pub fn decision(&self) -> Option<Context> {
        if !self.sampled {
            return None;
        }
        let span = self.tracing.tracer.start_with_context("decision", &self.cx);
        Some(self.cx.with_span(span))
    }

    /// Ends the `decision` span with the outcome, its reason code and the stage that decided.
    pub fn decided(cx: &Context, outcome: &'static str, reason: &'static str, stage: &str) {
        let span = cx.span();
        span.set_attribute(KeyValue::new("fluxgate.decision", outcome));
        span.set_attribute(KeyValue::new("fluxgate.reason", reason));
        span.set_attribute(KeyValue::new("fluxgate.stage", stage.to_string()));
        if outcome == "denied" {
            span.set_status(Status::error(reason));
        }
        span.end();
    }

    /// The `traceparent` naming the `request` span as parent (for the decision endpoint's
    /// answer: the edge forwards it upstream).
    pub fn propagation(&self) -> HeaderValue {
        traceparent::format(self.cx.span().span_context())
    }

    /// The trace id in hex, written into `buf` (no allocation).
    pub fn trace_id_hex<'b>(&self, buf: &'b mut [u8; 32]) -> Option<&'b str> {
        hex::encode_to_slice(self.trace_id(), buf).ok()?;
        std::str::from_utf8(buf).ok()
    }

    /// Starts the `upstream` span of an attempt (ending the previous attempt's) and gives the
    /// `traceparent` to forward, which names it as parent.
    /// Unsampled, no span is made: the `traceparent` names the `request` span, flag off.
    pub fn upstream(&mut self) -> HeaderValue {
        if !self.sampled {
            return traceparent::format(self.cx.span().span_context());
        }
        self.end_upstream(None);
        let span = self
            .tracing
            .tracer
            .span_builder("upstream")
            .with_kind(SpanKind::Client)
            .start_with_context(&self.tracing.tracer, &self.cx);
        let cx = self.cx.with_span(span);
        let tp = traceparent::format(cx.span().span_context());
        self.upstream = Some(cx);
        tp
    }

    fn end_upstream(&mut self, status: Option<u16>) {
        if let Some(cx) = self.upstream.take() {
            let span = cx.span();
            match status {
                Some(s) => {
                    span.set_attribute(KeyValue::new("http.response.status_code", i64::from(s)))
                }
                None => span.set_status(Status::error("no answer")),
            }
            span.end();
        }
    }

    /// Ends the spans still open: `upstream` with what it answered, and `request` with the
    /// route, the decision and the status sent to the client.
    pub fn finish(
        &mut self,
        route: &str,
        decision: &'static str,
        upstream: Option<u16>,
        status: u16,
    ) {
        if !self.sampled {
            self.cx.span().end();
            return;
        }
        self.end_upstream(upstream);
        let span = self.cx.span();
        span.set_attribute(KeyValue::new("http.route", route.to_string()));
        span.set_attribute(KeyValue::new("fluxgate.decision", decision));
        span.set_attribute(KeyValue::new(
            "http.response.status_code",
            i64::from(status),
        ));
        if status >= 500 {
            span.set_status(Status::error("server error"));
        }
        span.end();
    }
}
