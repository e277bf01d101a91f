//! Reading credentials from request headers, in the contract's order (§1).
//!
//! The first credential present decides. A malformed one is reported as such and never makes us
//! fall back to the next source: an attacker must not be able to choose which credential counts
//! by breaking another one.

use super::token::{is_bot_token, is_oauth2_token, is_session_token};
use super::{Kind, MAX_COOKIE_CANDIDATES, MAX_CREDENTIAL_LEN};
use cookie::Cookie;
use http::HeaderMap;
use http::header::{AUTHORIZATION, COOKIE};

/// Why a credential was refused before any lookup.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Malformed {
    /// More than one `Authorization` header (or more than one internal-secret header).
    Duplicated,
    /// Empty value, or a scheme with nothing after it.
    Empty,
    /// Leading or trailing whitespace, or more than one space after the scheme.
    Whitespace,
    /// Longer than 512 bytes.
    TooLong,
    /// Characters outside the token's alphabet, or not the token's shape.
    Charset,
    /// An `Authorization` scheme other than `Bearer`, `Bot` or a bare `flx_` token.
    Scheme,
    /// More than three `fluxer_session` cookies, or none of them shaped like a token.
    Cookies,
}

impl Malformed {
    /// Stable snake_case name, used in logs and metric labels.
    pub fn reason(self) -> &'static str {
        match self {
            Malformed::Duplicated => "credential_duplicated",
            Malformed::Empty => "credential_empty",
            Malformed::Whitespace => "credential_whitespace",
            Malformed::TooLong => "credential_too_long",
            Malformed::Charset => "credential_charset",
            Malformed::Scheme => "credential_scheme",
            Malformed::Cookies => "credential_cookies",
        }
    }
}

/// The credential a request presents.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Extracted<'a> {
    /// Nothing presented.
    Absent,
    /// Something presented, but not a well-formed credential.
    Malformed(Malformed),
    /// A token from the `Authorization` header, already shape-checked for its kind.
    Header { kind: Kind, token: &'a str },
    /// Session cookie values (1 to 3) that are shaped like session tokens.
    Cookies(CookieCandidates<'a>),
}

/// Up to [`MAX_COOKIE_CANDIDATES`] well-formed session cookie values, without allocating.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct CookieCandidates<'a> {
    items: [&'a str; MAX_COOKIE_CANDIDATES],
    len: usize,
}

impl<'a> CookieCandidates<'a> {
    pub fn as_slice(&self) -> &[&'a str] {
        &self.items[..self.len]
    }
}

/// Reads the user credential (contract §1 rows 1–5).
pub fn extract<'a>(headers: &'a HeaderMap, cookie_name: &str) -> Extracted<'a> {
    let mut auth = headers.get_all(AUTHORIZATION).iter();
    if let Some(value) = auth.next() {
        // SECURITY: two Authorization headers are ambiguous (which one does the upstream
        // read?), so the request is refused rather than one of them picked.
        if auth.next().is_some() {
            return Extracted::Malformed(Malformed::Duplicated);
        }
        return match parse_authorization(value.as_bytes()) {
            Ok((kind, token)) => Extracted::Header { kind, token },
            Err(m) => Extracted::Malformed(m),
        };
    }
    match session_cookie_candidates(headers, cookie_name) {
        Ok(c) if c.len == 0 => Extracted::Absent,
        Ok(c) => Extracted::Cookies(c),
        Err(m) => Extracted::Malformed(m),
    }
}

