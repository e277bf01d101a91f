//! One request's attempts at its upstream: which upstream the plan names, which of its
//! addresses each attempt uses, the path and Host the route rewrites, and what a connect
//! failure does (counts toward passive ejection; an idempotent request retries on another
//! address).

use super::RequestCtx;
use super::balance::UpstreamPool;
use crate::pipeline::{Identity, Verdict};
use pingora::prelude::*;
use std::net::IpAddr;
use std::time::Instant;

/// The addresses this request has tried, and the one in use.
#[derive(Debug, Default)]
pub(super) struct Attempts {
    current: Option<usize>,
    /// Allocates only after a failure.
    tried: Vec<usize>,
    /// When the first address was chosen, and how long until the upstream's response head
    /// (the access log's `upstream_us`).
    started: Option<Instant>,
    head_us: Option<u64>,
}

impl Attempts {
    /// From choosing the first address to the upstream's response head (connects and retries
    /// included), or until now when no head came; None when nothing went upstream.
    pub(super) fn upstream_us(&self) -> Option<u64> {
        let started = self.started?;
        let since = || crate::clock::monotonic_now().saturating_duration_since(started);
        Some(self.head_us.unwrap_or_else(|| since().as_micros() as u64))
    }

    /// When the first address was chosen, and how long the upstream took to its response
    /// head (None until it came): the metrics' `timing`.
    pub(super) fn timings(&self) -> (Option<Instant>, Option<std::time::Duration>) {
        (
            self.started,
            self.head_us.map(std::time::Duration::from_micros),
        )
    }

    /// The upstream's response head arrived.
    pub(super) fn answered(&mut self) {
        if let (Some(s), None) = (self.started, self.head_us) {
            let us = crate::clock::monotonic_now().saturating_duration_since(s);
            self.head_us = Some(us.as_micros() as u64);
        }
    }
}

impl RequestCtx {
    /// The upstream the admitted request goes to.
    pub(super) fn pool(&self) -> Option<&UpstreamPool> {
        let i = match &self.verdict {
            Some(Verdict { outcome: Ok(a), .. }) => a.plan.upstream,
            _ => 0,
        };
        self.live.upstreams.get(i).map(|p| &**p)
    }
}

/// The peer for the next attempt.
pub(super) fn next_peer(ctx: &mut RequestCtx) -> Result<Box<HttpPeer>> {
    let websocket = ctx.websocket();
    let Some(pool) = ctx.pool() else {
        return Error::e_explain(InternalError, "the plan names no configured upstream");
    };
    let mut ip_key = [0u8; 16];
    let key = hash_key(ctx, pool, &mut ip_key);
    let now = crate::clock::monotonic_now();
    let Some(i) = pool.select(key, &ctx.attempts.tried, now) else {
        // Every address was tried (a retry is only asked for while one is left).
        return Err(Error::explain(ConnectNoRoute, "no upstream address left to try").into_up());
    };
    let peer = pool.peer(i, websocket);
    ctx.attempts.current = Some(i);
    ctx.attempts.started.get_or_insert(now);
    Ok(Box::new(peer))
}

/// The consistent-hashing key: the user, or the client IP.
fn hash_key<'a>(ctx: &'a RequestCtx, pool: &UpstreamPool, buf: &'a mut [u8; 16]) -> &'a [u8] {
    let Some(v) = &ctx.verdict else {
        return &[];
    };
    if pool.hashes_by_user()
        && let Ok(a) = &v.outcome
        && let Identity::User(s) = &a.identity
    {
        return s.user_id().as_bytes();
    }
    match v.client_ip {
        IpAddr::V4(ip) => {
            buf[..4].copy_from_slice(&ip.octets());
            &buf[..4]
        }
        IpAddr::V6(ip) => {
            *buf = ip.octets();
            &buf[..]
        }
    }
}

/// A connection to the current address failed: count it toward ejection, and retry an
/// idempotent request on another address while it has retries left.
pub(super) fn connect_failed(
    session: &Session,
    ctx: &mut RequestCtx,
    mut e: Box<Error>,
    metrics: &crate::metrics::Metrics,
) -> Box<Error> {
    let Some(i) = ctx.attempts.current.take() else {
        return e;
    };
    ctx.attempts.tried.push(i);
    let Some(pool) = ctx.pool() else {
        return e;
    };
    if pool.connect_failed(i, crate::clock::monotonic_now()) {
        metrics
            .upstream_ejections
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }
    let retries_used = ctx.attempts.tried.len() as u32 - 1;
    let others = pool.settings().addresses.len() > ctx.attempts.tried.len();
    // Nothing reached the upstream when a connection could not be made, but only an
    // idempotent request is retried: the client may resend the others itself.
    if others && retries_used < pool.settings().retries && idempotent(&session.req_header().method)
    {
        e.set_retry(true);
        metrics
            .upstream_retries
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }
    e
}

/// A connection to the current address was made (or reused).
pub(super) fn connected(ctx: &RequestCtx) {
    if let (Some(i), Some(pool)) = (ctx.attempts.current, ctx.pool()) {
        pool.connected(i);
    }
}

fn idempotent(m: &http::Method) -> bool {
    use http::Method as M;
    [M::GET, M::HEAD, M::OPTIONS, M::PUT, M::DELETE, M::TRACE].contains(m)
}

/// Applies the route's path rewrite (prefix stripping, computed by the pipeline) to the
/// request going upstream.
pub(super) fn rewrite(upstream: &mut RequestHeader, path: Option<&str>) -> Result<()> {
    let Some(p) = path else { return Ok(()) };
    let uri = http::Uri::try_from(p).or_err(
        InternalError,
        "the rewritten path is not a valid request target",
    )?;
    upstream.set_uri(uri);
    Ok(())
}
