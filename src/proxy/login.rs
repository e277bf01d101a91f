//! Login capture's exchange. On a `login` route fluxgate sends the (already read) request to the
//! upstream itself, reads the answer up to `[login] max_body_bytes` before any of it goes to the
//! client, and only then answers, so that the session cookie can be set from a token that is in
//! the body (`policy::login` decides).
//!
//! Why not the normal proxy path: pingora writes the response head to the client before the
//! first body byte is read (cloudflare/pingora#106), so a `Set-Cookie` learned from the body could
//! never be added. This is nginx's fully buffered subrequest (`ngx.location.capture`) pattern, on
//! pingora's own connector and the very `HttpPeer` proxied requests use (address, TLS, CA,
//! timeouts), with the same identity plan applied to the request.

use super::{FluxgateProxy, RequestCtx, edit::Upstream};
use crate::credential::Kind;
use crate::identity;
use crate::pipeline::Verdict;
use crate::policy::login::{self, Capture};
use crate::session::record::{RECORD_VERSION, SessionRecord};
use bytes::{Bytes, BytesMut};
use http::header::{self, HeaderName};
use pingora::http::{RequestHeader, ResponseHeader};
use pingora::prelude::*;
use pingora::protocols::http::client::HttpSession;
use pingora::proxy::Session;

/// Connection-level headers of one hop, never passed along (RFC 9110 §7.6.1).
const HOP_BY_HOP: [HeaderName; 7] = [
    header::CONNECTION,
    HeaderName::from_static("keep-alive"),
    HeaderName::from_static("proxy-connection"),
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
    header::UPGRADE,
];

/// Performs the login exchange and answers the client. Errors are pingora errors, so that
/// `fail_to_proxy` maps them (502, 504) as it does for proxied requests.
pub async fn answer(
    proxy: &FluxgateProxy,
    session: &mut Session,
    ctx: &mut RequestCtx,
    body: Option<Bytes>,
) -> Result<()> {
    let req = upstream_request(session, ctx, body.as_ref().map_or(0, Bytes::len))?;
    let live = ctx.live.clone();
    let peer = *super::attempt::next_peer(ctx)?;
    let (mut up, _reused) = proxy
        .login
        .get_http_session(&peer)
        .await
        .map_err(|e| e.into_up())?;
    let Some((read_timeout, write_timeout, idle_timeout)) = ctx.pool().map(|p| {
        let s = p.settings();
        (s.read_timeout, s.write_timeout, s.idle_timeout)
    }) else {
        return Error::e_explain(InternalError, "the plan names no configured upstream");
    };
    up.set_read_timeout(Some(read_timeout));
    up.set_write_timeout(Some(write_timeout));
    let head = send(&mut up, req, body).await.map_err(|e| e.into_up())?;
    ctx.upstream_status = Some(head.status.as_u16());
    let settings = &live.pipeline.rules.login;
    let read = read_capped(&mut up, settings.max_body_bytes)
        .await
        .map_err(|e| e.into_up())?;
    let mut resp = head;
    for h in HOP_BY_HOP {
        if h != header::TRANSFER_ENCODING || read.complete {
            resp.remove_header(&h);
        }
    }
    let capture = if read.complete {
        let ct = resp.headers.get(header::CONTENT_TYPE).map(|v| v.as_bytes());
        login::capture(settings, resp.status.as_u16(), ct, &read.body)
    } else {
        Capture::PassThrough(login::TOO_LARGE)
    };
    let out = match capture {
        Capture::Captured {
            token,
            user_id,
            body,
        } => match set_session(ctx, &mut resp, &token, user_id) {
            true => {
                proxy.metrics.login_capture.inc("captured", "");
                body.unwrap_or(read.body)
            }
            false => {
                not_captured(proxy, "bad_user_id");
                read.body
            }
        },
        Capture::PassThrough(reason) => {
            not_captured(proxy, reason);
            read.body
        }
    };
    super::cookies::on_response(&mut resp, ctx);
    super::edit::finish_response(&mut resp, session, ctx)?;
    if read.complete {
        write_whole(session, resp, out).await?;
    } else {
        stream_rest(session, &mut up, resp, out).await?;
    }
    if up.response_done() {
        proxy
            .login
            .release_http_session(up, &peer, Some(idle_timeout))
            .await;
    }
    Ok(())
}

/// Counts an answer passed through; one that looked like a login but could not be trusted is
/// also logged (never with the token).
fn not_captured(proxy: &FluxgateProxy, reason: &'static str) {
    proxy.metrics.login_capture.inc(reason, "");
    if matches!(reason, "bad_token" | "bad_user_id") {
        tracing::warn!(
            reason,
            "login answer carries a token or user id that cannot be trusted; not captured"
        );
    }
}

