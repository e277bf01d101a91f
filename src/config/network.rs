//! Validation of `[geoip]`, `[network]`, `[[network_rule]]` and `[ip_authorization]`.

use super::KeyPath;
use super::file::{FileConfig, NetworkFile};
use super::validate::{Errors, p, positive};
use crate::net::cidr::CidrSet;
use crate::policy::ipauth::notify::Webhook;
use crate::policy::ipauth::{Granularity, IpAuthSettings};
use crate::policy::network::{NetworkRules, country};
use std::path::PathBuf;
use std::time::Duration;

/// `[geoip]`, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GeoSettings {
    pub country_db: Option<PathBuf>,
    pub asn_db: Option<PathBuf>,
    pub reload_check: Duration,
}

/// `[ip_authorization]`, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IpAuthConfig {
    pub settings: IpAuthSettings,
    pub webhook: Option<Webhook>,
    pub stream: Option<String>,
}

pub(super) fn geoip(f: &FileConfig, e: &mut Errors) -> GeoSettings {
    let g = &f.geoip;
    for (key, path) in [("country_db", &g.country_db), ("asn_db", &g.asn_db)] {
        if let Some(path) = path
            && !path.is_file()
        {
            e.at(
                p("geoip").key(key),
                format!("{} is not a readable file", path.display()),
            );
        }
    }
    positive(g.reload_check, p("geoip.reload_check"), e);
    GeoSettings {
        country_db: g.country_db.clone(),
        asn_db: g.asn_db.clone(),
        reload_check: g.reload_check.0,
    }
}

fn rules(n: &NetworkFile, path: &KeyPath, f: &FileConfig, e: &mut Errors) -> NetworkRules {
    let cidrs = |list: &[String], key: &str, e: &mut Errors| {
        CidrSet::parse(list).unwrap_or_else(|(i, msg)| {
            e.at(path.key(key).index(i), msg);
            CidrSet::default()
        })
    };
    let countries = |list: &[String], key: &str, e: &mut Errors| {
        let mut out = Vec::new();
        for (i, c) in list.iter().enumerate() {
            match country(c) {
                Some(c) => out.push(c),
                None => e.at(
                    path.key(key).index(i),
                    format!("{c:?} is not a two-letter country code"),
                ),
            }
        }
        out
    };
    let allow_unknown = match n.unknown.as_str() {
        "deny" => false,
        "allow" => true,
        other => {
            e.at(
                path.key("unknown"),
                format!("unknown policy {other:?}; use \"deny\" or \"allow\""),
            );
            false
        }
    };
    let r = NetworkRules {
        allow_cidrs: cidrs(&n.allow_cidrs, "allow_cidrs", e),
        deny_cidrs: cidrs(&n.deny_cidrs, "deny_cidrs", e),
        allow_countries: countries(&n.allow_countries, "allow_countries", e),
        deny_countries: countries(&n.deny_countries, "deny_countries", e),
        allow_asns: n.allow_asns.clone(),
        deny_asns: n.deny_asns.clone(),
        allow_unknown,
    };
    if !(r.allow_countries.is_empty() && r.deny_countries.is_empty())
        && f.geoip.country_db.is_none()
    {
        e.at(path.clone(), "country rules need geoip.country_db");
    }
    if !(r.allow_asns.is_empty() && r.deny_asns.is_empty()) && f.geoip.asn_db.is_none() {
        e.at(path.clone(), "ASN rules need geoip.asn_db");
    }
    r
}

/// The global rules and the named rule sets (in file order).
pub(super) fn network(
    f: &FileConfig,
    e: &mut Errors,
) -> (NetworkRules, Vec<(String, NetworkRules)>) {
    let mut global = f.network.clone();
    if global.name.take().is_some() {
        e.at(p("network.name"), "the global [network] takes no name");
    }
    let global = rules(&global, &p("network"), f, e);
    let mut named = Vec::new();
    for (i, n) in f.network_rules.iter().enumerate() {
        let path = p("network_rule").index(i);
        let name = n.name.clone().unwrap_or_default();
        if name.is_empty() {
            e.at(path.key("name"), "needs a name (routes refer to it)");
        } else if named.iter().any(|(o, _)| *o == name) {
            e.at(
                path.key("name"),
                format!("network rule {name:?} is defined twice"),
            );
        }
        named.push((name, rules(n, &path, f, e)));
    }
    (global, named)
}

pub(super) fn ip_authorization(f: &FileConfig, e: &mut Errors) -> IpAuthConfig {
    let a = &f.ip_authorization;
    let path = p("ip_authorization");
    let granularity = match a.granularity.as_str() {
        "ip" => Granularity::Ip,
        "network" => Granularity::Network,
        "asn" => Granularity::Asn,
        "country" => Granularity::Country,
        other => {
            e.at(
                path.key("granularity"),
                format!("unknown granularity {other:?}; use ip, network, asn or country"),
            );
            Granularity::Network
        }
    };
    if granularity == Granularity::Asn && f.geoip.asn_db.is_none() {
        e.at(path.key("granularity"), "\"asn\" needs geoip.asn_db");
    }
    if granularity == Granularity::Country && f.geoip.country_db.is_none() {
        e.at(
            path.key("granularity"),
            "\"country\" needs geoip.country_db",
        );
    }
    if !(8..=32).contains(&a.v4_prefix) {
        e.at(path.key("v4_prefix"), "must be between 8 and 32");
    }
    if !(16..=128).contains(&a.v6_prefix) {
        e.at(path.key("v6_prefix"), "must be between 16 and 128");
    }
    positive(a.ticket_ttl, path.key("ticket_ttl"), e);
    let trusted = CidrSet::parse(&a.trusted_networks).unwrap_or_else(|(i, msg)| {
        e.at(path.key("trusted_networks").index(i), msg);
        CidrSet::default()
    });
    let webhook = match (&a.webhook_url, &a.webhook_secret) {
        (None, None) => None,
        (Some(_), None) => {
            e.at(
                path.key("webhook_secret"),
                "a webhook needs a secret to sign its requests",
            );
            None
        }
        (None, Some(_)) => {
            e.at(
                path.key("webhook_url"),
                "webhook_secret is set but webhook_url is not",
            );
            None
        }
        (Some(url), Some(secret)) => {
            let uri = url.parse::<http::Uri>().ok().filter(|u| {
                matches!(u.scheme_str(), Some("http" | "https")) && u.authority().is_some()
            });
            if uri.is_none() {
                e.at(
                    path.key("webhook_url"),
                    format!("{url:?} is not an http(s) URL"),
                );
            }
            let secret = secret
                .resolve()
                .map_err(|m| e.at(path.key("webhook_secret"), m))
                .ok();
            match (uri, secret) {
                (Some(url), Some(secret)) => Some(Webhook {
                    url,
                    secret: secret.expose().as_bytes().to_vec(),
                    timeout: a.webhook_timeout.0,
                    retries: a.webhook_retries.min(10),
                }),
                _ => None,
            }
        }
    };
    if let Some(s) = &a.redis_stream
        && (s.is_empty() || s.bytes().any(|b| b <= b' '))
    {
        e.at(path.key("redis_stream"), "must be a Redis key name");
    }
    IpAuthConfig {
        settings: IpAuthSettings {
            granularity,
            v4_prefix: a.v4_prefix.clamp(8, 32),
            v6_prefix: a.v6_prefix.clamp(16, 128),
            ticket_ttl_secs: a.ticket_ttl.0.as_secs().max(1) as i64,
            resend_after_secs: a.resend_after.0.as_secs() as i64,
            trusted,
        },
        webhook,
        stream: a.redis_stream.clone(),
    }
}
