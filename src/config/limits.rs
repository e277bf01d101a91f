//! `[rate_limits]`: its file form, and its validation (buckets, lockouts, the global per-user
//! bucket and the backend).

use super::Dur;
use super::validate::{Errors, choice, p, positive};
use crate::policy::ratelimit::gcra::Rate;
use crate::policy::ratelimit::keys::KeySpec;
use crate::policy::ratelimit::{BucketDef, LimiterSettings, LockoutDef, Scope, name_hash};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default)]
pub struct RateLimitsFile {
    pub backend: String,
    pub on_error: String,
    pub lockout_on_error: String,
    pub max_local_keys: usize,
    pub headers_on_success: bool,
    pub global_limit: i64,
    pub global_window: Dur,
    #[serde(rename = "bucket")]
    pub buckets: Vec<BucketFile>,
    #[serde(rename = "lockout")]
    pub lockouts: Vec<LockoutFile>,
}

impl Default for RateLimitsFile {
    fn default() -> Self {
        RateLimitsFile {
            backend: "local".into(),
            on_error: "local".into(),
            lockout_on_error: "deny".into(),
            max_local_keys: 1_000_000,
            headers_on_success: false,
            global_limit: 50,
            global_window: Dur::from_secs(1),
            buckets: Vec::new(),
            lockouts: Vec::new(),
        }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default)]
pub struct BucketFile {
    pub name: String,
    pub limit: i64,
    pub window: Dur,
    pub key: String,
    pub scope: String,
}

impl Default for BucketFile {
    fn default() -> Self {
        BucketFile {
            name: String::new(),
            limit: 0,
            window: Dur::from_secs(0),
            key: "ip".into(),
            scope: "user".into(),
        }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default)]
pub struct LockoutFile {
    pub name: String,
    pub key: String,
    pub statuses: Vec<u16>,
    pub max_failures: i64,
    pub find_time: Dur,
    pub ban_time: Dur,
}

impl Default for LockoutFile {
    fn default() -> Self {
        LockoutFile {
            name: String::new(),
            key: "ip".into(),
            statuses: vec![400, 401, 403],
            max_failures: 5,
            find_time: Dur::from_secs(900),
            ban_time: Dur::from_secs(900),
        }
    }
}

/// Largest `limit` per window (keeps the Redis script's arithmetic exact; see ratelimit/redis).
const MAX_LIMIT: i64 = 10_000;
const MAX_WINDOW_MS: i64 = 7 * 86_400_000;

/// `[rate_limits]`, validated.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct LimitsConfig {
    pub buckets: Vec<BucketDef>,
    pub lockouts: Vec<LockoutDef>,
    pub global: Option<BucketDef>,
    pub on_redis: bool,
    pub settings: LimiterSettings,
}

fn rate(
    limit: i64,
    window: super::Dur,
    path: &super::KeyPath,
    lkey: &str,
    wkey: &str,
    e: &mut Errors,
) -> Rate {
    if !(1..=MAX_LIMIT).contains(&limit) {
        e.at(path.key(lkey), format!("must be between 1 and {MAX_LIMIT}"));
    }
    positive(window, path.key(wkey), e);
    if window.as_millis() > MAX_WINDOW_MS {
        e.at(path.key(wkey), "must be at most 7d");
    }
    Rate {
        limit: limit.clamp(1, MAX_LIMIT),
        window_ms: window.as_millis().clamp(1, MAX_WINDOW_MS),
    }
}

fn name_ok(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.:".contains(&b))
}

fn key(s: &str, path: super::KeyPath, e: &mut Errors) -> KeySpec {
    KeySpec::parse(s).unwrap_or_else(|msg| {
        e.at(path, msg);
        KeySpec::Ip
    })
}

fn fallback(s: &str, path: super::KeyPath, e: &mut Errors) -> bool {
    choice(s, "fallback", &[("local", true), ("deny", false)], path, e).unwrap_or(false)
}

