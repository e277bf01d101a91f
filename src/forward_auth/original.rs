//! The original request, as a trusted edge describes it in headers: method, target, scheme,
//! host and client address. Anything ambiguous is refused, never guessed: the edge forwards
//! on a 2xx, so a header this code misread would let a request through under another path.

use crate::config::forward_auth::ForwardAuthRules;
use http::{HeaderMap, HeaderName, HeaderValue, Method};
use std::net::IpAddr;

/// Why the decision endpoint refused to decide (400, counted by this reason).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    UntrustedEdge,
    MissingMethod,
    DuplicateMethod,
    InvalidMethod,
    MissingUri,
    DuplicateUri,
    AbsoluteUri,
    UriTooLong,
    InvalidUri,
    InvalidProto,
    DuplicateHost,
}

impl Refusal {
    /// The stable reason, for metrics and logs.
    pub fn reason(self) -> &'static str {
        match self {
            Refusal::UntrustedEdge => "untrusted_edge",
            Refusal::MissingMethod => "missing_original_method",
            Refusal::DuplicateMethod => "duplicate_original_method",
            Refusal::InvalidMethod => "invalid_original_method",
            Refusal::MissingUri => "missing_original_uri",
            Refusal::DuplicateUri => "duplicate_original_uri",
            Refusal::AbsoluteUri => "absolute_original_uri",
            Refusal::UriTooLong => "original_uri_too_long",
            Refusal::InvalidUri => "invalid_original_uri",
            Refusal::InvalidProto => "invalid_forwarded_proto",
            Refusal::DuplicateHost => "duplicate_forwarded_host",
        }
    }

    /// The message in the 400 body.
    pub fn message(self) -> &'static str {
        match self {
            Refusal::UntrustedEdge => "This peer is not a trusted edge proxy.",
            Refusal::MissingMethod | Refusal::MissingUri => {
                "The original request's method and URI are required."
            }
            Refusal::DuplicateMethod | Refusal::DuplicateUri | Refusal::DuplicateHost => {
                "The original request is described more than once."
            }
            Refusal::InvalidMethod
            | Refusal::AbsoluteUri
            | Refusal::UriTooLong
            | Refusal::InvalidUri
            | Refusal::InvalidProto => "The original request is malformed.",
        }
    }
}

/// The original request.
#[derive(Debug)]
pub struct Original {
    pub method: Method,
    pub target: Vec<u8>,
    pub tls: bool,
    /// The request's headers as the pipeline reads them: the client's, with `Host` set to the
    /// original host and the edge's own description headers removed.
    pub headers: HeaderMap,
    /// The client, resolved past the trusted edges (and trusted proxies).
    pub client_ip: IpAddr,
}

/// The single value among `names`, if exactly one is present.
fn single<'h>(
    h: &'h HeaderMap,
    names: &[HeaderName],
    missing: Refusal,
    duplicate: Refusal,
) -> Result<&'h HeaderValue, Refusal> {
    let mut values = names.iter().flat_map(|n| h.get_all(n).iter());
    match (values.next(), values.next()) {
        (None, _) => Err(missing),
        (Some(v), None) => Ok(v),
        (Some(_), Some(_)) => Err(duplicate),
    }
}

/// Whether `peer` may describe a request.
pub fn trusted(rules: &ForwardAuthRules, peer: IpAddr) -> bool {
    rules.trusted_edges.contains(peer)
}

/// The edge's own request line.
pub struct Asked<'a> {
    pub method: &'a Method,
    /// Path and query, as received.
    pub target: &'a str,
}

