//! Writing fluxgate's own responses (denials, failures) to the client. Denials are written here
//! rather than through `respond_error`, which would close a keep-alive connection for every 401.

use super::RequestCtx;
use crate::denial::Denial;
use crate::identity;
use crate::policy::cors::{CorsMode, CorsPolicy};
use bytes::Bytes;
use pingora::http::ResponseHeader;
use pingora::prelude::*;
use pingora::proxy::Session;

/// CORS on an answer to an allowed origin. `own`: fluxgate wrote the answer (a denial, its own
/// endpoint); otherwise it is the upstream's, and in edge mode fluxgate replaces its CORS.
pub fn cors(
    resp: &mut ResponseHeader,
    session: &Session,
    ctx: &RequestCtx,
    own: bool,
) -> Result<()> {
    let cors = &ctx.live.pipeline.rules.cors;
    if !own {
        match cors.mode {
            // SECURITY: in edge mode fluxgate alone decides who may read answers: an upstream
            // that echoes any Origin cannot open the API to a foreign page.
            CorsMode::Edge => {
                // One pass over the (few) response headers; removals only when there is one.
                let upstream_cors = resp
                    .headers
                    .keys()
                    .any(|k| k.as_str().starts_with("access-control-"));
                if upstream_cors {
                    for h in CorsPolicy::OWNED
                        .iter()
                        .filter(|h| **h != http::header::VARY)
                    {
                        resp.remove_header(h);
                    }
                }
            }
            CorsMode::Upstream | CorsMode::Off => return Ok(()),
        }
    }
    if let Some(origin) = cors.allowed_origin(&session.req_header().headers) {
        for (k, v) in cors.response_headers(origin) {
            if k == http::header::VARY {
                resp.append_header(k, v)?;
            } else {
                resp.insert_header(k, v)?;
            }
        }
    }
    Ok(())
}

/// fluxgate's answer to a CORS preflight from an allowed origin: 204 with the CORS headers.
pub async fn write_preflight(session: &mut Session, ctx: &RequestCtx) -> Result<()> {
    let cors = &ctx.live.pipeline.rules.cors;
    let mut h = ResponseHeader::build(http::StatusCode::NO_CONTENT, Some(8))?;
    if let Some(origin) = cors.allowed_origin(&session.req_header().headers) {
        for (k, v) in cors.preflight_headers(origin) {
            h.insert_header(k, v)?;
        }
    }
    if let Some(id) = &ctx.request_id {
        h.insert_header(identity::REQUEST_ID, id.clone())?;
    }
    super::hsts::apply(&mut h, ctx.hsts.as_ref())?;
    session.write_response_header(Box::new(h), true).await
}

/// The assertion keys' JWKS (`/.well-known/jwks.json`), cacheable for a short while.
pub async fn write_jwks(session: &mut Session, ctx: &RequestCtx) -> Result<()> {
    let pipeline = &ctx.live.pipeline;
    let body = match pipeline.rules.assertion.as_ref().and_then(|a| a.keys()) {
        Some(ring) => Bytes::from(ring.jwks(pipeline.rt.clock.now_secs())),
        None => return Error::e_explain(InternalError, "JWKS admitted without keys"),
    };
    let mut h = ResponseHeader::build(http::StatusCode::OK, Some(6))?;
    h.insert_header("content-type", "application/jwk-set+json")?;
    h.insert_header("cache-control", identity::keys::JWKS_CACHE_CONTROL)?;
    h.insert_header("content-length", body.len())?;
    if let Some(id) = &ctx.request_id {
        h.insert_header(identity::REQUEST_ID, id.clone())?;
    }
    super::hsts::apply(&mut h, ctx.hsts.as_ref())?;
    let head_only = session.req_header().method == http::Method::HEAD;
    session
        .write_response_header(Box::new(h), head_only)
        .await?;
    if !head_only {
        session.write_response_body(Some(body), true).await?;
    }
    Ok(())
}

