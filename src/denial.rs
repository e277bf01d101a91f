//! Denials are values: one enum, and one exhaustive mapping to the contract's JSON responses
//! (§3). Every variant has a status, a stable `code` for clients and a snake_case `reason` for
//! logs and metrics. Internal error text never reaches a client.

use crate::credential::Malformed;
use crate::net::hygiene::HygieneError;
use crate::net::path::PathError;
use crate::policy::ratelimit::Scope;
use bytes::Bytes;
use http::{HeaderName, HeaderValue, StatusCode};
use serde_json::{Map, Value, json};

/// Why a request without a usable credential was refused with 401.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unauthenticated {
    /// No credential where one is required.
    Missing,
    /// The credential was not well-formed.
    Malformed(Malformed),
    /// Well-formed, but no live session has that sid.
    UnknownSession,
    /// The stored session is of another kind than the token presented.
    KindMismatch,
    /// The credential kind is disabled globally (e.g. bot tokens when off).
    KindDisabled,
    /// Several session cookies, and not exactly one of them valid.
    AmbiguousCookies,
    /// No internal secret presented on an internal route.
    SecretMissing,
    /// The internal secret matches none of the configured ones.
    SecretWrong,
    /// The secret matched, but the caller is outside the secret's networks.
    SecretNetwork,
}

impl Unauthenticated {
    pub fn reason(self) -> &'static str {
        match self {
            Unauthenticated::Missing => "no_credential",
            Unauthenticated::Malformed(m) => m.reason(),
            Unauthenticated::UnknownSession => "unknown_session",
            Unauthenticated::KindMismatch => "kind_mismatch",
            Unauthenticated::KindDisabled => "kind_disabled",
            Unauthenticated::AmbiguousCookies => "ambiguous_cookies",
            Unauthenticated::SecretMissing => "internal_secret_missing",
            Unauthenticated::SecretWrong => "internal_secret_wrong",
            Unauthenticated::SecretNetwork => "internal_secret_network",
        }
    }
}

/// A rate-limit or lockout denial's details (contract §3).
#[derive(Debug, Clone, PartialEq)]
pub struct RateLimited {
    pub retry_after_ms: i64,
    pub scope: Scope,
    /// The global per-user limit (adds `X-RateLimit-Global: true`).
    pub global: bool,
    /// The bucket's headers, for bucket and lockout denials.
    pub bucket: Option<BucketHeaders>,
    /// A lockout rather than a bucket (for logs and metrics).
    pub lockout: bool,
}

/// `X-RateLimit-*` values of one bucket.
#[derive(Debug, Clone, PartialEq)]
pub struct BucketHeaders {
    pub limit: i64,
    pub remaining: i64,
    /// When the bucket is full again, in Unix milliseconds.
    pub reset_at_ms: i64,
    pub reset_after_ms: i64,
    /// First 16 hex digits of SHA-256 of the bucket name.
    pub name_hash: String,
}

impl BucketHeaders {
    /// The headers, for a 429 or (when configured) a successful response.
    pub fn headers(&self) -> [(HeaderName, HeaderValue); 5] {
        // Static names: no parsing per response.
        let n = HeaderName::from_static;
        [
            (n("x-ratelimit-limit"), HeaderValue::from(self.limit)),
            (
                n("x-ratelimit-remaining"),
                HeaderValue::from(self.remaining.max(0)),
            ),
            (n("x-ratelimit-reset"), secs(self.reset_at_ms)),
            (n("x-ratelimit-reset-after"), secs(self.reset_after_ms)),
            (
                n("x-ratelimit-bucket"),
                HeaderValue::from_str(&self.name_hash).expect("hex is a valid header value"),
            ),
        ]
    }
}

/// Milliseconds as decimal seconds (`1.234`).
fn secs(ms: i64) -> HeaderValue {
    HeaderValue::from_str(&format!(
        "{}.{:03}",
        ms.div_euclid(1000),
        ms.rem_euclid(1000)
    ))
    .expect("digits are a valid header value")
}

