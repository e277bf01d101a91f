//! `Authorization` parsing (contract §1): an accepted credential is a substring of the one
//! header sent, of the kind its shape says, with no whitespace or control byte; two headers are
//! always refused; the internal-secret reader never accepts what is not visible ASCII.
#![no_main]

use fluxgate::credential::{
    Extracted, Kind, MAX_CREDENTIAL_LEN, extract, extract_internal, is_bot_token, is_oauth2_token,
    is_session_token,
};
use http::{HeaderMap, HeaderValue, header::AUTHORIZATION};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|input: (bool, &[u8], &[u8])| {
    let (twice, value, cookie) = input;
    let Ok(v) = HeaderValue::from_bytes(value) else {
        return;
    };
    let mut map = HeaderMap::new();
    map.append(AUTHORIZATION, v.clone());
    if twice {
        map.append(AUTHORIZATION, v);
    }
    if let Ok(c) = HeaderValue::from_bytes(cookie) {
        map.append(http::header::COOKIE, c);
    }
    match extract(&map, "fluxer_session") {
        Extracted::Header { kind, token } => {
            assert!(!twice, "two Authorization headers accepted");
            assert!(token.len() <= MAX_CREDENTIAL_LEN);
            assert!(value.ends_with(token.as_bytes()));
            assert!(token.bytes().all(|b| b.is_ascii_graphic()), "{token:?}");
            let shaped = match kind {
                Kind::Session => is_session_token(token),
                Kind::Oauth2 => is_oauth2_token(token),
                Kind::Bot => is_bot_token(token),
            };
            assert!(shaped, "{kind:?} token {token:?} not of its shape");
        }
        // An Authorization header decides: the cookie is never read instead.
        Extracted::Cookies(_) | Extracted::Absent => panic!("Authorization header ignored"),
        Extracted::Malformed(_) => {}
    }
    match extract_internal(&map) {
        Ok(Some(secret)) => {
            assert!(!twice);
            assert!(!secret.is_empty() && secret[0] != b' ');
            assert!(secret.iter().all(|b| (0x20..0x7f).contains(b)));
            assert!(value.ends_with(secret));
        }
        Ok(None) => panic!("an Authorization header is never no secret"),
        Err(_) => {}
    }
});
