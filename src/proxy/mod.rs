//! The only room that touches pingora's `Session`: gathers request facts for the pipeline,
//! writes denials, picks the upstream, edits the forwarded headers, maps proxy failures to the
//! contract's JSON, and counts and logs every request once.

mod access;
mod attempt;
mod balance;
mod body;
mod cookies;
pub mod edge;
mod edit;
pub(crate) mod guard;
mod hsts;
mod ipauth;
mod live;
mod login;
mod logout;
mod raw;
mod respond;
mod sudo;
mod timing;
pub(crate) mod trace;
mod tunnel;
mod upstream;

use crate::denial::Denial;
use crate::identity;
use crate::metrics::Metrics;
use crate::pipeline::{RequestFacts, Verdict, admitted_reason};
use arc_swap::ArcSwap;
use async_trait::async_trait;
pub use balance::UpstreamPool;
use edit::Upstream;
pub use hsts::HstsListeners;
use http::HeaderValue;
pub use live::Live;
use pingora::http::{RequestHeader, ResponseHeader};
use pingora::prelude::*;
use pingora::proxy::{FailToProxy, ProxyHttp, Session};
use std::net::{IpAddr, Ipv4Addr};
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;
pub use upstream::{Balance, HashKey, HealthCheckSettings, UpstreamSettings, UpstreamTls};

/// The pingora `ProxyHttp` implementation.
pub struct FluxgateProxy {
    /// The reloadable part; `SIGHUP` swaps it.
    pub live: Arc<ArcSwap<Live>>,
    pub metrics: Arc<Metrics>,
    /// Per-connection timeouts applied to every request (restart to change).
    pub edge: edge::EdgeLimits,
    /// Connections for login capture's own exchanges (`login.rs`).
    login: pingora::connectors::http::Connector,
    /// The TLS listeners' `Strict-Transport-Security` (restart to change, as listeners are).
    hsts: HstsListeners,
}

impl FluxgateProxy {
    pub fn new(live: Arc<ArcSwap<Live>>, metrics: Arc<Metrics>, edge: edge::EdgeLimits) -> Self {
        FluxgateProxy {
            live,
            metrics,
            edge,
            login: pingora::connectors::http::Connector::new(None),
            hsts: HstsListeners::default(),
        }
    }

    /// Sends `Strict-Transport-Security` on the answers of these TLS listeners.
    pub fn with_hsts(mut self, hsts: HstsListeners) -> Self {
        self.hsts = hsts;
        self
    }
}

/// Per-request state.
pub struct RequestCtx {
    /// The config snapshot this request runs under.
    live: Arc<Live>,
    started: Instant,
    verdict: Option<Verdict>,
    /// Sent back on the response and forwarded upstream (set once the head is read).
    request_id: Option<HeaderValue>,
    /// Set when fluxgate itself answered with a failure after admission.
    failure: Option<Denial>,
    /// The logout body being captured, on `logout_all` routes.
    capture: logout::Capture,
    /// The body was read before deciding (a body-keyed limit).
    body_preread: bool,
    /// The upstream's response status, once it answered.
    upstream_status: Option<u16>,
    /// The upstream's answer to an in-band sudo proof, as far as it is watched.
    sudo_watch: sudo::Watch,
    /// The addresses tried so far.
    attempts: attempt::Attempts,
    /// A WebSocket tunnel's registration, closed on revocation (`tunnel`).
    tunnel: Option<crate::session::tunnels::TunnelGuard>,
    /// `Strict-Transport-Security` for every answer, when the request came over a TLS
    /// listener that sends it.
    hsts: Option<HeaderValue>,
    /// The request's spans, when `[tracing]` is on.
    trace: Option<Box<crate::telemetry::RequestTrace>>,
}