/// Every way fluxgate refuses or fails a request.
#[derive(Debug, Clone, PartialEq)]
pub enum Denial {
    /// 400: the request is malformed (path, headers, framing).
    BadRequest(BadRequest),
    /// 408, 413, 414, 431: the request is over one of the edge's bounds.
    Limit(Limit),
    /// 405: a method fluxgate does not proxy (`CONNECT`, refused by Pingora before routing).
    MethodNotAllowed,
    /// 401: no valid credential.
    Unauthorized(Unauthenticated),
    /// 403: the credential kind is not accepted on this route.
    AccessDenied,
    /// 403: an OAuth2 token lacks a scope the route requires.
    MissingOauthScope { required_scope: String },
    /// 403: the route needs sudo mode and no valid proof came with the request.
    SudoModeRequired { has_mfa: Option<bool> },
    /// 403: a cookie-authenticated state change from an origin that is not allowed.
    InvalidApiOrigin,
    /// 403: the session is used from a location its user has not approved yet.
    IpAuthorizationRequired {
        ticket: String,
        resend_available_in: i64,
    },
    /// 403: a network, country or ASN rule.
    Forbidden,
    /// 429: a rate limit or lockout.
    RateLimited(RateLimited),
    /// 503: the session store could not be asked; fail closed.
    StoreUnavailable { retry_after_secs: u32 },
    /// 503: the shared rate limiter could not be asked and its fallback is to refuse.
    LimiterUnavailable,
    /// 502: the upstream could not be reached.
    BadGateway,
    /// 504: the upstream did not answer in time.
    GatewayTimeout,
    /// 500: a bug (including a caught panic); the request was not forwarded.
    Internal,
}

/// What was malformed about a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BadRequest {
    Path(PathError),
    /// A request the HTTP layer could not parse.
    Unparseable,
    /// Framing, header or upgrade forms that could be read two ways (see `net::hygiene`).
    Hygiene(HygieneError),
    /// A request to an endpoint fluxgate answers itself that it cannot accept.
    Invalid(&'static str),
}

/// Which bound of the edge a request went over (each has its own status).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Limit {
    /// 413: a body that must be read before deciding is over the bound.
    BodyTooLarge,
    /// 414: the request line is over the bound.
    RequestLineTooLong,
    /// 431: the header section is over `server.max_header_bytes`.
    HeadersTooLarge,
    /// 431: more header fields than `server.max_headers`.
    TooManyHeaders,
    /// 408: the request head did not arrive whole within `server.head_timeout`.
    HeadTimeout,
}

impl From<HygieneError> for Denial {
    /// Oversized header sections are 431 (as the edge answers the ones too large to parse),
    /// `CONNECT` is 405; every other hygiene failure is a malformed request.
    fn from(e: HygieneError) -> Denial {
        match e {
            HygieneError::HeadersTooLarge => Denial::Limit(Limit::HeadersTooLarge),
            HygieneError::TooManyHeaders => Denial::Limit(Limit::TooManyHeaders),
            HygieneError::Connect => Denial::MethodNotAllowed,
            e => Denial::BadRequest(BadRequest::Hygiene(e)),
        }
    }
}

/// A denial rendered for the wire.
#[derive(Debug, Clone)]
pub struct DenialResponse {
    pub status: StatusCode,
    pub headers: Vec<(HeaderName, HeaderValue)>,
    pub body: Bytes,
}

const WWW_AUTHENTICATE: &str = r#"Bearer realm="fluxgate""#;

