//! OpenTelemetry traces (`[tracing]`): the real binary exports its spans by OTLP/HTTP to a small
//! in-process receiver, which decodes them; the recording upstream shows the `traceparent`
//! fluxgate forwarded.

use crate::common::*;
use bytes::Bytes;
use fluxgate::clock::monotonic_now;
use http_body_util::{BodyExt, Full};
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::any_value::Value;
use opentelemetry_proto::tonic::trace::v1::Span;
use opentelemetry_proto::tonic::trace::v1::status::StatusCode;
use prost::Message;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

const PARENT_TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const PARENT_SPAN: &str = "00f067aa0ba902b7";

/// An OTLP/HTTP traces receiver on port 0: keeps every span it is sent.
struct Receiver {
    addr: SocketAddr,
    spans: Arc<Mutex<Vec<Span>>>,
    _rt: tokio::runtime::Runtime,
}

impl Receiver {
    fn start() -> Receiver {
        let spans: Arc<Mutex<Vec<Span>>> = Arc::default();
        let keep = spans.clone();
        let (rt, addr) = serve_http(move |req| {
            let keep = keep.clone();
            async move {
                let body = req.into_body().collect().await.unwrap().to_bytes();
                let export = ExportTraceServiceRequest::decode(body).unwrap();
                let mut kept = keep.lock().unwrap();
                for rs in export.resource_spans {
                    for ss in rs.scope_spans {
                        kept.extend(ss.spans);
                    }
                }
                hyper::Response::builder()
                    .header("content-type", "application/x-protobuf")
                    .body(Full::new(Bytes::new()))
                    .unwrap()
            }
        });
        Receiver {
            addr,
            spans,
            _rt: rt,
        }
    }

