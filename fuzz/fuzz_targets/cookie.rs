//! `Cookie` header selection (contract §1): every candidate returned is a well-formed session
//! token that really is the value of a `fluxer_session` cookie in the headers, at most
//! `MAX_COOKIE_CANDIDATES` of them, in header order; and `extract` agrees with it.
#![no_main]

use fluxgate::credential::{
    Extracted, MAX_COOKIE_CANDIDATES, extract, is_session_token, session_cookie_candidates,
};
use http::{HeaderMap, HeaderValue, header::COOKIE};
use libfuzzer_sys::fuzz_target;

const NAME: &str = "fluxer_session";

/// The `NAME` cookie values in one header, by a plain split on `;` (the reference).
fn reference_values(text: &str) -> Vec<&str> {
    text.split(';')
        .filter_map(|pair| {
            let (n, v) = pair.split_once('=')?;
            (n.trim() == NAME).then_some(v.trim())
        })
        .collect()
}

fuzz_target!(|headers: Vec<&[u8]>| {
    let mut map = HeaderMap::new();
    for h in headers.iter().take(4) {
        if let Ok(v) = HeaderValue::from_bytes(h) {
            map.append(COOKIE, v);
        }
    }
    let present: Vec<&str> = map
        .get_all(COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(reference_values)
        .collect();
    match session_cookie_candidates(&map, NAME) {
        Ok(c) => {
            let got = c.as_slice();
            assert!(got.len() <= MAX_COOKIE_CANDIDATES);
            // In order, each one a token and one of the values really sent.
            let mut rest = present.iter();
            for v in got {
                assert!(
                    is_session_token(v),
                    "candidate {v:?} is not a session token"
                );
                assert!(rest.any(|p| p == v), "candidate {v:?} not in {present:?}");
            }
            match extract(&map, NAME) {
                Extracted::Absent => assert!(got.is_empty()),
                Extracted::Cookies(e) => assert_eq!(e.as_slice(), got),
                other => panic!("extract disagrees: {other:?}"),
            }
        }
        Err(_) => {
            // Refused: never Absent, so a broken cookie cannot pass for an anonymous request.
            assert!(matches!(extract(&map, NAME), Extracted::Malformed(_)));
        }
    }
});
