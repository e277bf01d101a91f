//! The backend resolver: asks the application itself whether a token is a session, so fluxgate
//! can front an existing API unchanged (contract §8).
//!
//! - Session and bot tokens: `GET validate_url` with the credential in `Authorization`, in the
//!   form the backend reads it (Fluxer: `/users/@me`). 200 with a user object → a session;
//!   401/403 → no session; anything else → the backend is unavailable.
//! - OAuth2 bearer tokens: RFC 7662 introspection (`POST introspect_url`, form `token=…`, our own
//!   client credentials by HTTP Basic). `active:false`, or an `exp` that has passed → no session.
//! - "Unavailable" is an error, never "no session": the caller fails closed and must not cache
//!   it. Errors carry no text from the backend and never the token.
//! - One pooled keep-alive client; a semaphore caps the requests in flight, so a slow backend
//!   cannot collect an unbounded queue; answers are read with a hard size cap.
//!
//! Pingora-free. What is cached, and for how long, is the session cache's decision.

use super::record::SessionRecord;
use crate::credential::Kind;
use crate::secret::Secret;
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use bytes::Bytes;
use http::header::{ACCEPT, AUTHORIZATION, CONTENT_TYPE, USER_AGENT};
use http::{HeaderValue, Method, Request, StatusCode};
use http_body_util::{BodyExt, Full, LengthLimitError, Limited};
use hyper::body::Body;
use hyper_rustls::{HttpsConnector, HttpsConnectorBuilder};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use std::fmt;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Semaphore;

#[path = "backend_answer.rs"]
mod answer;
pub(crate) use answer::{introspection, user_session};

pub const DEFAULT_USER_ID_POINTER: &str = "/id";
pub const DEFAULT_MFA_POINTER: &str = "/mfa_enabled";
pub const DEFAULT_FLAGS_POINTER: &str = "/flags";
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(1);
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(3);
pub const DEFAULT_MAX_CONCURRENCY: usize = 64;
pub const DEFAULT_MAX_BODY_BYTES: usize = 64 * 1024;
/// Idle keep-alive connections are closed after this long.
const POOL_IDLE: Duration = Duration::from_secs(60);

/// Where and how to ask the backend (validated data; the config room builds it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackendSettings {
    /// `GET`, for session and bot tokens.
    pub validate_url: http::Uri,
    /// RFC 7662 introspection, for OAuth2 bearer tokens; without it they are no session.
    pub introspect_url: Option<http::Uri>,
    /// Our client credentials for introspection (both or neither).
    pub client_id: Option<String>,
    pub client_secret: Option<Secret>,
    /// JSON pointers into the validation answer. The user id is a string or an unsigned integer.
    pub user_id_pointer: String,
    /// `""` means "not read".
    pub mfa_pointer: String,
    /// `""` means "not read".
    pub flags_pointer: String,
    pub connect_timeout: Duration,
    /// Bounds waiting for a free slot, and then the exchange (send, headers, body), each.
    pub request_timeout: Duration,
    pub max_concurrency: usize,
    pub max_body_bytes: usize,
    /// PEM CA bundle for https to a backend with a private CA (instead of the webpki roots).
    pub ca_pem: Option<Vec<u8>>,
}

impl BackendSettings {
    /// The defaults for everything but the validation URL.
    pub fn new(validate_url: http::Uri) -> BackendSettings {
        BackendSettings {
            validate_url,
            introspect_url: None,
            client_id: None,
            client_secret: None,
            user_id_pointer: DEFAULT_USER_ID_POINTER.into(),
            mfa_pointer: DEFAULT_MFA_POINTER.into(),
            flags_pointer: DEFAULT_FLAGS_POINTER.into(),
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
            request_timeout: DEFAULT_REQUEST_TIMEOUT,
            max_concurrency: DEFAULT_MAX_CONCURRENCY,
            max_body_bytes: DEFAULT_MAX_BODY_BYTES,
            ca_pem: None,
        }
    }
}

/// A session the backend vouched for (introspection fills `record.client_id`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackendSession {
    pub record: SessionRecord,
}

/// Why the backend could not say. Never "no session": the request fails closed, uncached.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum BackendError {
    #[error("session backend answered HTTP {0}")]
    Status(u16),
    #[error("session backend timed out")]
    Timeout,
    #[error("cannot connect to the session backend")]
    Connect,
    #[error("session backend connection failed mid-exchange")]
    Transport,
    #[error("session backend answer is over the size limit")]
    TooLarge,
    #[error("session backend answer is malformed: {0}")]
    Malformed(&'static str),
    #[error("too many session backend requests in flight")]
    Busy,
}

impl BackendError {
    /// Stable snake_case label for logs and metrics.
    pub fn reason(&self) -> &'static str {
        match self {
            BackendError::Status(_) => "status",
            BackendError::Timeout => "timeout",
            BackendError::Connect => "connect",
            BackendError::Transport => "transport",
            BackendError::TooLarge => "too_large",
            BackendError::Malformed(_) => "malformed",
            BackendError::Busy => "busy",
        }
    }
}

