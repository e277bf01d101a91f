//! Report mode in the pipeline: what is turned into a would-deny, what stays enforced, and that
//! a would-deny never carries an identity upstream.

use super::super::*;
use crate::clock::ManualClock;
use crate::credential::Sid;
use crate::denial::Unauthenticated;
use crate::metrics::Metrics;
use crate::net::cidr::CidrSet;
use crate::policy::rollout::Rollout;
use crate::policy::{InternalSecret, Pattern, Route};
use crate::secret::Secret;
use crate::session::locations::Ticket;
use crate::session::record::SessionRecord;
use crate::session::testing::MemStore;
use crate::session::{CacheSettings, SessionCache, SessionStore, StoreError};
use async_trait::async_trait;
use http::{HeaderMap, HeaderValue, Method};
use std::sync::atomic::{AtomicU64, Ordering};

const TOK: &str = "flx_abcdefghijklmnopqrstuvwxyz0123456789";
const OAUTH_TOK: &str = "oauthTokenValue_0123456789";
const SECRET: &str = "internal-secret-0123456789";

/// The in-memory store, plus what IP authorization asks: no location is known yet, and each
/// ticket opened is counted.
#[derive(Default)]
struct Store {
    mem: MemStore,
    tickets_opened: AtomicU64,
}

#[async_trait]
impl SessionStore for Store {
    fn name(&self) -> &'static str {
        "memory"
    }
    async fn get(&self, sid: &Sid) -> Result<Option<SessionRecord>, StoreError> {
        self.mem.get(sid).await
    }
    async fn create(&self, sid: &Sid, r: &SessionRecord) -> Result<(), StoreError> {
        self.mem.create(sid, r).await
    }
    async fn revoke(&self, sid: &Sid) -> Result<Option<String>, StoreError> {
        self.mem.revoke(sid).await
    }
    async fn list_user(&self, user: &str) -> Result<Vec<(Sid, SessionRecord)>, StoreError> {
        self.mem.list_user(user).await
    }
    async fn revoke_user(&self, user: &str) -> Result<Vec<Sid>, StoreError> {
        self.mem.revoke_user(user).await
    }
    async fn ping(&self) -> Result<(), StoreError> {
        Ok(())
    }
    async fn locations(&self, _: &str) -> Result<Vec<String>, StoreError> {
        Ok(vec![])
    }
    async fn open_ticket(&self, t: &Ticket, _: &[u8; 32]) -> Result<Ticket, StoreError> {
        self.tickets_opened.fetch_add(1, Ordering::SeqCst);
        Ok(t.clone())
    }
}

