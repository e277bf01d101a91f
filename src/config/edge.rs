//! `[server]` (listeners, TLS, connection limits and timeouts): the file structs with their
//! defaults, and their validation. (`[upstream]` lives in `upstreams.rs`.)

use super::KeyPath;
use super::validate::{Errors, p, positive, socket};
use crate::duration::Dur;
use crate::net::tls::CertPaths;
use crate::proxy::edge::EdgeLimits;
use serde::{Deserialize, Serialize};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default)]
pub struct ServerFile {
    pub listen: Vec<String>,
    /// `[[server.tls]]`: TLS listeners, each with its certificates.
    pub tls: Vec<TlsListenerFile>,
    pub threads: usize,
    pub work_stealing: bool,
    pub grace_period: Dur,
    pub shutdown_timeout: Dur,
    pub upgrade_socket: PathBuf,
    pub head_timeout: Dur,
    pub keepalive_timeout: Dur,
    pub body_timeout: Dur,
    pub max_requests_per_connection: u32,
    pub max_connections_per_ip: u32,
    pub max_header_bytes: usize,
    pub max_headers: usize,
    pub h2_max_concurrent_streams: u32,
    /// The `listen` addresses expect a PROXY protocol header first (v1 or v2).
    pub proxy_protocol: bool,
    pub proxy_protocol_timeout: Dur,
}

impl Default for ServerFile {
    fn default() -> Self {
        ServerFile {
            listen: vec!["127.0.0.1:8080".into()],
            tls: Vec::new(),
            threads: 0,
            work_stealing: false,
            grace_period: Dur::from_secs(30),
            shutdown_timeout: Dur::from_secs(5),
            upgrade_socket: PathBuf::from("/tmp/fluxgate-upgrade.sock"),
            head_timeout: Dur::from_secs(10),
            keepalive_timeout: Dur::from_secs(60),
            body_timeout: Dur::from_secs(30),
            max_requests_per_connection: 10_000,
            max_connections_per_ip: 256,
            max_header_bytes: 32 * 1024,
            max_headers: 100,
            h2_max_concurrent_streams: 100,
            proxy_protocol: false,
            proxy_protocol_timeout: Dur::from_secs(5),
        }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default)]
pub struct TlsListenerFile {
    pub listen: String,
    /// The first is served when the client's SNI matches none (or it sends none).
    pub certificates: Vec<CertFile>,
    pub http2: bool,
    /// A PROXY protocol header comes first, before the TLS handshake.
    pub proxy_protocol: bool,
    /// `Strict-Transport-Security` on every answer over this listener (off when absent).
    pub hsts: Option<HstsFile>,
}

impl Default for TlsListenerFile {
    fn default() -> Self {
        TlsListenerFile {
            listen: String::new(),
            certificates: Vec::new(),
            http2: true,
            proxy_protocol: false,
            hsts: None,
        }
    }
}

/// `hsts = { max_age = "365d", include_subdomains = false, preload = false }`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default)]
pub struct HstsFile {
    pub max_age: Dur,
    pub include_subdomains: bool,
    pub preload: bool,
}

