//! File structs → typed [`Config`]. Every problem is collected (with its key path) rather than
//! stopping at the first, so an operator fixes a file in one pass.

use super::file::FileConfig;
use super::locate::KeyPath;
use super::secret::Secret;
use super::{AdminSettings, BootConfig, Config, ConfigError, LiveConfig};
use crate::credential::Kind;
use crate::identity::{HeaderNames, IdentityHeader};
use crate::logging::{LogFormat, LoggingSettings};
use crate::net::cidr::CidrSet;
use crate::net::client_ip::ClientIpResolver;
use crate::policy::routes::KindSet;
use crate::policy::{InternalSecret, InternalSecrets};
use http::{HeaderName, HeaderValue};
use std::net::SocketAddr;

#[derive(Default)]
pub(super) struct Errors(pub(super) Vec<ConfigError>);

impl Errors {
    pub(super) fn at(&mut self, path: KeyPath, message: impl Into<String>) {
        self.0.push(ConfigError {
            path,
            message: message.into(),
            at_key: false,
        });
    }
}

pub(super) fn p(s: &str) -> KeyPath {
    KeyPath::parse(s)
}

/// Validates a parsed file. Returns every problem found.
pub fn validate(file: FileConfig) -> Result<Config, Vec<ConfigError>> {
    let mut e = Errors::default();
    let server = super::edge::server(&file.server, &mut e);
    let upstream = super::edge::upstream(&file.upstream, &mut e);
    let client_ip = client_ip(&file, &mut e);
    let accept = kinds(&file.credentials.accept, p("credentials.accept"), &mut e);
    let (sessions_boot, sessions) = super::stores::sessions(&file, &mut e);
    let limits = super::limits::limits(&file, &mut e);
    let geoip = super::network::geoip(&file, &mut e);
    let (network, named_rules) = super::network::network(&file, &mut e);
    let ip_auth = super::network::ip_authorization(&file, &mut e);
    let sudo = super::sudo::sudo(&file, &mut e);
    let origins = super::sudo::csrf(&file, &mut e);
    let uses_redis = matches!(sessions_boot.store, super::StoreSettings::Redis { .. })
        || limits.on_redis
        || ip_auth.stream.is_some();
    let redis = if uses_redis {
        super::stores::redis(&file, &mut e)
    } else {
        None
    };
    let cookies = super::stores::cookies(&file, &mut e);
    let secrets = secrets(&file, &mut e);
    let routes = super::routes::routes(
        &file,
        &super::routes::Ctx {
            accept,
            has_secrets: !secrets.secrets.is_empty(),
            has_sudo_secret: file.sudo.secret.is_some(),
            limits: &limits,
            network_rules: &named_rules,
        },
        &mut e,
    );
    let identity = identity(&file, &mut e);
    let assertion = assertion(&file, &mut e);
    let admin = admin(&file, &mut e);
    let logging = logging(&file, &mut e);
    if file.sudo.cookie_name.is_empty() || !is_cookie_name(&file.sudo.cookie_name) {
        e.at(
            p("sudo.cookie_name"),
            "must be a cookie name (letters, digits, '_', '-')",
        );
    }
    if file.sudo.cookie_name == file.sessions.cookie_name {
        e.at(
            p("sudo.cookie_name"),
            "must differ from sessions.cookie_name",
        );
    }
    if !e.0.is_empty() {
        return Err(e.0);
    }
    let boot = BootConfig {
        server,
        sessions: sessions_boot,
        redis,
        connection_cap_exempt: client_ip.trusted().clone(),
        geoip,
        ip_auth,
        admin: admin.expect("admin is present when there are no errors"),
        logging,
    };
    let live = LiveConfig {
        upstream,
        client_ip,
        sessions,
        accept,
        cookies,
        sudo,
        geo_headers: file.geoip.headers,
        network,
        network_rules: named_rules.into_iter().map(|(_, r)| r).collect(),
        origins,
        secrets,
        routes: routes.expect("routes are present when there are no errors"),
        limits,
        identity: identity.expect("identity is present when there are no errors"),
        assertion,
        access_log: file.logging.access_log,
    };
    Ok(Config { boot, live, file })
}

pub(super) fn socket(s: &str, path: KeyPath, e: &mut Errors) -> Option<SocketAddr> {
    match s.parse::<SocketAddr>() {
        Ok(a) => Some(a),
        Err(_) => {
            e.at(
                path,
                format!("{s:?} is not an address like \"127.0.0.1:8080\" or \"[::1]:8080\""),
            );
            None
        }
    }
}

pub(super) fn positive(d: super::Dur, path: KeyPath, e: &mut Errors) {
    if d.is_zero() {
        e.at(path, "must be greater than zero");
    }
}

fn cidrs(items: &[String], path: KeyPath, e: &mut Errors) -> CidrSet {
    CidrSet::parse(items).unwrap_or_else(|(i, msg)| {
        e.at(path.index(i), msg);
        CidrSet::default()
    })
}

fn header_name(s: &str, path: KeyPath, e: &mut Errors) -> Option<HeaderName> {
    match HeaderName::from_bytes(s.as_bytes()) {
        Ok(h) => Some(h),
        Err(_) => {
            e.at(path, format!("{s:?} is not a valid HTTP header name"));
            None
        }
    }
}

fn client_ip(f: &FileConfig, e: &mut Errors) -> ClientIpResolver {
    let trusted = cidrs(
        &f.client_ip.trusted_proxies,
        p("client_ip.trusted_proxies"),
        e,
    );
    let header = header_name(&f.client_ip.header, p("client_ip.header"), e)
        .unwrap_or(HeaderName::from_static("x-forwarded-for"));
    ClientIpResolver::new(trusted, header)
}