fn policy(auth: AuthMode, kinds: &[Kind], rollout: Rollout) -> Policy {
    Policy {
        auth,
        kinds: KindSet::of(kinds),
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
        rollout,
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

async fn pipeline() -> (Pipeline, Arc<Store>) {
    let store = Arc::new(Store::default());
    let mut rec = SessionRecord {
        v: 1,
        user_id: "42".into(),
        kind: Kind::Session,
        created_at: 0,
        expires_at: None,
        scopes: vec![],
        client_ip: Some("10.9.9.9".into()),
        has_mfa: None,
        flags: None,
        client_id: None,
    };
    store.create(&Sid::of(TOK), &rec).await.unwrap();
    rec.kind = Kind::Oauth2;
    rec.scopes = vec!["identify".into()];
    store.create(&Sid::of(OAUTH_TOK), &rec).await.unwrap();
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
    let report = |auth| policy(auth, &all, Rollout::Report);
    let mut scoped = report(AuthMode::Required);
    scoped.scopes = vec!["guilds".into()];
    let mut located = report(AuthMode::Required);
    located.ip_authorization = true;
    let routes = RouteTable::new(
        vec![
            route(
                "/enforced",
                policy(AuthMode::Required, &all, Rollout::Enforce),
            ),
            route("/guilds", scoped),
            route("/located", located),
            route(
                "/session-only",
                policy(AuthMode::Required, &[Kind::Session], Rollout::Report),
            ),
            // Configuration never lets an internal route report; the pipeline does not rely on it.
            route("/_rpc", policy(AuthMode::Internal, &[], Rollout::Report)),
        ],
        report(AuthMode::Required),
        vec!["/v1".into()],
    );
    let sessions = Arc::new(cache);
    let mut p = Pipeline::for_test(routes, Runtime::for_test(sessions, crate::clock::system()));
    p.rules.secrets = InternalSecrets {
        secrets: vec![InternalSecret {
            name: "gateway".into(),
            name_header: HeaderValue::from_static("gateway"),
            secret: Secret::new(SECRET.into()),
            networks: CidrSet::default(),
        }],
    };
    (p, store)
}

async fn run(p: &Pipeline, target: &str, headers: &[(&'static str, &str)]) -> Verdict {
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
        peer: "198.51.100.7".parse().unwrap(),
        body: None,
    })
    .await
}

/// The would-deny of an admitted verdict (panics if the request was refused).
fn would_deny(v: &Verdict) -> Option<Denial> {
    v.outcome
        .as_ref()
        .expect("report mode forwards")
        .would_deny
        .clone()
}

/// The headers the upstream would receive for `sent`, after the verdict's plan.
fn forwarded(p: &Pipeline, v: &Verdict, sent: &[(&'static str, &str)]) -> HeaderMap {
    let mut h = HeaderMap::new();
    for (k, val) in sent {
        h.append(*k, HeaderValue::from_str(val).unwrap());
    }
    let plan = &v.outcome.as_ref().unwrap().plan;
    crate::identity::apply(&mut h, &p.rules.names, &p.rules.cookies, plan);
    h
}

#[tokio::test]
async fn a_missing_credential_in_report_mode_is_forwarded_anonymous_with_its_would_deny() {
    let (p, _) = pipeline().await;
    let v = run(&p, "/anything", &[]).await;
    assert_eq!(
        would_deny(&v),
        Some(Denial::Unauthorized(Unauthenticated::Missing))
    );
    assert_eq!(v.stage, Stage::Credential);
    let a = v.outcome.as_ref().unwrap();
    assert_eq!(a.identity.auth_kind(), "anonymous");
    let h = forwarded(&p, &v, &[]);
    assert_eq!(h["x-fluxgate-auth-kind"], "anonymous");
    assert!(h.get("x-fluxgate-user-id").is_none());
}

#[tokio::test]
async fn spoofed_identity_headers_never_reach_the_upstream_on_a_would_deny() {
    let (p, _) = pipeline().await;
    let spoof = [
        ("x-fluxgate-user-id", "1"),
        ("X-Fluxgate-Auth-Kind", "session"),
        ("x-fluxgate-session-id", "forged"),
        (
            "cookie",
            "fluxer_session=flx_notARealSessionTokenButWellFormed012; a=b",
        ),
    ];
    let v = run(&p, "/anything", &spoof).await;
    assert_eq!(
        would_deny(&v),
        Some(Denial::Unauthorized(Unauthenticated::UnknownSession))
    );
    let h = forwarded(&p, &v, &spoof);
    assert!(h.get("x-fluxgate-user-id").is_none(), "{h:?}");
    assert!(h.get("x-fluxgate-session-id").is_none(), "{h:?}");
    assert_eq!(h["x-fluxgate-auth-kind"], "anonymous");
    assert_eq!(h["cookie"], "a=b");
}

#[tokio::test]
async fn a_valid_credential_in_report_mode_is_admitted_as_usual() {
    let (p, _) = pipeline().await;
    let bearer = format!("Bearer {TOK}");
    let v = run(&p, "/anything", &[("authorization", &bearer)]).await;
    assert_eq!(would_deny(&v), None);
    assert_eq!(v.stage, Stage::Identity);
    let h = forwarded(&p, &v, &[]);
    assert_eq!(h["x-fluxgate-user-id"], "42");
}

#[tokio::test]
async fn access_decisions_after_the_session_are_reported_without_the_identity() {
    let (p, _) = pipeline().await;
    let oauth = format!("Bearer {OAUTH_TOK}");
    let v = run(&p, "/guilds", &[("authorization", &oauth)]).await;
    assert_eq!(
        would_deny(&v),
        Some(Denial::MissingOauthScope {
            required_scope: "guilds".into()
        })
    );
    let h = forwarded(&p, &v, &[]);
    assert!(h.get("x-fluxgate-user-id").is_none(), "{h:?}");
    assert!(h.get("x-fluxgate-scopes").is_none(), "{h:?}");
    let v = run(&p, "/session-only", &[("authorization", &oauth)]).await;
    assert_eq!(would_deny(&v), Some(Denial::AccessDenied));
}

#[tokio::test]
async fn an_enforced_route_still_refuses_when_others_report() {
    let (p, _) = pipeline().await;
    let v = run(&p, "/enforced", &[]).await;
    assert_eq!(
        v.outcome.unwrap_err(),
        Denial::Unauthorized(Unauthenticated::Missing)
    );
}

#[tokio::test]
async fn bad_paths_are_refused_in_report_mode() {
    let (p, store) = pipeline().await;
    for target in ["/a/../anything", "/a%2fb", "/a\\b"] {
        let v = run(&p, target, &[]).await;
        assert!(
            matches!(v.outcome, Err(Denial::BadRequest(_))),
            "{target}: {:?}",
            v.outcome
        );
    }
    assert_eq!(store.mem.reads.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn internal_secret_failures_are_refused_even_if_the_route_says_report() {
    let (p, _) = pipeline().await;
    for headers in [
        vec![],
        vec![("x-fluxer-rpc-auth", "wrong-secret-0123456789")],
    ] {
        let v = run(&p, "/_rpc", &headers).await;
        assert!(
            matches!(v.outcome, Err(Denial::Unauthorized(_))),
            "{:?}",
            v.outcome
        );
    }
}

#[tokio::test]
async fn a_store_failure_is_enforced_in_report_mode() {
    let (p, store) = pipeline().await;
    store.mem.fail.store(true, Ordering::SeqCst);
    let bearer = format!("Bearer {TOK}");
    let v = run(&p, "/anything", &[("authorization", &bearer)]).await;
    assert!(matches!(v.outcome, Err(Denial::StoreUnavailable { .. })));
}

#[tokio::test]
async fn a_new_location_in_report_mode_opens_no_ticket_and_notifies_no_one() {
    let (p, store) = pipeline().await;
    let bearer = format!("Bearer {TOK}");
    let v = run(&p, "/located", &[("authorization", &bearer)]).await;
    assert_eq!(v.stage, Stage::IpAuthorization);
    assert!(matches!(
        would_deny(&v),
        Some(Denial::IpAuthorizationRequired { .. })
    ));
    assert_eq!(store.tickets_opened.load(Ordering::SeqCst), 0);
    // Enforced, the same request opens a ticket: the counter above would have seen it.
    let mut p = p;
    let mut routes: Vec<Route> = p.rules.routes.routes().to_vec();
    routes[2].policy.rollout = Rollout::Enforce;
    let default = p.rules.routes.default_route().policy.clone();
    p.rules.routes = RouteTable::new(routes, default, vec![]);
    let v = run(&p, "/located", &[("authorization", &bearer)]).await;
    assert!(matches!(
        v.outcome,
        Err(Denial::IpAuthorizationRequired { .. })
    ));
    assert_eq!(store.tickets_opened.load(Ordering::SeqCst), 1);
}
