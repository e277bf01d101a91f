//! The proxy's listening service: pingora's HTTP app with fluxgate's HTTP/1 and HTTP/2
//! settings, behind the connection edge, on the plain and TLS listeners; and the forward-auth
//! decision endpoint's listener.

use super::StartupError;
use crate::config::ServerSettings;
use crate::metrics::Metrics;
use crate::net::cidr::CidrSet;
use crate::net::tls::CertResolver;
use crate::proxy::FluxgateProxy;
use crate::proxy::edge::{Edge, ListenerKind, Listeners};
use pingora::server::Server;
use pingora::services::listening::Service;
use std::net::SocketAddr;
use std::sync::Arc;

type ProxyApp = Edge<pingora::proxy::HttpProxy<FluxgateProxy>>;

/// The service, and the TLS listeners' certificate resolvers (for reloads).
pub(super) fn proxy_service(
    server: &Server,
    proxy: FluxgateProxy,
    cfg: &ServerSettings,
    exempt: CidrSet,
    metrics: Arc<Metrics>,
    (plain, tls): (&[SocketAddr], &[SocketAddr]),
    shared: &[SocketAddr],
) -> Result<(Service<ProxyApp>, Vec<Arc<CertResolver>>), StartupError> {
    let limits = cfg.limits;
    let mut http = pingora::proxy::http_proxy(&server.configuration, proxy);
    let mut options = pingora::apps::HttpServerOptions::default();
    options.keepalive_request_limit = match limits.max_requests_per_connection {
        0 => None,
        // pingora counts reuses: N requests are the first plus N - 1 reuses.
        n => Some(n - 1),
    };
    // An HTTP/2 connection without streams is closed after the keep-alive timeout, as an idle
    // HTTP/1 connection is.
    options.h2_idle_timeout = Some(limits.keepalive_timeout);
    // `CONNECT` reaches the pipeline, whose hygiene refuses every one (405 in the contract's
    // JSON, on HTTP/1 and HTTP/2 alike); pingora's own refusal would be a bare 405.
    options.allow_connect_method_proxying = true;
    http.server_options = Some(options);
    // SECURITY: conservative HTTP/2 limits against stream floods (rapid reset), CONTINUATION
    // floods and oversized frames; the h2 crate enforces them.
    let mut h2 = pingora::protocols::http::v2::server::default_h2_options();
    h2.max_concurrent_streams(limits.h2_max_concurrent_streams)
        .max_header_list_size(limits.max_header_bytes as u32)
        .max_frame_size(16_384)
        .initial_window_size(256 * 1024)
        .max_send_buffer_size(256 * 1024)
        .max_concurrent_reset_streams(10)
        .max_pending_accept_reset_streams(20)
        .max_local_error_reset_streams(Some(256));
    // SECURITY: extended CONNECT (RFC 8441, WebSockets over HTTP/2) stays off: not advertised,
    // so clients use HTTP/1.1 for WebSockets, and a `:protocol` sent anyway is reset by h2 as
    // malformed. Pingora cannot tunnel it to the upstream, and revocation closes a WebSocket by
    // closing its connection (docs/contract.md §2).
    http.h2_options = Some(h2);
    // Every listener is plain TCP to pingora: the edge reads a PROXY header and runs the TLS
    // handshake itself (see proxy/edge/accept.rs for why), so it needs each listener's kind.
    let mut kinds = Listeners::default();
    for a in plain {
        kinds.add(
            *a,
            ListenerKind {
                proxy_protocol: cfg.proxy_protocol,
                tls: None,
                hsts: None,
            },
        );
    }
    let mut resolvers = Vec::new();
    for (t, addr) in cfg.tls.iter().zip(tls) {
        let resolver =
            Arc::new(CertResolver::new(t.certificates.clone()).map_err(StartupError::Tls)?);
        let mut settings = pingora::listeners::tls::TlsSettings::intermediate("", "")
            .map_err(|e| StartupError::Tls(e.to_string()))?;
        settings.set_cert_resolver(resolver.clone());
        if t.http2 {
            settings.enable_h2();
        }
        let mut acceptor = settings.build();
        harden(&mut acceptor);
        kinds.add(
            *addr,
            ListenerKind {
                proxy_protocol: t.proxy_protocol,
                tls: Some(Arc::new(acceptor)),
                hsts: t.hsts.map(|h| h.header_value()),
            },
        );
        resolvers.push(resolver);
    }
    let mut service = Service::new(
        "fluxgate proxy".to_string(),
        Edge::new(http, limits, exempt, kinds, metrics),
    );
    for a in plain.iter().chain(tls) {
        if shared.contains(a) {
            // The port was reserved for this listener by a socket that never listens
            // (`resolve_port` below); sharing it needs SO_REUSEPORT on both.
            let mut opts = pingora::listeners::TcpSocketOptions::default();
            opts.so_reuseport = Some(true);
            service.add_tcp_with_settings(&a.to_string(), opts);
        } else {
            service.add_tcp(&a.to_string());
        }
    }
    Ok((service, resolvers))
}

