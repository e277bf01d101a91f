//! `[sessions]`: the store (embedded or Redis), its cache, the session cookie's name and what
//! to do when the store fails. Split by when it takes effect: [`SessionsBoot`] is built once,
//! [`SessionRules`] reloads.

use super::Dur;
use super::validate::{Errors, choice, is_cookie_name, p, positive};
use crate::session::CacheSettings;
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
    pub embedded: EmbeddedFile,
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
            embedded: EmbeddedFile::default(),
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

/// `[sessions]` keys built once: the store and the cache.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionsBoot {
    pub store: StoreSettings,
    pub cache: CacheSettings,
}

/// `[sessions]` keys the request path reads (they reload).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionRules {
    pub cookie_name: String,
    pub store_retry_after_secs: u32,
    /// Answer from recently seen sessions when the store fails (`on_store_error`).
    pub serve_stale: bool,
}

#[derive(Clone, Copy)]
enum Store {
    Embedded,
    Redis,
}

const STORES: &[(&str, Store)] = &[("embedded", Store::Embedded), ("redis", Store::Redis)];

pub(super) fn validate_sessions(s: &SessionsFile, e: &mut Errors) -> (SessionsBoot, SessionRules) {
    let embedded = || StoreSettings::Embedded {
        path: s.embedded.path.clone(),
        sweep_interval: s.embedded.sweep_interval.0,
    };
    let store = match choice(&s.store, "store", STORES, p("sessions.store"), e) {
        Some(Store::Embedded) => {
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
    let boot = SessionsBoot {
        store,
        cache: CacheSettings {
            ttl_ms: s.cache_ttl.as_millis(),
            negative_ttl_ms: s.negative_ttl.as_millis(),
            capacity: s.cache_capacity,
            stale_grace_ms: serve_stale.then(|| s.stale_grace.as_millis()),
        },
    };
    let rules = SessionRules {
        cookie_name: s.cookie_name.clone(),
        store_retry_after_secs: s.store_retry_after.0.as_secs().clamp(1, u32::MAX as u64) as u32,
        serve_stale,
    };
    (boot, rules)
}