pub(super) fn kinds(list: &[String], path: KeyPath, e: &mut Errors) -> KindSet {
    let mut out = Vec::new();
    for (i, k) in list.iter().enumerate() {
        match Kind::parse(k) {
            Some(k) => out.push(k),
            None => e.at(
                path.index(i),
                format!("unknown credential kind {k:?}; use \"session\", \"oauth2\" or \"bot\""),
            ),
        }
    }
    KindSet::of(&out)
}

pub(super) fn is_cookie_name(s: &str) -> bool {
    s.bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

fn secrets(f: &FileConfig, e: &mut Errors) -> InternalSecrets {
    let mut out = Vec::new();
    for (i, s) in f.internal_secrets.iter().enumerate() {
        let path = p("internal_secrets").index(i);
        let name_ok = !s.name.is_empty()
            && s.name.len() <= 64
            && s.name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b));
        if !name_ok {
            e.at(
                path.key("name"),
                "needs a name of 1–64 letters, digits, '-', '_' or '.'",
            );
        }
        if f.internal_secrets[..i].iter().any(|o| o.name == s.name) {
            e.at(path.key("name"), format!("name {:?} is used twice", s.name));
        }
        let networks = cidrs(&s.networks, path.key("networks"), e);
        match s.secret.resolve() {
            Ok(secret) if name_ok => out.push(InternalSecret {
                name: s.name.clone(),
                name_header: HeaderValue::from_str(&s.name).expect("checked charset"),
                secret,
                networks,
            }),
            Ok(_) => {}
            Err(msg) => e.at(path.key("secret"), msg),
        }
    }
    for (i, a) in out.iter().enumerate() {
        if out[..i]
            .iter()
            .any(|b| b.secret.digest() == a.secret.digest())
        {
            e.at(
                p("internal_secrets").index(i).key("secret"),
                "the same secret is configured twice; rotation needs two different secrets",
            );
        }
    }
    InternalSecrets { secrets: out }
}

fn identity(f: &FileConfig, e: &mut Errors) -> Option<HeaderNames> {
    let mut names: Vec<(IdentityHeader, HeaderName)> = Vec::new();
    for &h in IdentityHeader::ALL {
        let value = f.identity.name(h);
        let path = p("identity").key(h.config_key());
        let Some(name) = header_name(value, path.clone(), e) else {
            continue;
        };
        let folded = name.as_str().replace('_', "-");
        if names
            .iter()
            .any(|(_, n)| n.as_str().replace('_', "-") == folded)
        {
            e.at(
                path.clone(),
                format!("{value:?} is used for two identity headers"),
            );
        }
        const RESERVED: [&str; 6] = [
            "host",
            "cookie",
            "authorization",
            "content-length",
            "transfer-encoding",
            "connection",
        ];
        if RESERVED.contains(&folded.as_str()) || folded == "x-forwarded-for" {
            e.at(
                path,
                format!("{value:?} is a standard header and cannot carry identity"),
            );
        }
        names.push((h, name));
    }
    if names.len() != IdentityHeader::ALL.len() {
        return None;
    }
    // Looked up by variant, so the order of the list above cannot matter.
    Some(HeaderNames::from_fn(|h| {
        names
            .iter()
            .find(|(k, _)| *k == h)
            .map(|(_, n)| n.clone())
            .expect("every identity header has a validated name")
    }))
}

/// The signer of `X-Fluxgate-Assertion`, when `identity.assertion_secret` is set.
fn assertion(
    f: &FileConfig,
    e: &mut Errors,
) -> Option<std::sync::Arc<crate::identity::assertion::Asserter>> {
    let i = &f.identity;
    let ttl = i.assertion_ttl.0;
    if ttl < std::time::Duration::from_secs(1) || ttl > std::time::Duration::from_secs(300) {
        e.at(
            p("identity.assertion_ttl"),
            "must be between 1s and 5m: an assertion is meant to be used at once",
        );
    }
    // HS256 wants a key as long as its output: 32 bytes.
    match i.assertion_secret.as_ref()?.resolve_with_min(32) {
        Ok(s) => Some(std::sync::Arc::new(
            crate::identity::assertion::Asserter::new(&s, ttl.as_secs() as i64),
        )),
        Err(msg) => {
            e.at(p("identity.assertion_secret"), msg);
            None
        }
    }
}

fn admin(f: &FileConfig, e: &mut Errors) -> Option<AdminSettings> {
    let listen = socket(&f.admin.listen, p("admin.listen"), e);
    let secret: Option<Secret> = match &f.admin.secret {
        None => None,
        Some(s) => match s.resolve() {
            Ok(s) => Some(s),
            Err(msg) => {
                e.at(p("admin.secret"), msg);
                None
            }
        },
    };
    Some(AdminSettings {
        listen: listen?,
        secret,
    })
}

fn logging(f: &FileConfig, e: &mut Errors) -> LoggingSettings {
    let format = match f.logging.format.as_str() {
        "json" => LogFormat::Json,
        "logfmt" => LogFormat::Logfmt,
        "pretty" => LogFormat::Pretty,
        other => {
            e.at(
                p("logging.format"),
                format!("unknown format {other:?}; use \"json\", \"logfmt\" or \"pretty\""),
            );
            LogFormat::Json
        }
    };
    if tracing_subscriber::EnvFilter::try_new(&f.logging.level).is_err() {
        e.at(
            p("logging.level"),
            format!(
                "{:?} is not a level (error, warn, info, debug, trace) or filter",
                f.logging.level
            ),
        );
    }
    LoggingSettings {
        format,
        level: f.logging.level.clone(),
    }
}