impl Denial {
    pub fn status(&self) -> StatusCode {
        match self {
            Denial::BadRequest(_) => StatusCode::BAD_REQUEST,
            Denial::Limit(Limit::BodyTooLarge) => StatusCode::PAYLOAD_TOO_LARGE,
            Denial::Limit(Limit::RequestLineTooLong) => StatusCode::URI_TOO_LONG,
            Denial::Limit(Limit::HeadersTooLarge | Limit::TooManyHeaders) => {
                StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE
            }
            Denial::Limit(Limit::HeadTimeout) => StatusCode::REQUEST_TIMEOUT,
            Denial::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            Denial::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            Denial::AccessDenied
            | Denial::MissingOauthScope { .. }
            | Denial::SudoModeRequired { .. }
            | Denial::InvalidApiOrigin
            | Denial::IpAuthorizationRequired { .. }
            | Denial::Forbidden => StatusCode::FORBIDDEN,
            Denial::RateLimited(_) => StatusCode::TOO_MANY_REQUESTS,
            Denial::StoreUnavailable { .. } | Denial::LimiterUnavailable => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            Denial::BadGateway => StatusCode::BAD_GATEWAY,
            Denial::GatewayTimeout => StatusCode::GATEWAY_TIMEOUT,
            Denial::Internal => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The contract's `code`: what clients match on.
    pub fn code(&self) -> &'static str {
        match self {
            Denial::BadRequest(_) => "BAD_REQUEST",
            Denial::Limit(Limit::BodyTooLarge) => "PAYLOAD_TOO_LARGE",
            Denial::Limit(Limit::RequestLineTooLong) => "URI_TOO_LONG",
            Denial::Limit(Limit::HeadersTooLarge | Limit::TooManyHeaders) => {
                "REQUEST_HEADER_FIELDS_TOO_LARGE"
            }
            Denial::Limit(Limit::HeadTimeout) => "REQUEST_TIMEOUT",
            Denial::MethodNotAllowed => "METHOD_NOT_ALLOWED",
            Denial::Unauthorized(_) => "UNAUTHORIZED",
            Denial::AccessDenied => "ACCESS_DENIED",
            Denial::MissingOauthScope { .. } => "MISSING_OAUTH_SCOPE",
            Denial::SudoModeRequired { .. } => "SUDO_MODE_REQUIRED",
            Denial::InvalidApiOrigin => "INVALID_API_ORIGIN",
            Denial::IpAuthorizationRequired { .. } => "IP_AUTHORIZATION_REQUIRED",
            Denial::Forbidden => "FORBIDDEN",
            Denial::RateLimited(_) => "RATE_LIMITED",
            Denial::StoreUnavailable { .. } | Denial::LimiterUnavailable => "SERVICE_UNAVAILABLE",
            Denial::BadGateway => "BAD_GATEWAY",
            Denial::GatewayTimeout => "GATEWAY_TIMEOUT",
            Denial::Internal => "INTERNAL_SERVER_ERROR",
        }
    }

    /// Stable snake_case reason for logs and the decisions metric.
    pub fn reason(&self) -> &'static str {
        match self {
            Denial::BadRequest(BadRequest::Path(p)) => p.reason(),
            Denial::BadRequest(BadRequest::Unparseable) => "unparseable_request",
            Denial::BadRequest(BadRequest::Hygiene(h)) => h.reason(),
            Denial::BadRequest(BadRequest::Invalid(_)) => "invalid_request",
            Denial::Limit(Limit::BodyTooLarge) => "body_too_large",
            Denial::Limit(Limit::RequestLineTooLong) => "request_line_too_long",
            Denial::Limit(Limit::HeadersTooLarge) => "headers_too_large",
            Denial::Limit(Limit::TooManyHeaders) => "too_many_headers",
            Denial::Limit(Limit::HeadTimeout) => "head_timeout",
            Denial::MethodNotAllowed => "method_not_allowed",
            Denial::Unauthorized(u) => u.reason(),
            Denial::AccessDenied => "kind_not_accepted",
            Denial::MissingOauthScope { .. } => "missing_scope",
            Denial::SudoModeRequired { .. } => "sudo_required",
            Denial::InvalidApiOrigin => "invalid_origin",
            Denial::IpAuthorizationRequired { .. } => "new_location",
            Denial::Forbidden => "network_rule",
            Denial::RateLimited(r) if r.global => "global_rate_limited",
            Denial::RateLimited(r) if r.lockout => "locked_out",
            Denial::RateLimited(_) => "rate_limited",
            Denial::StoreUnavailable { .. } => "store_unavailable",
            Denial::LimiterUnavailable => "limiter_unavailable",
            Denial::BadGateway => "upstream_unreachable",
            Denial::GatewayTimeout => "upstream_timeout",
            Denial::Internal => "internal_error",
        }
    }

