//! Configuration: the TOML file (typed, every default defined once, unknown keys refused) and
//! its validation into [`Config`]. Every problem is reported with its key path and the line and
//! column where it is written; the process refuses to start on any of them.

pub mod duration;
pub mod edge;
pub mod file;
pub mod limits;
pub mod locate;
pub mod network;
mod routes;
pub mod secret;
mod stores;
mod sudo;
mod validate;

pub use duration::Dur;
pub use edge::{CertPaths, EdgeLimits, ServerSettings, TlsListener, UpstreamSettings, UpstreamTls};
pub use file::FileConfig;
pub use locate::KeyPath;

use crate::identity::HeaderNames;
use crate::net::client_ip::ClientIpResolver;
use crate::policy::{InternalSecrets, KindSet, RouteTable};
use crate::session::CacheSettings;
use locate::{Located, Seg};
use secret::Secret;
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// A validated configuration.
pub struct Config {
    pub server: ServerSettings,
    pub upstream: UpstreamSettings,
    pub client_ip: ClientIpResolver,
    pub sessions: SessionSettings,
    /// `[redis]`, validated when something uses Redis.
    pub redis: Option<crate::redis_client::RedisSettings>,
    /// Credential kinds accepted at all.
    pub accept: KindSet,
    pub cookies: crate::identity::CookiePolicy,
    /// `[sudo]`, when a secret is configured.
    pub sudo: Option<crate::policy::sudo::SudoSettings>,
    pub geoip: network::GeoSettings,
    /// `[network]`: rules for every request.
    pub network: crate::policy::network::NetworkRules,
    /// `[[network_rule]]`: rule sets routes refer to, by index.
    pub network_rules: Vec<crate::policy::network::NetworkRules>,
    pub ip_auth: network::IpAuthConfig,
    /// `[csrf]`: origins allowed to make cookie-authenticated state changes.
    pub origins: crate::policy::csrf::OriginPolicy,
    pub secrets: InternalSecrets,
    pub routes: RouteTable,
    /// `[rate_limits]`.
    pub limits: limits::LimitsConfig,
    pub identity: HeaderNames,
    /// Signs `X-Fluxgate-Assertion` when configured.
    pub assertion: Option<std::sync::Arc<crate::identity::assertion::Asserter>>,
    pub admin: AdminSettings,
    pub logging: LoggingSettings,
    /// The file as read with defaults filled in (for `check-config`).
    pub file: FileConfig,
}

#[derive(Debug, Clone)]
pub enum StoreSettings {
    Embedded {
        path: PathBuf,
        sweep_interval: Duration,
    },
    /// Sessions in Redis (connection settings in [`Config::redis`]).
    Redis {
        /// While the invalidation subscription is down, trust cached sessions this long.
        ttl_while_disconnected: Duration,
    },
}

#[derive(Debug, Clone)]
pub struct SessionSettings {
    pub store: StoreSettings,
    pub cookie_name: String,
    pub cache: CacheSettings,
    pub store_retry_after_secs: u32,
    /// Answer from recently seen sessions when the store fails (`on_store_error`).
    pub serve_stale: bool,
}

#[derive(Debug, Clone)]
pub struct AdminSettings {
    pub listen: SocketAddr,
    /// `None`: the management API refuses every call.
    pub secret: Option<Secret>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Json,
    Logfmt,
    Pretty,
}

#[derive(Debug, Clone)]
pub struct LoggingSettings {
    pub format: LogFormat,
    pub level: String,
    pub access_log: bool,
}

/// One problem in the config.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub path: KeyPath,
    pub message: String,
    /// Point at the key rather than the value (unknown keys).
    pub at_key: bool,
}

