//! `/metrics` read the way Prometheus reads it: scraped from the admin listener of the real
//! binary and parsed with an exposition-format parser (`prometheus-parse`), not grepped.

use crate::common::*;
use prometheus_parse::{Sample, Scrape, Value};
use serde_json::json;

const ROUTES: &str = r#"
[credentials]
accept = ["session"]

[[route]]
name = "public"
path = "/public"
auth = "none"

[[route]]
name = "account"
path = "/account"
"#;

fn scrape(fg: &Fluxgate) -> Scrape {
    let r = get(fg.admin, "/metrics").unwrap();
    assert_eq!(
        r.header("content-type"),
        Some("text/plain; version=0.0.4; charset=utf-8")
    );
    Scrape::parse(r.text().lines().map(|l| Ok(l.to_owned()))).unwrap()
}

fn find<'a>(s: &'a Scrape, metric: &str, labels: &[(&str, &str)]) -> Option<&'a Sample> {
    s.samples
        .iter()
        .find(|x| x.metric == metric && labels.iter().all(|(k, v)| x.labels.get(k) == Some(*v)))
}

fn counter(s: &Scrape, metric: &str, labels: &[(&str, &str)]) -> f64 {
    match find(s, metric, labels).map(|x| &x.value) {
        Some(Value::Counter(v)) => *v,
        other => panic!("{metric}{labels:?} is not a counter: {other:?}"),
    }
}

/// Observations in a histogram series: its `+Inf` bucket.
fn observations(s: &Scrape, metric: &str, labels: &[(&str, &str)]) -> f64 {
    match find(s, metric, labels).map(|x| &x.value) {
        Some(Value::Histogram(buckets)) => {
            let inf = buckets.iter().find(|b| b.less_than.is_infinite());
            inf.map(|b| b.count).expect("a +Inf bucket")
        }
        None => 0.0,
        other => panic!("{metric}{labels:?} is not a histogram: {other:?}"),
    }
}

#[test]
fn a_scrape_parses_and_counts_each_request_once_per_route_and_decision() {
    let up = Upstream::start();
    let fg = Fluxgate::start(up.addr, ROUTES);
    let (tok, _) =
        fg.create_session(json!({"user_id": "1234567890", "kind": "session", "lifetime": "1h"}));
    for _ in 0..3 {
        assert_eq!(fg.send(&Req::get("/public")).status, 200);
    }
    for _ in 0..2 {
        assert_eq!(fg.send(&Req::get("/account")).status, 401);
    }
    let admitted = fg.send(&Req::get("/account").header("authorization", &tok));
    assert_eq!(admitted.status, 200, "{}", admitted.text());

    let s = scrape(&fg);
    let decisions = "fluxgate_decisions_total";
    let admitted_total: f64 = s
        .samples
        .iter()
        .filter(|x| x.metric == decisions && x.labels.get("outcome") == Some("admitted"))
        .map(|x| match x.value {
            Value::Counter(v) => v,
            _ => panic!("{decisions} is not a counter"),
        })
        .sum();
    assert_eq!(admitted_total, 4.0, "{:?}", s.samples);
    let denied = [("outcome", "denied"), ("reason", "no_credential")];
    assert_eq!(counter(&s, decisions, &denied), 2.0);
    for (route, decision, n) in [
        ("public", "admitted", 3.0),
        ("account", "denied", 2.0),
        ("account", "admitted", 1.0),
    ] {
        let labels = [("route", route), ("decision", decision)];
        for h in [
            "fluxgate_request_duration_seconds",
            "fluxgate_decision_duration_seconds",
        ] {
            assert_eq!(observations(&s, h, &labels), n, "{h}{labels:?}");
        }
    }
    let up_time = "fluxgate_upstream_duration_seconds";
    assert_eq!(observations(&s, up_time, &[("route", "public")]), 3.0);
    assert_eq!(observations(&s, up_time, &[("route", "account")]), 1.0);
    // Every store read is timed, by result.
    let reads = counter(&s, "fluxgate_store_reads_total", &[]);
    let found = [("result", "found")];
    let lookup = "fluxgate_store_lookup_duration_seconds";
    assert!(reads >= 1.0);
    assert_eq!(observations(&s, lookup, &found), reads);
    // Labels are route names from the config, never the raw path.
    assert!(
        s.samples
            .iter()
            .all(|x| x.labels.get("route") != Some("/public"))
    );
    assert!(
        s.samples
            .iter()
            .all(|x| x.labels.values().all(|v| v != &tok))
    );
}

#[test]
fn an_openmetrics_scraper_gets_openmetrics() {
    let up = Upstream::start();
    let fg = Fluxgate::start(up.addr, ROUTES);
    fg.send(&Req::get("/public"));
    let r = Req::get("/metrics")
        .header(
            "accept",
            "application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5",
        )
        .send(fg.admin);
    assert_eq!(
        r.header("content-type"),
        Some("application/openmetrics-text; version=1.0.0; charset=utf-8")
    );
    let text = r.text();
    assert!(text.ends_with("# EOF\n"), "{text}");
    assert!(
        text.contains("# TYPE fluxgate_decisions counter\n"),
        "{text}"
    );
    assert!(text.contains(
        "fluxgate_request_duration_seconds_count{route=\"public\",decision=\"admitted\"} 1\n"
    ));
}

#[test]
fn a_traced_request_leaves_its_trace_id_as_an_exemplar_in_openmetrics_only() {
    const TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
    let up = Upstream::start();
    // Exports go nowhere (nothing listens on port 1): only the trace id matters here.
    let fg = Fluxgate::start(
        up.addr,
        &format!(
            "[tracing]\notlp_endpoint = \"http://127.0.0.1:1/v1/traces\"\nsample_ratio = 0.0\n\
             [client_ip]\ntrusted_proxies = [\"127.0.0.1/32\"]\n{ROUTES}"
        ),
    );
    let r = Req::get("/public")
        .header("traceparent", &format!("00-{TRACE}-00f067aa0ba902b7-01"))
        .send(fg.proxy);
    assert_eq!(r.status, 200, "{}", r.text());
    let om = Req::get("/metrics")
        .header("accept", "application/openmetrics-text; version=1.0.0")
        .send(fg.admin)
        .text();
    let exemplar = format!("# {{trace_id=\"{TRACE}\"}}");
    for h in [
        "fluxgate_request_duration_seconds_bucket{",
        "fluxgate_upstream_duration_seconds_bucket{",
    ] {
        assert!(
            om.lines().any(|l| l.starts_with(h)
                && l.contains("route=\"public\"")
                && l.contains(&exemplar)),
            "no exemplar on {h} in:\n{om}"
        );
    }
    let plain = get(fg.admin, "/metrics").unwrap().text();
    assert!(!plain.contains("trace_id"));
}
