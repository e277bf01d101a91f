//! The config file as written: [`FileConfig`], one field per TOML section. Each section's
//! struct, with its defaults and its validation, lives in the section's own module
//! (`config/<section>.rs`); they are re-exported here.

pub use super::admin::AdminFile;
pub use super::client_ip::ClientIpFile;
pub use super::cookies::CookiesFile;
pub use super::cors::CorsFile;
pub use super::credentials::CredentialsFile;
pub use super::csrf::CsrfFile;
pub use super::edge::{CertFile, ServerFile, TlsListenerFile};
pub use super::forward_auth::ForwardAuthFile;
pub use super::geoip::GeoipFile;
pub use super::identity::IdentityFile;
pub use super::internal_secrets::InternalSecretFile;
pub use super::ip_authorization::IpAuthFile;
pub use super::limits::{BucketFile, LockoutFile, RateLimitsFile};
pub use super::logging::LoggingFile;
pub use super::login::LoginFile;
pub use super::network::NetworkFile;
pub use super::redis::RedisFile;
pub use super::rollout::RolloutFile;
pub use super::routes::{RouteFile, RoutingFile};
pub use super::sessions::{EmbeddedFile, SessionsFile};
pub use super::sudo::SudoFile;
pub use super::traces::TracingFile;
pub use super::upstreams::{HealthCheckFile, UpstreamFile, UpstreamsFile};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(default)]
pub struct FileConfig {
    pub server: ServerFile,
    /// `[upstream]` (one table) or `[[upstream]]` (several, by name).
    pub upstream: UpstreamsFile,
    pub client_ip: ClientIpFile,
    pub sessions: SessionsFile,
    pub redis: RedisFile,
    pub credentials: CredentialsFile,
    pub sudo: SudoFile,
    pub login: LoginFile,
    pub cookies: CookiesFile,
    pub csrf: CsrfFile,
    pub cors: CorsFile,
    pub internal_secrets: Vec<InternalSecretFile>,
    pub rate_limits: RateLimitsFile,
    pub geoip: GeoipFile,
    pub network: NetworkFile,
    #[serde(rename = "network_rule")]
    pub network_rules: Vec<NetworkFile>,
    pub ip_authorization: IpAuthFile,
    pub rollout: RolloutFile,
    pub routing: RoutingFile,
    #[serde(rename = "route")]
    pub routes: Vec<RouteFile>,
    pub identity: IdentityFile,
    pub admin: AdminFile,
    pub forward_auth: ForwardAuthFile,
    pub logging: LoggingFile,
    pub tracing: TracingFile,
}
