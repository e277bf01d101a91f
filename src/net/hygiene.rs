//! Request hygiene: message framing and header forms that two HTTP implementations could read
//! differently (request smuggling, header aliasing), oversized header sections, and protocol
//! upgrades other than WebSocket. Each is refused with 400 before routing; the proxy then
//! closes the connection, so nothing that follows on it can be misread.
//!
//! Pingora's parser already refuses obs-fold, spaces before the colon, conflicting
//! `Content-Length` values and a `Transfer-Encoding` whose last coding is not `chunked`; these
//! checks cover what it accepts.

use http::header::{CONNECTION, CONTENT_LENGTH, TRANSFER_ENCODING, UPGRADE};
use http::{HeaderMap, HeaderName, Method, Version};

/// Why a request's head is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HygieneError {
    /// `Content-Length` together with `Transfer-Encoding`.
    LengthAndChunked,
    /// More than one `Content-Length` (even equal ones), or a list.
    DuplicateLength,
    /// `Transfer-Encoding` other than exactly one `chunked`.
    TransferCoding,
    /// A header section over `max_header_bytes`.
    HeadersTooLarge,
    /// More than `max_headers` header fields.
    TooManyHeaders,
    /// A name with `_` that reads as a protected header once `_` becomes `-`.
    AliasedHeader,
    /// An `Upgrade` to anything but a well-formed WebSocket handshake.
    Upgrade,
    /// A method outside the standard set, or a standard one not in upper case (`get`).
    Method,
    /// `CONNECT`: fluxgate opens no tunnels (405).
    Connect,
}

impl HygieneError {
    pub fn reason(&self) -> &'static str {
        match self {
            HygieneError::LengthAndChunked => "length_and_chunked",
            HygieneError::DuplicateLength => "duplicate_content_length",
            HygieneError::TransferCoding => "bad_transfer_encoding",
            HygieneError::HeadersTooLarge => "headers_too_large",
            HygieneError::TooManyHeaders => "too_many_headers",
            HygieneError::AliasedHeader => "aliased_header",
            HygieneError::Upgrade => "unsupported_upgrade",
            HygieneError::Method => "unsupported_method",
            HygieneError::Connect => "method_not_allowed",
        }
    }

    pub fn message(&self) -> &'static str {
        match self {
            HygieneError::LengthAndChunked => {
                "Content-Length and Transfer-Encoding cannot both be sent."
            }
            HygieneError::DuplicateLength => "Content-Length must be sent once.",
            HygieneError::TransferCoding => "Only Transfer-Encoding: chunked is accepted.",
            HygieneError::HeadersTooLarge => "The request headers are too large.",
            HygieneError::TooManyHeaders => "The request has too many headers.",
            HygieneError::AliasedHeader => {
                "Header names with '_' that spell a protected header are not accepted."
            }
            HygieneError::Upgrade => "Only WebSocket upgrades are accepted.",
            HygieneError::Method => "Only standard methods, in upper case, are accepted.",
            HygieneError::Connect => "This method is not accepted.",
        }
    }
}

/// What a request may look like.
#[derive(Debug, Clone)]
pub struct HygieneRules {
    pub max_header_bytes: usize,
    pub max_headers: usize,
    /// Names (lower case, `-` spelling) that must not be aliased with `_`.
    pub protected: Vec<HeaderName>,
}

/// Headers whose `_` spelling is refused whatever the configuration: framing and forwarding
/// headers (which CGI-style servers read with `_`), plus every `x-fluxgate-` name.
const ALWAYS_PROTECTED: &[&str] = &[
    "content-length",
    "transfer-encoding",
    "x-forwarded-for",
    "x-forwarded-host",
    "x-forwarded-port",
    "x-forwarded-proto",
    "x-real-ip",
    "x-request-id",
    "x-user-assertion",
];

/// The methods a request may use (RFC 9110 §9 and PATCH), exactly as spelled there.
const STANDARD_METHODS: [Method; 9] = [
    Method::GET,
    Method::HEAD,
    Method::POST,
    Method::PUT,
    Method::DELETE,
    Method::CONNECT,
    Method::OPTIONS,
    Method::TRACE,
    Method::PATCH,
];

/// The request's head, as the checks need it.
pub struct Head<'a> {
    pub method: &'a Method,
    pub version: Version,
    pub headers: &'a HeaderMap,
    /// The raw head carried a `Content-Length` next to `Transfer-Encoding` (Pingora drops the
    /// length before we see the map, so the proxy reports it).
    pub length_with_chunked: bool,
}

/// Whether the request asks for a WebSocket (a valid HTTP/1.1 GET upgrade).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Upgrade {
    None,
    WebSocket,
}

