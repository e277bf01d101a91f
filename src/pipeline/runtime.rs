//! What outlives a config reload: the session cache, GeoIP, pending IP authorizations, the
//! clock, metrics and Redis connections. Built once by `app` at start; the pipeline and the
//! admin API share it.

use crate::clock::SharedClock;
use crate::metrics::Metrics;
use crate::net::geoip::GeoIp;
use crate::policy::ipauth::IpAuth;
use crate::redis_client::Connections;
use crate::session::SessionCache;
use std::sync::Arc;

/// Process-lifetime handles.
#[derive(Clone)]
pub struct Runtime {
    pub sessions: Arc<SessionCache>,
    pub geo: Arc<GeoIp>,
    pub ip_auth: Arc<IpAuth>,
    pub clock: SharedClock,
    pub metrics: Arc<Metrics>,
    /// One set of Redis connections for everything that uses Redis.
    pub redis: Option<Arc<Connections>>,
}

#[cfg(any(test, feature = "test-util"))]
impl Runtime {
    /// A runtime over `sessions`, without GeoIP databases or Redis, for tests and benches.
    pub fn for_test(sessions: Arc<SessionCache>, clock: SharedClock) -> Runtime {
        Runtime {
            ip_auth: Arc::new(IpAuth::with_defaults(sessions.clone(), clock.clone())),
            sessions,
            geo: Arc::new(GeoIp::none()),
            clock,
            metrics: Arc::new(Metrics::default()),
            redis: None,
        }
    }
}
