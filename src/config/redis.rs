//! `[redis]`: the connection shared by everything that uses Redis (the session store, the
//! rate limiter, the IP-authorization stream). Validated only when something uses it.

use super::Dur;
use super::secret::SecretSource;
use super::validate::{Errors, p, positive};
use crate::redis_client::RedisSettings;
use serde::{Deserialize, Serialize};
use std::path::PathBuf;

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default)]
pub struct RedisFile {
    pub urls: Vec<String>,
    pub cluster: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub password: Option<SecretSource>,
    pub db: i64,
    pub key_prefix: String,
    pub command_timeout: Dur,
    pub connect_timeout: Dur,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls_ca_file: Option<PathBuf>,
}

impl Default for RedisFile {
    fn default() -> Self {
        RedisFile {
            urls: vec!["redis://127.0.0.1:6379".into()],
            cluster: false,
            username: None,
            password: None,
            db: 0,
            key_prefix: "fluxgate:".into(),
            command_timeout: Dur::from_millis(250),
            connect_timeout: Dur::from_secs(1),
            tls_ca_file: None,
        }
    }
}

/// Validates `[redis]`; call only when something uses Redis.
pub(super) fn validate_redis(r: &RedisFile, e: &mut Errors) -> Option<RedisSettings> {
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
