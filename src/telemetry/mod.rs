//! OpenTelemetry traces (`[tracing]`): one process-wide tracer, set at start when
//! `otlp_endpoint` is configured, and the spans of one request ([`RequestTrace`]).
//!
//! Off (the default) costs one branch per request: [`enabled`] reads a `OnceLock` that was never
//! set, and nothing else is read or allocated. On, spans are built with the OpenTelemetry API,
//! sampled parent-based (a trusted parent's sampled flag wins, otherwise `sample_ratio`), queued
//! in the SDK's batch processor (a bounded queue on its own thread: a full queue drops the span
//! and counts it, it never blocks a request; the count is logged at shutdown) and exported by
//! OTLP/HTTP protobuf.
//!
//! Metrics live in `metrics.rs` and the access log in `logging.rs`.

mod otlp_client;
pub mod request;
pub mod traceparent;

use opentelemetry::trace::{TraceContextExt, Tracer, TracerProvider};
use opentelemetry::{Context, KeyValue};
use opentelemetry_otlp::{Protocol, WithExportConfig, WithHttpConfig};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::trace::{
    BatchConfigBuilder, BatchSpanProcessor, Sampler, SdkTracer, SdkTracerProvider,
};
pub use request::RequestTrace;
use std::future::Future;
use std::sync::{Arc, OnceLock};

/// Whose incoming `traceparent` (and `tracestate`) is believed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TrustIncoming {
    /// Only from peers in `[client_ip] trusted_proxies` (the default).
    TrustedProxies,
    /// From anyone (fluxgate is not the edge of the trace).
    Always,
    /// From no one: every request starts a new trace.
    Never,
}

/// `[tracing]`, validated.
#[derive(Debug, Clone, PartialEq)]
pub struct TracingSettings {
    /// The OTLP/HTTP traces URL (`http://collector:4318/v1/traces`).
    pub endpoint: String,
    /// The share of new traces kept, 0.0 to 1.0.
    pub sample_ratio: f64,
    pub trust: TrustIncoming,
    pub service_name: String,
    /// The longest a finished span waits in the queue before its batch is sent.
    pub batch_delay: std::time::Duration,
}

// The ratio is validated finite (0.0..=1.0), so equality is total.
impl Eq for TracingSettings {}

/// The process's tracer, once tracing is on.
pub struct Tracing {
    tracer: SdkTracer,
    provider: SdkTracerProvider,
    pub trust: TrustIncoming,
}

static TRACING: OnceLock<Tracing> = OnceLock::new();

/// The tracer, when `[tracing]` is on: the one branch a request pays when it is off.
#[inline]
pub fn enabled() -> Option<&'static Tracing> {
    TRACING.get()
}

/// Starts the exporter and sets the process's tracer. Once per process; a second call (or a
/// reload) keeps the first tracer.
pub fn init(s: &TracingSettings) -> Result<(), String> {
    if TRACING.get().is_some() {
        return Ok(());
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .thread_name("fluxgate-otlp")
        .enable_all()
        .build()
        .map_err(|e| format!("tracing: cannot start the export runtime: {e}"))?;
    let client = otlp_client::OtlpClient::new(Arc::new(rt))?;
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_http_client(client)
        .with_protocol(Protocol::HttpBinary)
        .with_endpoint(s.endpoint.clone())
        .with_timeout(otlp_client::EXPORT_TIMEOUT)
        .build()
        .map_err(|e| format!("tracing: cannot build the OTLP exporter: {e}"))?;
    // The batch processor's queue (2048 spans) and batch size (512) are the SDK's defaults,
    // which honour the standard OTEL_BSP_* environment variables; the delay is `batch_delay`.
    let batch = BatchConfigBuilder::default()
        .with_scheduled_delay(s.batch_delay)
        .build();
    let provider = SdkTracerProvider::builder()
        .with_span_processor(
            BatchSpanProcessor::builder(exporter)
                .with_batch_config(batch)
                .build(),
        )
        .with_sampler(Sampler::ParentBased(Box::new(Sampler::TraceIdRatioBased(
            s.sample_ratio,
        ))))
        .with_resource(
            Resource::builder()
                .with_service_name(s.service_name.clone())
                .build(),
        )
        .build();
    let tracer = provider.tracer("fluxgate");
    let _ = TRACING.set(Tracing {
        tracer,
        provider,
        trust: s.trust,
    });
    Ok(())
}

/// Exports what is queued and stops the exporter (at shutdown). Blocking: call it off the
/// async threads.
pub fn shutdown() {
    if let Some(t) = enabled()
        && let Err(e) = t.provider.shutdown()
    {
        tracing::warn!(error = %e, "tracing: the last spans could not be exported");
    }
}

/// Runs `lookup` inside a `session.lookup` span, a child of the current decision span, with
/// `source` (`store` or `backend`) and what `result` says of the outcome. Without tracing, or
/// outside a traced decision, it is `lookup` itself.
///
/// Not an `async fn`: one would hold `lookup` twice (its argument, and the awaited future),
/// doubling the session lookup's share of every request's future.
pub fn lookup<T, F: Future<Output = T>>(
    source: &'static str,
    lookup: F,
    result: impl Fn(&T) -> &'static str,
) -> impl Future<Output = T> {
    use futures_util::FutureExt;
    let span = enabled().and_then(|t| {
        let cx = Context::current();
        cx.has_active_span()
            .then(|| cx.with_span(t.tracer.start_with_context("session.lookup", &cx)))
    });
    lookup.map(move |out| {
        if let Some(cx) = span {
            let span = cx.span();
            span.set_attribute(KeyValue::new("fluxgate.session.source", source));
            span.set_attribute(KeyValue::new("fluxgate.session.result", result(&out)));
            span.end();
        }
        out
    })
}
