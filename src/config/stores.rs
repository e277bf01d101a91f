//! Validation of `[sessions]` (cache, store choice, embedded and Redis settings) and
//! `[cookies]`.

use super::file::FileConfig;
use super::validate::{Errors, is_cookie_name, p, positive};
use super::{SessionRules, SessionsBoot, StoreSettings};
use crate::identity::{CookiePolicy, SameSite};
use crate::redis_client::RedisSettings;
use crate::session::CacheSettings;

pub(super) fn sessions(f: &FileConfig, e: &mut Errors) -> (SessionsBoot, SessionRules) {
    let s = &f.sessions;
    let embedded = || StoreSettings::Embedded {
        path: s.embedded.path.clone(),
        sweep_interval: s.embedded.sweep_interval.0,
    };
    let store = match s.store.as_str() {
        "embedded" => {
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
        "redis" => {
            positive(
                s.ttl_while_disconnected,
                p("sessions.ttl_while_disconnected"),
                e,
            );
            StoreSettings::Redis {
                ttl_while_disconnected: s.ttl_while_disconnected.0,
            }
        }
        other => {
            e.at(
                p("sessions.store"),
                format!("unknown store {other:?}; use \"embedded\" or \"redis\""),
            );
            embedded()
        }
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
    let serve_stale = match s.on_store_error.as_str() {
        "deny" => false,
        "serve_stale" => true,
        other => {
            e.at(
                p("sessions.on_store_error"),
                format!("unknown policy {other:?}; use \"deny\" or \"serve_stale\""),
            );
            false
        }
    };
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

/// Validates `[redis]`; call only when something uses Redis.
pub(super) fn redis(f: &FileConfig, e: &mut Errors) -> Option<RedisSettings> {
    let r = &f.redis;
    let before = e.0.len();
    if r.urls.is_empty() {
        e.at(
            p("redis.urls"),
            "needs at least one redis:// or rediss:// URL",
        );
    }
    for (i, u) in r.urls.iter().enumerate() {
        if !(u.starts_with("redis://") || u.starts_with("rediss://")) {
            e.at(
                p("redis.urls").index(i),
                format!("{u:?} must start with redis:// or rediss://"),
            );
        }
    }
    if !r.cluster && r.urls.len() > 1 {
        e.at(
            p("redis.urls"),
            "several URLs are cluster seed nodes: set redis.cluster = true, or list one URL",
        );
    }
    if r.cluster && r.db != 0 {
        e.at(p("redis.db"), "Redis Cluster has only database 0");
    }
    if !(0..=15).contains(&r.db) && !r.cluster {
        e.at(
            p("redis.db"),
            "must be a database index (0-15 on a default Redis)",
        );
    }
    if r.key_prefix.is_empty() || r.key_prefix.bytes().any(|b| b <= b' ' || b == 0x7f) {
        e.at(
            p("redis.key_prefix"),
            "must be non-empty printable text without spaces",
        );
    }
    positive(r.command_timeout, p("redis.command_timeout"), e);
    positive(r.connect_timeout, p("redis.connect_timeout"), e);
    let password = match &r.password {
        None => None,
        Some(src) => src
            .resolve_with_min(1)
            .map_err(|msg| e.at(p("redis.password"), msg))
            .ok(),
    };
    let tls_ca_pem = match &r.tls_ca_file {
        None => None,
        Some(path) => match std::fs::read(path) {
            Ok(pem) if pem.starts_with(b"-----BEGIN") => Some(pem),
            Ok(_) => {
                e.at(
                    p("redis.tls_ca_file"),
                    format!("{} is not a PEM certificate", path.display()),
                );
                None
            }
            Err(err) => {
                e.at(
                    p("redis.tls_ca_file"),
                    format!("cannot read {}: {err}", path.display()),
                );
                None
            }
        },
    };
    if e.0.len() != before {
        return None;
    }
    let settings = RedisSettings {
        urls: r.urls.clone(),
        cluster: r.cluster,
        username: r.username.clone(),
        password,
        db: r.db,
        key_prefix: r.key_prefix.clone(),
        command_timeout: r.command_timeout.0,
        connect_timeout: r.connect_timeout.0,
        tls_ca_pem,
    };
    // Parse the URLs and credentials now, so a typo is a config error and not a runtime one.
    if let Err(msg) = crate::redis_client::Connections::new(settings.clone()) {
        e.at(p("redis.urls"), msg);
        return None;
    }
    Some(settings)
}

fn same_site(s: &str, key: &str, e: &mut Errors) -> SameSite {
    match s {
        "strict" => SameSite::Strict,
        "lax" => SameSite::Lax,
        "none" => SameSite::None,
        other => {
            e.at(
                p(key),
                format!("unknown SameSite {other:?}; use \"strict\", \"lax\" or \"none\""),
            );
            SameSite::Strict
        }
    }
}

pub(super) fn cookies(f: &FileConfig, e: &mut Errors) -> CookiePolicy {
    let c = &f.cookies;
    let session_same_site = same_site(&c.session_same_site, "cookies.session_same_site", e);
    let sudo_same_site = same_site(&c.sudo_same_site, "cookies.sudo_same_site", e);
    for (ss, key) in [
        (session_same_site, "cookies.session_same_site"),
        (sudo_same_site, "cookies.sudo_same_site"),
    ] {
        if ss == SameSite::None && !c.secure {
            e.at(
                p(key),
                "SameSite=None needs cookies.secure = true (browsers refuse it otherwise)",
            );
        }
    }
    if let Some(d) = &c.domain
        && (d.is_empty()
            || !d
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-'))
    {
        e.at(
            p("cookies.domain"),
            format!("{d:?} is not a domain name; omit it for host-only cookies"),
        );
    }
    CookiePolicy {
        secure: c.secure,
        domain: c.domain.clone(),
        session_name: f.sessions.cookie_name.clone(),
        session_same_site,
        sudo_name: f.sudo.cookie_name.clone(),
        sudo_same_site,
    }
}