type HttpsClient = Client<HttpsConnector<HttpConnector>, Full<Bytes>>;

/// Which endpoint an exchange went to: their answers mean different things.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Endpoint {
    Validate,
    Introspect,
}

/// Resolves tokens by asking the backend. Share it (`Arc`); it holds the connection pool.
pub struct BackendResolver {
    settings: BackendSettings,
    client: HttpsClient,
    slots: Semaphore,
    /// `Basic …` for introspection, computed once.
    basic: Option<HeaderValue>,
}

impl fmt::Debug for BackendResolver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BackendResolver")
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

impl BackendResolver {
    pub fn new(settings: BackendSettings) -> Result<BackendResolver, String> {
        check(&settings)?;
        let mut http = HttpConnector::new();
        http.enforce_http(false);
        http.set_nodelay(true);
        http.set_connect_timeout(Some(settings.connect_timeout));
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        // SECURITY: certificates are always verified; a private CA replaces the public roots,
        // it never turns verification off.
        let tls = match &settings.ca_pem {
            Some(pem) => HttpsConnectorBuilder::new().with_tls_config(private_ca(pem, provider)?),
            None => HttpsConnectorBuilder::new()
                .with_provider_and_webpki_roots(provider)
                .map_err(|e| format!("backend TLS setup failed: {e}"))?,
        };
        let https = tls.https_or_http().enable_http1().wrap_connector(http);
        let client = Client::builder(TokioExecutor::new())
            .pool_timer(TokioTimer::new())
            .pool_idle_timeout(POOL_IDLE)
            .pool_max_idle_per_host(settings.max_concurrency)
            .build(https);
        let basic = match (&settings.client_id, &settings.client_secret) {
            (Some(id), Some(secret)) => Some(basic_auth(id, secret.expose())?),
            _ => None,
        };
        Ok(BackendResolver {
            slots: Semaphore::new(settings.max_concurrency),
            settings,
            client,
            basic,
        })
    }

    pub fn settings(&self) -> &BackendSettings {
        &self.settings
    }

    /// The session `token` (of `kind`) stands for, by the backend's word; `now` in Unix seconds.
    pub async fn resolve(
        &self,
        kind: Kind,
        token: &str,
        now: i64,
    ) -> Result<Option<BackendSession>, BackendError> {
        let Some((endpoint, req)) = self.request(kind, token) else {
            return Ok(None);
        };
        let t = self.settings.request_timeout;
        let _slot = match tokio::time::timeout(t, self.slots.acquire()).await {
            Ok(Ok(slot)) => slot,
            Ok(Err(_)) | Err(_) => return Err(BackendError::Busy),
        };
        let body = match tokio::time::timeout(t, self.exchange(endpoint, req)).await {
            Ok(Ok(Some(body))) => body,
            Ok(Ok(None)) => return Ok(None),
            Ok(Err(e)) => return Err(e),
            Err(_) => return Err(BackendError::Timeout),
        };
        match endpoint {
            Endpoint::Validate => user_session(&self.settings, kind, &body, now).map(Some),
            Endpoint::Introspect => introspection(&body, now),
        }
    }

    /// The request for `token`, or `None` when it cannot be a session here.
    fn request(&self, kind: Kind, token: &str) -> Option<(Endpoint, Request<Full<Bytes>>)> {
        let builder = Request::builder()
            .header(ACCEPT, "application/json")
            .header(USER_AGENT, "fluxgate");
        let (endpoint, req) = match kind {
            // SECURITY: the Authorization header is rebuilt from the parsed kind and token, never
            // copied from the client, so a client cannot choose the scheme the backend sees; a
            // token that cannot travel in a header is no session.
            Kind::Session | Kind::Bot => {
                let raw = match kind {
                    Kind::Bot => format!("Bot {token}"),
                    _ => token.to_string(),
                };
                let mut auth = HeaderValue::from_str(&raw).ok()?;
                auth.set_sensitive(true);
                let req = builder
                    .method(Method::GET)
                    .uri(self.settings.validate_url.clone())
                    .header(AUTHORIZATION, auth)
                    .body(Full::default());
                (Endpoint::Validate, req)
            }
            Kind::Oauth2 => {
                let url = self.settings.introspect_url.clone()?;
                let form = format!("token={}&token_type_hint=access_token", form_encode(token));
                let mut b = builder
                    .method(Method::POST)
                    .uri(url)
                    .header(CONTENT_TYPE, "application/x-www-form-urlencoded");
                if let Some(basic) = &self.basic {
                    b = b.header(AUTHORIZATION, basic.clone());
                }
                (Endpoint::Introspect, b.body(Full::new(Bytes::from(form))))
            }
        };
        req.ok().map(|r| (endpoint, r))
    }

