//! fluxgate's own cookies (session, sudo): removing them from the `Cookie` header forwarded
//! upstream, so the upstream sees identity headers instead of bearer material it does not need,
//! and writing `Set-Cookie` for them with the configured attributes (contract §10).

use super::headers::HeaderEdit;
use cookie::Cookie;
use http::{HeaderValue, header::COOKIE};

/// `SameSite` attribute values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SameSite {
    Strict,
    Lax,
    None,
}

/// The attributes every session or sudo `Set-Cookie` leaving fluxgate carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CookiePolicy {
    /// `Secure` (only ever off for local development over plain HTTP).
    pub secure: bool,
    /// `Domain`; `None` keeps cookies host-only.
    pub domain: Option<String>,
    pub session_name: String,
    pub session_same_site: SameSite,
    pub sudo_name: String,
    pub sudo_same_site: SameSite,
}

impl CookiePolicy {
    /// A `Set-Cookie` value for `name` (`value`, lifetime `max_age` seconds; 0 clears it).
    pub fn set_cookie(&self, name: &str, value: &str, max_age: i64) -> HeaderValue {
        self.build(name, value, Some(max_age), None)
    }

    fn build(
        &self,
        name: &str,
        value: &str,
        max_age: Option<i64>,
        expires: Option<cookie::time::OffsetDateTime>,
    ) -> HeaderValue {
        let same_site = if name == self.sudo_name {
            self.sudo_same_site
        } else {
            self.session_same_site
        };
        let mut c = Cookie::build((name.to_string(), value.to_string()))
            .path("/")
            .http_only(true)
            .secure(self.secure)
            .same_site(match same_site {
                SameSite::Strict => cookie::SameSite::Strict,
                SameSite::Lax => cookie::SameSite::Lax,
                SameSite::None => cookie::SameSite::None,
            });
        if let Some(m) = max_age {
            c = c.max_age(cookie::time::Duration::seconds(m));
        }
        if let Some(e) = expires {
            c = c.expires(e);
        }
        if let Some(d) = &self.domain {
            c = c.domain(d.clone());
        }
        HeaderValue::from_str(&c.build().to_string())
            .expect("cookie names, values and attributes are header-safe")
    }

    /// Whether a `Set-Cookie` value sets the session or sudo cookie.
    pub fn owns(&self, set_cookie: &str) -> bool {
        let name = set_cookie.split(['=', ';']).next().unwrap_or("").trim();
        name == self.session_name || name == self.sudo_name
    }

    /// Rewrites a `Set-Cookie` value for the session or sudo cookie, whoever wrote it, with the
    /// configured attributes (keeping its value and lifetime). `None` when it is another cookie.
    // SECURITY: an upstream that forgets HttpOnly or Secure on a session cookie would expose it
    // to scripts or plain-text networks; fluxgate enforces the attributes at the edge.
    pub fn harden(&self, set_cookie: &str) -> Option<HeaderValue> {
        let parsed = Cookie::parse(set_cookie).ok()?;
        let name = parsed.name();
        if name != self.session_name && name != self.sudo_name {
            return None;
        }
        let max_age = parsed.max_age().map(|d| d.whole_seconds());
        let value = parsed.value();
        if value
            .bytes()
            .any(|b| !(0x21..=0x7e).contains(&b) || b == b';')
        {
            return None;
        }
        Some(self.build(name, value, max_age, parsed.expires_datetime()))
    }

    /// `Set-Cookie` values that clear both the session and sudo cookies.
    pub fn clear_both(&self) -> [HeaderValue; 2] {
        [
            self.set_cookie(&self.session_name, "", 0),
            self.set_cookie(&self.sudo_name, "", 0),
        ]
    }
}

/// Whether a `Cookie` header's text can hold a cookie called `name`: an exact pre-filter for
/// `Cookie::split_parse`, whose names are always substrings of the text (it decodes nothing),
/// so a header without `name` in it is not parsed at all. One SIMD search instead of parsing
/// every cookie of every request (the parser is about 1k instructions a cookie). std's
/// substring search (SIMD for short needles) rather than `memchr::memmem::find`, whose
/// per-call searcher set-up cost more than it saved on a one-cookie header (callgrind).
pub fn may_name(text: &str, name: &str) -> bool {
    text.contains(name)
}

