//! Builds the runtime objects from a validated [`Config`] and runs them: the pingora proxy
//! service, and one housekeeping service that serves the admin listener and sweeps the store.

mod housekeeping;
mod listeners;
pub mod reload;

use crate::admin::AdminState;
use crate::clock::{self, SharedClock};
use crate::config::{BootConfig, Config, LiveConfig, StoreSettings};
use crate::metrics::Metrics;
use crate::net::geoip::GeoIp;
use crate::net::hygiene::HygieneRules;
use crate::pipeline::{Pipeline, Rules, Runtime};
use crate::policy::ipauth::IpAuth;
use crate::policy::ipauth::notify::Notifier;
use crate::policy::ratelimit::redis::RedisLimiter;
use crate::policy::ratelimit::{Backend as LimitBackend, Limiter};
use crate::policy::sudo::Sudo;
use crate::proxy::UpstreamSettings;
use crate::proxy::edge::EdgeLimits;
use crate::proxy::{FluxgateProxy, Live, UpstreamPool};
use crate::redis_client::Connections;
use crate::session::backend::BackendResolver;
use crate::session::embedded::EmbeddedStore;
use crate::session::redis::RedisStore;
use crate::session::redis::shared::SharedAnswers;
use crate::session::{SessionCache, SessionStore};
use arc_swap::ArcSwap;
use housekeeping::Housekeeping;
use pingora::server::configuration::{Opt, ServerConf};
use pingora::server::{RunArgs, Server};
use pingora::services::background::background_service;
use reload::{Reloader, ReloaderParts};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Why fluxgate could not start (beyond an invalid config).
#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("{0}")]
    Store(String),
    #[error("TLS: {0}")]
    Tls(String),
    #[error("{0}")]
    Tracing(String),
}

/// Where the running instance listens (port 0 resolved).
#[derive(Debug, Clone, serde::Serialize)]
pub struct Bound {
    pub proxy: Vec<SocketAddr>,
    pub tls: Vec<SocketAddr>,
    pub admin: SocketAddr,
    /// The forward-auth decision endpoint, when on.
    pub forward_auth: Option<SocketAddr>,
}

/// Everything built from the config, ready to run.
pub struct Built {
    pub server: Server,
    pub bound: Bound,
    /// The `:0` listeners' port reservations (see `resolve_port`), held while the server runs.
    reserved: Vec<socket2::Socket>,
}

/// The configured store, with what its background work needs.
#[derive(Clone)]
enum Backend {
    /// The store and how often to sweep expired records.
    Embedded(EmbeddedStore, Duration),
    /// The store, the cache-trust cap while unsubscribed, and the connect timeout.
    Redis(RedisStore, Duration, Duration),
}

impl Backend {
    /// `wait`: how long to retry a store file another process still holds (during a graceful
    /// upgrade, the old instance holds it until it has drained).
    fn open(
        cfg: &BootConfig,
        redis: Option<&Arc<Connections>>,
        clock: &SharedClock,
        wait: Duration,
    ) -> Result<Backend, StartupError> {
        Ok(match &cfg.sessions.store {
            StoreSettings::Embedded {
                path,
                sweep_interval,
            } => Backend::Embedded(open_embedded(path, clock, wait)?, *sweep_interval),
            StoreSettings::Redis {
                ttl_while_disconnected,
            } => {
                let conns = redis.ok_or_else(|| {
                    StartupError::Store("the Redis store needs [redis] settings".into())
                })?;
                Backend::Redis(
                    RedisStore::new(conns.clone(), clock.clone()),
                    *ttl_while_disconnected,
                    conns.settings().connect_timeout,
                )
            }
        })
    }

    fn store(&self) -> Arc<dyn SessionStore> {
        match self {
            Backend::Embedded(s, _) => Arc::new(s.clone()),
            Backend::Redis(s, _, _) => Arc::new(s.clone()),
        }
    }
}

/// How `run` was asked to start.
#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    /// The config file, re-read on `SIGHUP` (none: reload is off, as in `fluxgate demo`).
    pub source: Option<PathBuf>,
    /// Take the listening sockets over from a running instance (Pingora's graceful upgrade).
    pub upgrade: bool,
}

