//! Writing fluxgate's own responses (denials, failures) to the client. Denials are written here
//! rather than through `respond_error`, which would close a keep-alive connection for every 401.

use crate::denial::Denial;
use crate::identity;
use bytes::Bytes;
use http::HeaderValue;
use pingora::http::ResponseHeader;
use pingora::prelude::*;
use pingora::proxy::Session;

/// Writes `denial` as the contract's JSON response.
pub async fn write_denial(
    session: &mut Session,
    denial: &Denial,
    request_id: Option<&HeaderValue>,
) -> Result<()> {
    let r = denial.to_response();
    let mut h = ResponseHeader::build(r.status, Some(r.headers.len() + 2))?;
    for (k, v) in r.headers {
        h.insert_header(k, v)?;
    }
    h.insert_header("content-length", r.body.len())?;
    if let Some(id) = request_id {
        h.insert_header(identity::REQUEST_ID, id.clone())?;
    }
    // An unread request body would have to be drained before the connection could carry the
    // next request; refusing to read what we already refused is cheaper and safer.
    // SECURITY: after a malformed request, nothing more on the connection can be trusted to
    // be framed the way it looks (smuggling); close it.
    if request_has_body(session) || matches!(denial, Denial::BadRequest(_)) {
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
    request_id: Option<&HeaderValue>,
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
    if let Some(id) = request_id {
        h.insert_header(identity::REQUEST_ID, id.clone())?;
    }
    let end = body.is_empty();
    session.write_response_header(Box::new(h), end).await?;
    if !end {
        session.write_response_body(Some(body), true).await?;
    }
    Ok(())
}
