//! `[upstream]` (one service) or `[[upstream]]` (several, by name): the file structs with their
//! defaults, and their validation into `UpstreamSettings`: addresses and weights, timeouts,
//! TLS, load balancing, passive ejection and the active health check.

use super::KeyPath;
use super::validate::{Errors, choice, p, positive};
use crate::duration::Dur;
use crate::proxy::{Balance, HashKey, HealthCheckSettings, UpstreamSettings, UpstreamTls};
use serde::de::{Deserializer, MapAccess, SeqAccess, Visitor};
use serde::{Deserialize, Serialize};
use std::net::ToSocketAddrs;
use std::path::PathBuf;

/// The name `[upstream]` (the single-table form) goes by in routes, logs and metrics.
pub const DEFAULT_NAME: &str = "default";

/// Most retries an idempotent request gets after connect failures (pingora's attempt cap is
/// set from it once, at start, so a reload can change `retries` within it).
pub const MAX_RETRIES: u32 = 3;

/// `[upstream]` or `[[upstream]]`: TOML cannot have both, so the key holds one table or an
/// array of them.
#[derive(Debug, Clone, Serialize)]
#[serde(untagged)]
pub enum UpstreamsFile {
    One(Box<UpstreamFile>),
    Many(Vec<UpstreamFile>),
}

impl Default for UpstreamsFile {
    fn default() -> Self {
        UpstreamsFile::One(Box::default())
    }
}

// Written by hand rather than `#[serde(untagged)]`: untagged buffers the value first, so the
// unknown-key report (serde_ignored) would no longer see inside it and every typo there would
// be dropped silently, and its error says only "did not match any variant".
impl<'de> Deserialize<'de> for UpstreamsFile {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct OneOrMany;
        impl<'de> Visitor<'de> for OneOrMany {
            type Value = UpstreamsFile;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("an [upstream] table or [[upstream]] tables")
            }
            fn visit_map<A: MapAccess<'de>>(self, m: A) -> Result<UpstreamsFile, A::Error> {
                let de = serde::de::value::MapAccessDeserializer::new(m);
                UpstreamFile::deserialize(de).map(|u| UpstreamsFile::One(Box::new(u)))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, s: A) -> Result<UpstreamsFile, A::Error> {
                let de = serde::de::value::SeqAccessDeserializer::new(s);
                Vec::<UpstreamFile>::deserialize(de).map(UpstreamsFile::Many)
            }
        }
        d.deserialize_any(OneOrMany)
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default)]
pub struct UpstreamFile {
    /// Required in `[[upstream]]`; `[upstream]` is `"default"`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    pub addresses: Vec<String>,
    /// One per address (empty: all 1).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub weights: Vec<usize>,
    pub balance: String,
    pub hash_key: String,
    pub connect_timeout: Dur,
    pub read_timeout: Dur,
    pub write_timeout: Dur,
    pub idle_timeout: Dur,
    pub websocket_idle_timeout: Dur,
    pub tls: bool,
    pub tls_server_name: String,
    pub ca_file: Option<PathBuf>,
    pub retries: u32,
    pub eject_after: u32,
    pub eject_for: Dur,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub health_check: Option<HealthCheckFile>,
}

impl Default for UpstreamFile {
    fn default() -> Self {
        UpstreamFile {
            name: None,
            addresses: vec!["127.0.0.1:3000".into()],
            weights: Vec::new(),
            balance: "round_robin".into(),
            hash_key: "client_ip".into(),
            connect_timeout: Dur::from_secs(2),
            read_timeout: Dur::from_secs(30),
            write_timeout: Dur::from_secs(30),
            idle_timeout: Dur::from_secs(60),
            websocket_idle_timeout: Dur::from_secs(600),
            tls: false,
            tls_server_name: String::new(),
            ca_file: None,
            retries: 1,
            eject_after: 3,
            eject_for: Dur::from_secs(10),
            health_check: None,
        }
    }
}

/// `[upstream.health_check]`: an HTTP request to every address, every `interval`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default)]
pub struct HealthCheckFile {
    pub path: String,
    pub interval: Dur,
    pub timeout: Dur,
    pub expected_status: u16,
    pub rise: usize,
    pub fall: usize,
    /// The `Host` of the check (default: `tls_server_name`, or the address).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
}

impl Default for HealthCheckFile {
    fn default() -> Self {
        HealthCheckFile {
            path: "/".into(),
            interval: Dur::from_secs(5),
            timeout: Dur::from_secs(1),
            expected_status: 200,
            rise: 2,
            fall: 2,
            host: None,
        }
    }
}

const BALANCE: &[(&str, bool)] = &[("round_robin", false), ("consistent_hash", true)];
const HASH_KEYS: &[(&str, HashKey)] = &[
    ("client_ip", HashKey::ClientIp),
    ("user_id", HashKey::UserId),
];

