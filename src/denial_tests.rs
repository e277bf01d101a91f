//! The denial table's unit tests: statuses, codes, bodies and headers, one per variant.

use super::*;

fn body(d: &Denial) -> Value {
    serde_json::from_slice(&d.to_response().body).unwrap()
}

#[test]
fn unauthorized_carries_www_authenticate_and_the_contract_body() {
    let d = Denial::Unauthorized(Unauthenticated::Missing);
    let r = d.to_response();
    assert_eq!(r.status, 401);
    assert!(
        r.headers
            .iter()
            .any(|(k, v)| *k == "www-authenticate" && v == WWW_AUTHENTICATE)
    );
    assert!(
        r.headers
            .iter()
            .any(|(k, v)| *k == "cache-control" && v == "no-store")
    );
    assert_eq!(body(&d)["code"], "UNAUTHORIZED");
    assert!(body(&d)["message"].is_string());
}

#[test]
fn missing_scope_names_the_scope() {
    let d = Denial::MissingOauthScope {
        required_scope: "guilds".into(),
    };
    assert_eq!(d.to_response().status, 403);
    assert_eq!(body(&d)["code"], "MISSING_OAUTH_SCOPE");
    assert_eq!(body(&d)["required_scope"], "guilds");
}

#[test]
fn store_unavailable_says_when_to_retry() {
    let d = Denial::StoreUnavailable {
        retry_after_secs: 2,
    };
    let r = d.to_response();
    assert_eq!(r.status, 503);
    assert!(
        r.headers
            .iter()
            .any(|(k, v)| *k == "retry-after" && v == "2")
    );
    assert_eq!(body(&d)["code"], "SERVICE_UNAVAILABLE");
}

#[test]
fn rate_limited_matches_the_contract() {
    let d = Denial::RateLimited(RateLimited {
        retry_after_ms: 1_234,
        scope: Scope::User,
        global: false,
        lockout: false,
        bucket: Some(BucketHeaders {
            limit: 10,
            remaining: 0,
            reset_at_ms: 1_800_000_010_000,
            reset_after_ms: 10_000,
            name_hash: "a1b2c3d4e5f60718".into(),
        }),
    });
    let r = d.to_response();
    assert_eq!(r.status, 429);
    let h = |n: &str| {
        r.headers
            .iter()
            .find(|(k, _)| *k == n)
            .map(|(_, v)| v.to_str().unwrap().to_string())
    };
    assert_eq!(h("retry-after").as_deref(), Some("2"));
    assert_eq!(h("x-ratelimit-scope").as_deref(), Some("user"));
    assert_eq!(h("x-ratelimit-global"), None);
    assert_eq!(h("x-ratelimit-limit").as_deref(), Some("10"));
    assert_eq!(h("x-ratelimit-remaining").as_deref(), Some("0"));
    assert_eq!(h("x-ratelimit-reset").as_deref(), Some("1800000010.000"));
    assert_eq!(h("x-ratelimit-reset-after").as_deref(), Some("10.000"));
    assert_eq!(h("x-ratelimit-bucket").as_deref(), Some("a1b2c3d4e5f60718"));
    assert_eq!(body(&d)["code"], "RATE_LIMITED");
    assert_eq!(body(&d)["global"], false);
    assert_eq!(body(&d)["retry_after"], 1.234);
}

#[test]
fn a_global_denial_says_so() {
    let d = Denial::RateLimited(RateLimited {
        retry_after_ms: 20,
        scope: Scope::Global,
        global: true,
        lockout: false,
        bucket: None,
    });
    let r = d.to_response();
    assert!(
        r.headers
            .iter()
            .any(|(k, v)| *k == "x-ratelimit-global" && v == "true")
    );
    assert!(
        r.headers
            .iter()
            .any(|(k, v)| *k == "retry-after" && v == "1")
    );
    assert_eq!(body(&d)["global"], true);
}

#[test]
fn reasons_are_snake_case() {
    for d in [
        Denial::BadRequest(BadRequest::Path(PathError::DotSegment)),
        Denial::Unauthorized(Unauthenticated::Malformed(Malformed::TooLong)),
        Denial::AccessDenied,
        Denial::Internal,
    ] {
        assert!(
            d.reason()
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b == b'_')
        );
    }
}
