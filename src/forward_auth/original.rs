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
    /// Described in nginx's `auth_request` convention (`X-Original-URI`): the edge copies each
    /// identity header with `auth_request_set` + `proxy_set_header`, where a missing header and
    /// an empty one both send nothing and drop the client's copy, so the answer needs no empty
    /// stand-ins (see `admitted`).
    pub nginx: bool,
}

/// nginx's conventional name for the original URI. Caddy and Traefik always send their own
/// `X-Forwarded-Uri` (a second URI header is refused as a duplicate), and Envoy sends none.
const NGINX_URI: HeaderName = HeaderName::from_static("x-original-uri");

/// A head's header fields in wire order, as the decision server read them.
pub type Fields = Vec<(HeaderName, HeaderValue)>;

/// The fields of a header map (tests and fuzzing build requests that way).
#[cfg(any(test, feature = "test-util"))]
pub fn fields_of(h: &HeaderMap) -> Fields {
    h.iter().map(|(k, v)| (k.clone(), v.clone())).collect()
}

/// One description header's value, and whether it came more than once (across every name
/// configured for it).
#[derive(Default)]
struct One {
    value: Option<HeaderValue>,
    repeated: bool,
}

impl One {
    fn push(&mut self, v: HeaderValue) {
        match self.value {
            Some(_) => self.repeated = true,
            None => self.value = Some(v),
        }
    }

    fn is_set(&self) -> bool {
        self.value.is_some()
    }

    /// The single value, if exactly one is present.
    fn single(self, missing: Refusal, duplicate: Refusal) -> Result<HeaderValue, Refusal> {
        match self {
            One { value: None, .. } => Err(missing),
            One { repeated: true, .. } => Err(duplicate),
            One { value: Some(v), .. } => Ok(v),
        }
    }

    /// The value if present; `Err(duplicate)` if repeated.
    fn optional(self, duplicate: Refusal) -> Result<Option<HeaderValue>, Refusal> {
        match self {
            One { repeated: true, .. } => Err(duplicate),
            One { value, .. } => Ok(value),
        }
    }
}

/// What the edge's fields say about the original request, sorted in one pass (no header map
/// is built for fields that are only read once, and none is searched per name).
#[derive(Default)]
struct Description {
    method: One,
    uri: One,
    /// The URI came as `X-Original-URI`.
    nginx: bool,
    proto: One,
    host: One,
    /// The client-address header's lines, in order.
    client: Vec<HeaderValue>,
    /// Everything else: the client's headers as the pipeline reads them.
    rest: HeaderMap,
}

impl Description {
    fn sort(rules: &ForwardAuthRules, fields: Fields) -> Description {
        let mut d = Description {
            rest: HeaderMap::with_capacity(fields.len()),
            ..Description::default()
        };
        for (name, value) in fields {
            if rules.method_headers.contains(&name) {
                d.method.push(value);
            } else if rules.uri_headers.contains(&name) {
                d.nginx = name == NGINX_URI;
                d.uri.push(value);
            } else if name == rules.host_header {
                d.host.push(value);
            } else if name == rules.proto_header {
                d.proto.push(value);
            } else if name == *rules.client_ip.header() {
                d.client.push(value);
            } else if !DROPPED.contains(&name) {
                d.rest.append(name, value);
            }
        }
        d
    }
}

/// Fields the pipeline never sees: other forwarding headers (the client address is resolved
/// and handed over as the peer) and the edge's own framing of its request to fluxgate.
const DROPPED: [HeaderName; 6] = [
    HeaderName::from_static("x-real-ip"),
    http::header::FORWARDED,
    HeaderName::from_static("x-forwarded-port"),
    http::header::CONTENT_LENGTH,
    http::header::TRANSFER_ENCODING,
    http::header::CONNECTION,
];

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
    fields: Fields,
) -> Result<Original, Refusal> {
    // SECURITY: only a trusted edge may say what the original request was; anyone else could
    // name a public path while sending a private one.
    if !trusted(rules, peer) {
        return Err(Refusal::UntrustedEdge);
    }
    let mut d = Description::sort(rules, fields);
    let described = d.method.is_set() || d.uri.is_set();
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
        return finish(rules, peer, d, asked.method.clone(), target);
    }
    // SECURITY: exactly one original method and URI across every configured name: a client
    // that adds a second one (through an edge that passes client headers on) is refused,
    // never allowed to choose which one counts.
    let m =
        std::mem::take(&mut d.method).single(Refusal::MissingMethod, Refusal::DuplicateMethod)?;
    let method = Method::from_bytes(m.as_bytes()).map_err(|_| Refusal::InvalidMethod)?;
    let uri = std::mem::take(&mut d.uri)
        .single(Refusal::MissingUri, Refusal::DuplicateUri)?
        .as_bytes()
        .to_vec();
    finish(rules, peer, d, method, uri)
}

/// The checks every original URI passes, then the rest of the description.
fn finish(
    rules: &ForwardAuthRules,
    peer: IpAddr,
    d: Description,
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
    let tls = match d.proto.optional(Refusal::InvalidProto)? {
        None => false,
        Some(v) if v.as_bytes().eq_ignore_ascii_case(b"https") => true,
        Some(v) if v.as_bytes().eq_ignore_ascii_case(b"http") => false,
        Some(_) => return Err(Refusal::InvalidProto),
    };
    let host = d.host.optional(Refusal::DuplicateHost)?;
    let nginx = d.nginx;
    let client_ip = rules.client_ip.resolve_lines(peer, d.client.iter());
    // The pipeline's headers: the client's, with `Host` the original one.
    let mut headers = d.rest;
    if let Some(host) = host {
        headers.insert(http::header::HOST, host);
    }
    Ok(Original {
        method,
        target: uri,
        tls,
        headers,
        client_ip,
        nginx,
    })
}

#[cfg(test)]
#[path = "original_tests.rs"]
mod tests;