/// What the pipeline needs from the request head.
fn facts<'a>(
    session: &'a Session,
    (peer, sent_target): (IpAddr, Option<&'a [u8]>),
    request_id: &'a HeaderValue,
    body_read: bool,
    body: Option<&'a [u8]>,
) -> RequestFacts<'a> {
    let req = session.req_header();
    RequestFacts {
        method: &req.method,
        version: req.version,
        target: sent_target.unwrap_or(req.raw_path()),
        headers: &req.headers,
        peer,
        body,
        body_read,
        length_with_chunked: raw::length_with_chunked(session),
        request_id,
        tls: session.digest().is_some_and(|d| d.ssl_digest.is_some()),
        authority: req.uri.authority().map(|a| a.as_str()),
    }
}

impl RequestCtx {
    /// The request's trace id, when it is traced (for logs).
    pub fn trace_id(&self) -> Option<[u8; 16]> {
        self.trace.as_ref().map(|t| t.trace_id())
    }

    /// The request's trace id when its trace is sampled (for exemplars).
    pub fn exemplar_id(&self) -> Option<[u8; 16]> {
        self.trace.as_ref().and_then(|t| t.exemplar_id())
    }

    /// Admitted as a WebSocket handshake.
    fn websocket(&self) -> bool {
        matches!(&self.verdict, Some(Verdict { outcome: Ok(a), .. }) if a.websocket)
    }
}

fn peer_ip(session: &Session) -> IpAddr {
    session
        .client_addr()
        .and_then(|a| a.as_inet())
        .map(|a| a.ip())
        .unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED))
}

#[async_trait]
impl ProxyHttp for FluxgateProxy {
    type CTX = RequestCtx;

    fn new_ctx(&self) -> RequestCtx {
        RequestCtx {
            live: self.live.load_full(),
            started: crate::clock::monotonic_now(),
            verdict: None,
            request_id: None,
            failure: None,
            capture: logout::Capture::Off,
            body_preread: false,
            upstream_status: None,
            sudo_watch: Default::default(),
            attempts: Default::default(),
            tunnel: None,
            hsts: None,
            trace: None,
        }
    }

    async fn early_request_filter(
        &self,
        session: &mut Session,
        ctx: &mut RequestCtx,
    ) -> Result<()> {
        if let Some(state) = edge::Guarded::state_of(session.stream()) {
            state.head_complete();
        }
        ctx.hsts = self.hsts.for_session(session);
        // Idle time before the next request; pingora would otherwise wait forever on
        // HTTP/1.1. Only where keep-alive is still on (not after `Connection: close`, nor
        // while shutting down).
        if session.get_keepalive().is_some() {
            session.set_keepalive(Some(self.edge.keepalive_timeout.as_secs().max(1)));
        }
        session.set_read_timeout(Some(self.edge.body_timeout));
        Ok(())
    }

