//! The upstreams' health as the admin listener reports it: gauges appended to `/metrics`, and
//! the upstreams `/readyz` names when none of their addresses can take a request. Read from
//! the live config at each scrape, since the set of upstreams changes on reload.

use super::AdminState;
use std::fmt::Write as _;

/// The registry's metrics and the upstreams' health.
pub(super) fn metrics_text(state: &AdminState) -> String {
    let mut s = state.metrics.render();
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
    render_upstreams(&mut s, &rows);
    s
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

/// A gauge: its name suffix, its help, and its value from (healthy, ejected).
type Gauge = (&'static str, &'static str, fn(bool, bool) -> bool);

/// The upstreams' health, read from the live config at scrape time (the set changes on
/// reload). Labels are the operator's upstream names and each address's position in its
/// `addresses` list (`replica`): no IP is ever a label (the log lines name the address).
fn render_upstreams(s: &mut String, rows: &[UpstreamRow<'_>]) {
    let gauges: [Gauge; 2] = [
        (
            "healthy",
            "passes its health check (1 without one)",
            |h, _| h,
        ),
        (
            "ejected",
            "is ejected after consecutive connect failures",
            |_, e| e,
        ),
    ];
    for (name, help, value) in gauges {
        let _ = writeln!(
            s,
            "# HELP fluxgate_upstream_{name} Whether the address {help}.\n# TYPE fluxgate_upstream_{name} gauge"
        );
        for (up, addrs) in rows {
            for (replica, (h, e)) in addrs.iter().enumerate() {
                let (up, v) = (crate::metrics::escaped(up), u8::from(value(*h, *e)));
                let _ = writeln!(
                    s,
                    "fluxgate_upstream_{name}{{upstream=\"{up}\",replica=\"{replica}\"}} {v}"
                );
            }
        }
    }
    let _ = writeln!(
        s,
        "# HELP fluxgate_upstream_usable_addresses Addresses healthy and not ejected.\n# TYPE fluxgate_upstream_usable_addresses gauge"
    );
    for (up, addrs) in rows {
        let n = addrs.iter().filter(|(h, e)| *h && !*e).count();
        let _ = writeln!(
            s,
            "fluxgate_upstream_usable_addresses{{upstream=\"{}\"}} {n}",
            crate::metrics::escaped(up)
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upstream_health_renders_one_gauge_per_address_and_a_usable_count() {
        let mut s = String::new();
        render_upstreams(&mut s, &[("api", vec![(true, false), (false, true)])]);
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
