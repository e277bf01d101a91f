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