/// Rewrites the `Cookie` header(s) without the named cookies. Other cookies are kept in order.
/// Uses the same parser as credential extraction, so what counts as "our cookie" is identical.
/// Headers that cannot hold one of the names (`may_name`) are left untouched without parsing;
/// otherwise one pass both finds the named cookies and collects the others.
pub fn strip_cookies(h: &mut impl HeaderEdit, names: &[&str]) {
    let map = h.headers();
    let cookies = map.get_all(COOKIE);
    let candidate = cookies.iter().any(|v| match v.to_str() {
        Ok(text) => names.iter().any(|n| may_name(text, n)),
        Err(_) => true,
    });
    if !candidate {
        return;
    }
    let mut removed = false;
    let mut kept = String::new();
    for v in cookies {
        // A Cookie header that is not text cannot be checked, so it is not forwarded.
        let Ok(text) = v.to_str() else {
            removed = true;
            continue;
        };
        for c in Cookie::split_parse(text).flatten() {
            if names.contains(&c.name()) {
                removed = true;
                continue;
            }
            if !kept.is_empty() {
                kept.push_str("; ");
            }
            // `stripped` prints `name=value` only, as before.
            let _ = std::fmt::Write::write_fmt(&mut kept, format_args!("{}", c.stripped()));
        }
    }
    if !removed {
        return;
    }
    h.remove(&COOKIE);
    if !kept.is_empty()
        && let Ok(v) = HeaderValue::from_str(&kept)
    {
        h.insert(COOKIE, v);
    }
}