    /// Sends `req` and reads a 200 answer's body; `None` when the backend refused the token.
    async fn exchange(
        &self,
        endpoint: Endpoint,
        req: Request<Full<Bytes>>,
    ) -> Result<Option<Bytes>, BackendError> {
        // SECURITY: the legacy client follows no redirects, so the token goes to the configured
        // URL only; a 3xx is an error like any other unexpected status.
        let resp = self.client.request(req).await.map_err(|e| {
            // hyper's error text names the failure (refused, reset), never the request.
            tracing::debug!(error = %e, "session backend request failed");
            if e.is_connect() {
                BackendError::Connect
            } else {
                BackendError::Transport
            }
        })?;
        let status = resp.status();
        let max = self.settings.max_body_bytes;
        match status {
            StatusCode::OK => read_capped(resp.into_body(), max).await.map(Some),
            // Introspection answers 401/403 when *our* client credentials are refused: that is a
            // misconfiguration (unavailable), not an answer about the token.
            StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN if endpoint == Endpoint::Validate => {
                // Read the (small) body so the connection can be reused; its content is moot.
                let _ = read_capped(resp.into_body(), max).await;
                Ok(None)
            }
            other => Err(BackendError::Status(other.as_u16())),
        }
    }
}

/// The whole body, refused as soon as it is known to be longer than `max`.
// SECURITY: a declared length over the cap is refused before reading, and an undeclared one is
// cut off at the cap: a hostile or broken backend cannot make us buffer more than `max` (plus
// one read buffer).
async fn read_capped<B>(body: B, max: usize) -> Result<Bytes, BackendError>
where
    B: Body<Data = Bytes>,
    B::Error: std::error::Error + Send + Sync + 'static,
{
    if body.size_hint().lower() > max as u64 {
        return Err(BackendError::TooLarge);
    }
    match Limited::new(body, max).collect().await {
        Ok(c) => Ok(c.to_bytes()),
        Err(e) if e.is::<LengthLimitError>() => Err(BackendError::TooLarge),
        Err(_) => Err(BackendError::Transport),
    }
}

/// `application/x-www-form-urlencoded` for one value.
fn form_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'*' | b'-' | b'.' | b'_' => {
                out.push(b as char)
            }
            b' ' => out.push('+'),
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

/// RFC 6749 §2.3.1: `Basic base64(urlencode(id) ":" urlencode(secret))`.
fn basic_auth(id: &str, secret: &str) -> Result<HeaderValue, String> {
    let raw = format!("{}:{}", form_encode(id), form_encode(secret));
    let mut v = HeaderValue::from_str(&format!("Basic {}", STANDARD.encode(raw)))
        .map_err(|_| "backend client credentials cannot form a header".to_string())?;
    v.set_sensitive(true);
    Ok(v)
}

/// A rustls client trusting exactly the CAs in `pem`.
fn private_ca(
    pem: &[u8],
    provider: Arc<rustls::crypto::CryptoProvider>,
) -> Result<rustls::ClientConfig, String> {
    use rustls_pki_types::CertificateDer;
    use rustls_pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(pem) {
        let cert = cert.map_err(|e| format!("backend CA bundle is not PEM: {e}"))?;
        roots
            .add(cert)
            .map_err(|e| format!("backend CA bundle holds an unusable CA: {e}"))?;
    }
    if roots.is_empty() {
        return Err("backend CA bundle holds no certificate".into());
    }
    Ok(rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("backend TLS setup failed: {e}"))?
        .with_root_certificates(roots)
        .with_no_client_auth())
}

/// Refuses settings that could only fail later, one message each.
fn check(s: &BackendSettings) -> Result<(), String> {
    let url = |u: &http::Uri, what: &str| match (u.scheme_str(), u.host()) {
        (Some("http" | "https"), Some(_)) => Ok(()),
        _ => Err(format!("{what} must be an absolute http(s) URL")),
    };
    url(&s.validate_url, "validate_url")?;
    if let Some(u) = &s.introspect_url {
        url(u, "introspect_url")?;
    }
    if s.client_id.is_some() != s.client_secret.is_some() {
        return Err("client_id and client_secret go together".into());
    }
    if !s.user_id_pointer.starts_with('/') {
        return Err("user_id_pointer must be a JSON pointer (\"/id\")".into());
    }
    for (p, what) in [
        (&s.mfa_pointer, "mfa_pointer"),
        (&s.flags_pointer, "flags_pointer"),
    ] {
        if !p.is_empty() && !p.starts_with('/') {
            return Err(format!("{what} must be a JSON pointer or empty"));
        }
    }
    if s.connect_timeout.is_zero() || s.request_timeout.is_zero() {
        return Err("backend timeouts must be longer than zero".into());
    }
    if s.max_concurrency == 0 || s.max_body_bytes == 0 {
        return Err("max_concurrency and max_body_bytes must be at least 1".into());
    }
    Ok(())
}

#[cfg(test)]
#[path = "backend_tests.rs"]
mod tests;