impl Default for HstsFile {
    fn default() -> Self {
        HstsFile {
            max_age: Dur::from_secs(HSTS_PRELOAD_MIN_SECS),
            include_subdomains: false,
            preload: false,
        }
    }
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(default)]
pub struct CertFile {
    /// PEM: the certificate, then its chain.
    pub cert: PathBuf,
    /// PEM: the private key (PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
    /// DER: an OCSP response for the certificate, stapled to handshakes that ask for one.
    /// fluxgate never fetches it; it is re-read when the file changes.
    pub ocsp_response: Option<PathBuf>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerSettings {
    pub listen: Vec<SocketAddr>,
    /// The plain listeners expect a PROXY protocol header.
    pub proxy_protocol: bool,
    pub tls: Vec<TlsListener>,
    /// Worker threads (resolved: never 0).
    pub threads: usize,
    pub work_stealing: bool,
    pub grace_period: Duration,
    pub shutdown_timeout: Duration,
    pub upgrade_socket: PathBuf,
    pub limits: EdgeLimits,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsListener {
    pub listen: SocketAddr,
    pub certificates: Vec<CertPaths>,
    pub http2: bool,
    pub proxy_protocol: bool,
    /// The `Strict-Transport-Security` policy of this listener's answers.
    pub hsts: Option<Hsts>,
}

/// A validated `Strict-Transport-Security` policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Hsts {
    pub max_age_secs: u64,
    pub include_subdomains: bool,
    pub preload: bool,
}

impl Hsts {
    /// The header's value, e.g. `max-age=31536000; includeSubDomains; preload`.
    pub fn header_value(&self) -> http::HeaderValue {
        let mut v = format!("max-age={}", self.max_age_secs);
        if self.include_subdomains {
            v.push_str("; includeSubDomains");
        }
        if self.preload {
            v.push_str("; preload");
        }
        // Digits, letters, `=`, `;` and spaces only: always a valid header value.
        http::HeaderValue::try_from(v).unwrap_or_else(|_| http::HeaderValue::from_static(""))
    }
}

/// hstspreload.org's minimum `max-age` for preloading: one year.
const HSTS_PRELOAD_MIN_SECS: u64 = 365 * 86_400;
/// The longest `max-age` accepted: two years (what browsers honour at most, and a typo in
/// days would otherwise pin clients to HTTPS for decades).
const HSTS_MAX_SECS: u64 = 2 * 365 * 86_400;

fn hsts(h: &HstsFile, path: KeyPath, e: &mut Errors) -> Option<Hsts> {
    let ms = h.max_age.0.as_millis();
    let secs = h.max_age.0.as_secs();
    let mut ok = true;
    if !ms.is_multiple_of(1000) {
        e.at(
            path.key("max_age"),
            "must be whole seconds (max-age is sent in seconds)",
        );
        ok = false;
    } else if secs > HSTS_MAX_SECS {
        e.at(
            path.key("max_age"),
            "must be at most 730d (two years); \"0s\" tells browsers to forget the policy",
        );
        ok = false;
    }
    if h.preload {
        // SECURITY: a preload request the list would refuse (or that would preload less than
        // the operator believes) is refused here instead of at hstspreload.org.
        if !h.include_subdomains {
            e.at(
                path.key("preload"),
                "needs include_subdomains = true (hstspreload.org requires it)",
            );
            ok = false;
        }
        if secs < HSTS_PRELOAD_MIN_SECS {
            e.at(
                path.key("preload"),
                "needs max_age of at least 365d (hstspreload.org requires one year)",
            );
            ok = false;
        }
    }
    ok.then_some(Hsts {
        max_age_secs: secs,
        include_subdomains: h.include_subdomains,
        preload: h.preload,
    })
}

pub(super) fn validate_server(s: &ServerFile, e: &mut Errors) -> ServerSettings {
    if s.listen.is_empty() && s.tls.is_empty() {
        e.at(
            p("server.listen"),
            "needs at least one address (or a [[server.tls]] listener)",
        );
    }
    let listen = s
        .listen
        .iter()
        .enumerate()
        .filter_map(|(i, a)| socket(a, p("server.listen").index(i), e))
        .collect();
    let tls = s
        .tls
        .iter()
        .enumerate()
        .filter_map(|(i, t)| tls_listener(t, p("server.tls").index(i), e))
        .collect();
    if s.threads > 256 {
        e.at(
            p("server.threads"),
            "must be at most 256 (0 means one per CPU core)",
        );
    }
    positive(s.shutdown_timeout, p("server.shutdown_timeout"), e);
    for (key, d) in [
        ("head_timeout", s.head_timeout),
        ("keepalive_timeout", s.keepalive_timeout),
        ("body_timeout", s.body_timeout),
        ("proxy_protocol_timeout", s.proxy_protocol_timeout),
    ] {
        positive(d, p("server").key(key), e);
    }
    if !(1024..=1024 * 1024).contains(&s.max_header_bytes) {
        e.at(
            p("server.max_header_bytes"),
            "must be between 1024 and 1048576 (pingora reads at most 1 MiB of headers)",
        );
    }
    if !(8..=250).contains(&s.max_headers) {
        e.at(p("server.max_headers"), "must be between 8 and 250");
    }
    if !(1..=1000).contains(&s.h2_max_concurrent_streams) {
        e.at(
            p("server.h2_max_concurrent_streams"),
            "must be between 1 and 1000",
        );
    }
    ServerSettings {
        listen,
        proxy_protocol: s.proxy_protocol,
        tls,
        threads: if s.threads == 0 {
            std::thread::available_parallelism().map_or(1, |n| n.get())
        } else {
            s.threads
        },
        work_stealing: s.work_stealing,
        grace_period: s.grace_period.0,
        shutdown_timeout: s.shutdown_timeout.0,
        upgrade_socket: s.upgrade_socket.clone(),
        limits: EdgeLimits {
            head_timeout: s.head_timeout.0,
            keepalive_timeout: s.keepalive_timeout.0,
            body_timeout: s.body_timeout.0,
            max_requests_per_connection: s.max_requests_per_connection,
            max_connections_per_ip: s.max_connections_per_ip,
            max_header_bytes: s.max_header_bytes,
            max_headers: s.max_headers,
            h2_max_concurrent_streams: s.h2_max_concurrent_streams,
            proxy_protocol_timeout: s.proxy_protocol_timeout.0,
        },
    }
}

/// PROXY protocol listeners believe only `client_ip.trusted_proxies`: with none, every
/// connection to them would be closed.
pub(super) fn check_proxy_protocol(file: &super::file::FileConfig, e: &mut Errors) {
    if !file.client_ip.trusted_proxies.is_empty() {
        return;
    }
    const WHY: &str = "needs client_ip.trusted_proxies: only those peers may send a PROXY header, \
                       and connections from any other are closed";
    if file.server.proxy_protocol {
        e.at(p("server.proxy_protocol"), WHY);
    }
    for (i, t) in file.server.tls.iter().enumerate() {
        if t.proxy_protocol {
            e.at(p("server.tls").index(i).key("proxy_protocol"), WHY);
        }
    }
}

fn tls_listener(t: &TlsListenerFile, path: KeyPath, e: &mut Errors) -> Option<TlsListener> {
    let listen = socket(&t.listen, path.key("listen"), e);
    if t.certificates.is_empty() {
        e.at(
            path.key("certificates"),
            "needs at least one { cert, key } pair",
        );
    }
    let mut certificates = Vec::new();
    for (i, c) in t.certificates.iter().enumerate() {
        // Loaded here so a bad file is a config error with its key path, not a startup failure.
        let at = path.key("certificates").index(i);
        let pair = crate::net::tls::load_pair(&c.cert, &c.key).map_err(|msg| e.at(at.clone(), msg));
        let ocsp = match &c.ocsp_response {
            Some(f) => crate::net::tls::load_ocsp(f)
                .map(|_| ())
                .map_err(|msg| e.at(at.key("ocsp_response"), msg)),
            None => Ok(()),
        };
        if pair.is_ok() && ocsp.is_ok() {
            certificates.push(CertPaths {
                cert: c.cert.clone(),
                key: c.key.clone(),
                ocsp: c.ocsp_response.clone(),
            });
        }
    }
    let hsts = t.hsts.as_ref().and_then(|h| hsts(h, path.key("hsts"), e));
    Some(TlsListener {
        listen: listen?,
        certificates,
        http2: t.http2,
        proxy_protocol: t.proxy_protocol,
        hsts,
    })
}
