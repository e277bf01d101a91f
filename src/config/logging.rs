//! `[logging]`: the log format and level, and whether each request is logged.

use super::validate::{Errors, choice, p};
use crate::logging::{LogFormat, LoggingSettings};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default)]
pub struct LoggingFile {
    pub format: String,
    pub level: String,
    pub access_log: bool,
    /// Whether access lines carry the raw `path` (the route's template is always there).
    pub access_log_path: bool,
}

impl Default for LoggingFile {
    fn default() -> Self {
        LoggingFile {
            format: "json".into(),
            level: "info".into(),
            access_log: true,
            access_log_path: true,
        }
    }
}

pub(super) fn validate_logging(l: &LoggingFile, e: &mut Errors) -> LoggingSettings {
    let formats = [
        ("json", LogFormat::Json),
        ("logfmt", LogFormat::Logfmt),
        ("pretty", LogFormat::Pretty),
    ];
    let format =
        choice(&l.format, "format", &formats, p("logging.format"), e).unwrap_or(LogFormat::Json);
    if tracing_subscriber::EnvFilter::try_new(&l.level).is_err() {
        e.at(
            p("logging.level"),
            format!(
                "{:?} is not a level (error, warn, info, debug, trace) or filter",
                l.level
            ),
        );
    }
    LoggingSettings {
        format,
        level: l.level.clone(),
    }
}
