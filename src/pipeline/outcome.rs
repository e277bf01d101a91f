//! What the pipeline reads ([`RequestFacts`]) and what it answers ([`Verdict`]).

use crate::denial::{BucketHeaders, Denial};
use crate::identity::UpstreamPlan;
use crate::net::hygiene::Head;
use crate::policy::Role;
use crate::policy::ratelimit::Reservation;
use crate::session::Session;
use http::{HeaderMap, HeaderValue, Method, Version};
use std::net::IpAddr;
use std::sync::Arc;

/// What the pipeline needs to know about a request.
pub struct RequestFacts<'a> {
    pub method: &'a Method,
    pub version: Version,
    /// The raw request target (`/path?query`), as received.
    pub target: &'a [u8],
    pub headers: &'a HeaderMap,
    /// The TCP peer.
    pub peer: IpAddr,
    /// The request body, when the route needs it (a body-keyed limit) and it was small enough
    /// to read before deciding.
    pub body: Option<&'a [u8]>,
    /// fluxgate read the body before deciding (and answered `Expect: 100-continue` itself).
    pub body_read: bool,
    /// The raw head had a `Content-Length` next to `Transfer-Encoding` (the HTTP layer drops
    /// the length before the pipeline sees the headers).
    pub length_with_chunked: bool,
    /// The request id this request is answered and forwarded with.
    pub request_id: &'a HeaderValue,
}

impl RequestFacts<'_> {
    pub(crate) fn head(&self) -> Head<'_> {
        Head {
            method: self.method,
            version: self.version,
            headers: self.headers,
            length_with_chunked: self.length_with_chunked,
        }
    }
}

/// Who the upstream is told the caller is.
#[derive(Debug, Clone)]
pub enum Identity {
    Anonymous,
    User(Arc<Session>),
    /// Index into the configured internal secrets.
    Internal(usize),
}

impl Identity {
    pub fn auth_kind(&self) -> &'static str {
        match self {
            Identity::Anonymous => "anonymous",
            Identity::User(s) => s.kind.as_str(),
            Identity::Internal(_) => "internal",
        }
    }
}

/// A request that may go upstream.
#[derive(Debug, Clone)]
pub struct Admitted {
    pub identity: Identity,
    /// Set on logout and IP-authorization routes: what to do besides forwarding.
    pub role: Option<Role>,
    /// `X-RateLimit-*` for the successful response (when configured).
    pub limit_headers: Option<BucketHeaders>,
    /// A WebSocket handshake (its tunnel gets the WebSocket idle timeouts).
    pub websocket: bool,
    /// What the upstream request is told (stage 11).
    pub plan: UpstreamPlan,
}

/// Which route decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RouteId {
    /// Refused before routing (malformed target).
    Unrouted,
    Default,
    Index(usize),
}

/// The pipeline's answer for one request.
#[derive(Debug, Clone)]
pub struct Verdict {
    pub client_ip: IpAddr,
    pub route: RouteId,
    pub outcome: Result<Admitted, Denial>,
    /// A lockout attempt to settle once the outcome is known (also after a denial).
    pub reservation: Option<Reservation>,
}

impl Verdict {
    pub(crate) fn refused(client_ip: IpAddr, route: RouteId, d: Denial) -> Verdict {
        Verdict {
            client_ip,
            route,
            outcome: Err(d),
            reservation: None,
        }
    }
}

/// The metric/log reason of an admitted request.
pub fn admitted_reason(a: &Admitted) -> &'static str {
    a.identity.auth_kind()
}
