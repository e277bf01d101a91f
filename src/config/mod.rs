//! Configuration: the TOML file (typed, every default defined once, unknown keys refused) and
//! its validation into [`Config`]. Every problem is reported with its key path and the line and
//! column where it is written; the process refuses to start on any of them.
//!
//! One module per TOML section (`[sessions]` → `sessions.rs`; `[server]` → `edge.rs`;
//! `[upstream]` → `upstreams.rs`; `[rate_limits]` → `limits.rs`; `[routing]` and `[[route]]` → `routes.rs`), each
//! holding the section's file struct, its defaults, its validation and its tests. `file.rs`
//! assembles the sections; `validate.rs` runs them in order and holds the shared helpers.

mod admin;
mod assertion;
mod client_ip;
mod cookies;
mod cors;
mod credentials;
mod csrf;
pub mod edge;
pub mod file;
pub mod forward_auth;
pub mod geoip;
mod identity;
mod internal_secrets;
pub mod ip_authorization;
pub mod limits;
pub mod locate;
mod logging;
mod login;
mod network;
mod path_quirks;
mod redis;
mod rollout;
mod routes;
pub mod secret;
mod sessions;
mod sudo;
mod traces;
pub mod upstreams;
mod validate;

pub use crate::duration::Dur;
pub use admin::AdminSettings;
pub use edge::{ServerSettings, TlsListener};
pub use file::FileConfig;
pub use locate::KeyPath;
pub use sessions::{SessionRules, SessionsBoot, StoreSettings};

use crate::identity::HeaderNames;
use crate::net::cidr::CidrSet;
use crate::net::client_ip::ClientIpResolver;
use crate::policy::{InternalSecrets, KindSet, RouteTable};
use locate::{Located, Seg};
use std::fmt;
use std::path::{Path, PathBuf};

/// A validated configuration, in two parts by when it takes effect. Whether a key reloads is
/// decided by the struct it goes into: [`BootConfig`] is built once at start (a change waits
/// for a restart, and reload names it), [`LiveConfig`] is swapped whole on `SIGHUP`.
pub struct Config {
    pub boot: BootConfig,
    pub live: LiveConfig,
    /// The file as read with defaults filled in (for `check-config`).
    pub file: FileConfig,
}

/// What is built once at start: listeners, the store and its cache, Redis, the GeoIP
/// databases, IP authorization, the admin listener, logging. Compared by value on reload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BootConfig {
    pub server: ServerSettings,
    /// `[sessions]`: the store and its cache.
    pub sessions: SessionsBoot,
    /// `[redis]`, validated when something uses Redis.
    pub redis: Option<crate::redis_client::RedisSettings>,
    /// `client_ip.trusted_proxies` as the listeners see it: exempt from the per-address
    /// connection cap, and the only peers whose PROXY protocol headers are read (the client-IP
    /// resolution itself reloads).
    pub connection_cap_exempt: CidrSet,
    /// `[geoip]` databases.
    pub geoip: geoip::GeoSettings,
    pub ip_auth: ip_authorization::IpAuthConfig,
    pub admin: AdminSettings,
    pub logging: crate::logging::LoggingSettings,
    /// `[forward_auth] listen`: the decision endpoint, when on.
    pub forward_auth: Option<forward_auth::ForwardAuthBoot>,
    /// `[tracing]`: OpenTelemetry export, when `otlp_endpoint` is set.
    pub tracing: Option<crate::telemetry::TracingSettings>,
}

impl BootConfig {
    /// The config sections whose start-time settings differ between `self` and `new`.
    pub fn changes(&self, new: &BootConfig) -> Vec<&'static str> {
        // Destructured, so a new field does not compile until it is named here.
        let BootConfig {
            server,
            sessions,
            redis,
            connection_cap_exempt,
            geoip,
            ip_auth,
            admin,
            logging,
            forward_auth,
            tracing,
        } = self;
        [
            ("server", *server != new.server),
            ("sessions", *sessions != new.sessions),
            ("redis", *redis != new.redis),
            (
                "client_ip.trusted_proxies",
                *connection_cap_exempt != new.connection_cap_exempt,
            ),
            ("geoip", *geoip != new.geoip),
            ("ip_authorization", *ip_auth != new.ip_auth),
            ("admin", *admin != new.admin),
            ("logging", *logging != new.logging),
            ("forward_auth.listen", *forward_auth != new.forward_auth),
            ("tracing", *tracing != new.tracing),
        ]
        .into_iter()
        .filter_map(|(name, changed)| changed.then_some(name))
        .collect()
    }
}

