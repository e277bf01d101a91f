//! Edits of the headers fluxgate forwards: lets the identity room edit a pingora request header
//! without knowing pingora, edits both directions on plain header maps, and finishes every
//! answer to an admitted request.

use super::{RequestCtx, hsts, respond};
use crate::identity::{self, HeaderEdit};
use crate::pipeline::Verdict;
use http::{HeaderMap, HeaderName, HeaderValue};
use pingora::http::{RequestHeader, ResponseHeader};
use pingora::prelude::*;
use pingora::proxy::Session;

pub struct Upstream<'a>(pub &'a mut RequestHeader);

impl HeaderEdit for Upstream<'_> {
    fn headers(&self) -> &HeaderMap {
        &self.0.headers
    }
    fn remove(&mut self, name: &HeaderName) {
        self.0.remove_header(name);
    }
    fn insert(&mut self, name: HeaderName, value: HeaderValue) {
        // insert_header only fails for invalid names or values; both are typed here.
        let _ = self.0.insert_header(name, value);
    }
}

/// Runs `edit` on the upstream request's plain header map, with room for `extra` more
/// headers, and leaves the request without pingora's case-preserving name map.
///
/// Why not `insert_header`: for each header it renders the title-case name, parses it back
/// into a `HeaderName` and updates a second map beside the values, and neither map can be
/// given room in advance, so the forwarding headers grow both (callgrind, row (b): about
/// 10k of the 41k instructions a request fluxgate spends over bare Pingora). The trade: the
/// upstream sees a client's header names in lowercase (pingora writes standard ones in title
/// case) instead of in the client's own case. HTTP field names are case-insensitive
/// (RFC 9110 §5.1), and an HTTP/2 upstream only ever sees lowercase.
pub fn plain<T>(
    upstream: &mut RequestHeader,
    extra: usize,
    edit: impl FnOnce(&mut HeaderMap) -> T,
) -> pingora::Result<T> {
    // The target and HTTP/2's END_STREAM flag live beside the parts; both are put back. A
    // target that does not round-trip through the URI (absolute-form, or bytes that are not
    // UTF-8) is copied first.
    let raw = match upstream.uri.path_and_query() {
        Some(pq) if pq.as_str().as_bytes() == upstream.raw_path() => None,
        _ => Some(upstream.raw_path().to_vec()),
    };
    let end_stream = upstream.send_end_stream();
    let placeholder = RequestHeader::from(http::Request::new(()).into_parts().0);
    let mut parts: http::request::Parts = std::mem::replace(upstream, placeholder).into();
    parts.headers.reserve(extra);
    let out = edit(&mut parts.headers);
    *upstream = RequestHeader::from(parts);
    if let Some(raw) = raw {
        upstream.set_raw_path(&raw)?;
    }
    if let Some(e) = end_stream {
        upstream.set_send_end_stream(e);
    }
    Ok(out)
}

/// The same for the response fluxgate forwards: the client sees the upstream's header names in
/// lowercase. A reason phrase other than the status's own is put back.
pub fn plain_response<T>(
    resp: &mut ResponseHeader,
    extra: usize,
    edit: impl FnOnce(&mut HeaderMap) -> T,
) -> pingora::Result<T> {
    let reason = match resp.get_reason_phrase() {
        Some(r) if Some(r) != resp.status.canonical_reason() => Some(r.to_owned()),
        _ => None,
    };
    let placeholder = ResponseHeader::from(http::Response::new(()).into_parts().0);
    let mut parts: http::response::Parts = std::mem::replace(resp, placeholder).into();
    parts.headers.reserve(extra);
    let out = edit(&mut parts.headers);
    *resp = ResponseHeader::from(parts);
    if reason.is_some() {
        resp.set_reason_phrase(reason.as_deref())?;
    }
    Ok(out)
}

