//! Reloading without a restart: `SIGHUP` re-reads the config file with full validation and swaps
//! the reloadable part of the proxy ([`Live`]: routes, credentials, secrets, limits, sudo,
//! origins, network rules, identity names, cookies, upstream, access log) in one atomic store;
//! requests already running finish under the config they started with. An invalid file keeps
//! the config in use and logs every problem. TLS certificates are re-read on `SIGHUP` and when a
//! file changes on disk.
//!
//! Sections whose objects are built once (listeners and edge limits, the store and its cache,
//! Redis, GeoIP databases' paths, IP authorization, the admin listener, log format and level)
//! take effect only after a restart (or a graceful upgrade); a reload that changes them says so.

use super::StartupError;
use crate::config::{self, file::FileConfig};
use crate::net::tls::CertResolver;
use crate::pipeline::Runtime;
use crate::policy::ratelimit::Limiter;
use crate::policy::sudo::Sudo;
use crate::proxy::Live;
use arc_swap::{ArcSwap, ArcSwapOption};
use pingora::server::ShutdownWatch;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// How often certificate files are checked for changes.
const CERT_CHECK: Duration = Duration::from_secs(5);

/// What the last successful load left in place.
struct Current {
    file: FileConfig,
    limiter: Arc<Limiter>,
}

/// Reloads config and certificates.
pub struct Reloader {
    source: Option<PathBuf>,
    live: Arc<ArcSwap<Live>>,
    rt: Runtime,
    admin_sudo: Arc<ArcSwapOption<Sudo>>,
    current: Mutex<Current>,
    /// The file the process started with: restart-only sections are compared against it, so
    /// every reload keeps saying what still waits for a restart.
    started: FileConfig,
    resolvers: Vec<Arc<CertResolver>>,
    /// The edge limits in force since start.
    edge: crate::config::EdgeLimits,
}

/// What a reloader starts from.
pub(crate) struct ReloaderParts {
    pub source: Option<PathBuf>,
    pub live: Arc<ArcSwap<Live>>,
    pub rt: Runtime,
    pub admin_sudo: Arc<ArcSwapOption<Sudo>>,
    /// The file the running config came from.
    pub file: FileConfig,
    pub limiter: Arc<Limiter>,
    /// The TLS listeners' certificate resolvers.
    pub resolvers: Vec<Arc<CertResolver>>,
    pub edge: crate::config::EdgeLimits,
}

/// A reload that was applied, and the changed sections that wait for a restart.
#[derive(Debug, PartialEq, Eq)]
pub struct Applied {
    pub needs_restart: Vec<&'static str>,
}

impl Reloader {
    pub(crate) fn new(parts: ReloaderParts) -> Reloader {
        Reloader {
            source: parts.source,
            live: parts.live,
            rt: parts.rt,
            admin_sudo: parts.admin_sudo,
            started: parts.file.clone(),
            current: Mutex::new(Current {
                file: parts.file,
                limiter: parts.limiter,
            }),
            resolvers: parts.resolvers,
            edge: parts.edge,
        }
    }

    /// Re-reads and validates the config file; on success swaps the live config.
    pub fn reload_config(&self) -> Result<Applied, String> {
        let Some(path) = &self.source else {
            return Err("no config file to reload (started without one)".into());
        };
        let mut cfg = config::load(path).map_err(|e| e.to_string())?;
        let mut current = self.current.lock().unwrap_or_else(|p| p.into_inner());
        let needs_restart = restart_only_changes(&self.started, &cfg.file);
        // Counters survive a reload unless the limits themselves changed (routes refer to
        // buckets by position, so new definitions need a new limiter).
        let limits = std::mem::take(&mut cfg.limits);
        let limiter = if same(&current.file.rate_limits, &cfg.file.rate_limits) {
            current.limiter.clone()
        } else {
            tracing::warn!("rate limits changed: local counters and lockouts start afresh");
            Arc::new(super::limiter(limits, &self.rt))
        };
        let sudo = super::sudo(cfg.sudo.take()).map_err(|e: StartupError| e.to_string())?;
        let file = cfg.file.clone();
        // The edge limits belong to the listeners, built once: keep the header limits the
        // HTTP/2 settings were built with.
        cfg.server.limits = self.edge;
        let live = super::live(cfg, &self.rt, limiter.clone(), sudo.clone());
        self.live.store(Arc::new(live));
        self.admin_sudo.store(sudo);
        *current = Current { file, limiter };
        Ok(Applied { needs_restart })
    }

    /// Re-reads every listener's certificates (each listener all or nothing).
    fn reload_certs(&self, forced: bool) -> Option<Result<(), String>> {
        let mut any = false;
        let mut result = Ok(());
        for r in &self.resolvers {
            if forced || r.changed_on_disk() {
                any = true;
                if let Err(e) = r.reload() {
                    result = Err(e);
                }
            }
        }
        any.then_some(result)
    }

