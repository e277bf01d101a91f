//! The config file as written: serde structs with every default defined once, in the
//! `Default` impls below. `validate` turns this into the typed [`super::Config`].

pub use super::edge::{CertFile, ServerFile, TlsListenerFile, UpstreamFile};
pub use super::limits::{BucketFile, LockoutFile, RateLimitsFile};
use super::secret::SecretSource;
use crate::duration::Dur;
use crate::identity::IdentityHeader;
use serde::{Deserialize, Serialize};
use std::path::PathBuf;

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(default)]
pub struct FileConfig {
    pub server: ServerFile,
    pub upstream: UpstreamFile,
    pub client_ip: ClientIpFile,
    pub sessions: SessionsFile,
    pub redis: RedisFile,
    pub credentials: CredentialsFile,
    pub sudo: SudoFile,
    pub cookies: CookiesFile,
    pub csrf: CsrfFile,
    pub internal_secrets: Vec<InternalSecretFile>,
    pub rate_limits: RateLimitsFile,
    pub geoip: GeoipFile,
    pub network: NetworkFile,
    #[serde(rename = "network_rule")]
    pub network_rules: Vec<NetworkFile>,
    pub ip_authorization: IpAuthFile,
    pub routing: RoutingFile,
    #[serde(rename = "route")]
    pub routes: Vec<RouteFile>,
    pub identity: IdentityFile,
    pub admin: AdminFile,
    pub logging: LoggingFile,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default)]
pub struct ClientIpFile {
    pub trusted_proxies: Vec<String>,
    pub header: String,
}

impl Default for ClientIpFile {
    fn default() -> Self {
        ClientIpFile {
            trusted_proxies: Vec::new(),
            header: "X-Forwarded-For".into(),
        }
    }
}

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

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default)]
pub struct GeoipFile {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub country_db: Option<PathBuf>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub asn_db: Option<PathBuf>,
    pub reload_check: Dur,
    pub headers: bool,
}

impl Default for GeoipFile {
    fn default() -> Self {
        GeoipFile {
            country_db: None,
            asn_db: None,
            reload_check: Dur::from_secs(10),
            headers: true,
        }
    }
}

/// Network rules: `[network]` (global) and each `[[network_rule]]` (named, for routes).
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default)]
pub struct NetworkFile {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    pub allow_cidrs: Vec<String>,
    pub deny_cidrs: Vec<String>,
    pub allow_countries: Vec<String>,
    pub deny_countries: Vec<String>,
    pub allow_asns: Vec<u32>,
    pub deny_asns: Vec<u32>,
    pub unknown: String,
}

impl Default for NetworkFile {
    fn default() -> Self {
        NetworkFile {
            name: None,
            allow_cidrs: Vec::new(),
            deny_cidrs: Vec::new(),
            allow_countries: Vec::new(),
            deny_countries: Vec::new(),
            allow_asns: Vec::new(),
            deny_asns: Vec::new(),
            unknown: "deny".into(),
        }
    }
}

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

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default)]
pub struct CookiesFile {
    pub secure: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub domain: Option<String>,
    pub session_same_site: String,
    pub sudo_same_site: String,
}

impl Default for CookiesFile {
    fn default() -> Self {
        CookiesFile {
            secure: true,
            domain: None,
            session_same_site: "lax".into(),
            sudo_same_site: "strict".into(),
        }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default)]
pub struct CredentialsFile {
    pub accept: Vec<String>,
}

impl Default for CredentialsFile {
    fn default() -> Self {
        CredentialsFile {
            accept: vec!["session".into(), "oauth2".into()],
        }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default)]
pub struct SudoFile {
    pub cookie_name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub secret: Option<SecretSource>,
    pub lifetime: Dur,
    pub leeway: Dur,
    pub bind_to_session: bool,
    pub forward_upstream_token: bool,
}

impl Default for SudoFile {
    fn default() -> Self {
        SudoFile {
            cookie_name: "fluxer_sudo_mode".into(),
            secret: None,
            lifetime: Dur::from_secs(900),
            leeway: Dur::from_secs(1),
            bind_to_session: false,
            forward_upstream_token: false,
        }
    }
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(default)]
pub struct CsrfFile {
    pub allowed_origins: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rp_id: Option<String>,
    pub additional_allowed_origins: Vec<String>,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(default)]
