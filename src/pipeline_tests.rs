//! The pipeline against an in-memory store: each rule with the attack it stops.

use super::*;
use crate::clock::ManualClock;
use crate::credential::Sid;
use crate::denial::Unauthenticated;
use crate::metrics::Metrics;
use crate::net::cidr::CidrSet;
use crate::policy::{InternalSecret, Pattern, Route};
use crate::secret::Secret;
use crate::session::record::SessionRecord;
use crate::session::testing::MemStore;
use crate::session::{CacheSettings, SessionCache, SessionStore};
use http::{HeaderMap, HeaderValue, Method};
use std::sync::atomic::Ordering;

const SESSION_TOK: &str = "flx_abcdefghijklmnopqrstuvwxyz0123456789";
const SESSION_TOK2: &str = "flx_ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
const OAUTH_TOK: &str = "oauthTokenValue_0123456789";
const SECRET: &str = "internal-secret-0123456789";

fn policy(auth: AuthMode, kinds: &[Kind], scopes: &[&str]) -> Policy {
    Policy {
        auth,
        kinds: KindSet::of(kinds),
        scopes: scopes.iter().map(|s| s.to_string()).collect(),
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

fn route(path: &str, p: Policy) -> Route {
    Route {
        name: path.into(),
        methods: vec![],
        pattern: Some(Pattern::parse(path).unwrap()),
        policy: p,
    }
}

fn rec(kind: Kind, scopes: &[&str]) -> SessionRecord {
    SessionRecord {
        v: 1,
        user_id: "42".into(),
        kind,
        created_at: 0,
        expires_at: None,
        scopes: scopes.iter().map(|s| s.to_string()).collect(),
        client_ip: None,
        has_mfa: None,
        flags: None,
        client_id: None,
    }
}

async fn pipeline() -> (Pipeline, Arc<MemStore>) {
    let store = Arc::new(MemStore::default());
    store
        .create(&Sid::of(SESSION_TOK), &rec(Kind::Session, &[]))
        .await
        .unwrap();
    store
        .create(&Sid::of(SESSION_TOK2), &rec(Kind::Session, &[]))
        .await
        .unwrap();
    store
        .create(&Sid::of(OAUTH_TOK), &rec(Kind::Oauth2, &["identify"]))
        .await
        .unwrap();
    let cache = SessionCache::new(
        store.clone(),
        ManualClock::new(1_700_000_000_000),
        Arc::new(Metrics::default()),
        CacheSettings {
            ttl_ms: 30_000,
            negative_ttl_ms: 1_000,
            capacity: 1000,
            stale_grace_ms: None,
        },
    );
    let all = [Kind::Session, Kind::Oauth2];
    let routes = RouteTable::new(
        vec![
            route("/public", policy(AuthMode::None, &all, &[])),
            route(
                "/session-only",
                policy(AuthMode::Required, &[Kind::Session], &[]),
            ),
            route("/guilds", policy(AuthMode::Required, &all, &["guilds"])),
            route("/me", policy(AuthMode::Required, &all, &["identify"])),
            route("/_rpc", policy(AuthMode::Internal, &[], &[])),
            route(
                "/api/*",
                Policy {
                    forward: crate::policy::forward::Forward {
                        upstream: 2,
                        strip_segments: 1,
                        set_host: Some(HeaderValue::from_static("api.internal")),
                    },
                    ..policy(AuthMode::None, &all, &[])
                },
            ),
        ],
        policy(AuthMode::Required, &all, &[]),
        vec!["/v1".into()],
    );
    let sessions = Arc::new(cache);
    let mut p = Pipeline::for_test(routes, Runtime::for_test(sessions, crate::clock::system()));
    p.rules.secrets = InternalSecrets {
        secrets: vec![InternalSecret {
            name: "gateway".into(),
            name_header: HeaderValue::from_static("gateway"),
            secret: Secret::new(SECRET.into()),
            networks: CidrSet::parse(&["10.0.0.0/8"]).unwrap(),
        }],
    };
    (p, store)
}

async fn run(p: &Pipeline, target: &str, headers: &[(&'static str, &str)]) -> Verdict {
    run_from(p, target, headers, "10.1.2.3").await
}

async fn run_from(
    p: &Pipeline,
    target: &str,
    headers: &[(&'static str, &str)],
    peer: &str,
) -> Verdict {
    let mut h = HeaderMap::new();
    for (k, v) in headers {
        h.append(*k, HeaderValue::from_str(v).unwrap());
    }
    p.evaluate(&RequestFacts {
        method: &Method::GET,
        version: http::Version::HTTP_11,
        length_with_chunked: false,
        body_read: false,
        request_id: &HeaderValue::from_static("test-request"),
        tls: false,
        authority: None,
        target: target.as_bytes(),
        headers: &h,
        peer: peer.parse().unwrap(),
        body: None,
    })
    .await
}

fn denial(v: Verdict) -> Denial {
    v.outcome.expect_err("expected a denial")
}

fn kind(v: Verdict) -> &'static str {
    v.outcome.expect("expected admission").identity.auth_kind()
}

#[tokio::test]
async fn missing_credential_on_a_required_route_is_401() {
    let (p, _) = pipeline().await;
    assert_eq!(
        denial(run(&p, "/anything", &[]).await),
        Denial::Unauthorized(Unauthenticated::Missing)
    );
}

#[tokio::test]
async fn session_token_with_and_without_bearer_and_as_cookie_is_admitted() {
    let (p, _) = pipeline().await;
    let bearer = format!("Bearer {SESSION_TOK}");
    let cookie = format!("fluxer_session={SESSION_TOK}");
    assert_eq!(
        kind(run(&p, "/x", &[("authorization", &bearer)]).await),
        "session"
    );
    assert_eq!(
        kind(run(&p, "/x", &[("authorization", SESSION_TOK)]).await),
        "session"
    );
    assert_eq!(kind(run(&p, "/x", &[("cookie", &cookie)]).await), "session");
}

#[tokio::test]
async fn oauth2_token_missing_a_scope_is_refused_naming_it() {
    let (p, _) = pipeline().await;
    let bearer = format!("Bearer {OAUTH_TOK}");
    assert_eq!(
        denial(run(&p, "/guilds", &[("authorization", &bearer)]).await),
        Denial::MissingOauthScope {
            required_scope: "guilds".into()
        }
    );
    assert_eq!(
        kind(run(&p, "/me", &[("authorization", &bearer)]).await),
        "oauth2"
    );
}

#[tokio::test]
async fn oauth2_bearer_on_a_session_only_route_is_access_denied() {
    let (p, _) = pipeline().await;
    let bearer = format!("Bearer {OAUTH_TOK}");
    assert_eq!(
        denial(run(&p, "/session-only", &[("authorization", &bearer)]).await),
        Denial::AccessDenied
    );
}

#[tokio::test]
async fn oauth2_token_presented_as_a_session_token_is_refused() {
    // An attacker who knows an OAuth2 sid cannot craft a flx_ token for it, but a backend
    // writing a record with the wrong kind must not widen what the token can do either.
    let (p, store) = pipeline().await;
    let tok = "flx_0000000000000000000000000000000000ab";
    store
        .create(&Sid::of(tok), &rec(Kind::Oauth2, &[]))
        .await
        .unwrap();
    assert_eq!(
        denial(run(&p, "/x", &[("authorization", tok)]).await),
        Denial::Unauthorized(Unauthenticated::KindMismatch)
    );
}

#[tokio::test]
async fn bot_tokens_are_refused_when_bots_are_not_enabled() {
    let (p, _) = pipeline().await;
    assert_eq!(
        denial(run(&p, "/x", &[("authorization", "Bot 123.abcdef")]).await),
        Denial::Unauthorized(Unauthenticated::KindDisabled)
    );
}

#[tokio::test]
async fn anonymous_on_a_none_route_even_with_a_bad_credential() {
    let (p, _) = pipeline().await;
    assert_eq!(kind(run(&p, "/public", &[]).await), "anonymous");
    assert_eq!(
        kind(run(&p, "/public", &[("authorization", "Bearer unknown-token")]).await),
        "anonymous"
    );
    let bearer = format!("Bearer {SESSION_TOK}");
    assert_eq!(
        kind(run(&p, "/public", &[("authorization", &bearer)]).await),
        "session"
    );
}

#[tokio::test]
async fn store_failure_fails_closed_on_every_route_that_needs_it() {
    let (p, store) = pipeline().await;
    store.fail.store(true, Ordering::SeqCst);
    let bearer = format!("Bearer {SESSION_TOK}");
    for path in ["/x", "/public"] {
        assert!(matches!(
            denial(run(&p, path, &[("authorization", &bearer)]).await),
            Denial::StoreUnavailable { .. }
        ));
    }
    // Without a credential there is nothing to look up.
    assert_eq!(kind(run(&p, "/public", &[]).await), "anonymous");
}

#[tokio::test]
async fn malformed_paths_are_refused_before_any_store_read() {
    let (p, store) = pipeline().await;
    let bearer = format!("Bearer {SESSION_TOK}");
    let v = run(&p, "/a/../session-only", &[("authorization", &bearer)]).await;
    assert_eq!(v.route, RouteId::Unrouted);
    assert!(matches!(denial(v), Denial::BadRequest(_)));
    assert_eq!(store.reads.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn duplicate_session_cookies_with_two_valid_values_are_refused() {
    let (p, _) = pipeline().await;
    let c = format!("fluxer_session={SESSION_TOK}; fluxer_session={SESSION_TOK2}");
    assert_eq!(
        denial(run(&p, "/x", &[("cookie", &c)]).await),
        Denial::Unauthorized(Unauthenticated::AmbiguousCookies)
    );
}

#[tokio::test]
async fn duplicate_session_cookies_with_exactly_one_valid_value_are_accepted() {
    let (p, _) = pipeline().await;
    let c = format!(
        "fluxer_session={SESSION_TOK}; fluxer_session=flx_zzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzz"
    );
    assert_eq!(kind(run(&p, "/x", &[("cookie", &c)]).await), "session");
}

#[tokio::test]
async fn internal_secret_right_wrong_missing_and_from_the_wrong_network() {
    let (p, _) = pipeline().await;
    assert_eq!(
        kind(run(&p, "/_rpc", &[("x-fluxer-rpc-auth", SECRET)]).await),
        "internal"
    );
    let bearer = format!("Bearer {SECRET}");
    assert_eq!(
        kind(run(&p, "/_rpc", &[("authorization", &bearer)]).await),
        "internal"
    );
    assert_eq!(
        denial(
            run(
                &p,
                "/_rpc",
                &[("x-fluxer-rpc-auth", "wrong-secret-0123456789")]
            )
            .await
        ),
        Denial::Unauthorized(Unauthenticated::SecretWrong)
    );
    assert_eq!(
        denial(run(&p, "/_rpc", &[]).await),
        Denial::Unauthorized(Unauthenticated::SecretMissing)
    );
    assert_eq!(
        denial(run_from(&p, "/_rpc", &[("x-fluxer-rpc-auth", SECRET)], "192.0.2.1").await),
        Denial::Unauthorized(Unauthenticated::SecretNetwork)
    );
    // A user session is not an internal credential.
    let user = format!("Bearer {SESSION_TOK}");
    assert_eq!(
        denial(run(&p, "/_rpc", &[("authorization", &user)]).await),
        Denial::Unauthorized(Unauthenticated::SecretWrong)
    );
}

#[tokio::test]
async fn routes_match_under_the_version_prefix() {
    let (p, _) = pipeline().await;
    assert_eq!(kind(run(&p, "/v1/public", &[]).await), "anonymous");
}

fn admitted(v: Verdict) -> Admitted {
    v.outcome.expect("expected admission")
}

#[tokio::test]
async fn a_stripping_route_plans_its_upstream_the_stripped_target_and_its_host() {
    let (p, _) = pipeline().await;
    let a = admitted(run(&p, "/api/v1/x?y=%41", &[]).await);
    assert_eq!(a.plan.upstream, 2);
    assert_eq!(a.plan.path.as_deref(), Some("/v1/x?y=%41"));
    assert_eq!(a.plan.get(&http::header::HOST).unwrap(), "api.internal");
    // Under the version prefix, the version stays in front.
    let a = admitted(run(&p, "/v1/api/x", &[]).await);
    assert_eq!(a.plan.path.as_deref(), Some("/v1/x"));
    // Other routes: the default upstream, the target and Host as sent.
    let a = admitted(run(&p, "/public", &[]).await);
    assert_eq!((a.plan.upstream, a.plan.path.as_deref()), (0, None));
    assert!(a.plan.get(&http::header::HOST).is_none());
}

#[tokio::test]
async fn the_plan_sets_every_identity_header_for_some_caller() {
    use crate::identity::IdentityHeader;
    use crate::policy::sudo::{SUDO_HEADER, SudoSettings};
    let (mut p, store) = pipeline().await;
    let tok = "flx_scopedscopedscopedscopedscopedscoped";
    let mut record = rec(Kind::Session, &["identify"]);
    record.client_id = Some("app-1".into());
    store.create(&Sid::of(tok), &record).await.unwrap();
    let db = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/geoip");
    p.rt.geo = Arc::new(
        crate::net::geoip::GeoIp::open(
            Some(&db.join("GeoLite2-Country-Test.mmdb")),
            Some(&db.join("GeoLite2-ASN-Test.mmdb")),
        )
        .unwrap(),
    );
    p.rules.geo_headers = true;
    p.rules.assertion = Some(Arc::new(crate::identity::assertion::Asserter::new(
        &Secret::new("assertion-secret-0123456789abcdef".into()),
        60,
    )));
    let sudo = Arc::new(
        Sudo::new(SudoSettings {
            secret: b"sudo-shared-secret-0123456789".to_vec(),
            lifetime_secs: 900,
            leeway_secs: 1,
            bind_to_session: true,
            forward_upstream_token: true,
            cookie_name: "fluxer_sudo_mode".into(),
            upstream_lifetime_secs: 300,
            proof_lockout: None,
            capture_window: Default::default(),
        })
        .unwrap(),
    );
    let (proof, until) = sudo.grant("42", &Sid::of(tok), p.rt.clock.now_secs());
    p.rules.sudo = Some(sudo);
    let user = admitted(
        run_from(
            &p,
            "/x",
            &[("authorization", tok), ("x-fluxer-sudo-mode-jwt", &proof)],
            "89.160.20.112",
        )
        .await,
    )
    .plan;
    let internal = admitted(run(&p, "/_rpc", &[("x-fluxer-rpc-auth", SECRET)]).await).plan;
    let names = &p.rules.names;
    for &h in IdentityHeader::ALL {
        assert!(
            user.get(&names[h]).is_some() || internal.get(&names[h]).is_some(),
            "{h:?} is never set"
        );
    }
    assert_eq!(user.get(&names[IdentityHeader::UserId]).unwrap(), "42");
    assert_eq!(
        user.get(&names[IdentityHeader::SudoUntil]).unwrap(),
        until.to_string().as_str()
    );
    assert_eq!(
        internal.get(&names[IdentityHeader::Service]).unwrap(),
        "gateway"
    );
    assert!(internal.get(&names[IdentityHeader::UserId]).is_none());
    // The upstream-format sudo token and the request id ride along.
    assert!(user.get(&SUDO_HEADER).is_some());
    assert_eq!(
        user.get(&crate::identity::REQUEST_ID).unwrap(),
        "test-request"
    );
    assert!(user.strip_own_cookies && !user.drop_expect);
}

#[test]
fn the_module_doc_lists_the_stages_in_order() {
    let listed: Vec<(usize, String)> = include_str!("pipeline.rs")
        .lines()
        .filter_map(|l| l.strip_prefix("//! "))
        .filter_map(|l| {
            let (n, rest) = l.split_once(". ")?;
            Some((
                n.trim().parse().ok()?,
                rest.split(" — ").next()?.to_string(),
            ))
        })
        .collect();
    let stages: Vec<(usize, String)> = Stage::ALL
        .iter()
        .map(|s| (s.number(), s.name().to_string()))
        .collect();
    assert_eq!(listed, stages);
}

#[tokio::test]
async fn every_refusal_names_the_stage_that_refused() {
    let (p, _) = pipeline().await;
    let bearer = format!("Bearer {OAUTH_TOK}");
    type Case<'a> = (&'a str, Vec<(&'static str, &'a str)>, Stage);
    let cases: [Case; 6] = [
        ("/a/../b", vec![], Stage::Route),
        ("/x", vec![], Stage::Credential),
        (
            "/x",
            vec![("authorization", "Bearer unknown-token")],
            Stage::Session,
        ),
        ("/guilds", vec![("authorization", &bearer)], Stage::Access),
        (
            "/_rpc",
            vec![("x-fluxer-rpc-auth", "wrong-secret-0123456789")],
            Stage::Credential,
        ),
        ("/me", vec![("authorization", &bearer)], Stage::Identity),
    ];
    for (target, headers, stage) in cases {
        assert_eq!(run(&p, target, &headers).await.stage, stage, "{target}");
    }
}
