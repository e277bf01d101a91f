//! The reloadable half of the proxy: what `SIGHUP` swaps, and route names for logs and labels.

use super::UpstreamPool;
use crate::pipeline::{Pipeline, RouteId};
use std::sync::Arc;

/// What a config reload replaces. Each request takes one snapshot when it starts and keeps it
/// to the end, so a reload never mixes two configs within a request.
pub struct Live {
    pub pipeline: Arc<Pipeline>,
    /// The upstream services, as configured; the plan names one by index.
    pub upstreams: Vec<Arc<UpstreamPool>>,
    pub access_log: bool,
    /// Access lines carry the raw path (`logging.access_log_path`).
    pub access_log_path: bool,
    /// Each route's name as a metric label (`fluxgate_would_deny_total`), by index.
    pub route_labels: Vec<&'static str>,
    /// How the decision endpoint reads the original request (`[forward_auth]`).
    pub forward_auth: crate::config::forward_auth::ForwardAuthRules,
}

impl Live {
    pub(crate) fn route_name(&self, r: RouteId) -> &str {
        match r {
            RouteId::Unrouted => "-",
            RouteId::Default => "default",
            RouteId::Index(i) => &self.pipeline.rules.routes.routes()[i].name,
        }
    }

    pub(super) fn route_label(&self, r: RouteId) -> &'static str {
        match r {
            RouteId::Unrouted => "-",
            RouteId::Default => "default",
            RouteId::Index(i) => self.route_labels.get(i).copied().unwrap_or("-"),
        }
    }
}