    /// The spans of trace `trace` (hex), once `n` of them have arrived.
    fn wait_trace(&self, trace: &str, n: usize) -> Vec<Span> {
        let deadline = monotonic_now() + Duration::from_secs(20);
        loop {
            let found: Vec<Span> = self
                .spans
                .lock()
                .unwrap()
                .iter()
                .filter(|s| hex::encode(&s.trace_id) == trace)
                .cloned()
                .collect();
            if found.len() >= n || monotonic_now() > deadline {
                return found;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

fn config(receiver: SocketAddr, extra: &str) -> String {
    format!(
        "[tracing]\notlp_endpoint = \"http://{receiver}/v1/traces\"\nbatch_delay = \"50ms\"\n{extra}\n[[route]]\nname = \"private\"\npath = \"/private\"\nauth = \"required\"\n"
    )
}

fn named<'a>(spans: &'a [Span], name: &str) -> &'a Span {
    spans
        .iter()
        .find(|s| s.name == name)
        .unwrap_or_else(|| panic!("no {name} span in {spans:?}"))
}

fn attr(s: &Span, key: &str) -> Option<String> {
    let v = s.attributes.iter().find(|a| a.key == key)?.value.as_ref()?;
    match v.value.as_ref()? {
        Value::StringValue(s) => Some(s.clone()),
        Value::IntValue(i) => Some(i.to_string()),
        other => Some(format!("{other:?}")),
    }
}

/// The trace id and parent span id of a forwarded `traceparent`, with its flags.
fn forwarded(seen: &Recorded) -> (String, String, String) {
    let all = seen.all("traceparent");
    assert_eq!(all.len(), 1, "one traceparent upstream: {all:?}");
    let parts: Vec<&str> = all[0].split('-').collect();
    assert_eq!(parts.len(), 4, "{}", all[0]);
    assert_eq!(parts[0], "00");
    (parts[1].into(), parts[2].into(), parts[3].into())
}

#[test]
fn spans_of_an_admitted_and_a_denied_request_form_their_trees() {
    let rx = Receiver::start();
    let up = Upstream::start();
    let fg = Fluxgate::start(
        up.addr,
        &config(
            rx.addr,
            "sample_ratio = 0.0\n[client_ip]\ntrusted_proxies = [\"127.0.0.1/32\"]",
        ),
    );
    let (token, _) = fg.create_session(serde_json::json!({"user_id": "42"}));

    // Admitted, continuing a trusted proxy's sampled trace (the ratio 0.0 would drop a new one).
    let r = Req::get("/private")
        .header("authorization", &token)
        .header(
            "traceparent",
            &format!("00-{PARENT_TRACE}-{PARENT_SPAN}-01"),
        )
        .header("tracestate", "edge=1")
        .send(fg.proxy);
    assert_eq!(r.status, 200, "{}", r.text());
    let spans = rx.wait_trace(PARENT_TRACE, 4);
    let request = named(&spans, "request");
    let decision = named(&spans, "decision");
    let lookup = named(&spans, "session.lookup");
    let upstream = named(&spans, "upstream");
    assert_eq!(hex::encode(&request.parent_span_id), PARENT_SPAN);
    assert_eq!(decision.parent_span_id, request.span_id);
    assert_eq!(lookup.parent_span_id, decision.span_id);
    assert_eq!(upstream.parent_span_id, request.span_id);
    assert_eq!(attr(request, "http.request.method").as_deref(), Some("GET"));
    assert_eq!(attr(request, "http.route").as_deref(), Some("private"));
    assert_eq!(
        attr(request, "fluxgate.decision").as_deref(),
        Some("admitted")
    );
    assert_eq!(
        attr(request, "http.response.status_code").as_deref(),
        Some("200")
    );
    assert_eq!(
        attr(decision, "fluxgate.decision").as_deref(),
        Some("admitted")
    );
    assert_eq!(
        attr(lookup, "fluxgate.session.source").as_deref(),
        Some("store")
    );
    assert_eq!(
        attr(lookup, "fluxgate.session.result").as_deref(),
        Some("found")
    );
    assert_eq!(
        attr(upstream, "http.response.status_code").as_deref(),
        Some("200")
    );
    // The upstream continues the same trace, under fluxgate's upstream span, still sampled.
    let seen = up.last();
    let (trace, parent, flags) = forwarded(&seen);
    assert_eq!(trace, PARENT_TRACE);
    assert_eq!(parent, hex::encode(&upstream.span_id));
    assert_eq!(flags, "01");
    assert_eq!(seen.all("tracestate"), vec!["edge=1".to_string()]);
    // The access line names the trace.
    fg.wait_log(&format!("\"trace_id\":\"{PARENT_TRACE}\""));

    // Denied: no credential. A trusted parent again, so the trace can be found.
    let denied_trace = "0af7651916cd43dd8448eb211c80319c";
    Req::get("/private")
        .header(
            "traceparent",
            &format!("00-{denied_trace}-b7ad6b7169203331-01"),
        )
        .send(fg.proxy)
        .denial(401, "UNAUTHORIZED");
    let spans = rx.wait_trace(denied_trace, 2);
    let request = named(&spans, "request");
    let decision = named(&spans, "decision");
    assert_eq!(decision.parent_span_id, request.span_id);
    assert_eq!(
        attr(decision, "fluxgate.decision").as_deref(),
        Some("denied")
    );
    assert_eq!(
        attr(decision, "fluxgate.reason").as_deref(),
        Some("no_credential")
    );
    let status = decision.status.as_ref().expect("a status on the denial");
    assert_eq!(status.code, StatusCode::Error as i32);
    assert_eq!(
        attr(request, "http.response.status_code").as_deref(),
        Some("401")
    );
    assert!(
        spans.iter().all(|s| s.name != "upstream"),
        "a denied request has no upstream span: {spans:?}"
    );
}

#[test]
fn an_untrusted_client_cannot_choose_the_trace_id_or_force_sampling() {
    let rx = Receiver::start();
    let up = Upstream::start();
    // No trusted proxies: the client is the peer, and sampling of new traces is off.
    let fg = Fluxgate::start(up.addr, &config(rx.addr, "sample_ratio = 0.0"));
    let (token, _) = fg.create_session(serde_json::json!({"user_id": "42"}));
    let r = Req::get("/private")
        .header("authorization", &token)
        .header(
            "traceparent",
            &format!("00-{PARENT_TRACE}-{PARENT_SPAN}-01"),
        )
        .header("tracestate", "vendor=forged")
        .send(fg.proxy);
    assert_eq!(r.status, 200, "{}", r.text());
    let seen = up.last();
    let (trace, parent, flags) = forwarded(&seen);
    assert_ne!(trace, PARENT_TRACE, "the client chose the trace id");
    assert_ne!(parent, PARENT_SPAN);
    assert_eq!(flags, "00", "the client forced sampling");
    assert!(
        seen.all("tracestate").is_empty(),
        "the client's tracestate was forwarded"
    );

    // A malformed traceparent from a trusted peer is ignored (a new trace), never refused.
    let trusted = Fluxgate::start(
        up.addr,
        &config(
            rx.addr,
            "sample_ratio = 1.0\n[client_ip]\ntrusted_proxies = [\"127.0.0.1/32\"]",
        ),
    );
    let (token, _) = trusted.create_session(serde_json::json!({"user_id": "42"}));
    let upper = PARENT_TRACE.to_uppercase();
    let r = Req::get("/private")
        .header("authorization", &token)
        .header("traceparent", &format!("00-{upper}-{PARENT_SPAN}-01"))
        .header("tracestate", "edge=1")
        .send(trusted.proxy);
    assert_eq!(r.status, 200, "{}", r.text());
    let seen = up.last();
    let (trace, _, flags) = forwarded(&seen);
    assert_ne!(trace, PARENT_TRACE.to_string());
    assert_eq!(flags, "01", "sampled by the ratio");
    assert!(seen.all("tracestate").is_empty());
}

#[test]
fn the_decision_endpoint_answers_the_traceparent_the_edge_forwards() {
    let rx = Receiver::start();
    let up = Upstream::start();
    let fg = Fluxgate::start(
        up.addr,
        &config(
            rx.addr,
            "sample_ratio = 0.0\n[forward_auth]\nlisten = \"127.0.0.1:0\"",
        ),
    );
    let (token, _) = fg.create_session(serde_json::json!({"user_id": "42"}));
    let r = Req::get("/auth")
        .header("x-original-method", "GET")
        .header("x-original-uri", "/private")
        .header("authorization", &token)
        .header(
            "traceparent",
            &format!("00-{PARENT_TRACE}-{PARENT_SPAN}-01"),
        )
        .send(fg.forward_auth.unwrap());
    assert_eq!(r.status, 200, "{}", r.text());
    let spans = rx.wait_trace(PARENT_TRACE, 3);
    let request = named(&spans, "request");
    assert_eq!(hex::encode(&request.parent_span_id), PARENT_SPAN);
    assert_eq!(named(&spans, "decision").parent_span_id, request.span_id);
    let tp = r
        .header("traceparent")
        .expect("a traceparent in the answer");
    assert_eq!(
        tp,
        format!("00-{PARENT_TRACE}-{}-01", hex::encode(&request.span_id))
    );
}

#[test]
fn with_tracing_off_a_malformed_traceparent_is_never_forwarded_as_sent() {
    let up = Upstream::start();
    let fg = Fluxgate::start(up.addr, "[routing.default]\nauth = \"none\"\n");
    let good = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
    for bad in [
        // Uppercase hex, an all-zero trace id, a version fluxgate does not read, garbage.
        "00-0AF7651916CD43DD8448EB211C80319C-B7AD6B7169203331-01",
        "00-00000000000000000000000000000000-b7ad6b7169203331-01",
        "ff-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
        "<script>",
    ] {
        let r = fg.send(
            &Req::get("/x")
                .header("traceparent", bad)
                .header("tracestate", "vendor=x"),
        );
        assert_eq!(
            r.status, 200,
            "a bad traceparent is never a reason to refuse"
        );
        let seen = up.last();
        assert_eq!(seen.get("traceparent"), None, "{bad} was forwarded");
        assert_eq!(seen.get("tracestate"), None, "its tracestate too");
    }
    // Two, even if both are well formed: which one would the upstream read?
    fg.send(
        &Req::get("/x")
            .header("traceparent", good)
            .header("traceparent", good),
    );
    assert_eq!(up.last().all("traceparent"), Vec::<String>::new());
    // A well-formed one passes through untouched when fluxgate is not tracing.
    fg.send(
        &Req::get("/x")
            .header("traceparent", good)
            .header("tracestate", "vendor=x"),
    );
    let seen = up.last();
    assert_eq!(seen.get("traceparent").as_deref(), Some(good));
    assert_eq!(seen.get("tracestate").as_deref(), Some("vendor=x"));
}

/// At a low ratio most requests are not sampled. Such a request records nothing (no span is
/// exported, no exemplar points at a trace that does not exist) but keeps its trace id: the
/// upstream gets a `traceparent` with the sampled flag off, and the access log line names it.
#[test]
fn an_unsampled_request_exports_nothing_and_still_forwards_its_trace_id() {
    let rx = Receiver::start();
    let up = Upstream::start();
    let fg = Fluxgate::start(
        up.addr,
        &config(
            rx.addr,
            "sample_ratio = 0.0\n[client_ip]\ntrusted_proxies = [\"127.0.0.1/32\"]",
        ),
    );
    let (token, _) = fg.create_session(serde_json::json!({"user_id": "42"}));
    // A trusted parent's sampled flag wins: this one is recorded.
    let r = Req::get("/private")
        .header("authorization", &token)
        .header(
            "traceparent",
            &format!("00-{PARENT_TRACE}-{PARENT_SPAN}-01"),
        )
        .send(fg.proxy);
    assert_eq!(r.status, 200, "{}", r.text());
    let sampled = rx.wait_trace(PARENT_TRACE, 4);
    for name in ["request", "decision", "session.lookup", "upstream"] {
        named(&sampled, name);
    }

    // Then one the ratio leaves out.
    let r = Req::get("/private")
        .header("authorization", &token)
        .send(fg.proxy);
    assert_eq!(r.status, 200, "{}", r.text());
    let (unsampled, parent, flags) = forwarded(&up.last());
    assert_eq!(flags, "00");
    assert_eq!(unsampled.len(), 32);
    assert_ne!(unsampled, "0".repeat(32));
    assert_ne!(parent, "0".repeat(16));
    fg.wait_log(&format!("\"trace_id\":\"{unsampled}\""));
    // The exemplars still name the sampled trace: the unsampled one did not replace them.
    let om = Req::get("/metrics")
        .header("accept", "application/openmetrics-text; version=1.0.0")
        .send(fg.admin)
        .text();
    assert!(om.contains(&format!("trace_id=\"{PARENT_TRACE}\"")), "{om}");
    assert!(
        !om.contains(&unsampled),
        "an exemplar names an unsampled trace:\n{om}"
    );
    // Nothing of it is exported (one more batch delay for a span that would have been).
    std::thread::sleep(Duration::from_millis(300));
    let all = rx.spans.lock().unwrap().clone();
    assert!(
        all.iter().all(|s| hex::encode(&s.trace_id) != unsampled),
        "an unsampled request exported spans: {all:?}"
    );
}
