//! The exposition: a scrape copies every series out of the lock-free tables into [`Family`]
//! values, and `prometheus-client` encodes them, through its `Collector` trait, as OpenMetrics
//! text (when the scraper asks for it) or as the Prometheus text format 0.0.4.
//!
//! A `Collector` over our own atomics, rather than the crate's `Family`/`Histogram` types,
//! keeps the request path lock-free (see `table.rs`); the crate still writes every line,
//! escapes labels and names the suffixes.

use super::table::{HistogramSnapshot, LATENCY_BUCKETS};
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric as _, NoLabelSet};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::registry::Registry;

/// Which text format a scrape is answered in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// OpenMetrics 1.0 text: the only one that carries exemplars.
    OpenMetrics,
    /// The Prometheus text format 0.0.4: what every scraper reads; the default.
    Prometheus,
}

impl Format {
    /// OpenMetrics when the `Accept` header names it (Prometheus itself does), else 0.0.4.
    pub fn negotiate(accept: Option<&str>) -> Format {
        match accept {
            Some(a) if a.contains("application/openmetrics-text") => Format::OpenMetrics,
            _ => Format::Prometheus,
        }
    }

    pub fn content_type(self) -> &'static str {
        match self {
            Format::OpenMetrics => "application/openmetrics-text; version=1.0.0; charset=utf-8",
            Format::Prometheus => prometheus_client::encoding::prometheus_text::CONTENT_TYPE,
        }
    }
}

/// A series' label values, in the order of its family's label names.
pub type Values = Vec<String>;

/// One metric family as read at a scrape.
#[derive(Debug)]
pub struct Family {
    /// The exported name (counters with their `_total`).
    pub name: &'static str,
    pub help: &'static str,
    pub labels: &'static [&'static str],
    pub series: Series,
}

#[derive(Debug)]
pub enum Series {
    Counter(Vec<(Values, u64)>),
    Gauge(Vec<(Values, i64)>),
    Histogram(Vec<(Values, HistogramSnapshot)>),
}

/// Every family of one scrape, handed to the crate's registry.
#[derive(Debug)]
struct Scrape(Vec<Family>);

impl Collector for Scrape {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        for f in &self.0 {
            let (name, kind) = match &f.series {
                // The crate appends `_total` to a counter's samples (and to its HELP and TYPE
                // lines in 0.0.4), so it is given the bare name.
                Series::Counter(_) => (
                    f.name.strip_suffix("_total").unwrap_or(f.name),
                    MetricType::Counter,
                ),
                Series::Gauge(_) => (f.name, MetricType::Gauge),
                Series::Histogram(_) => (f.name, MetricType::Histogram),
            };
            let mut metric = encoder.encode_descriptor(name, f.help, None, kind)?;
            let labels = |values: &Values| -> Vec<(&'static str, String)> {
                f.labels
                    .iter()
                    .copied()
                    .zip(values.iter().cloned())
                    .collect()
            };
            match &f.series {
                Series::Counter(s) => {
                    for (values, n) in s {
                        ConstCounter::new(*n).encode(metric.encode_family(&labels(values))?)?;
                    }
                }
                Series::Gauge(s) => {
                    for (values, v) in s {
                        ConstGauge::new(*v).encode(metric.encode_family(&labels(values))?)?;
                    }
                }
                Series::Histogram(s) => {
                    for (values, h) in s {
                        let labels = labels(values);
                        let mut series = metric.encode_family(&labels)?;
                        series.encode_histogram::<NoLabelSet>(
                            h.sum_ns as f64 / 1e9,
                            h.count(),
                            &buckets(h),
                            None,
                        )?;
                    }
                }
            }
        }
        Ok(())
    }
}

/// The crate's (upper bound, count in this bucket) pairs, `+Inf` last.
fn buckets(h: &HistogramSnapshot) -> Vec<(f64, u64)> {
    LATENCY_BUCKETS
        .iter()
        .copied()
        .chain(std::iter::once(f64::INFINITY))
        .zip(h.counts.iter().copied())
        .collect()
}

/// The families as text in `format`.
pub fn encode(families: Vec<Family>, format: Format) -> String {
    let exemplars = match format {
        Format::OpenMetrics => exemplar_lines(&families),
        Format::Prometheus => Vec::new(),
    };
    let mut registry = Registry::default();
    registry.register_collector(Box::new(Scrape(families)));
    let mut out = String::with_capacity(16 * 1024);
    let encoded = match format {
        Format::OpenMetrics => prometheus_client::encoding::text::encode(&mut out, &registry),
        Format::Prometheus => {
            prometheus_client::encoding::prometheus_text::encode(&mut out, &registry)
        }
    };
    // Writing to a String cannot fail; a collector error would be ours and leave a partial
    // scrape, which a parser rejects rather than misreads.
    if encoded.is_err() {
        tracing::error!("metrics encoding failed");
    }
    splice_exemplars(out, &exemplars)
}

/// For each series with an exemplar: the bucket line's text up to its value, as the crate
/// writes it, and the exemplar to append.
fn exemplar_lines(families: &[Family]) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for f in families {
        let Series::Histogram(series) = &f.series else {
            continue;
        };
        for (values, h) in series {
            let Some(e) = &h.exemplar else { continue };
            // The crate has no public constructor for an exemplar outside its own locked
            // histogram type, so the bucket line is found by encoding this series alone (the
            // crate's own label escaping and float formatting) and the exemplar appended to it.
            let mut alone = Registry::default();
            alone.register_collector(Box::new(Scrape(vec![Family {
                name: f.name,
                help: f.help,
                labels: f.labels,
                series: Series::Histogram(vec![(values.clone(), h.clone())]),
            }])));
            let mut text = String::new();
            if prometheus_client::encoding::text::encode(&mut text, &alone).is_err() {
                continue;
            }
            let Some(line) = text
                .lines()
                .filter(|l| l.contains("_bucket{"))
                .nth(e.bucket)
                .and_then(|l| l.rsplit_once(' '))
                .map(|(head, _)| head.to_owned())
            else {
                continue;
            };
            let value = e.value_ns as f64 / 1e9;
            let ex = format!(" # {{trace_id=\"{}\"}} {value}", e.trace_id.as_str());
            out.push((line, ex));
        }
    }
    out
}

fn splice_exemplars(text: String, exemplars: &[(String, String)]) -> String {
    if exemplars.is_empty() {
        return text;
    }
    let mut out = String::with_capacity(text.len() + exemplars.len() * 64);
    for line in text.lines() {
        out.push_str(line);
        if let Some((head, _)) = line.rsplit_once(' ')
            && let Some((_, ex)) = exemplars.iter().find(|(h, _)| h == head)
        {
            out.push_str(ex);
        }
        out.push('\n');
    }
    out
}