    async fn request_filter(&self, session: &mut Session, ctx: &mut RequestCtx) -> Result<bool> {
        let peer = peer_ip(session);
        let request_id = identity::request_id(&session.req_header().headers);
        ctx.request_id = Some(request_id.clone());
        ctx.trace = trace::start(session, ctx, peer, &request_id);
        let body = match body::preread(session, ctx, peer).await? {
            body::Preread::Skipped => None,
            body::Preread::Body(b) => b,
            body::Preread::Refused(d) => {
                respond::write_denial(session, &d, ctx).await?;
                ctx.failure = Some(d);
                return Ok(true);
            }
        };
        let sent = raw::sent_target(session);
        let facts = facts(
            session,
            (peer, sent.as_deref()),
            &request_id,
            ctx.body_preread,
            body.as_deref(),
        );
        let live = ctx.live.clone();
        let verdict = guard::decide(
            ctx.trace.as_deref(),
            live.pipeline.evaluate(&facts),
            peer,
            &self.metrics,
        )
        .await;
        let denied = verdict.outcome.as_ref().err().cloned();
        ctx.verdict = Some(verdict);
        match denied {
            None => {
                let role = ctx
                    .verdict
                    .as_ref()
                    .and_then(|v| v.outcome.as_ref().ok())
                    .and_then(|a| a.role);
                if ctx
                    .verdict
                    .as_ref()
                    .is_some_and(|v| matches!(&v.outcome, Ok(a) if a.preflight))
                {
                    respond::write_preflight(session, ctx).await?;
                    return Ok(true);
                }
                if ctx
                    .verdict
                    .as_ref()
                    .is_some_and(|v| matches!(&v.outcome, Ok(a) if a.jwks))
                {
                    respond::write_jwks(session, ctx).await?;
                    return Ok(true);
                }
                if let Some(role) = role
                    && Box::pin(ipauth::answer(&live, session, role, ctx)).await?
                {
                    return Ok(true);
                }
                if role == Some(crate::policy::Role::Login) {
                    // Boxed: the exchange's future is large (pingora's connector), and inline it
                    // would be part of, and copied with, every request's filter future.
                    Box::pin(login::answer(self, session, ctx, body)).await?;
                    return Ok(true);
                }
                if let Some(d) = tunnel::register(session, ctx).await? {
                    respond::write_denial(session, &d, ctx).await?;
                    ctx.failure = Some(d);
                    return Ok(true);
                }
                if ctx.websocket()
                    && let Some(pool) = ctx.pool()
                {
                    // A WebSocket may stay quiet for long stretches between frames.
                    session.set_read_timeout(Some(pool.settings().websocket_idle_timeout));
                }
                identity::settle_connection(&mut Upstream(session.req_header_mut()));
                logout::start(session, ctx);
                Ok(false)
            }
            Some(d) => {
                respond::write_denial(session, &d, ctx).await?;
                Ok(true)
            }
        }
    }

    async fn upstream_peer(&self, _: &mut Session, ctx: &mut RequestCtx) -> Result<Box<HttpPeer>> {
        attempt::next_peer(ctx)
    }

    fn fail_to_connect(
        &self,
        session: &mut Session,
        _peer: &HttpPeer,
        ctx: &mut RequestCtx,
        e: Box<Error>,
    ) -> Box<Error> {
        attempt::connect_failed(session, ctx, e, &self.metrics)
    }

    async fn connected_to_upstream(
        &self,
        _session: &mut Session,
        _reused: bool,
        _peer: &HttpPeer,
        _fd: std::os::unix::io::RawFd,
        _digest: Option<&pingora::protocols::Digest>,
        ctx: &mut RequestCtx,
    ) -> Result<()> {
        attempt::connected(ctx);
        Ok(())
    }

    async fn upstream_request_filter(
        &self,
        _session: &mut Session,
        upstream: &mut RequestHeader,
        ctx: &mut RequestCtx,
    ) -> Result<()> {
        // SECURITY: only an admitted verdict may reach the upstream; anything else is a bug and
        // fails closed.
        let Some(Verdict {
            outcome: Ok(admitted),
            ..
        }) = &ctx.verdict
        else {
            return Error::e_explain(
                InternalError,
                "request reached the upstream without admission",
            );
        };
        let rules = &ctx.live.pipeline.rules;
        let plan = &admitted.plan;
        let edited = edit::plain(upstream, plan.set.len(), |headers| {
            std::panic::catch_unwind(AssertUnwindSafe(|| {
                identity::apply(headers, &rules.names, &rules.cookies, plan)
            }))
        })?;
        if edited.is_err() {
            self.metrics.panics.fetch_add(1, Ordering::Relaxed);
            return Error::e_explain(InternalError, "panic while preparing the upstream request");
        }
        attempt::rewrite(upstream, admitted.plan.path.as_deref())?;
        trace::forward(ctx, upstream)
    }

    async fn request_body_filter(
        &self,
        _session: &mut Session,
        body: &mut Option<bytes::Bytes>,
        end_of_stream: bool,
        ctx: &mut RequestCtx,
    ) -> Result<()> {
        logout::on_body(ctx, body.as_ref(), end_of_stream);
        Ok(())
    }

    fn response_body_filter(
        &self,
        _session: &mut Session,
        body: &mut Option<bytes::Bytes>,
        _end_of_stream: bool,
        ctx: &mut RequestCtx,
    ) -> Result<Option<std::time::Duration>> {
        sudo::on_body(body.as_ref(), ctx);
        Ok(None)
    }