/// The default cookie names and attributes, for tests in any room.
#[cfg(test)]
impl CookiePolicy {
    pub(crate) fn for_tests() -> CookiePolicy {
        CookiePolicy {
            secure: true,
            domain: None,
            session_name: "fluxer_session".into(),
            session_same_site: SameSite::Lax,
            sudo_name: "fluxer_sudo_mode".into(),
            sudo_same_site: SameSite::Strict,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderMap;
    use proptest::prelude::*;

    fn strip(values: &[&str]) -> Vec<String> {
        let mut m = HeaderMap::new();
        for v in values {
            m.append(COOKIE, HeaderValue::from_str(v).unwrap());
        }
        strip_cookies(&mut m, &["fluxer_session", "fluxer_sudo_mode"]);
        m.get_all(COOKIE)
            .iter()
            .map(|v| v.to_str().unwrap().to_string())
            .collect()
    }

    fn policy(secure: bool, domain: Option<&str>) -> CookiePolicy {
        CookiePolicy {
            secure,
            domain: domain.map(str::to_string),
            session_name: "fluxer_session".into(),
            session_same_site: SameSite::Lax,
            sudo_name: "fluxer_sudo_mode".into(),
            sudo_same_site: SameSite::Strict,
        }
    }

    #[test]
    fn clearing_cookies_carries_every_configured_attribute() {
        let [s, u] = policy(true, None).clear_both();
        let s = s.to_str().unwrap();
        let u = u.to_str().unwrap();
        for (v, name, ss) in [
            (s, "fluxer_session", "Lax"),
            (u, "fluxer_sudo_mode", "Strict"),
        ] {
            assert!(v.starts_with(&format!("{name}=;")), "{v}");
            for attr in [
                "HttpOnly",
                "Secure",
                "Path=/",
                "Max-Age=0",
                &format!("SameSite={ss}"),
            ] {
                assert!(v.contains(attr), "{v} lacks {attr}");
            }
            assert!(!v.contains("Domain"), "{v}");
        }
        let [s, _] = policy(false, Some("example.com")).clear_both();
        let s = s.to_str().unwrap();
        assert!(
            !s.contains("Secure") && s.contains("Domain=example.com"),
            "{s}"
        );
    }

    #[test]
    fn upstream_set_cookies_for_our_cookies_get_every_attribute() {
        let p = policy(true, None);
        let out = p
            .harden("fluxer_session=flx_abc; Path=/api; Domain=evil.example; SameSite=None; Max-Age=3600")
            .unwrap();
        let out = out.to_str().unwrap();
        assert!(out.starts_with("fluxer_session=flx_abc;"), "{out}");
        for attr in [
            "HttpOnly",
            "Secure",
            "Path=/",
            "SameSite=Lax",
            "Max-Age=3600",
        ] {
            assert!(out.contains(attr), "{out} lacks {attr}");
        }
        assert!(!out.contains("Domain") && !out.contains("/api"), "{out}");
        let sudo = p.harden("fluxer_sudo_mode=x").unwrap();
        let sudo = sudo.to_str().unwrap();
        assert!(
            sudo.contains("SameSite=Strict")
                && sudo.contains("HttpOnly")
                && !sudo.contains("Max-Age"),
            "{sudo}"
        );
        assert!(p.harden("theme=dark; Path=/").is_none());
    }

    #[test]
    fn session_and_sudo_cookies_are_removed_others_kept() {
        assert_eq!(
            strip(&["a=1; fluxer_session=x; b=2", "fluxer_sudo_mode=y; c=3"]),
            vec!["a=1; b=2; c=3"]
        );
    }

    #[test]
    fn header_disappears_when_only_our_cookies_were_in_it() {
        assert!(strip(&["fluxer_session=x"]).is_empty());
        assert!(strip(&[" fluxer_session = x ;"]).is_empty());
    }

    #[test]
    fn untouched_when_our_cookies_are_absent() {
        assert_eq!(strip(&["a=1;  b=2"]), vec!["a=1;  b=2"]);
    }

    /// The two-pass strip this module had before `may_name`: the property test's reference.
    fn strip_cookies_reference(h: &mut impl HeaderEdit, names: &[&str]) {
        let map = h.headers();
        let mut any = false;
        for v in map.get_all(COOKIE) {
            let Ok(text) = v.to_str() else {
                any = true;
                break;
            };
            if Cookie::split_parse(text).any(|c| c.is_ok_and(|c| names.contains(&c.name()))) {
                any = true;
                break;
            }
        }
        if !any {
            return;
        }
        let mut kept: Vec<String> = Vec::new();
        for v in map.get_all(COOKIE) {
            // A Cookie header that is not text cannot be checked, so it is not forwarded.
            let Ok(text) = v.to_str() else { continue };
            for c in Cookie::split_parse(text).flatten() {
                if !names.contains(&c.name()) {
                    kept.push(c.stripped().to_string());
                }
            }
        }
        h.remove(&COOKIE);
        if !kept.is_empty()
            && let Ok(v) = HeaderValue::from_str(&kept.join("; "))
        {
            h.insert(COOKIE, v);
        }
    }

    fn cookie_text() -> impl Strategy<Value = String> {
        let piece = prop_oneof![
            Just("fluxer_session=abc".to_string()),
            Just("fluxer_sudo_mode=x".to_string()),
            Just("xfluxer_session=1".to_string()),
            Just("fluxer_session".to_string()),
            Just("\"fluxer_session\"=2".to_string()),
            "[a-z_]{0,6}=[a-z0-9\"]{0,6}",
            "[ =;a-z]{0,8}",
        ];
        (
            prop::collection::vec(piece, 0..5),
            prop::collection::vec(" {0,2}", 5),
        )
            .prop_map(|(p, sp)| {
                p.iter()
                    .zip(sp)
                    .map(|(p, s)| format!("{s}{p}"))
                    .collect::<Vec<_>>()
                    .join(";")
            })
    }

    proptest::proptest! {
        #[test]
        fn the_one_pass_strip_matches_the_two_pass_strip(
            headers in prop::collection::vec(cookie_text(), 0..3),
        ) {
            let names = ["fluxer_session", "fluxer_sudo_mode"];
            let mut m = HeaderMap::new();
            for v in &headers {
                if let Ok(v) = HeaderValue::from_str(v) {
                    m.append(COOKIE, v);
                }
            }
            let mut fast = m.clone();
            strip_cookies(&mut fast, &names);
            strip_cookies_reference(&mut m, &names);
            prop_assert_eq!(fast, m);
        }
    }
}
