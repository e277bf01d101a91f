//! `[cors]`: which cross-origin pages may read answers, and who answers their preflights.

use super::Dur;
use super::validate::{Errors, choice, p};
use crate::policy::cors::{CorsMode, CorsPolicy};
use crate::policy::csrf::{OriginPolicy, origin_of};
use http::{HeaderName, Method};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default)]
pub struct CorsFile {
    /// "edge", "upstream" or "off".
    pub mode: String,
    /// Origins whose pages may read answers; absent: the `[csrf]` origins.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub allowed_origins: Option<Vec<String>>,
    pub allowed_methods: Vec<String>,
    pub allowed_headers: Vec<String>,
    pub exposed_headers: Vec<String>,
    pub max_age: Dur,
    pub credentials: bool,
}

fn strings(items: &[&str]) -> Vec<String> {
    items.iter().map(|s| s.to_string()).collect()
}

impl Default for CorsFile {
    fn default() -> Self {
        CorsFile {
            mode: "edge".into(),
            allowed_origins: None,
            allowed_methods: strings(&["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE"]),
            allowed_headers: strings(&[
                "Authorization",
                "Content-Type",
                "X-Fluxer-Sudo-Mode-JWT",
                "X-Request-Id",
            ]),
            exposed_headers: strings(&[
                "X-RateLimit-Limit",
                "X-RateLimit-Remaining",
                "X-RateLimit-Reset",
                "X-RateLimit-Reset-After",
                "X-RateLimit-Bucket",
                "X-RateLimit-Global",
                "X-RateLimit-Scope",
                "Retry-After",
                "X-Fluxer-Version",
                "X-Fluxer-Sudo-Mode-JWT",
                "X-Request-Id",
            ]),
            max_age: Dur::from_secs(600),
            credentials: true,
        }
    }
}

/// `csrf`: the `[csrf]` origins, the default list.
pub(super) fn validate_cors(c: &CorsFile, csrf: &OriginPolicy, e: &mut Errors) -> CorsPolicy {
    let at = |k: &str| p("cors").key(k);
    let mode = choice(
        &c.mode,
        "CORS mode",
        &[
            ("edge", CorsMode::Edge),
            ("upstream", CorsMode::Upstream),
            ("off", CorsMode::Off),
        ],
        at("mode"),
        e,
    )
    .unwrap_or(CorsMode::Off);
    let origins = match &c.allowed_origins {
        None => csrf.clone(),
        Some(list) => {
            let mut out = Vec::new();
            for (i, o) in list.iter().enumerate() {
                match origin_of(o) {
                    Some(n) if o != "null" => out.push(n),
                    _ => e.at(
                        at("allowed_origins").index(i),
                        format!("{o:?} is not an origin like \"https://web.example.com\" (wildcards are not allowed)"),
                    ),
                }
            }
            OriginPolicy::new(out)
        }
    };
    let mut methods = Vec::new();
    for (i, m) in c.allowed_methods.iter().enumerate() {
        match Method::from_bytes(m.as_bytes()) {
            Ok(method) if m.bytes().all(|b| b.is_ascii_uppercase()) => methods.push(method),
            _ => e.at(
                at("allowed_methods").index(i),
                format!("{m:?} is not an HTTP method in upper case"),
            ),
        }
    }
    let names = |list: &[String], key: &str, e: &mut Errors| -> Vec<HeaderName> {
        let mut out = Vec::new();
        for (i, h) in list.iter().enumerate() {
            match HeaderName::from_bytes(h.as_bytes()) {
                Ok(n) => out.push(n),
                Err(_) => e.at(at(key).index(i), format!("{h:?} is not a header name")),
            }
        }
        out
    };
    let headers = names(&c.allowed_headers, "allowed_headers", e);
    let expose = names(&c.exposed_headers, "exposed_headers", e);
    if c.max_age.0.as_secs() > 86_400 {
        e.at(
            at("max_age"),
            "must be at most 24h (browsers cap it lower anyway)",
        );
    }
    CorsPolicy::new(
        mode,
        origins,
        &methods,
        &headers,
        &expose,
        c.max_age.0.as_secs(),
        c.credentials,
    )
}

#[cfg(test)]
mod tests {
    use crate::config::parse;

    #[test]
    fn bad_cors_settings_are_each_reported() {
        let out = match parse(
            "[cors]\nmode = \"sometimes\"\nallowed_origins = [\"*\", \"null\"]\nallowed_methods = [\"get\"]\nallowed_headers = [\"bad header\"]\nmax_age = \"2d\"\n",
            "t.toml",
        ) {
            Ok(_) => String::new(),
            Err(e) => e.to_string(),
        };
        for key in [
            "cors.mode",
            "cors.allowed_origins[0]",
            "cors.allowed_origins[1]",
            "cors.allowed_methods[0]",
            "cors.allowed_headers[0]",
            "cors.max_age",
        ] {
            assert!(out.contains(key), "{key} not reported in:\n{out}");
        }
    }
}