/// The rate limiter for `limits`, on Redis when configured and available.
pub(crate) fn limiter(limits: crate::config::limits::LimitsConfig, rt: &Runtime) -> Limiter {
    Limiter::new(
        limits.buckets,
        limits.lockouts,
        limits.global,
        match (&rt.redis, limits.on_redis) {
            (Some(conns), true) => LimitBackend::Redis(RedisLimiter::new(conns.clone())),
            _ => LimitBackend::Local,
        },
        limits.settings,
        rt.clock.clone(),
    )
}

/// Sudo mode, when `[sudo]` has a secret.
pub(crate) fn sudo(
    settings: Option<crate::policy::sudo::SudoSettings>,
) -> Result<Option<Arc<Sudo>>, StartupError> {
    match settings {
        Some(s) => Ok(Some(Arc::new(Sudo::new(s).map_err(StartupError::Store)?))),
        None => Ok(None),
    }
}

/// The upstream pools for `settings`. An upstream whose settings did not change keeps its
/// pool from `previous`: its health (checked and passive) and its balancer's position survive
/// a reload that only touched routes; any change builds it afresh.
fn upstreams(
    settings: Vec<UpstreamSettings>,
    previous: &[Arc<UpstreamPool>],
) -> Vec<Arc<UpstreamPool>> {
    settings
        .into_iter()
        .map(|s| {
            previous
                .iter()
                .find(|p| *p.settings() == s)
                .cloned()
                .unwrap_or_else(|| Arc::new(UpstreamPool::new(s)))
        })
        .collect()
}

/// The reloadable part of the proxy, from a validated config.
/// `edge`: the header limits the listeners were built with (they do not reload);
/// `previous`: the part it replaces, on reload.
pub(crate) fn live(
    cfg: LiveConfig,
    edge: &EdgeLimits,
    rt: &Runtime,
    limits: Arc<Limiter>,
    sudo: Option<Arc<Sudo>>,
    previous: Option<&Live>,
) -> Live {
    let hygiene = HygieneRules {
        max_header_bytes: edge.max_header_bytes,
        max_headers: edge.max_headers,
        protected: cfg.identity.all().to_vec(),
    };
    let rules = Rules {
        hygiene,
        routes: cfg.routes,
        client_ip: cfg.client_ip,
        secrets: cfg.secrets,
        accept: cfg.accept,
        cookie_name: cfg.sessions.cookie_name.clone(),
        store_retry_after_secs: cfg.sessions.store_retry_after_secs,
        serve_stale: cfg.sessions.serve_stale,
        forward_credential: cfg.sessions.forward_credential,
        limits,
        sudo,
        login: cfg.login,
        cors: cfg.cors,
        origins: cfg.origins,
        geo_headers: cfg.geo_headers,
        network: cfg.network,
        network_rules: cfg.network_rules,
        names: cfg.identity,
        cookies: cfg.cookies,
        assertion: cfg.assertion,
    };
    let route_labels = rules
        .routes
        .routes()
        .iter()
        .map(|r| crate::metrics::route_label(&r.name))
        .collect();
    Live {
        route_labels,
        pipeline: Arc::new(Pipeline::new(rules, rt.clone())),
        upstreams: upstreams(cfg.upstreams, previous.map_or(&[], |l| &l.upstreams)),
        access_log: cfg.access_log,
        access_log_path: cfg.access_log_path,
        forward_auth: cfg.forward_auth,
    }
}

/// Opens the embedded store, retrying for up to `wait` while another process holds the file.
fn open_embedded(
    path: &std::path::Path,
    clock: &SharedClock,
    wait: Duration,
) -> Result<EmbeddedStore, StartupError> {
    let deadline = crate::clock::monotonic_now() + wait;
    let mut told = false;
    loop {
        match EmbeddedStore::open(path, clock.clone()) {
            Ok(s) => return Ok(s),
            Err(e) if crate::clock::monotonic_now() < deadline => {
                if !told {
                    tracing::info!(error = %e, "waiting for the previous instance to release the session store");
                    told = true;
                }
                std::thread::sleep(Duration::from_millis(100));
            }
            Err(e) => return Err(StartupError::Store(e)),
        }
    }
}