fn parse_authorization(raw: &[u8]) -> Result<(Kind, &str), Malformed> {
    let value = checked_value(raw, MAX_CREDENTIAL_LEN + "Bearer ".len())?;
    if value.starts_with("flx_") {
        return session(value);
    }
    let Some((scheme, rest)) = value.split_once(' ') else {
        return Err(Malformed::Scheme);
    };
    if rest.is_empty() {
        return Err(Malformed::Empty);
    }
    if rest.starts_with(' ') {
        return Err(Malformed::Whitespace);
    }
    if rest.len() > MAX_CREDENTIAL_LEN {
        return Err(Malformed::TooLong);
    }
    if scheme.eq_ignore_ascii_case("bearer") {
        if rest.starts_with("flx_") {
            return session(rest);
        }
        return if is_oauth2_token(rest) {
            Ok((Kind::Oauth2, rest))
        } else {
            Err(Malformed::Charset)
        };
    }
    if scheme.eq_ignore_ascii_case("bot") {
        return if is_bot_token(rest) {
            Ok((Kind::Bot, rest))
        } else {
            Err(Malformed::Charset)
        };
    }
    Err(Malformed::Scheme)
}

fn session(t: &str) -> Result<(Kind, &str), Malformed> {
    if is_session_token(t) {
        Ok((Kind::Session, t))
    } else {
        Err(Malformed::Charset)
    }
}

/// Common checks for a header carrying a credential: visible ASCII, no surrounding
/// whitespace, not empty, not over `max` bytes.
fn checked_value(raw: &[u8], max: usize) -> Result<&str, Malformed> {
    if raw.is_empty() {
        return Err(Malformed::Empty);
    }
    if raw.len() > max {
        return Err(Malformed::TooLong);
    }
    if raw[0].is_ascii_whitespace() || raw[raw.len() - 1].is_ascii_whitespace() {
        return Err(Malformed::Whitespace);
    }
    if raw.iter().any(|&b| !(0x20..0x7f).contains(&b)) {
        return Err(Malformed::Charset);
    }
    std::str::from_utf8(raw).map_err(|_| Malformed::Charset)
}

/// The values of every `cookie_name` cookie across all `Cookie` headers.
///
/// More than [`MAX_COOKIE_CANDIDATES`] is refused outright (cookie tossing from a sibling
/// domain could otherwise make us do unbounded lookups). Values not shaped like a session token
/// are dropped here; if that leaves none, the cookies were malformed.
pub fn session_cookie_candidates<'a>(
    headers: &'a HeaderMap,
    cookie_name: &str,
) -> Result<CookieCandidates<'a>, Malformed> {
    let mut out = CookieCandidates::default();
    let mut seen = 0usize;
    for header in headers.get_all(COOKIE) {
        let Ok(text) = header.to_str() else {
            // A Cookie header with non-ASCII bytes: only a problem if it names our cookie.
            if contains(header.as_bytes(), cookie_name.as_bytes()) {
                return Err(Malformed::Cookies);
            }
            continue;
        };
        if !crate::identity::may_name(text, cookie_name) {
            continue;
        }
        for c in Cookie::split_parse(text).flatten() {
            if c.name() != cookie_name {
                continue;
            }
            seen += 1;
            if seen > MAX_COOKIE_CANDIDATES {
                return Err(Malformed::Cookies);
            }
            if let Some(v) = c.value_raw().filter(|v| is_session_token(v)) {
                out.items[out.len] = v;
                out.len += 1;
            }
        }
    }
    if seen > 0 && out.len == 0 {
        return Err(Malformed::Cookies);
    }
    Ok(out)
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len().max(1)).any(|w| w == needle)
}

