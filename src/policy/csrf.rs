//! Origin checks for cookie sessions (contract §3, `INVALID_API_ORIGIN`).
//!
//! A cookie is sent by the browser whoever made the page, so an unsafe request (anything but
//! GET, HEAD, OPTIONS, TRACE) authenticated by the session cookie must come from an allowed
//! origin: the `Origin` header, or failing that the origin of `Referer`. Requests authenticated
//! by an `Authorization` header carry no ambient credential and are not checked.

use http::{HeaderMap, Method};

/// The allowed origins, normalized (`scheme://host[:port]`, lower case, default port dropped).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OriginPolicy {
    allowed: Vec<String>,
}

/// Normalizes an origin or URL to `scheme://host[:port]`; `None` if it is not an http(s) one.
pub fn origin_of(s: &str) -> Option<String> {
    let uri: http::Uri = s.parse().ok()?;
    let scheme = uri.scheme_str()?.to_ascii_lowercase();
    let auth = uri.authority()?;
    if auth.as_str().contains('@') {
        return None;
    }
    let host = auth.host().to_ascii_lowercase();
    if host.is_empty() {
        return None;
    }
    let port = match (scheme.as_str(), auth.port_u16()) {
        ("https", Some(443)) | ("http", Some(80)) | (_, None) => String::new(),
        ("https" | "http", Some(p)) => format!(":{p}"),
        _ => return None,
    };
    if scheme != "https" && scheme != "http" {
        return None;
    }
    Some(format!("{scheme}://{host}{port}"))
}

/// Methods that change state.
pub fn is_unsafe(m: &Method) -> bool {
    !matches!(
        *m,
        Method::GET | Method::HEAD | Method::OPTIONS | Method::TRACE
    )
}

impl OriginPolicy {
    /// Builds the set from configured origins (already validated with [`origin_of`]).
    pub fn new(origins: impl IntoIterator<Item = String>) -> Self {
        let mut allowed: Vec<String> = origins.into_iter().collect();
        allowed.sort();
        allowed.dedup();
        OriginPolicy { allowed }
    }

    pub fn allowed(&self) -> &[String] {
        &self.allowed
    }

    // SECURITY: a cookie-authenticated state change from a foreign (or unknown, or `null`)
    // origin is cross-site request forgery until proven otherwise.
    pub fn permits(&self, headers: &HeaderMap) -> bool {
        let mut origins = headers.get_all(http::header::ORIGIN).iter();
        let claimed = match (origins.next(), origins.next()) {
            (Some(_), Some(_)) => return false,
            (Some(o), None) => o.to_str().ok().and_then(origin_of),
            (None, _) => {
                let mut refs = headers.get_all(http::header::REFERER).iter();
                match (refs.next(), refs.next()) {
                    (Some(r), None) => r.to_str().ok().and_then(origin_of),
                    _ => None,
                }
            }
        };
        claimed.is_some_and(|o| self.allowed.contains(&o))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> OriginPolicy {
        OriginPolicy::new([
            "https://web.fluxer.app".to_string(),
            "https://fluxer.app".to_string(),
        ])
    }

    fn h(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut m = HeaderMap::new();
        for (k, v) in pairs {
            m.append(*k, v.parse().unwrap());
        }
        m
    }

    #[test]
    fn an_allowed_origin_passes_in_any_case_and_with_its_default_port() {
        let p = policy();
        assert!(p.permits(&h(&[("origin", "https://web.fluxer.app")])));
        assert!(p.permits(&h(&[("origin", "HTTPS://WEB.FLUXER.APP:443")])));
    }

    #[test]
    fn a_foreign_origin_is_refused() {
        let p = policy();
        for o in [
            "https://evil.example",
            "http://web.fluxer.app",
            "https://web.fluxer.app:8443",
            "https://fluxer.app.evil.example",
        ] {
            assert!(!p.permits(&h(&[("origin", o)])), "{o}");
        }
    }

    #[test]
    fn missing_and_null_origins_are_refused() {
        let p = policy();
        assert!(!p.permits(&h(&[])));
        assert!(!p.permits(&h(&[("origin", "null")])));
        assert!(!p.permits(&h(&[
            ("origin", "https://web.fluxer.app"),
            ("origin", "https://web.fluxer.app")
        ])));
    }

    #[test]
    fn referer_is_used_when_there_is_no_origin() {
        let p = policy();
        assert!(p.permits(&h(&[("referer", "https://web.fluxer.app/channels/1?x=y")])));
        assert!(!p.permits(&h(&[(
            "referer",
            "https://evil.example/https://web.fluxer.app"
        )])));
        assert!(!p.permits(&h(&[("referer", "https://user@web.fluxer.app/")])));
        // An Origin, when present, decides even if Referer would pass.
        assert!(!p.permits(&h(&[
            ("origin", "https://evil.example"),
            ("referer", "https://web.fluxer.app/")
        ])));
    }

    #[test]
    fn only_state_changing_methods_are_unsafe() {
        assert!(!is_unsafe(&Method::GET));
        assert!(!is_unsafe(&Method::HEAD));
        assert!(is_unsafe(&Method::POST));
        assert!(is_unsafe(&Method::DELETE));
        assert!(is_unsafe(&Method::PATCH));
        assert!(is_unsafe(&Method::PUT));
    }
}
