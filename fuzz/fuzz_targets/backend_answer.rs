//! The session backend's answers (src/session/backend_answer.rs): the user object of a validation
//! endpoint and RFC 7662 introspection answers, as a hostile or broken backend could send them.
//!
//! Invariants: a session is only ever made from a JSON object whose user id is a string or an
//! unsigned integer at the configured pointer, and passes record validation (so it can travel
//! in headers); an introspection session was `"active": true`, is not expired or not yet valid
//! at `now`, and is not a non-bearer token.
#![no_main]

use fluxgate::credential::Kind;
use fluxgate::fuzzing::{backend_introspection, backend_user_session};
use fluxgate::session::backend::BackendSettings;
use libfuzzer_sys::fuzz_target;
use serde_json::Value;
use std::sync::OnceLock;

fn settings() -> &'static BackendSettings {
    static S: OnceLock<BackendSettings> = OnceLock::new();
    S.get_or_init(|| BackendSettings::new(http::Uri::from_static("http://127.0.0.1:1/validate")))
}

fuzz_target!(|input: (bool, i64, &[u8])| {
    let (introspect, now, body) = input;
    if !introspect {
        if let Ok(s) = backend_user_session(settings(), Kind::Session, body, now) {
            let v: Value = serde_json::from_slice(body).expect("a session from JSON");
            let id = v.pointer(&settings().user_id_pointer).expect("a user id");
            match id {
                Value::String(u) => assert_eq!(*u, s.record.user_id),
                Value::Number(n) => assert_eq!(n.to_string(), s.record.user_id),
                other => panic!("user id from {other:?}"),
            }
            s.record
                .validate()
                .expect("a backend session is a valid record");
            assert_eq!(s.record.kind, Kind::Session);
        }
        return;
    }
    if let Ok(Some(s)) = backend_introspection(body, now) {
        let v: Value = serde_json::from_slice(body).expect("a session from JSON");
        assert_eq!(v.get("active"), Some(&Value::Bool(true)));
        if let Some(exp) = v.get("exp").and_then(Value::as_i64) {
            assert!(exp > now, "expired token accepted");
        }
        if let Some(nbf) = v.get("nbf").and_then(Value::as_i64) {
            assert!(nbf <= now, "token not yet valid accepted");
        }
        if let Some(t) = v.get("token_type").and_then(Value::as_str) {
            assert!(t.eq_ignore_ascii_case("bearer"), "{t} token accepted");
        }
        s.record
            .validate()
            .expect("an introspected session is a valid record");
        assert_eq!(s.record.kind, Kind::Oauth2);
    }
});
