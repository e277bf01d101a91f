//! Entry points for the fuzz targets (`fuzz/`, issue 18) into parsers that are private to the
//! crate: the forward-auth reading of the original request and the session backend's answers.
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