/// Every problem found, with positions resolved against the source.
#[derive(Debug, Clone)]
pub struct ConfigErrors {
    pub source_name: String,
    pub problems: Vec<(ConfigError, Option<(usize, usize)>)>,
}

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.problems.len();
        writeln!(
            f,
            "{}: {n} problem{}:",
            self.source_name,
            if n == 1 { "" } else { "s" }
        )?;
        for (e, pos) in &self.problems {
            match pos {
                Some((l, c)) => {
                    writeln!(f, "  - {} (line {l}, column {c}): {}", e.path, e.message)?
                }
                None => writeln!(f, "  - {}: {}", e.path, e.message)?,
            }
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

fn ignored_to_path(p: &serde_ignored::Path<'_>, out: &mut KeyPath) {
    use serde_ignored::Path as P;
    match p {
        P::Root => {}
        P::Seq { parent, index } => {
            ignored_to_path(parent, out);
            out.0.push(Seg::Index(*index));
        }
        P::Map { parent, key } => {
            ignored_to_path(parent, out);
            out.0.push(Seg::Key(key.clone()));
        }
        P::Some { parent } | P::NewtypeStruct { parent } | P::NewtypeVariant { parent } => {
            ignored_to_path(parent, out)
        }
    }
}

/// Parses and validates config text. `source_name` names it in messages (usually the path).
pub fn parse(src: &str, source_name: &str) -> Result<Config, ConfigErrors> {
    let located = Located::new(src);
    let resolve = |errs: Vec<ConfigError>| ConfigErrors {
        source_name: source_name.to_string(),
        problems: errs
            .into_iter()
            .map(|e| {
                let pos = located
                    .span(&e.path, e.at_key)
                    .map(|s| located.line_col(s.start));
                (e, pos)
            })
            .collect(),
    };
    let mut unknown = Vec::new();
    let de = match toml::Deserializer::parse(src) {
        Ok(de) => de,
        Err(err) => return Err(syntax(&located, &err, source_name)),
    };
    // serde_ignored reports every unknown key in one pass (deny_unknown_fields would stop at
    // the first), so an operator sees all of their typos at once.
    let parsed: Result<FileConfig, _> = serde_ignored::deserialize(de, |path| {
        let mut kp = KeyPath::root();
        ignored_to_path(&path, &mut kp);
        unknown.push(ConfigError {
            message: "unknown key".into(),
            path: kp,
            at_key: true,
        });
    });
    let file = match parsed {
        Ok(f) => f,
        Err(err) => {
            let mut out = syntax(&located, &err, source_name);
            let mut rest = resolve(unknown).problems;
            out.problems.append(&mut rest);
            return Err(out);
        }
    };
    // Validate even when keys are unknown, so every problem is reported in one go.
    match validate::validate(file) {
        Ok(cfg) if unknown.is_empty() => Ok(cfg),
        Ok(_) => Err(resolve(unknown)),
        Err(mut errs) => {
            unknown.append(&mut errs);
            Err(resolve(unknown))
        }
    }
}

fn syntax(located: &Located<'_>, err: &toml::de::Error, source_name: &str) -> ConfigErrors {
    let span = err.span();
    let pos = span.as_ref().map(|s| located.line_col(s.start));
    let path = span.map(|s| located.path_at(s.start)).unwrap_or_default();
    ConfigErrors {
        source_name: source_name.to_string(),
        problems: vec![(
            ConfigError {
                path,
                message: err.message().trim().to_string(),
                at_key: false,
            },
            pos,
        )],
    }
}

/// Reads and validates a config file.
pub fn load(path: &Path) -> Result<Config, ConfigErrors> {
    let name = path.display().to_string();
    let src = std::fs::read_to_string(path).map_err(|e| ConfigErrors {
        source_name: name.clone(),
        problems: vec![(
            ConfigError {
                path: KeyPath::root(),
                message: format!("cannot read the file: {e}"),
                at_key: false,
            },
            None,
        )],
    })?;
    parse(&src, &name)
}

impl Config {
    /// The normalized config as TOML, defaults filled in, secrets redacted.
    pub fn normalized(&self) -> String {
        toml::to_string_pretty(&self.file).expect("the file config always serializes")
    }
}

#[cfg(test)]
#[path = "tests.rs"]
mod tests;
