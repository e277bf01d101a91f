//! `[ip_authorization]`: how a new location is recognised and confirmed (granularity, tickets,
//! the webhook and the Redis stream that announce it).

use super::Dur;
use super::file::FileConfig;
use super::secret::SecretSource;
use super::validate::{Errors, choice, p, positive};
use crate::net::cidr::CidrSet;
use crate::policy::ipauth::notify::Webhook;
use crate::policy::ipauth::{Granularity, IpAuthSettings};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default)]
pub struct IpAuthFile {
    pub granularity: String,
    pub v4_prefix: u8,
    pub v6_prefix: u8,
    pub ticket_ttl: Dur,
    pub resend_after: Dur,
    pub trusted_networks: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub webhook_url: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub webhook_secret: Option<SecretSource>,
    pub webhook_timeout: Dur,
    pub webhook_retries: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub redis_stream: Option<String>,
}

impl Default for IpAuthFile {
    fn default() -> Self {
        IpAuthFile {
            granularity: "network".into(),
            v4_prefix: 24,
            v6_prefix: 48,
            ticket_ttl: Dur::from_secs(900),
            resend_after: Dur::from_secs(30),
            trusted_networks: Vec::new(),
            webhook_url: None,
            webhook_secret: None,
            webhook_timeout: Dur::from_secs(5),
            webhook_retries: 3,
            redis_stream: None,
        }
    }
}

/// `[ip_authorization]`, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IpAuthConfig {
    pub settings: IpAuthSettings,
    pub webhook: Option<Webhook>,
    pub stream: Option<String>,
}

/// Takes the whole file: the `asn` and `country` granularities need `[geoip]` databases.
pub(super) fn validate_ip_authorization(f: &FileConfig, e: &mut Errors) -> IpAuthConfig {
    let a = &f.ip_authorization;
    let path = p("ip_authorization");
    let granularity = choice(
        &a.granularity,
        "granularity",
        &[
            ("ip", Granularity::Ip),
            ("network", Granularity::Network),
            ("asn", Granularity::Asn),
            ("country", Granularity::Country),
        ],
        path.key("granularity"),
        e,
    )
    .unwrap_or(Granularity::Network);
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
