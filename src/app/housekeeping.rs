//! Background work beside the proxy, on its own small runtime: the admin listener, the store
//! sweeper or the Redis invalidation subscriber, the notifier, GeoIP and config reloads, and the
//! upstreams' health checks.

use super::Backend;
use super::reload::Reloader;
use crate::admin::{self, AdminState};
use crate::net::geoip::GeoIp;
use crate::policy::ipauth::notify;
use crate::proxy::Live;
use crate::session::embedded::EmbeddedStore;
use crate::session::redis::subscriber;
use arc_swap::ArcSwap;
use async_trait::async_trait;
use pingora::server::ShutdownWatch;
use pingora::services::background::BackgroundService;
use std::net::{SocketAddr, TcpListener};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// The admin listener and the store sweeper, on their own small runtime.
pub(super) struct Housekeeping {
    /// Bound at startup, or (during a graceful upgrade) once the old instance lets go.
    pub(super) admin_listener: Mutex<Option<TcpListener>>,
    pub(super) admin_addr: SocketAddr,
    pub(super) admin: Arc<AdminState>,
    pub(super) backend: Backend,
    pub(super) geo: Arc<GeoIp>,
    pub(super) geo_reload_check: Duration,
    pub(super) notify_worker: Mutex<Option<notify::Worker>>,
    pub(super) reloader: Arc<Reloader>,
}

#[async_trait]
impl BackgroundService for Housekeeping {
    async fn start(&self, shutdown: ShutdownWatch) {
        let listener = self
            .admin_listener
            .lock()
            .map(|mut l| l.take())
            .unwrap_or(None);
        match listener {
            Some(l) => match tokio::net::TcpListener::from_std(l) {
                Ok(l) => {
                    tokio::spawn(admin::serve(l, self.admin.clone(), shutdown.clone()));
                }
                Err(e) => tracing::error!(error = %e, "cannot serve the admin listener"),
            },
            None => {
                tokio::spawn(admin_after_upgrade(
                    self.admin_addr,
                    self.admin.clone(),
                    shutdown.clone(),
                ));
            }
        }
        tokio::spawn(self.reloader.clone().run(shutdown.clone()));
        match self.backend.clone() {
            Backend::Embedded(store, every) => sweep(store, every, shutdown.clone()),
            Backend::Redis(store, cap, connect_timeout) => {
                tokio::spawn(subscriber::run(
                    store,
                    self.admin.sessions.clone(),
                    self.admin.metrics.clone(),
                    cap,
                    connect_timeout,
                    shutdown.clone(),
                ));
            }
        }
        if let Some(w) = self.notify_worker.lock().ok().and_then(|mut w| w.take()) {
            tokio::spawn(w.run(shutdown.clone()));
        }
        tokio::spawn(health_checks(self.admin.live.clone(), shutdown.clone()));
        if self.geo.enabled() {
            tokio::spawn(reload_geoip(
                self.geo.clone(),
                self.geo_reload_check,
                shutdown.clone(),
            ));
        }
        let mut shutdown = shutdown;
        let _ = shutdown.changed().await;
        // Best effort: the spans still queued are exported (and any drops logged) before exit.
        let _ = tokio::task::spawn_blocking(crate::telemetry::shutdown).await;
    }
}

/// Binds the admin port once the instance being upgraded has released it, then serves it.
async fn admin_after_upgrade(
    addr: SocketAddr,
    state: Arc<AdminState>,
    mut shutdown: ShutdownWatch,
) {
    let mut told = false;
    loop {
        match tokio::net::TcpListener::bind(addr).await {
            Ok(l) => {
                tracing::info!(%addr, "admin listener bound after the upgrade");
                admin::serve(l, state, shutdown).await;
                return;
            }
            Err(e) => {
                if !told {
                    tracing::info!(%addr, error = %e, "waiting for the old instance to release the admin port");
                    told = true;
                }
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_millis(100)) => {}
            _ = shutdown.changed() => return,
        }
    }
}

/// Reloads the GeoIP databases on SIGHUP and when a file changes on disk. A failed reload keeps
/// the databases in use and says why.
async fn reload_geoip(geo: Arc<GeoIp>, every: Duration, mut shutdown: ShutdownWatch) {
    let mut hup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()).ok();
    let mut tick = tokio::time::interval(every);
    tick.tick().await;
    loop {
        let forced = tokio::select! {
            _ = tick.tick() => false,
            Some(()) = async { match hup.as_mut() { Some(h) => h.recv().await, None => std::future::pending().await } } => true,
            _ = shutdown.changed() => return,
        };
        if !forced && !geo.changed_on_disk() {
            continue;
        }
        match geo.reload() {
            Ok(()) => tracing::info!(forced, "GeoIP databases reloaded"),
            Err(e) => {
                tracing::error!(error = %e, "GeoIP reload failed; keeping the databases in use")
            }
        }
    }
}

/// How often the upstreams are looked at for a due health check.
const HEALTH_TICK: Duration = Duration::from_millis(100);

/// Runs the upstreams' health checks, each on its own interval. Driven from here rather than
/// as pingora's background service per balancer, which is fixed when the server starts: the
/// upstreams change on reload, and this loop always checks the set in use now (a replaced set
/// stops being checked; requests still running on it finish with its last known health).
async fn health_checks(live: Arc<ArcSwap<Live>>, mut shutdown: ShutdownWatch) {
    let mut tick = tokio::time::interval(HEALTH_TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = shutdown.changed() => return,
        }
        let now = crate::clock::monotonic_now();
        for pool in live.load().upstreams.iter() {
            if pool.check_due(now) {
                let pool = pool.clone();
                tokio::spawn(async move { pool.run_check().await });
            }
        }
    }
}

/// Deletes expired records from the embedded store every `every`.
fn sweep(store: EmbeddedStore, every: Duration, shutdown: ShutdownWatch) {
    let mut shutdown = shutdown;
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(every);
        tick.tick().await;
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = shutdown.changed() => return,
            }
            match store.sweep_expired().await {
                Ok(0) => {}
                Ok(n) => tracing::info!(removed = n, "swept expired sessions"),
                Err(e) => tracing::warn!(error = %e, "sweeping expired sessions failed"),
            }
        }
    });
}
