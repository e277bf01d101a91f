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

use crate::denial::{BadRequest, Denial};
use crate::identity;
use crate::metrics::Metrics;
use crate::pipeline::{RequestFacts, Verdict, admitted_reason};
use crate::proxy::Live;
use arc_swap::ArcSwap;
use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Request, Response, StatusCode};
use http_body_util::Full;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use original::Refusal;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

/// What the decision endpoint works with.
pub struct ForwardAuth {
    /// The proxy's rules: a reload applies to both faces at once.
    pub live: Arc<ArcSwap<Live>>,
    pub metrics: Arc<Metrics>,
}

type Answer = Response<Full<Bytes>>;

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
        let state = state.clone();
        tokio::spawn(async move {
            let svc = service_fn(move |req| {
                let state = state.clone();
                async move { Ok::<_, std::convert::Infallible>(state.decide(req, peer.ip()).await) }
            });
            let conn = http1::Builder::new()
                .timer(hyper_util::rt::TokioTimer::new())
                .header_read_timeout(Duration::from_secs(10))
                .max_buf_size(64 * 1024)
                .serve_connection(TokioIo::new(stream), svc);
            if let Err(e) = conn.await {
                tracing::debug!(error = %e, "forward-auth connection ended with an error");
            }
        });
    }
}

impl ForwardAuth {
    /// One decision. The body of the edge's request is never read.
    pub async fn decide<B>(&self, req: Request<B>, peer: IpAddr) -> Answer {
        let started = crate::clock::monotonic_now();
        let live = self.live.load_full();
        let peer = peer.to_canonical();
        let request_id = identity::request_id(req.headers());
        let asked = original::Asked {
            method: req.method(),
            target: req.uri().path_and_query().map_or("/", |p| p.as_str()),
        };
        let original = match original::read(&live.forward_auth, peer, &asked, req.headers()) {
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
        let mut verdict =
            crate::proxy::guard::guarded(pipeline.evaluate(&facts), peer, &self.metrics).await;
        settle(&live, &mut verdict).await;
        let (outcome, reason, answer) = match &verdict.outcome {
            Ok(a) => {
                let mut h = HeaderMap::with_capacity(a.plan.set.len() + 16);
                for (k, v) in &a.plan.set {
                    h.insert(k.clone(), v.clone());
                }
                // SECURITY: every identity header is in the answer, empty when it does not
                // apply, so an edge that copies a fixed list never invents one: Caddy 2.6's
                // copy_headers sets a header missing from the answer to its placeholder's
                // literal text; nginx and Traefik send nothing for an empty value.
                for name in pipeline.rules.names.all() {
                    if !h.contains_key(name) {
                        h.insert(name.clone(), HeaderValue::from_static(""));
                    }
                }
                if let Some(limits) = &a.limit_headers {
                    for (k, v) in limits.headers() {
                        h.insert(k, v);
                    }
                }
                let outcome = match &a.would_deny {
                    Some(d) => ("would_deny", d.reason()),
                    None => ("admitted", admitted_reason(a)),
                };
                (
                    outcome.0,
                    outcome.1,
                    answer(StatusCode::OK, h, Bytes::new()),
                )
            }
            Err(d) => ("denied", d.reason(), denial(d, &request_id)),
        };
        self.metrics.forward_auth.inc(outcome, reason);
        if live.access_log {
            crate::logging::access(&crate::logging::AccessLine {
                request_id: request_id.to_str().unwrap_or("-"),
                method: original.method.as_str(),
                route: live.route_name(verdict.route),
                decision: outcome,
                reason,
                status: answer.status().as_u16(),
                latency_us: started.elapsed().as_micros() as u64,
                client_ip: verdict.client_ip,
            });
        }
        answer
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

fn answer(status: StatusCode, headers: HeaderMap, body: Bytes) -> Answer {
    let mut r = Response::new(Full::new(body));
    *r.status_mut() = status;
    *r.headers_mut() = headers;
    r
}

/// The denial as the contract writes it, with the request id.
/// The denial's JSON again, in a header of the answer: nginx's `auth_request` never passes the
/// body on (nor any status but 401/403), so its recipe writes the denial from this header and
/// `$upstream_status` instead of asking a second time (which would count twice against limits).
pub const DENIAL_BODY: http::HeaderName = http::HeaderName::from_static("x-fluxgate-denial-body");

fn denial(d: &Denial, request_id: &HeaderValue) -> Answer {
    let r = d.to_response();
    let mut h = HeaderMap::with_capacity(r.headers.len() + 2);
    for (k, v) in r.headers {
        h.append(k, v);
    }
    h.insert(identity::REQUEST_ID, request_id.clone());
    if let Ok(v) = HeaderValue::from_bytes(&r.body) {
        h.insert(DENIAL_BODY, v);
    }
    answer(r.status, h, r.body)
}

fn refusal(r: Refusal, request_id: &HeaderValue) -> Answer {
    denial(
        &Denial::BadRequest(BadRequest::Invalid(r.message())),
        request_id,
    )
}