impl HygieneRules {
    /// Checks a request's head; on success, says whether it is a WebSocket upgrade.
    pub fn check(&self, head: &Head<'_>) -> Result<Upgrade, HygieneError> {
        // SECURITY: routes match methods exactly, so `get` or `Delete` would miss a route's
        // policy at an upstream that upper-cases methods, and a method no route names falls to
        // the default policy at one that maps it to a handler anyway.
        if !STANDARD_METHODS.contains(head.method) {
            return Err(HygieneError::Method);
        }
        // SECURITY: a CONNECT would turn the connection (or an HTTP/2 stream) into a tunnel to
        // wherever it names; fluxgate proxies requests, so every one is refused, whatever its
        // target or route.
        if *head.method == Method::CONNECT {
            return Err(HygieneError::Connect);
        }
        let h = head.headers;
        // SECURITY: a length next to chunked framing is how request smuggling starts: one hop
        // reads the length, the next the chunks.
        if head.length_with_chunked
            || (h.contains_key(TRANSFER_ENCODING) && h.contains_key(CONTENT_LENGTH))
        {
            return Err(HygieneError::LengthAndChunked);
        }
        // SECURITY: two lengths (or `5, 5`) are resolved differently by different servers.
        let mut lengths = h.get_all(CONTENT_LENGTH).iter();
        if let Some(first) = lengths.next()
            && (lengths.next().is_some()
                || first.is_empty()
                || !first.as_bytes().iter().all(u8::is_ascii_digit))
        {
            return Err(HygieneError::DuplicateLength);
        }
        // SECURITY: codings other than one `chunked` (`gzip, chunked`, `chunked, chunked`,
        // `identity`) are parsed inconsistently across servers.
        let mut codings = 0;
        for v in h.get_all(TRANSFER_ENCODING) {
            for t in v.as_bytes().split(|&b| b == b',') {
                let t = t.trim_ascii();
                if t.is_empty() {
                    continue;
                }
                codings += 1;
                if !t.eq_ignore_ascii_case(b"chunked") || codings > 1 {
                    return Err(HygieneError::TransferCoding);
                }
            }
        }
        if h.contains_key(TRANSFER_ENCODING) && codings != 1 {
            return Err(HygieneError::TransferCoding);
        }
        // SECURITY: bounded header sections: memory and parsing per request stay small.
        if h.len() > self.max_headers {
            return Err(HygieneError::TooManyHeaders);
        }
        let bytes: usize = h.iter().map(|(k, v)| k.as_str().len() + v.len() + 4).sum();
        if bytes > self.max_header_bytes {
            return Err(HygieneError::HeadersTooLarge);
        }
        // SECURITY: `X_Fluxgate_User_Id` or `Content_Length` mean the protected header to a
        // CGI-style upstream; such a request is refused rather than guessed at.
        for name in h.keys() {
            let n = name.as_str().as_bytes();
            if n.contains(&b'_') && self.aliases_protected(n) {
                return Err(HygieneError::AliasedHeader);
            }
        }
        upgrade(head)
    }

    fn aliases_protected(&self, name: &[u8]) -> bool {
        let folded: Vec<u8> = name
            .iter()
            .map(|&b| if b == b'_' { b'-' } else { b })
            .collect();
        folded.starts_with(b"x-fluxgate-")
            || ALWAYS_PROTECTED.iter().any(|p| p.as_bytes() == folded)
            || self
                .protected
                .iter()
                .any(|p| p.as_str().as_bytes() == folded)
    }
}

