//! Answers fluxgate reads from the upstream: login answers (login capture turns one into the
//! session cookie) and the answers to in-band sudo proofs (a wrong proof counts toward the
//! lockout).
//!
//! Invariants: a captured token is a well-formed session token and the user id a plain string
//! that can travel in a header; a stripped body is JSON without the token; only a 2xx JSON
//! answer is captured. A 400/403 answer that is encoded or not JSON always counts as a failed
//! proof (fail closed); any other status never does.
#![no_main]

use fluxgate::credential::is_session_token;
use fluxgate::policy::login::{Capture, LoginSettings, capture};
use fluxgate::policy::sudo_proof::proof_failed;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|input: (u16, bool, bool, &[u8])| {
    let (status, strip, encoded, body) = input;
    let status = 100 + status % 500;
    let settings = LoginSettings {
        strip_token: strip,
        ..LoginSettings::default()
    };
    let json = Some(&b"application/json"[..]);
    if let Capture::Captured {
        token,
        user_id,
        body: new_body,
    } = capture(&settings, status, json, body)
    {
        assert!((200..300).contains(&status));
        assert!(is_session_token(&token), "captured {token:?}");
        let v: serde_json::Value = serde_json::from_slice(body).expect("captured from JSON");
        // The user id is the answer's own: its string, or its unsigned integer in decimal.
        let sent = v.pointer("/user_id").expect("captured without a user id");
        match sent {
            serde_json::Value::String(u) => assert_eq!(*u, user_id),
            serde_json::Value::Number(n) => {
                assert!(n.is_u64());
                assert_eq!(n.to_string(), user_id);
            }
            other => panic!("user id from {other:?}"),
        }
        assert_eq!(
            v.pointer("/token").and_then(|t| t.as_str()),
            Some(token.as_str())
        );
        match (strip, new_body) {
            (true, Some(b)) => {
                let s: serde_json::Value = serde_json::from_slice(&b).expect("stripped is JSON");
                assert!(
                    s.pointer("/token").is_none(),
                    "token left in a stripped body"
                );
            }
            (false, None) => {}
            (s, b) => panic!("strip {s} but body {b:?}"),
        }
    }
    assert!(matches!(
        capture(&settings, status, Some(b"text/html"), body),
        Capture::PassThrough(_)
    ));

    let failed = proof_failed(status, encoded, body);
    if status != 400 && status != 403 {
        assert!(!failed, "status {status} counted as a failed proof");
    } else if encoded || serde_json::from_slice::<serde_json::Value>(body).is_err() {
        assert!(
            failed,
            "an unreadable {status} answer not counted (fail open)"
        );
    }
});