    fn message(&self) -> &'static str {
        match self {
            Denial::BadRequest(BadRequest::Path(p)) => p.message(),
            Denial::BadRequest(BadRequest::Unparseable) => "Malformed request.",
            Denial::BadRequest(BadRequest::Hygiene(h)) => h.message(),
            Denial::BadRequest(BadRequest::Invalid(why)) => why,
            Denial::Limit(Limit::BodyTooLarge) => "The request body is too large.",
            Denial::Limit(Limit::RequestLineTooLong) => "The request line is too long.",
            Denial::Limit(Limit::HeadersTooLarge) => "The request headers are too large.",
            Denial::Limit(Limit::TooManyHeaders) => "The request has too many headers.",
            Denial::Limit(Limit::HeadTimeout) => "The request head took too long.",
            Denial::MethodNotAllowed => "This method is not accepted.",
            Denial::Unauthorized(_) => "Unauthorized",
            Denial::AccessDenied => "This credential type cannot access this resource.",
            Denial::MissingOauthScope { .. } => "Missing required OAuth2 scope.",
            Denial::SudoModeRequired { .. } => "Sudo mode required.",
            Denial::InvalidApiOrigin => "Invalid API origin.",
            Denial::IpAuthorizationRequired { .. } => {
                "Authorize this location from the e-mail we sent you, then retry."
            }
            Denial::Forbidden => "Forbidden.",
            Denial::RateLimited(_) => "You are being rate limited.",
            Denial::StoreUnavailable { .. } | Denial::LimiterUnavailable => {
                "Service temporarily unavailable. Retry later."
            }
            Denial::BadGateway => "Upstream unavailable.",
            Denial::GatewayTimeout => "Upstream timed out.",
            Denial::Internal => "Internal server error.",
        }
    }

    /// The response: status, headers and JSON body. The one place denials become HTTP.
    pub fn to_response(&self) -> DenialResponse {
        let mut body = Map::new();
        body.insert("code".into(), Value::from(self.code()));
        body.insert("message".into(), Value::from(self.message()));
        let mut headers: Vec<(HeaderName, HeaderValue)> = vec![
            (
                HeaderName::from_static("content-type"),
                HeaderValue::from_static("application/json"),
            ),
            (
                HeaderName::from_static("cache-control"),
                HeaderValue::from_static("no-store"),
            ),
            // SECURITY: a client must never sniff a denial's JSON as HTML (reflected content in
            // a message or ticket rendered as a page).
            (
                HeaderName::from_static("x-content-type-options"),
                HeaderValue::from_static("nosniff"),
            ),
        ];
        match self {
            Denial::Unauthorized(_) => {
                headers.push((
                    HeaderName::from_static("www-authenticate"),
                    HeaderValue::from_static(WWW_AUTHENTICATE),
                ));
            }
            Denial::MissingOauthScope { required_scope } => {
                body.insert("required_scope".into(), json!(required_scope));
            }
            Denial::IpAuthorizationRequired {
                ticket,
                resend_available_in,
            } => {
                body.insert("ip_authorization_required".into(), json!(true));
                body.insert("ticket".into(), json!(ticket));
                body.insert("resend_available_in".into(), json!(resend_available_in));
            }
            Denial::SudoModeRequired { has_mfa } => {
                if let Some(m) = has_mfa {
                    body.insert("has_mfa".into(), json!(m));
                }
            }
            Denial::StoreUnavailable { retry_after_secs } => {
                headers.push((
                    HeaderName::from_static("retry-after"),
                    HeaderValue::from(*retry_after_secs),
                ));
            }
            Denial::LimiterUnavailable => {
                headers.push((
                    HeaderName::from_static("retry-after"),
                    HeaderValue::from_static("1"),
                ));
            }
            Denial::RateLimited(r) => {
                let ms = r.retry_after_ms.max(0);
                body.insert("global".into(), json!(r.global));
                body.insert("retry_after".into(), json!(ms as f64 / 1000.0));
                // Whole seconds, at least 1 (RFC 9110), rounded up so a client never retries early.
                headers.push((
                    HeaderName::from_static("retry-after"),
                    HeaderValue::from(((ms + 999) / 1000).max(1)),
                ));
                headers.push((
                    HeaderName::from_static("x-ratelimit-scope"),
                    HeaderValue::from_static(r.scope.as_str()),
                ));
                if r.global {
                    headers.push((
                        HeaderName::from_static("x-ratelimit-global"),
                        HeaderValue::from_static("true"),
                    ));
                }
                if let Some(b) = &r.bucket {
                    headers.extend(b.headers());
                }
            }
            Denial::MethodNotAllowed => {
                headers.push((
                    HeaderName::from_static("allow"),
                    HeaderValue::from_static("GET, HEAD, POST, PUT, DELETE, OPTIONS, TRACE, PATCH"),
                ));
            }
            Denial::BadRequest(_)
            | Denial::Limit(_)
            | Denial::InvalidApiOrigin
            | Denial::Forbidden
            | Denial::AccessDenied
            | Denial::BadGateway
            | Denial::GatewayTimeout
            | Denial::Internal => {}
        }
        let body = serde_json::to_vec(&Value::Object(body)).expect("a JSON map always serializes");
        DenialResponse {
            status: self.status(),
            headers,
            body: Bytes::from(body),
        }
    }
}

#[cfg(test)]
#[path = "denial_tests.rs"]
mod tests;