/// SECURITY: only a WebSocket handshake may switch protocols; `h2c` and other upgrades would
/// hand the connection to a protocol fluxgate does not inspect.
fn upgrade(head: &Head<'_>) -> Result<Upgrade, HygieneError> {
    let h = head.headers;
    let mut values = h.get_all(UPGRADE).iter();
    let Some(first) = values.next() else {
        return Ok(Upgrade::None);
    };
    let websocket = values.next().is_none()
        && first
            .as_bytes()
            .trim_ascii()
            .eq_ignore_ascii_case(b"websocket")
        && head.method == Method::GET
        && head.version == Version::HTTP_11
        && h.get_all(CONNECTION).iter().any(|v| {
            v.as_bytes()
                .split(|&b| b == b',')
                .any(|t| t.trim_ascii().eq_ignore_ascii_case(b"upgrade"))
        });
    if websocket {
        Ok(Upgrade::WebSocket)
    } else {
        Err(HygieneError::Upgrade)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn rules() -> HygieneRules {
        HygieneRules {
            max_header_bytes: 1024,
            max_headers: 10,
            protected: vec![HeaderName::from_static("x-custom-user")],
        }
    }

    fn check(headers: &[(&str, &str)]) -> Result<Upgrade, HygieneError> {
        check_with(&Method::GET, Version::HTTP_11, headers, false)
    }

    fn check_with(
        method: &Method,
        version: Version,
        headers: &[(&str, &str)],
        length_with_chunked: bool,
    ) -> Result<Upgrade, HygieneError> {
        let mut m = HeaderMap::new();
        for (k, v) in headers {
            m.append(
                HeaderName::from_bytes(k.as_bytes()).unwrap(),
                HeaderValue::from_str(v).unwrap(),
            );
        }
        rules().check(&Head {
            method,
            version,
            headers: &m,
            length_with_chunked,
        })
    }

    #[test]
    fn lowercase_and_non_standard_methods_are_refused() {
        for m in ["get", "Delete", "post", "PROPFIND", "FOO", "GETS"] {
            let m: Method = m.parse().unwrap();
            assert_eq!(
                check_with(&m, Version::HTTP_11, &[], false),
                Err(HygieneError::Method),
                "{m}"
            );
        }
        for m in ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"] {
            let m: Method = m.parse().unwrap();
            assert!(check_with(&m, Version::HTTP_11, &[], false).is_ok(), "{m}");
        }
    }

    #[test]
    fn a_connect_tunnel_is_refused_whatever_it_names() {
        assert_eq!(
            check_with(&Method::CONNECT, Version::HTTP_11, &[], false),
            Err(HygieneError::Connect)
        );
        assert_eq!(
            check_with(&Method::CONNECT, Version::HTTP_2, &[], false),
            Err(HygieneError::Connect)
        );
    }

    #[test]
    fn ordinary_requests_pass() {
        assert_eq!(
            check(&[("host", "x"), ("content-length", "12")]),
            Ok(Upgrade::None)
        );
        assert_eq!(
            check(&[("transfer-encoding", "Chunked")]),
            Ok(Upgrade::None)
        );
        assert_eq!(
            check(&[("x_custom", "1"), ("my_header", "2")]),
            Ok(Upgrade::None)
        );
    }

    #[test]
    fn request_smuggling_by_length_and_chunked_is_refused() {
        assert_eq!(
            check(&[("content-length", "5"), ("transfer-encoding", "chunked")]),
            Err(HygieneError::LengthAndChunked)
        );
        // Pingora removed the length; the proxy reports that it was there.
        assert_eq!(
            check_with(
                &Method::POST,
                Version::HTTP_11,
                &[("transfer-encoding", "chunked")],
                true
            ),
            Err(HygieneError::LengthAndChunked)
        );
    }

    #[test]
    fn request_smuggling_by_duplicate_lengths_is_refused() {
        for h in [
            &[("content-length", "5"), ("content-length", "5")][..],
            &[("content-length", "5, 5")][..],
            &[("content-length", "+5")][..],
        ] {
            assert_eq!(check(h), Err(HygieneError::DuplicateLength), "{h:?}");
        }
    }

    #[test]
    fn request_smuggling_by_transfer_codings_is_refused() {
        for v in [
            "gzip, chunked",
            "chunked, chunked",
            "identity",
            "chunked, gzip",
            " , ",
        ] {
            assert_eq!(
                check(&[("transfer-encoding", v)]),
                Err(HygieneError::TransferCoding),
                "{v}"
            );
        }
        assert_eq!(
            check(&[
                ("transfer-encoding", "chunked"),
                ("transfer-encoding", "chunked")
            ]),
            Err(HygieneError::TransferCoding)
        );
    }

    #[test]
    fn header_floods_are_refused() {
        let many: Vec<(String, String)> =
            (0..11).map(|i| (format!("x-h{i}"), "v".into())).collect();
        let many: Vec<(&str, &str)> = many.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        assert_eq!(check(&many), Err(HygieneError::TooManyHeaders));
        let big = "v".repeat(1100);
        assert_eq!(
            check(&[("x-big", &big)]),
            Err(HygieneError::HeadersTooLarge)
        );
    }

    #[test]
    fn underscore_aliasing_of_protected_headers_is_refused() {
        for name in [
            "x_fluxgate_user_id",
            "x-fluxgate_session-id",
            "content_length",
            "transfer_encoding",
            "x_forwarded_for",
            "x_custom_user",
        ] {
            assert_eq!(
                check(&[(name, "1")]),
                Err(HygieneError::AliasedHeader),
                "{name}"
            );
        }
    }

    #[test]
    fn only_websocket_upgrades_pass() {
        let ws = [
            ("connection", "keep-alive, Upgrade"),
            ("upgrade", "websocket"),
        ];
        assert_eq!(check(&ws), Ok(Upgrade::WebSocket));
        assert_eq!(
            check(&[
                ("connection", "Upgrade, HTTP2-Settings"),
                ("upgrade", "h2c")
            ]),
            Err(HygieneError::Upgrade)
        );
        assert_eq!(
            check(&[("upgrade", "websocket")]),
            Err(HygieneError::Upgrade)
        );
        assert_eq!(
            check_with(&Method::POST, Version::HTTP_11, &ws, false),
            Err(HygieneError::Upgrade)
        );
        assert_eq!(
            check_with(&Method::GET, Version::HTTP_10, &ws, false),
            Err(HygieneError::Upgrade)
        );
        assert_eq!(
            check(&[("connection", "upgrade"), ("upgrade", "websocket, h2c")]),
            Err(HygieneError::Upgrade)
        );
    }
}
