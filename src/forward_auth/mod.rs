//! The decision endpoint for an existing edge proxy (nginx `auth_request`, Caddy
//! `forward_auth`, Traefik ForwardAuth): the edge describes the original request in headers,
//! fluxgate runs the same `Pipeline::evaluate` as the proxy and answers
//!
//! - admitted: 200, no body, with every header of the upstream plan (identity, request id,
//!   forwarding headers, a forwarded `Authorization`) and the `X-RateLimit-*` headers: the
//!   edge copies them onto the upstream request;
//! - denied: the denial's status, headers and JSON body, which the edge returns to the client;
//! - not a trusted edge, or an ambiguous description: 400 JSON (`original.rs`).
//!
//! Served by hyper on its own listener; pingora-free. The edge never tells fluxgate what the
//! upstream answered, so a lockout attempt is settled as "not failed" at once and nothing
//! happens after the answer (no login capture, logout revocation or sudo capture); the config
//! refuses routes that rely on those unless they acknowledge it (`config/forward_auth.rs`).

pub(crate) mod original;
pub(crate) mod serve;

use crate::denial::{BadRequest, Denial, Limit};
use crate::identity;
use crate::metrics::Metrics;
use crate::pipeline::{RequestFacts, Verdict, admitted_reason};
use crate::proxy::Live;
use crate::proxy::trace;
use arc_swap::ArcSwap;
use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode};
use original::Refusal;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

/// On an admitted answer when the request is traced: the parent the edge forwards upstream.
const TRACEPARENT: HeaderName = HeaderName::from_static(crate::telemetry::traceparent::TRACEPARENT);

/// What the decision endpoint works with.
pub struct ForwardAuth {
    /// The proxy's rules: a reload applies to both faces at once.
    pub live: Arc<ArcSwap<Live>>,
    pub metrics: Arc<Metrics>,
}

/// A decision's answer, before `serve` writes it.
#[derive(Debug)]
pub struct Answer {
    pub status: StatusCode,
    pub headers: Vec<(HeaderName, HeaderValue)>,
    pub body: Bytes,
}

