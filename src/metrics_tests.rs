//! Unit tests of the metric registry and its text rendering.

use super::*;

#[test]
fn labeled_counter_counts_each_series() {
    let c = LabeledCounter::default();
    c.inc("denied", "no_credential");
    c.inc("denied", "no_credential");
    c.inc("admitted", "session");
    assert_eq!(c.get("denied", "no_credential"), 2);
    assert_eq!(c.get("admitted", "session"), 1);
    assert_eq!(c.get("admitted", "nothing"), 0);
}

#[test]
fn concurrent_increments_are_not_lost() {
    let c = std::sync::Arc::new(LabeledCounter::default());
    let threads: Vec<_> = (0..4)
        .map(|_| {
            let c = c.clone();
            std::thread::spawn(move || {
                for _ in 0..10_000 {
                    c.inc("a", "x");
                    c.inc("b", "y");
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    assert_eq!(c.get("a", "x"), 40_000);
    assert_eq!(c.get("b", "y"), 40_000);
}

#[test]
fn render_is_prometheus_text() {
    let m = Metrics::default();
    m.decisions.inc("denied", "no_credential");
    m.count_store_read();
    let out = m.render();
    assert!(
        out.contains("fluxgate_decisions_total{outcome=\"denied\",reason=\"no_credential\"} 1")
    );
    assert!(out.contains("fluxgate_store_reads_total 1"));
    assert!(out.contains("# TYPE fluxgate_decisions_total counter"));
}

#[test]
fn a_route_name_is_interned_once_and_escaped_when_rendered() {
    let a = route_label("GET /a \"quoted\"");
    assert!(std::ptr::eq(a, route_label("GET /a \"quoted\"")));
    let m = Metrics::default();
    m.would_deny.inc("no_credential", a);
    assert!(m.render().contains(
        r#"fluxgate_would_deny_total{reason="no_credential",route="GET /a \"quoted\""} 1"#
    ));
}

#[test]
fn histograms_count_each_observation_in_its_bucket() {
    let m = Metrics::default();
    let d = std::time::Duration::from_micros(700);
    m.request_duration.observe("api", "admitted", d, None);
    m.request_duration.observe("api", "admitted", d * 10, None);
    let h = m.request_duration.get("api", "admitted");
    assert_eq!(h.count(), 2);
    assert_eq!(h.sum_ns, 7_700_000);
    let out = m.render();
    for line in [
        r#"fluxgate_request_duration_seconds_bucket{route="api",decision="admitted",le="0.0005"} 0"#,
        r#"fluxgate_request_duration_seconds_bucket{route="api",decision="admitted",le="0.001"} 1"#,
        r#"fluxgate_request_duration_seconds_bucket{route="api",decision="admitted",le="+Inf"} 2"#,
        r#"fluxgate_request_duration_seconds_count{route="api",decision="admitted"} 2"#,
    ] {
        assert!(
            out.lines().any(|l| l == line),
            "missing {line:?} in:\n{out}"
        );
    }
}

#[test]
fn an_exemplar_carries_the_trace_id_in_openmetrics_only() {
    let m = Metrics::default();
    let id = TraceIdHex::parse("4BF92F3577B34DA6A3CE929D0E0E4736").unwrap();
    let d = std::time::Duration::from_millis(3);
    m.upstream_duration.observe("api", "", d, Some(&id));
    let om = m.encode(Format::OpenMetrics, Vec::new());
    let line = om
        .lines()
        .find(|l| l.contains("trace_id"))
        .unwrap_or_else(|| panic!("no exemplar in:\n{om}"));
    assert!(
        line.starts_with(r#"fluxgate_upstream_duration_seconds_bucket{le="0.005",route="api"} 1 # {trace_id="4bf92f3577b34da6a3ce929d0e0e4736"} 0.003"#),
        "{line}"
    );
    assert!(om.ends_with("# EOF\n"));
    assert!(!m.render().contains("trace_id"));
}

#[test]
fn a_trace_id_that_is_not_32_hex_characters_is_refused() {
    for bad in [
        "",
        "abc",
        "00000000000000000000000000000000",
        "4bf92f3577b34da6a3ce929d0e0e473g",
    ] {
        assert!(TraceIdHex::parse(bad).is_none(), "{bad:?}");
    }
}

#[test]
fn counters_keep_their_total_names_in_both_formats() {
    let m = Metrics::default();
    m.decisions.inc("denied", "no_credential");
    let om = m.encode(Format::OpenMetrics, Vec::new());
    assert!(om.contains("# TYPE fluxgate_decisions counter\n"));
    assert!(
        om.contains("fluxgate_decisions_total{outcome=\"denied\",reason=\"no_credential\"} 1\n")
    );
    assert_eq!(Format::negotiate(None), Format::Prometheus);
    assert_eq!(
        Format::negotiate(Some("application/openmetrics-text; version=1.0.0")),
        Format::OpenMetrics
    );
}
