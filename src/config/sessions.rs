//! `[sessions]`: the store (embedded or Redis), the backend that validates tokens fluxgate's
//! store does not know (`[sessions.backend]`), the cache, the session cookie's name and what
//! to do when the store fails. Split by when it takes effect: [`SessionsBoot`] is built once,
//! [`SessionRules`] reloads.

use super::Dur;
use super::secret::SecretSource;
use super::validate::{Errors, choice, is_cookie_name, p, positive};
use crate::session::CacheSettings;
use crate::session::backend::{self, BackendSettings};
use serde::{Deserialize, Serialize};
use std::path::PathBuf;
use std::time::Duration;

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default)]
pub struct SessionsFile {
    pub store: String,
    pub cookie_name: String,
    pub cache_ttl: Dur,
    pub negative_ttl: Dur,
    pub cache_capacity: u64,
    pub store_retry_after: Dur,
    pub on_store_error: String,
    pub stale_grace: Dur,
    pub ttl_while_disconnected: Dur,
    /// "none", or "authorization": send a cookie-authenticated request's token upstream as
    /// `Authorization`.
    pub forward_credential: String,
    pub embedded: EmbeddedFile,
    pub backend: BackendFile,
}

impl Default for SessionsFile {
    fn default() -> Self {
        SessionsFile {
            store: "embedded".into(),
            cookie_name: "fluxer_session".into(),
            cache_ttl: Dur::from_secs(30),
            negative_ttl: Dur::from_secs(2),
            cache_capacity: 1_000_000,
            store_retry_after: Dur::from_secs(2),
            on_store_error: "deny".into(),
            stale_grace: Dur::from_secs(300),
            ttl_while_disconnected: Dur::from_secs(1),
            forward_credential: "none".into(),
            embedded: EmbeddedFile::default(),
            backend: BackendFile::default(),
        }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default)]
pub struct EmbeddedFile {
    pub path: PathBuf,
    pub sweep_interval: Dur,
}

impl Default for EmbeddedFile {
    fn default() -> Self {
        EmbeddedFile {
            path: PathBuf::from("/var/lib/fluxgate/sessions.redb"),
            sweep_interval: Dur::from_secs(300),
        }
    }
}

/// `[sessions.backend]`: your API's own "who am I" endpoint and OAuth2 introspection.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default)]
pub struct BackendFile {
    /// With `store = "embedded"` or `"redis"`: also ask the backend about tokens the store
    /// does not know. (`store = "backend"` always asks it.)
    pub fallback: bool,
    /// Share positive answers with other instances through Redis. Unset: on with
    /// `store = "redis"`, off otherwise; `true` with another store uses `[redis]` for it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub share: Option<bool>,
    /// `GET` with the client's credential; empty: the upstream's `/users/@me`.
    pub validate_url: String,
    /// RFC 7662 introspection for OAuth2 bearer tokens; empty: OAuth2 tokens are not asked.
    pub introspect_url: String,
    pub client_id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_secret: Option<SecretSource>,
    pub user_id_pointer: String,
    pub mfa_pointer: String,
    pub flags_pointer: String,
    pub connect_timeout: Dur,
    pub request_timeout: Dur,
    pub max_concurrency: usize,
}