/// Writes `denial` as the contract's JSON response.
pub async fn write_denial(session: &mut Session, denial: &Denial, ctx: &RequestCtx) -> Result<()> {
    let r = denial.to_response();
    let mut h = ResponseHeader::build(r.status, Some(r.headers.len() + 7))?;
    for (k, v) in r.headers {
        h.insert_header(k, v)?;
    }
    h.insert_header("content-length", r.body.len())?;
    if let Some(id) = &ctx.request_id {
        h.insert_header(identity::REQUEST_ID, id.clone())?;
    }
    // Every denial to an allowed origin carries the CORS headers of a success, so the page
    // can read Fluxer's error JSON.
    cors(&mut h, session, ctx, true)?;
    super::hsts::apply(&mut h, ctx.hsts.as_ref())?;
    // An unread request body would have to be drained before the connection could carry the
    // next request; refusing to read what we already refused is cheaper and safer.
    // SECURITY: after a malformed request, nothing more on the connection can be trusted to
    // be framed the way it looks (smuggling); close it.
    if request_has_body(session)
        || matches!(
            denial,
            Denial::BadRequest(_) | Denial::Limit(_) | Denial::MethodNotAllowed
        )
    {
        session.set_keepalive(None);
    }
    let head_only = session.req_header().method == http::Method::HEAD;
    session
        .write_response_header(Box::new(h), head_only)
        .await?;
    if !head_only {
        session
            .write_response_body(Some(Bytes::clone(&r.body)), true)
            .await?;
    }
    Ok(())
}

fn request_has_body(session: &Session) -> bool {
    let h = &session.req_header().headers;
    h.contains_key(http::header::TRANSFER_ENCODING)
        || h.get(http::header::CONTENT_LENGTH)
            .is_some_and(|v| v.as_bytes() != b"0")
}

/// Writes fluxgate's own successful answer (`204` with no body when `json` is null).
pub async fn write_json(
    session: &mut Session,
    status: http::StatusCode,
    json: &serde_json::Value,
    ctx: &RequestCtx,
) -> Result<()> {
    let body = if json.is_null() {
        Bytes::new()
    } else {
        Bytes::from(json.to_string())
    };
    let mut h = ResponseHeader::build(status, Some(4))?;
    if !body.is_empty() {
        h.insert_header("content-type", "application/json")?;
    }
    h.insert_header("cache-control", "no-store")?;
    if status != http::StatusCode::NO_CONTENT {
        h.insert_header("content-length", body.len())?;
    }
    if let Some(id) = &ctx.request_id {
        h.insert_header(identity::REQUEST_ID, id.clone())?;
    }
    cors(&mut h, session, ctx, true)?;
    super::hsts::apply(&mut h, ctx.hsts.as_ref())?;
    let end = body.is_empty();
    session.write_response_header(Box::new(h), end).await?;
    if !end {
        session.write_response_body(Some(body), true).await?;
    }
    Ok(())
}

/// The contract's answer to a proxying failure; `None` when the client is gone.
pub(super) fn denial_for(e: &Error) -> Option<Denial> {
    match (e.esource(), e.etype()) {
        (_, ErrorType::HTTPStatus(_)) | (ErrorSource::Internal, _) | (ErrorSource::Unset, _) => {
            Some(Denial::Internal)
        }
        (
            ErrorSource::Upstream,
            ErrorType::ConnectTimedout | ErrorType::ReadTimedout | ErrorType::WriteTimedout,
        ) => Some(Denial::GatewayTimeout),
        (ErrorSource::Upstream, _) => Some(Denial::BadGateway),
        (
            ErrorSource::Downstream,
            ErrorType::ReadError | ErrorType::WriteError | ErrorType::ConnectionClosed,
        ) => None,
        (ErrorSource::Downstream, _) => {
            Some(Denial::BadRequest(crate::denial::BadRequest::Unparseable))
        }
    }
}

/// A status as its class label.
pub(super) fn status_class(status: u16) -> &'static str {
    match status {
        100..=199 => "1xx",
        200..=299 => "2xx",
        300..=399 => "3xx",
        400..=499 => "4xx",
        500..=599 => "5xx",
        _ => "none",
    }
}
