//! CORS at the edge (Fetch standard, "CORS protocol"): which cross-origin callers may read
//! fluxgate's and the upstream's answers, and the answer to a preflight.
//!
//! A browser on another origin sends a preflight `OPTIONS` without credentials before any
//! request that is not "simple"; answering it 401 (no credential) means the real request is
//! never sent. And a denial without `Access-Control-Allow-Origin` cannot be read by the page, so
//! the client cannot show Fluxer's error JSON. So: preflights from allowed origins are answered
//! (or passed to the upstream), and every answer to an allowed origin carries the same CORS
//! headers, denial or not. A foreign origin gets no CORS header and nothing else changes.
//!
//! Hand-written rather than tower-http's `CorsLayer`: that is a tower middleware around a
//! service, while here the decision is made by the pipeline and the headers are written by two
//! faces (pingora's response filter and the denial writer). The header values are computed once
//! per config.

use super::csrf::{OriginPolicy, origin_of};
use http::header::{self, HeaderName};
use http::{HeaderMap, HeaderValue, Method};

/// Who answers preflights from allowed origins.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CorsMode {
    /// fluxgate answers preflights and sets the CORS headers on every answer.
    Edge,
    /// Preflights go to the upstream (without credentials, with no identity); fluxgate adds
    /// CORS headers only to its own answers (denials).
    Upstream,
    /// No CORS at all: preflights are requests like any other.
    Off,
}

/// `[cors]`, validated, with its header values built once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CorsPolicy {
    pub mode: CorsMode,
    origins: OriginPolicy,
    allow_methods: HeaderValue,
    allow_headers: HeaderValue,
    expose_headers: HeaderValue,
    max_age: HeaderValue,
    credentials: bool,
}

impl Default for CorsPolicy {
    fn default() -> Self {
        CorsPolicy {
            mode: CorsMode::Off,
            origins: OriginPolicy::default(),
            allow_methods: HeaderValue::from_static(""),
            allow_headers: HeaderValue::from_static(""),
            expose_headers: HeaderValue::from_static(""),
            max_age: HeaderValue::from_static("0"),
            credentials: false,
        }
    }
}

const VARY_ORIGIN: HeaderValue = HeaderValue::from_static("origin");
const TRUE: HeaderValue = HeaderValue::from_static("true");

impl CorsPolicy {
    /// `lists` are already validated: methods, request headers, exposed headers.
    pub fn new(
        mode: CorsMode,
        origins: OriginPolicy,
        methods: &[Method],
        headers: &[HeaderName],
        expose: &[HeaderName],
        max_age_secs: u64,
        credentials: bool,
    ) -> CorsPolicy {
        let join = |items: Vec<&str>| {
            HeaderValue::from_str(&items.join(", "))
                .expect("methods and header names are valid header values")
        };
        CorsPolicy {
            mode,
            origins,
            allow_methods: join(methods.iter().map(Method::as_str).collect()),
            allow_headers: join(headers.iter().map(HeaderName::as_str).collect()),
            expose_headers: join(expose.iter().map(HeaderName::as_str).collect()),
            max_age: HeaderValue::from(max_age_secs),
            credentials,
        }
    }

