//! What the pipeline reads ([`RequestFacts`]) and what it answers ([`Verdict`]).

use crate::denial::{BucketHeaders, Denial};
use crate::identity::UpstreamPlan;
use crate::net::hygiene::Head;
use crate::policy::Role;
use crate::policy::ratelimit::Reservation;
use crate::session::Session;
use http::{HeaderMap, HeaderValue, Method, Version};
use std::net::IpAddr;

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
    /// It arrived over TLS (for `X-Forwarded-Proto`).
    pub tls: bool,
    /// The target's authority (HTTP/2 `:authority`), when the request has no `Host` header.
    pub authority: Option<&'a str>,
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

/// Whether the proxy reads a request's body before deciding.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyNeed {
    No,
    /// A body-keyed limit: read it, whatever its framing; refuse it when too large.
    Required,
    /// An in-band sudo proof may be in it: read it when its declared length is small; a larger
    /// or unannounced body simply carries no proof.
    IfSmall,
}

/// Who the upstream is told the caller is.
#[derive(Debug, Clone)]
pub enum Identity {
    Anonymous,
    User(Session),
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
    /// Report mode: the denial this request would have had, had the route enforced it. The
    /// request goes upstream anonymous (see `policy::rollout`).
    pub would_deny: Option<Denial>,
    /// A CORS preflight from an allowed origin that fluxgate answers itself (`[cors] mode =
    /// "edge"`); nothing goes upstream.
    pub preflight: bool,
    /// A request for the assertion keys' JWKS (`/.well-known/jwks.json`), which fluxgate
    /// answers itself; nothing goes upstream.
    pub jwks: bool,
}

impl Admitted {
    /// An anonymous admission with `plan` and nothing else set: the base that preflights, the
    /// JWKS answer and report mode adjust.
    pub fn anonymous(plan: UpstreamPlan) -> Admitted {
        Admitted {
            identity: Identity::Anonymous,
            role: None,
            limit_headers: None,
            websocket: false,
            plan,
            would_deny: None,
            preflight: false,
            jwks: false,
        }
    }
}

/// The stages of the request path, in order; `pipeline.rs`'s module doc says why each stands
/// where it does (a test keeps the two lists equal).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Stage {
    ClientIp,
    Route,
    Network,
    PreAuthLimits,
    Credential,
    Session,
    Access,
    IpAuthorization,
    Sudo,
    PerUserLimits,
    Identity,
}

impl Stage {
    pub const ALL: [Stage; 11] = [
        Stage::ClientIp,
        Stage::Route,
        Stage::Network,
        Stage::PreAuthLimits,
        Stage::Credential,
        Stage::Session,
        Stage::Access,
        Stage::IpAuthorization,
        Stage::Sudo,
        Stage::PerUserLimits,
        Stage::Identity,
    ];

    /// Its number in the module doc (1–11).
    pub fn number(self) -> usize {
        self as usize + 1
    }

    /// Its name in the module doc and in `fluxgate explain`.
    pub fn name(self) -> &'static str {
        match self {
            Stage::ClientIp => "client IP",
            Stage::Route => "hygiene + path + route",
            Stage::Network => "network rules",
            Stage::PreAuthLimits => "pre-auth limits",
            Stage::Credential => "credential",
            Stage::Session => "session",
            Stage::Access => "access",
            Stage::IpAuthorization => "IP authorization",
            Stage::Sudo => "sudo",
            Stage::PerUserLimits => "per-user limits",
            Stage::Identity => "identity",
        }
    }

    /// Which of stages 5–7 refused with `d`.
    pub(crate) fn of_identification(d: &Denial) -> Stage {
        use crate::denial::Unauthenticated as U;
        match d {
            Denial::Unauthorized(U::UnknownSession | U::AmbiguousCookies | U::KindMismatch)
            | Denial::StoreUnavailable { .. } => Stage::Session,
            Denial::Unauthorized(_) => Stage::Credential,
            _ => Stage::Access,
        }
    }
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
    /// The stage that refused (or, in report mode, would have), or [`Stage::Identity`] for an
    /// admitted request.
    pub stage: Stage,
    pub outcome: Result<Admitted, Denial>,
    /// A lockout attempt to settle once the outcome is known (also after a denial).
    pub reservation: Option<Reservation>,
    /// An in-band sudo proof forwarded for the upstream to verify: its attempt on the per-user
    /// proof lockout, settled from the upstream's answer (`policy::sudo_proof`).
    pub sudo_attempt: Option<Reservation>,
}

impl Verdict {
    pub(crate) fn refused(client_ip: IpAddr, route: RouteId, stage: Stage, d: Denial) -> Verdict {
        Verdict {
            client_ip,
            route,
            stage,
            outcome: Err(d),
            reservation: None,
            sudo_attempt: None,
        }
    }

    /// The session the request was admitted with, if any.
    pub fn session(&self) -> Option<&Session> {
        match &self.outcome {
            Ok(Admitted {
                identity: Identity::User(s),
                ..
            }) => Some(s),
            _ => None,
        }
    }
}

/// The metric/log reason of an admitted request.
pub fn admitted_reason(a: &Admitted) -> &'static str {
    a.identity.auth_kind()
}