/// What every answer to an admitted request carries, proxied or not: the limit headers, the
/// request id, CORS for an allowed origin, and the TLS listener's HSTS.
pub(super) fn finish_response(
    resp: &mut ResponseHeader,
    session: &Session,
    ctx: &RequestCtx,
) -> Result<()> {
    respond::cors(resp, session, ctx, false)?;
    // SECURITY: the listener's HSTS policy replaces the upstream's own, so an upstream cannot
    // weaken (max-age=0) or widen (includeSubDomains, preload) what the edge promises.
    hsts::apply(resp, ctx.hsts.as_ref())?;
    let limits = match &ctx.verdict {
        Some(Verdict { outcome: Ok(a), .. }) => a.limit_headers.as_ref().map(|l| l.headers()),
        _ => None,
    };
    let extra = limits.as_ref().map_or(0, |h| h.len()) + usize::from(ctx.request_id.is_some());
    if extra == 0 {
        return Ok(());
    }
    plain_response(resp, extra, |h| {
        for (k, v) in limits.into_iter().flatten() {
            h.insert(k, v);
        }
        if let Some(id) = &ctx.request_id {
            h.insert(identity::REQUEST_ID, id.clone());
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(target: &[u8]) -> RequestHeader {
        let mut r = RequestHeader::build("GET", target, None).unwrap();
        r.insert_header("Host", "api.example").unwrap();
        r.insert_header("X-Client-Thing", "1").unwrap();
        r
    }

    fn wire(r: &RequestHeader) -> String {
        let mut buf = Vec::new();
        r.header_to_h1_wire(&mut buf);
        String::from_utf8(buf).unwrap()
    }

    #[test]
    fn plain_edits_keep_every_header_target_and_method() {
        let mut r = request(b"/v1/users/@me?x=1");
        plain(&mut r, 4, |h| {
            h.insert("x-fluxgate-user-id", HeaderValue::from_static("42"));
            h.remove("x-client-thing");
        })
        .unwrap();
        assert_eq!(r.method, http::Method::GET);
        assert_eq!(r.raw_path(), b"/v1/users/@me?x=1");
        assert_eq!(r.headers.get("host").unwrap(), "api.example");
        assert_eq!(r.headers.get("x-fluxgate-user-id").unwrap(), "42");
        assert!(r.headers.get("x-client-thing").is_none());
        assert_eq!(wire(&r), "Host: api.example\r\nx-fluxgate-user-id: 42\r\n");
    }

    #[test]
    fn a_target_that_is_not_utf8_survives_the_plain_edit() {
        let mut r = request(b"/files/\xff\xfe?q=1");
        let before = r.raw_path().to_vec();
        assert!(!r.raw_path_is_utf8());
        plain(&mut r, 1, |_| ()).unwrap();
        assert_eq!(r.raw_path(), before.as_slice());
    }

    #[test]
    fn a_plain_response_edit_keeps_status_headers_and_a_custom_reason() {
        let mut r = ResponseHeader::build(202, None).unwrap();
        r.insert_header("Content-Type", "application/json").unwrap();
        r.set_reason_phrase(Some("Queued")).unwrap();
        plain_response(&mut r, 2, |h| {
            h.insert("x-request-id", HeaderValue::from_static("abc"));
        })
        .unwrap();
        assert_eq!(r.status, 202);
        assert_eq!(r.get_reason_phrase(), Some("Queued"));
        assert_eq!(r.headers.get("content-type").unwrap(), "application/json");
        assert_eq!(r.headers.get("x-request-id").unwrap(), "abc");
    }

    #[test]
    fn an_http2_end_stream_choice_survives_the_plain_edit() {
        let mut r = request(b"/");
        r.set_version(http::Version::HTTP_2);
        r.set_send_end_stream(false);
        plain(&mut r, 1, |_| ()).unwrap();
        assert_eq!(r.send_end_stream(), Some(false));
    }
}

#[cfg(test)]
#[path = "edit_props.rs"]
mod props;