impl Default for BackendFile {
    fn default() -> Self {
        BackendFile {
            fallback: false,
            share: None,
            validate_url: String::new(),
            introspect_url: String::new(),
            client_id: String::new(),
            client_secret: None,
            user_id_pointer: backend::DEFAULT_USER_ID_POINTER.into(),
            mfa_pointer: backend::DEFAULT_MFA_POINTER.into(),
            flags_pointer: backend::DEFAULT_FLAGS_POINTER.into(),
            connect_timeout: Dur(backend::DEFAULT_CONNECT_TIMEOUT),
            request_timeout: Dur(backend::DEFAULT_REQUEST_TIMEOUT),
            max_concurrency: backend::DEFAULT_MAX_CONCURRENCY,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreSettings {
    Embedded {
        path: PathBuf,
        sweep_interval: Duration,
    },
    /// Sessions in Redis (connection settings in [`super::BootConfig::redis`]).
    Redis {
        /// While the invalidation subscription is down, trust cached sessions this long.
        ttl_while_disconnected: Duration,
    },
}

/// `[sessions]` keys built once: the store, the backend and the cache.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionsBoot {
    pub store: StoreSettings,
    /// Asked about tokens the store does not know (`store = "backend"`, or `fallback`).
    pub backend: Option<BackendSettings>,
    /// Share the backend's positive answers through Redis (`[sessions.backend] share`).
    pub share: bool,
    pub cache: CacheSettings,
}

/// `[sessions]` keys the request path reads (they reload).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionRules {
    pub cookie_name: String,
    pub store_retry_after_secs: u32,
    /// Answer from recently seen sessions when the store fails (`on_store_error`).
    pub serve_stale: bool,
    /// `forward_credential = "authorization"`.
    pub forward_credential: bool,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Store {
    Embedded,
    Redis,
    Backend,
}

const STORES: &[(&str, Store)] = &[
    ("embedded", Store::Embedded),
    ("redis", Store::Redis),
    ("backend", Store::Backend),
];

/// `upstream`: the default upstream's base URL, for the default validation URL.
pub(super) fn validate_sessions(
    s: &SessionsFile,
    upstream: Option<&str>,
    e: &mut Errors,
) -> (SessionsBoot, SessionRules) {
    let embedded = || StoreSettings::Embedded {
        path: s.embedded.path.clone(),
        sweep_interval: s.embedded.sweep_interval.0,
    };
    let chosen = choice(&s.store, "store", STORES, p("sessions.store"), e);
    let store = match chosen {
        // With the backend, the embedded file keeps what fluxgate owns itself: sessions made
        // through its admin API, IP-authorization locations and tickets.
        Some(Store::Embedded | Store::Backend) => {
            if s.embedded.path.as_os_str().is_empty() {
                e.at(p("sessions.embedded.path"), "must not be empty");
            }
            positive(
                s.embedded.sweep_interval,
                p("sessions.embedded.sweep_interval"),
                e,
            );
            embedded()
        }
        Some(Store::Redis) => {
            positive(
                s.ttl_while_disconnected,
                p("sessions.ttl_while_disconnected"),
                e,
            );
            StoreSettings::Redis {
                ttl_while_disconnected: s.ttl_while_disconnected.0,
            }
        }
        None => embedded(),
    };
    if s.cookie_name.is_empty() || !is_cookie_name(&s.cookie_name) {
        e.at(
            p("sessions.cookie_name"),
            "must be a cookie name (letters, digits, '_', '-')",
        );
    }
    positive(s.cache_ttl, p("sessions.cache_ttl"), e);
    if s.cache_ttl.0.as_secs() > 3600 {
        e.at(p("sessions.cache_ttl"), "must be at most 1h: it bounds how long a revoked session can live in a cache that missed the revocation");
    }
    if s.negative_ttl > s.cache_ttl {
        e.at(
            p("sessions.negative_ttl"),
            "must not be longer than sessions.cache_ttl",
        );
    }
    if s.cache_capacity == 0 {
        e.at(p("sessions.cache_capacity"), "must be at least 1");
    }
    positive(s.store_retry_after, p("sessions.store_retry_after"), e);
    let serve_stale = choice(
        &s.on_store_error,
        "policy",
        &[("deny", false), ("serve_stale", true)],
        p("sessions.on_store_error"),
        e,
    )
    .unwrap_or(false);
    if serve_stale {
        positive(s.stale_grace, p("sessions.stale_grace"), e);
        if s.stale_grace.0.as_secs() > 3600 {
            e.at(p("sessions.stale_grace"), "must be at most 1h");
        }
    }
    let backend = (chosen == Some(Store::Backend) || s.backend.fallback)
        .then(|| validate_backend(&s.backend, upstream, e))
        .flatten();
    let share = validate_share(&s.backend, chosen, backend.is_some(), e);
    let boot = SessionsBoot {
        store,
        backend,
        share,
        cache: CacheSettings {
            ttl_ms: s.cache_ttl.as_millis(),
            negative_ttl_ms: s.negative_ttl.as_millis(),
            capacity: s.cache_capacity,
            stale_grace_ms: serve_stale.then(|| s.stale_grace.as_millis()),
        },
    };
    let forward_credential = choice(
        &s.forward_credential,
        "credential forwarding",
        &[("none", false), ("authorization", true)],
        p("sessions.forward_credential"),
        e,
    )
    .unwrap_or(false);
    let rules = SessionRules {
        forward_credential,
        cookie_name: s.cookie_name.clone(),
        store_retry_after_secs: s.store_retry_after.0.as_secs().clamp(1, u32::MAX as u64) as u32,
        serve_stale,
    };
    (boot, rules)
}

/// Whether backend answers are shared through Redis: by default with the Redis store; on
/// request with another store (which then needs `[redis]`); never without a backend.
fn validate_share(b: &BackendFile, store: Option<Store>, asked: bool, e: &mut Errors) -> bool {
    let asks = store == Some(Store::Backend) || b.fallback;
    match b.share {
        None => asks && asked && store == Some(Store::Redis),
        Some(false) => false,
        Some(true) if !asks => {
            e.at(
                p("sessions.backend.share"),
                "only applies when the backend is asked: set store = \"backend\" or fallback = true",
            );
            false
        }
        Some(true) => asked,
    }
}

fn url(s: &str, key: &str, e: &mut Errors) -> Option<http::Uri> {
    match s.parse::<http::Uri>() {
        Ok(u) if matches!(u.scheme_str(), Some("http" | "https")) && u.host().is_some() => Some(u),
        _ => {
            e.at(
                p("sessions.backend").key(key),
                format!("{s:?} is not an absolute http(s) URL"),
            );
            None
        }
    }
}

fn validate_backend(
    b: &BackendFile,
    upstream: Option<&str>,
    e: &mut Errors,
) -> Option<BackendSettings> {
    let at = |k: &str| p("sessions.backend").key(k);
    let validate_url = if b.validate_url.is_empty() {
        let Some(base) = upstream else {
            e.at(
                at("validate_url"),
                "must be set: the upstream has no plain-HTTP address to default to",
            );
            return None;
        };
        url(&format!("{base}/users/@me"), "validate_url", e)
    } else {
        url(&b.validate_url, "validate_url", e)
    };
    let introspect_url = match b.introspect_url.as_str() {
        "" => None,
        u => Some(url(u, "introspect_url", e)?),
    };
    let client_secret = match &b.client_secret {
        None => None,
        Some(src) => match src.resolve() {
            Ok(s) => Some(s),
            Err(msg) => {
                e.at(at("client_secret"), msg);
                return None;
            }
        },
    };
    let client_id = (!b.client_id.is_empty()).then(|| b.client_id.clone());
    if client_id.is_some() != client_secret.is_some() {
        e.at(at("client_id"), "client_id and client_secret go together");
    }
    if !b.user_id_pointer.starts_with('/') {
        e.at(at("user_id_pointer"), "must be a JSON pointer like \"/id\"");
    }
    for (v, key) in [
        (&b.mfa_pointer, "mfa_pointer"),
        (&b.flags_pointer, "flags_pointer"),
    ] {
        if !v.is_empty() && !v.starts_with('/') {
            e.at(at(key), "must be a JSON pointer like \"/flags\", or empty");
        }
    }
    positive(b.connect_timeout, at("connect_timeout"), e);
    positive(b.request_timeout, at("request_timeout"), e);
    if b.max_concurrency == 0 {
        e.at(at("max_concurrency"), "must be at least 1");
    }
    Some(BackendSettings {
        introspect_url,
        client_id,
        client_secret,
        user_id_pointer: b.user_id_pointer.clone(),
        mfa_pointer: b.mfa_pointer.clone(),
        flags_pointer: b.flags_pointer.clone(),
        connect_timeout: b.connect_timeout.0,
        request_timeout: b.request_timeout.0,
        max_concurrency: b.max_concurrency,
        ..BackendSettings::new(validate_url?)
    })
}