/// Tightens the rustls config pingora built (TLS 1.2 and 1.3, rustls' AEAD-only, forward-secret
/// suites, the ALPN and the certificate resolver set above).
fn harden(acceptor: &mut pingora::listeners::tls::Acceptor) {
    let mut cfg = pingora::tls::ServerConfig::clone(acceptor.acceptor.config());
    // SECURITY: the server's suite order wins (rustls': AES-256-GCM, AES-128-GCM, then
    // ChaCha20-Poly1305), so a client cannot steer a TLS 1.2 handshake to the weakest suite
    // both sides share (testssl.sh: "no cipher order configured").
    cfg.ignore_client_order = true;
    acceptor.acceptor = pingora::tls::TlsAcceptor::from(Arc::new(cfg));
}

/// Serves the forward-auth decision endpoint on its own runtime.
pub(super) struct ForwardAuthService {
    /// Bound at build time (port 0 resolved), or after a graceful upgrade's handover.
    listener: std::sync::Mutex<Option<std::net::TcpListener>>,
    addr: SocketAddr,
    state: Arc<crate::forward_auth::ForwardAuth>,
}

/// The decision endpoint's service and its address. During a graceful upgrade the old
/// instance still holds the port: it is bound once the old instance lets go.
pub(super) fn forward_auth_service(
    addr: SocketAddr,
    upgrade: bool,
    state: Arc<crate::forward_auth::ForwardAuth>,
) -> Result<
    (
        pingora::services::background::GenBackgroundService<ForwardAuthService>,
        SocketAddr,
    ),
    StartupError,
> {
    let listener = if upgrade {
        None
    } else {
        Some(bind_admin(addr)?)
    };
    let addr = match &listener {
        Some(l) => l
            .local_addr()
            .map_err(|source| StartupError::Bind { addr, source })?,
        None => addr,
    };
    let service = ForwardAuthService {
        listener: std::sync::Mutex::new(listener),
        addr,
        state,
    };
    Ok((
        pingora::services::background::background_service("fluxgate forward-auth", service),
        addr,
    ))
}

#[async_trait::async_trait]
impl pingora::services::background::BackgroundService for ForwardAuthService {
    async fn start(&self, shutdown: pingora::server::ShutdownWatch) {
        let held = self.listener.lock().map(|mut l| l.take()).unwrap_or(None);
        let listener = match held {
            Some(l) => tokio::net::TcpListener::from_std(l),
            None => loop {
                match tokio::net::TcpListener::bind(self.addr).await {
                    Ok(l) => break Ok(l),
                    Err(_) => tokio::time::sleep(std::time::Duration::from_millis(100)).await,
                }
                if *shutdown.borrow() {
                    return;
                }
            },
        };
        match listener {
            Ok(l) => crate::forward_auth::serve(l, self.state.clone(), shutdown).await,
            Err(e) => tracing::error!(error = %e, "cannot serve the forward-auth listener"),
        }
    }
}

/// Resolves `:0` to a concrete free port. Pingora binds its own listeners when it starts, after
/// the address is announced, so the port stays reserved until then: a socket bound with
/// `SO_REUSEPORT` and never listening, kept for the process's life, which pingora's listener
/// (also `SO_REUSEPORT`, see `listeners::proxy_service`) can share and nothing else can take.
/// Releasing the port before pingora bound it let another process's port-0 listener take it in
/// between: the instance announced a port that answered for someone else.
pub(super) fn resolve_port(
    addr: SocketAddr,
) -> Result<(SocketAddr, Option<socket2::Socket>), StartupError> {
    if addr.port() != 0 {
        return Ok((addr, None));
    }
    let bind = || -> std::io::Result<(SocketAddr, socket2::Socket)> {
        let s = socket2::Socket::new(
            socket2::Domain::for_address(addr),
            socket2::Type::STREAM,
            Some(socket2::Protocol::TCP),
        )?;
        // Not SO_REUSEADDR: with it, a socket that is bound but not listening could be shared
        // by any other listener that sets it too (std's does).
        s.set_reuse_port(true)?;
        s.bind(&addr.into())?;
        let local = s.local_addr()?.as_socket().ok_or_else(|| {
            std::io::Error::new(std::io::ErrorKind::InvalidData, "not an inet address")
        })?;
        Ok((local, s))
    };
    let (local, s) = bind().map_err(|source| StartupError::Bind { addr, source })?;
    Ok((local, Some(s)))
}

/// Binds the admin listener (non-blocking, for tokio).
pub(super) fn bind_admin(addr: SocketAddr) -> Result<std::net::TcpListener, StartupError> {
    let l =
        std::net::TcpListener::bind(addr).map_err(|source| StartupError::Bind { addr, source })?;
    l.set_nonblocking(true)
        .map_err(|source| StartupError::Bind { addr, source })?;
    Ok(l)
}
