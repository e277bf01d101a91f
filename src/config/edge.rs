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
}

impl Default for TlsListenerFile {
    fn default() -> Self {
        TlsListenerFile {
            listen: String::new(),
            certificates: Vec::new(),
            http2: true,
            proxy_protocol: false,
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
        match crate::net::tls::load_pair(&c.cert, &c.key) {
            Ok(_) => certificates.push(CertPaths {
                cert: c.cert.clone(),
                key: c.key.clone(),
            }),
            Err(msg) => e.at(path.key("certificates").index(i), msg),
        }
    }
    Some(TlsListener {
        listen: listen?,
        certificates,
        http2: t.http2,
        proxy_protocol: t.proxy_protocol,
    })
}
