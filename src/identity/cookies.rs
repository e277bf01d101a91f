//! Removing fluxgate's own cookies (session, sudo) from the `Cookie` header forwarded upstream,
//! so the upstream sees identity headers instead of bearer material it does not need.

use super::headers::HeaderEdit;
use cookie::Cookie;
use http::{HeaderValue, header::COOKIE};

/// Rewrites the `Cookie` header(s) without the named cookies. Other cookies are kept in order.
/// Uses the same parser as credential extraction, so what counts as "our cookie" is identical.
pub fn strip_cookies(h: &mut impl HeaderEdit, names: &[&str]) {
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

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderMap;

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
}