/// The internal shared secret presented on an `internal` route (contract §1, last row):
/// `X-Fluxer-Rpc-Auth: <secret>` if present, else `Authorization: Bearer <secret>`.
pub fn extract_internal(headers: &HeaderMap) -> Result<Option<&[u8]>, Malformed> {
    let mut rpc = headers.get_all("x-fluxer-rpc-auth").iter();
    if let Some(v) = rpc.next() {
        if rpc.next().is_some() {
            return Err(Malformed::Duplicated);
        }
        return checked_value(v.as_bytes(), MAX_CREDENTIAL_LEN).map(|s| Some(s.as_bytes()));
    }
    let mut auth = headers.get_all(AUTHORIZATION).iter();
    let Some(v) = auth.next() else {
        return Ok(None);
    };
    if auth.next().is_some() {
        return Err(Malformed::Duplicated);
    }
    let value = checked_value(v.as_bytes(), MAX_CREDENTIAL_LEN + "Bearer ".len())?;
    match value.split_once(' ') {
        Some((scheme, secret)) if scheme.eq_ignore_ascii_case("bearer") => {
            if secret.is_empty() {
                Err(Malformed::Empty)
            } else if secret.starts_with(' ') {
                Err(Malformed::Whitespace)
            } else {
                Ok(Some(secret.as_bytes()))
            }
        }
        _ => Err(Malformed::Scheme),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    const TOK: &str = "flx_abcdefghijklmnopqrstuvwxyz0123456789";
    const TOK2: &str = "flx_ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";

    fn h(pairs: &[(&'static str, &[u8])]) -> HeaderMap {
        let mut m = HeaderMap::new();
        for (k, v) in pairs {
            m.append(*k, HeaderValue::from_bytes(v).unwrap());
        }
        m
    }

    fn ext(pairs: &[(&'static str, &[u8])]) -> Extracted<'static> {
        let m = Box::leak(Box::new(h(pairs)));
        extract(m, "fluxer_session")
    }

    #[test]
    fn bearer_session_token_is_a_session() {
        let v = format!("Bearer {TOK}");
        assert_eq!(
            ext(&[("authorization", v.as_bytes())]),
            Extracted::Header {
                kind: Kind::Session,
                token: TOK
            }
        );
    }

    #[test]
    fn bare_session_token_without_scheme_is_a_session() {
        assert_eq!(
            ext(&[("authorization", TOK.as_bytes())]),
            Extracted::Header {
                kind: Kind::Session,
                token: TOK
            }
        );
    }

    #[test]
    fn bearer_scheme_is_case_insensitive() {
        let v = format!("bEaReR {TOK}");
        assert!(matches!(
            ext(&[("authorization", v.as_bytes())]),
            Extracted::Header {
                kind: Kind::Session,
                ..
            }
        ));
    }

    #[test]
    fn other_bearer_is_oauth2_and_bot_is_bot() {
        assert!(matches!(
            ext(&[("authorization", b"Bearer abcDEF123-_")]),
            Extracted::Header {
                kind: Kind::Oauth2,
                token: "abcDEF123-_"
            }
        ));
        assert!(matches!(
            ext(&[("authorization", b"Bot 1234.secretPart")]),
            Extracted::Header {
                kind: Kind::Bot,
                token: "1234.secretPart"
            }
        ));
    }

    #[test]
    fn malformed_authorization_never_falls_back_to_the_cookie() {
        let cookie = format!("fluxer_session={TOK}");
        for bad in [
            &b"Basic dXNlcjpwYXNz"[..],
            b"Bearer",
            b"Bearer ",
            b"Bearer  abc",
            b" Bearer abc",
            b"Bearer abc ",
            b"Bearer a b",
            b"flx_short",
            b"Bearer flx_short",
            b"Bot nope",
            b"Bearer \xff\xfe",
        ] {
            let got = ext(&[("authorization", bad), ("cookie", cookie.as_bytes())]);
            assert!(
                matches!(got, Extracted::Malformed(_)),
                "{:?} gave {got:?}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    #[test]
    fn overlong_credential_is_malformed() {
        let v = format!("Bearer {}", "a".repeat(513));
        assert_eq!(
            ext(&[("authorization", v.as_bytes())]),
            Extracted::Malformed(Malformed::TooLong)
        );
        let ok = format!("Bearer {}", "a".repeat(512));
        assert!(matches!(
            ext(&[("authorization", ok.as_bytes())]),
            Extracted::Header { .. }
        ));
    }

    #[test]
    fn two_authorization_headers_are_refused() {
        let v = format!("Bearer {TOK}");
        assert_eq!(
            ext(&[
                ("authorization", v.as_bytes()),
                ("authorization", v.as_bytes())
            ]),
            Extracted::Malformed(Malformed::Duplicated)
        );
    }

    #[test]
    fn session_cookie_is_found_among_others() {
        let c = format!("a=1; fluxer_session={TOK}; b=2");
        match ext(&[("cookie", c.as_bytes())]) {
            Extracted::Cookies(cs) => assert_eq!(cs.as_slice(), &[TOK]),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn cookies_across_several_headers_are_all_candidates() {
        let a = format!("fluxer_session={TOK}");
        let b = format!("x=1; fluxer_session={TOK2}");
        match ext(&[("cookie", a.as_bytes()), ("cookie", b.as_bytes())]) {
            Extracted::Cookies(cs) => assert_eq!(cs.as_slice(), &[TOK, TOK2]),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn more_than_three_session_cookies_are_refused() {
        let c = format!(
            "fluxer_session={TOK}; fluxer_session={TOK}; fluxer_session={TOK}; fluxer_session={TOK}"
        );
        assert_eq!(
            ext(&[("cookie", c.as_bytes())]),
            Extracted::Malformed(Malformed::Cookies)
        );
    }

    #[test]
    fn malformed_session_cookie_is_malformed_not_absent() {
        assert_eq!(
            ext(&[("cookie", b"fluxer_session=garbage")]),
            Extracted::Malformed(Malformed::Cookies)
        );
        assert_eq!(ext(&[("cookie", b"other=1")]), Extracted::Absent);
        assert_eq!(ext(&[]), Extracted::Absent);
    }

    #[test]
    fn cookie_name_is_case_sensitive() {
        let c = format!("FLUXER_SESSION={TOK}");
        assert_eq!(ext(&[("cookie", c.as_bytes())]), Extracted::Absent);
    }

    #[test]
    fn internal_secret_from_rpc_header_or_bearer() {
        let m = h(&[("x-fluxer-rpc-auth", b"0123456789abcdef")]);
        assert_eq!(extract_internal(&m), Ok(Some(&b"0123456789abcdef"[..])));
        let m = h(&[("authorization", b"Bearer 0123456789abcdef")]);
        assert_eq!(extract_internal(&m), Ok(Some(&b"0123456789abcdef"[..])));
        let m = h(&[("authorization", b"Basic 0123456789abcdef")]);
        assert_eq!(extract_internal(&m), Err(Malformed::Scheme));
        let m = h(&[]);
        assert_eq!(extract_internal(&m), Ok(None));
        let m = h(&[("x-fluxer-rpc-auth", b"a"), ("x-fluxer-rpc-auth", b"b")]);
        assert_eq!(extract_internal(&m), Err(Malformed::Duplicated));
    }
}

#[cfg(test)]
mod robustness {
    use super::*;
    use http::HeaderValue;

    #[test]
    fn random_authorization_and_cookie_values_never_panic() {
        let mut rng = fastrand::Rng::with_seed(11);
        let alphabet = b" Bearer Bot flx_=;.,\"\t\x7f\x80azAZ09-_+/";
        for _ in 0..20_000 {
            let len = rng.usize(0..80);
            let v: Vec<u8> = (0..len)
                .map(|_| alphabet[rng.usize(..alphabet.len())])
                .collect();
            let Ok(v) = HeaderValue::from_bytes(&v) else {
                continue;
            };
            let mut m = HeaderMap::new();
            m.insert(if rng.bool() { AUTHORIZATION } else { COOKIE }, v.clone());
            match extract(&m, "fluxer_session") {
                Extracted::Header { token, .. } => assert!(token.len() <= MAX_CREDENTIAL_LEN),
                Extracted::Cookies(c) => assert!(c.as_slice().iter().all(|t| is_session_token(t))),
                _ => {}
            }
            let mut m = HeaderMap::new();
            m.insert("x-fluxer-rpc-auth", v);
            let _ = extract_internal(&m);
        }
    }
}

#[cfg(test)]
#[path = "parse_props.rs"]
mod props;