/// What a reload swaps: the rules of the request path and the upstream.
pub struct LiveConfig {
    /// `[upstream]` or `[[upstream]]`, in file order (routes refer to them by index).
    pub upstreams: Vec<crate::proxy::UpstreamSettings>,
    pub client_ip: ClientIpResolver,
    /// `[sessions]` keys the request path reads.
    pub sessions: SessionRules,
    /// Credential kinds accepted at all.
    pub accept: KindSet,
    pub cookies: crate::identity::CookiePolicy,
    /// `[sudo]`, when a secret is configured.
    pub sudo: Option<crate::policy::sudo::SudoSettings>,
    /// `[cors]`: cross-origin readers and preflights.
    pub cors: crate::policy::cors::CorsPolicy,
    /// `[login]`: login capture on `role = "login"` routes.
    pub login: crate::policy::login::LoginSettings,
    /// `geoip.headers`: inject the country and ASN headers.
    pub geo_headers: bool,
    /// `[network]`: rules for every request.
    pub network: crate::policy::network::NetworkRules,
    /// `[[network_rule]]`: rule sets routes refer to, by index.
    pub network_rules: Vec<crate::policy::network::NetworkRules>,
    /// `[csrf]`: origins allowed to make cookie-authenticated state changes.
    pub origins: crate::policy::csrf::OriginPolicy,
    pub secrets: InternalSecrets,
    pub routes: RouteTable,
    /// `[rate_limits]`.
    pub limits: limits::LimitsConfig,
    pub identity: HeaderNames,
    /// Signs `X-Fluxgate-Assertion` when configured.
    pub assertion: Option<std::sync::Arc<crate::identity::assertion::Asserter>>,
    /// `logging.access_log`.
    pub access_log: bool,
    /// `logging.access_log_path`.
    pub access_log_path: bool,
    /// `[forward_auth]`: how the decision endpoint reads the original request.
    pub forward_auth: forward_auth::ForwardAuthRules,
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

/// As [`load`], for `run` and reload: first writes the assertion keys marked `generate = true`
/// whose files do not exist yet (`config/assertion.rs`). `check-config`, `explain` and `probe`
/// use [`load`], which never writes. With the config, the key files written.
pub fn load_generating(path: &Path) -> Result<(Config, Vec<PathBuf>), ConfigErrors> {
    let mut written = Vec::new();
    // A file that does not parse is reported by `load`, with every problem.
    if let Ok(src) = std::fs::read_to_string(path)
        && let Ok(file) = toml::from_str::<FileConfig>(&src)
    {
        written = assertion::generate_missing(&file.identity).map_err(|e| ConfigErrors {
            source_name: path.display().to_string(),
            problems: vec![(e, None)],
        })?;
    }
    Ok((load(path)?, written))
}

impl Config {
    /// The normalized config as TOML, defaults filled in, secrets redacted.
    pub fn normalized(&self) -> String {
        toml::to_string_pretty(&self.file).expect("the file config always serializes")
    }

    /// What is valid but worth a second look: every route in report mode, and sudo routes an
    /// upstream enforcing sudo itself would refuse.
    pub fn warnings(&self) -> Vec<String> {
        let mut out = rollout::warnings(&self.live.routes);
        out.extend(sudo::warnings(&self.live.routes, self.live.sudo.as_ref()));
        out.extend(upstreams::unused(&self.live.upstreams, &self.live.routes));
        out
    }
}

#[cfg(test)]
#[path = "tests.rs"]
mod tests;
