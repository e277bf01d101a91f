//! Property tests (issue 18): `Cookie` header selection against an exact reference. Cookies are
//! drawn from the session cookie's name and look-alikes, with well-formed tokens and garbage,
//! spread over several `Cookie` headers; the candidates are exactly the well-formed values of
//! the session cookie in header order, or the request is refused (more than three, or none
//! well-formed), or absent; never a value from another cookie.

use super::{Extracted, extract, session_cookie_candidates};
use crate::credential::{MAX_COOKIE_CANDIDATES, is_session_token};
use http::{HeaderMap, HeaderValue, header::COOKIE};
use proptest::prelude::*;

const NAME: &str = "fluxer_session";

fn cookie() -> impl Strategy<Value = (String, String)> {
    let name = prop_oneof![
        4 => Just(NAME.to_string()),
        1 => Just("Fluxer_session".to_string()),
        1 => Just("fluxer_session_x".to_string()),
        1 => Just("x_fluxer_session".to_string()),
        1 => Just("other".to_string()),
    ];
    let value = prop_oneof![
        3 => "flx_[a-zA-Z0-9]{36}",
        1 => "flx_[a-zA-Z0-9]{35}",
        1 => "flx_[a-zA-Z0-9]{36}[a-z!]",
        1 => "[a-zA-Z0-9_]{0,12}",
        1 => "\"flx_[a-zA-Z0-9]{36}\"",
    ];
    (name, value)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(4096))]

    #[test]
    fn cookie_selection_is_exactly_the_well_formed_session_cookies(
        headers in prop::collection::vec(prop::collection::vec(cookie(), 0..4), 0..3),
    ) {
        let mut map = HeaderMap::new();
        for h in &headers {
            let text = h.iter().map(|(n, v)| format!("{n}={v}")).collect::<Vec<_>>().join("; ");
            map.append(COOKIE, HeaderValue::from_str(&text).unwrap());
        }
        let ours: Vec<&str> = headers
            .iter()
            .flatten()
            .filter(|(n, _)| n == NAME)
            .map(|(_, v)| v.as_str())
            .collect();
        let valid: Vec<&str> = ours.iter().copied().filter(|v| is_session_token(v)).collect();
        let got = session_cookie_candidates(&map, NAME);
        if ours.len() > MAX_COOKIE_CANDIDATES || (!ours.is_empty() && valid.is_empty()) {
            prop_assert!(got.is_err(), "{headers:?}");
            prop_assert!(matches!(extract(&map, NAME), Extracted::Malformed(_)));
        } else {
            let got = got.unwrap();
            prop_assert_eq!(got.as_slice(), &valid[..]);
            match extract(&map, NAME) {
                Extracted::Absent => prop_assert!(valid.is_empty()),
                Extracted::Cookies(c) => prop_assert_eq!(c.as_slice(), &valid[..]),
                other => prop_assert!(false, "{:?}", other),
            }
        }
    }
}