/// The request as the upstream will see it: the client's head, one hop later, with the
/// admitted identity plan applied exactly as for proxied requests.
fn upstream_request(session: &Session, ctx: &RequestCtx, body_len: usize) -> Result<RequestHeader> {
    let Some(Verdict {
        outcome: Ok(admitted),
        ..
    }) = &ctx.verdict
    else {
        // SECURITY: as in upstream_request_filter: nothing unadmitted reaches the upstream.
        return Error::e_explain(InternalError, "login exchange without admission");
    };
    let client = session.req_header();
    // The route's rewrite (prefix stripping), as for a proxied request.
    let target = match &admitted.plan.path {
        Some(p) => p.clone(),
        None => client
            .uri
            .path_and_query()
            .map_or("/", |p| p.as_str())
            .to_string(),
    };
    let mut req = RequestHeader::build(client.method.clone(), target.as_bytes(), None)?;
    for (name, value) in client.headers.iter() {
        req.append_header(name.clone(), value.clone())?;
    }
    for h in HOP_BY_HOP {
        req.remove_header(&h);
    }
    req.remove_header(&header::EXPECT);
    if !req.headers.contains_key(header::HOST)
        && let Some(authority) = client.uri.authority()
    {
        req.insert_header(header::HOST, authority.as_str())?;
    }
    // The body was read whole before deciding: it goes with its exact length.
    if body_len > 0 || client.headers.contains_key(header::CONTENT_LENGTH) {
        req.insert_header(header::CONTENT_LENGTH, body_len)?;
    } else {
        req.remove_header(&header::CONTENT_LENGTH);
    }
    let rules = &ctx.live.pipeline.rules;
    identity::apply(
        &mut Upstream(&mut req),
        &rules.names,
        &rules.cookies,
        &admitted.plan,
    );
    Ok(req)
}

/// Sends the request and reads the final (non-1xx) response head.
async fn send(
    up: &mut HttpSession,
    req: RequestHeader,
    body: Option<Bytes>,
) -> Result<ResponseHeader> {
    up.write_request_header(Box::new(req)).await?;
    if let Some(b) = body {
        up.write_request_body(b, true).await?;
    }
    up.finish_request_body().await?;
    loop {
        up.read_response_header().await?;
        let Some(head) = up.response_header() else {
            return Error::e_explain(InvalidHTTPHeader, "upstream sent no response head");
        };
        if !head.status.is_informational() {
            return Ok(head.clone());
        }
    }
}

/// What was read of the answer's body.
struct Read {
    body: Bytes,
    /// The whole body (not cut at the bound).
    complete: bool,
}

/// Reads the body up to `max` bytes; past that, stops and says so (the rest is streamed).
async fn read_capped(up: &mut HttpSession, max: usize) -> Result<Read> {
    let mut buf = BytesMut::new();
    while let Some(chunk) = up.read_response_body().await? {
        buf.extend_from_slice(&chunk);
        if buf.len() > max {
            return Ok(Read {
                body: buf.freeze(),
                complete: false,
            });
        }
    }
    Ok(Read {
        body: buf.freeze(),
        complete: true,
    })
}

/// Sets the session cookie for `token` and primes the cache; `false` when the user id cannot
/// make a session (nothing is set then).
fn set_session(ctx: &RequestCtx, resp: &mut ResponseHeader, token: &str, user_id: String) -> bool {
    let pipeline = &ctx.live.pipeline;
    let record = SessionRecord {
        v: RECORD_VERSION,
        user_id,
        kind: Kind::Session,
        created_at: pipeline.rt.clock.now_secs(),
        expires_at: None,
        scopes: vec![],
        client_ip: None,
        has_mfa: None,
        flags: None,
        client_id: None,
    };
    // SECURITY: the user id becomes an identity header; the record's validation refuses one
    // that could break a header, and then no cookie is set either.
    if pipeline.rt.sessions.prime(token, record).is_err() {
        return false;
    }
    let cookies = &pipeline.rules.cookies;
    // The upstream's own Set-Cookie for the session cookie, if any, is replaced by ours: two
    // with one name would leave the browser's choice to their order.
    let others: Vec<_> = resp
        .headers
        .get_all(header::SET_COOKIE)
        .iter()
        .filter(|v| {
            v.to_str().map_or(true, |s| {
                cookie::Cookie::parse(s).map_or(true, |c| c.name() != cookies.session_name)
            })
        })
        .cloned()
        .collect();
    resp.remove_header(&header::SET_COOKIE);
    for v in others {
        let _ = resp.append_header(header::SET_COOKIE, v);
    }
    let max_age = pipeline.rules.login.cookie_max_age_secs;
    let _ = resp.append_header(
        header::SET_COOKIE,
        cookies.set_cookie(&cookies.session_name, token, max_age),
    );
    true
}

async fn write_whole(session: &mut Session, mut resp: ResponseHeader, body: Bytes) -> Result<()> {
    let bodiless = resp.status.as_u16() == 204
        || resp.status.as_u16() == 304
        || session.req_header().method == http::Method::HEAD;
    if !bodiless {
        resp.insert_header(header::CONTENT_LENGTH, body.len())?;
    }
    let end = body.is_empty();
    session.write_response_header(Box::new(resp), end).await?;
    if !end {
        session.write_response_body(Some(body), true).await?;
    }
    Ok(())
}

/// An answer over the bound: passed through as it comes, after the part already read.
async fn stream_rest(
    session: &mut Session,
    up: &mut HttpSession,
    mut resp: ResponseHeader,
    first: Bytes,
) -> Result<()> {
    if session.req_header().version >= http::Version::HTTP_2 {
        resp.remove_header(&header::TRANSFER_ENCODING);
    }
    session.write_response_header(Box::new(resp), false).await?;
    session.write_response_body(Some(first), false).await?;
    loop {
        let chunk = up.read_response_body().await.map_err(|e| e.into_up())?;
        let end = chunk.is_none();
        session.write_response_body(chunk, end).await?;
        if end {
            return Ok(());
        }
    }
}