pub(super) fn validate_rate_limits(r: &RateLimitsFile, e: &mut Errors) -> LimitsConfig {
    let on_redis = choice(
        &r.backend,
        "backend",
        &[("local", false), ("redis", true)],
        p("rate_limits.backend"),
        e,
    )
    .unwrap_or(false);
    if r.max_local_keys < 1024 {
        e.at(p("rate_limits.max_local_keys"), "must be at least 1024");
    }
    let mut buckets = Vec::new();
    for (i, b) in r.buckets.iter().enumerate() {
        let path = p("rate_limits.bucket").index(i);
        if !name_ok(&b.name) {
            e.at(
                path.key("name"),
                "needs a name of 1-64 letters, digits, '-', '_', '.' or ':'",
            );
        }
        if r.buckets[..i].iter().any(|o| o.name == b.name) {
            e.at(
                path.key("name"),
                format!("bucket {:?} is defined twice", b.name),
            );
        }
        let scope = choice(
            &b.scope,
            "scope",
            &[("user", Scope::User), ("shared", Scope::Shared)],
            path.key("scope"),
            e,
        )
        .unwrap_or(Scope::User);
        buckets.push(BucketDef {
            name: b.name.clone(),
            id: i as u32,
            rate: rate(b.limit, b.window, &path, "limit", "window", e),
            key: key(&b.key, path.key("key"), e),
            scope,
            name_hash: name_hash(&b.name),
        });
    }
    let mut lockouts = Vec::new();
    for (i, l) in r.lockouts.iter().enumerate() {
        let path = p("rate_limits.lockout").index(i);
        if !name_ok(&l.name) {
            e.at(
                path.key("name"),
                "needs a name of 1-64 letters, digits, '-', '_', '.' or ':'",
            );
        }
        if r.lockouts[..i].iter().any(|o| o.name == l.name) {
            e.at(
                path.key("name"),
                format!("lockout {:?} is defined twice", l.name),
            );
        }
        let k = key(&l.key, path.key("key"), e);
        if !k.pre_auth() {
            e.at(path.key("key"), "a lockout key must be known before authentication: ip, param:<name> or body:<field>");
        }
        if l.statuses.is_empty() || l.statuses.iter().any(|s| !(100..=599).contains(s)) {
            e.at(
                path.key("statuses"),
                "needs HTTP status codes (100-599), e.g. [400, 401, 403]",
            );
        }
        positive(l.ban_time, path.key("ban_time"), e);
        let most = crate::policy::ratelimit::window::MAX_FAILURES as i64;
        if l.max_failures > most {
            e.at(
                path.key("max_failures"),
                format!("must be between 1 and {most} (each failure in the window is remembered)"),
            );
        }
        lockouts.push(LockoutDef {
            name: l.name.clone(),
            id: i as u32,
            key: k,
            statuses: l.statuses.clone(),
            rate: rate(
                l.max_failures,
                l.find_time,
                &path,
                "max_failures",
                "find_time",
                e,
            ),
            ban_ms: l.ban_time.as_millis(),
            name_hash: name_hash(&l.name),
        });
    }
    let global = (r.global_limit > 0).then(|| BucketDef {
        name: "global".into(),
        id: u32::MAX >> 1,
        rate: rate(
            r.global_limit,
            r.global_window,
            &p("rate_limits"),
            "global_limit",
            "global_window",
            e,
        ),
        key: KeySpec::User,
        scope: Scope::Global,
        name_hash: name_hash("global"),
    });
    if r.global_limit < 0 {
        e.at(p("rate_limits.global_limit"), "must be 0 (off) or more");
    }
    LimitsConfig {
        buckets,
        lockouts,
        global,
        on_redis,
        settings: LimiterSettings {
            max_local_keys: r.max_local_keys,
            headers_on_success: r.headers_on_success,
            buckets_fall_back_local: fallback(&r.on_error, p("rate_limits.on_error"), e),
            lockouts_fall_back_local: fallback(
                &r.lockout_on_error,
                p("rate_limits.lockout_on_error"),
                e,
            ),
        },
    }
}