    fn on_hangup(&self) {
        match self.reload_config() {
            Ok(a) => {
                self.rt.metrics.reloads.inc("success", "config");
                if a.needs_restart.is_empty() {
                    tracing::info!("configuration reloaded");
                } else {
                    tracing::warn!(
                        sections = %a.needs_restart.join(","),
                        "configuration reloaded; changes to these sections take effect after a restart"
                    );
                }
            }
            Err(e) if self.source.is_none() => tracing::info!(reason = %e, "SIGHUP ignored"),
            Err(e) => {
                self.rt.metrics.reloads.inc("failure", "config");
                tracing::error!(problems = %e, "configuration reload refused; keeping the configuration in use");
            }
        }
        self.certs(true);
    }

    fn certs(&self, forced: bool) {
        match self.reload_certs(forced) {
            None => {}
            Some(Ok(())) => {
                self.rt.metrics.reloads.inc("success", "certificates");
                tracing::info!(forced, "TLS certificates reloaded");
            }
            Some(Err(e)) => {
                self.rt.metrics.reloads.inc("failure", "certificates");
                tracing::error!(error = %e, "TLS certificate reload failed; keeping the certificates in use");
            }
        }
    }

    /// Reloads on `SIGHUP`, and certificates when their files change, until shutdown.
    pub async fn run(self: Arc<Self>, mut shutdown: ShutdownWatch) {
        let mut hup = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) {
            Ok(h) => h,
            Err(e) => {
                tracing::error!(error = %e, "cannot listen for SIGHUP; reload is off");
                return;
            }
        };
        let mut tick = tokio::time::interval(CERT_CHECK);
        tick.tick().await;
        loop {
            tokio::select! {
                Some(()) = hup.recv() => {
                    let me = self.clone();
                    let _ = tokio::task::spawn_blocking(move || me.on_hangup()).await;
                }
                _ = tick.tick(), if !self.resolvers.is_empty() => {
                    let me = self.clone();
                    let _ = tokio::task::spawn_blocking(move || me.certs(false)).await;
                }
                _ = shutdown.changed() => return,
            }
        }
    }
}

fn same<T: serde::Serialize>(a: &T, b: &T) -> bool {
    toml::to_string(a).ok() == toml::to_string(b).ok()
}

/// The sections built once at startup that differ between `old` and `new`.
fn restart_only_changes(old: &FileConfig, new: &FileConfig) -> Vec<&'static str> {
    let mut out = Vec::new();
    let mut check = |name: &'static str, changed: bool| {
        if changed {
            out.push(name);
        }
    };
    check("server", !same(&old.server, &new.server));
    // The keys of these sections that the pipeline reads apply on reload; the rest (the
    // store, its cache, the databases) are built once.
    let sessions = |s: &crate::config::file::SessionsFile| {
        let mut s = s.clone();
        s.cookie_name.clear();
        s.on_store_error.clear();
        s.store_retry_after = Default::default();
        s
    };
    check(
        "sessions",
        !same(&sessions(&old.sessions), &sessions(&new.sessions)),
    );
    check("redis", !same(&old.redis, &new.redis));
    // Client-IP resolution reloads, but the listeners' exemption of trusted proxies from the
    // per-address connection cap was fixed when they were built.
    check(
        "client_ip.trusted_proxies",
        old.client_ip.trusted_proxies != new.client_ip.trusted_proxies,
    );
    let geoip = |g: &crate::config::file::GeoipFile| {
        let mut g = g.clone();
        g.headers = false;
        g
    };
    check("geoip", !same(&geoip(&old.geoip), &geoip(&new.geoip)));
    check(
        "ip_authorization",
        !same(&old.ip_authorization, &new.ip_authorization),
    );
    check("admin", !same(&old.admin, &new.admin));
    check(
        "logging",
        old.logging.format != new.logging.format || old.logging.level != new.logging.level,
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn restart_only_sections_are_named_when_changed() {
        let old = FileConfig::default();
        let mut new = FileConfig::default();
        assert!(restart_only_changes(&old, &new).is_empty());
        new.logging.access_log = !old.logging.access_log;
        new.routing = Default::default();
        new.sessions.cookie_name = "other".into();
        new.geoip.headers = !old.geoip.headers;
        assert!(restart_only_changes(&old, &new).is_empty());
        new.sessions.cache_ttl = crate::config::Dur::from_secs(1);
        assert_eq!(restart_only_changes(&old, &new), vec!["sessions"]);
        new.sessions = old.sessions.clone();
        new.server.threads += 1;
        new.logging.level = "debug".into();
        assert_eq!(restart_only_changes(&old, &new), vec!["server", "logging"]);
        new.client_ip.trusted_proxies = vec!["10.0.0.0/8".into()];
        assert_eq!(
            restart_only_changes(&old, &new),
            vec!["server", "client_ip.trusted_proxies", "logging"]
        );
    }
}