pub struct InternalSecretFile {
    pub name: String,
    pub secret: SecretSource,
    pub networks: Vec<String>,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default)]
pub struct RoutingFile {
    pub version_prefixes: Vec<String>,
    pub default: RouteFile,
}

impl Default for RoutingFile {
    fn default() -> Self {
        RoutingFile {
            version_prefixes: vec!["/v1".into()],
            default: RouteFile::default(),
        }
    }
}

/// A route: method set + path pattern and its rules. `[routing.default]` has the same shape
/// without `methods` and `path`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default)]
pub struct RouteFile {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub methods: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    pub auth: String,
    /// `None` means the globally accepted kinds.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kinds: Option<Vec<String>>,
    pub scopes: Vec<String>,
    pub pass_cookies: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub role: Option<String>,
    pub sudo: bool,
    pub csrf: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub network: Option<String>,
    pub ip_authorization: bool,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub rate_limits: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lockout: Option<String>,
}

impl Default for RouteFile {
    fn default() -> Self {
        RouteFile {
            name: None,
            methods: Vec::new(),
            path: None,
            auth: "required".into(),
            kinds: None,
            scopes: Vec::new(),
            pass_cookies: false,
            role: None,
            sudo: false,
            csrf: true,
            network: None,
            ip_authorization: false,
            rate_limits: Vec::new(),
            lockout: None,
        }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default)]
pub struct IdentityFile {
    pub auth_kind_header: String,
    pub user_id_header: String,
    pub session_id_header: String,
    pub scopes_header: String,
    pub service_header: String,
    pub sudo_until_header: String,
    pub client_ip_header: String,
    pub country_header: String,
    pub asn_header: String,
    pub assertion_header: String,
    /// Signs `assertion_header` (HS256) when set.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub assertion_secret: Option<SecretSource>,
    pub assertion_ttl: Dur,
}

impl IdentityFile {
    /// The configured name of `h`. The one place that maps a variant of the identity-header
    /// table to its field; `every_identity_key_maps_to_its_own_header` proves the mapping.
    pub fn name(&self, h: IdentityHeader) -> &str {
        use IdentityHeader as H;
        match h {
            H::AuthKind => &self.auth_kind_header,
            H::UserId => &self.user_id_header,
            H::SessionId => &self.session_id_header,
            H::Scopes => &self.scopes_header,
            H::Service => &self.service_header,
            H::SudoUntil => &self.sudo_until_header,
            H::ClientIp => &self.client_ip_header,
            H::Country => &self.country_header,
            H::Asn => &self.asn_header,
            H::Assertion => &self.assertion_header,
        }
    }
}

impl Default for IdentityFile {
    fn default() -> Self {
        use IdentityHeader as H;
        let d = |h: IdentityHeader| h.default_name().to_string();
        IdentityFile {
            auth_kind_header: d(H::AuthKind),
            user_id_header: d(H::UserId),
            session_id_header: d(H::SessionId),
            scopes_header: d(H::Scopes),
            service_header: d(H::Service),
            sudo_until_header: d(H::SudoUntil),
            client_ip_header: d(H::ClientIp),
            country_header: d(H::Country),
            asn_header: d(H::Asn),
            assertion_header: d(H::Assertion),
            assertion_secret: None,
            assertion_ttl: Dur::from_secs(60),
        }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default)]
pub struct AdminFile {
    pub listen: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub secret: Option<SecretSource>,
}

impl Default for AdminFile {
    fn default() -> Self {
        AdminFile {
            listen: "127.0.0.1:9090".into(),
            secret: None,
        }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default)]
pub struct LoggingFile {
    pub format: String,
    pub level: String,
    pub access_log: bool,
}

impl Default for LoggingFile {
    fn default() -> Self {
        LoggingFile {
            format: "json".into(),
            level: "info".into(),
            access_log: true,
        }
    }
}
