//! The backend's answers through a live resolver: what is malformed, what is no session, and
//! what a configured pointer reads (`backend_answer.rs`).

use super::*;

#[tokio::test]
async fn wrong_json_types_and_missing_fields_are_malformed() {
    let cases = [
        (r#"{"id":true}"#, "user_id"),
        (r#"{"id":1.5}"#, "user_id"),
        (r#"{"id":-7}"#, "user_id"),
        (r#"{"username":"alice"}"#, "user_id"),
        (r#"{"id":"1","mfa_enabled":"yes"}"#, "mfa"),
        (r#"{"id":"1","flags":"4"}"#, "flags"),
        (r#"{"id":"1","flags":-1}"#, "flags"),
        (r#"["id","1"]"#, "not_an_object"),
        ("<html>ok</html>", "json"),
        ("", "json"),
    ];
    for (body, what) in cases {
        let srv = Server::fixed(200, body).await;
        let got = srv.resolver().resolve(Kind::Session, SESSION, NOW).await;
        assert_eq!(got, Err(BackendError::Malformed(what)), "{body}");
        let e = got.unwrap_err();
        assert_eq!(e.reason(), "malformed");
        assert!(!format!("{e} {e:?}").contains(SESSION));
    }
}

#[tokio::test]
async fn a_user_id_with_header_breaking_bytes_never_becomes_a_session() {
    let long = "9".repeat(65);
    for id in [
        "1\r\nX-Fluxgate-User-Id: 2",
        "1\n2",
        "",
        "a b",
        long.as_str(),
    ] {
        let body = serde_json::json!({ "id": id }).to_string();
        let srv = Server::fixed(200, &body).await;
        let got = srv.resolver().resolve(Kind::Session, SESSION, NOW).await;
        assert_eq!(got, Err(BackendError::Malformed("user_id")), "{id:?}");
    }
    let body = introspected("").replace("123456789012345678", "1\\r\\nX-Evil: 1");
    let srv = Server::fixed(200, &body).await;
    let got = srv.resolver().resolve(Kind::Oauth2, OAUTH, NOW).await;
    assert_eq!(got, Err(BackendError::Malformed("user_id")));
}

#[tokio::test]
async fn inactive_introspection_is_no_session() {
    let srv = Server::fixed(200, r#"{"active":false}"#).await;
    let got = srv.resolver().resolve(Kind::Oauth2, OAUTH, NOW).await;
    assert_eq!(got, Ok(None));
}

#[tokio::test]
async fn an_introspected_token_at_or_past_its_exp_is_no_session() {
    for exp in [NOW, NOW - 1] {
        let body = introspected("").replace(&(NOW + 3600).to_string(), &exp.to_string());
        let srv = Server::fixed(200, &body).await;
        let got = srv.resolver().resolve(Kind::Oauth2, OAUTH, NOW).await;
        assert_eq!(got, Ok(None), "exp {exp}");
    }
}

#[tokio::test]
async fn a_refresh_token_or_a_not_yet_valid_token_is_no_session() {
    for extra in [
        r#","token_type":"refresh_token""#,
        &format!(r#","nbf":{}"#, NOW + 60),
    ] {
        // A later duplicate key wins in serde_json, so `extra` overrides the defaults.
        let srv = Server::fixed(200, &introspected(extra)).await;
        let got = srv.resolver().resolve(Kind::Oauth2, OAUTH, NOW).await;
        assert_eq!(got, Ok(None), "{extra}");
    }
}

#[tokio::test]
async fn active_introspection_without_a_usable_sub_or_with_wrong_types_is_malformed() {
    let cases = [
        (r#"{"active":true,"scope":"identify"}"#, "sub"),
        (r#"{"active":"true","sub":"1"}"#, "active"),
        (r#"{"sub":"1"}"#, "active"),
        (r#"{"active":true,"sub":"1","exp":"soon"}"#, "exp"),
        (r#"{"active":true,"sub":"1","scope":["a"]}"#, "scope"),
        (r#"{"active":true,"sub":"1","scope":"a\u0001b"}"#, "scopes"),
        (r#"{"active":true,"sub":"1","client_id":7}"#, "client_id"),
    ];
    for (body, what) in cases {
        let srv = Server::fixed(200, body).await;
        let got = srv.resolver().resolve(Kind::Oauth2, OAUTH, NOW).await;
        assert_eq!(got, Err(BackendError::Malformed(what)), "{body}");
    }
}

#[tokio::test]
async fn configured_pointers_read_a_nested_user_object() {
    let body = r#"{"user":{"snowflake":"42","security":{"mfa":false}},"flags":1}"#;
    let srv = Server::fixed(200, body).await;
    let mut settings = srv.settings();
    settings.user_id_pointer = "/user/snowflake".into();
    settings.mfa_pointer = "/user/security/mfa".into();
    settings.flags_pointer = String::new();
    let r = BackendResolver::new(settings).unwrap();
    let s = r
        .resolve(Kind::Session, SESSION, NOW)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(s.record.user_id, "42");
    assert_eq!((s.record.has_mfa, s.record.flags), (Some(false), None));
}
