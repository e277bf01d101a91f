//! `[tracing]` (this file is `traces.rs` so the section does not shadow the `tracing` crate):
//! OpenTelemetry traces exported by OTLP/HTTP (see `telemetry/`). Off unless
//! `otlp_endpoint` is set; restart to change.

use super::Dur;
use super::validate::{Errors, choice, p, positive};
use crate::telemetry::{TracingSettings, TrustIncoming};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default)]
pub struct TracingFile {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub otlp_endpoint: Option<String>,
    pub sample_ratio: f64,
    pub trust_incoming: String,
    pub service_name: String,
    pub batch_delay: Dur,
}

impl Default for TracingFile {
    fn default() -> Self {
        TracingFile {
            otlp_endpoint: None,
            sample_ratio: 1.0,
            trust_incoming: "trusted_proxies".into(),
            service_name: "fluxgate".into(),
            batch_delay: Dur(std::time::Duration::from_secs(5)),
        }
    }
}

/// Validates `[tracing]`: `None` when off.
pub(super) fn validate_tracing(t: &TracingFile, e: &mut Errors) -> Option<TracingSettings> {
    let trust = choice(
        &t.trust_incoming,
        "trust_incoming",
        &[
            ("trusted_proxies", TrustIncoming::TrustedProxies),
            ("always", TrustIncoming::Always),
            ("never", TrustIncoming::Never),
        ],
        p("tracing.trust_incoming"),
        e,
    );
    if !(0.0..=1.0).contains(&t.sample_ratio) {
        e.at(
            p("tracing.sample_ratio"),
            format!("{} is not a ratio from 0.0 to 1.0", t.sample_ratio),
        );
    }
    if t.service_name.trim().is_empty() {
        e.at(p("tracing.service_name"), "name the service");
    }
    positive(t.batch_delay, p("tracing.batch_delay"), e);
    let endpoint = t.otlp_endpoint.as_ref()?;
    let ok = endpoint
        .parse::<http::Uri>()
        .is_ok_and(|u| matches!(u.scheme_str(), Some("http" | "https")) && u.authority().is_some());
    if !ok {
        e.at(
            p("tracing.otlp_endpoint"),
            format!(
                "{endpoint:?} is not an http(s) URL (e.g. \"http://127.0.0.1:4318/v1/traces\")"
            ),
        );
    }
    Some(TracingSettings {
        endpoint: endpoint.clone(),
        sample_ratio: t.sample_ratio,
        trust: trust?,
        service_name: t.service_name.clone(),
        batch_delay: t.batch_delay.0,
    })
}

#[cfg(test)]
mod tests {
    use crate::config::parse;

    fn errors(toml: &str) -> String {
        match parse(
            &format!("[upstream]\naddresses = [\"127.0.0.1:3000\"]\n{toml}"),
            "t",
        ) {
            Ok(_) => String::new(),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn tracing_is_off_unless_an_endpoint_is_set() {
        let cfg = parse("[upstream]\naddresses = [\"127.0.0.1:3000\"]\n", "t").unwrap();
        assert!(cfg.boot.tracing.is_none());
        let cfg = parse(
            "[upstream]\naddresses = [\"127.0.0.1:3000\"]\n[tracing]\notlp_endpoint = \"http://127.0.0.1:4318/v1/traces\"\nsample_ratio = 0.25\ntrust_incoming = \"never\"\n",
            "t",
        )
        .unwrap();
        let t = cfg.boot.tracing.unwrap();
        assert_eq!(t.sample_ratio, 0.25);
        assert_eq!(t.trust, crate::telemetry::TrustIncoming::Never);
        assert_eq!(t.service_name, "fluxgate");
    }

    #[test]
    fn bad_tracing_values_name_their_keys() {
        let e = errors(
            "[tracing]\notlp_endpoint = \"collector:4318\"\nsample_ratio = 1.5\ntrust_incoming = \"maybe\"\nservice_name = \"\"\n",
        );
        for key in [
            "tracing.otlp_endpoint",
            "tracing.sample_ratio",
            "tracing.trust_incoming",
            "tracing.service_name",
        ] {
            assert!(e.contains(key), "{key} missing from {e}");
        }
    }
}