    /// The request's `Origin`, when it is one allowed to read answers (exactly one `Origin`
    /// header, an http(s) origin on the list).
    // SECURITY: only an origin on the list is ever echoed in Access-Control-Allow-Origin, and
    // never `*` with credentials: a foreign page cannot read an authenticated answer.
    pub fn allowed_origin<'a>(&self, headers: &'a HeaderMap) -> Option<&'a HeaderValue> {
        if self.mode == CorsMode::Off {
            return None;
        }
        let mut all = headers.get_all(header::ORIGIN).iter();
        let (Some(origin), None) = (all.next(), all.next()) else {
            return None;
        };
        let normalized = origin_of(origin.to_str().ok()?)?;
        self.origins
            .allowed()
            .binary_search(&normalized)
            .is_ok()
            .then_some(origin)
    }

    /// A CORS preflight: `OPTIONS` with `Origin` and `Access-Control-Request-Method`.
    pub fn is_preflight(method: &Method, headers: &HeaderMap) -> bool {
        method == Method::OPTIONS
            && headers.contains_key(header::ORIGIN)
            && headers.contains_key(header::ACCESS_CONTROL_REQUEST_METHOD)
    }

    /// The headers of any answer to an allowed `origin` (success or denial).
    pub fn response_headers(&self, origin: &HeaderValue) -> Vec<(HeaderName, HeaderValue)> {
        let mut out = Vec::with_capacity(4);
        out.push((header::ACCESS_CONTROL_ALLOW_ORIGIN, origin.clone()));
        if self.credentials {
            out.push((header::ACCESS_CONTROL_ALLOW_CREDENTIALS, TRUE));
        }
        if !self.expose_headers.is_empty() {
            out.push((
                header::ACCESS_CONTROL_EXPOSE_HEADERS,
                self.expose_headers.clone(),
            ));
        }
        out.push((header::VARY, VARY_ORIGIN));
        out
    }

    /// The headers of fluxgate's answer to a preflight from an allowed `origin`.
    pub fn preflight_headers(&self, origin: &HeaderValue) -> Vec<(HeaderName, HeaderValue)> {
        let mut out = Vec::with_capacity(6);
        out.push((header::ACCESS_CONTROL_ALLOW_ORIGIN, origin.clone()));
        if self.credentials {
            out.push((header::ACCESS_CONTROL_ALLOW_CREDENTIALS, TRUE));
        }
        out.push((
            header::ACCESS_CONTROL_ALLOW_METHODS,
            self.allow_methods.clone(),
        ));
        out.push((
            header::ACCESS_CONTROL_ALLOW_HEADERS,
            self.allow_headers.clone(),
        ));
        out.push((header::ACCESS_CONTROL_MAX_AGE, self.max_age.clone()));
        out.push((header::VARY, VARY_ORIGIN));
        out
    }

    /// The response headers fluxgate owns in edge mode (an upstream's copies are replaced).
    pub const OWNED: [HeaderName; 7] = [
        header::ACCESS_CONTROL_ALLOW_ORIGIN,
        header::ACCESS_CONTROL_ALLOW_CREDENTIALS,
        header::ACCESS_CONTROL_EXPOSE_HEADERS,
        header::ACCESS_CONTROL_ALLOW_METHODS,
        header::ACCESS_CONTROL_ALLOW_HEADERS,
        header::ACCESS_CONTROL_MAX_AGE,
        header::VARY,
    ];
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(mode: CorsMode) -> CorsPolicy {
        CorsPolicy::new(
            mode,
            OriginPolicy::new(["https://web.fluxer.app".to_string()]),
            &[Method::GET, Method::POST],
            &[header::AUTHORIZATION, header::CONTENT_TYPE],
            &[HeaderName::from_static("x-ratelimit-limit")],
            600,
            true,
        )
    }

    fn h(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut m = HeaderMap::new();
        for (k, v) in pairs {
            m.append(*k, v.parse().unwrap());
        }
        m
    }

    #[test]
    fn an_allowed_origin_is_echoed_exactly_as_sent() {
        let p = policy(CorsMode::Edge);
        let m = h(&[("origin", "https://web.fluxer.app")]);
        let o = p.allowed_origin(&m).expect("allowed");
        let out = p.response_headers(o);
        assert_eq!(out[0].1, "https://web.fluxer.app");
        assert!(out.contains(&(header::ACCESS_CONTROL_ALLOW_CREDENTIALS, TRUE)));
        assert!(out.contains(&(header::VARY, VARY_ORIGIN)));
    }

    #[test]
    fn a_foreign_null_or_doubled_origin_gets_no_cors_headers() {
        let p = policy(CorsMode::Edge);
        for m in [
            h(&[("origin", "https://evil.example")]),
            h(&[("origin", "null")]),
            h(&[("origin", "https://web.fluxer.app.evil.example")]),
            h(&[
                ("origin", "https://web.fluxer.app"),
                ("origin", "https://evil.example"),
            ]),
            h(&[("referer", "https://web.fluxer.app/")]),
        ] {
            assert!(p.allowed_origin(&m).is_none(), "{m:?}");
        }
    }

    #[test]
    fn cors_off_allows_nobody() {
        let p = policy(CorsMode::Off);
        assert!(
            p.allowed_origin(&h(&[("origin", "https://web.fluxer.app")]))
                .is_none()
        );
    }

    #[test]
    fn a_preflight_needs_options_origin_and_a_requested_method() {
        let pre = h(&[
            ("origin", "https://web.fluxer.app"),
            ("access-control-request-method", "POST"),
        ]);
        assert!(CorsPolicy::is_preflight(&Method::OPTIONS, &pre));
        assert!(!CorsPolicy::is_preflight(&Method::GET, &pre));
        assert!(!CorsPolicy::is_preflight(
            &Method::OPTIONS,
            &h(&[("origin", "https://web.fluxer.app")])
        ));
    }

    #[test]
    fn the_preflight_answer_lists_methods_headers_and_max_age() {
        let p = policy(CorsMode::Edge);
        let o = HeaderValue::from_static("https://web.fluxer.app");
        let out = p.preflight_headers(&o);
        let get = |n: HeaderName| out.iter().find(|(k, _)| *k == n).map(|(_, v)| v.clone());
        assert_eq!(
            get(header::ACCESS_CONTROL_ALLOW_METHODS).unwrap(),
            "GET, POST"
        );
        assert_eq!(
            get(header::ACCESS_CONTROL_ALLOW_HEADERS).unwrap(),
            "authorization, content-type"
        );
        assert_eq!(get(header::ACCESS_CONTROL_MAX_AGE).unwrap(), "600");
    }
}
