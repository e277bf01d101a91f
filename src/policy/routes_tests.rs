//! Route matching: first match wins, prefixes, parameters, and the spellings that must not
//! pick another route.

use super::*;

fn policy(auth: AuthMode) -> Policy {
    Policy {
        auth,
        kinds: KindSet::of(&[Kind::Session]),
        scopes: vec![],
        pass_cookies: false,
        forward_credential: true,
        role: None,
        buckets: vec![],
        lockout: None,
        needs_body: false,
        sudo: false,
        sudo_proofs: Default::default(),
        csrf: true,
        network: None,
        ip_authorization: false,
        rollout: Default::default(),
        forward: Default::default(),
        allow_in_path: Default::default(),
    }
}

fn route(name: &str, methods: &[&str], path: &str, auth: AuthMode) -> Route {
    Route {
        name: name.into(),
        methods: methods.iter().map(|m| m.parse().unwrap()).collect(),
        pattern: Some(Pattern::parse(path).unwrap()),
        policy: policy(auth),
    }
}

fn table() -> RouteTable {
    RouteTable::new(
        vec![
            route("health", &["GET"], "/health", AuthMode::None),
            route(
                "delete",
                &["POST"],
                "/guilds/:guild_id/delete",
                AuthMode::Required,
            ),
            route("guild", &[], "/guilds/:guild_id", AuthMode::None),
            route("internal", &[], "/_internal/*", AuthMode::Internal),
            route("shadowed", &["GET"], "/health", AuthMode::Required),
        ],
        policy(AuthMode::Required),
        vec!["/v1".into()],
    )
}

fn name(t: &RouteTable, m: &str, p: &str) -> String {
    t.find(&m.parse().unwrap(), p, p.contains('%'))
        .route
        .name
        .clone()
}

#[test]
fn first_match_wins_and_default_covers_the_rest() {
    let t = table();
    assert_eq!(name(&t, "GET", "/health"), "health");
    assert_eq!(name(&t, "POST", "/health"), "default");
    assert_eq!(name(&t, "GET", "/nothing"), "default");
}

#[test]
fn patterns_match_under_the_version_prefix() {
    let t = table();
    assert_eq!(name(&t, "GET", "/v1/health"), "health");
    assert_eq!(name(&t, "POST", "/v1/guilds/123/delete"), "delete");
    assert_eq!(name(&t, "GET", "/v1health"), "default");
    assert_eq!(name(&t, "GET", "/v2/health"), "default");
}

#[test]
fn params_match_one_segment_and_can_be_read() {
    let t = table();
    assert_eq!(name(&t, "POST", "/guilds/123/delete"), "delete");
    assert_eq!(name(&t, "GET", "/guilds/123"), "guild");
    assert_eq!(name(&t, "GET", "/guilds/123/x"), "default");
    let p = Pattern::parse("/guilds/:guild_id/delete").unwrap();
    assert_eq!(p.param("/guilds/42/delete", "guild_id"), Some("42"));
    assert_eq!(p.param("/guilds/42/other", "guild_id"), None);
}

#[test]
fn trailing_slash_matches_the_same_route() {
    let t = table();
    assert_eq!(name(&t, "POST", "/guilds/1/delete/"), "delete");
    assert_eq!(name(&t, "GET", "/health/"), "health");
}

#[test]
fn rest_wildcard_needs_at_least_one_segment() {
    let t = table();
    assert_eq!(name(&t, "GET", "/_internal/a/b"), "internal");
    assert_eq!(name(&t, "GET", "/_internal"), "default");
}

#[test]
fn head_is_matched_by_get_routes() {
    let t = table();
    assert_eq!(name(&t, "HEAD", "/health"), "health");
}

#[test]
fn percent_encoded_spelling_matches_the_decoded_route() {
    // An upstream that decodes %64 to 'd' must see the same policy as fluxgate applied.
    let t = table();
    assert_eq!(name(&t, "POST", "/guilds/1/%64elete"), "delete");
}

#[test]
fn bad_patterns_are_refused_with_a_reason() {
    for (p, frag) in [
        ("users", "start with '/'"),
        ("/a/*/b", "last segment"),
        ("/a/:", "needs a name"),
        ("/a//b", "segments never match"),
        ("/a/%2f", "character"),
    ] {
        let e = Pattern::parse(p).unwrap_err();
        assert!(e.contains(frag), "{p}: {e}");
    }
}

fn checked<'a>(t: &'a RouteTable, m: &str, path: &'a str) -> Result<String, PathError> {
    let c = crate::net::path::check_target(path.as_bytes())?;
    Ok(t.find_checked(&m.parse().unwrap(), &c)?.route.name.clone())
}

#[test]
fn semicolon_params_cannot_reach_a_protected_handler_through_another_route() {
    // An upstream that strips `;params` would run `delete` for these.
    let t = table();
    for p in [
        "/guilds/1/delete;x",
        "/v1/guilds/1/delete;.json",
        "/guilds/1/delete%3bx",
    ] {
        assert_eq!(checked(&t, "POST", p), Err(PathError::Semicolon), "{p}");
    }
    // A route that allows `;` takes it, as long as stripping `;params` picks the same route.
    let mut allowing = table();
    allowing.routes[2].policy.allow_in_path = Quirks::SEMICOLON;
    allowing.routes[3].policy.allow_in_path = Quirks::SEMICOLON;
    assert_eq!(checked(&allowing, "GET", "/guilds/1;v=2").unwrap(), "guild");
    assert_eq!(
        checked(&allowing, "GET", "/_internal/a;b/c").unwrap(),
        "internal"
    );
    // Even where `;` is allowed (here: by the default policy), `/guilds/1/delete;x` is the
    // default route to fluxgate but `delete` once stripped: refused.
    allowing.default.policy.allow_in_path = Quirks::SEMICOLON;
    assert_eq!(
        checked(&allowing, "POST", "/guilds/1/delete;x"),
        Err(PathError::Semicolon)
    );
}

#[test]
fn double_encoded_and_overlong_spellings_are_refused_unless_the_route_allows_them() {
    let t = table();
    for (p, e) in [
        ("/guilds/%252e%252e", PathError::DoubleEncoded),
        ("/guilds/%c0%ae%c0%ae", PathError::NonUtf8),
        ("/guilds/..%20", PathError::EncodedControl),
    ] {
        assert_eq!(checked(&t, "GET", p), Err(e), "{p}");
    }
    let mut allowing = table();
    allowing.routes[2].policy.allow_in_path = Quirks::DOUBLE_ENCODED;
    assert_eq!(
        checked(&allowing, "GET", "/guilds/%252e%252e").unwrap(),
        "guild"
    );
}

#[test]
fn a_case_folding_upstream_cannot_be_reached_around_a_route() {
    // Exact by default: `/Guilds/1/DELETE` is not the delete route (and must not reach an
    // upstream that ignores case, so such upstreams get case_insensitive_paths).
    assert_eq!(name(&table(), "POST", "/Guilds/1/DELETE"), "default");
    let t = table().case_insensitive(true);
    for p in [
        "/Guilds/1/DELETE",
        "/V1/guilds/1/Delete",
        "/guilds/1/%44elete",
    ] {
        assert_eq!(name(&t, "POST", p), "delete", "{p}");
    }
    assert_eq!(name(&t, "GET", "/_INTERNAL/x"), "internal");
    let p = Pattern::parse("/guilds/:guild_id/delete").unwrap();
    assert_eq!(p.param("/GUILDS/42/delete", "guild_id"), Some("42"));
}