    async fn response_filter(
        &self,
        session: &mut Session,
        resp: &mut ResponseHeader,
        ctx: &mut RequestCtx,
    ) -> Result<()> {
        ctx.upstream_status = Some(resp.status.as_u16());
        ctx.attempts.answered();
        sudo::on_response(resp, ctx);
        cookies::on_response(resp, ctx);
        if logout::on_response(self, resp, ctx).await.is_err() {
            return Error::e_explain(InternalError, "logout: revocation failed");
        }
        edit::finish_response(resp, session, ctx)
    }

    async fn fail_to_proxy(
        &self,
        session: &mut Session,
        e: &Error,
        ctx: &mut RequestCtx,
    ) -> FailToProxy {
        // A failure a filter already chose (a logout that could not revoke) is answered as such.
        let denial = match ctx.failure.take() {
            Some(d) => Some(d),
            None => respond::denial_for(e),
        };
        let Some(denial) = denial else {
            return FailToProxy {
                error_code: 0,
                can_reuse_downstream: false,
            };
        };
        if *e.esource() == ErrorSource::Upstream {
            self.metrics.upstream_errors.inc(denial.reason(), "");
        }
        let code = denial.status().as_u16();
        if session.response_written().is_none() {
            // The connection is not reused after a failure; say so.
            session.set_keepalive(None);
            let _ = respond::write_denial(session, &denial, ctx).await;
        }
        ctx.failure = Some(denial);
        FailToProxy {
            error_code: code,
            can_reuse_downstream: false,
        }
    }

    fn suppress_error_log(&self, _session: &Session, _ctx: &RequestCtx, e: &Error) -> bool {
        // Client mistakes are answered with 400 and counted in the access log and metrics;
        // they are not server errors worth an ERROR line each.
        *e.esource() == ErrorSource::Downstream
    }

    async fn logging(&self, session: &mut Session, _e: Option<&Error>, ctx: &mut RequestCtx) {
        if let Some(state) = edge::Guarded::state_of(session.stream()) {
            state.request_done();
        }
        body::settle_lockout(ctx).await;
        sudo::settle(ctx).await;
        let status = session
            .response_written()
            .map(|r| r.status.as_u16())
            .unwrap_or(0);
        let (outcome, reason) = match (&ctx.verdict, &ctx.failure) {
            (_, Some(f)) => ("failed", f.reason()),
            (Some(v), None) => match &v.outcome {
                Ok(a) => match &a.would_deny {
                    Some(d) => ("would_deny", d.reason()),
                    None => ("admitted", admitted_reason(a)),
                },
                Err(d) => ("denied", d.reason()),
            },
            (None, None) => ("failed", "unparseable_request"),
        };
        self.metrics.decisions.inc(outcome, reason);
        trace::finish(ctx, outcome, status);
        timing::done(self, ctx, outcome);
        if outcome == "would_deny"
            && let Some(v) = &ctx.verdict
        {
            self.report(ctx, v, reason, status);
        }
        self.metrics
            .responses
            .inc(respond::status_class(status), "");
        if ctx.live.access_log {
            access::line(session, ctx, outcome, reason, status);
        }
    }
}

impl FluxgateProxy {
    /// Report mode: counts a would-deny by reason and route, and says so in the log (never the
    /// credential: only the reason, the route, and what the upstream answered).
    fn report(&self, ctx: &RequestCtx, v: &Verdict, reason: &'static str, status: u16) {
        let route = ctx.live.route_label(v.route);
        self.metrics.would_deny.inc(reason, route);
        tracing::info!(
            reason,
            route,
            stage = v.stage.name(),
            status,
            client_ip = %v.client_ip,
            request_id = ctx.request_id.as_ref().and_then(|r| r.to_str().ok()).unwrap_or("-"),
            "report mode: would deny; forwarded without identity"
        );
    }
}
