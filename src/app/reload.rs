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
use crate::config::{self, BootConfig, limits::LimitsConfig};
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
    limits: LimitsConfig,
    limiter: Arc<Limiter>,
}

/// Reloads config and certificates.
pub struct Reloader {
    source: Option<PathBuf>,
    live: Arc<ArcSwap<Live>>,
    rt: Runtime,
    admin_sudo: Arc<ArcSwapOption<Sudo>>,
    current: Mutex<Current>,
    /// What the process started with: every reload compares against it, so every reload
    /// keeps saying what still waits for a restart.
    started: BootConfig,
    resolvers: Vec<Arc<CertResolver>>,
}

/// What a reloader starts from.
pub(crate) struct ReloaderParts {
    pub source: Option<PathBuf>,
    pub live: Arc<ArcSwap<Live>>,
    pub rt: Runtime,
    pub admin_sudo: Arc<ArcSwapOption<Sudo>>,
    /// The start-time settings in force.
    pub boot: BootConfig,
    /// The rate limits the limiter was built from.
    pub limits: LimitsConfig,
    pub limiter: Arc<Limiter>,
    /// The TLS listeners' certificate resolvers.
    pub resolvers: Vec<Arc<CertResolver>>,
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
            started: parts.boot,
            current: Mutex::new(Current {
                limits: parts.limits,
                limiter: parts.limiter,
            }),
            resolvers: parts.resolvers,
        }
    }

    /// Re-reads and validates the config file; on success swaps the live config.
    pub fn reload_config(&self) -> Result<Applied, String> {
        let Some(path) = &self.source else {
            return Err("no config file to reload (started without one)".into());
        };
        let (cfg, generated) = config::load_generating(path).map_err(|e| e.to_string())?;
        for file in generated {
            tracing::info!(file = %file.display(), "generated a new assertion key");
        }
        for w in cfg.warnings() {
            tracing::warn!("{w}");
        }
        let config::Config { boot, mut live, .. } = cfg;
        let mut current = self.current.lock().unwrap_or_else(|p| p.into_inner());
        let needs_restart = self.started.changes(&boot);
        // Counters survive a reload unless the limits themselves changed (routes refer to
        // buckets by position, so new definitions need a new limiter).
        let limiter = if current.limits == live.limits {
            current.limiter.clone()
        } else {
            tracing::warn!("rate limits changed: local counters and lockouts start afresh");
            Arc::new(super::limiter(live.limits.clone(), &self.rt))
        };
        let limits = live.limits.clone();
        let sudo = super::sudo(live.sudo.take()).map_err(|e: StartupError| e.to_string())?;
        // The edge limits belong to the listeners, built once: keep the header limits the
        // HTTP/2 settings were built with.
        let previous = self.live.load_full();
        let live = super::live(
            live,
            &self.started.server.limits,
            &self.rt,
            limiter.clone(),
            sudo.clone(),
            Some(&previous),
        );
        self.live.store(Arc::new(live));
        self.admin_sudo.store(sudo);
        *current = Current { limits, limiter };
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

#[cfg(test)]
mod tests {
    use crate::config::parse;
    use std::sync::Arc;

    #[test]
    fn an_unchanged_upstream_keeps_its_pool_and_a_changed_one_is_rebuilt() {
        let cfg = |hc: &str| {
            format!(
                "[[upstream]]\nname = \"a\"\naddresses = [\"127.0.0.1:1\", \"127.0.0.1:2\"]\n\
                 [[upstream]]\nname = \"b\"\naddresses = [\"127.0.0.1:3\"]\n{hc}\n\
                 [routing.default]\nupstream = \"a\"\n[[route]]\npath = \"/b\"\nupstream = \"b\"\n"
            )
        };
        let first = super::super::upstreams(parse(&cfg(""), "t").unwrap().live.upstreams, &[]);
        // A route change only: both pools (and their health) carry over.
        let same = super::super::upstreams(parse(&cfg(""), "t").unwrap().live.upstreams, &first);
        assert!(Arc::ptr_eq(&first[0], &same[0]) && Arc::ptr_eq(&first[1], &same[1]));
        // A health check added to "b": "a" carries over, "b" is new.
        let hc = "[upstream.health_check]\npath = \"/h\"";
        let next = super::super::upstreams(parse(&cfg(hc), "t").unwrap().live.upstreams, &same);
        assert!(Arc::ptr_eq(&same[0], &next[0]));
        assert!(!Arc::ptr_eq(&same[1], &next[1]));
        assert!(next[1].settings().health_check.is_some());
    }

    fn changes(old: &str, new: &str) -> Vec<&'static str> {
        let old = parse(old, "old.toml").expect("valid").boot;
        old.changes(&parse(new, "new.toml").expect("valid").boot)
    }

    #[test]
    fn restart_only_sections_are_named_when_changed() {
        assert!(changes("", "").is_empty());
        // Keys the request path reads apply on reload.
        let reloadable = r#"
            [logging]
            access_log = false
            [sessions]
            cookie_name = "other"
            store_retry_after = "3s"
            [geoip]
            headers = true
            [[route]]
            path = "/x"
            auth = "none"
        "#;
        assert!(changes("", reloadable).is_empty());
        assert_eq!(
            changes("", "[sessions]\ncache_ttl = \"5m\""),
            vec!["sessions"]
        );
        // Serving stale sessions needs the cache to keep them (its grace is fixed at start),
        // so turning it on waits for a restart, and says so.
        assert_eq!(
            changes("", "[sessions]\non_store_error = \"serve_stale\""),
            vec!["sessions"]
        );
        assert_eq!(
            changes("", "[server]\nthreads = 7\n[logging]\nlevel = \"debug\""),
            vec!["server", "logging"]
        );
        assert_eq!(
            changes(
                "",
                "[server]\nthreads = 7\n[client_ip]\ntrusted_proxies = [\"10.0.0.0/8\"]\n[logging]\nlevel = \"debug\""
            ),
            vec!["server", "client_ip.trusted_proxies", "logging"]
        );
        assert_eq!(
            changes("", "[admin]\nlisten = \"127.0.0.1:9999\""),
            vec!["admin"]
        );
    }
}
