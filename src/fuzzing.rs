//! Entry points for the fuzz targets (`fuzz/`, issue 18) into parsers that are private to the
//! crate: the forward-auth decision endpoint's head parser and its reading of the original
//! request, and the session backend's answers.
//! Only with the `test-util` feature; thin wrappers that add no logic, so what is fuzzed is
//! exactly what runs.

use crate::config::forward_auth::ForwardAuthRules;
use crate::credential::Kind;
use crate::session::backend::{BackendError, BackendSession, BackendSettings};
use http::{HeaderMap, Method};
use std::net::IpAddr;

/// What `forward_auth::original::read` made of a description.
#[derive(Debug)]
pub struct OriginalRequest {
    pub method: Method,
    pub target: Vec<u8>,
    pub tls: bool,
    pub headers: HeaderMap,
    pub client_ip: IpAddr,
}

/// `forward_auth::original::read`; the refusal as its stable reason.
pub fn forward_auth_read(
    rules: &ForwardAuthRules,
    peer: IpAddr,
    method: &Method,
    target: &str,
    headers: &HeaderMap,
) -> Result<OriginalRequest, &'static str> {
    let asked = crate::forward_auth::original::Asked { method, target };
    let fields = crate::forward_auth::original::fields_of(headers);
    crate::forward_auth::original::read(rules, peer, &asked, fields)
        .map(|o| OriginalRequest {
            method: o.method,
            target: o.target,
            tls: o.tls,
            headers: o.headers,
            client_ip: o.client_ip,
        })
        .map_err(|r| r.reason())
}

/// The session backend's reading of a validation answer (the user object).
pub fn backend_user_session(
    s: &BackendSettings,
    kind: Kind,
    body: &[u8],
    now: i64,
) -> Result<BackendSession, BackendError> {
    crate::session::backend::user_session(s, kind, body, now)
}

/// The session backend's reading of an RFC 7662 introspection answer.
pub fn backend_introspection(
    body: &[u8],
    now: i64,
) -> Result<Option<BackendSession>, BackendError> {
    crate::session::backend::introspection(body, now)
}

/// A head's header fields as the decision endpoint read them: (name, value bytes), in order.
pub type HeadFields = Vec<(String, Vec<u8>)>;

/// How `forward_auth::serve::parse` read a buffer: each whole head's fields, then why it
/// stopped (`partial`, `bad`, `too_large`).
pub fn forward_auth_heads(bytes: &[u8]) -> (Vec<HeadFields>, &'static str) {
    use crate::forward_auth::serve::{Parsed, parse};
    let mut buf = bytes::BytesMut::from(bytes);
    let mut heads = Vec::new();
    loop {
        match parse(&mut buf) {
            Parsed::Head(h) => heads.push(
                h.fields
                    .iter()
                    .map(|(n, v)| (n.as_str().to_owned(), v.as_bytes().to_vec()))
                    .collect(),
            ),
            Parsed::Partial => return (heads, "partial"),
            Parsed::Bad => return (heads, "bad"),
            Parsed::TooLarge => return (heads, "too_large"),
        }
    }
}