/// Every upstream, in file order, each with the key path it is written at.
pub(super) fn validate_upstreams(u: &UpstreamsFile, e: &mut Errors) -> Vec<UpstreamSettings> {
    let list: Vec<(&UpstreamFile, KeyPath)> = match u {
        UpstreamsFile::One(one) => vec![(&**one, p("upstream"))],
        UpstreamsFile::Many(many) => many
            .iter()
            .enumerate()
            .map(|(i, f)| (f, p("upstream").index(i)))
            .collect(),
    };
    if list.is_empty() {
        e.at(p("upstream"), "needs at least one [[upstream]]");
    }
    let many = matches!(u, UpstreamsFile::Many(_));
    let mut out: Vec<UpstreamSettings> = Vec::new();
    for (f, at) in list {
        let name = name(f, many, &at, e);
        if !name.is_empty() && out.iter().any(|o| o.name == name) {
            e.at(
                at.key("name"),
                format!("another [[upstream]] is named {name:?}"),
            );
        }
        out.push(validate_upstream(f, name, &at, e));
    }
    out
}

/// An upstream's name: required in `[[upstream]]`, a metric label and a log field.
fn name(f: &UpstreamFile, many: bool, at: &KeyPath, e: &mut Errors) -> String {
    match (&f.name, many) {
        (None, false) => DEFAULT_NAME.into(),
        (None, true) => {
            e.at(at.clone(), "needs a `name` (routes refer to it)");
            String::new()
        }
        (Some(n), _) => {
            let ok = !n.is_empty()
                && n.len() <= 64
                && n.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-_".contains(&b));
            if !ok {
                e.at(
                    at.key("name"),
                    format!("{n:?}: use 1 to 64 letters, digits, '-' or '_'"),
                );
            }
            n.clone()
        }
    }
}

fn validate_upstream(
    u: &UpstreamFile,
    name: String,
    at: &KeyPath,
    e: &mut Errors,
) -> UpstreamSettings {
    let addresses = addresses(u, at, e);
    let weights = weights(u, at, e);
    for (key, d) in [
        ("connect_timeout", u.connect_timeout),
        ("read_timeout", u.read_timeout),
        ("write_timeout", u.write_timeout),
        ("idle_timeout", u.idle_timeout),
        ("websocket_idle_timeout", u.websocket_idle_timeout),
        ("eject_for", u.eject_for),
    ] {
        positive(d, at.key(key), e);
    }
    if u.retries > MAX_RETRIES {
        e.at(at.key("retries"), format!("must be at most {MAX_RETRIES}"));
    }
    if u.eject_after == 0 {
        e.at(
            at.key("eject_after"),
            "must be at least 1 (consecutive connect failures)",
        );
    }
    let hashed = choice(&u.balance, "balance", BALANCE, at.key("balance"), e);
    let key = choice(&u.hash_key, "hash key", HASH_KEYS, at.key("hash_key"), e);
    let balance = match (hashed, key) {
        (Some(true), Some(k)) => Balance::Hash(k),
        _ => Balance::RoundRobin,
    };
    UpstreamSettings {
        name,
        addresses,
        weights,
        balance,
        connect_timeout: u.connect_timeout.0,
        read_timeout: u.read_timeout.0,
        write_timeout: u.write_timeout.0,
        idle_timeout: u.idle_timeout.0,
        websocket_idle_timeout: u.websocket_idle_timeout.0,
        tls: tls(u, at, e),
        retries: u.retries,
        eject_after: u.eject_after,
        eject_for: u.eject_for.0,
        health_check: u.health_check.as_ref().map(|h| health_check(h, at, e)),
    }
}

fn addresses(u: &UpstreamFile, at: &KeyPath, e: &mut Errors) -> Vec<std::net::SocketAddr> {
    if u.addresses.is_empty() {
        e.at(at.key("addresses"), "needs at least one address");
    }
    let mut addresses = Vec::new();
    for (i, a) in u.addresses.iter().enumerate() {
        // Names are resolved once, here: a per-request lookup would cost more than the proxying.
        match a.to_socket_addrs().map(|mut it| it.next()) {
            Ok(Some(sa)) if !addresses.contains(&sa) => addresses.push(sa),
            Ok(Some(_)) => e.at(
                at.key("addresses").index(i),
                format!("{a:?} is listed twice (use `weights` to send it more)"),
            ),
            _ => e.at(
                at.key("addresses").index(i),
                format!("{a:?} is not a reachable host:port (use e.g. \"127.0.0.1:3000\")"),
            ),
        }
    }
    addresses
}