/// Builds the server from a config. Nothing runs until [`run`].
pub fn build(cfg: Config, opts: &RunOptions) -> Result<Built, StartupError> {
    let Config {
        boot,
        live: mut live_cfg,
        ..
    } = cfg;
    let conf = ServerConf {
        threads: boot.server.threads,
        work_stealing: boot.server.work_stealing,
        grace_period_seconds: Some(boot.server.grace_period.as_secs()),
        graceful_shutdown_timeout_seconds: Some(boot.server.shutdown_timeout.as_secs().max(1)),
        upgrade_sock: boot.server.upgrade_socket.display().to_string(),
        pid_file: format!("{}.pid", boot.server.upgrade_socket.display()),
        // Attempts per request: the first and the most retries `[upstream] retries` allows
        // (fixed here, so a reload can change `retries` within it); `proxy/attempt.rs` decides
        // which failures are retried.
        max_retries: 1 + crate::config::upstreams::MAX_RETRIES as usize,
        ..ServerConf::default()
    };
    let opt = Opt {
        upgrade: opts.upgrade,
        ..Opt::default()
    };
    // First, so that during a graceful upgrade the listening sockets are taken over (pingora
    // waits for them here) before anything else.
    let mut server = Server::new_with_opt_and_conf(opt, conf);
    server.bootstrap();
    // The old instance keeps the store file until it has drained: grace period plus shutdown
    // timeout, and some slack.
    let store_wait = if opts.upgrade {
        boot.server.grace_period + boot.server.shutdown_timeout + Duration::from_secs(5)
    } else {
        Duration::ZERO
    };
    let clock = clock::system();
    let metrics = Arc::new(Metrics::default());
    // One set of Redis connections, shared by everything that uses Redis.
    let redis = match &boot.redis {
        Some(r) => Some(Arc::new(
            Connections::new(r.clone()).map_err(StartupError::Store)?,
        )),
        None => None,
    };
    let backend = Backend::open(&boot, redis.as_ref(), &clock, store_wait)?;
    let resolver = match &boot.sessions.backend {
        Some(b) => Some(Arc::new(
            BackendResolver::new(b.clone()).map_err(StartupError::Store)?,
        )),
        None => None,
    };
    let sessions = Arc::new(
        SessionCache::new(
            backend.store(),
            clock.clone(),
            metrics.clone(),
            boot.sessions.cache,
        )
        .with_backend(resolver)
        .with_shared(match (&redis, boot.sessions.share) {
            (Some(conns), true) => Some(SharedAnswers::new(conns.clone(), clock.clone())),
            _ => None,
        }),
    );
    // During a graceful upgrade the old instance still holds the admin port; it is bound once
    // the old instance lets go (see `Housekeeping::start`).
    let admin_listener = if opts.upgrade {
        None
    } else {
        Some(listeners::bind_admin(boot.admin.listen)?)
    };
    let admin_addr = match &admin_listener {
        Some(l) => l.local_addr().map_err(|source| StartupError::Bind {
            addr: boot.admin.listen,
            source,
        })?,
        None => boot.admin.listen,
    };
    let mut reserved = Vec::new();
    let mut resolve = |a: SocketAddr| -> Result<SocketAddr, StartupError> {
        let (addr, reservation) = listeners::resolve_port(a)?;
        reserved.extend(reservation);
        Ok(addr)
    };
    let proxy_addrs = boot
        .server
        .listen
        .iter()
        .map(|a| resolve(*a))
        .collect::<Result<Vec<_>, _>>()?;
    let tls_addrs = boot
        .server
        .tls
        .iter()
        .map(|t| resolve(t.listen))
        .collect::<Result<Vec<_>, _>>()?;

    if let Backend::Redis(_, cap, _) = &backend {
        // Until the invalidation subscription is up, missed revocations are possible.
        sessions.set_vouch(Some(cap.as_millis() as i64));
    }
    if let Some(t) = &boot.tracing {
        crate::telemetry::init(t).map_err(StartupError::Tracing)?;
    }
    let geo = Arc::new(
        GeoIp::open(
            boot.geoip.country_db.as_deref(),
            boot.geoip.asn_db.as_deref(),
        )
        .map_err(StartupError::Store)?,
    );
    let stream = match (&boot.ip_auth.stream, &redis) {
        (Some(name), Some(conns)) => Some((conns.clone(), name.clone())),
        _ => None,
    };
    let (notifier, notify_worker) =
        Notifier::new(boot.ip_auth.webhook.clone(), stream, metrics.clone());
    let ip_auth = Arc::new(IpAuth::new(
        boot.ip_auth.settings.clone(),
        sessions.clone(),
        geo.clone(),
        notifier,
        clock.clone(),
        metrics.clone(),
    ));
    let rt = Runtime {
        sessions: sessions.clone(),
        geo: geo.clone(),
        ip_auth: ip_auth.clone(),
        clock: clock.clone(),
        metrics: metrics.clone(),
        redis: redis.clone(),
    };
    let limits = Arc::new(limiter(live_cfg.limits.clone(), &rt));
    let sudo = sudo(live_cfg.sudo.take())?;
    let server_cfg = boot.server.clone();
    let admin_cfg = boot.admin.clone();
    let geo_reload_check = boot.geoip.reload_check;
    let exempt = boot.connection_cap_exempt.clone();
    let limits_cfg = live_cfg.limits.clone();
    let live = Arc::new(ArcSwap::from_pointee(self::live(
        live_cfg,
        &boot.server.limits,
        &rt,
        limits.clone(),
        sudo.clone(),
        None,
    )));
    let hsts = crate::proxy::HstsListeners::new(
        server_cfg
            .tls
            .iter()
            .zip(&tls_addrs)
            .filter_map(|(t, a)| t.hsts.map(|h| (*a, h.header_value()))),
    );
    let proxy =
        FluxgateProxy::new(live.clone(), metrics.clone(), server_cfg.limits).with_hsts(hsts);
    let (live_for_fa, metrics_for_fa) = (live.clone(), metrics.clone());

    let shared = reserved
        .iter()
        .filter_map(|s| s.local_addr().ok()?.as_socket())
        .collect::<Vec<_>>();
    let (service, resolvers) = listeners::proxy_service(
        &server,
        proxy,
        &server_cfg,
        exempt,
        metrics.clone(),
        (&proxy_addrs, &tls_addrs),
        &shared,
    )?;
    server.add_service(service);

    let admin_sudo = Arc::new(arc_swap::ArcSwapOption::new(sudo));
    let reloader = Arc::new(Reloader::new(ReloaderParts {
        source: opts.source.clone(),
        live: live.clone(),
        rt,
        admin_sudo: admin_sudo.clone(),
        boot: boot.clone(),
        limits: limits_cfg,
        limiter: limits,
        resolvers,
    }));
    let house = Housekeeping {
        admin_listener: Mutex::new(admin_listener),
        admin_addr,
        admin: Arc::new(AdminState {
            sessions,
            metrics,
            secret: admin_cfg.secret.clone(),
            sudo: admin_sudo,
            ip_auth,
            clock,
            live,
        }),
        backend,
        geo,
        geo_reload_check,
        notify_worker: Mutex::new(notify_worker),
        reloader,
    };
    server.add_service(background_service("fluxgate housekeeping", house));
    let forward_auth = match &boot.forward_auth {
        Some(fa) => {
            let (service, addr) = listeners::forward_auth_service(
                fa.listen,
                opts.upgrade,
                Arc::new(crate::forward_auth::ForwardAuth {
                    live: live_for_fa,
                    metrics: metrics_for_fa,
                }),
            )?;
            server.add_service(service);
            Some(addr)
        }
        None => None,
    };
    Ok(Built {
        server,
        bound: Bound {
            proxy: proxy_addrs,
            tls: tls_addrs,
            admin: admin_addr,
            forward_auth,
        },
        reserved,
    })
}

/// Runs until a shutdown signal (SIGTERM: graceful; SIGINT: fast; SIGQUIT: hand over).
pub fn run(built: Built) {
    let Built {
        server, reserved, ..
    } = built;
    server.run(RunArgs::default());
    drop(reserved);
}