/// Reads the original request the edge at `peer` describes: in headers (nginx, Caddy,
/// Traefik), or as the request itself under Envoy's path prefix.
pub fn read(
    rules: &ForwardAuthRules,
    peer: IpAddr,
    asked: &Asked<'_>,
    h: HeaderMap,
) -> Result<Original, Refusal> {
    // SECURITY: only a trusted edge may say what the original request was; anyone else could
    // name a public path while sending a private one.
    if !trusted(rules, peer) {
        return Err(Refusal::UntrustedEdge);
    }
    let described = rules
        .method_headers
        .iter()
        .chain(&rules.uri_headers)
        .any(|n| h.contains_key(n));
    // Envoy `ext_authz` (HTTP service) sends the original method and path as its own, under
    // the configured prefix. A request that also carries description headers is read by them
    // only (and refused if they are ambiguous), never by both.
    if let (Some(prefix), false) = (&rules.envoy_path_prefix, described) {
        let Some(rest) = asked
            .target
            .strip_prefix(prefix.as_str())
            .filter(|r| r.starts_with('/'))
        else {
            return Err(Refusal::MissingUri);
        };
        let target = rest.as_bytes().to_vec();
        return finish(rules, peer, h, asked.method.clone(), target);
    }
    // SECURITY: exactly one original method and URI across every configured name: a client
    // that adds a second one (through an edge that passes client headers on) is refused,
    // never allowed to choose which one counts.
    let m = single(
        &h,
        &rules.method_headers,
        Refusal::MissingMethod,
        Refusal::DuplicateMethod,
    )?;
    let method = Method::from_bytes(m.as_bytes()).map_err(|_| Refusal::InvalidMethod)?;
    let uri = single(
        &h,
        &rules.uri_headers,
        Refusal::MissingUri,
        Refusal::DuplicateUri,
    )?
    .as_bytes()
    .to_vec();
    finish(rules, peer, h, method, uri)
}

/// The checks every original URI passes, then the rest of the description.
fn finish(
    rules: &ForwardAuthRules,
    peer: IpAddr,
    h: HeaderMap,
    method: Method,
    uri: Vec<u8>,
) -> Result<Original, Refusal> {
    if uri.len() > rules.max_uri_bytes {
        return Err(Refusal::UriTooLong);
    }
    // SECURITY: origin form only: an absolute URI or `*` names no path the routes can judge.
    if uri.first() != Some(&b'/') {
        return Err(if uri.is_empty() {
            Refusal::MissingUri
        } else {
            Refusal::AbsoluteUri
        });
    }
    if uri.starts_with(b"//") {
        return Err(Refusal::AbsoluteUri);
    }
    if !uri.iter().all(|b| (0x21..0x7f).contains(b)) {
        return Err(Refusal::InvalidUri);
    }
    let tls = match h.get_all(&rules.proto_header).iter().collect::<Vec<_>>()[..] {
        [] => false,
        [v] if v.as_bytes().eq_ignore_ascii_case(b"https") => true,
        [v] if v.as_bytes().eq_ignore_ascii_case(b"http") => false,
        _ => return Err(Refusal::InvalidProto),
    };
    let host = match h.get_all(&rules.host_header).iter().collect::<Vec<_>>()[..] {
        [] => None,
        [v] => Some(v.clone()),
        _ => return Err(Refusal::DuplicateHost),
    };
    let client_ip = rules.client_ip.resolve(peer, &h);
    Ok(Original {
        method,
        target: uri,
        tls,
        headers: pipeline_headers(rules, h, host),
        client_ip,
    })
}

/// The client's headers for the pipeline: the edge's description of the request removed (it
/// is read above), `Host` the original one, and the forwarding headers gone: the client
/// address is already resolved and handed over as the peer.
fn pipeline_headers(
    rules: &ForwardAuthRules,
    mut out: HeaderMap,
    host: Option<HeaderValue>,
) -> HeaderMap {
    for n in rules.method_headers.iter().chain(&rules.uri_headers) {
        out.remove(n);
    }
    for n in [
        &rules.host_header,
        &rules.proto_header,
        rules.client_ip.header(),
        &X_REAL_IP,
        &http::header::FORWARDED,
        &X_FORWARDED_PORT,
        &http::header::CONTENT_LENGTH,
        &http::header::TRANSFER_ENCODING,
        &http::header::CONNECTION,
    ] {
        out.remove(n);
    }
    if let Some(host) = host {
        out.insert(http::header::HOST, host);
    }
    out
}

const X_REAL_IP: HeaderName = HeaderName::from_static("x-real-ip");
const X_FORWARDED_PORT: HeaderName = HeaderName::from_static("x-forwarded-port");

#[cfg(test)]
#[path = "original_tests.rs"]
mod tests;