fn weights(u: &UpstreamFile, at: &KeyPath, e: &mut Errors) -> Vec<usize> {
    if u.weights.is_empty() {
        return vec![1; u.addresses.len()];
    }
    if u.weights.len() != u.addresses.len() {
        e.at(
            at.key("weights"),
            format!(
                "has {} entries for {} addresses: give one weight per address",
                u.weights.len(),
                u.addresses.len()
            ),
        );
    }
    for (i, w) in u.weights.iter().enumerate() {
        if !(1..=100).contains(w) {
            e.at(at.key("weights").index(i), "must be between 1 and 100");
        }
    }
    u.weights.clone()
}

fn tls(u: &UpstreamFile, at: &KeyPath, e: &mut Errors) -> Option<UpstreamTls> {
    if !u.tls {
        if u.ca_file.is_some() || !u.tls_server_name.is_empty() {
            e.at(
                at.key("tls"),
                "tls_server_name and ca_file only apply with tls = true",
            );
        }
        return None;
    }
    // SECURITY: without a name, rustls in pingora would skip certificate verification
    // entirely; a name is required so the upstream's certificate is always checked.
    if u.tls_server_name.is_empty() {
        e.at(
            at.key("tls_server_name"),
            "is required with tls = true: it is the SNI and the name the upstream's certificate must carry",
        );
    }
    let ca = u.ca_file.as_ref().and_then(|path| {
        crate::net::tls::load_ca(path)
            .map_err(|msg| e.at(at.key("ca_file"), msg))
            .ok()
    });
    Some(UpstreamTls {
        server_name: u.tls_server_name.clone(),
        ca,
    })
}

fn health_check(h: &HealthCheckFile, at: &KeyPath, e: &mut Errors) -> HealthCheckSettings {
    let at = at.key("health_check");
    let path_ok = crate::net::path::check_target(h.path.as_bytes()).is_ok();
    if !path_ok {
        e.at(
            at.key("path"),
            format!(
                "{:?} must be a path starting with '/' that passes the path checks",
                h.path
            ),
        );
    }
    positive(h.interval, at.key("interval"), e);
    positive(h.timeout, at.key("timeout"), e);
    if h.timeout.0 > h.interval.0 {
        e.at(at.key("timeout"), "must not be longer than `interval`");
    }
    if !(100..=599).contains(&h.expected_status) {
        e.at(
            at.key("expected_status"),
            "must be an HTTP status (100-599)",
        );
    }
    for (key, n) in [("rise", h.rise), ("fall", h.fall)] {
        if !(1..=100).contains(&n) {
            e.at(
                at.key(key),
                "must be between 1 and 100 (consecutive checks)",
            );
        }
    }
    if let Some(host) = &h.host
        && http::HeaderValue::from_str(host).is_err()
    {
        e.at(
            at.key("host"),
            format!("{host:?} is not a valid Host value"),
        );
    }
    HealthCheckSettings {
        path: h.path.clone(),
        interval: h.interval.0,
        timeout: h.timeout.0,
        expected_status: h.expected_status,
        rise: h.rise,
        fall: h.fall,
        host: h.host.clone(),
    }
}

/// Which upstream requests no route matches go to: `[routing.default] upstream`, or the only
/// one there is.
pub(super) fn default_upstream(
    named: Option<&str>,
    upstreams: &[UpstreamSettings],
    e: &mut Errors,
) -> usize {
    match named {
        // An unknown name is reported where the default policy is checked (`routes.rs`).
        Some(n) => upstreams.iter().position(|u| u.name == n).unwrap_or(0),
        None if upstreams.len() > 1 => {
            e.at(
                p("routing.default"),
                "with several [[upstream]], `upstream` must name the one that serves requests no route matches",
            );
            0
        }
        None => 0,
    }
}

/// The index of the upstream called `name`.
pub(super) fn resolve(
    name: &str,
    upstreams: &[UpstreamSettings],
    at: KeyPath,
    e: &mut Errors,
) -> usize {
    match upstreams.iter().position(|u| u.name == name) {
        Some(i) => i,
        None => {
            let names: Vec<&str> = upstreams.iter().map(|u| u.name.as_str()).collect();
            e.at(
                at,
                format!(
                    "no upstream is named {name:?} (defined: {})",
                    names.join(", ")
                ),
            );
            0
        }
    }
}

/// Upstreams no route (nor the default) sends anything to.
pub(super) fn unused(
    upstreams: &[UpstreamSettings],
    routes: &crate::policy::RouteTable,
) -> Vec<String> {
    upstreams
        .iter()
        .enumerate()
        .filter(|(i, _)| {
            routes.default_route().policy.forward.upstream != *i
                && !routes
                    .routes()
                    .iter()
                    .any(|r| r.policy.forward.upstream == *i)
        })
        .map(|(_, u)| {
            format!(
                "upstream {:?} is defined but no route sends requests to it",
                u.name
            )
        })
        .collect()
}

#[cfg(test)]
#[path = "upstreams_tests.rs"]
mod tests;