/// Serves decisions on `listener` until `shutdown` resolves.
pub async fn serve(
    listener: tokio::net::TcpListener,
    state: Arc<ForwardAuth>,
    mut shutdown: tokio::sync::watch::Receiver<bool>,
) {
    loop {
        let (stream, peer) = tokio::select! {
            r = listener.accept() => match r {
                Ok(s) => s,
                Err(e) => {
                    tracing::warn!(error = %e, "forward-auth accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = shutdown.changed() => return,
        };
        let _ = stream.set_nodelay(true);
        tokio::spawn(serve::connection(stream, peer.ip(), state.clone()));
    }
}

impl ForwardAuth {
    /// One decision on the edge's request head (its body is never read).
    pub async fn decide(
        &self,
        method: &Method,
        target: &str,
        fields: original::Fields,
        peer: IpAddr,
    ) -> Answer {
        let live = self.live.load_full();
        // Only the access log reports the latency: no clock read without it.
        let started = live.access_log.then(crate::clock::monotonic_now);
        let peer = peer.to_canonical();
        let request_id = identity::request_id_among(
            fields
                .iter()
                .filter(|(n, _)| *n == identity::REQUEST_ID)
                .map(|(_, v)| v),
        );
        let asked = original::Asked { method, target };
        let original = match original::read(&live.forward_auth, peer, &asked, fields) {
            Ok(o) => o,
            Err(r) => {
                self.metrics.forward_auth.inc("refused", r.reason());
                tracing::info!(reason = r.reason(), %peer, "forward-auth request refused");
                return refusal(r, &request_id);
            }
        };
        let facts = RequestFacts {
            method: &original.method,
            version: http::Version::HTTP_11,
            target: &original.target,
            headers: &original.headers,
            peer: original.client_ip,
            body: None,
            body_read: false,
            length_with_chunked: false,
            request_id: &request_id,
            tls: original.tls,
            authority: None,
        };
        let pipeline = &live.pipeline;
        // The peer is a trusted edge (`original::read` refused anyone else).
        let mut trace = trace::begin(
            &original.headers,
            original.method.as_str(),
            &request_id,
            true,
        );
        let mut verdict = crate::proxy::guard::decide(
            trace.as_deref(),
            pipeline.evaluate(&facts),
            peer,
            &self.metrics,
        )
        .await;
        settle(&live, &mut verdict).await;
        let (route, client_ip) = (verdict.route, verdict.client_ip);
        // Who, for the access log (the outcome is moved into the answer below); a user id is
        // at most 23 bytes inline, so no allocation.
        let who = verdict
            .session()
            .filter(|_| live.access_log)
            .map(|s| (s.sid, smol_str::SmolStr::new(s.user_id())));
        let (outcome, reason, answer) = match verdict.outcome {
            // SECURITY: the pipeline admits a JWKS request only because the proxy answers it
            // itself; an edge would forward it upstream past the route's rules. Refused here
            // (the admin listener serves the JWKS to backends behind an edge).
            Ok(a) if a.jwks => {
                let d = Denial::Forbidden;
                ("denied", d.reason(), denial(&d, &request_id))
            }
            Ok(a) => {
                let outcome = match &a.would_deny {
                    Some(d) => ("would_deny", d.reason()),
                    None => ("admitted", admitted_reason(&a)),
                };
                (outcome.0, outcome.1, admitted(pipeline, a, original.nginx))
            }
            Err(d) => ("denied", d.reason(), denial(&d, &request_id)),
        };
        self.metrics.forward_auth.inc(outcome, reason);
        let mut answer = answer;
        if let Some(t) = trace.as_mut() {
            // The edge forwards it upstream, so the upstream's spans join this trace.
            if answer.status == StatusCode::OK {
                answer.headers.push((TRACEPARENT, t.propagation()));
            }
            t.finish(
                live.route_name(route),
                outcome,
                None,
                answer.status.as_u16(),
            );
        }
        let mut hex = [0u8; 32];
        if live.access_log {
            crate::logging::access(&crate::logging::AccessLine {
                request_id: request_id.to_str().unwrap_or("-"),
                method: original.method.as_str(),
                route: live.route_name(route),
                route_template: live.route_template(route),
                target: live.access_log_path.then_some(original.target.as_slice()),
                decision: outcome,
                reason,
                status: answer.status.as_u16(),
                latency_us: started.map_or(0, |s| s.elapsed().as_micros() as u64),
                upstream_us: None,
                client_ip,
                user_id: who.as_ref().map(|w| w.1.as_str()),
                sid: who.as_ref().map(|w| &w.0),
                bytes_in: 0,
                bytes_out: answer.body.len() as u64,
                trace_id: trace.as_ref().and_then(|t| t.trace_id_hex(&mut hex)),
            });
        }
        answer
    }
}

impl ForwardAuth {
    /// The answer to bytes that are not a request head (`serve`): 400, 408 or 431 in the
    /// contract's JSON, counted like the other refusals.
    fn unreadable(&self, status: StatusCode) -> Answer {
        let (reason, d) = match status {
            StatusCode::REQUEST_TIMEOUT => ("head_timeout", Denial::Limit(Limit::HeadTimeout)),
            StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE => {
                ("head_too_large", Denial::Limit(Limit::HeadersTooLarge))
            }
            _ => (
                "unparseable_request",
                Denial::BadRequest(BadRequest::Unparseable),
            ),
        };
        self.metrics.forward_auth.inc("refused", reason);
        denial(&d, &identity::request_id(&HeaderMap::new()))
    }
}

/// The 200 for an admitted request: the upstream plan's headers (moved, not copied), every
/// identity header (unless `nginx` described the request), and the `X-RateLimit-*` headers.
fn admitted(
    pipeline: &crate::pipeline::Pipeline,
    a: crate::pipeline::Admitted,
    nginx: bool,
) -> Answer {
    let names = pipeline.rules.names.all();
    let set = a.plan.set;
    // SECURITY: every identity header is in the answer, empty when it does not apply, so an
    // edge that copies a fixed list never invents one: Caddy 2.6's copy_headers sets a header
    // missing from the answer to its placeholder's literal text, and Envoy keeps the client's
    // copy of a header the answer lacks. nginx needs no stand-ins: `auth_request_set` reads a
    // missing header as empty, and `proxy_set_header` with an empty value sends nothing and
    // drops the client's copy all the same, so its answers stay shorter (every header is
    // parsed by the edge on every request).
    let absent = if nginx {
        [false; crate::identity::COUNT]
    } else {
        names.each_ref().map(|n| !set.iter().any(|(k, _)| k == n))
    };
    let mut h = Vec::with_capacity(set.len() + names.len() + 4);
    // The edge routes the request itself: a route's `set_host` is the proxy's.
    h.extend(set.into_iter().filter(|(k, _)| *k != http::header::HOST));
    for (name, absent) in names.iter().zip(absent) {
        if absent {
            h.push((name.clone(), HeaderValue::from_static("")));
        }
    }
    h.extend(a.limit_headers.iter().flat_map(|l| l.headers()));
    Answer {
        status: StatusCode::OK,
        headers: h,
        body: Bytes::new(),
    }
}

/// Settles what waits for the upstream's answer: the edge never reports it, so a lockout
/// attempt and an in-band sudo proof's attempt count as "not failed" (documented).
async fn settle(live: &Live, v: &mut Verdict) {
    let limits = &live.pipeline.rules.limits;
    if let Some(r) = v.reservation.take() {
        limits.settle(&r, false).await;
    }
    if let Some(r) = v.sudo_attempt.take() {
        limits.settle(&r, false).await;
    }
}

/// The denial as the contract writes it, with the request id.
/// The denial's JSON again, in a header of the answer: nginx's `auth_request` never passes the
/// body on (nor any status but 401/403), so its recipe writes the denial from this header and
/// `$upstream_status` instead of asking a second time (which would count twice against limits).
pub const DENIAL_BODY: http::HeaderName = http::HeaderName::from_static("x-fluxgate-denial-body");

fn denial(d: &Denial, request_id: &HeaderValue) -> Answer {
    let r = d.to_response();
    let mut h = Vec::with_capacity(r.headers.len() + 2);
    h.extend(
        r.headers
            .into_iter()
            .filter(|(k, _)| *k != identity::REQUEST_ID && *k != DENIAL_BODY),
    );
    h.push((identity::REQUEST_ID, request_id.clone()));
    if let Ok(v) = HeaderValue::from_bytes(&r.body) {
        h.push((DENIAL_BODY, v));
    }
    Answer {
        status: r.status,
        headers: h,
        body: r.body,
    }
}

fn refusal(r: Refusal, request_id: &HeaderValue) -> Answer {
    denial(
        &Denial::BadRequest(BadRequest::Invalid(r.message())),
        request_id,
    )
}
