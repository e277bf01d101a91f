//! The upstreams' health as the admin listener reports it: gauges appended to `/metrics`, and
//! the upstreams `/readyz` names when none of their addresses can take a request. Read from
//! the live config at each scrape, since the set of upstreams changes on reload.

use super::AdminState;
use crate::metrics::{Family, Format, Series};

/// The registry's metrics and the upstreams' health, in `format`.
pub(super) fn metrics_text(state: &AdminState, format: Format) -> String {
    let live = state.live.load();
    let now = crate::clock::monotonic_now();
    let rows: Vec<UpstreamRow<'_>> = live
        .upstreams
        .iter()
        .map(|u| {
            let addrs = u.health(now).into_iter().map(|h| (h.healthy, h.ejected));
            (u.settings().name.as_str(), addrs.collect())
        })
        .collect();
    state.metrics.encode(format, upstream_families(&rows))
}

/// Upstreams none of whose addresses can take a request (all failing their health check or
/// ejected).
pub(super) fn down(state: &AdminState) -> Vec<String> {
    let now = crate::clock::monotonic_now();
    state
        .live
        .load()
        .upstreams
        .iter()
        .filter(|u| !u.any_usable(now))
        .map(|u| u.settings().name.clone())
        .collect()
}

/// One upstream's addresses, in `addresses` order: (health check passes, ejected).
type UpstreamRow<'a> = (&'a str, Vec<(bool, bool)>);

/// The upstreams' health, read from the live config at scrape time (the set changes on
/// reload). Labels are the operator's upstream names and each address's position in its
/// `addresses` list (`replica`): no IP is ever a label (the log lines name the address).
fn upstream_families(rows: &[UpstreamRow<'_>]) -> Vec<Family> {
    let per_address = |value: fn(bool, bool) -> bool| {
        let mut series = Vec::new();
        for (up, addrs) in rows {
            for (replica, (h, e)) in addrs.iter().enumerate() {
                let labels = vec![(*up).to_owned(), replica.to_string()];
                series.push((labels, i64::from(value(*h, *e))));
            }
        }
        Series::Gauge(series)
    };
    let usable = rows
        .iter()
        .map(|(up, addrs)| {
            let n = addrs.iter().filter(|(h, e)| *h && !*e).count();
            (vec![(*up).to_owned()], n as i64)
        })
        .collect();
    vec![
        Family {
            name: "fluxgate_upstream_healthy",
            help: "Whether the address passes its health check (1 without one).",
            labels: &["upstream", "replica"],
            series: per_address(|h, _| h),
        },
        Family {
            name: "fluxgate_upstream_ejected",
            help: "Whether the address is ejected after consecutive connect failures.",
            labels: &["upstream", "replica"],
            series: per_address(|_, e| e),
        },
        Family {
            name: "fluxgate_upstream_usable_addresses",
            help: "Addresses healthy and not ejected.",
            labels: &["upstream"],
            series: Series::Gauge(usable),
        },
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upstream_health_renders_one_gauge_per_address_and_a_usable_count() {
        let families = upstream_families(&[("api", vec![(true, false), (false, true)])]);
        let s = crate::metrics::Metrics::default().encode(Format::Prometheus, families);
        for line in [
            r#"fluxgate_upstream_healthy{upstream="api",replica="0"} 1"#,
            r#"fluxgate_upstream_healthy{upstream="api",replica="1"} 0"#,
            r#"fluxgate_upstream_ejected{upstream="api",replica="0"} 0"#,
            r#"fluxgate_upstream_ejected{upstream="api",replica="1"} 1"#,
            r#"fluxgate_upstream_usable_addresses{upstream="api"} 1"#,
            "# TYPE fluxgate_upstream_healthy gauge",
        ] {
            assert!(s.lines().any(|l| l == line), "missing {line:?} in:\n{s}");
        }
    }
}
